/* SPDX-License-Identifier: MIT */
#include <errno.h>

#include "macro.h"
#include "proxy-request.h"
#include "tests.h"

/* The whole table, written out: a change to request_transition() must change this too. */
static const struct {
        RequestState from;
        RequestEvent event;
        RequestState to;
} allowed[] = {
        { REQ_RECEIVING, REQ_EVENT_ANSWER, REQ_ANSWERED },
        { REQ_RECEIVING, REQ_EVENT_HOLD, REQ_HELD },
        { REQ_RECEIVING, REQ_EVENT_FORWARD, REQ_FORWARDED },
        { REQ_HELD, REQ_EVENT_ANSWER, REQ_ANSWERED },
        { REQ_HELD, REQ_EVENT_FORWARD, REQ_FORWARDED },
        { REQ_HELD, REQ_EVENT_GONE, REQ_ANSWERED },
        { REQ_FORWARDED, REQ_EVENT_HEADERS, REQ_RELAYING },
        { REQ_FORWARDED, REQ_EVENT_UPSTREAM_END, REQ_ANSWERED },
        { REQ_FORWARDED, REQ_EVENT_STALL, REQ_ANSWERED },
        { REQ_FORWARDED, REQ_EVENT_CUT_OFF, REQ_ANSWERED },
        { REQ_FORWARDED, REQ_EVENT_GONE, REQ_ANSWERED },
        { REQ_RELAYING, REQ_EVENT_UPSTREAM_END, REQ_FLUSHING },
        { REQ_RELAYING, REQ_EVENT_STALL, REQ_FLUSHING },
        { REQ_RELAYING, REQ_EVENT_CUT_OFF, REQ_FLUSHING },
        { REQ_RELAYING, REQ_EVENT_GONE, REQ_FLUSHING },
};

TEST(table)
{
        for (int s = 0; s < _REQ_STATE_MAX; s++) {
                for (int e = 0; e < _REQ_EVENT_MAX; e++) {
                        int want = -EINVAL;

                        for (size_t i = 0; i < ELEMENTSOF(allowed); i++) {
                                if (allowed[i].from == (RequestState) s &&
                                    allowed[i].event == (RequestEvent) e) {
                                        want = (int) allowed[i].to;
                                }
                        }
                        if (request_transition(s, e) != want) {
                                fprintf(stderr, "%s --%s--> %d, expected %d\n",
                                        request_state_to_string(s), request_event_to_string(e),
                                        request_transition(s, e), want);
                                abort();
                        }
                }
        }
        check(request_transition(_REQ_STATE_MAX, REQ_EVENT_ANSWER) == -EINVAL);
        check(request_transition(REQ_HELD, _REQ_EVENT_MAX) == -EINVAL);
}

TEST(names)
{
        for (int s = 0; s < _REQ_STATE_MAX; s++) {
                check(request_state_to_string(s) != NULL);
        }
        for (int e = 0; e < _REQ_EVENT_MAX; e++) {
                check(request_event_to_string(e) != NULL);
        }
}

TEST(life)
{
        /* A stream: held while its model loads, forwarded, relayed, done. */
        int s = REQ_RECEIVING;

        s = request_transition(s, REQ_EVENT_HOLD);
        s = request_transition(s, REQ_EVENT_FORWARD);
        s = request_transition(s, REQ_EVENT_HEADERS);
        s = request_transition(s, REQ_EVENT_UPSTREAM_END);
        check_inteq(s, REQ_FLUSHING);
        /* Nothing moves a finished request. */
        for (int e = 0; e < _REQ_EVENT_MAX; e++) {
                check(request_transition(REQ_FLUSHING, e) == -EINVAL);
                check(request_transition(REQ_ANSWERED, e) == -EINVAL);
        }
}

TEST_MAIN()
