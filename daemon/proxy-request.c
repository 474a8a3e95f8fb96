/* SPDX-License-Identifier: MIT */
#include <cjson/cJSON.h>
#include <stdio.h>

#include "json-scan.h"
#include "log.h"
#include "proxy-internal.h"
#include "router-api.h"
#include "strv.h"

/* ---- the table ---- */

/* clang-format off */
static const int8_t transitions[_REQ_STATE_MAX][_REQ_EVENT_MAX] = {
        [REQ_RECEIVING] = {
                [REQ_EVENT_ANSWER] = REQ_ANSWERED, [REQ_EVENT_HOLD] = REQ_HELD,
                [REQ_EVENT_FORWARD] = REQ_FORWARDED, [REQ_EVENT_HEADERS] = -1,
                [REQ_EVENT_UPSTREAM_END] = -1, [REQ_EVENT_STALL] = -1,
                [REQ_EVENT_CUT_OFF] = -1, [REQ_EVENT_GONE] = -1,
        },
        [REQ_HELD] = {
                [REQ_EVENT_ANSWER] = REQ_ANSWERED, [REQ_EVENT_HOLD] = -1,
                [REQ_EVENT_FORWARD] = REQ_FORWARDED, [REQ_EVENT_HEADERS] = -1,
                [REQ_EVENT_UPSTREAM_END] = -1, [REQ_EVENT_STALL] = -1,
                [REQ_EVENT_CUT_OFF] = -1, [REQ_EVENT_GONE] = REQ_ANSWERED,
        },
        [REQ_FORWARDED] = {
                [REQ_EVENT_ANSWER] = -1, [REQ_EVENT_HOLD] = -1, [REQ_EVENT_FORWARD] = -1,
                [REQ_EVENT_HEADERS] = REQ_RELAYING, [REQ_EVENT_UPSTREAM_END] = REQ_ANSWERED,
                [REQ_EVENT_STALL] = REQ_ANSWERED, [REQ_EVENT_CUT_OFF] = REQ_ANSWERED,
                [REQ_EVENT_GONE] = REQ_ANSWERED,
        },
        [REQ_RELAYING] = {
                [REQ_EVENT_ANSWER] = -1, [REQ_EVENT_HOLD] = -1, [REQ_EVENT_FORWARD] = -1,
                [REQ_EVENT_HEADERS] = -1, [REQ_EVENT_UPSTREAM_END] = REQ_FLUSHING,
                [REQ_EVENT_STALL] = REQ_FLUSHING, [REQ_EVENT_CUT_OFF] = REQ_FLUSHING,
                [REQ_EVENT_GONE] = REQ_FLUSHING,
        },
        [REQ_FLUSHING] = {
                [REQ_EVENT_ANSWER] = -1, [REQ_EVENT_HOLD] = -1, [REQ_EVENT_FORWARD] = -1,
                [REQ_EVENT_HEADERS] = -1, [REQ_EVENT_UPSTREAM_END] = -1, [REQ_EVENT_STALL] = -1,
                [REQ_EVENT_CUT_OFF] = -1, [REQ_EVENT_GONE] = -1,
        },
        [REQ_ANSWERED] = {
                [REQ_EVENT_ANSWER] = -1, [REQ_EVENT_HOLD] = -1, [REQ_EVENT_FORWARD] = -1,
                [REQ_EVENT_HEADERS] = -1, [REQ_EVENT_UPSTREAM_END] = -1, [REQ_EVENT_STALL] = -1,
                [REQ_EVENT_CUT_OFF] = -1, [REQ_EVENT_GONE] = -1,
        },
};
/* clang-format on */

int request_transition(RequestState state, RequestEvent event)
{
        if (state < 0 || state >= _REQ_STATE_MAX || event < 0 || event >= _REQ_EVENT_MAX ||
            transitions[state][event] < 0) {
                return -EINVAL;
        }
        return transitions[state][event];
}

const char *request_state_to_string(RequestState s)
{
        static const char *const names[_REQ_STATE_MAX] = {
                [REQ_RECEIVING] = "receiving", [REQ_HELD] = "held",
                [REQ_FORWARDED] = "forwarded", [REQ_RELAYING] = "relaying",
                [REQ_FLUSHING] = "flushing",   [REQ_ANSWERED] = "answered",
        };
        return s >= 0 && s < _REQ_STATE_MAX ? names[s] : NULL;
}

const char *request_event_to_string(RequestEvent e)
{
        /* clang-format off */
        static const char *const names[_REQ_EVENT_MAX] = {
                [REQ_EVENT_ANSWER] = "answer",   [REQ_EVENT_HOLD] = "hold",
                [REQ_EVENT_FORWARD] = "forward", [REQ_EVENT_HEADERS] = "headers",
                [REQ_EVENT_UPSTREAM_END] = "upstream-end", [REQ_EVENT_STALL] = "stall",
                [REQ_EVENT_CUT_OFF] = "cut-off", [REQ_EVENT_GONE] = "gone",
        };
        /* clang-format on */
        return e >= 0 && e < _REQ_EVENT_MAX ? names[e] : NULL;
}

/* ---- carrying it out ---- */

static int request_on_hold_timeout(sd_event_source *s, uint64_t usec, void *userdata);
static int request_on_upstream_timer(sd_event_source *s, uint64_t usec, void *userdata);

static bool request_in_flight(RequestState s)
{
        return s == REQ_FORWARDED || s == REQ_RELAYING;
}

static uint64_t request_upstream_timeout(const Request *r)
{
        const ModelConfig *m =
                r->target ? config_find_model(proxy_config(r->proxy), r->target) : NULL;

        return m ? m->upstream_timeout_usec : 600 * USEC_PER_SEC;
}

/* The one place a request changes state; the queues, counters, timers and the upstream
 * transfer follow from the old and the new state. */
