/* SPDX-License-Identifier: MIT */
/*
 * llmctl's verbs: each one a small function, and the table of them at the end, which the
 * argument parser, the help text, the dispatch and the docs tests (through tests/docs/doc-tables)
 * all read. Adding a verb is adding a row (and its VERB_ id).
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "control-protocol.h"
#include "llmctl-client.h"
#include "strv.h"
#include "utf8.h"
#include "build-config.h"

/* ---- what the replies look like ---- */

static void print_reply_json(Client *cl, const cJSON *p, bool continues)
{
        if (!continues || cl->terminal) {
                print_json(p);
        }
}

static void format_uptime(char *buf, size_t size, double sec)
{
        unsigned long s = (unsigned long) sec;

        if (s >= 86400) {
                snprintf(buf, size, "%lud %luh", s / 86400, s % 86400 / 3600);
        } else if (s >= 3600) {
                snprintf(buf, size, "%luh %lumin", s / 3600, s % 3600 / 60);
        } else if (s >= 60) {
                snprintf(buf, size, "%lumin %lus", s / 60, s % 60);
        } else {
                snprintf(buf, size, "%.1fs", sec);
        }
}

/* What a person wants to read of a model's state: its process's, except where the residency
 * machine says more (draining: it takes no new request; failed: it stays down). */
static const char *shown_state(const cJSON *m)
{
        const char *serving = jstr(m, "serving");

        if (serving && (streq(serving, "draining") || streq(serving, "failed"))) {
                return serving;
        }
        return jstr(m, "state");
}

static void print_model_line(const char *label, const cJSON *m)
{
        char up[32] = "";
        const char *state = shown_state(m);

        printf("%-8s %s: %s", label, jstr(m, "name"), state ? state : "?");
        if (cJSON_GetObjectItemCaseSensitive(m, "progress")) {
                printf(" %d%%", (int) (jnum(m, "progress", 0) * 100));
        }
        if (jnum(m, "pid", 0) > 0) {
                printf(", pid %d", (int) jnum(m, "pid", 0));
        }
        if (cJSON_GetObjectItemCaseSensitive(m, "uptime_sec")) {
                format_uptime(up, sizeof(up), jnum(m, "uptime_sec", 0));
                printf(", up %s", up);
        }
        if (jnum(m, "restarts", 0) > 0) {
                printf(", %d restarts", (int) jnum(m, "restarts", 0));
        }
        const cJSON *pc = cJSON_GetObjectItemCaseSensitive(m, "prompt_cache");
        if (jnum(pc, "count", 0) > 0) {
                printf(", prompt cache saved: %.0f tokens", jnum(pc, "tokens", 0));
        }
        printf("\n");
}

/* "2 prompt caches (1.3 GB) in 0.41 s", "-" for none, for a prompt_cache object. */
static void format_cache(char *buf, size_t size, const cJSON *c, bool with_time)
{
        double n = jnum(c, "count", 0), bytes = jnum(c, "bytes", 0);

        if (n <= 0) {
                snprintf(buf, size, "-");
        } else if (with_time) {
                snprintf(buf, size, "%.0f prompt cache%s (%.0f tokens, %.1f MB) in %.2f s", n,
                         n == 1 ? "" : "s", jnum(c, "tokens", 0), bytes / 1e6, jnum(c, "sec", 0));
        } else {
                snprintf(buf, size, "%.0f tok, %.1f MB", jnum(c, "tokens", 0), bytes / 1e6);
        }
}

#define GIB(x) ((x) / (1024.0 * 1024.0 * 1024.0))

