/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fd-util.h"
#include "http-answer.h"
#include "log.h"
#include "time-util.h"
#include "upstream.h"

#define UPSTREAM_CONNECT_TIMEOUT_USEC (5 * USEC_PER_SEC)
#define UPSTREAM_CONNECT_RETRY_USEC (10 * USEC_PER_MSEC)
#define UPSTREAM_READ_SIZE (16 * 1024)
/* Connections kept after an answer of known length, for the next request to the same child:
 * few (each holds one of llama-server's HTTP threads while idle), and not for long
 * (llama-server closes them after 5 s). Streams are not kept: llama-server closes those. */
#define UPSTREAM_IDLE_MAX 4
#define UPSTREAM_IDLE_USEC (2 * USEC_PER_SEC)

typedef struct IdleConnection {
        int fd;
        uint64_t since;
        char path[sizeof(((struct sockaddr_un *) NULL)->sun_path)];
} IdleConnection;

struct UpstreamMulti {
        sd_event *event;
        void (*hook)(void *userdata);
        void *hook_userdata;
        IdleConnection idle[UPSTREAM_IDLE_MAX]; /* the newest last */
        size_t n_idle;
};

struct Upstream {
        UpstreamMulti *multi;
        UpstreamCallbacks cb;
        void *userdata;
        int fd;
        bool reused; /* fd was kept from an earlier answer: the child may have closed it */
        struct sockaddr_un addr;
        socklen_t addr_len;
        sd_event_source *io;
        sd_event_source *later; /* connect again; or an end to report outside the caller */
        uint64_t connect_deadline;

        /* The request: its head (made here), then the caller's body. */
        char *head;
        size_t head_len;
        const char *body;
        size_t body_len;
        size_t sent;

        /* The answer: read, not yet skipped or taken. */
        HttpAnswer answer;
        char *buf;
        size_t off, len, cap;
        bool eof;
        uint64_t received; /* bytes read */
        bool tried_idle;
        bool paused;
        int error; /* the end, once known: 0 or a negative errno */
        const char *message;
        char message_buf[160];
        bool ended;
        bool in_callback;
        bool cancelled; /* during a callback: freed when it returns */
};

int upstream_multi_new(sd_event *e, UpstreamMulti **ret)
{
        UpstreamMulti *m = calloc(1, sizeof(UpstreamMulti));

        if (!m) {
                return -ENOMEM;
        }
        m->event = e;
        *ret = m;
        return 0;
}

void upstream_multi_set_events_hook(UpstreamMulti *m, void (*hook)(void *userdata), void *userdata)
{
        m->hook = hook;
        m->hook_userdata = userdata;
}

UpstreamMulti *upstream_multi_free(UpstreamMulti *m)
{
        if (!m) {
                return NULL;
        }
        for (size_t i = 0; i < m->n_idle; i++) {
                safe_close(m->idle[i].fd);
        }
        free(m);
        return NULL;
}

static void idle_remove(UpstreamMulti *m, size_t i)
{
        memmove(m->idle + i, m->idle + i + 1, (m->n_idle - i - 1) * sizeof(IdleConnection));
        m->n_idle--;
}

/* A kept connection to path, the newest; -1 if none. Those kept too long are closed. */
static int idle_take(UpstreamMulti *m, const char *path)
{
        uint64_t now = event_now_usec(m->event);

        for (size_t i = m->n_idle; i > 0; i--) {
                IdleConnection *c = &m->idle[i - 1];

                if (now - c->since > UPSTREAM_IDLE_USEC) {
                        safe_close(c->fd);
                        idle_remove(m, i - 1);
                } else if (streq(c->path, path)) {
                        int fd = c->fd;
                        char b;

                        idle_remove(m, i - 1);
                        /* Fit for a request only with nothing to read: not closed by the child,
                         * and no bytes past its last answer's end, which would be read as the
                         * next request's answer. */
                        if (recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN) {
                                return fd;
                        }
                        safe_close(fd);
                }
        }
        return -1;
}

static void idle_keep(UpstreamMulti *m, int fd, const char *path)
{
        if (m->n_idle == UPSTREAM_IDLE_MAX) {
                safe_close(m->idle[0].fd);
                idle_remove(m, 0);
        }
        m->idle[m->n_idle].fd = fd;
        m->idle[m->n_idle].since = event_now_usec(m->event);
        strcpy(m->idle[m->n_idle].path, path);
        m->n_idle++;
}

static void upstream_free(Upstream *u)
{
        if (!u) {
                return;
        }
        sd_event_source_disable_unref(u->io);
        sd_event_source_disable_unref(u->later);
        safe_close(u->fd);
        http_answer_done(&u->answer);
        free(u->head);
        free(u->buf);
        free(u);
}