void request_step(Request *r, RequestEvent event)
{
        Proxy *p = r->proxy;
        RequestState old = r->state;
        int next = request_transition(old, event);

        if (next < 0) {
                /* A bug, not a client's doing: say so and keep the old state. */
                log_error("proxy: a request got event %s in state %s; ignored",
                          request_event_to_string(event), request_state_to_string(old));
                return;
        }
        if (old == REQ_HELD) {
                r->held_usec += proxy_now(p) - r->held_since_usec;
                hold_remove(p, r);
                p->counters.held--;
                r->timer = sd_event_source_disable_unref(r->timer);
        }
        if (request_in_flight(old) && !request_in_flight(next)) {
                hold_forwarded_remove(p, r);
                p->counters.in_flight--;
                r->timer = sd_event_source_disable_unref(r->timer);
                if (r->upstream) {
                        /* Cut off, stalled or left: the child stops generating now. */
                        upstream_cancel(TAKE_PTR(r->upstream));
                }
        }
        r->state = next;
        switch (r->state) {
        case REQ_HELD:
                r->held_since_usec = proxy_now(p);
                hold_append(p, r);
                p->counters.held++;
                if (sd_event_add_time_relative(p->event, &r->timer, CLOCK_MONOTONIC,
                                               proxy_config(p)->hold_timeout_usec, USEC_PER_MSEC,
                                               request_on_hold_timeout, r) < 0) {
                        r->timer = NULL;
                }
                request_suspend(r);
                break;
        case REQ_FORWARDED:
                r->forwarded = true;
                hold_forwarded_push(p, r);
                p->counters.in_flight++;
                r->upstream_usec = proxy_now(p);
                /* Armed once; it looks at the last byte's time when it fires, so a byte
                 * arriving costs no timer update. */
                if (sd_event_add_time_relative(p->event, &r->timer, CLOCK_MONOTONIC,
                                               request_upstream_timeout(r), USEC_PER_SEC,
                                               request_on_upstream_timer, r) < 0) {
                        r->timer = NULL;
                }
                request_suspend(r);
                break;
        case REQ_RELAYING:
        case REQ_FLUSHING:
        case REQ_ANSWERED:
                request_resume(r);
                break;
        case REQ_RECEIVING:
        case _REQ_STATE_MAX:
                break;
        }
        if (!request_in_flight(old) && request_in_flight(next)) {
                supervisor_request_begin(p->supervisor, r->target);
        }
        if (request_in_flight(old) && !request_in_flight(next)) {
                supervisor_request_end(p->supervisor, r->target); /* used until now */
                hold_check_drains(p);
        }
}

/* ---- responses ---- */

/* The JSON text of j, which is freed; NULL when out of memory. */
char *json_print_delete(cJSON *j)
{
        char *out = j ? cJSON_PrintUnformatted(j) : NULL;

        cJSON_Delete(j);
        return out;
}

static char *json_escape(const char *s)
{
        return json_print_delete(cJSON_CreateString(s));
}

/* {"error":{"message":...,"type":...,"code":...}}, the shape OpenAI and llama-server use. */
/* OpenAI's error object; an Anthropic Messages client also looks for "type": "error" around it
 * (its SDKs read error.type and error.message, which are there for both). */
static char *error_body(RouteApi api, unsigned status, const char *type, const char *message)
{
        _cleanup_free_ char *m = json_escape(message);
        char *b;

        if (!m ||
            asprintf(&b, "{%s\"error\":{\"message\":%s,\"type\":\"%s\",\"code\":%u}}",
                     api == ROUTE_API_MESSAGES ? "\"type\":\"error\"," : "", m, type, status) < 0) {
                return NULL;
        }
        return b;
}

/* CORS, on every answer alike (see route_origin_allowed() and cors-origins in
 * llama-generate.conf(5)). Credentials are never allowed: llmd uses no cookies. */
static void request_add_cors(Request *r, struct MHD_Response *resp)
{
        char *const *origins = proxy_config(r->proxy)->cors_origins;
        bool keys = r->proxy->api_keys != NULL;

        if (route_origin_any(origins, keys)) {
                MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
                return;
        }
        if (r->origin && route_origin_allowed(origins, keys, r->origin, NULL)) {
                MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->origin);
        }
        MHD_add_response_header(resp, "Vary", "Origin");
}

struct MHD_Response *request_json_response(Request *r, char *body)
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
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "application/json; charset=utf-8");
        MHD_add_response_header(resp, "Server", "llmd");
        request_add_cors(r, resp);
        return resp;
}

/* Sets llmd's own answer; it goes out now if MHD is calling us, else on resume. */
void request_answer(Request *r, unsigned status, struct MHD_Response *resp, RequestEvent event)
{
        if (r->response) {
                MHD_destroy_response(r->response);
        }
        r->response = resp;
        r->status = status;
        if (status >= 400) {
                r->proxy->counters.errors++;
        }
        request_step(r, event);
}

static void request_answer_error_full(Request *r, RequestEvent event, unsigned status,
                                      const char *type, const char *message,
                                      const char *retry_after)
{
        struct MHD_Response *resp =
                request_json_response(r, error_body(r->route.api, status, type, message));

        request_note_error(r, type, message);
        if (resp && retry_after) {
                MHD_add_response_header(resp, "Retry-After", retry_after);
        }
        if (resp && r->route.close) {
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        }
        request_answer(r, status, resp, event);
}

void request_answer_json(Request *r, unsigned status, char *body)
{
        request_answer(r, status, request_json_response(r, body), REQ_EVENT_ANSWER);
}

void request_answer_response(Request *r, unsigned status, struct MHD_Response *resp)
{
        if (resp) {
                MHD_add_response_header(resp, "Server", "llmd");
                request_add_cors(r, resp);
        }
        request_answer(r, status, resp, REQ_EVENT_ANSWER);
}

void request_answer_error(Request *r, unsigned status, const char *type, const char *message,
                          const char *retry_after)
{
        request_answer_error_full(r, REQ_EVENT_ANSWER, status, type, message, retry_after);
}

/* ---- the client going away while we wait ---- */

/* Suspended connections are not watched by MHD: this is how a vanished client is seen while it
 * waits for a model or for its first token. Leaving the state cancels the upstream, so the
 * child stops generating; MHD closes the rest when resumed. */
static void request_on_client_gone(Request *r)
{
        if (r->state == REQ_RELAYING) {
                r->upstream_error = -ECONNRESET;
                request_step(r, REQ_EVENT_GONE);
        } else if (r->state == REQ_HELD || r->state == REQ_FORWARDED) {
                request_answer_error_full(r, REQ_EVENT_GONE, 499, "client_closed",
                                          "client went away", NULL);
        }
}

