/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/* Bytes waiting to be sent: written at the end, read from off. */
typedef struct Buffer {
        char *data;
        size_t len; /* bytes in data, read or not */
        size_t off; /* bytes already read */
} Buffer;

static inline size_t buffer_pending(const Buffer *b)
{
        return b->len - b->off;
}

/* Appends n bytes, first moving what is unread to the front; -ENOMEM leaves b as it was. */
int buffer_append(Buffer *b, const void *p, size_t n);
/* Marks n bytes read; an emptied buffer starts again at the front. */
void buffer_consume(Buffer *b, size_t n);
void buffer_done(Buffer *b);