/* ---- the end ---- */

static void upstream_set_end(Upstream *u, int error, const char *format, ...) _printf_(3, 4);

static void upstream_set_end(Upstream *u, int error, const char *format, ...)
{
        if (u->ended) {
                return;
        }
        u->ended = true;
        u->error = error;
        if (format) {
                va_list ap;

                va_start(ap, format);
                (void) vsnprintf(u->message_buf, sizeof(u->message_buf), format, ap);
                va_end(ap);
                u->message = u->message_buf;
        }
}

/* The end of a transfer whose connect failed with r: refused (no child listening), or else an
 * I/O error, the two the proxy tells apart. */
static void upstream_set_connect_failed(Upstream *u, int r)
{
        upstream_set_end(u, r == -ECONNREFUSED ? r : -EIO, "cannot connect to %s: %s",
                         u->addr.sun_path, strerror(-r));
}

static void upstream_hook(UpstreamMulti *m)
{
        if (m->hook) {
                m->hook(m->hook_userdata);
        }
}

/* Reports the end, lets the hook pass on what it made (the answer's last bytes go out before
 * the connection is closed), and frees the transfer. */
static void upstream_report_end(Upstream *u)
{
        UpstreamMulti *m = u->multi;

        u->in_callback = true;
        u->cb.done(u->userdata, u->error, u->error < 0 ? u->message : NULL);
        /* done() must not cancel; the transfer is ours to free now. */
        upstream_hook(m);
        if (u->error == 0 && u->fd >= 0 && u->sent == u->head_len + u->body_len &&
            u->off == u->len && !u->eof && http_answer_reusable(&u->answer)) {
                u->io = sd_event_source_disable_unref(u->io);
                idle_keep(m, TAKE_FD(u->fd), u->addr.sun_path);
        }
        upstream_free(u);
}

static int upstream_on_later(sd_event_source *s, void *userdata);

/* An end found where the caller cannot be called back (in upstream_start(), in
 * upstream_resume()): reported from the loop. */
static void upstream_end_later(Upstream *u)
{
        u->io = sd_event_source_disable_unref(u->io);
        u->later = sd_event_source_disable_unref(u->later);
        if (sd_event_add_defer(u->multi->event, &u->later, upstream_on_later, u) < 0) {
                u->later = NULL;
                log_error("proxy: cannot report the end of a transfer to a child");
        }
}

/* ---- the answer ---- */

/* Passes on what the bytes read hold until more must be read, the consumer pauses, or the
 * answer ends (u->ended). */
static void upstream_process(Upstream *u)
{
        while (!u->ended && !u->paused && !u->cancelled) {
                size_t skip, n;
                HttpAnswerEvent e =
                        http_answer_next(&u->answer, u->buf + u->off, u->len - u->off, &skip, &n);

                u->off += skip;
                switch (e) {
                case HTTP_ANSWER_MORE:
                        if (u->eof) {
                                if (http_answer_eof(&u->answer) == HTTP_ANSWER_END) {
                                        upstream_set_end(u, 0, NULL);
                                } else {
                                        upstream_set_end(u, -EIO, "%s", u->answer.error);
                                }
                        }
                        return;
                case HTTP_ANSWER_HEADERS:
                        if (u->cb.headers) {
                                u->in_callback = true;
                                u->cb.headers(u->userdata, u->answer.status, u->answer.content_type,
                                              u->answer.content_length);
                                u->in_callback = false;
                        }
                        break;
                case HTTP_ANSWER_DATA:
                        u->in_callback = true;
                        if (u->cb.data(u->userdata, u->buf + u->off, n) == -EAGAIN) {
                                u->paused = true; /* the same bytes again after resume */
                        } else {
                                http_answer_took(&u->answer, n);
                                u->off += n;
                        }
                        u->in_callback = false;
                        break;
                case HTTP_ANSWER_END:
                        upstream_set_end(u, 0, NULL);
                        return;
                case HTTP_ANSWER_ERROR:
                        upstream_set_end(u, -EIO, "%s", u->answer.error);
                        return;
                }
        }
}

