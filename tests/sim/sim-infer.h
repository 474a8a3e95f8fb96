/* SPDX-License-Identifier: MIT */
#pragma once

#include "sim-http.h"

/*
 * The inference endpoints, answering in the shapes recorded from llama-server b10470: a fixed
 * sentence, one token every LLAMA_SIM_TOKEN_MS, n_predict/max_tokens tokens (default: -n, else
 * 16), finish_reason "length". Streams are SSE ("data: {...}\n\n"); the OpenAI ones end with
 * "data: [DONE]", the native /completion one does not.
 *
 * After the first SIGTERM llama-server stops generating but keeps the connection until the
 * client goes; so does this.
 */

enum MHD_Result infer_completion(struct http_request *req);     /* POST /completion(s) */
enum MHD_Result infer_oai_completion(struct http_request *req); /* POST /v1/completions */
enum MHD_Result infer_chat(struct http_request *req);           /* POST /v1/chat/completions */

/* The id the model is served under: the first --alias, else the -m path. */
const char *infer_model_name(void);
int infer_n_ctx(void);
int infer_n_slots(void);
