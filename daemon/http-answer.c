/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http-answer.h"
#include "macro.h"

enum { PHASE_HEAD, PHASE_BODY, PHASE_END, PHASE_ERROR };
enum { FRAMING_NONE, FRAMING_LENGTH, FRAMING_CHUNKED, FRAMING_CLOSE };
enum { CHUNK_SIZE, CHUNK_DATA, CHUNK_DATA_END, CHUNK_TRAILERS };

#define CHUNK_LINE_MAX 1024
#define BODY_LENGTH_MAX ((uint64_t) 1 << 60)

void http_answer_init(HttpAnswer *a, bool head_request)
{
        *a = (HttpAnswer) { .head_request = head_request, .content_length = -1 };
}

void http_answer_done(HttpAnswer *a)
{
        free(a->content_type);
        a->content_type = NULL;
}

static HttpAnswerEvent http_answer_fail(HttpAnswer *a, const char *why)
{
        a->phase = PHASE_ERROR;
        a->error = why;
        return HTTP_ANSWER_ERROR;
}

/* Where the blank line that ends the head ends, or 0. */
static size_t head_end(const char *p, size_t n)
{
        for (size_t i = 1; i < n; i++) {
                if (p[i] == '\n' &&
                    (p[i - 1] == '\n' || (i >= 2 && p[i - 1] == '\r' && p[i - 2] == '\n'))) {
                        return i + 1;
                }
        }
        return 0;
}

/* Whole decimal digits, at most BODY_LENGTH_MAX; -1 otherwise. */
static int64_t parse_length(const char *v, size_t l)
{
        uint64_t x = 0;

        if (l == 0) {
                return -1;
        }
        for (size_t i = 0; i < l; i++) {
                if (v[i] < '0' || v[i] > '9') {
                        return -1;
                }
                x = x * 10 + (uint64_t) (v[i] - '0');
                if (x > BODY_LENGTH_MAX) {
                        return -1;
                }
        }
        return (int64_t) x;
}

/* Whether the last of a comma-separated list of codings is "chunked". */
static bool last_coding_chunked(const char *v, size_t l)
{
        const char *comma = memrchr(v, ',', l);

        if (comma) {
                l -= (size_t) (comma + 1 - v);
                v = comma + 1;
        }
        while (l > 0 && (*v == ' ' || *v == '\t')) {
                v++, l--;
        }
        return l == 7 && strncasecmp(v, "chunked", 7) == 0;
}

static HttpAnswerEvent parse_head(HttpAnswer *a, const char *p, size_t end)
{
        const char *line = p, *stop = p + end;
        bool chunked = false, coded = false, keep_alive = false;
        int64_t length = -1;

        free(a->content_type);
        a->content_type = NULL;
        while (line < stop) {
                const char *nl = memchr(line, '\n', (size_t) (stop - line));
                size_t l = (size_t) (nl - line);

                if (l > 0 && line[l - 1] == '\r') {
                        l--;
                }
                if (line == p) {
                        /* HTTP/1.x NNN reason */
                        if (l < 12 || strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ' ||
                            !(line[9] >= '1' && line[9] <= '5') || line[10] < '0' ||
                            line[10] > '9' || line[11] < '0' || line[11] > '9' ||
                            (l > 12 && line[12] != ' ')) {
                                return http_answer_fail(a, "not an HTTP/1 status line");
                        }
                        a->status =
                                (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
                        a->close = line[7] == '0';
                } else if (l > 0) {
                        const char *colon = memchr(line, ':', l);
                        const char *v;
                        size_t nl_name, vl;

                        if (!colon || colon == line) {
                                return http_answer_fail(a, "a header line without a name");
                        }
                        nl_name = (size_t) (colon - line);
                        v = colon + 1;
                        vl = l - nl_name - 1;
                        while (vl > 0 && (*v == ' ' || *v == '\t')) {
                                v++, vl--;
                        }
                        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
                                vl--;
                        }
                        if (nl_name == 12 && strncasecmp(line, "content-type", 12) == 0) {
                                free(a->content_type);
                                a->content_type = strndup(v, vl);
                        } else if (nl_name == 14 && strncasecmp(line, "content-length", 14) == 0) {
                                int64_t x = parse_length(v, vl);

                                if (x < 0 || (length >= 0 && x != length)) {
                                        return http_answer_fail(a, "a bad Content-Length");
                                }
                                length = x;
                        } else if (nl_name == 17 &&
                                   strncasecmp(line, "transfer-encoding", 17) == 0) {
                                coded = true;
                                chunked = last_coding_chunked(v, vl);
                        } else if (nl_name == 10 && strncasecmp(line, "connection", 10) == 0) {
                                if (vl == 5 && strncasecmp(v, "close", 5) == 0) {
                                        a->close = true;
                                } else if (vl == 10 && strncasecmp(v, "keep-alive", 10) == 0) {
                                        keep_alive = true;
                                }
                        }
                }
                line = nl + 1;
        }
        if (a->status < 200) {
                a->close = false;
                return HTTP_ANSWER_MORE; /* 1xx: the answer comes after it */
        }
        if (keep_alive && p[7] == '0') {
                a->close = false;
        }
        a->content_length = coded ? -1 : length;
        if (a->head_request || a->status == 204 || a->status == 304) {
                a->framing = FRAMING_NONE;
        } else if (coded) {
                /* chunked last, or else the body runs to the end of the connection */
                a->framing = chunked ? FRAMING_CHUNKED : FRAMING_CLOSE;
                a->chunk = CHUNK_SIZE;
        } else if (length >= 0) {
                a->framing = FRAMING_LENGTH;
                a->left = (uint64_t) length;
        } else {
                a->framing = FRAMING_CLOSE;
        }
        a->phase = PHASE_BODY;
        return HTTP_ANSWER_HEADERS;
}

