/* SPDX-License-Identifier: MIT */
/* The io.llmd.Manager methods: each one a small function, listed in one table. */
#include <math.h>
#include <stdio.h>

#include "control.h"
#include "log.h"
#include "time-util.h"
#include "manager.h"
#include "strv.h"
#include "build-config.h"

static double seconds(uint64_t usec)
{
        return (double) usec / USEC_PER_SEC;
}

static cJSON *json_strv(char *const *l)
{
        cJSON *a = cJSON_CreateArray();

        STRV_FOREACH(i, l) {
                cJSON_AddItemToArray(a, cJSON_CreateString(*i));
        }
        return a;
}

static cJSON *error_params(const char *k1, const char *v1, const char *k2, const char *v2)
{
        cJSON *p = cJSON_CreateObject();

        if (k1) {
                cJSON_AddStringToObject(p, k1, v1 ? v1 : "");
        }
        if (k2) {
                cJSON_AddStringToObject(p, k2, v2 ? v2 : "");
        }
        return p;
}

static cJSON *cache_json(const PromptCacheResult *r)
{
        cJSON *o = cJSON_CreateObject();

        cJSON_AddNumberToObject(o, "count", r->n);
        cJSON_AddNumberToObject(o, "tokens", (double) r->tokens);
        cJSON_AddNumberToObject(o, "bytes", (double) r->bytes);
        cJSON_AddNumberToObject(o, "sec", seconds(r->usec));
        return o;
}

/* [{"index": NVML's number, "bytes": on it}] for each GPU of on[] (by number) with bytes. */
static cJSON *gpus_json(const uint64_t *on)
{
        cJSON *a = cJSON_CreateArray();

        for (unsigned i = 0; a && i < GPU_DEVICES_MAX; i++) {
                if (on[i] > 0) {
                        cJSON *d = cJSON_CreateObject();

                        cJSON_AddItemToArray(a, d);
                        cJSON_AddNumberToObject(d, "index", i);
                        cJSON_AddNumberToObject(d, "bytes", (double) on[i]);
                }
        }
        return a;
}

