/* SPDX-License-Identifier: MIT */
/*
 * The file is read in two passes. inih collects every "key = value" with its line number into
 * raw sections (inih's handler gets no line numbers on Debian, so our own reader counts them);
 * then each section is checked and turned into a profile, with [*] merged under it. Doing it in
 * two passes lets [*] appear anywhere and lets one run report every error in the file, each as
 * "FILE:LINE: ...".
 */
#include <ctype.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>

#include "array.h"
#include "config.h"
#include "fileio.h"
#include "gpu.h"
#include "parse-util.h"
#include "strv.h"

#define CONFIG_MAX_LINE 4096
#define CONFIG_FILE_MAX (4 * 1024 * 1024) /* a thousand models take 200 KiB */
#define CONFIG_MAX_ERRORS 64

#define DEFAULT_LOAD_TIMEOUT (600 * USEC_PER_SEC)
#define DEFAULT_STOP_TIMEOUT (10 * USEC_PER_SEC)
#define DEFAULT_HEALTH_INTERVAL (5 * USEC_PER_SEC)
#define DEFAULT_RESTART (1 * USEC_PER_SEC)
#define DEFAULT_START_LIMIT_BURST 5
#define DEFAULT_START_LIMIT_INTERVAL (300 * USEC_PER_SEC)
/* Generous: a long prompt can keep llama-server silent for minutes before the first token. */
#define DEFAULT_UPSTREAM_TIMEOUT (600 * USEC_PER_SEC)
#define DEFAULT_PROMPT_CACHE_MIN_TOKENS 1024
/* A 7B model's 30,000-token cache is a few GB: a second or two on a local disk. */
#define DEFAULT_PROMPT_CACHE_SAVE_TIMEOUT (5 * USEC_PER_SEC)
/* [llmd]'s defaults are in its table, config_llmd_keys[]. */

struct RawEntry {
        char *key;
        char *value;
        unsigned line;
};

typedef struct RawSection {
        char *name;
        unsigned line; /* of the header */
        RawEntry *entries;
        size_t n_entries;
} RawSection;

typedef struct Parser {
        Config *config;
        RawSection *sections;
        size_t n_sections;
        /* input */
        const char *text;
        unsigned line;
        unsigned header_line; /* of the last "[section]" line read */
        bool line_too_long;
} Parser;

static const char *const routing_table[_ROUTING_MAX] = {
        [ROUTING_ACTIVE] = "active",
        [ROUTING_SWITCH] = "switch",
        [ROUTING_REJECT] = "reject",
};

const char *routing_to_string(Routing r)
{
        return r >= 0 && r < _ROUTING_MAX ? routing_table[r] : NULL;
}

Routing routing_from_string(const char *s)
{
        for (Routing r = 0; r < _ROUTING_MAX; r++) {
                if (streq(routing_table[r], s)) {
                        return r;
                }
        }
        return _ROUTING_MAX;
}

_printf_(3, 4) static void config_error(Config *c, unsigned line, const char *format, ...)
{
        _cleanup_free_ char *msg = NULL;
        char *e;
        va_list ap;

        if (strv_length(c->errors) >= CONFIG_MAX_ERRORS) {
                return;
        }
        va_start(ap, format);
        if (vasprintf(&msg, format, ap) < 0) {
                msg = NULL;
        }
        va_end(ap);
        if (!msg) {
                return;
        }
        if (line > 0) {
                if (asprintf(&e, "%s:%u: %s", c->path, line, msg) < 0) {
                        return;
                }
        } else if (asprintf(&e, "%s: %s", c->path, msg) < 0) {
                return;
        }
        /* A [*] line merged into every profile would otherwise be reported once per profile. */
        if (strv_contains(c->errors, e)) {
                free(e);
                return;
        }
        (void) strv_consume(&c->errors, e);
}

/* ---- pass 1: inih into raw sections ---- */

static char *parser_read_line(char *str, int num, void *stream)
{
        Parser *p = stream;
        size_t n = 0;
        bool more = false;

        /* Hand inih whole lines only, so its line count and ours agree. A longer line than we
         * accept is consumed whole and reported; inih sees an empty line in its place. */
        if (*p->text) {
                const char *nl = strchr(p->text, '\n');
                size_t len = nl ? (size_t) (nl - p->text) : strlen(p->text);

                more = true;
                if (len + 1 < (size_t) num) {
                        memcpy(str, p->text, len);
                        n = len;
                } else {
                        p->line_too_long = true;
                }
                p->text += len + (nl ? 1 : 0);
        }
        if (!more) {
                return NULL;
        }
        p->line++;
        /* inih does not tell the handler where a section begins: two sections of the same
         * name in a row would merge. The reader sees the header lines, so it notes them. */
        size_t ws = strspn(str, " \t");
        if (ws < n && str[ws] == '[') {
                p->header_line = p->line;
        }
        if (p->line_too_long) {
                config_error(p->config, p->line, "line longer than %d characters",
                             CONFIG_MAX_LINE - 1);
                p->line_too_long = false;
                n = 0;
        }
        str[n++] = '\n';
        str[n] = '\0';
        return str;
}

static int parser_handler(void *userdata, const char *section, const char *key, const char *value)
{
        Parser *p = userdata;
        RawSection *s = p->n_sections > 0 ? &p->sections[p->n_sections - 1] : NULL;
        RawEntry *e;

        if (!s || !streq(s->name, section) || s->line != p->header_line) {
                s = ARRAY_GROW(p->sections, p->n_sections);
                if (!s) {
                        return 0;
                }
                *s = (RawSection) { .name = strdup(section), .line = p->header_line };
                if (!s->name) {
                        return 0;
                }
                p->n_sections++;
        }
        e = ARRAY_GROW(s->entries, s->n_entries);
        if (!e) {
                return 0;
        }
        *e = (RawEntry) { .key = strdup(key), .value = strdup(value), .line = p->line };
        if (!e->key || !e->value) {
                free(e->key);
                free(e->value);
                return 0;
        }
        s->n_entries++;
        return 1;
}

static void parser_done(Parser *p)
{
        for (size_t i = 0; i < p->n_sections; i++) {
                for (size_t j = 0; j < p->sections[i].n_entries; j++) {
                        free(p->sections[i].entries[j].key);
                        free(p->sections[i].entries[j].value);
                }
                free(p->sections[i].entries);
                free(p->sections[i].name);
        }
        free(p->sections);
}

/* ---- pass 2: keys ---- */

