/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "sim-apis.h"
#include "sim-canned.h"
#include "sim-infer.h"
#include "sim-json.h"
#include "sim-lockstep.h"
#include "sim-log.h"
#include "sim-slots.h"
#include "sim-tokens.h"

#define INFER_DEFAULT_N_PREDICT 16
#define INFER_DEFAULT_N_CTX 4096
#define INFER_DEFAULT_N_SLOTS 4

static const char *const infer_words[] = {
        "Hello", " world", " from", " the", " llama", ".cpp", " server", " simulator", ".",
};

static const char *const infer_think_words[] = {
        "Thinking", " it", " over", ",", " step", " by", " step", ".",
};

const char *infer_model_name(void)
{
        return sim_config.alias ? sim_config.alias : sim_config.model;
}

int infer_n_ctx(void)
{
        return sim_config.ctx_size > 0 ? sim_config.ctx_size : INFER_DEFAULT_N_CTX;
}

int infer_n_slots(void)
{
        return sim_config.n_parallel > 0 ? sim_config.n_parallel : INFER_DEFAULT_N_SLOTS;
}

/* With automatic slots llama-server unifies the KV cache: each slot may use all of it. */
int infer_n_ctx_slot(void)
{
        return sim_config.n_parallel > 0 ? infer_n_ctx() / infer_n_slots() : infer_n_ctx();
}

/* The recorded embedding model has 128 dimensions, the chat model 64. */
int infer_n_embd(void)
{
        return sim_config.embedding ? 128 : 64;
}

static void infer_params_of(const struct infer_job *j, struct infer_params *p)
{
        *p = (struct infer_params) {
                .temperature = j->temperature,
                .n_predict = j->n_predict,
                .stream = j->stream,
                .reasoning_format = j->reasoning_format,
        };
}

void infer_default_params(struct infer_params *p)
{
        *p = (struct infer_params) {
                .temperature = 0.8,
                .n_predict = sim_config.n_predict,
                .stream = false,
                /* params.sampling has no reasoning format: the task default is printed */
                .reasoning_format = "none",
        };
}

static void infer_job_free(struct infer_job *j)
{
        if (!j) {
                return;
        }
        for (unsigned i = 0; i < j->queue_len; i++) {
                free(j->queue[(j->queue_head + i) % INFER_QUEUE_MAX].sse);
        }
        lockstep_free(j->lock);
        canned_free(j->canned);
        free(j->prompt);
        free(j->text);
        free(j->reasoning);
        free(j->pending);
        free(j);
}

void infer_make_id(char *buf, size_t size, const char *prefix)
{
        static const char alphabet[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        unsigned char rnd[32];
        size_t n = 0;

        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd)) {
                for (size_t i = 0; i < sizeof(rnd); i++) {
                        rnd[i] = (unsigned char) (now_usec(CLOCK_MONOTONIC) >> (i % 8));
                }
        }
        n = (size_t) snprintf(buf, size, "%s", prefix);
        for (size_t i = 0; i < sizeof(rnd) && n + 1 < size; i++) {
                buf[n++] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
        }
        buf[n] = '\0';
}

/* A rough token count: words, plus the chat template's few tokens per message. */
static int infer_count_chat_prompt(const cJSON *messages)
{
        const cJSON *m;
        int n = 0;

        cJSON_ArrayForEach(m, messages) {
                const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
                const cJSON *part;

                n += 4;
                if (cJSON_IsString(content)) {
                        n += tokens_count_words(content->valuestring);
                } else if (cJSON_IsArray(content)) {
                        cJSON_ArrayForEach(part, content) {
                                const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");

                                if (cJSON_IsString(text)) {
                                        n += tokens_count_words(text->valuestring);
                                }
                        }
                }
        }
        return n;
}

int infer_json_int(const cJSON *o, const char *name, int def)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

        if (cJSON_IsBool(v)) {
                return cJSON_IsTrue(v);
        }
        return cJSON_IsNumber(v) ? v->valueint : def;
}

/* nlohmann's type_name() */
static const char *infer_type_name(const cJSON *v)
{
        if (cJSON_IsString(v)) {
                return "string";
        }
        if (cJSON_IsArray(v)) {
                return "array";
        }
        if (cJSON_IsObject(v)) {
                return "object";
        }
        return cJSON_IsBool(v) ? "boolean" : "number";
}

/*
 * llama-server's typed reading of the sampling fields: a stream that is not a boolean, or a
 * max_tokens, n_predict or temperature that is not a number, is a 400 "Field 'NAME': ...".
 * Returns false with *ret_result set when the body has one. The Messages API passes no
 * n_predict; the Responses API reads max_output_tokens as max_tokens.
 */
static bool infer_check_fields(struct http_request *req, const cJSON *body, enum infer_api api,
                               enum MHD_Result *ret_result)
{
        /* in the order params_from_json_cmpl() reads them */
        static const struct {
                const char *name;
                bool boolean;
        } fields[] = {
                { "stream", true },
                { "max_tokens", false },
                { "n_predict", false },
                { "temperature", false },
        };
        char msg[160];

        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                const char *from = fields[i].name;
                const cJSON *v;
                bool ok;

                if (api == INFER_ANTHROPIC && streq(from, "n_predict")) {
                        continue; /* convert_anthropic_to_oai() does not pass it on */
                }
                if (api == INFER_OAI_RESP && streq(from, "max_tokens") &&
                    cJSON_GetObjectItemCaseSensitive(body, "max_output_tokens")) {
                        from = "max_output_tokens";
                }
                v = cJSON_GetObjectItemCaseSensitive(body, from);
                if (!v || cJSON_IsNull(v)) {
                        continue; /* json_value(): the default */
                }
                /* nlohmann converts a boolean to a number, not the other way round */
                ok = fields[i].boolean ? cJSON_IsBool(v) : cJSON_IsNumber(v) || cJSON_IsBool(v);
                if (ok) {
                        continue;
                }
                snprintf(msg, sizeof(msg),
                         "Field '%s': [json.exception.type_error.302] type must be %s, but is %s",
                         fields[i].name, fields[i].boolean ? "boolean" : "number",
                         infer_type_name(v));
                *ret_result = infer_error(req, 400, msg, "invalid_request_error");
                return false;
        }
        return true;
}

static char *infer_print(cJSON *o)
{
        char *s = cJSON_PrintUnformatted(o);

        cJSON_Delete(o);
        return s;
}

