/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "fileio.h"
#include "json-scan.h"
#include "log.h"
#include "proxy.h"
#include "strv.h"
#include "upstream.h"

#define PROXY_BUFFER_MAX (64 * 1024) /* per stream: more and the upstream read pauses */
#define PROXY_API_KEYS_MAX 256

typedef enum RouteKind {
        ROUTE_GENERATE, /* to the active generation model */
        ROUTE_EMBED,    /* to the pinned embedding model */
        ROUTE_MODELS,   /* answered by llmd */
        ROUTE_HEALTH,   /* answered by llmd */
        ROUTE_OTHER,    /* any other GET: to the active model (its web page, say) */
} RouteKind;

enum {
        M_GET = 1 << 0,
        M_POST = 1 << 1,
};

typedef struct Route {
        const char *path;
        unsigned methods;
        RouteKind kind;
        bool json_body; /* a POST whose body is JSON with "model" and "stream" */
} Route;

static const Route routes[] = {
        { "/apply-template", M_POST, ROUTE_GENERATE, true },
        { "/chat/completions", M_POST, ROUTE_GENERATE, true },
        { "/completion", M_POST, ROUTE_GENERATE, true },
        { "/completions", M_POST, ROUTE_GENERATE, true },
        { "/detokenize", M_POST, ROUTE_GENERATE, true },
        { "/embedding", M_POST, ROUTE_EMBED, true },
        { "/embeddings", M_POST, ROUTE_EMBED, true },
        { "/health", M_GET, ROUTE_HEALTH, false },
        { "/infill", M_POST, ROUTE_GENERATE, true },
        { "/metrics", M_GET, ROUTE_GENERATE, false },
        { "/models", M_GET, ROUTE_MODELS, false },
        { "/props", M_GET | M_POST, ROUTE_GENERATE, true },
        { "/rerank", M_POST, ROUTE_EMBED, true },
        { "/reranking", M_POST, ROUTE_EMBED, true },
        { "/slots", M_GET | M_POST, ROUTE_GENERATE, false },
        { "/tokenize", M_POST, ROUTE_GENERATE, true },
        { "/v1/chat/completions", M_POST, ROUTE_GENERATE, true },
        { "/v1/completions", M_POST, ROUTE_GENERATE, true },
        { "/v1/embeddings", M_POST, ROUTE_EMBED, true },
        { "/v1/health", M_GET, ROUTE_HEALTH, false },
        { "/v1/models", M_GET, ROUTE_MODELS, false },
        { "/v1/rerank", M_POST, ROUTE_EMBED, true },
};

typedef enum RequestState {
        REQ_RECEIVING,
        REQ_HELD,
        REQ_FORWARDED,
        REQ_RELAYING,
        REQ_ANSWERED,
} RequestState;

typedef struct Listener Listener;
typedef struct Request Request;

struct Listener {
        Proxy *proxy;
        struct MHD_Daemon *daemon;
        sd_event_source *io;
        sd_event_source *timer;
        char *model; /* a model's own port: everything goes there */
        char *name;  /* for messages */
        Listener *next;
};

struct Request {
        Proxy *proxy;
        Listener *listener;
        struct MHD_Connection *connection;
        RequestState state;
        const Route *route;
        char *method;
        char *path; /* with the query */
        char *content_type;
        char *accept;
        char *body;
        size_t body_len, body_size;
        bool body_too_big;
        char *model_asked; /* "model" of the body */
        bool stream;
        char *target; /* the profile that serves it */

        /* A response made while the connection was suspended, queued when MHD calls again. */
        struct MHD_Response *response;
        unsigned status;
        bool suspended;
        sd_event_source *hangup; /* watches the client while suspended */
        sd_event_source *hold_timer;
        bool client_gone;

        Upstream *upstream;
        bool sse;
        char *buf;
        size_t buf_len, buf_off;
        bool upstream_done;
        int upstream_error;

        uint64_t start_usec, first_byte_usec;
        uint64_t bytes_out;
        Request *prev, *next; /* in the held queue, or the list of forwarded requests */
};

typedef struct Drain {
        Proxy *proxy;
        char *model;
        void (*done)(void *userdata);
        void *userdata;
        sd_event_source *timer;
        struct Drain *next;
} Drain;

struct Proxy {
        sd_event *event;
        Supervisor *supervisor;
        UpstreamMulti *upstream;
        Listener *listeners;
        sd_event_source *post;
        Request *held_first, *held_last;
        Request *forwarded;
        Drain *drains;
        char **api_keys;
        ProxyCounters counters;
};

static void request_dispatch(Request *r);
static void request_answer_error(Request *r, unsigned status, const char *type,
                                 const char *message, const char *retry_after);
static void proxy_check_drains(Proxy *p);
static void proxy_maybe_switch(Proxy *p);

static uint64_t now_usec(const Proxy *p)
{
        uint64_t t = 0;

        (void) sd_event_now(p->event, CLOCK_MONOTONIC, &t);
        return t;
}

static const Config *proxy_config(const Proxy *p)
{
        return supervisor_config(p->supervisor);
}

/* ---- responses ---- */

static char *json_escape(const char *s)
{
        cJSON *j = cJSON_CreateString(s);
        char *out = j ? cJSON_PrintUnformatted(j) : NULL;

        cJSON_Delete(j);
        return out;
}

/* {"error":{"message":...,"type":...,"code":...}}, the shape OpenAI and llama-server use. */
static char *error_body(unsigned status, const char *type, const char *message)
{
        _cleanup_free_ char *m = json_escape(message);
        char *b;

        if (!m || asprintf(&b, "{\"error\":{\"message\":%s,\"type\":\"%s\",\"code\":%u}}", m, type,
                           status) < 0) {
                return NULL;
        }
        return b;
}

static struct MHD_Response *json_response(char *body)
{
        struct MHD_Response *resp;

        if (!body) {
                return NULL;
        }
        resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return NULL;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json; charset=utf-8");
        MHD_add_response_header(resp, "Server", "llmd");
        return resp;
}

static void request_suspend(Request *r);
static void request_resume(Request *r);

