/* SPDX-License-Identifier: MIT */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "control-protocol.h"
#include "llmctl-args.h"
#include "strv.h"
#include "varlink.h"
#include "../config.h"

#define EXIT_USAGE 1   /* usage or connection error */
#define EXIT_REFUSED 2 /* the daemon said no, or failed */

typedef struct Client {
        LlmctlArgs args;
        const char *path;
        int fd;
        VarlinkReader reader;
        bool json;     /* print JSON, not the human form */
        bool terminal; /* stdout is a terminal: progress may be drawn */
} Client;

static const char *default_socket(void)
{
        const char *e = getenv("LLMD_SOCKET");

        return !isempty(e) ? e : LLMD_RUNTIME_DIR "/" CONTROL_SOCKET_NAME;
}

static int fail(int code, const char *format, ...) _printf_(2, 3);
static int fail(int code, const char *format, ...)
{
        va_list ap;
        int saved = errno; /* for %m */

        fputs("llmctl: ", stderr);
        errno = saved;
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
        return code;
}

static int permission_hint(const Client *cl)
{
        return fail(EXIT_USAGE, "permission denied on %s: members of group 'llmd' may use it "
                                "(sudo adduser $USER llmd, then log in again)",
                    cl->path);
}

static int client_connect(Client *cl)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        if (strlen(cl->path) >= sizeof(sa.sun_path)) {
                return fail(EXIT_USAGE, "socket path too long: %s", cl->path);
        }
        strcpy(sa.sun_path, cl->path);
        cl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (cl->fd < 0) {
                return fail(EXIT_USAGE, "socket: %m");
        }
        if (connect(cl->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                switch (errno) {
                case ENOENT:
                        return fail(EXIT_USAGE, "llmd is not running (no control socket at %s)", cl->path);
                case ECONNREFUSED:
                        return fail(EXIT_USAGE, "llmd is not running (nothing listens on %s)", cl->path);
                case EACCES:
                case EPERM:
                        return permission_hint(cl);
                default:
                        return fail(EXIT_USAGE, "cannot connect to %s: %m", cl->path);
                }
        }
        return 0;
}

static int client_send(Client *cl, const char *method, cJSON *params, bool more)
{
        _cleanup_free_ char *msg = NULL;
        size_t len, off = 0;

        if (varlink_format_call(method, params, more, &msg, &len) < 0) {
                return fail(EXIT_USAGE, "out of memory");
        }
        while (off < len) {
                ssize_t n = send(cl->fd, msg + off, len - off, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR) {
                                continue;
                        }
                        if (errno == EPIPE || errno == ECONNRESET) {
                                /* llmd may have said why before closing: client_read() tells. */
                                return 0;
                        }
                        return fail(EXIT_USAGE, "cannot send to llmd: %m");
                }
                off += (size_t) n;
        }
        return 0;
}

/* Reads the next reply. Returns 0, or an exit code after saying why. */
static int client_read(Client *cl, VarlinkReply *ret)
{
        for (;;) {
                const char *frame;
                size_t len;
                char buf[4096];
                ssize_t n;
                int r = varlink_reader_next(&cl->reader, &frame, &len);

                if (r > 0) {
                        if (varlink_reply_parse(frame, len, ret) < 0) {
                                return fail(EXIT_USAGE, "llmd sent a reply that is not Varlink");
                        }
                        return 0;
                }
                n = recv(cl->fd, buf, sizeof(buf), 0);
                if (n < 0 && errno == EINTR) {
                        continue;
                }
                if (n < 0 && errno == ECONNRESET) {
                        return fail(EXIT_USAGE, "llmd closed the connection without a reply");
                }
                if (n < 0) {
                        return fail(EXIT_USAGE, "cannot read from llmd: %m");
                }
                if (n == 0) {
                        return fail(EXIT_USAGE, "llmd closed the connection without a reply");
                }
                if (varlink_reader_feed(&cl->reader, buf, (size_t) n) < 0) {
                        return fail(EXIT_USAGE, "llmd sent an oversized reply");
                }
        }
}

static void print_json(const cJSON *j)
{
        _cleanup_free_ char *s = cJSON_Print(j);

        if (s) {
                puts(s);
        }
}

