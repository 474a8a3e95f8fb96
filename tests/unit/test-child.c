/* SPDX-License-Identifier: MIT */
#include "child.h"
#include "tests.h"

static ChildState step(ChildState s, ChildEvent e, ChildAction expect_action)
{
        ChildAction a = _CHILD_ACTION_MAX;
        int next = child_transition(s, e, &a);

        if (next < 0) {
                fprintf(stderr, "%s --%s--> refused\n", child_state_to_string(s),
                        child_event_to_string(e));
                abort();
        }
        check_inteq(a, expect_action);
        return next;
}

TEST(life)
{
        ChildState s = CHILD_STOPPED;

        s = step(s, CHILD_EVENT_START, CHILD_ACTION_SPAWN);
        check_inteq(s, CHILD_LOADING);
        s = step(s, CHILD_EVENT_HEALTHY, CHILD_ACTION_WATCH);
        check_inteq(s, CHILD_READY);
        s = step(s, CHILD_EVENT_STOP, CHILD_ACTION_TERMINATE);
        check_inteq(s, CHILD_STOPPING);
        s = step(s, CHILD_EVENT_STOP_TIMEOUT, CHILD_ACTION_KILL);
        check_inteq(s, CHILD_STOPPING);
        s = step(s, CHILD_EVENT_EXITED, CHILD_ACTION_CANCEL);
        check_inteq(s, CHILD_STOPPED);
}

TEST(crashes)
{
        /* A crash while ready backs off, then loads again. */
        check_inteq(step(CHILD_READY, CHILD_EVENT_EXITED, CHILD_ACTION_BACKOFF), CHILD_BACKOFF);
        check_inteq(step(CHILD_LOADING, CHILD_EVENT_EXITED, CHILD_ACTION_BACKOFF), CHILD_BACKOFF);
        check_inteq(step(CHILD_BACKOFF, CHILD_EVENT_BACKOFF_DONE, CHILD_ACTION_SPAWN),
                    CHILD_LOADING);
        /* The start limit: failed, and it stays down. */
        check_inteq(step(CHILD_READY, CHILD_EVENT_EXITED_FATAL, CHILD_ACTION_FAIL), CHILD_FAILED);
        check_inteq(step(CHILD_LOADING, CHILD_EVENT_EXITED_FATAL, CHILD_ACTION_FAIL), CHILD_FAILED);
        /* A hung load is taken down, then failed. */
        check_inteq(step(CHILD_LOADING, CHILD_EVENT_LOAD_TIMEOUT, CHILD_ACTION_TERMINATE),
                    CHILD_KILLING);
        check_inteq(step(CHILD_KILLING, CHILD_EVENT_STOP_TIMEOUT, CHILD_ACTION_KILL),
                    CHILD_KILLING);
        check_inteq(step(CHILD_KILLING, CHILD_EVENT_EXITED_FATAL, CHILD_ACTION_FAIL), CHILD_FAILED);
        /* A child that stops answering /health is taken down and restarted. */
        check_inteq(step(CHILD_READY, CHILD_EVENT_UNHEALTHY, CHILD_ACTION_TERMINATE),
                    CHILD_KILLING);
        check_inteq(step(CHILD_KILLING, CHILD_EVENT_EXITED, CHILD_ACTION_BACKOFF), CHILD_BACKOFF);
        /* An unreadable model fails at once. */
        check_inteq(step(CHILD_LOADING, CHILD_EVENT_SPAWN_FAILED, CHILD_ACTION_FAIL), CHILD_FAILED);
        /* Failed, then asked for again. */
        check_inteq(step(CHILD_FAILED, CHILD_EVENT_START, CHILD_ACTION_SPAWN), CHILD_LOADING);
}

TEST(stops)
{
        /* STOP from every state ends in STOPPED (or on the way to it). */
        check_inteq(step(CHILD_STOPPED, CHILD_EVENT_STOP, CHILD_ACTION_NONE), CHILD_STOPPED);
        check_inteq(step(CHILD_LOADING, CHILD_EVENT_STOP, CHILD_ACTION_TERMINATE), CHILD_STOPPING);
        check_inteq(step(CHILD_KILLING, CHILD_EVENT_STOP, CHILD_ACTION_NONE), CHILD_STOPPING);
        check_inteq(step(CHILD_BACKOFF, CHILD_EVENT_STOP, CHILD_ACTION_CANCEL), CHILD_STOPPED);
        check_inteq(step(CHILD_FAILED, CHILD_EVENT_STOP, CHILD_ACTION_CANCEL), CHILD_STOPPED);
        check_inteq(step(CHILD_STOPPING, CHILD_EVENT_EXITED_FATAL, CHILD_ACTION_CANCEL),
                    CHILD_STOPPED);
        /* A start while stopping waits for the exit. */
        check_inteq(step(CHILD_STOPPING, CHILD_EVENT_START, CHILD_ACTION_NONE), CHILD_STOPPING);
}

TEST(impossible)
{
        ChildAction a;

        /* Events that cannot happen in a state are refused, not guessed at. */
        check(child_transition(CHILD_STOPPED, CHILD_EVENT_EXITED, &a) < 0);
        check(child_transition(CHILD_STOPPED, CHILD_EVENT_HEALTHY, &a) < 0);
        check(child_transition(CHILD_READY, CHILD_EVENT_LOAD_TIMEOUT, &a) < 0);
        check(child_transition(CHILD_FAILED, CHILD_EVENT_EXITED, &a) < 0);
        check(child_transition(CHILD_BACKOFF, CHILD_EVENT_HEALTHY, &a) < 0);
        check(child_transition(_CHILD_STATE_MAX, CHILD_EVENT_START, &a) < 0);
        check(child_transition(CHILD_STOPPED, _CHILD_EVENT_MAX, &a) < 0);
}

TEST(every_state_can_stop_and_start)
{
        for (ChildState s = 0; s < _CHILD_STATE_MAX; s++) {
                ChildAction a;

                check(child_state_to_string(s));
                check(child_transition(s, CHILD_EVENT_STOP, &a) >= 0);
                check(child_transition(s, CHILD_EVENT_START, &a) >= 0);
        }
        for (ChildEvent e = 0; e < _CHILD_EVENT_MAX; e++) {
                check(child_event_to_string(e));
        }
}

TEST(backoff)
{
        check_inteq(child_backoff_usec(USEC_PER_SEC, 1), USEC_PER_SEC);
        check_inteq(child_backoff_usec(USEC_PER_SEC, 2), 2 * USEC_PER_SEC);
        check_inteq(child_backoff_usec(USEC_PER_SEC, 3), 4 * USEC_PER_SEC);
        check_inteq(child_backoff_usec(USEC_PER_SEC, 6), 32 * USEC_PER_SEC);
        check_inteq(child_backoff_usec(USEC_PER_SEC, 7), CHILD_BACKOFF_MAX_USEC);
        check_inteq(child_backoff_usec(USEC_PER_SEC, 1000), CHILD_BACKOFF_MAX_USEC);
        check_inteq(child_backoff_usec(0, 5), 0);
        check_inteq(child_backoff_usec(100 * USEC_PER_MSEC, 4), 800 * USEC_PER_MSEC);
        /* A restart-sec above the cap is kept as it is. */
        check_inteq(child_backoff_usec(120 * USEC_PER_SEC, 3), 120 * USEC_PER_SEC);
}

TEST_MAIN()
