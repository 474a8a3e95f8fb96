/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sim-listen.h"
#include "sim.h"

/* llama-server's listen backlog; a small one stalls hundreds of concurrent clients. */
#define LISTEN_BACKLOG 512

static bool ends_with(const char *s, const char *suffix)
{
        size_t a = strlen(s), b = strlen(suffix);

        return a >= b && streq(s + a - b, suffix);
}

static int listen_unix(const char *path, char **ret_address)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                return -ENAMETOOLONG;
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                return -errno;
        }
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        if (asprintf(ret_address, "unix://%s", path) < 0) {
                close(fd);
                return -ENOMEM;
        }
        return fd;
}

static int listen_tcp(const char *host, int port, char **ret_address)
{
        struct addrinfo hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
        };
        struct addrinfo *res = NULL;
        char service[16];
        int fd = -1, r = -EADDRNOTAVAIL;

        if (port < 0 || port > 65535) {
                return -EINVAL;
        }
        snprintf(service, sizeof(service), "%d", port);
        if (getaddrinfo(host, service, &hints, &res) != 0) {
                return -EADDRNOTAVAIL;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                int one = 1;

                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
                if (fd < 0) {
                        r = -errno;
                        continue;
                }
                /* cpp-httplib sets SO_REUSEADDR, so a port in TIME_WAIT can be reused. */
                (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0) {
                        break;
                }
                r = -errno;
                close(fd);
                fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0) {
                return r;
        }

        if (port == 0) {
                /* --port 0 binds any free port; llama-server prints the one it got */
                struct sockaddr_storage ss;
                socklen_t len = sizeof(ss);

                if (getsockname(fd, (struct sockaddr *) &ss, &len) == 0) {
                        port = ntohs(ss.ss_family == AF_INET6
                                             ? ((struct sockaddr_in6 *) &ss)->sin6_port
                                             : ((struct sockaddr_in *) &ss)->sin_port);
                }
        }
        if (asprintf(ret_address, "http://%s:%d", host, port) < 0) {
                close(fd);
                return -ENOMEM;
        }
        return fd;
}

int listen_open(const char *host, int port, char **ret_address)
{
        if (ends_with(host, ".sock")) {
                return listen_unix(host, ret_address);
        }
        return listen_tcp(host, port, ret_address);
}
