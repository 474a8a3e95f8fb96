/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "child.h"
#include "config.h"

/*
 * What should run, and getting there: every pinned model, plus at most one active generation
 * model. Each profile has a Child (most stay STOPPED). Changing the generation model is an
 * operation with phases — stop the others, load the target, and on failure restore what served
 * before — and a newer one supersedes an older one in progress. Switch, Start (load the active
 * model again) and Stop (unload it) are all such operations. The choice is persisted in the
 * state directory once it holds.
 */

typedef struct Supervisor Supervisor;
typedef void (*supervisor_handler_t)(Supervisor *s, void *userdata);

typedef struct SupervisorOptions {
        sd_event *event;
        const char *runtime_dir;
        const char *state_dir;
        char **environ; /* for the children; already cleaned of systemd's variables */
        supervisor_handler_t on_change; /* any child changed state */
        /* Before a generation model is stopped by a switch: calls done once the requests
         * running on it have finished (or were cut off; at once with now). Optional. */
        void (*drain)(void *userdata, const char *model, bool now, void (*done)(void *d),
                      void *d);
        void *userdata;
} SupervisorOptions;

typedef enum SwitchPhase {
        SWITCH_STOPPING,  /* the other generation models are being stopped */
        SWITCH_LOADING,   /* the target is loading */
        SWITCH_RESTORING, /* the target failed; the previous model is loading again */
        _SWITCH_PHASE_MAX,
} SwitchPhase;

typedef struct SwitchResult {
        int error;             /* 0; -ESTALE superseded; -EIO failed to load; -ECANCELED llmd stops */
        const char *from;      /* what served before; NULL: nothing */
        const char *to;        /* the target; NULL for Stop */
        bool changed;          /* false: it was so already */
        const char *reason;    /* why it failed */
        char **log;            /* the target's last lines, when it failed */
        const char *restored;  /* the model serving again after a failure, or NULL */
        const char *superseded_by;
        uint64_t stop_usec, load_usec, total_usec;
} SwitchResult;

typedef struct SwitchCallbacks {
        /* progress: 0..1, or -1 when unknown */
        void (*progress)(void *userdata, SwitchPhase phase, const char *model, double progress);
        void (*done)(void *userdata, const SwitchResult *result);
} SwitchCallbacks;

/* Takes ownership of config. */
int supervisor_new(const SupervisorOptions *o, Config *config, Supervisor **ret);
Supervisor *supervisor_free(Supervisor *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Supervisor *, supervisor_free);

/* Starts the pinned models and the active one (as persisted, else the default). */
void supervisor_start(Supervisor *s);
/* Stops generation children, then pinned ones; calls done once all are down. */
void supervisor_stop(Supervisor *s, void (*done)(void *userdata), void *userdata);
/* SIGKILL to every child, now. */
void supervisor_kill(Supervisor *s);

typedef enum SwitchFlags {
        SWITCH_NOW = 1 << 0, /* SIGKILL the old model at once: do not wait for its requests */
} SwitchFlags;

/* Makes target (a name or alias) the active generation model; NULL unloads it (Stop). The
 * callbacks run later, done exactly once, unless an error is returned at once: -ENOENT unknown
 * model, -EPERM pinned, -EACCES model file unreadable (*ret_reason says why), -ESHUTDOWN. */
int supervisor_switch(Supervisor *s, const char *target, SwitchFlags flags,
                      const SwitchCallbacks *cb, void *userdata, char **ret_reason);
/* Load the active model again after a Stop (or after it failed). */
int supervisor_start_active(Supervisor *s, const SwitchCallbacks *cb, void *userdata,
                            char **ret_reason);

/* Applies a new configuration (ownership taken on success): new profiles appear, removed ones
 * stop, changed ones that run restart, unchanged ones are not touched. -EBUSY while a switch is
 * in progress. */
int supervisor_reload(Supervisor *s, Config *config);

const Config *supervisor_config(const Supervisor *s);
const char *supervisor_active(const Supervisor *s);
bool supervisor_loaded(const Supervisor *s);
Child *supervisor_child(const Supervisor *s, const char *name);
/* The children, in the order of the configuration. */
Child **supervisor_children(const Supervisor *s, size_t *ret_n);
/* The model that failed or crashed last (it may run again now), and when. */
Child *supervisor_last_failed(const Supervisor *s, uint64_t *ret_usec);
/* The switch in progress, if any: its target and phase. */
bool supervisor_switching(const Supervisor *s, const char **ret_target, SwitchPhase *ret_phase);
/* "qwen ready · embed nomic ready", "qwen loading …", "qwen failed: exit status 1" */
char *supervisor_status_text(const Supervisor *s);

const char *switch_phase_to_string(SwitchPhase p);
