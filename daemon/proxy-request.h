/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One HTTP request's life in the proxy, as an explicit state machine:
 *
 *   RECEIVING ──ANSWER (refused, or answered by llmd)──────────────────────────────▶ ANSWERED
 *      │  FORWARD (target ready)        │ HOLD (target loading)                            ▲
 *      ▼                                ▼                                                  │
 *   FORWARDED ◀────FORWARD──────────── HELD ──ANSWER (hold-timeout, full, failed), GONE───┤
 *      │  HEADERS   └──UPSTREAM_END (no answer), STALL, CUT_OFF, GONE─────────────────────┘
 *      ▼
 *   RELAYING ──UPSTREAM_END, STALL, CUT_OFF, GONE──▶ FLUSHING
 *
 * FORWARDED: the child has the request, no answer yet. RELAYING: its answer streams through.
 * FLUSHING: the child is done (or was cut off: STALL is upstream-timeout without a byte,
 * CUT_OFF a drain that ran out, GONE the client); what was read, and an error event where the
 * stream ended badly, still goes out. ANSWERED: llmd's own complete answer. Both end when
 * libmicrohttpd completes the request. Leaving FORWARDED or RELAYING cancels the upstream
 * transfer, so the child stops generating. The table is request_transition(); every change of
 * state goes through request_step() in proxy-request.c, which also keeps the queues and counters.
 */

typedef enum RequestState {
        REQ_RECEIVING,
        REQ_HELD,
        REQ_FORWARDED,
        REQ_RELAYING,
        REQ_FLUSHING,
        REQ_ANSWERED,
        _REQ_STATE_MAX,
} RequestState;

typedef enum RequestEvent {
        REQ_EVENT_ANSWER,       /* llmd answers it itself (a local answer or an error) */
        REQ_EVENT_HOLD,         /* its model is loading: wait in the queue */
        REQ_EVENT_FORWARD,      /* its model is ready: the child gets it */
        REQ_EVENT_HEADERS,      /* the child's answer begins */
        REQ_EVENT_UPSTREAM_END, /* the child's answer ended, well or badly */
        REQ_EVENT_STALL,        /* no byte from the child for upstream-timeout */
        REQ_EVENT_CUT_OFF,      /* its model is switched away: drain-timeout ran out, or --now */
        REQ_EVENT_GONE,         /* the client went away */
        _REQ_EVENT_MAX,
} RequestEvent;

/* The next state, or -EINVAL when event cannot happen in state. */
int request_transition(RequestState state, RequestEvent event);
const char *request_state_to_string(RequestState s);
const char *request_event_to_string(RequestEvent e);