static cJSON *model_json(Manager *m, Child *c)
{
        const ModelConfig *mc = child_config(c);
        const char *active = supervisor_active(m->supervisor);
        cJSON *o = cJSON_CreateObject();
        uint64_t now;

        now = event_now_usec(m->event);
        cJSON_AddStringToObject(o, "name", child_name(c));
        cJSON_AddItemToObject(o, "aliases", json_strv(mc->aliases));
        ServingWhy why = SERVING_WHY_NONE;
        ServingState serving = supervisor_serving(m->supervisor, child_name(c), &why);

        cJSON_AddStringToObject(o, "state", child_state_to_string(child_state(c)));
        cJSON_AddStringToObject(o, "serving", serving_state_to_string(serving));
        if (serving_state_leaving(serving) || serving == SERVING_FAILED) {
                cJSON_AddStringToObject(o, "why", serving_why_to_string(why));
        }
        cJSON_AddBoolToObject(o, "active", active && streq(active, child_name(c)));
        cJSON_AddBoolToObject(o, "pinned", mc->pin);
        cJSON_AddBoolToObject(o, "embeddings", mc->embeddings);
        cJSON_AddStringToObject(o, "path", mc->model_path);
        if (child_pid(c) > 0) {
                cJSON_AddNumberToObject(o, "pid", child_pid(c));
        }
        if (child_state(c) == CHILD_READY) {
                cJSON_AddNumberToObject(o, "uptime_sec", seconds(now - child_ready_usec(c)));
        }
        double p = child_load_progress(c);
        if (p >= 0) {
                cJSON_AddNumberToObject(o, "progress", p);
        }
        cJSON_AddNumberToObject(o, "restarts", child_restarts(c));
        if (!mc->pin) {
                cJSON_AddBoolToObject(o, "resident", serving_state_resident(serving));
        }
        if (child_used_usec(c) > 0) {
                cJSON_AddNumberToObject(o, "last_used_sec", seconds(now - child_used_usec(c)));
        }
        const char *how;
        uint64_t need = supervisor_model_gpu(m->supervisor, child_name(c), &how);
        cJSON *g = cJSON_AddObjectToObject(o, "gpu_memory");
        if (how) {
                cJSON_AddNumberToObject(g, "bytes", (double) need);
                cJSON_AddStringToObject(g, "source", how);
        } else {
                cJSON_AddNullToObject(g, "bytes");
                cJSON_AddNullToObject(g, "source");
        }
        uint64_t on[GPU_DEVICES_MAX];
        if (supervisor_model_placed(m->supervisor, child_name(c), on)) {
                cJSON_AddItemToObject(g, "gpus", gpus_json(on));
        }
        uint64_t est = supervisor_model_estimate(m->supervisor, child_name(c));
        uint64_t seen = supervisor_model_measured(m->supervisor, child_name(c));
        if (est > 0) {
                cJSON_AddNumberToObject(g, "estimated", (double) est);
        }
        if (seen > 0) {
                cJSON_AddNumberToObject(g, "measured", (double) seen);
        }
        SupervisorDeviceUse use[GPU_DEVICES_MAX];
        if (supervisor_model_devices(m->supervisor, child_name(c), use)) {
                cJSON *a = cJSON_AddArrayToObject(o, "gpu_memory_per_device");

                for (unsigned i = 0; a && i < GPU_DEVICES_MAX; i++) {
                        cJSON *d;

                        if ((use[i].bytes == 0 && use[i].measured == 0) ||
                            !(d = cJSON_CreateObject())) {
                                continue;
                        }
                        cJSON_AddNumberToObject(d, "device", i);
                        cJSON_AddNumberToObject(d, "bytes", (double) use[i].bytes);
                        if (use[i].estimated > 0) {
                                cJSON_AddNumberToObject(d, "estimated", (double) use[i].estimated);
                        }
                        if (use[i].measured > 0) {
                                cJSON_AddNumberToObject(d, "measured", (double) use[i].measured);
                        }
                        cJSON_AddItemToArray(a, d);
                }
        }
        if (!mc->pin && !mc->embeddings) {
                cJSON *b = cJSON_AddObjectToObject(o, "bench");

                if (isnan(mc->bench_temperature)) {
                        cJSON_AddNullToObject(b, "temperature");
                } else {
                        cJSON_AddNumberToObject(b, "temperature", mc->bench_temperature);
                }
                if (isnan(mc->bench_top_p)) {
                        cJSON_AddNullToObject(b, "top_p");
                } else {
                        cJSON_AddNumberToObject(b, "top_p", mc->bench_top_p);
                }
                cJSON_AddNumberToObject(b, "max_tokens_factor", mc->bench_max_tokens_factor);
        }
        if (config_model_prompt_cache(mc)) {
                PromptCacheResult disk, saved, restored;
                cJSON *pc;

                supervisor_prompt_cache(m->supervisor, child_name(c), &disk, &saved, &restored);
                pc = cache_json(&disk);
                cJSON_DeleteItemFromObjectCaseSensitive(pc, "sec");
                cJSON_AddItemToObject(pc, "last_saved", cache_json(&saved));
                cJSON_AddItemToObject(pc, "last_restored", cache_json(&restored));
                cJSON_AddItemToObject(o, "prompt_cache", pc);
        } else {
                cJSON_AddNullToObject(o, "prompt_cache");
        }
        if (child_reason(c)) {
                cJSON_AddStringToObject(o, "last_failure", child_reason(c));
                cJSON_AddItemToObject(o, "log", json_strv(child_failure_lines(c)));
        }
        return o;
}

