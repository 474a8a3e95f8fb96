/* SPDX-License-Identifier: MIT */
#pragma once

#include <curl/curl.h>
#include <systemd/sd-event.h>

#include "macro.h"

/*
 * HTTP requests to the llama-server children, inside the event loop: libcurl's multi interface
 * driven by sd-event, glued the way systemd's curl-util does it (curl tells which sockets to
 * watch and when to time out; we tell curl what happened). libcurl rather than a client of our
 * own: it gets chunked encoding, keep-alive, unix sockets, pausing and cancelling right, and is
 * on every Debian system.
 *
 * A transfer reports, in order: its response headers once (status and Content-Type), its body in
 * pieces as they arrive (the callee may ask to pause; upstream_resume() continues), and its end
 * once. upstream_cancel() ends it at once, with no more callbacks: closing the connection is
 * how llama-server learns that the client is gone (it frees the slot and stops generating).
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
/* hook(userdata) runs after each time libcurl acted on its sockets or timers. */
void upstream_multi_set_events_hook(UpstreamMulti *m, void (*hook)(void *userdata), void *userdata);
/* What curl asked to do as soon as possible (start a new transfer, say), done now rather than
 * in the loop's next iteration. Without the hook. */
void upstream_multi_run_now(UpstreamMulti *m);
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
