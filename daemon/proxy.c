/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <search.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "fileio.h"
#include "list.h"
#include "log.h"
#include "proxy-internal.h"
#include "strv.h"
#include "time-util.h"

#define PROXY_API_KEYS_MAX 256
/* Connections MHD may hold beyond max-connections before llmd reclaims one: room to see a
 * new connection arrive and decide which to close, instead of MHD refusing it unseen. */
#define PROXY_CONN_SLACK 64

uint64_t proxy_now(const Proxy *p)
{
        return event_now_usec(p->event);
}

const char *proxy_hostname(const Proxy *p)
{
        return p->hostname;
}

const Config *proxy_config(const Proxy *p)
{
        return supervisor_config(p->supervisor);
}

/* ---- connections: the limits MHD does not have ---- */

static void conn_leave(Proxy *p, Conn *c)
{
        if (c->state == CONN_FRESH) {
                LIST_REMOVE(p->fresh_first, p->fresh_last, c, prev, next);
        } else if (c->state == CONN_IDLE) {
                LIST_REMOVE(p->idle_first, p->idle_last, c, prev, next);
        }
}

static void proxy_arm_header_timer(Proxy *p);

static void conn_set_state(Proxy *p, Conn *c, ConnState state)
{
        bool fresh = c->state == CONN_FRESH || state == CONN_FRESH;

        conn_leave(p, c);
        c->state = state;
        c->since_usec = proxy_now(p);
        if (state == CONN_FRESH) {
                LIST_APPEND(p->fresh_first, p->fresh_last, c, prev, next);
        } else if (state == CONN_IDLE) {
                LIST_APPEND(p->idle_first, p->idle_last, c, prev, next);
        }
        /* Only the fresh list moves the header timer: requests on a kept-alive connection
         * (idle <-> busy) leave it alone. */
        if (fresh) {
                proxy_arm_header_timer(p);
        }
}

/* Closes a connection MHD holds: shut down, MHD sees the end at its next read and closes it. */
static void conn_close(Proxy *p, Conn *c)
{
        if (c->closing) {
                return;
        }
        c->closing = true;
        c->client->n_open--;
        p->n_open--;
        (void) shutdown(c->fd, SHUT_RDWR);
        conn_set_state(p, c, CONN_BUSY); /* out of both lists until MHD reports it closed */
}

static int proxy_on_header_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        Proxy *p = userdata;
        uint64_t timeout = proxy_config(p)->header_timeout_usec;
        unsigned n = 0;

        while (p->fresh_first && p->fresh_first->since_usec + timeout <= usec) {
                conn_close(p, p->fresh_first);
                n++;
        }
        if (n > 0) {
                log_debug("proxy: closed %u connection(s) that sent no request in header-timeout",
                          n);
        }
        proxy_arm_header_timer(p);
        return 0;
}

static void proxy_arm_header_timer(Proxy *p)
{
        if (!p->header_timer) {
                return;
        }
        if (!p->fresh_first) {
                (void) sd_event_source_set_enabled(p->header_timer, SD_EVENT_OFF);
                return;
        }
        /* Coarse: a second late is fine, and a flood of connections moves no timer. */
        (void) sd_event_source_set_time(
                p->header_timer, p->fresh_first->since_usec + proxy_config(p)->header_timeout_usec);
        (void) sd_event_source_set_enabled(p->header_timer, SD_EVENT_ONESHOT);
}

/* ---- client addresses: max-connections-per-client ---- */

static int client_compare(const void *a, const void *b)
{
        const Client *x = a, *y = b;

        if (x->family != y->family) {
                return x->family < y->family ? -1 : 1;
        }
        return memcmp(x->addr, y->addr, sizeof(x->addr));
}

/* The Client of a peer address, made at its first connection. Connections of another family
 * (a unix socket from systemd) share one Client. */
