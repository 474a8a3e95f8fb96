/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim-args.h"

enum args_kind {
        ARGS_SWITCH,
        ARGS_INT,    /* std::stoi in llama.cpp */
        ARGS_FLOAT,  /* std::stof */
        ARGS_STRING, /* taken as it is */
};

/* What the simulator itself does with an option; most are accepted and ignored. */
enum args_id {
        ARG_IGNORED,
        ARG_ALIAS,
        ARG_API_KEY,
        ARG_CTX_SIZE,
        ARG_EMBEDDING,
        ARG_HELP,
        ARG_HOST,
        ARG_LOG_DISABLE,
        ARG_METRICS,
        ARG_MODEL,
        ARG_N_PREDICT,
        ARG_PARALLEL,
        ARG_POOLING,
        ARG_PORT,
        ARG_PROPS,
        ARG_REASONING_BUDGET,
        ARG_REASONING_FORMAT,
        ARG_RERANKING,
        ARG_SLOTS,
        ARG_SLOT_SAVE_PATH,
        ARG_UI,
        ARG_VERBOSE,
        ARG_VERBOSITY,
        ARG_VERSION,
};

struct args_option {
        /* llama.cpp's spellings in llama.cpp's order (short ones first, negations last); the
         * table is sorted by the first spelling that starts with "--". */
        const char *names[5];
        const char *value; /* the value's placeholder; NULL for an option without a value */
        enum args_kind kind;
        enum args_id id;
};