/* Sets the response to send; it goes out now if MHD is calling us, else on resume. */
static void request_set_response(Request *r, unsigned status, struct MHD_Response *resp)
{
        if (r->response) {
                MHD_destroy_response(r->response);
        }
        r->response = resp;
        r->status = status;
        r->state = REQ_ANSWERED;
        if (status >= 400) {
                r->proxy->counters.errors++;
        }
        request_resume(r);
}

static void request_answer_error(Request *r, unsigned status, const char *type,
                                 const char *message, const char *retry_after)
{
        struct MHD_Response *resp = json_response(error_body(status, type, message));

        if (resp && retry_after) {
                MHD_add_response_header(resp, "Retry-After", retry_after);
        }
        request_set_response(r, status, resp);
}

/* ---- the client going away while we wait ---- */

static void request_unlink(Request *r);

static int request_on_hangup(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Request *r = userdata;

        /* Suspended connections are not watched by MHD: this is how a vanished client is seen
         * while it waits for a model or for its first token. Cancel the upstream now, so the
         * child stops generating; MHD closes the rest when resumed. */
        r->client_gone = true;
        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        if (r->upstream) {
                upstream_cancel(TAKE_PTR(r->upstream));
        }
        request_unlink(r);
        if (!r->response) {
                request_set_response(r, 499, json_response(error_body(499, "client_closed", "client went away")));
        } else {
                r->upstream_done = true;
                r->upstream_error = -ECONNRESET;
                request_resume(r);
        }
        return 0;
}

static void request_suspend(Request *r)
{
        const union MHD_ConnectionInfo *ci;

        if (r->suspended) {
                return;
        }
        MHD_suspend_connection(r->connection);
        r->suspended = true;
        ci = MHD_get_connection_info(r->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci) {
                return;
        }
        if (r->hangup) {
                (void) sd_event_source_set_enabled(r->hangup, SD_EVENT_ON);
        } else if (sd_event_add_io(r->proxy->event, &r->hangup, ci->connect_fd,
                                   EPOLLRDHUP, request_on_hangup, r) < 0) {
                r->hangup = NULL;
        }
}

static void request_resume(Request *r)
{
        if (!r->suspended) {
                return;
        }
        /* Off before MHD has the socket again: it may close it. */
        (void) sd_event_source_set_enabled(r->hangup, SD_EVENT_OFF);
        r->suspended = false;
        MHD_resume_connection(r->connection);
        /* MHD_run() follows from the post source, in this loop iteration. */
}

/* ---- lists ---- */

/* The held queue keeps arrival order (first..last); the forwarded list has no order. */
static void held_append(Proxy *p, Request *r)
{
        r->next = NULL;
        r->prev = p->held_last;
        if (p->held_last) {
                p->held_last->next = r;
        } else {
                p->held_first = r;
        }
        p->held_last = r;
}

static void forwarded_push(Proxy *p, Request *r)
{
        r->prev = NULL;
        r->next = p->forwarded;
        if (p->forwarded) {
                p->forwarded->prev = r;
        }
        p->forwarded = r;
}

static void request_unlink(Request *r)
{
        Proxy *p = r->proxy;

        if (r->state == REQ_HELD) {
                if (r->prev) {
                        r->prev->next = r->next;
                } else {
                        p->held_first = r->next;
                }
                if (r->next) {
                        r->next->prev = r->prev;
                } else {
                        p->held_last = r->prev;
                }
                p->counters.held--;
                r->hold_timer = sd_event_source_disable_unref(r->hold_timer);
        } else if (r->state == REQ_FORWARDED || r->state == REQ_RELAYING) {
                if (r->prev) {
                        r->prev->next = r->next;
                } else {
                        p->forwarded = r->next;
                }
                if (r->next) {
                        r->next->prev = r->prev;
                }
                p->counters.in_flight--;
        } else {
                return;
        }
        r->prev = r->next = NULL;
        /* Keep the state meaningful for the log line, but out of both lists. */
        if (r->state == REQ_HELD) {
                r->state = REQ_RECEIVING;
        } else {
                r->state = REQ_ANSWERED;
        }
        proxy_check_drains(p);
}

/* ---- upstream ---- */

static void upstream_on_headers(void *userdata, long status, const char *content_type,
                                int64_t content_length);
static int upstream_on_data(void *userdata, const char *data, size_t len);
static void upstream_on_done(void *userdata, int error, const char *message);

static const UpstreamCallbacks upstream_callbacks = {
        .headers = upstream_on_headers,
        .data = upstream_on_data,
        .done = upstream_on_done,
};

static ssize_t request_read(void *cls, uint64_t pos, char *buf, size_t max)
{
        Request *r = cls;
        size_t n = r->buf_len - r->buf_off;

        if (n > 0) {
                n = MIN(n, max);
                memcpy(buf, r->buf + r->buf_off, n);
                r->buf_off += n;
                r->bytes_out += n;
                if (r->buf_off == r->buf_len) {
                        r->buf_off = r->buf_len = 0;
                }
                /* Room again: let the upstream go on (it may refill the buffer right here). */
                if (r->upstream && r->buf_len - r->buf_off < PROXY_BUFFER_MAX / 2) {
                        upstream_resume(r->upstream);
                }
                return (ssize_t) n;
        }
        if (r->upstream_done) {
                if (r->upstream_error < 0 && !r->sse) {
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                }
                return MHD_CONTENT_READER_END_OF_STREAM;
        }
        /* Nothing yet: wait for the upstream without spinning. */
        request_suspend(r);
        return 0;
}

static void upstream_on_headers(void *userdata, long status, const char *content_type,
                                int64_t content_length)
{
        Request *r = userdata;
        struct MHD_Response *resp;

        r->first_byte_usec = now_usec(r->proxy);
        r->sse = content_type && strneq(content_type, "text/event-stream", 17);
        resp = MHD_create_response_from_callback(
                content_length >= 0 && !r->sse ? (uint64_t) content_length : MHD_SIZE_UNKNOWN,
                16 * 1024, request_read, r, NULL);
        if (!resp) {
                return;
        }
        if (content_type) {
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        }
        MHD_add_response_header(resp, "Server", "llmd");
        if (r->sse) {
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
                MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        }
        if (r->response) {
                MHD_destroy_response(r->response);
        }
        r->response = resp;
        r->status = (unsigned) status;
        r->state = REQ_RELAYING;
        request_resume(r);
}

