/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

#include "child.h"
#include "fd-util.h"
#include "fileio.h"
#include "log.h"
#include "parse-util.h"
#include "probe.h"
#include "prompt-cache.h"
#include "strv.h"
#include "time-util.h"

#define CHILD_POLL_USEC (25 * USEC_PER_MSEC)       /* /health while loading */
#define CHILD_POLL_TIMEOUT_USEC (2 * USEC_PER_SEC) /* one probe while loading */
#define CHILD_META_TIMEOUT_USEC (5 * USEC_PER_SEC) /* GET /v1/models once ready */
#define CHILD_HEALTH_FAILURES 3                    /* in a row while ready, then restart */
#define CHILD_LOG_LINES 20                         /* kept for failure reports */
#define CHILD_LOG_LINE_MAX 512                     /* bytes kept of each */
#define CHILD_OUTPUT_BUF 4096                      /* a longer line is passed on in pieces */
/* Below the proxy's sources (the children's sockets, MHD: SD_EVENT_PRIORITY_NORMAL): when a token and a log line
 * are ready at once, the token goes first. Not idle: a pipe left unread would block the child. */
#define CHILD_OUTPUT_PRIORITY (SD_EVENT_PRIORITY_NORMAL + 10)

struct Child {
        ChildContext ctx;
        ModelConfig *config;                    /* our own copy */
        char **placement_env, **placement_args; /* child_set_placement() */
        char *name;
        char *socket_path;
        ChildState state;
        bool want_up;
        bool keep_socket; /* another child of this name uses the path now */
        bool fatal;       /* the running process must not be restarted once it exits */
        child_handler_t handler;
        void *userdata;

        pid_t pid;
        sd_event_source *process;
        sd_event_source *output;
        int output_fd;
        char outbuf[CHILD_OUTPUT_BUF];
        size_t outlen;
        char *lines[CHILD_LOG_LINES + 1]; /* of the current (or last) run */
        char **failure_lines;             /* what the run that failed or crashed last wrote */
        size_t n_lines;

        sd_event_source *timer;        /* load-timeout, stop-timeout, backoff */
        sd_event_source *health_timer; /* the next /health probe */
        Probe *probe;
        unsigned health_failures;
        unsigned request_failures; /* requests it failed in a row, none served between */
        Probe *meta_probe;
        cJSON *meta; /* "meta" of the child's /v1/models, since it last became ready */

        char *reason;
        unsigned restarts;
        unsigned crashes;           /* in the current start-limit window */
        uint64_t crash_window_usec; /* when that window began */
        uint64_t spawned_usec, ready_usec;
        uint64_t used_usec;  /* a request last began or ended on it (for LRU and unload-after) */
        uint64_t model_size; /* bytes, at the last spawn */
        char *cache_dir;     /* the last spawn's --slot-save-path, or NULL */
        char *cache_fingerprint;
};

static const char *const state_table[_CHILD_STATE_MAX] = {
        [CHILD_STOPPED] = "stopped",   [CHILD_LOADING] = "loading", [CHILD_READY] = "ready",
        [CHILD_STOPPING] = "stopping", [CHILD_KILLING] = "killing", [CHILD_BACKOFF] = "restarting",
        [CHILD_FAILED] = "failed",
};

static const char *const event_table[_CHILD_EVENT_MAX] = {
        [CHILD_EVENT_START] = "start",
        [CHILD_EVENT_STOP] = "stop",
        [CHILD_EVENT_SPAWN_FAILED] = "spawn-failed",
        [CHILD_EVENT_HEALTHY] = "healthy",
        [CHILD_EVENT_UNHEALTHY] = "unhealthy",
        [CHILD_EVENT_LOAD_TIMEOUT] = "load-timeout",
        [CHILD_EVENT_STOP_TIMEOUT] = "stop-timeout",
        [CHILD_EVENT_EXITED] = "exited",
        [CHILD_EVENT_EXITED_FATAL] = "exited-fatal",
        [CHILD_EVENT_BACKOFF_DONE] = "backoff-done",
};

const char *child_state_to_string(ChildState s)
{
        return s >= 0 && s < _CHILD_STATE_MAX ? state_table[s] : NULL;
}

const char *child_event_to_string(ChildEvent e)
{
        return e >= 0 && e < _CHILD_EVENT_MAX ? event_table[e] : NULL;
}

