/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <stdio.h>
#include <strings.h>

#include "proxy-route.h"
#include "strv.h"

enum {
        M_GET = 1 << 0, /* and HEAD */
        M_POST = 1 << 1,
};

typedef struct RouteEntry {
        const char *path;
        unsigned methods;
        RouteKind kind;
        bool json_body;
        bool public; /* no key needed (GET and HEAD only) */
} RouteEntry;

/* Sorted by path. */
static const RouteEntry route_table[] = {
        { "/apply-template", M_POST, ROUTE_GENERATE, true, false },
        { "/chat/completions", M_POST, ROUTE_GENERATE, true, false },
        { "/completion", M_POST, ROUTE_GENERATE, true, false },
        { "/completions", M_POST, ROUTE_GENERATE, true, false },
        { "/detokenize", M_POST, ROUTE_GENERATE, true, false },
        { "/embedding", M_POST, ROUTE_EMBED, true, false },
        { "/embeddings", M_POST, ROUTE_EMBED, true, false },
        { "/health", M_GET, ROUTE_HEALTH, false, true },
        { "/infill", M_POST, ROUTE_GENERATE, true, false },
        { "/llmd", M_GET, ROUTE_LLMD, false, true },
        { "/llmd/", M_GET, ROUTE_LLMD, false, true },
        { "/llmd/activity", M_GET, ROUTE_ACTIVITY, false, false },
        { "/llmd/events", M_GET, ROUTE_LLMD, false, false },
        { "/llmd/load", M_POST, ROUTE_LLMD, false, false },
        { "/llmd/metrics", M_GET, ROUTE_METRICS, false, false },
        { "/llmd/switch", M_POST, ROUTE_LLMD, false, false },
        { "/llmd/unload", M_POST, ROUTE_LLMD, false, false },
        { "/metrics", M_GET, ROUTE_GENERATE, false, false },
        { "/models", M_GET, ROUTE_MODELS, false, true },
        { "/models/load", M_POST, ROUTE_LLMD, false, false },
        { "/models/sse", M_GET, ROUTE_LLMD, false, false },
        { "/models/unload", M_POST, ROUTE_LLMD, false, false },
        { "/props", M_GET | M_POST, ROUTE_GENERATE, true, false },
        { "/rerank", M_POST, ROUTE_EMBED, true, false },
        { "/reranking", M_POST, ROUTE_EMBED, true, false },
        { "/slots", M_GET | M_POST, ROUTE_GENERATE, false, false },
        { "/tokenize", M_POST, ROUTE_GENERATE, true, false },
        { "/v1/chat/completions", M_POST, ROUTE_GENERATE, true, false },
        { "/v1/completions", M_POST, ROUTE_GENERATE, true, false },
        { "/v1/embeddings", M_POST, ROUTE_EMBED, true, false },
        { "/v1/health", M_GET, ROUTE_HEALTH, false, true },
        { "/v1/models", M_GET, ROUTE_MODELS, false, true },
        { "/v1/rerank", M_POST, ROUTE_EMBED, true, false },
};

static const RouteEntry *route_find(const char *path)
{
        for (size_t i = 0; i < ELEMENTSOF(route_table); i++) {
                if (streq(route_table[i].path, path)) {
                        return &route_table[i];
                }
        }
        return NULL;
}

const char *route_kind_to_string(RouteKind k)
{
        static const char *const names[_ROUTE_KIND_MAX] = {
                [ROUTE_GENERATE] = "generate",   [ROUTE_EMBED] = "embed",
                [ROUTE_MODELS] = "models",       [ROUTE_HEALTH] = "health",
                [ROUTE_PREFLIGHT] = "preflight", [ROUTE_REFUSE] = "refuse",
                [ROUTE_METRICS] = "metrics",     [ROUTE_ACTIVITY] = "activity",
                [ROUTE_LLMD] = "llmd",
        };
        return k >= 0 && k < _ROUTE_KIND_MAX ? names[k] : NULL;
}

