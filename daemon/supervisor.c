/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "array.h"
#include "fileio.h"
#include "log.h"
#include "parse-util.h"
#include "state-file.h"
#include "strv.h"
#include "supervisor-internal.h"
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

Model *supervisor_model(const Supervisor *s, const char *name)
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

void supervisor_notify_change(Supervisor *s)
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
void supervisor_persist(Supervisor *s)
{
        if (sd_event_source_set_enabled(s->persist_source, SD_EVENT_ONESHOT) < 0) {
                (void) supervisor_on_persist(s->persist_source, s);
        }
}

void supervisor_arm_unload(Supervisor *s);

/* The one writer of the active model and whether it is loaded. */
void supervisor_choose(Supervisor *s, const char *active, bool loaded)
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
        /* The model that was active may be idle now: its unload-after counts. */
        supervisor_arm_unload(s);
}

/* ---- the machine ---- */

void model_event(Model *m, ServingEvent e, ServingWhy why);

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

static bool child_down(const Child *c)
{
        return child_state(c) == CHILD_STOPPED || child_state(c) == CHILD_FAILED;
}

/* Whether a removed profile's process of this name still runs: it holds the socket path. */
static bool supervisor_namesake_running(const Supervisor *s, const Model *m)
{
        for (size_t i = 0; i < s->n_retired; i++) {
                if (streq(model_name(s->retired[i]), model_name(m)) &&
                    !child_down(s->retired[i]->child)) {
                        return true;
                }
        }
        return false;
}

/* Starts the children whose start waited for a process of their name to be down. */
static void supervisor_start_pending(Supervisor *s)
{
        for (size_t i = 0; i < s->n_models; i++) {
                Model *m = s->models[i];

                if (m->start_pending && child_down(m->child) &&
                    !supervisor_namesake_running(s, m)) {
                        m->start_pending = false;
                        child_start(m->child);
                }
        }
}

/* ---- prompt caches ---- */

static void cache_log(const Model *m, const char *what, const PromptCacheResult *r)
{
        if (r->n == 0 && !r->error) {
                log_debug("%s: no prompt cache %s", model_name(m), what);
        } else if (r->n > 0) {
                log_model(LOG_INFO, model_name(m), "prompt-cache",
                          "%s: %s %u prompt cache%s (%" PRIu64 " tokens, %.1f MB) in %.3f s%s%s",
                          model_name(m), what, r->n, r->n == 1 ? "" : "s", r->tokens,
                          (double) r->bytes / 1e6, (double) r->usec / USEC_PER_SEC,
                          r->error ? "; then: " : "", r->error ? r->error : "");
        } else {
                log_model(LOG_WARNING, model_name(m), "prompt-cache",
                          "%s: prompt caches not %s: %s", model_name(m), what, r->error);
        }
}

static void cache_add(PromptCacheResult *to, const PromptCacheResult *r)
{
        to->n += r->n;
        to->tokens += r->tokens;
        to->bytes += r->bytes;
        to->usec += r->usec;
}

static void model_on_saved(const PromptCacheResult *r, void *userdata)
{
        Model *m = userdata;
        Supervisor *s = m->supervisor;

        cache_log(m, "saved", r);
        m->saved = *r;
        m->saved.error = NULL;
        if (s->op) {
                cache_add(&s->op->cache_saved, r);
        }
        m->cache_job = cache_job_free(m->cache_job);
        prompt_cache_trim(s->cache_root, s->config->prompt_cache_size);
        model_event(m, SERVING_EVENT_SAVED, SERVING_WHY_NONE);
}

/* Before a planned stop: the slots worth keeping are saved, then SAVED (at once when the
 * model keeps no prompt cache, or its process is not ready to answer). */
static void model_save(Model *m)
{
        Supervisor *s = m->supervisor;
        const ModelConfig *c = model_config(m);
        const char *dir = child_cache_dir(m->child);
        int r = -ENOENT;

        if (dir && child_state(m->child) == CHILD_READY) {
                r = cache_job_save(s->options.event, child_socket_path(m->child), dir,
                                   child_cache_fingerprint(m->child), c->prompt_cache_min_tokens,
                                   c->prompt_cache_save_timeout_usec, model_on_saved, m,
                                   &m->cache_job);
        }
        if (r < 0) {
                model_event(m, SERVING_EVENT_SAVED, SERVING_WHY_NONE);
        }
}

