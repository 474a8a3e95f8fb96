/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "array.h"
#include "fileio.h"
#include "log.h"
#include "strv.h"
#include "supervisor-internal.h"
#include "time-util.h"

/*
 * Operations: a switch (with the evictions that make room for it, and the restore of what
 * served when it fails), a load, Stop, an unload. Each is a sequence of events on the models it
 * touches; supervisor_advance() moves the one in progress on whenever a model changed, and a
 * newer one supersedes it. Which models must make room is residency_plan()'s to decide.
 */

/* The models as the planner sees them, in their order, and the limits. */
ResidentModel *supervisor_plan_input(Supervisor *s, ResidencyLimits *ret_limits)
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

/* Where a profile that places itself says it goes: CUDA_VISIBLE_DEVICES in its env, or --device
 * CUDAn,..., --tensor-split (the GPUs of a share not 0) or --main-gpu with --split-mode none
 * (or their LLAMA_ARG_* in its env).
 * *ret_want: those GPUs by NVML's number, 0 where the profile does not say which (all). */
static bool profile_places_itself(const ModelConfig *c, uint64_t *ret_want)
{
        const char *devices = NULL, *split = NULL, *main_gpu = NULL, *list;
        bool split_none = false, shares;

        *ret_want = 0;
        /* What llama-server reads: its flags, and the same as LLAMA_ARG_* in its environment
         * (which come first, as CUDA_VISIBLE_DEVICES always did). */
        STRV_FOREACH(e, c->env) {
                const char *v;

                if ((v = startswith(*e, "CUDA_VISIBLE_DEVICES=")) ||
                    (v = startswith(*e, "LLAMA_ARG_DEVICE="))) {
                        devices = v;
                } else if ((v = startswith(*e, "LLAMA_ARG_TENSOR_SPLIT="))) {
                        split = v;
                } else if ((v = startswith(*e, "LLAMA_ARG_MAIN_GPU="))) {
                        main_gpu = v;
                } else if ((v = startswith(*e, "LLAMA_ARG_SPLIT_MODE="))) {
                        split_none = streq(v, "none");
                }
        }
        for (size_t i = 0; c->args && c->args[i] && c->args[i + 1]; i++) {
                const char *v = c->args[i + 1];

                if (streq(c->args[i], "--device")) {
                        devices = devices ?: v;
                } else if (streq(c->args[i], "--tensor-split")) {
                        split = split ?: v;
                } else if (streq(c->args[i], "--main-gpu")) {
                        main_gpu = v;
                } else if (streq(c->args[i], "--split-mode")) {
                        split_none = streq(v, "none");
                }
        }
        /* main-gpu is one GPU with split-mode none; else llama-server spreads the model over
         * all of them (the main GPU only holds what is not split): every GPU, as it says
         * nothing of which. */
        list = devices ?: split ?: (main_gpu ? (split_none ? main_gpu : "") : NULL);
        shares = !devices && split;
        if (!list) {
                return false;
        }
        /* "1,3", "CUDA1,CUDA3", or shares "3,0,1": device n (or the nth share, when not 0) */
        for (unsigned n = 0; *list; n++) {
                char *end;
                unsigned long d;

                list += strspn(list, "CUDA");
                d = strtoul(list, &end, 10);
                if (end == list) {
                        break;
                }
                if (shares ? d > 0 && n < GPU_DEVICES_MAX : d < GPU_DEVICES_MAX) {
                        *ret_want |= UINT64_C(1) << (shares ? n : d);
                }
                list = end + strspn(end, ",/ ");
        }
        return true;
}

/* The models as placement_plan() sees them, and the GPUs: those of [llmd] gpus where there are
 * several, else one with the whole budget (residency_plan()'s case, as before). */