static int upstream_on_data(void *userdata, const char *data, size_t len)
{
        Request *r = userdata;

        if (r->buf_len - r->buf_off >= PROXY_BUFFER_MAX) {
                return -EAGAIN; /* a slow client: the child waits too */
        }
        if (r->buf_off > 0) {
                memmove(r->buf, r->buf + r->buf_off, r->buf_len - r->buf_off);
                r->buf_len -= r->buf_off;
                r->buf_off = 0;
        }
        char *n = realloc(r->buf, r->buf_len + len);
        if (!n) {
                return -EAGAIN;
        }
        r->buf = n;
        memcpy(r->buf + r->buf_len, data, len);
        r->buf_len += len;
        request_resume(r);
        return 0;
}

/* The end of a stream the client must not take for a complete one. */
static void request_append_error_event(Request *r, const char *message)
{
        _cleanup_free_ char *b = error_body(502, "server_error", message);
        _cleanup_free_ char *ev = NULL;

        if (!b || asprintf(&ev, "data: %s\n\n", b) < 0) {
                return;
        }
        size_t l = strlen(ev);
        char *n = realloc(r->buf, r->buf_len + l);
        if (!n) {
                return;
        }
        r->buf = n;
        memcpy(r->buf + r->buf_len, ev, l);
        r->buf_len += l;
}

static void upstream_on_done(void *userdata, int error, const char *message)
{
        Request *r = userdata;

        r->upstream = NULL; /* freed by upstream.c after this */
        r->upstream_done = true;
        r->upstream_error = error;
        if (r->state == REQ_FORWARDED) {
                /* No headers came: the child died or refused the connection. */
                _cleanup_free_ char *m = NULL;
                if (asprintf(&m, "%s: llama-server failed: %s", r->target, message ? message : "?") < 0) {
                        m = NULL;
                }
                request_unlink(r);
                request_answer_error(r, 502, "server_error", m ? m : "upstream failed", NULL);
                return;
        }
        if (error < 0 && r->sse) {
                _cleanup_free_ char *m = NULL;
                if (asprintf(&m, "%s: llama-server ended the stream: %s", r->target,
                             message ? message : "?") >= 0) {
                        request_append_error_event(r, m);
                }
                r->upstream_error = 0; /* the event says it; the stream ends cleanly */
                r->proxy->counters.errors++;
        }
        request_unlink(r);
        request_resume(r);
}

/* ---- targets ---- */

static Child *embed_child(const Proxy *p, const char *asked)
{
        size_t n;
        Child **children = supervisor_children(p->supervisor, &n);
        Child *first = NULL;

        for (size_t i = 0; i < n; i++) {
                const ModelConfig *m = child_config(children[i]);

                if (!m->pin || !m->embeddings) {
                        continue;
                }
                if (asked && (streq(m->name, asked) || strv_contains(m->aliases, asked))) {
                        return children[i];
                }
                first = first ? first : children[i];
        }
        return first;
}

/* Which profile serves r; NULL with an answer given when none will. */
static const char *request_resolve(Request *r)
{
        Proxy *p = r->proxy;
        const Config *c = proxy_config(p);
        const char *active = supervisor_active(p->supervisor);

        if (r->listener->model) {
                return r->listener->model;
        }
        if (r->route && r->route->kind == ROUTE_EMBED) {
                Child *e = embed_child(p, r->model_asked);
                if (e) {
                        return child_name(e);
                }
                /* No embedding model pinned: the active model answers (or says it cannot). */
        }
        if (r->model_asked && c->routing != ROUTING_ACTIVE &&
            (!r->route || r->route->kind == ROUTE_GENERATE)) {
                const ModelConfig *m = config_find_model(c, r->model_asked);

                if (c->routing == ROUTING_REJECT) {
                        if (!m || !active || !streq(m->name, active)) {
                                _cleanup_free_ char *msg = NULL;
                                if (asprintf(&msg, "The model `%s` does not exist or is not loaded (serving: %s)",
                                             r->model_asked, active ? active : "none") < 0) {
                                        msg = NULL;
                                }
                                request_answer_error(r, 404, "model_not_found", msg ? msg : "model not found", NULL);
                                return NULL;
                        }
                } else if (m && !m->pin) {
                        return m->name; /* routing = switch */
                } else if (!m) {
                        _cleanup_free_ char *msg = NULL;
                        if (asprintf(&msg, "The model `%s` does not exist", r->model_asked) < 0) {
                                msg = NULL;
                        }
                        request_answer_error(r, 404, "model_not_found", msg ? msg : "model not found", NULL);
                        return NULL;
                }
        }
        if (!active) {
                request_answer_error(r, 503, "unavailable_error", "no generation model is configured", NULL);
                return NULL;
        }
        if (!supervisor_loaded(p->supervisor) && !(c->routing == ROUTING_SWITCH && r->model_asked)) {
                request_answer_error(r, 503, "unavailable_error",
                                     "no model is loaded (llmctl stop was used; llmctl start loads it)", "60");
                return NULL;
        }
        return active;
}

static void request_forward(Request *r, Child *c)
{
        UpstreamRequest ur = {
                .socket_path = child_socket_path(c),
                .method = r->method,
                .path = r->path,
                .content_type = r->content_type,
                .accept = r->accept,
                .body = r->body_len > 0 || streq(r->method, "POST") ? (r->body ? r->body : "") : NULL,
                .body_len = r->body_len,
        };
        int k;

        k = upstream_start(r->proxy->upstream, &ur, &upstream_callbacks, r, &r->upstream);
        if (k < 0) {
                request_answer_error(r, 502, "server_error", "cannot reach llama-server", NULL);
                return;
        }
        r->state = REQ_FORWARDED;
        forwarded_push(r->proxy, r);
        r->proxy->counters.in_flight++;
        request_suspend(r);
}