/* clang-format off */
#define T(s, a) { .valid = true, .next = (s), .action = (a) }
static const struct {
        bool valid;
        ChildState next;
        ChildAction action;
} transitions[_CHILD_STATE_MAX][_CHILD_EVENT_MAX] = {
        [CHILD_STOPPED] = {
                [CHILD_EVENT_START] = T(CHILD_LOADING, CHILD_ACTION_SPAWN),
                [CHILD_EVENT_STOP] = T(CHILD_STOPPED, CHILD_ACTION_NONE),
        },
        [CHILD_LOADING] = {
                [CHILD_EVENT_START] = T(CHILD_LOADING, CHILD_ACTION_NONE),
                [CHILD_EVENT_STOP] = T(CHILD_STOPPING, CHILD_ACTION_TERMINATE),
                [CHILD_EVENT_SPAWN_FAILED] = T(CHILD_FAILED, CHILD_ACTION_FAIL),
                [CHILD_EVENT_HEALTHY] = T(CHILD_READY, CHILD_ACTION_WATCH),
                [CHILD_EVENT_LOAD_TIMEOUT] = T(CHILD_KILLING, CHILD_ACTION_TERMINATE),
                [CHILD_EVENT_EXITED] = T(CHILD_BACKOFF, CHILD_ACTION_BACKOFF),
                [CHILD_EVENT_EXITED_FATAL] = T(CHILD_FAILED, CHILD_ACTION_FAIL),
        },
        [CHILD_READY] = {
                [CHILD_EVENT_START] = T(CHILD_READY, CHILD_ACTION_NONE),
                [CHILD_EVENT_STOP] = T(CHILD_STOPPING, CHILD_ACTION_TERMINATE),
                [CHILD_EVENT_HEALTHY] = T(CHILD_READY, CHILD_ACTION_NONE),
                [CHILD_EVENT_UNHEALTHY] = T(CHILD_KILLING, CHILD_ACTION_TERMINATE),
                [CHILD_EVENT_EXITED] = T(CHILD_BACKOFF, CHILD_ACTION_BACKOFF),
                [CHILD_EVENT_EXITED_FATAL] = T(CHILD_FAILED, CHILD_ACTION_FAIL),
        },
        [CHILD_STOPPING] = {
                /* A start while stopping is remembered (want_up) and done once it is down. */
                [CHILD_EVENT_START] = T(CHILD_STOPPING, CHILD_ACTION_NONE),
                [CHILD_EVENT_STOP] = T(CHILD_STOPPING, CHILD_ACTION_NONE),
                [CHILD_EVENT_STOP_TIMEOUT] = T(CHILD_STOPPING, CHILD_ACTION_KILL),
                [CHILD_EVENT_EXITED] = T(CHILD_STOPPED, CHILD_ACTION_CANCEL),
                [CHILD_EVENT_EXITED_FATAL] = T(CHILD_STOPPED, CHILD_ACTION_CANCEL),
        },
        [CHILD_KILLING] = {
                [CHILD_EVENT_START] = T(CHILD_KILLING, CHILD_ACTION_NONE),
                [CHILD_EVENT_STOP] = T(CHILD_STOPPING, CHILD_ACTION_NONE),
                [CHILD_EVENT_STOP_TIMEOUT] = T(CHILD_KILLING, CHILD_ACTION_KILL),
                [CHILD_EVENT_EXITED] = T(CHILD_BACKOFF, CHILD_ACTION_BACKOFF),
                [CHILD_EVENT_EXITED_FATAL] = T(CHILD_FAILED, CHILD_ACTION_FAIL),
        },
        [CHILD_BACKOFF] = {
                [CHILD_EVENT_START] = T(CHILD_LOADING, CHILD_ACTION_SPAWN),
                [CHILD_EVENT_STOP] = T(CHILD_STOPPED, CHILD_ACTION_CANCEL),
                [CHILD_EVENT_BACKOFF_DONE] = T(CHILD_LOADING, CHILD_ACTION_SPAWN),
        },
        [CHILD_FAILED] = {
                [CHILD_EVENT_START] = T(CHILD_LOADING, CHILD_ACTION_SPAWN),
                [CHILD_EVENT_STOP] = T(CHILD_STOPPED, CHILD_ACTION_CANCEL),
        },
};
#undef T
/* clang-format on */

int child_transition(ChildState state, ChildEvent event, ChildAction *ret_action)
{
        if (state < 0 || state >= _CHILD_STATE_MAX || event < 0 || event >= _CHILD_EVENT_MAX ||
            !transitions[state][event].valid) {
                return -EINVAL;
        }
        *ret_action = transitions[state][event].action;
        return transitions[state][event].next;
}

void child_keep_socket(Child *c)
{
        c->keep_socket = true;
}

uint64_t child_restart_delay(const Child *c)
{
        return child_backoff_usec(c->config->restart_usec, c->crashes);
}

uint64_t child_backoff_usec(uint64_t restart_usec, unsigned n)
{
        uint64_t d = restart_usec, max = MAX(CHILD_BACKOFF_MAX_USEC, restart_usec);

        for (unsigned i = 1; i < n && d < max; i++) {
                d *= 2;
        }
        return MIN(d, max);
}

static void child_set_reason(Child *c, const char *format, ...) _printf_(2, 3);
static void child_set_reason(Child *c, const char *format, ...)
{
        va_list ap;
        char *r;

        va_start(ap, format);
        if (vasprintf(&r, format, ap) < 0) {
                r = NULL;
        }
        va_end(ap);
        if (r) {
                free(c->reason);
                c->reason = r;
        }
}

/* ---- output ---- */