static int method_list(ControlCall *call, cJSON *params, void *userdata)
{
        Manager *m = userdata;
        cJSON *p = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(p, "models");
        size_t n;
        Child **children = supervisor_children(m->supervisor, &n);

        for (size_t i = 0; i < n; i++) {
                cJSON_AddItemToArray(a, model_json(m, children[i]));
        }
        return control_call_reply(call, p, false);
}

static int reply_refused(ControlCall *call, int r, const char *model, char *reason);

static int method_activity(ControlCall *call, cJSON *params, void *userdata)
{
        Manager *m = userdata;
        const cJSON *since = cJSON_GetObjectItemCaseSensitive(params, "since");
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(params, "model");

        if (since && !cJSON_IsNull(since) &&
            (!cJSON_IsNumber(since) || since->valuedouble < 0 ||
             since->valuedouble != (double) (uint64_t) since->valuedouble)) {
                return control_call_error(call, VARLINK_ERROR_INVALID_PARAMETER,
                                          error_params("parameter", "since", NULL, NULL));
        }
        if (model && !cJSON_IsNull(model) && !cJSON_IsString(model)) {
                return control_call_error(call, VARLINK_ERROR_INVALID_PARAMETER,
                                          error_params("parameter", "model", NULL, NULL));
        }
        const char *name = cJSON_IsString(model) ? model->valuestring : NULL;
        const ModelConfig *mc =
                name ? config_find_model(supervisor_config(m->supervisor), name) : NULL;
        cJSON *p = activity_json(proxy_activity(m->proxy),
                                 cJSON_IsNumber(since) ? (uint64_t) since->valuedouble : 0,
                                 mc ? mc->name : name);

        /* A name neither configured (an alias counts as its model) nor in the log is a typo:
         * say so rather than print nothing. */
        if (p && name && !mc && cJSON_GetArraySize(cJSON_GetObjectItem(p, "records")) == 0) {
                char *reason;

                cJSON_Delete(p);
                if (asprintf(&reason, "no model '%s' is configured or in the activity log", name) <
                    0) {
                        reason = NULL;
                }
                return reply_refused(call, -ENOENT, name, reason);
        }
        return control_call_reply(call, p, false);
}

