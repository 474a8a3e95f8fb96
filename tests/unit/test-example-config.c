/* SPDX-License-Identifier: MIT */
/* The shipped etc/llama-generate.conf parses and says what it promises. */
#include "config.h"
#include "strv.h"
#include "tests.h"

static const char *path;

/* The value following a flag in a profile's llama-server arguments. */
static const char *flag(const ModelConfig *m, const char *name)
{
        for (char **a = m->args; a && *a; a++) {
                if (streq(*a, name)) {
                        return a[1] && a[1][0] != '-' ? a[1] : "";
                }
        }
        return NULL;
}

TEST(example)
{
        _cleanup_(config_freep) Config *c = NULL;
        static const struct {
                const char *name, *temp, *top_p;
        } sampling[] = {
                { "qwen", "0.6", "0.95" },     { "gemma", "0.0", "1.0" },
                { "devstral", "0.0", "1.0" },  { "codestral", "0.2", "1.0" },
                { "deepseek", "0.6", "0.95" },
        };
        int r = config_load(path, &c);

        STRV_FOREACH(e, c ? c->errors : NULL) {
                fprintf(stderr, "%s\n", *e);
        }
        check_inteq(r, 0);
        check_inteq(c->n_models, 6);
        check_streq(c->default_model, "qwen");
        for (size_t i = 0; i < ELEMENTSOF(sampling); i++) {
                const ModelConfig *m = config_find_model(c, sampling[i].name);

                check(m);
                check(!m->pin);
                check_streq(flag(m, "--temp"), sampling[i].temp);
                check_streq(flag(m, "--top-p"), sampling[i].top_p);
                check_streq(flag(m, "--n-gpu-layers"), "99");
                check_streq(flag(m, "--flash-attn"), "on");
        }
        const ModelConfig *q = config_find_model(c, "Qwen3.5-35B-A3B");
        check(q && streq(q->name, "qwen"));
        check_streq(flag(q, "--reasoning-format"), "deepseek");
        check_streq(flag(q, "--ctx-size"), "131072");

        const ModelConfig *n = config_find_model(c, "nomic-embed-text");
        check(n && n->pin && n->embeddings && n->port == 8084);
        check_streq(flag(n, "--pooling"), "mean");
}

int main(int argc, char *argv[])
{
        check(argc == 2);
        path = argv[1];
        return tests_run();
}
