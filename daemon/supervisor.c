/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "array.h"
#include "footprint.h"
#include "log.h"
#include "parse-util.h"
#include "prefetch.h"
#include "residency.h"
#include "serving.h"
#include "state-file.h"
#include "strv.h"
#include "supervisor.h"
#include "time-util.h"

/*
 * The supervisor carries out the residency machine (serving.h) for every profile: model_event()
 * is the one place a model's serving state changes, and every start and stop of a child goes
 * through it. Operations (a switch with its evictions, a load, Stop) are sequences of events on
 * the machines of the models they touch; supervisor_advance() moves the operation in progress
 * on whenever a model changed. The active model, the resident set and what an operation
 * evicts each have one writer: supervisor_choose(), model_event() and supervisor_begin().
 *
 * Re-entrancy: a child's state change calls back into model_event() from within an action (a
 * child stopped at once, a spawn that fails); the state is written before the action runs, so
 * the nested event sees it. The proxy hears of changes through a defer source (on_change runs
 * from the loop, never from inside a supervisor call), and a drain's done callback may run
 * before proxy_drain() returns: that is an event like any other.
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
        ServingWhy why;     /* why it is draining or stopping, or why it failed */
        unsigned in_flight; /* requests running on it */
        bool again;         /* load it again once it is down (a reload changed it) */
        DrainWait *drain;   /* the drain in progress */
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
        char **evict;   /* the models stopped to make room (all generation models, for Stop) */
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
        Model **retired;  /* removed by a reload, freed once down */
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
};

static const char *const phase_table[_SWITCH_PHASE_MAX] = {
        [SWITCH_STOPPING] = "stopping",
        [SWITCH_LOADING] = "loading",
        [SWITCH_RESTORING] = "restoring",
};

const char *switch_kind_to_string(SwitchKind k)
{
        static const char *const table[_SWITCH_KIND_MAX] = {
                [SWITCH_KIND_RESIDENT] = "resident",
                [SWITCH_KIND_BESIDE] = "beside",
                [SWITCH_KIND_REPLACE] = "replace",
        };
        return k >= 0 && k < _SWITCH_KIND_MAX ? table[k] : NULL;
}

const char *switch_phase_to_string(SwitchPhase p)
{
        return p >= 0 && p < _SWITCH_PHASE_MAX ? phase_table[p] : NULL;
}

static const ModelConfig *model_config(const Model *m)
{
        return child_config(m->child);
}

static const char *model_name(const Model *m)
{
        return child_name(m->child);
}

static bool model_pinned(const Model *m)
{
        return model_config(m)->pin;
}

/* Down: no process, and none coming unless asked for. */
static bool model_down(const Model *m)
{
        return m->state == SERVING_ABSENT || m->state == SERVING_FAILED;
}

static Model *supervisor_model(const Supervisor *s, const char *name)
{
        const ModelConfig *m = name ? config_find_model(s->config, name) : NULL;

        for (size_t i = 0; m && i < s->n_models; i++) {
                if (streq(model_name(s->models[i]), m->name)) {
                        return s->models[i];
                }
        }
        return NULL;
}

Child *supervisor_child(const Supervisor *s, const char *name)
{
        Model *m = supervisor_model(s, name);

        return m ? m->child : NULL;
}

static bool supervisor_is_active(const Supervisor *s, const Model *m)
{
        return s->loaded && s->active && streq(s->active, model_name(m));
}

static void supervisor_notify_change(Supervisor *s)
{
        /* From the loop, once, after what is going on now: the proxy's held requests and the
         * status must not run inside a supervisor call that the proxy made. */
        if (sd_event_source_set_enabled(s->changed, SD_EVENT_ONESHOT) < 0 && s->options.on_change) {
                s->options.on_change(s, s->options.userdata);
        }
}

static int supervisor_on_changed(sd_event_source *es, void *userdata)
{
        Supervisor *s = userdata;

        if (s->options.on_change) {
                s->options.on_change(s, s->options.userdata);
        }
        return 0;
}

/* ---- persistence ---- */

static int supervisor_on_persist(sd_event_source *es, void *userdata)
{
        Supervisor *s = userdata;

        if (s->active) {
                state_file_save_active(s->options.state_dir, s->active, s->loaded);
        }
        return 0;
}

/* Saved once what is pending in this loop iteration is done, at idle priority: the reply to
 * the switch goes out first, and an fsync (milliseconds on some disks) does not delay it. */
static void supervisor_persist(Supervisor *s)
{
        if (sd_event_source_set_enabled(s->persist_source, SD_EVENT_ONESHOT) < 0) {
                (void) supervisor_on_persist(s->persist_source, s);
        }
}

/* The one writer of the active model and whether it is loaded. */
static void supervisor_choose(Supervisor *s, const char *active, bool loaded)
{
        if (!streq_ptr(s->active, active)) {
                char *a = active ? strdup(active) : NULL;

                if (active && !a) {
                        log_error("Out of memory");
                        return;
                }
                free(s->active);
                s->active = a;
        }
        s->loaded = loaded;
}

/* ---- the machine ---- */

static void model_event(Model *m, ServingEvent e, ServingWhy why);

static void supervisor_on_drained(void *userdata)
{
        DrainWait *w = userdata;
        Model *m = w->model;

        free(w);
        if (!m) {
                return;
        }
        m->drain = NULL;
        model_event(m, SERVING_EVENT_DRAINED, SERVING_WHY_NONE);
}

/* Requests running on a model finish (or are cut off, now) before it stops: llama-server
 * would ignore the SIGTERM while they run anyway. done comes exactly once, maybe at once. */
static void model_drain(Model *m, bool now)
{
        Supervisor *s = m->supervisor;
        DrainWait *w;

        if (!s->options.drain) {
                if (!now) {
                        model_event(m, SERVING_EVENT_DRAINED, SERVING_WHY_NONE);
                }
                return;
        }
        if (m->drain && !now) {
                return; /* one at a time; the one in progress ends it */
        }
        w = calloc(1, sizeof(DrainWait));
        if (!w) {
                if (!now) {
                        model_event(m, SERVING_EVENT_DRAINED, SERVING_WHY_NONE);
                }
                return;
        }
        w->model = m;
        if (m->drain) {
                m->drain->model = NULL; /* the older one's done is no longer ours */
        }
        m->drain = w;
        s->options.drain(s->options.userdata, model_name(m), now, supervisor_on_drained, w);
}

static void model_do(Model *m, ServingAction a)
{
        switch (a) {
        case SERVING_ACTION_NONE:
                return;
        case SERVING_ACTION_START:
                m->again = false;
                child_start(m->child);
                return;
        case SERVING_ACTION_DRAIN:
                model_drain(m, false);
                return;
        case SERVING_ACTION_STOP:
                if (child_state(m->child) != CHILD_STOPPED && child_state(m->child) != CHILD_FAILED) {
                        child_stop(m->child);
                }
                return;
        case SERVING_ACTION_KILL:
                log_model(LOG_NOTICE, model_name(m), NULL, "%s: stopping at once (now): SIGKILL",
                          model_name(m));
                model_drain(m, true);
                child_stop(m->child);
                child_kill_now(m->child);
                return;
        case _SERVING_ACTION_MAX:
                return;
        }
}

