/* SPDX-License-Identifier: MIT */
#include <curl/curl.h>
#include <fcntl.h>
#include <ftw.h>
#include <ini.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "bench-quality.h"
#include "bench-report.h"
#include "bench.h"
#include "control-protocol.h"
#include "fileio.h"
#include "parse-util.h"
#include "strv.h"
#include "time-util.h"
#include "utf8.h"

/*
 * The order of one bench:
 *
 *   Status, List (what is active, which models)  →  for each model: Switch, warm-up, the runs
 *   →  Switch back to the model active at the start (and Stop, if nothing was loaded then)
 *   →  the report.
 *
 * The model active at the start is measured last, so its switch is timed too and the end
 * needs no switch back. Ctrl-C stops the run in progress, then the switch back happens; a second
 * Ctrl-C ends llmctl at once (SA_RESETHAND).
 */

#define BENCH_WARMUP_TOKENS 16
#define BENCH_CONNECT_TIMEOUT_SEC 10
#define BENCH_PROGRESS_USEC (100 * USEC_PER_MSEC)
#define BENCH_DEFAULT_URL "http://127.0.0.1:8080"
#define BENCH_PATH "/v1/chat/completions"

static volatile sig_atomic_t bench_interrupted;

typedef struct Bench {
        const Client *cl;
        BenchFormat format;
        BenchReport report;
        BenchTask *tasks;
        size_t n_tasks;
        CURL *curl;
        struct curl_slist *headers;
        char curl_error[CURL_ERROR_SIZE];
        unsigned timeout;
        uint64_t data_usec; /* when the request in progress last received something */
        bool timed_out;

        char *initial;       /* the active generation model at the start, or NULL */
        bool initial_loaded; /* ... and whether it was loaded (not after llmctl stop) */

        /* --suite quality */
        bool quality;
        char **dirs; /* the bench.d folders */
        QualityTask *qtasks;
        size_t n_qtasks;
        QualityReport qreport;
        char *qlib;    /* quality/_lib of the first bench.d folder that has one */
        char *scratch; /* where runs are made when --keep is not given; removed at the end */
        FILE *raw;     /* the response as it came, with --keep */

        /* the progress line, on stderr when it is a terminal */
        bool progress;
        char progress_head[256];
        BenchRun *current;
        uint64_t drawn_usec;
} Bench;

static void on_signal(int sig)
{
        bench_interrupted = 1;
}

/* ---- progress ---- */

static void progress_draw(Bench *b, bool force)
{
        uint64_t now;

        if (!b->progress) {
                return;
        }
        now = now_usec(CLOCK_MONOTONIC);
        if (!force && now - b->drawn_usec < BENCH_PROGRESS_USEC) {
                return;
        }
        b->drawn_usec = now;
        fprintf(stderr, "\r\033[K%s", b->progress_head);
        if (b->current && b->current->first_usec != 0) {
                fprintf(stderr, " · %.0f of %u tokens", bench_run_tokens(b->current),
                        b->current->max_tokens);
        }
        fflush(stderr);
}

static void progress_set(Bench *b, const char *format, ...) _printf_(2, 3);
static void progress_set(Bench *b, const char *format, ...)
{
        _cleanup_free_ char *head = NULL, *escaped = NULL;
        va_list ap;
        int r;

        /* The head names models llmd sent: escaped, they cannot draw on the terminal. */
        va_start(ap, format);
        r = vasprintf(&head, format, ap);
        va_end(ap);
        escaped = r >= 0 ? utf8_escape_terminal(head) : NULL;
        snprintf(b->progress_head, sizeof(b->progress_head), "%s", escaped ? escaped : "");
        progress_draw(b, true);
}

static void progress_clear(Bench *b)
{
        if (b->progress) {
                fputs("\r\033[K", stderr);
                fflush(stderr);
        }
}

/* ---- the control socket ---- */

typedef struct CallResult {
        Bench *bench;
        const char *label; /* for progress: "model 1 of 2: gemma" */
        cJSON *last;       /* the last reply's parameters */
} CallResult;

static void keep_reply(Client *c, const cJSON *params, bool continues)
{
        CallResult *res = c->userdata;

        if (continues && res->bench && res->label) {
                const char *phase = jstr(params, "phase");

                if (cJSON_GetObjectItemCaseSensitive(params, "progress")) {
                        progress_set(res->bench, "%s: %s %d%%", res->label, phase ? phase : "",
                                     (int) (jnum(params, "progress", 0) * 100));
                } else {
                        progress_set(res->bench, "%s: %s", res->label, phase ? phase : "");
                }
        }
        cJSON_Delete(res->last);
        res->last = cJSON_Duplicate(params, true);
}

/* One call on a connection of its own (an interrupted call may leave replies behind). With
 * interruptible, Ctrl-C ends it. Returns an exit code; *ret_error as client_call(). */
static int bench_call(Bench *b, int method, cJSON *params, bool interruptible, CallResult *res,
                      VarlinkReply *ret_error)
{
        Client c = {
                .path = b->cl->path,
                .fd = -1,
                .terminal = false,
                .interrupted = interruptible ? &bench_interrupted : NULL,
                .userdata = res,
        };
        int r;

        varlink_reader_init(&c.reader);
        r = client_connect(&c);
        if (r == 0) {
                r = client_call(&c, method, params, method == CONTROL_METHOD_SWITCH, keep_reply,
                                ret_error);
        }
        client_done(&c);
        return r;
}

