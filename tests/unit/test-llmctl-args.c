/* SPDX-License-Identifier: MIT */
#include <stdarg.h>

#include "llmctl-args.h"
#include "manager.h"
#include "tests.h"

static int parse(LlmctlArgs *a, char *error, ...)
{
        char *argv[32] = { "llmctl" }; /* NULL-terminated, as getopt expects */
        int argc = 1;
        va_list ap;
        char *s;

        va_start(ap, error);
        while ((s = va_arg(ap, char *))) {
                check(argc < (int) ELEMENTSOF(argv) - 1);
                argv[argc++] = s;
        }
        va_end(ap);
        error[0] = '\0';
        return llmctl_parse_args(argc, argv, a, error, 256);
}

TEST(verbs)
{
        LlmctlArgs a;
        char e[256];

        check_inteq(parse(&a, e, "switch", "qwen", NULL), 0);
        check_inteq(a.verb->id, VERB_SWITCH);
        check_inteq(a.n_args, 1);
        check_streq(a.args[0], "qwen");
        check(!a.json && !a.now);

        /* Options before and after the verb. */
        check_inteq(parse(&a, e, "--json", "switch", "gemma", "--now", "--socket", "/x.sock", NULL),
                    0);
        check(a.json && a.now);
        check_streq(a.socket, "/x.sock");
        check_streq(a.args[0], "gemma");

        check_inteq(parse(&a, e, "status", NULL), 0);
        check_inteq(a.verb->id, VERB_STATUS);
        check_inteq(parse(&a, e, "--version", NULL), 0);
        check_inteq(a.verb->id, VERB_VERSION);
        check_inteq(parse(&a, e, "-h", NULL), 0);
        check(a.help);
        check_inteq(parse(&a, e, "logs", "-f", "qwen", NULL), 0);
        check(a.verb->id == VERB_LOGS && a.follow && a.n_args == 1);
        check_streq(a.args[0], "qwen");
        check_inteq(parse(&a, e, "status", "-f", NULL), -EINVAL);
        check_streq(e, "-f goes with logs and activity only");
        check_inteq(parse(&a, e, "activity", "-f", "qwen", NULL), 0);
        check(a.verb->id == VERB_ACTIVITY && a.follow && a.n_args == 1);
}

TEST(usage_errors)
{
        LlmctlArgs a;
        char e[256];

        check_inteq(parse(&a, e, NULL), -EINVAL);
        check_streq(e, "no verb given (try 'llmctl --help')");
        check_inteq(parse(&a, e, "frobnicate", NULL), -EINVAL);
        check_streq(e, "unknown verb 'frobnicate' (try 'llmctl --help')");
        check_inteq(parse(&a, e, "switch", NULL), -EINVAL);
        check_streq(e, "usage: llmctl switch MODEL");
        check_inteq(parse(&a, e, "switch", "a", "b", NULL), -EINVAL);
        check_inteq(parse(&a, e, "status", "x", NULL), -EINVAL);
        check_streq(e, "'status' takes no arguments");
        check_inteq(parse(&a, e, "status", "--now", NULL), -EINVAL);
        check_streq(e, "--now goes with switch only");
        check_inteq(parse(&a, e, "--bogus", "status", NULL), -EINVAL);
        check_streq(e, "unknown option '--bogus'");
        check_inteq(parse(&a, e, "status", "--socket", NULL), -EINVAL);
        check_streq(e, "option '--socket' needs a value");
}

TEST(bench)
{
        LlmctlArgs a;
        char e[256];

        check_inteq(parse(&a, e, "bench", NULL), 0);
        check(a.verb->id == VERB_BENCH && a.n_args == 0 && a.runs == 0 && !a.format && !a.output);
        check_inteq(parse(&a, e, "bench", "qwen", "gemma", "devstral", "--runs", "5", "--format",
                          "csv", "-o", "/tmp/b.json", "--tasks", "/t", "--url", "http://h:1/v1",
                          "--timeout", "30", NULL),
                    0);
        check_inteq(a.n_args, 3);
        check_streq(a.args[2], "devstral");
        check_inteq(a.runs, 5);
        check_streq(a.format, "csv");
        check_streq(a.output, "/tmp/b.json");
        check_streq(a.tasks, "/t");
        check_streq(a.url, "http://h:1/v1");
        check_inteq(a.timeout, 30);
        check_inteq(parse(&a, e, "bench", "--output", "x.json", NULL), 0);
        check_streq(a.output, "x.json");

        check_inteq(parse(&a, e, "bench", "--runs", "0", NULL), -EINVAL);
        check_streq(e, "--runs: '0' is not a number from 1 to 100");
        check_inteq(parse(&a, e, "bench", "--runs", "101", NULL), -EINVAL);
        check_inteq(parse(&a, e, "bench", "--format", "html", NULL), -EINVAL);
        check_streq(e, "--format: 'html' is not table, markdown, json or csv");
        check_inteq(parse(&a, e, "bench", "--timeout", "0", NULL), -EINVAL);
        check_inteq(parse(&a, e, "status", "--runs", "2", NULL), -EINVAL);
        check_streq(e,
                    "--runs, --format, --output, --tasks, --url and --timeout go with bench only");
        check_inteq(parse(&a, e, "switch", "qwen", "-o", "x", NULL), -EINVAL);
        check_inteq(parse(&a, e, "bench", "-o", NULL), -EINVAL);
        check_streq(e, "option '-o' needs a value");
}

TEST(tables)
{
        /* Sorted, so adding one is adding a row in its place. */
        for (size_t i = 1; i < _VERB_MAX; i++) {
                check(strcmp(verbs[i - 1].name, verbs[i].name) < 0);
        }
        for (size_t i = 1; i < _CONTROL_METHOD_MAX; i++) {
                check(strcmp(control_methods[i - 1].name, control_methods[i].name) < 0);
        }
        for (size_t i = 0; i < _VERB_MAX; i++) {
                check_inteq(verbs[i].id, i);
                check(verbs[i].run && verbs[i].help);
        }
        for (size_t i = 0; i < _CONTROL_METHOD_MAX; i++) {
                check_inteq(control_methods[i].id, i);
        }
        /* Every method has its handler in llmd and its row found by name; every method but
         * GetInfo is reachable from a verb (GetInfo is `version`). */
        for (size_t i = 0; i < _CONTROL_METHOD_MAX; i++) {
                const ControlMethod *m = &control_methods[i];
                bool used = false;

                check(manager_control_handlers[m->id] != NULL);
                check(control_method_find(m->name) == m);
                for (size_t j = 0; j < _VERB_MAX; j++) {
                        used = used || verbs[j].method == (int) m->id;
                }
                if (!used) {
                        fprintf(stderr, "no llmctl verb calls %s\n", m->name);
                        abort();
                }
        }
        check(control_method_find("io.llmd.Manager.Nope") == NULL);
}

TEST(help)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        llmctl_help(f);
        fclose(f);
        /* Generated from the table: every verb and its help appear. */
        for (size_t i = 0; i < _VERB_MAX; i++) {
                check(strstr(buf, verbs[i].help));
                check(strstr(buf, verbs[i].name));
        }
        free(buf);
}

TEST_MAIN()
