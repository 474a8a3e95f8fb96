/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

#include "sim-http.h"

/*
 * The simulator's tokenizer: one token per word, a word being a run of blanks and the run of
 * other characters after it ("Hello", " world"), as a BPE vocabulary mostly cuts English. A
 * token's id is a hash of its text within n_vocab (50261); the texts met are remembered (up to
 * a limit), so /detokenize gives back what /tokenize and generation produced.
 */

#define TOKENS_N_VOCAB 50261

/* How many tokens the text is. */
int tokens_count_words(const char *s);

/* The id of one token's text. */
int32_t tokens_id(const char *piece, size_t len);

enum MHD_Result tokens_tokenize(struct http_request *req);       /* POST /tokenize */
enum MHD_Result tokens_detokenize(struct http_request *req);     /* POST /detokenize */
enum MHD_Result tokens_apply_template(struct http_request *req); /* POST /apply-template */

/*
 * The prompt the model's chat template (ChatML, as the recorded model's) makes of messages,
 * with the assistant's turn opened. Sets *ret_error to a static message when messages are not
 * an array of objects.
 */
char *tokens_chat_prompt(const cJSON *messages, const char **ret_error);