/* Why an error reply came, in a few words. */
static char *error_reason(const VarlinkReply *e)
{
        const char *reason = jstr(e->parameters, "reason");
        char *s;

        if (streq(e->error, CONTROL_ERROR_LOAD_FAILED)) {
                if (asprintf(&s, "failed to load: %s", reason ? reason : "?") < 0) {
                        return NULL;
                }
                return s;
        }
        return strdup(reason ? reason : e->error);
}

/* Switches to model; *ret_swap_sec is the time it took (NAN: it was active already). Returns
 * 0, an exit code, or EXIT_REFUSED with *ret_failed saying why. */
static int bench_switch(Bench *b, const char *model, const char *label, bool interruptible,
                        double *ret_swap_sec, char **ret_failed)
{
        _cleanup_json_ cJSON *params = cJSON_CreateObject();
        CallResult res = { .bench = b, .label = label };
        VarlinkReply e = {};
        uint64_t t0 = now_usec(CLOCK_MONOTONIC);
        int r;

        if (!params || !cJSON_AddStringToObject(params, "model", model)) {
                return fail(EXIT_USAGE, "out of memory");
        }
        r = bench_call(b, CONTROL_METHOD_SWITCH, params, interruptible, &res, &e);
        if (r == EXIT_REFUSED && e.error) {
                *ret_failed = error_reason(&e);
                varlink_reply_done(&e);
                cJSON_Delete(res.last);
                return EXIT_REFUSED;
        }
        if (r == 0) {
                if (!jbool(res.last, "changed")) {
                        *ret_swap_sec = NAN;
                } else {
                        *ret_swap_sec =
                                jnum(res.last, "total_sec",
                                     (double) (now_usec(CLOCK_MONOTONIC) - t0) / USEC_PER_SEC);
                }
        }
        cJSON_Delete(res.last);
        return r;
}

/* ---- where to send the requests ---- */

static int listen_handler(void *user, const char *section, const char *name, const char *value)
{
        char **ret = user;

        if (!*ret && streq(section, "llmd") && streq(name, "listen")) {
                *ret = strdup(value);
        }
        return 1;
}

/* http://HOST:PORT of llmd's first [llmd] listen address in its configuration file. */
static int bench_url_from_config(const char *config, char **ret)
{
        _cleanup_free_ char *listen = NULL, *host = NULL, *text = NULL;
        _cleanup_strv_free_ char **l = NULL;
        uint16_t port;
        int r;

        /* llmd's own limit on its configuration */
        r = read_file(config, 0, 4 * 1024 * 1024, &text);
        if (r < 0) {
                return fail(EXIT_USAGE,
                            "cannot read %s for llmd's address: %s (give it with --url)", config,
                            file_strerror(r));
        }
        (void) ini_parse_string(text, listen_handler, &listen);
        if (!listen) {
                *ret = strdup(BENCH_DEFAULT_URL);
                return *ret ? 0 : fail(EXIT_USAGE, "out of memory");
        }
        if (strv_split(listen, ", \t", &l) < 0 || !l[0] ||
            parse_listen_address(l[0], &host, &port) < 0) {
                return fail(EXIT_USAGE,
                            "%s: cannot read [llmd] listen = %s (give the address with --url)",
                            config, listen);
        }
        /* An address that means "all of them" is reached on loopback. */
        if (isempty(host) || streq(host, "0.0.0.0")) {
                r = asprintf(ret, "http://127.0.0.1:%u", port);
        } else if (streq(host, "::")) {
                r = asprintf(ret, "http://[::1]:%u", port);
        } else if (strchr(host, ':')) {
                r = asprintf(ret, "http://[%s]:%u", host, port);
        } else {
                r = asprintf(ret, "http://%s:%u", host, port);
        }
        return r < 0 ? fail(EXIT_USAGE, "out of memory") : 0;
}

/* The chat completions endpoint under url, which may be the base a client is given
 * (http://host:8080 or http://host:8080/v1) or the endpoint itself. */
static char *bench_endpoint(const char *url)
{
        _cleanup_free_ char *base = strdup(url);
        size_t n;
        char *s;

        if (!base) {
                return NULL;
        }
        n = strlen(base);
        if (n >= strlen(BENCH_PATH) && streq(base + n - strlen(BENCH_PATH), BENCH_PATH)) {
                return TAKE_PTR(base);
        }
        while (n > 0 && base[n - 1] == '/') {
                base[--n] = '\0';
        }
        if (n >= 3 && streq(base + n - 3, "/v1")) {
                base[n - 3] = '\0';
        }
        return asprintf(&s, "%s%s", base, BENCH_PATH) < 0 ? NULL : s;
}

/* ---- one request ---- */

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
        Bench *b = userdata;

        b->data_usec = now_usec(CLOCK_MONOTONIC);
        if (b->raw) {
                (void) fwrite(data, size, n, b->raw);
        }
        if (bench_run_feed(b->current, data, size * n, b->data_usec) < 0) {
                return 0; /* CURLE_WRITE_ERROR */
        }
        progress_draw(b, false);
        return size * n;
}

/* Called at least once a second, also while nothing arrives. */
static int on_transfer(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
        Bench *b = userdata;

        /* curl's own CURLOPT_LOW_SPEED_TIME averages over several seconds: a stall would be
         * seen seconds late. */
        if (now_usec(CLOCK_MONOTONIC) - b->data_usec > b->timeout * USEC_PER_SEC) {
                b->timed_out = true;
        }
        return bench_interrupted || b->timed_out; /* CURLE_ABORTED_BY_CALLBACK */
}