static int method_status(ControlCall *call, cJSON *params, void *userdata)
{
        Manager *m = userdata;
        const char *active = supervisor_active(m->supervisor), *target;
        cJSON *p = cJSON_CreateObject(), *pinned = cJSON_CreateArray();
        _cleanup_free_ char *status = supervisor_status_text(m->supervisor);
        SwitchPhase phase;
        uint64_t now;
        size_t n;
        Child **children = supervisor_children(m->supervisor, &n);

        now = event_now_usec(m->event);
        cJSON_AddStringToObject(p, "version", LLMD_VERSION);
        cJSON_AddStringToObject(p, "config", supervisor_config(m->supervisor)->path);
        cJSON_AddNumberToObject(p, "pid", getpid());
        cJSON_AddNumberToObject(p, "uptime_sec", seconds(now - m->start_usec));
        cJSON_AddStringToObject(p, "status", status ? status : "");
        cJSON_AddBoolToObject(p, "loaded", supervisor_loaded(m->supervisor));
        if (active) {
                cJSON_AddItemToObject(p, "active",
                                      model_json(m, supervisor_child(m->supervisor, active)));
        } else {
                cJSON_AddNullToObject(p, "active");
        }
        for (size_t i = 0; i < n; i++) {
                if (child_config(children[i])->pin) {
                        cJSON_AddItemToArray(pinned, model_json(m, children[i]));
                }
        }
        cJSON_AddItemToObject(p, "pinned", pinned);
        cJSON *resident = cJSON_AddArrayToObject(p, "resident");
        for (size_t i = 0; i < n; i++) {
                ServingState st = supervisor_serving(m->supervisor, child_name(children[i]), NULL);

                if (!child_config(children[i])->pin && serving_state_resident(st) &&
                    !(active && streq(active, child_name(children[i])))) {
                        cJSON_AddItemToArray(resident, model_json(m, children[i]));
                }
        }
        SupervisorGpu gpu;
        supervisor_gpu(m->supervisor, &gpu);
        cJSON *g = cJSON_AddObjectToObject(p, "gpu");
        if (gpu.source) {
                cJSON_AddStringToObject(g, "source", gpu.source);
                cJSON_AddNumberToObject(g, "total", (double) gpu.total);
                cJSON_AddNumberToObject(g, "used", (double) gpu.used);
                cJSON_AddNumberToObject(g, "free", (double) gpu.free);
        } else {
                cJSON_AddNullToObject(g, "source");
                cJSON_AddStringToObject(g, "why", gpu.why ? gpu.why : "no GPU memory source");
        }
        if (gpu.budget) {
                cJSON_AddNumberToObject(g, "budget", (double) gpu.budget);
        } else {
                cJSON_AddNullToObject(g, "budget");
        }
        cJSON_AddNumberToObject(g, "resident", (double) gpu.resident);
        cJSON *devices = cJSON_AddArrayToObject(g, "devices");
        for (unsigned i = 0; i < gpu.n_devices; i++) {
                cJSON *d = cJSON_CreateObject();

                cJSON_AddItemToArray(devices, d);
                cJSON_AddNumberToObject(d, "index", gpu.devices[i].index);
                cJSON_AddNumberToObject(d, "total", (double) gpu.devices[i].total);
                cJSON_AddNumberToObject(d, "used", (double) gpu.devices[i].used);
                cJSON_AddNumberToObject(d, "free", (double) gpu.devices[i].free);
                cJSON_AddNumberToObject(d, "budget", (double) gpu.devices[i].budget);
                cJSON *on_it = cJSON_AddArrayToObject(d, "models");
                for (size_t j = 0; j < n; j++) {
                        uint64_t on[GPU_DEVICES_MAX];

                        if (supervisor_model_placed(m->supervisor, child_name(children[j]), on) &&
                            on[gpu.devices[i].index] > 0) {
                                cJSON_AddItemToArray(on_it,
                                                     cJSON_CreateString(child_name(children[j])));
                        }
                }
        }
        if (gpu.max_resident) {
                cJSON_AddNumberToObject(g, "max_resident", gpu.max_resident);
        } else {
                cJSON_AddNullToObject(g, "max_resident");
        }
        ProxyCounters pc = proxy_counters(m->proxy);
        cJSON *px = cJSON_AddObjectToObject(p, "requests");
        cJSON_AddNumberToObject(px, "served", (double) pc.served);
        cJSON_AddNumberToObject(px, "in_flight", pc.in_flight);
        cJSON_AddNumberToObject(px, "held", pc.held);
        cJSON_AddNumberToObject(px, "errors", (double) pc.errors);
        uint64_t when;
        Child *failed = supervisor_last_failed(m->supervisor, &when);
        if (failed) {
                cJSON *f = cJSON_AddObjectToObject(p, "last_failure");
                cJSON_AddStringToObject(f, "model", child_name(failed));
                cJSON_AddStringToObject(f, "reason", child_reason(failed));
                cJSON_AddNumberToObject(f, "ago_sec", seconds(now - when));
                cJSON_AddItemToObject(f, "log", json_strv(child_failure_lines(failed)));
        }
        if (supervisor_switching(m->supervisor, &target, &phase)) {
                cJSON *s = cJSON_AddObjectToObject(p, "switch");
                cJSON_AddStringToObject(s, "model", target ? target : "");
                cJSON_AddStringToObject(s, "phase", switch_phase_to_string(phase));
        }
        return control_call_reply(call, p, false);
}