static int request_on_hold_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        Request *r = userdata;
        _cleanup_free_ char *m = NULL;

        request_unlink(r);
        if (asprintf(&m, "%s is still loading; gave up waiting after the hold timeout", r->target) < 0) {
                m = NULL;
        }
        request_answer_error(r, 503, "unavailable_error", m ? m : "hold timeout", "5");
        return 0;
}

static void request_hold(Request *r)
{
        Proxy *p = r->proxy;
        const Config *c = proxy_config(p);

        if (p->counters.held >= c->hold_queue) {
                request_answer_error(r, 503, "unavailable_error",
                                     "too many requests are waiting for a model to load", "5");
                return;
        }
        r->state = REQ_HELD;
        held_append(p, r);
        p->counters.held++;
        if (sd_event_add_time_relative(p->event, &r->hold_timer, CLOCK_MONOTONIC,
                                       c->hold_timeout_usec, USEC_PER_MSEC,
                                       request_on_hold_timeout, r) < 0) {
                r->hold_timer = NULL;
        }
        request_suspend(r);
}

/* Sends r on, holds it, or answers it, depending on its target's state. */
static void request_dispatch(Request *r)
{
        Proxy *p = r->proxy;
        Child *c = supervisor_child(p->supervisor, r->target);
        const char *switching;
        SwitchPhase phase;

        if (!c) {
                request_answer_error(r, 503, "unavailable_error", "the model is no longer configured", NULL);
                return;
        }
        bool is_switch_target = supervisor_switching(p->supervisor, &switching, &phase) &&
                                streq(switching, r->target);
        switch (child_state(c)) {
        case CHILD_READY:
                /* The old model of a switch in progress takes no new work. */
                if (supervisor_switching(p->supervisor, &switching, &phase) && !is_switch_target &&
                    !child_config(c)->pin) {
                        break;
                }
                request_forward(r, c);
                return;
        case CHILD_FAILED: {
                _cleanup_free_ char *m = NULL;
                if (asprintf(&m, "%s failed to load: %s", r->target,
                             child_reason(c) ? child_reason(c) : "?") < 0) {
                        m = NULL;
                }
                request_answer_error(r, 503, "unavailable_error", m ? m : "failed", "30");
                return;
        }
        case CHILD_STOPPED:
        case CHILD_LOADING:
        case CHILD_STOPPING:
        case CHILD_KILLING:
        case CHILD_BACKOFF:
        case _CHILD_STATE_MAX:
        case _CHILD_STATE_INVALID:
                break;
        }
        request_hold(r);
        proxy_maybe_switch(p);
}

void proxy_models_changed(Proxy *p)
{
        Request *r = p->held_first;

        /* In arrival order. A request dispatched now leaves the queue; one still waiting stays. */
        while (r) {
                Request *next = r->next;
                Child *c = supervisor_child(p->supervisor, r->target);
                ChildState st = c ? child_state(c) : CHILD_FAILED;
                const char *switching;
                SwitchPhase phase;
                bool busy = supervisor_switching(p->supervisor, &switching, &phase) &&
                            !streq(switching, r->target);

                if ((st == CHILD_READY && !busy) || st == CHILD_FAILED || !c) {
                        request_unlink(r);
                        request_dispatch(r);
                }
                r = next;
        }
        proxy_maybe_switch(p);
}

/* routing = switch: when nothing runs on the active model, swap to what the oldest waiting
 * request asks for. Requests for the active model go first, so a burst does not thrash. */
static void proxy_maybe_switch(Proxy *p)
{
        const char *active = supervisor_active(p->supervisor), *switching;
        SwitchPhase phase;
        _cleanup_free_ char *reason = NULL;

        if (proxy_config(p)->routing != ROUTING_SWITCH || !p->held_first ||
            supervisor_switching(p->supervisor, &switching, &phase)) {
                return;
        }
        for (Request *r = p->forwarded; r; r = r->next) {
                if (active && streq(r->target, active)) {
                        return;
                }
        }
        for (Request *r = p->held_first; r; r = r->next) {
                if (!active || !streq(r->target, active) || !supervisor_loaded(p->supervisor)) {
                        log_info("proxy: a request asks for %s: switching", r->target);
                        if (supervisor_switch(p->supervisor, r->target, 0, NULL, NULL, &reason) < 0) {
                                log_warning("proxy: cannot switch to %s: %s", r->target,
                                            reason ? reason : "?");
                        }
                        return;
                }
        }
}

/* ---- answers llmd gives itself ---- */

static const char *state_word(ChildState s)
{
        switch (s) {
        case CHILD_READY:
                return "loaded";
        case CHILD_LOADING:
        case CHILD_BACKOFF:
                return "loading";
        case CHILD_FAILED:
                return "failed";
        case CHILD_STOPPED:
        case CHILD_STOPPING:
        case CHILD_KILLING:
        case _CHILD_STATE_MAX:
        case _CHILD_STATE_INVALID:
                break;
        }
        return "unloaded";
}

static void request_answer_models(Request *r)
{
        cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
        size_t n;
        Child **children = supervisor_children(r->proxy->supervisor, &n);
        const char *active = supervisor_active(r->proxy->supervisor);

        cJSON_AddStringToObject(o, "object", "list");
        for (size_t i = 0; i < n; i++) {
                const ModelConfig *m = child_config(children[i]);
                const char *state = state_word(child_state(children[i]));
                char *const *names = m->aliases;

                /* The model, then each alias, so a client picking any of them finds it. */
                for (ssize_t k = -1; k < (ssize_t) strv_length(names); k++) {
                        cJSON *e = cJSON_CreateObject();

                        cJSON_AddStringToObject(e, "id", k < 0 ? m->name : names[k]);
                        cJSON_AddStringToObject(e, "object", "model");
                        cJSON_AddNumberToObject(e, "created", 0);
                        cJSON_AddStringToObject(e, "owned_by", "llmd");
                        cJSON_AddStringToObject(e, "state", state);
                        if (k >= 0) {
                                cJSON_AddStringToObject(e, "alias_of", m->name);
                        }
                        cJSON_AddBoolToObject(e, "active", active && streq(active, m->name));
                        cJSON_AddBoolToObject(e, "pinned", m->pin);
                        cJSON_AddBoolToObject(e, "embeddings", m->embeddings);
                        cJSON_AddItemToArray(data, e);
                }
        }
        char *body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        request_set_response(r, 200, json_response(body));
}