static PlacedModel *supervisor_placement_input(Supervisor *s, const SupervisorGpu *gpu,
                                               PlacementGpu *ret_gpus, unsigned *ret_n)
{
        ResidencyLimits l;
        _cleanup_free_ ResidentModel *rm = supervisor_plan_input(s, &l);
        PlacedModel *pm = calloc(MAX(s->n_models, (size_t) 1), sizeof(PlacedModel));
        unsigned n = gpu->n_devices > 1 ? MIN(gpu->n_devices, (unsigned) PLACEMENT_GPUS_MAX) : 1;

        if (!rm || !pm) {
                return mfree(pm);
        }
        for (unsigned g = 0; g < n; g++) {
                ret_gpus[g] =
                        n > 1 ? (PlacementGpu) { gpu->devices[g].index, gpu->devices[g].budget }
                              : (PlacementGpu) { gpu->n_devices ? gpu->devices[0].index : 0,
                                                 gpu->budget };
        }
        for (size_t i = 0; i < s->n_models; i++) {
                const Model *m = s->models[i];
                const ModelConfig *c = model_config(m);
                uint64_t want = c->gpus, budgets = 0, placed = 0, seen[GPU_DEVICES_MAX];
                bool measured;

                pm[i].m = rm[i];
                pm[i].layers = footprint_layers(s->footprint, c);
                if (!want) {
                        (void) profile_places_itself(c, &want);
                }
                /* several GPUs: where this run was measured (and no gpu-memory says
                 * otherwise), what it uses on each */
                measured = n > 1 && rm[i].running && rm[i].measured &&
                           footprint_measured_on(s->footprint, m->child, seen);
                for (unsigned g = 0; g < n; g++) {
                        pm[i].want |=
                                want & (UINT64_C(1) << ret_gpus[g].index) ? UINT64_C(1) << g : 0;
                        pm[i].on[g] =
                                measured ? seen[ret_gpus[g].index] : m->gpu_on[ret_gpus[g].index];
                        placed += pm[i].on[g];
                }
                if (!rm[i].running || placed > 0) {
                        continue;
                }
                /* not placed by llmd: where its profile says, else over every GPU, as
                 * llama-server spreads its layers, in proportion to the budgets */
                for (unsigned g = 0; g < n; g++) {
                        budgets += !pm[i].want || pm[i].want & (UINT64_C(1) << g)
                                           ? ret_gpus[g].budget
                                           : 0;
                }
                for (unsigned g = 0; g < n && budgets > 0; g++) {
                        if (!pm[i].want || pm[i].want & (UINT64_C(1) << g)) {
                                pm[i].on[g] = (uint64_t) (rm[i].bytes *
                                                          (unsigned __int128) ret_gpus[g].budget /
                                                          budgets);
                        }
                }
                if (budgets == 0) {
                        pm[i].on[0] = rm[i].bytes;
                }
        }
        *ret_n = n;
        return pm;
}

/* The models to stop so that target fits (names), or -E2BIG with the reason; where it goes is
 * kept for its start (supervisor_place()) unless preview. With ret_on (bytes by NVML's number,
 * all 0 where llmd does not choose) and ret_why (in words), what it decided. */