/* Checked against llama.cpp's common/arg.cpp and tools/server/README.md; add a row per flag. */
/* clang-format off */
static const struct args_option args_table[] = {
        { { "-a", "--alias" }, "STRING", ARGS_STRING, ARG_ALIAS },
        { { "--api-key" }, "KEY", ARGS_STRING, ARG_API_KEY },
        { { "--api-key-file" }, "FNAME", ARGS_STRING, ARG_IGNORED },
        { { "--api-prefix" }, "PREFIX", ARGS_STRING, ARG_IGNORED },
        { { "-b", "--batch-size" }, "N", ARGS_INT, ARG_IGNORED },
        { { "--cache-prompt", "--no-cache-prompt" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "-cram", "--cache-ram" }, "N", ARGS_INT, ARG_IGNORED },
        { { "--cache-reuse" }, "N", ARGS_INT, ARG_IGNORED },
        { { "-ctk", "--cache-type-k" }, "TYPE", ARGS_STRING, ARG_IGNORED },
        { { "-ctv", "--cache-type-v" }, "TYPE", ARGS_STRING, ARG_IGNORED },
        { { "--chat-template" }, "JINJA_TEMPLATE", ARGS_STRING, ARG_IGNORED },
        { { "--chat-template-file" }, "JINJA_TEMPLATE_FILE", ARGS_STRING, ARG_IGNORED },
        { { "--chat-template-kwargs" }, "STRING", ARGS_STRING, ARG_IGNORED },
        { { "-cb", "--cont-batching", "-nocb", "--no-cont-batching" }, NULL, ARGS_SWITCH,
          ARG_IGNORED },
        { { "--context-shift", "--no-context-shift" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "-cmoe", "--cpu-moe" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "-c", "--ctx-size" }, "N", ARGS_INT, ARG_CTX_SIZE },
        { { "-dev", "--device" }, "<dev1,dev2,..>", ARGS_STRING, ARG_IGNORED },
        { { "--embedding", "--embeddings" }, NULL, ARGS_SWITCH, ARG_EMBEDDING },
        { { "-fit", "--fit" }, "[on|off]", ARGS_STRING, ARG_IGNORED },
        { { "-fa", "--flash-attn" }, "[on|off|auto]", ARGS_STRING, ARG_IGNORED },
        { { "--frequency-penalty" }, "N", ARGS_FLOAT, ARG_IGNORED },
        { { "-ngl", "--gpu-layers", "--n-gpu-layers" }, "N", ARGS_STRING, ARG_IGNORED },
        { { "-h", "--help", "--usage" }, NULL, ARGS_SWITCH, ARG_HELP },
        { { "--host" }, "HOST", ARGS_STRING, ARG_HOST },
        { { "--jinja", "--no-jinja" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "--keep" }, "N", ARGS_INT, ARG_IGNORED },
        { { "-kvo", "--kv-offload", "-nkvo", "--no-kv-offload" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "-kvu", "--kv-unified", "-no-kvu", "--no-kv-unified" }, NULL, ARGS_SWITCH,
          ARG_IGNORED },
        { { "--log-colors" }, "[on|off|auto]", ARGS_STRING, ARG_IGNORED },
        { { "--log-disable" }, NULL, ARGS_SWITCH, ARG_LOG_DISABLE },
        { { "--log-file" }, "FNAME", ARGS_STRING, ARG_IGNORED },
        { { "--log-prefix", "--no-log-prefix" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "--log-timestamps", "--no-log-timestamps" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "--lora" }, "FNAME", ARGS_STRING, ARG_IGNORED },
        { { "-mg", "--main-gpu" }, "INDEX", ARGS_INT, ARG_IGNORED },
        { { "--metrics" }, NULL, ARGS_SWITCH, ARG_METRICS },
        { { "--min-p" }, "N", ARGS_FLOAT, ARG_IGNORED },
        { { "--mlock" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "--mmap", "--no-mmap" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "-mm", "--mmproj" }, "FILE", ARGS_STRING, ARG_IGNORED },
        { { "--mmproj-auto", "--no-mmproj", "--no-mmproj-auto" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "-m", "--model" }, "FNAME", ARGS_STRING, ARG_MODEL },
        { { "-ncmoe", "--n-cpu-moe" }, "N", ARGS_INT, ARG_IGNORED },
        { { "--numa" }, "TYPE", ARGS_STRING, ARG_IGNORED },
        { { "-ot", "--override-tensor" }, "<tensor name pattern>=<buffer type>,...", ARGS_STRING,
          ARG_IGNORED },
        { { "-np", "--parallel" }, "N", ARGS_INT, ARG_PARALLEL },
        { { "--path" }, "PATH", ARGS_STRING, ARG_IGNORED },
        { { "--perf", "--no-perf" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "--pooling" }, "{none,mean,cls,last,rank}", ARGS_STRING, ARG_POOLING },
        { { "--port" }, "PORT", ARGS_INT, ARG_PORT },
        { { "-n", "--predict", "--n-predict" }, "N", ARGS_INT, ARG_N_PREDICT },
        { { "--presence-penalty" }, "N", ARGS_FLOAT, ARG_IGNORED },
        { { "--props" }, NULL, ARGS_SWITCH, ARG_PROPS },
        { { "-rea", "--reasoning" }, "[on|off|auto]", ARGS_STRING, ARG_IGNORED },
        { { "--reasoning-budget" }, "N", ARGS_INT, ARG_REASONING_BUDGET },
        { { "--reasoning-format" }, "FORMAT", ARGS_STRING, ARG_REASONING_FORMAT },
        { { "--repeat-last-n" }, "N", ARGS_INT, ARG_IGNORED },
        { { "--repeat-penalty" }, "N", ARGS_FLOAT, ARG_IGNORED },
        { { "--rerank", "--reranking" }, NULL, ARGS_SWITCH, ARG_RERANKING },
        { { "--reuse-port" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "--rope-freq-base" }, "N", ARGS_FLOAT, ARG_IGNORED },
        { { "--rope-freq-scale" }, "N", ARGS_FLOAT, ARG_IGNORED },
        { { "--rope-scale" }, "N", ARGS_FLOAT, ARG_IGNORED },
        { { "--rope-scaling" }, "{none,linear,yarn}", ARGS_STRING, ARG_IGNORED },
        { { "-s", "--seed" }, "SEED", ARGS_STRING, ARG_IGNORED },
        { { "--sleep-idle-seconds" }, "SECONDS", ARGS_INT, ARG_IGNORED },
        { { "--slot-save-path" }, "PATH", ARGS_STRING, ARG_SLOT_SAVE_PATH },
        { { "--slots", "--no-slots" }, NULL, ARGS_SWITCH, ARG_SLOTS },
        { { "--spec-draft-model", "-md", "--model-draft" }, "FNAME", ARGS_STRING, ARG_IGNORED },
        { { "--spec-draft-n-max" }, "N", ARGS_INT, ARG_IGNORED },
        { { "--spec-draft-n-min" }, "N", ARGS_INT, ARG_IGNORED },
        { { "--spec-draft-ngl", "-ngld", "--gpu-layers-draft", "--n-gpu-layers-draft" }, "N",
          ARGS_STRING, ARG_IGNORED },
        { { "--spec-draft-p-min", "--draft-p-min" }, "P", ARGS_FLOAT, ARG_IGNORED },
        { { "--spec-type" }, "TYPES", ARGS_STRING, ARG_IGNORED },
        { { "-sp", "--special" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "-sm", "--split-mode" }, "{none,layer,row,tensor}", ARGS_STRING, ARG_IGNORED },
        { { "--swa-full" }, NULL, ARGS_SWITCH, ARG_IGNORED },
        { { "--temp", "--temperature" }, "N", ARGS_FLOAT, ARG_IGNORED },
        { { "-ts", "--tensor-split" }, "N0,N1,N2,...", ARGS_STRING, ARG_IGNORED },
        { { "-t", "--threads" }, "N", ARGS_INT, ARG_IGNORED },
        { { "-tb", "--threads-batch" }, "N", ARGS_INT, ARG_IGNORED },
        { { "--threads-http" }, "N", ARGS_INT, ARG_IGNORED },
        { { "-to", "--timeout" }, "N", ARGS_INT, ARG_IGNORED },
        { { "--top-k" }, "N", ARGS_INT, ARG_IGNORED },
        { { "--top-p" }, "N", ARGS_FLOAT, ARG_IGNORED },
        { { "-ub", "--ubatch-size" }, "N", ARGS_INT, ARG_IGNORED },
        { { "--ui", "--webui", "--no-ui", "--no-webui" }, NULL, ARGS_SWITCH, ARG_UI },
        { { "-v", "--verbose", "--log-verbose" }, NULL, ARGS_SWITCH, ARG_VERBOSE },
        { { "-lv", "--verbosity", "--log-verbosity" }, "N", ARGS_INT, ARG_VERBOSITY },
        { { "--version" }, NULL, ARGS_SWITCH, ARG_VERSION },
        { { "--warmup", "--no-warmup" }, NULL, ARGS_SWITCH, ARG_IGNORED },
};
/* clang-format on */