/* The keys of a model section that are not llama-server flags to pass on, sorted. */
/* clang-format off */
const ConfigModelKey config_model_keys[] = {
        { "aliases", CONFIG_KEY_PROFILE, NULL },
        { "api-key", CONFIG_KEY_REFUSED,
          "children are reached only through llmd, which checks API keys" },
        { "api-key-file", CONFIG_KEY_REFUSED,
          "children are reached only through llmd, which checks API keys" },
        { "bench-max-tokens-factor", CONFIG_KEY_OWN, NULL },
        { "bench-temperature", CONFIG_KEY_OWN, NULL },
        { "bench-top-p", CONFIG_KEY_OWN, NULL },
        { "docker-repo", CONFIG_KEY_REFUSED,
          "llmd serves local model files only; use 'model = PATH'" },
        { "env", CONFIG_KEY_OWN, NULL },
        { "gpu-memory", CONFIG_KEY_OWN, NULL },
        { "gpus", CONFIG_KEY_OWN, NULL },
        { "health-check", CONFIG_KEY_OWN, NULL },
        { "health-interval", CONFIG_KEY_OWN, NULL },
        { "hf-file", CONFIG_KEY_REFUSED,
          "llmd serves local model files only; use 'model = PATH'" },
        { "hf-repo", CONFIG_KEY_REFUSED,
          "llmd serves local model files only; use 'model = PATH'" },
        { "hf-token", CONFIG_KEY_REFUSED,
          "llmd serves local model files only; use 'model = PATH'" },
        { "host", CONFIG_KEY_REFUSED,
          "llmd gives each child its own unix socket; use 'port' to expose a model" },
        { "load-on-startup", CONFIG_KEY_OWN, NULL },
        { "load-timeout", CONFIG_KEY_OWN, NULL },
        { "log-file", CONFIG_KEY_REFUSED,
          "llmd sends each child's output to the journal" },
        { "max-child-errors", CONFIG_KEY_OWN, NULL },
        { "model", CONFIG_KEY_PROFILE, NULL },
        { "model-url", CONFIG_KEY_REFUSED,
          "llmd serves local model files only; use 'model = PATH'" },
        { "models-autoload", CONFIG_KEY_REFUSED,
          "llama-server's router mode: llmd is the router" },
        { "models-dir", CONFIG_KEY_REFUSED,
          "llama-server's router mode: llmd is the router" },
        { "models-max", CONFIG_KEY_REFUSED,
          "llama-server's router mode: llmd is the router" },
        { "models-preset", CONFIG_KEY_REFUSED,
          "llama-server's router mode: llmd is the router" },
        { "pin", CONFIG_KEY_PROFILE, NULL },
        { "port", CONFIG_KEY_PROFILE, NULL },
        { "prompt-cache", CONFIG_KEY_OWN, NULL },
        { "prompt-cache-min-tokens", CONFIG_KEY_OWN, NULL },
        { "prompt-cache-save-timeout", CONFIG_KEY_OWN, NULL },
        { "restart-sec", CONFIG_KEY_OWN, NULL },
        { "sleep-idle-seconds", CONFIG_KEY_REFUSED,
          "it unloads the model while /health still answers 200, so llmd could not tell what is loaded" },
        { "start-limit-burst", CONFIG_KEY_OWN, NULL },
        { "start-limit-interval", CONFIG_KEY_OWN, NULL },
        { "stop-timeout", CONFIG_KEY_OWN, NULL },
        { "unload-after", CONFIG_KEY_OWN, NULL },
        { "upstream-timeout", CONFIG_KEY_OWN, NULL },
};
/* clang-format on */
const size_t config_n_model_keys = ELEMENTSOF(config_model_keys);

/* clang-format off */
const ConfigShortFlag config_short_flags[] = {
        { "a", "alias" },          { "b", "batch-size" },    { "c", "ctx-size" },
        { "cb", "cont-batching" }, { "ctk", "cache-type-k" }, { "ctv", "cache-type-v" },
        { "dev", "device" },       { "e", "escape" },         { "fa", "flash-attn" },
        { "hf", "hf-repo" },       { "hff", "hf-file" },      { "lv", "verbosity" },
        { "m", "model" },          { "mg", "main-gpu" },      { "mu", "model-url" },
        { "n", "n-predict" },      { "ngl", "n-gpu-layers" }, { "np", "parallel" },
        { "ot", "override-tensor" }, { "s", "seed" },         { "sm", "split-mode" },
        { "t", "threads" },        { "tb", "threads-batch" }, { "ts", "tensor-split" },
        { "ub", "ubatch-size" },   { "v", "verbose" },
};
/* clang-format on */
const size_t config_n_short_flags = ELEMENTSOF(config_short_flags);

static int key_lookup(const char *key)
{
        for (size_t i = 0; i < config_n_model_keys; i++) {
                if (streq(config_model_keys[i].key, key)) {
                        return (int) i;
                }
        }
        return -1;
}

static bool key_is_flag_name(const char *key)
{
        if (!islower((unsigned char) key[0]) && !isdigit((unsigned char) key[0])) {
                return false;
        }
        for (const char *k = key; *k; k++) {
                if (!islower((unsigned char) *k) && !isdigit((unsigned char) *k) && *k != '-') {
                        return false;
                }
        }
        return true;
}

/* Checks a key in a model section or in [*]. Returns its kind, or -EINVAL after reporting. */
static int config_check_key(Config *c, const char *section, const RawEntry *e)
{
        const char *key = e->key;
        int i;

        if (strneq(key, "LLAMA_ARG_", 10)) {
                _cleanup_free_ char *l = strdup(key + 10);

                for (char *k = l; k && *k; k++) {
                        *k = *k == '_' ? '-' : (char) tolower((unsigned char) *k);
                }
                config_error(c, e->line,
                             "[%s] %s: environment names are not keys; write '%s = ...'", section,
                             key, l ? l : "");
                return -EINVAL;
        }
        if (key[0] == '-') {
                config_error(c, e->line, "[%s] %s: write the flag without dashes: '%s = ...'",
                             section, key, key + strspn(key, "-"));
                return -EINVAL;
        }
        for (size_t j = 0; j < config_n_short_flags; j++) {
                if (streq(config_short_flags[j].short_name, key)) {
                        config_error(c, e->line,
                                     "[%s] %s: short flag names are not accepted; use '%s'",
                                     section, key, config_short_flags[j].long_name);
                        return -EINVAL;
                }
        }
        i = key_lookup(key);
        if (i >= 0) {
                if (config_model_keys[i].kind == CONFIG_KEY_REFUSED) {
                        config_error(c, e->line, "[%s] %s: refused: %s", section, key,
                                     config_model_keys[i].reason);
                        return -EINVAL;
                }
                if (config_model_keys[i].kind == CONFIG_KEY_PROFILE && streq(section, "*")) {
                        config_error(c, e->line, "[*] %s: belongs in a model's own section", key);
                        return -EINVAL;
                }
                return config_model_keys[i].kind;
        }
        if (!key_is_flag_name(key)) {
                config_error(c, e->line,
                             "[%s] %s: not a llama-server flag name (lower case, digits, '-')",
                             section, key);
                return -EINVAL;
        }
        if (strlen(key) < 3) {
                config_error(c, e->line,
                             "[%s] %s: short flag names are not accepted; use the long name",
                             section, key);
                return -EINVAL;
        }
        return CONFIG_KEY_FLAG;
}

