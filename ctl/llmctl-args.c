/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "bench-report.h"
#include "llmctl-args.h"
#include "parse-util.h"

enum {
        ARG_JSON = 0x100,
        ARG_SOCKET,
        ARG_NOW,
        ARG_VERSION,
        ARG_RUNS,
        ARG_FORMAT,
        ARG_TASKS,
        ARG_URL,
        ARG_TIMEOUT,
        ARG_LISTEN,
};

const struct option llmctl_options[] = {
        { "json", no_argument, NULL, ARG_JSON },
        { "socket", required_argument, NULL, ARG_SOCKET },
        { "now", no_argument, NULL, ARG_NOW },
        { "follow", no_argument, NULL, 'f' },
        { "runs", required_argument, NULL, ARG_RUNS },
        { "format", required_argument, NULL, ARG_FORMAT },
        { "output", required_argument, NULL, 'o' },
        { "tasks", required_argument, NULL, ARG_TASKS },
        { "url", required_argument, NULL, ARG_URL },
        { "timeout", required_argument, NULL, ARG_TIMEOUT },
        { "listen", required_argument, NULL, ARG_LISTEN },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, ARG_VERSION },
        {},
};

const Verb *llmctl_verb_find(const char *name)
{
        for (size_t i = 0; i < _VERB_MAX; i++) {
                if (streq(verbs[i].name, name)) {
                        return &verbs[i];
                }
        }
        return NULL;
}

void llmctl_help(FILE *f)
{
        fprintf(f,
                "Usage: llmctl [OPTIONS] VERB [ARGS]\n"
                "Control llmd, the llama-server supervisor.\n\nVerbs:\n");
        for (size_t i = 0; i < _VERB_MAX; i++) {
                char left[32];

                snprintf(left, sizeof(left), "%s %s", verbs[i].name, verbs[i].args);
                fprintf(f, "  %-21s %s\n", left, verbs[i].help);
        }
        fprintf(f,
                "\nOptions:\n"
                "  --json             print the daemon's JSON replies (also when stdout is no terminal)\n"
                "  --socket PATH      the control socket (default: $LLMD_SOCKET or /run/llmd/control.sock)\n"
                "  -f, --follow       logs: follow the journal; activity: print requests as they end\n"
                "  --now              switch: kill the old model at once instead of letting its requests finish\n"
                "  --runs N           bench: runs of each task (default %u)\n"
                "  --format FORMAT    bench: table, markdown, json or csv\n"
                "  -o, --output FILE  bench: also write the results as JSON to FILE\n"
                "  --tasks DIR        bench: the tasks in DIR instead of the bench.d folders\n"
                "  --url URL          bench: llmd's HTTP endpoint (default: from its [llmd] listen)\n"
                "  --timeout SEC      bench: give a run up after SEC seconds without a byte (default %u)\n"
                "  --listen ADDRESS   fleet: where HAProxy listens (default :8080)\n"
                "  -h, --help         show this help\n\n"
                "Exit status: 0 ok; 1 usage or connection error; 2 llmd refused or failed;\n"
                "130 bench interrupted.\n",
                BENCH_DEFAULT_RUNS, BENCH_DEFAULT_TIMEOUT_SEC);
}

int llmctl_parse_args(int argc, char *argv[], LlmctlArgs *ret, char *error, size_t size)
{
        LlmctlArgs a = {};
        bool bench_option = false;
        int c;

        optind = 0; /* a full reset: parsers in the tests run several times */
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hfo:", llmctl_options, NULL)) >= 0) {
                switch (c) {
                case ARG_JSON:
                        a.json = true;
                        break;
                case ARG_SOCKET:
                        a.socket = optarg;
                        break;
                case ARG_NOW:
                        a.now = true;
                        break;
                case 'h':
                        a.help = true;
                        break;
                case 'f':
                        a.follow = true;
                        break;
                case ARG_VERSION:
                        a.version = true;
                        break;
                case ARG_RUNS:
                        if (parse_unsigned(optarg, BENCH_RUNS_MAX, &a.runs) < 0 || a.runs == 0) {
                                snprintf(error, size, "--runs: '%s' is not a number from 1 to %u",
                                         optarg, BENCH_RUNS_MAX);
                                return -EINVAL;
                        }
                        bench_option = true;
                        break;
                case ARG_FORMAT:
                        if (bench_format_from_string(optarg) < 0) {
                                snprintf(error, size,
                                         "--format: '%s' is not table, markdown, json or csv",
                                         optarg);
                                return -EINVAL;
                        }
                        a.format = optarg;
                        bench_option = true;
                        break;
                case 'o':
                        a.output = optarg;
                        bench_option = true;
                        break;
                case ARG_TASKS:
                        a.tasks = optarg;
                        bench_option = true;
                        break;
                case ARG_URL:
                        a.url = optarg;
                        bench_option = true;
                        break;
                case ARG_TIMEOUT:
                        if (parse_unsigned(optarg, 86400, &a.timeout) < 0 || a.timeout == 0) {
                                snprintf(
                                        error, size,
                                        "--timeout: '%s' is not a number of seconds from 1 to 86400",
                                        optarg);
                                return -EINVAL;
                        }
                        bench_option = true;
                        break;
                case ARG_LISTEN:
                        a.listen = optarg;
                        break;
                case ':':
                        snprintf(error, size, "option '%s' needs a value", argv[optind - 1]);
                        return -EINVAL;
                default:
                        snprintf(error, size, "unknown option '%s'", argv[optind - 1]);
                        return -EINVAL;
                }
        }
        if (a.help) {
                *ret = a;
                return 0;
        }
        if (a.version && optind == argc) {
                a.verb = llmctl_verb_find("version");
                *ret = a;
                return 0;
        }
        if (optind == argc) {
                snprintf(error, size, "no verb given (try 'llmctl --help')");
                return -EINVAL;
        }
        a.verb = llmctl_verb_find(argv[optind]);
        if (!a.verb) {
                snprintf(error, size, "unknown verb '%s' (try 'llmctl --help')", argv[optind]);
                return -EINVAL;
        }
        a.args = argv + optind + 1;
        a.n_args = (unsigned) (argc - optind - 1);
        if (a.n_args < a.verb->min_args || a.n_args > a.verb->max_args) {
                if (a.verb->max_args == 0) {
                        snprintf(error, size, "'%s' takes no arguments", a.verb->name);
                } else {
                        snprintf(error, size, "usage: llmctl %s %s", a.verb->name, a.verb->args);
                }
                return -EINVAL;
        }
        if (a.now && a.verb->id != VERB_SWITCH) {
                snprintf(error, size, "--now goes with switch only");
                return -EINVAL;
        }
        if (a.follow && a.verb->id != VERB_LOGS && a.verb->id != VERB_ACTIVITY) {
                snprintf(error, size, "-f goes with logs and activity only");
                return -EINVAL;
        }
        if (bench_option && a.verb->id != VERB_BENCH) {
                snprintf(
                        error, size,
                        "--runs, --format, --output, --tasks, --url and --timeout go with bench only");
                return -EINVAL;
        }
        if (a.listen && a.verb->id != VERB_FLEET) {
                snprintf(error, size, "--listen goes with fleet only");
                return -EINVAL;
        }
        *ret = a;
        return 0;
}