static int conn_on_hangup(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Conn *c = userdata;
        Request *r = c->suspended;

        c->hup = true; /* if MHD has the connection now, seen again at the next suspend */
        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        if (r) {
                request_on_client_gone(r);
        }
        return 0;
}

void request_suspend(Request *r)
{
        Conn *c;

        if (r->suspended) {
                return;
        }
        MHD_suspend_connection(r->connection);
        r->suspended = true;
        c = request_conn(r);
        if (!c) {
                return;
        }
        if (c->hup) {
                request_on_client_gone(r);
                return;
        }
        c->suspended = r;
        if (!c->hangup && sd_event_add_io(r->proxy->event, &c->hangup, c->fd, EPOLLRDHUP | EPOLLET,
                                          conn_on_hangup, c) < 0) {
                c->hangup = NULL;
        }
}

static void request_unmark_suspended(Request *r)
{
        Conn *c = request_conn(r);

        if (c && c->suspended == r) {
                c->suspended = NULL;
        }
}

void request_resume(Request *r)
{
        if (!r->suspended) {
                return;
        }
        r->suspended = false;
        request_unmark_suspended(r);
        MHD_resume_connection(r->connection);
        proxy_kick(r->proxy);
}

/* ---- the relay ---- */

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
        size_t n = MIN(buffer_pending(&r->buf) - r->sse_held, max);

        if (n > 0) {
                memcpy(buf, r->buf.data + r->buf.off, n);
                buffer_consume(&r->buf, n);
                r->bytes_out += n;
                /* Room again: let the upstream go on (it may refill the buffer right here). */
                if (r->upstream && buffer_pending(&r->buf) < PROXY_BUFFER_MAX / 2) {
                        upstream_resume(r->upstream);
                }
                return (ssize_t) n;
        }
        if (r->state == REQ_FLUSHING) {
                if (r->upstream_error < 0) {
                        /* MHD closes the connection in a run of its own, which nothing else
                         * may bring soon: a run now. */
                        proxy_kick(r->proxy);
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                }
                return MHD_CONTENT_READER_END_OF_STREAM;
        }
        /* Nothing yet: wait for the upstream without spinning. */
        request_suspend(r);
        return 0;
}

/* The answer to the client: the child's headers that matter, and its body from buf as it
 * comes (total: its length, or MHD_SIZE_UNKNOWN), or all of it, already there (whole). */
static struct MHD_Response *relay_response(Request *r, uint64_t total, const char *content_type,
                                           bool whole)
{
        struct MHD_Response *resp;

        if (whole) {
                /* Empty for a 204 or 304 that gave a Content-Length: no buffer then. */
                resp = MHD_create_response_from_buffer(
                        buffer_pending(&r->buf),
                        buffer_pending(&r->buf) > 0 ? r->buf.data + r->buf.off : (char *) "",
                        MHD_RESPMEM_MUST_COPY);
        } else {
                resp = MHD_create_response_from_callback(total, 16 * 1024, request_read, r, NULL);
        }
        if (!resp) {
                return NULL;
        }
        if (content_type) {
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        }
        MHD_add_response_header(resp, "Server", "llmd");
        request_add_cors(r, resp);
        if (r->sse) {
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
                MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        }
        return resp;
}

static void relay_headers(Request *r, struct MHD_Response *resp)
{
        if (r->response) {
                MHD_destroy_response(r->response);
        }
        r->response = resp;
        request_step(r, REQ_EVENT_HEADERS);
}

static void upstream_on_headers(void *userdata, long status, const char *content_type,
                                int64_t content_length)
{
        Request *r = userdata;
        struct MHD_Response *resp;

        r->first_byte_usec = r->upstream_usec = proxy_now(r->proxy);
        r->sse = content_type && strneq(content_type, "text/event-stream", 17);
        r->sse_held = 0;
        r->status = (unsigned) status;
        json_answer_init(&r->answer, r->sse);
        /* A whole answer of a few KiB (a non-streamed completion, embeddings) is usually in the
         * same read as its headers: it goes out with them when the child has sent it all. */
        if (!r->sse && content_length > 0 && content_length <= PROXY_BUFFER_MAX &&
            !streq(r->method, "HEAD") && buffer_pending(&r->buf) == 0) {
                free(r->whole_type);
                r->whole_type = content_type ? strdup(content_type) : NULL;
                r->whole = !content_type || r->whole_type;
                if (r->whole) {
                        return;
                }
        }
        resp = relay_response(
                r, content_length >= 0 && !r->sse ? (uint64_t) content_length : MHD_SIZE_UNKNOWN,
                content_type, false);
        if (resp) {
                relay_headers(r, resp);
        }
}

/* The whole answer is in: headers and body to the client. */
static void relay_whole(Request *r)
{
        struct MHD_Response *resp = relay_response(r, 0, r->whole_type, true);

        r->whole = false;
        if (!resp) {
                return;
        }
        r->bytes_out += buffer_pending(&r->buf);
        buffer_consume(&r->buf, buffer_pending(&r->buf));
        relay_headers(r, resp);
}

/* How many bytes at the end of s (the part of a stream not yet sent) are not a whole event:
 * after the last blank line. SSE ends a line with "\r\n", "\n" or a lone "\r", so an event
 * ends wherever a line end follows a line end ("\n\n", "\r\n\r\n", "\r\r", ...). A lone "\r"
 * may be the first half of "\r\n", but the line has ended either way. A tail as large as half
 * the buffer goes out as it is: an event that long is not held back. */
static size_t sse_unfinished(const char *s, size_t n)
{
        for (size_t i = n; i >= 2; i--) {
                size_t eol = s[i - 1] == '\n' && s[i - 2] == '\r' ? 2 : 1;

                if ((s[i - 1] == '\n' || s[i - 1] == '\r') && i > eol &&
                    (s[i - eol - 1] == '\n' || s[i - eol - 1] == '\r')) {
                        return n - i;
                }
        }
        return n >= PROXY_BUFFER_MAX / 2 ? 0 : n;
}

