/* SPDX-License-Identifier: MIT */
#pragma once

#include "sim.h"

/*
 * The fault-injection knobs, all LLAMA_SIM_* environment variables (see the table in
 * test_sim.py's docstring). Returns -EINVAL after a message when one is malformed: a test that
 * sets a knob wrong should fail loudly, not run with the default.
 */
int env_parse(struct sim_config *cfg);

/* SEGV, SIGSEGV, 11, ...; -EINVAL when unknown. */
int env_parse_signal(const char *s);
