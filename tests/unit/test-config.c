/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "config.h"
#include "strv.h"
#include "tests.h"

static Config *parse_ok(const char *text)
{
        Config *c = NULL;
        int r = config_load_string("t.conf", text, &c);

        if (r < 0) {
                STRV_FOREACH(e, c ? c->errors : NULL) {
                        fprintf(stderr, "unexpected: %s\n", *e);
                }
        }
        check(r == 0);
        check(c);
        return c;
}

/* Parses a bad file and checks that the errors are exactly the expected ones. */
static void parse_bad(const char *text, const char *const *expected)
{
        _cleanup_(config_freep) Config *c = NULL;
        size_t n = 0;

        check_inteq(config_load_string("t.conf", text, &c), -EINVAL);
        check(c);
        for (; expected[n]; n++) {
                if (!strv_contains(c->errors, expected[n])) {
                        fprintf(stderr, "missing error: %s\ngot:\n", expected[n]);
                        STRV_FOREACH(e, c->errors) {
                                fprintf(stderr, "  %s\n", *e);
                        }
                        abort();
                }
        }
        if (strv_length(c->errors) != n) {
                fprintf(stderr, "expected %zu errors, got:\n", n);
                STRV_FOREACH(e, c->errors) {
                        fprintf(stderr, "  %s\n", *e);
                }
                abort();
        }
}

#define BAD(text, ...) parse_bad(text, (const char *const[]) { __VA_ARGS__, NULL })

static const char brief_example[] =
        "[llmd]                       ; daemon settings\n"
        "listen = 127.0.0.1:8080\n"
        "default = qwen               ; used when no model was switched to before\n"
        "routing = active\n"
        "\n"
        "[*]\n"
        "flash-attn = on\n"
        "n-gpu-layers = 99\n"
        "\n"
        "[qwen]\n"
        "model = /srv/models/qwen3.5/Qwen3.5-35B-A3B-UD-Q4_K_XL.gguf\n"
        "aliases = qwen3.5, Qwen3.5-35B-A3B\n"
        "ctx-size = 131072\n"
        "n-predict = 81920\n"
        "reasoning-budget = 8192\n"
        "reasoning-format = deepseek\n"
        "chat-template = chatml\n"
        "parallel = 1\n"
        "temp = 0.6\n"
        "top-p = 0.95\n"
        "\n"
        "[nomic]\n"
        "model = /srv/models/nomic-embed-text-v1.5.Q8_0.gguf\n"
        "embeddings = true\n"
        "pin = true                   ; always loaded, never swapped out\n"
        "port = 8084\n";

TEST(brief_example)
{
        _cleanup_(config_freep) Config *c = parse_ok(brief_example);
        _cleanup_strv_free_ char **argv = NULL;
        ModelConfig *q, *n;

        check_inteq(c->n_models, 2);
        check_streq(c->default_model, "qwen");
        check_inteq(c->routing, ROUTING_ACTIVE);
        check_inteq(c->n_listen, 1);
        check_streq(c->listen[0].host, "127.0.0.1");
        check_inteq(c->listen[0].port, 8080);

        q = config_find_model(c, "Qwen3.5-35B-A3B");
        check(q && streq(q->name, "qwen"));
        check(config_find_model(c, "qwen3.5") == q);
        check(!q->pin && !q->embeddings && q->port == 0 && q->load_on_startup);
        check_inteq(q->load_timeout_usec, 600 * USEC_PER_SEC);

        check(config_model_prompt_cache(q));
        check(!config_model_prompt_cache(config_find_model(c, "nomic")));
        check_inteq(config_model_argv(q, "/usr/bin/llama-server", "/run/llmd/qwen.sock",
                                      "/var/lib/llmd/prompt-cache/qwen", &argv),
                    0);
        _cleanup_free_ char *joined = strv_join(argv, " ");
        check_streq(
                joined,
                "/usr/bin/llama-server --model /srv/models/qwen3.5/Qwen3.5-35B-A3B-UD-Q4_K_XL.gguf "
                "--host /run/llmd/qwen.sock --alias qwen "
                "--slot-save-path /var/lib/llmd/prompt-cache/qwen --flash-attn on --n-gpu-layers 99 "
                "--ctx-size 131072 --n-predict 81920 --reasoning-budget 8192 "
                "--reasoning-format deepseek --chat-template chatml --parallel 1 --temp 0.6 "
                "--top-p 0.95");

        n = config_find_model(c, "nomic");
        check(n && n->pin && n->embeddings && n->port == 8084);
        _cleanup_free_ char *nj = strv_join(n->args, " ");
        check_streq(nj, "--flash-attn on --n-gpu-layers 99 --embeddings");
}

