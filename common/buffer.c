/* SPDX-License-Identifier: MIT */
#include "buffer.h"

int buffer_append(Buffer *b, const void *p, size_t n)
{
        char *d;

        if (n == 0) {
                return 0;
        }
        if (b->off > 0) {
                memmove(b->data, b->data + b->off, b->len - b->off);
                b->len -= b->off;
                b->off = 0;
        }
        d = realloc(b->data, b->len + n);
        if (!d) {
                return -ENOMEM;
        }
        b->data = d;
        memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
}

void buffer_consume(Buffer *b, size_t n)
{
        b->off += MIN(n, buffer_pending(b));
        if (b->off == b->len) {
                b->off = b->len = 0;
        }
}

void buffer_done(Buffer *b)
{
        free(b->data);
        *b = (Buffer) {};
}