/* The one place a model's serving state changes. */
static void model_event(Model *m, ServingEvent e, ServingWhy why)
{
        Supervisor *s = m->supervisor;
        ServingState old = m->state;
        ServingAction a;
        int next = serving_transition(old, e, &a);

        if (next < 0) {
                log_debug("%s: serving event %s ignored in state %s", model_name(m),
                          serving_event_to_string(e), serving_state_to_string(old));
                return;
        }
        m->state = next;
        if (why != SERVING_WHY_NONE) {
                m->why = why;
        }
        if (e == SERVING_EVENT_UNLOAD || e == SERVING_EVENT_STOP || e == SERVING_EVENT_KILL) {
                m->again = m->again && why == SERVING_WHY_RELOAD;
        }
        if (old != m->state) {
                log_debug("%s: %s --%s--> %s (%s)", model_name(m), serving_state_to_string(old),
                          serving_event_to_string(e), serving_state_to_string(m->state),
                          serving_why_to_string(m->why));
        }
        model_do(m, a);
        /* Down, and wanted back (a reload that changed it): it loads again. */
        if (m->state == SERVING_ABSENT && m->again && !s->stopping) {
                model_event(m, SERVING_EVENT_LOAD, SERVING_WHY_NONE);
        }
        if (old != m->state) {
                supervisor_notify_change(s);
        }
}

/* ---- GPU memory and the planner ---- */

void supervisor_gpu(Supervisor *s, SupervisorGpu *ret)
{
        GpuMemory g = {};

        *ret = (SupervisorGpu) { .source = footprint_source(s->footprint), .why = footprint_why(s->footprint) };
        for (size_t i = 0; i < s->n_models; i++) {
                footprint_measure(s->footprint, s->children[i]);
        }
        if (footprint_gpu(s->footprint, &g) >= 0) {
                ret->total = g.total;
                ret->used = g.used;
                ret->free = g.free;
        }
        ret->budget = footprint_budget(s->config->gpu_memory, ret->total);
        ret->max_resident = s->config->max_resident ? s->config->max_resident : ret->budget ? 0 : 1;
        for (size_t i = 0; i < s->n_models; i++) {
                const char *how;

                if (serving_state_running(s->models[i]->state)) {
                        ret->resident += footprint_need(s->footprint, model_config(s->models[i]), &how);
                }
        }
}

uint64_t supervisor_model_estimate(Supervisor *s, const char *model)
{
        Model *m = supervisor_model(s, model);

        return m ? footprint_estimate(s->footprint, model_config(m)) : 0;
}

uint64_t supervisor_model_measured(Supervisor *s, const char *model)
{
        Model *m = supervisor_model(s, model);

        if (!m) {
                return 0;
        }
        footprint_measure(s->footprint, m->child);
        return footprint_measured(s->footprint, model_config(m));
}

uint64_t supervisor_model_gpu(Supervisor *s, const char *model, const char **ret_how)
{
        Model *m = supervisor_model(s, model);

        *ret_how = NULL;
        if (!m) {
                return 0;
        }
        footprint_measure(s->footprint, m->child);
        return footprint_need(s->footprint, model_config(m), ret_how);
}

/* The models as the planner sees them, in their order, and the limits. */
static ResidentModel *supervisor_plan_input(Supervisor *s, ResidencyLimits *ret_limits)
{
        ResidentModel *models = calloc(MAX(s->n_models, (size_t) 1), sizeof(ResidentModel));
        SupervisorGpu gpu;

        if (!models) {
                return NULL;
        }
        supervisor_gpu(s, &gpu);
        *ret_limits = (ResidencyLimits) { .max_resident = gpu.max_resident, .budget = gpu.budget };
        for (size_t i = 0; i < s->n_models; i++) {
                Model *m = s->models[i];
                const char *how;

                models[i] = (ResidentModel) {
                        .name = model_name(m),
                        /* A model draining or stopping still takes its memory: the plan may
                         * name it, and the switch waits for it to be down. */
                        .running = serving_state_running(m->state),
                        .pinned = model_pinned(m),
                        .active = supervisor_is_active(s, m),
                        .last_used_usec = child_used_usec(m->child),
                        .bytes = footprint_need(s->footprint, model_config(m), &how),
                };
                models[i].measured = streq_ptr(how, "measured");
        }
        return models;
}

/* The models to stop so that target fits (names), or -E2BIG with the reason. */
static int supervisor_plan(Supervisor *s, const char *target, char ***ret_evict, char **ret_reason)
{
        ResidencyLimits l;
        _cleanup_free_ ResidentModel *models = supervisor_plan_input(s, &l);
        _cleanup_free_ size_t *evict = calloc(MAX(s->n_models, (size_t) 1), sizeof(size_t));
        _cleanup_strv_free_ char **names = calloc(1, sizeof(char *));
        size_t t = 0, n = 0;
        int r;

        if (!models || !evict || !names) {
                return -ENOMEM;
        }
        for (size_t i = 0; i < s->n_models; i++) {
                if (streq(models[i].name, target)) {
                        t = i;
                }
        }
        r = residency_plan(models, s->n_models, t, &l, evict, &n);
        if (r == -E2BIG) {
                uint64_t pinned = 0;

                for (size_t i = 0; i < s->n_models; i++) {
                        pinned += models[i].pinned && models[i].running ? models[i].bytes : 0;
                }
                if (asprintf(ret_reason, "%s needs %.1f GiB of GPU memory and the budget is %.1f GiB, "
                             "%.1f GiB of it taken by pinned models: it does not fit even alone",
                             target, (double) models[t].bytes / (1ULL << 30), (double) l.budget / (1ULL << 30),
                             (double) pinned / (1ULL << 30)) < 0) {
                        *ret_reason = NULL;
                }
                return r;
        }
        if (r < 0) {
                return r;
        }
        for (size_t i = 0; i < n; i++) {
                if (strv_extend(&names, models[evict[i]].name) < 0) {
                        return -ENOMEM;
                }
        }
        *ret_evict = TAKE_PTR(names);
        return 0;
}

/* The files of the generation models that are not loaded into the page cache: the next switch
 * to one of them is a warm load. Never beside a load or a switch. */
static void supervisor_prefetch(Supervisor *s)
{
        _cleanup_free_ Child **down = calloc(MAX(s->n_models, (size_t) 1), sizeof(Child *));
        size_t n = 0;

        if (!s->config->prefetch || s->stopping || s->op || !down) {
                return;
        }
        for (size_t i = 0; i < s->n_models; i++) {
                Model *m = s->models[i];

                if (m->state == SERVING_LOADING) {
                        return; /* it starts again when that is done */
                }
                if (!model_pinned(m) && model_down(m)) {
                        down[n++] = m->child;
                }
        }
        if (prefetch_start_children(s->prefetch, down, n, s->config->prefetch_limit) < 0) {
                log_warning("prefetch: cannot start the helper");
        }
}

/* ---- operations ---- */