TEST(flags)
{
        _cleanup_(config_freep) Config *c = parse_ok(
                "version = 1\n"
                "[*]\n"
                "mmap = false\n"
                "ctx-size = 4096\n"
                "[m]\n"
                "model = /m.gguf\n"
                "jinja = true\n"
                "mlock = false\n"
                "no-warmup = true\n"
                "no-mmap = false\n"
                "ctx-size = 8192\n"
                "alias = Mine\n"
                "override-tensor = blk\\.(1[0-9])\\.ffn_.*_exps\\.=CPU\n"
                "env = CUDA_VISIBLE_DEVICES=0 FOO=a=b\n"
                "env = BAR=1\n"
                "  temp = 0.2\n");
        _cleanup_strv_free_ char **argv = NULL;
        ModelConfig *m = config_find_model(c, "m");

        /* [*]'s mmap is replaced by the section's no-mmap, its ctx-size by the section's. */
        _cleanup_free_ char *j = strv_join(m->args, " ");
        check_streq(j,
                    "--jinja --no-mlock --no-warmup --mmap --ctx-size 8192 --alias Mine "
                    "--override-tensor blk\\.(1[0-9])\\.ffn_.*_exps\\.=CPU --temp 0.2");
        _cleanup_free_ char *e = strv_join(m->env, " ");
        check_streq(e, "CUDA_VISIBLE_DEVICES=0 FOO=a=b BAR=1");
        /* The profile names its own alias: llmd does not add one. */
        check_inteq(config_model_argv(m, "ls", "/s", NULL, &argv), 0);
        check(strv_length(argv) == 5 + strv_length(m->args));
        check_streq(c->default_model, "m");
}

TEST(own_keys)
{
        _cleanup_(config_freep) Config *c = parse_ok(
                "[llmd]\n"
                "listen = 8080, [::1]:9000 :7000\n"
                "routing = switch\n"
                "llama-server = /opt/llama/bin/llama-server\n"
                "[*]\n"
                "stop-timeout = 250ms\n"
                "[a]\n"
                "model = /a\n"
                "load-timeout = 1.5s\n"
                "health-interval = 2\n"
                "restart-sec = 0\n"
                "start-limit-burst = 3\n"
                "start-limit-interval = 10min\n"
                "load-on-startup = no\n"
                "[b]\n"
                "model = /b\n"
                "pin = yes\n");
        ModelConfig *a = config_find_model(c, "a"), *b = config_find_model(c, "b");

        check_inteq(c->n_listen, 3);
        check_streq(c->listen[0].host, "127.0.0.1");
        check_inteq(c->listen[0].port, 8080);
        check_streq(c->listen[1].host, "::1");
        check_inteq(c->listen[1].port, 9000);
        check_streq(c->listen[2].host, "");
        check_inteq(c->listen[2].port, 7000);
        check_inteq(c->routing, ROUTING_SWITCH);
        check_streq(c->llama_server, "/opt/llama/bin/llama-server");
        check_inteq(a->load_timeout_usec, 1500 * USEC_PER_MSEC);
        check_inteq(a->stop_timeout_usec, 250 * USEC_PER_MSEC);
        check_inteq(b->stop_timeout_usec, 250 * USEC_PER_MSEC);
        check_inteq(a->health_interval_usec, 2 * USEC_PER_SEC);
        check_inteq(a->restart_usec, 0);
        check_inteq(a->start_limit_burst, 3);
        check_inteq(a->start_limit_interval_usec, 600 * USEC_PER_SEC);
        check(!a->load_on_startup);
        check(b->pin && b->args == NULL);
        /* No default given: the first generation model. */
        check_streq(c->default_model, "a");
}