static Client *proxy_client_get(Proxy *p, const struct sockaddr *sa)
{
        Client key = { .family = sa ? sa->sa_family : AF_UNSPEC }, *c, **found;

        if (key.family == AF_INET) {
                memcpy(key.addr, &((const struct sockaddr_in *) sa)->sin_addr, 4);
        } else if (key.family == AF_INET6) {
                memcpy(key.addr, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
        }
        found = tfind(&key, &p->clients, client_compare);
        if (found) {
                return *found;
        }
        c = malloc(sizeof(Client));
        if (!c) {
                return NULL;
        }
        *c = key;
        if (!tsearch(c, &p->clients, client_compare)) {
                free(c);
                return NULL;
        }
        return c;
}

static void proxy_client_put(Proxy *p, Client *c)
{
        if (--c->n_conns == 0) {
                (void) tdelete(c, &p->clients, client_compare);
                free(c);
        }
}

/* The client's connection idle the longest between requests, or NULL. The idle list is oldest
 * first, so the first one found is it; this runs only when a client is at its cap. */
static Conn *proxy_client_idlest(Proxy *p, const Client *client)
{
        for (Conn *c = p->idle_first; c; c = c->next) {
                if (c->client == client) {
                        return c;
                }
        }
        return NULL;
}

static void proxy_on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                                enum MHD_ConnectionNotificationCode code)
{
        Listener *l = cls;
        Proxy *p = l->proxy;
        Conn *c = *socket_context;

        if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
                if (c) {
                        conn_set_state(p, c, CONN_BUSY); /* out of the lists */
                        if (!c->closing) {
                                c->client->n_open--;
                                p->n_open--;
                        }
                        proxy_client_put(p, c->client);
                        p->n_conns--;
                        sd_event_source_disable_unref(c->hangup);
                        free(c);
                        *socket_context = NULL;
                }
                return;
        }
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai =
                MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        Client *client = NULL;

        c = ci ? calloc(1, sizeof(Conn)) : NULL;
        if (c) {
                client = proxy_client_get(p, ai ? ai->client_addr : NULL);
        }
        if (!client) {
                free(c);
                if (ci) {
                        (void) shutdown(ci->connect_fd, SHUT_RDWR);
                }
                return;
        }
        c->fd = ci->connect_fd;
        c->state = CONN_BUSY; /* in no list yet */
        c->client = client;
        client->n_conns++;
        client->n_open++;
        *socket_context = c;
        p->n_conns++;
        p->n_open++;
        conn_set_state(p, c, CONN_FRESH);

        /* At a limit, as nginx's limit_conn counts: only connections with a request in
         * progress, or one whose header may be on its way, hold their place. The connection
         * idle the longest between requests makes room -- at max-connections-per-client the
         * client's own, so one address cannot close another's, and a client that leaks
         * keep-alive connections still gets its next request in. When all are busy, the new
         * one is refused. */
        if (client->n_open > proxy_config(p)->max_connections_per_client) {
                Conn *victim = proxy_client_idlest(p, client);

                conn_close(p, victim ? victim : c);
                if (!victim) {
                        return;
                }
        }
        if (p->n_open <= proxy_config(p)->max_connections) {
                return;
        }
        /* At max-connections anyone's connection may go: idle ones first, then the one silent
         * the longest since it connected (a flood of silent connections from many addresses
         * would otherwise refuse everyone until header-timeout). */
        Conn *victim = p->idle_first ? p->idle_first : p->fresh_first;

        conn_close(p, victim ? victim : c);
}

static Conn *conn_of(struct MHD_Connection *connection)
{
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

        return ci ? ci->socket_context : NULL;
}

Conn *request_conn(const Request *r)
{
        return conn_of(r->connection);
}

const Client *request_peer(const Request *r)
{
        const Conn *c = conn_of(r->connection);

        return c ? c->client : NULL;
}

void request_close(Request *r)
{
        Conn *c = conn_of(r->connection);

        if (c) {
                conn_close(r->proxy, c);
        }
}

