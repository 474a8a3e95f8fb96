/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "config.h"
#include "fileio.h"
#include "log.h"
#include "manager.h"
#include "notify.h"
#include "strv.h"
#include "build-config.h"

static const char *arg_config = LLMD_CONFIG_FILE;
static const char *arg_runtime_dir;
static const char *arg_state_dir;
static bool arg_check;

/* EX_CONFIG: the unit's RestartPreventExitStatus= keeps a broken file from a restart loop. */
#define EXIT_CONFIG 78
/* EX_CANTCREAT: another llmd holds the runtime directory. Not restarted either: retrying
 * every RestartSec= cannot end well while the other one runs, and would only hit the start
 * limit with a less clear message. */
#define EXIT_RUNNING 73

static void help(void)
{
        printf("Usage: llmd [OPTIONS]\n"
               "Supervise llama-server processes and serve them as one OpenAI-compatible endpoint.\n\n"
               "  -c, --config FILE        model profiles (default: %s)\n"
               "      --check-config[=FILE] check the configuration, start nothing\n"
               "      --runtime-dir DIR    sockets (default: $RUNTIME_DIRECTORY or %s)\n"
               "      --state-dir DIR      persisted state (default: $STATE_DIRECTORY or %s)\n"
               "      --log-level LEVEL    err, warning, notice, info or debug (default: info)\n"
               "  -h, --help               show this help\n"
               "      --version            show the version\n\n"
               "Exit status: 0 ok; 1 a failure to start; 2 usage error; 73 another llmd runs on the\n"
               "runtime directory; 78 bad configuration.\n"
               "See llmd(8) and llama-generate.conf(5).\n",
               LLMD_CONFIG_FILE, LLMD_RUNTIME_DIR, LLMD_STATE_DIR);
}

static int parse_log_level(const char *s)
{
        static const struct {
                const char *name;
                int level;
        } levels[] = {
                { "err", LOG_ERR },       { "error", LOG_ERR }, { "warning", LOG_WARNING },
                { "notice", LOG_NOTICE }, { "info", LOG_INFO }, { "debug", LOG_DEBUG },
        };

        for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
                if (strcasecmp(levels[i].name, s) == 0) {
                        return levels[i].level;
                }
        }
        return -EINVAL;
}

/* Returns 1 to go on, 0 to exit successfully, -EINVAL on a usage error (already reported). */
static int parse_argv(int argc, char *argv[])
{
        enum { ARG_CHECK = 0x100, ARG_RUNTIME, ARG_STATE, ARG_LOG_LEVEL, ARG_VERSION };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", optional_argument, NULL, ARG_CHECK },
                { "runtime-dir", required_argument, NULL, ARG_RUNTIME },
                { "state-dir", required_argument, NULL, ARG_STATE },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        int c, l;

        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case ARG_CHECK:
                        arg_check = true;
                        if (optarg) {
                                arg_config = optarg;
                        } else if (optind < argc && argv[optind][0] != '-') {
                                arg_config = argv[optind++];
                        }
                        break;
                case ARG_RUNTIME:
                        arg_runtime_dir = optarg;
                        break;
                case ARG_STATE:
                        arg_state_dir = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        l = parse_log_level(optarg);
                        if (l < 0) {
                                fprintf(stderr, "llmd: unknown log level '%s'\n", optarg);
                                return -EINVAL;
                        }
                        log_set_max_level(l);
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("llmd %s\n", LLMD_VERSION);
                        return 0;
                default:
                        fprintf(stderr, "Try 'llmd --help'.\n");
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "llmd: unexpected argument '%s'\nTry 'llmd --help'.\n",
                        argv[optind]);
                return -EINVAL;
        }
        if (arg_config[0] != '/') {
                /* Absolute: Status reports it, and llmctl bench reads it from elsewhere. */
                static char abs_config[PATH_MAX];
                char cwd[PATH_MAX];

                if (getcwd(cwd, sizeof(cwd)) &&
                    (size_t) snprintf(abs_config, sizeof(abs_config), "%s/%s", cwd, arg_config) <
                            sizeof(abs_config)) {
                        arg_config = abs_config;
                }
        }
        return 1;
}

