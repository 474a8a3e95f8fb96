/* SPDX-License-Identifier: MIT */
#pragma once

#include "config.h"
#include "macro.h"

/*
 * Everything the proxy decides from a request line and its headers, before a byte of the body
 * is read, as one pure function: framing, the path, the key, the route. No state, no I/O, no
 * logging: route_request() is table-tested and fuzzed, and the proxy only carries it out.
 *
 * The path is normalised once and the result is used for routing, for the key check and for
 * forwarding alike: percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2 makes
 * them the same path), and a path that would still change under normalisation — a "." or ".."
 * segment, an invalid or NUL escape, a byte outside printable ASCII — is refused with 400. No
 * spelling of a path reaches a child that its plain spelling would not.
 *
 * With API keys, every request needs one except the public list: GET and HEAD of /health,
 * /v1/health, /models, /v1/models, /v1/models/ID, the dashboard's page (/llmd/, which holds no
 * data: what it shows comes through /llmd/events, with the key), CORS preflight (OPTIONS),
 * and /llmd/metrics where metrics-public is set. A key is taken from
 * "Authorization: Bearer KEY" or "X-Api-Key: KEY", as llama-server takes it.
 */

typedef enum RouteKind {
        ROUTE_GENERATE,  /* to the active generation model (routing decides which); also every
                          * path llmd does not know */
        ROUTE_EMBED,     /* to the pinned embedding model */
        ROUTE_MODELS,    /* answered by llmd: every model and its state, or one (/v1/models/ID) */
        ROUTE_HEALTH,    /* answered by llmd */
        ROUTE_PREFLIGHT, /* CORS preflight, answered by llmd */
        ROUTE_METRICS,   /* GET /llmd/metrics: Prometheus text, answered by llmd */
        ROUTE_ACTIVITY,  /* GET /llmd/activity: the last requests, answered by llmd */
        ROUTE_LLMD,      /* llmd's own API and pages: the dashboard (/llmd/...) and llama-server's
                          * router API (/models/load, /models/unload, /models/sse); dashboard.h */
        ROUTE_REFUSE,    /* an error, answered before the body is read */
        _ROUTE_KIND_MAX,
} RouteKind;

/* The API a path speaks, for the errors llmd itself writes into its streams: each API's
 * clients read their own event format. */
typedef enum RouteApi {
        ROUTE_API_OPENAI,    /* chat and text completions, and everything else */
        ROUTE_API_MESSAGES,  /* Anthropic Messages: /v1/messages */
        ROUTE_API_RESPONSES, /* OpenAI Responses: /v1/responses */
} RouteApi;

typedef struct RouteInput {
        const char *method;
        const char *target;        /* the request-target as written, with its query */
        const char *authorization; /* header values; NULL when absent */
        const char *x_api_key;
        char *const *content_length;    /* every Content-Length header, NULL-terminated */
        char *const *transfer_encoding; /* every Transfer-Encoding header, NULL-terminated */
        char *const *api_keys;          /* NULL: no keys, everything is open */
        uint64_t max_body_size;
        bool model_port;     /* a model's own port: all of it goes to that model */
        bool target_cut;     /* a NUL byte in the request line cut target short */
        bool metrics_public; /* /llmd/metrics needs no key */
} RouteInput;

typedef struct Route {
        RouteKind kind;
        RouteApi api;
        bool json_body;     /* a POST body carrying "model" and "stream" */
        bool json_optional; /* a body that is not a JSON object goes on as it is */
        bool has_body;      /* a body follows (Content-Length > 0, or chunked) */
        bool chunked;
        uint64_t content_length;
        /* ROUTE_REFUSE: the answer. close: the body (or the framing) was not read; the
         * connection cannot be reused. */
        unsigned status;
        const char *error_type;
        const char *message;
        bool close;
        char *path;     /* normalised, with the query as written: what is forwarded */
        char *model_id; /* ROUTE_MODELS: the id of GET /v1/models/{id}, or NULL for the list */
        const char *endpoint; /* the path as a metrics label: a known path, or "other" (static) */
        unsigned key; /* which key it carried: its position among the keys, from 1; 0 none */
} Route;

/* Fills ret; -ENOMEM is the only failure. Call route_done() after, also for ROUTE_REFUSE. */
int route_request(const RouteInput *in, Route *ret);
void route_done(Route *r);

/* The path part of target normalised as above into *ret (query excluded); -EBADMSG with
 * *ret_why set when it must be refused, -ENOMEM. */
int route_normalize_path(const char *target, char **ret, const char **ret_why);

/* The value of the query parameter name in target (its %-escapes and "+" decoded) into *ret, or
 * NULL when it is absent ("name" alone is empty); -EBADMSG for a value that does not decode to
 * printable ASCII, -ENOTUNIQ when name is given twice. */
int route_query_param(const char *target, const char *name, char **ret);
/* The name of the first query parameter in target that is not one of known (NULL-terminated),
 * as written, into *ret: 1 when there is one, 0 when not (*ret NULL), -ENOMEM. */
int route_query_unknown(const char *target, const char *const *known, char **ret);

/* Whether header (an Authorization or X-Api-Key value) carries one of keys; compares in time
 * that does not depend on where a key differs. */
bool route_key_ok(char *const *keys, const char *authorization, const char *x_api_key);
/* Which of keys it carries (from 0), or -ENOKEY; in the same time whichever it is. */
int route_key_find(char *const *keys, const char *authorization, const char *x_api_key);

const char *route_kind_to_string(RouteKind k);

/* Which model serves a request whose route is kind (ROUTE_GENERATE or ROUTE_EMBED), from the
 * configuration and the models' state: *ret_target is a profile name of c, or, when none will
 * serve it, 0 is returned with *ret_status and *ret_message (allocated) set. */
typedef struct RouteTargetInput {
        RouteKind kind;
        const char *listener_model; /* a model's own port */
        const char *model_asked;    /* "model" of the body, or NULL */
        const char *active;         /* the active generation model, or NULL */
        bool loaded;                /* false after llmctl stop */
} RouteTargetInput;

int route_target(const Config *c, const RouteTargetInput *in, const char **ret_target,
                 unsigned *ret_status, const char **ret_type, char **ret_message);

/* CORS and the origins llmd serves. origins is cors-origins (NULL: unset), keys whether an
 * api-key-file is set. Unset, any origin is allowed with keys; without, only pages served from
 * this machine (http(s)://localhost, 127.x.x.x, [::1], any port). A page's own origin (host,
 * the Host header, when given) is always allowed. */
bool route_origin_any(char *const *origins, bool keys);
bool route_origin_allowed(char *const *origins, bool keys, const char *origin, const char *host);
/* Whether a Host header names this machine: an IP address, localhost or *.localhost, or
 * hostname (gethostname()). Without keys, other names are refused: a web page whose name an
 * attacker points at 127.0.0.1 (DNS rebinding) must not reach the models. */
bool route_host_allowed(const char *host, const char *hostname);
