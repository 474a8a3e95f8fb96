/* SPDX-License-Identifier: MIT */
#include "macro.h"
#include "serving.h"
#include "tests.h"

/*
 * The residency machine's whole table, written out again here cell by cell: a change to
 * serving.c's table that this does not also say fails the test. "-" is an event that cannot
 * happen in that state (refused, not guessed at).
 */

#define A SERVING_ABSENT
#define L SERVING_LOADING
#define R SERVING_READY
#define D SERVING_DRAINING
#define V SERVING_SAVING
#define S SERVING_STOPPING
#define F SERVING_FAILED

typedef struct Cell {
        int next; /* -1: refused */
        ServingAction action;
} Cell;

#define X                               \
        {                               \
                -1, SERVING_ACTION_NONE \
        }
#define C(n, a)                       \
        {                             \
                n, SERVING_ACTION_##a \
        }

/* clang-format off */
static const Cell expected[_SERVING_STATE_MAX][_SERVING_EVENT_MAX] = {
        /*           LOAD          UNLOAD        STOP          KILL          DRAINED       READY         CRASHED       FAILED        DOWN          SAVED */
        [A] = { C(L, START), C(A, NONE),  C(A, NONE),  C(A, NONE),  X,            X,            X,            X,            C(A, NONE),   X },
        [L] = { C(L, NONE),  C(S, STOP),  C(S, STOP),  C(S, KILL),  X,            C(R, NONE),   C(L, NONE),   C(F, STOP),   C(A, NONE),   X },
        [R] = { C(R, NONE),  C(D, DRAIN), C(V, SAVE),  C(S, KILL),  X,            C(R, NONE),   C(L, NONE),   C(F, STOP),   C(A, NONE),   X },
        [D] = { C(D, NONE),  C(D, NONE),  C(V, SAVE),  C(S, KILL),  C(V, SAVE),   C(D, NONE),   C(S, STOP),   C(S, STOP),   C(A, NONE),   X },
        [V] = { C(V, NONE),  C(V, NONE),  C(V, NONE),  C(S, KILL),  C(V, NONE),   C(V, NONE),   C(S, STOP),   C(S, STOP),   C(A, NONE),   C(S, STOP) },
        [S] = { C(S, NONE),  C(S, NONE),  C(S, NONE),  C(S, KILL),  C(S, NONE),   C(S, NONE),   C(S, STOP),   C(S, STOP),   C(A, NONE),   X },
        [F] = { C(L, START), C(A, STOP),  C(A, STOP),  C(A, STOP),  X,            X,            X,            C(F, STOP),   C(F, NONE),   X },
};
/* clang-format on */

TEST(every_cell)
{
        unsigned cells = 0;

        for (int s = 0; s < _SERVING_STATE_MAX; s++) {
                for (int e = 0; e < _SERVING_EVENT_MAX; e++) {
                        ServingAction a = _SERVING_ACTION_MAX;
                        int next = serving_transition(s, e, &a);

                        if ((next < 0) != (expected[s][e].next < 0) ||
                            (next >= 0 &&
                             (next != expected[s][e].next || a != expected[s][e].action))) {
                                fprintf(stderr, "%s --%s--> %s/%s, expected %s/%s\n",
                                        serving_state_to_string(s), serving_event_to_string(e),
                                        next < 0 ? "refused" : serving_state_to_string(next),
                                        next < 0 ? "-" : serving_action_to_string(a),
                                        expected[s][e].next < 0
                                                ? "refused"
                                                : serving_state_to_string(expected[s][e].next),
                                        serving_action_to_string(expected[s][e].action));
                                abort();
                        }
                        cells++;
                }
        }
        check_inteq(cells, _SERVING_STATE_MAX * _SERVING_EVENT_MAX);
}

TEST(out_of_range)
{
        ServingAction a;

        check(serving_transition(_SERVING_STATE_MAX, SERVING_EVENT_LOAD, &a) < 0);
        check(serving_transition(_SERVING_STATE_INVALID, SERVING_EVENT_LOAD, &a) < 0);
        check(serving_transition(SERVING_ABSENT, _SERVING_EVENT_MAX, &a) < 0);
}

/* Lives as sequences of events: what an unload, a failed switch and a reload do. */
static ServingState run(ServingState s, const ServingEvent *events, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                ServingAction a;
                int next = serving_transition(s, events[i], &a);

                check(next >= 0);
                s = next;
        }
        return s;
}

TEST(lives)
{
        /* Loaded, unloaded: drained first, then stopped, then gone. */
        static const ServingEvent unload[] = { SERVING_EVENT_LOAD, SERVING_EVENT_READY,
                                               SERVING_EVENT_UNLOAD, SERVING_EVENT_DRAINED,
                                               SERVING_EVENT_DOWN };
        /* A switch gives up on a load that crashed: it stays failed when its child is down. */
        static const ServingEvent failed[] = { SERVING_EVENT_LOAD, SERVING_EVENT_CRASHED,
                                               SERVING_EVENT_FAILED, SERVING_EVENT_DOWN };
        /* A crash while ready: loading again by itself, then ready. */
        static const ServingEvent crash[] = { SERVING_EVENT_LOAD, SERVING_EVENT_READY,
                                              SERVING_EVENT_CRASHED, SERVING_EVENT_READY };
        /* A request (a LOAD) for a model draining waits: it loads anew only once down. */
        static const ServingEvent again[] = { SERVING_EVENT_LOAD,    SERVING_EVENT_READY,
                                              SERVING_EVENT_UNLOAD,  SERVING_EVENT_LOAD,
                                              SERVING_EVENT_DRAINED, SERVING_EVENT_DOWN,
                                              SERVING_EVENT_LOAD };

        check_inteq(run(SERVING_ABSENT, unload, ELEMENTSOF(unload)), SERVING_ABSENT);
        check_inteq(run(SERVING_ABSENT, failed, ELEMENTSOF(failed)), SERVING_FAILED);
        check_inteq(run(SERVING_ABSENT, crash, ELEMENTSOF(crash)), SERVING_READY);
        check_inteq(run(SERVING_ABSENT, again, ELEMENTSOF(again)), SERVING_LOADING);
}

TEST(words)
{
        check(serving_state_resident(SERVING_READY) && serving_state_resident(SERVING_LOADING));
        check(!serving_state_resident(SERVING_DRAINING) &&
              !serving_state_resident(SERVING_STOPPING));
        check(serving_state_running(SERVING_DRAINING) && !serving_state_running(SERVING_FAILED));
        check_streq(serving_state_word(SERVING_DRAINING), "unloading");
        check_streq(serving_state_word(SERVING_READY), "loaded");
        for (int w = 0; w < _SERVING_WHY_MAX; w++) {
                check(serving_why_to_string(w) != NULL);
        }
        for (int a = 0; a < _SERVING_ACTION_MAX; a++) {
                check(serving_action_to_string(a) != NULL);
        }
}

TEST_MAIN()
