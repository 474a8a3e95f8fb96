/* SPDX-License-Identifier: MIT */
/*
 * llmctl bench, a program of its own: it needs libcurl and inih, which every other verb does
 * without. llmctl execs it for "bench" with its own arguments, so that llmctl itself starts in a
 * millisecond or two (a switch to a resident model is a few milliseconds end to end).
 */
#include <stdio.h>

#include "bench.h"
#include "llmctl-client.h"

int main(int argc, char *argv[])
{
        Client cl = { .fd = -1 };
        int r = client_setup(&cl, argc, argv);

        if (r >= 0) {
                return r;
        }
        if (cl.args.verb->id != VERB_BENCH) {
                return fail(EXIT_USAGE, "llmctl-bench runs llmctl bench only");
        }
        r = bench_main(&cl);
        client_done(&cl);
        return r;
}