static void switch_on_progress(void *userdata, SwitchPhase phase, const char *model,
                               double progress)
{
        ControlCall *call = userdata;
        cJSON *p = cJSON_CreateObject();

        cJSON_AddStringToObject(p, "phase", switch_phase_to_string(phase));
        cJSON_AddStringToObject(p, "model", model);
        if (progress >= 0) {
                cJSON_AddNumberToObject(p, "progress", progress);
        }
        (void) control_call_reply(call, p, true);
}

static void switch_on_done(void *userdata, const SwitchResult *r)
{
        ControlCall *call = userdata;
        cJSON *p;

        switch (r->error) {
        case 0:
                p = cJSON_CreateObject();
                cJSON_AddStringToObject(p, "phase", "done");
                if (r->from) {
                        cJSON_AddStringToObject(p, "from", r->from);
                } else {
                        cJSON_AddNullToObject(p, "from");
                }
                if (r->to) {
                        cJSON_AddStringToObject(p, "model", r->to);
                } else {
                        cJSON_AddNullToObject(p, "model");
                }
                cJSON_AddBoolToObject(p, "changed", r->changed);
                if (r->changed) {
                        cJSON_AddStringToObject(p, "kind", switch_kind_to_string(r->kind));
                        cJSON_AddItemToObject(p, "evicted", json_strv(r->evicted));
                        if (r->gpus) {
                                cJSON_AddItemToObject(p, "gpus", gpus_json(r->gpus));
                        }
                        uint64_t own = r->total_usec -
                                       MIN(r->total_usec,
                                           r->stop_usec + r->load_usec + r->cache_restored.usec);

                        cJSON_AddNumberToObject(p, "total_sec", seconds(r->total_usec));
                        cJSON_AddNumberToObject(p, "stop_sec", seconds(r->stop_usec));
                        cJSON_AddNumberToObject(p, "load_sec", seconds(r->load_usec));
                        cJSON_AddNumberToObject(p, "llmd_sec", seconds(own));
                        cJSON *pc = cJSON_AddObjectToObject(p, "prompt_cache");
                        cJSON_AddItemToObject(pc, "saved", cache_json(&r->cache_saved));
                        cJSON_AddItemToObject(pc, "restored", cache_json(&r->cache_restored));
                }
                (void) control_call_reply(call, p, false);
                return;
        case -ESTALE:
                (void) control_call_error(call, CONTROL_ERROR_SUPERSEDED,
                                          error_params("model", r->to, "by", r->superseded_by));
                return;
        case -ECANCELED:
                (void) control_call_error(call, CONTROL_ERROR_SHUTTING_DOWN, NULL);
                return;
        default:
                p = error_params("model", r->to, "reason", r->reason);
                cJSON_AddItemToObject(p, "log", json_strv(r->log));
                if (r->restored) {
                        cJSON_AddStringToObject(p, "restored", r->restored);
                } else {
                        cJSON_AddNullToObject(p, "restored");
                }
                (void) control_call_error(call, CONTROL_ERROR_LOAD_FAILED, p);
                return;
        }
}

static const SwitchCallbacks switch_callbacks = {
        .progress = switch_on_progress,
        .done = switch_on_done,
};

/* Maps a refusal of the supervisor to its Varlink error. */
static int reply_refused(ControlCall *call, int r, const char *model, char *reason)
{
        const char *error;
        cJSON *p;

        switch (r) {
        case -ENOENT:
                error = CONTROL_ERROR_UNKNOWN_MODEL;
                break;
        case -E2BIG:
        case -ENOSPC:
                error = CONTROL_ERROR_NO_ROOM;
                break;
        case -ESHUTDOWN:
                error = CONTROL_ERROR_SHUTTING_DOWN;
                break;
        default:
                error = CONTROL_ERROR_MODEL_UNAVAILABLE;
                break;
        }
        p = error_params("model", model, "reason", reason);
        free(reason);
        return control_call_error(call, error, p);
}

