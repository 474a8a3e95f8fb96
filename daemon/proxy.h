/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "supervisor.h"

/*
 * The OpenAI-compatible HTTP proxy: libmicrohttpd in its external epoll mode inside the event
 * loop, forwarding to the children through upstream.c. Bodies go through byte for byte; only
 * "model" and "stream" are read from them. Streams are relayed as they arrive, with
 * backpressure both ways. Requests for a model that is loading wait in a bounded queue.
 *
 * One request's life:
 *
 *   RECEIVING ──body complete──▶ (local answer: /health, /v1/models, an error) ──▶ ANSWERED
 *        │ target ready                      │ target loading
 *        ▼                                   ▼
 *   FORWARDED ◀────target ready──────────  HELD ──hold-timeout, queue full, failed──▶ ANSWERED
 *        │ upstream headers
 *        ▼
 *   RELAYING ──upstream done (or died: an SSE error event)──▶ ANSWERED
 *
 * A client that goes away in any state cancels its upstream transfer at once.
 */

typedef struct Proxy Proxy;

typedef struct ProxyCounters {
        uint64_t served;   /* answered, any status */
        uint64_t errors;   /* answered with 4xx/5xx or cut short */
        unsigned in_flight; /* forwarded to a child and not yet answered */
        unsigned held;     /* waiting for a model */
} ProxyCounters;

int proxy_new(sd_event *e, Supervisor *s, Proxy **ret);
Proxy *proxy_free(Proxy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Proxy *, proxy_free);

/* Binds the addresses of the configuration (or takes sockets passed by systemd). */
int proxy_start(Proxy *p);
/* Stops accepting; requests running may finish. */
void proxy_quiesce(Proxy *p);
/* A child changed state: held requests may go now. */
void proxy_models_changed(Proxy *p);
/* The configuration was reloaded (limits, routing, keys). */
int proxy_reload(Proxy *p);
/* Calls done once no request runs on model, or after the drain timeout (those left are cut
 * off with an error), or at once with now. */
void proxy_drain(Proxy *p, const char *model, bool now, void (*done)(void *userdata),
                 void *userdata);
ProxyCounters proxy_counters(const Proxy *p);
