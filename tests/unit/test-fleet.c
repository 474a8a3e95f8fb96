/* SPDX-License-Identifier: MIT */
#include <sys/wait.h>
#include <unistd.h>

#include "fleet-haproxy.h"
#include "tests.h"

/* What three boxes' GET /v1/models say (the "data" entries that matter; llmd sends more). */
static const char box1[] =
        "{\"object\":\"list\",\"data\":["
        "{\"id\":\"qwen\",\"state\":\"loaded\",\"active\":true},"
        "{\"id\":\"gemma\",\"state\":\"unloaded\"},"
        "{\"id\":\"nomic\",\"state\":\"loaded\",\"pinned\":true,\"embeddings\":true},"
        "{\"id\":\"qwen3.5\",\"state\":\"loaded\",\"alias_of\":\"qwen\"},"
        "{\"id\":\"Qwen/Qwen3.5-35B\",\"state\":\"loaded\",\"alias_of\":\"qwen\"}]}";
static const char box2[] =
        "{\"data\":["
        /* an alias before its model */
        "{\"id\":\"qwen3.5\",\"state\":\"loading\",\"alias_of\":\"qwen\"},"
        "{\"id\":\"qwen\",\"state\":\"loading\"},"
        "{\"id\":\"devstral\",\"state\":\"failed\"}]}";
static const char box3[] =
        "{\"data\":["
        "{\"id\":\"gemma\",\"state\":\"loaded\"},"
        "{\"id\":\"gemma4:it\",\"state\":\"loaded\",\"alias_of\":\"gemma\"},"
        "{\"id\":\"devstral\",\"state\":\"unloaded\"},"
        "{\"id\":\"nomic\",\"state\":\"loaded\"}]}";

typedef struct Input {
        const char *address;
        const char *json;
} Input;

/* Runs the generator on inputs; returns its result, with the text or the error in *ret. */
static int generate(const Input *in, size_t n, const char *listen, char **ret)
{
        FleetBox boxes[8] = {};
        char *text = NULL, *error = NULL;
        int r;

        check(n <= 8);
        for (size_t i = 0; i < n; i++) {
                boxes[i] =
                        (FleetBox) { .address = in[i].address, .models = cJSON_Parse(in[i].json) };
                check(boxes[i].models);
        }
        r = fleet_haproxy_config(boxes, n, listen, &text, &error);
        for (size_t i = 0; i < n; i++) {
                cJSON_Delete((cJSON *) boxes[i].models);
        }
        check((r == 0) == (text != NULL));
        check((r == -EINVAL) == (error != NULL));
        *ret = r == 0 ? text : error;
        return r;
}

/* The section "backend NAME" up to the blank line that ends it. */
static char *section(const char *cfg, const char *name)
{
        char head[128];
        const char *s, *e;

        snprintf(head, sizeof(head), "\nbackend %s\n", name);
        s = strstr(cfg, head);
        if (!s) {
                return NULL;
        }
        s += strlen(head);
        e = strstr(s, "\n\n");
        return strndup(s, e ? (size_t) (e - s + 1) : strlen(s));
}

static void check_has(const char *text, const char *line)
{
        if (!text || !strstr(text, line)) {
                fprintf(stderr, "missing: %s\nin:\n%s\n", line, text ? text : "(none)");
                abort();
        }
}

static void check_lacks(const char *text, const char *line)
{
        if (text && strstr(text, line)) {
                fprintf(stderr, "unexpected: %s\nin:\n%s\n", line, text);
                abort();
        }
}

