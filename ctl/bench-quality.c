/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

#include "array.h"
#include "bench-quality.h"
#include "fileio.h"
#include "llmctl-client.h"
#include "strv.h"
#include "utf8.h"

static const char *const category_names[_QUALITY_CATEGORY_MAX] = {
        [QUALITY_CODING] = "coding",
        [QUALITY_REASONING] = "reasoning",
        [QUALITY_TOOLS] = "tools",
};

const char *quality_category_to_string(QualityCategory c)
{
        return c < _QUALITY_CATEGORY_MAX ? category_names[c] : NULL;
}

static const char *const from_names[] = {
        [QUALITY_FROM_CONTENT] = "content",
        [QUALITY_FROM_REASONING] = "reasoning_content",
        [QUALITY_FROM_NOTHING] = "nothing",
};

const char *quality_from_to_string(QualityFrom f)
{
        return from_names[f];
}

/* ---- the tasks ---- */

static void quality_task_done(QualityTask *t)
{
        free(t->base.name);
        free(t->base.path);
        free(t->base.prompt);
        cJSON_Delete(t->base.sampling);
        free(t->dir);
        free(t->title);
        for (size_t i = 0; i < t->n_requires; i++) {
                free(t->requires[i].package);
                free(t->requires[i].path);
        }
        free(t->requires);
}

void quality_tasks_free(QualityTask *tasks, size_t n)
{
        for (size_t i = 0; tasks && i < n; i++) {
                quality_task_done(&tasks[i]);
        }
        free(tasks);
}

/* The prompt: prompt.md, then each given file under its name, fenced. */
static int task_prompt(QualityTask *t, const cJSON *files, char *error, size_t size)
{
        _cleanup_free_ char *path = NULL, *text = NULL;
        const cJSON *f;
        char *prompt;
        int r;

        if (asprintf(&path, "%s/prompt.md", t->dir) < 0) {
                return -ENOMEM;
        }
        r = read_file(path, 0, BENCH_TASK_FILE_MAX, &text);
        if (r < 0) {
                snprintf(error, size, "%s: %s", path, file_strerror(r));
                return r;
        }
        prompt = TAKE_PTR(text);
        cJSON_ArrayForEach(f, files) {
                _cleanup_free_ char *fpath = NULL, *ftext = NULL;
                char *p;

                if (!cJSON_IsString(f) || isempty(f->valuestring) || strstr(f->valuestring, "..") ||
                    f->valuestring[0] == '/') {
                        snprintf(error, size, "%s/task.json: \"files\" must name files in %s",
                                 t->dir, t->dir);
                        free(prompt);
                        return -EINVAL;
                }
                if (asprintf(&fpath, "%s/%s", t->dir, f->valuestring) < 0) {
                        free(prompt);
                        return -ENOMEM;
                }
                r = read_file(fpath, 0, BENCH_TASK_FILE_MAX, &ftext);
                if (r < 0) {
                        snprintf(error, size, "%s: %s", fpath, file_strerror(r));
                        free(prompt);
                        return r;
                }
                r = asprintf(&p, "%s\n\n`%s`:\n\n```\n%s%s```\n", prompt, f->valuestring, ftext,
                             ftext[0] && ftext[strlen(ftext) - 1] == '\n' ? "" : "\n");
                free(prompt);
                if (r < 0) {
                        return -ENOMEM;
                }
                prompt = p;
        }
        t->base.prompt = prompt;
        return 0;
}

static int task_requires(QualityTask *t, const cJSON *requires, char *error, size_t size)
{
        const cJSON *q;

        if (requires &&
            (!cJSON_IsArray(requires) || cJSON_GetArraySize(requires) > QUALITY_REQUIRES_MAX)) {
                snprintf(error, size, "%s/task.json: \"requires\" must be a list of at most %d",
                         t->dir, QUALITY_REQUIRES_MAX);
                return -EINVAL;
        }
        cJSON_ArrayForEach(q, requires) {
                const char *package = jstr(q, "package"), *path = jstr(q, "path");
                QualityRequire *e;

                if (!package || !path || path[0] != '/') {
                        snprintf(error, size,
                                 "%s/task.json: each of \"requires\" needs a \"package\" and an "
                                 "absolute \"path\"",
                                 t->dir);
                        return -EINVAL;
                }
                e = ARRAY_GROW(t->requires, t->n_requires);
                if (!e) {
                        return -ENOMEM;
                }
                *e = (QualityRequire) { .package = strdup(package), .path = strdup(path) };
                t->n_requires++;
                if (!e->package || !e->path) {
                        return -ENOMEM;
                }
        }
        return 0;
}