static bool model_name_valid(const char *s)
{
        if (isempty(s) || strlen(s) > 64 || s[0] == '.' || s[0] == '-') {
                return false;
        }
        for (; *s; s++) {
                if (!isalnum((unsigned char) *s) && !strchr("._-", *s)) {
                        return false;
                }
        }
        return true;
}

static bool env_item_valid(const char *s)
{
        const char *eq = strchr(s, '=');

        if (!eq || eq == s || !(isalpha((unsigned char) s[0]) || s[0] == '_')) {
                return false;
        }
        for (const char *k = s; k < eq; k++) {
                if (!isalnum((unsigned char) *k) && *k != '_') {
                        return false;
                }
        }
        return true;
}

static int config_duration(Config *c, const char *section, const RawEntry *e, uint64_t min,
                           uint64_t *ret)
{
        uint64_t u;

        if (parse_duration(e->value, &u) < 0) {
                config_error(c, e->line,
                             "[%s] %s: '%s' is not a duration (e.g. 600, 1.5s, 250ms, 10min)",
                             section, e->key, e->value);
                return -EINVAL;
        }
        if (u < min) {
                char buf[32];

                config_error(c, e->line, "[%s] %s: must be at least %s", section, e->key,
                             format_duration(buf, sizeof(buf), min));
                return -EINVAL;
        }
        *ret = u;
        return 0;
}

/* "auto" (0) or a size of at least 1M. */
/* "0,1,3" (the devices' numbers, below GPU_DEVICES_MAX, each once) into a mask. */
static int config_gpu_list(const char *value, uint64_t *ret)
{
        _cleanup_strv_free_ char **l = NULL;
        uint64_t mask = 0;

        if (strv_split(value, ", \t", &l) < 0) {
                return -ENOMEM;
        }
        if (!l[0]) {
                return -EINVAL;
        }
        STRV_FOREACH(d, l) {
                unsigned u;

                if (parse_unsigned(*d, GPU_DEVICES_MAX - 1, &u) < 0 ||
                    (mask & (UINT64_C(1) << u))) {
                        return -EINVAL;
                }
                mask |= UINT64_C(1) << u;
        }
        *ret = mask;
        return 0;
}

static int config_gpu_memory(Config *c, const char *section, const RawEntry *e, uint64_t *ret)
{
        uint64_t u;

        if (streq(e->value, "auto")) {
                *ret = 0;
                return 0;
        }
        if (parse_size(e->value, &u) < 0 || u < 1024 * 1024) {
                config_error(c, e->line,
                             "[%s] %s: '%s' is not auto or a size of at least 1M (e.g. 24G)",
                             section, e->key, e->value);
                return -EINVAL;
        }
        *ret = u;
        return 0;
}

static int config_bool(Config *c, const char *section, const RawEntry *e, bool *ret)
{
        int b = parse_boolean(e->value);

        if (b < 0) {
                config_error(c, e->line, "[%s] %s: '%s' is not true or false", section, e->key,
                             e->value);
                return -EINVAL;
        }
        *ret = b;
        return 0;
}