static int bench_curl_init(Bench *b, const char *endpoint)
{
        const char *key = getenv("LLMD_API_KEY");

        b->curl = curl_easy_init();
        if (!b->curl) {
                return fail(EXIT_USAGE, "cannot set up libcurl");
        }
        b->headers = curl_slist_append(NULL, "Content-Type: application/json");
        b->headers = curl_slist_append(b->headers, "Expect:");
        if (!isempty(key)) {
                _cleanup_free_ char *h = NULL;

                if (asprintf(&h, "Authorization: Bearer %s", key) < 0) {
                        return fail(EXIT_USAGE, "out of memory");
                }
                b->headers = curl_slist_append(b->headers, h);
        }
        if (!b->headers) {
                return fail(EXIT_USAGE, "out of memory");
        }
        curl_easy_setopt(b->curl, CURLOPT_URL, endpoint);
        curl_easy_setopt(b->curl, CURLOPT_HTTPHEADER, b->headers);
        curl_easy_setopt(b->curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(b->curl, CURLOPT_WRITEDATA, b);
        curl_easy_setopt(b->curl, CURLOPT_XFERINFOFUNCTION, on_transfer);
        curl_easy_setopt(b->curl, CURLOPT_XFERINFODATA, b);
        curl_easy_setopt(b->curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(b->curl, CURLOPT_NOSIGNAL, 1L);
        /* What is measured is llmd, not a proxy between (curl honours $http_proxy). */
        curl_easy_setopt(b->curl, CURLOPT_NOPROXY, "*");
        /* No total timeout: a stream may take long. One that sends nothing for the timeout is
         * given up by on_transfer(). */
        curl_easy_setopt(b->curl, CURLOPT_CONNECTTIMEOUT, (long) BENCH_CONNECT_TIMEOUT_SEC);
        curl_easy_setopt(b->curl, CURLOPT_ERRORBUFFER, b->curl_error);
        return 0;
}

/* One streamed request into run. Returns 0 (whatever the run's end), EXIT_INTERRUPTED or
 * EXIT_USAGE (out of memory). */
/* body: the request, or NULL for the task's own (bench_task_request()). */
static int bench_request(Bench *b, const char *model, const BenchTask *t, const char *request,
                         unsigned max_tokens, BenchRun *run)
{
        _cleanup_free_ char *body =
                request ? strdup(request) : bench_task_request(t, model, max_tokens);
        char message[CURL_ERROR_SIZE + 64];
        const char *transport = NULL;
        long status = 0;
        CURLcode rc;

        if (!body) {
                return fail(EXIT_USAGE, "out of memory");
        }
        curl_easy_setopt(b->curl, CURLOPT_POSTFIELDS, body);
        b->curl_error[0] = '\0';
        bench_run_init(run, max_tokens, now_usec(CLOCK_MONOTONIC));
        if (b->quality) {
                bench_run_collect(run);
        }
        b->data_usec = run->start_usec;
        b->timed_out = false;
        b->current = run;
        rc = curl_easy_perform(b->curl);
        b->current = NULL;
        if (bench_interrupted) {
                (void) bench_run_finish(run, 0, "interrupted", false);
                return EXIT_INTERRUPTED;
        }
        (void) curl_easy_getinfo(b->curl, CURLINFO_RESPONSE_CODE, &status);
        if (b->timed_out) {
                snprintf(message, sizeof(message), "nothing arrived for %u s", b->timeout);
                transport = message;
        } else if (rc == CURLE_WRITE_ERROR) {
                transport = "an event line longer than 1 MiB";
        } else if (rc != CURLE_OK) {
                snprintf(message, sizeof(message), "%s",
                         b->curl_error[0] ? b->curl_error : curl_easy_strerror(rc));
                transport = message;
        }
        if (bench_run_finish(run, status, transport, b->timed_out) < 0) {
                return fail(EXIT_USAGE, "out of memory");
        }
        return 0;
}

/* ---- the models ---- */

/* The configured name of name or alias in List's reply; NULL when unknown. */
static const cJSON *find_model(const cJSON *list, const char *name)
{
        const cJSON *m, *a;

        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(list, "models")) {
                if (jstr(m, "name") && streq(jstr(m, "name"), name)) {
                        return m;
                }
        }
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(list, "models")) {
                cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(m, "aliases")) {
                        if (cJSON_IsString(a) && streq(a->valuestring, name)) {
                                return m;
                        }
                }
        }
        return NULL;
}

/* The models to measure, by name: those asked for, else every generation model; the one
 * active at the start last. */
