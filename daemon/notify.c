/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "notify.h"
#include "time-util.h"

static char *last_status;

static void notify_send(const char *msg)
{
        int r = sd_notify(0, msg);

        if (r < 0) {
                log_debug_errno(r, "sd_notify(%s) failed: %m", msg);
        }
}

void notify_ready(void)
{
        notify_send("READY=1");
}

void notify_reloading(void)
{
        char buf[64];

        /* systemd 253+ reads MONOTONIC_USEC= to match RELOADING=1 with its reload job; 252
         * ignores it, and it costs nothing. */
        snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long) now_usec(CLOCK_MONOTONIC));
        notify_send(buf);
}

void notify_stopping(void)
{
        notify_send("STOPPING=1");
}

void notify_status(const char *status)
{
        _cleanup_free_ char *msg = NULL;

        if (last_status && streq(last_status, status)) {
                return;
        }
        free(last_status);
        last_status = strdup(status);
        if (asprintf(&msg, "STATUS=%s", status) < 0) {
                return;
        }
        log_debug("status: %s", status);
        notify_send(msg);
}

void notify_errno(int error, const char *status)
{
        _cleanup_free_ char *msg = NULL;

        if (asprintf(&msg, "STATUS=%s\nERRNO=%d", status, abs(error)) < 0) {
                return;
        }
        notify_send(msg);
}

void notify_extend_timeout(uint64_t usec)
{
        char buf[64];

        snprintf(buf, sizeof(buf), "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long) usec);
        notify_send(buf);
}