static void request_answer_health(Request *r)
{
        Proxy *p = r->proxy;
        const char *active = supervisor_active(p->supervisor);
        Child *c = active ? supervisor_child(p->supervisor, active) : NULL;
        cJSON *o = cJSON_CreateObject();
        unsigned status = 503;

        if (c && child_state(c) == CHILD_READY && supervisor_loaded(p->supervisor)) {
                cJSON_AddStringToObject(o, "status", "ok");
                cJSON_AddStringToObject(o, "model", active);
                status = 200;
        } else {
                _cleanup_free_ char *text = supervisor_status_text(p->supervisor);
                cJSON *e = cJSON_AddObjectToObject(o, "error");

                cJSON_AddStringToObject(e, "message", text ? text : "not ready");
                cJSON_AddStringToObject(e, "type", "unavailable_error");
                cJSON_AddNumberToObject(e, "code", 503);
                cJSON_AddStringToObject(o, "status", c ? state_word(child_state(c)) : "no model");
                if (c && child_reason(c) && child_state(c) == CHILD_FAILED) {
                        cJSON_AddStringToObject(o, "reason", child_reason(c));
                }
        }
        char *body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        request_set_response(r, status, json_response(body));
}

/* ---- MHD ---- */

static bool request_authorized(Request *r)
{
        const char *h;

        if (!r->proxy->api_keys) {
                return true;
        }
        h = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
                return false;
        }
        h += 7;
        /* Every key compared in full: the time does not tell which one came close. */
        bool ok = false;
        size_t hl = strlen(h);
        STRV_FOREACH(k, r->proxy->api_keys) {
                size_t kl = strlen(*k);
                unsigned char diff = (unsigned char) (kl != hl);
                for (size_t i = 0; i < kl; i++) {
                        diff |= (unsigned char) ((*k)[i] ^ (i < hl ? h[i] : 0));
                }
                ok |= diff == 0;
        }
        return ok;
}

static const Route *route_find(const char *path)
{
        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                if (streq(routes[i].path, path)) {
                        return &routes[i];
                }
        }
        return NULL;
}

static enum MHD_Result add_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
        char **q = cls;
        char *n;

        if (asprintf(&n, "%s%s%s%s%s", *q ? *q : "", *q ? "&" : "?", key, value ? "=" : "",
                     value ? value : "") < 0) {
                return MHD_NO;
        }
        free(*q);
        *q = n;
        return MHD_YES;
}

/* The first call: decide what can be decided from the request line and headers. */
static void request_begin(Request *r, const char *url, const char *method)
{
        Proxy *p = r->proxy;
        const Config *c = proxy_config(p);
        const char *cl = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *te = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_TRANSFER_ENCODING);
        _cleanup_free_ char *query = NULL;
        unsigned m = streq(method, "GET") || streq(method, "HEAD") ? M_GET
                     : streq(method, "POST")                        ? M_POST
                                                                     : 0;

        (void) MHD_get_connection_values(r->connection, MHD_GET_ARGUMENT_KIND, add_query_arg, &query);
        if (asprintf(&r->path, "%s%s", url, query ? query : "") < 0) {
                r->path = NULL;
        }
        r->content_type = strdup(MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND,
                                                             MHD_HTTP_HEADER_CONTENT_TYPE) ?: "application/json");
        const char *accept = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
        r->accept = accept ? strdup(accept) : NULL;
        r->route = r->listener->model ? NULL : route_find(url);

        if (streq(method, "OPTIONS")) {
                /* CORS preflight, answered as llama-server answers it. */
                struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
                const char *origin = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, "Origin");
                const char *req_headers = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND,
                                                                      "Access-Control-Request-Headers");
                if (resp) {
                        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin ? origin : "*");
                        MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
                        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST");
                        MHD_add_response_header(resp, "Access-Control-Allow-Headers", req_headers ? req_headers : "*");
                }
                request_set_response(r, 200, resp);
                return;
        }
        if (r->route && !(r->route->methods & m)) {
                request_answer_error(r, 405, "invalid_request_error", "method not allowed for this path", NULL);
                return;
        }
        if (!r->route && !r->listener->model && m != M_GET) {
                request_answer_error(r, 404, "not_found_error", "File Not Found", NULL);
                return;
        }
        if (r->route && (r->route->kind == ROUTE_GENERATE || r->route->kind == ROUTE_EMBED) &&
            !request_authorized(r)) {
                request_answer_error(r, 401, "authentication_error", "Invalid API Key", NULL);
                return;
        }
        if (!r->route && !request_authorized(r) && r->listener->model) {
                request_answer_error(r, 401, "authentication_error", "Invalid API Key", NULL);
                return;
        }
        if (m == M_POST) {
                if (!cl && !(te && strcasestr(te, "chunked"))) {
                        request_answer_error(r, 411, "invalid_request_error", "a Content-Length is required", NULL);
                        return;
                }
                if (cl && strtoull(cl, NULL, 10) > c->max_body_size) {
                        _cleanup_free_ char *msg = NULL;
                        if (asprintf(&msg, "the body is larger than max-body-size (%llu bytes)",
                                     (unsigned long long) c->max_body_size) < 0) {
                                msg = NULL;
                        }
                        request_answer_error(r, 413, "invalid_request_error", msg ? msg : "too large", NULL);
                        return;
                }
        }
}