static void op_free(SwitchOp *op)
{
        if (!op) {
                return;
        }
        strv_free(op->evict);
        free(op->waiters);
        free(op->target);
        free(op->previous);
        free(op->reason);
        strv_free(op->log);
        free(op);
}

static void op_progress(Supervisor *s, SwitchPhase phase, const char *model, double progress)
{
        for (size_t i = 0; s->op && i < s->op->n_waiters; i++) {
                if (s->op->waiters[i].cb.progress) {
                        s->op->waiters[i].cb.progress(s->op->waiters[i].userdata, phase, model, progress);
                }
        }
}

/* The one writer of the operation's phase. */
static void op_set_phase(Supervisor *s, SwitchPhase phase, const char *model)
{
        s->op->phase = phase;
        s->op->progress = -1;
        op_progress(s, phase, model, -1);
        if (phase != SWITCH_STOPPING) {
                (void) sd_event_source_set_time_relative(s->progress_timer, SUPERVISOR_PROGRESS_USEC);
                (void) sd_event_source_set_enabled(s->progress_timer, SD_EVENT_ON);
        }
        supervisor_notify_change(s);
}

static int op_add_waiter(SwitchOp *op, const SwitchCallbacks *cb, void *userdata)
{
        SwitchWaiter *w;

        if (!cb) {
                return 0;
        }
        w = ARRAY_GROW(op->waiters, op->n_waiters);
        if (!w) {
                return -ENOMEM;
        }
        *w = (SwitchWaiter) { .cb = *cb, .userdata = userdata };
        op->n_waiters++;
        return 0;
}

/* Ends the operation in progress and tells those who asked for it. */
static void op_finish(Supervisor *s, int error, const char *restored, const char *superseded_by)
{
        SwitchOp *op = s->op;
        uint64_t now = event_now_usec(s->options.event);
        Child *t = op->target ? supervisor_child(s, op->target) : NULL;

        s->op = NULL;
        (void) sd_event_source_set_enabled(s->progress_timer, SD_EVENT_OFF);
        SwitchResult r = {
                .error = error,
                .kind = op->beside ? SWITCH_KIND_BESIDE : SWITCH_KIND_REPLACE,
                .evicted = op->evict,
                .from = op->previous,
                .to = op->target,
                .changed = true,
                .reason = op->reason,
                .log = op->log,
                .restored = restored,
                .superseded_by = superseded_by,
                .total_usec = now - op->start_usec,
        };
        if (op->stopped_usec > 0) {
                r.stop_usec = op->stopped_usec - op->start_usec;
        }
        if (error == 0 && t && child_ready_usec(t) >= child_spawned_usec(t) &&
            child_spawned_usec(t) >= op->start_usec) {
                r.load_usec = child_ready_usec(t) - child_spawned_usec(t);
        }
        for (size_t i = 0; i < op->n_waiters; i++) {
                if (op->waiters[i].cb.done) {
                        op->waiters[i].cb.done(op->waiters[i].userdata, &r);
                }
        }
        op_free(op);
        if (error == 0) {
                supervisor_prefetch(s);
        }
        supervisor_notify_change(s);
}

/* Whether every model the operation stops is down, and what a reload removed. */
static bool op_evicted_down(const Supervisor *s)
{
        STRV_FOREACH(n, s->op->evict) {
                Model *m = supervisor_model(s, *n);

                if (m && !model_down(m)) {
                        return false;
                }
        }
        for (size_t i = 0; i < s->n_retired; i++) {
                if (!model_pinned(s->retired[i]) && !model_down(s->retired[i])) {
                        return false;
                }
        }
        return true;
}

/* The target failed to load, or crashed while loading: the switch gives up on it. The one
 * place a failed switch is logged. */
static void op_fail(Supervisor *s, Model *t)
{
        SwitchOp *op = s->op;
        Model *p;

        free(op->reason);
        op->reason = strdup(child_reason(t->child) ? child_reason(t->child) : "failed to load");
        strv_free(op->log);
        op->log = strv_copy(child_last_lines(t->child));
        log_model(LOG_ERR, op->target, "switch", "Switch to %s failed: %s (see: journalctl -u llmd MODEL=%s)",
                  op->target, op->reason ? op->reason : "?", op->target);
        model_event(t, SERVING_EVENT_FAILED, SERVING_WHY_FAILED);
        if (op->beside) {
                /* The active model served all along: it still does. */
                op_finish(s, -EIO, op->load_only ? NULL : s->active, NULL);
                return;
        }
        p = op->previous && !streq(op->previous, op->target) ? supervisor_model(s, op->previous) : NULL;
        if (p) {
                /* Not evicted any more: it is what serves now. */
                strv_remove(op->evict, op->previous);
                supervisor_choose(s, op->previous, s->loaded);
                log_model(LOG_NOTICE, op->previous, "switch", "Restoring %s", op->previous);
                op_set_phase(s, SWITCH_RESTORING, op->previous);
                model_event(p, SERVING_EVENT_LOAD, SERVING_WHY_NONE);
                return;
        }
        op_finish(s, -EIO, NULL, NULL);
}

/* Whether a model that is loading has crashed (its child waits to restart, or is being
 * taken down): for a switch, that is a failure. */
static bool model_crashed(const Model *m)
{
        ChildState st = child_state(m->child);

        return m->state == SERVING_LOADING && (st == CHILD_BACKOFF || st == CHILD_KILLING);
}

static void supervisor_advance_once(Supervisor *s)
{
        SwitchOp *op = s->op;
        Model *m;

        if (!op) {
                return;
        }
        switch (op->phase) {
        case SWITCH_STOPPING:
                m = op->target ? supervisor_model(s, op->target) : NULL;
                /* The target itself may still be on its way down (drained after an unload):
                 * it loads anew once it is. */
                if (!op_evicted_down(s) ||
                    (m && (m->state == SERVING_DRAINING || m->state == SERVING_STOPPING))) {
                        return;
                }
                op->stopped_usec = event_now_usec(s->options.event);
                if (!op->target) {
                        supervisor_persist(s);
                        op_finish(s, 0, NULL, NULL);
                        return;
                }
                op_set_phase(s, SWITCH_LOADING, op->target);
                model_event(m, SERVING_EVENT_LOAD, SERVING_WHY_NONE);
                s->advance_again = true;
                return;
        case SWITCH_LOADING:
                m = supervisor_model(s, op->target);
                if (m->state == SERVING_READY) {
                        if (op->load_only) {
                                log_model(LOG_INFO, op->target, "load", "Loaded %s beside %s in %.3f s",
                                          op->target, s->active ? s->active : "nothing",
                                          (double) (event_now_usec(s->options.event) - op->start_usec) / USEC_PER_SEC);
                                op_finish(s, 0, NULL, NULL);
                                return;
                        }
                        /* Made before break: the target takes over now. */
                        supervisor_choose(s, op->target, s->loaded);
                        child_touch(m->child);
                        supervisor_persist(s);
                        log_model(LOG_INFO, op->target, "switch", "Switched to %s in %.3f s",
                                  op->target, (double) (event_now_usec(s->options.event) - op->start_usec) / USEC_PER_SEC);
                        op_finish(s, 0, NULL, NULL);
                } else if (m->state != SERVING_LOADING || model_crashed(m)) {
                        op_fail(s, m);
                }
                return;
        case SWITCH_RESTORING:
                m = supervisor_model(s, op->previous);
                if (m->state == SERVING_READY) {
                        op_finish(s, -EIO, op->previous, NULL);
                } else if (m->state != SERVING_LOADING || model_crashed(m)) {
                        op_finish(s, -EIO, NULL, NULL);
                }
                return;
        case _SWITCH_PHASE_MAX:
                return;
        }
}