/* One SSE event, "data: <json>\n\n"; takes o. */
static char *infer_sse(cJSON *o)
{
        char *json = infer_print(o), *s;

        if (!json || asprintf(&s, "data: %s\n\n", json) < 0) {
                s = NULL;
        }
        free(json);
        return s;
}

enum MHD_Result infer_reply_error(struct http_request *req, int code, const char *message,
                                  const char *type)
{
        char *body = json_error_body(code, message, type);
        enum MHD_Result r;

        if (!body) {
                return MHD_NO;
        }
        r = http_reply_json(req, (unsigned) code, body);
        free(body);
        return r;
}

enum MHD_Result infer_error(struct http_request *req, int code, const char *message,
                            const char *type)
{
        char *body = json_error_body(code, message, type);
        enum MHD_Result r;

        if (!body) {
                return MHD_NO;
        }
        /* ex_wrapper() logs every error it turns into a response */
        SRV_WRN("operator()", "got exception: %s", body);
        r = http_reply_json(req, (unsigned) code, body);
        free(body);
        return r;
}

enum MHD_Result infer_reply_json(struct http_request *req, cJSON *o)
{
        char *body = infer_print(o);
        enum MHD_Result r;

        if (!body) {
                return MHD_NO;
        }
        r = http_reply_json(req, 200, body);
        free(body);
        return r;
}

cJSON *infer_body(struct http_request *req, enum MHD_Result *ret_result)
{
        char *msg;

        if (req->json) {
                return req->json;
        }
        /* Malformed JSON: 400 since build 11669 (build 10470 answered 500). */
        msg = json_parse_error_message(req->body ? req->body : "", req->body_len, req->json_error);
        *ret_result = infer_error(req, 400, msg ? msg : "parse error", "invalid_request_error");
        free(msg);
        return NULL;
}

/* ---- the objects, key for key as llama-server writes them ---- */

static double infer_ms(uint64_t usec)
{
        return (double) usec / 1000.0;
}

static double infer_prompt_ms(const struct infer_job *j)
{
        if (sim_config.prompt_ms >= 0) {
                return infer_ms(j->t_prompt);
        }
        /* prompt processing is not simulated: a plausible fraction of a millisecond a token */
        return 0.125 * j->n_prompt + 0.25;
}

/* LLAMA_SIM_EOS_AFTER_TOKENS: the model has written its end-of-generation token. */
static bool infer_eos(const struct infer_job *j)
{
        if (j->canned && j->n_decoded >= j->canned->n_words) {
                return true;
        }
        return sim_config.eos_after_tokens >= 0 && j->n_decoded >= sim_config.eos_after_tokens;
}

static const char *infer_finish_reason(const struct infer_job *j)
{
        return infer_eos(j) && j->n_decoded < j->n_predict ? "stop" : "length";
}

static double infer_predicted_ms(const struct infer_job *j)
{
        double ms = infer_ms(j->t_end - j->t_start);

        return ms > 0.001 ? ms : 0.001;
}

cJSON *infer_timings(const struct infer_job *j)
{
        cJSON *t = cJSON_CreateObject();
        double prompt_ms = infer_prompt_ms(j), predicted_ms = infer_predicted_ms(j);

        cJSON_AddNumberToObject(t, "cache_n", 0);
        cJSON_AddNumberToObject(t, "prompt_n", j->n_prompt);
        json_add_double(t, "prompt_ms", prompt_ms);
        json_add_double(t, "prompt_per_token_ms", prompt_ms / (j->n_prompt > 0 ? j->n_prompt : 1));
        json_add_double(t, "prompt_per_second", 1e3 / prompt_ms * j->n_prompt);
        cJSON_AddNumberToObject(t, "predicted_n", j->n_decoded);
        json_add_double(t, "predicted_ms", predicted_ms);
        json_add_double(t, "predicted_per_token_ms",
                        predicted_ms / (j->n_decoded > 0 ? j->n_decoded : 1));
        json_add_double(t, "predicted_per_second", 1e3 / predicted_ms * j->n_decoded);
        return t;
}

static cJSON *infer_usage(const struct infer_job *j)
{
        cJSON *u = cJSON_CreateObject();
        cJSON *d;

        cJSON_AddNumberToObject(u, "completion_tokens", j->n_decoded);
        cJSON_AddNumberToObject(u, "prompt_tokens", j->n_prompt);
        cJSON_AddNumberToObject(u, "total_tokens", j->n_decoded + j->n_prompt);
        d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
        cJSON_AddNumberToObject(d, "cached_tokens", 0);
        return u;
}

/* The OpenAI objects' common tail, in the order of the given keys. */
static void infer_add_meta(cJSON *o, const struct infer_job *j, const char *object, bool id_first)
{
        cJSON_AddNumberToObject(o, "created", (double) j->created);
        if (id_first) {
                cJSON_AddStringToObject(o, "id", j->id);
        }
        cJSON_AddStringToObject(o, "model", infer_model_name());
        cJSON_AddStringToObject(o, "system_fingerprint", SIM_FINGERPRINT);
        cJSON_AddStringToObject(o, "object", object);
}