static int upstream_on_data(void *userdata, const char *data, size_t len)
{
        Request *r = userdata;

        r->upstream_usec = proxy_now(r->proxy);
        if (buffer_pending(&r->buf) >= PROXY_BUFFER_MAX || buffer_append(&r->buf, data, len) < 0) {
                return -EAGAIN; /* a slow client: the child waits too */
        }
        r->first_data_usec = r->first_data_usec ?: r->upstream_usec;
        json_answer_feed(&r->answer, data, len);
        if (r->whole) {
                return 0; /* sent with its headers when complete */
        }
        if (r->sse) {
                r->sse_held = sse_unfinished(r->buf.data + r->buf.len - (r->sse_held + len),
                                             r->sse_held + len);
        }
        request_resume(r);
        return 0;
}

/* The text of an error whose cause passes (a switch, a drain, a hold timeout, llmd stopping, a
 * child that died or stalled): retryable to clients that decide by the text. Mid-stream no
 * HTTP status reaches them -- the OpenAI SDK's error carries only error.message -- and agents
 * then match words: pi retries on /overloaded|...|service.?unavailable|server.?error|.../i
 * (its agent-session.ts), and "You can retry your request" is OpenAI's own wording. */
static char *transient_message(unsigned status, const char *why)
{
        char *m;

        if (asprintf(&m, "%s: %s; you can retry your request",
                     status == 503   ? "Service unavailable"
                     : status == 504 ? "Gateway timeout"
                                     : "Server error",
                     why) < 0) {
                return NULL;
        }
        return m;
}

/* The error event each API's clients read in a stream: chat and text completions a data-only
 * event with "error" (as llama-server sends it), Anthropic Messages "event: error", OpenAI
 * Responses "response.failed". Every one llmd sends is for a cause that passes. */
static char *sse_error_event(RouteApi api, unsigned status, const char *why)
{
        cJSON *o = cJSON_CreateObject(), *e;
        _cleanup_free_ char *data = NULL, *message = transient_message(status, why);
        const char *name = NULL;
        char *ev;

        if (!message) {
                cJSON_Delete(o);
                return NULL;
        }

        switch (api) {
        case ROUTE_API_MESSAGES:
                name = "error";
                cJSON_AddStringToObject(o, "type", "error");
                e = cJSON_AddObjectToObject(o, "error");
                /* Claude Code retries a stream's error by "overloaded_error" in its text
                 * (no status comes with it); "api_error" reads as final. */
                cJSON_AddStringToObject(e, "type",
                                        status == 504 ? "timeout_error" : "overloaded_error");
                cJSON_AddStringToObject(e, "message", message);
                break;
        case ROUTE_API_RESPONSES:
                name = "response.failed";
                cJSON_AddStringToObject(o, "type", "response.failed");
                e = cJSON_AddObjectToObject(o, "response");
                cJSON_AddStringToObject(e, "object", "response");
                cJSON_AddStringToObject(e, "status", "failed");
                e = cJSON_AddObjectToObject(e, "error");
                cJSON_AddStringToObject(e, "code", "server_error");
                cJSON_AddStringToObject(e, "message", message);
                break;
        case ROUTE_API_OPENAI:
                e = cJSON_AddObjectToObject(o, "error");
                cJSON_AddStringToObject(e, "message", message);
                cJSON_AddStringToObject(e, "type",
                                        status == 503 ? "unavailable_error" : "server_error");
                cJSON_AddNumberToObject(e, "code", status);
                break;
        }
        data = json_print_delete(o);
        if (!data || asprintf(&ev, "%s%s%sdata: %s\n\n", name ? "event: " : "", name ? name : "",
                              name ? "\n" : "", data) < 0) {
                return NULL;
        }
        return ev;
}

/* The end of a stream the client must not take for a complete one: an SSE error event, or,
 * where the answer is not a stream of events, a cut connection. */
static void request_end_badly(Request *r, RequestEvent event, unsigned status, const char *message)
{
        if (r->sse) {
                _cleanup_free_ char *ev = sse_error_event(r->route.api, status, message);

                /* A child cut off mid-event: that half event is dropped, never sent. */
                r->buf.len -= r->sse_held;
                r->sse_held = 0;
                if (ev) {
                        (void) buffer_append(&r->buf, ev, strlen(ev));
                }
        } else {
                r->upstream_error = -ECANCELED;
        }
        request_note_error(r, NULL, message);
        r->proxy->counters.errors++;
        request_step(r, event);
}

/* llmd's own answer for a cause that passes: the status and type clients retry on, and the
 * text of transient_message(). */
static void request_answer_transient_full(Request *r, RequestEvent event, unsigned status,
                                          const char *why, const char *retry_after)
{
        _cleanup_free_ char *m = transient_message(status, why);
        const char *type = status == 503 ? "unavailable_error" : "server_error";

        if (r->route.api == ROUTE_API_MESSAGES) {
                type = status == 504 ? "timeout_error" : "overloaded_error";
        }
        request_answer_error_full(r, event, status, type, m ? m : why, retry_after);
}

void request_answer_transient(Request *r, unsigned status, const char *why, const char *retry_after)
{
        request_answer_transient_full(r, REQ_EVENT_ANSWER, status, why, retry_after);
}

/* The answer's headers have not come: an error answer; else the stream ends badly. */
static void request_fail(Request *r, RequestEvent event, unsigned status, const char *message,
                         const char *retry_after)
{
        if (r->state == REQ_FORWARDED) {
                request_answer_transient_full(r, event, status, message, retry_after);
        } else if (r->state == REQ_RELAYING) {
                request_end_badly(r, event, status, message);
        }
}

static void upstream_on_done(void *userdata, int error, const char *message)
{
        Request *r = userdata;
        _cleanup_free_ char *m = NULL;

        r->upstream = NULL; /* freed by upstream.c after this */
        if (r->whole && error >= 0 && r->state == REQ_FORWARDED) {
                relay_whole(r);
        }
        /* Whether the child works: an answer it completed counts by its status, a transfer
         * that broke as a failure. */
        supervisor_request_outcome(r->proxy->supervisor, r->target,
                                   error >= 0 && r->state == REQ_RELAYING ? r->status : 502, false);
        if (error >= 0 && r->state == REQ_RELAYING) {
                r->sse_held = 0; /* the child ended it there: what it sent is the answer */
                request_step(r, REQ_EVENT_UPSTREAM_END);
                return;
        }
        if (asprintf(&m, "%s: llama-server %s: %s", r->target,
                     r->state == REQ_FORWARDED ? "failed" : "ended the stream",
                     message ? message : "?") < 0) {
                m = NULL;
        }
        request_fail(r, REQ_EVENT_UPSTREAM_END, 502, m ? m : "upstream failed", NULL);
}