static int method_switch(ControlCall *call, cJSON *params, void *userdata)
{
        Manager *m = userdata;
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(params, "model");
        const cJSON *now = cJSON_GetObjectItemCaseSensitive(params, "now");
        char *reason = NULL;
        int r;

        if (!cJSON_IsString(model) || isempty(model->valuestring)) {
                return control_call_error(call, VARLINK_ERROR_INVALID_PARAMETER,
                                          error_params("parameter", "model", NULL, NULL));
        }
        if (now && !cJSON_IsBool(now)) {
                return control_call_error(call, VARLINK_ERROR_INVALID_PARAMETER,
                                          error_params("parameter", "now", NULL, NULL));
        }
        r = supervisor_switch(m->supervisor, model->valuestring, cJSON_IsTrue(now) ? SWITCH_NOW : 0,
                              &switch_callbacks, call, &reason);
        if (r < 0) {
                return reply_refused(call, r, model->valuestring, reason);
        }
        return 0;
}

/* The "model" parameter, or an error reply (then NULL). */
static const char *param_model(ControlCall *call, cJSON *params)
{
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(params, "model");

        if (!cJSON_IsString(model) || isempty(model->valuestring)) {
                (void) control_call_error(call, VARLINK_ERROR_INVALID_PARAMETER,
                                          error_params("parameter", "model", NULL, NULL));
                return NULL;
        }
        return model->valuestring;
}

static int method_plan(ControlCall *call, cJSON *params, void *userdata)
{
        Manager *m = userdata;
        const char *model = param_model(call, params);
        _cleanup_strv_free_ char **evict = NULL;
        uint64_t on[GPU_DEVICES_MAX];
        char *why = NULL;
        cJSON *p;
        int r;

        if (!model) {
                return 0;
        }
        r = supervisor_plan_preview(m->supervisor, model, on, &evict, &why);
        if (r < 0) {
                return reply_refused(call, r, model, why);
        }
        p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "model", model);
        cJSON_AddItemToObject(p, "gpus", gpus_json(on));
        cJSON_AddItemToObject(p, "evict", json_strv(evict));
        cJSON_AddStringToObject(p, "why", why ? why : "");
        free(why);
        return control_call_reply(call, p, false);
}

/* Load and Unload: a model's name, then the supervisor; Load replies when it is done, Unload
 * at once. */
static int method_load_or_unload(ControlCall *call, cJSON *params, Manager *m, bool load)
{
        const char *model = param_model(call, params);
        Child *c = model ? supervisor_child(m->supervisor, model) : NULL;
        bool running = c && serving_state_resident(supervisor_serving(m->supervisor, model, NULL));
        char *reason = NULL;
        cJSON *p;
        int r;

        if (!model) {
                return 0;
        }
        r = load ? supervisor_switch(m->supervisor, model, SWITCH_LOAD_ONLY, &switch_callbacks,
                                     call, &reason)
                 : supervisor_unload(m->supervisor, model, &reason);
        if (r < 0) {
                return reply_refused(call, r, model, reason);
        }
        free(reason);
        if (load) {
                return 0;
        }
        p = error_params("model", child_name(c), NULL, NULL);
        cJSON_AddBoolToObject(p, "changed", running); /* false: it was not loaded */
        return control_call_reply(call, p, false);
}

static int method_load(ControlCall *call, cJSON *params, void *userdata)
{
        return method_load_or_unload(call, params, userdata, true);
}

static int method_unload(ControlCall *call, cJSON *params, void *userdata)
{
        return method_load_or_unload(call, params, userdata, false);
}

static int method_start(ControlCall *call, cJSON *params, void *userdata)
{
        Manager *m = userdata;
        char *reason = NULL;
        int r;

        r = supervisor_start_active(m->supervisor, &switch_callbacks, call, &reason);
        if (r < 0) {
                return reply_refused(call, r, supervisor_active(m->supervisor), reason);
        }
        return 0;
}