cJSON *infer_params_json(const struct infer_params *p, bool full)
{
        static const char *const breakers[] = { "\n", ":", "\"", "*" };
        static const char *const samplers[] = { "penalties", "dry",   "top_n_sigma",
                                                "top_k",     "typ_p", "top_p",
                                                "min_p",     "xtc",   "temperature" };
        cJSON *g = cJSON_CreateObject();

        cJSON_AddNumberToObject(g, "seed", 4294967295.0);
        json_add_double(g, "temperature", (float) p->temperature);
        json_add_double(g, "dynatemp_range", 0.0);
        json_add_double(g, "dynatemp_exponent", 1.0);
        cJSON_AddNumberToObject(g, "top_k", 40);
        json_add_double(g, "top_p", 0.95f);
        json_add_double(g, "min_p", 0.05f);
        json_add_double(g, "top_n_sigma", -1.0);
        json_add_double(g, "xtc_probability", 0.0);
        json_add_double(g, "xtc_threshold", 0.1f);
        json_add_double(g, "typical_p", 1.0);
        cJSON_AddNumberToObject(g, "repeat_last_n", 64);
        json_add_double(g, "repeat_penalty", 1.0);
        json_add_double(g, "presence_penalty", 0.0);
        json_add_double(g, "frequency_penalty", 0.0);
        json_add_double(g, "dry_multiplier", 0.0);
        json_add_double(g, "dry_base", 1.75);
        cJSON_AddNumberToObject(g, "dry_allowed_length", 2);
        cJSON_AddNumberToObject(g, "dry_penalty_last_n", 64);
        if (full) {
                cJSON_AddItemToObject(
                        g, "dry_sequence_breakers",
                        cJSON_CreateStringArray(breakers, (int) ELEMENTSOF(breakers)));
        }
        cJSON_AddNumberToObject(g, "mirostat", 0);
        json_add_double(g, "mirostat_tau", 5.0);
        json_add_double(g, "mirostat_eta", 0.1f);
        json_add_double(g, "adaptive_target", -1.0);
        json_add_double(g, "adaptive_decay", 0.9f);
        if (full) {
                cJSON_AddArrayToObject(g, "stop");
        }
        cJSON_AddNumberToObject(g, "max_tokens", p->n_predict);
        cJSON_AddNumberToObject(g, "n_predict", p->n_predict);
        cJSON_AddNumberToObject(g, "n_keep", 0);
        cJSON_AddNumberToObject(g, "n_discard", 0);
        cJSON_AddFalseToObject(g, "ignore_eos");
        cJSON_AddBoolToObject(g, "stream", p->stream);
        if (full) {
                cJSON_AddArrayToObject(g, "logit_bias");
        }
        cJSON_AddNumberToObject(g, "n_probs", 0);
        cJSON_AddNumberToObject(g, "min_keep", 0);
        if (full) {
                cJSON_AddStringToObject(g, "grammar", "");
                cJSON_AddFalseToObject(g, "grammar_lazy");
                cJSON_AddArrayToObject(g, "grammar_triggers");
                cJSON_AddArrayToObject(g, "preserved_tokens");
        }
        cJSON_AddStringToObject(g, "chat_format", "Content-only");
        cJSON_AddStringToObject(g, "reasoning_format", p->reasoning_format);
        cJSON_AddFalseToObject(g, "reasoning_in_content");
        cJSON_AddStringToObject(g, "generation_prompt", "");
        cJSON_AddItemToObject(g, "samplers",
                              cJSON_CreateStringArray(samplers, (int) ELEMENTSOF(samplers)));
        cJSON_AddStringToObject(g, "speculative.types", "none");
        cJSON_AddFalseToObject(g, "timings_per_token");
        cJSON_AddFalseToObject(g, "post_sampling_probs");
        cJSON_AddFalseToObject(g, "backend_sampling");
        cJSON_AddArrayToObject(g, "lora");
        return g;
}

static cJSON *infer_generation_settings(const struct infer_job *j)
{
        struct infer_params p;

        infer_params_of(j, &p);
        return infer_params_json(&p, true);
}

/* /completion's final object; in a stream its content was already sent, so it is empty. */
static cJSON *infer_native_final(const struct infer_job *j)
{
        cJSON *o = cJSON_CreateObject();
        int cached = j->n_prompt + j->n_decoded - 1;

        cJSON_AddNumberToObject(o, "index", 0);
        cJSON_AddStringToObject(o, "content", j->stream ? "" : j->text);
        cJSON_AddArrayToObject(o, "tokens");
        cJSON_AddNumberToObject(o, "id_slot", j->slot);
        cJSON_AddTrueToObject(o, "stop");
        cJSON_AddStringToObject(o, "model", infer_model_name());
        cJSON_AddNumberToObject(o, "tokens_predicted", j->n_decoded);
        cJSON_AddNumberToObject(o, "tokens_evaluated", j->n_prompt);
        cJSON_AddItemToObject(o, "generation_settings", infer_generation_settings(j));
        cJSON_AddStringToObject(o, "prompt", j->prompt ? j->prompt : "");
        cJSON_AddFalseToObject(o, "has_new_line");
        cJSON_AddFalseToObject(o, "truncated");
        cJSON_AddStringToObject(o, "stop_type",
                                streq(infer_finish_reason(j), "stop") ? "eos" : "limit");
        cJSON_AddStringToObject(o, "stopping_word", "");
        cJSON_AddNumberToObject(o, "tokens_cached", cached > 0 ? cached : 0);
        cJSON_AddItemToObject(o, "timings", infer_timings(j));
        return o;
}

static cJSON *infer_native_partial(const struct infer_job *j, const char *word)
{
        cJSON *o = cJSON_CreateObject();

        /* llama-server lists the token's id; the simulator has no vocabulary, so its place
         * in the answer stands in for it */
        int id = j->n_decoded;

        cJSON_AddNumberToObject(o, "index", 0);
        cJSON_AddStringToObject(o, "content", word);
        cJSON_AddItemToObject(o, "tokens", cJSON_CreateIntArray(&id, 1));
        cJSON_AddFalseToObject(o, "stop");
        cJSON_AddNumberToObject(o, "id_slot", j->slot);
        cJSON_AddNumberToObject(o, "tokens_predicted", j->n_decoded);
        cJSON_AddNumberToObject(o, "tokens_evaluated", j->n_prompt);
        return o;
}

static cJSON *infer_text_choice(const char *text, const char *finish_reason)
{
        cJSON *choices = cJSON_CreateArray();
        cJSON *c = cJSON_CreateObject();

        cJSON_AddStringToObject(c, "text", text);
        cJSON_AddNumberToObject(c, "index", 0);
        cJSON_AddNullToObject(c, "logprobs");
        if (finish_reason) {
                cJSON_AddStringToObject(c, "finish_reason", finish_reason);
        } else {
                cJSON_AddNullToObject(c, "finish_reason");
        }
        cJSON_AddItemToArray(choices, c);
        return choices;
}

/* /v1/completions: a partial when word is set, else the final object. */
static cJSON *infer_oai_completion_object(const struct infer_job *j, const char *word)
{
        cJSON *o = cJSON_CreateObject();
        const char *text = word ? word : (j->stream ? "" : j->text);

        cJSON_AddItemToObject(o, "choices",
                              infer_text_choice(text, word ? NULL : infer_finish_reason(j)));
        infer_add_meta(o, j, "text_completion", false);
        if (!word) {
                cJSON_AddItemToObject(o, "usage", infer_usage(j));
        }
        cJSON_AddStringToObject(o, "id", j->id);
        if (!word) {
                cJSON_AddItemToObject(o, "timings", infer_timings(j));
        }
        return o;
}