bool request_client_gone(const Request *r)
{
        const Conn *c = conn_of(r->connection);
        ssize_t n;
        char b;

        if (!c || c->closing) {
                return c != NULL;
        }
        /* EOF or an error: gone; nothing to read (EAGAIN), or bytes: there. */
        n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* ---- MHD ---- */

/* Called with the request-target exactly as the client wrote it, before MHD decodes it: the
 * request is made here, so that route_request() sees the raw form. */
static void *proxy_on_uri(void *cls, const char *uri, struct MHD_Connection *connection)
{
        Listener *l = cls;

        return request_new(l, connection, uri);
}

/* The same for the method, which MHD ends with a NUL where its space was: between the method's
 * end and the target's start there is nothing but blanks, unless a NUL byte cut the method
 * short ("POST\0x /v1/..." reads as POST). A target elsewhere (another MHD) tells nothing. */
static bool proxy_method_cut(const char *method, const char *target)
{
        const char *from = method + strlen(method) + 1;
        uintptr_t gap = (uintptr_t) target - (uintptr_t) from;

        if (target < from || gap >= PROXY_CONN_MEMORY) {
                return false;
        }
        for (const char *c = from; c < target - 1; c++) {
                if (*c != ' ' && *c != '\t') {
                        return true;
                }
        }
        return false;
}

static enum MHD_Result proxy_on_request(void *cls, struct MHD_Connection *connection,
                                        const char *url, const char *method, const char *version,
                                        const char *upload_data, size_t *upload_data_size,
                                        void **con_cls)
{
        Request *r = *con_cls;

        if (!r) {
                return MHD_NO; /* no memory for it */
        }
        if (!r->method) {
                /* The header is complete: the connection is no longer idle. */
                Conn *c = conn_of(connection);

                /* MHD ends the target with a NUL where the version begins, in the line it read:
                 * the version further on means a NUL byte inside the target, which MHD's copy
                 * stops at. A version elsewhere (another MHD) tells nothing. */
                uintptr_t gap = (uintptr_t) version - (uintptr_t) (r->target_end + 1);

                r->target_cut = (gap > 0 && gap < PROXY_CONN_MEMORY) ||
                                proxy_method_cut(method, r->target_start);
                if (c && !c->closing) {
                        conn_set_state(r->proxy, c, CONN_BUSY);
                }
        }
        return request_on_access(r, method, upload_data, upload_data_size);
}

static void proxy_on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                               enum MHD_RequestTerminationCode toe)
{
        Listener *l = cls;
        Proxy *p = l->proxy;
        Request *r = *con_cls;
        Conn *c = conn_of(connection);

        if (c && !c->closing && c->state == CONN_BUSY) {
                conn_set_state(p, c, CONN_IDLE);
        }
        if (!r) {
                return;
        }
        *con_cls = NULL;
        if (request_worth_a_record(r)) {
                p->counters.served++;
                if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status < 400) {
                        p->counters.errors++;
                }
        }
        request_log(r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
        request_record(r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
        request_free(r);
}

/* ---- the loop ---- */

static void listener_arm(Listener *l)
{
        MHD_UNSIGNED_LONG_LONG ms;

        if (MHD_get_timeout(l->daemon, &ms) == MHD_YES) {
                /* Idle timeouts are seconds away: with slack for them, sd-event need not
                 * reprogram its timer after every request. Short ones stay exact. */
                (void) sd_event_source_set_time_accuracy(l->timer,
                                                         ms >= 1000 ? 250 * USEC_PER_MSEC : 1);
                (void) sd_event_source_set_time_relative(l->timer, (uint64_t) ms * USEC_PER_MSEC);
                (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
        } else {
                (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        }
}

static void listener_run(Listener *l)
{
        MHD_UNSIGNED_LONG_LONG ms;

        /* MHD takes a step a connection per run (headers written, then the body): while it
         * says it has more to do now, let it, rather than go round the loop through a timer
         * for each step. Bounded, in case it always says so. */
        for (unsigned i = 0; i < 4; i++) {
                (void) MHD_run(l->daemon);
                if (MHD_get_timeout(l->daemon, &ms) != MHD_YES || ms > 0) {
                        break;
                }
        }
        listener_arm(l);
}

/* Lets MHD act on every listener: after a resume, or where the loop would otherwise go round
 * once more for it. */
static void proxy_run(Proxy *p)
{
        /* Cleared first: a resume made while MHD runs kicks again. */
        p->kicked = false;
        (void) sd_event_source_set_enabled(p->kick, SD_EVENT_OFF);
        for (Listener *l = p->listeners; l; l = l->next) {
                listener_run(l);
        }
}

void proxy_kick(Proxy *p)
{
        if (!p->kicked) {
                p->kicked = true;
                (void) sd_event_source_set_enabled(p->kick, SD_EVENT_ONESHOT);
        }
}

static int proxy_on_kick(sd_event_source *s, void *userdata)
{
        proxy_run(userdata);
        return 0;
}

/* After a transfer's events: the bytes a child just sent go out to their clients in this
 * iteration of the loop, not in one more (each costs an epoll_wait and a dispatch). */
static void proxy_on_upstream_events(void *userdata)
{
        Proxy *p = userdata;

        if (p->kicked) {
                proxy_run(p);
        }
}

static int listener_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Listener *l = userdata;

        if (l->proxy->kicked) {
                proxy_run(l->proxy);
        } else {
                listener_run(l);
        }
        return 0;
}

static int listener_on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        return listener_on_io(NULL, -1, 0, userdata);
}

static Listener *listener_free(Listener *l)
{
        if (!l) {
                return NULL;
        }
        sd_event_source_disable_unref(l->io);
        sd_event_source_disable_unref(l->timer);
        if (l->daemon) {
                MHD_stop_daemon(l->daemon);
        }
        free(l->name);
        free(l->model);
        free(l);
        return NULL;
}

/* Takes fd, also on failure. */
static int listener_new(Proxy *p, int fd, const char *name, const char *model, Listener **ret)
{
        const Config *c = proxy_config(p);
        const union MHD_DaemonInfo *info;
        Listener *l;
        int r;

        l = calloc(1, sizeof(Listener));
        if (!l || !(l->name = strdup(name)) || (model && !(l->model = strdup(model)))) {
                safe_close(fd);
                listener_free(l);
                return -ENOMEM;
        }
        l->proxy = p;
        l->daemon = MHD_start_daemon(
                MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO, 0, NULL, NULL,
                proxy_on_request, l, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
                (unsigned) c->max_connections + PROXY_CONN_SLACK, MHD_OPTION_CONNECTION_TIMEOUT,
                (unsigned) (c->idle_timeout_usec / USEC_PER_SEC), MHD_OPTION_URI_LOG_CALLBACK,
                proxy_on_uri, l, MHD_OPTION_NOTIFY_CONNECTION, proxy_on_connection, l,
                MHD_OPTION_NOTIFY_COMPLETED, proxy_on_completed, l,
                /* Headers, a piece of the body, one chunk of the answer: 32 KiB (MHD's own
                 * default) is enough, and bounds what max-connections can cost. */
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) PROXY_CONN_MEMORY, MHD_OPTION_END);
        if (!l->daemon) {
                safe_close(fd);
                listener_free(l);
                return -EIO;
        }
        info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        r = sd_event_add_io(p->event, &l->io, info->epoll_fd, EPOLLIN, listener_on_io, l);
        if (r >= 0) {
                r = sd_event_add_time_relative(p->event, &l->timer, CLOCK_MONOTONIC, 0, 1,
                                               listener_on_timer, l);
        }
        if (r < 0) {
                listener_free(l);
                return r;
        }
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        *ret = l;
        return 0;
}

