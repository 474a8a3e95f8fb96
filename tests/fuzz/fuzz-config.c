/* SPDX-License-Identifier: MIT */
/* llama-generate.conf is written by people: every file gets a config or errors, never a crash. */
#include <string.h>

#include "config.h"
#include "strv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *text = strndup((const char *) data, size);
        Config *c = NULL;
        int r;

        if (!text) {
                return 0;
        }
        r = config_load_string("fuzz.conf", text, &c);
        if (r == 0) {
                FOREACH_MODEL(m, c) {
                        char **argv = NULL;
                        if (config_model_argv(m, "/bin/true", "/run/x.sock", NULL, &argv) == 0) {
                                strv_free(argv);
                        }
                }
        } else if (r == -EINVAL && (!c || strv_length(c->errors) == 0)) {
                __builtin_trap(); /* refused without saying why */
        }
        config_free(c);
        return 0;
}
