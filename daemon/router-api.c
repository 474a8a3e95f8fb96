/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>

#include "json-scan.h"
#include "router-api.h"
#include "strv.h"

const char *router_status_to_string(RouterStatus s)
{
        static const char *const names[_ROUTER_STATUS_MAX] = {
                [ROUTER_STATUS_UNLOADED] = "unloaded",
                [ROUTER_STATUS_LOADING] = "loading",
                [ROUTER_STATUS_LOADED] = "loaded",
        };
        return s >= 0 && s < _ROUTER_STATUS_MAX ? names[s] : NULL;
}

RouterStatus router_status_of(ServingState st)
{
        switch (st) {
        case SERVING_LOADING:
                return ROUTER_STATUS_LOADING;
        case SERVING_READY:
        case SERVING_DRAINING:
        case SERVING_SAVING:
        case SERVING_STOPPING:
                return ROUTER_STATUS_LOADED;
        case SERVING_ABSENT:
        case SERVING_FAILED:
        case _SERVING_STATE_MAX:
        case _SERVING_STATE_INVALID:
                break;
        }
        return ROUTER_STATUS_UNLOADED;
}

int router_exit_code(const Child *c, ServingState st)
{
        const char *why = child_reason(c), *n;

        if (st != SERVING_FAILED) {
                return 0;
        }
        n = why ? startswith(why, "exit status ") : NULL;
        return n && atoi(n) > 0 ? atoi(n) : 1;
}

/* The profile as the INI section a preset file would hold: the model and its flags. */
static char *router_preset(const ModelConfig *m)
{
        _cleanup_free_ char *t = NULL;
        char *p;

        if (asprintf(&t, "[%s]\nmodel = %s\n", m->name, m->model_path) < 0) {
                return NULL;
        }
        for (char **a = m->args; a && *a; a++) {
                const char *k = startswith(*a, "--") ?: startswith(*a, "-") ?: *a;
                bool value = a[1] && !startswith(a[1], "-");

                if (asprintf(&p, "%s%s = %s\n", t, k, value ? a[1] : "true") < 0) {
                        return NULL;
                }
                free(t);
                t = p;
                a += value;
        }
        return TAKE_PTR(t);
}

static cJSON *router_progress(double progress)
{
        cJSON *p = cJSON_CreateObject(), *stages = cJSON_AddArrayToObject(p, "stages");

        cJSON_AddItemToArray(stages, cJSON_CreateString("text_model"));
        cJSON_AddStringToObject(p, "current", "text_model");
        cJSON_AddNumberToObject(p, "value", progress);
        return p;
}

cJSON *router_api_status(Supervisor *s, Child *c)
{
        const ModelConfig *m = child_config(c);
        const Config *cfg = supervisor_config(s);
        const char *binary = cfg->llama_server ?: getenv("LLAMA_SERVER") ?: "llama-server";
        ServingState st = supervisor_serving(s, m->name, NULL);
        RouterStatus rs = router_status_of(st);
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *preset = router_preset(m), *cache_dir = child_cache_dir_next(c);
        cJSON *o = cJSON_CreateObject();

        cJSON_AddStringToObject(o, "value", router_status_to_string(rs));
        if (config_model_argv(m, binary, child_socket_path(c), cache_dir, &argv) >= 0) {
                cJSON_AddItemToObject(o, "args",
                                      cJSON_CreateStringArray((const char *const *) argv,
                                                              (int) strv_length(argv)));
        }
        if (preset) {
                cJSON_AddStringToObject(o, "preset", preset);
        }
        if (rs == ROUTER_STATUS_LOADING && child_load_progress(c) >= 0) {
                cJSON_AddItemToObject(o, "progress", router_progress(child_load_progress(c)));
        }
        if (st == SERVING_FAILED) {
                cJSON_AddBoolToObject(o, "failed", true);
                cJSON_AddNumberToObject(o, "exit_code", router_exit_code(c, st));
        }
        return o;
}

/* "tags" and "architecture", as the router lists them for a model and in its "loaded" event. */
static void router_add_kind(cJSON *e, const ModelConfig *m)
{
        cJSON *arch;

        cJSON_AddItemToObject(e, "tags", cJSON_CreateArray());
        arch = cJSON_AddObjectToObject(e, "architecture");
        cJSON_AddItemToObject(arch, "input_modalities",
                              cJSON_CreateStringArray((const char *const[]) { "text" }, 1));
        cJSON_AddItemToObject(
                arch, "output_modalities",
                cJSON_CreateStringArray(
                        (const char *const[]) { m->embeddings ? "embedding" : "text" }, 1));
}

void router_api_extend_entry(cJSON *e, Supervisor *s, Child *c)
{
        const cJSON *train = cJSON_GetObjectItemCaseSensitive(child_meta(c), "n_ctx_train");

        cJSON_AddItemToObject(e, "status", router_api_status(s, c));
        router_add_kind(e, child_config(c));
        cJSON_AddStringToObject(e, "source", "preset");
        cJSON_AddBoolToObject(e, "can_remove", false);
        /* The router reads it from the file; llmd has it from the model's meta, while loaded. */
        if (cJSON_IsNumber(train)) {
                cJSON_AddNumberToObject(e, "context_length", train->valuedouble);
        }
}