static int proxy_add_listener(Proxy *p, int fd, const char *name, const char *model)
{
        Listener *l;
        int r = listener_new(p, fd, name, model, &l);

        if (r < 0) {
                return log_error_errno(r, "proxy: cannot serve HTTP on %s: %m", name);
        }
        l->next = p->listeners;
        p->listeners = l;
        log_info("proxy: listening on %s%s%s", name, model ? " for " : "", model ? model : "");
        return 0;
}

static bool listener_loopback(const char *host)
{
        return strneq(host, "127.", 4) || streq(host, "::1") || streq(host, "localhost");
}

static int listener_bind_tcp(const char *host, uint16_t port, char **ret_name)
{
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } a = {};
        socklen_t len;
        int fd, one = 1;
        bool v6 = strchr(host, ':') != NULL || isempty(host);

        if (v6) {
                a.in6.sin6_family = AF_INET6;
                a.in6.sin6_port = htons(port);
                if (!isempty(host) && inet_pton(AF_INET6, host, &a.in6.sin6_addr) != 1) {
                        return -EINVAL;
                }
                len = sizeof(a.in6);
        } else {
                a.in.sin_family = AF_INET;
                a.in.sin_port = htons(port);
                if (streq(host, "localhost")) {
                        host = "127.0.0.1";
                }
                if (inet_pton(AF_INET, host, &a.in.sin_addr) != 1) {
                        return -EINVAL;
                }
                len = sizeof(a.in);
        }
        fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                return -errno;
        }
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (v6 && !isempty(host)) {
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
        if (bind(fd, &a.sa, len) < 0 || listen(fd, 1024) < 0) {
                int r = -errno;
                safe_close(fd);
                return r;
        }
        if (asprintf(ret_name, v6 ? "[%s]:%u" : "%s:%u", isempty(host) ? "::" : host, port) < 0) {
                *ret_name = NULL;
        }
        return fd;
}