/* The body is complete. */
static void request_complete(Request *r)
{
        const Config *c = proxy_config(r->proxy);

        if (r->body_too_big) {
                _cleanup_free_ char *msg = NULL;
                if (asprintf(&msg, "the body is larger than max-body-size (%llu bytes)",
                             (unsigned long long) c->max_body_size) < 0) {
                        msg = NULL;
                }
                request_answer_error(r, 413, "invalid_request_error", msg ? msg : "too large", NULL);
                return;
        }
        if (r->route && r->route->kind == ROUTE_MODELS) {
                request_answer_models(r);
                return;
        }
        if (r->route && r->route->kind == ROUTE_HEALTH) {
                request_answer_health(r);
                return;
        }
        if (r->route && r->route->json_body && streq(r->method, "POST")) {
                JsonScan js;

                if (json_scan_request(r->body ? r->body : "", r->body_len, &js) < 0) {
                        _cleanup_free_ char *msg = NULL;
                        if (asprintf(&msg, "invalid JSON in the request body at byte %zu: %s",
                                     js.error_offset, js.error) < 0) {
                                msg = NULL;
                        }
                        request_answer_error(r, 400, "invalid_request_error", msg ? msg : "invalid JSON", NULL);
                        return;
                }
                r->model_asked = TAKE_PTR(js.model);
                r->stream = js.stream;
        }
        const char *t = request_resolve(r);
        if (!t) {
                return;
        }
        r->target = strdup(t);
        if (!r->target) {
                request_answer_error(r, 500, "server_error", "out of memory", NULL);
                return;
        }
        request_dispatch(r);
}

static enum MHD_Result proxy_on_request(void *cls, struct MHD_Connection *connection,
                                        const char *url, const char *method, const char *version,
                                        const char *upload_data, size_t *upload_data_size,
                                        void **con_cls)
{
        Listener *l = cls;
        Proxy *p = l->proxy;
        Request *r = *con_cls;

        if (!r) {
                r = calloc(1, sizeof(Request));
                if (!r) {
                        return MHD_NO;
                }
                r->proxy = p;
                r->listener = l;
                r->connection = connection;
                r->state = REQ_RECEIVING;
                r->method = strdup(method);
                r->start_usec = now_usec(p);
                *con_cls = r;
                request_begin(r, url, method);
                /* A response queued now would close the connection (0.9.75): wait for the
                 * next call, which comes at once for a body-less request. */
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                if (!r->response && !r->body_too_big) {
                        size_t need = r->body_len + *upload_data_size;
                        if (need > proxy_config(p)->max_body_size) {
                                r->body_too_big = true; /* answered once the body is read */
                                free(r->body);
                                r->body = NULL;
                                r->body_len = 0;
                        } else {
                                if (need + 1 > r->body_size) {
                                        size_t size = MAX(need + 1, r->body_size * 2);
                                        char *b = realloc(r->body, size);
                                        if (!b) {
                                                return MHD_NO;
                                        }
                                        r->body = b;
                                        r->body_size = size;
                                }
                                memcpy(r->body + r->body_len, upload_data, *upload_data_size);
                                r->body_len += *upload_data_size;
                                r->body[r->body_len] = '\0';
                        }
                }
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (r->response) {
                struct MHD_Response *resp = TAKE_PTR(r->response);
                enum MHD_Result k = MHD_queue_response(connection, r->status, resp);
                MHD_destroy_response(resp);
                return k;
        }
        if (r->state == REQ_RECEIVING) {
                request_complete(r);
                if (r->response && !r->suspended) {
                        struct MHD_Response *resp = TAKE_PTR(r->response);
                        enum MHD_Result k = MHD_queue_response(connection, r->status, resp);
                        MHD_destroy_response(resp);
                        return k;
                }
                if (!r->response && !r->suspended) {
                        /* Could not even make an error response: out of memory. */
                        return MHD_NO;
                }
                return MHD_YES;
        }
        /* Resumed with nothing to say yet (a spurious wake-up): wait again. */
        request_suspend(r);
        return MHD_YES;
}

static void request_log(Request *r, enum MHD_RequestTerminationCode toe)
{
        Proxy *p = r->proxy;
        uint64_t now = now_usec(p);

        if (!proxy_config(p)->log_requests) {
                return;
        }
        log_info("%s %s model=%s → %s %u %llu B ttfb %.1f ms %.3f s%s",
                 r->method, r->path ? r->path : "?", r->model_asked ? r->model_asked : "-",
                 r->target ? r->target : "-", r->status, (unsigned long long) r->bytes_out,
                 r->first_byte_usec ? (double) (r->first_byte_usec - r->start_usec) / USEC_PER_MSEC : 0.0,
                 (double) (now - r->start_usec) / USEC_PER_SEC,
                 r->client_gone || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK ? " (client gone)" : "");
}

static void proxy_on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                               enum MHD_RequestTerminationCode toe)
{
        Request *r = *con_cls;

        if (!r) {
                return;
        }
        *con_cls = NULL;
        if (r->upstream) {
                /* The client left mid-stream: the child stops generating now. */
                upstream_cancel(TAKE_PTR(r->upstream));
        }
        request_unlink(r);
        r->proxy->counters.served++;
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status < 400) {
                r->proxy->counters.errors++;
        }
        request_log(r, toe);
        if (r->response) {
                MHD_destroy_response(r->response);
        }
        sd_event_source_disable_unref(r->hangup);
        sd_event_source_disable_unref(r->hold_timer);
        free(r->method);
        free(r->path);
        free(r->content_type);
        free(r->accept);
        free(r->body);
        free(r->model_asked);
        free(r->target);
        free(r->buf);
        free(r);
}

/* ---- the loop ---- */

static void listener_arm(Listener *l)
{
        MHD_UNSIGNED_LONG_LONG ms;

        if (MHD_get_timeout(l->daemon, &ms) == MHD_YES) {
                /* Idle timeouts are seconds away: with slack for them, sd-event need not
                 * reprogram its timer after every request. Short ones stay exact. */
                (void) sd_event_source_set_time_accuracy(l->timer, ms >= 1000 ? 250 * USEC_PER_MSEC : 1);
                (void) sd_event_source_set_time_relative(l->timer, (uint64_t) ms * USEC_PER_MSEC);
                (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
        } else {
                (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        }
}

static int proxy_on_post(sd_event_source *s, void *userdata)
{
        Proxy *p = userdata;

        /* After anything that happened in this iteration (a resume, new data): let MHD act. */
        for (Listener *l = p->listeners; l; l = l->next) {
                (void) MHD_run(l->daemon);
                listener_arm(l);
        }
        return 0;
}

static int listener_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        return 0; /* the post source runs MHD */
}

static int listener_on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        return 0; /* likewise */
}

