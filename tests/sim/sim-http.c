/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sim-http.h"
#include "sim-json.h"
#include "sim-log.h"
#include "sim-record.h"

/* A limit on what a peer can make us hold in memory; the proxy's tests send 5 MB bodies. */
#define HTTP_BODY_MAX ((size_t) 64 * 1024 * 1024)

/* More than the 1000 concurrent streams the proxy's tests open, plus their health checks. */
#define HTTP_CONNECTION_LIMIT 4096u

/* What "Keep-Alive: timeout=5" promises: an idle connection is closed after that long. */
#define HTTP_IDLE_TIMEOUT_SEC 5u

/* Per connection thread; cJSON recurses once per nesting level (at most 1000). */
#define HTTP_THREAD_STACK ((size_t) 512 * 1024)

static struct MHD_Daemon *http_daemon;

static const char http_loading_body[] =
        "{\"error\":{\"message\":\"Loading model\",\"type\":\"unavailable_error\",\"code\":503}}";
static const char http_not_found_body[] =
        "{\"error\":{\"message\":\"File Not Found\",\"type\":\"not_found_error\",\"code\":404}}";
static const char http_unauthorized_body[] =
        "{\"error\":{\"message\":\"Invalid API Key\",\"type\":\"authentication_error\","
        "\"code\":401}}";

static void http_request_free(struct http_request *req)
{
        if (!req) {
                return;
        }
        free(req->path);
        free(req->origin);
        free(req->body);
        cJSON_Delete(req->json);
        free(req->model);
        free(req);
}

void http_request_drop_body(struct http_request *req)
{
        cJSON_Delete(req->json);
        req->json = NULL;
        free(req->body);
        req->body = NULL;
        req->body_len = req->body_alloc = 0;
}

/*
 * llama-server's headers, in its order. libmicrohttpd refuses an empty header value, so the
 * Access-Control-Allow-Origin of a request without Origin goes out as one blank, which every
 * HTTP parser reads as the same empty value. It adds Content-Length and, for errors, puts
 * "Connection: close" first, where cpp-httplib has them in other places: order does not matter.
 */
static void http_add_headers(struct http_request *req, struct MHD_Response *resp, unsigned status,
                             const char *content_type, bool stream, const char *const *extra)
{
        MHD_add_response_header(resp, "Server", "llama.cpp");
        MHD_add_response_header(resp, "Access-Control-Allow-Origin",
                                req->origin && *req->origin ? req->origin : " ");
        for (; extra && extra[0]; extra += 2) {
                MHD_add_response_header(resp, extra[0], extra[1]);
        }
        if (stream) {
                MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        }
        MHD_add_response_header(resp, "Content-Type", content_type);
        if (stream) {
                MHD_add_response_header(resp, "Transfer-Encoding", "chunked");
        }
        /* llama-server closes the connection after an error, or when asked to, and keeps it
         * otherwise */
        const char *conn =
                MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, "Connection");
        if (status >= 400) {
                MHD_add_response_header(resp, "Connection", "close");
        } else if (conn && strcasecmp(conn, "close") == 0) {
                /* MHD says "Connection: close" itself; no Keep-Alive beside it */
        } else {
                MHD_add_response_header(resp, "Keep-Alive", "timeout=5, max=100");
        }
}

enum MHD_Result http_reply_extra(struct http_request *req, unsigned status,
                                 const char *content_type, const char *body,
                                 const char *const *extra_headers)
{
        struct MHD_Response *resp;
        enum MHD_Result r;

        resp = MHD_create_response_from_buffer(strlen(body), (void *) body, MHD_RESPMEM_MUST_COPY);
        if (!resp) {
                return MHD_NO;
        }
        http_add_headers(req, resp, status, content_type, false, extra_headers);
        r = MHD_queue_response(req->connection, status, resp);
        MHD_destroy_response(resp);
        if (r == MHD_YES) {
                req->status = status;
                http_idle_timeout(req);
        }
        return r;
}

void http_idle_timeout(struct http_request *req)
{
        /* from 0 to a timeout, libmicrohttpd counts the idle time from now */
        MHD_set_connection_option(req->connection, MHD_CONNECTION_OPTION_TIMEOUT,
                                  HTTP_IDLE_TIMEOUT_SEC);
}