static void model_on_restored(const PromptCacheResult *r, void *userdata)
{
        Model *m = userdata;
        Supervisor *s = m->supervisor;

        cache_log(m, "restored", r);
        m->restored = *r;
        m->restored.error = NULL;
        if (s->op && streq_ptr(s->op->target, model_name(m))) {
                cache_add(&s->op->cache_restored, r);
        }
        m->cache_job = cache_job_free(m->cache_job);
        model_event(m, SERVING_EVENT_READY, SERVING_WHY_NONE);
        supervisor_advance(s);
        supervisor_arm_unload(s);
}

/* The child of a loading model is ready: its saved prompt caches are restored before it takes
 * a request. Returns whether a restore runs (READY comes when it ends). */
static bool model_restore(Model *m)
{
        Supervisor *s = m->supervisor;
        const char *dir = child_cache_dir(m->child);

        if (!dir || m->state != SERVING_LOADING) {
                return false;
        }
        return cache_job_restore(s->options.event, child_socket_path(m->child), dir,
                                 child_cache_fingerprint(m->child),
                                 model_config(m)->prompt_cache_save_timeout_usec, model_on_restored,
                                 m, &m->cache_job) >= 0 &&
               m->cache_job;
}

static void model_do(Model *m, ServingAction a)
{
        switch (a) {
        case SERVING_ACTION_NONE:
                return;
        case SERVING_ACTION_START:
                /* Not while a process of this name is still on its way down (this model's
                 * previous one, or a removed profile's): once it is, supervisor_start_pending(). */
                m->again = false;
                m->start_pending = true;
                supervisor_place(m);
                supervisor_start_pending(m->supervisor);
                return;
        case SERVING_ACTION_DRAIN:
                model_drain(m, false);
                return;
        case SERVING_ACTION_SAVE:
                model_save(m);
                return;
        case SERVING_ACTION_STOP:
                m->start_pending = false;
                if (child_down(m->child)) {
                        /* Nothing runs (a start that waited): down at once. */
                        model_event(m, SERVING_EVENT_DOWN, SERVING_WHY_NONE);
                } else {
                        child_stop(m->child);
                }
                return;
        case SERVING_ACTION_KILL:
                m->start_pending = false;
                log_model(LOG_NOTICE, model_name(m), NULL, "%s: stopping at once (now): SIGKILL",
                          model_name(m));
                model_drain(m, true);
                if (child_down(m->child)) {
                        model_event(m, SERVING_EVENT_DOWN, SERVING_WHY_NONE);
                } else {
                        child_stop(m->child);
                        child_kill_now(m->child);
                }
                return;
        case _SERVING_ACTION_MAX:
                return;
        }
}

/* The one place a model's serving state changes. */
void model_event(Model *m, ServingEvent e, ServingWhy why)
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
        if (old != m->state) {
                /* A save belongs to SAVING, a restore to LOADING: leaving ends either. */
                m->cache_job = cache_job_free(m->cache_job);
        }
        if (why != SERVING_WHY_NONE) {
                m->why = why;
        }
        if (e == SERVING_EVENT_UNLOAD || e == SERVING_EVENT_STOP || e == SERVING_EVENT_KILL) {
                m->again = false; /* a reload that restarts it says so after this */
        }
        if (old != m->state) {
                log_debug("%s: %s --%s--> %s (%s)", model_name(m), serving_state_to_string(old),
                          serving_event_to_string(e), serving_state_to_string(m->state),
                          serving_why_to_string(m->why));
        }
        metrics_serving_event(s->options.metrics, model_name(m), old, m->state, e, m->why,
                              event_now_usec(s->options.event));
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

/* The GPUs of [llmd] gpus that the source has, each with its share of the budget: a configured
 * gpu-memory shared in proportion to their totals, else each one's total less its margin. */
