/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "sim-apis.h"
#include "sim-embd.h"
#include "sim-http.h"
#include "sim-infer.h"
#include "sim-json.h"
#include "sim-lockstep.h"
#include "sim-slots.h"
#include "sim-tokens.h"

static const char route_not_found_body[] =
        "{\"error\":{\"message\":\"File Not Found\",\"type\":\"not_found_error\",\"code\":404}}";

static enum MHD_Result route_health(struct http_request *req)
{
        int64_t hang = sim_config.health_hang_after_ms;

        /* LLAMA_SIM_HEALTH_HANG_AFTER_MS: the request is read and never answered, as by a
         * server whose HTTP thread is stuck; the process and other paths stay alive */
        if (hang >= 0 &&
            now_usec(CLOCK_MONOTONIC) >= sim_state.ready_usec + (uint64_t) hang * USEC_PER_MSEC) {
                (void) http_wait_client_gone(req, -1);
                return MHD_NO;
        }
        return http_reply_json(req, 200, "{\"status\":\"ok\"}");
}

/*
 * POST /sim/hold exists only in the simulator, for tests that need "a request in progress": it
 * answers 200 {} after LLAMA_SIM_HOLD_MS, or never while the client stays.
 */
static enum MHD_Result route_sim_hold(struct http_request *req)
{
        if (http_wait_client_gone(req, sim_config.hold_ms)) {
                return MHD_NO;
        }
        return http_reply_json(req, 200, "{}");
}

/* Both the ollama-style "models" and the OpenAI "data" list, as llama-server lists them. */
static enum MHD_Result route_models(struct http_request *req)
{
        const char *name = infer_model_name();
        const char *capability = sim_config.embedding ? "embedding" : "completion";
        cJSON *root = cJSON_CreateObject();
        cJSON *models = cJSON_AddArrayToObject(root, "models");
        cJSON *m = cJSON_CreateObject(), *details, *data, *d, *meta, *aliases, *arch;
        static const char *const text[] = { "text" };
        struct stat st;
        enum MHD_Result r;
        char *body;

        cJSON_AddStringToObject(m, "name", name);
        cJSON_AddStringToObject(m, "model", name);
        cJSON_AddStringToObject(m, "modified_at", "");
        cJSON_AddStringToObject(m, "size", "");
        cJSON_AddStringToObject(m, "digest", "");
        cJSON_AddStringToObject(m, "type", "model");
        cJSON_AddStringToObject(m, "description", "");
        cJSON_AddItemToObject(m, "tags", cJSON_CreateStringArray((const char *[]) { "" }, 1));
        cJSON_AddItemToObject(m, "capabilities",
                              cJSON_CreateStringArray((const char *[]) { capability }, 1));
        cJSON_AddStringToObject(m, "parameters", "");
        details = cJSON_AddObjectToObject(m, "details");
        cJSON_AddStringToObject(details, "parent_model", "");
        cJSON_AddStringToObject(details, "format", "gguf");
        cJSON_AddStringToObject(details, "family", "");
        cJSON_AddItemToObject(details, "families",
                              cJSON_CreateStringArray((const char *[]) { "" }, 1));
        cJSON_AddStringToObject(details, "parameter_size", "");
        cJSON_AddStringToObject(details, "quantization_level", "");
        cJSON_AddItemToArray(models, m);

