/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * llmd's own pages and API on the proxy's port (ROUTE_LLMD): the dashboard (GET /llmd/, one
 * self-contained page compiled in), its event stream (GET /llmd/events: the whole state as one
 * "state" event whenever it changes), its actions (POST /llmd/switch, /llmd/load,
 * /llmd/unload), and llama-server's router API (POST /models/load, /models/unload, GET
 * /models/sse; router-api.h). The streams are fed from the supervisor's change notifications
 * (proxy_models_changed()), and while a model loads from a timer that reads its progress.
 * Not for use outside daemon/proxy*.c and dashboard.c.
 */

typedef struct Proxy Proxy;
typedef struct Request Request;
typedef struct Dashboard Dashboard;

/* At most this many streams (/llmd/events and /models/sse together) at once: 503 past it. */
#define DASHBOARD_WATCHERS_MAX 64
/* A stream whose client reads less than this behind is closed. */
#define DASHBOARD_WATCH_BUFFER_MAX (1024 * 1024)

int dashboard_new(Proxy *p, Dashboard **ret);
Dashboard *dashboard_free(Dashboard *d);
/* llmd stops: every stream ends (resumed, so that MHD can close it). */
void dashboard_end_streams(Dashboard *d);
/* The models changed state: streams hear of it. */
void dashboard_models_changed(Dashboard *d);
/* A ROUTE_LLMD request, its body complete: answered, or made a stream. */
void dashboard_answer(Request *r);
/* r ends: its stream, if any, stops being fed. */
void dashboard_request_gone(Request *r);
