/* SPDX-License-Identifier: MIT */
#include "http-answer.h"
#include "tests.h"

typedef struct Parsed {
        HttpAnswerEvent last; /* HTTP_ANSWER_END or HTTP_ANSWER_ERROR, or MORE if neither */
        int headers;          /* how many times */
        long status;
        char content_type[64];
        long long content_length;
        char body[256];
        size_t body_len;
        const char *error;
} Parsed;

/* Feeds input in pieces of `piece` bytes, as reads would bring it, to a consumer that takes at
 * most `take` body bytes at a time (0: all it is offered); then the end of the connection. */
static Parsed parse(const char *input, bool head, size_t piece, size_t take)
{
        size_t n = strlen(input), fed = 0, off = 0;
        char buf[70 * 1024];
        size_t len = 0;
        Parsed p = { .last = HTTP_ANSWER_MORE };
        HttpAnswer a;
        bool eof = false;

        http_answer_init(&a, head);
        for (;;) {
                size_t skip, dl;
                HttpAnswerEvent e = http_answer_next(&a, buf + off, len - off, &skip, &dl);

                off += skip;
                if (e == HTTP_ANSWER_MORE) {
                        if (eof) {
                                p.last = http_answer_eof(&a);
                                break;
                        }
                        if (fed == n) {
                                eof = true;
                                continue;
                        }
                        memmove(buf, buf + off, len - off);
                        len -= off;
                        off = 0;
                        size_t k = piece ? piece : n;
                        k = k < n - fed ? k : n - fed;
                        check(len + k <= sizeof(buf));
                        memcpy(buf + len, input + fed, k);
                        len += k;
                        fed += k;
                } else if (e == HTTP_ANSWER_HEADERS) {
                        p.headers++;
                        p.status = a.status;
                        snprintf(p.content_type, sizeof(p.content_type), "%s",
                                 a.content_type ? a.content_type : "-");
                        p.content_length = a.content_length;
                } else if (e == HTTP_ANSWER_DATA) {
                        size_t k = take && dl > take ? take : dl;

                        check(dl > 0 && p.body_len + k < sizeof(p.body));
                        memcpy(p.body + p.body_len, buf + off, k);
                        p.body_len += k;
                        http_answer_took(&a, k);
                        off += k;
                } else {
                        p.last = e;
                        break;
                }
        }
        p.error = a.error;
        http_answer_done(&a);
        return p;
}

/* The same answer however it is cut and consumed. */
static void check_answer(const char *input, bool head, HttpAnswerEvent last, long status,
                         const char *type, long long length, const char *body)
{
        static const size_t pieces[] = { 0, 1, 2, 3, 7, 64 }, takes[] = { 0, 1, 4 };

        for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
                for (size_t j = 0; j < sizeof(takes) / sizeof(takes[0]); j++) {
                        Parsed p = parse(input, head, pieces[i], takes[j]);

                        if (p.last != last) {
                                fprintf(stderr, "piece %zu take %zu: %s\n", pieces[i], takes[j],
                                        p.error ? p.error : "(no error)");
                        }
                        check_inteq(p.last, last);
                        if (last == HTTP_ANSWER_ERROR) {
                                continue;
                        }
                        check_inteq(p.headers, 1);
                        check_inteq(p.status, status);
                        check_streq(p.content_type, type);
                        check_inteq(p.content_length, length);
                        p.body[p.body_len] = 0;
                        check_streq(p.body, body);
                }
        }
}