static int listener_new(Proxy *p, int fd, const char *name, const char *model)
{
        const Config *c = proxy_config(p);
        const union MHD_DaemonInfo *info;
        Listener *l;
        int r;

        l = calloc(1, sizeof(Listener));
        if (!l) {
                safe_close(fd);
                return -ENOMEM;
        }
        l->proxy = p;
        l->name = strdup(name);
        l->model = model ? strdup(model) : NULL;
        l->daemon = MHD_start_daemon(
                MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO, 0, NULL, NULL,
                proxy_on_request, l,
                MHD_OPTION_LISTEN_SOCKET, fd,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned) c->max_connections,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) (c->idle_timeout_usec / USEC_PER_SEC),
                MHD_OPTION_NOTIFY_COMPLETED, proxy_on_completed, l,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) (64 * 1024),
                MHD_OPTION_END);
        if (!l->daemon) {
                safe_close(fd);
                free(l->name);
                free(l->model);
                free(l);
                return log_error_errno(EIO, "proxy: cannot start the HTTP server on %s", name);
        }
        info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        r = sd_event_add_io(p->event, &l->io, info->epoll_fd, EPOLLIN, listener_on_io, l);
        if (r >= 0) {
                r = sd_event_add_time_relative(p->event, &l->timer, CLOCK_MONOTONIC, 0, 1,
                                               listener_on_timer, l);
        }
        if (r < 0) {
                MHD_stop_daemon(l->daemon);
                free(l);
                return log_error_errno(r, "proxy: cannot watch %s: %m", name);
        }
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        l->next = p->listeners;
        p->listeners = l;
        log_info("proxy: listening on %s%s%s", name, model ? " for " : "", model ? model : "");
        return 0;
}

static int bind_tcp(const char *host, uint16_t port, char **ret_name)
{
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } a = {};
        socklen_t len;
        int fd, one = 1;
        bool v6 = strchr(host, ':') != NULL || isempty(host);

        if (v6) {
                a.in6.sin6_family = AF_INET6;
                a.in6.sin6_port = htons(port);
                if (!isempty(host) && inet_pton(AF_INET6, host, &a.in6.sin6_addr) != 1) {
                        return -EINVAL;
                }
                len = sizeof(a.in6);
        } else {
                a.in.sin_family = AF_INET;
                a.in.sin_port = htons(port);
                if (streq(host, "localhost")) {
                        host = "127.0.0.1";
                }
                if (inet_pton(AF_INET, host, &a.in.sin_addr) != 1) {
                        return -EINVAL;
                }
                len = sizeof(a.in);
        }
        fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                return -errno;
        }
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (v6 && !isempty(host)) {
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
        if (bind(fd, &a.sa, len) < 0 || listen(fd, 1024) < 0) {
                int r = -errno;
                safe_close(fd);
                return r;
        }
        if (asprintf(ret_name, v6 ? "[%s]:%u" : "%s:%u", isempty(host) ? "::" : host, port) < 0) {
                *ret_name = NULL;
        }
        return fd;
}

static int proxy_load_keys(Proxy *p)
{
        const Config *c = proxy_config(p);
        _cleanup_free_ char *text = NULL;
        _cleanup_strv_free_ char **keys = NULL;
        struct stat st;
        int r;

        p->api_keys = strv_free(p->api_keys);
        if (!c->api_key_file) {
                return 0;
        }
        if (stat(c->api_key_file, &st) < 0) {
                return log_error_errno(errno, "proxy: cannot read the API key file %s: %m", c->api_key_file);
        }
        if (st.st_mode & 0007) {
                return log_error_errno(EPERM, "proxy: %s is readable by others; chmod o-rwx it",
                                       c->api_key_file);
        }
        r = read_file(c->api_key_file, 64 * 1024, &text);
        if (r < 0) {
                return log_error_errno(r, "proxy: cannot read the API key file %s: %m", c->api_key_file);
        }
        if (strv_split(text, "\r\n", &keys) < 0) {
                return -ENOMEM;
        }
        STRV_FOREACH(k, keys) {
                if ((*k)[0] != '#' && strv_extend(&p->api_keys, *k) < 0) {
                        return -ENOMEM;
                }
        }
        if (strv_length(p->api_keys) == 0 || strv_length(p->api_keys) > PROXY_API_KEYS_MAX) {
                return log_error_errno(EINVAL, "proxy: %s holds no keys (or more than %d)",
                                       c->api_key_file, PROXY_API_KEYS_MAX);
        }
        log_info("proxy: %zu API key(s) from %s", strv_length(p->api_keys), c->api_key_file);
        return 0;
}