static int bench_select_models(Bench *b, const cJSON *list)
{
        const LlmctlArgs *a = &b->cl->args;
        _cleanup_strv_free_ char **names = NULL;
        const cJSON *m;

        if (a->n_args > 0) {
                for (unsigned i = 0; i < a->n_args; i++) {
                        m = find_model(list, a->args[i]);
                        if (!m) {
                                return fail(EXIT_REFUSED,
                                            "unknown model '%s' (llmctl list shows them)",
                                            a->args[i]);
                        }
                        if (jbool(m, "pinned") || jbool(m, "embeddings")) {
                                bool embeddings = jbool(m, "embeddings");

                                return fail(EXIT_REFUSED,
                                            "%s is %s: bench measures generation models",
                                            jstr(m, "name"),
                                            embeddings ? "an embedding model" : "pinned");
                        }
                        if (!strv_contains(names, jstr(m, "name")) &&
                            strv_extend(&names, jstr(m, "name")) < 0) {
                                return fail(EXIT_USAGE, "out of memory");
                        }
                }
        } else {
                cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(list, "models")) {
                        if (jbool(m, "pinned") || jbool(m, "embeddings") || !jstr(m, "name")) {
                                continue;
                        }
                        if (strv_extend(&names, jstr(m, "name")) < 0) {
                                return fail(EXIT_USAGE, "out of memory");
                        }
                }
                if (!names) {
                        return fail(EXIT_REFUSED, "llmd has no generation model to measure");
                }
        }
        size_t n = strv_length(names);
        b->report.models = calloc(n, sizeof(BenchModel));
        if (!b->report.models) {
                return fail(EXIT_USAGE, "out of memory");
        }
        for (size_t i = 0, k = 0; i < n; i++) {
                bool last = b->initial && b->initial_loaded && streq(names[i], b->initial);
                size_t at = last ? n - 1 : k++;

                const cJSON *p =
                        cJSON_GetObjectItemCaseSensitive(find_model(list, names[i]), "bench");

                b->report.models[at] = (BenchModel) {
                        .name = TAKE_PTR(names[i]),
                        .swap_sec = NAN,
                        .temperature = jnum(p, "temperature", NAN),
                        .top_p = jnum(p, "top_p", NAN),
                        .max_tokens_factor = jnum(p, "max_tokens_factor", 1),
                };
        }
        b->report.n_models = n;
        return 0;
}

/* What is active now, which models there are, and where llmd listens. */
static int bench_ask_llmd(Bench *b, cJSON **ret_list)
{
        CallResult status = {}, list = {};
        const cJSON *active;
        int r;

        r = bench_call(b, CONTROL_METHOD_STATUS, NULL, true, &status, NULL);
        if (r == 0) {
                r = bench_call(b, CONTROL_METHOD_LIST, NULL, true, &list, NULL);
        }
        if (r != 0) {
                goto finish;
        }
        active = cJSON_GetObjectItemCaseSensitive(status.last, "active");
        if (jstr(active, "name")) {
                b->initial = strdup(jstr(active, "name"));
                if (!b->initial) {
                        r = fail(EXIT_USAGE, "out of memory");
                        goto finish;
                }
        }
        b->initial_loaded = jbool(status.last, "loaded");
        if (b->cl->args.url) {
                b->report.url = bench_endpoint(b->cl->args.url);
        } else {
                _cleanup_free_ char *base = NULL;
                const char *config = jstr(status.last, "config");

                r = config ? bench_url_from_config(config, &base) : 0;
                if (r != 0) {
                        goto finish;
                }
                b->report.url = bench_endpoint(base ? base : BENCH_DEFAULT_URL);
        }
        if (!b->report.url) {
                r = fail(EXIT_USAGE, "out of memory");
                goto finish;
        }
        *ret_list = TAKE_PTR(list.last);
finish:
        cJSON_Delete(status.last);
        cJSON_Delete(list.last);
        return r;
}

/* ---- --suite quality ---- */

#define QUALITY_BWRAP "/usr/bin/bwrap"
/* What model-written code may take: memory (RLIMIT_DATA, which counts the heap and private
 * writable mappings, not address space reserved without access: node's WebAssembly reserves
 * 10 GiB of that for fetch() alone), the size of a file it writes, and CPU time beyond the
 * check's own timeout. */
#define QUALITY_LIMIT_DATA (4ULL * 1024 * 1024 * 1024)
#define QUALITY_LIMIT_FSIZE (64ULL * 1024 * 1024)

static int quality_load(Bench *b)
{
        _cleanup_free_ char *missing = NULL;
        char error[512];
        bool oom;
        int r;

        r = quality_tasks_load(b->dirs, &b->qtasks, &b->n_qtasks, error, sizeof(error));
        if (r < 0) {
                return fail(EXIT_USAGE, "%s", error);
        }
        if (b->n_qtasks == 0) {
                _cleanup_free_ char *where = strv_join(b->dirs, ", ");

                return fail(EXIT_USAGE, "no quality tasks (quality/*/task.json) in %s",
                            where ? where : "the bench.d folders");
        }
        STRV_FOREACH(d, b->dirs) {
                _cleanup_free_ char *lib = NULL;

                if (asprintf(&lib, "%s/quality/_lib", *d) < 0) {
                        return fail(EXIT_USAGE, "out of memory");
                }
                if (access(lib, R_OK | X_OK) == 0) {
                        b->qlib = TAKE_PTR(lib);
                        break;
                }
        }
        /* Before anything runs: a missing package would otherwise fail a task halfway. */
        missing = quality_missing_packages(b->qtasks, b->n_qtasks, QUALITY_BWRAP, &oom);
        if (oom) {
                return fail(EXIT_USAGE, "out of memory");
        }
        if (missing) {
                return fail(EXIT_USAGE,
                            "the quality suite needs these Debian packages, which are missing: "
                            "%s (apt install %s)",
                            missing, missing);
        }
        return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void) (type == FTW_DP ? rmdir(path) : unlink(path));
        return 0;
}

static int rm_open_up(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        if (type == FTW_D || type == FTW_DNR) {
                (void) chmod(path, 0700); /* model-written code may have taken it away */
        }
        return 0;
}

