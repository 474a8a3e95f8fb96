/* SPDX-License-Identifier: MIT */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <time.h>

#include "build-config.h"
#include "dashboard.h"
#include "log.h"
#include "proxy-internal.h"
#include "router-api.h"
#include "strv.h"
#include "time-util.h"

#define DASHBOARD_SWITCHES_KEPT 20
#define DASHBOARD_PROGRESS_USEC (500 * USEC_PER_MSEC) /* while a model loads */
#define DASHBOARD_KEEPALIVE_USEC (15 * USEC_PER_SEC)  /* a comment on a quiet stream */

/* The page, compiled in from dashboard.html (dashboard-page.c, made by embed-page.py). */
extern const char dashboard_page[];
extern const size_t dashboard_page_size;

typedef struct DashboardWatch DashboardWatch;

/* One stream: /llmd/events (the dashboard's) or /models/sse (the router's). Held by its request
 * and by its MHD response; whichever lets go last frees it. */
struct DashboardWatch {
        Dashboard *dashboard;
        Request *request; /* NULL once the request ended */
        bool router;
        bool dropped; /* a client too far behind, or one that holds too many: the stream ends */
        const Client *client; /* who holds it: its address and its key */
        unsigned key;
        unsigned refs;
        Buffer buf;
        DashboardWatch *prev, *next;
};

/* What a model was at the last look, for the router's events and for telling switches apart. */
typedef struct DashboardModel {
        char *name;
        ServingState state;
        RouterStatus status;
        double progress;
} DashboardModel;

/* A switch as the dashboard saw it happen: from the supervisor's switch in progress and the
 * active model. kind: resident, beside, replace (switch.h's), load (made resident, not active),
 * failed; NULL while it goes on. */
typedef struct DashboardSwitch {
        char *from, *to;
        const char *kind;
        uint64_t start_usec, end_usec;
        uint64_t start_realtime;
} DashboardSwitch;

struct Dashboard {
        Proxy *proxy;
        DashboardWatch *watchers;
        unsigned n_watchers;
        sd_event_source *timer;
        uint64_t last_write_usec;
        char *state; /* the last "state" event's JSON */
        DashboardModel *models;
        size_t n_models;
        char *active;
        DashboardSwitch switches[DASHBOARD_SWITCHES_KEPT]; /* a ring, oldest first from head */
        size_t n_switches, head;
};

static Supervisor *dashboard_supervisor(const Dashboard *d)
{
        return d->proxy->supervisor;
}

/* ---- streams ---- */

static void watch_unref(DashboardWatch *w)
{
        if (--w->refs > 0) {
                return;
        }
        if (w->dashboard) {
                Dashboard *d = w->dashboard;

                if (w->prev) {
                        w->prev->next = w->next;
                } else {
                        d->watchers = w->next;
                }
                if (w->next) {
                        w->next->prev = w->prev;
                }
                d->n_watchers--;
        }
        buffer_done(&w->buf);
        free(w);
}