TEST(fleet)
{
        const Input in[] = { { "10.0.0.1:8080", box1 },
                             { "box2.lan:8080", box2 },
                             { "[fd00::3]:8081", box3 } };
        char *cfg, *s;

        check_inteq(generate(in, 3, "127.0.0.1:9090", &cfg), 0);
        check_has(cfg, "\tbind 127.0.0.1:9090\n");
        check_has(cfg, "\toption http-buffer-request\n");
        check_has(cfg, "req.body,json_query('$.model')");
        /* Every name routes to its model's backend, aliases included, quoted where needed. */
        check_has(cfg,
                  "\tacl is:qwen var(txn.model) -m str -- qwen qwen3.5 Qwen/Qwen3.5-35B\n"
                  "\tuse_backend model:qwen if is:qwen\n");
        check_has(cfg,
                  "\tacl is:gemma var(txn.model) -m str -- gemma gemma4:it\n"
                  "\tuse_backend model:gemma if is:gemma\n");
        check_has(cfg,
                  "\tacl is:nomic var(txn.model) -m str -- nomic\n"
                  "\tuse_backend model:nomic if is:nomic\n");
        check_has(cfg,
                  "\tacl is:devstral var(txn.model) -m str -- devstral\n"
                  "\tuse_backend model:devstral if is:devstral\n");
        check_has(cfg, "\tacl model_known var(txn.model) -m str -- gemma gemma4:it\n");
        check_has(cfg, "\tdefault_backend boxes\n");

        /* qwen: loaded on box1, loading on box2: both serve it, no backups. */
        s = section(cfg, "model:qwen");
        check_has(s, "\thttp-check send meth GET uri /health?model=qwen\n");
        check_has(s, "\thttp-check expect status 200\n");
        check_has(s, "\tserver 10.0.0.1:8080 10.0.0.1:8080 check\n");
        check_has(s, "\tserver box2.lan:8080 box2.lan:8080 check\n");
        check_lacks(s, "backup");
        check_lacks(s, "fd00");
        free(s);
        check(!section(cfg, "loadable:qwen"));

        /* gemma: loaded on box3 (an IPv6 address: no brackets in the name), box1 as backup
         * following its own check. */
        s = section(cfg, "model:gemma");
        check_has(s, "\tserver fd00::3:8081 [fd00::3]:8081 check\n");
        check_has(s,
                  "\tserver 10.0.0.1:8080 10.0.0.1:8080 backup "
                  "track loadable:gemma/10.0.0.1:8080\n");
        check_lacks(s, "box2");
        free(s);
        s = section(cfg, "loadable:gemma");
        check_has(s, "\tserver 10.0.0.1:8080 10.0.0.1:8080 check\n");
        check_has(s, "(ok|loading|unloaded|unloading|draining)");
        check_lacks(s, "fd00");
        free(s);

        /* devstral: failed on box2, unloaded on box3: backups only. */
        s = section(cfg, "model:devstral");
        check_has(s,
                  "\tserver box2.lan:8080 box2.lan:8080 backup "
                  "track loadable:devstral/box2.lan:8080\n");
        check_has(s,
                  "\tserver fd00::3:8081 [fd00::3]:8081 backup "
                  "track loadable:devstral/fd00::3:8081\n");
        check_lacks(s, " check\n");
        free(s);

        /* nomic on box1 and box3. */
        s = section(cfg, "model:nomic");
        check_has(s, "\tserver 10.0.0.1:8080 10.0.0.1:8080 check\n");
        check_has(s, "\tserver fd00::3:8081 [fd00::3]:8081 check\n");
        free(s);

        /* No model: the first box, then the others in order. */
        s = section(cfg, "boxes");
        check_has(s, "\thttp-check send meth GET uri /health\n");
        check_has(s, "\tserver 10.0.0.1:8080 10.0.0.1:8080 check\n");
        check_has(s, "\tserver box2.lan:8080 box2.lan:8080 check backup\n");
        check_has(s, "\tserver fd00::3:8081 [fd00::3]:8081 check backup\n");
        free(s);
        /* The order of the backends is the order the boxes name the models in. */
        check(strstr(cfg, "backend model:qwen") < strstr(cfg, "backend model:gemma"));
        check(strstr(cfg, "backend model:nomic") < strstr(cfg, "backend model:devstral"));
        free(cfg);
}

