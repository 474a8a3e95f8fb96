/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "config.h"
#include "macro.h"

/*
 * One supervised llama-server process and its life, as an explicit state machine.
 *
 *            START                 /health 200
 *   STOPPED ───────▶ LOADING ──────────────────▶ READY
 *      ▲               │  │ load-timeout           │ health fails 3×, or
 *      │               │  │                        │ max-child-errors requests fail
 *      │          STOP │  └─────────────▶ KILLING ◀┘
 *      │               ▼                     │ exit (load timeout, or start limit hit)
 *      └─exit──── STOPPING            exit   ├──────────────────────▶ FAILED
 *                 (SIGTERM; SIGKILL   ───────┤ exit (crash)              │ START
 *                  at stop-timeout)          ▼                           ▼
 *                                         BACKOFF ──timer──▶ LOADING   LOADING
 *
 * LOADING and READY go to BACKOFF when the process exits by itself, or to FAILED when that
 * exit is the start-limit-burst'th in start-limit-interval. STOP from any state ends in
 * STOPPED. An unreadable model file or a missing binary fails the spawn: FAILED at once, never
 * a crash loop. The whole table is child_transition(); everything else only carries it out.
 * A child logs what it does at debug level; its crashes and failures are logged once, by the
 * supervisor, which knows whether a switch was loading it.
 */

typedef enum ChildState {
        CHILD_STOPPED,
        CHILD_LOADING,
        CHILD_READY,
        CHILD_STOPPING,
        CHILD_KILLING,
        CHILD_BACKOFF,
        CHILD_FAILED,
        _CHILD_STATE_MAX,
        _CHILD_STATE_INVALID = -1,
} ChildState;

typedef enum ChildEvent {
        CHILD_EVENT_START,        /* wanted up */
        CHILD_EVENT_STOP,         /* wanted down */
        CHILD_EVENT_SPAWN_FAILED, /* model unreadable, binary missing, fork failed */
        CHILD_EVENT_HEALTHY,      /* /health answered 200 */
        CHILD_EVENT_UNHEALTHY,    /* health checks failed while ready */
        CHILD_EVENT_LOAD_TIMEOUT,
        CHILD_EVENT_STOP_TIMEOUT,
        CHILD_EVENT_EXITED,       /* the process is gone; a restart is allowed */
        CHILD_EVENT_EXITED_FATAL, /* the process is gone; no restart (limit hit, load timeout) */
        CHILD_EVENT_BACKOFF_DONE,
        _CHILD_EVENT_MAX,
} ChildEvent;

typedef enum ChildAction {
        CHILD_ACTION_NONE,
        CHILD_ACTION_SPAWN,     /* fork/exec and poll /health until load-timeout */
        CHILD_ACTION_WATCH,     /* slow health checks every health-interval */
        CHILD_ACTION_TERMINATE, /* SIGTERM now, SIGKILL at stop-timeout */
        CHILD_ACTION_KILL,      /* SIGKILL now */
        CHILD_ACTION_BACKOFF,   /* restart after an exponential delay */
        CHILD_ACTION_FAIL,      /* keep the reason and stay down */
        CHILD_ACTION_CANCEL,    /* drop pending timers */
        _CHILD_ACTION_MAX,
} ChildAction;

/* The transition table: next state and action, or -EINVAL where the event cannot happen. */
int child_transition(ChildState state, ChildEvent event, ChildAction *ret_action);

typedef struct Child Child;
typedef void (*child_handler_t)(Child *c, ChildState old, void *userdata);

typedef struct ChildContext {
        sd_event *event;
        const char *runtime_dir;
        const char *binary;     /* llama-server; a path or a name looked up in $PATH */
        char **environ;         /* the environment children start from (already cleaned) */
        const char *cache_root; /* prompt caches: CACHE_ROOT/NAME/ (prompt-cache.h); or NULL */
} ChildContext;

int child_new(const ChildContext *ctx, const ModelConfig *m, child_handler_t handler,
              void *userdata, Child **ret);
Child *child_free(Child *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Child *, child_free);

void child_start(Child *c);
/* What llmd adds for where the next start goes on the GPUs (NULL: nothing): variables set over
 * the environment (CUDA_VISIBLE_DEVICES=...) and flags after the profile's (--tensor-split ...).
 * Copied. */
int child_set_placement(Child *c, char *const *env, char *const *args);
void child_stop(Child *c);
/* Replaces the profile (a copy is kept); takes effect at the next spawn. */
int child_set_config(Child *c, const ModelConfig *m);
const ModelConfig *child_config(const Child *c);
/* The binary to run from the next spawn on; the string must outlive the child. */
void child_set_binary(Child *c, const char *binary);
/* SIGKILL now, whatever the state; used when llmd must leave at once. */
void child_kill_now(Child *c);

const char *child_name(const Child *c);
ChildState child_state(const Child *c);
pid_t child_pid(const Child *c);
const char *child_socket_path(const Child *c);
/* Why the child last failed or crashed: "exit status 1", "killed by signal SEGV", ... */
const char *child_reason(const Child *c);
/* The last lines the child wrote, oldest first; NULL-terminated, owned by the child. */
char **child_last_lines(const Child *c);
/* The lines the run that crashed or failed last wrote (its last ones), for child_reason(). */
char **child_failure_lines(const Child *c);
/* A request forwarded to it ended: with the child's HTTP status, or stalled (nothing came for
 * upstream-timeout). max-child-errors failures in a row (5xx but 501, or stalls) with no
 * success between restart a ready child as a failed health check does; 4xx counts for
 * nothing either way. */
void child_request_done(Child *c, unsigned status, bool stalled);
unsigned child_restarts(const Child *c);
/* child_free() leaves its socket path alone: a new child of the same name uses it. */
void child_keep_socket(Child *c);
/* While it waits to restart after a crash (BACKOFF): how long it waits. */
uint64_t child_restart_delay(const Child *c);
/* While loading: the share of the model file read or mapped so far (the larger of the bytes
 * read, from /proc/PID/io, and the file-backed resident memory), 0..1; -1 when unknown. */
double child_load_progress(const Child *c);
/* CLOCK_MONOTONIC of the last spawn and the last transition to READY. */
uint64_t child_spawned_usec(const Child *c);
/* A request began or ended on it now; child_used_usec() is the last time, or when it became
 * ready, whichever is later. */
void child_touch(Child *c);
uint64_t child_used_usec(const Child *c);
/* While ready: the "meta" object llama-server's /v1/models gave for its model (n_ctx,
 * n_ctx_train, n_params, n_embd, size, ...), read once when it became ready; else NULL. */
struct cJSON;
const struct cJSON *child_meta(const Child *c);
uint64_t child_ready_usec(const Child *c);
/* Where the running process saves its prompt caches (its --slot-save-path), and what they
 * belong to (prompt_cache_fingerprint()); NULL when it saves none. */
const char *child_cache_dir(const Child *c);
/* Where its prompt caches are: the running spawn's directory, or the one its next spawn would
 * get (its argv as it will be, for a model not started yet); NULL for none. */
char *child_cache_dir_next(const Child *c);
const char *child_cache_fingerprint(const Child *c);

/* The delay before restart number n (1-based) of a profile: restart-sec doubled each time,
 * at most CHILD_BACKOFF_MAX_USEC (or restart-sec, if that is larger). */
#define CHILD_BACKOFF_MAX_USEC (60 * USEC_PER_SEC)
uint64_t child_backoff_usec(uint64_t restart_usec, unsigned n);

const char *child_state_to_string(ChildState s);
const char *child_event_to_string(ChildEvent e);
