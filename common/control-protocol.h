/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The control protocol, io.llmd.Manager over Varlink: the one table of its methods and the
 * names of its errors. llmd's dispatcher, llmctl's help and llmd-control(7) are all checked
 * against this table by tests.
 */

#define CONTROL_INTERFACE "io.llmd.Manager"
#define CONTROL_SOCKET_NAME "control.sock"

/* In the order of control_methods[], which is sorted by name. */
typedef enum ControlMethodId {
        CONTROL_METHOD_ACTIVITY,
        CONTROL_METHOD_CLEAR_PROMPT_CACHE,
        CONTROL_METHOD_LIST,
        CONTROL_METHOD_LOAD,
        CONTROL_METHOD_PLAN,
        CONTROL_METHOD_RELOAD,
        CONTROL_METHOD_START,
        CONTROL_METHOD_STATUS,
        CONTROL_METHOD_STOP,
        CONTROL_METHOD_SWITCH,
        CONTROL_METHOD_UNLOAD,
        CONTROL_METHOD_GET_INFO,
        _CONTROL_METHOD_MAX,
} ControlMethodId;

typedef struct ControlMethod {
        ControlMethodId id;
        const char *name;       /* fully qualified */
        const char *parameters; /* as documented: "model: string, now: ?bool" */
        const char *summary;
} ControlMethod;

/* Sorted by name. */
extern const ControlMethod control_methods[_CONTROL_METHOD_MAX];

const ControlMethod *control_method_find(const char *name);

/* Errors of io.llmd.Manager, with their parameters. */
/* clang-format off */
#define CONTROL_ERROR_UNKNOWN_MODEL CONTROL_INTERFACE ".UnknownModel"         /* model, reason */
#define CONTROL_ERROR_MODEL_UNAVAILABLE CONTROL_INTERFACE ".ModelUnavailable" /* model, reason */
#define CONTROL_ERROR_NO_ROOM CONTROL_INTERFACE ".NoRoom"                     /* model, reason */
#define CONTROL_ERROR_LOAD_FAILED CONTROL_INTERFACE ".LoadFailed" /* model, reason, log[], restored */
#define CONTROL_ERROR_SUPERSEDED CONTROL_INTERFACE ".Superseded"              /* model, by */
#define CONTROL_ERROR_CONFIG_INVALID CONTROL_INTERFACE ".ConfigInvalid"       /* errors[] */
#define CONTROL_ERROR_SHUTTING_DOWN CONTROL_INTERFACE ".ShuttingDown"
#define CONTROL_ERROR_PROTOCOL CONTROL_INTERFACE ".ProtocolError"             /* reason */
#define CONTROL_ERROR_TOO_MANY CONTROL_INTERFACE ".TooManyClients"
#define CONTROL_ERROR_BUSY CONTROL_INTERFACE ".Busy"                          /* reason */
/* The standard ones. */
#define VARLINK_ERROR_METHOD_NOT_FOUND "org.varlink.service.MethodNotFound"  /* method */
#define VARLINK_ERROR_INVALID_PARAMETER "org.varlink.service.InvalidParameter" /* parameter */
#define VARLINK_ERROR_PERMISSION_DENIED "org.varlink.service.PermissionDenied"
#define VARLINK_ERROR_EXPECTED_MORE "org.varlink.service.ExpectedMore"
/* clang-format on */
