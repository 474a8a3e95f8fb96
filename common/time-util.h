/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>
#include <time.h>

/* Time in microseconds. The header stands alone (no macro.h, no sd-event.h) so that the
 * simulator, which has neither, reads the clock the same way. */

struct sd_event;

/* The clock's time now: CLOCK_MONOTONIC for durations and deadlines. */
static inline uint64_t now_usec(clockid_t clock)
{
        struct timespec ts = {};

        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

/* CLOCK_MONOTONIC when the current iteration of e's loop began (sd_event_now()): every callback
 * of one iteration reads the same instant, the one its timers were compared with. Before the
 * first iteration, or should sd-event refuse, the time now. */
uint64_t event_now_usec(struct sd_event *e);