static ssize_t watch_read(void *cls, uint64_t pos, char *buf, size_t max)
{
        DashboardWatch *w = cls;
        size_t n = MIN(buffer_pending(&w->buf), max);

        if (w->dropped || !w->request) {
                return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (n > 0) {
                memcpy(buf, w->buf.data + w->buf.off, n);
                buffer_consume(&w->buf, n);
                w->request->bytes_out += n;
                return (ssize_t) n;
        }
        request_suspend(w->request); /* until there is something to say */
        return 0;
}

static void watch_response_done(void *cls)
{
        watch_unref(cls);
}

/* Ends w's stream: its connection is shut down, so that a client that does not read (whose
 * stream MHD is not writing to) is let go too. */
static void watch_drop(DashboardWatch *w)
{
        w->dropped = true;
        request_close(w->request);
        request_resume(w->request);
}

static void watch_send(DashboardWatch *w, const char *text, size_t len)
{
        if (w->dropped || !w->request) {
                return;
        }
        if (buffer_pending(&w->buf) + len > DASHBOARD_WATCH_BUFFER_MAX ||
            buffer_append(&w->buf, text, len) < 0) {
                watch_drop(w); /* it reads too slowly: it may connect again */
                return;
        }
        request_resume(w->request);
}

static void dashboard_broadcast(Dashboard *d, bool router, const char *text)
{
        size_t len = strlen(text);

        for (DashboardWatch *w = d->watchers; w; w = w->next) {
                if (w->router == router) {
                        watch_send(w, text, len);
                }
        }
        d->last_write_usec = proxy_now(d->proxy);
}

void dashboard_request_gone(Request *r)
{
        DashboardWatch *w = r->watch;

        if (!w) {
                return;
        }
        r->watch = NULL;
        w->request = NULL;
        watch_unref(w);
}

/* ---- what the page shows ---- */

static cJSON *json_strv(char **l)
{
        return cJSON_CreateStringArray((const char *const *) l, (int) strv_length(l));
}

static cJSON *dashboard_model_json(Dashboard *d, Child *c, const char *active)
{
        Supervisor *s = dashboard_supervisor(d);
        const ModelConfig *m = child_config(c);
        ServingState st = supervisor_serving(s, m->name, NULL);
        const char *how = NULL;
        uint64_t need = supervisor_model_gpu(s, m->name, &how);
        cJSON *e = cJSON_CreateObject(), *g;

        cJSON_AddStringToObject(e, "name", m->name);
        cJSON_AddItemToObject(e, "aliases", json_strv(m->aliases));
        cJSON_AddStringToObject(e, "state", serving_state_word(st));
        cJSON_AddStringToObject(e, "status", router_status_to_string(router_status_of(st)));
        cJSON_AddBoolToObject(e, "active", active && streq(active, m->name));
        cJSON_AddBoolToObject(e, "resident", serving_state_resident(st));
        cJSON_AddBoolToObject(e, "pinned", m->pin);
        cJSON_AddBoolToObject(e, "embeddings", m->embeddings);
        if (st == SERVING_LOADING && child_load_progress(c) >= 0) {
                cJSON_AddNumberToObject(e, "progress", child_load_progress(c));
        } else {
                cJSON_AddNullToObject(e, "progress");
        }
        g = cJSON_AddObjectToObject(e, "gpu");
        cJSON_AddNumberToObject(g, "need", (double) need);
        cJSON_AddStringToObject(g, "how", how ?: "unknown");
        cJSON_AddNumberToObject(g, "estimated", (double) supervisor_model_estimate(s, m->name));
        cJSON_AddNumberToObject(g, "measured", (double) supervisor_model_measured(s, m->name));
        if (child_reason(c) && st == SERVING_FAILED) {
                cJSON_AddStringToObject(e, "reason", child_reason(c));
        }
        cJSON_AddNumberToObject(e, "restarts", child_restarts(c));
        cJSON_AddItemToObject(e, "log", json_strv(child_last_lines(c)));
        return e;
}

static char *dashboard_state_json(Dashboard *d)
{
        Supervisor *s = dashboard_supervisor(d);
        const char *active = supervisor_active(s), *target = NULL;
        SwitchPhase phase;
        SupervisorGpu gpu;
        size_t n;
        Child **children = supervisor_children(s, &n);
        cJSON *o = cJSON_CreateObject(), *a, *g;
        char *t;

        cJSON_AddStringToObject(o, "version", LLMD_VERSION);
        if (active) {
                cJSON_AddStringToObject(o, "active", active);
        } else {
                cJSON_AddNullToObject(o, "active");
        }
        cJSON_AddBoolToObject(o, "loaded", supervisor_loaded(s));
        cJSON_AddBoolToObject(o, "keys", d->proxy->api_keys != NULL);
        if (supervisor_switching(s, &target, &phase)) {
                cJSON *w = cJSON_AddObjectToObject(o, "switching");
                cJSON_AddStringToObject(w, "model", target ?: "");
                cJSON_AddStringToObject(w, "phase", switch_phase_to_string(phase));
        } else {
                cJSON_AddNullToObject(o, "switching");
        }
        supervisor_gpu(s, &gpu);
        g = cJSON_AddObjectToObject(o, "gpu");
        if (gpu.source) {
                cJSON_AddStringToObject(g, "source", gpu.source);
        } else {
                cJSON_AddNullToObject(g, "source");
                cJSON_AddStringToObject(g, "why", gpu.why ?: "");
        }
        cJSON_AddNumberToObject(g, "total", (double) gpu.total);
        cJSON_AddNumberToObject(g, "used", (double) gpu.used);
        cJSON_AddNumberToObject(g, "budget", (double) gpu.budget);
        cJSON_AddNumberToObject(g, "resident", (double) gpu.resident);
        cJSON_AddNumberToObject(g, "max_resident", gpu.max_resident);
        a = cJSON_AddArrayToObject(o, "models");
        for (size_t i = 0; i < n; i++) {
                cJSON_AddItemToArray(a, dashboard_model_json(d, children[i], active));
        }
        a = cJSON_AddArrayToObject(o, "switches");
        for (size_t i = d->n_switches; i > 0; i--) { /* the newest first */
                const DashboardSwitch *w =
                        &d->switches[(d->head + i - 1) % DASHBOARD_SWITCHES_KEPT];
                cJSON *e = cJSON_CreateObject();

                if (w->from) {
                        cJSON_AddStringToObject(e, "from", w->from);
                } else {
                        cJSON_AddNullToObject(e, "from");
                }
                cJSON_AddStringToObject(e, "to", w->to);
                cJSON_AddStringToObject(e, "kind", w->kind ?: "in progress");
                if (w->end_usec) {
                        cJSON_AddNumberToObject(e, "seconds",
                                                (double) (w->end_usec - w->start_usec) /
                                                        USEC_PER_SEC);
                } else {
                        cJSON_AddNullToObject(e, "seconds");
                }
                cJSON_AddNumberToObject(e, "time", (double) (w->start_realtime / USEC_PER_SEC));
                cJSON_AddItemToArray(a, e);
        }
        t = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return t;
}

/* ---- switches, as seen ---- */

static DashboardSwitch *dashboard_switch_last(Dashboard *d)
{
        return d->n_switches > 0
                       ? &d->switches[(d->head + d->n_switches - 1) % DASHBOARD_SWITCHES_KEPT]
                       : NULL;
}

static DashboardSwitch *dashboard_switch_push(Dashboard *d, const char *from, const char *to)
{
        DashboardSwitch *w;
        char *f = from ? strdup(from) : NULL, *t = strdup(to);

        if ((from && !f) || !t) {
                free(f);
                free(t);
                return NULL;
        }
        if (d->n_switches == DASHBOARD_SWITCHES_KEPT) {
                w = &d->switches[d->head];
                free(w->from);
                free(w->to);
                d->head = (d->head + 1) % DASHBOARD_SWITCHES_KEPT;
                d->n_switches--;
        }
        w = &d->switches[(d->head + d->n_switches++) % DASHBOARD_SWITCHES_KEPT];
        *w = (DashboardSwitch) {
                .from = f,
                .to = t,
                .start_usec = proxy_now(d->proxy),
                .start_realtime = now_usec(CLOCK_REALTIME),
        };
        return w;
}

static ServingState dashboard_model_was(const Dashboard *d, const char *name)
{
        for (size_t i = 0; name && i < d->n_models; i++) {
                if (streq(d->models[i].name, name)) {
                        return d->models[i].state;
                }
        }
        return _SERVING_STATE_INVALID;
}

/* Called before d->models is updated: "was" is the last look, supervisor_serving() now. */
static void dashboard_track_switches(Dashboard *d)
{
        Supervisor *s = dashboard_supervisor(d);
        const char *active = supervisor_active(s), *target = NULL;
        DashboardSwitch *last = dashboard_switch_last(d);
        SwitchPhase phase;
        bool switching = supervisor_switching(s, &target, &phase) && target;
        uint64_t now = proxy_now(d->proxy);

        if (last && !last->kind && (!switching || !streq(target, last->to))) {
                ServingState to = supervisor_serving(s, last->to, NULL);
                ServingState from =
                        last->from ? supervisor_serving(s, last->from, NULL) : SERVING_ABSENT;

                last->end_usec = now;
                if (to != SERVING_READY) {
                        last->kind = "failed";
                } else if (!streq_ptr(active, last->to)) {
                        last->kind = "load";
                } else {
                        /* Make before break: the model it replaced served until it was ready. */
                        last->kind = from == SERVING_READY || serving_state_leaving(from)
                                             ? switch_kind_to_string(SWITCH_KIND_BESIDE)
                                             : switch_kind_to_string(SWITCH_KIND_REPLACE);
                }
                last = NULL;
        }
        if (switching && (!last || last->kind || !streq(target, last->to))) {
                (void) dashboard_switch_push(d, d->active, target);
        } else if (!switching && active && !streq_ptr(active, d->active) &&
                   dashboard_model_was(d, active) == SERVING_READY) {
                /* A change of route to a model that was ready: over before anyone saw it. */
                DashboardSwitch *w = dashboard_switch_push(d, d->active, active);
                if (w) {
                        w->kind = switch_kind_to_string(SWITCH_KIND_RESIDENT);
                        w->end_usec = now;
                }
        }
        if (!switching && !streq_ptr(active, d->active)) {
                free(d->active);
                d->active = active ? strdup(active) : NULL;
        }
}

/* ---- change ---- */

static int dashboard_on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void dashboard_arm(Dashboard *d, bool loading)
{
        uint64_t next = proxy_now(d->proxy) +
                        (loading ? DASHBOARD_PROGRESS_USEC : DASHBOARD_KEEPALIVE_USEC);

        if (d->n_watchers == 0) {
                (void) sd_event_source_set_enabled(d->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(d->timer, next);
        (void) sd_event_source_set_enabled(d->timer, SD_EVENT_ONESHOT);
}

/* Looks at every model again: router events for those whose status or load progress changed,
 * and a "state" event if anything the page shows did. */
static void dashboard_refresh(Dashboard *d)
{
        Supervisor *s = dashboard_supervisor(d);
        size_t n;
        Child **children = supervisor_children(s, &n);
        DashboardModel *models = calloc(MAX(n, (size_t) 1), sizeof(DashboardModel));
        _cleanup_free_ char *state = NULL;
        bool loading = false;

        dashboard_track_switches(d);
        if (!models) {
                return;
        }
        for (size_t i = 0; i < n; i++) {
                const char *name = child_name(children[i]);
                ServingState st = supervisor_serving(s, name, NULL);
                RouterStatus rs = router_status_of(st), old = ROUTER_STATUS_UNLOADED;
                double progress = st == SERVING_LOADING ? child_load_progress(children[i]) : -1;
                double old_progress = -1;

                for (size_t k = 0; k < d->n_models; k++) {
                        if (streq(d->models[k].name, name)) {
                                old = d->models[k].status;
                                old_progress = d->models[k].progress;
                        }
                }
                /* The router says "loaded" with the model's info: the meta llmd reads from it
                 * just after it is ready (unless that fails: then without, 6 s on). */
                if (rs == ROUTER_STATUS_LOADED && old != ROUTER_STATUS_LOADED &&
                    d->n_watchers > 0 && !child_meta(children[i]) &&
                    proxy_now(d->proxy) < child_ready_usec(children[i]) + 6 * USEC_PER_SEC) {
                        rs = old;
                        progress = old_progress;
                        st = SERVING_LOADING; /* look again at the next tick */
                }
                models[i] = (DashboardModel) {
                        .name = strdup(name), .state = st, .status = rs, .progress = progress
                };
                loading = loading || st == SERVING_LOADING;
                if (rs != old || (rs == ROUTER_STATUS_LOADING && progress != old_progress)) {
                        _cleanup_free_ char *ev =
                                router_api_event(s, children[i], old, rs, progress);
                        if (ev) {
                                dashboard_broadcast(d, true, ev);
                        }
                }
        }
        for (size_t k = 0; k < d->n_models; k++) {
                free(d->models[k].name);
        }
        free(d->models);
        d->models = models;
        d->n_models = n;

        state = dashboard_state_json(d);
        if (state && !streq_ptr(state, d->state)) {
                _cleanup_free_ char *ev = NULL;

                if (asprintf(&ev, "event: state\ndata: %s\n\n", state) >= 0) {
                        dashboard_broadcast(d, false, ev);
                }
                free(d->state);
                d->state = TAKE_PTR(state);
        }
        dashboard_arm(d, loading);
}

static int dashboard_on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        Dashboard *d = userdata;

        dashboard_refresh(d);
        if (proxy_now(d->proxy) - d->last_write_usec >= DASHBOARD_KEEPALIVE_USEC) {
                dashboard_broadcast(d, false, ": keep-alive\n\n");
                dashboard_broadcast(d, true, ": keep-alive\n\n");
        }
        return 0;
}

void dashboard_models_changed(Dashboard *d)
{
        if (d) {
                dashboard_refresh(d);
        }
}

/* ---- answers ---- */

static void dashboard_answer_page(Request *r)
{
        struct MHD_Response *resp = MHD_create_response_from_buffer(
                dashboard_page_size, (void *) dashboard_page, MHD_RESPMEM_PERSISTENT);

        if (resp) {
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                        "text/html; charset=utf-8");
                /* Nothing from elsewhere, no frames, no forms: the page talks to llmd only. */
                MHD_add_response_header(
                        resp, "Content-Security-Policy",
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                        "frame-ancestors 'none'");
                MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
                MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        }
        request_answer_response(r, 200, resp);
}

static bool watch_live(const DashboardWatch *w)
{
        return w->request && !w->dropped;
}

static unsigned watch_count(const Dashboard *d, const Client *client, unsigned key)
{
        unsigned n = 0;

        for (const DashboardWatch *w = d->watchers; w; w = w->next) {
                n += watch_live(w) && w->client == client && w->key == key;
        }
        return n;
}

/* All streams taken: the holder with the most (by address and key; the asker counted with the
 * one it asks for, and chosen on a tie) loses its oldest. One client leaking streams ends its
 * own, never another's; 64 clients with one each keep theirs. Whether a stream can be had. */
static bool dashboard_make_room(Dashboard *d, const Client *client, unsigned key)
{
        DashboardWatch *victim = NULL;
        const Client *holder = client;
        unsigned live = 0, holder_key = key, most;

        for (DashboardWatch *w = d->watchers; w; w = w->next) {
                live += watch_live(w);
        }
        if (live < DASHBOARD_WATCHERS_MAX) {
                return true;
        }
        /* A stream whose client left is not noticed while it waits for news: look first. */
        for (DashboardWatch *w = d->watchers; w; w = w->next) {
                if (watch_live(w) && request_client_gone(w->request)) {
                        watch_drop(w);
                        live--;
                }
        }
        if (live < DASHBOARD_WATCHERS_MAX) {
                return true;
        }
        most = watch_count(d, client, key) + 1;
        for (DashboardWatch *w = d->watchers; w; w = w->next) {
                unsigned n = watch_live(w) ? watch_count(d, w->client, w->key) : 0;

                if (n > most) {
                        holder = w->client;
                        holder_key = w->key;
                        most = n;
                }
        }
        /* Its oldest: the list is newest first. */
        for (DashboardWatch *w = d->watchers; w; w = w->next) {
                if (watch_live(w) && w->client == holder && w->key == holder_key) {
                        victim = w;
                }
        }
        if (!victim) {
                return false;
        }
        log_info(
                "dashboard: all %u event streams are taken; the oldest of a client that holds %u "
                "ends",
                (unsigned) DASHBOARD_WATCHERS_MAX, most);
        watch_drop(victim);
        return true;
}

static void dashboard_answer_stream(Request *r, bool router)
{
        Dashboard *d = r->proxy->dashboard;
        const Client *client = request_peer(r);
        DashboardWatch *w;
        struct MHD_Response *resp;

        if (!dashboard_make_room(d, client, r->route.key)) {
                request_answer_error(r, 503, "unavailable_error",
                                     "too many event streams are open (at most 64)", "5");
                return;
        }
        w = calloc(1, sizeof(DashboardWatch));
        if (!w) {
                request_answer_error(r, 500, "server_error", "out of memory", NULL);
                return;
        }
        *w = (DashboardWatch) {
                .dashboard = d,
                .request = r,
                .router = router,
                .refs = 1,
                .client = client,
                .key = r->route.key,
        };
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, watch_read, w,
                                                 watch_response_done);
        if (!resp) {
                free(w);
                request_answer_error(r, 500, "server_error", "out of memory", NULL);
                return;
        }
        w->refs = 2; /* the response's and the request's */
        w->next = d->watchers;
        if (d->watchers) {
                d->watchers->prev = w;
        }
        d->watchers = w;
        d->n_watchers++;
        r->watch = w;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        /* A look now (it arms the timer: progress twice a second while a model loads); the
         * page starts from the whole state, if that look did not send it already. */
        dashboard_refresh(d);
        if (!router && buffer_pending(&w->buf) == 0 && d->state) {
                _cleanup_free_ char *ev = NULL;

                if (asprintf(&ev, "event: state\ndata: %s\n\n", d->state) >= 0) {
                        watch_send(w, ev, strlen(ev));
                }
        }
        request_answer_response(r, 200, resp);
}

