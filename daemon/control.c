/* SPDX-License-Identifier: MIT */
#include <grp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "control.h"
#include "list.h"
#include "log.h"
#include "time-util.h"
#include "varlink.h"

#define CONTROL_READ_CHUNK 4096
#define CONTROL_LINGER_USEC (1 * USEC_PER_SEC)
#define CONTROL_PEER_GROUPS_MAX 256
#define CONTROL_LOG_STRING_MAX 128 /* of a client's string in our log */

typedef struct ControlConnection ControlConnection;

struct ControlServer {
        ControlOptions options;
        char *path;
        int fd;
        gid_t gid; /* of the socket: its members may connect */
        sd_event_source *io;
        ControlConnection *connections;
        unsigned n_connections;
        unsigned n_unprivileged; /* of them, from neither root nor llmd's own user */
};

struct ControlCall {
        ControlConnection *connection; /* NULL once the client left */
        ControlMethodId method;
        bool more, oneway;
};

struct ControlConnection {
        ControlServer *server;
        ControlConnection *next, *prev;
        int fd;
        uid_t uid;
        pid_t pid;
        bool privileged; /* root or llmd's own user: may use the reserved slots */
        sd_event_source *io;
        VarlinkReader reader;
        bool eof;        /* the peer closed its side */
        bool closing;    /* close once the output is out */
        bool processing; /* inside connection_process(): calls ending now need no restart */
        bool dying;      /* freed on the next loop iteration, never under our own feet */
        bool lingering;  /* our side is shut; what the peer still sends is read and dropped */
        sd_event_source *defer;
        sd_event_source *linger_timer;
        sd_event_source *idle_timer;
        char *out;
        size_t out_len, out_off;
        ControlCall *current;
};

static void connection_free(ControlConnection *c);
static void connection_process(ControlConnection *c);

static int connection_on_defer(sd_event_source *es, void *userdata)
{
        connection_free(userdata);
        return 0;
}

/* Frees the connection once the current dispatch is over: callers up the stack may still hold
 * it. Its call, if any, goes on without it. */
static void connection_kill(ControlConnection *c)
{
        if (c->dying) {
                return;
        }
        c->dying = true;
        if (c->current) {
                c->current->connection = NULL;
                c->current = NULL;
        }
        (void) sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        if (sd_event_add_defer(c->server->options.event, &c->defer, connection_on_defer, c) < 0) {
                /* Cannot defer: leave it disabled; control_server_free() reclaims it. */
                return;
        }
}

static int connection_on_linger_timeout(sd_event_source *es, uint64_t usec, void *userdata)
{
        connection_kill(userdata);
        return 0;
}

/* After a protocol error: the error is out; now close so that the peer can read it. Closing
 * with unread input would send a reset and lose the error, so our side is shut and the rest of
 * the input is read and dropped until the peer closes too (or a second passes). */
static void connection_finish(ControlConnection *c)
{
        if (!c->closing || c->eof) {
                connection_kill(c);
                return;
        }
        if (c->lingering) {
                return;
        }
        c->lingering = true;
        (void) shutdown(c->fd, SHUT_WR);
        (void) sd_event_source_set_io_events(c->io, EPOLLIN);
        if (sd_event_add_time_relative(c->server->options.event, &c->linger_timer, CLOCK_MONOTONIC,
                                       CONTROL_LINGER_USEC, USEC_PER_MSEC,
                                       connection_on_linger_timeout, c) < 0) {
                connection_kill(c);
        }
}

static int connection_on_idle_timeout(sd_event_source *es, uint64_t usec, void *userdata)
{
        ControlConnection *c = userdata;

        log_debug("control: client pid %d %s, closing", (int) c->pid,
                  varlink_reader_pending(&c->reader) > 0 ? "did not finish its message in time"
                                                         : "made no call for a while");
        connection_kill(c);
        return 0;
}

/* While no call runs, a connection has CONTROL_IDLE_TIMEOUT_USEC from the end of its last call
 * (or from connecting) to make the next one, and a message once begun must be whole within
 * CONTROL_FRAME_TIMEOUT_USEC; bytes that trickle in extend neither. A call in progress is
 * never cut (a Switch reports progress for as long as a load takes), and a client that does not
 * read its replies is dropped by CONTROL_OUTPUT_MAX. */
