/* SPDX-License-Identifier: MIT */
#include <math.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim-json.h"

/* nlohmann's form of v into buf; false when v is not finite (nlohmann writes null) */
static bool json_format_double(double v, char *buf, size_t size)
{
        if (!isfinite(v)) {
                return false;
        }
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, size, "%.*g", prec, v);
                if (strtod(buf, NULL) != v) {
                        continue;
                }
                /* %g turns 6000 into 6e+03; nlohmann keeps such numbers positional */
                if (strchr(buf, 'e') && fabs(v) >= 1e-5 && fabs(v) < 1e15) {
                        int exp10 = (int) floor(log10(fabs(v)));
                        int decimals = prec - 1 - exp10;

                        snprintf(buf, size, "%.*f", decimals > 0 ? decimals : 0, v);
                }
                break;
        }
        if (!strpbrk(buf, ".eE")) {
                strcat(buf, ".0");
        }
        return true;
}

void json_add_double(cJSON *o, const char *name, double v)
{
        char buf[64];

        if (!json_format_double(v, buf, sizeof(buf))) {
                cJSON_AddNullToObject(o, name);
                return;
        }
        cJSON_AddRawToObject(o, name, buf);
}

cJSON *json_create_double(double v)
{
        char buf[64];

        if (!json_format_double(v, buf, sizeof(buf))) {
                return cJSON_CreateNull();
        }
        return cJSON_CreateRaw(buf);
}

char *json_error_body(int code, const char *message, const char *type)
{
        cJSON *root = cJSON_CreateObject();
        cJSON *err = cJSON_AddObjectToObject(root, "error");
        char *s;

        cJSON_AddNumberToObject(err, "code", code);
        cJSON_AddStringToObject(err, "message", message);
        cJSON_AddStringToObject(err, "type", type);
        s = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        return s;
}

/* Whether the parser stood where an object's key must come (after "{" or an object's ","):
 * nlohmann names that context and what it expected there. */
static bool json_expects_key(const char *body, size_t off)
{
        char stack[64];
        size_t depth = 0;
        bool in_string = false, escaped = false;
        char prev = 0;

        for (size_t i = 0; i < off; i++) {
                char c = body[i];

                if (in_string) {
                        escaped = !escaped && c == '\\';
                        in_string = escaped || c != '"';
                        if (!in_string) {
                                prev = c;
                        }
                        continue;
                }
                if (c == '"') {
                        in_string = true;
                } else if ((c == '{' || c == '[') && depth < sizeof(stack)) {
                        stack[depth++] = c;
                } else if ((c == '}' || c == ']') && depth > 0) {
                        depth--;
                }
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                        prev = c;
                }
        }
        return depth > 0 && stack[depth - 1] == '{' && (prev == '{' || prev == ',');
}

char *json_parse_error_message(const char *body, size_t len, size_t where)
{
        size_t off = where < len ? where : len, line = 1, column = 0, start, end;
        char last[16];
        char *msg;

        for (size_t i = 0; i < off && i < len; i++) {
                if (body[i] == '\n') {
                        line++;
                        column = 0;
                } else {
                        column++;
                }
        }
        if (len == 0) {
                return strdup(
                        "[json.exception.parse_error.101] parse error at line 1, column 1: "
                        "attempting to parse an empty input; check that your input string "
                        "or stream contains the expected JSON");
        }
        /* The context is where the offending literal began ("{no": at the "n"). */
        size_t token = off;
        while (token > 0 && isalnum((unsigned char) body[token - 1])) {
                token--;
        }
        bool key = json_expects_key(body, token);
        /* nlohmann counts the offending character too, and shows the text it read up to it */
        end = off < len ? off + 1 : len;
        start = end > sizeof(last) - 1 ? end - (sizeof(last) - 1) : 0;
        snprintf(last, sizeof(last), "%.*s", (int) (end - start), body + start);
        if (asprintf(&msg,
                     "[json.exception.parse_error.101] parse error at line %zu, column %zu: "
                     "syntax error while parsing %s - invalid literal; last read: '%s'%s",
                     line, column + 1, key ? "object key" : "value", last,
                     key ? "; expected string literal" : "") < 0) {
                return NULL;
        }
        return msg;
}