static void dashboard_answer_action(Request *r, RouterAction a, bool router)
{
        Dashboard *d = r->proxy->dashboard;
        RouterAnswer answer;

        /* A cross-site form can send neither this header nor a JSON content type; a page of
         * another origin sending it goes through a preflight first (and the Origin rules). */
        if (!router &&
            !MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, "X-Llmd-Dashboard")) {
                request_answer_error(r, 403, "permission_error",
                                     "a dashboard action needs the X-Llmd-Dashboard header", NULL);
                return;
        }
        (void) router_api_action(dashboard_supervisor(d), a, router, r->body, r->body_len, &answer);
        /* For the activity log and the metrics: which model, and why refused. */
        free(r->model_asked);
        r->model_asked = TAKE_PTR(answer.model);
        if (answer.type) {
                request_note_error(r, answer.type, answer.message);
        }
        request_answer_json(r, answer.status, TAKE_PTR(answer.body));
        router_answer_done(&answer);
        /* What the action changed at once (a resident switch) shows before its answer. */
        dashboard_refresh(d);
}

void dashboard_answer(Request *r)
{
        const char *path = r->route.path;
        size_t n = strcspn(path, "?");

#define PATH_IS(p) (n == strlen(p) && strneq(path, p, n))
        if (PATH_IS("/llmd")) {
                struct MHD_Response *resp =
                        MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
                if (resp) {
                        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, "/llmd/");
                }
                request_answer_response(r, 308, resp);
        } else if (PATH_IS("/llmd/")) {
                dashboard_answer_page(r);
        } else if (PATH_IS("/llmd/events")) {
                dashboard_answer_stream(r, false);
        } else if (PATH_IS("/models/sse")) {
                dashboard_answer_stream(r, true);
        } else if (PATH_IS("/llmd/switch")) {
                dashboard_answer_action(r, ROUTER_ACTION_SWITCH, false);
        } else if (PATH_IS("/llmd/load")) {
                dashboard_answer_action(r, ROUTER_ACTION_LOAD, false);
        } else if (PATH_IS("/llmd/unload")) {
                dashboard_answer_action(r, ROUTER_ACTION_UNLOAD, false);
        } else if (PATH_IS("/models/load")) {
                dashboard_answer_action(r, ROUTER_ACTION_LOAD, true);
        } else if (PATH_IS("/models/unload")) {
                dashboard_answer_action(r, ROUTER_ACTION_UNLOAD, true);
        } else {
                request_answer_error(r, 404, "not_found_error", "no such path", NULL);
        }