static void connection_update_idle(ControlConnection *c)
{
        const ControlOptions *o = &c->server->options;
        uint64_t now, deadline;
        int enabled = 0;

        if (c->current) {
                (void) sd_event_source_set_enabled(c->idle_timer, SD_EVENT_OFF);
                return;
        }
        now = event_now_usec(o->event);
        (void) sd_event_source_get_enabled(c->idle_timer, &enabled);
        if (!enabled || sd_event_source_get_time(c->idle_timer, &deadline) < 0) {
                deadline = now + (o->idle_timeout_usec ?: CONTROL_IDLE_TIMEOUT_USEC);
        }
        if (varlink_reader_pending(&c->reader) > 0) {
                deadline =
                        MIN(deadline, now + (o->frame_timeout_usec ?: CONTROL_FRAME_TIMEOUT_USEC));
        }
        (void) sd_event_source_set_time(c->idle_timer, deadline);
        (void) sd_event_source_set_enabled(c->idle_timer, SD_EVENT_ONESHOT);
}

static void connection_update_events(ControlConnection *c)
{
        uint32_t events = 0;

        if (c->lingering || c->dying) {
                return;
        }
        connection_update_idle(c);
        /* Read while no call is running and not too much is unread by the peer. */
        if (!c->current && !c->eof && !c->closing && c->out_len - c->out_off < CONTROL_OUTPUT_MAX) {
                events |= EPOLLIN;
        }
        if (c->out_off < c->out_len) {
                events |= EPOLLOUT;
        }
        (void) sd_event_source_set_io_events(c->io, events);
}

static int connection_queue(ControlConnection *c, const char *msg, size_t len)
{
        if (c->dying) {
                return -ECONNRESET;
        }
        if (c->out_len - c->out_off + len > CONTROL_OUTPUT_MAX) {
                log_warning(
                        "control: client pid %d reads no replies (%zu bytes waiting), dropping it",
                        (int) c->pid, c->out_len - c->out_off);
                return -ENOBUFS;
        }
        if (c->out_off > 0) {
                memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
                c->out_len -= c->out_off;
                c->out_off = 0;
        }
        char *n = realloc(c->out, c->out_len + len);
        if (!n) {
                return -ENOMEM;
        }
        c->out = n;
        memcpy(c->out + c->out_len, msg, len);
        c->out_len += len;
        connection_update_events(c);
        return 0;
}

static void connection_send_error(ControlConnection *c, const char *error, const char *key,
                                  const char *value)
{
        _cleanup_free_ char *msg = NULL;
        cJSON *p = cJSON_CreateObject();
        size_t len;

        if (p && key) {
                cJSON_AddStringToObject(p, key, value);
        }
        if (varlink_format_error(error, p, &msg, &len) >= 0) {
                (void) connection_queue(c, msg, len);
        }
        cJSON_Delete(p);
}

/* A peer that broke the protocol gets one error and the door. */
static void connection_protocol_error(ControlConnection *c, const char *reason)
{
        log_info("control: client pid %d: %s, closing", (int) c->pid, reason);
        connection_send_error(c, CONTROL_ERROR_PROTOCOL, "reason", reason);
        c->closing = true;
        connection_update_events(c);
}

static bool control_call_end(ControlCall *call)
{
        ControlConnection *c = call->connection;

        free(call);
        if (!c) {
                return false;
        }
        c->current = NULL;
        connection_update_events(c);
        /* More calls may wait in what was read already. */
        connection_process(c);
        return true;
}

static int control_call_send(ControlCall *call, char *msg, size_t len, bool last)
{
        int r = 0;

        if (call->connection && !call->oneway) {
                r = connection_queue(call->connection, msg, len);
                if (r < 0) {
                        connection_kill(call->connection);
                }
        }
        free(msg);
        if (last) {
                control_call_end(call);
        }
        return r;
}

int control_call_reply(ControlCall *call, cJSON *parameters, bool continues)
{
        char *msg;
        size_t len;
        int r;

        /* Continued replies only to a caller that asked for them. */
        if (continues && !call->more) {
                cJSON_Delete(parameters);
                return 0;
        }
        r = varlink_format_reply(parameters, continues, &msg, &len);
        cJSON_Delete(parameters);
        if (r < 0) {
                if (!continues) {
                        control_call_end(call);
                }
                return r;
        }
        return control_call_send(call, msg, len, !continues);
}

