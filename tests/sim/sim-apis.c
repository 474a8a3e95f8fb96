/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "sim-apis.h"
#include "sim-json.h"
#include "sim-log.h"
#include "sim-tokens.h"

/*
 * How a stream goes, per API (llama-server sends the first line of each with the first token,
 * and the end's lines with the final result):
 *
 *   Messages:  message_start, content_block_start (0: thinking, when it thinks),
 *              content_block_delta (thinking_delta)..., content_block_start (text, after the
 *              thinking block if any), content_block_delta (text_delta)...,
 *              [content_block_delta (signature_delta), content_block_stop (thinking)],
 *              content_block_stop (text), message_delta (stop_reason), message_stop
 *   Responses: response.created, response.in_progress, [response.output_item.added (reasoning),
 *              response.reasoning_text.delta...], response.output_item.added (message),
 *              response.content_part.added, response.output_text.delta...,
 *              [response.output_item.done (reasoning)], response.output_text.done,
 *              response.content_part.done, response.output_item.done (message),
 *              response.completed (with the timings)
 *
 * A generation error ends a Messages stream with `event: error` whose data is the error object
 * itself ({"code","message","type"}); a Responses stream with `data: {"error":{...}}`, no event
 * name, as a chat stream. Neither ends with [DONE].
 */

/* ---- reading the requests ---- */

/* The words of a Messages content: a string, or the text of its blocks. */
static int apis_content_words(const cJSON *content)
{
        const cJSON *block;
        int n = 0;

        if (cJSON_IsString(content)) {
                return tokens_count_words(content->valuestring);
        }
        cJSON_ArrayForEach(block, (cJSON_IsArray(content) ? content : NULL)) {
                static const char *const keys[] = { "text", "thinking", "content" };

                for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                        const cJSON *v = cJSON_GetObjectItemCaseSensitive(block, keys[i]);

                        if (cJSON_IsString(v)) {
                                n += tokens_count_words(v->valuestring);
                        } else if (streq(keys[i], "content") && cJSON_IsArray(v)) {
                                n += apis_content_words(v); /* a tool_result's blocks */
                        }
                }
        }
        return n;
}

/*
 * The prompt's tokens of a Messages request, as convert_anthropic_to_oai() makes it a chat:
 * the system prompt (any non-null "system") is one message, each message another. Returns -1
 * when there are no "messages".
 */
static int apis_messages_prompt(const cJSON *body)
{
        const cJSON *system = cJSON_GetObjectItemCaseSensitive(body, "system");
        const cJSON *messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
        const cJSON *m;
        int n = 0;

        if (!cJSON_IsObject(body) || !messages) {
                return -1;
        }
        if (system && !cJSON_IsNull(system)) {
                n += 4 + apis_content_words(system);
        }
        cJSON_ArrayForEach(m, (cJSON_IsArray(messages) ? messages : NULL)) {
                n += 4 + apis_content_words(cJSON_GetObjectItemCaseSensitive(m, "content"));
        }
        return n;
}

/* convert_anthropic_to_oai() throws a std::runtime_error: ex_wrapper's 500 */
static enum MHD_Result apis_no_messages(struct http_request *req)
{
        return infer_error(req, 500, "'messages' is required", "server_error");
}

enum MHD_Result apis_count_tokens(struct http_request *req)
{
        enum MHD_Result r = MHD_NO;
        cJSON *body = infer_body(req, &r), *o;
        int n;

        if (!body) {
                return r;
        }
        n = apis_messages_prompt(body);
        if (n < 0) {
                return apis_no_messages(req);
        }
        o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "input_tokens", n > 0 ? n : 1);
        return infer_reply_json(req, o);
}

enum MHD_Result apis_messages(struct http_request *req)
{
        enum MHD_Result r = MHD_NO;
        cJSON *body = infer_body(req, &r);
        const cJSON *thinking;
        struct infer_job *j;
        int n, budget = -1;

