/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/types.h>

#include <microhttpd.h>

#include "sim.h"

/*
 * The HTTP side: libmicrohttpd with one thread per connection on the socket main() bound, so a
 * handler may block (hold a request, pace tokens) without stalling anyone else.
 *
 * A request's life: the first access call counts it open (sim_request_begin), the body is
 * gathered, the final call dispatches it to a route, and the completion callback writes its
 * record and counts it closed (sim_request_end). Until the model is loaded every request gets
 * llama-server's 503; then the API key is checked, then the route table (sim-routes.c) decides.
 */

struct http_request {
        struct MHD_Connection *connection;
        char method[16];
        char *path;
        char *origin;       /* the Origin header, echoed as llama-server does; NULL if none */
        char *body;         /* NUL-terminated */
        size_t body_len;
        bool body_too_big;
        unsigned status;    /* the status queued, 0 while none */
        bool client_gone;   /* the client went away before the response was complete */
};

typedef enum MHD_Result (*http_handler_t)(struct http_request *req);

struct http_route {
        const char *method;
        const char *path;
        http_handler_t handler;
        bool public_path;   /* answered without the API key, like /health */
};

/* The table lives in sim-routes.c. */
extern const struct http_route http_routes[];
extern const size_t http_routes_count;

int http_start(int listen_fd);

/* Stops accepting connections and closes the listening socket, as llama-server's shutdown does;
 * requests already in progress go on. */
void http_quiesce(void);

/* A complete response with llama-server's headers. body is copied. */
enum MHD_Result http_reply(struct http_request *req, unsigned status, const char *content_type,
                           const char *body);
enum MHD_Result http_reply_json(struct http_request *req, unsigned status, const char *body);

/* An SSE stream of unknown length: the reader is called from this request's thread. */
enum MHD_Result http_reply_stream(struct http_request *req, MHD_ContentReaderCallback reader,
                                  void *cls, MHD_ContentReaderFreeCallback free_cls);

/*
 * Waits up to timeout_ms (-1: for ever) for the client to go away. Returns true when it did (and
 * marks the request), false when the time ran out with the client still there.
 */
bool http_wait_client_gone(struct http_request *req, int64_t timeout_ms);