/* A chat.completion.chunk with one choice whose delta is given; finish_reason NULL is null. */
static cJSON *infer_chat_chunk(const struct infer_job *j, cJSON *delta, const char *finish_reason,
                               bool timings)
{
        cJSON *o = cJSON_CreateObject();
        cJSON *choices = cJSON_AddArrayToObject(o, "choices");
        cJSON *c = cJSON_CreateObject();

        if (finish_reason) {
                cJSON_AddStringToObject(c, "finish_reason", finish_reason);
        } else {
                cJSON_AddNullToObject(c, "finish_reason");
        }
        cJSON_AddNumberToObject(c, "index", 0);
        cJSON_AddItemToObject(c, "delta", delta);
        cJSON_AddItemToArray(choices, c);
        infer_add_meta(o, j, "chat.completion.chunk", true);
        if (timings) {
                cJSON_AddItemToObject(o, "timings", infer_timings(j));
        }
        return o;
}

/* With stream_options.include_usage: an extra chunk without choices. */
static cJSON *infer_chat_usage_chunk(const struct infer_job *j)
{
        cJSON *o = cJSON_CreateObject();

        cJSON_AddArrayToObject(o, "choices");
        infer_add_meta(o, j, "chat.completion.chunk", true);
        cJSON_AddItemToObject(o, "usage", infer_usage(j));
        cJSON_AddItemToObject(o, "timings", infer_timings(j));
        return o;
}

static cJSON *infer_chat_final(const struct infer_job *j)
{
        cJSON *o = cJSON_CreateObject();
        cJSON *choices = cJSON_AddArrayToObject(o, "choices");
        cJSON *c = cJSON_CreateObject();
        cJSON *m;

        cJSON_AddStringToObject(c, "finish_reason", infer_finish_reason(j));
        cJSON_AddNumberToObject(c, "index", 0);
        m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", j->text);
        if (j->think) {
                cJSON_AddStringToObject(m, "reasoning_content", j->reasoning);
        }
        cJSON_AddItemToArray(choices, c);
        infer_add_meta(o, j, "chat.completion", false);
        cJSON_AddItemToObject(o, "usage", infer_usage(j));
        cJSON_AddStringToObject(o, "id", j->id);
        cJSON_AddItemToObject(o, "timings", infer_timings(j));
        return o;
}

void infer_injected_error_message(const struct infer_job *j, char *buf, size_t size)
{
        snprintf(buf, size,
                 "llama-sim: LLAMA_SIM_ERROR_AFTER_TOKENS: generation failed after %llu tokens",
                 (unsigned long long) j->req->tokens_sent);
}

/* The same as llama-server's error body. */
static char *infer_injected_error_body(const struct infer_job *j)
{
        char msg[128];

        infer_injected_error_message(j, msg, sizeof(msg));
        return json_error_body(500, msg, "server_error");
}

/* ---- generating ---- */

/* Holds the connection until the client goes, as llama-server does after SIGTERM. */
static int infer_hold(struct infer_job *j)
{
        if (!j->req->client_gone) {
                (void) http_wait_client_gone(j->req, -1);
        }
        return -ECONNRESET;
}

/*
 * Waits one token's time. Returns -ECONNRESET when the client went away, or when shutdown began:
 * llama-server then stops generating and holds the connection until the client goes, so this
 * does too before giving up. In lock-step mode the steps pace the stream instead.
 */
static int infer_wait_token(struct infer_job *j)
{
        if (j->lock) {
                return sim_phase() == SIM_STOPPING ? infer_hold(j) : 0;
        }
        if (sim_phase() != SIM_STOPPING && !http_wait_client_gone(j->req, sim_config.token_ms) &&
            sim_phase() != SIM_STOPPING) {
                return 0;
        }
        return infer_hold(j);
}

/* Before each SSE event: a lock-step credit, and no event at all once shutdown began. */
static int infer_wait_event(struct infer_job *j)
{
        if (j->lock && lockstep_take(j->lock, j->req) < 0) {
                return -ECONNRESET;
        }
        if (sim_phase() == SIM_STOPPING) {
                return infer_hold(j);
        }
        return 0;
}

static enum infer_kind infer_kind_of(const struct infer_job *j, int i)
{
        if (j->canned) {
                return i < j->canned->n_reasoning ? INFER_REASONING : INFER_CONTENT;
        }
        if (!j->think) {
                return INFER_CONTENT;
        }
        return i < j->n_think ? INFER_REASONING : i == j->n_think ? INFER_HIDDEN : INFER_CONTENT;
}

static int infer_append(char **buf, size_t *len, const char *word)
{
        size_t n = strlen(word);
        char *p = realloc(*buf, *len + n + 1);

        if (!p) {
                return -ENOMEM;
        }
        memcpy(p + *len, word, n + 1);
        *buf = p;
        *len += n;
        return 0;
}

/* Generates the next token; *ret_word is its text, NULL for the hidden one. */
static int infer_next_token(struct infer_job *j, const char **ret_word, enum infer_kind *ret_kind)
{
        enum infer_kind kind = infer_kind_of(j, j->n_decoded);
        const char *word = NULL;
        int r;

        /* LLAMA_SIM_PROMPT_MS: the prompt is read before the first token; generation's time
         * starts after it, as llama-server's timings count them apart. */
        if (j->n_decoded == 0 && sim_config.prompt_ms >= 0 && !j->lock) {
                if (sim_phase() != SIM_STOPPING &&
                    http_wait_client_gone(j->req, sim_config.prompt_ms)) {
                        return infer_hold(j);
                }
                j->t_prompt = now_usec(CLOCK_MONOTONIC) - j->t_start;
                j->t_start += j->t_prompt;
        }
        r = infer_wait_token(j);
        if (r < 0) {
                return r;
        }
        switch (kind) {
        case INFER_REASONING:
                word = j->canned ? j->canned->words[j->n_decoded]
                                 : infer_think_words[j->n_decoded % ELEMENTSOF(infer_think_words)];
                r = infer_append(&j->reasoning, &j->reasoning_len, word);
                break;
        case INFER_CONTENT: {
                int i = j->think ? j->n_decoded - j->n_think - 1 : j->n_decoded;

                word = j->canned ? j->canned->words[j->n_decoded]
                                 : infer_words[i % (int) ELEMENTSOF(infer_words)];
                r = infer_append(&j->text, &j->text_len, word);
                break;
        }
        case INFER_HIDDEN:
                break;
        }
        if (r < 0) {
                return r;
        }
        j->n_decoded++;
        slots_progress(j->slot_held ? j->slot : -1, j->n_decoded);
        *ret_word = word;
        *ret_kind = kind;
        return 0;
}

static void infer_log_start(const struct infer_job *j)
{
        log_line(LOG_LEVEL_INFO, "slot", "launch_slot_with_task",
                 "id %2d | task %u | processing task, is_child = 0", j->slot, j->task);
}

