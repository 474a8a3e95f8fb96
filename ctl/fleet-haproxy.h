/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

#include "macro.h"

/*
 * An haproxy.cfg (HAProxy 2.6, Debian 12) for several llmd boxes behind one endpoint, from what
 * each box's GET /v1/models says: one backend per model, its servers the boxes that configure it
 * (those where it is loaded, the others as backups that load it on demand), each checked with
 * GET /health?model=NAME. A pure function: no I/O, so it is table-tested. docs/fleet.md gives the
 * reasoning behind each setting.
 */

typedef struct FleetBox {
        const char *address; /* host:port, IPv4, a name, or [IPv6]:port */
        const cJSON *models; /* the box's answer to GET /v1/models */
} FleetBox;

/* Checks a box argument ("host:port"); -EINVAL when it is not one. */
int fleet_box_address_valid(const char *address);

/* Writes the configuration for boxes (in the order given: the first answers requests that name
 * no model) with the frontend bound to listen (HAProxy's bind syntax, e.g. ":8080") into *ret.
 * -EINVAL with *ret_error set when the boxes' model lists cannot make one (a name that means
 * different models on two boxes, a name HAProxy cannot hold, an answer without "data"); -ENOMEM.
 * Both strings are the caller's to free. */
int fleet_haproxy_config(const FleetBox *boxes, size_t n_boxes, const char *listen, char **ret,
                         char **ret_error);