        if (!body) {
                return r;
        }
        n = apis_messages_prompt(body);
        if (n < 0) {
                return apis_no_messages(req);
        }
        j = infer_job_new(req, INFER_ANTHROPIC, body, &r);
        if (!j) {
                return r;
        }
        /* only max_tokens reaches the task (llama-server: 4096 without it, here -n or 16) */
        j->n_predict = infer_default_n_predict(infer_json_int(body, "max_tokens", -1));
        /* "thinking": {"type": "enabled", "budget_tokens": N} is the thinking budget */
        thinking = cJSON_GetObjectItemCaseSensitive(body, "thinking");
        if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(thinking, "type")) &&
            streq(cJSON_GetObjectItemCaseSensitive(thinking, "type")->valuestring, "enabled")) {
                budget = infer_json_int(thinking, "budget_tokens", 10000);
        }
        /* the converted request has no reasoning_format nor chat_template_kwargs */
        infer_setup_thinking(j, NULL, budget);
        j->n_prompt = n > 0 ? n : 1;
        return infer_run(req, j);
}

static bool apis_is(const cJSON *o, const char *key, const char *value)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsString(v) && (!value || streq(v->valuestring, value));
}

static bool apis_is_array(const cJSON *o, const char *key)
{
        return cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, key));
}

static int apis_words(const cJSON *o, const char *key)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsString(v) ? tokens_count_words(v->valuestring) : 0;
}

/* One content part of an input message; NULL when it is fine, else the error. */
static const char *apis_input_part(const cJSON *part, int *n)
{
        if (apis_is(part, "type", "input_text")) {
                if (!cJSON_GetObjectItemCaseSensitive(part, "text")) {
                        return "'Input text' requires 'text'";
                }
                *n += apis_words(part, "text");
                return NULL;
        }
        if (apis_is(part, "type", "input_image")) {
                return cJSON_GetObjectItemCaseSensitive(part, "image_url")
                               ? NULL
                               : "'image_url' is required";
        }
        if (apis_is(part, "type", "input_file")) {
                return "'input_file' is not supported by llamacpp at this moment";
        }
        return "'type' must be one of 'input_text', 'input_image', or 'input_file'";
}

/*
 * One item of a Responses "input" list, by the rules of convert_responses_to_chatcmpl(): its
 * tokens are added to *n. NULL when it is fine, else the error. *assistant says whether the
 * last message is the assistant's, which the next assistant item joins.
 */
static const char *apis_input_item(const cJSON *item, bool *assistant, int *n)
{
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(item, "content");
        const cJSON *part;
        bool text = cJSON_IsString(content);
        const char *e;

        if ((text || cJSON_IsArray(content)) &&
            (apis_is(item, "role", "user") || apis_is(item, "role", "system") ||
             apis_is(item, "role", "developer"))) {
                *n += 4;
                if (text) {
                        *n += tokens_count_words(content->valuestring);
                }
                cJSON_ArrayForEach(part, (text ? NULL : content)) {
                        e = apis_input_part(part, n);
                        if (e) {
                                return e;
                        }
                }
                *assistant = false;
                return NULL;
        }
        if ((text || cJSON_IsArray(content)) && apis_is(item, "role", "assistant") &&
            apis_is(item, "type", "message")) {
                *n += *assistant ? 0 : 4;
                if (text) {
                        /* a string is an input_text part, which an output message refuses */
                        return "'type' must be 'output_text'";
                }
                cJSON_ArrayForEach(part, content) {
                        if (!apis_is(part, "type", "output_text")) {
                                return "'type' must be 'output_text'";
                        }
                        if (!apis_is(part, "text", NULL)) {
                                return "'Output text' requires 'text'";
                        }
                        *n += apis_words(part, "text");
                }
                *assistant = true;
                return NULL;
        }
        if (apis_is(item, "arguments", NULL) && apis_is(item, "call_id", NULL) &&
            apis_is(item, "name", NULL) && apis_is(item, "type", "function_call")) {
                *n += (*assistant ? 0 : 4) + apis_words(item, "arguments") + 1;
                *assistant = true;
                return NULL;
        }
        if (apis_is(item, "call_id", NULL) &&
            (apis_is(item, "output", NULL) || apis_is_array(item, "output")) &&
            apis_is(item, "type", "function_call_output")) {
                const cJSON *output = cJSON_GetObjectItemCaseSensitive(item, "output");

                *n += 4 + apis_words(item, "output");
                cJSON_ArrayForEach(part, (cJSON_IsArray(output) ? output : NULL)) {
                        if (!apis_is(part, "type", "input_text")) {
                                return "Output of tool call should be 'Input text'";
                        }
                        *n += apis_words(part, "text");
                }
                *assistant = false;
                return NULL;
        }
        if (apis_is_array(item, "summary") && apis_is(item, "type", "reasoning")) {
                if (!cJSON_IsArray(content)) {
                        return "item['content'] is not an array";
                }
                if (cJSON_GetArraySize(content) == 0) {
                        return "item['content'] is empty";
                }
                if (!apis_is(cJSON_GetArrayItem(content, 0), "text", NULL)) {
                        return "item['content']['text'] is not a string";
                }
                *n += (*assistant ? 0 : 4) + apis_words(cJSON_GetArrayItem(content, 0), "text");
                *assistant = true;
                return NULL;
        }
        return "Cannot determine type of 'item'";
}

