/* SPDX-License-Identifier: MIT */
#pragma once

#include "sim-http.h"

/*
 * Lock-step streaming for tests (LLAMA_SIM_LOCKSTEP=1): a stream sends each SSE event only with
 * a credit, and credits come from POST /sim/step, which gives every open stream K more (the
 * body's "n", default 1). Order and presence of events can then be asserted without clocks.
 *
 * A stream registers when its response is created, so credits given before its first event are
 * kept; /sim/step answers how many streams it reached, so a test can repeat a step that came too
 * early (before the stream registered) without giving anyone extra credit.
 */

struct lockstep;

/* NULL when lock-step is off (or on allocation failure: the stream then runs free). */
struct lockstep *lockstep_new(void);
void lockstep_free(struct lockstep *l);

/* Takes one credit, waiting for it. 0, or -ECONNRESET when the client went away meanwhile. */
int lockstep_take(struct lockstep *l, struct http_request *req);

/* Gives n credits to every registered stream; returns how many there are. */
unsigned lockstep_release(uint64_t n);