enum MHD_Result http_reply(struct http_request *req, unsigned status, const char *content_type,
                           const char *body)
{
        return http_reply_extra(req, status, content_type, body, NULL);
}

enum MHD_Result http_reply_json(struct http_request *req, unsigned status, const char *body)
{
        return http_reply(req, status, "application/json; charset=utf-8", body);
}

enum MHD_Result http_reply_stream(struct http_request *req, MHD_ContentReaderCallback reader,
                                  void *cls, MHD_ContentReaderFreeCallback free_cls)
{
        struct MHD_Response *resp;
        enum MHD_Result r;

        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, reader, cls,
                                                 free_cls);
        if (!resp) {
                free_cls(cls);
                return MHD_NO;
        }
        http_add_headers(req, resp, 200, "text/event-stream", true, NULL);
        r = MHD_queue_response(req->connection, 200, resp);
        MHD_destroy_response(resp);
        if (r == MHD_YES) {
                req->status = 200;
        }
        return r;
}

void http_mark_gone(struct http_request *req)
{
        if (!req->client_gone) {
                req->client_gone = true;
                req->gone_usec = now_usec(CLOCK_MONOTONIC);
        }
}

enum http_wait_result http_wait(struct http_request *req, int fd, int64_t timeout_ms)
{
        const union MHD_ConnectionInfo *info;
        uint64_t deadline =
                timeout_ms < 0 ? UINT64_MAX
                               : now_usec(CLOCK_MONOTONIC) + (uint64_t) timeout_ms * USEC_PER_MSEC;

        info = MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!info) {
                return HTTP_WAIT_TIMEOUT;
        }

        for (;;) {
                /* POLLIN is not asked for: a pipelined request must not make this spin. A peer
                 * that closes or shuts down its side shows as POLLRDHUP or POLLHUP. */
                struct pollfd p[2] = {
                        { .fd = info->connect_fd, .events = POLLRDHUP },
                        { .fd = fd, .events = POLLIN },
                };
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                int timeout, n;

                /* polled at least once, so a zero timeout still notices a client that left */
                timeout = deadline == UINT64_MAX ? -1
                          : now >= deadline
                                  ? 0
                                  : (int) ((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
                n = poll(p, fd >= 0 ? 2 : 1, timeout);
                if (n < 0 && errno != EINTR) {
                        http_mark_gone(req);
                        return HTTP_WAIT_GONE;
                }
                if (n > 0 && (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
                        http_mark_gone(req);
                        return HTTP_WAIT_GONE;
                }
                if (n > 0 && fd >= 0 && (p[1].revents & POLLIN)) {
                        return HTTP_WAIT_FD;
                }
                if (deadline != UINT64_MAX && now_usec(CLOCK_MONOTONIC) >= deadline) {
                        return HTTP_WAIT_TIMEOUT;
                }
        }
}

bool http_wait_client_gone(struct http_request *req, int64_t timeout_ms)
{
        return http_wait(req, -1, timeout_ms) == HTTP_WAIT_GONE;
}

static bool http_api_key_ok(struct http_request *req)
{
        const char *keys = sim_config.api_key;
        const char *got;
        size_t len;

        if (!keys || !*keys) {
                return true;
        }
        got = MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, "Authorization");
        if (!got || !*got) {
                got = MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, "X-Api-Key");
        }
        if (!got) {
                return false;
        }
        if (strncmp(got, "Bearer ", 7) == 0) {
                got += 7;
        }
        len = strlen(got);
        /* --api-key takes a comma-separated list */
        for (const char *k = keys; *k;) {
                size_t n = strcspn(k, ",");

                if (n == len && strncmp(k, got, n) == 0) {
                        return true;
                }
                k += n;
                if (*k == ',') {
                        k++;
                }
        }
        return false;
}

static const struct http_route *http_route_find(const char *method, const char *path,
                                                bool *ret_public)
{
        const struct http_route *found = NULL, *any = NULL;

        *ret_public = false;
        /* cpp-httplib answers HEAD with the GET route's headers (MHD drops the body). */
        if (streq(method, "HEAD")) {
                method = "GET";
        }
        for (size_t i = 0; i < http_routes_count; i++) {
                const struct http_route *r = &http_routes[i];

                if (streq(r->path, "*")) {
                        if (streq(r->method, method) && !any) {
                                any = r;
                        }
                        continue;
                }
                /* ending in "/" "*": anything below that path */
                size_t n = strlen(r->path);
                if (!streq(r->path, path) && !(n >= 2 && streq(r->path + n - 2, "/*") &&
                                               strncmp(path, r->path, n - 1) == 0)) {
                        continue;
                }
                /* llama-server lists its public endpoints by path, whatever the method */
                *ret_public = *ret_public || r->public_path;
                if (streq(r->method, method)) {
                        found = r;
                }
        }
        if (!found && any) {
                found = any;
                *ret_public = *ret_public || any->public_path;
        }
        return found;
}

