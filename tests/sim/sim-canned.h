/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

/*
 * Canned answers (LLAMA_SIM_CANNED=FILE): the file is a JSON array of
 *
 *   { "match": "TEXT", "content": "...", "reasoning_content": "..." }
 *
 * and a chat request whose messages contain TEXT is answered with that reasoning (as
 * reasoning_content deltas), then that content, split into tokens after each blank, instead
 * of the made-up words. The first entry that matches wins. The file is read on each request,
 * so a test may rewrite it between requests.
 */

struct canned {
        char **words; /* the tokens: reasoning ones, then content ones */
        int n_words;
        int n_reasoning;
};

/* The canned answer for messages, or NULL (no knob, no match, a bad file: said on stderr). */
struct canned *canned_find(const cJSON *messages);
void canned_free(struct canned *c);