/* A chunk-size line: hex digits, then extensions or blanks up to its end; -1 if malformed. */
static int64_t parse_chunk_size(const char *p, size_t l)
{
        uint64_t x = 0;
        size_t i = 0;

        for (; i < l; i++) {
                int d = p[i] >= '0' && p[i] <= '9'   ? p[i] - '0'
                        : p[i] >= 'a' && p[i] <= 'f' ? p[i] - 'a' + 10
                        : p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 10
                                                     : -1;
                if (d < 0) {
                        break;
                }
                x = x * 16 + (uint64_t) d;
                if (x > BODY_LENGTH_MAX) {
                        return -1;
                }
        }
        if (i == 0) {
                return -1;
        }
        for (; i < l; i++) {
                if (p[i] == ';') {
                        break; /* an extension: ignored */
                }
                if (p[i] != ' ' && p[i] != '\t') {
                        return -1;
                }
        }
        return (int64_t) x;
}

static HttpAnswerEvent next_chunked(HttpAnswer *a, const char *p, size_t n, size_t *skip,
                                    size_t *data_len)
{
        size_t off = 0;

        for (;;) {
                switch (a->chunk) {
                case CHUNK_SIZE: {
                        const char *nl = memchr(p + off, '\n', n - off);
                        int64_t size;
                        size_t l;

                        if (!nl) {
                                if (n - off > CHUNK_LINE_MAX) {
                                        return http_answer_fail(a, "a chunk size line too long");
                                }
                                *skip = off;
                                return HTTP_ANSWER_MORE;
                        }
                        l = (size_t) (nl - (p + off));
                        if (l > CHUNK_LINE_MAX) {
                                /* As refused when it comes in pieces. */
                                return http_answer_fail(a, "a chunk size line too long");
                        }
                        size = parse_chunk_size(p + off,
                                                l > 0 && p[off + l - 1] == '\r' ? l - 1 : l);
                        if (size < 0) {
                                return http_answer_fail(a, "a bad chunk size");
                        }
                        off += l + 1;
                        a->left = (uint64_t) size;
                        a->chunk = size == 0 ? CHUNK_TRAILERS : CHUNK_DATA;
                        break;
                }
                case CHUNK_DATA:
                        *skip = off;
                        if (off == n) {
                                return HTTP_ANSWER_MORE;
                        }
                        *data_len = (size_t) MIN((uint64_t) (n - off), a->left);
                        return HTTP_ANSWER_DATA;
                case CHUNK_DATA_END:
                        if (off < n && p[off] == '\n') {
                                off++;
                        } else if (off + 1 < n && p[off] == '\r' && p[off + 1] == '\n') {
                                off += 2;
                        } else if (off == n || (off + 1 == n && p[off] == '\r')) {
                                *skip = off;
                                return HTTP_ANSWER_MORE;
                        } else {
                                return http_answer_fail(a, "a chunk longer than its size");
                        }
                        a->chunk = CHUNK_SIZE;
                        break;
                case CHUNK_TRAILERS: {
                        const char *nl = memchr(p + off, '\n', n - off);
                        size_t l;

                        if (!nl) {
                                if (n - off > HTTP_ANSWER_HEAD_MAX) {
                                        return http_answer_fail(a, "trailers too long");
                                }
                                *skip = off;
                                return HTTP_ANSWER_MORE;
                        }
                        l = (size_t) (nl - (p + off));
                        off += l + 1;
                        if (l == 0 || (l == 1 && p[off - 2] == '\r')) {
                                a->phase = PHASE_END;
                                *skip = off;
                                return HTTP_ANSWER_END;
                        }
                        break;
                }
                default:
                        return http_answer_fail(a, "a bug");
                }
        }
}