static void infer_log_end(const struct infer_job *j)
{
        double prompt_ms = infer_prompt_ms(j), predicted_ms = infer_predicted_ms(j);

        log_line(LOG_LEVEL_INFO, "slot", "print_timing",
                 "id %2d | task %u | prompt eval time = %10.2f ms / %5d tokens (%8.2f ms per "
                 "token, %8.2f tokens per second)",
                 j->slot, j->task, prompt_ms, j->n_prompt,
                 prompt_ms / (j->n_prompt > 0 ? j->n_prompt : 1), 1e3 / prompt_ms * j->n_prompt);
        log_line(LOG_LEVEL_INFO, "slot", "print_timing",
                 "id %2d | task %u |        eval time = %10.2f ms / %5d tokens (%8.2f ms per "
                 "token, %8.2f tokens per second)",
                 j->slot, j->task, predicted_ms, j->n_decoded,
                 predicted_ms / (j->n_decoded > 0 ? j->n_decoded : 1),
                 1e3 / predicted_ms * j->n_decoded);
        log_line(LOG_LEVEL_INFO, "slot", "print_timing",
                 "id %2d | task %u |       total time = %10.2f ms / %5d tokens", j->slot, j->task,
                 prompt_ms + predicted_ms, j->n_prompt + j->n_decoded);
        log_line(LOG_LEVEL_INFO, "slot", "release",
                 "id %2d | task %u | stop processing: n_tokens = %d, truncated = 0", j->slot,
                 j->task, j->n_prompt + j->n_decoded - 1);
}

/* The task is over: its slot is free and its numbers go to /metrics. Once. */
static void infer_release(struct infer_job *j)
{
        if (!j->acquired || j->released) {
                return;
        }
        if (j->t_end == 0) {
                j->t_end = now_usec(CLOCK_MONOTONIC);
        }
        slots_release(j->slot_held ? j->slot : -1, j->n_prompt, infer_prompt_ms(j), j->n_decoded,
                      infer_predicted_ms(j));
        j->released = true;
}

/*
 * The LLAMA_SIM_*_AFTER_TOKENS faults, checked before the next token once n tokens went out.
 * Exits for EXIT; returns -ECONNRESET after holding for STALL; 1 for ERROR; else 0.
 */
static int infer_check_faults(struct infer_job *j)
{
        uint64_t sent = j->req->tokens_sent;

        if (sim_config.exit_after_tokens >= 0 && sent >= (uint64_t) sim_config.exit_after_tokens) {
                sim_fault("LLAMA_SIM_EXIT_AFTER_TOKENS");
        }
        if (sim_config.stall_after_tokens >= 0 &&
            sent >= (uint64_t) sim_config.stall_after_tokens) {
                log_plain("llama-sim: LLAMA_SIM_STALL_AFTER_TOKENS: stalling after %llu tokens\n",
                          (unsigned long long) sent);
                return infer_hold(j);
        }
        if (sim_config.error_after_tokens >= 0 &&
            sent >= (uint64_t) sim_config.error_after_tokens) {
                return 1;
        }
        return 0;
}

int infer_queue_push(struct infer_job *j, char *sse, bool token)
{
        if (!sse || j->queue_len >= INFER_QUEUE_MAX) {
                free(sse);
                return -ENOMEM;
        }
        j->queue[(j->queue_head + j->queue_len) % INFER_QUEUE_MAX] =
                (struct infer_event) { .sse = sse, .token = token };
        j->queue_len++;
        return 0;
}

/* The Messages and Responses APIs make a token's events at once (sim-apis.c) and queue them. */
static bool infer_queued(const struct infer_job *j)
{
        return j->api == INFER_ANTHROPIC || j->api == INFER_OAI_RESP;
}

/* The queue's next event into j->pending, with its lock-step credit. */
static int infer_queue_pop(struct infer_job *j)
{
        struct infer_event *e = &j->queue[j->queue_head];
        int r;

        r = infer_wait_event(j);
        if (r < 0) {
                return r;
        }
        j->pending = e->sse;
        j->req->tokens_sent += e->token;
        *e = (struct infer_event) {};
        j->queue_head = (j->queue_head + 1) % INFER_QUEUE_MAX;
        j->queue_len--;
        return 0;
}

