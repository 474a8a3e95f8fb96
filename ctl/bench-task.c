/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

#include "array.h"
#include "bench-task.h"
#include "fileio.h"
#include "strv.h"

void bench_tasks_free(BenchTask *tasks, size_t n)
{
        for (size_t i = 0; tasks && i < n; i++) {
                free(tasks[i].name);
                free(tasks[i].path);
                free(tasks[i].prompt);
                cJSON_Delete(tasks[i].sampling);
        }
        free(tasks);
}

bool bench_task_name_valid(const char *s)
{
        size_t n = strlen(s);

        /* It becomes a column heading, a CSV field and a JSON key: plain characters only. */
        if (n == 0 || n > BENCH_TASK_NAME_MAX) {
                return false;
        }
        for (; *s; s++) {
                if (!strchr("abcdefghijklmnopqrstuvwxyz"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.",
                            *s)) {
                        return false;
                }
        }
        return true;
}

/* Request fields bench sets itself; a task may not change them. */
static const char *const reserved_fields[] = {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "n_predict",
        "max_completion_tokens",
};

/* Whether o is a JSON object of keys only (error says which is not, and lists them). */
int bench_task_check_keys(const char *path, const cJSON *o, const char *const *keys, size_t n,
                          char *error, size_t size)
{
        const cJSON *k;

        if (!cJSON_IsObject(o)) {
                snprintf(error, size, "%s: not a JSON object", path);
                return -EINVAL;
        }
        cJSON_ArrayForEach(k, o) {
                bool known = false;
                size_t at;

                for (size_t i = 0; i < n; i++) {
                        known = known || streq(k->string, keys[i]);
                }
                if (known) {
                        continue;
                }
                at = (size_t) snprintf(error, size, "%s: unknown key \"%s\" (known: ", path,
                                       k->string);
                for (size_t i = 0; i < n && at < size; i++) {
                        at += (size_t) snprintf(error + at, size - at, "%s%s", i ? ", " : "",
                                                keys[i]);
                }
                if (at < size) {
                        snprintf(error + at, size - at, ")");
                }
                return -EINVAL;
        }
        return 0;
}

static int task_parse(const char *path, const char *text, BenchTask *ret, char *error, size_t size)
{
        static const char *const keys[] = { "name", "description", "prompt", "max_tokens",
                                            "sampling" };
        _cleanup_json_ cJSON *o = cJSON_Parse(text);
        const cJSON *name, *prompt, *max, *sampling;

        if (bench_task_check_keys(path, o, keys, ELEMENTSOF(keys), error, size) < 0) {
                return -EINVAL;
        }
        name = cJSON_GetObjectItemCaseSensitive(o, "name");
        prompt = cJSON_GetObjectItemCaseSensitive(o, "prompt");
        max = cJSON_GetObjectItemCaseSensitive(o, "max_tokens");
        sampling = cJSON_GetObjectItemCaseSensitive(o, "sampling");
        if (!cJSON_IsString(name) || !bench_task_name_valid(name->valuestring)) {
                snprintf(error, size,
                         "%s: \"name\" must be 1 to %d letters, digits, '-', '_' or '.'", path,
                         BENCH_TASK_NAME_MAX);
                return -EINVAL;
        }
        if (!cJSON_IsString(prompt) || isempty(prompt->valuestring)) {
                snprintf(error, size, "%s: \"prompt\" must be a non-empty string", path);
                return -EINVAL;
        }
        if (!cJSON_IsNumber(max) || max->valuedouble < 1 ||
            max->valuedouble > BENCH_MAX_TOKENS_MAX || max->valuedouble != (double) max->valueint) {
                snprintf(error, size, "%s: \"max_tokens\" must be a whole number from 1 to %d",
                         path, BENCH_MAX_TOKENS_MAX);
                return -EINVAL;
        }
        if (sampling && !cJSON_IsObject(sampling)) {
                snprintf(error, size, "%s: \"sampling\" must be an object", path);
                return -EINVAL;
        }
        for (size_t i = 0; sampling && i < ELEMENTSOF(reserved_fields); i++) {
                if (cJSON_GetObjectItemCaseSensitive(sampling, reserved_fields[i])) {
                        snprintf(error, size, "%s: \"sampling\" may not set \"%s\": bench sets it",
                                 path, reserved_fields[i]);
                        return -EINVAL;
                }
        }
        *ret = (BenchTask) {
                .name = strdup(name->valuestring),
                .path = strdup(path),
                .prompt = strdup(prompt->valuestring),
                .max_tokens = (unsigned) max->valueint,
                .sampling = sampling ? cJSON_Duplicate(sampling, true) : cJSON_CreateObject(),
        };
        if (!ret->name || !ret->path || !ret->prompt || !ret->sampling) {
                free(ret->name);
                free(ret->path);
                free(ret->prompt);
                cJSON_Delete(ret->sampling);
                return -ENOMEM;
        }
        return 0;
}

