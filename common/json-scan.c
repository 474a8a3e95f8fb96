/* SPDX-License-Identifier: MIT */
#include <ctype.h>

#include "json-scan.h"

typedef struct Scanner {
        const char *p, *start, *end;
        const char *error;
} Scanner;

static bool fail(Scanner *s, const char *error)
{
        if (!s->error) {
                s->error = error;
        }
        return false;
}

static void skip_ws(Scanner *s)
{
        while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) {
                s->p++;
        }
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9') {
                return c - '0';
        }
        c = (char) tolower((unsigned char) c);
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A string; when out is set, its unescaped UTF-8 (NUL-terminated, allocated). */
static bool scan_string(Scanner *s, char **out)
{
        const char *begin;
        char *o = NULL;
        size_t n = 0;

        if (s->p >= s->end || *s->p != '"') {
                return fail(s, "expected a string");
        }
        begin = ++s->p;
        if (out) {
                /* The unescaped string is no longer than the raw one: find where that ends. */
                const char *q = begin;
                while (q < s->end && *q != '"') {
                        q += *q == '\\' ? 2 : 1;
                }
                o = malloc((size_t) (MIN(q, s->end) - begin) + 4);
                if (!o) {
                        return fail(s, "out of memory");
                }
        }
        while (s->p < s->end && *s->p != '"') {
                unsigned char c = (unsigned char) *s->p;

                if (c < 0x20) {
                        free(o);
                        return fail(s, "control character in a string");
                }
                if (c != '\\') {
                        if (o) {
                                o[n++] = (char) c;
                        }
                        s->p++;
                        continue;
                }
                if (++s->p >= s->end) {
                        break;
                }
                char e = *s->p++;
                const char *simple = strchr("\"\\/bfnrt", e);
                if (e != 'u' && (!simple || e == '\0')) {
                        free(o);
                        s->p--;
                        return fail(s, "bad escape in a string");
                }
                if (e != 'u') {
                        if (o) {
                                static const char map[] = "\"\\/\b\f\n\r\t";
                                o[n++] = map[simple - "\"\\/bfnrt"];
                        }
                        continue;
                }
                unsigned cp = 0;
                for (int i = 0; i < 4; i++) {
                        int h = s->p < s->end ? hexval(*s->p) : -1;
                        if (h < 0) {
                                free(o);
                                return fail(s, "bad \\u escape in a string");
                        }
                        cp = cp * 16 + (unsigned) h;
                        s->p++;
                }
                if (o && cp == 0) {
                        /* A C string would end there, and "qwen\u0000x" would be read as
                         * "qwen" while llama-server reads it whole: refused. */
                        free(o);
                        s->p -= 6;
                        return fail(s, "\\u0000 in a key or in \"model\"");
                }
                if (o) {
                        /* Enough for model names; surrogate pairs become two 3-byte forms. */
                        if (cp < 0x80) {
                                o[n++] = (char) cp;
                        } else if (cp < 0x800) {
                                o[n++] = (char) (0xc0 | (cp >> 6));
                                o[n++] = (char) (0x80 | (cp & 0x3f));
                        } else {
                                o[n++] = (char) (0xe0 | (cp >> 12));
                                o[n++] = (char) (0x80 | ((cp >> 6) & 0x3f));
                                o[n++] = (char) (0x80 | (cp & 0x3f));
                        }
                }
        }
        if (s->p >= s->end) {
                free(o);
                return fail(s, "unterminated string");
        }
        s->p++;
        if (o) {
                o[n] = '\0';
                *out = o;
        }
        return true;
}

static bool scan_number(Scanner *s)
{
        const char *b = s->p;

        if (s->p < s->end && *s->p == '-') {
                s->p++;
        }
        if (s->p >= s->end || !isdigit((unsigned char) *s->p)) {
                return fail(s, "bad number");
        }
        if (*s->p == '0') {
                s->p++;
        } else {
                while (s->p < s->end && isdigit((unsigned char) *s->p)) {
                        s->p++;
                }
        }
        if (s->p < s->end && *s->p == '.') {
                s->p++;
                if (s->p >= s->end || !isdigit((unsigned char) *s->p)) {
                        return fail(s, "bad number");
                }
                while (s->p < s->end && isdigit((unsigned char) *s->p)) {
                        s->p++;
                }
        }
        if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
                s->p++;
                if (s->p < s->end && (*s->p == '+' || *s->p == '-')) {
                        s->p++;
                }
                if (s->p >= s->end || !isdigit((unsigned char) *s->p)) {
                        return fail(s, "bad number");
                }
                while (s->p < s->end && isdigit((unsigned char) *s->p)) {
                        s->p++;
                }
        }
        return s->p > b;
}

