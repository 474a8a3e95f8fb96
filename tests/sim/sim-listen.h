/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The listening socket, bound the way llama-server (cpp-httplib) binds it: a --host ending in
 * ".sock" is a unix socket path, anything else a TCP host for --port. An existing socket file is
 * never removed, so a stale one makes the bind fail, as it does for llama-server. Returns the
 * descriptor, and in ret_address the address llama-server prints ("http://h:p", "unix://path"),
 * or -errno.
 */
int listen_open(const char *host, int port, char **ret_address);
