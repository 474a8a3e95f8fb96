/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/* What llmd tells systemd (or a test listening on $NOTIFY_SOCKET). Without $NOTIFY_SOCKET
 * these do nothing. */

void notify_ready(void);
void notify_reloading(void);
void notify_stopping(void);
/* Sends STATUS= only when the text changed. */
void notify_status(const char *status);
/* EXTEND_TIMEOUT_USEC=: a stop or drain that may take this long from now. */
void notify_extend_timeout(uint64_t usec);
/* ERRNO= before a failing exit, with STATUS= saying why. */
void notify_errno(int error, const char *status);
