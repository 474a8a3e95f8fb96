/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "macro.h"

/*
 * HTTP requests to the llama-server children, inside the event loop, over their unix sockets:
 * a new connection for each (a connect on a unix socket is two system calls; llama-server
 * closes a connection after every stream anyway), the request written at once, the answer read
 * as epoll says it is there and parsed by http-answer.c. Not libcurl: for each transfer it
 * checked a reused connection with poll(), polled again after every read, and asked for
 * getsockname()/getpeername() three times -- a dozen system calls between a client's request
 * and the child, on the path every token takes.
 *
 * A transfer reports, in order: its response headers once (status and Content-Type), its body in
 * pieces as they arrive (the callee may ask to pause; upstream_resume() continues), and its end
 * once, always from the event loop. upstream_cancel() ends it at once, with no more callbacks:
 * closing the connection is how llama-server learns that the client is gone (it frees the slot
 * and stops generating).
 */

typedef struct UpstreamMulti UpstreamMulti;
typedef struct Upstream Upstream;

typedef struct UpstreamCallbacks {
        void (*headers)(void *userdata, long status, const char *content_type,
                        int64_t content_length);
        /* Returns 0, or -EAGAIN when it cannot take the data now: the transfer pauses and the
         * same bytes come again after upstream_resume(). */
        int (*data)(void *userdata, const char *data, size_t len);
        /* error: 0, or a negative errno; message says what failed. */
        void (*done)(void *userdata, int error, const char *message);
} UpstreamCallbacks;

int upstream_multi_new(sd_event *e, UpstreamMulti **ret);
UpstreamMulti *upstream_multi_free(UpstreamMulti *m);
/* hook(userdata) runs after each time a transfer's events were handled. */
void upstream_multi_set_events_hook(UpstreamMulti *m, void (*hook)(void *userdata), void *userdata);
DEFINE_TRIVIAL_CLEANUP_FUNC(UpstreamMulti *, upstream_multi_free);

typedef struct UpstreamRequest {
        const char *socket_path; /* the child's unix socket */
        const char *method;
        const char *path; /* with the query */
        const char *content_type;
        const char *accept;
        const char *body; /* must stay valid until done or cancel */
        size_t body_len;
} UpstreamRequest;

int upstream_start(UpstreamMulti *m, const UpstreamRequest *req, const UpstreamCallbacks *cb,
                   void *userdata, Upstream **ret);
void upstream_cancel(Upstream *u);
void upstream_resume(Upstream *u);