/* The prompt's tokens of a Responses request; NULL when it is fine, else the error (a 400). */
static const char *apis_responses_prompt(const cJSON *body, int *ret_n)
{
        const cJSON *input = cJSON_GetObjectItemCaseSensitive(body, "input");
        const cJSON *item;
        bool assistant = false;
        const char *e;
        int n = 0;

        if (!cJSON_IsObject(body) || !input) {
                return "'input' is required";
        }
        if (apis_is(body, "previous_response_id", NULL) &&
            *cJSON_GetObjectItemCaseSensitive(body, "previous_response_id")->valuestring) {
                return "llama.cpp does not support 'previous_response_id'.";
        }
        if (cJSON_GetObjectItemCaseSensitive(body, "instructions")) {
                /* a system message; one that is not a string is empty */
                n += 4 + apis_words(body, "instructions");
        }
        if (cJSON_IsString(input)) {
                n += 4 + tokens_count_words(input->valuestring);
        } else if (cJSON_IsArray(input)) {
                cJSON_ArrayForEach(item, input) {
                        e = apis_input_item(item, &assistant, &n);
                        if (e) {
                                return e;
                        }
                }
        } else {
                return "'input' must be a string or array of objects";
        }
        if (cJSON_GetObjectItemCaseSensitive(body, "tools") && !apis_is_array(body, "tools")) {
                return "'tools' must be an array of objects";
        }
        *ret_n = n;
        return NULL;
}

enum MHD_Result apis_responses(struct http_request *req)
{
        enum MHD_Result r = MHD_NO;
        cJSON *body = infer_body(req, &r);
        struct infer_job *j;
        const char *e;
        int n = 0;

        if (!body) {
                return r;
        }
        e = apis_responses_prompt(body, &n);
        if (e) {
                return infer_error(req, 400, e, "invalid_request_error");
        }
        j = infer_job_new(req, INFER_OAI_RESP, body, &r);
        if (!j) {
                return r;
        }
        /* max_output_tokens becomes max_tokens; n_predict and max_completion_tokens still win */
        if (cJSON_GetObjectItemCaseSensitive(body, "max_output_tokens")) {
                j->n_predict = infer_default_n_predict(infer_json_int(
                        body, "n_predict",
                        infer_json_int(body, "max_completion_tokens",
                                       infer_json_int(body, "max_output_tokens", -1))));
        }
        infer_setup_thinking(j, body, infer_json_int(body, "thinking_budget_tokens", -1));
        infer_make_id(j->resp_id, sizeof(j->resp_id), "resp_");
        infer_make_id(j->msg_id, sizeof(j->msg_id), "msg_");
        infer_make_id(j->rs_id, sizeof(j->rs_id), "rs_");
        j->n_prompt = n > 0 ? n : 1;
        return infer_run(req, j);
}