/* Makes the next event of the stream into j->pending. Returns 0, 1 at the end, or -errno. */
static int infer_stream_step(struct infer_job *j)
{
        enum infer_kind kind;
        const char *word;
        cJSON *delta;
        char *body;
        int r;

        for (;;) {
                if (j->queue_len > 0) {
                        return infer_queue_pop(j);
                }
                switch (j->step) {
                case INFER_STEP_ROLE:
                        r = infer_wait_event(j);
                        if (r < 0) {
                                return r;
                        }
                        delta = cJSON_CreateObject();
                        cJSON_AddStringToObject(delta, "role", "assistant");
                        cJSON_AddNullToObject(delta, "content");
                        j->pending = infer_sse(infer_chat_chunk(j, delta, NULL, false));
                        j->step = INFER_STEP_TOKENS;
                        return j->pending ? 0 : -ENOMEM;
                case INFER_STEP_TOKENS:
                        r = infer_check_faults(j);
                        if (r < 0) {
                                return r;
                        }
                        if (r > 0) {
                                j->step = INFER_STEP_ERROR;
                                continue;
                        }
                        if (j->n_decoded >= j->n_predict || infer_eos(j)) {
                                j->step = INFER_STEP_FINAL;
                                continue;
                        }
                        /* the end of the thinking is generated but makes no event; a queued
                         * token's events take their credits as they leave the queue */
                        if (infer_kind_of(j, j->n_decoded) != INFER_HIDDEN && !infer_queued(j)) {
                                r = infer_wait_event(j);
                                if (r < 0) {
                                        return r;
                                }
                        }
                        r = infer_next_token(j, &word, &kind);
                        if (r < 0) {
                                return r;
                        }
                        if (kind == INFER_HIDDEN) {
                                continue;
                        }
                        switch (j->api) {
                        case INFER_NATIVE:
                                j->pending = infer_sse(infer_native_partial(j, word));
                                break;
                        case INFER_OAI_COMPLETION:
                                j->pending = infer_sse(infer_oai_completion_object(j, word));
                                break;
                        case INFER_OAI_CHAT:
                                delta = cJSON_CreateObject();
                                cJSON_AddStringToObject(
                                        delta,
                                        kind == INFER_REASONING ? "reasoning_content" : "content",
                                        word);
                                j->pending = infer_sse(infer_chat_chunk(j, delta, NULL, false));
                                break;
                        case INFER_ANTHROPIC:
                        case INFER_OAI_RESP:
                                r = apis_token_events(j, kind == INFER_REASONING, word);
                                if (r < 0) {
                                        return r;
                                }
                                continue;
                        }
                        if (j->pending) {
                                j->req->tokens_sent++;
                        }
                        return j->pending ? 0 : -ENOMEM;
                case INFER_STEP_FINAL:
                        if (!infer_queued(j)) {
                                r = infer_wait_event(j);
                                if (r < 0) {
                                        return r;
                                }
                        }
                        j->t_end = now_usec(CLOCK_MONOTONIC);
                        infer_log_end(j);
                        r = 0;
                        switch (j->api) {
                        case INFER_NATIVE:
                                j->pending = infer_sse(infer_native_final(j));
                                j->step = INFER_STEP_END;
                                break;
                        case INFER_OAI_COMPLETION:
                                j->pending = infer_sse(infer_oai_completion_object(j, NULL));
                                j->step = INFER_STEP_DONE;
                                break;
                        case INFER_OAI_CHAT:
                                j->pending = infer_sse(infer_chat_chunk(j, cJSON_CreateObject(),
                                                                        infer_finish_reason(j),
                                                                        !j->include_usage));
                                j->step = j->include_usage ? INFER_STEP_USAGE : INFER_STEP_DONE;
                                break;
                        case INFER_ANTHROPIC:
                        case INFER_OAI_RESP:
                                /* no [DONE]: the stream ends after the final events */
                                r = apis_final_events(j);
                                j->step = INFER_STEP_END;
                                break;
                        }
                        /* llama-server frees the slot with the final result */
                        infer_release(j);
                        if (r < 0) {
                                return r;
                        }
                        if (infer_queued(j)) {
                                continue;
                        }
                        return j->pending ? 0 : -ENOMEM;
                case INFER_STEP_USAGE:
                        r = infer_wait_event(j);
                        if (r < 0) {
                                return r;
                        }
                        j->pending = infer_sse(infer_chat_usage_chunk(j));
                        j->step = INFER_STEP_DONE;
                        return j->pending ? 0 : -ENOMEM;
                case INFER_STEP_DONE:
                        r = infer_wait_event(j);
                        if (r < 0) {
                                return r;
                        }
                        j->pending = strdup("data: [DONE]\n\n");
                        j->step = INFER_STEP_END;
                        return j->pending ? 0 : -ENOMEM;
                case INFER_STEP_ERROR:
                        /* format_error(): one error event, then the end, without [DONE]; the
                         * Messages API's is an `event: error`, the others' `data: {"error":..}` */
                        r = infer_wait_event(j);
                        if (r < 0) {
                                return r;
                        }
                        body = infer_injected_error_body(j);
                        SRV_ERR("send_error", "task id = %u, error: %s", j->task, body ? body : "");
                        if (j->api == INFER_ANTHROPIC) {
                                j->pending = apis_messages_error_event(j);
                        } else if (!body || asprintf(&j->pending, "data: %s\n\n", body) < 0) {
                                j->pending = NULL;
                        }
                        free(body);
                        infer_release(j);
                        j->step = INFER_STEP_END;
                        return j->pending ? 0 : -ENOMEM;
                case INFER_STEP_END:
                        return 1;
                }
        }
}

static ssize_t infer_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
        struct infer_job *j = cls;
        size_t n;
        int r;

        if (j->pending_off >= j->pending_len) {
                free(j->pending);
                j->pending = NULL;
                j->pending_len = j->pending_off = 0;

                r = infer_stream_step(j);
                if (r > 0) {
                        http_idle_timeout(j->req);
                        return MHD_CONTENT_READER_END_OF_STREAM;
                }
                if (r < 0) {
                        infer_release(j);
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                }
                j->pending_len = strlen(j->pending);
                if (sim_config.cr_framing) {
                        /* SSE allows a lone CR as line end: events then end in "\r\r" */
                        for (char *c = j->pending; *c; c++) {
                                *c = *c == '\n' ? '\r' : *c;
                        }
                }
        }
        /* one event per call: libmicrohttpd sends each return as one chunk, at once */
        n = j->pending_len - j->pending_off;
        if (n > max) {
                n = max;
        }
        memcpy(buf, j->pending + j->pending_off, n);
        j->pending_off += n;
        return (ssize_t) n;
}

static void infer_stream_free(void *cls)
{
        struct infer_job *j = cls;

        infer_release(j);
        infer_job_free(j);
}

/* ---- the handlers ---- */

static enum MHD_Result infer_exceeds_context(struct http_request *req, struct infer_job *j)
{
        char msg[160];
        cJSON *e = cJSON_CreateObject();
        cJSON *err = cJSON_AddObjectToObject(e, "error");
        enum MHD_Result r;
        char *body;

        snprintf(msg, sizeof(msg),
                 "request (%d tokens) exceeds the available context size (%d tokens), "
                 "try increasing it",
                 j->n_prompt, infer_n_ctx_slot());
        SRV_ERR("send_error", "task id = %u, error: %s", j->task, msg);
        cJSON_AddNumberToObject(err, "code", 400);
        cJSON_AddStringToObject(err, "message", msg);
        cJSON_AddStringToObject(err, "type", "exceed_context_size_error");
        cJSON_AddNumberToObject(err, "n_prompt_tokens", j->n_prompt);
        cJSON_AddNumberToObject(err, "n_ctx", infer_n_ctx_slot());
        body = infer_print(e);
        r = body ? http_reply_json(req, 400, body) : MHD_NO;
        free(body);
        return r;
}

enum MHD_Result infer_run(struct http_request *req, struct infer_job *j)
{
        struct infer_params params;
        enum infer_kind kind;
        enum MHD_Result r;
        const char *word;
        char *body;
        cJSON *o = NULL;
        int slot;

        /* what the handler needed is copied out; a long stream keeps no large body */
        http_request_drop_body(req);

        j->req = req;
        j->task = __atomic_fetch_add(&sim_state.task_counter, 1, __ATOMIC_SEQ_CST);
        j->slot = infer_n_slots() - 1 - (int) (j->task % (unsigned) infer_n_slots());
        j->created = (long long) time(NULL);
        infer_make_id(j->id, sizeof(j->id), "chatcmpl-");
        j->text = strdup("");
        j->reasoning = strdup("");
        if (!j->text || !j->reasoning) {
                infer_job_free(j);
                return MHD_NO;
        }