TEST(refused)
{
        /* clang-format off */
        static const struct {
                const char *a, *b; /* two boxes' lists */
                const char *listen;
                const char *error;
        } cases[] = {
                { "{\"data\":[{\"id\":\"q\"},{\"id\":\"x\",\"alias_of\":\"q\"}]}",
                  "{\"data\":[{\"id\":\"g\"},{\"id\":\"x\",\"alias_of\":\"g\"}]}", ":80",
                  "'x' means g on b:2 but q on a:1: one name must mean one model" },
                { "{\"data\":[{\"id\":\"q\"},{\"id\":\"x\",\"alias_of\":\"q\"}]}",
                  "{\"data\":[{\"id\":\"x\"}]}", ":80",
                  "'x' is a model on b:2 but an alias of q on a:1: one name must mean one model" },
                { "{\"data\":[{\"id\":\"x\"}]}",
                  "{\"data\":[{\"id\":\"q\"},{\"id\":\"x\",\"alias_of\":\"q\"}]}", ":80",
                  "'x' means q on b:2 but x on a:1: one name must mean one model" },
                { "{\"data\":[{\"id\":\"q w\"}]}", "{\"data\":[]}", ":80",
                  "a:1: the model name 'q w' is not letters, digits, '.', '_' and '-'" },
                { "{\"data\":[{\"id\":\"q\"},{\"id\":\"it's\",\"alias_of\":\"q\"}]}",
                  "{\"data\":[]}", ":80",
                  "a:1: an alias holds a character that could change what haproxy.cfg means "
                  "(aliases are letters, digits and . _ - : / + @ =)" },
                /* HAProxy drops the quotes before it looks for braces: "} || { always_true"
                 * would have routed every request to this box. */
                { "{\"data\":[{\"id\":\"q\"},{\"id\":\"} || { always_true\",\"alias_of\":\"q\"}]}",
                  "{\"data\":[]}", ":80",
                  "a:1: an alias holds a character that could change what haproxy.cfg means "
                  "(aliases are letters, digits and . _ - : / + @ =)" },
                { "{\"data\":[{\"id\":\"q\"},{\"id\":\"y\",\"alias_of\":\"z\"}]}",
                  "{\"data\":[]}", ":80",
                  "a:1: 'y' is an alias of z, which its list does not have" },
                { "{\"data\":[{\"id\":\"q\"}]}",
                  "{\"data\":[{\"id\":\"y\",\"alias_of\":\"q\"}]}", ":80",
                  "b:2: 'y' is an alias of q, which its list does not have" },
                { "{\"data\":[{\"id\":\"q\"},{\"id\":\"q\"}]}", "{\"data\":[]}", ":80",
                  "a:1: the model q is listed twice" },
                { "{\"data\":[{\"state\":\"loaded\"}]}", "{\"data\":[]}", ":80",
                  "a:1: a /v1/models entry without an id" },
                { "{\"models\":[]}", "{\"data\":[]}", ":80",
                  "a:1: its /v1/models answer has no \"data\" list" },
                { "{\"data\":[]}", "{\"data\":[]}", ":80", "no box has a model" },
                { "{\"data\":[{\"id\":\"q\"}]}", "{\"data\":[]}", ":80 # x",
                  "':80 # x' is not an address HAProxy can bind" },
        };
        /* clang-format on */

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Input in[] = { { "a:1", cases[i].a }, { "b:2", cases[i].b } };
                char *error;

                check_inteq(generate(in, 2, cases[i].listen, &error), -EINVAL);
                check_streq(error, cases[i].error);
                free(error);
        }
}

