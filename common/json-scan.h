/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Checks that a request body is one JSON object and reads the two fields the proxy routes by,
 * without building a tree: bodies can be many megabytes (cJSON would take ~32 times that) and
 * are forwarded byte for byte anyway. Nesting is capped.
 */

#define JSON_SCAN_DEPTH_MAX 128

typedef struct JsonScan {
        char *model; /* top-level "model" (unescaped), or NULL */
        int stream;  /* top-level "stream": 1 true, 0 false or absent */
        size_t error_offset;
        const char *error; /* static text, when the body is refused */
} JsonScan;

/* 0, or -EINVAL with error and error_offset set (malformed, not an object, too deep,
 * "model" twice or not a string). */
int json_scan_request(const char *buf, size_t len, JsonScan *ret);
void json_scan_done(JsonScan *s);

/*
 * What a child's answer says it cost: the top-level "usage" and "timings" members of a JSON
 * answer, or of each event of a stream (the last one that has them wins), and the "usage" of a
 * top-level "response" or "message" object (a Responses or Messages event wraps it there), read as the bytes go
 * through, in pieces of any size, without allocating and without keeping the body. Only numbers
 * are taken; anything else is skipped. A stream's events are told apart by their line ends.
 */
typedef enum JsonAnswerField {
        JSON_ANSWER_PROMPT_TOKENS,     /* usage.prompt_tokens (or input_tokens) */
        JSON_ANSWER_COMPLETION_TOKENS, /* usage.completion_tokens (or output_tokens) */
        JSON_ANSWER_CACHED_TOKENS,     /* usage.prompt_tokens_details.cached_tokens */
        JSON_ANSWER_PROMPT_N,          /* timings.prompt_n: prompt tokens computed */
        JSON_ANSWER_CACHE_N,           /* timings.cache_n: prompt tokens from the cache */
        JSON_ANSWER_PREDICTED_N,       /* timings.predicted_n */
        JSON_ANSWER_PREDICTED_PER_SECOND,
        _JSON_ANSWER_FIELD_MAX,
} JsonAnswerField;

typedef struct JsonAnswer {
        double values[_JSON_ANSWER_FIELD_MAX]; /* -1: not seen */
        /* The scanner's state between pieces. */
        bool sse;
        bool in_string, escape, in_key, expect_key;
        uint8_t depth;
        uint64_t arrays; /* bit d: the container at depth d+1 is an array */
        int8_t member;   /* at depth 1: the top-level member being read (1 usage, 2 timings) */
        uint8_t base;    /* 1 inside a top-level "response" or "message" object, whose own
                          * usage counts as the answer's (Responses, Messages) */
        bool details;    /* inside usage.prompt_tokens_details */
        int8_t field;    /* the field the value being read goes to, or -1 */
        char key[32];
        uint8_t key_len;
        char num[32];
        uint8_t num_len;
} JsonAnswer;

void json_answer_init(JsonAnswer *a, bool sse);
void json_answer_feed(JsonAnswer *a, const char *p, size_t n);

/* The tokens of the answer: prompt (cached included), cached and completion, -1 where unknown;
 * and tokens per second of the generation (-1 unknown). */
typedef struct JsonAnswerTokens {
        int64_t prompt, cached, completion;
        double per_second;
} JsonAnswerTokens;
JsonAnswerTokens json_answer_tokens(const JsonAnswer *a);
