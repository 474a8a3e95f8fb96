/* SPDX-License-Identifier: MIT */
/* The proxy's reader of a child's answers: every byte a child sends goes through it. The input
 * is read in pieces of its first byte's size, the body taken three bytes at a time. */
#include "http-answer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        size_t piece = size > 0 ? (size_t) data[0] + 1 : 1, fed = 0, off = 0;
        const char *p = (const char *) data;
        uint64_t body = 0;
        HttpAnswer a;

        http_answer_init(&a, size > 1 && data[1] == 'H');
        for (;;) {
                size_t skip, n;
                size_t avail = fed - off;
                HttpAnswerEvent e = http_answer_next(&a, p + off, avail, &skip, &n);

                if (skip > avail || (e == HTTP_ANSWER_DATA && (n == 0 || skip + n > avail))) {
                        __builtin_trap(); /* never past what it was given */
                }
                off += skip;
                if (e == HTTP_ANSWER_DATA) {
                        size_t k = n < 3 ? n : 3;

                        http_answer_took(&a, k);
                        off += k;
                        body += k;
                } else if (e == HTTP_ANSWER_MORE) {
                        if (fed == size) {
                                e = http_answer_eof(&a);
                                if (e == HTTP_ANSWER_ERROR && !a.error) {
                                        __builtin_trap();
                                }
                                break;
                        }
                        fed += piece < size - fed ? piece : size - fed;
                } else if (e == HTTP_ANSWER_ERROR) {
                        if (!a.error) {
                                __builtin_trap(); /* a refusal says why */
                        }
                        break;
                } else if (e == HTTP_ANSWER_END) {
                        break;
                }
                if (body > size) {
                        __builtin_trap(); /* no body byte that was not sent */
                }
        }
        http_answer_done(&a);
        return 0;
}
