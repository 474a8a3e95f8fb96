/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sim-log.h"

#define LOG_LINE_MAX 4096

static uint64_t log_t0;
static int log_verbosity = LOG_LEVEL_INFO;
static bool log_disabled;

void log_init(void)
{
        log_t0 = now_usec(CLOCK_MONOTONIC);
}

void log_configure(int verbosity, bool disabled)
{
        log_verbosity = verbosity;
        log_disabled = disabled;
}

/* One write() per line, so lines from several threads never interleave. */
static void log_write(const char *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = write(STDERR_FILENO, buf, len);

                if (n < 0) {
                        return;
                }
                buf += n;
                len -= (size_t) n;
        }
}

static char level_char(enum log_level level)
{
        switch (level) {
        case LOG_LEVEL_ERROR:
                return 'E';
        case LOG_LEVEL_WARN:
                return 'W';
        case LOG_LEVEL_INFO:
                return 'I';
        case LOG_LEVEL_DEBUG:
                return 'D';
        }
        return '?';
}

void log_line(enum log_level level, const char *module, const char *func, const char *fmt, ...)
{
        char buf[LOG_LINE_MAX];
        uint64_t t;
        va_list ap;
        int n, m;

        if (log_disabled || (int) level > log_verbosity) {
                return;
        }

        /* llama.cpp stamps minutes.seconds.milliseconds.microseconds since its start. */
        t = now_usec(CLOCK_MONOTONIC) - log_t0;
        n = snprintf(buf, sizeof(buf), "%d.%02d.%03d.%03d %c ", (int) (t / USEC_PER_SEC / 60),
                     (int) (t / USEC_PER_SEC % 60), (int) (t / 1000 % 1000), (int) (t % 1000),
                     level_char(level));
        if (module) {
                n += snprintf(buf + n, sizeof(buf) - (size_t) n, "%-4s %12.12s: ", module, func);
        } else if (func) {
                n += snprintf(buf + n, sizeof(buf) - (size_t) n, "%s: ", func);
        }

        va_start(ap, fmt);
        m = vsnprintf(buf + n, sizeof(buf) - (size_t) n - 1, fmt, ap);
        va_end(ap);
        if (m < 0) {
                return;
        }
        n += m;
        if ((size_t) n > sizeof(buf) - 2) {
                n = (int) sizeof(buf) - 2;
        }
        buf[n++] = '\n';
        log_write(buf, (size_t) n);
}

void log_plain(const char *fmt, ...)
{
        char buf[LOG_LINE_MAX];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (n < 0) {
                return;
        }
        if ((size_t) n >= sizeof(buf)) {
                n = (int) sizeof(buf) - 1;
        }
        log_write(buf, (size_t) n);
}