static int unhex(char c)
{
        if (c >= '0' && c <= '9') {
                return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
                return c - 'a' + 10;
        }
        if (c >= 'A' && c <= 'F') {
                return c - 'A' + 10;
        }
        return -1;
}

static bool unreserved(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '~';
}

int route_normalize_path(const char *target, char **ret, const char **ret_why)
{
        size_t n = strcspn(target, "?#");
        _cleanup_free_ char *p = malloc(n + 1);
        size_t k = 0;

        if (!p) {
                return -ENOMEM;
        }
        if (target[0] != '/') {
                *ret_why = "the request target is not an absolute path";
                return -EBADMSG;
        }
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) target[i];

                if (c <= 0x20 || c >= 0x7f) {
                        *ret_why = "the path holds a byte outside printable ASCII";
                        return -EBADMSG;
                }
                if (c == '%') {
                        int hi = i + 2 < n ? unhex(target[i + 1]) : -1;
                        int lo = hi >= 0 ? unhex(target[i + 2]) : -1;
                        unsigned char d = (unsigned char) (hi * 16 + lo);

                        if (hi < 0 || lo < 0) {
                                *ret_why = "the path holds an invalid %-escape";
                                return -EBADMSG;
                        }
                        if (unreserved(d)) {
                                p[k++] = (char) d; /* the same character, written plainly */
                        } else if (d == 0) {
                                *ret_why = "the path holds an escaped NUL byte";
                                return -EBADMSG;
                        } else {
                                /* A reserved character stays escaped: it means something else
                                 * than the plain one. Upper-case hex, the normal form. */
                                k += (size_t) sprintf(p + k, "%%%02X", d);
                        }
                        i += 2;
                        continue;
                }
                p[k++] = (char) c;
        }
        p[k] = '\0';
        /* After decoding, so %2e counts as a dot. */
        for (const char *s = p; s; s = strchr(s + 1, '/')) {
                size_t l = strcspn(s + 1, "/");

                if ((l == 1 && s[1] == '.') || (l == 2 && s[1] == '.' && s[2] == '.')) {
                        *ret_why = "the path holds a \".\" or \"..\" segment";
                        return -EBADMSG;
                }
        }
        *ret = TAKE_PTR(p);
        return 0;
}

/* s[0..len) with its %-escapes decoded (and "+" as a space, in a query) into *ret: -EBADMSG for
 * a bad escape or what does not decode to printable ASCII. */
static int route_unescape(const char *s, size_t len, bool query, char **ret)
{
        _cleanup_free_ char *v = malloc(len + 1);
        size_t k = 0;

        if (!v) {
                return -ENOMEM;
        }
        for (size_t i = 0; i < len; i++) {
                int c = (unsigned char) s[i];

                if (c == '%') {
                        int hi = i + 2 < len ? unhex(s[i + 1]) : -1;
                        int lo = hi >= 0 ? unhex(s[i + 2]) : -1;

                        if (hi < 0 || lo < 0) {
                                return -EBADMSG;
                        }
                        c = hi * 16 + lo;
                        i += 2;
                } else if (c == '+' && query) {
                        c = ' ';
                }
                if (c < 0x20 || c >= 0x7f) {
                        return -EBADMSG;
                }
                v[k++] = (char) c;
        }
        v[k] = '\0';
        *ret = TAKE_PTR(v);
        return 0;
}

int route_query_param(const char *target, const char *name, char **ret)
{
        const char *q = strchr(target, '?');
        size_t n = strlen(name);

        *ret = NULL;
        for (q = q ? q + 1 : NULL; q && *q && *q != '#';
             q = strchr(q, '&') ? strchr(q, '&') + 1 : NULL) {
                size_t len = strcspn(q, "&#");
                int r;

                if (len < n || !strneq(q, name, n) || (len > n && q[n] != '=')) {
                        continue;
                }
                /* Named twice: one request read two ways is refused, not guessed at. */
                if (*ret) {
                        free(*ret);
                        *ret = NULL;
                        return -ENOTUNIQ;
                }
                /* "name" alone is "name=": empty. */
                r = len == n ? ((*ret = strdup("")) ? 0 : -ENOMEM)
                             : route_unescape(q + n + 1, len - n - 1, true, ret);
                if (r < 0) {
                        return r;
                }
        }
        return 0;
}