static const char *jstr(const cJSON *o, const char *key)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *key, double dflt)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static bool jbool(const cJSON *o, const char *key)
{
        return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static void print_log(const cJSON *log, const char *indent)
{
        const cJSON *l;
        int n = cJSON_GetArraySize(log), i = 0;

        cJSON_ArrayForEach(l, log) {
                /* The tail is what explains a failure. */
                if (cJSON_IsString(l) && i++ >= n - 8) {
                        printf("%s%s\n", indent, l->valuestring);
                }
        }
}

/* Says what an error reply means. Returns the exit code. */
static int report_error(Client *cl, const VarlinkReply *r)
{
        const cJSON *p = r->parameters;
        const char *reason = jstr(p, "reason"), *model = jstr(p, "model");

        if (cl->json) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "error", r->error);
                cJSON_AddItemToObject(o, "parameters", cJSON_Duplicate(p, true));
                print_json(o);
                cJSON_Delete(o);
        }
        if (streq(r->error, VARLINK_ERROR_PERMISSION_DENIED)) {
                return permission_hint(cl);
        }
        if (streq(r->error, CONTROL_ERROR_LOAD_FAILED)) {
                const char *restored = jstr(p, "restored");

                fail(EXIT_REFUSED, "%s failed to load: %s", model ? model : "?", reason ? reason : "?");
                if (!cl->json) {
                        print_log(cJSON_GetObjectItemCaseSensitive(p, "log"), "    ");
                        if (restored) {
                                printf("%s is serving again\n", restored);
                        }
                }
                return EXIT_REFUSED;
        }
        if (streq(r->error, CONTROL_ERROR_SUPERSEDED)) {
                return fail(EXIT_REFUSED, "the switch to %s was superseded by %s", model ? model : "?",
                            jstr(p, "by") ? jstr(p, "by") : "another");
        }
        if (streq(r->error, CONTROL_ERROR_CONFIG_INVALID)) {
                const cJSON *e;

                fail(EXIT_REFUSED, "the configuration has errors; nothing was changed:");
                cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "errors")) {
                        if (cJSON_IsString(e)) {
                                fprintf(stderr, "  %s\n", e->valuestring);
                        }
                }
                return EXIT_REFUSED;
        }
        if (streq(r->error, CONTROL_ERROR_SHUTTING_DOWN)) {
                return fail(EXIT_REFUSED, "llmd is shutting down");
        }
        if (reason) {
                return fail(EXIT_REFUSED, "%s", reason);
        }
        return fail(EXIT_REFUSED, "llmd answered %s", r->error);
}

/* One call, its replies passed to on_reply (continued ones too); returns an exit code. */
static int client_call(Client *cl, int method, cJSON *params, bool more,
                       void (*on_reply)(Client *cl, const cJSON *params, bool continues))
{
        int r;

        r = client_send(cl, control_methods[method].name, params, more);
        for (; r == 0;) {
                VarlinkReply reply;

                r = client_read(cl, &reply);
                if (r != 0) {
                        break;
                }
                if (reply.error) {
                        if (cl->terminal && !cl->json) {
                                printf("\r\033[K"); /* the progress line, if one was drawn */
                                fflush(stdout);
                        }
                        r = report_error(cl, &reply);
                        varlink_reply_done(&reply);
                        break;
                }
                on_reply(cl, reply.parameters, reply.continues);
                bool last = !reply.continues;
                varlink_reply_done(&reply);
                if (last) {
                        break;
                }
        }
        return r;
}

/* ---- verbs ---- */

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