#undef PATH_IS
}

void dashboard_end_streams(Dashboard *d)
{
        for (DashboardWatch *w = d ? d->watchers : NULL; w; w = w->next) {
                w->dropped = true;
                if (w->request) {
                        request_resume(w->request);
                }
        }
}

/* ---- the object ---- */

int dashboard_new(Proxy *p, Dashboard **ret)
{
        Dashboard *d = calloc(1, sizeof(Dashboard));
        int r;

        if (!d) {
                return -ENOMEM;
        }
        d->proxy = p;
        r = sd_event_add_time(p->event, &d->timer, CLOCK_MONOTONIC, 0, USEC_PER_MSEC,
                              dashboard_on_timer, d);
        if (r < 0) {
                free(d);
                return r;
        }
        (void) sd_event_source_set_enabled(d->timer, SD_EVENT_OFF);
        *ret = d;
        return 0;
}

Dashboard *dashboard_free(Dashboard *d)
{
        if (!d) {
                return NULL;
        }
        /* Streams still held by their responses stop pointing here. */
        for (DashboardWatch *w = d->watchers; w; w = w->next) {
                w->dashboard = NULL;
        }
        sd_event_source_disable_unref(d->timer);
        for (size_t k = 0; k < d->n_models; k++) {
                free(d->models[k].name);
        }
        free(d->models);
        for (size_t i = 0; i < d->n_switches; i++) {
                DashboardSwitch *w = &d->switches[(d->head + i) % DASHBOARD_SWITCHES_KEPT];
                free(w->from);
                free(w->to);
        }
        free(d->active);
        free(d->state);
        free(d);
        return NULL;
}
