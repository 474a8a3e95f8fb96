/* SPDX-License-Identifier: MIT */
/* The control socket's framing and message parsing get whatever a peer sends. */
#include "varlink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        VarlinkReader r;
        const char *frame;
        size_t len;

        varlink_reader_init(&r);
        /* Fed in two pieces, split where the first byte says, as reads would split it. */
        size_t cut = size > 0 ? data[0] % (size + 1) : 0;
        if (varlink_reader_feed(&r, data, cut) == 0 &&
            varlink_reader_feed(&r, data + cut, size - cut) == 0) {
                while (varlink_reader_next(&r, &frame, &len) == 1) {
                        VarlinkCall c;
                        VarlinkReply rep;

                        if (varlink_call_parse(frame, len, &c) == 0) {
                                varlink_call_done(&c);
                        }
                        if (varlink_reply_parse(frame, len, &rep) == 0) {
                                varlink_reply_done(&rep);
                        }
                }
        }
        varlink_reader_done(&r);
        return 0;
}