static void child_keep_line(Child *c, const char *line, size_t len)
{
        char *l = strndup(line, MIN(len, (size_t) CHILD_LOG_LINE_MAX));

        if (!l) {
                return;
        }
        if (c->n_lines == CHILD_LOG_LINES) {
                free(c->lines[0]);
                memmove(c->lines, c->lines + 1, sizeof(char *) * (CHILD_LOG_LINES - 1));
                c->n_lines--;
        }
        c->lines[c->n_lines++] = l;
        c->lines[c->n_lines] = NULL;
}

static void child_emit_lines(Child *c, bool flush)
{
        size_t start = 0;

        for (size_t i = 0; i < c->outlen; i++) {
                if (c->outbuf[i] == '\n') {
                        size_t len = i - start;

                        if (len > 0 && c->outbuf[start + len - 1] == '\r') {
                                len--;
                        }
                        log_child_line(c->name, c->outbuf + start, len);
                        child_keep_line(c, c->outbuf + start, len);
                        start = i + 1;
                }
        }
        memmove(c->outbuf, c->outbuf + start, c->outlen - start);
        c->outlen -= start;
        if (c->outlen > 0 && (flush || c->outlen == sizeof(c->outbuf))) {
                log_child_line(c->name, c->outbuf, c->outlen);
                child_keep_line(c, c->outbuf, c->outlen);
                c->outlen = 0;
        }
}

static void child_close_output(Child *c)
{
        c->output = sd_event_source_disable_unref(c->output);
        c->output_fd = safe_close(c->output_fd);
}

/* Reads what is there; returns false at end of file. */
static bool child_read_output(Child *c)
{
        for (;;) {
                size_t room = sizeof(c->outbuf) - c->outlen;
                ssize_t n = read(c->output_fd, c->outbuf + c->outlen, room);

                if (n < 0) {
                        if (errno == EINTR) {
                                continue;
                        }
                        return errno == EAGAIN;
                }
                if (n == 0) {
                        child_emit_lines(c, true);
                        return false;
                }
                c->outlen += (size_t) n;
                child_emit_lines(c, false);
                if ((size_t) n < room) {
                        return true; /* the pipe is empty; epoll says when it is not */
                }
        }
}

static int child_on_output(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Child *c = userdata;
        bool open;

        log_batch_begin();
        open = child_read_output(c);
        log_batch_end();
        if (!open) {
                child_close_output(c);
        }
        return 0;
}

/* ---- timers ---- */

static int child_arm(Child *c, sd_event_source **s, uint64_t usec, sd_event_time_handler_t cb)
{
        if (*s) {
                int r = sd_event_source_set_time_relative(*s, usec);
                if (r < 0) {
                        return r;
                }
                return sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
        }
        return sd_event_add_time_relative(c->ctx.event, s, CLOCK_MONOTONIC, usec, USEC_PER_MSEC, cb,
                                          c);
}

static void child_cancel_timers(Child *c)
{
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->health_timer, SD_EVENT_OFF);
        c->probe = probe_free(c->probe);
        c->meta_probe = probe_free(c->meta_probe);
}

static void child_dispatch(Child *c, ChildEvent event);

static int child_on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        Child *c = userdata;

        switch (c->state) {
        case CHILD_LOADING: {
                char buf[32];

                child_set_reason(c, "not ready within load-timeout (%s)",
                                 format_duration(buf, sizeof(buf), c->config->load_timeout_usec));
                c->fatal = true;
                child_dispatch(c, CHILD_EVENT_LOAD_TIMEOUT);
                break;
        }
        case CHILD_STOPPING:
        case CHILD_KILLING:
                child_dispatch(c, CHILD_EVENT_STOP_TIMEOUT);
                break;
        case CHILD_BACKOFF:
                child_dispatch(c, CHILD_EVENT_BACKOFF_DONE);
                break;
        case CHILD_STOPPED:
        case CHILD_READY:
        case CHILD_FAILED:
        case _CHILD_STATE_MAX:
        case _CHILD_STATE_INVALID:
                break;
        }
        return 0;
}

static int child_on_health_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void child_on_probe(Probe *p, int status, void *userdata)
{
        Child *c = userdata;
        uint64_t next;

        c->probe = probe_free(c->probe);
        if (c->state == CHILD_LOADING) {
                if (status == 200) {
                        child_dispatch(c, CHILD_EVENT_HEALTHY);
                        return;
                }
                next = CHILD_POLL_USEC;
        } else if (c->state == CHILD_READY) {
                if (status == 200) {
                        c->health_failures = 0;
                } else if (++c->health_failures >= CHILD_HEALTH_FAILURES) {
                        const char *what =
                                c->config->health_generate ? "a one-token completion" : "/health";
                        if (status < 0) {
                                child_set_reason(c, "not answering %s (%s)", what,
                                                 strerror(-status));
                        } else {
                                child_set_reason(c, "not answering %s (HTTP %d)", what, status);
                        }
                        child_dispatch(c, CHILD_EVENT_UNHEALTHY);
                        return;
                } else {
                        log_model(LOG_WARNING, c->name, NULL, "%s: %s check failed (%s), %u of %u",
                                  c->name, c->config->health_generate ? "generate" : "/health",
                                  status < 0 ? strerror(-status) : "bad status", c->health_failures,
                                  CHILD_HEALTH_FAILURES);
                }
                next = c->config->health_interval_usec;
        } else {
                return;
        }
        (void) child_arm(c, &c->health_timer, next, child_on_health_timer);
}