        cJSON_AddStringToObject(root, "object", "list");
        data = cJSON_AddArrayToObject(root, "data");
        d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "id", name);
        aliases = cJSON_AddArrayToObject(d, "aliases");
        cJSON_AddItemToArray(aliases, cJSON_CreateString(name));
        cJSON_AddArrayToObject(d, "tags");
        cJSON_AddStringToObject(d, "object", "model");
        cJSON_AddNumberToObject(d, "created", (double) time(NULL));
        cJSON_AddStringToObject(d, "owned_by", "llamacpp");
        arch = cJSON_AddObjectToObject(d, "architecture");
        cJSON_AddItemToObject(arch, "input_modalities", cJSON_CreateStringArray(text, 1));
        cJSON_AddItemToObject(arch, "output_modalities", cJSON_CreateStringArray(text, 1));
        meta = cJSON_AddObjectToObject(d, "meta");
        cJSON_AddNumberToObject(meta, "vocab_type", 2);
        cJSON_AddNumberToObject(meta, "n_vocab", 50261);
        cJSON_AddNumberToObject(meta, "n_ctx", infer_n_ctx());
        cJSON_AddNumberToObject(meta, "n_ctx_train", 4096);
        cJSON_AddNumberToObject(meta, "n_embd", infer_n_embd());
        cJSON_AddNumberToObject(meta, "n_params", 6607125);
        cJSON_AddNumberToObject(meta, "size",
                                stat(sim_config.model, &st) == 0 ? (double) st.st_size : 0.0);
        cJSON_AddStringToObject(meta, "ftype", "F16");
        cJSON_AddItemToArray(data, d);

        body = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        if (!body) {
                return MHD_NO;
        }
        r = http_reply_json(req, 200, body);
        free(body);
        return r;
}

/* GET /: llama-server without its web UI has nothing there, but "/" is public. */
static enum MHD_Result route_root(struct http_request *req)
{
        return http_reply_json(req, 404, route_not_found_body);
}

/*
 * OPTIONS on any path, before the loading check and the API key: llama-server's pre-routing
 * handler answers every CORS preflight itself, 200 with an empty text/html body.
 */
static enum MHD_Result route_options(struct http_request *req)
{
        /* clang-format off */
        static const char *const headers[] = {
                "Access-Control-Allow-Credentials", "true",
                "Access-Control-Allow-Methods",     "GET, POST, DELETE, OPTIONS",
                "Access-Control-Allow-Headers",     "*",
                NULL,
        };
        /* clang-format on */

        return http_reply_extra(req, 200, "text/html", "", headers);
}

/* The recorded model's chat template, ChatML. */
static const char route_chat_template[] =
        "{%- for message in messages -%}{{- '<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n' -}}{%- endfor -%}{%- if add_generation_prompt "
        "-%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}";

static char route_media_marker[64];

/* GET /props: get_res_props(), key for key. */
static enum MHD_Result route_props(struct http_request *req)
{
        static const char *const caps_true[] = { "supports_string_content",
                                                 "supports_system_role" };
        static const char *const caps[] = {
                "supports_object_arguments",   "supports_parallel_tool_calls",
                "supports_preserve_reasoning", "supports_reasoning_effort",
                "supports_string_content",     "supports_system_role",
                "supports_tool_calls",         "supports_tools",
                "supports_typed_content",
        };
        cJSON *root = cJSON_CreateObject(), *dgs, *mod, *c;
        struct infer_params params;