static int method_stop(ControlCall *call, cJSON *params, void *userdata)
{
        Manager *m = userdata;
        char *reason = NULL;
        int r;

        r = supervisor_switch(m->supervisor, NULL, 0, &switch_callbacks, call, &reason);
        if (r < 0) {
                return reply_refused(call, r, NULL, reason);
        }
        return 0;
}

static int method_reload(ControlCall *call, cJSON *params, void *userdata)
{
        Manager *m = userdata;
        _cleanup_strv_free_ char **errors = NULL;
        cJSON *p;
        int r;

        r = manager_reload(m, &errors);
        if (r == -EBUSY) {
                return control_call_error(
                        call, CONTROL_ERROR_BUSY,
                        error_params("reason", "a switch is in progress", NULL, NULL));
        }
        if (r < 0) {
                p = cJSON_CreateObject();
                cJSON_AddStringToObject(p, "config", m->config_path);
                cJSON_AddItemToObject(p, "errors", json_strv(errors));
                return control_call_error(call, CONTROL_ERROR_CONFIG_INVALID, p);
        }
        p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "config", m->config_path);
        return control_call_reply(call, p, false);
}

static int method_clear_prompt_cache(ControlCall *call, cJSON *params, void *userdata)
{
        Manager *m = userdata;
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(params, "model");
        const ModelConfig *mc = NULL;
        cJSON *p;
        int n;

        if (model && !cJSON_IsNull(model)) {
                if (!cJSON_IsString(model) || isempty(model->valuestring)) {
                        return control_call_error(call, VARLINK_ERROR_INVALID_PARAMETER,
                                                  error_params("parameter", "model", NULL, NULL));
                }
                mc = config_find_model(supervisor_config(m->supervisor), model->valuestring);
                if (!mc) {
                        char *reason;

                        if (asprintf(&reason, "no model '%s'", model->valuestring) < 0) {
                                reason = NULL;
                        }
                        return reply_refused(call, -ENOENT, model->valuestring, reason);
                }
        }
        n = supervisor_prompt_cache_clear(m->supervisor, mc ? mc->name : NULL);
        p = cJSON_CreateObject();
        if (mc) {
                cJSON_AddStringToObject(p, "model", mc->name);
        } else {
                cJSON_AddNullToObject(p, "model");
        }
        cJSON_AddNumberToObject(p, "removed", n);
        return control_call_reply(call, p, false);
}

static int method_get_info(ControlCall *call, cJSON *params, void *userdata)
{
        cJSON *p = cJSON_CreateObject();
        cJSON *i = cJSON_AddArrayToObject(p, "interfaces");

        cJSON_AddStringToObject(p, "vendor", "llmd");
        cJSON_AddStringToObject(p, "product", "llmd");
        cJSON_AddStringToObject(p, "version", LLMD_VERSION);
        cJSON_AddStringToObject(p, "url", "");
        cJSON_AddItemToArray(i, cJSON_CreateString("org.varlink.service"));
        cJSON_AddItemToArray(i, cJSON_CreateString(CONTROL_INTERFACE));
        return control_call_reply(call, p, false);
}

/* clang-format off */
const control_handler_t manager_control_handlers[_CONTROL_METHOD_MAX] = {
        [CONTROL_METHOD_ACTIVITY] = method_activity,
        [CONTROL_METHOD_CLEAR_PROMPT_CACHE] = method_clear_prompt_cache,
        [CONTROL_METHOD_GET_INFO] = method_get_info,
        [CONTROL_METHOD_LIST] = method_list,
        [CONTROL_METHOD_LOAD] = method_load,
        [CONTROL_METHOD_PLAN] = method_plan,
        [CONTROL_METHOD_RELOAD] = method_reload,
        [CONTROL_METHOD_START] = method_start,
        [CONTROL_METHOD_STATUS] = method_status,
        [CONTROL_METHOD_STOP] = method_stop,
        [CONTROL_METHOD_SWITCH] = method_switch,
        [CONTROL_METHOD_UNLOAD] = method_unload,
};
/* clang-format on */
