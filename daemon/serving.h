/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/*
 * Whether a model serves, as llmd decides it: the residency machine. One per profile, above its
 * Child (the process, child.h) and below the proxy's requests (proxy-request.h). The supervisor
 * is its only writer; /health, the dispatch of every request, Status, List, /v1/models, STATUS=
 * and the fleet generator all read it.
 *
 *              LOAD                 child ready (and its prompt caches restored)
 *   ABSENT ──────────▶ LOADING ────────────────────▶ READY ◀─┐ child exited: LOADING again
 *     ▲ ▲               │  │ child failed, or a          │    │ (its restart), held requests wait
 *     │ │   UNLOAD/STOP │  │ switch gives up on it       │    │
 *     │ │   KILL        │  └──────────▶ FAILED ◀─────────┤────┘
 *     │ │               ▼               │ ▲ LOAD: LOADING │ UNLOAD (evict, unload, unload-after,
 *     │ └──── down ── STOPPING ◀────────┘ │               │   reload, superseded)
 *     │                 ▲   ▲ KILL        └ down: stays   ▼
 *     │                 │   └──────────────────────── DRAINING  its requests finish, no new ones
 *     │               saved                               │
 *     │                 │                                 │ drained (or drain-timeout), or STOP;
 *     │               SAVING ◀────────────────────────────┘ STOP from READY too
 *     │                 its prompt caches are saved (bounded by prompt-cache-save-timeout)
 *     └── down (it went by itself)
 *
 * READY takes requests; LOADING holds them; DRAINING, SAVING and STOPPING take none (a request
 * for such a model is one for a model that is not loaded); FAILED answers them with the reason and is never
 * loaded again but by a LOAD (a switch, a load, a restore, a reload that restarts it). Which model
 * is active is the supervisor's, not a state: the active model is READY, or LOADING, or on its way
 * there. The whole table is serving_transition(); supervisor.c carries out the actions.
 */

typedef enum ServingState {
        SERVING_ABSENT,   /* no process */
        SERVING_LOADING,  /* started (or restarting after a crash), not ready yet */
        SERVING_READY,    /* takes requests */
        SERVING_DRAINING, /* to be stopped once the requests running on it are done */
        SERVING_SAVING,   /* to be stopped once its prompt caches are saved */
        SERVING_STOPPING, /* its process is being stopped */
        SERVING_FAILED,   /* it failed to load, and stays down */
        _SERVING_STATE_MAX,
        _SERVING_STATE_INVALID = -1,
} ServingState;

typedef enum ServingEvent {
        SERVING_EVENT_LOAD,    /* wanted up: a switch's target, a load, a restore, a start */
        SERVING_EVENT_UNLOAD,  /* wanted down once its requests are done */
        SERVING_EVENT_STOP,    /* wanted down now; its requests end with the process (llmd stops) */
        SERVING_EVENT_KILL,    /* wanted down now: requests cut off, SIGKILL (switch --now) */
        SERVING_EVENT_DRAINED, /* the requests on it are done, or were cut off */
        SERVING_EVENT_READY,   /* the child became ready */
        SERVING_EVENT_CRASHED, /* the child exited or was found unhealthy; it restarts by itself */
        SERVING_EVENT_FAILED,  /* the child failed for good, or the switch loading it gave up */
        SERVING_EVENT_DOWN,    /* the child is stopped */
        SERVING_EVENT_SAVED,   /* its prompt caches are saved (or the save ended short) */
        _SERVING_EVENT_MAX,
} ServingEvent;

typedef enum ServingAction {
        SERVING_ACTION_NONE,
        SERVING_ACTION_START, /* start the child */
        SERVING_ACTION_DRAIN, /* ask the proxy to let the requests on it finish */
        SERVING_ACTION_SAVE,  /* save its prompt caches (SAVED at once when it keeps none) */
        SERVING_ACTION_STOP,  /* stop the child (SIGTERM, SIGKILL at stop-timeout) */
        SERVING_ACTION_KILL,  /* cut its requests off and SIGKILL the child */
        _SERVING_ACTION_MAX,
} ServingAction;

/* Why a model is being stopped, for the log, the status and the metrics. */
typedef enum ServingWhy {
        SERVING_WHY_NONE,
        SERVING_WHY_EVICT,      /* a switch or load made room */
        SERVING_WHY_UNLOAD,     /* llmctl unload */
        SERVING_WHY_IDLE,       /* unload-after */
        SERVING_WHY_TRIM,       /* a reload lowered max-resident or the budget */
        SERVING_WHY_RELOAD,     /* a reload changed its profile */
        SERVING_WHY_REMOVED,    /* a reload removed its profile */
        SERVING_WHY_SUPERSEDED, /* the switch loading it was superseded */
        SERVING_WHY_STOP,       /* llmctl stop, or llmd stops */
        SERVING_WHY_FAILED,     /* the switch loading it gave up */
        _SERVING_WHY_MAX,
} ServingWhy;

/* The transition table: the next state and the action, or -EINVAL where the event cannot
 * happen in that state. */
int serving_transition(ServingState state, ServingEvent event, ServingAction *ret_action);

/* On its way down: draining, saving or stopping. */
static inline bool serving_state_leaving(ServingState s)
{
        return s == SERVING_DRAINING || s == SERVING_SAVING || s == SERVING_STOPPING;
}

/* Whether a model in this state has a process (or is about to). */
static inline bool serving_state_running(ServingState s)
{
        return s == SERVING_LOADING || s == SERVING_READY || s == SERVING_DRAINING ||
               s == SERVING_SAVING || s == SERVING_STOPPING;
}

/* Resident: loaded or loading, and staying (not draining or stopping). The one definition. */
static inline bool serving_state_resident(ServingState s)
{
        return s == SERVING_LOADING || s == SERVING_READY;
}

const char *serving_state_to_string(ServingState s);
const char *serving_event_to_string(ServingEvent e);
const char *serving_action_to_string(ServingAction a);
const char *serving_why_to_string(ServingWhy w);
/* The word /v1/models and /health use: loaded, loading, unloading, unloaded, failed. */
const char *serving_state_word(ServingState s);
