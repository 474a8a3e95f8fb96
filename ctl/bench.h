/* SPDX-License-Identifier: MIT */
#pragma once

#include "llmctl-client.h"

/*
 * llmctl bench [MODEL...]: switches to each model through the control socket, warms it up, runs
 * each task of the bench.d folders --runs times through llmd's HTTP endpoint (streamed, as
 * clients do), and prints what it measured. The model active at the start is active again at
 * the end, also after Ctrl-C. Returns the exit code.
 */
int bench_main(Client *cl);