/* Reads once; false when the connection is gone or broken (u->eof, or the end set). */
static bool upstream_read(Upstream *u)
{
        ssize_t k;

        if (!u->buf) {
                u->buf = malloc(UPSTREAM_READ_SIZE);
                if (!u->buf) {
                        upstream_set_end(u, -ENOMEM, "out of memory");
                        return false;
                }
                u->cap = UPSTREAM_READ_SIZE;
        }
        if (u->off > 0) {
                memmove(u->buf, u->buf + u->off, u->len - u->off);
                u->len -= u->off;
                u->off = 0;
        }
        if (u->len == u->cap) {
                /* Headers longer than the buffer: grow it, up to their limit. */
                size_t size = u->cap * 2;
                char *b;

                if (size > HTTP_ANSWER_HEAD_MAX + UPSTREAM_READ_SIZE ||
                    !(b = realloc(u->buf, size))) {
                        upstream_set_end(u, -EIO, "headers too long");
                        return false;
                }
                u->buf = b;
                u->cap = size;
        }
        k = recv(u->fd, u->buf + u->len, u->cap - u->len, MSG_DONTWAIT);
        if (k < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                        return true;
                }
                if (errno == ECONNRESET && u->reused && u->received == 0) {
                        /* A kept connection closed with the request unread: as an end. */
                        u->eof = true;
                        return false;
                }
                upstream_set_end(u, -EIO, "reading from llama-server: %m");
                return false;
        }
        if (k == 0) {
                u->eof = true;
                return false;
        }
        u->len += (size_t) k;
        u->received += (size_t) k;
        return true;
}

/* ---- the request ---- */

static int upstream_send(Upstream *u)
{
        size_t total = u->head_len + u->body_len;

        while (u->sent < total) {
                struct iovec iov[2];
                struct msghdr mh = { .msg_iov = iov };
                ssize_t k;

                if (u->sent < u->head_len) {
                        iov[mh.msg_iovlen++] =
                                (struct iovec) { u->head + u->sent, u->head_len - u->sent };
                }
                if (u->body_len > 0) {
                        size_t b = u->sent > u->head_len ? u->sent - u->head_len : 0;

                        iov[mh.msg_iovlen++] =
                                (struct iovec) { (char *) u->body + b, u->body_len - b };
                }
                k = sendmsg(u->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR) {
                                continue;
                        }
                        if (errno == EAGAIN) {
                                return 0;
                        }
                        if ((errno == EPIPE || errno == ECONNRESET) && u->reused && u->sent == 0) {
                                return -EPIPE; /* a kept connection it had closed */
                        }
                        if (errno == EPIPE || errno == ECONNRESET) {
                                /* It stopped reading (an answer to part of the request, say):
                                 * what it said is still to be read. */
                                u->sent = total;
                                return 0;
                        }
                        return -errno;
                }
                u->sent += (size_t) k;
        }
        return 0;
}

static int upstream_connect(Upstream *u);

static void upstream_reconnect(Upstream *u)
{
        int r;

        u->io = sd_event_source_disable_unref(u->io);
        u->fd = safe_close(u->fd);
        u->reused = false;
        u->eof = false;
        u->sent = 0;
        r = upstream_connect(u);
        if (r < 0) {
                upstream_set_connect_failed(u, r);
                upstream_end_later(u);
        }
}

static int upstream_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Upstream *u = userdata;
        UpstreamMulti *m = u->multi;
        int r;

        if ((revents & EPOLLOUT) && u->sent < u->head_len + u->body_len) {
                r = upstream_send(u);
                if (r < 0) {
                        upstream_set_end(u, r, "writing to llama-server: %s", strerror(-r));
                } else if (u->sent == u->head_len + u->body_len) {
                        (void) sd_event_source_set_io_events(u->io, EPOLLIN);
                }
        }
        if (!u->ended && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                if (!upstream_read(u) && u->eof && u->reused && u->received == 0) {
                        /* A kept connection the child closed as the request went out: the
                         * request again, on a new one. */
                        upstream_reconnect(u);
                        upstream_hook(m);
                        return 0;
                }
                upstream_process(u);
        }
        if (u->ended && !u->cancelled) {
                upstream_report_end(u);
                return 0;
        }
        if (u->cancelled) {
                upstream_free(u);
        } else if (u->paused) {
                (void) sd_event_source_set_enabled(u->io, SD_EVENT_OFF);
        }
        upstream_hook(m);
        return 0;
}

static int upstream_on_later(sd_event_source *s, void *userdata)
{
        Upstream *u = userdata;
        UpstreamMulti *m = u->multi;

        u->later = sd_event_source_disable_unref(u->later);
        if (!u->ended) {
                /* A connect that found the child's backlog full: again. */
                int r = upstream_connect(u);
                if (r < 0) {
                        upstream_set_connect_failed(u, r);
                }
        }
        if (u->ended) {
                upstream_report_end(u);
                return 0;
        }
        upstream_hook(m);
        return 0;
}

static int upstream_on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        return upstream_on_later(s, userdata);
}