char *router_api_event(Supervisor *s, Child *c, RouterStatus old, RouterStatus now, double progress)
{
        const ModelConfig *m = child_config(c);
        ServingState st = supervisor_serving(s, m->name, NULL);
        cJSON *o = cJSON_CreateObject(), *d;
        _cleanup_free_ char *first = NULL, *text = NULL;
        char *out;

        /* As the router does: "model_status" when a load begins, "status_change" after. */
        if (now == ROUTER_STATUS_LOADING && old != ROUTER_STATUS_LOADING) {
                cJSON *n = cJSON_CreateString(m->name);
                _cleanup_free_ char *name = cJSON_PrintUnformatted(n);

                cJSON_Delete(n);
                if (!name ||
                    asprintf(
                            &first,
                            "data: {\"model\":%s,\"event\":\"model_status\",\"data\":{\"status\":\"loading\"}}\n\n",
                            name) < 0) {
                        cJSON_Delete(o);
                        return NULL;
                }
        }
        cJSON_AddStringToObject(o, "model", m->name);
        cJSON_AddStringToObject(o, "event", "status_change");
        d = cJSON_AddObjectToObject(o, "data");
        cJSON_AddStringToObject(d, "status", router_status_to_string(now));
        if (now == ROUTER_STATUS_UNLOADED) {
                cJSON_AddNumberToObject(d, "exit_code", router_exit_code(c, st));
        }
        if (now == ROUTER_STATUS_LOADING) {
                cJSON_AddItemToObject(d, "progress", router_progress(progress >= 0 ? progress : 0));
        }
        if (now == ROUTER_STATUS_LOADED && old != ROUTER_STATUS_LOADED) {
                cJSON *info = cJSON_AddObjectToObject(d, "info");
                const struct cJSON *meta = child_meta(c);

                cJSON_AddStringToObject(info, "id", m->name);
                cJSON *aliases = cJSON_AddArrayToObject(info, "aliases");

                cJSON_AddItemToArray(aliases, cJSON_CreateString(m->name));
                STRV_FOREACH(a, m->aliases) {
                        cJSON_AddItemToArray(aliases, cJSON_CreateString(*a));
                }
                cJSON_AddStringToObject(info, "object", "model");
                router_add_kind(info, m);
                cJSON_AddNumberToObject(info, "created", 0);
                cJSON_AddStringToObject(info, "owned_by", "llmd");
                if (meta) {
                        cJSON_AddItemToObject(info, "meta", cJSON_Duplicate(meta, true));
                }
        }
        text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!text || asprintf(&out, "%sdata: %s\n\n", first ?: "", text) < 0) {
                return NULL;
        }
        return out;
}

static char *router_error(unsigned status, const char *type, const char *message)
{
        cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
        char *t;

        cJSON_AddNumberToObject(e, "code", status);
        cJSON_AddStringToObject(e, "message", message);
        cJSON_AddStringToObject(e, "type", type);
        t = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return t;
}

static unsigned router_refuse(RouterAnswer *ret, unsigned status, const char *type,
                              const char *message)
{
        ret->status = status;
        ret->type = type;
        ret->message = strdup(message);
        ret->body = router_error(status, type, message);
        return status;
}

unsigned router_api_action(Supervisor *s, RouterAction a, bool router, const char *body, size_t len,
                           RouterAnswer *ret)
{
        _cleanup_free_ char *reason = NULL, *msg = NULL;
        const ModelConfig *m;
        ServingState st;
        bool load = a == ROUTER_ACTION_LOAD;
        const char *type = "invalid_request_error";
        JsonScan js;
        int r;

        *ret = (RouterAnswer) {};
        /* Read as a completion's body is: a "model" with a NUL or given twice is refused. */
        if (json_scan_request(body ?: "", len, &js) < 0) {
                if (asprintf(&msg, "invalid JSON in the request body at byte %zu: %s",
                             js.error_offset, js.error) < 0) {
                        msg = NULL;
                }
                return router_refuse(ret, 400, type, msg ?: "invalid JSON");
        }
        ret->model = TAKE_PTR(js.model);
        json_scan_done(&js);
        if (isempty(ret->model)) {
                return router_refuse(ret, 400, type, "\"model\" is missing or not a string");
        }
        m = config_find_model(supervisor_config(s), ret->model);
        if (!m) {
                if (asprintf(&msg, "The model `%s` does not exist", ret->model) < 0) {
                        msg = NULL;
                }
                return router_refuse(ret, 404, "not_found_error", msg ?: "model is not found");
        }
        st = supervisor_serving(s, m->name, NULL);
        /* The router's answers for a model already so: 400, "already running", "not running". */
        if (router && load && (st == SERVING_LOADING || st == SERVING_READY)) {
                return router_refuse(ret, 400, type, "model is already running");
        }
        if (router && a == ROUTER_ACTION_UNLOAD && !serving_state_running(st)) {
                return router_refuse(ret, 400, type, "model is not running");
        }
        r = a == ROUTER_ACTION_UNLOAD ? supervisor_unload(s, m->name, &reason)
                                      : supervisor_switch(s, m->name, load ? SWITCH_LOAD_ONLY : 0,
                                                          NULL, NULL, &reason);
        if (r >= 0) {
                ret->status = 200;
                ret->body = strdup("{\"success\":true}");
                return 200;
        }
        switch (r) {
        case -EBUSY:
                return router_refuse(ret, 409, "conflict_error", reason ?: strerror(-r));
        case -ENOSPC:
        case -E2BIG:
                return router_refuse(ret, 507, "insufficient_storage_error",
                                     reason ?: strerror(-r));
        case -ENOENT:
                return router_refuse(ret, 404, "not_found_error", reason ?: strerror(-r));
        case -ESHUTDOWN:
                return router_refuse(ret, 503, "unavailable_error", reason ?: strerror(-r));
        default:
                return router_refuse(ret, 400, type, reason ?: strerror(-r));
        }
}

void router_answer_done(RouterAnswer *a)
{
        free(a->body);
        free(a->message);
        free(a->model);
        *a = (RouterAnswer) {};
}