/* Applies one of llmd's own keys to a profile. */
static int config_apply_own(Config *c, ModelConfig *m, const char *section, const RawEntry *e)
{
        const char *k = e->key;
        int r;

        if (streq(k, "model")) {
                if (e->value[0] != '/') {
                        config_error(c, e->line, "[%s] model: '%s' is not an absolute path",
                                     section, e->value);
                        return -EINVAL;
                }
                free(m->model_path);
                m->model_path = strdup(e->value);
                return m->model_path ? 0 : -ENOMEM;
        }
        if (streq(k, "aliases")) {
                _cleanup_strv_free_ char **l = NULL;

                r = strv_split(e->value, ", \t", &l);
                if (r < 0) {
                        return r;
                }
                STRV_FOREACH(a, l) {
                        if (!alias_valid(*a)) {
                                config_error(
                                        c, e->line,
                                        "[%s] aliases: '%s' is not a valid alias (letters, digits and . _ - : / + @ =)",
                                        section, *a);
                                return -EINVAL;
                        }
                        if (strv_extend(&m->aliases, *a) < 0) {
                                return -ENOMEM;
                        }
                }
                return 0;
        }
        if (streq(k, "env")) {
                _cleanup_strv_free_ char **l = NULL;

                r = strv_split(e->value, " \t", &l);
                if (r < 0) {
                        return r;
                }
                STRV_FOREACH(a, l) {
                        if (!env_item_valid(*a)) {
                                config_error(c, e->line, "[%s] env: '%s' is not NAME=VALUE",
                                             section, *a);
                                return -EINVAL;
                        }
                        if (strv_extend(&m->env, *a) < 0) {
                                return -ENOMEM;
                        }
                }
                return 0;
        }
        if (streq(k, "pin")) {
                return config_bool(c, section, e, &m->pin);
        }
        if (streq(k, "load-on-startup")) {
                return config_bool(c, section, e, &m->load_on_startup);
        }
        if (streq(k, "port")) {
                if (parse_port(e->value, &m->port) < 0) {
                        config_error(c, e->line, "[%s] port: '%s' is not a port number (1-65535)",
                                     section, e->value);
                        return -EINVAL;
                }
                return 0;
        }
        if (streq(k, "load-timeout")) {
                return config_duration(c, section, e, USEC_PER_MSEC, &m->load_timeout_usec);
        }
        if (streq(k, "stop-timeout")) {
                return config_duration(c, section, e, USEC_PER_MSEC, &m->stop_timeout_usec);
        }
        if (streq(k, "upstream-timeout")) {
                return config_duration(c, section, e, USEC_PER_SEC, &m->upstream_timeout_usec);
        }
        if (streq(k, "unload-after")) {
                return config_duration(c, section, e, USEC_PER_SEC, &m->unload_after_usec);
        }
        if (streq(k, "gpu-memory")) {
                return config_gpu_memory(c, section, e, &m->gpu_memory);
        }
        if (streq(k, "gpus")) {
                m->gpus = 0;
                if (streq(e->value, "auto")) {
                        return 0;
                }
                r = config_gpu_list(e->value, &m->gpus);
                if (r == -EINVAL) {
                        config_error(
                                c, e->line,
                                "[%s] gpus: '%s' is not auto or a list of GPU numbers (e.g. 0,1), each once, below %d",
                                section, e->value, GPU_DEVICES_MAX);
                }
                return r;
        }
        if (streq(k, "prompt-cache")) {
                return config_bool(c, section, e, &m->prompt_cache);
        }
        if (streq(k, "bench-temperature") || streq(k, "bench-top-p") ||
            streq(k, "bench-max-tokens-factor")) {
                bool factor = streq(k, "bench-max-tokens-factor");
                double max = streq(k, "bench-temperature") ? 10 : factor ? 100 : 1;
                double *d = streq(k, "bench-temperature") ? &m->bench_temperature
                            : factor                      ? &m->bench_max_tokens_factor
                                                          : &m->bench_top_p;

                if (parse_double(e->value, factor ? 0.01 : 0, max, d) < 0) {
                        config_error(c, e->line, "[%s] %s: '%s' is not a number from %g to %g",
                                     section, k, e->value, factor ? 0.01 : 0, max);
                        return -EINVAL;
                }
                return 0;
        }
        if (streq(k, "prompt-cache-min-tokens")) {
                if (parse_unsigned(e->value, 100000000, &m->prompt_cache_min_tokens) < 0) {
                        config_error(c, e->line,
                                     "[%s] prompt-cache-min-tokens: '%s' is not a number of tokens",
                                     section, e->value);
                        return -EINVAL;
                }
                return 0;
        }
        if (streq(k, "health-check")) {
                if (!streq(e->value, "health") && !streq(e->value, "generate")) {
                        config_error(c, e->line,
                                     "[%s] health-check: '%s' is not health or generate", section,
                                     e->value);
                        return -EINVAL;
                }
                m->health_generate = streq(e->value, "generate");
                return 0;
        }
        if (streq(k, "max-child-errors")) {
                if (parse_unsigned(e->value, 1000000, &m->max_child_errors) < 0) {
                        config_error(
                                c, e->line,
                                "[%s] max-child-errors: '%s' is not a number from 0 to 1000000",
                                section, e->value);
                        return -EINVAL;
                }
                return 0;
        }
        if (streq(k, "prompt-cache-save-timeout")) {
                return config_duration(c, section, e, 0, &m->prompt_cache_save_timeout_usec);
        }
        if (streq(k, "health-interval")) {
                return config_duration(c, section, e, 10 * USEC_PER_MSEC, &m->health_interval_usec);
        }
        if (streq(k, "restart-sec")) {
                return config_duration(c, section, e, 0, &m->restart_usec);
        }
        if (streq(k, "start-limit-interval")) {
                return config_duration(c, section, e, 0, &m->start_limit_interval_usec);
        }
        if (streq(k, "start-limit-burst")) {
                if (parse_unsigned(e->value, 1000, &m->start_limit_burst) < 0 ||
                    m->start_limit_burst == 0) {
                        config_error(c, e->line,
                                     "[%s] start-limit-burst: '%s' is not a number from 1 to 1000",
                                     section, e->value);
                        return -EINVAL;
                }
                return 0;
        }
        /* The key table and this function must agree. */
        abort();
}

/* Turns "key = value" into llama-server flags: true → --key, false → --no-key (or --key for a
 * "no-" key), anything else → --key value. */
static int config_apply_flag(Config *c, ModelConfig *m, const char *section, const RawEntry *e)
{
        _cleanup_free_ char *flag = NULL;

        if (isempty(e->value)) {
                config_error(c, e->line, "[%s] %s: empty value (use true, false or a value)",
                             section, e->key);
                return -EINVAL;
        }
        if (streq(e->value, "false")) {
                if (strneq(e->key, "no-", 3)) {
                        flag = strjoin2("--", e->key + 3);
                } else {
                        flag = strjoin2("--no-", e->key);
                }
                return strv_consume(&m->args, TAKE_PTR(flag));
        }
        if (strv_consume(&m->args, strjoin2("--", e->key)) < 0) {
                return -ENOMEM;
        }
        if (streq(e->key, "embedding") || streq(e->key, "embeddings")) {
                m->embeddings = true;
        }
        if (streq(e->value, "true")) {
                return 0;
        }
        return strv_extend(&m->args, e->value);
}

/* A key set twice in one section is a mistake (the second would silently win). */
static bool section_has_duplicate(Config *c, const RawSection *s, size_t j)
{
        const RawEntry *e = &s->entries[j];

        if (streq(e->key, "aliases") || streq(e->key, "env")) {
                return false;
        }
        for (size_t i = 0; i < j; i++) {
                if (streq(s->entries[i].key, e->key)) {
                        config_error(c, e->line, "[%s] %s: already set on line %u", s->name, e->key,
                                     s->entries[i].line);
                        return true;
                }
        }
        return false;
}

/* A bad "model" value was reported already; anything else without one is reported here. */
static bool section_sets_exactly(const RawSection *s, const char *key)
{
        for (size_t i = 0; s && i < s->n_entries; i++) {
                if (streq(s->entries[i].key, key)) {
                        return true;
                }
        }
        return false;
}

/* "mmap" and "no-mmap" set the same thing. */
static const char *flag_base(const char *key)
{
        return strneq(key, "no-", 3) ? key + 3 : key;
}

static bool section_sets(const RawSection *s, const char *key)
{
        for (size_t i = 0; s && i < s->n_entries; i++) {
                if (streq(flag_base(s->entries[i].key), flag_base(key))) {
                        return true;
                }
        }
        return false;
}

ModelConfig *config_model_free(ModelConfig *m)
{
        if (!m) {
                return NULL;
        }
        free(m->name);
        strv_free(m->aliases);
        free(m->model_path);
        strv_free(m->env);
        strv_free(m->args);
        free(m);
        return NULL;
}

