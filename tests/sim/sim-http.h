/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/types.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "sim-sha256.h"
#include "sim.h"

/*
 * The HTTP side: libmicrohttpd with one thread per connection on the socket main() bound, so a
 * handler may block (hold a request, pace tokens) without stalling anyone else.
 *
 * A request's life: the first access call counts it open (sim_request_begin), the body is
 * gathered (counted and hashed as it arrives, kept up to HTTP_BODY_MAX), the final call parses
 * it, writes the "request_start" record and dispatches it to a route, and the completion
 * callback writes its "request" record and counts it closed (sim_request_end). OPTIONS is
 * answered at once, as llama-server's pre-routing handler does; otherwise, until the model is
 * loaded every request gets llama-server's 503; then the API key is checked, then the route
 * table (sim-routes.c) decides.
 */

struct http_request {
        struct MHD_Connection *connection;
        char method[16];
        char *path;
        char *origin; /* the Origin header, echoed as llama-server does; NULL if none */
        char *body;   /* NUL-terminated; NULL after http_request_drop_body() */
        size_t body_len;
        size_t body_alloc;
        bool body_too_big;   /* over HTTP_BODY_MAX: the rest was counted and hashed, not kept */
        uint64_t body_bytes; /* as received, including what was not kept */
        struct sha256 body_hash;
        char body_sha256[SHA256_HEX_SIZE];

        /* The body parsed once when it is complete, before any route sees it. */
        cJSON *json;       /* NULL when the body is empty or not JSON */
        size_t json_error; /* where parsing failed, for json_parse_error_message() */
        char *model;       /* the body's "model" string, for the records; NULL if none */
        bool stream;       /* the body's "stream" is true */

        unsigned status;      /* the status queued, 0 while none */
        bool client_gone;     /* the client went away before the response was complete */
        uint64_t gone_usec;   /* CLOCK_MONOTONIC when that was noticed */
        uint64_t tokens_sent; /* generated tokens handed to libmicrohttpd */
};

typedef enum MHD_Result (*http_handler_t)(struct http_request *req);

struct http_route {
        const char *method;
        const char *path; /* "*": any path, for this method only; "/x/" then "*": below /x/ */
        http_handler_t handler;
        bool public_path;   /* answered without the API key, like /health */
        bool while_loading; /* answered before the model is loaded too, like OPTIONS */
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
/* The same with extra headers, NULL-terminated name/value pairs, after Access-Control-Allow-Origin. */
enum MHD_Result http_reply_extra(struct http_request *req, unsigned status,
                                 const char *content_type, const char *body,
                                 const char *const *extra_headers);
enum MHD_Result http_reply_json(struct http_request *req, unsigned status, const char *body);

/* An SSE stream of unknown length: the reader is called from this request's thread. The
 * connection has no idle timeout until the reader calls http_idle_timeout() at its end. */
enum MHD_Result http_reply_stream(struct http_request *req, MHD_ContentReaderCallback reader,
                                  void *cls, MHD_ContentReaderFreeCallback free_cls);

/*
 * Waits up to timeout_ms (-1: for ever) for the client to go away. Returns true when it did (and
 * marks the request), false when the time ran out with the client still there.
 */
bool http_wait_client_gone(struct http_request *req, int64_t timeout_ms);

enum http_wait_result {
        HTTP_WAIT_TIMEOUT,
        HTTP_WAIT_GONE, /* the client went away; the request is marked */
        HTTP_WAIT_FD,   /* fd became readable */
};

/* The same, also returning early when fd (if >= 0) becomes readable. */
enum http_wait_result http_wait(struct http_request *req, int fd, int64_t timeout_ms);

/* Gives the connection back its idle timeout, counted from now, once the answer is complete;
 * the complete replies above do it themselves. */
void http_idle_timeout(struct http_request *req);

/* Marks the request as abandoned by its client, noting when that was first seen. */
void http_mark_gone(struct http_request *req);

/* Frees the body and its parsed form, once a handler has taken what it needs from them: a long
 * stream need not keep a large request in memory. */
void http_request_drop_body(struct http_request *req);
