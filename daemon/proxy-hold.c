/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "list.h"
#include "log.h"
#include "proxy-internal.h"

/*
 * Where a request goes once its body is in: which model (proxy-route.c decides), and whether
 * that model takes it now, later (the hold queue, in arrival order, while a model loads) or
 * never. Also routing = switch, and drains: a model being switched away finishes what runs.
 */

/* ---- the lists (request_step() keeps them) ---- */

void hold_append(Proxy *p, Request *r)
{
        LIST_APPEND(p->held_first, p->held_last, r, prev, next);
}

void hold_remove(Proxy *p, Request *r)
{
        LIST_REMOVE(p->held_first, p->held_last, r, prev, next);
}

void hold_forwarded_push(Proxy *p, Request *r)
{
        LIST_PREPEND(p->forwarded, r, prev, next);
}

void hold_forwarded_remove(Proxy *p, Request *r)
{
        LIST_UNLINK(p->forwarded, r, prev, next);
}

/* ---- where it goes ---- */

/* The target failed to load (c NULL: a reload removed it): 503, with the reason. */
static void hold_answer_failed(Request *r, Child *c)
{
        _cleanup_free_ char *m = NULL;

        if (asprintf(&m, "%s failed to load: %s", r->target,
                     !c                ? "it is no longer configured"
                     : child_reason(c) ? child_reason(c)
                                       : "?") < 0) {
                m = NULL;
        }
        request_answer_error(r, 503, "unavailable_error", m ? m : "failed", "30");
}

const char *hold_resolve(Request *r)
{
        Proxy *p = r->proxy;
        RouteTargetInput in = {
                .kind = r->route.kind,
                .listener_model = r->listener->model,
                .model_asked = r->model_asked,
                .active = supervisor_active(p->supervisor),
                .loaded = supervisor_loaded(p->supervisor),
        };
        const char *target = NULL, *type = NULL;
        _cleanup_free_ char *msg = NULL;
        unsigned status = 500;

        if (route_target(proxy_config(p), &in, &target, &status, &type, &msg) < 0) {
                request_answer_error(r, 500, "server_error", "out of memory", NULL);
                return NULL;
        }
        if (!target) {
                request_answer_error(r, status, type, msg, in.active && !in.loaded ? "60" : NULL);
        }
        return target;
}

typedef enum HoldVerdict {
        HOLD_FORWARD, /* its model serves now */
        HOLD_WAIT,    /* its model loads, or will once asked (routing = switch) */
        HOLD_FAILED,  /* its model failed to load, or is gone */
        HOLD_ABSENT,  /* its model is not loaded, and nothing will load it */
} HoldVerdict;

/* What becomes of a request for model now, from the residency machine alone. A model being
 * drained or stopped takes nothing new: a request for it is one for a model not loaded. */
static HoldVerdict hold_verdict(Proxy *p, const char *model)
{
        ServingState st = supervisor_serving(p->supervisor, model, NULL);

        switch (st) {
        case SERVING_READY:
                return HOLD_FORWARD;
        case SERVING_LOADING:
                return HOLD_WAIT;
        case SERVING_FAILED:
        case _SERVING_STATE_INVALID:
                return HOLD_FAILED;
        case SERVING_ABSENT:
        case SERVING_DRAINING:
        case SERVING_SAVING:
        case SERVING_STOPPING:
                return supervisor_wanted(p->supervisor, model) ||
                                       proxy_config(p)->routing == ROUTING_SWITCH
                               ? HOLD_WAIT
                               : HOLD_ABSENT;
        case _SERVING_STATE_MAX:
                break;
        }
        return HOLD_FAILED;
}

static void hold_answer_absent(Request *r)
{
        _cleanup_free_ char *m = NULL;

        if (asprintf(&m, "%s is not loaded (llmctl load %s, or switch to it)", r->target,
                     r->target) < 0) {
                m = NULL;
        }
        request_answer_error(r, 503, "unavailable_error", m ? m : "not loaded", NULL);
}

static void hold_answer_stopping(Request *r)
{
        request_answer_transient(r, 503, "llmd is stopping", "10");
}

/* Sends r on or answers it, when its target's state decides; false: it is to wait. */
static bool hold_settle(Request *r)
{
        Proxy *p = r->proxy;

        switch (hold_verdict(p, r->target)) {
        case HOLD_FORWARD:
                request_forward(r, supervisor_child(p->supervisor, r->target));
                return true;
        case HOLD_FAILED:
                hold_answer_failed(r, supervisor_child(p->supervisor, r->target));
                return true;
        case HOLD_ABSENT:
                hold_answer_absent(r);
                return true;
        case HOLD_WAIT:
                break;
        }
        return false;
}

/* Sends r on, holds it, or answers it, depending on its target's state. */
void hold_dispatch(Request *r)
{
        Proxy *p = r->proxy;

        if (hold_settle(r)) {
                return;
        }
        if (p->stopping) {
                hold_answer_stopping(r);
                return;
        }
        if (p->counters.held >= proxy_config(p)->hold_queue) {
                request_answer_transient(r, 503,
                                         "too many requests are waiting for a model to load", "5");
                return;
        }
        request_step(r, REQ_EVENT_HOLD);
        hold_maybe_switch(p);
}

/* Called from the loop (a defer source of the supervisor's), never from within a supervisor
 * call: forwarding a request here cannot re-enter request_step() on another one. */