/* Events come while an operation acts on models: run its steps as a loop, not nested. */
static void supervisor_advance(Supervisor *s)
{
        if (s->advancing) {
                s->advance_again = true;
                return;
        }
        s->advancing = true;
        do {
                s->advance_again = false;
                supervisor_advance_once(s);
        } while (s->advance_again);
        s->advancing = false;
}

static int supervisor_on_progress(sd_event_source *es, uint64_t usec, void *userdata)
{
        Supervisor *s = userdata;
        SwitchOp *op = s->op;
        const char *model;
        double p;

        if (!op || op->phase == SWITCH_STOPPING) {
                return 0;
        }
        model = op->phase == SWITCH_LOADING ? op->target : op->previous;
        p = child_load_progress(supervisor_child(s, model));
        if (p >= 0 && (op->progress < 0 || p - op->progress >= 0.01)) {
                op->progress = p;
                op_progress(s, op->phase, model, p);
                supervisor_notify_change(s);
        }
        (void) sd_event_source_set_time_relative(es, SUPERVISOR_PROGRESS_USEC);
        (void) sd_event_source_set_enabled(es, SD_EVENT_ON);
        return 0;
}

static int supervisor_check_target(Supervisor *s, const char *target, const ModelConfig **ret,
                                   char **ret_reason)
{
        const ModelConfig *m = config_find_model(s->config, target);
        char *reason = NULL;

        if (!m) {
                _cleanup_strv_free_ char **names = NULL;
                FOREACH_MODEL(x, s->config) {
                        if (!x->pin && strv_extend(&names, x->name) < 0) {
                                return -ENOMEM;
                        }
                }
                _cleanup_free_ char *j = strv_join(names, ", ");
                if (asprintf(&reason, "no model '%s' (known: %s)", target, j ? j : "") < 0) {
                        reason = NULL;
                }
                *ret_reason = reason;
                return -ENOENT;
        }
        if (m->pin) {
                if (asprintf(&reason, "'%s' is pinned: always loaded, never switched to", m->name) < 0) {
                        reason = NULL;
                }
                *ret_reason = reason;
                return -EPERM;
        }
        if (access(m->model_path, R_OK) < 0) {
                int r = -errno;
                if (asprintf(&reason, "model file %s: %s", m->model_path, strerror(-r)) < 0) {
                        reason = NULL;
                }
                *ret_reason = reason;
                return -EACCES;
        }
        *ret = m;
        return 0;
}

/* Ends the operation in progress for a newer one (for target; NULL: Stop) and returns what
 * served before it, still the model to restore. A model it was loading, wanted by it alone,
 * stops: a superseded switch must not leave it resident, taking room. */
static char *op_supersede(Supervisor *s, const char *target)
{
        char *previous = TAKE_PTR(s->op->previous);
        _cleanup_free_ char *old = s->op->target ? strdup(s->op->target) : NULL;
        Model *m;

        op_finish(s, -ESTALE, NULL, target ? target : "stop");
        m = old && (!target || !streq(old, target)) && !(previous && streq(old, previous))
                    ? supervisor_model(s, old) : NULL;
        if (m && m->state == SERVING_LOADING) {
                log_model(LOG_INFO, old, "switch", "%s: no longer wanted, stopping its load", old);
                model_event(m, SERVING_EVENT_UNLOAD, SERVING_WHY_SUPERSEDED);
        }
        return previous;
}

/* A switch to a resident model that is ready: a change of route, nothing started or stopped. */
static void supervisor_switch_resident(Supervisor *s, const char *target, const SwitchCallbacks *cb,
                                       void *userdata)
{
        _cleanup_free_ char *previous = NULL;
        uint64_t start = now_usec(CLOCK_MONOTONIC); /* the loop's cached time would not move */

        if (s->op) {
                previous = op_supersede(s, target);
        } else if (s->loaded && s->active) {
                previous = strdup(s->active);
        }
        supervisor_choose(s, target, true);
        child_touch(supervisor_child(s, target));
        supervisor_persist(s);
        supervisor_prefetch(s);
        log_model(LOG_INFO, target, "switch", "Switched %s → %s (resident)", previous ? previous : "none",
                  target);
        SwitchResult r = {
                .kind = SWITCH_KIND_RESIDENT,
                .from = previous,
                .to = target,
                .changed = !previous || !streq(previous, target),
                .total_usec = now_usec(CLOCK_MONOTONIC) - start,
        };
        if (cb && cb->done) {
                cb->done(userdata, &r);
        }
        supervisor_notify_change(s);
}

static bool supervisor_generation_down(const Supervisor *s)
{
        for (size_t i = 0; i < s->n_models; i++) {
                if (!model_pinned(s->models[i]) && !model_down(s->models[i])) {
                        return false;
                }
        }
        return true;
}

