/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "fd-util.h"
#include "log.h"
#include "upstream.h"

#define UPSTREAM_CONNECT_TIMEOUT_MS 5000L

struct UpstreamMulti {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        sd_event_source *now; /* curl's "as soon as possible": no timer to program */
        void (*hook)(void *userdata);
        void *hook_userdata;
};

struct Upstream {
        UpstreamMulti *multi;
        CURL *easy;
        struct curl_slist *headers;
        UpstreamCallbacks cb;
        void *userdata;
        long status;
        char *content_type;
        bool headers_sent;
        bool paused;
        bool finished;
        char error[CURL_ERROR_SIZE];
};

static void upstream_free(Upstream *u)
{
        if (!u) {
                return;
        }
        if (u->easy) {
                curl_multi_remove_handle(u->multi->multi, u->easy);
                curl_easy_cleanup(u->easy);
        }
        curl_slist_free_all(u->headers);
        free(u->content_type);
        free(u);
}

/* ---- the glue ---- */

static void upstream_report_headers(Upstream *u);

static void multi_check(UpstreamMulti *m)
{
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(m->multi, &left))) {
                Upstream *u = NULL;

                if (msg->msg != CURLMSG_DONE) {
                        continue;
                }
                (void) curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &u);
                if (!u || u->finished) {
                        continue;
                }
                CURLcode result = msg->data.result;
                u->finished = true;
                if (result == CURLE_OK) {
                        /* An empty body (or a HEAD): the headers were never reported through
                         * data. Their Content-Length stands: a HEAD answer carries the GET's. */
                        upstream_report_headers(u);
                }
                if (result == CURLE_OK) {
                        u->cb.done(u->userdata, 0, NULL);
                } else {
                        const char *e = u->error[0] ? u->error : curl_easy_strerror(result);
                        u->cb.done(u->userdata,
                                   result == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EIO, e);
                }
                /* done() must not cancel; the transfer is ours to free now. */
                upstream_free(u);
        }
}

/* After curl acted on its own events: the transfers that ended, then the hook. */
static void multi_acted(UpstreamMulti *m)
{
        multi_check(m);
        if (m->hook) {
                m->hook(m->hook_userdata);
        }
}

static int multi_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        UpstreamMulti *m = userdata;
        int action = 0, running;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) {
                action |= CURL_CSELECT_IN;
        }
        if (revents & EPOLLOUT) {
                action |= CURL_CSELECT_OUT;
        }
        if (revents & EPOLLERR) {
                action |= CURL_CSELECT_ERR;
        }
        (void) curl_multi_socket_action(m->multi, fd, action, &running);
        multi_acted(m);
        return 0;
}

static int multi_on_socket(CURL *easy, curl_socket_t fd, int what, void *userdata, void *socketp)
{
        UpstreamMulti *m = userdata;
        sd_event_source *s = socketp;
        uint32_t events = 0;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        sd_event_source_disable_unref(s);
                        curl_multi_assign(m->multi, fd, NULL);
                }
                return 0;
        }
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
                events |= EPOLLIN;
        }
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
                events |= EPOLLOUT;
        }
        if (s) {
                if (sd_event_source_set_io_events(s, events) < 0 ||
                    sd_event_source_set_enabled(s, SD_EVENT_ON) < 0) {
                        return -1;
                }
                return 0;
        }
        if (sd_event_add_io(m->event, &s, fd, events, multi_on_io, m) < 0) {
                return -1;
        }
        curl_multi_assign(m->multi, fd, s);
        return 0;
}

static int multi_on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        UpstreamMulti *m = userdata;
        int running;

        (void) curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        multi_acted(m);
        return 0;
}

static int multi_on_now(sd_event_source *s, void *userdata)
{
        return multi_on_timer(s, 0, userdata);
}

void upstream_multi_run_now(UpstreamMulti *m)
{
        int enabled = SD_EVENT_OFF, running;

        if (sd_event_source_get_enabled(m->now, &enabled) < 0 || enabled == SD_EVENT_OFF) {
                return;
        }
        (void) sd_event_source_set_enabled(m->now, SD_EVENT_OFF);
        (void) curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        multi_check(m);
}