        if (sim_config.embedding) {
                /* an embedding context computes no logits: the task fails at once */
                static const char msg[] =
                        "the current context does not support logits "
                        "computation. skipping";

                SRV_ERR("send_error", "task id = %u, error: %s", j->task, msg);
                infer_job_free(j);
                return infer_reply_error(req, 500, msg, "server_error");
        }
        if (j->n_prompt > infer_n_ctx_slot()) {
                r = infer_exceeds_context(req, j);
                infer_job_free(j);
                return r;
        }

        infer_params_of(j, &params);
        slot = slots_acquire(&params, j->task, j->n_prompt);
        if (slot >= 0) {
                j->slot = slot;
                j->slot_held = true;
        }
        j->acquired = true;
        infer_log_start(j);
        j->t_start = now_usec(CLOCK_MONOTONIC);

        if (sim_config.error_after_tokens == 0 ||
            (sim_config.error_while && access(sim_config.error_while, F_OK) == 0)) {
                /* the first result is an error: llama-server answers it like any error */
                body = infer_injected_error_body(j);
                SRV_ERR("send_error", "task id = %u, error: %s", j->task, body ? body : "");
                r = body ? http_reply_json(req, 500, body) : MHD_NO;
                free(body);
                infer_release(j);
                infer_job_free(j);
                return r;
        }

        if (j->stream) {
                j->lock = lockstep_new();
                /* the chat API's first chunk (the role) leaves before the first token */
                j->step = j->api == INFER_OAI_CHAT ? INFER_STEP_ROLE : INFER_STEP_TOKENS;
                return http_reply_stream(req, infer_stream_read, j, infer_stream_free);
        }

        while (j->n_decoded < j->n_predict && !infer_eos(j)) {
                int f = infer_check_faults(j);

                if (f > 0) {
                        /* a non-streamed request gets the error as its answer */
                        body = infer_injected_error_body(j);
                        SRV_ERR("send_error", "task id = %u, error: %s", j->task, body ? body : "");
                        r = body ? http_reply_json(req, 500, body) : MHD_NO;
                        free(body);
                        infer_release(j);
                        infer_job_free(j);
                        return r;
                }
                if (f < 0 || infer_next_token(j, &word, &kind) < 0) {
                        infer_release(j);
                        infer_job_free(j);
                        return MHD_NO;
                }
                /* counted as they would go out; the whole answer goes at the end */
                req->tokens_sent += kind != INFER_HIDDEN;
        }
        j->t_end = now_usec(CLOCK_MONOTONIC);
        infer_log_end(j);
        infer_release(j);

        switch (j->api) {
        case INFER_NATIVE:
                o = infer_native_final(j);
                break;
        case INFER_OAI_COMPLETION:
                o = infer_oai_completion_object(j, NULL);
                break;
        case INFER_OAI_CHAT:
                o = infer_chat_final(j);
                break;
        case INFER_ANTHROPIC:
        case INFER_OAI_RESP:
                o = apis_final_object(j);
                break;
        }
        body = infer_print(o);
        r = body ? http_reply_json(req, 200, body) : MHD_NO;
        free(body);
        infer_job_free(j);
        return r;
}

int infer_default_n_predict(int requested)
{
        if (requested >= 0) {
                return requested;
        }
        return sim_config.n_predict > 0 ? sim_config.n_predict : INFER_DEFAULT_N_PREDICT;
}

struct infer_job *infer_job_new(struct http_request *req, enum infer_api api, const cJSON *body,
                                enum MHD_Result *ret_result)
{
        const cJSON *opts, *temp;
        struct infer_job *j;
        int n;

        if (!infer_check_fields(req, body, api, ret_result)) {
                return NULL;
        }
        j = calloc(1, sizeof(*j));
        if (!j) {
                *ret_result = MHD_NO;
                return NULL;
        }
        j->api = api;
        j->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream"));
        opts = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
        j->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(opts, "include_usage"));
        temp = cJSON_GetObjectItemCaseSensitive(body, "temperature");
        j->temperature = cJSON_IsNumber(temp) ? temp->valuedouble : 0.8;
        /* the task's format: the request's, else the server's, else what "auto" becomes */
        j->reasoning_format = "deepseek";
        if (sim_config.reasoning_format && streq(sim_config.reasoning_format, "none")) {
                j->reasoning_format = "none";
        }

        /* as params_from_json_cmpl(): n_predict wins over max_completion_tokens, which wins
         * over max_tokens, then the -n default */
        n = infer_json_int(body, "n_predict",
                           infer_json_int(body, "max_completion_tokens",
                                          infer_json_int(body, "max_tokens", -1)));
        j->n_predict = infer_default_n_predict(n);
        return j;
}

static bool infer_is_deepseek(const char *format)
{
        return format && (streq(format, "deepseek") || streq(format, "deepseek-legacy"));
}

/*
 * Whether a chat answer thinks: --reasoning-format deepseek, or the request's own
 * "reasoning_format" (which "auto" leaves to the server); off with "none", with
 * chat_template_kwargs.enable_thinking false, or with --reasoning-budget 0.
 */
void infer_setup_thinking(struct infer_job *j, const cJSON *body, int request_budget)
{
        const cJSON *format = cJSON_GetObjectItemCaseSensitive(body, "reasoning_format");
        const cJSON *kwargs = cJSON_GetObjectItemCaseSensitive(body, "chat_template_kwargs");
        const cJSON *enable = cJSON_GetObjectItemCaseSensitive(kwargs, "enable_thinking");
        int budget =
                sim_config.reasoning_budget >= 0 ? sim_config.reasoning_budget : request_budget;

        j->think = infer_is_deepseek(sim_config.reasoning_format);
        if (cJSON_IsString(format) && !streq(format->valuestring, "auto")) {
                j->think = infer_is_deepseek(format->valuestring);
                j->reasoning_format = infer_is_deepseek(format->valuestring) ? "deepseek" : "none";
        }
        if (cJSON_IsFalse(enable) || budget == 0 || j->n_predict < 2) {
                j->think = false;
        }
        if (!j->think) {
                return;
        }
        /* with a budget of N, N - 1 reasoning tokens and the forced end of the thinking, as
         * the recorded --reasoning-budget 3 answer has */
        j->n_think = budget > 0 ? budget - 1 : j->n_predict / 2;
        if (j->n_think > j->n_predict - 1) {
                j->n_think = j->n_predict - 1;
        }
}

enum MHD_Result infer_completion(struct http_request *req)
{
        enum MHD_Result r = MHD_NO;
        cJSON *body = infer_body(req, &r);
        const cJSON *prompt;
        struct infer_job *j;

