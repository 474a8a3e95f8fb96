/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "control-protocol.h"
#include "macro.h"

/*
 * The control socket: a unix socket speaking Varlink (see common/varlink.h), peers checked by
 * their credentials, every resource a peer controls bounded. One call per connection is
 * answered at a time, in order; further calls wait in the input (and the peer is not read while
 * too many wait). A call may be answered later (Switch): its handler keeps the ControlCall and
 * replies when it is done, with continued replies before if the caller asked for "more". A
 * client that goes away leaves its calls running, their replies dropped. A client that holds a
 * connection without calling is closed: idle slots are slots a busy root cannot have.
 */

#define CONTROL_CONNECTIONS_MAX 64       /* from peers other than root and llmd's own user */
#define CONTROL_CONNECTIONS_RESERVED 8   /* on top, for root and llmd's own user only */
#define CONTROL_OUTPUT_MAX (1024 * 1024) /* unread replies; more and the client is dropped */
/* A connection with no call running is closed after this long without a call... */
#define CONTROL_IDLE_TIMEOUT_USEC (30 * USEC_PER_SEC)
/* ...or this long after a message began to arrive and did not end. */
#define CONTROL_FRAME_TIMEOUT_USEC (3 * USEC_PER_SEC)

typedef struct ControlServer ControlServer;
typedef struct ControlCall ControlCall;

/* A handler answers every call, now or later, with control_call_reply()/control_call_error();
 * what it returns is only logged (their own failures, passed on). */
typedef int (*control_handler_t)(ControlCall *call, cJSON *parameters, void *userdata);

typedef struct ControlOptions {
        sd_event *event;
        const char *path;
        const char *group;                 /* owner group of the socket, if it exists ("llmd") */
        const control_handler_t *handlers; /* indexed by ControlMethodId */
        void *userdata;
        /* 0: CONTROL_IDLE_TIMEOUT_USEC, CONTROL_FRAME_TIMEOUT_USEC. Tests wait less. */
        uint64_t idle_timeout_usec, frame_timeout_usec;
} ControlOptions;

/* Binds and listens; logs nothing: on failure, *ret_step names the step that failed. */
int control_server_new(const ControlOptions *o, ControlServer **ret, const char **ret_step);
ControlServer *control_server_free(ControlServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ControlServer *, control_server_free);
unsigned control_server_connections(const ControlServer *s);

/* parameters is consumed (may be NULL). The last reply (continues = false) or an error ends the
 * call and frees it; do not use call afterwards. */
int control_call_reply(ControlCall *call, cJSON *parameters, bool continues);
int control_call_error(ControlCall *call, const char *error, cJSON *parameters);
