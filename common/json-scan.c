/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdlib.h>

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

/* ---- what an answer cost ---- */

void json_answer_init(JsonAnswer *a, bool sse)
{
        *a = (JsonAnswer) { .sse = sse, .field = -1 };
        for (size_t i = 0; i < _JSON_ANSWER_FIELD_MAX; i++) {
                a->values[i] = -1;
        }
}

static bool json_answer_key_is(const JsonAnswer *a, const char *k)
{
        return a->key_len == strlen(k) && memcmp(a->key, k, a->key_len) == 0;
}

/* A key and its ':' were read: where does the value go? */
static void json_answer_on_key(JsonAnswer *a)
{
        static const struct {
                int8_t member; /* 1 usage, 2 timings */
                const char *key;
                JsonAnswerField field;
        } fields[] = {
                { 1, "prompt_tokens", JSON_ANSWER_PROMPT_TOKENS },
                { 1, "input_tokens", JSON_ANSWER_PROMPT_TOKENS },
                { 1, "completion_tokens", JSON_ANSWER_COMPLETION_TOKENS },
                { 1, "output_tokens", JSON_ANSWER_COMPLETION_TOKENS },
                { 2, "prompt_n", JSON_ANSWER_PROMPT_N },
                { 2, "cache_n", JSON_ANSWER_CACHE_N },
                { 2, "predicted_n", JSON_ANSWER_PREDICTED_N },
                { 2, "predicted_per_second", JSON_ANSWER_PREDICTED_PER_SECOND },
        };

        a->field = -1;
        if (a->key_len >= sizeof(a->key)) {
                return; /* longer than any we read */
        }
        if (a->depth == 1 && a->base == 0 &&
            (json_answer_key_is(a, "response") || json_answer_key_is(a, "message"))) {
                a->field = -3; /* its object follows: its usage is the answer's */
                return;
        }
        if (a->depth == 1 + a->base) {
                a->member = json_answer_key_is(a, "usage")     ? 1
                            : json_answer_key_is(a, "timings") ? 2
                                                               : 0;
                return;
        }
        if (a->depth == 2 + a->base && a->member == 1 &&
            (json_answer_key_is(a, "prompt_tokens_details") ||
             json_answer_key_is(a, "input_tokens_details"))) {
                a->field = -2; /* its object follows */
                return;
        }
        if (a->depth == 3 + a->base && a->details && json_answer_key_is(a, "cached_tokens")) {
                a->field = JSON_ANSWER_CACHED_TOKENS;
                return;
        }
        if (a->depth != 2 + a->base) {
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                if (fields[i].member == a->member && json_answer_key_is(a, fields[i].key)) {
                        a->field = (int8_t) fields[i].field;
                        return;
                }
        }
}

/* A number may have ended: taken where it goes. */
static void json_answer_end_value(JsonAnswer *a)
{
        if (a->num_len == 0) {
                return;
        }
        if (a->field >= 0 && a->num_len < sizeof(a->num)) {
                char *end;
                double v;

                a->num[a->num_len] = '\0';
                v = strtod(a->num, &end);
                /* A count or a rate, never past what a 64-bit integer holds. */
                if (*end == '\0' && v >= 0 && v < 1e15) {
                        a->values[a->field] = v;
                }
        }
        a->num_len = 0;
        a->field = -1;
}

/* An event of a stream was cut short: what it said so far stays, the next starts afresh. */
static void json_answer_restart(JsonAnswer *a)
{
        double v[_JSON_ANSWER_FIELD_MAX];

        memcpy(v, a->values, sizeof(v));
        json_answer_init(a, true);
        memcpy(a->values, v, sizeof(v));
}

static bool json_answer_in_array(const JsonAnswer *a)
{
        return a->depth > 0 && a->depth <= 64 && (a->arrays >> (a->depth - 1)) & 1;
}