static void print_model_line(const char *label, const cJSON *m)
{
        char up[32] = "";
        const char *state = jstr(m, "state");

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
        printf("\n");
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
                printf("gpu      %s: %.1f GiB of %.1f GiB used; ", jstr(g, "source"), GIB(jnum(g, "used", 0)),
                       GIB(jnum(g, "total", 0)));
        } else {
                printf("gpu      no GPU memory source (%s); ", jstr(g, "why") ? jstr(g, "why") : "?");
        }
        printf("models %.1f GiB%s%s%s%s\n", GIB(jnum(g, "resident", 0)), budget ? ", " : "",
               budget ? budget : "", limit ? ", " : "", limit ? limit : "");
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
        printf("         pid %d, up %s, config %s\n", (int) jnum(p, "pid", 0), up, jstr(p, "config"));
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
        printf("  %-16s %-11s %-20s %-9s %s\n", "MODEL", "STATE", "GPU", "USED", "ALIASES");
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(p, "models")) {
                _cleanup_strv_free_ char **aliases = NULL;
                const cJSON *a;

                cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(m, "aliases")) {
                        if (cJSON_IsString(a)) {
                                (void) strv_extend(&aliases, a->valuestring);
                        }
                }
                if (jbool(m, "pinned")) {
                        (void) strv_extend(&aliases, jbool(m, "embeddings") ? "(pinned, embeddings)" : "(pinned)");
                }
                _cleanup_free_ char *j = strv_join(aliases, ", ");
                const cJSON *g = cJSON_GetObjectItemCaseSensitive(m, "gpu_memory");
                char gpu[32] = "-", used[32] = "-";

                if (jstr(g, "source")) {
                        snprintf(gpu, sizeof(gpu), "%.1f GiB %s", GIB(jnum(g, "bytes", 0)), jstr(g, "source"));
                }
                if (cJSON_GetObjectItemCaseSensitive(m, "last_used_sec")) {
                        format_uptime(used, sizeof(used), jnum(m, "last_used_sec", 0));
                }
                printf("%s %-16s %-11s %-20s %-9s %s\n", jbool(m, "active") ? "*" : " ", jstr(m, "name"),
                       jstr(m, "state"), gpu, used, j ? j : "");
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
                        printf("%s is already %s\n", model, cl->args.verb->id == VERB_LOAD ? "loaded" : "active");
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
                printf("%s loaded beside %s in %.2f s%s%s\n", model ? model : "?", from ? from : "nothing",
                       jnum(p, "total_sec", 0), ev ? ", evicted " : "", ev ? ev : "");
        } else if (kind && streq(kind, "resident")) {
                printf("%s → %s, resident: %.3f s\n", from ? from : "none", model ? model : "none",
                       jnum(p, "total_sec", 0));
        } else if (kind && streq(kind, "beside")) {
                printf("%s → %s, loaded beside: %.2f s (%s served meanwhile%s%s)\n", from ? from : "none",
                       model ? model : "none", jnum(p, "total_sec", 0), from ? from : "nothing",
                       ev ? "; evicted " : "", ev ? ev : "");
        } else {
                printf("%s → %s%s%s, loaded: %.2f s (stop %.2f, load %.2f, llmd %.2f)\n",
                       from ? from : "none", model ? model : "none", ev ? ", evicted " : "", ev ? ev : "",
                       jnum(p, "total_sec", 0), jnum(p, "stop_sec", 0), jnum(p, "load_sec", 0),
                       jnum(p, "llmd_sec", 0));
        }
}

static void print_unload(Client *cl, const cJSON *p, bool continues)
{
        if (cl->json) {
                print_json(p);
                return;
        }
        printf("unloading %s\n", jstr(p, "model"));
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

/* The journal holds llmd's log and each model's (MODEL=); journalctl shows it best. */
static int run_logs(Client *cl)
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

static int run(Client *cl)
{
        const Verb *v = cl->args.verb;
        cJSON *params = NULL;
        int r;

        if (v->id == VERB_LOGS) {
                return run_logs(cl);
        }

        if (v->id == VERB_VERSION && !cl->json) {
                printf("llmctl %s\n", LLMD_VERSION);
        }
        r = client_connect(cl);
        if (r != 0) {
                return r;
        }
        switch (v->id) {
        case VERB_STATUS:
                return client_call(cl, v->method, NULL, false, print_status);
        case VERB_LIST:
                return client_call(cl, v->method, NULL, false, print_list);
        case VERB_RELOAD:
                return client_call(cl, v->method, NULL, false, print_reload);
        case VERB_VERSION:
                return client_call(cl, v->method, NULL, false, print_version);
        case VERB_START:
        case VERB_STOP:
                return client_call(cl, v->method, NULL, true, print_progress);
        case VERB_SWITCH:
        case VERB_LOAD:
        case VERB_UNLOAD:
                params = cJSON_CreateObject();
                cJSON_AddStringToObject(params, "model", cl->args.args[0]);
                if (cl->args.now) {
                        cJSON_AddTrueToObject(params, "now");
                }
                r = client_call(cl, v->method, params, v->id != VERB_UNLOAD,
                                v->id == VERB_UNLOAD ? print_unload : print_progress);
                cJSON_Delete(params);
                return r;
        case VERB_LOGS:
        case _VERB_MAX:
                break;
        }
        return EXIT_USAGE;
}

int main(int argc, char *argv[])
{
        Client cl = { .fd = -1 };
        char error[256];
        int r;

        if (llmctl_parse_args(argc, argv, &cl.args, error, sizeof(error)) < 0) {
                return fail(EXIT_USAGE, "%s", error);
        }
        if (cl.args.help) {
                llmctl_help(stdout);
                return 0;
        }
        cl.path = cl.args.socket ? cl.args.socket : default_socket();
        cl.terminal = isatty(STDOUT_FILENO);
        cl.json = cl.args.json || !cl.terminal;
        varlink_reader_init(&cl.reader);
        r = run(&cl);
        varlink_reader_done(&cl.reader);
        safe_close(cl.fd);
        return r;
}
