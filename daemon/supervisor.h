/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "child.h"
#include "config.h"
#include "gpu.h"
#include "metrics.h"
#include "prompt-cache.h"
#include "serving.h"

/*
 * What should run, and getting there: every pinned model, the active generation model, and as
 * many other generation models as the GPU's memory and max-resident allow (resident models). Each
 * profile has a Child (most stay STOPPED). Changing the generation model is an operation with
 * phases — stop what must make room (least recently used first, the active model last), load the
 * target, and on failure restore what served before — and a newer one supersedes an older one in
 * progress. A switch to a resident model that is ready is only a change of route. When the active
 * model need not make room, the target loads beside it and takes over once ready (make before
 * break). Switch, Load (make resident, do not switch), Start (load the active model again) and
 * Stop (unload every generation model) are all such operations. The choice is persisted in the
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
        void (*drain)(void *userdata, const char *model, bool now, void (*done)(void *d), void *d);
        Metrics *metrics; /* switches, loads, evictions, restarts are counted there; optional */
        void *userdata;
} SupervisorOptions;

typedef enum SwitchPhase {
        SWITCH_STOPPING,  /* the other generation models are being stopped */
        SWITCH_LOADING,   /* the target is loading */
        SWITCH_RESTORING, /* the target failed; the previous model is loading again */
        _SWITCH_PHASE_MAX,
} SwitchPhase;

typedef enum SwitchKind {
        SWITCH_KIND_RESIDENT, /* the target was ready: a change of route */
        SWITCH_KIND_BESIDE,   /* loaded beside the active model, which served until it was ready */
        SWITCH_KIND_REPLACE,  /* models were stopped first to make room (evicted may be empty) */
        _SWITCH_KIND_MAX,
} SwitchKind;

typedef struct SwitchResult {
        int error; /* 0; -ESTALE superseded; -EIO failed to load; -ECANCELED llmd stops */
        SwitchKind kind;
        char **evicted;       /* the models stopped to make room, in that order */
        const char *from;     /* what served before; NULL: nothing */
        const char *to;       /* the target; NULL for Stop */
        bool changed;         /* false: it was so already */
        const char *reason;   /* why it failed */
        char **log;           /* the target's last lines, when it failed */
        const char *restored; /* the model serving again after a failure, or NULL */
        const char *superseded_by;
        uint64_t stop_usec, load_usec, total_usec;
        /* The prompt caches the models stopped saved, and those the target restored. */
        PromptCacheResult cache_saved, cache_restored;
        /* where llmd put the target: its bytes on each GPU by NVML's number; NULL where it did
         * not choose */
        const uint64_t *gpus;
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
        SWITCH_NOW = 1 << 0, /* SIGKILL what is stopped at once: do not wait for its requests */
        SWITCH_LOAD_ONLY = 1 << 1, /* Load: make target resident, do not make it active */
} SwitchFlags;

/* Makes target (a name or alias) the active generation model; NULL unloads every generation
 * model (Stop). The callbacks run later, done exactly once (for a resident target, before this
 * returns), unless an error is returned at once: -ENOENT unknown model, -EPERM pinned, -EACCES
 * model file unreadable, -E2BIG it does not fit in the GPU memory even alone, -ENOSPC (Load) no
 * room beside the active model, -ESHUTDOWN; *ret_reason says why. */
int supervisor_switch(Supervisor *s, const char *target, SwitchFlags flags,
                      const SwitchCallbacks *cb, void *userdata, char **ret_reason);
/* Stops a resident generation model that is not the active one (its requests finish first):
 * -EBUSY the active one, -EPERM pinned, -ENOENT unknown. */
int supervisor_unload(Supervisor *s, const char *name, char **ret_reason);
/* A request began or ended on model (forwarded to it, or its last byte came): it is busy, and
 * its idle time (unload-after, least recently used) counts from the end of its last request. */
void supervisor_request_begin(Supervisor *s, const char *model);
void supervisor_request_end(Supervisor *s, const char *model);
/* How a request forwarded to model ended: the child's HTTP status, or stalled (nothing came
 * for upstream-timeout). Failures in a row restart its child (max-child-errors). Requests
 * cut off by llmd or left by their client are not reported. */
