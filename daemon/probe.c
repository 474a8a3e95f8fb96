/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "probe.h"

#define PROBE_BUF 256

struct Probe {
        bool want_body;
        sd_event_source *io;
        sd_event_source *timer;
        probe_handler_t handler;
        void *userdata;
        int fd;
        char *request;
        size_t request_len, written;
        char *buf; /* PROBE_BUF, or PROBE_BODY_MAX + 1 with the body */
        size_t size, len;
        const char *body;
};

int probe_parse_status(const char *buf, size_t len)
{
        static const char prefix[] = "HTTP/1.";
        int status = 0;

        if (len < 12) {
                /* Still a valid beginning? */
                size_t n = MIN(len, sizeof(prefix) - 1);
                return strneq(buf, prefix, n) ? -EAGAIN : -EBADMSG;
        }
        if (!strneq(buf, prefix, sizeof(prefix) - 1) || !isdigit((unsigned char) buf[7]) ||
            buf[8] != ' ') {
                return -EBADMSG;
        }
        for (size_t i = 9; i < 12; i++) {
                if (!isdigit((unsigned char) buf[i])) {
                        return -EBADMSG;
                }
                status = status * 10 + (buf[i] - '0');
        }
        return status;
}

static void probe_finish(Probe *p, int result)
{
        probe_handler_t h = p->handler;

        p->handler = NULL;
        p->io = sd_event_source_disable_unref(p->io);
        p->timer = sd_event_source_disable_unref(p->timer);
        p->fd = safe_close(p->fd);
        if (h) {
                h(p, result, p->userdata);
        }
}

static int probe_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Probe *p = userdata;
        ssize_t n;

        if (p->written < p->request_len) {
                n = send(fd, p->request + p->written, p->request_len - p->written, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR) {
                                return 0;
                        }
                        probe_finish(p, -errno);
                        return 0;
                }
                p->written += (size_t) n;
                if (p->written == p->request_len) {
                        (void) sd_event_source_set_io_events(s, EPOLLIN);
                }
                return 0;
        }

        n = recv(fd, p->buf + p->len, p->size - p->want_body - p->len, 0);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                        return 0;
                }
                probe_finish(p, -errno);
                return 0;
        }
        if (n == 0) {
                int st = probe_parse_status(p->buf, p->len);
                if (st >= 0 && p->want_body) {
                        /* Connection: close, and llama-server sends a Content-Length: the
                         * body is what follows the headers, up to the end. */
                        char *end = memmem(p->buf, p->len, "\r\n\r\n", 4);
                        p->buf[p->len] = '\0';
                        p->body = end ? end + 4 : NULL;
                        st = end ? st : -EBADMSG;
                }
                probe_finish(p, st == -EAGAIN ? -ECONNRESET : st);
                return 0;
        }
        p->len += (size_t) n;
        int st = probe_parse_status(p->buf, p->len);
        if (st != -EAGAIN && !(st >= 0 && p->want_body)) {
                probe_finish(p, st);
        } else if (p->len == p->size - p->want_body) {
                probe_finish(p, p->want_body ? -EFBIG : -EBADMSG);
        }
        return 0;
}

static int probe_on_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        probe_finish(userdata, -ETIMEDOUT);
        return 0;
}

int probe_new_request(sd_event *e, const char *socket_path, const char *path, const char *body,
                      bool want_body, uint64_t timeout_usec, probe_handler_t handler,
                      void *userdata, Probe **ret)
{
        _cleanup_(probe_freep) Probe *p = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int r;

        if (strlen(socket_path) >= sizeof(sa.sun_path)) {
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, socket_path);

        p = calloc(1, sizeof(Probe));
        if (!p) {
                return -ENOMEM;
        }
        p->fd = -1;
        p->want_body = want_body;
        p->size = want_body ? PROBE_BODY_MAX + 1 : PROBE_BUF;
        p->buf = malloc(p->size);
        if (!p->buf) {
                return -ENOMEM;
        }
        p->handler = handler;
        p->userdata = userdata;
        if (body) {
                r = asprintf(&p->request,
                             "POST %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                             path, strlen(body), body);
        } else {
                r = asprintf(&p->request,
                             "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                             path);
        }
        if (r < 0) {
                p->request = NULL;
                return -ENOMEM;
        }
        p->request_len = (size_t) r;

        p->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (p->fd < 0) {
                return -errno;
        }
        if (connect(p->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 && errno != EINPROGRESS &&
            errno != EAGAIN) {
                return -errno;
        }
        r = sd_event_add_io(e, &p->io, p->fd, EPOLLOUT, probe_on_io, p);
        if (r < 0) {
                return r;
        }
        r = sd_event_add_time_relative(e, &p->timer, CLOCK_MONOTONIC, timeout_usec, USEC_PER_MSEC,
                                       probe_on_timeout, p);
        if (r < 0) {
                return r;
        }
        *ret = TAKE_PTR(p);
        return 0;
}

Probe *probe_free(Probe *p)
{
        if (!p) {
                return NULL;
        }
        sd_event_source_disable_unref(p->io);
        sd_event_source_disable_unref(p->timer);
        safe_close(p->fd);
        free(p->request);
        free(p->buf);
        free(p);
        return NULL;
}

int probe_new(sd_event *e, const char *socket_path, const char *path, uint64_t timeout_usec,
              probe_handler_t handler, void *userdata, Probe **ret)
{
        return probe_new_request(e, socket_path, path, NULL, false, timeout_usec, handler, userdata,
                                 ret);
}

const char *probe_body(const Probe *p)
{
        return p->body;
}