        if (!route_media_marker[0]) {
                /* get_media_marker(): random once per process */
                static const char alphabet[] =
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                unsigned char rnd[32];
                char m[64] = "<__media_";
                size_t n = strlen(m);

                if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd)) {
                        memset(rnd, 7, sizeof(rnd));
                }
                for (size_t i = 0; i < sizeof(rnd); i++) {
                        m[n++] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
                }
                memcpy(m + n, "__>", 4);
                memcpy(route_media_marker, m, sizeof(route_media_marker));
        }

        infer_default_params(&params);
        dgs = cJSON_AddObjectToObject(root, "default_generation_settings");
        cJSON_AddItemToObject(dgs, "params", infer_params_json(&params, false));
        cJSON_AddNumberToObject(dgs, "n_ctx", infer_n_ctx_slot());
        cJSON_AddNumberToObject(root, "total_slots", infer_n_slots());
        cJSON_AddStringToObject(root, "model_alias", infer_model_name());
        cJSON_AddStringToObject(root, "model_ftype", "F16");
        cJSON_AddStringToObject(root, "model_path", sim_config.model);
        mod = cJSON_AddObjectToObject(root, "modalities");
        cJSON_AddFalseToObject(mod, "vision");
        cJSON_AddFalseToObject(mod, "video");
        cJSON_AddFalseToObject(mod, "audio");
        cJSON_AddStringToObject(root, "media_marker", route_media_marker);
        cJSON_AddBoolToObject(root, "endpoint_slots", sim_config.endpoint_slots);
        cJSON_AddBoolToObject(root, "endpoint_props", sim_config.endpoint_props);
        cJSON_AddBoolToObject(root, "endpoint_metrics", sim_config.endpoint_metrics);
        cJSON_AddBoolToObject(root, "ui", sim_config.ui);
        cJSON_AddObjectToObject(root, "ui_settings");
        cJSON_AddStringToObject(root, "chat_template", route_chat_template);
        c = cJSON_AddObjectToObject(root, "chat_template_caps");
        for (size_t i = 0; i < ELEMENTSOF(caps); i++) {
                bool on = streq(caps[i], caps_true[0]) || streq(caps[i], caps_true[1]);

                cJSON_AddBoolToObject(c, caps[i], on);
        }
        cJSON_AddStringToObject(root, "bos_token", "<|endoftext|>");
        cJSON_AddStringToObject(root, "eos_token", "<|im_end|>");
        cJSON_AddStringToObject(root, "build_info", SIM_FINGERPRINT);
        cJSON_AddFalseToObject(root, "is_sleeping");
        cJSON_AddFalseToObject(root, "cors_proxy_enabled");
        return infer_reply_json(req, root);
}

/* POST /props: only with --props, and then it changes nothing. */
static enum MHD_Result route_props_post(struct http_request *req)
{
        if (!sim_config.endpoint_props) {
                return infer_reply_error(req, 501,
                                         "This server does not support changing global "
                                         "properties. Start it with `--props`",
                                         "not_supported_error");
        }
        return http_reply_json(req, 200, "{\"success\":true}");
}

/* GET /slots: on unless --no-slots; ?fail_on_no_slot=1 makes "all busy" a 503. */
static enum MHD_Result route_slots(struct http_request *req)
{
        const char *fail = MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND,
                                                       "fail_on_no_slot");
        cJSON *slots, *s;
        bool idle = false;

        if (!sim_config.endpoint_slots) {
                return infer_reply_error(req, 501,
                                         "This server does not support slots endpoint. Start it "
                                         "with `--slots`",
                                         "not_supported_error");
        }
        slots = slots_json();
        cJSON_ArrayForEach(s, slots) {
                idle = idle || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(s, "is_processing"));
        }
        if (fail && *fail && !idle) {
                cJSON_Delete(slots);
                return infer_reply_error(req, 503, "no slot available", "unavailable_error");
        }
        return infer_reply_json(req, slots);
}

/*
 * POST /slots/ID?action=save|restore|erase, as llama-server answers them: save and restore need
 * --slot-save-path and a plain file name in the body's "filename". The LLAMA_SIM_SLOT_* knobs
 * make a save fail (as on a full disk) or take long, and a restore fail.
 */