int control_call_error(ControlCall *call, const char *error, cJSON *parameters)
{
        char *msg;
        size_t len;
        int r;

        r = varlink_format_error(error, parameters, &msg, &len);
        cJSON_Delete(parameters);
        if (r < 0) {
                control_call_end(call);
                return r;
        }
        return control_call_send(call, msg, len, true);
}

/* cJSON ends a string at an escaped NUL character without a word: "qwen\u0000../x" reads as
 * "qwen", and the call would act on another name than the one sent. No C string can hold the
 * character, so a call that sends one is refused. frame is valid JSON (parsed already). Returns
 * whether it holds a NUL, with *ret_key the nearest member name before it (raw JSON text): the
 * parameter, for our flat parameter objects. */
static bool frame_find_nul(const char *frame, size_t len, char **ret_key)
{
        const char *key = "", *end = frame + len;
        size_t key_len = 0;

        for (const char *p = frame; p < end; p++) {
                const char *start = p + 1;
                bool nul = false;

                if (*p != '"') {
                        continue;
                }
                for (p = start; p < end && *p != '"'; p++) {
                        if (*p != '\\') {
                                continue;
                        }
                        p++;
                        if (end - p >= 5 && strneq(p, "u0000", 5)) {
                                nul = true;
                        }
                }
                const char *q = p + 1;
                while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) {
                        q++;
                }
                if (q < end && *q == ':') {
                        key = start;
                        key_len = (size_t) (p - start);
                }
                if (nul) {
                        *ret_key = strndup(key, key_len);
                        return true;
                }
        }
        return false;
}

static void connection_dispatch(ControlConnection *c, const char *frame, size_t len)
{
        ControlServer *s = c->server;
        const ControlMethod *m;
        VarlinkCall vc;
        ControlCall *call;
        int r;

        /* A whole message, answered or not, restarts the idle clock (connection_update_idle). */
        (void) sd_event_source_set_enabled(c->idle_timer, SD_EVENT_OFF);
        r = varlink_call_parse(frame, len, &vc);
        if (r == -EILSEQ) {
                /* Never quoted back: the reply would not be JSON either. */
                connection_protocol_error(c, "not UTF-8");
                return;
        }
        if (r == -EBADMSG) {
                connection_protocol_error(c, "not a JSON object");
                return;
        }
        if (r == -ENOTUNIQ) {
                connection_protocol_error(c, "an object names a member twice");
                return;
        }
        if (r == -EPROTO) {
                connection_protocol_error(c, "not a Varlink call (method, parameters, more)");
                return;
        }
        if (r < 0) {
                connection_protocol_error(c, "out of memory");
                return;
        }
        _cleanup_free_ char *key = NULL;
        if (frame_find_nul(frame, len, &key)) {
                _cleanup_free_ char *k = log_escape(key, CONTROL_LOG_STRING_MAX);

                log_debug("control: pid %d sent a NUL character in '%s', refused", (int) c->pid,
                          k ?: "?");
                connection_send_error(c, VARLINK_ERROR_INVALID_PARAMETER, "parameter", key ?: "");
                varlink_call_done(&vc);
                return;
        }
        m = control_method_find(vc.method);
        if (!m || !s->options.handlers[m->id]) {
                _cleanup_free_ char *name = log_escape(vc.method, CONTROL_LOG_STRING_MAX);

                log_debug("control: unknown method %s", name ?: "?");
                connection_send_error(c, VARLINK_ERROR_METHOD_NOT_FOUND, "method", vc.method);
                varlink_call_done(&vc);
                return;
        }
        call = calloc(1, sizeof(ControlCall));
        if (!call) {
                varlink_call_done(&vc);
                connection_protocol_error(c, "out of memory");
                return;
        }
        *call = (ControlCall) {
                .connection = c, .method = m->id, .more = vc.more, .oneway = vc.oneway
        };
        c->current = call;
        connection_update_events(c);
        log_debug("control: pid %d calls %s", (int) c->pid, m->name);
        r = s->options.handlers[m->id](call, vc.parameters, s->options.userdata);
        varlink_call_done(&vc);
        /* The handler answered (or keeps the call to answer later) in every case: a failure
         * here is one of sending, and the connection is already taken care of. */
        if (r < 0) {
                log_debug_errno(r, "control: answering %s failed: %m", m->name);
        }
}