static int supervisor_begin(Supervisor *s, const char *target, bool loaded, SwitchFlags flags,
                            const SwitchCallbacks *cb, void *userdata, char **ret_reason)
{
        _cleanup_free_ char *previous = NULL;
        _cleanup_strv_free_ char **evict = NULL;
        bool load_only = flags & SWITCH_LOAD_ONLY, beside;
        Model *t = target ? supervisor_model(s, target) : NULL;
        Model *a = s->loaded && s->active ? supervisor_model(s, s->active) : NULL;
        SwitchOp *op;
        int r;

        /* The same as the operation in progress: join it (a Switch turns a Load of its target
         * into a switch), and be told when it is done. */
        if (s->op && s->op->phase != SWITCH_RESTORING && streq_ptr(s->op->target, target) &&
            (!load_only || s->op->target)) {
                if (!load_only && s->op->load_only) {
                        s->op->load_only = false;
                        supervisor_choose(s, s->active, true);
                }
                return op_add_waiter(s->op, cb, userdata);
        }

        /* Nothing to do: say so. */
        if (!s->op && ((t && load_only && serving_state_resident(t->state)) ||
                       (t && supervisor_is_active(s, t) && t->state == SERVING_READY) ||
                       (!t && !s->loaded && supervisor_generation_down(s)))) {
                SwitchResult res = { .kind = SWITCH_KIND_RESIDENT, .from = s->active, .to = target };

                if (cb && cb->done) {
                        cb->done(userdata, &res);
                }
                return 0;
        }
        if (t && !load_only && t->state == SERVING_READY) {
                supervisor_switch_resident(s, target, cb, userdata);
                return 0;
        }

        if (t) {
                r = supervisor_plan(s, target, &evict, ret_reason);
                if (r < 0) {
                        return r;
                }
        } else {
                /* Stop: every generation model. */
                evict = calloc(1, sizeof(char *));
                for (size_t i = 0; evict && i < s->n_models; i++) {
                        Model *m = s->models[i];

                        if (!model_pinned(m) && !model_down(m) && strv_extend(&evict, model_name(m)) < 0) {
                                return -ENOMEM;
                        }
                }
                if (!evict) {
                        return -ENOMEM;
                }
        }
        /* Make before break: the active model keeps serving while the target loads, when it
         * need not make room. */
        beside = t && a && a->state == SERVING_READY && !strv_contains(evict, s->active) &&
                 !streq(s->active, target);
        if (load_only && !beside && a && !streq(s->active, target)) {
                if (asprintf(ret_reason, "no room for %s beside the active model %s (llmctl switch %s "
                             "would stop it)", target, s->active, target) < 0) {
                        *ret_reason = NULL;
                }
                return -ENOSPC;
        }

        if (s->op) {
                /* The older switch is superseded; what served before it is still the model to
                 * restore if this one fails. */
                previous = op_supersede(s, target);
        } else if (a && (a->state == SERVING_READY || a->state == SERVING_LOADING)) {
                previous = strdup(s->active);
        }

        op = calloc(1, sizeof(SwitchOp));
        if (!op) {
                return -ENOMEM;
        }
        op->target = target ? strdup(target) : NULL;
        op->previous = TAKE_PTR(previous);
        op->evict = TAKE_PTR(evict);
        op->beside = beside || load_only;
        op->load_only = load_only;
        op->phase = SWITCH_STOPPING;
        op->start_usec = event_now_usec(s->options.event);
        op->progress = -1;
        s->op = op;
        if (op_add_waiter(op, cb, userdata) < 0) {
                return -ENOMEM; /* nothing started yet: the op ends with the next one */
        }
        prefetch_stop(s->prefetch); /* never beside a load */
        if (!load_only) {
                /* Break before make: requests wait for the target. Made before break: the
                 * active model stays until the target is ready. */
                supervisor_choose(s, target && !op->beside ? target : s->active, loaded);
        }
        log_model(LOG_INFO, target, "switch", "%s %s → %s%s", load_only ? "Loading" : "Switching",
                  op->previous ? op->previous : "none", target ? target : "none",
                  op->beside && !load_only ? " (beside it until ready)" : "");

        STRV_FOREACH(n, op->evict) {
                Model *m = supervisor_model(s, *n);

                if (m && !model_down(m)) {
                        op_progress(s, SWITCH_STOPPING, *n, -1);
                        log_model(LOG_INFO, *n, "evict", "Stopping %s to make room for %s", *n,
                                  target ? target : "nothing");
                        model_event(m, flags & SWITCH_NOW ? SERVING_EVENT_KILL : SERVING_EVENT_UNLOAD,
                                    target ? SERVING_WHY_EVICT : SERVING_WHY_STOP);
                }
        }
        supervisor_notify_change(s);
        supervisor_advance(s);
        return 0;
}

int supervisor_switch(Supervisor *s, const char *target, SwitchFlags flags,
                      const SwitchCallbacks *cb, void *userdata, char **ret_reason)
{
        const ModelConfig *m = NULL;
        int r;

        *ret_reason = NULL;
        if (s->stopping) {
                *ret_reason = strdup("llmd is stopping");
                return -ESHUTDOWN;
        }
        if (target) {
                r = supervisor_check_target(s, target, &m, ret_reason);
                if (r < 0) {
                        return r;
                }
        }
        return supervisor_begin(s, m ? m->name : NULL, m != NULL, flags, cb, userdata, ret_reason);
}

int supervisor_unload(Supervisor *s, const char *name, char **ret_reason)
{
        Model *m = supervisor_model(s, name);
        int r = 0;

        *ret_reason = NULL;
        if (!m) {
                r = asprintf(ret_reason, "no model '%s'", name) < 0 ? -ENOMEM : -ENOENT;
        } else if (model_pinned(m)) {
                r = asprintf(ret_reason, "'%s' is pinned: always loaded", model_name(m)) < 0 ? -ENOMEM : -EPERM;
        } else if (supervisor_is_active(s, m)) {
                r = asprintf(ret_reason, "'%s' is the active model (llmctl stop unloads it)", model_name(m)) < 0
                            ? -ENOMEM : -EBUSY;
        } else if (s->op && s->op->target && streq(s->op->target, model_name(m))) {
                r = asprintf(ret_reason, "'%s' is being loaded (llmctl switch to another model stops that)",
                             model_name(m)) < 0 ? -ENOMEM : -EBUSY;
        }
        if (r < 0) {
                return r;
        }
        if (serving_state_resident(m->state)) {
                log_model(LOG_INFO, model_name(m), "unload", "Unloading %s", model_name(m));
        }
        model_event(m, SERVING_EVENT_UNLOAD, SERVING_WHY_UNLOAD);
        return 0;
}

int supervisor_start_active(Supervisor *s, const SwitchCallbacks *cb, void *userdata,
                            char **ret_reason)
{
        *ret_reason = NULL;
        if (!s->active) {
                *ret_reason = strdup("no generation model is configured");
                return -ENOENT;
        }
        return supervisor_switch(s, s->active, 0, cb, userdata, ret_reason);
}

/* ---- requests ---- */

static void supervisor_arm_unload(Supervisor *s);

void supervisor_request_begin(Supervisor *s, const char *model)
{
        Model *m = supervisor_model(s, model);

        if (m) {
                m->in_flight++;
                child_touch(m->child);
        }
}

void supervisor_request_end(Supervisor *s, const char *model)
{
        Model *m = supervisor_model(s, model);

        if (m) {
                if (m->in_flight > 0) {
                        m->in_flight--;
                }
                child_touch(m->child); /* idle from its last byte on */
                supervisor_arm_unload(s);
        }
}

/* ---- unload-after ---- */

/* Stops the resident models that are not active and have served nothing for their
 * unload-after, counted from the end of their last request, and arms the timer for the next
 * that could be. A model with a request running is not idle. */
static int supervisor_on_unload_timer(sd_event_source *es, uint64_t usec, void *userdata)
{
        Supervisor *s = userdata;
        uint64_t now = event_now_usec(s->options.event), next = UINT64_MAX;

        for (size_t i = 0; i < s->n_models && !s->stopping; i++) {
                Model *m = s->models[i];
                const ModelConfig *c = model_config(m);
                uint64_t due;

                if (c->pin || c->unload_after_usec == 0 || m->state != SERVING_READY ||
                    m->in_flight > 0 || (s->active && streq(s->active, c->name)) ||
                    (s->op && s->op->target && streq(s->op->target, c->name))) {
                        continue;
                }
                due = child_used_usec(m->child) + c->unload_after_usec;
                if (due <= now) {
                        char buf[32];

                        log_model(LOG_INFO, c->name, "unload", "%s: unused for %s (unload-after), unloading",
                                  c->name, format_duration(buf, sizeof(buf), c->unload_after_usec));
                        model_event(m, SERVING_EVENT_UNLOAD, SERVING_WHY_IDLE);
                } else {
                        next = MIN(next, due);
                }
        }
        if (next == UINT64_MAX) {
                (void) sd_event_source_set_enabled(es, SD_EVENT_OFF);
        } else {
                (void) sd_event_source_set_time(es, next);
                (void) sd_event_source_set_enabled(es, SD_EVENT_ONESHOT);
        }
        return 0;
}

