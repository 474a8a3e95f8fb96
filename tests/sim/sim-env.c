/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim-env.h"

static const struct {
        const char *name;
        int sig;
} env_signals[] = {
        { "ABRT", SIGABRT }, { "BUS", SIGBUS },   { "FPE", SIGFPE },   { "HUP", SIGHUP },
        { "ILL", SIGILL },   { "INT", SIGINT },   { "KILL", SIGKILL }, { "QUIT", SIGQUIT },
        { "SEGV", SIGSEGV }, { "TERM", SIGTERM }, { "TRAP", SIGTRAP }, { "USR1", SIGUSR1 },
        { "USR2", SIGUSR2 },
};

int env_parse_signal(const char *s)
{
        char *end;
        long n;

        if (strncasecmp(s, "SIG", 3) == 0) {
                s += 3;
        }
        for (size_t i = 0; i < ELEMENTSOF(env_signals); i++) {
                if (strcasecmp(s, env_signals[i].name) == 0) {
                        return env_signals[i].sig;
                }
        }
        errno = 0;
        n = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || n < 1 || n > SIGRTMAX) {
                return -EINVAL;
        }
        return (int) n;
}

/* A non-negative number of milliseconds, or -1 when the variable is unset or empty. */
static int env_msec(const char *name, int64_t *ret)
{
        const char *s = getenv(name);
        char *end;
        long long n;

        if (!s || !*s) {
                return 0;
        }
        errno = 0;
        n = strtoll(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || n < 0) {
                fprintf(stderr, "llama-sim: %s=%s: not a number of milliseconds\n", name, s);
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

/* A non-negative count, or -1 when the variable is unset or empty. */
static int env_count(const char *name, int64_t *ret)
{
        const char *s = getenv(name);
        char *end;
        long long n;

        *ret = -1;
        if (!s || !*s) {
                return 0;
        }
        errno = 0;
        n = strtoll(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || n < 0) {
                fprintf(stderr, "llama-sim: %s=%s: not a count\n", name, s);
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

static bool env_flag(const char *name)
{
        const char *s = getenv(name);

        return s && *s && !streq(s, "0") && strcasecmp(s, "false") != 0 && strcasecmp(s, "no") != 0;
}

int env_parse(struct sim_config *cfg)
{
        const char *s;
        int r;

        cfg->load_ms = -1;
        cfg->exit_after_ms = -1;
        cfg->health_hang_after_ms = -1;
        cfg->hold_ms = -1;
        cfg->metrics_ms = -1;
        cfg->prompt_ms = -1;
        cfg->token_ms = 10;
        cfg->exit_code = 1;
        cfg->exit_signal = 0;

        if ((r = env_msec("LLAMA_SIM_LOAD_MS", &cfg->load_ms)) < 0 ||
            (r = env_msec("LLAMA_SIM_EXIT_AFTER_MS", &cfg->exit_after_ms)) < 0 ||
            (r = env_msec("LLAMA_SIM_HEALTH_HANG_AFTER_MS", &cfg->health_hang_after_ms)) < 0 ||
            (r = env_msec("LLAMA_SIM_HOLD_MS", &cfg->hold_ms)) < 0 ||
            (r = env_msec("LLAMA_SIM_METRICS_MS", &cfg->metrics_ms)) < 0 ||
            (r = env_msec("LLAMA_SIM_TOKEN_MS", &cfg->token_ms)) < 0 ||
            (r = env_msec("LLAMA_SIM_PROMPT_MS", &cfg->prompt_ms)) < 0 ||
            (r = env_count("LLAMA_SIM_EOS_AFTER_TOKENS", &cfg->eos_after_tokens)) < 0 ||
            (r = env_count("LLAMA_SIM_EXIT_AFTER_TOKENS", &cfg->exit_after_tokens)) < 0 ||
            (r = env_count("LLAMA_SIM_STALL_AFTER_TOKENS", &cfg->stall_after_tokens)) < 0 ||
            (r = env_count("LLAMA_SIM_ERROR_AFTER_TOKENS", &cfg->error_after_tokens)) < 0 ||
            (r = env_count("LLAMA_SIM_GPU_MB", &cfg->gpu_mb)) < 0 ||
            (r = env_msec("LLAMA_SIM_SLOT_SAVE_MS", &cfg->slot_save_ms)) < 0) {
                return r;
        }
        cfg->lockstep = env_flag("LLAMA_SIM_LOCKSTEP");
        cfg->cr_framing = env_flag("LLAMA_SIM_CR_FRAMING");
        cfg->slot_save_error = env_flag("LLAMA_SIM_SLOT_SAVE_ERROR");
        cfg->slot_restore_error = env_flag("LLAMA_SIM_SLOT_RESTORE_ERROR");
        cfg->exit_while_loading = env_flag("LLAMA_SIM_EXIT_WHILE_LOADING");
        cfg->hang_loading = env_flag("LLAMA_SIM_HANG_LOADING");
        cfg->ignore_sigterm = env_flag("LLAMA_SIM_IGNORE_SIGTERM");
        cfg->drop_kept = env_flag("LLAMA_SIM_DROP_KEPT");
        s = getenv("LLAMA_SIM_METRICS_EXTRA");
        cfg->metrics_extra = s && *s ? s : NULL;
        s = getenv("LLAMA_SIM_ERROR_WHILE");
        cfg->error_while = s && *s ? s : NULL;

        s = getenv("LLAMA_SIM_EXIT_CODE");
        if (s && *s) {
                char *end;
                long n;

                errno = 0;
                n = strtol(s, &end, 10);
                if (errno != 0 || end == s || *end != '\0' || n < 0 || n > 255) {
                        fprintf(stderr, "llama-sim: LLAMA_SIM_EXIT_CODE=%s: not 0..255\n", s);
                        return -EINVAL;
                }
                cfg->exit_code = (int) n;
        }

        s = getenv("LLAMA_SIM_EXIT_SIGNAL");
        if (s && *s) {
                r = env_parse_signal(s);
                if (r < 0) {
                        fprintf(stderr, "llama-sim: LLAMA_SIM_EXIT_SIGNAL=%s: unknown signal\n", s);
                        return r;
                }
                cfg->exit_signal = r;
        }

        s = getenv("LLAMA_SIM_RECORD");
        cfg->record_path = s && *s ? s : NULL;
        cfg->marker = getenv("LLAMA_SIM_MARKER");
        s = getenv("LLMD_FAKE_NVML");
        cfg->fake_nvml = s && *s ? s : NULL;
        return 0;
}