/* "gpu      nvml: 30.2 GiB of 139.8 GiB used; budget 132.8 GiB, models 21.4 GiB" */
static void print_gpu(const cJSON *g)
{
        _cleanup_free_ char *budget = NULL, *limit = NULL;

        if (!cJSON_IsObject(g)) {
                return;
        }
        if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(g, "budget"))) {
                (void) asprintf(&budget, "budget %.1f GiB", GIB(jnum(g, "budget", 0)));
        }
        if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(g, "max_resident"))) {
                (void) asprintf(&limit, "max-resident %d", (int) jnum(g, "max_resident", 0));
        }
        if (jstr(g, "source")) {
                printf("gpu      %s: %.1f GiB of %.1f GiB used; ", jstr(g, "source"),
                       GIB(jnum(g, "used", 0)), GIB(jnum(g, "total", 0)));
        } else {
                printf("gpu      none: %s; ",
                       jstr(g, "why") ? jstr(g, "why") : "no GPU memory source");
        }
        printf("models %.1f GiB%s%s%s%s\n", GIB(jnum(g, "resident", 0)), budget ? ", " : "",
               budget ? budget : "", limit ? ", " : "", limit ? limit : "");
        /* "  gpu 1  10.0 GiB of 24.0 GiB used; budget 22.8 GiB", with several */
        if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(g, "devices")) > 1) {
                const cJSON *d;

                cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(g, "devices")) {
                        const cJSON *name;
                        int k = 0;

                        printf("  gpu %-2d %.1f GiB of %.1f GiB used; budget %.1f GiB",
                               (int) jnum(d, "index", 0), GIB(jnum(d, "used", 0)),
                               GIB(jnum(d, "total", 0)), GIB(jnum(d, "budget", 0)));
                        cJSON_ArrayForEach(name, cJSON_GetObjectItemCaseSensitive(d, "models")) {
                                printf("%s%s", k++ ? ", " : ": ", cJSON_GetStringValue(name));
                        }
                        printf("\n");
                }
        }
}

/* "on GPUs 2,3 (20.0 + 20.0 GiB)" for the array gpus of a reply; nothing without one. */
static void print_gpus(const cJSON *gpus)
{
        const cJSON *d;
        int k = 0;

        if (cJSON_GetArraySize(gpus) == 0) {
                return;
        }
        printf("on GPU%s ", cJSON_GetArraySize(gpus) > 1 ? "s" : "");
        cJSON_ArrayForEach(d, gpus) {
                printf("%s%d", k++ ? "," : "", (int) jnum(d, "index", 0));
        }
        k = 0;
        printf(" (");
        cJSON_ArrayForEach(d, gpus) {
                printf("%s%.1f", k++ ? " + " : "", GIB(jnum(d, "bytes", 0)));
        }
        printf(" GiB)\n");
}

static void print_status(Client *cl, const cJSON *p, bool continues)
{
        const cJSON *active = cJSON_GetObjectItemCaseSensitive(p, "active"), *m;
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(p, "switch");
        char up[32];

        if (cl->json) {
                print_json(p);
                return;
        }
        format_uptime(up, sizeof(up), jnum(p, "uptime_sec", 0));
        printf("llmd %s: %s\n", jstr(p, "version"), jstr(p, "status"));
        printf("         pid %d, up %s, config %s\n", (int) jnum(p, "pid", 0), up,
               jstr(p, "config"));
        if (cJSON_IsObject(active)) {
                print_model_line(jbool(p, "loaded") ? "active" : "unloaded", active);
        } else {
                printf("active   none\n");
        }
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(p, "resident")) {
                print_model_line("resident", m);
        }
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(p, "pinned")) {
                print_model_line(jbool(m, "embeddings") ? "embed" : "pinned", m);
        }
        print_gpu(cJSON_GetObjectItemCaseSensitive(p, "gpu"));
        if (cJSON_IsObject(sw)) {
                printf("switch   %s to %s\n", jstr(sw, "phase"), jstr(sw, "model"));
        }
        const cJSON *rq = cJSON_GetObjectItemCaseSensitive(p, "requests");
        if (cJSON_IsObject(rq)) {
                printf("requests %.0f served, %.0f in flight, %.0f held, %.0f errors\n",
                       jnum(rq, "served", 0), jnum(rq, "in_flight", 0), jnum(rq, "held", 0),
                       jnum(rq, "errors", 0));
        }
        /* The last failure, with what the model said before it. */
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(p, "last_failure");
        if (cJSON_IsObject(f)) {
                format_uptime(up, sizeof(up), jnum(f, "ago_sec", 0));
                printf("last failure: %s, %s ago: %s\n", jstr(f, "model"), up, jstr(f, "reason"));
                print_log(cJSON_GetObjectItemCaseSensitive(f, "log"), "    ");
        }
}