static void supervisor_arm_unload(Supervisor *s)
{
        (void) supervisor_on_unload_timer(s->unload_timer, 0, s);
}

/* ---- children ---- */

static int supervisor_on_sweep(sd_event_source *es, void *userdata);

static void supervisor_check_stop(Supervisor *s)
{
        bool gen_down = true, all_down = true;

        if (!s->stopping) {
                return;
        }
        for (size_t i = 0; i < s->n_models; i++) {
                if (!model_down(s->models[i])) {
                        all_down = false;
                        if (!model_pinned(s->models[i])) {
                                gen_down = false;
                        }
                }
        }
        for (size_t i = 0; i < s->n_retired; i++) {
                if (!model_down(s->retired[i])) {
                        all_down = gen_down = false;
                }
        }
        if (gen_down && !all_down) {
                for (size_t i = 0; i < s->n_models; i++) {
                        if (model_pinned(s->models[i])) {
                                model_event(s->models[i], SERVING_EVENT_STOP, SERVING_WHY_STOP);
                        }
                }
                return; /* the last one down came back here if that finished it */
        }
        if (all_down && s->stop_done) {
                void (*done)(void *) = s->stop_done;

                s->stop_done = NULL;
                done(s->stop_userdata);
        }
}

/* A crash or a failure, once: unless the switch loading it gives up on it, and says so. */
static void supervisor_log_crash(Supervisor *s, Model *m, ChildState old)
{
        const char *name = model_name(m);
        char buf[32];

        if (s->op && s->op->phase == SWITCH_LOADING && streq_ptr(s->op->target, name)) {
                return;
        }
        if (child_state(m->child) == CHILD_BACKOFF) {
                log_model(LOG_WARNING, name, "crash",
                          "%s: llama-server %s while %s; restarting in %s (see: journalctl -u llmd MODEL=%s)",
                          name, child_reason(m->child), child_state_to_string(old),
                          format_duration(buf, sizeof(buf), child_restart_delay(m->child)), name);
        } else {
                log_model(LOG_ERR, name, "failed", "%s: failed: %s (%u restarts) (see: journalctl -u llmd MODEL=%s)",
                          name, child_reason(m->child), child_restarts(m->child), name);
        }
}

/* What a child's change means for its model's machine. */
static void supervisor_on_child(Child *c, ChildState old, void *userdata)
{
        Model *m = userdata;
        Supervisor *s = m->supervisor;
        ChildState st = child_state(c);
        bool had_op = s->op; /* a switch this ends prefetches in op_finish() */

        if (st == CHILD_LOADING) {
                prefetch_stop(s->prefetch); /* whatever started the load */
        }
        if (st == CHILD_FAILED || st == CHILD_BACKOFF || (st == CHILD_KILLING && old != CHILD_KILLING)) {
                free(s->last_failed);
                s->last_failed = strdup(child_name(c));
                s->last_failed_usec = event_now_usec(s->options.event);
        }
        if (st == CHILD_BACKOFF || st == CHILD_FAILED) {
                supervisor_log_crash(s, m, old);
        }
        switch (st) {
        case CHILD_READY:
                if (old != CHILD_READY) {
                        footprint_measure(s->footprint, c);
                        model_event(m, SERVING_EVENT_READY, SERVING_WHY_NONE);
                }
                break;
        case CHILD_BACKOFF:
                model_event(m, SERVING_EVENT_CRASHED, SERVING_WHY_NONE);
                break;
        case CHILD_KILLING:
                if (old == CHILD_READY) {
                        model_event(m, SERVING_EVENT_CRASHED, SERVING_WHY_NONE); /* unhealthy */
                }
                break;
        case CHILD_FAILED:
                model_event(m, SERVING_EVENT_FAILED, SERVING_WHY_NONE);
                break;
        case CHILD_STOPPED:
                model_event(m, SERVING_EVENT_DOWN, SERVING_WHY_NONE);
                break;
        case CHILD_LOADING:
        case CHILD_STOPPING:
        case _CHILD_STATE_MAX:
        case _CHILD_STATE_INVALID:
                break;
        }
        if (s->n_retired > 0) {
                (void) sd_event_source_set_enabled(s->sweep, SD_EVENT_ONESHOT);
        }
        supervisor_advance(s);
        supervisor_check_stop(s);
        supervisor_arm_unload(s);
        if (st == CHILD_READY && old != CHILD_READY && !had_op && !s->op) {
                supervisor_prefetch(s); /* a load ended (at start, or one a switch left running) */
        }
        supervisor_notify_change(s);
}

static Model *model_free(Model *m)
{
        if (!m) {
                return NULL;
        }
        if (m->drain) {
                m->drain->model = NULL;
        }
        child_free(m->child);
        free(m);
        return NULL;
}

static int supervisor_make_model(Supervisor *s, const ModelConfig *mc, Model **ret)
{
        ChildContext ctx = {
                .event = s->options.event,
                .runtime_dir = s->options.runtime_dir,
                .binary = s->binary,
                .environ = s->options.environ,
        };
        Model *m = calloc(1, sizeof(Model));
        int r;

        if (!m) {
                return -ENOMEM;
        }
        m->supervisor = s;
        m->state = SERVING_ABSENT;
        r = child_new(&ctx, mc, supervisor_on_child, m, &m->child);
        if (r < 0) {
                free(m);
                return r;
        }
        *ret = m;
        return 0;
}

static int supervisor_on_sweep(sd_event_source *es, void *userdata)
{
        Supervisor *s = userdata;
        size_t j = 0;

        for (size_t i = 0; i < s->n_retired; i++) {
                if (model_down(s->retired[i])) {
                        model_free(s->retired[i]);
                } else {
                        s->retired[j++] = s->retired[i];
                }
        }
        s->n_retired = j;
        return 0;
}

static const char *config_binary(const Config *c)
{
        /* The config names the binary; else $LLAMA_SERVER (the tests' simulator); else $PATH. */
        const char *b = c->llama_server ? c->llama_server : getenv("LLAMA_SERVER");

        return isempty(b) ? "llama-server" : b;
}

/* children[] follows models[]. */
static int supervisor_set_models(Supervisor *s, Model **models, size_t n)
{
        Child **children = calloc(MAX(n, (size_t) 1), sizeof(Child *));

        if (!children) {
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                children[i] = models[i]->child;
        }
        free(s->models);
        free(s->children);
        s->models = models;
        s->children = children;
        s->n_models = n;
        return 0;
}