static void supervisor_gpu_devices(Supervisor *s, SupervisorGpu *ret)
{
        unsigned n = MIN(footprint_gpu_devices(s->footprint), (unsigned) GPU_DEVICES_MAX);

        ret->several = n > 1;

        for (unsigned i = 0; i < n; i++) {
                SupervisorGpuDevice *d = &ret->devices[ret->n_devices];
                GpuMemory g;

                if ((s->config->gpus && !(s->config->gpus & (UINT64_C(1) << i))) ||
                    footprint_gpu_device(s->footprint, i, &g) < 0) {
                        continue;
                }
                *d = (SupervisorGpuDevice) {
                        .index = i, .total = g.total, .used = g.used, .free = g.free
                };
                ret->total += g.total;
                ret->used += g.used;
                ret->free += g.free;
                ret->n_devices++;
        }
        for (unsigned i = 0; i < ret->n_devices; i++) {
                SupervisorGpuDevice *d = &ret->devices[i];

                if (s->config->gpu_memory > 0) {
                        /* the last takes what division left over: the shares add up */
                        d->budget = i + 1 < ret->n_devices
                                            ? (uint64_t) ((double) s->config->gpu_memory *
                                                          d->total / ret->total)
                                            : s->config->gpu_memory - ret->budget;
                } else {
                        d->budget = footprint_budget(0, d->total);
                }
                ret->budget += d->budget;
        }
}

