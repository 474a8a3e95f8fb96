/* SPDX-License-Identifier: MIT */
#pragma once

#include "sim.h"

/*
 * llama-server's command line, as common/arg.cpp parses it: every spelling must be known, a
 * "--" spelling may use '_' for '-', an option with a value takes the next argument whatever it
 * looks like, and numbers go through std::stoi/std::stof (a leading number is enough).
 *
 * Returns 0 to go on, 1 when the command line asked for an early successful exit (--help,
 * --version), -EINVAL after printing llama-server's own error message.
 */
int args_parse(int argc, char **argv, struct sim_config *cfg);

/* Aborts when the option table is not sorted or a spelling repeats: a programming error. */
void args_check_table(void);