static int task_load(const char *dir, const char *name, QualityTask *t, char *error, size_t size)
{
        static const char *const keys[] = { "category", "title",    "max_tokens", "timeout",
                                            "files",    "requires", "sampling" };
        _cleanup_free_ char *path = NULL, *text = NULL;
        _cleanup_json_ cJSON *o = NULL;
        const cJSON *v;
        const char *category;
        int r;

        t->dir = strdup(dir);
        t->base.name = strdup(name);
        if (!t->dir || !t->base.name || asprintf(&path, "%s/task.json", dir) < 0) {
                return -ENOMEM;
        }
        t->base.path = strdup(path);
        if (!t->base.path) {
                return -ENOMEM;
        }
        r = read_file(path, 0, BENCH_TASK_FILE_MAX, &text);
        if (r < 0) {
                snprintf(error, size, "%s: %s", path, file_strerror(r));
                return r;
        }
        o = cJSON_Parse(text);
        if (bench_task_check_keys(path, o, keys, ELEMENTSOF(keys), error, size) < 0) {
                return -EINVAL;
        }
        category = jstr(o, "category");
        t->category = _QUALITY_CATEGORY_MAX;
        for (int i = 0; category && i < _QUALITY_CATEGORY_MAX; i++) {
                if (streq(category, category_names[i])) {
                        t->category = (QualityCategory) i;
                }
        }
        if (t->category == _QUALITY_CATEGORY_MAX) {
                snprintf(error, size, "%s: \"category\" must be coding, reasoning or tools", path);
                return -EINVAL;
        }
        t->title = strdup(jstr(o, "title") ? jstr(o, "title") : name);
        if (!t->title) {
                return -ENOMEM;
        }
        v = cJSON_GetObjectItemCaseSensitive(o, "max_tokens");
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > BENCH_MAX_TOKENS_MAX ||
            v->valuedouble != (double) v->valueint) {
                snprintf(error, size, "%s: \"max_tokens\" must be a whole number from 1 to %d",
                         path, BENCH_MAX_TOKENS_MAX);
                return -EINVAL;
        }
        t->base.max_tokens = (unsigned) v->valueint;
        v = cJSON_GetObjectItemCaseSensitive(o, "timeout");
        t->timeout = QUALITY_DEFAULT_TIMEOUT_SEC;
        if (v) {
                if (!cJSON_IsNumber(v) || v->valuedouble < 1 ||
                    v->valuedouble > QUALITY_TIMEOUT_MAX_SEC ||
                    v->valuedouble != (double) v->valueint) {
                        snprintf(error, size, "%s: \"timeout\" must be seconds from 1 to %d", path,
                                 QUALITY_TIMEOUT_MAX_SEC);
                        return -EINVAL;
                }
                t->timeout = (unsigned) v->valueint;
        }
        v = cJSON_GetObjectItemCaseSensitive(o, "sampling");
        if (v && !cJSON_IsObject(v)) {
                snprintf(error, size, "%s: \"sampling\" must be an object", path);
                return -EINVAL;
        }
        t->base.sampling = v ? cJSON_Duplicate(v, true) : cJSON_CreateObject();
        if (!t->base.sampling) {
                return -ENOMEM;
        }
        /* The model's own sampling (llama-server's defaults) unless the task sets it. */
        t->base.server_sampling = true;
        v = cJSON_GetObjectItemCaseSensitive(o, "files");
        if (v && !cJSON_IsArray(v)) {
                snprintf(error, size, "%s: \"files\" must be a list of file names", path);
                return -EINVAL;
        }
        r = task_prompt(t, v, error, size);
        if (r < 0) {
                return r;
        }
        return task_requires(t, cJSON_GetObjectItemCaseSensitive(o, "requires"), error, size);
}

static int compare_tasks(const void *a, const void *b)
{
        return strcmp(((const QualityTask *) a)->base.name, ((const QualityTask *) b)->base.name);
}