static void rm_tree(const char *path)
{
        (void) nftw(path, rm_open_up, 16, FTW_PHYS);
        (void) nftw(path, rm_entry, 16, FTW_PHYS | FTW_DEPTH);
}

static int mkdir_parents(const char *path)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p) {
                return -ENOMEM;
        }
        for (char *s = p + 1; *s; s++) {
                if (*s == '/') {
                        *s = '\0';
                        if (mkdir(p, 0755) < 0 && errno != EEXIST) {
                                return -errno;
                        }
                        *s = '/';
                }
        }
        return mkdir(p, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

static int write_text(const char *dir, const char *name, const char *text)
{
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/%s", dir, name) < 0) {
                return -ENOMEM;
        }
        return write_file_atomic(path, text ? text : "", 0644);
}

/* A model's name as a folder name: what is not plain becomes '_'. */
static char *folder_name(const char *s)
{
        char *n = strdup(s);

        for (char *p = n; p && *p; p++) {
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.",
                            *p)) {
                        *p = '_';
                }
        }
        if (n && n[0] == '.') {
                n[0] = '_';
        }
        return n;
}

/* Runs the task's check in the sandbox on work/; its output goes to dir/check.out and
 * dir/check.err. Sets res->error where it could not run or ran out of time. */
static int quality_check(Bench *b, const QualityTask *t, const char *dir, const char *work,
                         QualityResult *res)
{
        _cleanup_strv_free_ char **argv =
                quality_sandbox_argv(QUALITY_BWRAP, b->qlib, t->dir, work);
        _cleanup_free_ char *out_path = NULL, *err_path = NULL, *output = NULL;
        uint64_t deadline;
        int status = 0, pidfd, r;
        bool timed_out = false;
        pid_t pid;

        if (!argv || asprintf(&out_path, "%s/check.out", dir) < 0 ||
            asprintf(&err_path, "%s/check.err", dir) < 0) {
                return -ENOMEM;
        }
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
                return -errno;
        }
        if (pid == 0) {
                struct rlimit data = { QUALITY_LIMIT_DATA, QUALITY_LIMIT_DATA };
                struct rlimit fsize = { QUALITY_LIMIT_FSIZE, QUALITY_LIMIT_FSIZE };
                struct rlimit cpu = { t->timeout * 2, t->timeout * 2 };
                int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
                int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

                if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
                    dup2(err, 2) < 0) {
                        _exit(127);
                }
                signal(SIGINT, SIG_IGN); /* llmctl ends it on Ctrl-C */
                (void) setrlimit(RLIMIT_DATA, &data);
                (void) setrlimit(RLIMIT_FSIZE, &fsize);
                (void) setrlimit(RLIMIT_CPU, &cpu);
                execv(argv[0], argv);
                _exit(127);
        }
        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        deadline = now_usec(CLOCK_MONOTONIC) + t->timeout * USEC_PER_SEC;
        for (;;) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                struct pollfd p = { .fd = pidfd, .events = POLLIN };
                pid_t w = waitpid(pid, &status, WNOHANG);

                if (w == pid) {
                        break;
                }
                if (bench_interrupted || now >= deadline) {
                        /* bwrap's pid 1 and all under it die with it (--die-with-parent) */
                        timed_out = !bench_interrupted;
                        kill(pid, SIGKILL);
                        (void) waitpid(pid, &status, 0);
                        break;
                }
                /* without a pidfd (an old kernel), look again every 50 ms */
                (void) poll(
                        &p, pidfd >= 0 ? 1 : 0,
                        (int) MIN((deadline - now) / USEC_PER_MSEC + 1, pidfd >= 0 ? 1000 : 50));
        }
        if (pidfd >= 0) {
                close(pidfd);
        }
        if (bench_interrupted) {
                return EXIT_INTERRUPTED;
        }
        if (timed_out) {
                char m[96];

                snprintf(m, sizeof(m), "the check timed out after %u s", t->timeout);
                res->error = strdup(m);
                return res->error ? 0 : -ENOMEM;
        }
        r = read_file(out_path, 0, QUALITY_CHECK_OUTPUT_MAX, &output);
        if (r < 0 && r != -ENOENT) {
                res->error = strdup("the check's output is too large");
                return res->error ? 0 : -ENOMEM;
        }
        r = quality_check_parse(output, res);
        if (r == -ENOMEM) {
                return r;
        }
        if (r < 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
                char *m;

                if (asprintf(&m, "%s (it %s %d; see check.err with --keep)", res->error,
                             WIFEXITED(status) ? "exited with" : "was killed by signal",
                             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status)) < 0) {
                        return -ENOMEM;
                }
                free(res->error);
                res->error = m;
        }
        return 0;
}

/* A quality task's token budget for m: its own, times the profile's bench-max-tokens-factor. */
static unsigned quality_max_tokens(const BenchModel *m, const QualityTask *t)
{
        double n = t->base.max_tokens * (isnan(m->max_tokens_factor) ? 1 : m->max_tokens_factor);

        return n < 1 ? 1 : n > 1000000 ? 1000000 : (unsigned) n;
}