int proxy_new(sd_event *e, Supervisor *s, Proxy **ret)
{
        Proxy *p;
        int r;

        p = calloc(1, sizeof(Proxy));
        if (!p) {
                return -ENOMEM;
        }
        p->event = e;
        p->supervisor = s;
        r = upstream_multi_new(e, &p->upstream);
        if (r >= 0) {
                r = sd_event_add_post(e, &p->post, proxy_on_post, p);
        }
        if (r >= 0) {
                r = proxy_load_keys(p);
        }
        if (r < 0) {
                proxy_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

int proxy_start(Proxy *p)
{
        const Config *c = proxy_config(p);
        char **names = NULL;
        int n, r;

        /* Sockets from systemd (llmd.socket) come first: a restart refuses no connection. */
        n = sd_listen_fds_with_names(true, &names);
        for (int i = 0; i < MAX(n, 0); i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names && names[i] ? names[i] : "http";
                const char *model = strneq(name, "model-", 6) ? name + 6 : NULL;

                (void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                r = listener_new(p, fd, name, model);
                if (r < 0) {
                        strv_free(names);
                        return r;
                }
        }
        strv_free(names);
        if (n <= 0) {
                for (size_t i = 0; i < c->n_listen; i++) {
                        _cleanup_free_ char *name = NULL;
                        int fd = bind_tcp(c->listen[i].host, c->listen[i].port, &name);

                        if (fd < 0) {
                                return log_error_errno(fd, "proxy: cannot listen on %s:%u: %m",
                                                       isempty(c->listen[i].host) ? "*" : c->listen[i].host,
                                                       c->listen[i].port);
                        }
                        r = listener_new(p, fd, name ? name : "?", NULL);
                        if (r < 0) {
                                return r;
                        }
                }
        }
        /* A model's own port, as it had before llmd: loopback like the default listen. */
        FOREACH_MODEL(m, c) {
                _cleanup_free_ char *name = NULL;
                int fd;

                if (m->port == 0) {
                        continue;
                }
                fd = bind_tcp("127.0.0.1", m->port, &name);
                if (fd < 0) {
                        return log_error_errno(fd, "proxy: cannot listen on 127.0.0.1:%u for %s: %m",
                                               m->port, m->name);
                }
                r = listener_new(p, fd, name ? name : "?", m->name);
                if (r < 0) {
                        return r;
                }
        }
        return 0;
}

void proxy_quiesce(Proxy *p)
{
        for (Listener *l = p->listeners; l; l = l->next) {
                int fd = MHD_quiesce_daemon(l->daemon);
                /* We close it: no new connections; those open go on. */
                safe_close(fd);
        }
}

int proxy_reload(Proxy *p)
{
        return proxy_load_keys(p);
}

ProxyCounters proxy_counters(const Proxy *p)
{
        return p->counters;
}

/* ---- drains ---- */

static bool proxy_busy_with(const Proxy *p, const char *model)
{
        for (Request *r = p->forwarded; r; r = r->next) {
                if (r->target && streq(r->target, model)) {
                        return true;
                }
        }
        return false;
}

/* Ends the requests still running on model, each with an error its client can read. */
static void proxy_cut_off(Proxy *p, const char *model, const char *why)
{
        Request *r = p->forwarded;

        while (r) {
                Request *next = r->next;

                if (r->target && streq(r->target, model)) {
                        if (r->upstream) {
                                upstream_cancel(TAKE_PTR(r->upstream));
                        }
                        r->upstream_done = true;
                        if (r->state == REQ_FORWARDED) {
                                request_unlink(r);
                                request_answer_error(r, 503, "unavailable_error", why, "5");
                        } else {
                                if (r->sse) {
                                        request_append_error_event(r, why);
                                } else {
                                        r->upstream_error = -ECANCELED;
                                }
                                request_unlink(r);
                                request_resume(r);
                        }
                }
                r = next;
        }
}

static void drain_free(Proxy *p, Drain *d)
{
        Drain **i = &p->drains;

        while (*i && *i != d) {
                i = &(*i)->next;
        }
        if (*i) {
                *i = d->next;
        }
        sd_event_source_disable_unref(d->timer);
        free(d->model);
        free(d);
}

static void drain_finish(Proxy *p, Drain *d)
{
        void (*done)(void *) = d->done;
        void *userdata = d->userdata;

        drain_free(p, d);
        done(userdata);
}

static int drain_on_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        Drain *d = userdata;
        Proxy *p = d->proxy;
        _cleanup_free_ char *model = strdup(d->model);

        if (!model) {
                drain_finish(p, d);
                return 0;
        }
        log_warning("proxy: requests on %s still running after drain-timeout, cutting them off",
                    model);
        /* Cutting them off ends the drain, through proxy_check_drains(). */
        proxy_cut_off(p, model, "the model was switched and the request ran past drain-timeout");
        return 0;
}

static void proxy_check_drains(Proxy *p)
{
        Drain *d = p->drains;

        while (d) {
                Drain *next = d->next;

                if (!proxy_busy_with(p, d->model)) {
                        drain_finish(p, d);
                }
                d = next;
        }
}

void proxy_drain(Proxy *p, const char *model, bool now, void (*done)(void *userdata),
                 void *userdata)
{
        Drain *d;

        if (now) {
                proxy_cut_off(p, model, "the model was switched (llmctl switch --now)");
        }
        if (!proxy_busy_with(p, model)) {
                done(userdata);
                return;
        }
        d = calloc(1, sizeof(Drain));
        if (!d || !(d->model = strdup(model))) {
                free(d);
                done(userdata);
                return;
        }
        d->proxy = p;
        d->done = done;
        d->userdata = userdata;
        d->next = p->drains;
        p->drains = d;
        if (sd_event_add_time_relative(p->event, &d->timer, CLOCK_MONOTONIC,
                                       proxy_config(p)->drain_timeout_usec, USEC_PER_MSEC,
                                       drain_on_timeout, d) < 0) {
                d->timer = NULL;
        }
        log_info("proxy: letting the requests on %s finish (drain-timeout %.0f s)", model,
                 (double) proxy_config(p)->drain_timeout_usec / USEC_PER_SEC);
}

Proxy *proxy_free(Proxy *p)
{
        if (!p) {
                return NULL;
        }
        /* Whoever waits for a drain is told, so nothing waits for ever. */
        while (p->drains) {
                drain_finish(p, p->drains);
        }
        /* Every suspended connection must be resumed before MHD stops. */
        for (Request *r = p->held_first; r; r = r->next) {
                r->hold_timer = sd_event_source_disable_unref(r->hold_timer);
        }
        for (Listener *l = p->listeners; l;) {
                Listener *next = l->next;

                for (Request *r = p->held_first; r; r = r->next) {
                        if (r->listener == l) {
                                request_resume(r);
                        }
                }
                for (Request *r = p->forwarded; r; r = r->next) {
                        if (r->listener == l) {
                                if (r->upstream) {
                                        upstream_cancel(TAKE_PTR(r->upstream));
                                }
                                r->upstream_done = true;
                                request_resume(r);
                        }
                }
                l = next;
        }
        for (Listener *l = p->listeners; l;) {
                Listener *next = l->next;

                sd_event_source_disable_unref(l->io);
                sd_event_source_disable_unref(l->timer);
                MHD_stop_daemon(l->daemon);
                free(l->name);
                free(l->model);
                free(l);
                l = next;
        }
        sd_event_source_disable_unref(p->post);
        upstream_multi_free(p->upstream);
        strv_free(p->api_keys);
        free(p);
        return NULL;
}
