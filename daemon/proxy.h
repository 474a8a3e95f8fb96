/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "activity.h"
#include "metrics.h"
#include "supervisor.h"

/*
 * The OpenAI-compatible HTTP proxy: libmicrohttpd in its external epoll mode inside the event
 * loop, forwarding to the children through upstream.c. Bodies go through byte for byte; only
 * "model" and "stream" are read from them. Streams are relayed as they arrive, with
 * backpressure both ways. Requests for a model that is loading wait in a bounded queue.
 * What a request line and headers decide is proxy-route.h; one request's life, a state
 * machine, is proxy-request.h; the parts are listed in proxy-internal.h.
 */

typedef struct Proxy Proxy;

typedef struct ProxyCounters {
        uint64_t served;    /* answered, any status */
        uint64_t errors;    /* answered with 4xx/5xx or cut short */
        unsigned in_flight; /* forwarded to a child and not yet answered */
        unsigned held;      /* waiting for a model */
} ProxyCounters;

/* Logs nothing: on failure, *ret_why (allocated, may be NULL) says why where errno cannot. */
int proxy_new(sd_event *e, Supervisor *s, Proxy **ret, char **ret_why);
/* Whether c's api-key-file passes the checks proxy_new() and a reload make; *ret_why says why
 * not. For --check-config and for starting with the right exit status. */
int proxy_check_keys(const Config *c, char **ret_why);
Proxy *proxy_free(Proxy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Proxy *, proxy_free);

/* Binds the addresses of the configuration (or takes sockets passed by systemd). */
int proxy_start(Proxy *p);
/* Stops accepting; requests running may finish. */
void proxy_quiesce(Proxy *p);
/* llmd is stopping: the requests waiting for a model to load are answered 503 with Retry-After
 * (in their API's format), and none waits from now on. */
void proxy_stop_holding(Proxy *p);
/* A child changed state: held requests may go now. */
void proxy_models_changed(Proxy *p);
/* A reload in two steps, so that it is all or nothing: proxy_reload_check() reads what the new
 * configuration c needs (the API keys) and refuses what cannot change without a restart
 * (listen addresses, connection limits), with *ret_why saying why; after the rest of the reload
 * succeeded, proxy_reload_apply() takes it over, else proxy_reload_free() drops it. */
typedef struct ProxyReload ProxyReload;
int proxy_reload_check(Proxy *p, const Config *c, ProxyReload **ret, char **ret_why);
void proxy_reload_apply(Proxy *p, ProxyReload *r);
ProxyReload *proxy_reload_free(ProxyReload *r);
/* Calls done once no request runs on model, or after the drain timeout (those left are cut
 * off with an error), or at once with now. */
void proxy_drain(Proxy *p, const char *model, bool now, void (*done)(void *userdata),
                 void *userdata);
ProxyCounters proxy_counters(const Proxy *p);
/* Where requests are counted (not owned; NULL: nowhere), and the last requests. */
void proxy_set_metrics(Proxy *p, Metrics *m);
Activity *proxy_activity(const Proxy *p);