static void print_list(Client *cl, const cJSON *p, bool continues)
{
        const cJSON *m;

        if (cl->json) {
                print_json(p);
                return;
        }
        printf("  %-16s %-11s %-20s %-9s %-20s %s\n", "MODEL", "STATE", "GPU", "USED",
               "PROMPT CACHE", "ALIASES");
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(p, "models")) {
                _cleanup_strv_free_ char **aliases = NULL;
                const cJSON *a;

                cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(m, "aliases")) {
                        if (cJSON_IsString(a)) {
                                (void) strv_extend(&aliases, a->valuestring);
                        }
                }
                if (jbool(m, "pinned")) {
                        (void) strv_extend(&aliases, jbool(m, "embeddings") ? "(pinned, embeddings)"
                                                                            : "(pinned)");
                }
                _cleanup_free_ char *j = strv_join(aliases, ", ");
                const cJSON *g = cJSON_GetObjectItemCaseSensitive(m, "gpu_memory");
                char gpu[32] = "-", used[32] = "-", cache[64];

                if (jstr(g, "source")) {
                        snprintf(gpu, sizeof(gpu), "%.1f GiB %s", GIB(jnum(g, "bytes", 0)),
                                 jstr(g, "source"));
                }
                if (cJSON_GetObjectItemCaseSensitive(m, "last_used_sec")) {
                        format_uptime(used, sizeof(used), jnum(m, "last_used_sec", 0));
                }
                format_cache(cache, sizeof(cache),
                             cJSON_GetObjectItemCaseSensitive(m, "prompt_cache"), false);
                printf("%s %-16s %-11s %-20s %-9s %-20s %s\n", jbool(m, "active") ? "*" : " ",
                       jstr(m, "name"), shown_state(m), gpu, used, cache, j ? j : "");
        }
}

static void print_progress(Client *cl, const cJSON *p, bool continues)
{
        const char *phase = jstr(p, "phase"), *model = jstr(p, "model");

        if (cl->json) {
                print_reply_json(cl, p, continues);
                return;
        }
        if (continues) {
                if (!cl->terminal) {
                        return;
                }
                /* One line, redrawn: "loading gemma [#######.............]  35%" */
                printf("\r\033[K%s %s", phase, model ? model : "");
                if (cJSON_GetObjectItemCaseSensitive(p, "progress")) {
                        double f = jnum(p, "progress", 0);
                        char bar[21];
                        int n = (int) lround(f * 20);

                        for (int i = 0; i < 20; i++) {
                                bar[i] = i < n ? '#' : '.';
                        }
                        bar[20] = '\0';
                        printf(" [%s] %3d%%", bar, (int) (f * 100));
                } else {
                        printf(" …");
                }
                fflush(stdout);
                return;
        }
        if (cl->terminal) {
                printf("\r\033[K");
        }
        if (!jbool(p, "changed")) {
                if (model) {
                        printf("%s is already %s\n", model,
                               cl->args.verb->id == VERB_LOAD ? "loaded" : "active");
                } else {
                        printf("nothing is loaded already\n");
                }
                return;
        }
        const char *from = jstr(p, "from"), *kind = jstr(p, "kind");
        _cleanup_strv_free_ char **evicted = NULL;
        const cJSON *e;

        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "evicted")) {
                if (cJSON_IsString(e)) {
                        (void) strv_extend(&evicted, e->valuestring);
                }
        }
        _cleanup_free_ char *ev = evicted ? strv_join(evicted, ", ") : NULL;
        if (cl->args.verb->id == VERB_LOAD) {
                printf("%s loaded beside %s in %.2f s%s%s\n", model ? model : "?",
                       from ? from : "nothing", jnum(p, "total_sec", 0), ev ? ", evicted " : "",
                       ev ? ev : "");
        } else if (kind && streq(kind, "resident")) {
                printf("%s → %s, resident: %.3f s\n", from ? from : "none", model ? model : "none",
                       jnum(p, "total_sec", 0));
        } else if (kind && streq(kind, "beside")) {
                printf("%s → %s, loaded beside: %.2f s (%s served meanwhile%s%s)\n",
                       from ? from : "none", model ? model : "none", jnum(p, "total_sec", 0),
                       from ? from : "nothing", ev ? "; evicted " : "", ev ? ev : "");
        } else if (!model) {
                printf("%s → none%s%s, stopped: %.2f s\n", from ? from : "none",
                       ev ? ", evicted " : "", ev ? ev : "", jnum(p, "total_sec", 0));
        } else {
                printf("%s → %s%s%s, loaded: %.2f s (stop %.2f, load %.2f, llmd %.2f)\n",
                       from ? from : "none", model ? model : "none", ev ? ", evicted " : "",
                       ev ? ev : "", jnum(p, "total_sec", 0), jnum(p, "stop_sec", 0),
                       jnum(p, "load_sec", 0), jnum(p, "llmd_sec", 0));
        }
        print_gpus(cJSON_GetObjectItemCaseSensitive(p, "gpus"));
        const cJSON *pc = cJSON_GetObjectItemCaseSensitive(p, "prompt_cache");
        char cache[128];
        const char *what[] = { "saved", "restored" };
        for (size_t i = 0; i < ELEMENTSOF(what); i++) {
                const cJSON *c = cJSON_GetObjectItemCaseSensitive(pc, what[i]);

                if (jnum(c, "count", 0) > 0) {
                        format_cache(cache, sizeof(cache), c, true);
                        printf("%s %s\n", what[i], cache);
                }
        }
}