/* Answers the frames already read, one call at a time. */
static void connection_process(ControlConnection *c)
{
        if (c->processing || c->dying) {
                return;
        }
        c->processing = true;
        while (!c->current && !c->closing && !c->dying) {
                const char *frame;
                size_t len;
                int r = varlink_reader_next(&c->reader, &frame, &len);

                if (r == -EMSGSIZE) {
                        connection_protocol_error(c, "message too large");
                        break;
                }
                if (r == 0) {
                        break;
                }
                connection_dispatch(c, frame, len);
        }
        c->processing = false;
        if (c->dying || c->current) {
                return;
        }
        if (c->eof && varlink_reader_pending(&c->reader) > 0 && !c->closing) {
                connection_protocol_error(c, "message not terminated by NUL");
        }
        if ((c->eof || c->closing) && c->out_off == c->out_len) {
                connection_finish(c);
        }
}

static int connection_on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        ControlConnection *c = userdata;

        if (c->lingering) {
                char buf[CONTROL_READ_CHUNK];
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                        connection_kill(c);
                }
                return 0;
        }
        if (revents & EPOLLOUT) {
                while (c->out_off < c->out_len) {
                        ssize_t n = send(fd, c->out + c->out_off, c->out_len - c->out_off,
                                         MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (n < 0) {
                                if (errno == EAGAIN) {
                                        break;
                                }
                                connection_kill(c);
                                return 0;
                        }
                        c->out_off += (size_t) n;
                }
                if (c->out_off == c->out_len && (c->closing || (c->eof && !c->current))) {
                        connection_finish(c);
                        return 0;
                }
        }
        if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->current && !c->closing) {
                char buf[CONTROL_READ_CHUNK];
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

                if (n < 0) {
                        if (errno != EAGAIN && errno != EINTR) {
                                connection_kill(c);
                        }
                        return 0;
                }
                if (n == 0) {
                        c->eof = true;
                } else if (varlink_reader_feed(&c->reader, buf, (size_t) n) < 0) {
                        connection_protocol_error(c, "message too large");
                        return 0;
                }
                connection_process(c);
                /* A message begun and not finished starts its clock. */
                connection_update_events(c);
                return 0;
        }
        if ((revents & (EPOLLHUP | EPOLLERR)) && c->current) {
                /* Gone while its call runs: the call goes on without it. */
                connection_kill(c);
                return 0;
        }
        connection_update_events(c);
        return 0;
}

static void connection_free(ControlConnection *c)
{
        ControlServer *s;

        if (!c) {
                return;
        }
        s = c->server;
        if (c->current) {
                c->current->connection = NULL;
        }
        LIST_UNLINK(s->connections, c, prev, next);
        s->n_connections--;
        if (!c->privileged) {
                s->n_unprivileged--;
        }
        sd_event_source_disable_unref(c->defer);
        sd_event_source_disable_unref(c->linger_timer);
        sd_event_source_disable_unref(c->idle_timer);
        sd_event_source_disable_unref(c->io);
        safe_close(c->fd);
        varlink_reader_done(&c->reader);
        free(c->out);
        free(c);
}

static bool peer_privileged(const struct ucred *cred)
{
        return cred->uid == 0 || cred->uid == geteuid();
}

/* root, llmd's own user, and members of the socket's group. */
static bool peer_allowed(const ControlServer *s, int fd, const struct ucred *cred)
{
        gid_t groups[CONTROL_PEER_GROUPS_MAX];
        socklen_t len = sizeof(groups);

        if (peer_privileged(cred) || cred->gid == s->gid) {
                return true;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
                return false;
        }
        for (size_t i = 0; i < len / sizeof(gid_t); i++) {
                if (groups[i] == s->gid) {
                        return true;
                }
        }
        return false;
}