static enum MHD_Result route_slot_action(struct http_request *req)
{
        const char *action =
                MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, "action");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(req->json, "filename");
        const char *id_text = req->path + strlen("/slots/");
        char *end, *path = NULL, body[256];
        long id = strtol(id_text, &end, 10), bytes = 0;
        bool save = action && streq(action, "save");
        int n;

        if (!sim_config.endpoint_slots) {
                return infer_reply_error(req, 501,
                                         "This server does not support slots endpoint. Start it "
                                         "with `--slots`",
                                         "not_supported_error");
        }
        if (end == id_text || *end != '\0' || id < 0 || id > 100000) {
                return infer_reply_error(req, 400, "Invalid slot ID", "invalid_request_error");
        }
        if (action && streq(action, "erase")) {
                n = slots_erase((int) id);
                if (n < 0) {
                        return infer_reply_error(req, 400, "Invalid slot ID",
                                                 "invalid_request_error");
                }
                snprintf(body, sizeof(body), "{\"id_slot\":%ld,\"n_erased\":%d}", id, n);
                return http_reply_json(req, 200, body);
        }
        if (!action || (!save && !streq(action, "restore"))) {
                return infer_reply_error(req, 400, "Invalid action", "invalid_request_error");
        }
        if (!sim_config.slot_save_path) {
                return infer_reply_error(req, 501,
                                         "This server does not support slots action. Start it "
                                         "with `--slot-save-path`",
                                         "not_supported_error");
        }
        if (!cJSON_IsString(fn) || !*fn->valuestring || strchr(fn->valuestring, '/') ||
            streq(fn->valuestring, ".") || streq(fn->valuestring, "..")) {
                return infer_reply_error(req, 400, "Invalid filename", "invalid_request_error");
        }
        if (asprintf(&path, "%s/%s", sim_config.slot_save_path, fn->valuestring) < 0) {
                return MHD_NO;
        }
        if (save && sim_config.slot_save_ms > 0 &&
            http_wait_client_gone(req, sim_config.slot_save_ms)) {
                free(path);
                return MHD_NO;
        }
        if (save) {
                n = sim_config.slot_save_error ? -ENOSPC : slots_save((int) id, path, &bytes);
        } else {
                n = sim_config.slot_restore_error ? -EBADMSG
                                                  : slots_restore((int) id, path, &bytes);
        }
        free(path);
        if (n < 0 && save) {
                return infer_reply_error(req, 500, "Failed to save slot", "server_error");
        }
        if (n < 0) {
                return infer_reply_error(req, 400,
                                         "Unable to restore slot: No available space in KV cache "
                                         "or invalid slot save file",
                                         "invalid_request_error");
        }
        if (save) {
                snprintf(body, sizeof(body),
                         "{\"id_slot\":%ld,\"filename\":\"%s\",\"n_saved\":%d,\"n_written\":%ld,"
                         "\"timings\":{\"save_ms\":0.5}}",
                         id, fn->valuestring, n, bytes);
        } else {
                snprintf(body, sizeof(body),
                         "{\"id_slot\":%ld,\"filename\":\"%s\",\"n_restored\":%d,\"n_read\":%ld,"
                         "\"timings\":{\"restore_ms\":0.5}}",
                         id, fn->valuestring, n, bytes);
        }
        return http_reply_json(req, 200, body);
}

/* GET /metrics: Prometheus text with --metrics, else 501. */
static enum MHD_Result route_metrics(struct http_request *req)
{
        char start[32];
        const char *headers[] = { "Process-Start-Time-Unix", start, NULL };
        enum MHD_Result r;
        char *text;

        if (!sim_config.endpoint_metrics) {
                return infer_reply_error(req, 501,
                                         "This server does not support metrics endpoint. Start "
                                         "it with `--metrics`",
                                         "not_supported_error");
        }
        /* LLAMA_SIM_METRICS_MS: a slow scrape (the answer after that long) */
        if (sim_config.metrics_ms > 0 && http_wait_client_gone(req, sim_config.metrics_ms)) {
                return MHD_NO;
        }
        text = slots_metrics_text();
        if (!text) {
                return MHD_NO;
        }
        /* LLAMA_SIM_METRICS_EXTRA: a file's text after the sim's own (a hostile child's) */
        if (sim_config.metrics_extra) {
                FILE *f = fopen(sim_config.metrics_extra, "re");
                size_t len = strlen(text), n;
                char buf[65536];

                while (f && (n = fread(buf, 1, sizeof(buf), f)) > 0) {
                        char *t = realloc(text, len + n + 1);

                        if (!t) {
                                break;
                        }
                        text = t;
                        memcpy(text + len, buf, n);
                        len += n;
                        text[len] = '\0';
                }
                if (f) {
                        fclose(f);
                }
        }
        snprintf(start, sizeof(start), "%lld", sim_state.start_time);
        r = http_reply_extra(req, 200, "text/plain; version=0.0.4", text, headers);
        free(text);
        return r;
}

