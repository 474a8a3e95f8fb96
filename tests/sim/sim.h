/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * llama-sim: a stand-in for llama.cpp's llama-server that the test suite starts instead of the real
 * one. It takes llama-server's command line, listens the way llama-server does, answers in its
 * shapes, logs in its format, and behaves like it on signals; faults are injected through
 * LLAMA_SIM_* environment variables (see sim-env.c).
 *
 * Threads: main() parses, binds, "loads" the model and then waits for signals and timers
 * (llama-sim.c); libmicrohttpd runs one thread per connection, and a handler may block in its
 * own thread (holding a request, pacing tokens). Shared state is the struct sim_state below,
 * touched only through atomics.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "time-util.h" /* common/: now_usec() */

#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define streq(a, b) (strcmp((a), (b)) == 0)

#define USEC_PER_SEC ((uint64_t) 1000000ULL)
#define USEC_PER_MSEC ((uint64_t) 1000ULL)

/* What llama-server b10470 calls itself in responses. */
#define SIM_BUILD_NUMBER 10470
#define SIM_BUILD_COMMIT "34af94cd9"
#define SIM_FINGERPRINT "b10470-34af94cd9"

struct sim_config {
        /* From the command line, as llama-server reads it. */
        const char *model;            /* -m; NULL means router mode, which is not simulated */
        const char *alias;            /* first name of -a, or NULL */
        const char *host;             /* --host, default 127.0.0.1; "*.sock" means a unix socket */
        int port;                     /* --port, default 8080 */
        int ctx_size;                 /* -c, 0 = from the model */
        int n_predict;                /* -n, -1 = until the context is full */
        int n_parallel;               /* -np, -1 = auto (4) */
        int verbosity;                /* -lv, 3 = info */
        bool log_disable;             /* --log-disable */
        bool embedding;               /* --embedding, or implied by --reranking */
        const char *pooling;          /* --pooling, NULL = the model's; --reranking sets "rank" */
        bool endpoint_metrics;        /* --metrics */
        bool endpoint_slots;          /* --slots (default) / --no-slots */
        const char *slot_save_path;   /* --slot-save-path, or NULL */
        bool endpoint_props;          /* --props */
        bool ui;                      /* --ui (default) / --no-ui; GET / is a 404 either way */
        const char *reasoning_format; /* --reasoning-format, NULL = "auto" */
        int reasoning_budget;         /* --reasoning-budget, -1 = unlimited */
        const char *api_key;          /* --api-key, may be a comma-separated list */
        int argc;
        char **argv;

        /* From the environment (LLAMA_SIM_*); -1 means unset. */
        int64_t load_ms;
        bool exit_while_loading;
        bool hang_loading;
        int64_t exit_after_ms;
        int64_t health_hang_after_ms;
        int64_t hold_ms;
        int64_t metrics_ms;        /* LLAMA_SIM_METRICS_MS: GET /metrics answers this late */
        const char *metrics_extra; /* LLAMA_SIM_METRICS_EXTRA: a file added to /metrics */
        int64_t token_ms;          /* 0 = as fast as possible */
        int64_t prompt_ms;         /* LLAMA_SIM_PROMPT_MS: time before the first token */
        int64_t eos_after_tokens;  /* LLAMA_SIM_EOS_AFTER_TOKENS: the answer ends there */
        bool lockstep;             /* LLAMA_SIM_LOCKSTEP: one SSE event per POST /sim/step */
        bool cr_framing;           /* LLAMA_SIM_CR_FRAMING: SSE lines end in a lone \r */
        /* POST /slots/ID?action=save answers 500 (a full disk), restore 400 (as a file the
         * model cannot take), save takes this long first. */
        bool slot_save_error;      /* LLAMA_SIM_SLOT_SAVE_ERROR */
        bool slot_restore_error;   /* LLAMA_SIM_SLOT_RESTORE_ERROR */
        int64_t slot_save_ms;      /* LLAMA_SIM_SLOT_SAVE_MS */
        int64_t exit_after_tokens; /* the LLAMA_SIM_*_AFTER_TOKENS faults, -1 = off */
        int64_t stall_after_tokens;
        int64_t error_after_tokens;
        const char *error_while; /* LLAMA_SIM_ERROR_WHILE: answer 500 while this file exists */
        bool ignore_sigterm;     /* LLAMA_SIM_IGNORE_SIGTERM: only SIGKILL ends it */
        bool drop_kept;          /* LLAMA_SIM_DROP_KEPT: close what keep-alive said stays open */
        int exit_code;
        int exit_signal; /* 0 = exit with exit_code instead */
        const char *record_path;
        const char *marker;
        int64_t gpu_mb;        /* LLAMA_SIM_GPU_MB: MiB it "uses" once loaded, -1 = unset */
        const char *fake_nvml; /* LLMD_FAKE_NVML: where it says so (tests/nvml-fake) */
};

enum sim_phase {
        SIM_LOADING,
        SIM_READY,
        SIM_STOPPING, /* first SIGTERM seen, waiting for open requests to end */
};

struct sim_state {
        int phase;             /* enum sim_phase, atomic */
        uint64_t ready_usec;   /* CLOCK_MONOTONIC when the model was loaded */
        int open_requests;     /* atomic */
        int wake_fd;           /* eventfd: main() rereads open_requests when it fires */
        unsigned task_counter; /* atomic, for slot log lines */
        long long start_time;  /* time(NULL) at start, for /metrics */
};

extern struct sim_config sim_config;
extern struct sim_state sim_state;

int sim_phase(void);
void sim_request_begin(void);
void sim_request_end(void);

/* The LLAMA_SIM_EXIT_* faults: a "fault" record, then exit or death by the configured signal.
 * Callable from any thread. */
_noreturn_ void sim_fault(const char *what);