/* The keys of c's api-key-file, checked, into *ret (NULL without a file). On failure *ret_why
 * says why, for the log and for llmctl reload; nothing else changes. */
static int proxy_read_keys(const Config *c, char ***ret, char **ret_why)
{
        _cleanup_free_ char *text = NULL;
        _cleanup_strv_free_ char **lines = NULL, **keys = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        *ret = NULL;
        if (!c->api_key_file) {
                return 0;
        }
        fd = open_regular(c->api_key_file, 0, &st);
        if (fd == -EBADFD || fd == -EISDIR) {
                (void) asprintf(ret_why, "the API key file %s is not a regular file",
                                c->api_key_file);
                return -EINVAL;
        }
        if (fd < 0) {
                (void) asprintf(ret_why, "cannot read the API key file %s: %s", c->api_key_file,
                                file_strerror(fd));
                return fd;
        }
        if (st.st_mode & 0007) {
                (void) asprintf(ret_why,
                                "the API key file %s is readable by others; chmod o-rwx it",
                                c->api_key_file);
                return -EPERM;
        }
        r = read_fd(fd, 64 * 1024, &text);
        if (r < 0) {
                (void) asprintf(ret_why, "cannot read the API key file %s: %s", c->api_key_file,
                                file_strerror(r));
                return r;
        }
        if (strlen(text) != (size_t) r) {
                (void) asprintf(ret_why, "the API key file %s holds a NUL byte", c->api_key_file);
                return -EINVAL;
        }
        if (strv_split(text, "\r\n", &lines) < 0) {
                return -ENOMEM;
        }
        STRV_FOREACH(line, lines) {
                /* Spaces around a key are not part of it (an editor's trailing blank would
                 * otherwise make a key nobody sends); a space inside one is a mistake. */
                char *k = *line + strspn(*line, " \t");
                size_t n = strlen(k);

                while (n > 0 && (k[n - 1] == ' ' || k[n - 1] == '\t')) {
                        k[--n] = '\0';
                }
                if (n == 0 || k[0] == '#') {
                        continue;
                }
                bool printable = true;
                for (size_t i = 0; i < n; i++) {
                        printable = printable && k[i] > ' ' && k[i] < 0x7f;
                }
                if (!printable) {
                        (void) asprintf(
                                ret_why,
                                "the API key file %s holds a key with a space or a byte "
                                "outside printable ASCII (a comment takes a line of its own)",
                                c->api_key_file);
                        return -EINVAL;
                }
                if (strv_extend(&keys, k) < 0) {
                        return -ENOMEM;
                }
        }
        if (strv_length(keys) == 0 || strv_length(keys) > PROXY_API_KEYS_MAX) {
                (void) asprintf(ret_why, "the API key file %s holds no keys (or more than %d)",
                                c->api_key_file, PROXY_API_KEYS_MAX);
                return -EINVAL;
        }
        *ret = TAKE_PTR(keys);
        return 0;
}