static const char *args_sort_key(const struct args_option *o)
{
        for (size_t i = 0; i < ELEMENTSOF(o->names) && o->names[i]; i++) {
                if (strncmp(o->names[i], "--", 2) == 0) {
                        return o->names[i];
                }
        }
        return o->names[0];
}

void args_check_table(void)
{
        for (size_t i = 0; i < ELEMENTSOF(args_table); i++) {
                const struct args_option *o = &args_table[i];

                if (i > 0 && strcmp(args_sort_key(&args_table[i - 1]), args_sort_key(o)) >= 0) {
                        fprintf(stderr, "llama-sim: option table not sorted at %s\n",
                                args_sort_key(o));
                        abort();
                }
                for (size_t j = 0; j < ELEMENTSOF(o->names) && o->names[j]; j++) {
                        for (size_t k = i; k < ELEMENTSOF(args_table); k++) {
                                const struct args_option *p = &args_table[k];

                                for (size_t l = k == i ? j + 1 : 0;
                                     l < ELEMENTSOF(p->names) && p->names[l]; l++) {
                                        if (streq(o->names[j], p->names[l])) {
                                                fprintf(stderr,
                                                        "llama-sim: option %s appears twice\n",
                                                        o->names[j]);
                                                abort();
                                        }
                                }
                        }
                }
        }
}

static const struct args_option *args_find(const char *arg)
{
        for (size_t i = 0; i < ELEMENTSOF(args_table); i++) {
                const struct args_option *o = &args_table[i];

                for (size_t j = 0; j < ELEMENTSOF(o->names) && o->names[j]; j++) {
                        if (streq(o->names[j], arg)) {
                                return o;
                        }
                }
        }
        return NULL;
}

/* The option's first usage line, laid out like common_arg::to_string(). */
static void args_usage_line(const struct args_option *o, char *buf, size_t size)
{
        size_t n = 0;
        int count = 0;

        while (count < (int) ELEMENTSOF(o->names) && o->names[count]) {
                count++;
        }
        buf[0] = '\0';
        for (int i = 0; i < count && n < size; i++) {
                if (i == 0 && count > 1) {
                        /* the first spelling is usually the short one: padded to 7 columns */
                        n += (size_t) snprintf(buf + n, size - n, "%s,%*s", o->names[i],
                                               (int) (strlen(o->names[i]) + 2 < 7
                                                              ? 7 - strlen(o->names[i]) - 1
                                                              : 1),
                                               "");
                } else {
                        n += (size_t) snprintf(buf + n, size - n, "%s%s", o->names[i],
                                               i < count - 1 ? ", " : "");
                }
        }
        if (o->value && n < size) {
                snprintf(buf + n, size - n, " %s", o->value);
        }
}

static void args_print_help(void)
{
        char line[256];

        printf("----- llama-sim: llama-server options it accepts -----\n\n");
        for (size_t i = 0; i < ELEMENTSOF(args_table); i++) {
                args_usage_line(&args_table[i], line, sizeof(line));
                printf("%s\n", line);
        }
}

/* Mirrors common_params_parse(): the exception text, then "usage:" and the option's line. */
static int args_fail(const struct args_option *o, const char *arg, const char *what)
{
        char line[256];

        args_usage_line(o, line, sizeof(line));
        fprintf(stderr,
                "error while handling argument \"%s\": %s\n\nusage:\n%s\n\n\n"
                "to show complete usage, run with -h\n",
                arg, what, line);
        return -EINVAL;
}

