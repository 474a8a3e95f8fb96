/* SPDX-License-Identifier: MIT */
/*
 * llama-sim: llama-server for tests. See sim.h for the layout, test_sim.py for the behaviour.
 *
 * The process's life, as llama-server b10470 lives it:
 *
 *   parse args ──bad──> exit 1
 *       │
 *   bind ──in use / stale socket file──> exit 1
 *       │  (the port answers 503 from here on)
 *   LOADING ──SIGTERM/SIGINT──> killed by that signal
 *       │   ──model unreadable──> exit 1
 *       ▼
 *   READY ──SIGTERM/SIGINT, no request open──> exit 0
 *       │
 *       └──SIGTERM/SIGINT, requests open──> STOPPING ──last request ends──> exit 0
 *                                              └──second signal──> exit 1
 *
 * Fault injection (LLAMA_SIM_EXIT_*) cuts in at LOADING or READY.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sim-args.h"
#include "sim-env.h"
#include "sim-http.h"
#include "sim-infer.h"
#include "sim-listen.h"
#include "sim-log.h"
#include "sim-record.h"
#include "sim.h"

/* How finely the model file's reading is spread over the load time. */
#define LOAD_STEP_MS 5
#define LOAD_READ_MAX ((size_t) 1024 * 1024)

/* How long a request seen open at the first SIGTERM may take to be counted closed. */
#define SETTLE_MS 50

struct sim_config sim_config;
struct sim_state sim_state = { .wake_fd = -1 };

/* SIGTERM and SIGINT are turned into bytes on this pipe, read by the main loop. */
static int signal_pipe[2] = { -1, -1 };

int sim_phase(void)
{
        return __atomic_load_n(&sim_state.phase, __ATOMIC_SEQ_CST);
}

static void sim_set_phase(enum sim_phase phase)
{
        __atomic_store_n(&sim_state.phase, phase, __ATOMIC_SEQ_CST);
}

void sim_request_begin(void)
{
        __atomic_add_fetch(&sim_state.open_requests, 1, __ATOMIC_SEQ_CST);
}

void sim_request_end(void)
{
        uint64_t one = 1;

        __atomic_sub_fetch(&sim_state.open_requests, 1, __ATOMIC_SEQ_CST);
        (void) !write(sim_state.wake_fd, &one, sizeof(one));
}

static int sim_open_requests(void)
{
        return __atomic_load_n(&sim_state.open_requests, __ATOMIC_SEQ_CST);
}

/* $LLMD_FAKE_NVML/PID while loaded (LLAMA_SIM_GPU_MB), for the fake NVML; "" when none. */
static char sim_gpu_path[4096];

/* Writes the lines "DEVICE BYTES" of the fake NVML: LLAMA_SIM_GPU_MB spread evenly over the
 * devices of CUDA_VISIBLE_DEVICES (as llama-server spreads its layers over the GPUs it sees),
 * or all on device 0 without it. */
static void sim_gpu_write(FILE *f, uint64_t bytes)
{
        const char *visible = getenv("CUDA_VISIBLE_DEVICES");
        unsigned devices[64], n = 0;
        char *end;

        for (const char *p = visible; p && *p && n < ELEMENTSOF(devices); p = end) {
                unsigned long d = strtoul(p, &end, 10);

                if (end == p) {
                        break;
                }
                devices[n++] = (unsigned) d;
                end += *end == ',';
        }
        if (n == 0) {
                devices[n++] = 0;
        }
        for (unsigned i = 0; i < n; i++) {
                fprintf(f, "%u %llu\n", devices[i],
                        (unsigned long long) (bytes / n + (i == 0 ? bytes % n : 0)));
        }
}

/*
 * Says to the fake NVML (tests/nvml-fake) that this process now holds LLAMA_SIM_GPU_MB MiB of
 * GPU memory, as a real llama-server does once its model is loaded. Written whole and renamed
 * into place, so the fake never reads half a number.
 */
