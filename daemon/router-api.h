/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

#include "supervisor.h"

/*
 * llama-server's router API (its model management: GET /models with each model's "status",
 * POST /models/load, POST /models/unload, GET /models/sse), spoken by llmd so that clients
 * written for llama-server's router mode work unchanged. The shapes are those of llama.cpp's
 * tools/server/README.md and of Debian's llama-server 0.7.0 run as a router with
 * --models-preset (tests/integration/test_router_api.py compares the two). Pure functions of the
 * supervisor's state: the proxy answers and streams what they make (dashboard.c).
 */

/* What the router calls a model's state: "unloaded", "loading", "loaded". */
typedef enum RouterStatus {
        ROUTER_STATUS_UNLOADED,
        ROUTER_STATUS_LOADING,
        ROUTER_STATUS_LOADED,
        _ROUTER_STATUS_MAX,
        _ROUTER_STATUS_INVALID = -1,
} RouterStatus;

const char *router_status_to_string(RouterStatus s);
/* From llmd's serving state: DRAINING and STOPPING are still "loaded" (the router, too, says so
 * until the process has exited); FAILED is "unloaded" with "failed". */
RouterStatus router_status_of(ServingState st);
/* The exit code the router reports for a model that failed ("exit status N": N; a signal or a
 * load timeout: 1), 0 when it has not failed. */
int router_exit_code(const Child *c, ServingState st);

/* The "status" object of a model's GET /models entry: value, args (the llama-server command
 * line llmd runs for it), preset (its profile as INI text), and progress while loading or
 * failed/exit_code after a failure. NULL when out of memory. */
cJSON *router_api_status(Supervisor *s, Child *c);
/* Adds the router's fields to an entry of llmd's /v1/models (status, tags, architecture,
 * source, can_remove). */
void router_api_extend_entry(cJSON *e, Supervisor *s, Child *c);

/* One /models/sse event, "data: {...}\n\n", for model going from old to st (old
 * _ROUTER_STATUS_INVALID: the first event of a stream). NULL when nothing is to be said or out
 * of memory. progress: 0..1 while loading, -1 when unknown. */
char *router_api_event(Supervisor *s, Child *c, RouterStatus old, RouterStatus now,
                       double progress);

typedef enum RouterAction {
        ROUTER_ACTION_LOAD,   /* make resident (llmctl load) */
        ROUTER_ACTION_UNLOAD, /* llmctl unload */
        ROUTER_ACTION_SWITCH, /* make active (llmctl switch): the dashboard's */
} RouterAction;

/* What an action answers: status, body (allocated JSON: {"success":true} or an error
 * object), and for the activity log the error's type (static) and message, and the model the
 * body named; NULL where none. */
typedef struct RouterAnswer {
        unsigned status;
        char *body;
        const char *type;
        char *message;
        char *model;
} RouterAnswer;

/* POST /models/load, /models/unload and the dashboard's actions: the model the body names
 * ({"model": NAME}), and the action begun (it goes on after the answer; /models/sse and
 * /llmd/events tell how it goes). router: as llama-server's router answers, a load of a model
 * already loaded or loading and an unload of one not running are refused with 400. Returns the
 * HTTP status; *ret is to be freed with router_answer_done(). */
unsigned router_api_action(Supervisor *s, RouterAction a, bool router, const char *body, size_t len,
                           RouterAnswer *ret);
void router_answer_done(RouterAnswer *a);