void supervisor_request_outcome(Supervisor *s, const char *model, unsigned status, bool stalled);

/* The model's serving state (serving.h), and why it is stopping or failed (ret_why may be
 * NULL); _SERVING_STATE_INVALID for a name that is no model. What every reader asks. */
ServingState supervisor_serving(const Supervisor *s, const char *model, ServingWhy *ret_why);
/* Whether model is to serve without anyone asking again: the active model (unless stopped),
 * a pinned one, or the target of the switch in progress. A request for it waits while it
 * loads; a request for a model not wanted (under routing = switch) asks for a switch. */
bool supervisor_wanted(const Supervisor *s, const char *model);

/* One GPU llmd may use ([llmd] gpus): what the source reports, and its share of the budget. */
typedef struct SupervisorGpuDevice {
        unsigned index; /* NVML's number */
        uint64_t total, used, free, budget;
} SupervisorGpuDevice;

/* GPU memory, as llmd sees it: source NULL (and why) without a GPU source. */
typedef struct SupervisorGpu {
        const char *source;         /* "nvml", or NULL */
        const char *why;            /* why there is none */
        uint64_t total, used, free; /* the GPUs' llmd may use, summed; 0 without a source */
        /* for llmd's models: gpu-memory, else each GPU's total less its margin; 0: unknown */
        uint64_t budget;
        uint64_t resident; /* what llmd's running models take (measured, configured or estimated) */
        unsigned max_resident; /* 0: no limit */
        unsigned n_devices;    /* those of [llmd] gpus that the source has */
        bool several;          /* the source has more than one GPU */
        SupervisorGpuDevice devices[GPU_DEVICES_MAX];
} SupervisorGpu;
void supervisor_gpu(Supervisor *s, SupervisorGpu *ret);
/* Where llmd put a running model on the GPUs: its bytes on each, by NVML's number; false (all
 * 0) where it did not choose (one GPU, or the profile says). */
bool supervisor_model_placed(Supervisor *s, const char *model, uint64_t ret_on[GPU_DEVICES_MAX]);
/* A running model's figures on each GPU, by NVML's number: what the planner counts there
 * (ret_bytes: what this run was measured to use there, else what it was placed with), the
 * GGUF estimate there (by layer, over the split it got) and the measured use (0: not
 * measured); false (all 0) where it is on no GPU that llmd placed it on or measured. */
typedef struct SupervisorDeviceUse {
        uint64_t bytes, estimated, measured;
} SupervisorDeviceUse;
bool supervisor_model_devices(Supervisor *s, const char *model,
                              SupervisorDeviceUse ret[GPU_DEVICES_MAX]);
/* What a switch to model would do now, without doing it: where it would go (ret_on, as
 * supervisor_model_placed() says it), the models it would stop (ret_evict) and why, in words
 * (ret_why). The refusals of supervisor_switch(), with the reason in ret_why. */
int supervisor_plan_preview(Supervisor *s, const char *model, uint64_t ret_on[GPU_DEVICES_MAX],
                            char ***ret_evict, char **ret_why);
/* What model needs on the GPU, and how that is known: "configured", "measured" (seen by the GPU
 * source when it last ran), "estimated" (from the file's header), or NULL (0: unknown). */
uint64_t supervisor_model_gpu(Supervisor *s, const char *model, const char **ret_how);
uint64_t supervisor_model_estimate(Supervisor *s, const char *model);
uint64_t supervisor_model_measured(Supervisor *s, const char *model);

/* The model's saved prompt caches on disk (all 0 for a model that keeps none), and what it
 * saved and restored last (since llmd started). */
void supervisor_prompt_cache(Supervisor *s, const char *model, PromptCacheResult *ret_disk,
                             PromptCacheResult *ret_saved, PromptCacheResult *ret_restored);
/* Removes the saved prompt caches of model (NULL: of every model); the files removed. */
int supervisor_prompt_cache_clear(Supervisor *s, const char *model);

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
const char *switch_kind_to_string(SwitchKind k);