        if (!body) {
                return r;
        }
        prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
        if (!cJSON_IsObject(body) || !prompt) {
                return infer_error(req, 400,
                                   "[json.exception.out_of_range.403] key 'prompt' not found",
                                   "invalid_request_error");
        }
        j = infer_job_new(req, INFER_NATIVE, body, &r);
        if (!j) {
                return r;
        }
        if (cJSON_IsString(prompt)) {
                j->prompt = strdup(prompt->valuestring);
                j->n_prompt = tokens_count_words(prompt->valuestring);
        }
        if (j->n_prompt < 1) {
                j->n_prompt = 1;
        }
        return infer_run(req, j);
}

enum MHD_Result infer_oai_completion(struct http_request *req)
{
        enum MHD_Result r = MHD_NO;
        cJSON *body = infer_body(req, &r);
        const cJSON *prompt;
        struct infer_job *j;

        if (!body) {
                return r;
        }
        prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
        if (!cJSON_IsObject(body) || !prompt) {
                return infer_error(req, 500, "\"prompt\" is required", "server_error");
        }
        j = infer_job_new(req, INFER_OAI_COMPLETION, body, &r);
        if (!j) {
                return r;
        }
        j->n_prompt = cJSON_IsString(prompt) ? tokens_count_words(prompt->valuestring) : 1;
        if (j->n_prompt < 1) {
                j->n_prompt = 1;
        }
        return infer_run(req, j);
}

enum MHD_Result infer_chat(struct http_request *req)
{
        enum MHD_Result r = MHD_NO;
        cJSON *body = infer_body(req, &r);
        const cJSON *messages;
        struct infer_job *j;

        if (!body) {
                return r;
        }
        messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
        if (!cJSON_IsObject(body) || !messages) {
                return infer_error(req, 400, "'messages' is required", "invalid_request_error");
        }
        if (!cJSON_IsArray(messages)) {
                return infer_error(req, 400, "Expected 'messages' to be an array",
                                   "invalid_request_error");
        }
        j = infer_job_new(req, INFER_OAI_CHAT, body, &r);
        if (!j) {
                return r;
        }
        infer_setup_thinking(j, body, -1);
        j->canned = canned_find(messages);
        if (j->canned && j->canned->n_reasoning > 0) {
                j->think = true; /* the answer has reasoning_content */
        }
        j->n_prompt = infer_count_chat_prompt(messages);
        if (j->n_prompt < 1) {
                j->n_prompt = 1;
        }
        return infer_run(req, j);
}

/* FIM with Qwen2's tokens, in the repo-level layout of format_prompt_infill(). */
static char *infer_infill_prompt(const cJSON *body, int *ret_n_prompt)
{
        const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(body, "input_prefix");
        const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(body, "input_suffix");
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
        const cJSON *extra = cJSON_GetObjectItemCaseSensitive(body, "input_extra");
        const cJSON *chunk;
        const char *pre = cJSON_IsString(prefix) ? prefix->valuestring : "";
        const char *suf = cJSON_IsString(suffix) ? suffix->valuestring : "";
        const char *mid = cJSON_IsString(prompt) ? prompt->valuestring : "";
        char *text = strdup("<|repo_name|>myproject\n"), *p;
        int n = 3 + tokens_count_words(pre) + tokens_count_words(suf) + tokens_count_words(mid);

        cJSON_ArrayForEach(chunk, extra) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(chunk, "text");
                const cJSON *f = cJSON_GetObjectItemCaseSensitive(chunk, "filename");

                if (!text ||
                    asprintf(&p, "%s<|file_sep|>%s\n%s", text,
                             cJSON_IsString(f) ? f->valuestring : "tmp", t->valuestring) < 0) {
                        free(text);
                        return NULL;
                }
                free(text);
                text = p;
                n += 2 + tokens_count_words(t->valuestring);
        }
        if (!text || asprintf(&p,
                              "%s<|file_sep|>filename\n<|fim_prefix|>%s%s<|fim_suffix|>%s"
                              "<|fim_middle|>",
                              text, pre, mid, suf) < 0) {
                free(text);
                return NULL;
        }
        free(text);
        *ret_n_prompt = n;
        return p;
}

enum MHD_Result infer_infill(struct http_request *req)
{
        enum MHD_Result r = MHD_NO;
        const cJSON *extra, *chunk;
        struct infer_job *j;
        cJSON *body;

        if (sim_config.embedding) {
                /* the recorded embedding model (BERT) has no FIM tokens */
                return infer_reply_error(req, 501,
                                         "Infill is not supported by this model: prefix token "
                                         "is missing. suffix token is missing. middle token is "
                                         "missing. ",
                                         "not_supported_error");
        }
        body = infer_body(req, &r);
        if (!body) {
                return r;
        }
        extra = cJSON_GetObjectItemCaseSensitive(body, "input_extra");
        if (extra && !cJSON_IsArray(extra)) {
                return infer_reply_error(req, 400,
                                         "\"input_extra\" must be an array of {\"filename\": "
                                         "string, \"text\": string}",
                                         "invalid_request_error");
        }
        cJSON_ArrayForEach(chunk, extra) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(chunk, "text");
                const cJSON *f = cJSON_GetObjectItemCaseSensitive(chunk, "filename");

                if (!cJSON_IsString(t)) {
                        return infer_reply_error(req, 400,
                                                 "extra_context chunk must contain a \"text\" "
                                                 "field with a string value",
                                                 "invalid_request_error");
                }
                if (f && !cJSON_IsString(f)) {
                        return infer_reply_error(req, 400,
                                                 "extra_context chunk's \"filename\" field must "
                                                 "be a string",
                                                 "invalid_request_error");
                }
        }
        /* llama-server notes a missing prefix or suffix but goes on, and then data.at() throws
         * out of the handler: ex_wrapper's 500 is what the client gets */
        if (!cJSON_GetObjectItemCaseSensitive(body, "input_prefix")) {
                return infer_error(req, 500,
                                   "[json.exception.out_of_range.403] key 'input_prefix' not found",
                                   "server_error");
        }
        if (!cJSON_GetObjectItemCaseSensitive(body, "input_suffix")) {
                return infer_error(req, 500,
                                   "[json.exception.out_of_range.403] key 'input_suffix' not found",
                                   "server_error");
        }
        j = infer_job_new(req, INFER_NATIVE, body, &r);
        if (!j) {
                return r;
        }
        j->prompt = infer_infill_prompt(body, &j->n_prompt);
        if (!j->prompt) {
                infer_job_free(j);
                return MHD_NO;
        }
        return infer_run(req, j);
}