void json_answer_feed(JsonAnswer *a, const char *p, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                char c = p[i];

                if (a->in_string) {
                        if (a->escape) {
                                a->escape = false;
                                a->key_len = sizeof(a->key); /* an escaped key is none of ours */
                        } else if (c == '\\') {
                                a->escape = true;
                        } else if (c == '"') {
                                a->in_string = false;
                        } else if (a->in_key && a->key_len < sizeof(a->key)) {
                                a->key[a->key_len++] = c;
                        }
                        if (a->sse && (c == '\n' || c == '\r')) {
                                json_answer_restart(a); /* no JSON string holds a line end */
                        }
                        continue;
                }
                switch (c) {
                case '"':
                        if (a->depth == 0) {
                                break; /* between a stream's events */
                        }
                        a->in_string = true;
                        a->in_key = a->expect_key;
                        a->expect_key = false;
                        if (a->in_key) {
                                a->key_len = 0;
                        } else {
                                a->field = -1;
                        }
                        break;
                case ':':
                        if (a->in_key) {
                                a->in_key = false;
                                json_answer_on_key(a);
                        }
                        break;
                case '{':
                case '[':
                        if (a->depth == 2 + a->base && a->field == -2 && c == '{') {
                                a->details = true;
                        }
                        if (a->depth == 1 && a->field == -3 && c == '{') {
                                a->base = 1;
                        }
                        a->field = -1;
                        if (a->depth < UINT8_MAX) {
                                a->depth++;
                        }
                        if (a->depth <= 64) {
                                uint64_t bit = UINT64_C(1) << (a->depth - 1);
                                a->arrays = c == '[' ? a->arrays | bit : a->arrays & ~bit;
                        }
                        a->expect_key = c == '{';
                        break;
                case '}':
                case ']':
                        json_answer_end_value(a);
                        if (a->depth > 0) {
                                a->depth--;
                        }
                        if (a->depth < 3 + a->base) {
                                a->details = false;
                        }
                        if (a->depth < 2 + a->base) {
                                a->member = 0; /* the end of usage or timings */
                        }
                        if (a->depth < 2) {
                                a->base = 0; /* the end of "response" or "message" */
                        }
                        a->field = -1;
                        a->expect_key = false;
                        break;
                case ',':
                        json_answer_end_value(a);
                        a->field = -1;
                        a->expect_key = !json_answer_in_array(a);
                        break;
                case '\n':
                case '\r':
                        json_answer_end_value(a);
                        if (a->sse && a->depth > 0) {
                                json_answer_restart(a); /* events are one line each */
                        }
                        break;
                case ' ':
                case '\t':
                        json_answer_end_value(a);
                        break;
                default:
                        if (a->field >= 0 && a->num_len < sizeof(a->num) &&
                            (isdigit((unsigned char) c) || strchr("-+.eE", c))) {
                                a->num[a->num_len++] = c;
                        } else if (a->field >= 0) {
                                a->num_len = sizeof(a->num); /* true, null, ...: not a number */
                        }
                        break;
                }
        }
}

JsonAnswerTokens json_answer_tokens(const JsonAnswer *a)
{
        const double *v = a->values;
        JsonAnswerTokens t = { .prompt = -1, .cached = -1, .completion = -1, .per_second = -1 };

        if (v[JSON_ANSWER_PROMPT_TOKENS] >= 0) {
                t.prompt = (int64_t) v[JSON_ANSWER_PROMPT_TOKENS];
        } else if (v[JSON_ANSWER_PROMPT_N] >= 0) {
                t.prompt = (int64_t) v[JSON_ANSWER_PROMPT_N] +
                           (int64_t) MAX(v[JSON_ANSWER_CACHE_N], 0.0);
        }
        t.cached = (int64_t) (v[JSON_ANSWER_CACHED_TOKENS] >= 0 ? v[JSON_ANSWER_CACHED_TOKENS]
                                                                : v[JSON_ANSWER_CACHE_N]);
        t.completion =
                (int64_t) (v[JSON_ANSWER_COMPLETION_TOKENS] >= 0 ? v[JSON_ANSWER_COMPLETION_TOKENS]
                                                                 : v[JSON_ANSWER_PREDICTED_N]);
        t.per_second = v[JSON_ANSWER_PREDICTED_PER_SECOND];
        return t;
}