static int supervisor_plan(Supervisor *s, const char *target, bool preview, char ***ret_evict,
                           char **ret_reason, uint64_t *ret_on, char **ret_why)
{
        SupervisorGpu gpu;
        PlacementGpu gpus[PLACEMENT_GPUS_MAX];
        unsigned n_gpus = 0;
        _cleanup_free_ PlacedModel *models = NULL;
        _cleanup_free_ size_t *evict = calloc(MAX(s->n_models, (size_t) 1), sizeof(size_t));
        _cleanup_strv_free_ char **names = calloc(1, sizeof(char *));
        Placement p;
        size_t t = 0;
        int r;

        supervisor_gpu(s, &gpu);
        models = supervisor_placement_input(s, &gpu, gpus, &n_gpus);
        if (!models || !evict || !names) {
                return -ENOMEM;
        }
        for (size_t i = 0; i < s->n_models; i++) {
                if (streq(models[i].m.name, target)) {
                        t = i;
                }
        }
        r = placement_plan(models, s->n_models, t, gpus, n_gpus, gpu.max_resident, evict, &p);
        if (ret_why && r >= 0) {
                *ret_why = placement_describe(models, s->n_models, t, gpus, n_gpus, evict, &p, r);
                if (!*ret_why) {
                        return -ENOMEM;
                }
        }
        if (r == -E2BIG && n_gpus > 1) {
                *ret_reason =
                        placement_describe(models, s->n_models, t, gpus, n_gpus, evict, &p, r);
                return r;
        }
        if (r == -E2BIG) {
                uint64_t pinned = 0;

                for (size_t i = 0; i < s->n_models; i++) {
                        pinned += models[i].m.pinned && models[i].m.running ? models[i].m.bytes : 0;
                }
                if (asprintf(ret_reason,
                             "%s needs %.1f GiB of GPU memory and the budget is %.1f GiB, "
                             "%.1f GiB of it taken by pinned models: it does not fit even alone",
                             target, (double) models[t].m.bytes / (1ULL << 30),
                             (double) gpu.budget / (1ULL << 30),
                             (double) pinned / (1ULL << 30)) < 0) {
                        *ret_reason = NULL;
                }
                return r;
        }
        if (r < 0) {
                return r;
        }
        for (size_t i = 0; i < p.n_evict; i++) {
                if (strv_extend(&names, models[evict[i]].m.name) < 0) {
                        return -ENOMEM;
                }
        }
        if (n_gpus > 1) {
                Model *m = s->models[t];
                uint64_t on[GPU_DEVICES_MAX] = {}, split[GPU_DEVICES_MAX] = {};

                for (unsigned g = 0; g < n_gpus; g++) {
                        /* a GPU chosen for a model of unknown size (0 bytes) is chosen all
                         * the same: 1 byte marks it */
                        on[gpus[g].index] =
                                p.gpus & (UINT64_C(1) << g) ? MAX(p.share[g], (uint64_t) 1) : 0;
                        split[gpus[g].index] = p.gpus & (UINT64_C(1) << g) ? p.split[g] : 0;
                }
                if (ret_on) {
                        memcpy(ret_on, on, sizeof(on));
                }
                if (!preview && p.kind != PLACEMENT_RUNNING) {
                        memcpy(m->gpu_planned, on, sizeof(on));
                        memcpy(m->gpu_split_planned, split, sizeof(split));
                        m->planned = true;
                }
        }
        *ret_evict = TAKE_PTR(names);
        return 0;
}

/* CUDA_VISIBLE_DEVICES (by PCI bus, NVML's order) for the GPUs of on[], and where there are
 * several, --split-mode layer (unless the profile sets one) and --tensor-split split[] (the
 * planner's weights, MiB: its estimate per GPU assumed these very numbers). */
static int supervisor_place_child(Model *m, const uint64_t *on, const uint64_t *split)
{
        _cleanup_strv_free_ char **env = NULL, **args = NULL;
        char visible[GPU_DEVICES_MAX * 4 + 32] = "CUDA_VISIBLE_DEVICES=", ts[GPU_DEVICES_MAX * 24];
        size_t v = strlen(visible), t = 0;
        unsigned n = 0;

        ts[0] = '\0';
        for (unsigned i = 0; i < GPU_DEVICES_MAX; i++) {
                if (on[i] > 0) {
                        v += (size_t) snprintf(visible + v, sizeof(visible) - v, "%s%u",
                                               n ? "," : "", i);
                        t += (size_t) snprintf(ts + t, sizeof(ts) - t, "%s%" PRIu64, n ? "," : "",
                                               MAX(split[i], (uint64_t) 1));
                        n++;
                }
        }
        if (n == 0) {
                return child_set_placement(m->child, NULL, NULL);
        }
        if (strv_extend(&env, "CUDA_DEVICE_ORDER=PCI_BUS_ID") < 0 ||
            strv_extend(&env, visible) < 0) {
                return -ENOMEM;
        }
        bool own_mode = strv_contains(model_config(m)->args, "--split-mode");

        STRV_FOREACH(e, model_config(m)->env) {
                own_mode = own_mode || startswith(*e, "LLAMA_ARG_SPLIT_MODE=");
        }
        if (n > 1 && ((!own_mode && (strv_extend(&args, "--split-mode") < 0 ||
                                     strv_extend(&args, "layer") < 0)) ||
                      strv_extend(&args, "--tensor-split") < 0 || strv_extend(&args, ts) < 0)) {
                return -ENOMEM;
        }
        return child_set_placement(m->child, env, args);
}