TEST(http_answer_framings)
{
        check_answer(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                "Content-Length: 5\r\n\r\nhello",
                false, HTTP_ANSWER_END, 200, "application/json", 5, "hello");
        /* llama-server's streams: chunked, an event a chunk. */
        check_answer(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                "Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5, max=100\r\n\r\n"
                "5\r\nhello\r\n6;name=value\r\n world\r\nA \r\n and more.\r\n0\r\n\r\n",
                false, HTTP_ANSWER_END, 200, "text/event-stream", -1, "hello world and more.");
        check_answer(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
                "3\r\nabc\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
                false, HTTP_ANSWER_END, 200, "-", -1, "abc");
        /* Bare line feeds; header names in any case; blanks around values. */
        check_answer("HTTP/1.0 404 Not Found\ncontent-type:\t text/plain \nCONTENT-LENGTH: 2\n\nno",
                     false, HTTP_ANSWER_END, 404, "text/plain", 2, "no");
        /* Transfer-Encoding wins over Content-Length. */
        check_answer(
                "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
                "2\r\nok\r\n0\r\n\r\n",
                false, HTTP_ANSWER_END, 200, "-", -1, "ok");
        /* A 100 Continue first, then the answer. */
        check_answer(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew",
                false, HTTP_ANSWER_END, 201, "-", 3, "new");
        /* No body: HEAD (its Content-Length is the GET's), 204, 304, a length of 0. */
        check_answer("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, HTTP_ANSWER_END, 200,
                     "-", 10, "");
        check_answer("HTTP/1.1 204 No Content\r\n\r\n", false, HTTP_ANSWER_END, 204, "-", -1, "");
        check_answer("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", false,
                     HTTP_ANSWER_END, 304, "-", 7, "");
        check_answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, HTTP_ANSWER_END, 200,
                     "-", 0, "");
        /* Neither length nor chunks: up to the end of the connection. */
        check_answer("HTTP/1.1 200 OK\r\n\r\nuntil the end", false, HTTP_ANSWER_END, 200, "-", -1,
                     "until the end");
        /* What follows the end is not read. */
        check_answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 No\r\n\r\n", false,
                     HTTP_ANSWER_END, 200, "-", 2, "ok");
}

TEST(http_answer_broken)
{
        static const char *const broken[] = {
                "",                                                /* closed before an answer */
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", /* cut short */
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", /* no 0 */
                "HTTP/1.1 200 OK\r\nContent-Len", /* cut in the headers */
                "SSH-2.0-OpenSSH\r\n\r\n",
                "HTTP/1.1 20 OK\r\n\r\n",
                "HTTP/1.1 600 What\r\n\r\n",
                "HTTP/1.1 200OK\r\n\r\n",
                "HTTP/2 200 OK\r\n\r\n",
                "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                "HTTP/1.1 200 OK\r\n: no name\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
        };

        for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
                for (size_t piece = 0; piece < 4; piece++) {
                        Parsed p = parse(broken[i], false, piece, 0);

                        if (p.last != HTTP_ANSWER_ERROR) {
                                fprintf(stderr, "taken: %s\n", broken[i]);
                        }
                        check_inteq(p.last, HTTP_ANSWER_ERROR);
                        check(p.error && *p.error);
                }
        }
}

TEST(http_answer_limits)
{
        /* Headers without an end: refused at 64 KiB, not read forever. */
        static char big[HTTP_ANSWER_HEAD_MAX + 64];
        Parsed p;

        memset(big, 'x', sizeof(big) - 1);
        memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
        p = parse(big, false, 4096, 0);
        check_inteq(p.last, HTTP_ANSWER_ERROR);
        check_streq(p.error, "headers too long");
        /* A chunk-size line without an end likewise, at 1 KiB. */
        memset(big, '0', 2048);
        big[2048] = 0;
        {
                char answer[4096];

                snprintf(answer, sizeof(answer),
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s", big);
                p = parse(answer, false, 512, 0);
                check_inteq(p.last, HTTP_ANSWER_ERROR);
                check_streq(p.error, "a chunk size line too long");
                /* And with its end, read at once or in pieces alike. */
                snprintf(answer, sizeof(answer),
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s5\r\nhello\r\n"
                         "0\r\n\r\n",
                         big);
                for (size_t piece = 0; piece <= 512; piece += 512) {
                        p = parse(answer, false, piece, 0);
                        check_inteq(p.last, HTTP_ANSWER_ERROR);
                        check_streq(p.error, "a chunk size line too long");
                }
        }
}

TEST_MAIN()
