/* SPDX-License-Identifier: MIT */
#pragma once

#include "llmctl-client.h"

/*
 * llmctl fleet haproxy BOX...: reads GET /v1/models of each box (host:port, optionally
 * host:port@KEYFILE; else $LLMD_API_KEY) and prints an haproxy.cfg that routes each request to a
 * box where its model is ready (fleet-haproxy.c writes it). Returns the exit code.
 */
int fleet_main(Client *cl);