void supervisor_place(Model *m)
{
        Supervisor *s = m->supervisor;
        SupervisorGpu gpu;
        PlacementGpu gpus[PLACEMENT_GPUS_MAX];
        unsigned n_gpus = 0;
        uint64_t want, on[GPU_DEVICES_MAX] = {}, split[GPU_DEVICES_MAX] = {};
        _cleanup_free_ PlacedModel *models = NULL;
        _cleanup_free_ size_t *evict = NULL;
        _cleanup_free_ char *why = NULL;
        bool planned = m->planned;
        Placement p;
        size_t t = 0;
        int r;

        m->planned = false;
        memset(m->gpu_on, 0, sizeof(m->gpu_on));
        memset(m->gpu_split, 0, sizeof(m->gpu_split));
        supervisor_gpu(s, &gpu);
        if (profile_places_itself(model_config(m), &want) || gpu.n_devices == 0 ||
            (gpu.n_devices == 1 && footprint_gpu_devices(s->footprint) <= 1)) {
                /* where the profile says, or the one GPU there is: nothing to add */
                (void) child_set_placement(m->child, NULL, NULL);
                return;
        }
        if (gpu.n_devices == 1) {
                /* [llmd] gpus names one GPU of several */
                on[gpu.devices[0].index] =
                        MAX(footprint_need(s->footprint, model_config(m), NULL), (uint64_t) 1);
        } else if (planned) {
                memcpy(on, m->gpu_planned, sizeof(on));
                memcpy(split, m->gpu_split_planned, sizeof(split));
        } else {
                models = supervisor_placement_input(s, &gpu, gpus, &n_gpus);
                evict = calloc(MAX(s->n_models, (size_t) 1), sizeof(size_t));
                if (!models || !evict) {
                        log_error("%s: placement: out of memory", model_name(m));
                        return;
                }
                for (size_t i = 0; i < s->n_models; i++) {
                        t = s->models[i] == m ? i : t;
                }
                models[t].m.running = false; /* LOADING already: placed now */
                /* a start no switch planned (at startup, a restart): where it fits now */
                r = placement_plan(models, s->n_models, t, gpus, n_gpus, 0, evict, &p);
                for (unsigned g = 0; g < n_gpus; g++) {
                        on[gpus[g].index] = r < 0 ? gpus[g].budget
                                            : p.gpus & (UINT64_C(1) << g)
                                                    ? MAX(p.share[g], (uint64_t) 1)
                                                    : 0;
                        split[gpus[g].index] = r < 0 ? gpus[g].budget >> 20 : p.split[g];
                }
                why = placement_describe(models, s->n_models, t, gpus, n_gpus, evict, &p, r);
        }
        if (supervisor_place_child(m, on, split) < 0) {
                log_error("%s: placement: out of memory", model_name(m));
                return;
        }
        memcpy(m->gpu_on, on, sizeof(on));
        memcpy(m->gpu_split, split, sizeof(split));
        if (why) {
                log_model(LOG_INFO, model_name(m), "place", "%s", why);
        }
}

/* The files of the generation models that are not loaded into the page cache: the next switch
 * to one of them is a warm load. Never beside a load or a switch. */
void supervisor_prefetch(Supervisor *s)
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

