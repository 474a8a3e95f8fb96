/* SPDX-License-Identifier: MIT */
#include <systemd/sd-event.h>

#include "time-util.h"

uint64_t event_now_usec(sd_event *e)
{
        uint64_t t;

        if (sd_event_now(e, CLOCK_MONOTONIC, &t) < 0) {
                return now_usec(CLOCK_MONOTONIC);
        }
        return t;
}
