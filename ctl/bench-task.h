/* SPDX-License-Identifier: MIT */
#pragma once

#include "bench-run.h"

/*
 * The prompts of llmctl bench: one JSON file per task in the bench.d folders,
 *
 *   { "name": "short", "description": "...", "prompt": "Write ...", "max_tokens": 128,
 *     "sampling": { "temperature": 0 } }
 *
 * read from several folders in order of precedence: a file name found in an earlier folder
 * hides the same name in later ones, and an empty file (or a link to /dev/null) hides it
 * without a task of its own. Tasks run in the order of their file names.
 */

#define BENCH_TASK_FILE_MAX (256 * 1024)
#define BENCH_TASK_NAME_MAX 32
#define BENCH_TASKS_MAX 32
#define BENCH_MAX_TOKENS_MAX 1000000

typedef struct BenchTask {
        char *name;
        char *path; /* the file it came from */
        char *prompt;
        unsigned max_tokens;
        cJSON *sampling;      /* merged into the request; an object, never NULL */
        bool server_sampling; /* no temperature 0: llama-server's own sampling, or sampling's */
} BenchTask;

/* 0 with the tasks (none when no folder has any), or -EINVAL/-EMSGSIZE/-ENOMEM with error
 * saying which file and what. Folders that do not exist are skipped. */
struct cJSON;
int bench_task_check_keys(const char *path, const struct cJSON *o, const char *const *keys,
                          size_t n, char *error, size_t size);
int bench_tasks_load(char *const *dirs, BenchTask **ret, size_t *ret_n, char *error,
                     size_t error_size);
void bench_tasks_free(BenchTask *tasks, size_t n);
/* 1 to BENCH_TASK_NAME_MAX letters, digits, '-', '_' or '.': a column heading, a CSV field, a
 * JSON key and a folder name. */
bool bench_task_name_valid(const char *s);

/* The body of one streamed chat completion for model: the task's prompt as the user's message,
 * max_tokens, temperature 0 and cache_prompt false (every run evaluates its prompt afresh),
 * then the task's sampling over those. NULL without memory. */
char *bench_task_request(const BenchTask *t, const char *model, unsigned max_tokens);