int supervisor_new(const SupervisorOptions *o, Config *config, Supervisor **ret)
{
        _cleanup_(supervisor_freep) Supervisor *s = NULL;
        Model **models;
        size_t n = 0;
        int r;

        s = calloc(1, sizeof(Supervisor));
        if (!s) {
                config_free(config);
                return -ENOMEM;
        }
        s->options = *o;
        s->config = config;
        s->loaded = true;
        s->binary = strdup(config_binary(config));
        models = calloc(MAX(config->n_models, (size_t) 1), sizeof(Model *));
        if (!s->binary || !models) {
                free(models);
                return -ENOMEM;
        }
        FOREACH_MODEL(m, config) {
                r = supervisor_make_model(s, m, &models[n]);
                if (r < 0) {
                        while (n > 0) {
                                model_free(models[--n]);
                        }
                        free(models);
                        return r;
                }
                n++;
        }
        r = supervisor_set_models(s, models, n);
        if (r < 0) {
                while (n > 0) {
                        model_free(models[--n]);
                }
                free(models);
                return r;
        }
        if (config->default_model) {
                s->active = strdup(config->default_model);
                if (!s->active) {
                        return -ENOMEM;
                }
        }
        state_file_load_active(o->state_dir, config, &s->active, &s->loaded);
        r = footprint_new(o->state_dir, &s->footprint);
        if (r < 0) {
                return r;
        }
        r = sd_event_add_time(o->event, &s->unload_timer, CLOCK_MONOTONIC, UINT64_MAX, USEC_PER_SEC,
                              supervisor_on_unload_timer, s);
        if (r < 0) {
                return r;
        }
        (void) sd_event_source_set_enabled(s->unload_timer, SD_EVENT_OFF);
        r = prefetch_new(o->event, &s->prefetch);
        if (r < 0) {
                return r;
        }
        r = sd_event_add_defer(o->event, &s->persist_source, supervisor_on_persist, s);
        if (r < 0) {
                return r;
        }
        (void) sd_event_source_set_enabled(s->persist_source, SD_EVENT_OFF);
        (void) sd_event_source_set_priority(s->persist_source, SD_EVENT_PRIORITY_IDLE);
        r = sd_event_add_defer(o->event, &s->changed, supervisor_on_changed, s);
        if (r < 0) {
                return r;
        }
        (void) sd_event_source_set_enabled(s->changed, SD_EVENT_OFF);
        r = sd_event_add_defer(o->event, &s->sweep, supervisor_on_sweep, s);
        if (r < 0) {
                return r;
        }
        (void) sd_event_source_set_enabled(s->sweep, SD_EVENT_OFF);
        r = sd_event_add_time_relative(o->event, &s->progress_timer, CLOCK_MONOTONIC,
                                       SUPERVISOR_PROGRESS_USEC, USEC_PER_MSEC,
                                       supervisor_on_progress, s);
        if (r < 0) {
                return r;
        }
        (void) sd_event_source_set_enabled(s->progress_timer, SD_EVENT_OFF);
        *ret = TAKE_PTR(s);
        return 0;
}

Supervisor *supervisor_free(Supervisor *s)
{
        if (!s) {
                return NULL;
        }
        if (s->op) {
                s->op->n_waiters = 0;
                op_free(TAKE_PTR(s->op));
        }
        for (size_t i = 0; i < s->n_models; i++) {
                model_free(s->models[i]);
        }
        for (size_t i = 0; i < s->n_retired; i++) {
                model_free(s->retired[i]);
        }
        free(s->models);
        free(s->children);
        free(s->retired);
        sd_event_source_disable_unref(s->sweep);
        sd_event_source_disable_unref(s->progress_timer);
        sd_event_source_disable_unref(s->unload_timer);
        sd_event_source_disable_unref(s->changed);
        if (s->persist_source) {
                int on = SD_EVENT_OFF;

                if (sd_event_source_get_enabled(s->persist_source, &on) >= 0 && on != SD_EVENT_OFF) {
                        (void) supervisor_on_persist(s->persist_source, s); /* still due: now */
                }
                sd_event_source_disable_unref(s->persist_source);
        }
        footprint_free(s->footprint);
        prefetch_free(s->prefetch);
        config_free(s->config);
        free(s->binary);
        free(s->active);
        free(s->last_failed);
        free(s);
        return NULL;
}

void supervisor_start(Supervisor *s)
{
        Model *a = s->active ? supervisor_model(s, s->active) : NULL;

        for (size_t i = 0; i < s->n_models; i++) {
                const ModelConfig *m = model_config(s->models[i]);

                if (m->pin && m->load_on_startup) {
                        model_event(s->models[i], SERVING_EVENT_LOAD, SERVING_WHY_NONE);
                }
        }
        if (!a) {
                return;
        }
        if (!s->loaded) {
                log_info("%s: not loaded (stopped with llmctl stop; llmctl start loads it)", s->active);
        } else if (!model_config(a)->load_on_startup) {
                log_info("%s: not loaded at startup (load-on-startup = false)", s->active);
        } else {
                model_event(a, SERVING_EVENT_LOAD, SERVING_WHY_NONE);
        }
}

void supervisor_stop(Supervisor *s, void (*done)(void *userdata), void *userdata)
{
        s->stopping = true;
        prefetch_stop(s->prefetch);
        s->stop_done = done;
        s->stop_userdata = userdata;
        if (s->op) {
                for (size_t i = 0; i < s->op->n_waiters; i++) {
                        s->op->waiters[i].cb.progress = NULL;
                }
                op_finish(s, -ECANCELED, NULL, NULL);
        }
        for (size_t i = 0; i < s->n_models; i++) {
                if (!model_pinned(s->models[i])) {
                        model_event(s->models[i], SERVING_EVENT_STOP, SERVING_WHY_STOP);
                }
        }
        for (size_t i = 0; i < s->n_retired; i++) {
                model_event(s->retired[i], SERVING_EVENT_STOP, SERVING_WHY_STOP);
        }
        supervisor_check_stop(s);
}

void supervisor_kill(Supervisor *s)
{
        s->stopping = true;
        for (size_t i = 0; i < s->n_models; i++) {
                model_event(s->models[i], SERVING_EVENT_KILL, SERVING_WHY_STOP);
        }
        for (size_t i = 0; i < s->n_retired; i++) {
                model_event(s->retired[i], SERVING_EVENT_KILL, SERVING_WHY_STOP);
        }
}

/* ---- reload ---- */

/* Limits a reload lowered: resident models beyond them stop, least recently used first; the
 * active and pinned models stay (a later switch makes room as usual). */
static void supervisor_trim(Supervisor *s)
{
        ResidencyLimits l;
        _cleanup_free_ ResidentModel *models = supervisor_plan_input(s, &l);
        _cleanup_free_ size_t *evict = calloc(MAX(s->n_models, (size_t) 1), sizeof(size_t));
        size_t n = 0;

        if (!models || !evict) {
                return;
        }
        residency_trim(models, s->n_models, &l, evict, &n);
        for (size_t i = 0; i < n; i++) {
                Model *m = s->models[evict[i]];

                log_model(LOG_INFO, model_name(m), "evict", "%s: over max-resident or the GPU memory budget "
                          "after the reload, stopping it", model_name(m));
                model_event(m, SERVING_EVENT_UNLOAD, SERVING_WHY_TRIM);
        }
}

