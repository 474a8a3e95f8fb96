/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/* Parsers for the value syntaxes of llama-generate.conf. They return 0 or -EINVAL/-ERANGE and
 * never log. */

/* "true/false/yes/no/on/off/1/0" */
int parse_boolean(const char *s);
/* "600", "1.5", "1.5s", "250ms", "10min", "2h"; a bare number is seconds. */
int parse_duration(const char *s, uint64_t *ret_usec);
int parse_unsigned(const char *s, unsigned max, unsigned *ret);
/* A finite decimal number from min to max ("0.6", "1e-3"). */
int parse_double(const char *s, double min, double max, double *ret);
/* Decimal digits only (no sign, no space), up to UINT64_MAX. */
int parse_u64(const char *s, uint64_t *ret);
/* "1024", "64K", "32M", "1G", "2T" (powers of 1024), at most 1P. */
int parse_size(const char *s, uint64_t *ret);
/* 1..65535 */
int parse_port(const char *s, uint16_t *ret);
/* "host:port", "[v6]:port" or ":port" (all addresses) or a bare "port" (loopback). */
int parse_listen_address(const char *s, char **ret_host, uint16_t *ret_port);
/* A model alias: 1 to 256 of the letters, digits and . _ - : / + @ = that model names are made
 * of in the wild ("qwen2.5-coder:32b", "Qwen/Qwen3-8B", "claude-3-5-sonnet-20241022"). Nothing
 * else: an alias ends up in logs, in JSON and in the haproxy.cfg llmctl fleet writes, and must
 * not mean anything in any of them. */
bool alias_valid(const char *s);

/* Formats a duration the way we print them: "1.5s", "250ms", "10min". */
const char *format_duration(char *buf, size_t size, uint64_t usec);
/* Formats a size the way parse_size() reads it: "1K", "32M"; bytes that are no whole unit,
 * "1536", as they are. */
const char *format_size(char *buf, size_t size, uint64_t bytes);