TEST(residency_keys)
{
        _cleanup_(config_freep) Config *c = parse_ok(
                "[llmd]\nmax-resident = 3\ngpu-memory = 120G\nprefetch = 64G\n"
                "[*]\nunload-after = 30min\ngpu-memory = 14G\n"
                "[m]\nmodel = /m\n"
                "[n]\nmodel = /n\ngpu-memory = auto\n");
        _cleanup_(config_freep) Config *d = parse_ok("[llmd]\nprefetch = no\n[m]\nmodel = /m\n");
        _cleanup_(config_freep) Config *e = parse_ok("[m]\nmodel = /m\n");

        check_inteq(c->max_resident, 3);
        check_inteq(c->gpu_memory, 120ULL << 30);
        check(c->prefetch);
        check_inteq(c->prefetch_limit, 64ULL << 30);
        check_inteq(config_find_model(c, "m")->gpu_memory, 14ULL << 30);
        check_inteq(config_find_model(c, "n")->gpu_memory, 0);
        check_inteq(config_find_model(c, "n")->unload_after_usec, 1800 * USEC_PER_SEC);
        check(!d->prefetch);
        /* The defaults: unset, auto, prefetch, never unloaded. */
        check(e->max_resident == 0 && e->gpu_memory == 0 && e->prefetch && e->prefetch_limit == 0);
        check_inteq(config_find_model(e, "m")->unload_after_usec, 0);
        BAD("[llmd]\nmax-resident = 0\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] max-resident: '0' is not a number from 1 to 64");
        BAD("[llmd]\ngpu-memory = lots\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] gpu-memory: 'lots' is not auto or a size of at least 1M (e.g. 24G)");
        BAD("[m]\nmodel = /m\ngpu-memory = 12\n",
            "t.conf:3: [m] gpu-memory: '12' is not auto or a size of at least 1M (e.g. 24G)");
        BAD("[llmd]\nprefetch = maybe\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] prefetch: 'maybe' is not true, false or a size of at least 1M (e.g. 64G)");
        BAD("[llmd]\nprefetch = 2\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] prefetch: '2' is not true, false or a size of at least 1M (e.g. 64G)");
        BAD("[m]\nmodel = /m\nunload-after = 0\n",
            "t.conf:3: [m] unload-after: must be at least 1s");
}

TEST(proxy_keys)
{
        _cleanup_(config_freep) Config *c = parse_ok(
                "[llmd]\n"
                "api-key-file = /etc/llmd/keys\n"
                "max-body-size = 64M\n"
                "max-connections = 100\n"
                "hold-queue = 5\n"
                "hold-timeout = 2min\n"
                "idle-timeout = 30\n"
                "drain-timeout = 1.5s\n"
                "header-timeout = 5s\n"
                "max-connections-per-client = 16\n"
                "cors-origins = https://a.example, http://localhost:5173\n"
                "log-requests = no\n"
                "[*]\nupstream-timeout = 20min\n"
                "[m]\nmodel = /m\n"
                "[n]\nmodel = /n\nupstream-timeout = 30\n");
        _cleanup_(config_freep) Config *d = parse_ok("[m]\nmodel = /m\n");

        check_streq(c->api_key_file, "/etc/llmd/keys");
        check_inteq(c->max_body_size, 64ULL << 20);
        check_inteq(c->max_connections, 100);
        check_inteq(c->hold_queue, 5);
        check_inteq(c->hold_timeout_usec, 120 * USEC_PER_SEC);
        check_inteq(c->idle_timeout_usec, 30 * USEC_PER_SEC);
        check_inteq(c->drain_timeout_usec, 1500 * USEC_PER_MSEC);
        check(!c->log_requests);
        check_inteq(c->header_timeout_usec, 5 * USEC_PER_SEC);
        check_inteq(c->max_connections_per_client, 16);
        check_inteq(strv_length(c->cors_origins), 2);
        check_streq(c->cors_origins[1], "http://localhost:5173");
        check_inteq(config_find_model(c, "m")->upstream_timeout_usec, 1200 * USEC_PER_SEC);
        check_inteq(config_find_model(c, "n")->upstream_timeout_usec, 30 * USEC_PER_SEC);
        /* The defaults. */
        check(d->api_key_file == NULL && d->log_requests);
        check_inteq(d->header_timeout_usec, 15 * USEC_PER_SEC);
        check_inteq(d->max_connections_per_client, 256);
        check(d->cors_origins == NULL);
        check_inteq(config_find_model(d, "m")->upstream_timeout_usec, 600 * USEC_PER_SEC);
        check_inteq(d->max_body_size, 32ULL << 20);
        check_inteq(d->listen[0].port, 8080);
        BAD("[llmd]\nmax-body-size = lots\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] max-body-size: 'lots' is not a size of at least 1K (e.g. 32M)");
        BAD("[llmd]\nhold-queue = 0\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] hold-queue: '0' is not a number from 1 to 1000000");
        BAD("[llmd]\napi-key-file = keys\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] api-key-file: 'keys' is not an absolute path");
        BAD("[llmd]\nheader-timeout = 0\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] header-timeout: must be at least 1s");
        BAD("[llmd]\ncors-origins = * https://a.example\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] cors-origins: '*' is not *, none, or a list of origins (https://host[:port])");
        BAD("[llmd]\ncors-origins = a.example\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] cors-origins: 'a.example' is not *, none, or a list of origins (https://host[:port])");
        BAD("[llmd]\nmax-connections-per-client = 0\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] max-connections-per-client: '0' is not a number from 1 to 1000000");
        BAD("[m]\nmodel = /m\nupstream-timeout = 0.5s\n",
            "t.conf:3: [m] upstream-timeout: must be at least 1s");
}

