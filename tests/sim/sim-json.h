/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

/*
 * llama-server writes JSON with nlohmann::json: doubles in their shortest exact form and always
 * with a fraction ("2.0", not "2"), keys in insertion order. cJSON keeps the order but prints
 * integral doubles as integers, so doubles go in as raw text made here.
 */
void json_add_double(cJSON *o, const char *name, double v);
/* The same as an item of its own, for arrays. */
cJSON *json_create_double(double v);

/* The body of format_error_response(): {"error":{"code":..,"message":..,"type":..}}. */
char *json_error_body(int code, const char *message, const char *type);

/* "[json.exception.parse_error.101] ..." as nlohmann words a parse error, for a body that
 * cJSON refused at offset where. */
char *json_parse_error_message(const char *body, size_t len, size_t where);
