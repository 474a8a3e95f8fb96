/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The proxy's parts and what they share; not for use outside daemon/proxy*.c.
 *
 *   proxy.c          the Proxy object, its listeners and libmicrohttpd in the event loop,
 *                    connection limits (header timeout, reclaiming idle connections)
 *   proxy-route.c    what a request line and headers decide (pure; proxy-route.h)
 *   proxy-request.c  one request: its state machine, llmd's own answers, the relay
 *   proxy-hold.c     where a request goes: the hold queue, routing = switch, drains
 *   proxy-observe.c  what a request leaves behind (activity, metrics) and the pages that show it
 *   dashboard.c      llmd's own pages and streams (/llmd/, /models/sse; dashboard.h)
 */

#include <microhttpd.h>
#include <systemd/sd-event.h>

#include "activity.h"
#include "buffer.h"
#include "config.h"
#include "dashboard.h"
#include "json-scan.h"
#include "metrics.h"
#include "proxy-request.h"
#include "proxy-route.h"
#include "proxy.h"
#include "supervisor.h"
#include "upstream.h"

#define PROXY_BUFFER_MAX (64 * 1024)  /* per stream: more and the upstream read pauses */
#define PROXY_CONN_MEMORY (32 * 1024) /* MHD's memory per connection, the request line in it */

typedef struct Listener Listener;
typedef struct Request Request;
typedef struct Conn Conn;
typedef struct Client Client;
typedef struct Drain Drain;
typedef struct Scrape Scrape;

struct Listener {
        Proxy *proxy;
        struct MHD_Daemon *daemon;
        sd_event_source *io;
        sd_event_source *timer;
        char *model; /* a model's own port: everything goes there */
        char *name;  /* for messages */
        Listener *next;
};

/* A connection, from accept to close, for the limits MHD does not have. */
typedef enum ConnState {
        CONN_FRESH, /* no complete request header yet: header-timeout runs */
        CONN_IDLE,  /* between requests (keep-alive): reclaimed first at the limit */
        CONN_BUSY,  /* a request is in progress */
} ConnState;

struct Conn {
        int fd;
        ConnState state;
        uint64_t since_usec; /* in this state */
        bool closing;        /* shut down by llmd; MHD closes it next */
        Client *client;      /* its address */
        Conn *prev, *next;   /* in the proxy's fresh or idle list, oldest first */
        /* Watches the client from its first suspended request to the connection's end,
         * edge-triggered: one epoll registration for all its requests. */
        sd_event_source *hangup;
        Request *suspended; /* its request, while that is suspended */
        bool hup;           /* the client hung up (seen while MHD had the connection) */
};

/* One client address and its connections, for max-connections-per-client. */
struct Client {
        int family;
        uint8_t addr[16];
        unsigned n_conns; /* all of them, until MHD closes them */
        unsigned n_open;  /* those llmd has not shut down */
};

struct Request {
        Proxy *proxy;
        Listener *listener;
        struct MHD_Connection *connection;
        RequestState state;
        Route route;
        char *target_raw; /* the request-target as written */
        /* Where MHD's copy of it ends (a NUL), in MHD's buffer: only compared, never read. */
        const char *target_end;
        const char *target_start; /* in MHD's copy of the request line */
        bool target_cut; /* a NUL byte inside it: MHD's copy is shorter than what was sent */
        char *method;
        char *content_type;
        char *accept;
        char *origin;
        char *body;
        size_t body_len, body_size;
        uint64_t body_dropped; /* a chunked body past max-body-size: bytes read and dropped */
        char *model_asked;     /* "model" of the body */
        bool stream;
        char *target; /* the profile that serves it */

        /* A response made while the connection was suspended, queued when MHD calls again. */
        struct MHD_Response *response;
        unsigned status;
        bool suspended;
        sd_event_source *timer; /* HELD: hold-timeout; FORWARDED, RELAYING: upstream-timeout */

        Upstream *upstream;
        bool sse;
        /* A body of a known length that fits buf: kept until it is complete, then sent with its
         * headers in one write (MHD sends a callback response's headers alone). */
        bool whole;
        char *whole_type;   /* its Content-Type */
        size_t sse_held;    /* the end of buf that is not a whole event yet: not sent until it is */
        Buffer buf;         /* read from the child, not yet sent to the client */
        int upstream_error; /* FLUSHING: the answer is cut short (no SSE event could say it) */
        uint64_t upstream_usec; /* the last byte from the child */

        struct DashboardWatch *watch; /* /llmd/events or /models/sse: its stream */

        uint64_t start_usec, first_byte_usec;
        uint64_t bytes_out;