/* std::stoi: optional blanks and sign, at least one digit, the rest ignored. */
static int args_stoi(const char *s, int *ret)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (end == s) {
                return -EINVAL;
        }
        if (errno == ERANGE || v < INT_MIN || v > INT_MAX) {
                return -ERANGE;
        }
        *ret = (int) v;
        return 0;
}

static int args_stof(const char *s)
{
        char *end;

        (void) strtof(s, &end);
        return end == s ? -EINVAL : 0;
}

int args_parse(int argc, char **argv, struct sim_config *cfg)
{
        char arg[256];

        for (int i = 1; i < argc; i++) {
                const struct args_option *o;
                const char *val;
                int num = 0;

                snprintf(arg, sizeof(arg), "%s", argv[i]);
                if (strncmp(arg, "--", 2) == 0) {
                        for (char *p = arg; *p; p++) {
                                if (*p == '_') {
                                        *p = '-';
                                }
                        }
                }

                o = args_find(arg);
                if (!o) {
                        fprintf(stderr, "error: invalid argument: %s\n", arg);
                        return -EINVAL;
                }

                val = NULL;
                if (o->kind != ARGS_SWITCH) {
                        if (i + 1 >= argc) {
                                return args_fail(o, arg, "expected value for argument");
                        }
                        val = argv[++i];
                }

                switch (o->kind) {
                case ARGS_SWITCH:
                case ARGS_STRING:
                        break;
                case ARGS_INT:
                        /* libstdc++'s exceptions say just the function's name */
                        if (args_stoi(val, &num) < 0) {
                                return args_fail(o, arg, "stoi");
                        }
                        break;
                case ARGS_FLOAT:
                        if (args_stof(val) < 0) {
                                return args_fail(o, arg, "stof");
                        }
                        break;
                }

                switch (o->id) {
                case ARG_IGNORED:
                        break;
                case ARG_ALIAS:
                        /* a comma-separated list; the first name is the model's id */
                        if (!cfg->alias) {
                                cfg->alias = strndup(val, strcspn(val, ","));
                        }
                        break;
                case ARG_API_KEY:
                        cfg->api_key = val;
                        break;
                case ARG_CTX_SIZE:
                        cfg->ctx_size = num;
                        break;
                case ARG_EMBEDDING:
                        cfg->embedding = true;
                        break;
                case ARG_HELP:
                        args_print_help();
                        return 1;
                case ARG_HOST:
                        cfg->host = val;
                        break;
                case ARG_LOG_DISABLE:
                        cfg->log_disable = true;
                        break;
                case ARG_METRICS:
                        cfg->endpoint_metrics = true;
                        break;
                case ARG_MODEL:
                        cfg->model = val;
                        break;
                case ARG_N_PREDICT:
                        cfg->n_predict = num;
                        break;
                case ARG_PARALLEL:
                        cfg->n_parallel = num;
                        break;
                case ARG_POOLING:
                        if (!streq(val, "none") && !streq(val, "mean") && !streq(val, "cls") &&
                            !streq(val, "last") && !streq(val, "rank")) {
                                return args_fail(o, arg, "invalid value");
                        }
                        cfg->pooling = val;
                        break;
                case ARG_PORT:
                        cfg->port = num;
                        break;
                case ARG_PROPS:
                        cfg->endpoint_props = true;
                        break;
                case ARG_REASONING_BUDGET:
                        cfg->reasoning_budget = num;
                        break;
                case ARG_REASONING_FORMAT:
                        cfg->reasoning_format = val;
                        break;
                case ARG_RERANKING:
                        /* as common/arg.cpp: an embedding server with rank pooling */
                        cfg->embedding = true;
                        cfg->pooling = "rank";
                        break;
                case ARG_SLOTS:
                        cfg->endpoint_slots = strncmp(arg, "--no-", 5) != 0;
                        break;
                case ARG_SLOT_SAVE_PATH:
                        cfg->slot_save_path = val;
                        break;
                case ARG_UI:
                        cfg->ui = strncmp(arg, "--no-", 5) != 0;
                        break;
                case ARG_VERBOSE:
                        cfg->verbosity = INT_MAX;
                        break;
                case ARG_VERBOSITY:
                        cfg->verbosity = num;
                        break;
                case ARG_VERSION:
                        fprintf(stderr, "version: %d (%s)\nbuilt with llama-sim for linux\n",
                                SIM_BUILD_NUMBER, SIM_BUILD_COMMIT);
                        return 1;
                }
        }
        return 0;
}