static void sim_gpu_publish(void)
{
        char tmp[sizeof(sim_gpu_path) + 8];
        FILE *f;
        int n;

        if (sim_config.gpu_mb < 0 || !sim_config.fake_nvml) {
                return;
        }
        n = snprintf(tmp, sizeof(tmp), "%s/.%d", sim_config.fake_nvml, (int) getpid());
        if (n < 0 || (size_t) n >= sizeof(sim_gpu_path)) {
                log_plain("llama-sim: LLMD_FAKE_NVML=%s: too long\n", sim_config.fake_nvml);
                return;
        }
        f = fopen(tmp, "we");
        if (!f) {
                log_plain("llama-sim: cannot write %s: %s\n", tmp, strerror(errno));
                return;
        }
        sim_gpu_write(f, (uint64_t) sim_config.gpu_mb * 1024 * 1024);
        snprintf(sim_gpu_path, sizeof(sim_gpu_path), "%s/%d", sim_config.fake_nvml, (int) getpid());
        if (fclose(f) != 0 || rename(tmp, sim_gpu_path) < 0) {
                log_plain("llama-sim: cannot write %s: %s\n", sim_gpu_path, strerror(errno));
                (void) unlink(tmp);
                sim_gpu_path[0] = '\0';
        }
}

/* The driver frees a process's GPU memory when it ends, however it ends. (A SIGKILL leaves the
 * file behind; the fake counts only live processes.) */
static void sim_gpu_retract(void)
{
        if (sim_gpu_path[0]) {
                (void) unlink(sim_gpu_path);
        }
}

/* Every voluntary exit goes through here, so that the records end with its status. */
static _noreturn_ void sim_exit(int status)
{
        sim_gpu_retract();
        record_exit(status);
        _exit(status);
}

/* Dies by sig with the default action, as an unhandled signal or a crash would end it. */
static _noreturn_ void sim_die_by_signal(int sig)
{
        struct rlimit no_core = { 0, 0 };
        sigset_t set;

        sim_gpu_retract();
        /* a fault is not a reason to leave core files around the test directories */
        (void) setrlimit(RLIMIT_CORE, &no_core);
        signal(sig, SIG_DFL);
        sigemptyset(&set);
        sigaddset(&set, sig);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
        /* a signal whose default is not to terminate: still leave, as the fault asked */
        _exit(128 + sig);
}

/* The LLAMA_SIM_EXIT_* faults. */
_noreturn_ void sim_fault(const char *what)
{
        cJSON *o = record_new("fault");

        if (o) {
                cJSON_AddStringToObject(o, "fault", what);
                if (sim_config.exit_signal > 0) {
                        cJSON_AddNumberToObject(o, "signal", sim_config.exit_signal);
                } else {
                        cJSON_AddNumberToObject(o, "status", sim_config.exit_code);
                }
        }
        record_emit(o);

        if (sim_config.exit_signal > 0) {
                log_plain("llama-sim: %s: killing itself with signal %d\n", what,
                          sim_config.exit_signal);
                sim_die_by_signal(sim_config.exit_signal);
        }
        log_plain("llama-sim: %s: exiting with status %d\n", what, sim_config.exit_code);
        sim_exit(sim_config.exit_code);
}

static void sim_on_signal(int sig)
{
        int saved = errno;
        unsigned char b = (unsigned char) sig;

        (void) !write(signal_pipe[1], &b, 1);
        errno = saved;
}

static int sim_setup_signals(void)
{
        struct sigaction sa = { .sa_handler = sim_on_signal, .sa_flags = SA_RESTART };

        if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                return -errno;
        }
        sim_state.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (sim_state.wake_fd < 0) {
                return -errno;
        }
        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&sa.sa_mask);
        /* A child wedged after a CUDA error may take no notice of SIGTERM: SIGKILL ends it. */
        if (sim_config.ignore_sigterm) {
                sa.sa_handler = SIG_IGN;
        }
        if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0) {
                return -errno;
        }
        return 0;
}

/* A thousand concurrent clients need more descriptors than a soft limit of 1024 allows. */
static void sim_raise_fd_limit(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
}

/* The next signal that arrived, or 0. */
static int sim_read_signal(void)
{
        unsigned char b;

        if (read(signal_pipe[0], &b, 1) == 1) {
                return b;
        }
        return 0;
}