static void print_unload(Client *cl, const cJSON *p, bool continues)
{
        if (cl->json) {
                print_json(p);
                return;
        }
        if (jbool(p, "changed")) {
                printf("unloading %s (its requests finish first)\n", jstr(p, "model"));
        } else {
                printf("%s is not loaded\n", jstr(p, "model"));
        }
}

static void print_reload(Client *cl, const cJSON *p, bool continues)
{
        if (cl->json) {
                print_json(p);
                return;
        }
        printf("reloaded %s\n", jstr(p, "config"));
}

static void print_version(Client *cl, const cJSON *p, bool continues)
{
        if (cl->json) {
                print_json(p);
                return;
        }
        printf("llmd %s\n", jstr(p, "version"));
}

/* ---- activity ---- */

typedef struct ActivityFollow {
        double next; /* the seq to ask from */
        bool header; /* the table's header was printed */
} ActivityFollow;

/* A number of the record, or "-" where it is null. */
static const char *activity_num(char *buf, size_t size, const cJSON *r, const char *key,
                                int decimals, double scale)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, key);

        if (!cJSON_IsNumber(v)) {
                return "-";
        }
        snprintf(buf, size, "%.*f", decimals, v->valuedouble * scale);
        return buf;
}

static void print_activity_record(const cJSON *r)
{
        char when[16] = "?", key[16], prompt[16], cached[16], gen[16], held[16], ttft[16], tps[16],
             dur[16];
        time_t t = (time_t) jnum(r, "time", 0);
        struct tm tm;
        /* What a client sent (model, path) and what llmd wrote of it: escaped. */
        _cleanup_free_ char *client = utf8_escape_terminal(jstr(r, "client"));
        _cleanup_free_ char *model = utf8_escape_terminal(jstr(r, "model"));
        _cleanup_free_ char *endpoint = utf8_escape_terminal(jstr(r, "endpoint"));
        _cleanup_free_ char *error = utf8_escape_terminal(jstr(r, "error"));

        if (localtime_r(&t, &tm)) {
                strftime(when, sizeof(when), "%H:%M:%S", &tm);
        }
        /* No precision: it would cut a character's bytes apart. */
        printf("%-8s %-15s %-4s %-16s %-22s %3d %7s %7s %6s %6s %7s %7s %7s %s\n", when,
               client ? client : "?", activity_num(key, sizeof(key), r, "key", 0, 1),
               model ? model : "?", endpoint ? endpoint : "?", (int) jnum(r, "status", 0),
               activity_num(prompt, sizeof(prompt), r, "prompt_tokens", 0, 1),
               activity_num(cached, sizeof(cached), r, "cached_tokens", 0, 1),
               activity_num(gen, sizeof(gen), r, "completion_tokens", 0, 1),
               activity_num(held, sizeof(held), r, "held_s", 2, 1),
               activity_num(ttft, sizeof(ttft), r, "ttft_s", 1, 1000),
               activity_num(tps, sizeof(tps), r, "tokens_per_s", 1, 1),
               activity_num(dur, sizeof(dur), r, "duration_s", 2, 1), error ? error : "");
}

static void print_activity(Client *cl, const cJSON *p, bool continues)
{
        ActivityFollow *f = cl->userdata;
        const cJSON *r;

        f->next = jnum(p, "next", f->next);
        if (cl->json && !cl->args.follow) {
                print_json(p);
                return;
        }
        cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(p, "records")) {
                if (cl->json) {
                        /* Following: one record a line (JSON Lines). */
                        _cleanup_free_ char *line = cJSON_PrintUnformatted(r);
                        if (line) {
                                puts(line);
                        }
                        continue;
                }
                if (!f->header) {
                        printf("%-8s %-15s %-4s %-16s %-22s %3s %7s %7s %6s %6s %7s %7s %7s %s\n",
                               "TIME", "CLIENT", "KEY", "MODEL", "ENDPOINT", "ST", "PROMPT",
                               "CACHED", "GEN", "HELD", "TTFT_MS", "TOK/S", "SECONDS", "ERROR");
                        f->header = true;
                }
                print_activity_record(r);
        }
        fflush(stdout);
}