static bool scan_literal(Scanner *s, const char *lit)
{
        size_t n = strlen(lit);

        if ((size_t) (s->end - s->p) < n || memcmp(s->p, lit, n) != 0) {
                return fail(s, "unexpected character");
        }
        s->p += n;
        return true;
}

static bool scan_value(Scanner *s, unsigned depth);

static bool scan_container(Scanner *s, unsigned depth, char close, JsonScan *top)
{
        bool first = true;

        if (depth >= JSON_SCAN_DEPTH_MAX) {
                return fail(s, "nested too deeply");
        }
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == close) {
                s->p++;
                return true;
        }
        for (;;) {
                const char *key_at = s->p;
                char *key = NULL;

                skip_ws(s);
                if (close == '}') {
                        if (!scan_string(s, top ? &key : NULL)) {
                                return false;
                        }
                        skip_ws(s);
                        if (s->p >= s->end || *s->p != ':') {
                                free(key);
                                return fail(s, "expected ':'");
                        }
                        s->p++;
                        skip_ws(s);
                }
                if (key && streq(key, "model")) {
                        free(key);
                        if (top->model) {
                                s->p = key_at;
                                return fail(s, "\"model\" given twice");
                        }
                        if (s->p < s->end && *s->p == 'n') {
                                if (!scan_literal(s, "null")) {
                                        return false;
                                }
                        } else if (s->p >= s->end || *s->p != '"') {
                                return fail(s, "\"model\" is not a string");
                        } else if (!scan_string(s, &top->model)) {
                                return false; /* scan_string() said why */
                        }
                } else if (key && streq(key, "stream")) {
                        free(key);
                        if (s->p < s->end && *s->p == 't') {
                                top->stream = 1;
                        }
                        if (!scan_value(s, depth + 1)) {
                                return false;
                        }
                } else {
                        free(key);
                        if (!scan_value(s, depth + 1)) {
                                return false;
                        }
                }
                skip_ws(s);
                if (s->p < s->end && *s->p == ',') {
                        s->p++;
                        first = false;
                        continue;
                }
                if (s->p < s->end && *s->p == close) {
                        s->p++;
                        return true;
                }
                (void) first;
                return fail(s, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
}

static bool scan_value(Scanner *s, unsigned depth)
{
        skip_ws(s);
        if (s->p >= s->end) {
                return fail(s, "unexpected end of input");
        }
        switch (*s->p) {
        case '{':
                return scan_container(s, depth, '}', NULL);
        case '[':
                return scan_container(s, depth, ']', NULL);
        case '"':
                return scan_string(s, NULL);
        case 't':
                return scan_literal(s, "true");
        case 'f':
                return scan_literal(s, "false");
        case 'n':
                return scan_literal(s, "null");
        default:
                return scan_number(s);
        }
}

int json_scan_request(const char *buf, size_t len, JsonScan *ret)
{
        Scanner s = { .p = buf, .start = buf, .end = buf + len };
        JsonScan r = {};

        skip_ws(&s);
        if (s.p >= s.end || *s.p != '{') {
                fail(&s, s.p >= s.end ? "empty body" : "the body is not a JSON object");
        } else if (scan_container(&s, 0, '}', &r)) {
                skip_ws(&s);
                if (s.p < s.end) {
                        fail(&s, "data after the JSON object");
                }
        }
        if (s.error) {
                free(r.model);
                *ret = (JsonScan) { .error = s.error, .error_offset = (size_t) (s.p - s.start) };
                return -EINVAL;
        }
        *ret = r;
        return 0;
}

void json_scan_done(JsonScan *s)
{
        free(s->model);
        s->model = NULL;
}