static int config_add_model(Config *c, const RawSection *s, const RawSection *global)
{
        ModelConfig *m, **n;
        int r = 0;

        if (!model_name_valid(s->name)) {
                config_error(c, s->line,
                             "[%s]: a model name is 1-64 letters, digits, '.', '_' or '-'",
                             s->name);
                return -EINVAL;
        }
        m = calloc(1, sizeof(ModelConfig));
        if (!m) {
                return -ENOMEM;
        }
        *m = (ModelConfig) {
                .name = strdup(s->name),
                .line = s->line,
                .load_on_startup = true,
                .load_timeout_usec = DEFAULT_LOAD_TIMEOUT,
                .stop_timeout_usec = DEFAULT_STOP_TIMEOUT,
                .health_interval_usec = DEFAULT_HEALTH_INTERVAL,
                .restart_usec = DEFAULT_RESTART,
                .start_limit_burst = DEFAULT_START_LIMIT_BURST,
                .start_limit_interval_usec = DEFAULT_START_LIMIT_INTERVAL,
                .upstream_timeout_usec = DEFAULT_UPSTREAM_TIMEOUT,
                .prompt_cache = true,
                .bench_temperature = NAN,
                .bench_top_p = NAN,
                .bench_max_tokens_factor = 1,
                .prompt_cache_min_tokens = DEFAULT_PROMPT_CACHE_MIN_TOKENS,
                .prompt_cache_save_timeout_usec = DEFAULT_PROMPT_CACHE_SAVE_TIMEOUT,
                .max_child_errors = c->max_child_errors,
        };
        n = m->name ? ARRAY_GROW(c->models, c->n_models) : NULL;
        if (!n) {
                config_model_free(m);
                return -ENOMEM;
        }
        *n = m;
        c->n_models++;

        /* [*] first, then the section itself; a key the section sets replaces the shared one. */
        for (int pass = 0; pass < 2; pass++) {
                const RawSection *src = pass == 0 ? global : s;

                for (size_t j = 0; src && j < src->n_entries; j++) {
                        const RawEntry *e = &src->entries[j];
                        int kind;

                        if (pass == 0 && section_sets(s, e->key)) {
                                continue;
                        }
                        if (pass == 1 && section_has_duplicate(c, s, j)) {
                                r = -EINVAL;
                                continue;
                        }
                        kind = config_check_key(c, src->name, e);
                        if (kind < 0) {
                                r = kind;
                                continue;
                        }
                        int k = kind == CONFIG_KEY_FLAG ? config_apply_flag(c, m, src->name, e)
                                                        : config_apply_own(c, m, src->name, e);
                        if (k == -ENOMEM) {
                                return k;
                        }
                        if (k < 0) {
                                r = k;
                        }
                }
        }
        if (!m->model_path && !section_sets_exactly(s, "model")) {
                config_error(c, s->line, "[%s]: no 'model = PATH'", s->name);
                r = -EINVAL;
        }
        return r;
}

/* ---- [llmd]: one parser a kind of value, one row a key ---- */

static void *config_llmd_field(Config *c, const ConfigLlmdKey *k)
{
        return (uint8_t *) c + k->offset;
}

static void listen_free(ListenAddress *l, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(l[i].host);
        }
        free(l);
}

/* A list with a bad address keeps its good ones (the port checks then see them); one with none
 * keeps what was there, the default. */
static int config_llmd_listen(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        _cleanup_strv_free_ char **l = NULL;
        ListenAddress *list = NULL;
        size_t n = 0;
        int r = 0;

        if (strv_split(e->value, ", \t", &l) < 0) {
                return -ENOMEM;
        }
        if (!l[0]) {
                config_error(c, e->line, "[llmd] listen: no address");
                r = -EINVAL;
        }
        STRV_FOREACH(a, l) {
                ListenAddress la, *nl;

                if (parse_listen_address(*a, &la.host, &la.port) < 0) {
                        config_error(c, e->line,
                                     "[llmd] listen: '%s' is not HOST:PORT, [IPV6]:PORT or PORT",
                                     *a);
                        r = -EINVAL;
                        continue;
                }
                nl = ARRAY_GROW(list, n);
                if (!nl) {
                        free(la.host);
                        listen_free(list, n);
                        return -ENOMEM;
                }
                *nl = la;
                n++;
        }
        if (n > 0) {
                listen_free(c->listen, c->n_listen);
                c->listen = list;
                c->n_listen = n;
        }
        return r;
}

static int config_llmd_string(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        char **ret = config_llmd_field(c, k);
        char *v = strdup(e->value);

        if (!v) {
                return -ENOMEM;
        }
        free(*ret);
        *ret = v;
        return 0;
}

static int config_llmd_path(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        int r = config_llmd_string(c, k, e);

        if (r < 0) {
                return r;
        }
        if (e->value[0] != '/') {
                config_error(c, e->line, "[llmd] %s: '%s' is not an absolute path", k->key,
                             e->value);
                return -EINVAL;
        }
        return 0;
}

static int config_llmd_routing(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        Routing *ret = config_llmd_field(c, k);
        Routing routing = routing_from_string(e->value);

        if (routing == _ROUTING_MAX) {
                config_error(c, e->line, "[llmd] routing: '%s' is not active, switch or reject",
                             e->value);
                return -EINVAL;
        }
        *ret = routing;
        return 0;
}

/* At least min; the default is the example. */
static int config_llmd_size(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        uint64_t *ret = config_llmd_field(c, k), u;
        char min[32];

        if (parse_size(e->value, &u) < 0 || u < k->min) {
                config_error(c, e->line, "[llmd] %s: '%s' is not a size of at least %s (e.g. %s)",
                             k->key, e->value, format_size(min, sizeof(min), k->min),
                             k->default_value);
                return -EINVAL;
        }
        *ret = u;
        return 0;
}

/* From min to max. */
static int config_llmd_unsigned(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        unsigned *ret = config_llmd_field(c, k), u;

        if (parse_unsigned(e->value, (unsigned) k->max, &u) < 0 || u < k->min) {
                config_error(c, e->line, "[llmd] %s: '%s' is not a number from %u to %u", k->key,
                             e->value, (unsigned) k->min, (unsigned) k->max);
                return -EINVAL;
        }
        *ret = u;
        return 0;
}

/* At least min. */
static int config_llmd_duration(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        return config_duration(c, "llmd", e, k->min, config_llmd_field(c, k));
}

static int config_llmd_bool(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        return config_bool(c, "llmd", e, config_llmd_field(c, k));
}

