/* SPDX-License-Identifier: MIT */
/*
 * llmctl fleet, a program of its own: it reads the boxes with libcurl, which llmctl's other verbs
 * do without (see llmctl-bench.c). llmctl execs it for "fleet" with its own arguments.
 */
#include "fleet.h"

int main(int argc, char *argv[])
{
        return client_helper_main(argc, argv, VERB_FLEET, fleet_main);
}