void supervisor_gpu(Supervisor *s, SupervisorGpu *ret)
{
        *ret = (SupervisorGpu) { .source = footprint_source(s->footprint),
                                 .why = footprint_why(s->footprint) };
        for (size_t i = 0; i < s->n_models; i++) {
                footprint_measure(s->footprint, s->children[i]);
        }
        supervisor_gpu_devices(s, ret);
        if (ret->n_devices == 0) {
                ret->budget = s->config->gpu_memory;
        }
        ret->max_resident = s->config->max_resident ? s->config->max_resident : ret->budget ? 0 : 1;
        for (size_t i = 0; i < s->n_models; i++) {
                const char *how;

                if (serving_state_running(s->models[i]->state)) {
                        ret->resident +=
                                footprint_need(s->footprint, model_config(s->models[i]), &how);
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

/* ---- requests ---- */

void supervisor_arm_unload(Supervisor *s);

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
                if (model_config(m)->unload_after_usec > 0) {
                        supervisor_arm_unload(s); /* not on every request of every model */
                }
        }
}

void supervisor_request_outcome(Supervisor *s, const char *model, unsigned status, bool stalled)
{
        Model *m = supervisor_model(s, model);

        if (m) {
                child_request_done(m->child, status, stalled);
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

                        log_model(LOG_INFO, c->name, "unload",
                                  "%s: unused for %s (unload-after), unloading", c->name,
                                  format_duration(buf, sizeof(buf), c->unload_after_usec));
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

void supervisor_arm_unload(Supervisor *s)
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
        if (child_state(m->child) == CHILD_BACKOFF && old == CHILD_KILLING) {
                /* llmd stopped it, and said why then: only what comes next. */
                log_model(LOG_NOTICE, name, NULL, "%s: restarting in %s", name,
                          format_duration(buf, sizeof(buf), child_restart_delay(m->child)));
        } else if (child_state(m->child) == CHILD_BACKOFF) {
                log_model(
                        LOG_WARNING, name, "crash",
                        "%s: llama-server %s while %s; restarting in %s (see: journalctl -u llmd MODEL=%s)",
                        name, child_reason(m->child), child_state_to_string(old),
                        format_duration(buf, sizeof(buf), child_restart_delay(m->child)), name);
        } else {
                log_model(LOG_ERR, name, "failed",
                          "%s: failed: %s (%u restarts) (see: journalctl -u llmd MODEL=%s)", name,
                          child_reason(m->child), child_restarts(m->child), name);
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
                metrics_model_started(s->options.metrics, model_name(m),
                                      event_now_usec(s->options.event));
        }
        if (st != CHILD_READY && m->state == SERVING_LOADING) {
                m->cache_job = cache_job_free(m->cache_job); /* the restore's process went */
        }
        if (st == CHILD_FAILED || st == CHILD_BACKOFF ||
            (st == CHILD_KILLING && old != CHILD_KILLING)) {
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
                        if (!model_restore(m)) {
                                model_event(m, SERVING_EVENT_READY, SERVING_WHY_NONE);
                        }
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
                /* With a start waiting, what went down is the previous process. */
                if (!m->start_pending) {
                        model_event(m, SERVING_EVENT_DOWN, SERVING_WHY_NONE);
                }
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
        supervisor_start_pending(s);
        supervisor_advance(s);
        supervisor_check_stop(s);
        supervisor_arm_unload(s);
        if (st == CHILD_READY && old != CHILD_READY && !had_op && !s->op) {
                supervisor_prefetch(s); /* a load ended (at start, or one a switch left running) */
        }
        supervisor_notify_change(s);
}

Model *model_free(Model *m)
{
        if (!m) {
                return NULL;
        }
        if (m->drain) {
                m->drain->model = NULL;
        }
        cache_job_free(m->cache_job);
        child_free(m->child);
        free(m);
        return NULL;
}

int supervisor_make_model(Supervisor *s, const ModelConfig *mc, Model **ret)
{
        ChildContext ctx = {
                .event = s->options.event,
                .runtime_dir = s->options.runtime_dir,
                .binary = s->binary,
                .environ = s->options.environ,
                .cache_root = s->cache_root,
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
                        if (supervisor_model(s, model_name(s->retired[i]))) {
                                child_keep_socket(s->retired[i]->child); /* the new one's now */
                        }
                        model_free(s->retired[i]);
                } else {
                        s->retired[j++] = s->retired[i];
                }
        }
        s->n_retired = j;
        return 0;
}

const char *supervisor_binary(const Config *c)
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
        s->binary = strdup(supervisor_binary(config));
        models = calloc(MAX(config->n_models, (size_t) 1), sizeof(Model *));
        if (!s->binary || !models ||
            asprintf(&s->cache_root, "%s/%s", o->state_dir, PROMPT_CACHE_DIR) < 0) {
                s->cache_root = NULL;
                free(models);
                return -ENOMEM;
        }
        /* The users' prompts are in there: llmd's own, whatever made it before, and never
         * through a link (a chmod through one would change what it points to). */
        struct stat st;
        r = mkdir_p(o->state_dir, 0755);
        if (r >= 0 && mkdir(s->cache_root, 0700) < 0 && errno != EEXIST) {
                r = -errno;
        }
        if (r >= 0 && (lstat(s->cache_root, &st) < 0 || !S_ISDIR(st.st_mode))) {
                r = -ENOTDIR;
        }
        if (r >= 0 && chmod(s->cache_root, 0700) < 0) {
                r = -errno;
        }
        if (r < 0) {
                log_warning("Cannot use %s (%s): models run without prompt caches", s->cache_root,
                            strerror(-r));
                s->cache_root = mfree(s->cache_root);
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

                if (sd_event_source_get_enabled(s->persist_source, &on) >= 0 &&
                    on != SD_EVENT_OFF) {
                        (void) supervisor_on_persist(s->persist_source, s); /* still due: now */
                }
                sd_event_source_disable_unref(s->persist_source);
        }
        footprint_free(s->footprint);
        prefetch_free(s->prefetch);
        config_free(s->config);
        free(s->binary);
        free(s->cache_root);
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
                log_info("%s: not loaded (stopped with llmctl stop; llmctl start loads it)",
                         s->active);
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

/* ---- prompt caches ---- */

static char *supervisor_cache_dir(const Supervisor *s, const Model *m)
{
        char *d;

        if (!s->cache_root || asprintf(&d, "%s/%s", s->cache_root, model_name(m)) < 0) {
                return NULL;
        }
        return d;
}

void supervisor_prompt_cache(Supervisor *s, const char *model, PromptCacheResult *ret_disk,
                             PromptCacheResult *ret_saved, PromptCacheResult *ret_restored)
{
        Model *m = supervisor_model(s, model);
        _cleanup_free_ char *dir = m ? supervisor_cache_dir(s, m) : NULL;

        *ret_disk = *ret_saved = *ret_restored = (PromptCacheResult) {};
        if (!m) {
                return;
        }
        if (dir) {
                prompt_cache_summary(dir, ret_disk);
        }
        *ret_saved = m->saved;
        *ret_restored = m->restored;
}

int supervisor_prompt_cache_clear(Supervisor *s, const char *model)
{
        int n = 0;

        for (size_t i = 0; i < s->n_models; i++) {
                _cleanup_free_ char *dir = NULL;
                int r;

                if (model && !streq(model_name(s->models[i]), model)) {
                        continue;
                }
                dir = supervisor_cache_dir(s, s->models[i]);
                r = dir ? prompt_cache_clear(dir) : 0;
                n += MAX(r, 0);
        }
        return n;
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
        return s->op &&
               streq_ptr(s->op->phase == SWITCH_RESTORING ? s->op->previous : s->op->target,
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
