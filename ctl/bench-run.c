/* SPDX-License-Identifier: MIT */
#include <math.h>
#include <stdio.h>

#include "bench-run.h"

static const char *const bench_end_names[_BENCH_END_MAX] = {
        [BENCH_END_COMPLETE] = "complete",
        [BENCH_END_EARLY] = "early",
        [BENCH_END_ERROR] = "error",
        [BENCH_END_TIMEOUT] = "timeout",
};

const char *bench_end_to_string(BenchEnd e)
{
        return e < _BENCH_END_MAX ? bench_end_names[e] : NULL;
}

void bench_run_init(BenchRun *r, unsigned max_tokens, uint64_t start_usec)
{
        *r = (BenchRun) { .max_tokens = max_tokens, .start_usec = start_usec };
}

void bench_run_done(BenchRun *r)
{
        free(r->finish_reason);
        free(r->error);
        free(r->line);
        free(r->other);
        free(r->content);
        free(r->reasoning);
        *r = (BenchRun) {};
}

void bench_run_collect(BenchRun *r)
{
        r->collect = true;
}

static int text_append(char **buf, size_t *len, const char *s)
{
        size_t n = strlen(s);
        char *p;

        if (*len + n > BENCH_TEXT_MAX) {
                return 0; /* what a check is given is bounded; the rest is not kept */
        }
        p = realloc(*buf, *len + n + 1);
        if (!p) {
                return -ENOMEM;
        }
        memcpy(p + *len, s, n + 1);
        *buf = p;
        *len += n;
        return 0;
}

static int bench_run_set_error(BenchRun *r, const char *message)
{
        if (r->error) {
                return 0; /* the first one says what went wrong */
        }
        r->error = strdup(message);
        return r->error ? 0 : -ENOMEM;
}

/* An OpenAI error object's message: {"error": {"message": ...}} or {"error": "..."}. */
static const char *error_message(const cJSON *o)
{
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");

        if (cJSON_IsString(m)) {
                return m->valuestring;
        }
        return cJSON_IsString(e) ? e->valuestring : NULL;
}

static void bench_run_read_timings(BenchRun *r, const cJSON *t)
{
        static const struct {
                const char *key;
                size_t offset;
        } fields[] = {
                { "prompt_n", offsetof(BenchTimings, prompt_n) },
                { "prompt_ms", offsetof(BenchTimings, prompt_ms) },
                { "prompt_per_second", offsetof(BenchTimings, prompt_per_second) },
                { "predicted_n", offsetof(BenchTimings, predicted_n) },
                { "predicted_ms", offsetof(BenchTimings, predicted_ms) },
                { "predicted_per_second", offsetof(BenchTimings, predicted_per_second) },
        };

        if (!cJSON_IsObject(t)) {
                return;
        }
        r->timings.present = true;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, fields[i].key);

                *(double *) ((char *) &r->timings + fields[i].offset) =
                        cJSON_IsNumber(v) ? v->valuedouble : NAN;
        }
}

static bool nonempty_string(const cJSON *v)
{
        return cJSON_IsString(v) && v->valuestring[0] != '\0';
}

/* One "data: ..." payload of a chat completion stream. */
static int bench_run_event(BenchRun *r, const char *data, uint64_t now)
{
        _cleanup_json_ cJSON *o = NULL;
        const cJSON *choice, *delta, *finish;
        const char *message;
        bool reasoning, content;

        if (streq(data, "[DONE]")) {
                r->done = true;
                return 0;
        }
        o = cJSON_Parse(data);
        if (!cJSON_IsObject(o)) {
                return bench_run_set_error(r, "llmd sent an event that is not a JSON object");
        }
        message = error_message(o);
        if (message || cJSON_GetObjectItemCaseSensitive(o, "error")) {
                return bench_run_set_error(r, message ? message : "an error event");
        }
        choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
        delta = cJSON_GetObjectItemCaseSensitive(choice, "delta");
        /* Each token is its own chunk; the role chunk before them carries no text. */
        reasoning = nonempty_string(cJSON_GetObjectItemCaseSensitive(delta, "reasoning_content"));
        content = nonempty_string(cJSON_GetObjectItemCaseSensitive(delta, "content"));
        if (r->collect && reasoning &&
            text_append(&r->reasoning, &r->reasoning_len,
                        cJSON_GetObjectItemCaseSensitive(delta, "reasoning_content")->valuestring) <
                    0) {
                return -ENOMEM;
        }
        if (r->collect && content &&
            text_append(&r->content, &r->content_len,
                        cJSON_GetObjectItemCaseSensitive(delta, "content")->valuestring) < 0) {
                return -ENOMEM;
        }
        if (reasoning || content) {
                if (reasoning) {
                        r->reasoning_events++;
                } else {
                        r->content_events++;
                }
                if (r->first_usec == 0) {
                        r->first_usec = now;
                }
                r->last_usec = now;
        }
        finish = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
        if (cJSON_IsString(finish)) {
                free(r->finish_reason);
                r->finish_reason = strdup(finish->valuestring);
                if (!r->finish_reason) {
                        return -ENOMEM;
                }
        }
        bench_run_read_timings(r, cJSON_GetObjectItemCaseSensitive(o, "timings"));
        return 0;
}

