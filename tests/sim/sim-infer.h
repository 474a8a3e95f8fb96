/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

#include "sim-http.h"

/*
 * The inference endpoints, answering in the shapes recorded from llama-server b10470: a fixed
 * sentence, one token every LLAMA_SIM_TOKEN_MS (or one SSE event per POST /sim/step with
 * LLAMA_SIM_LOCKSTEP), n_predict/max_tokens tokens (default: -n, else 16), finish_reason
 * "length". Streams are SSE ("data: {...}\n\n"); the OpenAI ones end with "data: [DONE]", the
 * native /completion and /infill ones do not.
 *
 * Thinking (chat only): with --reasoning-format deepseek, or "reasoning_format": "deepseek" in
 * the request, the answer starts with reasoning_content tokens (--reasoning-budget N: N - 1 of
 * them, else half of the tokens), then one token that shows nowhere (the end of the thinking),
 * then content.
 *
 * Faults mid-generation (LLAMA_SIM_{EXIT,STALL,ERROR}_AFTER_TOKENS=N), counted in tokens sent:
 * after N of them the process exits, or the response goes silent until the client leaves, or a
 * stream gets llama-server's `data: {"error":...}` event and ends without [DONE] (a non-streamed
 * request, or N = 0, gets the error as an HTTP 500 instead, as llama-server sends a first error).
 *
 * After the first SIGTERM llama-server stops generating but keeps the connection until the
 * client goes; so does this.
 */

/* The sampling settings a task reports in /slots and /props ("params"). */
struct infer_params {
        double temperature;
        int n_predict;                  /* -1: unlimited */
        bool stream;
        const char *reasoning_format;   /* a static string */
};

enum MHD_Result infer_completion(struct http_request *req);     /* POST /completion(s) */
enum MHD_Result infer_oai_completion(struct http_request *req); /* POST /v1/completions */
enum MHD_Result infer_chat(struct http_request *req);           /* POST /v1/chat/completions */
enum MHD_Result infer_infill(struct http_request *req);         /* POST /infill */

/* The id the model is served under: the first --alias, else the -m path. */
const char *infer_model_name(void);
int infer_n_ctx(void);
int infer_n_ctx_slot(void);
int infer_n_slots(void);
int infer_n_embd(void);

/* task_params::to_json(): full for a completion's generation_settings, else the shorter form
 * of /props and /slots. */
cJSON *infer_params_json(const struct infer_params *p, bool full);
/* What /props reports as the server's defaults. */
void infer_default_params(struct infer_params *p);

/*
 * The request's body as JSON. When it is not, answers llama-server's 500 for a parse error and
 * returns NULL with *ret_result set. The tree belongs to the request.
 */
cJSON *infer_body(struct http_request *req, enum MHD_Result *ret_result);

/* {"error":{"code","message","type"}} with that status. infer_error() also logs it, as
 * llama-server's ex_wrapper does for what a handler throws; res->error() does not log. */
enum MHD_Result infer_error(struct http_request *req, int code, const char *message,
                            const char *type);
enum MHD_Result infer_reply_error(struct http_request *req, int code, const char *message,
                                  const char *type);
/* Answers with the JSON of o, which is freed. */
enum MHD_Result infer_reply_json(struct http_request *req, cJSON *o);