HttpAnswerEvent http_answer_next(HttpAnswer *a, const char *p, size_t n, size_t *skip,
                                 size_t *data_len)
{
        *skip = 0;
        *data_len = 0;
        switch (a->phase) {
        case PHASE_HEAD: {
                size_t end = head_end(p, MIN(n, (size_t) HTTP_ANSWER_HEAD_MAX));
                HttpAnswerEvent e;

                if (end == 0) {
                        if (n >= HTTP_ANSWER_HEAD_MAX) {
                                return http_answer_fail(a, "headers too long");
                        }
                        return HTTP_ANSWER_MORE;
                }
                e = parse_head(a, p, end);
                if (e == HTTP_ANSWER_MORE) {
                        /* After a 1xx, the answer proper: maybe already here. */
                        e = http_answer_next(a, p + end, n - end, skip, data_len);
                        *skip += end;
                        return e;
                }
                *skip = end;
                return e;
        }
        case PHASE_BODY:
                switch (a->framing) {
                case FRAMING_NONE:
                        a->phase = PHASE_END;
                        return HTTP_ANSWER_END;
                case FRAMING_LENGTH:
                        if (a->left == 0) {
                                a->phase = PHASE_END;
                                return HTTP_ANSWER_END;
                        }
                        if (n == 0) {
                                return HTTP_ANSWER_MORE;
                        }
                        *data_len = (size_t) MIN((uint64_t) n, a->left);
                        return HTTP_ANSWER_DATA;
                case FRAMING_CLOSE:
                        if (n == 0) {
                                return HTTP_ANSWER_MORE;
                        }
                        *data_len = n;
                        return HTTP_ANSWER_DATA;
                case FRAMING_CHUNKED:
                        return next_chunked(a, p, n, skip, data_len);
                default:
                        return http_answer_fail(a, "a bug");
                }
        case PHASE_END:
                return HTTP_ANSWER_END;
        default:
                return HTTP_ANSWER_ERROR;
        }
}

void http_answer_took(HttpAnswer *a, size_t k)
{
        if (a->phase != PHASE_BODY || a->framing == FRAMING_CLOSE) {
                return;
        }
        a->left -= MIN((uint64_t) k, a->left);
        if (a->framing == FRAMING_CHUNKED && a->left == 0) {
                a->chunk = CHUNK_DATA_END;
        }
}

bool http_answer_reusable(const HttpAnswer *a)
{
        /* Not after a 204 or 304 that gave a length: a server that sends that body anyway would
         * have it read as the next request's answer. */
        return a->phase == PHASE_END && !a->close &&
               (a->framing == FRAMING_LENGTH ||
                (a->framing == FRAMING_NONE && (a->head_request || a->content_length <= 0)));
}

HttpAnswerEvent http_answer_eof(HttpAnswer *a)
{
        if (a->phase == PHASE_END || (a->phase == PHASE_BODY && a->framing == FRAMING_CLOSE)) {
                a->phase = PHASE_END;
                return HTTP_ANSWER_END;
        }
        if (a->phase == PHASE_ERROR) {
                return HTTP_ANSWER_ERROR;
        }
        return http_answer_fail(a, a->phase == PHASE_HEAD
                                           ? "the connection closed before an answer"
                                           : "the connection closed before the end of the answer");
}