static int bench_run_line(BenchRun *r, char *line, uint64_t now)
{
        const char *data = startswith(line, "data:");
        size_t n;

        if (data) {
                data += *data == ' ';
                return bench_run_event(r, data, now);
        }
        /* Comments (":"), "event:" and blank lines carry nothing we count. Anything else is
         * kept for the message of a failed request (its body is JSON, not events). */
        if (line[0] == '\0' || line[0] == ':' || startswith(line, "event:") ||
            r->other_len >= BENCH_ERROR_BODY_MAX) {
                return 0;
        }
        n = MIN(strlen(line), BENCH_ERROR_BODY_MAX - r->other_len);
        char *o = realloc(r->other, r->other_len + n + 1);
        if (!o) {
                return -ENOMEM;
        }
        memcpy(o + r->other_len, line, n);
        r->other = o;
        r->other_len += n;
        r->other[r->other_len] = '\0';
        return 0;
}

int bench_run_feed(BenchRun *r, const char *data, size_t len, uint64_t now_usec)
{
        for (size_t i = 0; i < len; i++) {
                char c = data[i];
                int k;

                if (c == '\n') {
                        if (r->line_len > 0 && r->line[r->line_len - 1] == '\r') {
                                r->line_len--;
                        }
                        if (!r->line) {
                                continue; /* an empty line, before any other */
                        }
                        r->line[r->line_len] = '\0';
                        k = bench_run_line(r, r->line, now_usec);
                        r->line_len = 0;
                        if (k < 0) {
                                return k;
                        }
                        continue;
                }
                if (r->line_len + 2 > r->line_size) {
                        size_t size;
                        char *l;

                        if (r->line_len + 2 > BENCH_LINE_MAX) {
                                return -EMSGSIZE;
                        }
                        size = MIN(MAX(r->line_size * 2, (size_t) 256), (size_t) BENCH_LINE_MAX);
                        l = realloc(r->line, size);
                        if (!l) {
                                return -ENOMEM;
                        }
                        r->line = l;
                        r->line_size = size;
                }
                r->line[r->line_len++] = c;
        }
        return 0;
}

int bench_run_finish(BenchRun *r, long http_status, const char *transport_error, bool timed_out)
{
        char buf[BENCH_ERROR_BODY_MAX + 64];
        double tokens;

        /* A last line without its newline: a JSON error body usually is one; an event cut off
         * in the middle is not one. */
        if (r->line_len > 0) {
                r->line[r->line_len] = '\0';
                if (!startswith(r->line, "data:") && bench_run_line(r, r->line, 0) < 0) {
                        return -ENOMEM;
                }
                r->line_len = 0;
        }
        free(r->line);
        r->line = NULL;
        r->line_size = 0;

        if (timed_out) {
                r->end = BENCH_END_TIMEOUT;
                return bench_run_set_error(r, transport_error ? transport_error : "timed out");
        }
        if (http_status != 200 && http_status != 0) {
                _cleanup_json_ cJSON *o = r->other ? cJSON_Parse(r->other) : NULL;
                const char *m = error_message(o);

                snprintf(buf, sizeof(buf), "HTTP %ld: %s", http_status,
                         m          ? m
                         : r->other ? r->other
                                    : "no message");
                r->end = BENCH_END_ERROR;
                free(r->error); /* the body's message says it better than a parse error */
                r->error = NULL;
                return bench_run_set_error(r, buf);
        }
        r->end = BENCH_END_ERROR;
        if (r->error) {
                return 0; /* an error event */
        }
        if (transport_error && !r->done) {
                return bench_run_set_error(r, transport_error);
        }
        if (!r->finish_reason) {
                return bench_run_set_error(r, http_status == 0
                                                      ? "no answer"
                                                      : "the stream ended without a finish_reason");
        }
        tokens = bench_run_tokens(r);
        r->end = tokens >= r->max_tokens ? BENCH_END_COMPLETE : BENCH_END_EARLY;
        return 0;
}

double bench_run_tokens(const BenchRun *r)
{
        if (r->timings.present && !isnan(r->timings.predicted_n)) {
                return r->timings.predicted_n;
        }
        return (double) (r->content_events + r->reasoning_events);
}

double bench_run_ttft_ms(const BenchRun *r)
{
        if (r->first_usec == 0) {
                return NAN;
        }
        return (double) (r->first_usec - r->start_usec) / USEC_PER_MSEC;
}

double bench_run_rate(const BenchRun *r)
{
        double tokens = bench_run_tokens(r);

        /* The first token ends the prompt phase: the generation phase is the time from it to
         * the last one, in which tokens - 1 more were made. */
        if (tokens < 2 || r->last_usec <= r->first_usec) {
                return NAN;
        }
        return (tokens - 1) / ((double) (r->last_usec - r->first_usec) / USEC_PER_SEC);
}

double bench_run_server_rate(const BenchRun *r)
{
        return r->timings.present ? r->timings.predicted_per_second : NAN;
}

bool bench_run_usable(const BenchRun *r)
{
        return (r->end == BENCH_END_COMPLETE || r->end == BENCH_END_EARLY) && r->first_usec != 0;
}