static int config_llmd_gpu_memory(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        return config_gpu_memory(c, "llmd", e, config_llmd_field(c, k));
}

/* all, or a list of devices (a mask; 0: all). */
static int config_llmd_gpus(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        uint64_t *ret = config_llmd_field(c, k);
        int r;

        *ret = 0;
        if (streq(e->value, "all")) {
                return 0;
        }
        r = config_gpu_list(e->value, ret);
        if (r == -EINVAL) {
                config_error(
                        c, e->line,
                        "[llmd] gpus: '%s' is not all or a list of GPU numbers (e.g. 0,1), each once, below %d",
                        e->value, GPU_DEVICES_MAX);
        }
        return r;
}

static int config_llmd_cors_origins(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        _cleanup_strv_free_ char **l = NULL;
        char ***ret = config_llmd_field(c, k);
        int r = 0;

        if (strv_split(e->value, ", \t", &l) < 0) {
                return -ENOMEM;
        }
        STRV_FOREACH(o, l) {
                bool word = streq(*o, "*") || streq(*o, "none");

                if ((word && strv_length(l) > 1) ||
                    (!word && !strneq(*o, "http://", 7) && !strneq(*o, "https://", 8))) {
                        config_error(
                                c, e->line,
                                "[llmd] cors-origins: '%s' is not *, none, or a list of origins (https://host[:port])",
                                *o);
                        r = -EINVAL;
                }
        }
        if (!l[0]) {
                config_error(c, e->line, "[llmd] cors-origins: empty (use none)");
                r = -EINVAL;
        }
        strv_free(*ret);
        *ret = TAKE_PTR(l);
        return r;
}

/* true, false, or a size that also caps it (prefetch_limit). */
static int config_llmd_prefetch(Config *c, const ConfigLlmdKey *k, const RawEntry *e)
{
        bool *ret = config_llmd_field(c, k);
        int b = parse_boolean(e->value);

        *ret = b != 0;
        c->prefetch_limit = 0;
        if (b < 0 &&
            (parse_size(e->value, &c->prefetch_limit) < 0 || c->prefetch_limit < 1024 * 1024)) {
                config_error(
                        c, e->line,
                        "[llmd] prefetch: '%s' is not true, false or a size of at least 1M (e.g. 64G)",
                        e->value);
                return -EINVAL;
        }
        return 0;
}

#define LLMD_KEY(key, parser, field, min, max, default_value, doc)                               \
        {                                                                                        \
                key, config_llmd_##parser, offsetof(Config, field), min, max, default_value, doc \
        }

/* Each key of [llmd], sorted: parser, field, min and max (where the parser has them), default
 * (as the file would write it; NULL: zero, see doc) and what it is, in a line. Its entry in
 * llama-generate.conf(5) says the rest; tests/docs/test_man.py checks that each row has one,
 * with this default. */
/* clang-format off */
const ConfigLlmdKey config_llmd_keys[] = {
        LLMD_KEY("activity-size", unsigned, activity_size, 0, 100000, "1000",
                 "Requests kept in memory for the activity log; 0: none"),
        LLMD_KEY("api-key-file", path, api_key_file, 0, 0, NULL,
                 "A file of the API keys that requests must carry; unset: none is needed"),
        LLMD_KEY("cors-origins", cors_origins, cors_origins, 0, 0, NULL,
                 "The web page origins that may read the answers; unset: this machine's pages"),
        LLMD_KEY("default", string, default_model, 0, 0, NULL,
                 "The generation model loaded when none was saved; unset: the first not pinned"),
        LLMD_KEY("drain-timeout", duration, drain_timeout_usec, 0, 0, "30s",
                 "How long the requests on a model switched away may finish"),
        LLMD_KEY("gpu-memory", gpu_memory, gpu_memory, 0, 0, "auto",
                 "The GPU memory the models may take together"),
        LLMD_KEY("gpus", gpus, gpus, 0, 0, "all",
                 "The GPUs llmd's models may use, by NVML's numbers"),
        /* 0 would close every connection at once. */
        LLMD_KEY("header-timeout", duration, header_timeout_usec, USEC_PER_SEC, 0, "15s",
                 "How long a new connection has to send a whole request header"),
        LLMD_KEY("hold-queue", unsigned, hold_queue, 1, 1000000, "1024",
                 "Requests waiting for a model to load, at most"),
        LLMD_KEY("hold-timeout", duration, hold_timeout_usec, 0, 0, "300s",
                 "How long a request waits for a model to load"),
        LLMD_KEY("idle-timeout", duration, idle_timeout_usec, 0, 0, "300s",
                 "A connection without traffic for this long is closed; 0: never"),
        LLMD_KEY("listen", listen, listen, 0, 0, "127.0.0.1:8080",
                 "Where the HTTP endpoint listens, one address or more"),
        LLMD_KEY("llama-server", path, llama_server, 0, 0, NULL,
                 "The llama-server binary; unset: $LLAMA_SERVER, else llama-server from $PATH"),
        LLMD_KEY("log-requests", bool, log_requests, 0, 0, "true",
                 "Log a line for each request"),
        /* A 128K-token prompt is ~0.5 MiB of text. */
        LLMD_KEY("max-body-size", size, max_body_size, 1024, 0, "32M",
                 "The largest request body"),
        LLMD_KEY("max-child-errors", unsigned, max_child_errors, 0, 1000000, "5",
                 "Requests a child fails in a row (5xx, stalls) before it is restarted; 0: never"),
        LLMD_KEY("max-connections", unsigned, max_connections, 1, 1000000, "4096",
                 "Open HTTP connections, at most"),
        /* Enough for a machine running many agents; a gateway in front (HAProxy) needs more. */
        LLMD_KEY("max-connections-per-client", unsigned, max_connections_per_client, 1, 1000000, "256",
                 "Open connections from one client address, at most"),
        LLMD_KEY("max-resident", unsigned, max_resident, 1, 64, NULL,
                 "Generation models loaded at once; unset: as GPU memory allows where known, else 1"),
        LLMD_KEY("metrics-public", bool, metrics_public, 0, 0, "false",
                 "Serve /llmd/metrics without an API key"),
        LLMD_KEY("prefetch", prefetch, prefetch, 0, 0, "true",
                 "Read the models that are not loaded into the page cache, or at most this much"),
        LLMD_KEY("prompt-cache-size", gpu_memory, prompt_cache_size, 0, 0, "auto",
                 "The saved prompt caches of all models together, at most"),
        LLMD_KEY("routing", routing, routing, 0, 0, "active",
                 "What the model field of a generation request does"),
};
/* clang-format on */
const size_t config_n_llmd_keys = ELEMENTSOF(config_llmd_keys);

