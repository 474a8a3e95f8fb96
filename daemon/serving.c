/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include "serving.h"

static const char *const state_table[_SERVING_STATE_MAX] = {
        [SERVING_ABSENT] = "absent", [SERVING_LOADING] = "loading",
        [SERVING_READY] = "ready",   [SERVING_DRAINING] = "draining",
        [SERVING_SAVING] = "saving", [SERVING_STOPPING] = "stopping",
        [SERVING_FAILED] = "failed",
};

static const char *const event_table[_SERVING_EVENT_MAX] = {
        [SERVING_EVENT_LOAD] = "load",       [SERVING_EVENT_UNLOAD] = "unload",
        [SERVING_EVENT_STOP] = "stop",       [SERVING_EVENT_KILL] = "kill",
        [SERVING_EVENT_DRAINED] = "drained", [SERVING_EVENT_READY] = "ready",
        [SERVING_EVENT_CRASHED] = "crashed", [SERVING_EVENT_FAILED] = "failed",
        [SERVING_EVENT_DOWN] = "down",       [SERVING_EVENT_SAVED] = "saved",
};

static const char *const action_table[_SERVING_ACTION_MAX] = {
        [SERVING_ACTION_NONE] = "none",   [SERVING_ACTION_START] = "start",
        [SERVING_ACTION_DRAIN] = "drain", [SERVING_ACTION_SAVE] = "save",
        [SERVING_ACTION_STOP] = "stop",   [SERVING_ACTION_KILL] = "kill",
};

static const char *const why_table[_SERVING_WHY_MAX] = {
        [SERVING_WHY_NONE] = "none",       [SERVING_WHY_EVICT] = "evicted",
        [SERVING_WHY_UNLOAD] = "unload",   [SERVING_WHY_IDLE] = "unload-after",
        [SERVING_WHY_TRIM] = "trim",       [SERVING_WHY_RELOAD] = "reload",
        [SERVING_WHY_REMOVED] = "removed", [SERVING_WHY_SUPERSEDED] = "superseded",
        [SERVING_WHY_STOP] = "stop",       [SERVING_WHY_FAILED] = "failed",
};