int proxy_check_keys(const Config *c, char **ret_why)
{
        _cleanup_strv_free_ char **keys = NULL;

        return proxy_read_keys(c, &keys, ret_why);
}

int proxy_new(sd_event *e, Supervisor *s, Proxy **ret, char **ret_why)
{
        _cleanup_free_ char *why = NULL;
        Proxy *p;
        int r;

        *ret_why = NULL;
        p = calloc(1, sizeof(Proxy));
        if (!p) {
                return -ENOMEM;
        }
        p->event = e;
        p->supervisor = s;
        (void) gethostname(p->hostname, sizeof(p->hostname) - 1);
        r = upstream_multi_new(e, &p->upstream);
        if (r >= 0) {
                r = sd_event_add_defer(e, &p->kick, proxy_on_kick, p);
        }
        if (r >= 0) {
                (void) sd_event_source_set_enabled(p->kick, SD_EVENT_OFF);
                upstream_multi_set_events_hook(p->upstream, proxy_on_upstream_events, p);
        }
        if (r >= 0) {
                r = sd_event_add_time(e, &p->header_timer, CLOCK_MONOTONIC, UINT64_MAX,
                                      USEC_PER_SEC, proxy_on_header_timeout, p);
        }
        if (r >= 0) {
                r = proxy_read_keys(proxy_config(p), &p->api_keys, &why);
        }
        if (r >= 0) {
                r = dashboard_new(p, &p->dashboard);
                r = activity_new(proxy_config(p)->activity_size, &p->activity);
        }
        if (r < 0) {
                proxy_free(p);
                *ret_why = TAKE_PTR(why);
                return r;
        }
        if (p->api_keys) {
                log_info("proxy: %zu API key(s) from %s", strv_length(p->api_keys),
                         proxy_config(p)->api_key_file);
        }
        *ret = p;
        return 0;
}