static enum MHD_Result http_dispatch(struct http_request *req)
{
        const struct http_route *route;
        bool public_path;

        route = http_route_find(req->method, req->path, &public_path);
        if (route && route->while_loading) {
                return route->handler(req);
        }

        /* llama-server answers every path with 503 until the model is loaded, even unknown
         * ones and /health, before looking at the API key */
        if (sim_phase() == SIM_LOADING) {
                return http_reply_json(req, 503, http_loading_body);
        }

        if (!public_path && !http_api_key_ok(req)) {
                SRV_WRN("operator()", "unauthorized: Invalid API Key");
                return http_reply_json(req, 401, http_unauthorized_body);
        }
        if (!route) {
                return http_reply_json(req, 404, http_not_found_body);
        }
        if (req->body_too_big) {
                static const char body[] =
                        "{\"error\":{\"code\":413,\"message\":"
                        "\"request body too large\","
                        "\"type\":\"invalid_request_error\"}}";

                return http_reply_json(req, 413, body);
        }
        return route->handler(req);
}

static struct http_request *http_request_new(struct MHD_Connection *c, const char *url,
                                             const char *method)
{
        struct http_request *req = calloc(1, sizeof(*req));
        const char *origin, *length;

        if (!req) {
                return NULL;
        }
        req->connection = c;
        snprintf(req->method, sizeof(req->method), "%s", method);
        req->path = strdup(url);
        origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
        req->origin = origin ? strdup(origin) : NULL;
        req->body = malloc(1);
        if (!req->path || !req->body || (origin && !req->origin)) {
                http_request_free(req);
                return NULL;
        }
        req->body[0] = '\0';
        req->body_alloc = 1;
        sha256_init(&req->body_hash);
        length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (length && strtoull(length, NULL, 10) > HTTP_BODY_MAX) {
                req->body_too_big = true;
        }
        return req;
}

static void http_body_append(struct http_request *req, const char *data, size_t size)
{
        size_t want;
        char *p;

        /* every byte received is counted and hashed, kept or not */
        req->body_bytes += size;
        sha256_update(&req->body_hash, data, size);

        if (req->body_too_big) {
                return;
        }
        if (req->body_len + size > HTTP_BODY_MAX) {
                /* a chunked body can only be refused once it is all in */
                req->body_too_big = true;
                return;
        }
        want = req->body_len + size + 1;
        if (want > req->body_alloc) {
                /* grown geometrically: a 16 MiB body arrives in about a thousand pieces */
                size_t alloc = req->body_alloc * 2 > want ? req->body_alloc * 2 : want;

                p = realloc(req->body, alloc);
                if (!p) {
                        req->body_too_big = true;
                        return;
                }
                req->body = p;
                req->body_alloc = alloc;
        }
        memcpy(req->body + req->body_len, data, size);
        req->body_len += size;
        req->body[req->body_len] = '\0';
}

/* Parses a complete body once, for the handlers and for the records' "model" and "stream". */
static void http_body_parse(struct http_request *req)
{
        const char *end = NULL;
        const cJSON *model;

        if (req->body_too_big || req->body_len == 0) {
                return;
        }
        /* the length covers the NUL after the body, so trailing garbage is refused */
        req->json = cJSON_ParseWithLengthOpts(req->body, req->body_len + 1, &end, 1);
        if (!req->json) {
                /* cJSON's global error pointer is shared by all threads; end is this parse's */
                req->json_error = end && end >= req->body && end <= req->body + req->body_len
                                          ? (size_t) (end - req->body)
                                          : req->body_len;
                return;
        }
        model = cJSON_GetObjectItemCaseSensitive(req->json, "model");
        if (cJSON_IsString(model)) {
                req->model = strdup(model->valuestring);
        }
        req->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req->json, "stream"));
}