TEST(bad_keys)
{
        BAD("[m]\nmodel = /m\nc = 4096\n",
            "t.conf:3: [m] c: short flag names are not accepted; use 'ctx-size'");
        BAD("[m]\nmodel = /m\nngl = 99\n",
            "t.conf:3: [m] ngl: short flag names are not accepted; use 'n-gpu-layers'");
        BAD("[m]\nmodel = /m\nxy = 1\n",
            "t.conf:3: [m] xy: short flag names are not accepted; use the long name");
        BAD("[m]\nmodel = /m\nLLAMA_ARG_N_GPU_LAYERS = 99\n",
            "t.conf:3: [m] LLAMA_ARG_N_GPU_LAYERS: environment names are not keys; write 'n-gpu-layers = ...'");
        BAD("[m]\nmodel = /m\n--ctx-size = 1\n",
            "t.conf:3: [m] --ctx-size: write the flag without dashes: 'ctx-size = ...'");
        BAD("[m]\nmodel = /m\nCtx_Size = 1\n",
            "t.conf:3: [m] Ctx_Size: not a llama-server flag name (lower case, digits, '-')");
        BAD("[m]\nmodel = /m\nhost = 0.0.0.0\n",
            "t.conf:3: [m] host: refused: llmd gives each child its own unix socket; use 'port' to expose a model");
        BAD("[m]\nmodel = /m\napi-key = x\n",
            "t.conf:3: [m] api-key: refused: children are reached only through llmd, which checks API keys");
        BAD("[m]\nmodel = /m\nsleep-idle-seconds = 60\n",
            "t.conf:3: [m] sleep-idle-seconds: refused: it unloads the model while /health still answers 200, so llmd could not tell what is loaded");
        BAD("[m]\nmodel = /m\nhf-repo = a/b\n",
            "t.conf:3: [m] hf-repo: refused: llmd serves local model files only; use 'model = PATH'");
        BAD("[m]\nmodel = /m\nmodels-preset = /x\n",
            "t.conf:3: [m] models-preset: refused: llama-server's router mode: llmd is the router");
        BAD("[*]\nmodel = /m\n[m]\nmodel = /m\n",
            "t.conf:2: [*] model: belongs in a model's own section");
        BAD("[*]\nport = 1\n[m]\nmodel = /m\n",
            "t.conf:2: [*] port: belongs in a model's own section");
        BAD("[m]\nmodel = /m\ntemp = 0.1\ntemp = 0.2\n",
            "t.conf:4: [m] temp: already set on line 3");
        BAD("[m]\nmodel = /m\ntemp =\n",
            "t.conf:3: [m] temp: empty value (use true, false or a value)");
}

