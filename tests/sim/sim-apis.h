/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "sim-infer.h"

/*
 * The Anthropic Messages API and the OpenAI Responses API, in the shapes llama-server build
 * 11669 answers them (recorded in tests/sim/samples/). A request is turned into a job of
 * sim-infer.c, so every knob of a chat completion (token rate, lock-step, the faults, thinking,
 * the records) works for these too; this module reads the requests and makes the answers.
 *
 * Streams are SSE with an event name on each event ("event: NAME\ndata: {...}\n\n") and no
 * [DONE]. What llama-server sends at once (the first token with the events that open the
 * answer; the end's events) is queued and leaves one event at a time, one lock-step credit each.
 */

enum MHD_Result apis_messages(struct http_request *req);     /* POST /v1/messages */
enum MHD_Result apis_count_tokens(struct http_request *req); /* POST /v1/messages/count_tokens */
enum MHD_Result apis_responses(struct http_request *req);    /* POST /v1/responses, /responses */

/* Queues the events of a generated token (reasoning, else content) of a stream. */
int apis_token_events(struct infer_job *j, bool reasoning, const char *word);
/* Queues the events that end a stream. */
int apis_final_events(struct infer_job *j);
/* The answer of a request that is not streamed. */
cJSON *apis_final_object(const struct infer_job *j);
/* A Messages stream's `event: error` for LLAMA_SIM_ERROR_AFTER_TOKENS. */
char *apis_messages_error_event(const struct infer_job *j);