int route_query_unknown(const char *target, const char *const *known, char **ret)
{
        const char *q = strchr(target, '?');

        *ret = NULL;
        for (q = q ? q + 1 : NULL; q && *q && *q != '#';
             q = strchr(q, '&') ? strchr(q, '&') + 1 : NULL) {
                size_t len = strcspn(q, "=&#");
                bool ok = len == 0; /* "a&&b", a trailing "&" */

                for (const char *const *k = known; !ok && *k; k++) {
                        ok = strlen(*k) == len && strneq(q, *k, len);
                }
                if (!ok) {
                        *ret = strndup(q, len);
                        return *ret ? 1 : -ENOMEM;
                }
        }
        return 0;
}

int route_key_find(char *const *keys, const char *authorization, const char *x_api_key)
{
        const char *h = NULL;
        int found = -ENOKEY, i = 0;

        if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0) {
                h = authorization + 7;
                h += strspn(h, " ");
        } else if (x_api_key) {
                h = x_api_key;
        }
        if (!h || !keys) {
                return -ENOKEY;
        }
        /* Every key compared in full: the time does not tell which one came close. */
        size_t hl = strlen(h);
        STRV_FOREACH(k, keys) {
                size_t kl = strlen(*k);
                unsigned char diff = (unsigned char) (kl != hl);

                for (size_t j = 0; j < kl; j++) {
                        diff |= (unsigned char) ((*k)[j] ^ (j < hl ? h[j] : 0));
                }
                found = diff == 0 ? i : found;
                i++;
        }
        return found;
}

bool route_key_ok(char *const *keys, const char *authorization, const char *x_api_key)
{
        return route_key_find(keys, authorization, x_api_key) >= 0;
}

/* Digits only, no sign, no space, no overflow: a Content-Length as RFC 9110 writes it. */
static int route_parse_length(const char *s, uint64_t *ret)
{
        uint64_t v = 0;

        if (!*s) {
                return -EINVAL;
        }
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) {
                        return -EINVAL;
                }
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return 0;
}

/* RFC 9110's token: what MHD passes on unchecked. */
static bool route_method_ok(const char *m)
{
        size_t n = strlen(m);

        return n > 0 && n <= 32 &&
               strspn(m,
                      "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") ==
                       n;
}

static void route_refuse(Route *r, unsigned status, const char *type, const char *message)
{
        r->kind = ROUTE_REFUSE;
        r->status = status;
        r->error_type = type;
        r->message = message;
        /* The body was not read: the connection cannot carry another request. */
        r->close = r->close || r->has_body;
}

/* Content-Length and Transfer-Encoding: what comes after the headers. Conflicting framing is
 * how requests are smuggled past a proxy; it is refused and the connection closed. */
static bool route_framing(const RouteInput *in, Route *r)
{
        size_t n_cl = strv_length(in->content_length), n_te = strv_length(in->transfer_encoding);

        if (n_cl > 0 && n_te > 0) {
                r->close = true;
                route_refuse(r, 400, "invalid_request_error",
                             "both Content-Length and Transfer-Encoding were sent");
                return false;
        }
        STRV_FOREACH(cl, in->content_length) {
                uint64_t v;

                if (route_parse_length(*cl, &v) < 0) {
                        r->close = true;
                        route_refuse(r, 400, "invalid_request_error",
                                     "Content-Length is not a number");
                        return false;
                }
                if (cl != in->content_length && v != r->content_length) {
                        r->close = true;
                        route_refuse(r, 400, "invalid_request_error",
                                     "Content-Length was sent twice with different values");
                        return false;
                }
                r->content_length = v;
        }
        if (n_te > 1 || (n_te == 1 && strcasecmp(in->transfer_encoding[0], "chunked") != 0)) {
                r->close = true;
                route_refuse(r, 501, "not_implemented_error",
                             "only \"Transfer-Encoding: chunked\" is supported");
                return false;
        }
        r->chunked = n_te == 1;
        r->has_body = r->chunked || r->content_length > 0;
        return true;
}