static int child_on_health_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        Child *c = userdata;
        uint64_t timeout = c->state == CHILD_LOADING ? CHILD_POLL_TIMEOUT_USEC
                                                     : c->config->health_interval_usec;
        int r;

        if (c->probe) {
                return 0;
        }
        if (c->state == CHILD_READY && c->config->health_generate) {
                /* One token (an embedding model: one embedding), as a client asks: a child
                 * that answers /health while every request fails is found. The model may be
                 * busy: upstream-timeout is the wait a request would get. */
                bool embd = c->config->embeddings;

                r = probe_new_request(
                        c->ctx.event, c->socket_path, embd ? "/v1/embeddings" : "/completion",
                        embd ? "{\"input\":\"Hi\"}"
                             : "{\"prompt\":\"Hi\",\"n_predict\":1,\"cache_prompt\":false}",
                        false, c->config->upstream_timeout_usec, child_on_probe, c, &c->probe);
        } else {
                r = probe_new(c->ctx.event, c->socket_path, "/health", timeout, child_on_probe, c,
                              &c->probe);
        }
        if (r < 0) {
                /* No socket yet, or nobody listening: the same as a failed probe. */
                child_on_probe(NULL, r, c);
        }
        return 0;
}

/* What llama-server says of its model (n_ctx, n_params, ...), read once when it is ready:
 * llmd's /v1/models shows it without asking the child each time. */
static void child_on_meta(Probe *p, int status, void *userdata)
{
        Child *c = userdata;
        cJSON *j = status == 200 ? cJSON_Parse(probe_body(p)) : NULL;
        cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 0);
        cJSON *meta = cJSON_DetachItemFromObjectCaseSensitive(first, "meta");

        c->meta_probe = probe_free(c->meta_probe);
        if (cJSON_IsObject(meta)) {
                cJSON_Delete(c->meta);
                c->meta = meta;
        } else {
                cJSON_Delete(meta);
                log_model(LOG_DEBUG, c->name, NULL, "%s: no model metadata from /v1/models (%s)",
                          c->name,
                          status < 0      ? strerror(-status)
                          : status == 200 ? "no \"meta\""
                                          : "bad status");
        }
        cJSON_Delete(j);
}

/* ---- process ---- */

static int child_on_exit(sd_event_source *s, const siginfo_t *si, void *userdata);

static char *find_executable(const char *name)
{
        _cleanup_strv_free_ char **dirs = NULL;
        const char *path = getenv("PATH");

        if (strchr(name, '/')) {
                return access(name, X_OK) == 0 ? strdup(name) : NULL;
        }
        if (strv_split(path ? path : "/usr/local/bin:/usr/bin:/bin", ":", &dirs) < 0) {
                return NULL;
        }
        STRV_FOREACH(d, dirs) {
                char *p;

                if (asprintf(&p, "%s/%s", *d, name) < 0) {
                        return NULL;
                }
                if (access(p, X_OK) == 0) {
                        return p;
                }
                free(p);
        }
        errno = ENOENT;
        return NULL;
}

static bool env_sets(char **list, const char *v, size_t k)
{
        STRV_FOREACH(o, list) {
                if (strneq(*o, v, k + 1)) {
                        return true;
                }
        }
        return false;
}

/* The environment of a child: llmd's cleaned one, with the profile's env set over it, and
 * llmd's placement over both (a CUDA_VISIBLE_DEVICES llmd was started with would otherwise
 * come first, and be the one the child reads). */
static char **child_environ(Child *c)
{
        _cleanup_strv_free_ char **env = calloc(1, sizeof(char *));

        if (!env) {
                return NULL;
        }
        STRV_FOREACH(v, c->ctx.environ) {
                size_t k = strcspn(*v, "=");

                if (!env_sets(c->config->env, *v, k) && !env_sets(c->placement_env, *v, k) &&
                    strv_extend(&env, *v) < 0) {
                        return NULL;
                }
        }
        STRV_FOREACH(o, c->config->env) {
                if (strv_extend(&env, *o) < 0) {
                        return NULL;
                }
        }
        STRV_FOREACH(o, c->placement_env) {
                if (strv_extend(&env, *o) < 0) {
                        return NULL;
                }
        }
        return TAKE_PTR(env);
}