int proxy_start(Proxy *p)
{
        const Config *c = proxy_config(p);
        char **names = NULL;
        int n, r;

        /* Sockets from systemd (llmd.socket) come first: a restart refuses no connection. */
        n = sd_listen_fds_with_names(true, &names);
        for (int i = 0; i < MAX(n, 0); i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names && names[i] ? names[i] : "http";
                const char *model = strneq(name, "model-", 6) ? name + 6 : NULL;

                (void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                r = proxy_add_listener(p, fd, name, model);
                if (r < 0) {
                        strv_free(names);
                        return r;
                }
        }
        strv_free(names);
        if (n <= 0) {
                for (size_t i = 0; i < c->n_listen; i++) {
                        _cleanup_free_ char *name = NULL;
                        int fd = listener_bind_tcp(c->listen[i].host, c->listen[i].port, &name);

                        if (fd < 0) {
                                return log_error_errno(
                                        fd, "proxy: cannot listen on %s:%u: %m",
                                        isempty(c->listen[i].host) ? "*" : c->listen[i].host,
                                        c->listen[i].port);
                        }
                        r = proxy_add_listener(p, fd, name ? name : "?", NULL);
                        if (r < 0) {
                                return r;
                        }
                        if (!p->api_keys && !listener_loopback(c->listen[i].host)) {
                                log_warning(
                                        "proxy: %s is reachable from other machines and no api-key-file "
                                        "is set: anyone who reaches it can use the models (docs/security.md)",
                                        name ? name : "?");
                        }
                }
        }
        /* A model's own port, as it had before llmd: loopback like the default listen. */
        FOREACH_MODEL(m, c) {
                _cleanup_free_ char *name = NULL;
                int fd;

                if (m->port == 0) {
                        continue;
                }
                fd = listener_bind_tcp("127.0.0.1", m->port, &name);
                if (fd < 0) {
                        return log_error_errno(fd,
                                               "proxy: cannot listen on 127.0.0.1:%u for %s: %m",
                                               m->port, m->name);
                }
                r = proxy_add_listener(p, fd, name ? name : "?", m->name);
                if (r < 0) {
                        return r;
                }
        }
        return 0;
}

void proxy_quiesce(Proxy *p)
{
        for (Listener *l = p->listeners; l; l = l->next) {
                int fd = MHD_quiesce_daemon(l->daemon);
                /* We close it: no new connections; those open go on. */
                safe_close(fd);
        }
}

static bool proxy_listen_equal(const Config *a, const Config *b)
{
        if (a->n_listen != b->n_listen || a->max_connections != b->max_connections ||
            a->max_connections_per_client != b->max_connections_per_client ||
            a->idle_timeout_usec != b->idle_timeout_usec) {
                return false;
        }
        for (size_t i = 0; i < a->n_listen; i++) {
                if (!streq(a->listen[i].host, b->listen[i].host) ||
                    a->listen[i].port != b->listen[i].port) {
                        return false;
                }
        }
        FOREACH_MODEL(m, a) {
                const ModelConfig *o = config_find_model(b, m->name);
                if (m->port != (o && streq(o->name, m->name) ? o->port : 0)) {
                        return false;
                }
        }
        FOREACH_MODEL(m, b) {
                if (m->port != 0 && !config_find_model(a, m->name)) {
                        return false;
                }
        }
        return true;
}

int proxy_reload_check(Proxy *p, const Config *c, ProxyReload **ret, char **ret_why)
{
        _cleanup_strv_free_ char **keys = NULL;
        int r;

        *ret_why = NULL;
        /* The sockets systemd passed, and MHD's limits, are fixed for the life of the process;
         * a changed address would be half-applied, so it is refused whole. */
        if (!proxy_listen_equal(proxy_config(p), c)) {
                *ret_why = strdup(
                        "listen, a model's port, max-connections, max-connections-per-client "
                        "or idle-timeout changed; those take a restart (systemctl restart llmd)");
                return -EINVAL;
        }
        r = proxy_read_keys(c, &keys, ret_why);
        if (r < 0) {
                return r;
        }
        *ret = (ProxyReload *) TAKE_PTR(keys);
        return 0;
}

void proxy_reload_apply(Proxy *p, ProxyReload *keys)
{
        if (activity_resize(p->activity, proxy_config(p)->activity_size) < 0) {
                log_warning(
                        "proxy: out of memory for activity-size %u; the activity log keeps "
                        "its size",
                        proxy_config(p)->activity_size);
        }
        strv_free(p->api_keys);
        p->api_keys = (char **) keys;
        if (p->api_keys) {
                log_info("proxy: %zu API key(s) from %s", strv_length(p->api_keys),
                         proxy_config(p)->api_key_file);
        }
}

ProxyReload *proxy_reload_free(ProxyReload *keys)
{
        strv_free((char **) keys);
        return NULL;
}

void proxy_set_metrics(Proxy *p, Metrics *m)
{
        p->metrics = m;
}

Activity *proxy_activity(const Proxy *p)
{
        return p->activity;
}

ProxyCounters proxy_counters(const Proxy *p)
{
        return p->counters;
}

Proxy *proxy_free(Proxy *p)
{
        if (!p) {
                return NULL;
        }
        hold_free_drains(p);
        /* Every suspended connection must be resumed before MHD stops; ending the requests
         * still waiting or running does that and cancels their transfers. */
        while (p->held_first) {
                request_answer_transient(p->held_first, 503, "llmd is stopping", NULL);
        }
        while (p->forwarded) {
                request_cut_off(p->forwarded, "llmd is stopping");
        }
        dashboard_end_streams(p->dashboard);
        while (p->listeners) {
                Listener *next = p->listeners->next;

                listener_free(p->listeners);
                p->listeners = next;
        }
        dashboard_free(p->dashboard);
        sd_event_source_disable_unref(p->header_timer);
        sd_event_source_disable_unref(p->kick);
        upstream_multi_free(p->upstream);
        tdestroy(p->clients, free); /* empty: MHD closed every connection */
        activity_free(p->activity);
        strv_free(p->api_keys);
        free(p);
        return NULL;
}