static const struct {
        const char *path;
        RouteApi api;
} route_api_table[] = {
        { "/v1/messages", ROUTE_API_MESSAGES },
        { "/messages", ROUTE_API_MESSAGES },
        { "/v1/responses", ROUTE_API_RESPONSES },
        { "/responses", ROUTE_API_RESPONSES },
};

static RouteApi route_api(const char *path)
{
        for (size_t i = 0; i < ELEMENTSOF(route_api_table); i++) {
                if (streq(path, route_api_table[i].path)) {
                        return route_api_table[i].api;
                }
        }
        return ROUTE_API_OPENAI;
}

/* The first path of api: the label of its requests in the metrics. */
static const char *route_api_path(RouteApi api)
{
        for (size_t i = 0; i < ELEMENTSOF(route_api_table); i++) {
                if (route_api_table[i].api == api) {
                        return route_api_table[i].path;
                }
        }
        return "other";
}

/* "/v1/models/ID" or "/models/ID": the ID (a pointer into path), else NULL. */
static const char *route_model_id(const char *path)
{
        const char *id = startswith(path, "/v1/models/");

        id = id ? id : startswith(path, "/models/");
        return id && *id ? id : NULL;
}

int route_request(const RouteInput *in, Route *r)
{
        const char *why = NULL;
        unsigned m;
        const RouteEntry *e;
        bool public;
        int k;

        *r = (Route) {};
        if (!route_framing(in, r)) {
                return 0;
        }
        if (in->target_cut) {
                /* What follows the NUL would be another path for whoever reads all of it. */
                r->close = true;
                route_refuse(r, 400, "invalid_request_error", "a NUL byte in the request line");
                return 0;
        }
        if (!route_method_ok(in->method)) {
                r->close = true;
                route_refuse(r, 400, "invalid_request_error", "the method is not an HTTP token");
                return 0;
        }
        if (streq(in->method, "OPTIONS")) {
                /* Whatever the path: preflight never reaches a child. It needs no key, so it
                 * takes no body either: a body would hold a connection busy without one. */
                if (r->has_body) {
                        route_refuse(r, 400, "invalid_request_error",
                                     "a preflight request takes no body");
                        return 0;
                }
                r->kind = ROUTE_PREFLIGHT;
                return 0;
        }
        k = route_normalize_path(in->target, &r->path, &why);
        if (k == -ENOMEM) {
                return k;
        }
        if (k < 0) {
                route_refuse(r, 400, "invalid_request_error", why);
                return 0;
        }
        /* The query goes on as written: it is the child's to read, but only printable ASCII
         * (what a client must escape, it must escape here too). */
        const char *q = in->target + strcspn(in->target, "?#");
        for (const char *c = q; *c; c++) {
                if ((unsigned char) *c <= 0x20 || (unsigned char) *c >= 0x7f) {
                        route_refuse(r, 400, "invalid_request_error",
                                     "the query holds a byte outside printable ASCII");
                        return 0;
                }
        }
        if (*q == '?') {
                char *p = strjoin2(r->path, q);
                if (!p) {
                        return -ENOMEM;
                }
                free(r->path);
                r->path = p;
        }
        m = streq(in->method, "GET") || streq(in->method, "HEAD") ? M_GET
            : streq(in->method, "POST")                           ? M_POST
                                                                  : 0;
        *strchrnul(r->path, '?') = '\0'; /* the path alone, for the tables */
        e = route_find(r->path);
        r->api = route_api(r->path);
        if (!e && !in->model_port && route_model_id(r->path)) {
                static const RouteEntry retrieve = { "/v1/models/", M_GET, ROUTE_MODELS, false,
                                                     true };
                const char *id = route_model_id(r->path);

                e = &retrieve;
                /* An id with "/" or ":" comes escaped (SDKs escape path parameters): as it is. */
                k = route_unescape(id, strlen(id), false, &r->model_id);
                if (k == -ENOMEM) {
                        return k;
                }
                if (k < 0) {
                        route_refuse(r, 400, "invalid_request_error",
                                     "the model id holds a byte outside printable ASCII");
                        return 0;
                }
        }
        if (*q == '?') {
                r->path[strlen(r->path)] = '?';
        }
        /* metrics-public: for a scraper on a private network, the metrics alone. */
        public = e && (m & e->methods) &&
                 (in->model_port ? e->public && e->kind != ROUTE_LLMD
                                 : e->public || (e->kind == ROUTE_METRICS && in->metrics_public));
        if (public && r->has_body) {
                /* Public requests need no key; a body would let one hold a connection busy. */
                route_refuse(r, 400, "invalid_request_error", "this request takes no body");
                return 0;
        }
        r->endpoint = e ? e->path : r->api != ROUTE_API_OPENAI ? route_api_path(r->api) : "other";
        if (in->api_keys) {
                /* Which key, for the activity log: its position, never the key. */
                k = route_key_find(in->api_keys, in->authorization, in->x_api_key);
                r->key = k >= 0 ? (unsigned) k + 1 : 0;
        }
        if (in->api_keys && !public && r->key == 0) {
                route_refuse(r, 401, "authentication_error", "Invalid API Key");
                return 0;
        }
        if (!e && !in->model_port && startswith(r->path, "/llmd/")) {
                /* llmd's own: never a child's, whatever llama-server may add one day. */
                route_refuse(r, 404, "not_found_error", "no such path under /llmd/");
                return 0;
        }
        if (in->model_port) {
                /* Everything goes to that model, as it would to llama-server itself. */
                r->kind = ROUTE_GENERATE;
                r->json_body = m == M_POST && e && e->json_body;
        } else if (e && !(e->methods & m)) {
                route_refuse(r, 405, "invalid_request_error", "method not allowed for this path");
                return 0;
        } else if (e) {
                r->kind = e->kind;
                r->json_body = m == M_POST && e->json_body;
        } else {
                /* A path llmd does not know goes to the model, as it would to llama-server,
                 * which adds APIs often (Anthropic Messages, OpenAI Responses, its web page):
                 * its "model" routes it like any other, and the child answers what it does not
                 * serve. */
                r->kind = ROUTE_GENERATE;
                r->json_body = r->has_body;
                r->json_optional = true;
        }
        if (m == M_POST && !r->chunked && strv_length(in->content_length) == 0) {
                r->close = true; /* a body may follow, of a length nobody knows */
                route_refuse(r, 411, "invalid_request_error", "a Content-Length is required");
                return 0;
        }
        if (r->content_length > in->max_body_size) {
                route_refuse(r, 413, "invalid_request_error",
                             "the body is larger than max-body-size");
                return 0;
        }
        return 0;
}