/* Connects and sends what it can: 0, or a negative errno. A full backlog is tried again. */
static int upstream_connect(Upstream *u)
{
        uint32_t events = EPOLLIN;
        int r;

        if (u->fd < 0 && !u->tried_idle) {
                u->tried_idle = true;
                u->fd = idle_take(u->multi, u->addr.sun_path);
                u->reused = u->fd >= 0;
        }
        if (u->fd < 0) {
                u->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (u->fd < 0) {
                        return -errno;
                }
        }
        if (!u->reused && connect(u->fd, (struct sockaddr *) &u->addr, u->addr_len) < 0) {
                if (errno != EAGAIN) {
                        return errno == ENOENT ? -ECONNREFUSED : -errno;
                }
                if (event_now_usec(u->multi->event) >= u->connect_deadline) {
                        return -ETIMEDOUT;
                }
                return sd_event_add_time_relative(u->multi->event, &u->later, CLOCK_MONOTONIC,
                                                  UPSTREAM_CONNECT_RETRY_USEC, USEC_PER_MSEC,
                                                  upstream_on_retry, u);
        }
        r = upstream_send(u);
        if (r == -EPIPE) {
                u->fd = safe_close(u->fd);
                u->reused = false;
                return upstream_connect(u);
        }
        if (r < 0) {
                return r;
        }
        if (u->sent < u->head_len + u->body_len) {
                events |= EPOLLOUT;
        }
        return sd_event_add_io(u->multi->event, &u->io, u->fd, events, upstream_on_io, u);
}

static const char *strempty(const char *s)
{
        return s ? s : "";
}

static bool header_safe(const char *s)
{
        return !s || !strpbrk(s, "\r\n");
}

int upstream_start(UpstreamMulti *m, const UpstreamRequest *req, const UpstreamCallbacks *cb,
                   void *userdata, Upstream **ret)
{
        _cleanup_free_ char *length = NULL;
        Upstream *u;
        int r;

        if (strlen(req->socket_path) >= sizeof(u->addr.sun_path) || !header_safe(req->method) ||
            !header_safe(req->path) || !header_safe(req->content_type) ||
            !header_safe(req->accept)) {
                return -EINVAL;
        }
        u = calloc(1, sizeof(Upstream));
        if (!u) {
                return -ENOMEM;
        }
        u->multi = m;
        u->cb = *cb;
        u->userdata = userdata;
        u->fd = -1;
        u->addr.sun_family = AF_UNIX;
        strcpy(u->addr.sun_path, req->socket_path);
        u->addr_len = offsetof(struct sockaddr_un, sun_path) + strlen(req->socket_path) + 1;
        u->connect_deadline = event_now_usec(m->event) + UPSTREAM_CONNECT_TIMEOUT_USEC;
        u->body = req->body;
        u->body_len = req->body ? req->body_len : 0;
        http_answer_init(&u->answer, streq(req->method, "HEAD"));
        if (req->body && asprintf(&length, "Content-Length: %zu\r\n", req->body_len) < 0) {
                length = NULL;
                upstream_free(u);
                return -ENOMEM;
        }
        r = asprintf(&u->head, "%s %s HTTP/1.1\r\nHost: localhost\r\n%s%s%s%s%s%s%s\r\n",
                     req->method, req->path, req->content_type ? "Content-Type: " : "",
                     strempty(req->content_type), req->content_type ? "\r\n" : "",
                     req->accept ? "Accept: " : "", strempty(req->accept),
                     req->accept ? "\r\n" : "", strempty(length));
        if (r < 0) {
                u->head = NULL;
                upstream_free(u);
                return -ENOMEM;
        }
        u->head_len = (size_t) r;
        r = upstream_connect(u);
        if (r < 0) {
                /* Said from the loop, as every end is. */
                upstream_set_connect_failed(u, r);
                upstream_end_later(u);
        }
        *ret = u;
        return 0;
}

void upstream_cancel(Upstream *u)
{
        if (u->in_callback) {
                u->cancelled = true;
                return;
        }
        upstream_free(u);
}

void upstream_resume(Upstream *u)
{
        if (!u->paused || u->ended || u->cancelled) {
                return;
        }
        u->paused = false;
        /* The held bytes now (the caller makes room and asks for them); an end they hold is
         * reported from the loop. */
        upstream_process(u);
        if (u->cancelled) {
                upstream_free(u); /* cancelled by the callback */
                return;
        }
        if (u->ended) {
                upstream_end_later(u);
        } else if (!u->paused) {
                (void) sd_event_source_set_enabled(u->io, SD_EVENT_ON);
        }
}