static int request_on_upstream_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        Request *r = userdata;
        uint64_t timeout = request_upstream_timeout(r), now = proxy_now(r->proxy);
        _cleanup_free_ char *m = NULL;

        /* A byte came since it was armed, or the client is the slow one (the buffer is full
         * and the child waits for it): not a stall. Look again when it could be one. */
        if (now < r->upstream_usec + timeout || buffer_pending(&r->buf) >= PROXY_BUFFER_MAX) {
                uint64_t at = MAX(r->upstream_usec + timeout, now + USEC_PER_SEC);
                (void) sd_event_source_set_time(s, at);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        if (asprintf(
                    &m,
                    "%s: llama-server sent nothing for %llu s (upstream-timeout); the request was cancelled",
                    r->target, (unsigned long long) (timeout / USEC_PER_SEC)) < 0) {
                m = NULL;
        }
        log_warning("proxy: %s", m ? m : "upstream-timeout");
        supervisor_request_outcome(r->proxy->supervisor, r->target, 504, true);
        request_fail(r, REQ_EVENT_STALL, 504, m ? m : "upstream-timeout", NULL);
        return 0;
}

void request_cut_off(Request *r, const char *why)
{
        request_fail(r, REQ_EVENT_CUT_OFF, 503, why, "5");
}

void request_forward(Request *r, Child *c)
{
        UpstreamRequest ur = {
                .socket_path = child_socket_path(c),
                .method = r->method,
                .path = r->route.path,
                .content_type = r->content_type,
                .accept = r->accept,
                .body = r->body_len > 0 || streq(r->method, "POST") ? (r->body ? r->body : "")
                                                                    : NULL,
                .body_len = r->body_len,
        };

        child_touch(c);
        if (upstream_start(r->proxy->upstream, &ur, &upstream_callbacks, r, &r->upstream) < 0) {
                request_answer_transient(r, 502, "cannot reach llama-server", NULL);
                return;
        }
        request_step(r, REQ_EVENT_FORWARD);
}

static int request_on_hold_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        Request *r = userdata;
        _cleanup_free_ char *m = NULL;

        if (asprintf(&m, "%s is still loading; gave up waiting after the hold timeout", r->target) <
            0) {
                m = NULL;
        }
        request_answer_transient(r, 503, m ? m : "hold timeout", "5");
        return 0;
}

/* ---- answers llmd gives itself ---- */

/* One model of /v1/models under one of its names: OpenAI's fields, llama-server's "aliases"
 * and "meta" (while loaded), and llmd's state. */
static cJSON *model_entry(const Supervisor *sv, Child *c, const char *id, const char *active)
{
        const ModelConfig *m = child_config(c);
        const cJSON *meta = child_meta(c);
        cJSON *e = cJSON_CreateObject(), *aliases = cJSON_AddArrayToObject(e, "aliases");

        cJSON_AddStringToObject(e, "id", id);
        cJSON_AddStringToObject(e, "object", "model");
        cJSON_AddNumberToObject(e, "created", 0);
        cJSON_AddStringToObject(e, "owned_by", "llmd");
        cJSON_AddItemToArray(aliases, cJSON_CreateString(m->name));
        STRV_FOREACH(a, m->aliases) {
                cJSON_AddItemToArray(aliases, cJSON_CreateString(*a));
        }
        if (meta) {
                cJSON_AddItemToObject(e, "meta", cJSON_Duplicate(meta, true));
        }
        cJSON_AddStringToObject(e, "state",
                                serving_state_word(supervisor_serving(sv, m->name, NULL)));
        if (!streq(id, m->name)) {
                cJSON_AddStringToObject(e, "alias_of", m->name);
        }
        cJSON_AddBoolToObject(e, "active", active && streq(active, m->name));
        cJSON_AddBoolToObject(e, "pinned", m->pin);
        cJSON_AddBoolToObject(e, "embeddings", m->embeddings);
        router_api_extend_entry(e, (Supervisor *) sv, c);
        return e;
}

/* The Ollama-style entry llama-server also lists, for the clients that read that list. */
static cJSON *model_entry_ollama(Child *c)
{
        const ModelConfig *m = child_config(c);
        cJSON *e = cJSON_CreateObject(), *details;

        cJSON_AddStringToObject(e, "name", m->name);
        cJSON_AddStringToObject(e, "model", m->name);
        cJSON_AddStringToObject(e, "modified_at", "");
        cJSON_AddStringToObject(e, "size", "");
        cJSON_AddStringToObject(e, "digest", "");
        cJSON_AddStringToObject(e, "type", "model");
        cJSON_AddStringToObject(e, "description", "");
        cJSON_AddItemToObject(e, "tags", cJSON_CreateStringArray((const char *const[]) { "" }, 1));
        cJSON_AddItemToObject(
                e, "capabilities",
                cJSON_CreateStringArray(
                        (const char *const[]) { m->embeddings ? "embedding" : "completion" }, 1));
        cJSON_AddStringToObject(e, "parameters", "");
        details = cJSON_AddObjectToObject(e, "details");
        cJSON_AddStringToObject(details, "parent_model", "");
        cJSON_AddStringToObject(details, "format", "gguf");
        cJSON_AddStringToObject(details, "family", "");
        cJSON_AddItemToObject(details, "families",
                              cJSON_CreateStringArray((const char *const[]) { "" }, 1));
        cJSON_AddStringToObject(details, "parameter_size", "");
        cJSON_AddStringToObject(details, "quantization_level", "");
        return e;
}

/* GET /v1/models: every model, then each alias, so a client picking any name finds it.
 * GET /v1/models/ID: that one (OpenAI's retrieve), by any of its names. */
