/* SPDX-License-Identifier: MIT */
#pragma once

#include "footprint.h"
#include "prefetch.h"
#include "residency.h"
#include "serving.h"
#include "supervisor.h"

/*
 * What the supervisor's files share: the supervisor itself, one Model per profile (its Child and
 * its state in the residency machine), and the operation in progress. supervisor.c carries out
 * the machine (model_event()) and owns the children; supervisor-switch.c runs operations as
 * sequences of events; supervisor-reload.c applies a new configuration; supervisor-status.c
 * says it all in one line.
 */

#define SUPERVISOR_PROGRESS_USEC (100 * USEC_PER_MSEC)

typedef struct Model Model;

typedef struct DrainWait {
        Model *model; /* NULL once the model is gone */
} DrainWait;

struct Model {
        Supervisor *supervisor;
        Child *child;
        ServingState state;
        ServingWhy why;      /* why it is draining or stopping, or why it failed */
        unsigned in_flight;  /* requests running on it */
        bool again;          /* load it again once it is down (a reload changed it) */
        bool start_pending;  /* LOADING, its child to start once no process of its name runs */
        DrainWait *drain;    /* the drain in progress */
        CacheJob *cache_job; /* saving (SAVING), or restoring (LOADING, its child ready) */
        PromptCacheResult saved, restored; /* the last of each (error NULL) */
        /* Where it is on the GPUs: its bytes on each, by NVML's number (all 0: not placed by
         * llmd, counted over every GPU); planned: what supervisor_plan() chose for its next
         * start, taken by supervisor_place(), with its --tensor-split weights */
        uint64_t gpu_on[GPU_DEVICES_MAX];
        uint64_t gpu_split[GPU_DEVICES_MAX]; /* its --tensor-split (MiB) where split */
        uint64_t gpu_planned[GPU_DEVICES_MAX];
        uint64_t gpu_split_planned[GPU_DEVICES_MAX];
        bool planned;
};

typedef struct SwitchWaiter {
        SwitchCallbacks cb;
        void *userdata;
} SwitchWaiter;

typedef struct SwitchOp {
        char *target;   /* NULL: Stop */
        char *previous; /* what served before the first of a chain of switches; NULL: nothing */
        SwitchPhase phase;
        SwitchWaiter *waiters; /* who asked for it: a request for the same target joins */
        size_t n_waiters;
        uint64_t start_usec, stopped_usec;
        double progress;
        char *reason;
        char **log;
        char **evict; /* the models stopped to make room (all generation models, for Stop) */
        PromptCacheResult cache_saved, cache_restored; /* by the models stopped; the target */
        bool beside;    /* the active model serves while the target loads */
        bool load_only; /* Load: the target becomes resident, not active */
} SwitchOp;

struct Supervisor {
        SupervisorOptions options;
        Config *config;
        char *binary;
        Model **models;   /* one per profile, in the order of config->models */
        Child **children; /* their children, in the same order */
        size_t n_models;
        Model **retired; /* removed by a reload, freed once down */
        size_t n_retired;
        sd_event_source *sweep;
        sd_event_source *progress_timer;
        sd_event_source *changed;        /* on_change is due */
        sd_event_source *unload_timer;   /* unload-after */
        sd_event_source *persist_source; /* the active model is to be saved */
        char *last_failed;               /* the model that failed or crashed last */
        uint64_t last_failed_usec;
        char *active; /* the generation model that should serve; NULL: none configured */
        bool loaded;  /* false after Stop */
        SwitchOp *op;
        bool advancing, advance_again;
        bool stopping;
        void (*stop_done)(void *userdata);
        void *stop_userdata;
        Footprint *footprint;
        Prefetch *prefetch;
        char *cache_root; /* STATE_DIR/prompt-cache */
};

static inline const ModelConfig *model_config(const Model *m)
{
        return child_config(m->child);
}

static inline const char *model_name(const Model *m)
{
        return child_name(m->child);
}

static inline bool model_pinned(const Model *m)
{
        return model_config(m)->pin;
}

/* Down: no process, and none coming unless asked for. */
static inline bool model_down(const Model *m)
{
        return m->state == SERVING_ABSENT || m->state == SERVING_FAILED;
}

static inline bool supervisor_is_active(const Supervisor *s, const Model *m)
{
        return s->loaded && s->active && streq(s->active, model_name(m));
}

/* supervisor.c: the machine, the children, the active model */
Model *supervisor_model(const Supervisor *s, const char *name);
/* The one place a model's serving state changes; why says why it stops (or NONE). */
void model_event(Model *m, ServingEvent e, ServingWhy why);
/* The one writer of the active model and whether it is loaded. */
void supervisor_choose(Supervisor *s, const char *active, bool loaded);
void supervisor_persist(Supervisor *s);
void supervisor_notify_change(Supervisor *s);
void supervisor_arm_unload(Supervisor *s);
int supervisor_make_model(Supervisor *s, const ModelConfig *mc, Model **ret);
Model *model_free(Model *m);
/* The llama-server c names: its own, else $LLAMA_SERVER, else the one in $PATH. */
const char *supervisor_binary(const Config *c);

/* supervisor-switch.c: operations */
ResidentModel *supervisor_plan_input(Supervisor *s, ResidencyLimits *ret_limits);
/* Where m's child goes on the GPUs as it starts (SERVING_ACTION_START): what the switch planned,
 * else placement_plan()'s choice now; said to the child as CUDA_VISIBLE_DEVICES and flags. */
void supervisor_place(Model *m);
void supervisor_prefetch(Supervisor *s);
void supervisor_advance(Supervisor *s);
bool supervisor_generation_down(const Supervisor *s);
void op_finish(Supervisor *s, int error, const char *restored, const char *superseded_by);
void op_free(SwitchOp *op);
int supervisor_on_progress(sd_event_source *es, uint64_t usec, void *userdata);