static int compare_strings(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The *.json file names of every folder, each once, sorted. */
static int task_file_names(char *const *dirs, char ***ret)
{
        _cleanup_strv_free_ char **names = NULL;

        STRV_FOREACH(d, dirs) {
                DIR *dir = opendir(*d);
                struct dirent *e;

                if (!dir) {
                        continue;
                }
                while ((e = readdir(dir))) {
                        size_t n = strlen(e->d_name);

                        if (e->d_name[0] == '.' || n <= 5 || !streq(e->d_name + n - 5, ".json") ||
                            strv_contains(names, e->d_name)) {
                                continue;
                        }
                        if (strv_length(names) >= BENCH_TASKS_MAX * 4) {
                                closedir(dir);
                                return -E2BIG;
                        }
                        if (strv_extend(&names, e->d_name) < 0) {
                                closedir(dir);
                                return -ENOMEM;
                        }
                }
                closedir(dir);
        }
        if (names) {
                qsort(names, strv_length(names), sizeof(char *), compare_strings);
        }
        *ret = TAKE_PTR(names);
        return 0;
}

int bench_tasks_load(char *const *dirs, BenchTask **ret, size_t *ret_n, char *error, size_t size)
{
        _cleanup_strv_free_ char **names = NULL;
        BenchTask *tasks = NULL;
        size_t n = 0;
        int r;

        r = task_file_names(dirs, &names);
        if (r < 0) {
                snprintf(error, size, r == -E2BIG ? "too many task files" : "out of memory");
                return r;
        }
        STRV_FOREACH(name, names) {
                _cleanup_free_ char *path = NULL, *text = NULL;
                bool found = false;
                struct stat st;

                /* The first folder that has the file decides. */
                STRV_FOREACH(d, dirs) {
                        free(path);
                        if (asprintf(&path, "%s/%s", *d, *name) < 0) {
                                path = NULL;
                                r = -ENOMEM;
                                goto fail;
                        }
                        if (stat(path, &st) == 0) {
                                found = true;
                                break;
                        }
                        if (errno != ENOENT) {
                                snprintf(error, size, "%s: %m", path);
                                r = -errno;
                                goto fail;
                        }
                }
                /* An empty file, or a link to /dev/null, hides the task of that name. */
                if (!found || S_ISCHR(st.st_mode) || (S_ISREG(st.st_mode) && st.st_size == 0)) {
                        continue;
                }
                r = read_file(path, 0, BENCH_TASK_FILE_MAX, &text);
                if (r < 0) {
                        snprintf(error, size, "%s: %s", path,
                                 r == -EFBIG ? "larger than 256 KiB" : file_strerror(r));
                        goto fail;
                }
                if (n >= BENCH_TASKS_MAX) {
                        snprintf(error, size, "more than %d tasks", BENCH_TASKS_MAX);
                        r = -E2BIG;
                        goto fail;
                }
                BenchTask *t = ARRAY_GROW(tasks, n);
                if (!t) {
                        r = -ENOMEM;
                        goto fail;
                }
                r = task_parse(path, text, t, error, size);
                if (r < 0) {
                        goto fail;
                }
                n++;
                for (size_t i = 0; i + 1 < n; i++) {
                        if (streq(tasks[i].name, tasks[n - 1].name)) {
                                snprintf(error, size, "%s: the task name \"%s\" is taken by %s",
                                         path, tasks[n - 1].name, tasks[i].path);
                                r = -EINVAL;
                                goto fail;
                        }
                }
        }
        *ret = tasks;
        *ret_n = n;
        return 0;
fail:
        if (r == -ENOMEM) {
                snprintf(error, size, "out of memory");
        }
        bench_tasks_free(tasks, n);
        return r;
}

char *bench_task_request(const BenchTask *t, const char *model, unsigned max_tokens)
{
        _cleanup_json_ cJSON *o = cJSON_CreateObject();
        cJSON *messages, *m;
        const cJSON *s;

        if (!o) {
                return NULL;
        }
        cJSON_AddStringToObject(o, "model", model);
        messages = cJSON_AddArrayToObject(o, "messages");
        m = cJSON_CreateObject();
        cJSON_AddItemToArray(messages, m);
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", t->prompt);
        cJSON_AddNumberToObject(o, "max_tokens", max_tokens);
        cJSON_AddTrueToObject(o, "stream");
        if (!t->server_sampling) {
                cJSON_AddNumberToObject(o, "temperature", 0);
        }
        cJSON_AddFalseToObject(o, "cache_prompt");
        cJSON_ArrayForEach(s, t->sampling) {
                cJSON_DeleteItemFromObjectCaseSensitive(o, s->string);
                cJSON_AddItemToObject(o, s->string, cJSON_Duplicate(s, true));
        }
        return cJSON_PrintUnformatted(o);
}