TEST(boxes)
{
        const Input twice[] = { { "a:1", "{\"data\":[{\"id\":\"q\"}]}" },
                                { "a:1", "{\"data\":[{\"id\":\"q\"}]}" } };
        const Input bad[] = { { "a", "{\"data\":[{\"id\":\"q\"}]}" } };
        char *error;

        check_inteq(generate(twice, 2, ":80", &error), -EINVAL);
        check_streq(error, "a:1 is named twice");
        free(error);
        check_inteq(generate(bad, 1, ":80", &error), -EINVAL);
        check_streq(error, "'a' is not host:port");
        free(error);
        check_inteq(generate(twice, 0, ":80", &error), -EINVAL);
        check_streq(error, "no boxes");
        free(error);

        static const struct {
                const char *address;
                bool valid;
        } addresses[] = {
                { "10.0.0.1:8080", true },   { "box.lan:80", true },     { "[::1]:8080", true },
                { "[fd00::1]:65535", true }, { "box", false },           { "box:", false },
                { ":8080", false },          { "box:0", false },         { "box:65536", false },
                { "box:80x", false },        { "[::1]", false },         { "[::1]8080", false },
                { "[]:80", false },          { "http://box:80", false }, { "a b:80", false },
                { "box:80/x", false },       { "box:80@key", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(addresses); i++) {
                if ((fleet_box_address_valid(addresses[i].address) == 0) != addresses[i].valid) {
                        fprintf(stderr, "%s: expected %s\n", addresses[i].address,
                                addresses[i].valid ? "valid" : "invalid");
                        abort();
                }
        }
}

static size_t strcount(const char *s, const char *needle)
{
        size_t n = 0;

        for (; (s = strstr(s, needle)); s++) {
                n++;
        }
        return n;
}

/* Whether HAProxy itself reads cfg ("haproxy -c"); -1 when it is not installed. */
static int haproxy_accepts(const char *cfg)
{
        char path[] = "/tmp/test-fleet-XXXXXX";
        _cleanup_free_ char *command = NULL;
        int fd = mkstemp(path), status;
        FILE *f;

        check(fd >= 0);
        f = fdopen(fd, "w");
        check(f && fputs(cfg, f) >= 0 && fclose(f) == 0);
        check(asprintf(&command, "haproxy -c -q -f %s", path) > 0);
        status = system("command -v haproxy >/dev/null") == 0 ? system(command) : -1;
        unlink(path);
        if (status < 0) {
                return -1;
        }
        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* One model with n aliases of 256 bytes each (the most llmd allows), on one box. */
static char *many_aliases(size_t n)
{
        cJSON *data = cJSON_CreateArray(), *o = cJSON_CreateObject(), *e;
        char *s;

        cJSON_AddItemToObject(o, "data", data);
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", "qwen");
        cJSON_AddStringToObject(e, "state", "loaded");
        cJSON_AddItemToArray(data, e);
        for (size_t i = 0; i < n; i++) {
                char alias[257];

                snprintf(alias, sizeof(alias), "org/alias-%zu-", i);
                memset(alias + strlen(alias), 'x', sizeof(alias) - 1 - strlen(alias));
                alias[256] = '\0';
                e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "id", alias);
                cJSON_AddStringToObject(e, "alias_of", "qwen");
                cJSON_AddItemToArray(data, e);
        }
        s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        check(s);
        return s;
}

/* HAProxy reads at most 64 words a line: a model's names are spread over as many lines as they
 * need, and HAProxy reads what comes out for any number of them. */
TEST(many_aliases)
{
        static const size_t counts[] = { 0, 1, 55, 500 };

        for (size_t i = 0; i < ELEMENTSOF(counts); i++) {
                _cleanup_free_ char *json = many_aliases(counts[i]), *cfg = NULL;
                const Input in[] = { { "10.0.0.1:8080", json }, { "10.0.0.2:8080", box3 } };
                int ok;

                check_inteq(generate(in, 2, ":8080", &cfg), 0);
                check_has(cfg, "\tuse_backend model:qwen if is:qwen\n");
                check_has(cfg, "\tuse_backend model:gemma if is:gemma\n");
                check_has(cfg, "\tacl is:gemma var(txn.model) -m str -- gemma gemma4:it\n");
                /* 32 names a line: qwen's, then gemma, devstral and nomic, one line each */
                check_inteq(strcount(cfg, "\tacl is:qwen "), (counts[i] + 32) / 32);
                check_inteq(strcount(cfg, "\tacl model_known "), (counts[i] + 32) / 32 + 3);
                ok = haproxy_accepts(cfg);
                if (ok < 0) {
                        fprintf(stderr, "no haproxy: the configuration is not checked by it\n");
                        continue;
                }
                if (!ok) {
                        fprintf(stderr, "haproxy refused, with %zu aliases:\n%s\n", counts[i], cfg);
                        abort();
                }
        }
}

TEST_MAIN()