static int multi_on_timeout_change(CURLM *multi, long timeout_ms, void *userdata)
{
        UpstreamMulti *m = userdata;

        if (timeout_ms < 0) {
                (void) sd_event_source_set_enabled(m->timer, SD_EVENT_OFF);
                (void) sd_event_source_set_enabled(m->now, SD_EVENT_OFF);
                return 0;
        }
        if (timeout_ms == 0) {
                /* What curl asks for after every new transfer and many steps of one: the next
                 * loop iteration, without reprogramming the loop's timerfd twice for it. */
                (void) sd_event_source_set_enabled(m->timer, SD_EVENT_OFF);
                return sd_event_source_set_enabled(m->now, SD_EVENT_ONESHOT) < 0 ? -1 : 0;
        }
        (void) sd_event_source_set_enabled(m->now, SD_EVENT_OFF);
        /* 1 µs accuracy: curl's timers pace the transfers. */
        if (sd_event_source_set_time_relative(m->timer, (uint64_t) timeout_ms * USEC_PER_MSEC) <
                    0 ||
            sd_event_source_set_enabled(m->timer, SD_EVENT_ONESHOT) < 0) {
                return -1;
        }
        return 0;
}

int upstream_multi_new(sd_event *e, UpstreamMulti **ret)
{
        UpstreamMulti *m;
        int r;

        m = calloc(1, sizeof(UpstreamMulti));
        if (!m) {
                return -ENOMEM;
        }
        m->event = e;
        m->multi = curl_multi_init();
        if (!m->multi) {
                free(m);
                return -ENOMEM;
        }
        /* curl before 8.x makes its wake-up socket pair without SOCK_CLOEXEC and offers no
         * option for it. llmd has one thread, and everything else it holds is close-on-exec
         * already, so marking them all here marks just that pair. */
        fd_cloexec_from(3);
        r = sd_event_add_time_relative(e, &m->timer, CLOCK_MONOTONIC, 0, 1, multi_on_timer, m);
        if (r < 0) {
                upstream_multi_free(m);
                return r;
        }
        (void) sd_event_source_set_enabled(m->timer, SD_EVENT_OFF);
        r = sd_event_add_defer(e, &m->now, multi_on_now, m);
        if (r < 0) {
                upstream_multi_free(m);
                return r;
        }
        (void) sd_event_source_set_enabled(m->now, SD_EVENT_OFF);
        if (curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, multi_on_socket) != CURLM_OK ||
            curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m) != CURLM_OK ||
            curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, multi_on_timeout_change) !=
                    CURLM_OK ||
            curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m) != CURLM_OK) {
                upstream_multi_free(m);
                return -EIO;
        }
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
        if (m->multi) {
                curl_multi_cleanup(m->multi);
        }
        sd_event_source_disable_unref(m->timer);
        sd_event_source_disable_unref(m->now);
        free(m);
        return NULL;
}

/* ---- one transfer ---- */

/* curl's own socket() has no SOCK_CLOEXEC: a llama-server started while this is open would
 * keep the connection to another one alive after llmd closed it. */
static curl_socket_t upstream_on_open_socket(void *userdata, curlsocktype purpose,
                                             struct curl_sockaddr *a)
{
        return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static size_t upstream_on_header(char *buf, size_t size, size_t n, void *userdata)
{
        Upstream *u = userdata;
        size_t len = size * n;

        if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
                /* The end of the headers: pass them on now, not with the first byte of the
                 * body, which may be a prompt's processing away (the client sees the status
                 * at once, and the first token goes out as one write). Not for 1xx. */
                long status = 0;

                (void) curl_easy_getinfo(u->easy, CURLINFO_RESPONSE_CODE, &status);
                if (status >= 200) {
                        upstream_report_headers(u);
                }
        } else if (len >= 5 && strneq(buf, "HTTP/", 5)) {
                /* A new response (after a 100 Continue, say): start over. */
                free(u->content_type);
                u->content_type = NULL;
        } else if (len > 13 && strncasecmp(buf, "content-type:", 13) == 0) {
                const char *v = buf + 13;
                size_t l = len - 13;

                while (l > 0 && (*v == ' ' || *v == '\t')) {
                        v++, l--;
                }
                while (l > 0 && (v[l - 1] == '\r' || v[l - 1] == '\n' || v[l - 1] == ' ')) {
                        l--;
                }
                free(u->content_type);
                u->content_type = strndup(v, l);
        }
        return len;
}