/* The task's request with the profile's sampling where the task sets none. */
static char *quality_request(const BenchModel *m, const QualityTask *t, unsigned max_tokens)
{
        _cleanup_free_ char *base = bench_task_request(&t->base, m->name, max_tokens);
        _cleanup_json_ cJSON *o = base ? cJSON_Parse(base) : NULL;
        const struct {
                const char *key;
                double value;
        } s[] = { { "temperature", m->temperature }, { "top_p", m->top_p } };

        if (!o) {
                return NULL;
        }
        for (size_t i = 0; i < ELEMENTSOF(s); i++) {
                if (!isnan(s[i].value) &&
                    !cJSON_GetObjectItemCaseSensitive(t->base.sampling, s[i].key)) {
                        cJSON_DeleteItemFromObjectCaseSensitive(o, s[i].key);
                        cJSON_AddNumberToObject(o, s[i].key, s[i].value);
                }
        }
        return cJSON_PrintUnformatted(o);
}

/* One run of a task: the request, the answer, the check. Returns 0 (whatever it scored), or an
 * exit code that ends the bench. */
static int quality_run(Bench *b, const BenchModel *m, const QualityTask *t, unsigned k,
                       const char *dir, QualityResult *res)
{
        _cleanup_free_ char *work = NULL, *request = NULL;
        QualityAnswer a = {};
        BenchRun run = {};
        int r;

        *res = (QualityResult) { .ran = true, .score = NAN };
        if (asprintf(&work, "%s/work", dir) < 0) {
                return fail(EXIT_USAGE, "out of memory");
        }
        rm_tree(dir); /* a --keep folder of an earlier bench */
        r = mkdir_parents(work);
        if (r < 0) {
                errno = -r;
                return fail(EXIT_USAGE, "cannot make %s: %m", work);
        }
        unsigned max_tokens = quality_max_tokens(m, t);

        request = quality_request(m, t, max_tokens);
        if (!request || write_text(dir, "request.json", request) < 0) {
                return fail(EXIT_USAGE, "cannot write %s/request.json", dir);
        }
        if (b->cl->args.keep) {
                _cleanup_free_ char *raw = NULL;

                if (asprintf(&raw, "%s/response.sse", dir) < 0) {
                        return fail(EXIT_USAGE, "out of memory");
                }
                b->raw = fopen(raw, "we");
        }
        r = bench_request(b, m->name, &t->base, request, max_tokens, &run);
        if (b->raw) {
                fclose(b->raw);
                b->raw = NULL;
        }
        if (r != 0) {
                bench_run_done(&run);
                return r;
        }
        res->end = run.end;
        res->tokens = bench_run_tokens(&run);
        if (run.end == BENCH_END_ERROR || run.end == BENCH_END_TIMEOUT) {
                res->error = strdup(run.error ? run.error : "the request failed");
                bench_run_done(&run);
                return res->error ? 0 : fail(EXIT_USAGE, "out of memory");
        }
        r = quality_extract(run.content, run.reasoning, &a);
        bench_run_done(&run);
        if (r < 0) {
                return fail(EXIT_USAGE, "out of memory");
        }
        res->from = a.from;
        res->thinking_cut = a.thinking_cut;
        r = write_text(work, "answer.md", a.text);
        quality_answer_done(&a);
        if (r < 0) {
                errno = -r;
                return fail(EXIT_USAGE, "cannot write %s/answer.md: %m", work);
        }
        r = quality_check(b, t, dir, work, res);
        if (r == EXIT_INTERRUPTED) {
                return r;
        }
        if (r < 0) {
                errno = -r;
                return fail(EXIT_USAGE, "cannot run the check of %s: %m", t->base.name);
        }
        if (res->check && b->cl->args.keep) {
                _cleanup_free_ char *line = cJSON_Print(res->check);

                (void) write_text(dir, "score.json", line);
        }
        return 0;
}

/* The quality tasks of model i, --runs times each. */
static int quality_model(Bench *b, size_t i, const char *label)
{
        const BenchModel *m = &b->report.models[i];
        _cleanup_free_ char *folder = folder_name(m->name);
        unsigned n_runs = b->report.n_runs;

        b->qreport.results[i] = calloc(b->n_qtasks * n_runs, sizeof(QualityResult));
        if (!b->qreport.results[i] || !folder) {
                return fail(EXIT_USAGE, "out of memory");
        }
        for (size_t t = 0; t < b->n_qtasks; t++) {
                for (unsigned k = 0; k < n_runs; k++) {
                        _cleanup_free_ char *dir = NULL;
                        int r;

                        if (asprintf(&dir, "%s/%s/%s/run-%u",
                                     b->cl->args.keep ? b->cl->args.keep : b->scratch, folder,
                                     b->qtasks[t].base.name, k + 1) < 0) {
                                return fail(EXIT_USAGE, "out of memory");
                        }
                        progress_set(b, "%s: %s run %u of %u", label, b->qtasks[t].base.name, k + 1,
                                     n_runs);
                        r = quality_run(b, m, &b->qtasks[t], k, dir,
                                        &b->qreport.results[i][t * n_runs + k]);
                        if (!b->cl->args.keep) {
                                rm_tree(dir);
                        }
                        if (r != 0) {
                                return r;
                        }
                }
        }
        return 0;
}

