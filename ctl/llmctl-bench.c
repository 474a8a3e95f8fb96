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
        char error[256];
        int r;

        if (llmctl_parse_args(argc, argv, &cl.args, error, sizeof(error)) < 0) {
                return fail(EXIT_USAGE, "%s", error);
        }
        if (cl.args.help || cl.args.verb->id != VERB_BENCH) {
                llmctl_help(stdout);
                return cl.args.help ? 0 : EXIT_USAGE;
        }
        cl.path = cl.args.socket ? cl.args.socket : client_default_socket();
        cl.terminal = isatty(STDOUT_FILENO);
        cl.json = cl.args.json || !cl.terminal;
        varlink_reader_init(&cl.reader);
        r = bench_main(&cl);
        client_done(&cl);
        return r;
}
