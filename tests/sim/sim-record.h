/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

#include "sim.h"

/*
 * The records file (LLAMA_SIM_RECORD): one JSON object per line, each written with one write()
 * to an O_APPEND descriptor, so several simulators can share a file without tearing lines.
 * Every record has "event", "pid" and "t" (CLOCK_MONOTONIC seconds).
 */

int record_open(const char *path);

/* A new record object with "event" and "pid" set; NULL when records are off. */
cJSON *record_new(const char *event);

/* Adds "t", writes the line and frees o. Accepts NULL. */
void record_emit(cJSON *o);

/* Adds a CLOCK_MONOTONIC time in seconds, in the form of "t". */
void record_add_time(cJSON *o, const char *name, uint64_t usec);

void record_signal(int sig, const char *action);
void record_exit(int status);