static int server_on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        ControlServer *s = userdata;
        _cleanup_close_ int cfd = -1;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        ControlConnection *c;
        int r;

        cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR) {
                        log_warning_errno(errno, "control: accept failed: %m");
                }
                return 0;
        }
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_warning_errno(errno, "control: cannot read peer credentials: %m");
                return 0;
        }
        bool allowed = peer_allowed(s, cfd, &cred);
        if (!allowed) {
                log_notice(
                        "control: refused uid %u (pid %d): not root, llmd or in the socket's group",
                        (unsigned) cred.uid, (int) cred.pid);
        }
        /* Others fill at most CONTROL_CONNECTIONS_MAX slots: root and llmd's own user always
         * find one of the reserved ones free (until they fill those too). */
        bool privileged = peer_privileged(&cred);
        if (privileged ? s->n_connections >= CONTROL_CONNECTIONS_MAX + CONTROL_CONNECTIONS_RESERVED
                       : s->n_unprivileged >= CONTROL_CONNECTIONS_MAX) {
                _cleanup_free_ char *msg = NULL;
                size_t n;

                log_warning("control: %u clients connected, refusing pid %d (uid %u)",
                            s->n_connections, (int) cred.pid, (unsigned) cred.uid);
                if (varlink_format_error(CONTROL_ERROR_TOO_MANY, NULL, &msg, &n) >= 0) {
                        (void) send(cfd, msg, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                return 0;
        }

        c = calloc(1, sizeof(ControlConnection));
        if (!c) {
                return 0;
        }
        c->server = s;
        c->uid = cred.uid;
        c->pid = cred.pid;
        c->privileged = privileged;
        varlink_reader_init(&c->reader);
        r = sd_event_add_io(s->options.event, &c->io, cfd, EPOLLIN, connection_on_io, c);
        if (r >= 0) {
                /* Armed by connection_update_idle(). */
                r = sd_event_add_time(s->options.event, &c->idle_timer, CLOCK_MONOTONIC, 0,
                                      100 * USEC_PER_MSEC, connection_on_idle_timeout, c);
        }
        if (r < 0) {
                sd_event_source_disable_unref(c->io);
                free(c);
                log_warning_errno(r, "control: cannot watch client: %m");
                return 0;
        }
        (void) sd_event_source_set_enabled(c->idle_timer, SD_EVENT_OFF);
        c->fd = TAKE_FD(cfd);
        LIST_PREPEND(s->connections, c, prev, next);
        s->n_connections++;
        if (!privileged) {
                s->n_unprivileged++;
        }
        connection_update_idle(c);
        if (!allowed) {
                /* Told why, then closed the way protocol errors are: so the peer can read it. */
                connection_send_error(c, VARLINK_ERROR_PERMISSION_DENIED, NULL, NULL);
                c->closing = true;
                connection_update_events(c);
        }
        return 0;
}

int control_server_new(const ControlOptions *o, ControlServer **ret, const char **ret_step)
{
        _cleanup_(control_server_freep) ControlServer *s = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct group *g;
        int r;

        *ret_step = "setup";
        if (strlen(o->path) >= sizeof(sa.sun_path)) {
                *ret_step = "the path is too long";
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, o->path);
        s = calloc(1, sizeof(ControlServer));
        if (!s) {
                return -ENOMEM;
        }
        s->options = *o;
        s->fd = -1;
        s->path = strdup(o->path);
        if (!s->path) {
                return -ENOMEM;
        }
        s->gid = getegid();
        g = o->group ? getgrnam(o->group) : NULL;
        if (g) {
                s->gid = g->gr_gid;
        }

        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->fd < 0) {
                *ret_step = "socket()";
                return -errno;
        }
        /* A previous llmd that was killed leaves its socket file behind. */
        (void) unlink(o->path);
        mode_t old = umask(0117);
        r = bind(s->fd, (struct sockaddr *) &sa, sizeof(sa));
        umask(old);
        if (r < 0) {
                *ret_step = "bind()";
                return -errno;
        }
        /* Only a group other than our own needs a chown (the unit then needs no @chown). */
        if ((s->gid != getegid() && chown(o->path, (uid_t) -1, s->gid) < 0) ||
            chmod(o->path, 0660) < 0) {
                *ret_step = "chown()/chmod()";
                return -errno;
        }
        if (listen(s->fd, SOMAXCONN) < 0) {
                *ret_step = "listen()";
                return -errno;
        }
        r = sd_event_add_io(o->event, &s->io, s->fd, EPOLLIN, server_on_accept, s);
        if (r < 0) {
                *ret_step = "sd_event_add_io()";
                return r;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

ControlServer *control_server_free(ControlServer *s)
{
        if (!s) {
                return NULL;
        }
        while (s->connections) {
                connection_free(s->connections);
        }
        sd_event_source_disable_unref(s->io);
        if (s->fd >= 0) {
                safe_close(s->fd);
                (void) unlink(s->path);
        }
        free(s->path);
        free(s);
        return NULL;
}

unsigned control_server_connections(const ControlServer *s)
{
        return s->n_connections;
}
