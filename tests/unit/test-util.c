/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>

#include "array.h"
#include "fd-util.h"
#include "manager.h"
#include "parse-util.h"
#include "probe.h"
#include "strv.h"
#include "tests.h"
#include "time-util.h"
#include "utf8.h"

/* The descriptors open in this process from `from` up, less the one reading the list. */
static int fd_count_from(int from)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        int n = 0;

        check(d);
        while ((de = readdir(d))) {
                int fd = atoi(de->d_name);

                n += de->d_name[0] != '.' && fd >= from && fd != dirfd(d);
        }
        closedir(d);
        return n;
}

TEST(fd_close_from)
{
        int p[2], status;
        pid_t pid;

        check(pipe(p) == 0); /* not close-on-exec: fd_cloexec_from() makes them so */
        fd_cloexec_from(3);
        check(fcntl(p[0], F_GETFD) & FD_CLOEXEC && fcntl(p[1], F_GETFD) & FD_CLOEXEC);
        check(fcntl(STDERR_FILENO, F_GETFD) >= 0);
        pid = fork();
        check(pid >= 0);
        if (pid == 0) {
                fd_close_from(3);
                _exit(fd_count_from(3) == 0 && fcntl(STDERR_FILENO, F_GETFD) >= 0 ? 0 : 1);
        }
        check(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        check(fd_count_from(3) >= 2); /* the parent's are untouched */
        close(p[0]);
        close(p[1]);
}

TEST(duration)
{
        uint64_t u;

        check(parse_duration("600", &u) == 0 && u == 600 * USEC_PER_SEC);
        check(parse_duration("1.5", &u) == 0 && u == 1500 * USEC_PER_MSEC);
        check(parse_duration("250ms", &u) == 0 && u == 250 * USEC_PER_MSEC);
        check(parse_duration("2s", &u) == 0 && u == 2 * USEC_PER_SEC);
        check(parse_duration("10min", &u) == 0 && u == 600 * USEC_PER_SEC);
        check(parse_duration("1h", &u) == 0 && u == 3600 * USEC_PER_SEC);
        check(parse_duration("", &u) == -EINVAL);
        check(parse_duration("-1", &u) == -EINVAL);
        check(parse_duration("5 parsecs", &u) == -EINVAL);
        check(parse_duration("1e400", &u) == -ERANGE);
}

TEST(size)
{
        char buf[32];
        uint64_t u;

        check(parse_size("32M", &u) == 0 && u == 32ULL << 20);
        check_streq(format_size(buf, sizeof(buf), 1024), "1K");
        check_streq(format_size(buf, sizeof(buf), 32ULL << 20), "32M");
        check_streq(format_size(buf, sizeof(buf), 1536), "1536");
        check_streq(format_size(buf, sizeof(buf), 0), "0");
        /* What it writes, parse_size() reads back. */
        check(parse_size(format_size(buf, sizeof(buf), 3ULL << 40), &u) == 0 && u == 3ULL << 40);
}

TEST(listen)
{
        _cleanup_free_ char *h = NULL;
        uint16_t p;

        check(parse_listen_address("127.0.0.1:8080", &h, &p) == 0 && streq(h, "127.0.0.1") &&
              p == 8080);
        free(h);
        check(parse_listen_address("[::]:80", &h, &p) == 0 && streq(h, "::") && p == 80);
        free(h);
        h = NULL;
        check(parse_listen_address("[]:80", &h, &p) == -EINVAL);
        check(parse_listen_address("host:0", &h, &p) == -EINVAL);
        check(parse_listen_address("fe80::1", &h, &p) == -EINVAL);
}

TEST(boolean)
{
        check(parse_boolean("true") == 1 && parse_boolean("On") == 1 && parse_boolean("1") == 1);
        check(parse_boolean("false") == 0 && parse_boolean("no") == 0);
        check(parse_boolean("maybe") == -EINVAL);
}

TEST(probe_status)
{
        check_inteq(probe_parse_status("HTTP/1.1 200 OK\r\n", 17), 200);
        check_inteq(probe_parse_status("HTTP/1.1 503 Service Unavailable\r\n", 34), 503);
        check_inteq(probe_parse_status("HTTP/1.0 404 ", 13), 404);
        check_inteq(probe_parse_status("HTTP/1.", 7), -EAGAIN);
        check_inteq(probe_parse_status("HTTP/1.1 20", 11), -EAGAIN);
        check_inteq(probe_parse_status("", 0), -EAGAIN);
        check_inteq(probe_parse_status("SSH-2.0-OpenSSH", 15), -EBADMSG);
        check_inteq(probe_parse_status("HTTP/1.1 2x0 OK", 15), -EBADMSG);
}

TEST(environ)
{
        char *in[] = { "PATH=/bin",
                       "NOTIFY_SOCKET=/run/x",
                       "LISTEN_FDS=3",
                       "LISTEN_PID=1",
                       "WATCHDOG_USEC=1",
                       "JOURNAL_STREAM=1:2",
                       "INVOCATION_ID=abc",
                       "HOME=/root",
                       "LISTEN_FDNAMES=a",
                       "LLAMA_SIM_X=1",
                       NULL };
        _cleanup_strv_free_ char **out = manager_clean_environ(in);
        _cleanup_free_ char *j = strv_join(out, " ");

        check_streq(j, "PATH=/bin HOME=/root LLAMA_SIM_X=1");
}

TEST(strv)
{
        _cleanup_strv_free_ char **l = NULL;

        check(strv_split(" a,b  c,", ", ", &l) == 0);
        check_inteq(strv_length(l), 3);
        _cleanup_free_ char *j = strv_join(l, "|");
        check_streq(j, "a|b|c");
}

TEST(array_grow)
{
        _cleanup_free_ uint64_t *a = NULL;
        size_t n = 0;

        for (uint64_t i = 0; i < 100; i++) {
                uint64_t *e = ARRAY_GROW(a, n);

                check(e && e == &a[n] && *e == 0);
                *e = i;
                n++;
        }
        for (size_t i = 0; i < n; i++) {
                check_inteq(a[i], i);
        }
        /* One more than size_t can count: refused, the array as it was. */
        check(!array_grow((void **) &a, SIZE_MAX, 1));
        check(!ARRAY_GROW(a, SIZE_MAX / 8));
        check_inteq(a[99], 99);
}

TEST(clock)
{
        uint64_t t = now_usec(CLOCK_MONOTONIC);

        check(t > 0 && now_usec(CLOCK_MONOTONIC) >= t);
        /* No loop to ask: the time now. */
        check(event_now_usec(NULL) >= t);
}

TEST(utf8_valid)
{
        static const struct {
                const char *s;
                bool valid;
        } cases[] = {
                { "", true },
                { "qwen-3.5", true },
                { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\xa6\x99 \xf4\x8f\xbf\xbf", true },
                { "\x80", false },             /* a continuation byte alone */
                { "\xc0\xaf", false },         /* '/' overlong */
                { "\xc1\xbf", false },         /* overlong */
                { "\xe0\x9f\xbf", false },     /* overlong */
                { "\xf0\x8f\xbf\xbf", false }, /* overlong */
                { "\xed\xa0\x80", false },     /* a surrogate */
                { "\xf4\x90\x80\x80", false }, /* past U+10FFFF */
                { "\xf5\x80\x80\x80", false },
                { "\xe2\x82", false }, /* cut */
                { "\xe2\x82x", false },
                { "\xff", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                if (utf8_valid(cases[i].s, strlen(cases[i].s)) != cases[i].valid) {
                        fprintf(stderr, "case %zu: expected %s\n", i,
                                cases[i].valid ? "valid" : "invalid");
                        abort();
                }
        }
        check(utf8_valid("a\0b", 3));
}

TEST(utf8_escape_terminal)
{
        static const struct {
                const char *s, *escaped;
        } cases[] = {
                { "qwen", "qwen" },
                { "caf\xc3\xa9 \xf0\x9f\xa6\x99", "caf\xc3\xa9 \xf0\x9f\xa6\x99" },
                { "back\\slash", "back\\slash" },
                { "\x1b[31mred\x1b[0m", "\\e[31mred\\e[0m" },
                { "x\nllmctl: forged", "x\\nllmctl: forged" },
                { "\r\t\a\x7f", "\\r\\t\\x07\\x7f" },
                { "\xc2\x9b"
                  "31m \xc2\x85 \xc2\xa0",
                  "\\u009b31m \\u0085 \xc2\xa0" },
                { "\xff\xc3(\xe2\x82", "\\xff\\xc3(\\xe2\\x82" },
                { "\xed\xa0\x80", "\\xed\\xa0\\x80" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *e = utf8_escape_terminal(cases[i].s);

                check_streq(e, cases[i].escaped);
        }
        _cleanup_free_ char *e = utf8_escape_terminal(NULL);
        check_streq(e, "");
}

TEST_MAIN()