TEST(bad_values)
{
        BAD("[m]\nmodel = relative.gguf\n",
            "t.conf:2: [m] model: 'relative.gguf' is not an absolute path");
        BAD("[m]\nctx-size = 1\n", "t.conf:1: [m]: no 'model = PATH'");
        /* Found by fuzz-config: a "no-" flag named like an own key is not that key. */
        BAD("[m]\nno-model = /s\n", "t.conf:1: [m]: no 'model = PATH'");
        BAD("[m]\nmodel = /m\npin = maybe\n", "t.conf:3: [m] pin: 'maybe' is not true or false");
        BAD("[m]\nmodel = /m\nport = 70000\n",
            "t.conf:3: [m] port: '70000' is not a port number (1-65535)");
        BAD("[m]\nmodel = /m\nload-timeout = soon\n",
            "t.conf:3: [m] load-timeout: 'soon' is not a duration (e.g. 600, 1.5s, 250ms, 10min)");
        BAD("[m]\nmodel = /m\nhealth-interval = 1ms\n",
            "t.conf:3: [m] health-interval: must be at least 10ms");
        BAD("[m]\nmodel = /m\nstart-limit-burst = 0\n",
            "t.conf:3: [m] start-limit-burst: '0' is not a number from 1 to 1000");
        BAD("[m]\nmodel = /m\nenv = NOEQUALS\n", "t.conf:3: [m] env: 'NOEQUALS' is not NAME=VALUE");
        BAD("[m]\nmodel = /m\naliases = a\"b\n",
            "t.conf:3: [m] aliases: 'a\"b' is not a valid alias (letters, digits and . _ - : / + @ =)");
        BAD("[m]\nmodel = /m\naliases = }||{\n",
            "t.conf:3: [m] aliases: '}||{' is not a valid alias (letters, digits and . _ - : / + @ =)");
        BAD("[llmd]\nrouting = random\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] routing: 'random' is not active, switch or reject");
        BAD("[llmd]\nlisten = 1.2.3.4:x\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] listen: '1.2.3.4:x' is not HOST:PORT, [IPV6]:PORT or PORT");
        BAD("[llmd]\nlisten = ::1:80\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] listen: '::1:80' is not HOST:PORT, [IPV6]:PORT or PORT");
        BAD("[llmd]\nllama-server = llama-server\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] llama-server: 'llama-server' is not an absolute path");
        BAD("[llmd]\nwhat = 1\n[m]\nmodel = /m\n",
            "t.conf:2: [llmd] what: unknown key (see llama-generate.conf(5))");
}

TEST(bad_structure)
{
        BAD("version = 2\n[m]\nmodel = /m\n", "t.conf:1: version: only version 1 is known");
        BAD("foo = 1\n[m]\nmodel = /m\n", "t.conf:1: foo: key outside of any section");
        BAD("[m]\nmodel = /m\njunk\n",
            "t.conf:3: syntax error: expected '[section]' or 'key = value'");
        BAD("[m]\nmodel = /m\n[m]\nctx-size = 1\n",
            "t.conf:3: [m]: section already defined on line 1");
        BAD("[a b]\nmodel = /m\n",
            "t.conf:1: [a b]: a model name is 1-64 letters, digits, '.', '_' or '-'");
        BAD("", "t.conf: no model sections");
        BAD("[llmd]\ndefault = x\n[m]\nmodel = /m\n", "t.conf:2: [llmd] default: no model 'x'");
        BAD("[llmd]\ndefault = e\n[e]\nmodel = /m\npin = true\n",
            "t.conf:2: [llmd] default: 'e' is pinned; default names a generation model");
        BAD("[a]\nmodel = /a\naliases = x\n[b]\nmodel = /b\naliases = x\n",
            "t.conf:4: [b] aliases: 'x' already names [a]");
        BAD("[a]\nmodel = /a\naliases = b\n[b]\nmodel = /b\n",
            "t.conf:4: [b]: the name is already an alias of [a]");
        BAD("[a]\nmodel = /a\nport = 9\n[b]\nmodel = /b\nport = 9\n",
            "t.conf:4: [b] port: 9 is already the port of [a]");
        BAD("[a]\nmodel = /a\nport = 8080\n",
            "t.conf:1: [a] port: 8080 is already in [llmd] listen");
}

TEST(line_numbers)
{
        /* A long line is one error on its own line, and the lines after it keep their numbers. */
        _cleanup_free_ char *text = NULL;
        char *longv = malloc(5000);

        check(longv);
        memset(longv, 'x', 4999);
        longv[4999] = '\0';
        check(asprintf(&text, "[m]\nmodel = /m\ntemp = %s\ntop-k = \n", longv) > 0);
        free(longv);
        BAD(text, "t.conf:3: line longer than 4095 characters",
            "t.conf:4: [m] top-k: empty value (use true, false or a value)");
        /* Lines up to the limit are whole values: 198 to 200 characters once overflowed
         * inih's buffer, and 300 were refused. */
        for (size_t len = 190; len <= 4090; len += len < 210 ? 1 : 900) {
                _cleanup_(config_freep) Config *c = NULL;
                _cleanup_free_ char *conf = NULL, *v = malloc(len + 1);

                check(v);
                memset(v, 'x', len);
                v[len] = '\0';
                check(asprintf(&conf, "[m]\nmodel = /m\noverride-tensor = %s\n", v) > 0);
                c = parse_ok(conf);
                check(strv_contains(config_find_model(c, "m")->args, v));
        }
        /* An indented line is a line of its own, not the continuation of the one before. */
        BAD("[m]\nmodel = /m\ntemp = 1\n   nonsense\n",
            "t.conf:4: syntax error: expected '[section]' or 'key = value'");
        /* [*] errors are reported once, not once per profile. */
        BAD("[*]\nc = 1\n[a]\nmodel = /a\n[b]\nmodel = /b\n",
            "t.conf:2: [*] c: short flag names are not accepted; use 'ctx-size'");
}

