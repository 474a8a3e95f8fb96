/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim-http.h"
#include "sim-log.h"
#include "sim-record.h"

/* A limit on what a peer can make us hold in memory. */
#define HTTP_BODY_MAX ((size_t) 64 * 1024 * 1024)

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
        free(req);
}

/*
 * llama-server's headers, in its order. libmicrohttpd refuses an empty header value, so the
 * Access-Control-Allow-Origin of a request without Origin goes out as one blank, which every
 * HTTP parser reads as the same empty value. It adds Content-Length and, for errors, puts
 * "Connection: close" first, where cpp-httplib has them in other places: order does not matter.
 */
static void http_add_headers(struct http_request *req, struct MHD_Response *resp,
                             unsigned status, const char *content_type, bool stream)
{
        MHD_add_response_header(resp, "Server", "llama.cpp");
        MHD_add_response_header(resp, "Access-Control-Allow-Origin",
                                req->origin && *req->origin ? req->origin : " ");
        if (stream) {
                MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        }
        MHD_add_response_header(resp, "Content-Type", content_type);
        if (stream) {
                MHD_add_response_header(resp, "Transfer-Encoding", "chunked");
        }
        /* llama-server closes the connection after an error and keeps it otherwise */
        if (status >= 400) {
                MHD_add_response_header(resp, "Connection", "close");
        } else {
                MHD_add_response_header(resp, "Keep-Alive", "timeout=5, max=100");
        }
}

enum MHD_Result http_reply(struct http_request *req, unsigned status, const char *content_type,
                           const char *body)
{
        struct MHD_Response *resp;
        enum MHD_Result r;

        resp = MHD_create_response_from_buffer(strlen(body), (void *) body,
                                               MHD_RESPMEM_MUST_COPY);
        if (!resp) {
                return MHD_NO;
        }
        http_add_headers(req, resp, status, content_type, false);
        r = MHD_queue_response(req->connection, status, resp);
        MHD_destroy_response(resp);
        if (r == MHD_YES) {
                req->status = status;
        }
        return r;
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
        http_add_headers(req, resp, 200, "text/event-stream", true);
        r = MHD_queue_response(req->connection, 200, resp);
        MHD_destroy_response(resp);
        if (r == MHD_YES) {
                req->status = 200;
        }
        return r;
}

bool http_wait_client_gone(struct http_request *req, int64_t timeout_ms)
{
        const union MHD_ConnectionInfo *info;
        uint64_t deadline = timeout_ms < 0 ? UINT64_MAX :
                                             now_usec() + (uint64_t) timeout_ms * USEC_PER_MSEC;

        info = MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!info) {
                return false;
        }

        for (;;) {
                /* POLLIN is not asked for: a pipelined request must not make this spin. A peer
                 * that closes or shuts down its side shows as POLLRDHUP or POLLHUP. */
                struct pollfd p = { .fd = info->connect_fd, .events = POLLRDHUP };
                uint64_t now = now_usec();
                int timeout, n;

                if (now >= deadline) {
                        return false;
                }
                timeout = deadline == UINT64_MAX ?
                                  -1 :
                                  (int) ((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
                n = poll(&p, 1, timeout);
                if (n < 0 && errno != EINTR) {
                        req->client_gone = true;
                        return true;
                }
                if (n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
                        req->client_gone = true;
                        return true;
                }
        }
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
        const struct http_route *found = NULL;

        *ret_public = false;
        for (size_t i = 0; i < http_routes_count; i++) {
                const struct http_route *r = &http_routes[i];

                if (!streq(r->path, path)) {
                        continue;
                }
                *ret_public = *ret_public || r->public_path;
                if (streq(r->method, method)) {
                        found = r;
                }
        }
        return found;
}

static enum MHD_Result http_dispatch(struct http_request *req)
{
        const struct http_route *route;
        bool public_path;

        /* llama-server answers every path with 503 until the model is loaded, even unknown
         * ones and /health, before looking at the API key */
        if (sim_phase() == SIM_LOADING) {
                return http_reply_json(req, 503, http_loading_body);
        }

        route = http_route_find(req->method, req->path, &public_path);
        if (!public_path && !http_api_key_ok(req)) {
                SRV_WRN("operator()", "unauthorized: Invalid API Key");
                return http_reply_json(req, 401, http_unauthorized_body);
        }
        if (!route) {
                return http_reply_json(req, 404, http_not_found_body);
        }
        if (req->body_too_big) {
                static const char body[] = "{\"error\":{\"code\":413,\"message\":"
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
        length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (length && strtoull(length, NULL, 10) > HTTP_BODY_MAX) {
                req->body_too_big = true;
        }
        return req;
}

static void http_body_append(struct http_request *req, const char *data, size_t size)
{
        char *p;

        if (req->body_too_big) {
                return;
        }
        if (req->body_len + size > HTTP_BODY_MAX) {
                /* a chunked body can only be refused once it is all in */
                req->body_too_big = true;
                return;
        }
        p = realloc(req->body, req->body_len + size + 1);
        if (!p) {
                req->body_too_big = true;
                return;
        }
        req->body = p;
        memcpy(req->body + req->body_len, data, size);
        req->body_len += size;
        req->body[req->body_len] = '\0';
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version,
                                   const char *upload_data, size_t *upload_data_size,
                                   void **con_cls)
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
                req->client_gone = true;
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
                if (req->client_gone) {
                        cJSON_AddTrueToObject(o, "client_gone");
                }
        }
        record_emit(o);

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
                MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned) 1000,
                /* what "Keep-Alive: timeout=5" promises */
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) 5,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 64 * 1024,
                MHD_OPTION_THREAD_STACK_SIZE, (size_t) 256 * 1024, MHD_OPTION_END);
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