/*
 * Waits until deadline (UINT64_MAX: for ever) for a signal; returns it, or 0 at the deadline.
 * The wake eventfd is drained on the way when asked to watch it, and then 0 is returned too.
 */
static int sim_wait(uint64_t deadline, bool watch_wake)
{
        for (;;) {
                struct pollfd p[2] = {
                        { .fd = signal_pipe[0], .events = POLLIN },
                        { .fd = sim_state.wake_fd, .events = POLLIN },
                };
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                int timeout, sig;

                sig = sim_read_signal();
                if (sig > 0) {
                        return sig;
                }
                if (now >= deadline) {
                        return 0;
                }
                timeout = deadline == UINT64_MAX
                                  ? -1
                                  : (int) ((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
                if (poll(p, watch_wake ? 2 : 1, timeout) < 0 && errno != EINTR) {
                        return 0;
                }
                if (watch_wake && (p[1].revents & POLLIN)) {
                        uint64_t n;

                        (void) !read(sim_state.wake_fd, &n, sizeof(n));
                        return 0;
                }
        }
}

/* llama-server installs its handlers only once loaded: until then a signal kills it at once. */
static _noreturn_ void sim_die_loading(int sig)
{
        record_signal(sig, "die");
        sim_die_by_signal(sig);
}

/* llama.cpp's own lines for a model it cannot open (opened false) or read. */
static _noreturn_ void sim_load_failed(const char *path, bool opened, int error)
{
        if (opened) {
                log_line(LOG_LEVEL_ERROR, NULL, "gguf_init_from_file_impl",
                         "failed to read magic (%s)", strerror(error));
        } else {
                log_line(LOG_LEVEL_ERROR, NULL, "gguf_init_from_file",
                         "failed to open GGUF file '%s' (%s)", path, strerror(error));
        }
        log_line(LOG_LEVEL_ERROR, NULL, "llama_model_load",
                 "error loading model: llama_model_loader: failed to load model from %s", path);
        log_line(LOG_LEVEL_ERROR, NULL, "llama_model_load_from_file_impl", "failed to load model");
        SRV_ERR("load_model", "failed to load model, '%s'", path);
        SRV_INF("operator()", "operator(): cleaning up before exit...");
        SRV_ERR("llama_server", "exiting due to model loading error");
        sim_exit(1);
}

/*
 * "Loads" the model: reads the whole file, spread evenly over the load time, so the bytes read
 * in /proc/PID/io grow as a real load's would. The time is LLAMA_SIM_LOAD_MS, else 1 ms per MiB
 * of model with 20 ms at least.
 */
static void sim_load_model(void)
{
        const char *path = sim_config.model;
        uint64_t load_ms, steps, chunk, t0;
        struct stat st;
        char *buf;
        int fd, sig;

        SRV_INF("load_model", "loading model '%s'", path);

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                sim_load_failed(path, false, errno);
        }
        if (sim_config.load_ms >= 0) {
                load_ms = (uint64_t) sim_config.load_ms;
        } else {
                load_ms = (uint64_t) st.st_size / (1024 * 1024);
                if (load_ms < 20) {
                        load_ms = 20;
                }
        }
        steps = load_ms / LOAD_STEP_MS;
        if (steps < 1) {
                steps = 1;
        }
        chunk = ((uint64_t) st.st_size + steps - 1) / steps;
        buf = malloc(LOAD_READ_MAX);
        if (!buf) {
                sim_load_failed(path, true, ENOMEM);
        }

        t0 = now_usec(CLOCK_MONOTONIC);
        for (uint64_t step = 0; step < steps; step++) {
                uint64_t left = chunk;

                if (sim_config.exit_while_loading && step >= steps / 2) {
                        sim_fault("LLAMA_SIM_EXIT_WHILE_LOADING");
                }
                /* a directory opens, and fails here with EISDIR, as llama.cpp's read does */
                while (left > 0) {
                        ssize_t n = read(fd, buf, left < LOAD_READ_MAX ? left : LOAD_READ_MAX);

                        if (n < 0 && errno == EINTR) {
                                continue;
                        }
                        if (n < 0) {
                                sim_load_failed(path, true, errno);
                        }
                        if (n == 0) {
                                break;
                        }
                        left -= (uint64_t) n;
                }
                sig = sim_wait(t0 + (step + 1) * load_ms * USEC_PER_MSEC / steps, false);
                if (sig > 0) {
                        sim_die_loading(sig);
                }
        }
        free(buf);
        close(fd);

        if (sim_config.hang_loading) {
                /* LLAMA_SIM_HANG_LOADING: never ready, still killable like a loading server */
                for (;;) {
                        sig = sim_wait(UINT64_MAX, false);
                        if (sig > 0) {
                                sim_die_loading(sig);
                        }
                }
        }
}

/*
 * A client has its answer a moment before libmicrohttpd calls the completion callback that
 * counts the request closed; a signal sent right after an answer would find the request still
 * open. So an open request only counts once it stayed open a little while.
 */
static void sim_settle(void)
{
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + SETTLE_MS * USEC_PER_MSEC;

        while (sim_open_requests() > 0 && now_usec(CLOCK_MONOTONIC) < deadline) {
                uint64_t n;
                struct pollfd p = { .fd = sim_state.wake_fd, .events = POLLIN };

                if (poll(&p, 1, 1) > 0) {
                        (void) !read(sim_state.wake_fd, &n, sizeof(n));
                }
        }
}

static _noreturn_ void sim_run(void)
{
        uint64_t exit_at = UINT64_MAX;
        int sig;

        if (sim_config.exit_after_ms >= 0) {
                exit_at =
                        sim_state.ready_usec + (uint64_t) sim_config.exit_after_ms * USEC_PER_MSEC;
        }

        for (;;) {
                sig = sim_wait(exit_at, true);
                if (now_usec(CLOCK_MONOTONIC) >= exit_at) {
                        sim_fault("LLAMA_SIM_EXIT_AFTER_MS");
                }

                if (sig > 0 && sim_phase() == SIM_STOPPING) {
                        /* llama-server's handler: a second signal ends it at once */
                        log_plain("Received second interrupt, terminating immediately.\n");
                        record_signal(sig, "exit");
                        sim_exit(1);
                }
                if (sig > 0) {
                        /* llama-server logs this at once, then waits for its HTTP threads:
                         * a request in progress keeps it alive until the client goes */
                        SRV_INF("operator()", "operator(): cleaning up before exit...");
                        sim_set_phase(SIM_STOPPING);
                        http_quiesce();
                        sim_settle();
                        if (sim_open_requests() == 0) {
                                record_signal(sig, "exit");
                                sim_exit(0);
                        }
                        record_signal(sig, "deferred");
                }
                if (sim_phase() == SIM_STOPPING && sim_open_requests() == 0) {
                        sim_exit(0);
                }
        }
}

static void sim_record_start(void)
{
        cJSON *o = record_new("start");
        cJSON *argv;

        if (!o) {
                return;
        }
        cJSON_AddStringToObject(o, "model", sim_config.model ? sim_config.model : "");
        cJSON_AddStringToObject(o, "host", sim_config.host);
        cJSON_AddNumberToObject(o, "port", sim_config.port);
        argv = cJSON_AddArrayToObject(o, "argv");
        for (int i = 0; i < sim_config.argc; i++) {
                cJSON_AddItemToArray(argv, cJSON_CreateString(sim_config.argv[i]));
        }
        if (sim_config.marker) {
                cJSON_AddStringToObject(o, "env_marker", sim_config.marker);
        } else {
                cJSON_AddNullToObject(o, "env_marker");
        }
        record_emit(o);
}

/* What llama-server prints before it binds. */
static void sim_log_preamble(void)
{
        log_line(LOG_LEVEL_INFO, "cmn", "common_params_print_info",
                 "common_params_print_info: verbosity = %d (adjust with the `-lv N` CLI arg)",
                 sim_config.verbosity);
        if (sim_config.embedding) {
                SRV_WRN("llama_server", "embeddings enabled with n_batch (2048) > n_ubatch (512)");
                SRV_WRN("llama_server",
                        "setting n_batch = n_ubatch = 512 to avoid assertion failure");
        }
        if (!sim_config.api_key) {
                SRV_WRN("llama_server", "-----------------");
                SRV_WRN("llama_server",
                        "CORS is set to allow all origins ('*') and no API key is set");
                SRV_WRN("llama_server", "this can be a security risk (cross-origin attacks)");
                SRV_WRN("llama_server",
                        "more info: https://github.com/ggml-org/llama.cpp/pull/25655");
                SRV_WRN("llama_server", "-----------------");
        }
}

int main(int argc, char **argv)
{
        sigset_t block, saved;
        char *address = NULL;
        int r, fd;

        log_init();
        args_check_table();

        sim_config = (struct sim_config) {
                .host = "127.0.0.1",
                .port = 8080,
                .n_predict = -1,
                .n_parallel = -1,
                .verbosity = LOG_LEVEL_INFO,
                .endpoint_slots = true,
                .ui = true,
                .reasoning_budget = -1,
                .argc = argc,
                .argv = argv,
        };
        sim_state.start_time = (long long) time(NULL);
        r = args_parse(argc, argv, &sim_config);
        if (r != 0) {
                return r > 0 ? 0 : 1;
        }
        if (env_parse(&sim_config) < 0) {
                return 1;
        }
        log_configure(sim_config.verbosity, sim_config.log_disable);
        if (sim_config.record_path) {
                r = record_open(sim_config.record_path);
                if (r < 0) {
                        log_plain("llama-sim: cannot open LLAMA_SIM_RECORD=%s: %s\n",
                                  sim_config.record_path, strerror(-r));
                }
        }
        sim_raise_fd_limit();
        r = sim_setup_signals();
        if (r < 0) {
                log_plain("llama-sim: cannot set up signals: %s\n", strerror(-r));
                return 1;
        }
        sim_record_start();

        sim_log_preamble();
        if (!sim_config.model) {
                /* without -m llama-server becomes a router of other llama-servers */
                log_plain(
                        "llama-sim: no -m/--model given: llama-server would start in router "
                        "mode, which llama-sim does not simulate\n");
                sim_exit(1);
        }

        fd = listen_open(sim_config.host, sim_config.port, &address);
        if (fd < 0) {
                log_line(LOG_LEVEL_ERROR, "srv", "start",
                         "couldn't bind HTTP server socket, hostname: %s, port: %d",
                         sim_config.host, sim_config.port);
                SRV_INF("operator()", "operator(): cleaning up before exit...");
                SRV_ERR("llama_server", "exiting due to HTTP server error");
                sim_exit(1);
        }

        /* libmicrohttpd's threads must never take SIGTERM/SIGINT: they inherit this mask, and
         * the main thread, which takes them, gets its own back at once. */
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        pthread_sigmask(SIG_BLOCK, &block, &saved);
        r = http_start(fd);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0) {
                log_line(LOG_LEVEL_ERROR, "srv", "start", "failed to start the HTTP server");
                SRV_ERR("llama_server", "exiting due to HTTP server error");
                sim_exit(1);
        }

        sim_load_model();

        log_line(LOG_LEVEL_INFO, "cmn", "init", "llama threadpool init, n_threads = 2");
        SRV_INF("load_model", "initializing, n_slots = %d, n_ctx_slot = %d, kv_unified = '%s'",
                infer_n_slots(),
                sim_config.n_parallel > 0 ? infer_n_ctx() / infer_n_slots() : infer_n_ctx(),
                sim_config.n_parallel > 0 ? "false" : "true");
        sim_gpu_publish(); /* before /health says ready, so a ready child has its memory */
        sim_state.ready_usec = now_usec(CLOCK_MONOTONIC);
        sim_set_phase(SIM_READY);
        SRV_INF("llama_server", "model loaded");
        SRV_INF("llama_server", "listening on %s", address);
        record_emit(record_new("ready"));

        sim_run();
}