void route_done(Route *r)
{
        free(r->path);
        r->path = NULL;
        free(r->model_id);
        r->model_id = NULL;
}

static const ModelConfig *route_embed_model(const Config *c, const char *asked)
{
        const ModelConfig *first = NULL;

        FOREACH_MODEL(m, c) {
                if (!m->pin || !m->embeddings) {
                        continue;
                }
                if (asked && (streq(m->name, asked) || strv_contains(m->aliases, asked))) {
                        return m;
                }
                first = first ? first : m;
        }
        return first;
}

int route_target(const Config *c, const RouteTargetInput *in, const char **ret_target,
                 unsigned *ret_status, const char **ret_type, char **ret_message)
{
        char *msg = NULL;

        *ret_target = NULL;
        if (in->listener_model) {
                *ret_target = in->listener_model;
                return 0;
        }
        if (in->kind == ROUTE_EMBED) {
                const ModelConfig *e = route_embed_model(c, in->model_asked);
                if (e) {
                        *ret_target = e->name;
                        return 0;
                }
                /* No embedding model pinned: the active model answers (or says it cannot). */
        }
        /* After llmctl stop, nothing loads a model but llmctl start or switch: not even a
         * request naming one under routing = switch. */
        if (!in->loaded && in->active) {
                *ret_status = 503;
                *ret_type = "unavailable_error";
                *ret_message =
                        strdup("no model is loaded (llmctl stop was used; llmctl start loads it)");
                return *ret_message ? 0 : -ENOMEM;
        }
        if (in->model_asked && c->routing != ROUTING_ACTIVE && in->kind == ROUTE_GENERATE) {
                const ModelConfig *m = config_find_model(c, in->model_asked);

                if (c->routing == ROUTING_REJECT &&
                    (!m || !in->active || !streq(m->name, in->active))) {
                        if (asprintf(&msg,
                                     "The model `%s` does not exist or is not loaded (serving: %s)",
                                     in->model_asked, in->active ? in->active : "none") < 0) {
                                return -ENOMEM;
                        }
                        *ret_status = 404;
                        *ret_type = "model_not_found";
                        *ret_message = msg;
                        return 0;
                }
                if (c->routing == ROUTING_SWITCH && m && !m->pin) {
                        *ret_target = m->name;
                        return 0;
                }
                if (c->routing == ROUTING_SWITCH && !m) {
                        if (asprintf(&msg, "The model `%s` does not exist", in->model_asked) < 0) {
                                return -ENOMEM;
                        }
                        *ret_status = 404;
                        *ret_type = "model_not_found";
                        *ret_message = msg;
                        return 0;
                }
        }
        *ret_status = 503;
        *ret_type = "unavailable_error";
        if (!in->active) {
                *ret_message = strdup("no generation model is configured");
                return *ret_message ? 0 : -ENOMEM;
        }
        *ret_target = in->active;
        return 0;
}

