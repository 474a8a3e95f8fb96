/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "macro.h"

/*
 * One HTTP request over a unix socket, inside the event loop, for llama-server's /health (only
 * the status code matters: 200 ready, 503 loading), once ready its /v1/models, and its /slots. A connection llama-server has not opened yet
 * (no socket file, or nobody listening) is reported as -ENOENT/-ECONNREFUSED, not as an error
 * of the child. The callback runs exactly once, unless the probe is freed first.
 */

typedef struct Probe Probe;
typedef void (*probe_handler_t)(Probe *p, int status_or_errno, void *userdata);

int probe_new(sd_event *e, const char *socket_path, const char *path, uint64_t timeout_usec,
              probe_handler_t handler, void *userdata, Probe **ret);
/* The same, with a JSON body to POST when body is not NULL (else a GET), and, with want_body,
 * reading the whole answer (at most PROBE_BODY_MAX bytes, else -EFBIG): in the callback,
 * probe_body() is the body, NUL-terminated. */
#define PROBE_BODY_MAX (64 * 1024)
int probe_new_request(sd_event *e, const char *socket_path, const char *path, const char *body,
                      bool want_body, uint64_t timeout_usec, probe_handler_t handler,
                      void *userdata, Probe **ret);
const char *probe_body(const Probe *p);
Probe *probe_free(Probe *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Probe *, probe_free);

/* Parses "HTTP/1.x NNN ..." at the start of a response: the status, or -EAGAIN when more bytes
 * are needed, or -EBADMSG. Exported for the unit tests. */
int probe_parse_status(const char *buf, size_t len);