static void request_answer_models(Request *r)
{
        size_t n;
        Child **children = supervisor_children(r->proxy->supervisor, &n);
        const char *active = supervisor_active(r->proxy->supervisor);
        const char *id = r->route.model_id;
        cJSON *o, *models, *data;

        if (id) {
                for (size_t i = 0; i < n; i++) {
                        const ModelConfig *m = child_config(children[i]);

                        if (streq(m->name, id) || strv_contains(m->aliases, id)) {
                                request_answer(
                                        r, 200,
                                        request_json_response(r, json_print_delete(model_entry(
                                                                         r->proxy->supervisor,
                                                                         children[i], id, active))),
                                        REQ_EVENT_ANSWER);
                                return;
                        }
                }
                _cleanup_free_ char *msg = NULL;
                (void) asprintf(&msg, "The model `%s` does not exist", id);
                request_answer_error(r, 404, "model_not_found", msg ? msg : "no such model", NULL);
                return;
        }
        o = cJSON_CreateObject();
        models = cJSON_AddArrayToObject(o, "models");
        cJSON_AddStringToObject(o, "object", "list");
        data = cJSON_AddArrayToObject(o, "data");
        for (size_t i = 0; i < n; i++) {
                const ModelConfig *m = child_config(children[i]);

                cJSON_AddItemToArray(models, model_entry_ollama(children[i]));
                cJSON_AddItemToArray(
                        data, model_entry(r->proxy->supervisor, children[i], m->name, active));
                STRV_FOREACH(a, m->aliases) {
                        cJSON_AddItemToArray(
                                data, model_entry(r->proxy->supervisor, children[i], *a, active));
                }
        }
        request_answer(r, 200, request_json_response(r, json_print_delete(o)), REQ_EVENT_ANSWER);
}

/* GET /health?model=NAME: whether that model (or alias) is loaded and ready here, for a load
 * balancer choosing the box that serves it. From llmd's own state: no child is asked. */
static void request_answer_model_health(Request *r, const char *asked)
{
        Proxy *p = r->proxy;
        const Config *cfg = proxy_config(p);
        const ModelConfig *m = config_find_model(cfg, asked);
        Child *c = m ? supervisor_child(p->supervisor, m->name) : NULL;
        ServingState st =
                c ? supervisor_serving(p->supervisor, m->name, NULL) : _SERVING_STATE_INVALID;
        const char *active = supervisor_active(p->supervisor);
        /* A model loaded beside the active one answers its requests only with routing = switch:
         * otherwise the active model would, and a balancer must not send them here. */
        bool serves = m && (m->pin || cfg->routing == ROUTING_SWITCH ||
                            (active && supervisor_loaded(p->supervisor) && streq(active, m->name)));
        cJSON *o = cJSON_CreateObject(), *e;
        const char *word = !c                       ? "not configured"
                           : st == SERVING_DRAINING ? "draining"
                           : st == SERVING_SAVING   ? "saving its prompt caches"
                           : st == SERVING_READY && !serves
                                   ? "resident, not active (routing is not switch)"
                                   : serving_state_word(st);
        _cleanup_free_ char *msg = NULL;

        if (st == SERVING_READY && serves) {
                cJSON_AddStringToObject(o, "status", "ok");
                cJSON_AddStringToObject(o, "model", m->name);
                request_answer(r, 200, request_json_response(r, json_print_delete(o)),
                               REQ_EVENT_ANSWER);
                return;
        }
        cJSON_AddStringToObject(o, "status", word);
        cJSON_AddStringToObject(o, "model", m ? m->name : asked);
        if (st == SERVING_FAILED && child_reason(c)) {
                cJSON_AddStringToObject(o, "reason", child_reason(c));
        }
        (void) asprintf(&msg, "%s: %s", m ? m->name : asked, word);
        e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "message", msg ? msg : word);
        cJSON_AddStringToObject(e, "type", "unavailable_error");
        cJSON_AddNumberToObject(e, "code", 503);
        request_answer(r, 503, request_json_response(r, json_print_delete(o)), REQ_EVENT_ANSWER);
}

static void request_answer_health(Request *r)
{
        Proxy *p = r->proxy;
        _cleanup_free_ char *asked = NULL;
        const char *active = supervisor_active(p->supervisor);
        Child *c = active ? supervisor_child(p->supervisor, active) : NULL;
        cJSON *o;
        unsigned status = 503;
        int k;

        static const char *const known[] = { "model", NULL };
        _cleanup_free_ char *unknown = NULL, *msg = NULL;

        /* Answering for the active model would tell a client that misspelt "model" that
         * another model is up. */
        if (route_query_unknown(r->route.path, known, &unknown) != 0) {
                if (!unknown ||
                    asprintf(&msg, "unknown query parameter \"%.64s\": /health takes only model",
                             unknown) < 0) {
                        msg = NULL;
                }
                request_answer_error(r, 400, "invalid_request_error",
                                     msg ? msg : "unknown query parameter", NULL);
                return;
        }
        k = route_query_param(r->route.path, "model", &asked);
        if (k == -EBADMSG || k == -ENOTUNIQ || (asked && !*asked)) {
                request_answer_error(
                        r, 400, "invalid_request_error",
                        k == -ENOTUNIQ ? "the model parameter is given twice"
                        : asked        ? "the model parameter is empty"
                                : "the model parameter holds a bad %-escape or a byte outside printable ASCII",
                        NULL);
                return;
        }
        if (asked) {
                request_answer_model_health(r, asked);
                return;
        }
        o = cJSON_CreateObject();

        ServingState st =
                c ? supervisor_serving(p->supervisor, active, NULL) : _SERVING_STATE_INVALID;

        if (st == SERVING_READY && supervisor_loaded(p->supervisor)) {
                cJSON_AddStringToObject(o, "status", "ok");
                cJSON_AddStringToObject(o, "model", active);
                status = 200;
        } else {
                _cleanup_free_ char *text = supervisor_status_text(p->supervisor);
                cJSON *e = cJSON_AddObjectToObject(o, "error");

                cJSON_AddStringToObject(e, "message", text ? text : "not ready");
                cJSON_AddStringToObject(e, "type", "unavailable_error");
                cJSON_AddNumberToObject(e, "code", 503);
                cJSON_AddStringToObject(o, "status", c ? serving_state_word(st) : "no model");
                if (c && child_reason(c) && st == SERVING_FAILED) {
                        cJSON_AddStringToObject(o, "reason", child_reason(c));
                }
        }
        request_answer(r, status, request_json_response(r, json_print_delete(o)), REQ_EVENT_ANSWER);
}