        /* For the activity log and the metrics (proxy-observe.c). */
        JsonAnswer answer;        /* usage and timings, read as the answer goes through */
        uint64_t first_data_usec; /* the first byte of the answer's body */
        uint64_t held_since_usec, held_usec; /* held_since_usec 0: never held */
        bool forwarded;                      /* a child got it */
        const char *error_type;              /* of llmd's own error answer (static) */
        char error[160];                     /* what went wrong, "" nothing */
        Scrape *scrape;                      /* GET /llmd/metrics asking the children for theirs */
        Request *prev, *next; /* in the held queue, or the list of forwarded requests */
};

struct Drain {
        Proxy *proxy;
        char *model;
        void (*done)(void *userdata);
        void *userdata;
        sd_event_source *timer;
        Drain *next;
};

struct Proxy {
        sd_event *event;
        Supervisor *supervisor;
        UpstreamMulti *upstream;
        Listener *listeners;
        sd_event_source *kick; /* proxy_kick(): MHD is to run */
        bool kicked;
        Request *held_first, *held_last;
        bool stopping; /* proxy_stop_holding(): nothing waits for a load any more */
        Request *forwarded;
        Drain *drains;
        char **api_keys;
        char hostname[256]; /* gethostname(), for route_host_allowed() */
        /* Connections: fresh ones oldest first (header-timeout), idle ones likewise. */
        Conn *fresh_first, *fresh_last, *idle_first, *idle_last;
        unsigned n_conns;
        unsigned n_open; /* not shut down by llmd */
        void *clients;   /* tsearch() tree of Client, by address */
        sd_event_source *header_timer;
        ProxyCounters counters;
        Dashboard *dashboard;
        Metrics *metrics;   /* not owned; NULL: nothing recorded */
        Activity *activity; /* the last requests */
};

uint64_t proxy_now(const Proxy *p);
Conn *request_conn(const Request *r);
/* MHD runs before the loop waits again (a connection was resumed). */
void proxy_kick(Proxy *p);
const char *proxy_hostname(const Proxy *p);
const Config *proxy_config(const Proxy *p);

/* proxy-request.c */
Request *request_new(Listener *l, struct MHD_Connection *connection, const char *target);
Request *request_free(Request *r);
/* Every call of MHD's access handler for r: the header (the first), pieces of the body, the end
 * of it, and wake-ups after a resume. */
enum MHD_Result request_on_access(Request *r, const char *method, const char *upload_data,
                                  size_t *upload_data_size);
void request_step(Request *r, RequestEvent event);
void request_answer_error(Request *r, unsigned status, const char *type, const char *message,
                          const char *retry_after);
/* The same for a cause that passes (502, 503, 504): worded so that clients retry. */
void request_answer_transient(Request *r, unsigned status, const char *why,
                              const char *retry_after);
void request_forward(Request *r, Child *c);
void request_cut_off(Request *r, const char *why);
void request_resume(Request *r);
void request_suspend(Request *r);
/* The address r came from (one Client for all connections from it); NULL if MHD lost it. */
const Client *request_peer(const Request *r);
/* Shuts r's connection down: MHD closes it at its next look, whatever r is doing. */
void request_close(Request *r);
/* Whether r's client has closed its side (or its connection broke): a look at the socket. */
bool request_client_gone(const Request *r);
void request_log(Request *r, bool completed);
/* Whether r is one for the activity log and status's counters: not llmd's own metrics,
 * activity, dashboard page and streams, nor preflights and health checks, unless they failed. */
bool request_worth_a_record(const Request *r);
/* llmd's own answer: body (JSON, taken over), or resp (Server and CORS headers added here). */
void request_answer_json(Request *r, unsigned status, char *body);
void request_answer_response(Request *r, unsigned status, struct MHD_Response *resp);

/* proxy-observe.c */
/* r has ended (completed: its answer went out whole): into the activity log and the metrics. */
void request_record(Request *r, bool completed);
void request_note_error(Request *r, const char *type, const char *message);
void request_answer_metrics(Request *r);
void request_scrape_free(Request *r);
void request_answer_activity(Request *r);
/* request-proxy.c, for proxy-observe.c */
struct MHD_Response *request_json_response(Request *r, char *body);
void request_answer(Request *r, unsigned status, struct MHD_Response *resp, RequestEvent event);
char *json_print_delete(cJSON *j);

/* proxy-hold.c */
void hold_dispatch(Request *r);
void hold_append(Proxy *p, Request *r);
void hold_remove(Proxy *p, Request *r);
void hold_forwarded_push(Proxy *p, Request *r);
void hold_forwarded_remove(Proxy *p, Request *r);
void hold_check_drains(Proxy *p);
/* Whether model is being drained (a switch away from it waits for its requests). */
bool hold_draining(const Proxy *p, const char *model);
void hold_maybe_switch(Proxy *p);
void hold_free_drains(Proxy *p);
const char *hold_resolve(Request *r);