/* ---- the answers, key for key as llama-server writes them ---- */

/* "event: NAME\ndata: JSON\n\n"; takes data. */
static char *apis_event(const char *name, cJSON *data)
{
        char *json = cJSON_PrintUnformatted(data), *s;

        cJSON_Delete(data);
        if (!json || asprintf(&s, "event: %s\ndata: %s\n\n", name, json) < 0) {
                s = NULL;
        }
        free(json);
        return s;
}

/* {"type": name}, the start of every event's data */
static cJSON *apis_data(const char *name)
{
        cJSON *o = cJSON_CreateObject();

        cJSON_AddStringToObject(o, "type", name);
        return o;
}

static int apis_push(struct infer_job *j, const char *name, cJSON *data, bool token)
{
        return infer_queue_push(j, apis_event(name, data), token);
}

/* -- Messages -- */

static cJSON *apis_messages_usage(const struct infer_job *j, int output_tokens)
{
        cJSON *u = cJSON_CreateObject();

        /* the simulator caches no prompt: every token of it is input */
        cJSON_AddNumberToObject(u, "cache_read_input_tokens", 0);
        cJSON_AddNumberToObject(u, "input_tokens", j->n_prompt);
        cJSON_AddNumberToObject(u, "output_tokens", output_tokens);
        return u;
}