/* CORS preflight: what a browser asks before a request with an Authorization header or a JSON
 * body. Answered for every path, never forwarded, and never needs a key (browsers send none). */
static void request_answer_preflight(Request *r)
{
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
        const char *asked = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND,
                                                        "Access-Control-Request-Headers");

        if (resp) {
                MHD_add_response_header(resp, "Server", "llmd");
                request_add_cors(r, resp);
                MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
                /* "*" does not cover Authorization (Fetch), so name what was asked for. */
                MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                        asked ? asked : "Authorization, Content-Type, X-Api-Key");
                MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
        }
        request_answer(r, 200, resp, REQ_EVENT_ANSWER); /* 200, as llama-server answers it */
}

/* ---- from MHD ---- */

Request *request_new(Listener *l, struct MHD_Connection *connection, const char *target)
{
        Request *r = calloc(1, sizeof(Request));

        if (!r) {
                return NULL;
        }
        r->proxy = l->proxy;
        r->listener = l;
        r->connection = connection;
        r->state = REQ_RECEIVING;
        r->start_usec = proxy_now(l->proxy);
        /* Nothing known of an answer until a child's comes (an answer of llmd's own has none). */
        json_answer_init(&r->answer, false);
        r->target_start = target;
        r->target_end = target + strlen(target);
        r->target_raw = strdup(target);
        if (!r->target_raw) {
                free(r);
                return NULL;
        }
        return r;
}

/* Every value of one request header, in order. */
typedef struct HeaderValues {
        const char *name;
        char **values;
        int error;
} HeaderValues;

static enum MHD_Result header_collect(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
        HeaderValues *h = cls;

        if (strcasecmp(key, h->name) == 0 && h->error == 0) {
                h->error = strv_extend(&h->values, value ? value : "");
        }
        return MHD_YES;
}

static char **request_header_values(Request *r, const char *name)
{
        HeaderValues h = { .name = name };

        (void) MHD_get_connection_values(r->connection, MHD_HEADER_KIND, header_collect, &h);
        if (h.error < 0) {
                return strv_free(h.values);
        }
        return h.values;
}

static const char *request_header(Request *r, const char *name)
{
        return MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, name);
}

static char *strdup_or_null(const char *s)
{
        return s ? strdup(s) : NULL;
}

/* The request line and headers are in: everything that can be decided before the body. An
 * answer made here goes out before the body is read (no "100 Continue"). */