static void upstream_report_headers(Upstream *u)
{
        curl_off_t cl = -1;

        if (u->headers_sent) {
                return;
        }
        u->headers_sent = true;
        (void) curl_easy_getinfo(u->easy, CURLINFO_RESPONSE_CODE, &u->status);
        (void) curl_easy_getinfo(u->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        if (u->cb.headers) {
                u->cb.headers(u->userdata, u->status, u->content_type, cl);
        }
}

static size_t upstream_on_data(char *buf, size_t size, size_t n, void *userdata)
{
        Upstream *u = userdata;
        size_t len = size * n;

        upstream_report_headers(u);
        if (len == 0) {
                return 0;
        }
        if (u->cb.data(u->userdata, buf, len) == -EAGAIN) {
                u->paused = true;
                return CURL_WRITEFUNC_PAUSE;
        }
        return len;
}

int upstream_start(UpstreamMulti *m, const UpstreamRequest *req, const UpstreamCallbacks *cb,
                   void *userdata, Upstream **ret)
{
        _cleanup_free_ char *url = NULL, *ct = NULL, *accept = NULL;
        Upstream *u;

        u = calloc(1, sizeof(Upstream));
        if (!u) {
                return -ENOMEM;
        }
        u->multi = m;
        u->cb = *cb;
        u->userdata = userdata;
        u->easy = curl_easy_init();
        if (!u->easy || asprintf(&url, "http://localhost%s", req->path) < 0) {
                upstream_free(u);
                return -ENOMEM;
        }
        /* What matters for llama-server; "Expect:" empty, or curl waits a second before a large
         * body. Host is curl's. */
        u->headers = curl_slist_append(u->headers, "Expect:");
        if (req->content_type && asprintf(&ct, "Content-Type: %s", req->content_type) >= 0) {
                u->headers = curl_slist_append(u->headers, ct);
        }
        if (req->accept && asprintf(&accept, "Accept: %s", req->accept) >= 0) {
                u->headers = curl_slist_append(u->headers, accept);
        }
        if (!u->headers) {
                upstream_free(u);
                return -ENOMEM;
        }
        curl_easy_setopt(u->easy, CURLOPT_URL, url);
        curl_easy_setopt(u->easy, CURLOPT_UNIX_SOCKET_PATH, req->socket_path);
        curl_easy_setopt(u->easy, CURLOPT_NOPROXY, "*"); /* curl honours $http_proxy */
        curl_easy_setopt(u->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(u->easy, CURLOPT_OPENSOCKETFUNCTION, upstream_on_open_socket);
        curl_easy_setopt(u->easy, CURLOPT_CONNECTTIMEOUT_MS, UPSTREAM_CONNECT_TIMEOUT_MS);
        curl_easy_setopt(u->easy, CURLOPT_HTTPHEADER, u->headers);
        curl_easy_setopt(u->easy, CURLOPT_CUSTOMREQUEST, req->method);
        curl_easy_setopt(u->easy, CURLOPT_ERRORBUFFER, u->error);
        curl_easy_setopt(u->easy, CURLOPT_PRIVATE, u);
        curl_easy_setopt(u->easy, CURLOPT_HEADERFUNCTION, upstream_on_header);
        curl_easy_setopt(u->easy, CURLOPT_HEADERDATA, u);
        curl_easy_setopt(u->easy, CURLOPT_WRITEFUNCTION, upstream_on_data);
        curl_easy_setopt(u->easy, CURLOPT_WRITEDATA, u);
        /* No total timeout: a stream lasts as long as it generates. */
        curl_easy_setopt(u->easy, CURLOPT_TIMEOUT, 0L);
        /* Streams must not wait in curl's buffers. */
        curl_easy_setopt(u->easy, CURLOPT_BUFFERSIZE, 16384L);
        if (req->body) {
                curl_easy_setopt(u->easy, CURLOPT_POSTFIELDS, req->body);
                curl_easy_setopt(u->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
        } else if (streq(req->method, "GET") || streq(req->method, "HEAD")) {
                curl_easy_setopt(u->easy, CURLOPT_HTTPGET, 1L);
                if (streq(req->method, "HEAD")) {
                        curl_easy_setopt(u->easy, CURLOPT_NOBODY, 1L);
                }
        }
        if (curl_multi_add_handle(m->multi, u->easy) != CURLM_OK) {
                upstream_free(u);
                return -EIO;
        }
        *ret = u;
        return 0;
}

void upstream_cancel(Upstream *u)
{
        upstream_free(u);
}

void upstream_resume(Upstream *u)
{
        if (!u->paused) {
                return;
        }
        u->paused = false;
        /* May deliver the held bytes right away, through upstream_on_data(). */
        (void) curl_easy_pause(u->easy, CURLPAUSE_CONT);
}