static const ConfigLlmdKey *config_llmd_key_find(const char *key)
{
        for (size_t i = 0; i < config_n_llmd_keys; i++) {
                if (streq(config_llmd_keys[i].key, key)) {
                        return &config_llmd_keys[i];
                }
        }
        return NULL;
}

/* The defaults are parsed as the file's values are: a bad one is reported on every load. */
static int config_llmd_defaults(Config *c)
{
        for (size_t i = 0; i < config_n_llmd_keys; i++) {
                const ConfigLlmdKey *k = &config_llmd_keys[i];
                RawEntry e = { .key = (char *) k->key, .value = (char *) k->default_value };

                if (k->default_value && k->parse(c, k, &e) == -ENOMEM) {
                        return -ENOMEM;
                }
        }
        return 0;
}

static int config_apply_llmd(Config *c, const RawSection *s)
{
        int r = 0;

        for (size_t j = 0; j < s->n_entries; j++) {
                const RawEntry *e = &s->entries[j];
                const ConfigLlmdKey *k = config_llmd_key_find(e->key);
                int q;

                if (section_has_duplicate(c, s, j)) {
                        r = -EINVAL;
                        continue;
                }
                if (!k) {
                        config_error(c, e->line,
                                     "[llmd] %s: unknown key (see llama-generate.conf(5))", e->key);
                        r = -EINVAL;
                        continue;
                }
                q = k->parse(c, k, e);
                if (q == -ENOMEM) {
                        return q;
                }
                if (q < 0) {
                        r = q;
                }
        }
        return r;
}

ModelConfig *config_find_model(const Config *c, const char *name)
{
        FOREACH_MODEL(m, c) {
                if (streq(m->name, name) || strv_contains(m->aliases, name)) {
                        return m;
                }
        }
        return NULL;
}

/* Names, aliases and ports must each mean one thing. */
static void config_check_unique(Config *c)
{
        for (size_t i = 0; i < c->n_models; i++) {
                ModelConfig *m = c->models[i];

                for (size_t j = 0; j < i; j++) {
                        ModelConfig *o = c->models[j];

                        STRV_FOREACH(a, m->aliases) {
                                if (streq(o->name, *a) || strv_contains(o->aliases, *a)) {
                                        config_error(c, m->line,
                                                     "[%s] aliases: '%s' already names [%s]",
                                                     m->name, *a, o->name);
                                }
                        }
                        if (strv_contains(o->aliases, m->name)) {
                                config_error(c, m->line,
                                             "[%s]: the name is already an alias of [%s]", m->name,
                                             o->name);
                        }
                        if (m->port != 0 && m->port == o->port) {
                                config_error(c, m->line,
                                             "[%s] port: %u is already the port of [%s]", m->name,
                                             m->port, o->name);
                        }
                }
                for (size_t k = 0; k < c->n_listen; k++) {
                        if (m->port != 0 && m->port == c->listen[k].port) {
                                config_error(c, m->line,
                                             "[%s] port: %u is already in [llmd] listen", m->name,
                                             m->port);
                        }
                }
        }
}

static int config_build(Config *c, Parser *p)
{
        const RawSection *global = NULL, *llmd = NULL;
        int r;

        for (size_t i = 0; i < p->n_sections; i++) {
                const RawSection *s = &p->sections[i];

                for (size_t j = 0; j < i; j++) {
                        if (streq(p->sections[j].name, s->name)) {
                                config_error(c, s->line, "[%s]: section already defined on line %u",
                                             s->name, p->sections[j].line);
                        }
                }
                if (streq(s->name, "*")) {
                        global = s;
                } else if (streq(s->name, "llmd")) {
                        llmd = s;
                } else if (streq(s->name, "")) {
                        for (size_t j = 0; j < s->n_entries; j++) {
                                const RawEntry *e = &s->entries[j];

                                if (!streq(e->key, "version")) {
                                        config_error(c, e->line, "%s: key outside of any section",
                                                     e->key);
                                } else if (!streq(e->value, "1")) {
                                        config_error(c, e->line,
                                                     "version: only version 1 is known");
                                }
                        }
                }
        }
        if (llmd) {
                r = config_apply_llmd(c, llmd);
                if (r == -ENOMEM) {
                        return r;
                }
        }
        /* [*] is checked on its own too, so its errors are reported even without models; the
         * same errors met again while merging it into each profile are dropped by config_error(). */
        for (size_t j = 0; global && j < global->n_entries; j++) {
                if (!section_has_duplicate(c, global, j)) {
                        (void) config_check_key(c, "*", &global->entries[j]);
                }
        }
        for (size_t i = 0; i < p->n_sections; i++) {
                const RawSection *s = &p->sections[i];

                bool again = false;

                for (size_t j = 0; j < i; j++) {
                        again = again || streq(p->sections[j].name, s->name);
                }
                if (again || streq(s->name, "*") || streq(s->name, "llmd") || streq(s->name, "")) {
                        continue;
                }
                r = config_add_model(c, s, global);
                if (r == -ENOMEM) {
                        return r;
                }
        }

        if (c->n_models == 0 && strv_length(c->errors) == 0) {
                config_error(c, 0, "no model sections");
        }
        config_check_unique(c);

        if (c->default_model) {
                ModelConfig *m = config_find_model(c, c->default_model);
                unsigned line = 0;

                for (size_t j = 0; llmd && j < llmd->n_entries; j++) {
                        if (streq(llmd->entries[j].key, "default")) {
                                line = llmd->entries[j].line;
                        }
                }
                if (!m) {
                        if (c->n_models > 0) {
                                config_error(c, line, "[llmd] default: no model '%s'",
                                             c->default_model);
                        }
                } else if (m->pin) {
                        config_error(
                                c, line,
                                "[llmd] default: '%s' is pinned; default names a generation model",
                                c->default_model);
                } else {
                        free(c->default_model);
                        c->default_model = strdup(m->name);
                        if (!c->default_model) {
                                return -ENOMEM;
                        }
                }
        } else {
                FOREACH_MODEL(m, c) {
                        if (!m->pin) {
                                c->default_model = strdup(m->name);
                                if (!c->default_model) {
                                        return -ENOMEM;
                                }
                                break;
                        }
                }
        }
        return strv_length(c->errors) > 0 ? -EINVAL : 0;
}

