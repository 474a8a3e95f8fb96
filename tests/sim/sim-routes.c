/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "sim-http.h"
#include "sim-infer.h"

static enum MHD_Result route_health(struct http_request *req)
{
        int64_t hang = sim_config.health_hang_after_ms;

        /* LLAMA_SIM_HEALTH_HANG_AFTER_MS: the request is read and never answered, as by a
         * server whose HTTP thread is stuck; the process and other paths stay alive */
        if (hang >= 0 && now_usec() >= sim_state.ready_usec + (uint64_t) hang * USEC_PER_MSEC) {
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
        cJSON *m = cJSON_CreateObject(), *details, *data, *d, *meta, *aliases;
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
        meta = cJSON_AddObjectToObject(d, "meta");
        cJSON_AddNumberToObject(meta, "vocab_type", 2);
        cJSON_AddNumberToObject(meta, "n_vocab", 50261);
        cJSON_AddNumberToObject(meta, "n_ctx", infer_n_ctx());
        cJSON_AddNumberToObject(meta, "n_ctx_train", 4096);
        cJSON_AddNumberToObject(meta, "n_embd", 64);
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

/*
 * llama-server's endpoints that the simulator answers; everything else is its 404. Adding an
 * endpoint is adding a row. public_path: answered without the API key, as llama-server does.
 */
const struct http_route http_routes[] = {
        { "GET", "/health", route_health, true },
        { "GET", "/v1/health", route_health, true },
        { "GET", "/models", route_models, true },
        { "GET", "/v1/models", route_models, true },
        { "POST", "/completion", infer_completion, false },
        { "POST", "/completions", infer_completion, false },
        { "POST", "/v1/completions", infer_oai_completion, false },
        { "POST", "/chat/completions", infer_chat, false },
        { "POST", "/v1/chat/completions", infer_chat, false },
        { "POST", "/sim/hold", route_sim_hold, true },
};

const size_t http_routes_count = ELEMENTSOF(http_routes);
