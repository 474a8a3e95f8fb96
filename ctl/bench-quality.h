/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdio.h>

#include "bench-report.h"

/*
 * llmctl bench --suite quality: tasks a model answers and a check scores. A task is a folder
 * quality/NAME/ of a bench.d folder, holding
 *
 *   task.json  { "category": "coding", "title": "...", "max_tokens": 4096, "timeout": 60,
 *                "files": ["app.js"], "requires": [{"package": "nodejs", "path": "/usr/bin/node"}],
 *                "sampling": {...} }
 *   prompt.md  what the model is asked; the files named in "files" follow it, each under its name
 *   check      an executable: run in the sandbox in a fresh work folder holding answer.md (the
 *              answer, thinking taken out), with the task folder at /task; it prints one JSON
 *              line {"score": 0..100, "items": [{"name": ..., "points": P, "max": M}, ...]}
 *
 * No I/O here but reading the tasks and the FILE a report is printed to: bench.c runs them.
 */

#define QUALITY_DEFAULT_TIMEOUT_SEC 60
#define QUALITY_TIMEOUT_MAX_SEC 3600
#define QUALITY_CHECK_OUTPUT_MAX (256 * 1024)
#define QUALITY_REQUIRES_MAX 16

typedef enum QualityCategory {
        QUALITY_CODING, /* and the agentic tasks: they are scored as code */
        QUALITY_REASONING,
        QUALITY_TOOLS,
        _QUALITY_CATEGORY_MAX,
} QualityCategory;

const char *quality_category_to_string(QualityCategory c);

/* The weights of the total: coding, reasoning, tools, and speed. */
#define QUALITY_WEIGHT_CODING 0.4
#define QUALITY_WEIGHT_REASONING 0.2
#define QUALITY_WEIGHT_TOOLS 0.2
#define QUALITY_WEIGHT_SPEED 0.2

typedef struct QualityRequire {
        char *package; /* the Debian package that has it */
        char *path;    /* what must exist */
} QualityRequire;

typedef struct QualityTask {
        BenchTask base; /* name (the folder's), prompt (with the files), max_tokens, sampling */
        char *dir;
        char *title;
        QualityCategory category;
        unsigned timeout; /* of the check, seconds */
        QualityRequire *requires;
        size_t n_requires;
} QualityTask;

/* The tasks of the quality/ folders under dirs (earlier folders hide a task of the same name in
 * later ones), sorted by name. 0 (none found is no error), or -errno with error saying what. */
int quality_tasks_load(char *const *dirs, QualityTask **ret, size_t *ret_n, char *error,
                       size_t error_size);
void quality_tasks_free(QualityTask *tasks, size_t n);

/* The packages whose paths are missing, each once, separated by blanks; NULL when none is
 * missing (or out of memory: *ret_oom). */
char *quality_missing_packages(const QualityTask *tasks, size_t n, const char *bwrap,
                               bool *ret_oom);

/*
 * The answer a check gets. Thinking never reaches it: closed <think>...</think> blocks are
 * taken out, and a <think> that the token limit cut off (no </think>) is dropped with all that
 * follows it; text before a lone </think> (a template that opened the block in the prompt) is
 * thinking too. When nothing is left of the content but llama-server separated reasoning_content,
 * the answer is that reasoning_content (some models put everything there), and from says so.
 */
typedef enum QualityFrom {
        QUALITY_FROM_CONTENT,
        QUALITY_FROM_REASONING, /* content was empty: the fallback */
        QUALITY_FROM_NOTHING,
} QualityFrom;

typedef struct QualityAnswer {
        char *text;
        QualityFrom from;
        bool thinking_cut;        /* an unclosed <think> was dropped */
        unsigned thinking_blocks; /* closed blocks taken out */
} QualityAnswer;

const char *quality_from_to_string(QualityFrom f);
int quality_extract(const char *content, const char *reasoning, QualityAnswer *ret);
void quality_answer_done(QualityAnswer *a);

/* One run of a task: the answer, and what its check said. */
typedef struct QualityResult {
        bool ran;
        double score; /* 0..100; NAN: not scored */
        char *error;  /* why it was not scored, or what went wrong with the check */
        cJSON *check; /* the check's line, parsed */
        QualityFrom from;
        bool thinking_cut;
        BenchEnd end;
        double tokens;
} QualityResult;

void quality_result_done(QualityResult *r);

/* Reads a check's output: its last non-blank line must be the JSON object with a "score" from 0
 * to 100 and "items" (each with "name", "points" and "max"). 0 with r->score and r->check set,
 * or -EINVAL with r->error set; -ENOMEM. */
int quality_check_parse(const char *output, QualityResult *r);

/* The argument vector that runs check in the sandbox: bwrap with no network, the system
 * read-only, work_dir as /work (its only writable place but a fresh /tmp), the task folder
 * read-only as /task, lib_dir (quality/_lib, the checks' helpers; NULL: none) read-only as
 * /qlib on PYTHONPATH, and nothing of /home, /run or the rest of /etc. NULL without memory. */
char **quality_sandbox_argv(const char *bwrap, const char *lib_dir, const char *task_dir,
                            const char *work_dir);

/* Everything measured: the speed report (its models and speed tasks) and, per model, n_tasks ×
 * n_runs results, task by task. */
typedef struct QualityReport {
        BenchReport *speed;
        const QualityTask *tasks;
        size_t n_tasks;
        QualityResult **results; /* per model of speed, in its order */
} QualityReport;

typedef struct QualityScores {
        double task[BENCH_TASKS_MAX]; /* medians over the runs */
        double category[_QUALITY_CATEGORY_MAX];
        double rate, ttft_ms; /* the mean over the speed tasks of their medians */
        double speed;         /* rate relative to the fastest model, 0..100 */
        double total;
        unsigned rank;
} QualityScores;

/* The scores of model i (speed relative to the fastest of the report). */
void quality_scores(const QualityReport *r, size_t model, QualityScores *ret);
cJSON *quality_report_json(const QualityReport *r);
/* -ENOMEM, or -EIO when out could not be written. */
int quality_report_print(const QualityReport *r, BenchFormat format, FILE *out);
void quality_report_done(QualityReport *r);
