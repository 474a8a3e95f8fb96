/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "bench-report.h"
#include "utf8.h"

static const char *const bench_format_names[_BENCH_FORMAT_MAX] = {
        [BENCH_FORMAT_TABLE] = "table",
        [BENCH_FORMAT_MARKDOWN] = "markdown",
        [BENCH_FORMAT_JSON] = "json",
        [BENCH_FORMAT_CSV] = "csv",
};

int bench_format_from_string(const char *s)
{
        for (int i = 0; i < _BENCH_FORMAT_MAX; i++) {
                if (streq(s, bench_format_names[i])) {
                        return i;
                }
        }
        return -EINVAL;
}

void bench_report_done(BenchReport *r)
{
        for (size_t i = 0; i < r->n_models; i++) {
                BenchModel *m = &r->models[i];

                for (size_t j = 0; m->runs && j < r->n_tasks * r->n_runs; j++) {
                        bench_run_done(&m->runs[j]);
                }
                free(m->runs);
                free(m->name);
                free(m->failed);
        }
        free(r->models);
        free(r->url);
        *r = (BenchReport) {};
}

const BenchRun *bench_model_runs(const BenchReport *r, const BenchModel *m, size_t task)
{
        return m->runs ? &m->runs[task * r->n_runs] : NULL;
}