void proxy_models_changed(Proxy *p)
{
        Request *r = p->held_first;

        /* In arrival order. A request dispatched now leaves the queue; one still waiting stays.
         * Each is routed again: after a switch that failed or was superseded, whatever serves
         * now takes the requests held for its target. */
        while (r) {
                Request *next = r->next;
                const char *t = hold_resolve(r);
                char *c;

                if (t && !streq(t, r->target)) {
                        c = strdup(t);
                        if (!c) {
                                request_answer_error(r, 500, "server_error", "out of memory", NULL);
                                r = next;
                                continue;
                        }
                        free(r->target);
                        r->target = c;
                }
                if (t) {
                        (void) hold_settle(r);
                }
                r = next;
        }
        hold_maybe_switch(p);
        dashboard_models_changed(p->dashboard);
}

void proxy_stop_holding(Proxy *p)
{
        p->stopping = true;
        /* Without one, the client would see its connection closed when llmd exits. */
        while (p->held_first) {
                hold_answer_stopping(p->held_first);
        }
}

/* routing = switch: when nothing runs on the active model, swap to what the oldest waiting
 * request asks for. Requests for the active model go first, so a burst does not thrash. A
 * model that failed is not asked for again: its requests were answered with the reason. */
void hold_maybe_switch(Proxy *p)
{
        const char *active = supervisor_active(p->supervisor), *switching;
        SwitchPhase phase;
        _cleanup_free_ char *reason = NULL;
        int r;

        if (proxy_config(p)->routing != ROUTING_SWITCH || p->stopping || !p->held_first ||
            !supervisor_loaded(p->supervisor) ||
            supervisor_switching(p->supervisor, &switching, &phase)) {
                return;
        }
        for (Request *q = p->forwarded; q; q = q->next) {
                if (active && streq(q->target, active)) {
                        return;
                }
        }
        for (Request *q = p->held_first; q; q = q->next) {
                /* The active model is asked for again only when it is down (not loaded at
                 * startup, or drained by a reload that then failed). */
                if (active && streq(q->target, active) &&
                    supervisor_serving(p->supervisor, active, NULL) != SERVING_ABSENT) {
                        continue;
                }
                log_info("proxy: a request asks for %s: switching", q->target);
                r = supervisor_switch(p->supervisor, q->target, 0, NULL, NULL, &reason);
                if (r < 0) {
                        log_warning_errno(r, "proxy: cannot switch to %s: %s", q->target,
                                          reason ? reason : "?");
                }
                return;
        }
}

/* ---- drains ---- */

static bool hold_busy_with(const Proxy *p, const char *model)
{
        for (Request *r = p->forwarded; r; r = r->next) {
                if (r->target && streq(r->target, model)) {
                        return true;
                }
        }
        return false;
}

bool hold_draining(const Proxy *p, const char *model)
{
        for (Drain *d = p->drains; d; d = d->next) {
                if (streq(d->model, model)) {
                        return true;
                }
        }
        return false;
}

/* Ends the requests still running on model, each with an error its client can read. */
static void hold_cut_off(Proxy *p, const char *model, const char *why)
{
        Request *r = p->forwarded;

        while (r) {
                Request *next = r->next;

                if (r->target && streq(r->target, model)) {
                        request_cut_off(r, why);
                }
                r = next;
        }
}

static void drain_free(Proxy *p, Drain *d)
{
        Drain **i = &p->drains;

        while (*i && *i != d) {
                i = &(*i)->next;
        }
        if (*i) {
                *i = d->next;
        }
        sd_event_source_disable_unref(d->timer);
        free(d->model);
        free(d);
}

static void drain_finish(Proxy *p, Drain *d)
{
        void (*done)(void *) = d->done;
        void *userdata = d->userdata;

        drain_free(p, d);
        done(userdata);
}

static int drain_on_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        Drain *d = userdata;
        Proxy *p = d->proxy;
        _cleanup_free_ char *model = strdup(d->model);

        if (!model) {
                drain_finish(p, d);
                return 0;
        }
        log_warning("proxy: requests on %s still running after drain-timeout, cutting them off",
                    model);
        /* Cutting them off ends the drain, through hold_check_drains(). */
        hold_cut_off(p, model,
                     p->stopping ? "llmd is stopping and the request ran past drain-timeout"
                                 : "the model was switched and the request ran past drain-timeout");
        return 0;
}

void hold_check_drains(Proxy *p)
{
        Drain *d = p->drains;

        while (d) {
                Drain *next = d->next;

                if (!hold_busy_with(p, d->model)) {
                        drain_finish(p, d);
                }
                d = next;
        }
}

void hold_free_drains(Proxy *p)
{
        /* Whoever waits for a drain is told, so nothing waits for ever. */
        while (p->drains) {
                drain_finish(p, p->drains);
        }
}

void proxy_drain(Proxy *p, const char *model, bool now, void (*done)(void *userdata),
                 void *userdata)
{
        Drain *d;

        if (now) {
                hold_cut_off(p, model, "the model was switched (llmctl switch --now)");
        }
        if (!hold_busy_with(p, model)) {
                done(userdata);
                return;
        }
        d = calloc(1, sizeof(Drain));
        if (!d || !(d->model = strdup(model))) {
                free(d);
                done(userdata);
                return;
        }
        d->proxy = p;
        d->done = done;
        d->userdata = userdata;
        d->next = p->drains;
        p->drains = d;
        if (sd_event_add_time_relative(p->event, &d->timer, CLOCK_MONOTONIC,
                                       proxy_config(p)->drain_timeout_usec, USEC_PER_MSEC,
                                       drain_on_timeout, d) < 0) {
                d->timer = NULL;
        }
        log_info("proxy: letting the requests on %s finish (drain-timeout %.0f s)", model,
                 (double) proxy_config(p)->drain_timeout_usec / USEC_PER_SEC);
}