static int quality_setup(Bench *b)
{
        b->qreport = (QualityReport) {
                .speed = &b->report,
                .tasks = b->qtasks,
                .n_tasks = b->n_qtasks,
                .results = calloc(b->report.n_models, sizeof(QualityResult *)),
        };
        if (!b->qreport.results) {
                return fail(EXIT_USAGE, "out of memory");
        }
        if (b->cl->args.keep) {
                int r = mkdir_parents(b->cl->args.keep);

                if (r < 0) {
                        errno = -r;
                        return fail(EXIT_USAGE, "--keep %s: %m", b->cl->args.keep);
                }
                return 0;
        }
        const char *tmp = getenv("TMPDIR");

        if (asprintf(&b->scratch, "%s/llmctl-bench-XXXXXX", isempty(tmp) ? "/tmp" : tmp) < 0) {
                b->scratch = NULL;
                return fail(EXIT_USAGE, "out of memory");
        }
        if (!mkdtemp(b->scratch)) {
                return fail(EXIT_USAGE, "cannot make %s: %m", b->scratch);
        }
        return 0;
}

/* ---- the tasks ---- */

static int bench_load_tasks(Bench *b)
{
        char **dirs = NULL;
        char error[512];
        int r;

        if (b->cl->args.tasks) {
                if (access(b->cl->args.tasks, R_OK | X_OK) < 0) {
                        return fail(EXIT_USAGE, "--tasks %s: %m", b->cl->args.tasks);
                }
                r = strv_extend(&dirs, b->cl->args.tasks);
        } else {
                /* The user's own, the administrator's, then the package's: the first of a
                 * name wins. */
                const char *config = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
                _cleanup_free_ char *user = NULL;

                if (!isempty(config)) {
                        r = asprintf(&user, "%s/llmd/bench.d", config);
                } else if (!isempty(home)) {
                        r = asprintf(&user, "%s/.config/llmd/bench.d", home);
                } else {
                        r = 0;
                }
                if (r < 0 || (user && strv_extend(&dirs, user) < 0) ||
                    strv_extend(&dirs, BENCH_CONF_DIR) < 0 ||
                    strv_extend(&dirs, access(BENCH_DATA_DIR, F_OK) == 0 ? BENCH_DATA_DIR
                                                                         : BENCH_SOURCE_DIR) < 0) {
                        /* Not installed (a build from source): the tasks in its source tree. */
                        r = -ENOMEM;
                }
        }
        b->dirs = dirs;
        if (r < 0) {
                return fail(EXIT_USAGE, "out of memory");
        }
        r = bench_tasks_load(dirs, &b->tasks, &b->n_tasks, error, sizeof(error));
        if (r < 0) {
                return fail(EXIT_USAGE, "%s", error);
        }
        if (b->n_tasks == 0) {
                _cleanup_free_ char *where = strv_join(dirs, ", ");

                return fail(EXIT_USAGE, "no bench tasks (*.json) in %s",
                            where ? where : "the bench.d folders");
        }
        return b->quality ? quality_load(b) : 0;
}

/* ---- the whole bench ---- */

/* Measures one model. Returns 0 (whatever its runs did), or an exit code that ends the bench. */
static int bench_model(Bench *b, size_t index)
{
        BenchModel *m = &b->report.models[index];
        char label[192], *failed = NULL;
        BenchRun warmup = {};
        int r;

        snprintf(label, sizeof(label), "model %zu of %zu: %s", index + 1, b->report.n_models,
                 m->name);
        progress_set(b, "%s: switching", label);
        r = bench_switch(b, m->name, label, true, &m->swap_sec, &failed);
        if (r == EXIT_REFUSED && failed) {
                m->failed = failed;
                return 0;
        }
        if (r != 0) {
                return r;
        }
        m->runs = calloc(b->n_tasks * b->report.n_runs, sizeof(BenchRun));
        if (!m->runs) {
                return fail(EXIT_USAGE, "out of memory");
        }
        /* The first request after a load pays for what the load left undone. */
        progress_set(b, "%s: warming up", label);
        r = bench_request(b, m->name, &b->tasks[0], NULL,
                          MIN(b->tasks[0].max_tokens, BENCH_WARMUP_TOKENS), &warmup);
        bench_run_done(&warmup);
        if (r != 0) {
                return r;
        }
        for (size_t t = 0; t < b->n_tasks; t++) {
                for (unsigned k = 0; k < b->report.n_runs; k++) {
                        BenchRun *run = &m->runs[t * b->report.n_runs + k];

                        progress_set(b, "%s: %s run %u of %u", label, b->tasks[t].name, k + 1,
                                     b->report.n_runs);
                        r = bench_request(b, m->name, &b->tasks[t], NULL, b->tasks[t].max_tokens,
                                          run);
                        if (r != 0) {
                                return r;
                        }
                }
        }
        return b->quality ? quality_model(b, index, label) : 0;
}

/* Makes the model active at the start active again (and unloaded, if it was). Not
 * interruptible: this is what Ctrl-C waits for. */
static int bench_restore(Bench *b)
{
        CallResult res = {};
        int r = 0;

        if (b->initial) {
                _cleanup_free_ char *failed = NULL;
                double swap;

                r = bench_switch(b, b->initial, NULL, false, &swap, &failed);
                if (r != 0) {
                        return fail(r, "could not make %s active again: %s", b->initial,
                                    failed ? failed : "see above");
                }
        }
        if (!b->initial_loaded) {
                r = bench_call(b, CONTROL_METHOD_STOP, NULL, false, &res, NULL);
                cJSON_Delete(res.last);
        }
        return r;
}