static int compare_doubles(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;

        return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
        size_t k = 0;

        for (size_t i = 0; i < n; i++) {
                if (!isnan(v[i])) {
                        v[k++] = v[i];
                }
        }
        if (k == 0) {
                return NAN;
        }
        qsort(v, k, sizeof(double), compare_doubles);
        return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

bool bench_rates_disagree(double rate, double server_rate)
{
        if (isnan(rate) || isnan(server_rate) || server_rate <= 0) {
                return false; /* nothing to compare */
        }
        return fabs(rate - server_rate) > BENCH_RATE_TOLERANCE * server_rate;
}

void bench_summarize(const BenchRun *runs, size_t n, BenchSummary *ret)
{
        enum { RATE, SERVER_RATE, TTFT, PROMPT, TOKENS, REASONING, ANSWER, _N };
        double v[_N][BENCH_RUNS_MAX];
        BenchSummary s = {};
        size_t k = 0;

        for (size_t i = 0; i < MIN(n, (size_t) BENCH_RUNS_MAX); i++) {
                const BenchRun *r = &runs[i];

                switch (r->end) {
                case BENCH_END_COMPLETE:
                        s.n_complete++;
                        break;
                case BENCH_END_EARLY:
                        s.n_early++;
                        break;
                case BENCH_END_ERROR:
                case BENCH_END_TIMEOUT:
                case _BENCH_END_MAX:
                        s.n_failed++;
                        break;
                }
                if (!bench_run_usable(r)) {
                        continue;
                }
                v[RATE][k] = bench_run_rate(r);
                v[SERVER_RATE][k] = bench_run_server_rate(r);
                v[TTFT][k] = bench_run_ttft_ms(r);
                v[PROMPT][k] = r->timings.present ? r->timings.prompt_ms : NAN;
                v[TOKENS][k] = bench_run_tokens(r);
                v[REASONING][k] = r->reasoning_events;
                v[ANSWER][k] = r->content_events;
                k++;
        }
        s.rate = bench_median(v[RATE], k);
        s.server_rate = bench_median(v[SERVER_RATE], k);
        s.ttft_ms = bench_median(v[TTFT], k);
        s.prompt_ms = bench_median(v[PROMPT], k);
        s.tokens = bench_median(v[TOKENS], k);
        s.reasoning_tokens = bench_median(v[REASONING], k);
        s.answer_tokens = bench_median(v[ANSWER], k);
        s.mismatch = bench_rates_disagree(s.rate, s.server_rate);
        *ret = s;
}

/* ---- order ---- */

static double bench_model_score(const BenchReport *r, const BenchModel *m)
{
        double sum = 0;
        size_t n = 0;

        for (size_t t = 0; m->runs && t < r->n_tasks; t++) {
                BenchSummary s;

                bench_summarize(bench_model_runs(r, m, t), r->n_runs, &s);
                /* llama-server's rate where llmctl has none of its own (all tokens came at
                 * once): a model measured at all ranks above one that was not. */
                if (!isnan(s.rate) || !isnan(s.server_rate)) {
                        sum += !isnan(s.rate) ? s.rate : s.server_rate;
                        n++;
                }
        }
        return n > 0 ? sum / (double) n : NAN;
}

void bench_report_sort(BenchReport *r)
{
        /* Insertion sort: a handful of models, and equal ones keep their order. */
        double *score = calloc(MAX(r->n_models, (size_t) 1), sizeof(double));

        if (!score) {
                return; /* the order is a nicety */
        }
        for (size_t i = 0; i < r->n_models; i++) {
                score[i] = bench_model_score(r, &r->models[i]);
        }
        for (size_t i = 1; i < r->n_models; i++) {
                BenchModel m = r->models[i];
                double s = score[i];
                size_t j = i;

                for (; j > 0 && !isnan(s) && (isnan(score[j - 1]) || score[j - 1] < s); j--) {
                        r->models[j] = r->models[j - 1];
                        score[j] = score[j - 1];
                }
                r->models[j] = m;
                score[j] = s;
        }
        free(score);
}

/* ---- JSON ---- */

static void add_number(cJSON *o, const char *key, double v)
{
        if (isnan(v)) {
                cJSON_AddNullToObject(o, key);
        } else {
                cJSON_AddNumberToObject(o, key, v);
        }
}

/* A server's text as a JSON string: as it came when it is UTF-8 (cJSON escapes the controls),
 * escaped as for the terminal when it is not, so that the report stays JSON. */
static void add_text(cJSON *o, const char *key, const char *s)
{
        _cleanup_free_ char *e = NULL;

        if (!utf8_valid(s, strlen(s))) {
                e = utf8_escape_terminal(s);
        }
        cJSON_AddStringToObject(o, key, e ? e : s);
}

static cJSON *run_json(const BenchRun *r)
{
        cJSON *o = cJSON_CreateObject(), *t;

        cJSON_AddStringToObject(o, "end", bench_end_to_string(r->end));
        if (r->error) {
                add_text(o, "error", r->error);
        }
        if (r->finish_reason) {
                add_text(o, "finish_reason", r->finish_reason);
        } else {
                cJSON_AddNullToObject(o, "finish_reason");
        }
        add_number(o, "ttft_ms", bench_run_ttft_ms(r));
        add_number(o, "tokens", bench_run_tokens(r));
        cJSON_AddNumberToObject(o, "reasoning_tokens", r->reasoning_events);
        cJSON_AddNumberToObject(o, "answer_tokens", r->content_events);
        add_number(o, "tok_per_sec", bench_run_rate(r));
        if (!r->timings.present) {
                cJSON_AddNullToObject(o, "timings");
                return o;
        }
        t = cJSON_AddObjectToObject(o, "timings");
        add_number(t, "prompt_n", r->timings.prompt_n);
        add_number(t, "prompt_ms", r->timings.prompt_ms);
        add_number(t, "prompt_per_second", r->timings.prompt_per_second);
        add_number(t, "predicted_n", r->timings.predicted_n);
        add_number(t, "predicted_ms", r->timings.predicted_ms);
        add_number(t, "predicted_per_second", r->timings.predicted_per_second);
        return o;
}

static cJSON *summary_json(const BenchSummary *s)
{
        cJSON *o = cJSON_CreateObject();

        add_number(o, "tok_per_sec", s->rate);
        add_number(o, "server_tok_per_sec", s->server_rate);
        add_number(o, "ttft_ms", s->ttft_ms);
        add_number(o, "prompt_ms", s->prompt_ms);
        add_number(o, "tokens", s->tokens);
        add_number(o, "reasoning_tokens", s->reasoning_tokens);
        add_number(o, "answer_tokens", s->answer_tokens);
        return o;
}

cJSON *bench_report_json(const BenchReport *r)
{
        cJSON *o = cJSON_CreateObject(), *tasks, *models;

        cJSON_AddStringToObject(o, "started", r->started);
        cJSON_AddStringToObject(o, "url", r->url ? r->url : "");
        cJSON_AddNumberToObject(o, "runs", r->n_runs);
        cJSON_AddNumberToObject(o, "rate_tolerance", BENCH_RATE_TOLERANCE);
        tasks = cJSON_AddArrayToObject(o, "tasks");
        for (size_t t = 0; t < r->n_tasks; t++) {
                cJSON *j = cJSON_CreateObject();

                cJSON_AddStringToObject(j, "name", r->tasks[t].name);
                cJSON_AddNumberToObject(j, "max_tokens", r->tasks[t].max_tokens);
                cJSON_AddStringToObject(j, "file", r->tasks[t].path);
                cJSON_AddItemToArray(tasks, j);
        }
        models = cJSON_AddArrayToObject(o, "models");
        for (size_t i = 0; i < r->n_models; i++) {
                const BenchModel *m = &r->models[i];
                cJSON *jm = cJSON_CreateObject(), *jt;

                cJSON_AddItemToArray(models, jm);
                cJSON_AddStringToObject(jm, "name", m->name);
                add_number(jm, "swap_sec", m->swap_sec);
                if (m->failed) {
                        add_text(jm, "error", m->failed);
                }
                jt = cJSON_AddArrayToObject(jm, "tasks");
                for (size_t t = 0; m->runs && t < r->n_tasks; t++) {
                        const BenchRun *runs = bench_model_runs(r, m, t);
                        cJSON *j = cJSON_CreateObject(), *jr;
                        BenchSummary s;

                        bench_summarize(runs, r->n_runs, &s);
                        cJSON_AddItemToArray(jt, j);
                        cJSON_AddStringToObject(j, "task", r->tasks[t].name);
                        cJSON_AddNumberToObject(j, "max_tokens", r->tasks[t].max_tokens);
                        cJSON_AddNumberToObject(j, "complete", s.n_complete);
                        cJSON_AddNumberToObject(j, "early", s.n_early);
                        cJSON_AddNumberToObject(j, "failed", s.n_failed);
                        cJSON_AddBoolToObject(j, "rate_mismatch", s.mismatch);
                        cJSON_AddItemToObject(j, "median", summary_json(&s));
                        jr = cJSON_AddArrayToObject(j, "runs");
                        for (unsigned k = 0; k < r->n_runs; k++) {
                                cJSON_AddItemToArray(jr, run_json(&runs[k]));
                        }
                }
        }
        return o;
}

/* ---- table and markdown ---- */

#define CELL_MAX BENCH_CELL_MAX

/* Markers after a rate, explained under the table. */
#define MARK_MISMATCH '*'
#define MARK_EARLY '~'
#define MARK_FAILED '!'

static void format_rate_cell(char *buf, size_t size, const BenchSummary *s)
{
        char marks[4] = "";
        size_t m = 0;

        if (s->mismatch) {
                marks[m++] = MARK_MISMATCH;
        }
        if (s->n_early > 0) {
                marks[m++] = MARK_EARLY;
        }
        if (s->n_failed > 0) {
                marks[m++] = MARK_FAILED;
        }
        marks[m] = '\0';
        if (isnan(s->rate) && isnan(s->server_rate)) {
                snprintf(buf, size, "%s%s", s->n_failed > 0 ? "failed" : "-", marks);
        } else if (isnan(s->server_rate)) {
                snprintf(buf, size, "%.1f%s", s->rate, marks);
        } else if (isnan(s->rate)) {
                snprintf(buf, size, "- (%.1f)%s", s->server_rate, marks);
        } else {
                snprintf(buf, size, "%.1f (%.1f)%s", s->rate, s->server_rate, marks);
        }
}

static void format_ms(char *buf, size_t size, double ms)
{
        if (isnan(ms)) {
                snprintf(buf, size, "-");
        } else if (ms < 10) {
                snprintf(buf, size, "%.1f ms", ms);
        } else if (ms < 10000) {
                snprintf(buf, size, "%.0f ms", ms);
        } else {
                snprintf(buf, size, "%.1f s", ms / 1000);
        }
}

static void format_swap(char *buf, size_t size, const BenchModel *m)
{
        if (m->failed) {
                snprintf(buf, size, "failed");
        } else if (isnan(m->swap_sec)) {
                snprintf(buf, size, "active");
        } else {
                snprintf(buf, size, "%.2f s", m->swap_sec);
        }
}

/* What markdown would take for a table's edge, emphasis or strike-through. */
static bool markdown_special(char c)
{
        return c == '|' || c == '*' || c == '~' || c == '_';
}

/* Columns on a terminal: UTF-8 continuation bytes take none; in markdown specials are escaped. */
static size_t cell_width(const char *s, bool markdown)
{
        size_t n = 0;

        for (; *s; s++) {
                n += ((unsigned char) *s & 0xc0) != 0x80;
                n += markdown && markdown_special(*s);
        }
        return n;
}

static void put_cell(FILE *out, const char *s, bool markdown)
{
        for (; *s; s++) {
                if (markdown && markdown_special(*s)) {
                        fputc('\\', out);
                }
                fputc(*s, out);
        }
}

/* A line for a run that did not simply complete. */
static void print_run_note(FILE *out, const char *item, const char *model, const char *task,
                           unsigned k, const BenchRun *run)
{
        /* What the server said, as it may reach a terminal. */
        _cleanup_free_ char *error = utf8_escape_terminal(run->error ? run->error : "?");
        _cleanup_free_ char *reason =
                utf8_escape_terminal(run->finish_reason ? run->finish_reason : "none");

        switch (run->end) {
        case BENCH_END_COMPLETE:
                break;
        case BENCH_END_EARLY:
                fprintf(out, "%s%s %s run %u: ended after %.0f of %u tokens (finish_reason %s)\n",
                        item, model, task, k + 1, bench_run_tokens(run), run->max_tokens,
                        reason ? reason : "?");
                break;
        case BENCH_END_ERROR:
        case BENCH_END_TIMEOUT:
        case _BENCH_END_MAX:
                fprintf(out, "%s%s %s run %u: %s: %s\n", item, model, task, k + 1,
                        run->end == BENCH_END_TIMEOUT ? "timed out" : "failed",
                        error ? error : "?");
                break;
        }
}

static int print_notes(const BenchReport *r, FILE *out, bool markdown)
{
        const char *item = markdown ? "- " : "", *quote = markdown ? "`" : "";
        bool mismatch = false, early = false, failed = false;

        fprintf(out,
                "\n%stok/s: llmctl's own rate over the generation phase, llama-server's "
                "predicted_per_second in brackets; TTFT: time to the first token; "
                "medians of %u run%s.\n",
                item, r->n_runs, r->n_runs == 1 ? "" : "s");
        for (size_t i = 0; i < r->n_models; i++) {
                const BenchModel *m = &r->models[i];

                for (size_t t = 0; m->runs && t < r->n_tasks; t++) {
                        BenchSummary s;

                        bench_summarize(bench_model_runs(r, m, t), r->n_runs, &s);
                        mismatch |= s.mismatch;
                        early |= s.n_early > 0;
                        failed |= s.n_failed > 0;
                }
        }
        if (mismatch) {
                fprintf(out,
                        "%s%s%c%s llmctl's rate and llama-server's differ by more than %.0f%%\n",
                        item, quote, MARK_MISMATCH, quote, BENCH_RATE_TOLERANCE * 100);
        }
        if (early) {
                fprintf(out,
                        "%s%s%c%s a run ended before max_tokens; its figures are in the median\n",
                        item, quote, MARK_EARLY, quote);
        }
        if (failed) {
                fprintf(out, "%s%s%c%s a run failed; it is left out of the median\n", item, quote,
                        MARK_FAILED, quote);
        }
        for (size_t i = 0; i < r->n_models; i++) {
                const BenchModel *m = &r->models[i];
                _cleanup_free_ char *name = utf8_escape_terminal(m->name);

                if (m->failed) {
                        _cleanup_free_ char *why = utf8_escape_terminal(m->failed);

                        fprintf(out, "%s%s: not measured: %s\n", item, name ? name : "?",
                                why ? why : "?");
                        continue;
                }
                for (size_t t = 0; t < r->n_tasks; t++) {
                        for (unsigned k = 0; k < r->n_runs; k++) {
                                print_run_note(out, item, name ? name : "?", r->tasks[t].name, k,
                                               &bench_model_runs(r, m, t)[k]);
                        }
                }
        }
        /* Thinking is shown apart from the answer, for the models that think. */
        for (size_t i = 0; i < r->n_models; i++) {
                const BenchModel *m = &r->models[i];
                _cleanup_free_ char *name = NULL;
                bool thinks = false;

                for (size_t t = 0; m->runs && t < r->n_tasks; t++) {
                        BenchSummary s;

                        bench_summarize(bench_model_runs(r, m, t), r->n_runs, &s);
                        thinks |= s.reasoning_tokens > 0;
                }
                if (!thinks) {
                        continue;
                }
                name = utf8_escape_terminal(m->name);
                fprintf(out, "%s%s thinks: median thinking + answer tokens:", item,
                        name ? name : "?");
                for (size_t t = 0; t < r->n_tasks; t++) {
                        BenchSummary s;

                        bench_summarize(bench_model_runs(r, m, t), r->n_runs, &s);
                        fprintf(out, "%s %s %.0f + %.0f", t > 0 ? "," : "", r->tasks[t].name,
                                isnan(s.reasoning_tokens) ? 0 : s.reasoning_tokens,
                                isnan(s.answer_tokens) ? 0 : s.answer_tokens);
                }
                fputc('\n', out);
        }
        return 0;
}

int bench_print_grid(FILE *out, const char *cells, size_t n_rows, size_t n_cols, bool markdown)
{
        _cleanup_free_ size_t *width = calloc(n_cols, sizeof(size_t));

        if (!width) {
                return -ENOMEM;
        }
#define CELL(row, col) (cells + (n_cols * (row) + (col)) * CELL_MAX)
        for (size_t row = 0; row < n_rows; row++) {
                for (size_t col = 0; col < n_cols; col++) {
                        width[col] = MAX(width[col], cell_width(CELL(row, col), markdown));
                }
        }
        for (size_t row = 0; row < n_rows; row++) {
                for (size_t col = 0; col < n_cols; col++) {
                        const char *c = CELL(row, col);
                        size_t w = cell_width(c, markdown);
                        bool right = row > 0 && col > 0;

                        fprintf(out, "%s%*s", col == 0 ? "| " : " | ",
                                right ? (int) (width[col] - w) : 0, "");
                        put_cell(out, c, markdown);
                        fprintf(out, "%*s", right ? 0 : (int) (width[col] - w), "");
                }
                fputs(" |\n", out);
                if (row > 0) {
                        continue;
                }
                /* The rule under the heading; markdown aligns the figures right. */
                for (size_t col = 0; col < n_cols; col++) {
                        fputc('|', out);
                        for (size_t k = 0; k < width[col] + 2; k++) {
                                fputc(markdown && col > 0 && k == width[col] + 1 ? ':' : '-', out);
                        }
                }
                fputs("|\n", out);
        }
#undef CELL
        return 0;
}

static int print_table(const BenchReport *r, FILE *out, bool markdown)
{
        size_t n_cols = 2 + 2 * r->n_tasks, n_rows = 1 + r->n_models;
        _cleanup_free_ char *cells = calloc(n_cols * n_rows, CELL_MAX);

        if (!cells) {
                return -ENOMEM;
        }
#define CELL(row, col) (cells + (n_cols * (row) + (col)) * CELL_MAX)
        snprintf(CELL(0, 0), CELL_MAX, "Model");
        for (size_t t = 0; t < r->n_tasks; t++) {
                snprintf(CELL(0, 1 + t), CELL_MAX, "%s tok/s", r->tasks[t].name);
                snprintf(CELL(0, 1 + r->n_tasks + t), CELL_MAX, "%s TTFT", r->tasks[t].name);
        }
        snprintf(CELL(0, n_cols - 1), CELL_MAX, "Swap");
        for (size_t i = 0; i < r->n_models; i++) {
                const BenchModel *m = &r->models[i];
                _cleanup_free_ char *name = utf8_escape_terminal(m->name);

                snprintf(CELL(1 + i, 0), CELL_MAX, "%s", name ? name : "?");
                for (size_t t = 0; t < r->n_tasks; t++) {
                        BenchSummary s;

                        if (!m->runs) {
                                snprintf(CELL(1 + i, 1 + t), CELL_MAX, "-");
                                snprintf(CELL(1 + i, 1 + r->n_tasks + t), CELL_MAX, "-");
                                continue;
                        }
                        bench_summarize(bench_model_runs(r, m, t), r->n_runs, &s);
                        format_rate_cell(CELL(1 + i, 1 + t), CELL_MAX, &s);
                        format_ms(CELL(1 + i, 1 + r->n_tasks + t), CELL_MAX, s.ttft_ms);
                }
                format_swap(CELL(1 + i, n_cols - 1), CELL_MAX, m);
        }
        bench_print_grid(out, cells, n_rows, n_cols, markdown);
#undef CELL
        return print_notes(r, out, markdown);
}

/* ---- CSV ---- */

void bench_csv_field(FILE *out, const char *text)
{
        /* A server's text, as it may reach a terminal. */
        _cleanup_free_ char *e = utf8_escape_terminal(text);
        const char *s = e ? e : "?";

        if (!strpbrk(s, ",\"\r\n")) {
                fputs(s, out);
                return;
        }
        fputc('"', out);
        for (; *s; s++) {
                if (*s == '"') {
                        fputc('"', out);
                }
                fputc(*s, out);
        }
        fputc('"', out);
}

void bench_csv_number(FILE *out, double v)
{
        fputc(',', out);
        if (!isnan(v)) {
                fprintf(out, "%.3f", v);
        }
}

static int print_csv(const BenchReport *r, FILE *out)
{
        fputs("model,task,max_tokens,runs,complete,early,failed,tok_per_sec,server_tok_per_sec,"
              "rate_mismatch,ttft_ms,prompt_ms,tokens,reasoning_tokens,answer_tokens,swap_sec,"
              "error\n",
              out);
        for (size_t i = 0; i < r->n_models; i++) {
                const BenchModel *m = &r->models[i];

                for (size_t t = 0; t < r->n_tasks; t++) {
                        BenchSummary s = { .n_failed = r->n_runs };

                        if (m->runs) {
                                bench_summarize(bench_model_runs(r, m, t), r->n_runs, &s);
                        } else {
                                s.rate = s.server_rate = s.ttft_ms = s.prompt_ms = NAN;
                                s.tokens = s.reasoning_tokens = s.answer_tokens = NAN;
                        }
                        bench_csv_field(out, m->name);
                        fputc(',', out);
                        bench_csv_field(out, r->tasks[t].name);
                        fprintf(out, ",%u,%u,%u,%u,%u", r->tasks[t].max_tokens, r->n_runs,
                                s.n_complete, s.n_early, s.n_failed);
                        bench_csv_number(out, s.rate);
                        bench_csv_number(out, s.server_rate);
                        fprintf(out, ",%s", s.mismatch ? "true" : "false");
                        bench_csv_number(out, s.ttft_ms);
                        bench_csv_number(out, s.prompt_ms);
                        bench_csv_number(out, s.tokens);
                        bench_csv_number(out, s.reasoning_tokens);
                        bench_csv_number(out, s.answer_tokens);
                        bench_csv_number(out, m->swap_sec);
                        fputc(',', out);
                        bench_csv_field(out, m->failed ? m->failed : "");
                        fputc('\n', out);
                }
        }
        return 0;
}

int bench_report_print(const BenchReport *r, BenchFormat format, FILE *out)
{
        _cleanup_free_ char *s = NULL;
        int k = 0;

        switch (format) {
        case BENCH_FORMAT_TABLE:
                k = print_table(r, out, false);
                break;
        case BENCH_FORMAT_MARKDOWN:
                k = print_table(r, out, true);
                break;
        case BENCH_FORMAT_CSV:
                k = print_csv(r, out);
                break;
        case BENCH_FORMAT_JSON: {
                _cleanup_json_ cJSON *j = bench_report_json(r);

                s = j ? cJSON_Print(j) : NULL;
                if (!s) {
                        return -ENOMEM;
                }
                fprintf(out, "%s\n", s);
                break;
        }
        case _BENCH_FORMAT_MAX:
                return -EINVAL;
        }
        if (k < 0) {
                return k;
        }
        return fflush(out) == 0 && !ferror(out) ? 0 : -EIO;
}
