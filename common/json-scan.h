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