/* clang-format off */
#define T(s, a) { .valid = true, .next = (s), .action = (a) }
static const struct {
        bool valid;
        ServingState next;
        ServingAction action;
} transitions[_SERVING_STATE_MAX][_SERVING_EVENT_MAX] = {
        [SERVING_ABSENT] = {
                [SERVING_EVENT_LOAD]    = T(SERVING_LOADING,  SERVING_ACTION_START),
                [SERVING_EVENT_UNLOAD]  = T(SERVING_ABSENT,   SERVING_ACTION_NONE),
                [SERVING_EVENT_STOP]    = T(SERVING_ABSENT,   SERVING_ACTION_NONE),
                [SERVING_EVENT_KILL]    = T(SERVING_ABSENT,   SERVING_ACTION_NONE),
                [SERVING_EVENT_DOWN]    = T(SERVING_ABSENT,   SERVING_ACTION_NONE),
        },
        [SERVING_LOADING] = {
                [SERVING_EVENT_LOAD]    = T(SERVING_LOADING,  SERVING_ACTION_NONE),
                /* Nothing runs on a model that is not ready: no drain. */
                [SERVING_EVENT_UNLOAD]  = T(SERVING_STOPPING, SERVING_ACTION_STOP),
                [SERVING_EVENT_STOP]    = T(SERVING_STOPPING, SERVING_ACTION_STOP),
                [SERVING_EVENT_KILL]    = T(SERVING_STOPPING, SERVING_ACTION_KILL),
                [SERVING_EVENT_READY]   = T(SERVING_READY,    SERVING_ACTION_NONE),
                [SERVING_EVENT_CRASHED] = T(SERVING_LOADING,  SERVING_ACTION_NONE),
                /* Failed for good, or given up on: a child waiting to restart is stopped. */
                [SERVING_EVENT_FAILED]  = T(SERVING_FAILED,   SERVING_ACTION_STOP),
                [SERVING_EVENT_DOWN]    = T(SERVING_ABSENT,   SERVING_ACTION_NONE),
        },
        [SERVING_READY] = {
                [SERVING_EVENT_LOAD]    = T(SERVING_READY,    SERVING_ACTION_NONE),
                [SERVING_EVENT_UNLOAD]  = T(SERVING_DRAINING, SERVING_ACTION_DRAIN),
                /* Its requests end with the process; the slots that are idle are saved. */
                [SERVING_EVENT_STOP]    = T(SERVING_SAVING,   SERVING_ACTION_SAVE),
                [SERVING_EVENT_KILL]    = T(SERVING_STOPPING, SERVING_ACTION_KILL),
                [SERVING_EVENT_READY]   = T(SERVING_READY,    SERVING_ACTION_NONE),
                [SERVING_EVENT_CRASHED] = T(SERVING_LOADING,  SERVING_ACTION_NONE),
                [SERVING_EVENT_FAILED]  = T(SERVING_FAILED,   SERVING_ACTION_STOP),
                [SERVING_EVENT_DOWN]    = T(SERVING_ABSENT,   SERVING_ACTION_NONE),
        },
        [SERVING_DRAINING] = {
                /* A request or a switch for it waits until it is down, then loads it anew. */
                [SERVING_EVENT_LOAD]    = T(SERVING_DRAINING, SERVING_ACTION_NONE),
                [SERVING_EVENT_UNLOAD]  = T(SERVING_DRAINING, SERVING_ACTION_NONE),
                [SERVING_EVENT_STOP]    = T(SERVING_SAVING,   SERVING_ACTION_SAVE),
                [SERVING_EVENT_KILL]    = T(SERVING_STOPPING, SERVING_ACTION_KILL),
                [SERVING_EVENT_DRAINED] = T(SERVING_SAVING,   SERVING_ACTION_SAVE),
                [SERVING_EVENT_READY]   = T(SERVING_DRAINING, SERVING_ACTION_NONE),
                /* It went by itself: what restarts it is stopped. */
                [SERVING_EVENT_CRASHED] = T(SERVING_STOPPING, SERVING_ACTION_STOP),
                [SERVING_EVENT_FAILED]  = T(SERVING_STOPPING, SERVING_ACTION_STOP),
                [SERVING_EVENT_DOWN]    = T(SERVING_ABSENT,   SERVING_ACTION_NONE),
        },
        [SERVING_SAVING] = {
                /* Like DRAINING: a request or a switch for it waits until it is down. */
                [SERVING_EVENT_LOAD]    = T(SERVING_SAVING,   SERVING_ACTION_NONE),
                [SERVING_EVENT_UNLOAD]  = T(SERVING_SAVING,   SERVING_ACTION_NONE),
                /* The save is bounded: llmd's own stop waits for it. */
                [SERVING_EVENT_STOP]    = T(SERVING_SAVING,   SERVING_ACTION_NONE),
                [SERVING_EVENT_KILL]    = T(SERVING_STOPPING, SERVING_ACTION_KILL),
                [SERVING_EVENT_DRAINED] = T(SERVING_SAVING,   SERVING_ACTION_NONE),
                [SERVING_EVENT_READY]   = T(SERVING_SAVING,   SERVING_ACTION_NONE),
                [SERVING_EVENT_CRASHED] = T(SERVING_STOPPING, SERVING_ACTION_STOP),
                [SERVING_EVENT_FAILED]  = T(SERVING_STOPPING, SERVING_ACTION_STOP),
                [SERVING_EVENT_DOWN]    = T(SERVING_ABSENT,   SERVING_ACTION_NONE),
                [SERVING_EVENT_SAVED]   = T(SERVING_STOPPING, SERVING_ACTION_STOP),
        },
        [SERVING_STOPPING] = {
                [SERVING_EVENT_LOAD]    = T(SERVING_STOPPING, SERVING_ACTION_NONE),
                [SERVING_EVENT_UNLOAD]  = T(SERVING_STOPPING, SERVING_ACTION_NONE),
                [SERVING_EVENT_STOP]    = T(SERVING_STOPPING, SERVING_ACTION_NONE),
                [SERVING_EVENT_KILL]    = T(SERVING_STOPPING, SERVING_ACTION_KILL),
                [SERVING_EVENT_DRAINED] = T(SERVING_STOPPING, SERVING_ACTION_NONE),
                [SERVING_EVENT_READY]   = T(SERVING_STOPPING, SERVING_ACTION_NONE),
                [SERVING_EVENT_CRASHED] = T(SERVING_STOPPING, SERVING_ACTION_STOP),
                [SERVING_EVENT_FAILED]  = T(SERVING_STOPPING, SERVING_ACTION_STOP),
                [SERVING_EVENT_DOWN]    = T(SERVING_ABSENT,   SERVING_ACTION_NONE),
        },
        [SERVING_FAILED] = {
                [SERVING_EVENT_LOAD]    = T(SERVING_LOADING,  SERVING_ACTION_START),
                [SERVING_EVENT_UNLOAD]  = T(SERVING_ABSENT,   SERVING_ACTION_STOP),
                [SERVING_EVENT_STOP]    = T(SERVING_ABSENT,   SERVING_ACTION_STOP),
                [SERVING_EVENT_KILL]    = T(SERVING_ABSENT,   SERVING_ACTION_STOP),
                [SERVING_EVENT_FAILED]  = T(SERVING_FAILED,   SERVING_ACTION_STOP),
                /* The reason stays until it is asked for again. */
                [SERVING_EVENT_DOWN]    = T(SERVING_FAILED,   SERVING_ACTION_NONE),
        },
};
#undef T
/* clang-format on */

int serving_transition(ServingState state, ServingEvent event, ServingAction *ret_action)
{
        if (state < 0 || state >= _SERVING_STATE_MAX || event < 0 || event >= _SERVING_EVENT_MAX ||
            !transitions[state][event].valid) {
                return -EINVAL;
        }
        *ret_action = transitions[state][event].action;
        return transitions[state][event].next;
}

const char *serving_state_to_string(ServingState s)
{
        return s >= 0 && s < _SERVING_STATE_MAX ? state_table[s] : NULL;
}

const char *serving_event_to_string(ServingEvent e)
{
        return e >= 0 && e < _SERVING_EVENT_MAX ? event_table[e] : NULL;
}

const char *serving_action_to_string(ServingAction a)
{
        return a >= 0 && a < _SERVING_ACTION_MAX ? action_table[a] : NULL;
}

const char *serving_why_to_string(ServingWhy w)
{
        return w >= 0 && w < _SERVING_WHY_MAX ? why_table[w] : NULL;
}

const char *serving_state_word(ServingState s)
{
        switch (s) {
        case SERVING_READY:
                return "loaded";
        case SERVING_LOADING:
                return "loading";
        case SERVING_DRAINING:
        case SERVING_SAVING:
        case SERVING_STOPPING:
                return "unloading";
        case SERVING_FAILED:
                return "failed";
        case SERVING_ABSENT:
        case _SERVING_STATE_MAX:
        case _SERVING_STATE_INVALID:
                break;
        }
        return "unloaded";
}
