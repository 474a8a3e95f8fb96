/* SPDX-License-Identifier: MIT */
/*
 * llmctl bench, a program of its own: it needs libcurl and inih, which every other verb does
 * without. llmctl execs it for "bench" with its own arguments, so that llmctl itself starts in a
 * millisecond or two (a switch to a resident model is a few milliseconds end to end).
 */
#include "bench.h"
#include "llmctl-client.h"

int main(int argc, char *argv[])
{
        return client_helper_main(argc, argv, VERB_BENCH, bench_main);
}