/*
 * POST /sim/step exists only in the simulator, for tests (LLAMA_SIM_LOCKSTEP=1): every open
 * stream may send K more SSE events, K from the body's "n" (default 1). The answer says how
 * many streams that reached: {"released": N}.
 */
static enum MHD_Result route_sim_step(struct http_request *req)
{
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(req->json, "n");
        char body[64];
        unsigned released;

        if (req->body_len > 0 && !req->json) {
                return infer_reply_error(req, 400, "llama-sim: /sim/step takes {\"n\": K}",
                                         "invalid_request_error");
        }
        if (n && (!cJSON_IsNumber(n) || n->valuedouble < 0)) {
                return infer_reply_error(req, 400, "llama-sim: \"n\" must be a count",
                                         "invalid_request_error");
        }
        /* more than a stream could ever use, and no overflow in the cast */
        released = lockstep_release(!n                      ? 1
                                    : n->valuedouble > 1e12 ? (uint64_t) 1e12
                                                            : (uint64_t) n->valuedouble);
        snprintf(body, sizeof(body), "{\"released\":%u}", released);
        return http_reply_json(req, 200, body);
}

/*
 * llama-server's endpoints that the simulator answers; everything else is its 404. Adding an
 * endpoint is adding a row. public_path: answered without the API key, as llama-server does;
 * while_loading: answered before the model is loaded, as only OPTIONS is.
 */
const struct http_route http_routes[] = {
        { "OPTIONS", "*", route_options, true, true },
        { "GET", "/", route_root, true, false },
        { "GET", "/health", route_health, true, false },
        { "GET", "/v1/health", route_health, true, false },
        { "GET", "/models", route_models, true, false },
        { "GET", "/v1/models", route_models, true, false },
        { "GET", "/props", route_props, false, false },
        { "POST", "/props", route_props_post, false, false },
        { "GET", "/slots", route_slots, false, false },
        { "POST", "/slots/*", route_slot_action, false, false },
        { "GET", "/metrics", route_metrics, false, false },
        { "POST", "/completion", infer_completion, false, false },
        { "POST", "/completions", infer_completion, false, false },
        { "POST", "/v1/completions", infer_oai_completion, false, false },
        { "POST", "/chat/completions", infer_chat, false, false },
        { "POST", "/v1/chat/completions", infer_chat, false, false },
        /* the Messages API only under /v1; the Responses API under both */
        { "POST", "/v1/messages", apis_messages, false, false },
        { "POST", "/v1/messages/count_tokens", apis_count_tokens, false, false },
        { "POST", "/responses", apis_responses, false, false },
        { "POST", "/v1/responses", apis_responses, false, false },
        { "POST", "/infill", infer_infill, false, false },
        { "POST", "/embedding", embd_native, false, false },
        { "POST", "/embeddings", embd_native, false, false },
        { "POST", "/v1/embeddings", embd_oai, false, false },
        { "POST", "/rerank", embd_rerank, false, false },
        { "POST", "/reranking", embd_rerank, false, false },
        { "POST", "/v1/rerank", embd_rerank, false, false },
        { "POST", "/v1/reranking", embd_rerank, false, false },
        { "POST", "/tokenize", tokens_tokenize, false, false },
        { "POST", "/detokenize", tokens_detokenize, false, false },
        { "POST", "/apply-template", tokens_apply_template, false, false },
        /* the simulator's own, for tests only */
        { "POST", "/sim/hold", route_sim_hold, true, false },
        { "POST", "/sim/step", route_sim_step, true, false },
};

const size_t http_routes_count = ELEMENTSOF(http_routes);