static Model *take_model(Supervisor *s, const char *name)
{
        for (size_t i = 0; i < s->n_models; i++) {
                Model *m = s->models[i];

                if (m && streq(model_name(m), name)) {
                        s->models[i] = NULL;
                        return m;
                }
        }
        return NULL;
}

int supervisor_reload(Supervisor *s, Config *config)
{
        _cleanup_free_ Model **models = NULL;
        _cleanup_free_ bool *changed = NULL;
        _cleanup_free_ char *binary = NULL;
        _cleanup_free_ Child **children = NULL;
        Model **retired;
        size_t n = 0, n_old = s->n_models, first_retired;
        bool binary_changed;
        int r;

        if (s->op) {
                return -EBUSY;
        }
        binary = strdup(config_binary(config));
        changed = calloc(MAX(config->n_models, (size_t) 1), sizeof(bool));
        models = calloc(MAX(config->n_models, (size_t) 1), sizeof(Model *));
        children = calloc(MAX(config->n_models, (size_t) 1), sizeof(Child *));
        retired = realloc(s->retired, sizeof(Model *) * (s->n_retired + s->n_models + 1));
        if (!binary || !changed || !models || !children || !retired) {
                return -ENOMEM;
        }
        s->retired = retired;
        binary_changed = !streq(binary, s->binary);

        /* First everything that can fail, so a failure leaves the old state whole. */
        FOREACH_MODEL(m, config) {
                bool known = false;

                for (size_t i = 0; i < s->n_models; i++) {
                        known = known || streq(model_name(s->models[i]), m->name);
                }
                if (!known) {
                        r = supervisor_make_model(s, m, &models[n]);
                        if (r < 0) {
                                for (size_t i = 0; i < n; i++) {
                                        model_free(models[i]);
                                }
                                return r;
                        }
                }
                n++; /* an existing model is filled in below */
        }
        /* Now the part that cannot fail. */
        n = 0;
        FOREACH_MODEL(m, config) {
                if (!models[n]) {
                        Model *old = take_model(s, m->name);

                        changed[n] = binary_changed || !config_model_equal(model_config(old), m);
                        if (changed[n]) {
                                log_model(LOG_INFO, m->name, "reload", "%s: profile changed", m->name);
                        }
                        (void) child_set_config(old->child, m);
                        models[n] = old;
                } else {
                        log_model(LOG_INFO, m->name, "reload", "%s: new profile", m->name);
                }
                children[n] = models[n]->child;
                n++;
        }
        first_retired = s->n_retired;
        for (size_t i = 0; i < n_old; i++) {
                if (s->models[i]) {
                        s->retired[s->n_retired++] = s->models[i];
                }
        }
        free(s->models);
        free(s->children);
        s->models = TAKE_PTR(models);
        s->children = TAKE_PTR(children);
        s->n_models = n;
        config_free(s->config);
        s->config = config;
        if (binary_changed) {
                free(s->binary);
                s->binary = TAKE_PTR(binary);
                for (size_t i = 0; i < s->n_models; i++) {
                        child_set_binary(s->children[i], s->binary);
                }
        }

        /* Events only now: their callbacks see the new set whole. */
        for (size_t i = first_retired; i < s->n_retired; i++) {
                Model *m = s->retired[i];

                log_model(LOG_INFO, model_name(m), "reload", "%s: profile removed, stopping it",
                          model_name(m));
                model_event(m, SERVING_EVENT_UNLOAD, SERVING_WHY_RELOAD);
        }

        /* The active model may have gone, or become pinned. */
        const ModelConfig *am = s->active ? config_find_model(config, s->active) : NULL;
        if (!am || am->pin) {
                supervisor_choose(s, config->default_model, s->loaded);
                log_notice("The active model is no longer configured, switching to the default, %s",
                           s->active ? s->active : "none");
        }

        for (size_t i = 0; i < s->n_models; i++) {
                Model *m = s->models[i];
                const ModelConfig *mc = model_config(m);
                bool want = (mc->pin && mc->load_on_startup) || supervisor_is_active(s, m);

                if (!want && !mc->pin && !changed[i]) {
                        continue; /* resident beside the active model, and unchanged: it stays */
                }
                if (!want) {
                        model_event(m, SERVING_EVENT_UNLOAD, SERVING_WHY_RELOAD);
                } else if (model_down(m)) {
                        /* Generation models start through a switch, so that only one runs. */
                        if (mc->pin) {
                                model_event(m, SERVING_EVENT_LOAD, SERVING_WHY_NONE);
                        }
                } else if (changed[i]) {
                        /* Its requests finish first, as for a switch; then it loads again. */
                        model_event(m, SERVING_EVENT_UNLOAD, SERVING_WHY_RELOAD);
                        m->again = !model_down(m);
                        if (!m->again) {
                                model_event(m, SERVING_EVENT_LOAD, SERVING_WHY_NONE);
                        }
                }
        }
        supervisor_trim(s);
        if (s->loaded && s->active) {
                Model *a = supervisor_model(s, s->active);

                if (model_down(a)) {
                        _cleanup_free_ char *reason = NULL;

                        (void) supervisor_switch(s, s->active, 0, NULL, NULL, &reason);
                }
        }
        (void) sd_event_source_set_enabled(s->sweep, SD_EVENT_ONESHOT);
        supervisor_advance(s);
        supervisor_notify_change(s);
        return 0;
}

/* ---- what is going on ---- */

const Config *supervisor_config(const Supervisor *s)
{
        return s->config;
}

const char *supervisor_active(const Supervisor *s)
{
        return s->active;
}

bool supervisor_loaded(const Supervisor *s)
{
        return s->loaded;
}

Child **supervisor_children(const Supervisor *s, size_t *ret_n)
{
        *ret_n = s->n_models;
        return s->children;
}

ServingState supervisor_serving(const Supervisor *s, const char *model, ServingWhy *ret_why)
{
        Model *m = supervisor_model(s, model);

        if (!m) {
                return _SERVING_STATE_INVALID;
        }
        if (ret_why) {
                *ret_why = m->why;
        }
        return m->state;
}

bool supervisor_wanted(const Supervisor *s, const char *model)
{
        Model *m = supervisor_model(s, model);

        if (!m) {
                return false;
        }
        if (supervisor_is_active(s, m) || (model_pinned(m) && model_config(m)->load_on_startup)) {
                return true;
        }
        return s->op && streq_ptr(s->op->phase == SWITCH_RESTORING ? s->op->previous : s->op->target,
                                  model_name(m));
}

Child *supervisor_last_failed(const Supervisor *s, uint64_t *ret_usec)
{
        Child *c = s->last_failed ? supervisor_child(s, s->last_failed) : NULL;

        if (c && !child_reason(c)) {
                c = NULL;
        }
        if (c && ret_usec) {
                *ret_usec = s->last_failed_usec;
        }
        return c;
}

bool supervisor_switching(const Supervisor *s, const char **ret_target, SwitchPhase *ret_phase)
{
        if (!s->op) {
                return false;
        }
        *ret_target = s->op->phase == SWITCH_RESTORING ? s->op->previous : s->op->target;
        *ret_phase = s->op->phase;
        return true;
}
