/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "control-protocol.h"
#include "llmctl-client.h"
#include "utf8.h"
#include "build-config.h"

int client_setup(Client *cl, int argc, char *argv[])
{
        char error[256];

        if (llmctl_parse_args(argc, argv, &cl->args, error, sizeof(error)) < 0) {
                return fail(EXIT_USAGE, "%s", error);
        }
        if (cl->args.help) {
                llmctl_help(stdout);
                return 0;
        }
        cl->argv = argv;
        cl->path = cl->args.socket ? cl->args.socket : client_default_socket();
        cl->terminal = isatty(STDOUT_FILENO);
        cl->json = cl->args.json || !cl->terminal;
        varlink_reader_init(&cl->reader);
        return -1;
}

/* run NULL: the verb's handler, any verb (llmctl); else this verb only, with run (a helper). */
static int client_run(int argc, char *argv[], VerbId verb, int (*run)(Client *cl))
{
        Client cl = { .fd = -1 };
        int r = client_setup(&cl, argc, argv);

        if (r >= 0) {
                return r;
        }
        if (run && cl.args.verb->id != verb) {
                return fail(EXIT_USAGE, "%s runs one verb of llmctl, not %s",
                            program_invocation_short_name, cl.args.verb->name);
        }
        r = (run ? run : cl.args.verb->run)(&cl);
        client_done(&cl);
        return r;
}

int client_main(int argc, char *argv[])
{
        return client_run(argc, argv, _VERB_MAX, NULL);
}

int client_helper_main(int argc, char *argv[], VerbId verb, int (*run)(Client *cl))
{
        return client_run(argc, argv, verb, run);
}

const char *client_default_socket(void)
{
        const char *e = getenv("LLMD_SOCKET");

        return !isempty(e) ? e : LLMD_RUNTIME_DIR "/" CONTROL_SOCKET_NAME;
}

int fail(int code, const char *format, ...)
{
        _cleanup_free_ char *message = NULL, *escaped = NULL;
        va_list ap;
        int r;

        /* The message may quote what a box, a server or llmd said: escaped, it cannot draw on
         * the terminal or start a line that looks like one of ours. errno stays for %m. */
        va_start(ap, format);
        r = vasprintf(&message, format, ap);
        va_end(ap);
        escaped = r >= 0 ? utf8_escape_terminal(message) : NULL;
        fprintf(stderr, "llmctl: %s\n", escaped ? escaped : "out of memory");
        return code;
}

void print_escaped(FILE *f, const char *prefix, const char *s)
{
        _cleanup_free_ char *e = utf8_escape_terminal(s);

        fprintf(f, "%s%s\n", prefix, e ? e : "(out of memory)");
}

static int permission_hint(const Client *cl)
{
        return fail(EXIT_USAGE,
                    "permission denied on %s: members of group 'llmd' may use it "
                    "(sudo adduser $USER llmd, then log in again)",
                    cl->path);
}

int client_connect(Client *cl)
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
                        return fail(EXIT_USAGE, "llmd is not running (no control socket at %s)",
                                    cl->path);
                case ECONNREFUSED:
                        return fail(EXIT_USAGE, "llmd is not running (nothing listens on %s)",
                                    cl->path);
                case EACCES:
                case EPERM:
                        return permission_hint(cl);
                default:
                        return fail(EXIT_USAGE, "cannot connect to %s: %m", cl->path);
                }
        }
        return 0;
}

void client_done(Client *cl)
{
        varlink_reader_done(&cl->reader);
        cl->fd = safe_close(cl->fd);
}

static bool client_interrupted(const Client *cl)
{
        return cl->interrupted && *cl->interrupted;
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
                if (client_interrupted(cl)) {
                        return EXIT_INTERRUPTED;
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

void print_json(const cJSON *j)
{
        _cleanup_free_ char *s = cJSON_Print(j);

        if (s) {
                puts(s);
        }
}

void print_log(const cJSON *log, const char *indent)
{
        const cJSON *l;
        int n = cJSON_GetArraySize(log), i = 0;

        cJSON_ArrayForEach(l, log) {
                /* The tail is what explains a failure. */
                if (cJSON_IsString(l) && i++ >= n - 8) {
                        print_escaped(stdout, indent, l->valuestring);
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

                fail(EXIT_REFUSED, "%s failed to load: %s", model ? model : "?",
                     reason ? reason : "?");
                if (!cl->json) {
                        print_log(cJSON_GetObjectItemCaseSensitive(p, "log"), "    ");
                        if (restored) {
                                printf("%s serves, as before the switch\n", restored);
                        }
                }
                return EXIT_REFUSED;
        }
        if (streq(r->error, CONTROL_ERROR_SUPERSEDED)) {
                return fail(EXIT_REFUSED, "the switch to %s was superseded by %s",
                            model ? model : "?", jstr(p, "by") ? jstr(p, "by") : "another");
        }
        if (streq(r->error, CONTROL_ERROR_CONFIG_INVALID)) {
                const cJSON *e;

                fail(EXIT_REFUSED, "the configuration has errors; nothing was changed:");
                cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "errors")) {
                        if (cJSON_IsString(e)) {
                                print_escaped(stderr, "  ", e->valuestring);
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

int client_call(Client *cl, int method, cJSON *params, bool more, ClientReplyFn on_reply,
                VarlinkReply *ret_error)
{
        int r;

        r = client_send(cl, control_methods[method].name, params, more);
        for (; r == 0;) {
                VarlinkReply reply;

                r = client_read(cl, &reply);
                if (r != 0) {
                        break;
                }
                if (reply.error && ret_error) {
                        *ret_error = reply;
                        r = EXIT_REFUSED;
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