TEST(tables)
{
        _cleanup_(config_freep) Config *d = parse_ok("[m]\nmodel = /m\n");

        /* Sorted, so adding a key is adding a row in its place; each row complete. */
        for (size_t i = 0; i < config_n_llmd_keys; i++) {
                const ConfigLlmdKey *k = &config_llmd_keys[i];

                check(i == 0 || strcmp(config_llmd_keys[i - 1].key, k->key) < 0);
                check(k->parse && !isempty(k->doc));
                check(k->offset < sizeof(Config));
        }
        for (size_t i = 1; i < config_n_model_keys; i++) {
                check(strcmp(config_model_keys[i - 1].key, config_model_keys[i].key) < 0);
        }
        for (size_t i = 0; i < config_n_model_keys; i++) {
                check((config_model_keys[i].kind == CONFIG_KEY_REFUSED) ==
                      !!config_model_keys[i].reason);
        }
        /* The defaults the table writes are the values a file without [llmd] gets. */
        check_inteq(d->n_listen, 1);
        check_streq(d->listen[0].host, "127.0.0.1");
        check_inteq(d->listen[0].port, 8080);
        check_inteq(d->routing, ROUTING_ACTIVE);
        check_inteq(d->max_connections, 4096);
        check_inteq(d->hold_queue, 1024);
        check_inteq(d->hold_timeout_usec, 300 * USEC_PER_SEC);
        check_inteq(d->idle_timeout_usec, 300 * USEC_PER_SEC);
        check_inteq(d->drain_timeout_usec, 30 * USEC_PER_SEC);
        check(!d->llama_server && streq(d->default_model, "m"));
        /* A listen with no good address keeps the default, which the port checks then see. */
        BAD("[llmd]\nlisten = x\n[m]\nmodel = /m\nport = 8080\n",
            "t.conf:2: [llmd] listen: 'x' is not HOST:PORT, [IPV6]:PORT or PORT",
            "t.conf:3: [m] port: 8080 is already in [llmd] listen");
        BAD("[llmd]\nlisten = ,\n[m]\nmodel = /m\n", "t.conf:2: [llmd] listen: no address");
}

TEST(equal)
{
        _cleanup_(config_freep) Config *a =
                parse_ok("[m]\nmodel = /m\ntemp = 1\n[n]\nmodel = /n\n");
        _cleanup_(config_freep) Config *b =
                parse_ok("[n]\nmodel = /n\n[m]\nmodel = /m\ntemp = 2\n");

        check(!config_model_equal(config_find_model(a, "m"), config_find_model(b, "m")));
        check(config_model_equal(config_find_model(a, "n"), config_find_model(b, "n")));
}

TEST(file)
{
        Config *c = NULL;

        check_inteq(config_load("/nonexistent/llama-generate.conf", &c), -ENOENT);
        check(!c);
}

/* What is not a small regular text file is refused before it is read: nothing blocks. */
TEST(file_hostile)
{
        char dir[] = "/tmp/test-config-XXXXXX", path[64];
        Config *c = NULL;
        int fd;

        check(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/fifo", dir);
        check(mkfifo(path, 0600) == 0);
        check_inteq(config_load(path, &c), -EBADFD);
        check(!c);
        check(unlink(path) == 0);
        check_inteq(config_load(dir, &c), -EISDIR);
        check_inteq(config_load("/dev/zero", &c), -EBADFD);

        snprintf(path, sizeof(path), "%s/sparse", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        check(fd >= 0);
        check(ftruncate(fd, (off_t) 16 << 30) == 0);
        check_inteq(config_load(path, &c), -EFBIG);
        check(!c);

        /* a NUL byte on line 2 */
        check(ftruncate(fd, 0) == 0);
        check(pwrite(fd, "[m]\nmodel = /m\0x\n", 17, 0) == 17);
        check_inteq(config_load(path, &c), -EINVAL);
        check(c && strv_length(c->errors) == 1 && strstr(c->errors[0], ":2: a NUL byte"));
        config_free(c);
        close(fd);
        check(unlink(path) == 0);
        check(rmdir(dir) == 0);
}

TEST_MAIN()