static int config_parse(const char *path, const char *text, Config **ret)
{
        _cleanup_(config_freep) Config *c = NULL;
        Parser p = { .text = text };
        int r;

        c = calloc(1, sizeof(Config));
        if (!c) {
                return -ENOMEM;
        }
        c->path = strdup(path);
        if (!c->path) {
                return -ENOMEM;
        }
        r = config_llmd_defaults(c);
        if (r < 0) {
                return r;
        }
        p.config = c;

        /* Debian's inih takes its options at run time: whole lines up to our limit, no
         * continuation lines (an indented line is a line of its own, not a silent append). */
        ini_use_stack = false;
        ini_allow_realloc = false;
        ini_max_line = CONFIG_MAX_LINE + 2;
        /* The heap buffer is ini_initial_alloc bytes (200 by default) while inih reads up to
         * ini_max_line into it: the two must agree, or a line of 199+ characters overflows. */
        ini_initial_alloc = ini_max_line;
        ini_allow_multiline = false;

        r = ini_parse_stream(parser_read_line, &p, parser_handler, &p);
        if (r > 0) {
                config_error(c, (unsigned) r,
                             "syntax error: expected '[section]' or 'key = value'");
        } else if (r < 0) {
                parser_done(&p);
                return -ENOMEM;
        }
        r = config_build(c, &p);
        parser_done(&p);
        if (r == -ENOMEM) {
                return r;
        }
        if (strv_length(c->errors) > 0) {
                r = -EINVAL;
        }
        *ret = TAKE_PTR(c);
        return r;
}

int config_load(const char *path, Config **ret)
{
        _cleanup_free_ char *text = NULL;
        int r;

        /* Read here, whole and bounded, from a regular file opened so that nothing blocks (the
         * path may be a link); inih never opens it. */
        *ret = NULL;
        r = read_file(path, 0, CONFIG_FILE_MAX, &text);
        if (r < 0) {
                return r;
        }
        size_t len = strlen(text);
        if (len != (size_t) r) {
                /* the text ends at a NUL byte: what follows would be lost without a word */
                unsigned line = 1;
                for (size_t i = 0; i < len; i++) {
                        line += text[i] == '\n';
                }
                r = config_parse(path, text, ret);
                if (!*ret) {
                        return r;
                }
                config_error(*ret, line, "a NUL byte: not a text file");
                return -EINVAL;
        }
        return config_parse(path, text, ret);
}

int config_load_string(const char *path, const char *text, Config **ret)
{
        return config_parse(path, text, ret);
}

Config *config_free(Config *c)
{
        if (!c) {
                return NULL;
        }
        free(c->path);
        listen_free(c->listen, c->n_listen);
        free(c->default_model);
        free(c->llama_server);
        free(c->api_key_file);
        for (size_t i = 0; i < c->n_models; i++) {
                config_model_free(c->models[i]);
        }
        free(c->models);
        strv_free(c->errors);
        strv_free(c->cors_origins);
        free(c);
        return NULL;
}

ModelConfig *config_model_copy(const ModelConfig *m)
{
        ModelConfig *c = calloc(1, sizeof(ModelConfig));

        if (!c) {
                return NULL;
        }
        *c = *m;
        c->name = strdup(m->name);
        c->model_path = strdup(m->model_path);
        c->aliases = strv_copy(m->aliases);
        c->env = strv_copy(m->env);
        c->args = strv_copy(m->args);
        if (!c->name || !c->model_path || !c->aliases || !c->env || !c->args) {
                return config_model_free(c);
        }
        return c;
}

bool config_model_equal(const ModelConfig *a, const ModelConfig *b)
{
        return streq(a->name, b->name) && streq(a->model_path, b->model_path) &&
               strv_equal(a->args, b->args) && strv_equal(a->env, b->env) && a->pin == b->pin &&
               a->port == b->port && a->load_timeout_usec == b->load_timeout_usec &&
               a->stop_timeout_usec == b->stop_timeout_usec &&
               a->health_interval_usec == b->health_interval_usec &&
               a->restart_usec == b->restart_usec && a->start_limit_burst == b->start_limit_burst &&
               a->start_limit_interval_usec == b->start_limit_interval_usec &&
               a->prompt_cache == b->prompt_cache && a->gpus == b->gpus;
}

bool config_model_prompt_cache(const ModelConfig *m)
{
        return m->prompt_cache && !m->pin && !m->embeddings &&
               !strv_contains(m->args, "--slot-save-path");
}

/* Whether the profile says how much llama-server logs: a flag, or its variable in env. */
static bool config_model_sets_verbosity(const ModelConfig *m)
{
        static const char *const flags[] = { "--verbosity", "--log-verbosity", "--verbose",
                                             "--log-verbose", "--log-disable" };

        for (size_t i = 0; i < ELEMENTSOF(flags); i++) {
                if (strv_contains(m->args, flags[i])) {
                        return true;
                }
        }
        STRV_FOREACH(e, m->env) {
                if (startswith(*e, "LLAMA_ARG_LOG_VERBOSITY=")) {
                        return true;
                }
        }
        return false;
}

int config_model_argv(const ModelConfig *m, const char *binary, const char *socket_path,
                      const char *slot_dir, char ***ret)
{
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));

        if (!l) {
                return -ENOMEM;
        }
        if (strv_extend(&l, binary) < 0 || strv_extend(&l, "--model") < 0 ||
            strv_extend(&l, m->model_path) < 0 || strv_extend(&l, "--host") < 0 ||
            strv_extend(&l, socket_path) < 0) {
                return -ENOMEM;
        }
        /* The name clients use is the one llama-server reports, unless the profile says. */
        if (!strv_contains(m->args, "--alias")) {
                if (strv_extend(&l, "--alias") < 0 || strv_extend(&l, m->name) < 0) {
                        return -ENOMEM;
                }
        }
        if (slot_dir &&
            (strv_extend(&l, "--slot-save-path") < 0 || strv_extend(&l, slot_dir) < 0)) {
                return -ENOMEM;
        }
        /* llama-server logs about ten info lines per request, each one a journal write; its
         * warnings and errors (every reason a load fails) are level 2 and below. */
        if (!config_model_sets_verbosity(m)) {
                if (strv_extend(&l, "--log-verbosity") < 0 ||
                    strv_extend(&l, CONFIG_CHILD_LOG_VERBOSITY) < 0) {
                        return -ENOMEM;
                }
        }
        STRV_FOREACH(a, m->args) {
                if (strv_extend(&l, *a) < 0) {
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(l);
        return 0;
}
