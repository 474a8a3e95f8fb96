/* SPDX-License-Identifier: MIT */
/* The control server's clocks, with its timeouts shortened: the integration tests cannot wait
 * the real 30 s. */
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "control.h"
#include "tests.h"
#include "time-util.h"

#define IDLE_USEC (300 * USEC_PER_MSEC)
#define FRAME_USEC (100 * USEC_PER_MSEC)

static const control_handler_t no_handlers[_CONTROL_METHOD_MAX] = {};

static int client_connect(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        check(fd >= 0);
        check(strlen(path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, path);
        check(connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0);
        return fd;
}

static void client_send(int fd, const char *s, size_t len)
{
        check(send(fd, s, len, MSG_NOSIGNAL) == (ssize_t) len);
}

/* Reads what is there; true once the server closed the connection. */
static bool client_closed(int fd)
{
        char buf[4096];
        ssize_t n;

        while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        }
        return n == 0 || (n < 0 && errno != EAGAIN);
}

TEST(idle_and_partial_frames_time_out)
{
        char dir[] = "/tmp/test-control-XXXXXX", path[64];
        ControlServer *s = NULL;
        const char *step = NULL;
        sd_event *e = NULL;
        uint64_t start, closed_idle = 0, closed_partial = 0, closed_calling = 0;
        int idle, partial, calling;

        check(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/control.sock", dir);
        check(sd_event_new(&e) >= 0);
        ControlOptions o = {
                .event = e,
                .path = path,
                .handlers = no_handlers,
                .idle_timeout_usec = IDLE_USEC,
                .frame_timeout_usec = FRAME_USEC,
        };
        check(control_server_new(&o, &s, &step) >= 0);

        /* One asks something (every method is unknown here) and then says nothing, one stops
         * in the middle of a message, one keeps calling for longer than the idle timeout. */
        idle = client_connect(path);
        static const char call[] = "{\"method\":\"org.varlink.service.GetInfo\"}";
        client_send(idle, call, sizeof(call));
        partial = client_connect(path);
        client_send(partial, call, 10);
        calling = client_connect(path);

        start = event_now_usec(e);
        uint64_t next_call = start;
        while (event_now_usec(e) - start < 5 * USEC_PER_SEC && !(closed_idle && closed_partial)) {
                check(sd_event_run(e, 10 * USEC_PER_MSEC) >= 0);
                uint64_t t = event_now_usec(e) - start;
                if (!closed_idle && client_closed(idle)) {
                        closed_idle = t;
                }
                if (!closed_partial && client_closed(partial)) {
                        closed_partial = t;
                }
                if (!closed_calling && client_closed(calling)) {
                        closed_calling = t;
                }
                if (!closed_calling && event_now_usec(e) >= next_call) {
                        client_send(calling, call, sizeof(call));
                        next_call += IDLE_USEC / 3;
                }
        }
        check(closed_partial >= FRAME_USEC && closed_partial < IDLE_USEC);
        check(closed_idle >= IDLE_USEC && closed_idle < 3 * IDLE_USEC);
        check(closed_calling == 0);
        check_inteq(control_server_connections(s), 1);

        safe_close(idle);
        safe_close(partial);
        safe_close(calling);
        control_server_free(s);
        sd_event_unref(e);
        check(rmdir(dir) == 0);
}

TEST_MAIN()
