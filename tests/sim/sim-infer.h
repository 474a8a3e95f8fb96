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
 * The Anthropic Messages and OpenAI Responses APIs (sim-apis.c) run the same jobs; their
 * streams have named events and no [DONE].
 *
 * Thinking (chat, Messages, Responses): with --reasoning-format deepseek, or "reasoning_format":
 * "deepseek" in the request, the answer starts with reasoning_content tokens (--reasoning-budget
 * N: N - 1 of them, else half of the tokens), then one token that shows nowhere (the end of the
 * thinking), then content.
 *
 * Faults mid-generation (LLAMA_SIM_{EXIT,STALL,ERROR}_AFTER_TOKENS=N), counted in tokens sent:
 * after N of them the process exits, or the response goes silent until the client leaves, or a
 * stream gets llama-server's error event (`data: {"error":...}`; the Messages API's `event:
 * error`) and ends without [DONE] (a non-streamed request, or N = 0, gets the error as an HTTP
 * 500 instead, as llama-server sends a first error).
 *
 * After the first SIGTERM llama-server stops generating but keeps the connection until the
 * client goes; so does this.
 */

/* The sampling settings a task reports in /slots and /props ("params"). */
struct infer_params {
        double temperature;
        int n_predict; /* -1: unlimited */
        bool stream;
        const char *reasoning_format; /* a static string */
};

/* The APIs a generation answers in. */
enum infer_api {
        INFER_NATIVE,         /* /completion, /infill */
        INFER_OAI_COMPLETION, /* /v1/completions */
        INFER_OAI_CHAT,       /* /v1/chat/completions */
        INFER_ANTHROPIC,      /* /v1/messages (sim-apis.c) */
        INFER_OAI_RESP,       /* /v1/responses (sim-apis.c) */
};

/* What a generated token is, in a thinking answer. */
enum infer_kind {
        INFER_CONTENT,
        INFER_REASONING,
        INFER_HIDDEN, /* the end of the thinking: generated, shown nowhere */
};

/* The events of a stream, in order; each API skips the ones it does not send. */
enum infer_step {
        INFER_STEP_ROLE,
        INFER_STEP_TOKENS,
        INFER_STEP_FINAL,
        INFER_STEP_USAGE,
        INFER_STEP_DONE,
        INFER_STEP_ERROR, /* LLAMA_SIM_ERROR_AFTER_TOKENS: the last event */
        INFER_STEP_END,
};

/* SSE events made at once (one token's, or the end's), sent one at a time. */
#define INFER_QUEUE_MAX 8

struct infer_event {
        char *sse;  /* "event: ...\ndata: ...\n\n" or "data: ...\n\n" */
        bool token; /* carries a generated token: counted in tokens_sent */
};

/* One generation: what a handler asked for, and what has been made so far. */
struct infer_job {
        enum infer_api api;
        struct http_request *req; /* valid while libmicrohttpd calls the reader */
        bool stream;
        bool include_usage;
        int n_predict;
        int n_prompt;
        int n_decoded;
        int slot;       /* the slot in the logs and answers */
        bool slot_held; /* false: all slots were busy ("deferred") */
        bool acquired;  /* counted in /metrics until released */
        bool released;
        unsigned task;
        double temperature;
        const char *reasoning_format;
        bool think;
        int n_think;           /* reasoning tokens before the hidden one */
        struct canned *canned; /* LLAMA_SIM_CANNED's answer, or NULL */
        char id[48];
        long long created;
        char *prompt;
        char *text; /* the content so far */
        size_t text_len;
        char *reasoning; /* the reasoning_content so far */
        size_t reasoning_len;
        uint64_t t_start; /* generation began (after the prompt) */
        uint64_t t_end;
        uint64_t t_prompt; /* LLAMA_SIM_PROMPT_MS: the prompt's time, as measured */

        /* the Responses API's ids, and which blocks (items) a stream has opened */
        char resp_id[48];
        char msg_id[48];
        char rs_id[48];
        bool started;
        bool thinking_started;
        bool text_started;

        /* streaming */
        struct lockstep *lock;
        enum infer_step step;
        char *pending;
        size_t pending_len;
        size_t pending_off;
        struct infer_event queue[INFER_QUEUE_MAX];
        unsigned queue_head;
        unsigned queue_len;
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

/* ---- for the other APIs' modules (sim-apis.c) ---- */

/*
 * A job for the body's sampling settings (stream, temperature, n_predict, max_tokens), read as
 * llama-server reads them: NULL with *ret_result set when the answer is given already (a 400 for
 * a field of the wrong type) or cannot be (out of memory).
 */
struct infer_job *infer_job_new(struct http_request *req, enum infer_api api, const cJSON *body,
                                enum MHD_Result *ret_result);
/* Thinking as the server's flags and, for a body given, the request's reasoning_format and
 * chat_template_kwargs.enable_thinking say; request_budget: the request's own thinking budget,
 * which counts only when the server sets none (-1: none). */
void infer_setup_thinking(struct infer_job *j, const cJSON *body, int request_budget);
/* An integer field as nlohmann's get<int>() reads it (a boolean is 1 or 0); def when it is
 * absent or not a number. */
int infer_json_int(const cJSON *o, const char *name, int def);
/* n_predict for a request's token limit (< 0: none): the limit, else -n, else 16. */
int infer_default_n_predict(int requested);
/* Runs the job to its answer; takes j. The request's body is dropped on the way. */
enum MHD_Result infer_run(struct http_request *req, struct infer_job *j);

/* prefix followed by 32 random letters and digits, as llama-server's random_string() */
void infer_make_id(char *buf, size_t size, const char *prefix);
cJSON *infer_timings(const struct infer_job *j);
/* Appends one SSE event (taken) to the job's queue; -ENOMEM when it is NULL or the queue full. */
int infer_queue_push(struct infer_job *j, char *sse, bool token);
/* LLAMA_SIM_ERROR_AFTER_TOKENS's message, as a generation error reaches the client. */
void infer_injected_error_message(const struct infer_job *j, char *buf, size_t size);