static void request_begin(Request *r, const char *method)
{
        Proxy *p = r->proxy;
        const Config *c = proxy_config(p);
        _cleanup_strv_free_ char **cl = request_header_values(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
        _cleanup_strv_free_ char **te = request_header_values(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        RouteInput in = {
                .method = method,
                .target = r->target_raw,
                .authorization = request_header(r, MHD_HTTP_HEADER_AUTHORIZATION),
                .x_api_key = request_header(r, "X-Api-Key"),
                .content_length = cl,
                .transfer_encoding = te,
                .api_keys = p->api_keys,
                .max_body_size = c->max_body_size,
                .model_port = r->listener->model != NULL,
                .target_cut = r->target_cut,
                .metrics_public = c->metrics_public,
        };

        r->method = strdup(method);
        r->content_type =
                strdup(request_header(r, MHD_HTTP_HEADER_CONTENT_TYPE) ?: "application/json");
        r->accept = strdup_or_null(request_header(r, MHD_HTTP_HEADER_ACCEPT));
        r->origin = strdup_or_null(request_header(r, "Origin"));
        if (!r->method || !r->content_type || route_request(&in, &r->route) < 0) {
                r->route.close = true;
                request_answer_error(r, 500, "server_error", "out of memory", NULL);
                return;
        }
        if (r->route.kind != ROUTE_REFUSE) {
                const char *host = request_header(r, MHD_HTTP_HEADER_HOST);
                bool keys = p->api_keys != NULL;

                /* Without keys, the browser is the only thing between a web page and the
                 * models: a page of another origin is refused, not only left unable to read
                 * the answer, and so is a name that is not this machine's (DNS rebinding). */
                if (!keys && host && !route_host_allowed(host, proxy_hostname(p))) {
                        r->route.close = r->route.close || r->route.has_body;
                        request_answer_error(
                                r, 403, "permission_error",
                                "the Host header names another machine; without api-key-file llmd "
                                "answers only for this one (see docs/security.md)",
                                NULL);
                        return;
                }
                if (r->origin && !route_origin_allowed(c->cors_origins, keys, r->origin, host)) {
                        r->route.close = r->route.close || r->route.has_body;
                        request_answer_error(
                                r, 403, "permission_error",
                                "this Origin is not allowed (cors-origins; see docs/security.md)",
                                NULL);
                        return;
                }
        }
        switch (r->route.kind) {
        case ROUTE_REFUSE:
                request_answer_error(r, r->route.status, r->route.error_type, r->route.message,
                                     NULL);
                break;
        case ROUTE_PREFLIGHT:
                request_answer_preflight(r);
                break;
        case ROUTE_GENERATE:
        case ROUTE_EMBED:
        case ROUTE_MODELS:
        case ROUTE_HEALTH:
        case ROUTE_LLMD:
        case ROUTE_METRICS:
        case ROUTE_ACTIVITY:
        case _ROUTE_KIND_MAX:
                break;
        }
}

/* Whether the body is meant as a JSON object: its first byte past white space is "{". */
static bool body_is_json_object(const Request *r)
{
        for (size_t i = 0; i < r->body_len; i++) {
                if (!strchr(" \t\r\n", r->body[i])) {
                        return r->body[i] == '{';
                }
        }
        return false;
}

/* The body is complete. */
static void request_complete(Request *r)
{
        const char *t;

        if (r->body_dropped > 0) {
                r->route.close = true;
                request_answer_error(r, 413, "invalid_request_error",
                                     "the body is larger than max-body-size", NULL);
                return;
        }
        switch (r->route.kind) {
        case ROUTE_MODELS:
                request_answer_models(r);
                return;
        case ROUTE_HEALTH:
                request_answer_health(r);
                return;
        case ROUTE_LLMD:
                dashboard_answer(r);
                return;
        case ROUTE_METRICS:
                request_answer_metrics(r);
                return;
        case ROUTE_ACTIVITY:
                request_answer_activity(r);
                return;
        case ROUTE_GENERATE:
        case ROUTE_EMBED:
                break;
        case ROUTE_PREFLIGHT:
        case ROUTE_REFUSE:
        case _ROUTE_KIND_MAX:
                return; /* answered in request_begin() */
        }
        if (r->route.json_body && !(r->route.json_optional && !body_is_json_object(r))) {
                JsonScan js;

                if (json_scan_request(r->body ? r->body : "", r->body_len, &js) < 0) {
                        _cleanup_free_ char *msg = NULL;
                        if (asprintf(&msg, "invalid JSON in the request body at byte %zu: %s",
                                     js.error_offset, js.error) < 0) {
                                msg = NULL;
                        }
                        request_answer_error(r, 400, "invalid_request_error",
                                             msg ? msg : "invalid JSON", NULL);
                        return;
                }
                r->model_asked = TAKE_PTR(js.model);
                r->stream = js.stream;
        }
        t = hold_resolve(r);
        if (!t) {
                return;
        }
        r->target = strdup(t);
        if (!r->target) {
                request_answer_error(r, 500, "server_error", "out of memory", NULL);
                return;
        }
        hold_dispatch(r);
}

static enum MHD_Result request_queue(Request *r)
{
        struct MHD_Response *resp = TAKE_PTR(r->response);
        enum MHD_Result k = MHD_queue_response(r->connection, r->status, resp);

        MHD_destroy_response(resp);
        return k;
}

/* Takes a piece of the body. A chunked body over max-body-size (a Content-Length was checked
 * before) is dropped as it comes and refused with 413 at its end, since MHD cannot answer
 * while a body arrives; if it goes on past twice the limit, the connection is closed at once,
 * so no client can make llmd read without end. */
static enum MHD_Result request_take_body(Request *r, const char *data, size_t size)
{
        uint64_t max = proxy_config(r->proxy)->max_body_size;
        size_t need = r->body_len + size;

        if (r->body_dropped > 0 || need > max) {
                r->body_dropped += size + r->body_len;
                free(r->body);
                r->body = NULL;
                r->body_len = r->body_size = 0;
                if (r->body_dropped > 2 * max) {
                        _cleanup_free_ char *path = log_escape(r->target_raw, 200);
                        log_warning(
                                "proxy: %s %s: a chunked body went on past twice max-body-size; connection closed",
                                r->method, path ? path : "?");
                        r->proxy->counters.errors++;
                        r->status = 413;
                        return MHD_NO;
                }
                return MHD_YES;
        }
        if (need + 1 > r->body_size) {
                size_t s = MAX(need + 1, r->body_size * 2);
                char *b = realloc(r->body, s);

                if (!b) {
                        return MHD_NO;
                }
                r->body = b;
                r->body_size = s;
        }
        memcpy(r->body + r->body_len, data, size);
        r->body_len += size;
        r->body[r->body_len] = '\0';
        return MHD_YES;
}

enum MHD_Result request_on_access(Request *r, const char *method, const char *upload_data,
                                  size_t *upload_data_size)
{
        if (!r->method) {
                request_begin(r, method);
                /* Refused before the body: the answer goes now, and no "100 Continue" invites a
                 * body that would not be read. Otherwise the next call, at once for a request
                 * without a body. */
                return r->response && r->route.close ? request_queue(r) : MHD_YES;
        }
        if (*upload_data_size > 0) {
                enum MHD_Result k = MHD_YES;

                if (!r->response) {
                        k = request_take_body(r, upload_data, *upload_data_size);
                }
                *upload_data_size = 0;
                return k;
        }
        if (r->response) {
                return request_queue(r);
        }
        if (r->state == REQ_RECEIVING) {
                request_complete(r);
                if (r->response && !r->suspended) {
                        return request_queue(r);
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

void request_log(Request *r, bool completed)
{
        Proxy *p = r->proxy;
        uint64_t now = proxy_now(p);
        _cleanup_free_ char *method = NULL, *path = NULL, *model = NULL;

        if (!proxy_config(p)->log_requests) {
                return;
        }
        /* All three come from the client: escaped, so they cannot forge a line. */
        method = log_escape(r->method, 32);
        path = log_escape(r->route.path ? r->route.path : r->target_raw, 512);
        model = log_escape(r->model_asked, 256);
        /* A load balancer asks /health every second or so: those at debug, unless they fail. */
        log_full(r->route.kind == ROUTE_HEALTH && r->status < 400 ? LOG_DEBUG : LOG_INFO,
                 "%s %s model=%s → %s %u %llu B ttfb %.1f ms %.3f s%s", method ? method : "?",
                 path ? path : "?", model ? model : "?", r->target ? r->target : "-", r->status,
                 (unsigned long long) r->bytes_out,
                 r->first_byte_usec ? (double) (r->first_byte_usec - r->start_usec) / USEC_PER_MSEC
                                    : 0.0,
                 (double) (now - r->start_usec) / USEC_PER_SEC, completed ? "" : " (client gone)");
}

Request *request_free(Request *r)
{
        if (!r) {
                return NULL;
        }
        if (r->state == REQ_HELD || request_in_flight(r->state)) {
                /* MHD ended it while it waited or streamed: the client left. */
                request_step(r, REQ_EVENT_GONE);
        }
        request_scrape_free(r);
        dashboard_request_gone(r);
        if (r->response) {
                MHD_destroy_response(r->response);
        }
        request_unmark_suspended(r);
        free(r->whole_type);
        sd_event_source_disable_unref(r->timer);
        route_done(&r->route);
        free(r->target_raw);
        free(r->method);
        free(r->content_type);
        free(r->accept);
        free(r->origin);
        free(r->body);
        free(r->model_asked);
        free(r->target);
        buffer_done(&r->buf);
        free(r);
        return NULL;
}