/* ---- the verbs ---- */

/* The journal holds llmd's log and each model's (MODEL=); journalctl shows it best. */
static int verb_logs(Client *cl)
{
        char *argv[8];
        char match[128];
        int n = 0;

        argv[n++] = (char *) "journalctl";
        argv[n++] = (char *) "--unit=llmd";
        if (!cl->terminal) {
                argv[n++] = (char *) "--no-pager";
        }
        if (cl->args.follow) {
                argv[n++] = (char *) "--follow";
        }
        if (cl->args.n_args > 0) {
                snprintf(match, sizeof(match), "MODEL=%s", cl->args.args[0]);
                argv[n++] = match;
        }
        argv[n] = NULL;
        fflush(stdout);
        execvp(argv[0], argv);
        return fail(EXIT_USAGE, "cannot run journalctl: %m (llmd logs to the journal)");
}

/* bench is llmctl-bench, fleet llmctl-fleet (they need libcurl): next to llmctl in the build
 * tree, else where the package installs them. */
static int run_helper(Client *cl, const char *name, const char *installed)
{
        char self[PATH_MAX], path[PATH_MAX + 32];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        const char *helper = installed, *slash;

        if (n > 0) {
                self[n] = '\0';
                slash = strrchr(self, '/');
                snprintf(path, sizeof(path), "%.*s/%s", slash ? (int) (slash - self) : 0, self,
                         name);
                if (slash && access(path, X_OK) == 0) {
                        helper = path;
                }
        }
        cl->argv[0] = (char *) helper;
        fflush(stdout);
        execv(helper, cl->argv);
        return fail(EXIT_USAGE, "cannot run %s: %m", helper);
}

static int verb_bench(Client *cl)
{
        return run_helper(cl, "llmctl-bench", LLMCTL_BENCH);
}

static int verb_fleet(Client *cl)
{
        return run_helper(cl, "llmctl-fleet", LLMCTL_FLEET);
}

/* The verb's method, on llmd's socket. */
static int call(Client *cl, cJSON *params, bool more, ClientReplyFn on_reply)
{
        int r = client_connect(cl);

        if (r != 0) {
                return r;
        }
        return client_call(cl, cl->args.verb->method, params, more, on_reply, NULL);
}

/* The same with {"model": MODEL}, and "now" for switch --now. */
static int call_model(Client *cl, bool more, ClientReplyFn on_reply)
{
        cJSON *params = cJSON_CreateObject();
        int r;

        cJSON_AddStringToObject(params, "model", cl->args.args[0]);
        if (cl->args.now) {
                cJSON_AddTrueToObject(params, "now");
        }
        r = call(cl, params, more, on_reply);
        cJSON_Delete(params);
        return r;
}

/* The last requests; with -f, those that end from then on, asked for twice a second. */
static int verb_activity(Client *cl)
{
        ActivityFollow f = {};
        int r = client_connect(cl);

        if (r != 0) {
                return r;
        }
        cl->userdata = &f;
        for (;;) {
                cJSON *params = cJSON_CreateObject();

                if (f.next > 0) {
                        cJSON_AddNumberToObject(params, "since", f.next);
                }
                if (cl->args.n_args > 0) {
                        cJSON_AddStringToObject(params, "model", cl->args.args[0]);
                }
                r = client_call(cl, CONTROL_METHOD_ACTIVITY, params, false, print_activity, NULL);
                cJSON_Delete(params);
                if (r != 0 || !cl->args.follow) {
                        return r;
                }
                (void) nanosleep(&(struct timespec) { .tv_nsec = 500 * 1000 * 1000 }, NULL);
        }
}

static int verb_list(Client *cl)
{
        return call(cl, NULL, false, print_list);
}

/* load and switch: progress until the model serves. */
static int verb_load_switch(Client *cl)
{
        return call_model(cl, true, print_progress);
}

static int verb_reload(Client *cl)
{
        return call(cl, NULL, false, print_reload);
}

static int verb_start_stop(Client *cl)
{
        return call(cl, NULL, true, print_progress);
}

static int verb_status(Client *cl)
{
        return call(cl, NULL, false, print_status);
}