/* Loads the file and reports every problem. Returns 0 with *ret set, or a negative errno. */
static int load_config(Config **ret)
{
        _cleanup_(config_freep) Config *c = NULL;
        int r;

        r = config_load(arg_config, &c);
        if (r == -EINVAL) {
                STRV_FOREACH(e, c->errors) {
                        log_error("%s", *e);
                }
                return log_error_errno(r, "%s: %zu error(s)%s", arg_config, strv_length(c->errors),
                                       arg_check ? "" : ", not starting");
        }
        if (r < 0) {
                log_error("Cannot read %s: %s", arg_config, file_strerror(r));
                return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

/* The key file is part of the configuration: a bad one is a bad configuration. */
static bool config_keys_ok(const Config *c)
{
        _cleanup_free_ char *why = NULL;

        if (proxy_check_keys(c, &why) < 0) {
                log_error("%s: [llmd] api-key-file: %s", c->path, why ? why : "cannot be read");
                return false;
        }
        return true;
}

static int check_config(void)
{
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_strv_free_ char **pinned = NULL;

        if (load_config(&c) < 0) {
                return EXIT_FAILURE;
        }
        if (!config_keys_ok(c)) {
                return EXIT_FAILURE;
        }
        /* A missing model file does not stop llmd (that model fails, the rest serve), so here it
         * is a warning. */
        FOREACH_MODEL(m, c) {
                int fd = open_regular(m->model_path, 0, NULL);
                if (fd < 0) {
                        log_warning("%s:%u: [%s] model: %s: %s (this model would fail to load)",
                                    c->path, m->line, m->name, m->model_path, file_strerror(fd));
                } else {
                        close(fd);
                }
                if (m->pin && strv_extend(&pinned, m->name) < 0) {
                        return EXIT_FAILURE;
                }
        }
        _cleanup_free_ char *p = strv_join(pinned, ", ");
        printf("%s: ok, %zu models, default %s, pinned %s, routing %s\n", c->path, c->n_models,
               c->default_model ? c->default_model : "none", !isempty(p) ? p : "none",
               routing_to_string(c->routing));
        return EXIT_SUCCESS;
}

static int run(int argc, char *argv[])
{
        _cleanup_(manager_freep) Manager *m = NULL;
        Config *c = NULL;
        sigset_t ss;
        int r;

        log_open("llmd");
        r = parse_argv(argc, argv);
        if (r <= 0) {
                return r < 0 ? 2 : EXIT_SUCCESS;
        }
        if (arg_check) {
                return check_config();
        }

        if (!arg_runtime_dir) {
                arg_runtime_dir = getenv("RUNTIME_DIRECTORY") ?: LLMD_RUNTIME_DIR;
        }
        if (!arg_state_dir) {
                arg_state_dir = getenv("STATE_DIRECTORY") ?: LLMD_STATE_DIR;
        }

        /* sd-event watches children through pidfds and signals through signalfd: both want
         * the signals blocked in every thread, before anything else starts. */
        sigemptyset(&ss);
        sigaddset(&ss, SIGCHLD);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0) {
                return log_error_errno(errno, "Failed to block signals: %m"), EXIT_FAILURE;
        }
        (void) signal(SIGPIPE, SIG_IGN);
        /* Each stream holds two descriptors (client and child): take what the hard limit allows,
         * as LimitNOFILE= in the unit would. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) >= 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }

        r = load_config(&c);
        if (r >= 0 && !config_keys_ok(c)) {
                config_free(c);
                r = -EINVAL;
        }
        if (r < 0) {
                notify_errno(r, "bad configuration, see the log");
                return EXIT_CONFIG;
        }
        r = manager_new(c, arg_runtime_dir, arg_state_dir, &m);
        if (r == -EBUSY) {
                notify_errno(r, "another llmd is running on the runtime directory");
                return EXIT_RUNNING;
        }
        if (r >= 0) {
                r = manager_start(m);
        }
        if (r >= 0) {
                r = manager_run(m);
        }
        if (r < 0) {
                notify_errno(r, "failed to start, see the log");
                return EXIT_FAILURE;
        }
        return r;
}

int main(int argc, char *argv[])
{
        return run(argc, argv);
}
