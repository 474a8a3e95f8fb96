/* SPDX-License-Identifier: MIT */
/*
 * The rows of the tables the documentation is checked against, as test_man.py and
 * test_completion.py read them: one row a line, the table's name first, the fields separated
 * by tabs, an empty field for NULL. It links the same libraries as llmd, so the tests read the
 * tables the programs use rather than their C source.
 */
#include <ctype.h>
#include <stdio.h>

#include "config.h"
#include "control-protocol.h"
#include "llmctl-args.h"

static void row(const char *table, const char *const *fields, size_t n)
{
        fputs(table, stdout);
        for (size_t i = 0; i < n; i++) {
                const char *f = fields[i] ? fields[i] : "";

                /* A tab or a newline in a field would shift the columns. */
                if (strpbrk(f, "\t\n")) {
                        fprintf(stderr, "%s: a tab or a newline in '%s'\n", table, f);
                        exit(EXIT_FAILURE);
                }
                printf("\t%s", f);
        }
        putchar('\n');
}

#define ROW(table, ...)                                   \
        row(table, (const char *const[]) { __VA_ARGS__ }, \
            ELEMENTSOF(((const char *const[]) { __VA_ARGS__ })))

static const char *model_key_kind(ConfigKeyKind kind)
{
        switch (kind) {
        case CONFIG_KEY_FLAG:
                return "flag";
        case CONFIG_KEY_OWN:
                return "own";
        case CONFIG_KEY_PROFILE:
                return "profile";
        case CONFIG_KEY_REFUSED:
                return "refused";
        }
        abort();
}

int main(void)
{
        /* llmd-key KEY DEFAULT DOC */
        for (size_t i = 0; i < config_n_llmd_keys; i++) {
                const ConfigLlmdKey *k = &config_llmd_keys[i];

                ROW("llmd-key", k->key, k->default_value, k->doc);
        }
        /* model-key KEY KIND */
        for (size_t i = 0; i < config_n_model_keys; i++) {
                ROW("model-key", config_model_keys[i].key,
                    model_key_kind(config_model_keys[i].kind));
        }
        /* short-flag SHORT LONG */
        for (size_t i = 0; i < config_n_short_flags; i++) {
                ROW("short-flag", config_short_flags[i].short_name,
                    config_short_flags[i].long_name);
        }
        /* verb NAME USAGE METHOD */
        for (size_t i = 0; i < _VERB_MAX; i++) {
                const Verb *v = &verbs[i];

                ROW("verb", v->name, v->args,
                    v->method >= 0 ? control_methods[v->method].name : NULL);
        }
        /* option LONG ARGUMENT SHORT: llmctl's, as getopt_long() takes them */
        for (const struct option *o = llmctl_options; o->name; o++) {
                char letter[2] = {};

                if (o->val < 0x80 && isalnum(o->val)) {
                        letter[0] = (char) o->val;
                }
                ROW("option", o->name,
                    o->has_arg == no_argument         ? "no"
                    : o->has_arg == required_argument ? "required"
                                                      : "optional",
                    letter);
        }
        /* method NAME: llmd's control methods */
        for (size_t i = 0; i < _CONTROL_METHOD_MAX; i++) {
                ROW("method", control_methods[i].name);
        }
        return fflush(stdout) == 0 ? 0 : 1;
}