void op_free(SwitchOp *op)
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
                        s->op->waiters[i].cb.progress(s->op->waiters[i].userdata, phase, model,
                                                      progress);
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
                (void) sd_event_source_set_time_relative(s->progress_timer,
                                                         SUPERVISOR_PROGRESS_USEC);
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
void op_finish(Supervisor *s, int error, const char *restored, const char *superseded_by)
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
                .cache_saved = op->cache_saved,
                .cache_restored = op->cache_restored,
        };
        uint64_t on[GPU_DEVICES_MAX];
        if (error == 0 && op->target && supervisor_model_placed(s, op->target, on)) {
                r.gpus = on;
        }
        if (op->stopped_usec > 0) {
                r.stop_usec = op->stopped_usec - op->start_usec;
        }
        if (error == 0 && t && child_ready_usec(t) >= child_spawned_usec(t) &&
            child_spawned_usec(t) >= op->start_usec) {
                r.load_usec = child_ready_usec(t) - child_spawned_usec(t);
        }
        if (op->target && !op->load_only && error != -ECANCELED) {
                metrics_switch_end(s->options.metrics,
                                   error == 0         ? switch_kind_to_string(r.kind)
                                   : error == -ESTALE ? "superseded"
                                                      : "failed",
                                   (double) r.total_usec / USEC_PER_SEC);
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
        log_model(LOG_ERR, op->target, "switch",
                  "Switch to %s failed: %s (see: journalctl -u llmd MODEL=%s)", op->target,
                  op->reason ? op->reason : "?", op->target);
        model_event(t, SERVING_EVENT_FAILED, SERVING_WHY_FAILED);
        if (op->beside) {
                /* The active model served all along: it still does. */
                op_finish(s, -EIO, op->load_only ? NULL : s->active, NULL);
                return;
        }
        p = op->previous && !streq(op->previous, op->target) ? supervisor_model(s, op->previous)
                                                             : NULL;
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

        /* A start that waits for the previous process to go is no crash. */
        return m->state == SERVING_LOADING && !m->start_pending &&
               (st == CHILD_BACKOFF || st == CHILD_KILLING);
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
                if (!op_evicted_down(s) || (m && serving_state_leaving(m->state))) {
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
                                log_model(LOG_INFO, op->target, "load",
                                          "Loaded %s beside %s in %.3f s", op->target,
                                          s->active ? s->active : "nothing",
                                          (double) (event_now_usec(s->options.event) -
                                                    op->start_usec) /
                                                  USEC_PER_SEC);
                                op_finish(s, 0, NULL, NULL);
                                return;
                        }
                        /* Made before break: the target takes over now. */
                        supervisor_choose(s, op->target, s->loaded);
                        child_touch(m->child);
                        supervisor_persist(s);
                        log_model(LOG_INFO, op->target, "switch", "Switched to %s in %.3f s",
                                  op->target,
                                  (double) (event_now_usec(s->options.event) - op->start_usec) /
                                          USEC_PER_SEC);
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
void supervisor_advance(Supervisor *s)
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

int supervisor_on_progress(sd_event_source *es, uint64_t usec, void *userdata)
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
        _cleanup_close_ int fd = -1;
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
                if (asprintf(&reason, "'%s' is pinned: always loaded, never switched to", m->name) <
                    0) {
                        reason = NULL;
                }
                *ret_reason = reason;
                return -EPERM;
        }
        /* Opened, not access()ed: a FIFO, a socket or a device there is refused at once, and
         * nothing here can block. */
        fd = open_regular(m->model_path, 0, NULL);
        if (fd < 0) {
                if (asprintf(&reason, "model file %s: %s", m->model_path, file_strerror(fd)) < 0) {
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
                    ? supervisor_model(s, old)
                    : NULL;
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
        log_model(LOG_INFO, target, "switch", "Switched %s → %s (resident)",
                  previous ? previous : "none", target);
        SwitchResult r = {
                .kind = SWITCH_KIND_RESIDENT,
                .from = previous,
                .to = target,
                .changed = !previous || !streq(previous, target),
                .total_usec = now_usec(CLOCK_MONOTONIC) - start,
        };
        if (r.changed) {
                metrics_switch_end(s->options.metrics, "resident",
                                   (double) r.total_usec / USEC_PER_SEC);
        }
        if (cb && cb->done) {
                cb->done(userdata, &r);
        }
        supervisor_notify_change(s);
}

bool supervisor_generation_down(const Supervisor *s)
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
                SwitchResult res = { .kind = SWITCH_KIND_RESIDENT,
                                     .from = s->active,
                                     .to = target };

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
                r = supervisor_plan(s, target, false, &evict, ret_reason, NULL, NULL);
                if (r < 0) {
                        return r;
                }
        } else {
                /* Stop: every generation model. */
                evict = calloc(1, sizeof(char *));
                for (size_t i = 0; evict && i < s->n_models; i++) {
                        Model *m = s->models[i];

                        if (!model_pinned(m) && !model_down(m) &&
                            strv_extend(&evict, model_name(m)) < 0) {
                                return -ENOMEM;
                        }
                }
                if (!evict) {
                        return -ENOMEM;
                }
        }
        /* Make before break: the active model keeps serving while the target loads, when it
         * need not make room. */
        beside = t && a && serving_state_resident(a->state) && !strv_contains(evict, s->active) &&
                 !streq(s->active, target);
        if (load_only && !beside && a && !streq(s->active, target)) {
                SupervisorGpu gpu;
                unsigned running = 0;
                char why[96];

                /* Which limit it is: the count (max-resident) or the memory. */
                supervisor_gpu(s, &gpu);
                for (size_t i = 0; i < s->n_models; i++) {
                        running += !model_pinned(s->models[i]) &&
                                   serving_state_running(s->models[i]->state) &&
                                   !streq(model_name(s->models[i]), target);
                }
                if (gpu.max_resident > 0 && running >= gpu.max_resident) {
                        snprintf(why, sizeof(why),
                                 "max-resident = %u: that many generation models may be loaded",
                                 gpu.max_resident);
                } else {
                        snprintf(why, sizeof(why), "the GPU memory budget is taken");
                }
                if (asprintf(ret_reason,
                             "no room for %s beside the active model %s (%s; llmctl switch %s "
                             "would stop it)",
                             target, s->active, why, target) < 0) {
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
                        model_event(m,
                                    flags & SWITCH_NOW ? SERVING_EVENT_KILL : SERVING_EVENT_UNLOAD,
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
                r = asprintf(ret_reason, "'%s' is pinned: always loaded", model_name(m)) < 0
                            ? -ENOMEM
                            : -EPERM;
        } else if (supervisor_is_active(s, m)) {
                r = asprintf(ret_reason, "'%s' is the active model (llmctl stop unloads it)",
                             model_name(m)) < 0
                            ? -ENOMEM
                            : -EBUSY;
        } else if (s->op && s->op->target && streq(s->op->target, model_name(m))) {
                r = asprintf(ret_reason,
                             "'%s' is being loaded (llmctl switch to another model stops that)",
                             model_name(m)) < 0
                            ? -ENOMEM
                            : -EBUSY;
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

bool supervisor_model_placed(Supervisor *s, const char *model, uint64_t ret_on[GPU_DEVICES_MAX])
{
        Model *m = supervisor_model(s, model);
        bool any = false;

        for (unsigned i = 0; i < GPU_DEVICES_MAX; i++) {
                ret_on[i] = m && serving_state_running(m->state) ? m->gpu_on[i] : 0;
                any = any || ret_on[i] > 0;
        }
        return any;
}

bool supervisor_model_devices(Supervisor *s, const char *model,
                              SupervisorDeviceUse ret[GPU_DEVICES_MAX])
{
        Model *m = supervisor_model(s, model);
        uint64_t seen[GPU_DEVICES_MAX] = {}, est[PLACEMENT_GPUS_MAX] = {}, mask = 0;
        bool measured = false, any = false;

        memset(ret, 0, GPU_DEVICES_MAX * sizeof(SupervisorDeviceUse));
        if (!m || !serving_state_running(m->state)) {
                return false;
        }
        footprint_measure(s->footprint, m->child);
        measured =
                footprint_measured_on(s->footprint, m->child, seen) && !model_config(m)->gpu_memory;
        for (unsigned i = 0; i < PLACEMENT_GPUS_MAX; i++) {
                mask |= m->gpu_on[i] > 0 ? UINT64_C(1) << i : 0;
        }
        /* the estimate over the split it got (one GPU: the whole estimate there) */
        placement_split_shares(footprint_layers(s->footprint, model_config(m)),
                               footprint_estimate(s->footprint, model_config(m)), mask,
                               m->gpu_split, PLACEMENT_GPUS_MAX, est);
        for (unsigned i = 0; i < GPU_DEVICES_MAX; i++) {
                ret[i] = (SupervisorDeviceUse) {
                        .bytes = measured ? seen[i] : m->gpu_on[i],
                        .estimated = i < PLACEMENT_GPUS_MAX && m->gpu_on[i] > 0 ? est[i] : 0,
                        .measured = seen[i],
                };
                any = any || m->gpu_on[i] > 0 || seen[i] > 0;
        }
        return any;
}

int supervisor_plan_preview(Supervisor *s, const char *model, uint64_t ret_on[GPU_DEVICES_MAX],
                            char ***ret_evict, char **ret_why)
{
        const ModelConfig *m = NULL;
        int r;

        *ret_why = NULL;
        memset(ret_on, 0, GPU_DEVICES_MAX * sizeof(uint64_t));
        r = supervisor_check_target(s, model, &m, ret_why);
        if (r < 0) {
                return r;
        }
        return supervisor_plan(s, m->name, true, ret_evict, ret_why, ret_on, ret_why);
}
