/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdio.h>

#include "bench-run.h"
#include "bench-task.h"

/*
 * What llmctl bench found, and how it is shown: the runs of every model and task, their
 * medians, the order (fastest first) and the four formats. No I/O but the FILE it prints to.
 */

#define BENCH_DEFAULT_RUNS 3
#define BENCH_RUNS_MAX 100
#define BENCH_DEFAULT_TIMEOUT_SEC 60
/* llmctl's rate and llama-server's own are marked when they differ by more than this. */
#define BENCH_RATE_TOLERANCE 0.05

typedef enum BenchFormat {
        BENCH_FORMAT_TABLE,
        BENCH_FORMAT_MARKDOWN,
        BENCH_FORMAT_JSON,
        BENCH_FORMAT_CSV,
        _BENCH_FORMAT_MAX,
} BenchFormat;

/* The BenchFormat, or -EINVAL. */
int bench_format_from_string(const char *s);

typedef struct BenchModel {
        char *name;
        char *failed;    /* why it could not be switched to (it has no runs then), or NULL */
        double swap_sec; /* the switch to it; NAN: it was active already */
        BenchRun *runs;  /* n_tasks × n_runs, task by task; NULL when it failed */
        /* The quality suite's sampling for it, from its profile (NAN: the server's), and the
         * factor on each task's token budget. */
        double temperature, top_p, max_tokens_factor;
} BenchModel;

typedef struct BenchReport {
        const BenchTask *tasks;
        size_t n_tasks;
        unsigned n_runs; /* per task */
        BenchModel *models;
        size_t n_models;
        char *url;
        char started[32]; /* ISO 8601, UTC */
} BenchReport;

void bench_report_done(BenchReport *r);

/* Medians over a task's usable runs (NAN where none has the figure). */
typedef struct BenchSummary {
        unsigned n_complete, n_early, n_failed;
        double rate, server_rate, ttft_ms, prompt_ms;
        double tokens, reasoning_tokens, answer_tokens;
        bool mismatch; /* rate and server_rate differ by more than BENCH_RATE_TOLERANCE */
} BenchSummary;

/* The median of the numbers of v that are not NAN (v is reordered); NAN when there are none. */
double bench_median(double *v, size_t n);
bool bench_rates_disagree(double rate, double server_rate);
void bench_summarize(const BenchRun *runs, size_t n, BenchSummary *ret);
/* The runs of one model and task. */
const BenchRun *bench_model_runs(const BenchReport *r, const BenchModel *m, size_t task);

/* Fastest first: by the mean of a model's median rates over the tasks (llmctl's own, else
 * llama-server's); models without one last. */
void bench_report_sort(BenchReport *r);

cJSON *bench_report_json(const BenchReport *r);

/* A table of n_rows × n_cols cells of BENCH_CELL_MAX bytes each, row by row, the first row its
 * heading: aligned for a terminal, or markdown. -ENOMEM. */
#define BENCH_CELL_MAX 96
int bench_print_grid(FILE *out, const char *cells, size_t n_rows, size_t n_cols, bool markdown);
/* A CSV field (quoted where it must be), and a number after a comma (nothing for NAN). */
void bench_csv_field(FILE *out, const char *text);
void bench_csv_number(FILE *out, double v);
/* -ENOMEM, or -EIO when out could not be written. */
int bench_report_print(const BenchReport *r, BenchFormat format, FILE *out);