/* The plan's reasoning, in a line. */
static void print_plan(Client *cl, const cJSON *p, bool continues)
{
        if (cl->json) {
                print_json(p);
                return;
        }
        printf("%s\n", jstr(p, "why") ? jstr(p, "why") : "");
}

static int verb_plan(Client *cl)
{
        return call_model(cl, false, print_plan);
}

static int verb_unload(Client *cl)
{
        return call_model(cl, false, print_unload);
}

static void print_prompt_cache_clear(Client *cl, const cJSON *p, bool continues)
{
        if (cl->json) {
                print_json(p);
                return;
        }
        printf("removed %.0f prompt cache file%s%s%s\n", jnum(p, "removed", 0),
               jnum(p, "removed", 0) == 1 ? "" : "s", jstr(p, "model") ? " of " : "",
               jstr(p, "model") ? jstr(p, "model") : "");
}

/* prompt-cache clear [MODEL] */
static int verb_prompt_cache(Client *cl)
{
        cJSON *params;
        int r;

        if (!streq(cl->args.args[0], "clear")) {
                return fail(EXIT_USAGE, "prompt-cache: unknown action '%s' (clear [MODEL])",
                            cl->args.args[0]);
        }
        params = cJSON_CreateObject();
        if (cl->args.n_args > 1) {
                cJSON_AddStringToObject(params, "model", cl->args.args[1]);
        }
        r = call(cl, params, false, print_prompt_cache_clear);
        cJSON_Delete(params);
        return r;
}

static int verb_version(Client *cl)
{
        if (!cl->json) {
                printf("llmctl %s\n", LLMD_VERSION);
        }
        return call(cl, NULL, false, print_version);
}

/* Sorted by name, in the order of VerbId: id, name, usage, arguments (min, max), the control
 * method, the handler, the help line. */
/* clang-format off */
const Verb verbs[_VERB_MAX] = {
        { VERB_ACTIVITY, "activity", "[MODEL]", 0, 1, CONTROL_METHOD_ACTIVITY, verb_activity,
          "Show the last requests, or MODEL's (-f: as they end)" },
        { VERB_BENCH, "bench", "[MODEL...]", 0, UINT_MAX, -1, verb_bench,
          "Measure each model's tokens per second and time to first token" },
        { VERB_FLEET, "fleet", "haproxy BOX...", 2, UINT_MAX, -1, verb_fleet,
          "Print an HAProxy config that sends each model to the boxes serving it" },
        { VERB_LIST, "list", "", 0, 0, CONTROL_METHOD_LIST, verb_list,
          "List the configured models and their state" },
        { VERB_LOAD, "load", "MODEL", 1, 1, CONTROL_METHOD_LOAD, verb_load_switch,
          "Load MODEL beside the active one; a switch to it is then instant" },
        { VERB_LOGS, "logs", "[MODEL]", 0, 1, -1, verb_logs,
          "Show llmd's journal, or one model's (-f: follow it)" },
        { VERB_PLAN, "plan", "MODEL", 1, 1, CONTROL_METHOD_PLAN, verb_plan,
          "Say what a switch to MODEL would do: where it goes, what stops, and why" },
        { VERB_PROMPT_CACHE, "prompt-cache", "clear [MODEL]", 1, 2,
          CONTROL_METHOD_CLEAR_PROMPT_CACHE, verb_prompt_cache,
          "Remove the saved prompt caches of MODEL, or of every model" },
        { VERB_RELOAD, "reload", "", 0, 0, CONTROL_METHOD_RELOAD, verb_reload,
          "Read the configuration again and apply what changed" },
        { VERB_START, "start", "", 0, 0, CONTROL_METHOD_START, verb_start_stop,
          "Load the active generation model again" },
        { VERB_STATUS, "status", "", 0, 0, CONTROL_METHOD_STATUS, verb_status,
          "Show what is loaded and serving" },
        { VERB_STOP, "stop", "", 0, 0, CONTROL_METHOD_STOP, verb_start_stop,
          "Unload every generation model (pinned models stay)" },
        { VERB_SWITCH, "switch", "MODEL", 1, 1, CONTROL_METHOD_SWITCH, verb_load_switch,
          "Make MODEL the active generation model" },
        { VERB_UNLOAD, "unload", "MODEL", 1, 1, CONTROL_METHOD_UNLOAD, verb_unload,
          "Stop MODEL, loaded beside the active one" },
        { VERB_VERSION, "version", "", 0, 0, CONTROL_METHOD_GET_INFO, verb_version,
          "Show llmctl's and llmd's versions" },
};
/* clang-format on */