_noreturn_ static void child_exec(pid_t parent, int devnull, int out, const char *binary,
                                  char **argv, char **envp)
{
        sigset_t ss;

        /* No orphan may outlive llmd, even a SIGKILLed one. The re-check closes the window in
         * which llmd died before the prctl() took hold. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) {
                _exit(EXIT_FAILURE);
        }
        /* Its own session: a Ctrl-C on llmd's terminal reaches llmd, which stops the children
         * in order, and not the children directly. */
        (void) setsid();
        for (int sig = 1; sig < _NSIG; sig++) {
                if (sig != SIGKILL && sig != SIGSTOP) {
                        (void) signal(sig, SIG_DFL);
                }
        }
        sigemptyset(&ss);
        (void) sigprocmask(SIG_SETMASK, &ss, NULL);
        if (dup2(devnull, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
            dup2(out, STDERR_FILENO) < 0) {
                _exit(EXIT_FAILURE);
        }
        fd_close_from(3);
        execve(binary, argv, envp);
        dprintf(STDERR_FILENO, "llmd: cannot execute %s: %s\n", binary, strerror(errno));
        _exit(127);
}

/* Where c's prompt caches go (STATE_DIR/prompt-cache/NAME); NULL when its profile keeps none. */
static char *child_cache_path(const Child *c)
{
        char *d;

        if (!c->ctx.cache_root || !config_model_prompt_cache(c->config) ||
            asprintf(&d, "%s/%s", c->ctx.cache_root, c->name) < 0) {
                return NULL;
        }
        return d;
}

/* The directory of this spawn's prompt caches, made private to llmd; none when the profile
 * keeps none, or when it cannot be made (the model runs without). */
static void child_cache_prepare(Child *c)
{
        _cleanup_free_ char *dir = NULL;
        struct stat st;

        c->cache_dir = mfree(c->cache_dir);
        c->cache_fingerprint = mfree(c->cache_fingerprint);
        dir = child_cache_path(c);
        if (!dir) {
                return;
        }
        /* Made by llmd, never followed: a link there is not llmd's own directory. */
        errno = 0;
        if (lstat(c->ctx.cache_root, &st) < 0 || !S_ISDIR(st.st_mode) ||
            (mkdir(dir, 0700) < 0 && errno != EEXIST) || lstat(dir, &st) < 0 ||
            !S_ISDIR(st.st_mode) || chmod(dir, 0700) < 0) {
                if (errno == 0 || errno == EEXIST) {
                        errno = ENOTDIR; /* a link or a file where the directory should be */
                }
                log_model(LOG_WARNING, c->name, NULL,
                          "%s: cannot use %s for its prompt caches (%m); running without", c->name,
                          dir);
                return;
        }
        c->cache_dir = TAKE_PTR(dir);
}

/* Returns 0 when a process is running, or -errno after setting the reason. */
static int child_spawn(Child *c)
{
        _cleanup_strv_free_ char **argv = NULL, **envp = NULL;
        _cleanup_free_ char *binary = NULL;
        _cleanup_close_ int devnull = -1, model = -1;
        struct stat st;
        int pipefd[2], r;
        pid_t pid;

        c->fatal = false;
        c->health_failures = 0;
        c->request_failures = 0;
        /* The lines kept are this run's: a failure report never mixes in an earlier one. */
        for (size_t i = 0; i < c->n_lines; i++) {
                free(c->lines[i]);
                c->lines[i] = NULL;
        }
        c->n_lines = 0;

        /* A model llama-server cannot read would only crash in a loop: fail it now. */
        model = open_regular(c->config->model_path, 0, &st);
        if (model < 0) {
                child_set_reason(c, "model file %s: %s", c->config->model_path,
                                 file_strerror(model));
                return model;
        }
        c->model_size = (uint64_t) st.st_size;
        binary = find_executable(c->ctx.binary);
        if (!binary) {
                r = -errno;
                child_set_reason(
                        c,
                        "cannot run %s: %s (set llama-server = PATH in [llmd], or $LLAMA_SERVER)",
                        c->ctx.binary, strerror(-r));
                return r;
        }
        /* llama-server neither removes a stale socket before binding nor after exiting. */
        if (unlink(c->socket_path) < 0 && errno != ENOENT) {
                r = -errno;
                child_set_reason(c, "cannot remove %s: %s", c->socket_path, strerror(-r));
                return r;
        }
        child_cache_prepare(c);
        r = config_model_argv(c->config, binary, c->socket_path, c->cache_dir, &argv);
        STRV_FOREACH(a, c->placement_args) {
                if (r >= 0 && strv_extend(&argv, *a) < 0) {
                        r = -ENOMEM;
                }
        }
        if (r >= 0 && c->cache_dir) {
                r = prompt_cache_fingerprint(&st, binary, argv, &c->cache_fingerprint);
        }
        if (r < 0) {
                child_set_reason(c, "out of memory");
                return r;
        }
        envp = child_environ(c);
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (!envp || devnull < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
                r = !envp ? -ENOMEM : -errno;
                child_set_reason(c, "cannot prepare the process: %s", strerror(-r));
                return r;
        }

        pid_t parent = getpid();
        pid = fork();
        if (pid < 0) {
                r = -errno;
                safe_close(pipefd[0]);
                safe_close(pipefd[1]);
                child_set_reason(c, "fork failed: %s", strerror(-r));
                return r;
        }
        if (pid == 0) {
                child_exec(parent, devnull, pipefd[1], binary, argv, envp);
        }

        safe_close(pipefd[1]);
        c->pid = pid;
        c->output_fd = pipefd[0];
        (void) fcntl(c->output_fd, F_SETFL, O_NONBLOCK);
        r = sd_event_add_io(c->ctx.event, &c->output, c->output_fd, EPOLLIN, child_on_output, c);
        (void) sd_event_source_set_priority(c->output, CHILD_OUTPUT_PRIORITY);
        if (r < 0) {
                log_model(LOG_WARNING, c->name, NULL, "%s: cannot watch the output: %s", c->name,
                          strerror(-r));
        }
        r = sd_event_add_child(c->ctx.event, &c->process, pid, WEXITED, child_on_exit, c);
        if (r < 0) {
                /* Without a watch we cannot supervise it: take it down at once. */
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
                c->pid = 0;
                child_close_output(c);
                child_set_reason(c, "cannot watch process: %s", strerror(-r));
                return r;
        }
        /* Freeing the source (llmd leaving in a hurry) kills and reaps it. */
        (void) sd_event_source_set_child_process_own(c->process, true);
        c->spawned_usec = event_now_usec(c->ctx.event);

        _cleanup_free_ char *cmdline = strv_join(argv, " ");
        log_model(LOG_INFO, c->name, "spawn", "%s: started llama-server (pid %d): %s", c->name,
                  (int) pid, cmdline ? cmdline : binary);

        (void) child_arm(c, &c->timer, c->config->load_timeout_usec, child_on_timer);
        /* The first probe after a short wait: llama-server opens its socket ~15 ms in. */
        (void) child_arm(c, &c->health_timer, CHILD_POLL_USEC, child_on_health_timer);
        return 0;
}

static void child_signal(Child *c, int sig)
{
        if (!c->process) {
                return;
        }
        /* Through the pidfd: a reused pid can never be hit. */
        int r = sd_event_source_send_child_signal(c->process, sig, NULL, 0);
        if (r < 0 && r != -ESRCH) {
                log_model(LOG_WARNING, c->name, NULL, "%s: cannot send %s to pid %d: %s", c->name,
                          sigabbrev_np(sig), (int) c->pid, strerror(-r));
        }
}

static void child_format_exit(Child *c, const siginfo_t *si)
{
        if (si->si_code == CLD_EXITED) {
                child_set_reason(c, "exit status %d", si->si_status);
        } else {
                const char *name = sigabbrev_np(si->si_status);
                child_set_reason(c, "killed by signal %s%s", name ? name : "?",
                                 si->si_code == CLD_DUMPED ? " (core dumped)" : "");
        }
}

static int child_on_exit(sd_event_source *s, const siginfo_t *si, void *userdata)
{
        Child *c = userdata;
        ChildEvent ev = CHILD_EVENT_EXITED;
        uint64_t now = event_now_usec(c->ctx.event);

        /* The last words may still be in the pipe: read them before judging. */
        if (c->output_fd >= 0) {
                (void) child_read_output(c);
                child_emit_lines(c, true);
                child_close_output(c);
        }
        c->process = sd_event_source_disable_unref(c->process);
        c->pid = 0;
        child_cancel_timers(c);

        if (c->state == CHILD_STOPPING) {
                log_model(LOG_INFO, c->name, "stopped", "%s: stopped (%s)", c->name,
                          si->si_code == CLD_EXITED ? "exited" : "killed");
                child_dispatch(c, CHILD_EVENT_EXITED);
                return 0;
        }

        /* A kill we ordered keeps the reason that made us kill. */
        if (c->state != CHILD_KILLING) {
                child_format_exit(c, si);
        }
        strv_free(c->failure_lines);
        c->failure_lines = strv_copy(c->lines);
        if (now - c->crash_window_usec > c->config->start_limit_interval_usec || c->crashes == 0) {
                c->crash_window_usec = now;
                c->crashes = 0;
        }
        c->crashes++;
        if (c->fatal) {
                ev = CHILD_EVENT_EXITED_FATAL;
        } else if (c->crashes >= c->config->start_limit_burst) {
                char buf[32];

                /* The supervisor logs the failure, once: it knows whether a switch was loading it. */
                log_debug("%s: llama-server %s; %u crashes within %s, giving up", c->name,
                          c->reason, c->crashes,
                          format_duration(buf, sizeof(buf), c->config->start_limit_interval_usec));
                ev = CHILD_EVENT_EXITED_FATAL;
        } else {
                log_debug("%s: llama-server %s while %s", c->name, c->reason,
                          child_state_to_string(c->state));
        }
        child_dispatch(c, ev);
        return 0;
}

/* ---- the machine ---- */

static void child_do(Child *c, ChildAction action)
{
        char buf[32];
        int r;

        switch (action) {
        case CHILD_ACTION_NONE:
                break;
        case CHILD_ACTION_SPAWN:
                cJSON_Delete(c->meta);
                c->meta = NULL;
                r = child_spawn(c);
                if (r < 0) {
                        child_dispatch(c, CHILD_EVENT_SPAWN_FAILED);
                }
                break;
        case CHILD_ACTION_WATCH:
                (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                c->ready_usec = event_now_usec(c->ctx.event);
                log_model(LOG_INFO, c->name, "ready", "%s: ready after %.3f s (pid %d)", c->name,
                          (double) (c->ready_usec - c->spawned_usec) / USEC_PER_SEC, (int) c->pid);
                (void) child_arm(c, &c->health_timer, c->config->health_interval_usec,
                                 child_on_health_timer);
                (void) probe_new_request(c->ctx.event, c->socket_path, "/v1/models", NULL, true,
                                         CHILD_META_TIMEOUT_USEC, child_on_meta, c, &c->meta_probe);
                break;
        case CHILD_ACTION_TERMINATE:
                child_cancel_timers(c);
                if (c->state == CHILD_KILLING) {
                        log_model(LOG_ERR, c->name, "crash", "%s: %s; stopping pid %d", c->name,
                                  c->reason, (int) c->pid);
                }
                child_signal(c, SIGTERM);
                (void) child_arm(c, &c->timer, c->config->stop_timeout_usec, child_on_timer);
                break;
        case CHILD_ACTION_KILL:
                log_model(LOG_WARNING, c->name, NULL,
                          "%s: still running %s after SIGTERM, sending SIGKILL", c->name,
                          format_duration(buf, sizeof(buf), c->config->stop_timeout_usec));
                child_signal(c, SIGKILL);
                break;
        case CHILD_ACTION_BACKOFF: {
                uint64_t d = child_backoff_usec(c->config->restart_usec, c->crashes);

                c->restarts++;
                log_debug("%s: restarting in %s", c->name, format_duration(buf, sizeof(buf), d));
                (void) child_arm(c, &c->timer, d, child_on_timer);
                break;
        }
        case CHILD_ACTION_FAIL:
                child_cancel_timers(c);
                log_debug("%s: failed: %s", c->name, c->reason);
                break;
        case CHILD_ACTION_CANCEL:
                child_cancel_timers(c);
                break;
        case _CHILD_ACTION_MAX:
                break;
        }
}

static void child_dispatch(Child *c, ChildEvent event)
{
        ChildState old = c->state;
        ChildAction action;
        int next;

        next = child_transition(old, event, &action);
        if (next < 0) {
                log_debug("%s: event %s ignored in state %s", c->name, child_event_to_string(event),
                          child_state_to_string(old));
                return;
        }
        c->state = next;
        log_debug("%s: %s --%s--> %s", c->name, child_state_to_string(old),
                  child_event_to_string(event), child_state_to_string(c->state));
        child_do(c, action);
        /* child_do() may have moved on (a failed spawn); report only the state we settled in. */
        if (c->state == (ChildState) next && old != c->state && c->handler) {
                c->handler(c, old, c->userdata);
        }
        if (c->state == CHILD_STOPPED && old != CHILD_STOPPED && c->want_up) {
                child_dispatch(c, CHILD_EVENT_START);
        }
}

void child_start(Child *c)
{
        c->want_up = true;
        if (c->state == CHILD_FAILED) {
                c->crashes = 0; /* asked for again: a fresh start */
        }
        child_dispatch(c, CHILD_EVENT_START);
}

void child_stop(Child *c)
{
        c->want_up = false;
        child_dispatch(c, CHILD_EVENT_STOP);
}

void child_kill_now(Child *c)
{
        /* A stop, only faster: its exit is not taken for a crash. */
        child_stop(c);
        child_signal(c, SIGKILL);
}

const char *child_cache_dir(const Child *c)
{
        return c->cache_dir;
}

char *child_cache_dir_next(const Child *c)
{
        return c->cache_dir ? strdup(c->cache_dir) : child_cache_path(c);
}

const char *child_cache_fingerprint(const Child *c)
{
        return c->cache_fingerprint;
}

int child_new(const ChildContext *ctx, const ModelConfig *m, child_handler_t handler,
              void *userdata, Child **ret)
{
        _cleanup_(child_freep) Child *c = NULL;

        c = calloc(1, sizeof(Child));
        if (!c) {
                return -ENOMEM;
        }
        c->ctx = *ctx;
        c->config = config_model_copy(m);
        if (!c->config) {
                return -ENOMEM;
        }
        c->output_fd = -1;
        c->handler = handler;
        c->userdata = userdata;
        c->state = CHILD_STOPPED;
        c->name = strdup(m->name);
        if (!c->name || asprintf(&c->socket_path, "%s/%s.sock", ctx->runtime_dir, m->name) < 0) {
                c->socket_path = NULL;
                return -ENOMEM;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

int child_set_placement(Child *c, char *const *env, char *const *args)
{
        char **e = env ? strv_copy((char **) env) : NULL,
             **a = args ? strv_copy((char **) args) : NULL;

        if ((env && !e) || (args && !a)) {
                strv_free(e);
                strv_free(a);
                return -ENOMEM;
        }
        strv_free(c->placement_env);
        strv_free(c->placement_args);
        c->placement_env = e;
        c->placement_args = a;
        return 0;
}

Child *child_free(Child *c)
{
        if (!c) {
                return NULL;
        }
        strv_free(c->placement_env);
        strv_free(c->placement_args);
        c->handler = NULL;
        c->probe = probe_free(c->probe);
        c->meta_probe = probe_free(c->meta_probe);
        cJSON_Delete(c->meta);
        sd_event_source_disable_unref(c->timer);
        sd_event_source_disable_unref(c->health_timer);
        /* Owned: SIGKILLed and reaped with the source. */
        sd_event_source_unref(c->process);
        if (c->output_fd >= 0) {
                child_emit_lines(c, true);
        }
        child_close_output(c);
        if (c->socket_path && !c->keep_socket) {
                (void) unlink(c->socket_path);
        }
        for (size_t i = 0; i < c->n_lines; i++) {
                free(c->lines[i]);
        }
        strv_free(c->failure_lines);
        free(c->reason);
        free(c->cache_dir);
        free(c->cache_fingerprint);
        free(c->socket_path);
        free(c->name);
        config_model_free(c->config);
        free(c);
        return NULL;
}

int child_set_config(Child *c, const ModelConfig *m)
{
        ModelConfig *n = config_model_copy(m);

        if (!n) {
                return -ENOMEM;
        }
        config_model_free(c->config);
        c->config = n;
        return 0;
}

const ModelConfig *child_config(const Child *c)
{
        return c->config;
}

void child_set_binary(Child *c, const char *binary)
{
        c->ctx.binary = binary;
}

/* The first number after key in a /proc file of pid, or -1. */
static int64_t proc_field(pid_t pid, const char *file, const char *key)
{
        _cleanup_free_ char *path = NULL, *line = NULL;
        size_t n = 0, k = strlen(key);
        int64_t v = -1;
        FILE *f;

        if (asprintf(&path, "/proc/%d/%s", (int) pid, file) < 0) {
                return -1;
        }
        f = fopen(path, "re");
        if (!f) {
                return -1;
        }
        while (getline(&line, &n, f) > 0) {
                if (strneq(line, key, k)) {
                        v = strtoll(line + k, NULL, 10);
                        break;
                }
        }
        fclose(f);
        return v;
}

double child_load_progress(const Child *c)
{
        int64_t read, mapped;

        if (c->state != CHILD_LOADING || c->pid <= 0 || c->model_size == 0) {
                return -1;
        }
        /* A cold model is read; a warm page cache is mapped, not read: take the larger. */
        read = proc_field(c->pid, "io", "rchar:");
        mapped = proc_field(c->pid, "status", "RssFile:");
        mapped = mapped >= 0 ? mapped * 1024 : -1;
        if (read < 0 && mapped < 0) {
                return -1;
        }
        return MIN(1.0, (double) MAX(read, mapped) / (double) c->model_size);
}

const char *child_name(const Child *c)
{
        return c->name;
}

ChildState child_state(const Child *c)
{
        return c->state;
}

pid_t child_pid(const Child *c)
{
        return c->pid;
}

const char *child_socket_path(const Child *c)
{
        return c->socket_path;
}

const char *child_reason(const Child *c)
{
        return c->reason;
}

char **child_failure_lines(const Child *c)
{
        return c->failure_lines ? c->failure_lines : (char **) c->lines;
}

char **child_last_lines(const Child *c)
{
        return (char **) c->lines;
}

void child_request_done(Child *c, unsigned status, bool stalled)
{
        unsigned max = c->config->max_child_errors;

        if (c->state != CHILD_READY) {
                return; /* a request of a process that is going: its end proves nothing */
        }
        if (!stalled && status < 400) {
                c->request_failures = 0;
                return;
        }
        /* The client's own error, or one llama-server gives for what it was not started to
         * do (501: embeddings from a chat model): the child is fine. */
        if (!stalled && (status < 500 || status == 501)) {
                return;
        }
        c->request_failures++;
        if (max == 0 || c->request_failures < max) {
                return;
        }
        if (stalled) {
                child_set_reason(
                        c,
                        "%u requests failed in a row (the last sent nothing for upstream-timeout)",
                        c->request_failures);
        } else {
                child_set_reason(c, "%u requests failed in a row (the last: HTTP %u)",
                                 c->request_failures, status);
        }
        /* Said once, by the stop that follows (with the pid). */
        child_dispatch(c, CHILD_EVENT_UNHEALTHY);
}

unsigned child_restarts(const Child *c)
{
        return c->restarts;
}

uint64_t child_spawned_usec(const Child *c)
{
        return c->spawned_usec;
}

void child_touch(Child *c)
{
        c->used_usec = event_now_usec(c->ctx.event);
}

uint64_t child_used_usec(const Child *c)
{
        return MAX(c->used_usec, c->ready_usec);
}

const cJSON *child_meta(const Child *c)
{
        return c->state == CHILD_READY ? c->meta : NULL;
}

uint64_t child_ready_usec(const Child *c)
{
        return c->ready_usec;
}