static bool bench_any_failure(const Bench *b)
{
        for (size_t i = 0; i < b->report.n_models; i++) {
                const BenchModel *m = &b->report.models[i];

                if (m->failed) {
                        return true;
                }
                for (size_t j = 0; j < b->n_tasks * b->report.n_runs; j++) {
                        BenchEnd e = m->runs[j].end;

                        if (e == BENCH_END_ERROR || e == BENCH_END_TIMEOUT) {
                                return true;
                        }
                }
                for (size_t j = 0; b->quality && j < b->n_qtasks * b->report.n_runs; j++) {
                        const QualityResult *q = &b->qreport.results[i][j];

                        if (q->end == BENCH_END_ERROR || q->end == BENCH_END_TIMEOUT) {
                                return true;
                        }
                }
        }
        return false;
}

static int bench_output(Bench *b)
{
        const char *output = b->cl->args.output;
        int r;

        if (b->quality) {
                r = quality_report_print(&b->qreport, b->format, stdout);
        } else {
                bench_report_sort(&b->report);
                r = bench_report_print(&b->report, b->format, stdout);
        }
        if (r < 0) {
                errno = -r;
                return fail(EXIT_USAGE, "cannot print the report: %m");
        }
        /* After the report: a file that cannot be written loses nothing that was measured. */
        if (output) {
                _cleanup_json_ cJSON *j = b->quality ? quality_report_json(&b->qreport)
                                                     : bench_report_json(&b->report);
                _cleanup_free_ char *s = j ? cJSON_Print(j) : NULL;
                _cleanup_free_ char *text = s ? strjoin2(s, "\n") : NULL;

                if (!text) {
                        return fail(EXIT_USAGE, "out of memory");
                }
                r = write_file_atomic(output, text, 0644);
                if (r < 0) {
                        errno = -r;
                        return fail(EXIT_USAGE, "cannot write %s: %m", output);
                }
        }
        return bench_any_failure(b) ? EXIT_REFUSED : 0;
}

static void bench_format_of(Bench *b)
{
        const LlmctlArgs *a = &b->cl->args;

        if (a->format) {
                b->format = (BenchFormat) bench_format_from_string(a->format);
        } else if (a->json || !b->cl->terminal) {
                b->format = BENCH_FORMAT_JSON; /* as every verb does off a terminal */
        } else {
                b->format = BENCH_FORMAT_TABLE;
        }
}

int bench_main(Client *cl)
{
        struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESETHAND }, old;
        _cleanup_json_ cJSON *list = NULL;
        time_t now = time(NULL);
        Bench b = {
                .cl = cl,
                .report.n_runs = cl->args.runs ? cl->args.runs : BENCH_DEFAULT_RUNS,
                .timeout = cl->args.timeout ? cl->args.timeout : BENCH_DEFAULT_TIMEOUT_SEC,
                .progress = isatty(STDERR_FILENO),
                .quality = cl->args.suite && streq(cl->args.suite, "quality"),
        };
        int r, k;

        bench_format_of(&b);
        strftime(b.report.started, sizeof(b.report.started), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        r = bench_load_tasks(&b);
        if (r != 0) {
                /* What it loaded before it failed. */
                free(b.qlib);
                quality_tasks_free(b.qtasks, b.n_qtasks);
                bench_tasks_free(b.tasks, b.n_tasks);
                strv_free(b.dirs);
                return r;
        }
        b.report.tasks = b.tasks;
        b.report.n_tasks = b.n_tasks;

        /* No SA_RESTART: a blocked read returns EINTR and the call sees the flag. */
        bench_interrupted = 0;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old);

        r = bench_ask_llmd(&b, &list);
        if (r == 0) {
                r = bench_select_models(&b, list);
        }
        if (r == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
                r = fail(EXIT_USAGE, "cannot set up libcurl");
        }
        if (r == 0) {
                r = bench_curl_init(&b, b.report.url);
        }
        if (r == 0 && b.quality) {
                r = quality_setup(&b);
        }
        for (size_t i = 0; r == 0 && i < b.report.n_models; i++) {
                r = bench_model(&b, i);
        }
        if (bench_interrupted && b.report.models) {
                progress_set(
                        &b, "interrupted: making %s active again (Ctrl-C again leaves it as it is)",
                        b.initial ? b.initial : "nothing");
        }
        /* Whatever happened once llmd was asked, what was active at the start is active again. */
        if (b.report.models) {
                k = bench_restore(&b);
                if (k != 0 && (r == 0 || r == EXIT_INTERRUPTED)) {
                        r = k;
                }
        }
        progress_clear(&b);
        if (bench_interrupted && (r == 0 || r == EXIT_INTERRUPTED)) {
                if (b.report.models && b.initial) {
                        fail(0, "interrupted; %s is active again%s", b.initial,
                             b.initial_loaded ? "" : " (unloaded)");
                } else {
                        fail(0, "interrupted");
                }
                r = EXIT_INTERRUPTED;
        } else if (r == 0) {
                r = bench_output(&b);
        }
        sigaction(SIGINT, &old, NULL);

        curl_slist_free_all(b.headers);
        if (b.curl) {
                curl_easy_cleanup(b.curl);
        }
        curl_global_cleanup();
        if (b.scratch) {
                rm_tree(b.scratch);
                free(b.scratch);
        }
        quality_report_done(&b.qreport);
        free(b.qlib);
        quality_tasks_free(b.qtasks, b.n_qtasks);
        bench_report_done(&b.report);
        bench_tasks_free(b.tasks, b.n_tasks);
        strv_free(b.dirs);
        free(b.initial);
        return r;
}
