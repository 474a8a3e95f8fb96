/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "fileio.h"
#include "log.h"
#include "strv.h"
#include "supervisor.h"

#define SUPERVISOR_STATE_FILE "active-model"
#define SUPERVISOR_PROGRESS_USEC (100 * USEC_PER_MSEC)

typedef struct SwitchOp {
        char *target;   /* NULL: unload */
        char *previous; /* what served before the first of a chain of switches; NULL: nothing */
        SwitchPhase phase;
        SwitchCallbacks cb;
        void *userdata;
        uint64_t start_usec, stopped_usec;
        double progress;
        char *reason;
        char **log;
} SwitchOp;

struct Supervisor {
        SupervisorOptions options;
        Config *config;
        char *binary;
        Child **children; /* one per profile, in the order of config->models */
        size_t n_children;
        Child **retired;  /* removed by a reload, freed once down */
        size_t n_retired;
        sd_event_source *sweep;
        sd_event_source *progress_timer;
        char *last_failed; /* the model that failed or crashed last */
        uint64_t last_failed_usec;
        char *active; /* the generation model that should serve; NULL: none configured */
        bool loaded;  /* false after Stop */
        SwitchOp *op;
        bool advancing, advance_again;
        bool reloading; /* children change under us: callbacks wait until it is done */
        bool stopping;
        void (*stop_done)(void *userdata);
        void *stop_userdata;
};

static const char *const phase_table[_SWITCH_PHASE_MAX] = {
        [SWITCH_STOPPING] = "stopping",
        [SWITCH_LOADING] = "loading",
        [SWITCH_RESTORING] = "restoring",
};

const char *switch_phase_to_string(SwitchPhase p)
{
        return p >= 0 && p < _SWITCH_PHASE_MAX ? phase_table[p] : NULL;
}

static uint64_t now_usec(const Supervisor *s)
{
        uint64_t t = 0;

        (void) sd_event_now(s->options.event, CLOCK_MONOTONIC, &t);
        return t;
}

static bool child_is_down(const Child *c)
{
        ChildState st = child_state(c);

        return st == CHILD_STOPPED || st == CHILD_FAILED;
}

static bool child_is_pinned(const Child *c)
{
        return child_config(c)->pin;
}

Child *supervisor_child(const Supervisor *s, const char *name)
{
        const ModelConfig *m = name ? config_find_model(s->config, name) : NULL;

        for (size_t i = 0; m && i < s->n_children; i++) {
                if (s->children[i] && streq(child_name(s->children[i]), m->name)) {
                        return s->children[i];
                }
        }
        return NULL;
}

/* ---- persistence ---- */

static void supervisor_persist(Supervisor *s)
{
        _cleanup_free_ char *path = NULL, *content = NULL;
        int r;

        if (!s->active) {
                return;
        }
        if (asprintf(&path, "%s/%s", s->options.state_dir, SUPERVISOR_STATE_FILE) < 0 ||
            asprintf(&content, "# llmd: the active generation model, as chosen with llmctl\n"
                               "model=%s\nloaded=%s\n",
                     s->active, s->loaded ? "yes" : "no") < 0) {
                log_error("Out of memory");
                return;
        }
        r = write_file_atomic(path, content, 0644);
        if (r < 0) {
                log_error_errno(r, "Failed to save the active model in %s: %m", path);
        }
}

static void supervisor_restore(Supervisor *s)
{
        _cleanup_free_ char *path = NULL, *content = NULL;
        _cleanup_strv_free_ char **lines = NULL;
        const ModelConfig *m;
        int r;

        if (asprintf(&path, "%s/%s", s->options.state_dir, SUPERVISOR_STATE_FILE) < 0) {
                return;
        }
        r = read_file(path, 4096, &content);
        if (r == -ENOENT) {
                return;
        }
        if (r < 0 || strv_split(content, "\n", &lines) < 0) {
                log_warning_errno(r, "Cannot read %s, using the default model: %m", path);
                return;
        }
        STRV_FOREACH(l, lines) {
                if (strneq(*l, "model=", 6)) {
                        m = config_find_model(s->config, *l + 6);
                        if (!m || m->pin) {
                                log_warning("%s names '%s', which is no generation model in %s now; "
                                            "using the default",
                                            path, *l + 6, s->config->path);
                                return;
                        }
                        free(s->active);
                        s->active = strdup(m->name);
                } else if (streq(*l, "loaded=no")) {
                        s->loaded = false;
                }
        }
}