static void http_record_body(cJSON *o, const struct http_request *req)
{
        cJSON_AddNumberToObject(o, "body_bytes", (double) req->body_bytes);
        cJSON_AddStringToObject(o, "body_sha256", req->body_sha256);
        if (req->model) {
                cJSON_AddStringToObject(o, "model", req->model);
        }
}

/* "request_start": the body is all in, nothing is answered yet. Tests wait for it instead of
 * sleeping. */
static void http_record_start(struct http_request *req)
{
        cJSON *o = record_new("request_start");

        if (o) {
                cJSON_AddStringToObject(o, "method", req->method);
                cJSON_AddStringToObject(o, "path", req->path);
                http_record_body(o, req);
                cJSON_AddBoolToObject(o, "stream", req->stream);
        }
        record_emit(o);
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
        struct http_request *req = *con_cls;

        if (!req) {
                /* Nothing is queued on this first call: libmicrohttpd 0.9.75 would close the
                 * connection after a response queued before the request was read, and
                 * llama-server keeps it alive. */
                req = http_request_new(c, url, method);
                if (!req) {
                        return MHD_NO;
                }
                *con_cls = req;
                sim_request_begin();
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                http_body_append(req, upload_data, *upload_data_size);
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (req->body_sha256[0] == '\0') {
                /* the final call: once, even if a handler makes libmicrohttpd call again */
                sha256_final_hex(&req->body_hash, req->body_sha256);
                http_body_parse(req);
                http_record_start(req);
        }
        /* A handler or a stream may block far longer than the idle timeout (a slow answer, a
         * lock-step stream waiting for its step): libmicrohttpd would close the connection
         * as idle the moment it got control back. No timeout until the answer is complete. */
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
        return http_dispatch(req);
}

static void http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
        struct http_request *req = *con_cls;
        cJSON *o;

        if (!req) {
                return;
        }
        *con_cls = NULL;
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
                http_mark_gone(req);
        }
        if (req->body_sha256[0] == '\0') {
                /* the client went before its body was complete */
                sha256_final_hex(&req->body_hash, req->body_sha256);
        }

        o = record_new("request");
        if (o) {
                cJSON_AddStringToObject(o, "method", req->method);
                cJSON_AddStringToObject(o, "path", req->path);
                if (req->status > 0) {
                        cJSON_AddNumberToObject(o, "status", req->status);
                } else {
                        cJSON_AddNullToObject(o, "status");
                }
                http_record_body(o, req);
                cJSON_AddBoolToObject(o, "stream", req->stream);
                cJSON_AddNumberToObject(o, "tokens_sent", (double) req->tokens_sent);
                if (req->client_gone) {
                        cJSON_AddTrueToObject(o, "client_gone");
                        record_add_time(o, "gone_t", req->gone_usec);
                }
        }
        record_emit(o);

        if (sim_config.drop_kept && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && req->status > 0 &&
            req->status < 400 && !req->stream) {
                /* It said Keep-Alive, and closes anyway: as a server whose idle timeout ran
                 * out just then. The client must send its next request on a new connection. */
                const union MHD_ConnectionInfo *ci =
                        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

                if (ci && shutdown(ci->connect_fd, SHUT_RDWR) == 0) {
                        record_emit(record_new("dropped"));
                }
        }
        http_request_free(req);
        sim_request_end();
}

int http_start(int listen_fd)
{
        /* MHD_USE_ITC makes MHD_quiesce_daemon() possible with a thread per connection. */
        http_daemon = MHD_start_daemon(
                MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                        MHD_USE_SUPPRESS_DATE_NO_CLOCK | MHD_USE_ITC,
                0, NULL, NULL, http_access, NULL, MHD_OPTION_LISTEN_SOCKET, listen_fd,
                MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL, MHD_OPTION_CONNECTION_LIMIT,
                HTTP_CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, HTTP_IDLE_TIMEOUT_SEC,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 64 * 1024,
                MHD_OPTION_THREAD_STACK_SIZE, HTTP_THREAD_STACK, MHD_OPTION_END);
        if (!http_daemon) {
                return -EIO;
        }
        return 0;
}

void http_quiesce(void)
{
        MHD_socket fd;

        if (!http_daemon) {
                return;
        }
        fd = MHD_quiesce_daemon(http_daemon);
        if (fd != MHD_INVALID_SOCKET) {
                close(fd);
        }
}
