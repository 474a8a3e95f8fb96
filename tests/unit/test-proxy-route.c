/* SPDX-License-Identifier: MIT */
#include "proxy-route.h"
#include "strv.h"
#include "tests.h"

/* One request line and its headers, and what route_request() must make of them. */
typedef struct Case {
        const char *method, *target;
        const char *authorization, *x_api_key;
        const char *content_length; /* comma-separated when sent more than once */
        const char *transfer_encoding;
        bool keys, model_port;
        RouteKind kind;
        unsigned status;  /* ROUTE_REFUSE */
        const char *path; /* what is forwarded */
        bool close;
} Case;

#define KEY "Bearer k1"

/* clang-format off */
static const Case cases[] = {
        /* The routes. */
        { "POST", "/v1/chat/completions", .content_length = "10", .kind = ROUTE_GENERATE, .path = "/v1/chat/completions" },
        { "POST", "/v1/embeddings", .content_length = "10", .kind = ROUTE_EMBED, .path = "/v1/embeddings" },
        { "GET", "/v1/models", .kind = ROUTE_MODELS, .path = "/v1/models" },
        { "HEAD", "/health", .kind = ROUTE_HEALTH, .path = "/health" },
        { "GET", "/slots?fields=x%26y", .kind = ROUTE_GENERATE, .path = "/slots?fields=x%26y" },
        { "GET", "/", .kind = ROUTE_GENERATE, .path = "/" },
        { "GET", "/v1/chat/completions", .kind = ROUTE_REFUSE, .status = 405 },
        { "POST", "/v1/nothing", .content_length = "2", .kind = ROUTE_GENERATE, .path = "/v1/nothing" },
        /* What llmd does not know goes to the model: llama-server's newer APIs among them. */
        { "POST", "/v1/messages", .content_length = "20", .kind = ROUTE_GENERATE, .path = "/v1/messages" },
        { "POST", "/v1/responses?x=1", .transfer_encoding = "chunked", .kind = ROUTE_GENERATE, .path = "/v1/responses?x=1" },
        { "DELETE", "/v1/responses/abc", .kind = ROUTE_GENERATE, .path = "/v1/responses/abc" },
        { "POST", "/v1/messages", .content_length = "20", .keys = true, .kind = ROUTE_REFUSE, .status = 401, .close = true },
        { "POST", "/v1/messages", .content_length = "20", .authorization = KEY, .keys = true, .kind = ROUTE_GENERATE, .path = "/v1/messages" },
        { "PUT", "/slots", .kind = ROUTE_REFUSE, .status = 405 },
        { "OPTIONS", "/anything/../at/all", .kind = ROUTE_PREFLIGHT },
        { "OPTIONS", "*", .kind = ROUTE_PREFLIGHT },
        /* The path: one normal form, or 400. */
        { "GET", "/%73lots", .kind = ROUTE_GENERATE, .path = "/slots" },
        { "GET", "/a%2fb", .kind = ROUTE_GENERATE, .path = "/a%2Fb" },
        { "GET", "/./slots", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/v1/../slots", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/x/..", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/%2e/props", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/%2E%2e/props", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/.%2e/props", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/a%00b", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/a%zz", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/a%2", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/a\tb", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/\xc3\xa9", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "http://host/slots", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/..x/.y/", .kind = ROUTE_GENERATE, .path = "/..x/.y/" },
        { "GET", "/slots?a=/../b", .kind = ROUTE_GENERATE, .path = "/slots?a=/../b" },
        /* Keys: everything needs one but the public list. */
        { "POST", "/v1/chat/completions", .content_length = "10", .keys = true, .kind = ROUTE_REFUSE, .status = 401, .close = true },
        { "POST", "/v1/chat/completions", .content_length = "0", .keys = true, .kind = ROUTE_REFUSE, .status = 401 },
        { "POST", "/v1/chat/completions", .authorization = KEY, .content_length = "10", .keys = true, .kind = ROUTE_GENERATE, .path = "/v1/chat/completions" },
        { "POST", "/v1/chat/completions", .authorization = "bearer  k1", .content_length = "10", .keys = true, .kind = ROUTE_GENERATE, .path = "/v1/chat/completions" },
        { "POST", "/v1/chat/completions", .x_api_key = "k1", .content_length = "10", .keys = true, .kind = ROUTE_GENERATE, .path = "/v1/chat/completions" },
        { "POST", "/v1/chat/completions", .authorization = "Bearer k", .content_length = "10", .keys = true, .kind = ROUTE_REFUSE, .status = 401, .close = true },
        { "POST", "/v1/chat/completions", .authorization = "Bearer k12", .content_length = "10", .keys = true, .kind = ROUTE_REFUSE, .status = 401, .close = true },
        { "POST", "/v1/chat/completions", .authorization = "Basic k1", .content_length = "10", .keys = true, .kind = ROUTE_REFUSE, .status = 401, .close = true },
        { "GET", "/slots", .keys = true, .kind = ROUTE_REFUSE, .status = 401 },
        { "GET", "/unknown", .keys = true, .kind = ROUTE_REFUSE, .status = 401 },
        { "GET", "/", .keys = true, .kind = ROUTE_REFUSE, .status = 401 },
        { "GET", "/./slots", .keys = true, .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/health", .keys = true, .kind = ROUTE_HEALTH, .path = "/health" },
        { "GET", "/v1/health", .keys = true, .kind = ROUTE_HEALTH, .path = "/v1/health" },
        { "GET", "/models", .keys = true, .kind = ROUTE_MODELS, .path = "/models" },
        { "GET", "/v1/models?x=1", .keys = true, .kind = ROUTE_MODELS, .path = "/v1/models?x=1" },
        { "POST", "/health", .content_length = "0", .keys = true, .kind = ROUTE_REFUSE, .status = 401 },
        { "OPTIONS", "/v1/chat/completions", .keys = true, .kind = ROUTE_PREFLIGHT },
        /* llmd's own: the dashboard and the router API. Only the page is public. */
        { "GET", "/llmd/", .keys = true, .kind = ROUTE_LLMD, .path = "/llmd/" },
        { "GET", "/llmd", .keys = true, .kind = ROUTE_LLMD, .path = "/llmd" },
        { "GET", "/%6c%6Cmd/", .keys = true, .kind = ROUTE_LLMD, .path = "/llmd/" },
        { "GET", "/llmd/events", .keys = true, .kind = ROUTE_REFUSE, .status = 401 },
        { "GET", "/llmd/events", .authorization = KEY, .keys = true, .kind = ROUTE_LLMD, .path = "/llmd/events" },
        { "GET", "/llmd/%65vents", .authorization = KEY, .keys = true, .kind = ROUTE_LLMD, .path = "/llmd/events" },
        { "GET", "/llmd/x/../events", .authorization = KEY, .keys = true, .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/llmd/./", .kind = ROUTE_REFUSE, .status = 400 },
        { "POST", "/llmd/switch", .content_length = "10", .keys = true, .kind = ROUTE_REFUSE, .status = 401, .close = true },
        { "POST", "/llmd/switch", .content_length = "10", .x_api_key = "k1", .keys = true, .kind = ROUTE_LLMD, .path = "/llmd/switch" },
        { "GET", "/llmd/switch", .kind = ROUTE_REFUSE, .status = 405 },
        { "POST", "/llmd/", .content_length = "2", .kind = ROUTE_REFUSE, .status = 405, .close = true },
        { "GET", "/llmd/", .content_length = "2", .keys = true, .kind = ROUTE_REFUSE, .status = 400, .close = true },
        { "GET", "/llmd/nothing", .kind = ROUTE_REFUSE, .status = 404 },
        { "GET", "/llmd/nothing", .keys = true, .kind = ROUTE_REFUSE, .status = 401 },
        { "POST", "/models/load", .content_length = "10", .kind = ROUTE_LLMD, .path = "/models/load" },
        { "POST", "/models/load", .content_length = "10", .keys = true, .kind = ROUTE_REFUSE, .status = 401, .close = true },
        { "POST", "/models/unload", .content_length = "10", .kind = ROUTE_LLMD, .path = "/models/unload" },
        { "GET", "/models/sse", .keys = true, .kind = ROUTE_REFUSE, .status = 401 },
        { "GET", "/models/sse", .authorization = KEY, .keys = true, .kind = ROUTE_LLMD, .path = "/models/sse" },
        { "GET", "/models/load", .kind = ROUTE_REFUSE, .status = 405 },
        { "GET", "/llmd/events", .model_port = true, .kind = ROUTE_GENERATE, .path = "/llmd/events" },
        /* A model's own port: all of it goes there, keys alike. */
        { "POST", "/v1/embeddings", .content_length = "5", .model_port = true, .kind = ROUTE_GENERATE, .path = "/v1/embeddings" },
        { "POST", "/whatever", .content_length = "5", .model_port = true, .kind = ROUTE_GENERATE, .path = "/whatever" },
        { "GET", "/health", .keys = true, .model_port = true, .kind = ROUTE_GENERATE, .path = "/health" },
        { "GET", "/slots", .keys = true, .model_port = true, .kind = ROUTE_REFUSE, .status = 401 },
        { "GET", "/llmd", .keys = true, .model_port = true, .kind = ROUTE_REFUSE, .status = 401 },
        { "GET", "/llmd/", .keys = true, .model_port = true, .kind = ROUTE_REFUSE, .status = 401 },
        /* Public requests take no body: they need no key, and a body holds a connection. */
        { "OPTIONS", "/v1/chat/completions", .content_length = "4000", .keys = true, .kind = ROUTE_REFUSE, .status = 400, .close = true },
        { "OPTIONS", "/x", .transfer_encoding = "chunked", .kind = ROUTE_REFUSE, .status = 400, .close = true },
        { "GET", "/health", .content_length = "10", .keys = true, .kind = ROUTE_REFUSE, .status = 400, .close = true },
        { "GET", "/v1/models", .content_length = "0", .keys = true, .kind = ROUTE_MODELS, .path = "/v1/models" },
        { "GET", "/slots", .content_length = "10", .authorization = KEY, .keys = true, .kind = ROUTE_GENERATE, .path = "/slots" },
        /* Methods and queries llmd would log or forward. */
        { "G\x1b[31mET", "/health", .kind = ROUTE_REFUSE, .status = 400, .close = true },
        { "\rllmd:", "/health", .kind = ROUTE_REFUSE, .status = 400, .close = true },
        { "M-SEARCH", "/x", .kind = ROUTE_GENERATE, .path = "/x" },
        { "GET", "/slots?\x1b[31m", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/slots?a b", .kind = ROUTE_REFUSE, .status = 400 },
        { "GET", "/slots?\xff", .kind = ROUTE_REFUSE, .status = 400 },
        /* Framing, before anything else. */
        { "POST", "/v1/chat/completions", .kind = ROUTE_REFUSE, .status = 411, .close = true },
        { "POST", "/v1/chat/completions", .content_length = "1048577", .kind = ROUTE_REFUSE, .status = 413, .close = true },
        { "POST", "/v1/chat/completions", .content_length = "1048576", .kind = ROUTE_GENERATE, .path = "/v1/chat/completions" },
        { "POST", "/v1/chat/completions", .transfer_encoding = "chunked", .kind = ROUTE_GENERATE, .path = "/v1/chat/completions" },
        { "POST", "/v1/chat/completions", .transfer_encoding = "Chunked", .kind = ROUTE_GENERATE, .path = "/v1/chat/completions" },
        { "POST", "/v1/chat/completions", .content_length = "5", .transfer_encoding = "chunked", .kind = ROUTE_REFUSE, .status = 400, .close = true },
        { "POST", "/v1/chat/completions", .content_length = "5,6", .kind = ROUTE_REFUSE, .status = 400, .close = true },
        { "POST", "/v1/chat/completions", .content_length = "5,5", .kind = ROUTE_GENERATE, .path = "/v1/chat/completions" },
        { "POST", "/v1/chat/completions", .content_length = "+5", .kind = ROUTE_REFUSE, .status = 400, .close = true },
        { "POST", "/v1/chat/completions", .content_length = "99999999999999999999999", .kind = ROUTE_REFUSE, .status = 400, .close = true },
        { "POST", "/v1/chat/completions", .transfer_encoding = "gzip", .kind = ROUTE_REFUSE, .status = 501, .close = true },
        { "POST", "/v1/chat/completions", .transfer_encoding = "gzip, chunked", .kind = ROUTE_REFUSE, .status = 501, .close = true },
        { "GET", "/./x", .content_length = "5", .transfer_encoding = "chunked", .kind = ROUTE_REFUSE, .status = 400, .close = true },
};
/* clang-format on */

static void run_case(const Case *c)
{
        _cleanup_strv_free_ char **cl = NULL, **te = NULL;
        char *keys[] = { (char *) "k0", (char *) "k1", NULL };
        Route r;

        if (c->content_length) {
                check(strv_split(c->content_length, ",", &cl) >= 0);
        }
        if (c->transfer_encoding) {
                te = strv_copy((char *[]) { (char *) c->transfer_encoding, NULL });
        }
        RouteInput in = {
                .method = c->method,
                .target = c->target,
                .authorization = c->authorization,
                .x_api_key = c->x_api_key,
                .content_length = cl,
                .transfer_encoding = te,
                .api_keys = c->keys ? keys : NULL,
                .max_body_size = 1024 * 1024,
                .model_port = c->model_port,
        };
        check(route_request(&in, &r) == 0);
        if (r.kind != c->kind || (c->kind == ROUTE_REFUSE && r.status != c->status) ||
            (c->path && (!r.path || !streq(r.path, c->path))) || r.close != c->close) {
                fprintf(stderr, "%s %s: got %s %u %s%s, expected %s %u %s%s\n", c->method,
                        c->target, route_kind_to_string(r.kind), r.status, r.path ? r.path : "-",
                        r.close ? " close" : "", route_kind_to_string(c->kind), c->status,
                        c->path ? c->path : "-", c->close ? " close" : "");
                abort();
        }
        route_done(&r);
}

TEST(table)
{
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                run_case(&cases[i]);
        }
}

static const char *target(const char *conf, const char *kind_word, const char *asked,
                          const char *active, bool loaded, unsigned *ret_status)
{
        _cleanup_(config_freep) Config *c = NULL;
        static char name[64];
        const char *t = NULL, *type = NULL;
        _cleanup_free_ char *msg = NULL;
        RouteTargetInput in = {
                .kind = streq(kind_word, "embed") ? ROUTE_EMBED : ROUTE_GENERATE,
                .model_asked = asked,
                .active = active,
                .loaded = loaded,
        };

        check(config_load_string("t.conf", conf, &c) == 0);
        *ret_status = 0;
        check(route_target(c, &in, &t, ret_status, &type, &msg) == 0);
        check((t != NULL) != (msg != NULL)); /* a target, or a reason */
        if (!t) {
                return NULL;
        }
        snprintf(name, sizeof(name), "%s", t);
        return name;
}

TEST(targets)
{
        const char *models =
                "[qwen]\nmodel = /q.gguf\naliases = q3\n[gemma]\nmodel = /g.gguf\n"
                "[nomic]\nmodel = /n.gguf\nembeddings = true\npin = true\n";
        _cleanup_free_ char *active = strjoin2("[llmd]\nrouting = active\n", models);
        _cleanup_free_ char *sw = strjoin2("[llmd]\nrouting = switch\n", models);
        _cleanup_free_ char *rej = strjoin2("[llmd]\nrouting = reject\n", models);
        unsigned st;

        check_streq(target(active, "generate", "gemma", "qwen", true, &st), "qwen");
        check_streq(target(active, "generate", "nonsense", "qwen", true, &st), "qwen");
        check_streq(target(active, "embed", NULL, "qwen", true, &st), "nomic");
        check(!target(active, "generate", NULL, "qwen", false, &st) && st == 503);
        check(!target(active, "generate", NULL, NULL, true, &st) && st == 503);
        check_streq(target(sw, "generate", "gemma", "qwen", true, &st), "gemma");
        check_streq(target(sw, "generate", "q3", "gemma", true, &st), "qwen");
        /* After llmctl stop, a request naming a model does not load it. */
        check(!target(sw, "generate", "gemma", "qwen", false, &st) && st == 503);
        check_streq(target(sw, "generate", "nomic", "qwen", true, &st), "qwen");
        check(!target(sw, "generate", "nonsense", "qwen", true, &st) && st == 404);
        check_streq(target(rej, "generate", "q3", "qwen", true, &st), "qwen");
        check(!target(rej, "generate", "gemma", "qwen", true, &st) && st == 404);
        check_streq(target(rej, "embed", "gemma", "qwen", true, &st), "nomic");
}

static Route route_of(const char *method, const char *target, bool keys, bool model_port)
{
        char *k[] = { (char *) "k1", NULL };
        RouteInput in = { .method = method,
                          .target = target,
                          .api_keys = keys ? k : NULL,
                          .max_body_size = 1024,
                          .model_port = model_port };
        Route r;

        check(route_request(&in, &r) == 0);
        return r;
}

TEST(target_cut)
{
        RouteInput in = { .method = "GET", .target = "/health", .target_cut = true };
        Route r;

        /* Even where the part MHD saw would be fine on its own. */
        check(route_request(&in, &r) == 0);
        check(r.kind == ROUTE_REFUSE && r.status == 400 && r.close);
        route_done(&r);
}

TEST(models_retrieve)
{
        static const struct {
                const char *target;
                bool keys, model_port;
                RouteKind kind;
                const char *id;
        } t[] = {
                { "/v1/models/qwen", false, false, ROUTE_MODELS, "qwen" },
                { "/v1/models/org/model%2Fx?y=1", true, false, ROUTE_MODELS, "org/model/x" },
                { "/v1/models/vendor%2Fq%3Alatest", false, false, ROUTE_MODELS, "vendor/q:latest" },
                { "/models/gemma4", false, false, ROUTE_MODELS, "gemma4" },
                { "/v1/models", false, false, ROUTE_MODELS, NULL },
                { "/v1/models/", false, false, ROUTE_GENERATE, NULL },
                { "/v1/models/qwen", false, true, ROUTE_GENERATE, NULL }, /* all to that model */
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                Route r = route_of("GET", t[i].target, t[i].keys, t[i].model_port);

                check(r.kind == t[i].kind);
                check(t[i].id ? r.model_id && streq(r.model_id, t[i].id) : !r.model_id);
                route_done(&r);
        }
        Route r = route_of("POST", "/v1/models/qwen", false, false);
        check(r.kind == ROUTE_REFUSE && r.status == 405);
        route_done(&r);
}

TEST(apis)
{
        static const struct {
                const char *target;
                RouteApi api;
        } t[] = {
                { "/v1/messages", ROUTE_API_MESSAGES },
                { "/messages?beta=true", ROUTE_API_MESSAGES },
                { "/v1/responses", ROUTE_API_RESPONSES },
                { "/responses", ROUTE_API_RESPONSES },
                { "/v1/chat/completions", ROUTE_API_OPENAI },
                { "/v1/messages/count_tokens", ROUTE_API_OPENAI },
                { "/v1/responsesx", ROUTE_API_OPENAI },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                Route r = route_of("GET", t[i].target, false, false);

                check(r.api == t[i].api);
                route_done(&r);
        }
}

TEST(query_param)
{
        char *v = NULL;

        check(route_query_param("/health?model=qwen", "model", &v) == 0);
        check_streq(v, "qwen");
        free(v);
        check(route_query_param("/health?x=1&model=org%2Fm+x", "model", &v) == 0);
        check_streq(v, "org/m x");
        free(v);
        /* Named twice, or alone (empty): never one of two readings. */
        check(route_query_param("/health?model=qwen&model=nomic", "model", &v) == -ENOTUNIQ && !v);
        check(route_query_param("/health?model", "model", &v) == 0);
        check_streq(v, "");
        free(v);
        check(route_query_param("/health?model&x", "model", &v) == 0);
        check_streq(v, "");
        free(v);
        check(route_query_param("/health#model=qwen", "model", &v) == 0 && !v);
        check(route_query_param("/health?model=", "model", &v) == 0);
        check_streq(v, "");
        free(v);
        check(route_query_param("/health?models=a&xmodel=b", "model", &v) == 0 && !v);
        check(route_query_param("/health", "model", &v) == 0 && !v);
        check(route_query_param("/health?model=%zz", "model", &v) == -EBADMSG && !v);
        check(route_query_param("/health?model=a%00", "model", &v) == -EBADMSG && !v);
        check(route_query_param("/health?model=%0a", "model", &v) == -EBADMSG && !v);

        /* Parameters /health does not know: named, as written. */
        static const char *const known[] = { "model", NULL };
        static const struct {
                const char *target, *unknown;
        } unknown[] = {
                { "/health", NULL },
                { "/health?", NULL },
                { "/health?model=qwen", NULL },
                { "/health?model=qwen&&", NULL },
                { "/health?model=qwen#x=1", NULL },
                { "/health?Model=x", "Model" },
                { "/health?model=qwen&x=1", "x" },
                { "/health?models=a", "models" },
                { "/health?flag", "flag" },
                { "/health?=v", NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(unknown); i++) {
                int k = route_query_unknown(unknown[i].target, known, &v);

                check(k == (unknown[i].unknown ? 1 : 0) && streq_ptr(v, unknown[i].unknown));
                free(v);
                v = NULL;
        }
}

TEST(origins)
{
        char *list[] = { (char *) "https://app.example", NULL };
        char *star[] = { (char *) "*", NULL };
        char *none[] = { (char *) "none", NULL };

        /* Unset, without keys: this machine's pages, and a page's own origin. */
        check(route_origin_allowed(NULL, false, "http://localhost:5173", NULL));
        check(route_origin_allowed(NULL, false, "https://127.0.0.1", NULL));
        check(route_origin_allowed(NULL, false, "http://[::1]:8080", NULL));
        check(!route_origin_allowed(NULL, false, "http://localhost.evil.example", NULL));
        check(!route_origin_allowed(NULL, false, "http://127.0.0.1.evil.example", NULL));
        check(!route_origin_allowed(NULL, false, "http://localhost:80x", NULL));
        check(!route_origin_allowed(NULL, false, "null", NULL));
        check(!route_origin_allowed(NULL, false, "https://evil.example", NULL));
        check(route_origin_allowed(NULL, false, "http://gpubox:8080", "gpubox:8080"));
        check(!route_origin_allowed(NULL, false, "http://gpubox:8080", "gpubox:8081"));
        /* Unset, with keys; and set. */
        check(route_origin_any(NULL, true) && !route_origin_any(NULL, false));
        check(route_origin_allowed(NULL, true, "https://evil.example", NULL));
        check(route_origin_any(star, false));
        check(route_origin_allowed(list, false, "https://app.example", NULL));
        check(!route_origin_allowed(list, true, "https://other.example", NULL));
        check(!route_origin_allowed(list, false, "http://localhost:5173", NULL));
        check(!route_origin_allowed(none, true, "http://localhost:5173", NULL));
}

TEST(hosts)
{
        check(route_host_allowed("127.0.0.1:8080", "gpubox"));
        check(route_host_allowed("192.168.1.20", "gpubox"));
        check(route_host_allowed("[::1]:8080", "gpubox"));
        check(route_host_allowed("localhost:8080", "gpubox"));
        check(route_host_allowed("LOCALHOST.", "gpubox"));
        check(route_host_allowed("app.localhost:3000", "gpubox"));
        check(route_host_allowed("gpubox:8080", "gpubox"));
        check(!route_host_allowed("rebind.evil.example:8080", "gpubox"));
        check(!route_host_allowed("gpubox.evil.example", "gpubox"));
        check(!route_host_allowed("localhost.evil.example", "gpubox"));
        check(!route_host_allowed("127.0.0.1.nip.io", "gpubox"));
        check(!route_host_allowed("localhost:80x", "gpubox"));
        check(!route_host_allowed("", ""));
}

TEST_MAIN()