/* ---- switching ---- */

static void op_free(SwitchOp *op)
{
        if (!op) {
                return;
        }
        free(op->target);
        free(op->previous);
        free(op->reason);
        strv_free(op->log);
        free(op);
}

static void supervisor_advance(Supervisor *s);

static void supervisor_notify_change(Supervisor *s)
{
        if (s->options.on_change) {
                s->options.on_change(s, s->options.userdata);
        }
}

static void op_progress(Supervisor *s, SwitchPhase phase, const char *model, double progress)
{
        if (s->op && s->op->cb.progress) {
                s->op->cb.progress(s->op->userdata, phase, model, progress);
        }
}

/* Ends the operation in progress and tells its caller. */
static void op_finish(Supervisor *s, int error, const char *restored, const char *superseded_by)
{
        SwitchOp *op = s->op;
        uint64_t now = now_usec(s);
        Child *t = op->target ? supervisor_child(s, op->target) : NULL;

        s->op = NULL;
        (void) sd_event_source_set_enabled(s->progress_timer, SD_EVENT_OFF);
        SwitchResult r = {
                .error = error,
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
        if (op->cb.done) {
                op->cb.done(op->userdata, &r);
        }
        op_free(op);
        supervisor_notify_change(s);
}

/* Generation children other than keep that still run. */
static bool generation_down_except(const Supervisor *s, const char *keep)
{
        for (size_t i = 0; i < s->n_children; i++) {
                Child *c = s->children[i];

                if (child_is_pinned(c) || (keep && streq(child_name(c), keep))) {
                        continue;
                }
                if (!child_is_down(c)) {
                        return false;
                }
        }
        /* A profile a reload removed may still be stopping. */
        for (size_t i = 0; i < s->n_retired; i++) {
                if (!child_is_pinned(s->retired[i]) && !child_is_down(s->retired[i])) {
                        return false;
                }
        }
        return true;
}

static void op_fail(Supervisor *s, Child *t)
{
        SwitchOp *op = s->op;

        free(op->reason);
        op->reason = strdup(child_reason(t) ? child_reason(t) : "failed to load");
        strv_free(op->log);
        op->log = strv_copy(child_last_lines(t));
        log_model(LOG_ERR, op->target, "switch", "Switch to %s failed: %s", op->target,
                  op->reason ? op->reason : "?");
        /* A crashed target would be restarted by its backoff: not while we restore. */
        if (child_state(t) != CHILD_FAILED) {
                child_stop(t);
        }
        if (op->previous && !streq(op->previous, op->target)) {
                free(s->active);
                s->active = strdup(op->previous);
                op->phase = SWITCH_RESTORING;
                log_model(LOG_NOTICE, op->previous, "switch", "Restoring %s", op->previous);
                op_progress(s, SWITCH_RESTORING, op->previous, -1);
                child_start(supervisor_child(s, op->previous));
                return;
        }
        op_finish(s, -EIO, NULL, NULL);
}

/* Where a child that was started got: 1 ready, -1 failed or crashed, 0 not yet. */
static int child_outcome(const Child *c)
{
        switch (child_state(c)) {
        case CHILD_READY:
                return 1;
        case CHILD_FAILED:
        case CHILD_BACKOFF:
                return -1;
        case CHILD_STOPPED:
        case CHILD_LOADING:
        case CHILD_STOPPING:
        case CHILD_KILLING:
        case _CHILD_STATE_MAX:
        case _CHILD_STATE_INVALID:
                return 0;
        }
        return 0;
}

static void supervisor_advance_once(Supervisor *s)
{
        SwitchOp *op = s->op;
        Child *c;

        if (!op) {
                return;
        }
        switch (op->phase) {
        case SWITCH_STOPPING:
                if (!generation_down_except(s, op->target)) {
                        return;
                }
                op->stopped_usec = now_usec(s);
                if (!op->target) {
                        supervisor_persist(s);
                        op_finish(s, 0, NULL, NULL);
                        return;
                }
                op->phase = SWITCH_LOADING;
                op->progress = -1;
                op_progress(s, SWITCH_LOADING, op->target, -1);
                (void) sd_event_source_set_time_relative(s->progress_timer, SUPERVISOR_PROGRESS_USEC);
                (void) sd_event_source_set_enabled(s->progress_timer, SD_EVENT_ON);
                child_start(supervisor_child(s, op->target));
                s->advance_again = true;
                return;
        case SWITCH_LOADING:
                c = supervisor_child(s, op->target);
                if (child_outcome(c) > 0) {
                        supervisor_persist(s);
                        log_model(LOG_INFO, op->target, "switch", "Switched to %s in %.3f s",
                                  op->target, (double) (now_usec(s) - op->start_usec) / USEC_PER_SEC);
                        op_finish(s, 0, NULL, NULL);
                } else if (child_outcome(c) < 0) {
                        op_fail(s, c);
                }
                return;
        case SWITCH_RESTORING:
                c = supervisor_child(s, op->previous);
                if (child_outcome(c) != 0) {
                        op_finish(s, -EIO, child_outcome(c) > 0 ? op->previous : NULL, NULL);
                }
                return;
        case _SWITCH_PHASE_MAX:
                return;
        }
}

/* Child callbacks can come while we act on children: run the steps as a loop, not nested. */
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

typedef struct DrainWait {
        Supervisor *supervisor;
        char *model;
        bool now;
} DrainWait;

static void supervisor_stop_child(Supervisor *s, Child *c, bool now)
{
        child_stop(c);
        if (now) {
                log_model(LOG_NOTICE, child_name(c), NULL, "%s: stopping at once (now): SIGKILL",
                          child_name(c));
                child_kill_now(c);
        }
}

static void supervisor_on_drained(void *userdata)
{
        DrainWait *w = userdata;
        Child *c = supervisor_child(w->supervisor, w->model);

        /* Still running and still not wanted (a newer switch may want it back). */
        if (c && !child_is_down(c) &&
            !(w->supervisor->active && streq(w->supervisor->active, w->model) &&
              w->supervisor->loaded)) {
                supervisor_stop_child(w->supervisor, c, w->now);
        }
        supervisor_advance(w->supervisor);
        free(w->model);
        free(w);
}

/* Requests running on a model finish (or are cut off) before it stops: llama-server would
 * ignore the SIGTERM while they run anyway. */
static void supervisor_drain_and_stop(Supervisor *s, Child *c, bool now)
{
        DrainWait *w;

        if (!s->options.drain || child_state(c) != CHILD_READY) {
                supervisor_stop_child(s, c, now);
                return;
        }
        w = calloc(1, sizeof(DrainWait));
        if (!w || !(w->model = strdup(child_name(c)))) {
                free(w);
                supervisor_stop_child(s, c, now);
                return;
        }
        w->supervisor = s;
        w->now = now;
        s->options.drain(s->options.userdata, w->model, now, supervisor_on_drained, w);
}

static int supervisor_begin(Supervisor *s, const char *target, bool loaded, SwitchFlags flags,
                            const SwitchCallbacks *cb, void *userdata)
{
        _cleanup_free_ char *previous = NULL;
        SwitchOp *op;
        Child *t = target ? supervisor_child(s, target) : NULL;

        /* Nothing to do: say so. */
        if (!s->op && ((t && s->loaded && streq(s->active, target) && child_state(t) == CHILD_READY) ||
                       (!t && !s->loaded && generation_down_except(s, NULL)))) {
                SwitchResult r = { .from = s->active, .to = target, .changed = false };

                if (cb && cb->done) {
                        cb->done(userdata, &r);
                }
                return 0;
        }

        if (s->op) {
                /* The older switch is superseded; what served before it is still the model to
                 * restore if this one fails. */
                previous = TAKE_PTR(s->op->previous);
                op_finish(s, -ESTALE, NULL, target ? target : "stop");
        } else if (s->active && s->loaded) {
                Child *a = supervisor_child(s, s->active);
                ChildState st = a ? child_state(a) : CHILD_STOPPED;

                if (st == CHILD_READY || st == CHILD_LOADING || st == CHILD_BACKOFF) {
                        previous = strdup(s->active);
                }
        }

        op = calloc(1, sizeof(SwitchOp));
        if (!op) {
                return -ENOMEM;
        }
        op->target = target ? strdup(target) : NULL;
        op->previous = TAKE_PTR(previous);
        op->phase = SWITCH_STOPPING;
        op->start_usec = now_usec(s);
        op->progress = -1;
        if (cb) {
                op->cb = *cb;
        }
        op->userdata = userdata;
        s->op = op;
        if (target) {
                free(s->active);
                s->active = strdup(target);
        }
        s->loaded = loaded;
        log_model(LOG_INFO, target, "switch", "Switching %s → %s", op->previous ? op->previous : "none",
                  target ? target : "none");

        for (size_t i = 0; i < s->n_children; i++) {
                Child *c = s->children[i];

                if (!child_is_pinned(c) && !(target && streq(child_name(c), target)) &&
                    !child_is_down(c)) {
                        op_progress(s, SWITCH_STOPPING, child_name(c), -1);
                        supervisor_drain_and_stop(s, c, flags & SWITCH_NOW);
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
        return supervisor_begin(s, m ? m->name : NULL, m != NULL, flags, cb, userdata);
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

/* ---- children ---- */

static int supervisor_on_sweep(sd_event_source *es, void *userdata)
{
        Supervisor *s = userdata;
        size_t j = 0;

        for (size_t i = 0; i < s->n_retired; i++) {
                if (child_is_down(s->retired[i])) {
                        child_free(s->retired[i]);
                } else {
                        s->retired[j++] = s->retired[i];
                }
        }
        s->n_retired = j;
        return 0;
}

static void supervisor_check_stop(Supervisor *s)
{
        bool gen_down = true, all_down = true;

        if (!s->stopping) {
                return;
        }
        for (size_t i = 0; i < s->n_children; i++) {
                if (!child_is_down(s->children[i])) {
                        all_down = false;
                        if (!child_is_pinned(s->children[i])) {
                                gen_down = false;
                        }
                }
        }
        for (size_t i = 0; i < s->n_retired; i++) {
                if (!child_is_down(s->retired[i])) {
                        all_down = gen_down = false;
                }
        }
        if (gen_down && !all_down) {
                for (size_t i = 0; i < s->n_children; i++) {
                        if (child_is_pinned(s->children[i])) {
                                child_stop(s->children[i]);
                        }
                }
                return; /* child_stop() came back here if that finished it */
        }
        if (all_down && s->stop_done) {
                void (*done)(void *) = s->stop_done;

                s->stop_done = NULL;
                done(s->stop_userdata);
        }
}

static void supervisor_on_child(Child *c, ChildState old, void *userdata)
{
        Supervisor *s = userdata;
        ChildState st = child_state(c);

        if (st == CHILD_FAILED || st == CHILD_BACKOFF || (st == CHILD_KILLING && old != CHILD_KILLING)) {
                free(s->last_failed);
                s->last_failed = strdup(child_name(c));
                s->last_failed_usec = now_usec(s);
        }
        if (s->reloading) {
                return;
        }

        if (s->n_retired > 0) {
                (void) sd_event_source_set_enabled(s->sweep, SD_EVENT_ONESHOT);
        }
        supervisor_advance(s);
        supervisor_check_stop(s);
        supervisor_notify_change(s);
}

static int supervisor_make_child(Supervisor *s, const ModelConfig *m, Child **ret)
{
        ChildContext ctx = {
                .event = s->options.event,
                .runtime_dir = s->options.runtime_dir,
                .binary = s->binary,
                .environ = s->options.environ,
        };

        return child_new(&ctx, m, supervisor_on_child, s, ret);
}

static const char *config_binary(const Config *c)
{
        /* The config names the binary; else $LLAMA_SERVER (the tests' simulator); else $PATH. */
        const char *b = c->llama_server ? c->llama_server : getenv("LLAMA_SERVER");

        return isempty(b) ? "llama-server" : b;
}

int supervisor_new(const SupervisorOptions *o, Config *config, Supervisor **ret)
{
        _cleanup_(supervisor_freep) Supervisor *s = NULL;
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
        if (!s->binary) {
                return -ENOMEM;
        }
        s->children = calloc(MAX(config->n_models, (size_t) 1), sizeof(Child *));
        if (!s->children) {
                return -ENOMEM;
        }
        FOREACH_MODEL(m, config) {
                r = supervisor_make_child(s, m, &s->children[s->n_children]);
                if (r < 0) {
                        return r;
                }
                s->n_children++;
        }
        if (config->default_model) {
                s->active = strdup(config->default_model);
                if (!s->active) {
                        return -ENOMEM;
                }
        }
        supervisor_restore(s);
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
                s->op->cb.done = NULL;
                op_free(TAKE_PTR(s->op));
        }
        for (size_t i = 0; i < s->n_children; i++) {
                child_free(s->children[i]);
        }
        for (size_t i = 0; i < s->n_retired; i++) {
                child_free(s->retired[i]);
        }
        free(s->children);
        free(s->retired);
        sd_event_source_disable_unref(s->sweep);
        sd_event_source_disable_unref(s->progress_timer);
        config_free(s->config);
        free(s->binary);
        free(s->active);
        free(s->last_failed);
        free(s);
        return NULL;
}

void supervisor_start(Supervisor *s)
{
        for (size_t i = 0; i < s->n_children; i++) {
                const ModelConfig *m = child_config(s->children[i]);

                if (m->pin && m->load_on_startup) {
                        child_start(s->children[i]);
                }
        }
        if (!s->active) {
                return;
        }
        if (!s->loaded) {
                log_info("%s: not loaded (stopped with llmctl stop; llmctl start loads it)", s->active);
        } else if (!child_config(supervisor_child(s, s->active))->load_on_startup) {
                log_info("%s: not loaded at startup (load-on-startup = false)", s->active);
        } else {
                child_start(supervisor_child(s, s->active));
        }
}

void supervisor_stop(Supervisor *s, void (*done)(void *userdata), void *userdata)
{
        s->stopping = true;
        s->stop_done = done;
        s->stop_userdata = userdata;
        if (s->op) {
                s->op->cb.progress = NULL;
                op_finish(s, -ECANCELED, NULL, NULL);
        }
        for (size_t i = 0; i < s->n_children; i++) {
                if (!child_is_pinned(s->children[i])) {
                        child_stop(s->children[i]);
                }
        }
        for (size_t i = 0; i < s->n_retired; i++) {
                child_stop(s->retired[i]);
        }
        supervisor_check_stop(s);
}

void supervisor_kill(Supervisor *s)
{
        for (size_t i = 0; i < s->n_children; i++) {
                child_kill_now(s->children[i]);
        }
        for (size_t i = 0; i < s->n_retired; i++) {
                child_kill_now(s->retired[i]);
        }
}

/* ---- reload ---- */

static Child *take_child(Supervisor *s, const char *name)
{
        for (size_t i = 0; i < s->n_children; i++) {
                Child *c = s->children[i];

                if (c && streq(child_name(c), name)) {
                        s->children[i] = NULL;
                        return c;
                }
        }
        return NULL;
}

int supervisor_reload(Supervisor *s, Config *config)
{
        _cleanup_free_ Child **children = NULL;
        _cleanup_free_ bool *changed = NULL;
        _cleanup_free_ char *binary = NULL;
        size_t n = 0;
        bool binary_changed;
        int r;

        if (s->op) {
                return -EBUSY;
        }
        binary = strdup(config_binary(config));
        changed = calloc(MAX(config->n_models, (size_t) 1), sizeof(bool));
        children = calloc(MAX(config->n_models, (size_t) 1), sizeof(Child *));
        if (!binary || !changed || !children) {
                return -ENOMEM;
        }
        binary_changed = !streq(binary, s->binary);

        /* First everything that can fail, so a failure leaves the old state whole. */
        FOREACH_MODEL(m, config) {
                Child *old = NULL;

                for (size_t i = 0; i < s->n_children; i++) {
                        if (streq(child_name(s->children[i]), m->name)) {
                                old = s->children[i];
                        }
                }
                if (!old) {
                        r = supervisor_make_child(s, m, &children[n]);
                        if (r < 0) {
                                for (size_t i = 0; i < n; i++) {
                                        child_free(children[i]);
                                }
                                return r;
                        }
                }
                n++; /* an existing child is filled in below */
        }
        /* Now the part that cannot fail. */
        s->reloading = true;
        n = 0;
        FOREACH_MODEL(m, config) {
                if (!children[n]) {
                        Child *c = take_child(s, m->name);

                        changed[n] = binary_changed || !config_model_equal(child_config(c), m);
                        if (changed[n]) {
                                log_model(LOG_INFO, m->name, "reload", "%s: profile changed", m->name);
                        }
                        (void) child_set_config(c, m);
                        children[n] = c;
                } else {
                        log_model(LOG_INFO, m->name, "reload", "%s: new profile", m->name);
                }
                n++;
        }
        for (size_t i = 0; i < s->n_children; i++) {
                Child *c = s->children[i];
                Child **a;

                if (!c) {
                        continue;
                }
                log_model(LOG_INFO, child_name(c), "reload", "%s: profile removed, stopping it",
                          child_name(c));
                child_stop(c);
                a = realloc(s->retired, sizeof(Child *) * (s->n_retired + 1));
                if (!a) {
                        child_free(c); /* kills and reaps it: the memory must not leak */
                        continue;
                }
                s->retired = a;
                s->retired[s->n_retired++] = c;
        }
        free(s->children);
        s->children = TAKE_PTR(children);
        s->n_children = n;
        config_free(s->config);
        s->config = config;
        if (binary_changed) {
                free(s->binary);
                s->binary = TAKE_PTR(binary);
                for (size_t i = 0; i < s->n_children; i++) {
                        child_set_binary(s->children[i], s->binary);
                }
        }

        /* The active model may have gone, or become pinned. */
        const ModelConfig *am = s->active ? config_find_model(config, s->active) : NULL;
        if (!am || am->pin) {
                free(s->active);
                s->active = config->default_model ? strdup(config->default_model) : NULL;
                log_notice("The active model is no longer configured, switching to the default, %s",
                           s->active ? s->active : "none");
        }

        for (size_t i = 0; i < s->n_children; i++) {
                Child *c = s->children[i];
                const ModelConfig *m = child_config(c);
                bool want = (m->pin && m->load_on_startup) ||
                            (s->loaded && s->active && streq(s->active, m->name));

                if (!want) {
                        if (!child_is_down(c)) {
                                child_stop(c);
                        }
                } else if (child_state(c) == CHILD_STOPPED || child_state(c) == CHILD_FAILED) {
                        /* Generation models start through a switch, so that only one runs. */
                        if (m->pin) {
                                child_start(c);
                        }
                } else if (changed[i]) {
                        child_stop(c);
                        child_start(c); /* remembered while it stops */
                }
        }
        s->reloading = false;
        if (s->loaded && s->active) {
                Child *a = supervisor_child(s, s->active);

                if (child_is_down(a)) {
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
        *ret_n = s->n_children;
        return s->children;
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

static char *child_status_words(const Child *c)
{
        char *t = NULL;
        int r = -1;
        double p;

        switch (child_state(c)) {
        case CHILD_READY:
                r = asprintf(&t, "%s ready", child_name(c));
                break;
        case CHILD_LOADING:
                p = child_load_progress(c);
                if (p >= 0) {
                        /* In steps of 5%: STATUS= is for people, not a progress stream. */
                        r = asprintf(&t, "%s loading %d%% …", child_name(c), (int) (p * 20) * 5);
                } else {
                        r = asprintf(&t, "%s loading …", child_name(c));
                }
                break;
        case CHILD_STOPPING:
                r = asprintf(&t, "%s stopping …", child_name(c));
                break;
        case CHILD_KILLING:
                r = asprintf(&t, "%s stopping: %s", child_name(c), child_reason(c));
                break;
        case CHILD_BACKOFF:
                r = asprintf(&t, "%s restarting after %s", child_name(c), child_reason(c));
                break;
        case CHILD_FAILED:
                r = asprintf(&t, "%s failed: %s", child_name(c), child_reason(c));
                break;
        case CHILD_STOPPED:
                r = asprintf(&t, "%s stopped", child_name(c));
                break;
        case _CHILD_STATE_MAX:
        case _CHILD_STATE_INVALID:
                break;
        }
        return r < 0 ? NULL : t;
}

char *supervisor_status_text(const Supervisor *s)
{
        _cleanup_strv_free_ char **parts = calloc(1, sizeof(char *));

        if (!parts) {
                return NULL;
        }
        if (s->active) {
                if (strv_consume(&parts, child_status_words(supervisor_child(s, s->active))) < 0) {
                        return NULL;
                }
        } else if (strv_extend(&parts, "no generation model") < 0) {
                return NULL;
        }
        for (size_t i = 0; i < s->n_children; i++) {
                const ModelConfig *m = child_config(s->children[i]);
                _cleanup_free_ char *w = NULL;

                if (!m->pin) {
                        continue;
                }
                w = child_status_words(s->children[i]);
                if (!w || strv_consume(&parts, strjoin2(m->embeddings ? "embed " : "pinned ", w)) < 0) {
                        return NULL;
                }
        }
        return strv_join(parts, " · ");
}