/* The message object without its content: message_start's, and the answer's. */
static cJSON *apis_message(const struct infer_job *j, cJSON *content, bool final)
{
        cJSON *m = cJSON_CreateObject();

        cJSON_AddStringToObject(m, "id", j->id);
        cJSON_AddStringToObject(m, "type", "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddItemToObject(m, "content", content);
        cJSON_AddStringToObject(m, "model", infer_model_name());
        if (final) {
                cJSON_AddStringToObject(m, "stop_reason", "max_tokens");
        } else {
                cJSON_AddNullToObject(m, "stop_reason");
        }
        cJSON_AddNullToObject(m, "stop_sequence");
        cJSON_AddItemToObject(m, "usage", apis_messages_usage(j, final ? j->n_decoded : 0));
        return m;
}

/* A content block: {"type": type, type: text}, plus the thinking's empty signature */
static cJSON *apis_block(const char *type, const char *text, bool signature)
{
        cJSON *b = cJSON_CreateObject();

        cJSON_AddStringToObject(b, "type", type);
        cJSON_AddStringToObject(b, type, text);
        if (signature) {
                cJSON_AddStringToObject(b, "signature", "");
        }
        return b;
}

static int apis_block_event(struct infer_job *j, const char *name, int index, const char *key,
                            cJSON *item, bool token)
{
        cJSON *d = apis_data(name);

        cJSON_AddNumberToObject(d, "index", index);
        if (key) {
                cJSON_AddItemToObject(d, key, item);
        }
        return apis_push(j, name, d, token);
}

/* The delta of a content block: {"type": type, key: value} */
static cJSON *apis_delta(const char *type, const char *key, const char *value)
{
        cJSON *d = cJSON_CreateObject();

        cJSON_AddStringToObject(d, "type", type);
        cJSON_AddStringToObject(d, key, value);
        return d;
}

static int apis_messages_token(struct infer_job *j, bool reasoning, const char *word)
{
        /* the thinking block is 0; the text block follows it when there was thinking */
        int index = reasoning || j->reasoning_len == 0 ? 0 : 1;
        int r = 0;

        if (!j->started) {
                cJSON *d = apis_data("message_start");

                cJSON_AddItemToObject(d, "message", apis_message(j, cJSON_CreateArray(), false));
                r = apis_push(j, "message_start", d, false);
                j->started = true;
        }
        if (reasoning && !j->thinking_started && r == 0) {
                r = apis_block_event(j, "content_block_start", index, "content_block",
                                     apis_block("thinking", "", false), false);
                j->thinking_started = true;
        }
        if (!reasoning && !j->text_started && r == 0) {
                r = apis_block_event(j, "content_block_start", index, "content_block",
                                     apis_block("text", "", false), false);
                j->text_started = true;
        }
        if (r < 0) {
                return r;
        }
        return apis_block_event(j, "content_block_delta", index, "delta",
                                reasoning ? apis_delta("thinking_delta", "thinking", word)
                                          : apis_delta("text_delta", "text", word),
                                true);
}

static int apis_messages_final_events(struct infer_job *j)
{
        cJSON *d, *delta, *usage;
        int r = 0;

        if (j->reasoning_len > 0) {
                /* an empty signature: a local model signs nothing */
                r = apis_block_event(j, "content_block_delta", 0, "delta",
                                     apis_delta("signature_delta", "signature", ""), false);
                if (r == 0) {
                        r = apis_block_event(j, "content_block_stop", 0, NULL, NULL, false);
                }
        }
        if (j->text_len > 0 && r == 0) {
                r = apis_block_event(j, "content_block_stop", j->reasoning_len > 0 ? 1 : 0, NULL,
                                     NULL, false);
        }
        if (r < 0) {
                return r;
        }
        d = apis_data("message_delta");
        delta = cJSON_AddObjectToObject(d, "delta");
        cJSON_AddStringToObject(delta, "stop_reason", "max_tokens");
        cJSON_AddNullToObject(delta, "stop_sequence");
        usage = cJSON_AddObjectToObject(d, "usage");
        cJSON_AddNumberToObject(usage, "output_tokens", j->n_decoded);
        r = apis_push(j, "message_delta", d, false);
        if (r < 0) {
                return r;
        }
        return apis_push(j, "message_stop", apis_data("message_stop"), false);
}

static cJSON *apis_messages_final(const struct infer_job *j)
{
        cJSON *content = cJSON_CreateArray();

        if (j->reasoning_len > 0) {
                cJSON_AddItemToArray(content, apis_block("thinking", j->reasoning, true));
        }
        if (j->text_len > 0) {
                cJSON_AddItemToArray(content, apis_block("text", j->text, false));
        }
        return apis_message(j, content, true);
}

char *apis_messages_error_event(const struct infer_job *j)
{
        char msg[128];
        cJSON *e = cJSON_CreateObject();

        infer_injected_error_message(j, msg, sizeof(msg));
        cJSON_AddNumberToObject(e, "code", 500);
        cJSON_AddStringToObject(e, "message", msg);
        cJSON_AddStringToObject(e, "type", "server_error");
        return apis_event("error", e);
}

/* -- Responses -- */

/* response.created's and response.in_progress's short response object */
static cJSON *apis_response_stub(const struct infer_job *j)
{
        cJSON *o = cJSON_CreateObject();

        cJSON_AddStringToObject(o, "id", j->resp_id);
        cJSON_AddStringToObject(o, "object", "response");
        cJSON_AddStringToObject(o, "status", "in_progress");
        return o;
}

static cJSON *apis_response_usage(const struct infer_job *j)
{
        cJSON *u = cJSON_CreateObject(), *d;

        cJSON_AddNumberToObject(u, "input_tokens", j->n_prompt);
        cJSON_AddNumberToObject(u, "output_tokens", j->n_decoded);
        cJSON_AddNumberToObject(u, "total_tokens", j->n_prompt + j->n_decoded);
        d = cJSON_AddObjectToObject(u, "input_tokens_details");
        cJSON_AddNumberToObject(d, "cached_tokens", 0);
        return u;
}

/* A reasoning item; status NULL: none (as in the stream's output_item.done) */
static cJSON *apis_reasoning_item(const struct infer_job *j, bool with_text, const char *status)
{
        cJSON *o = cJSON_CreateObject(), *content;

        cJSON_AddStringToObject(o, "id", j->rs_id);
        cJSON_AddArrayToObject(o, "summary");
        cJSON_AddStringToObject(o, "type", "reasoning");
        content = cJSON_AddArrayToObject(o, "content");
        if (with_text) {
                cJSON *c = cJSON_CreateObject();

                cJSON_AddStringToObject(c, "text", j->reasoning);
                cJSON_AddStringToObject(c, "type", "reasoning_text");
                cJSON_AddItemToArray(content, c);
        }
        cJSON_AddStringToObject(o, "encrypted_content", "");
        if (status) {
                cJSON_AddStringToObject(o, "status", status);
        }
        return o;
}

static cJSON *apis_output_text(const struct infer_job *j)
{
        cJSON *p = cJSON_CreateObject();

        cJSON_AddStringToObject(p, "type", "output_text");
        cJSON_AddArrayToObject(p, "annotations");
        cJSON_AddArrayToObject(p, "logprobs");
        cJSON_AddStringToObject(p, "text", j->text);
        return p;
}

/* The message item as the stream's output_item.done and response.completed have it. */
static cJSON *apis_message_item_done(const struct infer_job *j)
{
        cJSON *o = cJSON_CreateObject(), *content;

        cJSON_AddStringToObject(o, "type", "message");
        cJSON_AddStringToObject(o, "status", "completed");
        cJSON_AddStringToObject(o, "id", j->msg_id);
        content = cJSON_AddArrayToObject(o, "content");
        cJSON_AddItemToArray(content, apis_output_text(j));
        cJSON_AddStringToObject(o, "role", "assistant");
        return o;
}

/* {"type": name, key: item} */
static int apis_push_item(struct infer_job *j, const char *name, const char *key, cJSON *item,
                          bool token)
{
        cJSON *d = apis_data(name);

        cJSON_AddItemToObject(d, key, item);
        return apis_push(j, name, d, token);
}

/* {"type": name, "item_id": id, key: value} */
static int apis_push_text(struct infer_job *j, const char *name, const char *id, const char *key,
                          const char *value, bool token)
{
        cJSON *d = apis_data(name);

        cJSON_AddStringToObject(d, "item_id", id);
        cJSON_AddStringToObject(d, key, value);
        return apis_push(j, name, d, token);
}

static int apis_responses_token(struct infer_job *j, bool reasoning, const char *word)
{
        cJSON *d;
        int r = 0;

        if (!j->started) {
                r = apis_push_item(j, "response.created", "response", apis_response_stub(j), false);
                if (r == 0) {
                        r = apis_push_item(j, "response.in_progress", "response",
                                           apis_response_stub(j), false);
                }
                j->started = true;
        }
        if (reasoning) {
                if (!j->thinking_started && r == 0) {
                        r = apis_push_item(j, "response.output_item.added", "item",
                                           apis_reasoning_item(j, false, "in_progress"), false);
                        j->thinking_started = true;
                }
                if (r < 0) {
                        return r;
                }
                /* this one has the delta before the item's id */
                d = apis_data("response.reasoning_text.delta");
                cJSON_AddStringToObject(d, "delta", word);
                cJSON_AddStringToObject(d, "item_id", j->rs_id);
                return apis_push(j, "response.reasoning_text.delta", d, true);
        }
        if (!j->text_started && r == 0) {
                cJSON *item = cJSON_CreateObject(), *part = cJSON_CreateObject();

                cJSON_AddArrayToObject(item, "content");
                cJSON_AddStringToObject(item, "id", j->msg_id);
                cJSON_AddStringToObject(item, "role", "assistant");
                cJSON_AddStringToObject(item, "status", "in_progress");
                cJSON_AddStringToObject(item, "type", "message");
                r = apis_push_item(j, "response.output_item.added", "item", item, false);
                cJSON_AddStringToObject(part, "type", "output_text");
                cJSON_AddStringToObject(part, "text", "");
                d = apis_data("response.content_part.added");
                cJSON_AddStringToObject(d, "item_id", j->msg_id);
                cJSON_AddItemToObject(d, "part", part);
                if (r == 0) {
                        r = apis_push(j, "response.content_part.added", d, false);
                } else {
                        cJSON_Delete(d);
                }
                j->text_started = true;
        }
        if (r < 0) {
                return r;
        }
        return apis_push_text(j, "response.output_text.delta", j->msg_id, "delta", word, true);
}

static int apis_responses_final_events(struct infer_job *j)
{
        cJSON *d, *resp, *output;
        int r = 0;

        if (j->reasoning_len > 0) {
                r = apis_push_item(j, "response.output_item.done", "item",
                                   apis_reasoning_item(j, true, NULL), false);
        }
        if (j->text_len > 0 && r == 0) {
                r = apis_push_text(j, "response.output_text.done", j->msg_id, "text", j->text,
                                   false);
                if (r == 0) {
                        d = apis_data("response.content_part.done");
                        cJSON_AddStringToObject(d, "item_id", j->msg_id);
                        cJSON_AddItemToObject(d, "part", apis_output_text(j));
                        r = apis_push(j, "response.content_part.done", d, false);
                }
                if (r == 0) {
                        r = apis_push_item(j, "response.output_item.done", "item",
                                           apis_message_item_done(j), false);
                }
        }
        if (r < 0) {
                return r;
        }
        d = apis_data("response.completed");
        resp = cJSON_AddObjectToObject(d, "response");
        cJSON_AddStringToObject(resp, "id", j->resp_id);
        cJSON_AddStringToObject(resp, "object", "response");
        cJSON_AddNumberToObject(resp, "created_at", (double) time(NULL));
        cJSON_AddStringToObject(resp, "status", "completed");
        cJSON_AddStringToObject(resp, "model", infer_model_name());
        output = cJSON_AddArrayToObject(resp, "output");
        if (j->reasoning_len > 0) {
                cJSON_AddItemToArray(output, apis_reasoning_item(j, true, NULL));
        }
        if (j->text_len > 0) {
                cJSON_AddItemToArray(output, apis_message_item_done(j));
        }
        cJSON_AddItemToObject(resp, "usage", apis_response_usage(j));
        cJSON_AddItemToObject(d, "timings", infer_timings(j));
        return apis_push(j, "response.completed", d, false);
}

/* to_json_oaicompat_resp(): its keys in alphabetical order */
static cJSON *apis_responses_final(const struct infer_job *j)
{
        cJSON *o = cJSON_CreateObject(), *output;
        double now = (double) time(NULL);

        cJSON_AddNumberToObject(o, "completed_at", now);
        cJSON_AddNumberToObject(o, "created_at", now);
        cJSON_AddStringToObject(o, "id", j->resp_id);
        cJSON_AddStringToObject(o, "model", infer_model_name());
        cJSON_AddStringToObject(o, "object", "response");
        output = cJSON_AddArrayToObject(o, "output");
        if (j->reasoning_len > 0) {
                cJSON_AddItemToArray(output, apis_reasoning_item(j, true, "completed"));
        }
        if (j->text_len > 0) {
                cJSON *m = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(m, "content");

                cJSON_AddItemToArray(content, apis_output_text(j));
                cJSON_AddStringToObject(m, "id", j->msg_id);
                cJSON_AddStringToObject(m, "role", "assistant");
                cJSON_AddStringToObject(m, "status", "completed");
                cJSON_AddStringToObject(m, "type", "message");
                cJSON_AddItemToArray(output, m);
        }
        cJSON_AddStringToObject(o, "status", "completed");
        cJSON_AddItemToObject(o, "usage", apis_response_usage(j));
        return o;
}

/* -- both -- */

int apis_token_events(struct infer_job *j, bool reasoning, const char *word)
{
        return j->api == INFER_ANTHROPIC ? apis_messages_token(j, reasoning, word)
                                         : apis_responses_token(j, reasoning, word);
}

int apis_final_events(struct infer_job *j)
{
        return j->api == INFER_ANTHROPIC ? apis_messages_final_events(j)
                                         : apis_responses_final_events(j);
}

cJSON *apis_final_object(const struct infer_job *j)
{
        return j->api == INFER_ANTHROPIC ? apis_messages_final(j) : apis_responses_final(j);
}