int quality_tasks_load(char *const *dirs, QualityTask **ret, size_t *ret_n, char *error,
                       size_t size)
{
        _cleanup_strv_free_ char **seen = NULL;
        QualityTask *tasks = NULL;
        size_t n = 0;
        int r = 0;

        STRV_FOREACH(d, dirs) {
                _cleanup_free_ char *qdir = NULL;
                DIR *dir;
                struct dirent *e;

                if (asprintf(&qdir, "%s/quality", *d) < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
                dir = opendir(qdir);
                if (!dir) {
                        continue;
                }
                while ((e = readdir(dir))) {
                        _cleanup_free_ char *tdir = NULL, *tjson = NULL;
                        QualityTask *t;

                        /* _lib: the checks' helpers, not a task */
                        if (e->d_name[0] == '.' || e->d_name[0] == '_' ||
                            strv_contains(seen, e->d_name)) {
                                continue;
                        }
                        if (asprintf(&tdir, "%s/%s", qdir, e->d_name) < 0 ||
                            asprintf(&tjson, "%s/task.json", tdir) < 0 ||
                            strv_extend(&seen, e->d_name) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                        /* A folder without task.json (an empty one) hides the task of its name. */
                        if (access(tjson, F_OK) < 0) {
                                continue;
                        }
                        if (!bench_task_name_valid(e->d_name)) {
                                snprintf(error, size,
                                         "%s: a task's folder name must be 1 to %d letters, "
                                         "digits, '-', '_' or '.'",
                                         tdir, BENCH_TASK_NAME_MAX);
                                r = -EINVAL;
                                break;
                        }
                        if (n >= BENCH_TASKS_MAX) {
                                snprintf(error, size, "more than %d quality tasks",
                                         BENCH_TASKS_MAX);
                                r = -E2BIG;
                                break;
                        }
                        t = ARRAY_GROW(tasks, n);
                        if (!t) {
                                r = -ENOMEM;
                                break;
                        }
                        n++;
                        r = task_load(tdir, e->d_name, t, error, size);
                        if (r < 0) {
                                break;
                        }
                }
                closedir(dir);
                if (r < 0) {
                        goto fail;
                }
        }
        if (n > 0) {
                qsort(tasks, n, sizeof(QualityTask), compare_tasks);
        }
        *ret = tasks;
        *ret_n = n;
        return 0;
fail:
        if (r == -ENOMEM) {
                snprintf(error, size, "out of memory");
        }
        quality_tasks_free(tasks, n);
        return r;
}

char *quality_missing_packages(const QualityTask *tasks, size_t n, const char *bwrap, bool *ret_oom)
{
        _cleanup_strv_free_ char **missing = NULL;
        char *s;

        *ret_oom = false;
        if (access(bwrap, X_OK) < 0 && strv_extend(&missing, "bubblewrap") < 0) {
                *ret_oom = true;
                return NULL;
        }
        for (size_t i = 0; i < n; i++) {
                for (size_t k = 0; k < tasks[i].n_requires; k++) {
                        const QualityRequire *q = &tasks[i].requires[k];

                        if (access(q->path, F_OK) == 0 || strv_contains(missing, q->package)) {
                                continue;
                        }
                        if (strv_extend(&missing, q->package) < 0) {
                                *ret_oom = true;
                                return NULL;
                        }
                }
        }
        if (!missing) {
                return NULL;
        }
        s = strv_join(missing, " ");
        *ret_oom = !s;
        return s;
}

/* ---- the answer ---- */

#define THINK_OPEN "<think>"
#define THINK_CLOSE "</think>"

/* content with the thinking taken out, as quality_extract() says. */
static char *strip_thinking(const char *content, bool *ret_cut, unsigned *ret_blocks)
{
        const char *s = content, *open, *close;
        char *out, *o;

        *ret_cut = false;
        *ret_blocks = 0;
        /* A </think> before any <think>: the template opened the block in the prompt. */
        close = strstr(s, THINK_CLOSE);
        open = strstr(s, THINK_OPEN);
        if (close && (!open || close < open)) {
                s = close + strlen(THINK_CLOSE);
                (*ret_blocks)++;
        }
        out = o = malloc(strlen(s) + 1);
        if (!out) {
                return NULL;
        }
        while ((open = strstr(s, THINK_OPEN))) {
                memcpy(o, s, open - s);
                o += open - s;
                close = strstr(open, THINK_CLOSE);
                if (!close) {
                        *ret_cut = true; /* cut off by the token limit: none of it is answer */
                        s = open + strlen(open);
                        break;
                }
                (*ret_blocks)++;
                s = close + strlen(THINK_CLOSE);
        }
        strcpy(o, s);
        return out;
}

static bool blank(const char *s)
{
        return !s || s[strspn(s, " \t\r\n")] == '\0';
}

int quality_extract(const char *content, const char *reasoning, QualityAnswer *ret)
{
        QualityAnswer a = { .from = QUALITY_FROM_CONTENT };

        a.text = strip_thinking(content ? content : "", &a.thinking_cut, &a.thinking_blocks);
        if (!a.text) {
                return -ENOMEM;
        }
        if (blank(a.text) && !blank(reasoning)) {
                bool cut;
                unsigned blocks;

                /* Everything went to reasoning_content: that is the answer, and it is said. */
                free(a.text);
                a.text = strip_thinking(reasoning, &cut, &blocks);
                if (!a.text) {
                        return -ENOMEM;
                }
                a.from = QUALITY_FROM_REASONING;
        } else if (blank(a.text)) {
                a.from = QUALITY_FROM_NOTHING;
        }
        *ret = a;
        return 0;
}

void quality_answer_done(QualityAnswer *a)
{
        free(a->text);
        *a = (QualityAnswer) {};
}

/* ---- a check's result ---- */

void quality_result_done(QualityResult *r)
{
        free(r->error);
        cJSON_Delete(r->check);
        *r = (QualityResult) {};
}

static int result_error(QualityResult *r, const char *message)
{
        free(r->error);
        r->error = strdup(message);
        return r->error ? -EINVAL : -ENOMEM;
}

int quality_check_parse(const char *output, QualityResult *r)
{
        _cleanup_free_ char *copy = strdup(output ? output : "");
        _cleanup_json_ cJSON *o = NULL;
        const cJSON *score, *items, *item;
        char *line = NULL, *s;

        if (!copy) {
                return -ENOMEM;
        }
        /* the last line that is not blank */
        for (s = strtok(copy, "\n"); s; s = strtok(NULL, "\n")) {
                if (!blank(s)) {
                        line = s;
                }
        }
        if (!line) {
                return result_error(r, "the check printed nothing");
        }
        o = cJSON_Parse(line);
        if (!cJSON_IsObject(o)) {
                return result_error(r, "the check's last line is not a JSON object");
        }
        score = cJSON_GetObjectItemCaseSensitive(o, "score");
        if (!cJSON_IsNumber(score) || !(score->valuedouble >= 0 && score->valuedouble <= 100)) {
                return result_error(r, "the check's \"score\" is not a number from 0 to 100");
        }
        items = cJSON_GetObjectItemCaseSensitive(o, "items");
        if (!cJSON_IsArray(items)) {
                return result_error(r, "the check's \"items\" is not a list");
        }
        cJSON_ArrayForEach(item, items) {
                const cJSON *p = cJSON_GetObjectItemCaseSensitive(item, "points");
                const cJSON *m = cJSON_GetObjectItemCaseSensitive(item, "max");

                if (!jstr(item, "name") || !cJSON_IsNumber(p) || !cJSON_IsNumber(m) ||
                    p->valuedouble < 0 || p->valuedouble > m->valuedouble) {
                        return result_error(r,
                                            "an item of the check has no name, or points "
                                            "not from 0 to its max");
                }
        }
        r->score = score->valuedouble;
        cJSON_Delete(r->check);
        r->check = TAKE_PTR(o);
        return 0;
}

/* ---- the sandbox ---- */

char **quality_sandbox_argv(const char *bwrap, const char *lib_dir, const char *task_dir,
                            const char *work_dir)
{
        const char *const head[] = {
                bwrap,
                /* its own user, pid, network, ipc, uts and cgroup namespaces: no network at all */
                "--unshare-all",
                "--die-with-parent",
                "--new-session",
                /* the system, read-only; of /etc only what programs need to start */
                "--ro-bind",
                "/usr",
                "/usr",
                "--symlink",
                "usr/bin",
                "/bin",
                "--symlink",
                "usr/sbin",
                "/sbin",
                "--symlink",
                "usr/lib",
                "/lib",
                "--symlink",
                "usr/lib64",
                "/lib64",
                "--ro-bind-try",
                "/etc/alternatives",
                "/etc/alternatives",
                "--ro-bind-try",
                "/etc/ld.so.cache",
                "/etc/ld.so.cache",
                "--ro-bind-try",
                "/etc/localtime",
                "/etc/localtime",
                "--ro-bind-try",
                "/etc/ssl",
                "/etc/ssl",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--tmpfs",
                "/tmp",
                "--ro-bind",
                task_dir,
                "/task",
                "--bind",
                work_dir,
                "/work",
                "--chdir",
                "/work",
                "--clearenv",
                "--setenv",
                "PATH",
                "/usr/bin:/bin",
                "--setenv",
                "HOME",
                "/work",
                "--setenv",
                "LANG",
                "C.UTF-8",
                "--setenv",
                "PYTHONDONTWRITEBYTECODE",
                "1",
                /* Debian's node modules, for a node that does not look there itself */
                "--setenv",
                "NODE_PATH",
                "/usr/share/nodejs:/usr/lib/nodejs",
                "--setenv",
                "PYTHONPATH",
                "/qlib",
                NULL,
        };
        _cleanup_strv_free_ char **argv = NULL;

        for (size_t i = 0; head[i]; i++) {
                if (strv_extend(&argv, head[i]) < 0) {
                        return NULL;
                }
        }
        /* the checks' shared helpers, read-only */
        if (lib_dir && (strv_extend(&argv, "--ro-bind") < 0 || strv_extend(&argv, lib_dir) < 0 ||
                        strv_extend(&argv, "/qlib") < 0)) {
                return NULL;
        }
        /* last: what is mounted after it would not be read-only */
        if (strv_extend(&argv, "--remount-ro") < 0 || strv_extend(&argv, "/") < 0 ||
            strv_extend(&argv, "/task/check") < 0) {
                return NULL;
        }
        return TAKE_PTR(argv);
}

/* ---- the report ---- */

void quality_report_done(QualityReport *r)
{
        for (size_t i = 0; r->results && i < r->speed->n_models; i++) {
                for (size_t k = 0; r->results[i] && k < r->n_tasks * r->speed->n_runs; k++) {
                        quality_result_done(&r->results[i][k]);
                }
                free(r->results[i]);
        }
        free(r->results);
        r->results = NULL;
}

static const QualityResult *task_results(const QualityReport *r, size_t model, size_t task)
{
        return r->results && r->results[model] ? &r->results[model][task * r->speed->n_runs] : NULL;
}

/* The median score of a task's runs; a run that was not scored counts as 0. NAN: none ran. */
static double task_score(const QualityReport *r, size_t model, size_t task)
{
        const QualityResult *res = task_results(r, model, task);
        double v[BENCH_RUNS_MAX];
        size_t n = 0;

        for (unsigned k = 0; res && k < r->speed->n_runs; k++) {
                if (res[k].ran) {
                        v[n++] = isnan(res[k].score) ? 0 : res[k].score;
                }
        }
        return bench_median(v, n);
}

static void speed_of(const QualityReport *r, size_t model, double *ret_rate, double *ret_ttft)
{
        const BenchReport *b = r->speed;
        const BenchModel *m = &b->models[model];
        double rate = 0, ttft = 0;
        size_t n_rate = 0, n_ttft = 0;

        for (size_t t = 0; m->runs && t < b->n_tasks; t++) {
                BenchSummary s;
                double x;

                bench_summarize(bench_model_runs(b, m, t), b->n_runs, &s);
                x = isnan(s.rate) ? s.server_rate : s.rate;
                if (!isnan(x)) {
                        rate += x;
                        n_rate++;
                }
                if (!isnan(s.ttft_ms)) {
                        ttft += s.ttft_ms;
                        n_ttft++;
                }
        }
        *ret_rate = n_rate ? rate / n_rate : NAN;
        *ret_ttft = n_ttft ? ttft / n_ttft : NAN;
}

/* Without the ranks. */
static void scores_of(const QualityReport *r, size_t model, double fastest, QualityScores *s)
{
        double sum[_QUALITY_CATEGORY_MAX] = {}, weight = 0, total = 0;
        unsigned count[_QUALITY_CATEGORY_MAX] = {};
        static const double weights[_QUALITY_CATEGORY_MAX] = {
                [QUALITY_CODING] = QUALITY_WEIGHT_CODING,
                [QUALITY_REASONING] = QUALITY_WEIGHT_REASONING,
                [QUALITY_TOOLS] = QUALITY_WEIGHT_TOOLS,
        };

        for (size_t t = 0; t < r->n_tasks; t++) {
                s->task[t] = task_score(r, model, t);
                if (!isnan(s->task[t])) {
                        sum[r->tasks[t].category] += s->task[t];
                        count[r->tasks[t].category]++;
                }
        }
        /* A category without tasks (a --tasks folder of some) leaves the total; one whose model
         * failed counts 0. */
        for (int c = 0; c < _QUALITY_CATEGORY_MAX; c++) {
                bool has = false;

                for (size_t t = 0; t < r->n_tasks; t++) {
                        has = has || r->tasks[t].category == (QualityCategory) c;
                }
                s->category[c] = count[c] ? sum[c] / count[c] : has ? 0 : NAN;
                if (has) {
                        total += weights[c] * s->category[c];
                        weight += weights[c];
                }
        }
        speed_of(r, model, &s->rate, &s->ttft_ms);
        s->speed = fastest > 0 && !isnan(s->rate) ? s->rate / fastest * 100 : 0;
        if (r->speed->n_tasks > 0) {
                total += QUALITY_WEIGHT_SPEED * s->speed;
                weight += QUALITY_WEIGHT_SPEED;
        }
        s->total = weight > 0 ? total / weight : NAN;
}

static double fastest_rate(const QualityReport *r)
{
        double best = 0;

        for (size_t i = 0; i < r->speed->n_models; i++) {
                double rate, ttft;

                speed_of(r, i, &rate, &ttft);
                if (!isnan(rate) && rate > best) {
                        best = rate;
                }
        }
        return best;
}

void quality_scores(const QualityReport *r, size_t model, QualityScores *ret)
{
        double fastest = fastest_rate(r);

        scores_of(r, model, fastest, ret);
        ret->rank = 1;
        for (size_t i = 0; i < r->speed->n_models; i++) {
                QualityScores other;

                if (i == model) {
                        continue;
                }
                scores_of(r, i, fastest, &other);
                if (other.total > ret->total || (isnan(ret->total) && !isnan(other.total))) {
                        ret->rank++;
                }
        }
}

/* The models by rank (ties in the order they ran). */
static size_t *rank_order(const QualityReport *r)
{
        size_t n = r->speed->n_models, *order = calloc(n ? n : 1, sizeof(size_t));
        unsigned *rank = calloc(n ? n : 1, sizeof(unsigned));

        if (!order || !rank) {
                free(order);
                free(rank);
                return NULL;
        }
        for (size_t i = 0; i < n; i++) {
                QualityScores s;

                quality_scores(r, i, &s);
                rank[i] = s.rank;
                order[i] = i;
        }
        /* insertion sort: stable, and there are few models */
        for (size_t i = 1; i < n; i++) {
                for (size_t k = i; k > 0 && rank[order[k - 1]] > rank[order[k]]; k--) {
                        size_t x = order[k];

                        order[k] = order[k - 1];
                        order[k - 1] = x;
                }
        }
        free(rank);
        return order;
}

static void add_number(cJSON *o, const char *key, double v)
{
        if (isnan(v)) {
                cJSON_AddNullToObject(o, key);
        } else {
                cJSON_AddNumberToObject(o, key, round(v * 1000) / 1000);
        }
}

static cJSON *result_json(const QualityResult *res)
{
        cJSON *o = cJSON_CreateObject();

        add_number(o, "score", res->score);
        cJSON_AddStringToObject(o, "end", bench_end_to_string(res->end));
        add_number(o, "tokens", res->tokens);
        cJSON_AddStringToObject(o, "answer_from", quality_from_to_string(res->from));
        cJSON_AddBoolToObject(o, "thinking_cut", res->thinking_cut);
        if (res->error) {
                cJSON_AddStringToObject(o, "error", res->error);
        } else {
                cJSON_AddNullToObject(o, "error");
        }
        if (res->check) {
                cJSON_AddItemToObject(o, "check", cJSON_Duplicate(res->check, true));
        } else {
                cJSON_AddNullToObject(o, "check");
        }
        return o;
}

cJSON *quality_report_json(const QualityReport *r)
{
        const BenchReport *b = r->speed;
        _cleanup_json_ cJSON *o = bench_report_json(b);
        _cleanup_free_ size_t *order = rank_order(r);
        cJSON *tasks, *models;

        if (!o || !order) {
                return NULL;
        }
        cJSON_AddStringToObject(o, "suite", "quality");
        tasks = cJSON_AddArrayToObject(o, "quality_tasks");
        for (size_t t = 0; t < r->n_tasks; t++) {
                cJSON *j = cJSON_CreateObject();

                cJSON_AddStringToObject(j, "name", r->tasks[t].base.name);
                cJSON_AddStringToObject(j, "title", r->tasks[t].title);
                cJSON_AddStringToObject(j, "category",
                                        quality_category_to_string(r->tasks[t].category));
                cJSON_AddNumberToObject(j, "max_tokens", r->tasks[t].base.max_tokens);
                cJSON_AddItemToArray(tasks, j);
        }
        models = cJSON_AddArrayToObject(o, "quality");
        for (size_t k = 0; k < b->n_models; k++) {
                size_t i = order[k];
                cJSON *m = cJSON_CreateObject(), *ts, *cats;
                QualityScores s;

                quality_scores(r, i, &s);
                cJSON_AddStringToObject(m, "model", b->models[i].name);
                cJSON_AddNumberToObject(m, "rank", s.rank);
                add_number(m, "total", s.total);
                cats = cJSON_AddObjectToObject(m, "categories");
                for (int c = 0; c < _QUALITY_CATEGORY_MAX; c++) {
                        add_number(cats, category_names[c], s.category[c]);
                }
                add_number(cats, "speed", s.speed);
                add_number(m, "tok_per_sec", s.rate);
                add_number(m, "ttft_ms", s.ttft_ms);
                if (b->models[i].failed) {
                        cJSON_AddStringToObject(m, "failed", b->models[i].failed);
                }
                ts = cJSON_AddObjectToObject(m, "tasks");
                for (size_t t = 0; t < r->n_tasks; t++) {
                        const QualityResult *res = task_results(r, i, t);
                        cJSON *tj = cJSON_CreateObject(), *runs;

                        add_number(tj, "score", s.task[t]);
                        runs = cJSON_AddArrayToObject(tj, "runs");
                        for (unsigned k2 = 0; res && k2 < b->n_runs; k2++) {
                                if (res[k2].ran) {
                                        cJSON_AddItemToArray(runs, result_json(&res[k2]));
                                }
                        }
                        cJSON_AddItemToObject(ts, r->tasks[t].base.name, tj);
                }
                cJSON_AddItemToArray(models, m);
        }
        return TAKE_PTR(o);
}

static void format_score(char *buf, size_t size, double v)
{
        if (isnan(v)) {
                snprintf(buf, size, "-");
        } else {
                snprintf(buf, size, "%.1f", v);
        }
}

/* One table: the models by rank, with the columns of what. */
typedef enum Table {
        TABLE_CATEGORY, /* the tasks of one category and its mean */
        TABLE_SPEED,
        TABLE_TOTAL,
} Table;

static int print_one(const QualityReport *r, const size_t *order, Table what, QualityCategory c,
                     FILE *out, bool markdown)
{
        const BenchReport *b = r->speed;
        size_t n_cols = 1, n_rows = 1 + b->n_models, col;
        _cleanup_free_ char *cells = NULL;

        switch (what) {
        case TABLE_CATEGORY:
                for (size_t t = 0; t < r->n_tasks; t++) {
                        n_cols += r->tasks[t].category == c;
                }
                if (n_cols == 1) {
                        return 0;
                }
                n_cols++;
                break;
        case TABLE_SPEED:
                if (b->n_tasks == 0) {
                        return 0;
                }
                n_cols += b->n_tasks + 3;
                break;
        case TABLE_TOTAL:
                n_cols += 6;
                break;
        }
        cells = calloc(n_cols * n_rows, BENCH_CELL_MAX);
        if (!cells) {
                return -ENOMEM;
        }
#define CELL(row, col) (cells + (n_cols * (row) + (col)) * BENCH_CELL_MAX)
        snprintf(CELL(0, 0), BENCH_CELL_MAX, "Model");
        col = 1;
        switch (what) {
        case TABLE_CATEGORY:
                for (size_t t = 0; t < r->n_tasks; t++) {
                        if (r->tasks[t].category == c) {
                                snprintf(CELL(0, col++), BENCH_CELL_MAX, "%s",
                                         r->tasks[t].base.name);
                        }
                }
                snprintf(CELL(0, col), BENCH_CELL_MAX, "%s", category_names[c]);
                break;
        case TABLE_SPEED:
                for (size_t t = 0; t < b->n_tasks; t++) {
                        snprintf(CELL(0, col++), BENCH_CELL_MAX, "%s tok/s", b->tasks[t].name);
                }
                snprintf(CELL(0, col++), BENCH_CELL_MAX, "mean tok/s");
                snprintf(CELL(0, col++), BENCH_CELL_MAX, "TTFT");
                snprintf(CELL(0, col), BENCH_CELL_MAX, "speed");
                break;
        case TABLE_TOTAL: {
                static const char *const heads[] = { "coding", "reasoning", "tools",
                                                     "speed",  "total",     "rank" };

                for (size_t k = 0; k < ELEMENTSOF(heads); k++) {
                        snprintf(CELL(0, col++), BENCH_CELL_MAX, "%s", heads[k]);
                }
                break;
        }
        }
        for (size_t k = 0; k < b->n_models; k++) {
                size_t i = order[k], row = 1 + k;
                _cleanup_free_ char *name = utf8_escape_terminal(b->models[i].name);
                QualityScores s;

                quality_scores(r, i, &s);
                snprintf(CELL(row, 0), BENCH_CELL_MAX, "%s", name ? name : "?");
                col = 1;
                switch (what) {
                case TABLE_CATEGORY:
                        for (size_t t = 0; t < r->n_tasks; t++) {
                                if (r->tasks[t].category == c) {
                                        format_score(CELL(row, col++), BENCH_CELL_MAX, s.task[t]);
                                }
                        }
                        format_score(CELL(row, col), BENCH_CELL_MAX, s.category[c]);
                        break;
                case TABLE_SPEED:
                        for (size_t t = 0; t < b->n_tasks; t++) {
                                BenchSummary sum = { .rate = NAN, .server_rate = NAN };

                                if (b->models[i].runs) {
                                        bench_summarize(bench_model_runs(b, &b->models[i], t),
                                                        b->n_runs, &sum);
                                }
                                format_score(CELL(row, col++), BENCH_CELL_MAX,
                                             isnan(sum.rate) ? sum.server_rate : sum.rate);
                        }
                        format_score(CELL(row, col++), BENCH_CELL_MAX, s.rate);
                        if (isnan(s.ttft_ms)) {
                                snprintf(CELL(row, col++), BENCH_CELL_MAX, "-");
                        } else {
                                snprintf(CELL(row, col++), BENCH_CELL_MAX, "%.0f ms", s.ttft_ms);
                        }
                        format_score(CELL(row, col), BENCH_CELL_MAX, s.speed);
                        break;
                case TABLE_TOTAL:
                        for (int cc = 0; cc < _QUALITY_CATEGORY_MAX; cc++) {
                                format_score(CELL(row, col++), BENCH_CELL_MAX, s.category[cc]);
                        }
                        format_score(CELL(row, col++), BENCH_CELL_MAX, b->n_tasks ? s.speed : NAN);
                        format_score(CELL(row, col++), BENCH_CELL_MAX, s.total);
                        snprintf(CELL(row, col), BENCH_CELL_MAX, "%u", s.rank);
                        break;
                }
        }
#undef CELL
        fprintf(out, "\n%s%s\n\n", markdown ? "### " : "",
                what == TABLE_SPEED   ? "speed"
                : what == TABLE_TOTAL ? "total (coding 40%, reasoning 20%, tools 20%, speed 20%)"
                                      : category_names[c]);
        return bench_print_grid(out, cells, n_rows, n_cols, markdown);
}

/* What each model missed, and what is worth knowing about its answers. */
static void print_quality_notes(const QualityReport *r, const size_t *order, FILE *out,
                                bool markdown)
{
        const BenchReport *b = r->speed;
        const char *item = markdown ? "- " : "  ";

        fprintf(out,
                "\nScores out of 100, medians of %u run%s; a coding task is features/max × 60 + "
                "functional/max × 40, × 2/3 when its code does not parse; speed is relative to the "
                "fastest model.\n",
                b->n_runs, b->n_runs == 1 ? "" : "s");
        for (size_t k = 0; k < b->n_models; k++) {
                size_t i = order[k];
                _cleanup_free_ char *name = utf8_escape_terminal(b->models[i].name);
                bool head = false;

                if (b->models[i].failed) {
                        _cleanup_free_ char *why = utf8_escape_terminal(b->models[i].failed);

                        fprintf(out, "\n%s: not measured: %s\n", name ? name : "?",
                                why ? why : "?");
                        continue;
                }
                for (size_t t = 0; t < r->n_tasks; t++) {
                        const QualityResult *res = task_results(r, i, t);

                        for (unsigned run = 0; res && run < b->n_runs; run++) {
                                const QualityResult *x = &res[run];
                                const cJSON *it;
                                _cleanup_free_ char *missed = NULL;

                                if (!x->ran) {
                                        continue;
                                }
                                cJSON_ArrayForEach(
                                        it, cJSON_GetObjectItemCaseSensitive(x->check, "items")) {
                                        double p = jnum(it, "points", 0), m = jnum(it, "max", 0);
                                        char *s;

                                        if (p >= m) {
                                                continue;
                                        }
                                        if (asprintf(&s, "%s%s%s", missed ? missed : "",
                                                     missed ? "; " : "", jstr(it, "name")) < 0) {
                                                break;
                                        }
                                        free(missed);
                                        missed = s;
                                }
                                if (!missed && !x->error && x->from == QUALITY_FROM_CONTENT &&
                                    !x->thinking_cut) {
                                        continue;
                                }
                                if (!head) {
                                        fprintf(out, "\n%s%s:\n", markdown ? "" : "",
                                                name ? name : "?");
                                        head = true;
                                }
                                fprintf(out, "%s%s run %u:", item, r->tasks[t].base.name, run + 1);
                                if (x->error) {
                                        _cleanup_free_ char *e = utf8_escape_terminal(x->error);

                                        fprintf(out, " %s;", e ? e : "?");
                                }
                                if (x->from == QUALITY_FROM_REASONING) {
                                        fputs(" the answer was only in reasoning_content, scored "
                                              "from there;",
                                              out);
                                } else if (x->from == QUALITY_FROM_NOTHING) {
                                        fputs(" no answer;", out);
                                }
                                if (x->thinking_cut) {
                                        fputs(" a thinking block cut off by the token limit was "
                                              "left out;",
                                              out);
                                }
                                if (missed) {
                                        _cleanup_free_ char *e = utf8_escape_terminal(missed);

                                        fprintf(out, " missed: %s", e ? e : "?");
                                }
                                fputc('\n', out);
                        }
                }
        }
}

static int print_quality_csv(const QualityReport *r, const size_t *order, FILE *out)
{
        const BenchReport *b = r->speed;

        fputs("model,rank,category,task,score,runs,error\n", out);
        for (size_t k = 0; k < b->n_models; k++) {
                size_t i = order[k];
                QualityScores s;

                quality_scores(r, i, &s);
                for (size_t t = 0; t < r->n_tasks; t++) {
                        const QualityResult *res = task_results(r, i, t);
                        const char *error = NULL;

                        for (unsigned run = 0; res && run < b->n_runs && !error; run++) {
                                error = res[run].error;
                        }
                        bench_csv_field(out, b->models[i].name);
                        fprintf(out, ",%u,%s,", s.rank,
                                quality_category_to_string(r->tasks[t].category));
                        bench_csv_field(out, r->tasks[t].base.name);
                        bench_csv_number(out, s.task[t]);
                        fprintf(out, ",%u,", b->n_runs);
                        bench_csv_field(out, b->models[i].failed ? b->models[i].failed
                                             : error             ? error
                                                                 : "");
                        fputc('\n', out);
                }
                for (int c = 0; c <= _QUALITY_CATEGORY_MAX + 1; c++) {
                        const char *what = c < _QUALITY_CATEGORY_MAX    ? category_names[c]
                                           : c == _QUALITY_CATEGORY_MAX ? "speed"
                                                                        : "total";
                        double v = c < _QUALITY_CATEGORY_MAX    ? s.category[c]
                                   : c == _QUALITY_CATEGORY_MAX ? s.speed
                                                                : s.total;

                        bench_csv_field(out, b->models[i].name);
                        fprintf(out, ",%u,%s,", s.rank, what);
                        bench_csv_number(out, v);
                        fprintf(out, ",%u,\n", b->n_runs);
                }
        }
        return 0;
}

int quality_report_print(const QualityReport *r, BenchFormat format, FILE *out)
{
        _cleanup_free_ size_t *order = rank_order(r);
        int k = 0;

        if (!order) {
                return -ENOMEM;
        }
        switch (format) {
        case BENCH_FORMAT_TABLE:
        case BENCH_FORMAT_MARKDOWN: {
                bool markdown = format == BENCH_FORMAT_MARKDOWN;

                for (int c = 0; k >= 0 && c < _QUALITY_CATEGORY_MAX; c++) {
                        k = print_one(r, order, TABLE_CATEGORY, (QualityCategory) c, out, markdown);
                }
                if (k >= 0) {
                        k = print_one(r, order, TABLE_SPEED, 0, out, markdown);
                }
                if (k >= 0) {
                        k = print_one(r, order, TABLE_TOTAL, 0, out, markdown);
                }
                if (k >= 0) {
                        print_quality_notes(r, order, out, markdown);
                }
                break;
        }
        case BENCH_FORMAT_CSV:
                k = print_quality_csv(r, order, out);
                break;
        case BENCH_FORMAT_JSON: {
                _cleanup_json_ cJSON *j = quality_report_json(r);
                _cleanup_free_ char *s = j ? cJSON_Print(j) : NULL;

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