/* An origin served from this machine: http(s)://localhost, 127.x.x.x or [::1], any port. */
static bool route_origin_loopback(const char *o)
{
        const char *h = strneq(o, "http://", 7) ? o + 7 : strneq(o, "https://", 8) ? o + 8 : NULL;
        size_t n;

        if (!h) {
                return false;
        }
        n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
        if (h[n] != '\0' && h[n] != ':') {
                return false;
        }
        if (h[n] == ':' &&
            (h[n + 1] == '\0' || strspn(h + n + 1, "0123456789") != strlen(h + n + 1))) {
                return false;
        }
        return (n == 9 && strneq(h, "localhost", 9)) || (n == 5 && strneq(h, "[::1]", 5)) ||
               (n >= 7 && strneq(h, "127.", 4) && strspn(h, "0123456789.") == n);
}

bool route_origin_any(char *const *origins, bool keys)
{
        return origins ? streq(origins[0], "*") : keys;
}

bool route_origin_allowed(char *const *origins, bool keys, const char *origin, const char *host)
{
        const char *h = strneq(origin, "http://", 7)    ? origin + 7
                        : strneq(origin, "https://", 8) ? origin + 8
                                                        : NULL;

        if (route_origin_any(origins, keys)) {
                return true;
        }
        /* The same origin: a page llmd itself serves (llama-server's web UI at /). */
        if (host && h && strcasecmp(h, host) == 0) {
                return true;
        }
        return origins ? strv_contains(origins, origin) : route_origin_loopback(origin);
}

bool route_host_allowed(const char *host, const char *hostname)
{
        _cleanup_free_ char *name = NULL;
        struct in_addr a4;
        size_t n;

        if (host[0] == '[') {
                return strchr(host, ']') != NULL; /* an IPv6 address: no name to rebind */
        }
        n = strcspn(host, ":");
        if (host[n] == ':' &&
            (host[n + 1] == '\0' || strspn(host + n + 1, "0123456789") != strlen(host + n + 1))) {
                return false;
        }
        name = strndup(host, n);
        if (!name) {
                return false;
        }
        if (inet_pton(AF_INET, name, &a4) == 1) {
                return true;
        }
        n = strlen(name);
        if (n > 0 && name[n - 1] == '.') {
                name[--n] = '\0';
        }
        return strcasecmp(name, "localhost") == 0 ||
               (n > 10 && strcasecmp(name + n - 10, ".localhost") == 0) ||
               (hostname && *hostname && strcasecmp(name, hostname) == 0);
}
