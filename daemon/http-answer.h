/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * An HTTP/1.1 answer read from a child, one piece at a time: the status line and headers, then
 * the body as its framing says (Content-Length, chunked, or up to the end of the connection),
 * with the chunked framing taken off. It allocates nothing but the Content-Type and copies no
 * body byte: the caller passes what it has read and is told what to skip and where body bytes
 * are, and says how many of those it took (a consumer that cannot take them now leaves them
 * where they are, for later).
 */

#define HTTP_ANSWER_HEAD_MAX (64 * 1024) /* status line and headers together */

typedef enum HttpAnswerEvent {
        HTTP_ANSWER_MORE,    /* skip the bytes said, then read more */
        HTTP_ANSWER_HEADERS, /* status, content_type and content_length are set */
        HTTP_ANSWER_DATA,    /* body bytes after the skipped ones; http_answer_took() them */
        HTTP_ANSWER_END,     /* the answer is complete */
        HTTP_ANSWER_ERROR,   /* malformed: error says how */
} HttpAnswerEvent;

typedef struct HttpAnswer {
        int phase;
        int framing;
        int chunk;
        bool head_request; /* an answer to HEAD has no body, whatever its headers say */
        uint64_t left;     /* of the Content-Length, or of this chunk */
        long status;
        char *content_type;     /* NULL when there was none */
        int64_t content_length; /* -1 when not given (chunked, or to the end) */
        bool close;             /* "Connection: close", or HTTP/1.0 without keep-alive */
        const char *error;
} HttpAnswer;

void http_answer_init(HttpAnswer *a, bool head_request);
void http_answer_done(HttpAnswer *a);

/* What the n bytes at p (the first that were not skipped or taken before) hold next. *skip:
 * bytes of headers or framing, consumed; with HTTP_ANSWER_DATA, *data_len body bytes follow
 * them. Called again with what is left (and anything read since). */
HttpAnswerEvent http_answer_next(HttpAnswer *a, const char *p, size_t n, size_t *skip,
                                 size_t *data_len);
/* The consumer took k of the body bytes HTTP_ANSWER_DATA offered. */
void http_answer_took(HttpAnswer *a, size_t k);
/* Whether, once it has ended, the connection may carry another request: its length was given
 * and it did not say close. */
bool http_answer_reusable(const HttpAnswer *a);
/* The connection ended: HTTP_ANSWER_END if that is where the answer ends (a body that runs
 * to the end of the connection), else HTTP_ANSWER_ERROR. */
HttpAnswerEvent http_answer_eof(HttpAnswer *a);
