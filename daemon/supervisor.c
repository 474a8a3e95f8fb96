/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>

#include "fileio.h"
#include "gguf.h"
#include "gpu.h"
#include "log.h"
#include "parse-util.h"
#include "prefetch.h"
#include "residency.h"
#include "strv.h"
#include "supervisor.h"

#define SUPERVISOR_STATE_FILE "active-model"
#define SUPERVISOR_GPU_FILE "gpu-memory"
#define SUPERVISOR_PROGRESS_USEC (100 * USEC_PER_MSEC)
#define SUPERVISOR_GPU_MARGIN_MIN (512ULL << 20) /* kept free of an automatic budget, at least */

typedef struct SwitchWaiter {
        SwitchCallbacks cb;
        void *userdata;
} SwitchWaiter;

typedef struct SwitchOp {
        char *target;   /* NULL: unload */
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

/* What a model was seen to use on the GPU, and its estimate, by name and file. */
typedef struct GpuRecord {
        char *name;
        char *path;
        uint64_t measured;
        uint64_t measured_ready_usec; /* the child's ready_usec when measured: once a run */
        uint64_t estimated;
        bool estimated_done;
} GpuRecord;

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
        GpuSource *gpu;  /* NULL: none (gpu_why says why) */
        char *gpu_why;
        GpuRecord *records;
        size_t n_records;
        sd_event_source *unload_timer; /* unload-after */
        sd_event_source *persist_source; /* the active model is to be saved */
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

static void supervisor_persist_now(Supervisor *s)
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

static int supervisor_on_persist(sd_event_source *es, void *userdata)
{
        supervisor_persist_now(userdata);
        return 0;
}

/* Saved once what is pending in this loop iteration is done, at idle priority: the reply to
 * the switch goes out first, and an fsync (milliseconds on some disks) does not delay it. */
static void supervisor_persist(Supervisor *s)
{
        if (sd_event_source_set_enabled(s->persist_source, SD_EVENT_ONESHOT) < 0) {
                supervisor_persist_now(s);
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

/* ---- GPU memory ---- */

static GpuRecord *gpu_record(Supervisor *s, const ModelConfig *m, bool create)
{
        GpuRecord *a;

        for (size_t i = 0; i < s->n_records; i++) {
                if (streq(s->records[i].name, m->name) && streq(s->records[i].path, m->model_path)) {
                        return &s->records[i];
                }
        }
        if (!create || !(a = realloc(s->records, sizeof(GpuRecord) * (s->n_records + 1)))) {
                return NULL;
        }
        s->records = a;
        a = &s->records[s->n_records];
        *a = (GpuRecord) { .name = strdup(m->name), .path = strdup(m->model_path) };
        if (!a->name || !a->path) {
                free(a->name);
                free(a->path);
                return NULL;
        }
        s->n_records++;
        return a;
}

/* STATE_DIR/gpu-memory: "NAME BYTES PATH" a line, what each model was seen to use. */
static void gpu_records_save(Supervisor *s)
{
        _cleanup_free_ char *path = NULL, *content = strdup("# llmd: GPU memory each model was seen to use\n");

        if (!content || asprintf(&path, "%s/%s", s->options.state_dir, SUPERVISOR_GPU_FILE) < 0) {
                return;
        }
        for (size_t i = 0; i < s->n_records; i++) {
                char *n;

                if (s->records[i].measured == 0) {
                        continue;
                }
                if (asprintf(&n, "%s%s %" PRIu64 " %s\n", content, s->records[i].name,
                             s->records[i].measured, s->records[i].path) < 0) {
                        return;
                }
                free(content);
                content = n;
        }
        if (write_file_atomic(path, content, 0644) < 0) {
                log_warning("Cannot save %s", path);
        }
}

static void gpu_records_load(Supervisor *s)
{
        _cleanup_free_ char *path = NULL, *content = NULL;
        _cleanup_strv_free_ char **lines = NULL;

        if (asprintf(&path, "%s/%s", s->options.state_dir, SUPERVISOR_GPU_FILE) < 0 ||
            read_file(path, 1 << 20, &content) < 0 || strv_split(content, "\n", &lines) < 0) {
                return;
        }
        STRV_FOREACH(l, lines) {
                _cleanup_strv_free_ char **f = NULL;
                ModelConfig key = {};
                GpuRecord *g;
                uint64_t bytes;

                if (**l == '#' || strv_split(*l, " ", &f) < 0 || strv_length(f) < 3 ||
                    parse_size(f[1], &bytes) < 0) {
                        continue;
                }
                key.name = f[0];
                key.model_path = f[2]; /* a path with a space: the rest of the line */
                for (size_t i = 3; f[i]; i++) {
                        f[2][strlen(f[2])] = ' ';
                }
                g = gpu_record(s, &key, true);
                if (g) {
                        g->measured = bytes;
                }
        }
}

/* From the file's header and the flags llama-server gets. */
static uint64_t gpu_estimate(const ModelConfig *m)
{
        GgufEstimateParams p = { .n_gpu_layers = -1, .cache_k_bits = 16, .cache_v_bits = 16 };
        GgufInfo info = {};
        uint64_t bytes;

        for (char **a = m->args; a && *a; a++) {
                const char *v = a[1];
                unsigned *bits = streq(*a, "--cache-type-k") ? &p.cache_k_bits
                                 : streq(*a, "--cache-type-v") ? &p.cache_v_bits
                                                               : NULL;
                unsigned n;

                if (!v) {
                        continue;
                }
                if (streq(*a, "--ctx-size") && parse_unsigned(v, UINT_MAX, &n) >= 0) {
                        p.ctx_size = n;
                } else if (streq(*a, "--n-gpu-layers")) {
                        /* "auto", "all", -1 and anything from 999 up: every layer. */
                        p.n_gpu_layers = parse_unsigned(v, UINT_MAX, &n) >= 0 && n < 999 ? (int64_t) n : -1;
                } else if (bits) {
                        (void) gguf_cache_type_bits(v, bits);
                }
        }
        if (gguf_read(m->model_path, &info) < 0) {
                return 0;
        }
        bytes = gguf_estimate_gpu_bytes(&info, &p);
        gguf_info_done(&info);
        return bytes;
}

uint64_t supervisor_model_estimate(Supervisor *s, const char *model)
{
        const ModelConfig *m = config_find_model(s->config, model);
        GpuRecord *g = m ? gpu_record(s, m, true) : NULL;

        if (!g) {
                return 0;
        }
        if (!g->estimated_done) {
                g->estimated = gpu_estimate(m);
                g->estimated_done = true;
        }
        return g->estimated;
}

static void gpu_measure(Supervisor *s, Child *c);

uint64_t supervisor_model_measured(Supervisor *s, const char *model)
{
        const ModelConfig *m = config_find_model(s->config, model);
        Child *c = supervisor_child(s, model);
        GpuRecord *g;

        if (c) {
                gpu_measure(s, c);
        }
        g = m ? gpu_record(s, m, false) : NULL;
        return g ? g->measured : 0;
}

uint64_t supervisor_model_gpu(Supervisor *s, const char *model, const char **ret_how)
{
        const ModelConfig *m = config_find_model(s->config, model);
        uint64_t b;

        *ret_how = NULL;
        if (!m) {
                return 0;
        }
        if (m->gpu_memory) {
                *ret_how = "configured";
                return m->gpu_memory;
        }
        if ((b = supervisor_model_measured(s, model)) > 0) {
                *ret_how = "measured";
                return b;
        }
        if ((b = supervisor_model_estimate(s, model)) > 0) {
                *ret_how = "estimated";
        }
        return b;
}

/* What a ready child uses, as the GPU source sees it, once each time it became ready (again
 * later when it showed nothing yet): kept for next time. */
static void gpu_measure(Supervisor *s, Child *c)
{
        GpuRecord *g;
        uint64_t bytes = 0;
        int r;

        if (!s->gpu || child_state(c) != CHILD_READY || child_pid(c) <= 0 ||
            !(g = gpu_record(s, child_config(c), true)) || g->measured_ready_usec == child_ready_usec(c)) {
                return;
        }
        r = gpu_process_memory(s->gpu, child_pid(c), &bytes);
        if (r < 0 || bytes == 0) {
                return;
        }
        g->measured_ready_usec = child_ready_usec(c);
        log_model(LOG_INFO, child_name(c), NULL, "%s: uses %.2f GiB of GPU memory (estimated %.2f GiB)",
                  child_name(c), (double) bytes / (1ULL << 30),
                  (double) supervisor_model_estimate(s, child_name(c)) / (1ULL << 30));
        if (g->measured != bytes) {
                g->measured = bytes;
                gpu_records_save(s);
        }
}

void supervisor_gpu(Supervisor *s, SupervisorGpu *ret)
{
        GpuMemory g = {};

        *ret = (SupervisorGpu) { .source = s->gpu ? gpu_source_name(s->gpu) : NULL, .why = s->gpu_why };
        for (size_t i = 0; i < s->n_children; i++) {
                gpu_measure(s, s->children[i]);
        }
        if (s->gpu && gpu_memory(s->gpu, &g) >= 0) {
                ret->total = g.total;
                ret->used = g.used;
                ret->free = g.free;
        }
        ret->budget = s->config->gpu_memory;
        if (ret->budget == 0 && ret->total > 0) {
                uint64_t margin = MAX(ret->total / 20, SUPERVISOR_GPU_MARGIN_MIN);
                ret->budget = ret->total > margin ? ret->total - margin : 0;
        }
        ret->max_resident = s->config->max_resident ? s->config->max_resident : ret->budget ? 0 : 1;
        for (size_t i = 0; i < s->n_children; i++) {
                const char *how;

                if (!child_is_down(s->children[i])) {
                        ret->resident += supervisor_model_gpu(s, child_name(s->children[i]), &how);
                }
        }
}

/* The files of the generation models that are not loaded, most recently used first, into the
 * page cache: the next switch to one of them is a warm load. */
static void supervisor_prefetch(Supervisor *s)
{
        _cleanup_free_ Child **order = NULL;
        _cleanup_strv_free_ char **paths = NULL;
        size_t n = 0;

        if (!s->config->prefetch || s->stopping || s->op ||
            !(order = calloc(MAX(s->n_children, (size_t) 1), sizeof(Child *)))) {
                return;
        }
        for (size_t i = 0; i < s->n_children; i++) {
                if (child_state(s->children[i]) == CHILD_LOADING) {
                        return; /* never beside a load: it starts again when that is done */
                }
        }
        for (size_t i = 0; i < s->n_children; i++) {
                Child *c = s->children[i];
                size_t j = n++;

                if (child_is_pinned(c) || !child_is_down(c)) {
                        n--;
                        continue;
                }
                /* Insertion sort, most recent first; never used keeps the configuration's order. */
                while (j > 0 && child_used_usec(order[j - 1]) < child_used_usec(c)) {
                        order[j] = order[j - 1];
                        j--;
                }
                order[j] = c;
        }
        for (size_t i = 0; i < n; i++) {
                if (strv_extend(&paths, child_config(order[i])->model_path) < 0) {
                        return;
                }
        }
        if (prefetch_start(s->prefetch, paths, s->config->prefetch_limit) < 0) {
                log_warning("prefetch: cannot start the helper");
        }
}

/* The children as the planner sees them, in their order, and the limits. */
static ResidentModel *supervisor_models(Supervisor *s, ResidencyLimits *ret_limits)
{
        ResidentModel *models = calloc(MAX(s->n_children, (size_t) 1), sizeof(ResidentModel));
        SupervisorGpu gpu;

        if (!models) {
                return NULL;
        }
        supervisor_gpu(s, &gpu);
        *ret_limits = (ResidencyLimits) { .max_resident = gpu.max_resident, .budget = gpu.budget };
        for (size_t i = 0; i < s->n_children; i++) {
                Child *c = s->children[i];
                const char *how;

                models[i] = (ResidentModel) {
                        .name = child_name(c),
                        .running = !child_is_down(c),
                        .pinned = child_is_pinned(c),
                        .active = s->loaded && s->active && streq(s->active, child_name(c)),
                        .last_used_usec = child_used_usec(c),
                        .bytes = supervisor_model_gpu(s, child_name(c), &how),
                };
        }
        return models;
}

/* The models to stop so that target fits (names), or -E2BIG with the reason. */
static int supervisor_plan(Supervisor *s, const char *target, char ***ret_evict, char **ret_reason)
{
        ResidencyLimits l;
        _cleanup_free_ ResidentModel *models = supervisor_models(s, &l);
        _cleanup_free_ size_t *evict = calloc(MAX(s->n_children, (size_t) 1), sizeof(size_t));
        _cleanup_strv_free_ char **names = calloc(1, sizeof(char *));
        size_t t = 0, n = 0;
        int r;

        if (!models || !evict || !names) {
                return -ENOMEM;
        }
        for (size_t i = 0; i < s->n_children; i++) {
                if (streq(models[i].name, target)) {
                        t = i;
                }
        }
        r = residency_plan(models, s->n_children, t, &l, evict, &n);
        if (r == -E2BIG) {
                uint64_t pinned = 0;

                for (size_t i = 0; i < s->n_children; i++) {
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

/* ---- switching ---- */

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

static void supervisor_advance(Supervisor *s);

static void supervisor_notify_change(Supervisor *s)
{
        if (s->options.on_change) {
                s->options.on_change(s, s->options.userdata);
        }
}

static void op_progress(Supervisor *s, SwitchPhase phase, const char *model, double progress)
{
        for (size_t i = 0; s->op && i < s->op->n_waiters; i++) {
                if (s->op->waiters[i].cb.progress) {
                        s->op->waiters[i].cb.progress(s->op->waiters[i].userdata, phase, model, progress);
                }
        }
}

static int op_add_waiter(SwitchOp *op, const SwitchCallbacks *cb, void *userdata)
{
        SwitchWaiter *w;

        if (!cb) {
                return 0;
        }
        w = realloc(op->waiters, sizeof(SwitchWaiter) * (op->n_waiters + 1));
        if (!w) {
                return -ENOMEM;
        }
        op->waiters = w;
        op->waiters[op->n_waiters++] = (SwitchWaiter) { .cb = *cb, .userdata = userdata };
        return 0;
}

/* Ends the operation in progress and tells those who asked for it. */
static void op_finish(Supervisor *s, int error, const char *restored, const char *superseded_by)
{
        SwitchOp *op = s->op;
        uint64_t now = now_usec(s);
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

/* Whether every model the operation stops to make room is down (and what a reload removed). */
static bool evicted_down(const Supervisor *s)
{
        STRV_FOREACH(n, s->op->evict) {
                Child *c = supervisor_child(s, *n);

                if (c && !child_is_down(c)) {
                        return false;
                }
        }
        for (size_t i = 0; i < s->n_retired; i++) {
                if (!child_is_pinned(s->retired[i]) && !child_is_down(s->retired[i])) {
                        return false;
                }
        }
        return true;
}

bool supervisor_evicting(const Supervisor *s, const char *model)
{
        const ModelConfig *m;

        /* Asked for every request the proxy dispatches: nothing to look up without a switch. */
        if (!s->op) {
                return false;
        }
        m = config_find_model(s->config, model);
        return m && strv_contains(s->op->evict, m->name);
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
        if (op->beside) {
                /* The active model served all along: it still does. */
                op_finish(s, -EIO, op->load_only ? NULL : s->active, NULL);
                return;
        }
        if (op->previous && !streq(op->previous, op->target)) {
                /* Not evicted any more: it is what serves now. */
                strv_remove(op->evict, op->previous);
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
                if (!evicted_down(s)) {
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
                        if (op->load_only) {
                                log_model(LOG_INFO, op->target, "load", "Loaded %s beside %s in %.3f s",
                                          op->target, s->active ? s->active : "nothing",
                                          (double) (now_usec(s) - op->start_usec) / USEC_PER_SEC);
                                op_finish(s, 0, NULL, NULL);
                                return;
                        }
                        if (op->beside) {
                                /* Made before break: the target takes over now. */
                                free(s->active);
                                s->active = strdup(op->target);
                        }
                        child_touch(c);
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

/* A switch to a resident model that is ready: a change of route, nothing started or stopped. */
static uint64_t clock_usec(void)
{
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Ends the operation in progress for a newer one (for target; NULL: Stop) and returns what
 * served before it, still the model to restore. A model it was loading, wanted by it alone,
 * stops: a superseded switch must not leave it resident, taking room. */
static char *op_supersede(Supervisor *s, const char *target)
{
        char *previous = TAKE_PTR(s->op->previous);
        _cleanup_free_ char *old = s->op->target ? strdup(s->op->target) : NULL;
        Child *c;

        op_finish(s, -ESTALE, NULL, target ? target : "stop");
        c = old && (!target || !streq(old, target)) && !(previous && streq(old, previous))
                    ? supervisor_child(s, old) : NULL;
        if (c && !child_is_down(c) && child_state(c) != CHILD_READY) {
                log_model(LOG_INFO, old, "switch", "%s: no longer wanted, stopping its load", old);
                supervisor_stop_child(s, c, false);
        }
        return previous;
}

static void supervisor_switch_resident(Supervisor *s, const char *target, const SwitchCallbacks *cb,
                                       void *userdata)
{
        _cleanup_free_ char *previous = NULL;
        uint64_t start = clock_usec(); /* the loop's cached time would not move */

        if (s->op) {
                previous = op_supersede(s, target);
        } else if (s->loaded && s->active) {
                previous = strdup(s->active);
        }
        free(s->active);
        s->active = strdup(target);
        s->loaded = true;
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
                .total_usec = clock_usec() - start,
        };
        if (cb && cb->done) {
                cb->done(userdata, &r);
        }
        supervisor_notify_change(s);
}

static int supervisor_begin(Supervisor *s, const char *target, bool loaded, SwitchFlags flags,
                            const SwitchCallbacks *cb, void *userdata, char **ret_reason)
{
        _cleanup_free_ char *previous = NULL;
        _cleanup_strv_free_ char **evict = NULL;
        bool load_only = flags & SWITCH_LOAD_ONLY, beside;
        Child *t = target ? supervisor_child(s, target) : NULL;
        Child *a = s->loaded && s->active ? supervisor_child(s, s->active) : NULL;
        SwitchOp *op;
        int r;

        /* The same as the operation in progress: join it (a Switch turns a Load of its target
         * into a switch), and be told when it is done. */
        if (s->op && s->op->phase != SWITCH_RESTORING && streq_ptr(s->op->target, target) &&
            (!load_only || s->op->target)) {
                if (!load_only && s->op->load_only) {
                        s->op->load_only = false;
                        s->loaded = true;
                }
                return op_add_waiter(s->op, cb, userdata);
        }

        /* Nothing to do: say so. */
        if (!s->op && ((t && load_only && !child_is_down(t)) ||
                       (t && s->loaded && streq(s->active, target) && child_state(t) == CHILD_READY) ||
                       (!t && !s->loaded && generation_down_except(s, NULL)))) {
                SwitchResult res = { .kind = SWITCH_KIND_RESIDENT, .from = s->active, .to = target };

                if (cb && cb->done) {
                        cb->done(userdata, &res);
                }
                return 0;
        }
        if (t && !load_only && child_state(t) == CHILD_READY && !supervisor_evicting(s, target)) {
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
                for (size_t i = 0; evict && i < s->n_children; i++) {
                        Child *c = s->children[i];

                        if (!child_is_pinned(c) && !child_is_down(c) && strv_extend(&evict, child_name(c)) < 0) {
                                return -ENOMEM;
                        }
                }
                if (!evict) {
                        return -ENOMEM;
                }
        }
        /* Make before break: the active model keeps serving while the target loads, when it
         * need not make room. */
        beside = t && a && child_state(a) == CHILD_READY && !strv_contains(evict, s->active) &&
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
        } else if (a) {
                ChildState st = child_state(a);

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
        op->evict = TAKE_PTR(evict);
        op->beside = beside || load_only;
        op->load_only = load_only;
        op->phase = SWITCH_STOPPING;
        op->start_usec = now_usec(s);
        op->progress = -1;
        s->op = op;
        if (op_add_waiter(op, cb, userdata) < 0) {
                return -ENOMEM; /* nothing started yet: the op ends with the next one */
        }
        prefetch_stop(s->prefetch); /* never beside a load */
        if (target && !op->beside) {
                /* Break before make: requests wait for the target. */
                free(s->active);
                s->active = strdup(target);
        }
        if (!load_only) {
                s->loaded = loaded;
        }
        log_model(LOG_INFO, target, "switch", "%s %s → %s%s", load_only ? "Loading" : "Switching",
                  op->previous ? op->previous : "none", target ? target : "none",
                  op->beside && !load_only ? " (beside it until ready)" : "");

        STRV_FOREACH(n, op->evict) {
                Child *c = supervisor_child(s, *n);

                if (c && !child_is_down(c)) {
                        op_progress(s, SWITCH_STOPPING, *n, -1);
                        log_model(LOG_INFO, *n, "evict", "Stopping %s to make room for %s", *n,
                                  target ? target : "nothing");
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
        return supervisor_begin(s, m ? m->name : NULL, m != NULL, flags, cb, userdata, ret_reason);
}

int supervisor_unload(Supervisor *s, const char *name, char **ret_reason)
{
        const ModelConfig *m = config_find_model(s->config, name);
        Child *c = m ? supervisor_child(s, m->name) : NULL;
        int r = 0;

        *ret_reason = NULL;
        if (!c) {
                r = asprintf(ret_reason, "no model '%s'", name) < 0 ? -ENOMEM : -ENOENT;
        } else if (m->pin) {
                r = asprintf(ret_reason, "'%s' is pinned: always loaded", m->name) < 0 ? -ENOMEM : -EPERM;
        } else if (s->loaded && s->active && streq(s->active, m->name)) {
                r = asprintf(ret_reason, "'%s' is the active model (llmctl stop unloads it)", m->name) < 0
                            ? -ENOMEM : -EBUSY;
        } else if (s->op && s->op->target && streq(s->op->target, m->name)) {
                r = asprintf(ret_reason, "'%s' is being loaded (llmctl switch to another model stops that)",
                             m->name) < 0 ? -ENOMEM : -EBUSY;
        }
        if (r < 0) {
                return r;
        }
        if (!child_is_down(c)) {
                log_model(LOG_INFO, m->name, "unload", "Unloading %s", m->name);
                supervisor_drain_and_stop(s, c, false);
        }
        return 0;
}

void supervisor_touch(Supervisor *s, const char *model)
{
        Child *c = supervisor_child(s, model);

        if (c) {
                child_touch(c);
        }
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

/* ---- unload-after ---- */

/* Stops the resident models that are not active and have served nothing for their
 * unload-after, and arms the timer for the next that could be. */
static int supervisor_on_unload_timer(sd_event_source *es, uint64_t usec, void *userdata)
{
        Supervisor *s = userdata;
        uint64_t now = now_usec(s), next = UINT64_MAX;

        for (size_t i = 0; i < s->n_children && !s->stopping; i++) {
                Child *c = s->children[i];
                const ModelConfig *m = child_config(c);
                uint64_t due;

                if (m->pin || m->unload_after_usec == 0 || child_state(c) != CHILD_READY ||
                    (s->active && streq(s->active, m->name)) ||
                    (s->op && s->op->target && streq(s->op->target, m->name)) ||
                    supervisor_evicting(s, m->name)) {
                        continue;
                }
                due = child_used_usec(c) + m->unload_after_usec;
                if (due <= now) {
                        char buf[32];

                        log_model(LOG_INFO, m->name, "unload", "%s: unused for %s (unload-after), unloading",
                                  m->name, format_duration(buf, sizeof(buf), m->unload_after_usec));
                        supervisor_drain_and_stop(s, c, false);
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
        bool had_op = s->op; /* a switch this ends prefetches in op_finish() */

        if (st == CHILD_READY && old != CHILD_READY) {
                gpu_measure(s, c);
        }
        if (st == CHILD_LOADING) {
                prefetch_stop(s->prefetch); /* whatever started the load */
        }
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
        supervisor_arm_unload(s);
        if (st == CHILD_READY && old != CHILD_READY && !had_op && !s->op) {
                supervisor_prefetch(s); /* a load ended (at start, or one a switch left running) */
        }
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
        gpu_records_load(s);
        r = gpu_source_open(&s->gpu, &s->gpu_why);
        if (r == -ENOMEM) {
                return r;
        }
        if (r < 0) {
                log_info("GPU memory: %s; only max-resident and configured sizes apply",
                         s->gpu_why ? s->gpu_why : "no source");
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
        sd_event_source_disable_unref(s->unload_timer);
        if (s->persist_source) {
                int on = SD_EVENT_OFF;

                if (sd_event_source_get_enabled(s->persist_source, &on) >= 0 && on != SD_EVENT_OFF) {
                        supervisor_persist_now(s); /* still due: now, before llmd is gone */
                }
                sd_event_source_disable_unref(s->persist_source);
        }
        for (size_t i = 0; i < s->n_records; i++) {
                free(s->records[i].name);
                free(s->records[i].path);
        }
        free(s->records);
        gpu_source_free(s->gpu);
        free(s->gpu_why);
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
        prefetch_stop(s->prefetch);
        s->stop_done = done;
        s->stop_userdata = userdata;
        if (s->op) {
                for (size_t i = 0; i < s->op->n_waiters; i++) {
                        s->op->waiters[i].cb.progress = NULL;
                }
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

/* Limits a reload lowered: resident models beyond them stop, least recently used first; the
 * active and pinned models stay (a later switch makes room as usual). */
static void supervisor_trim(Supervisor *s)
{
        ResidencyLimits l;
        _cleanup_free_ ResidentModel *models = supervisor_models(s, &l);
        _cleanup_free_ size_t *evict = calloc(MAX(s->n_children, (size_t) 1), sizeof(size_t));
        size_t n = 0;

        if (!models || !evict) {
                return;
        }
        residency_trim(models, s->n_children, &l, evict, &n);
        for (size_t i = 0; i < n; i++) {
                Child *c = s->children[evict[i]];

                log_model(LOG_INFO, child_name(c), "evict", "%s: over max-resident or the GPU memory budget "
                          "after the reload, stopping it", child_name(c));
                supervisor_drain_and_stop(s, c, false);
        }
}

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

                if (!want && !m->pin && !changed[i] && !child_is_down(c)) {
                        continue; /* resident beside the active model, and unchanged: it stays */
                }
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
        supervisor_trim(s);
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
                Child *c = s->children[i];
                _cleanup_free_ char *w = NULL;

                if (child_is_pinned(c) || (s->active && streq(child_name(c), s->active)) ||
                    (child_state(c) != CHILD_READY && child_state(c) != CHILD_LOADING) || supervisor_evicting(s, child_name(c))) {
                        continue;
                }
                w = child_status_words(c);
                if (!w || strv_consume(&parts, strjoin2("resident ", w)) < 0) {
                        return NULL;
                }
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
