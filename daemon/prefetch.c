/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "fd-util.h"
#include "fileio.h"
#include "log.h"
#include "prefetch.h"
#include "strv.h"

#define PREFETCH_STEP (2ULL << 20) /* bytes per readahead(): the kernel reads no more per call */
#define PREFETCH_MARGIN_MIN (1ULL << 30)

/* <linux/ioprio.h> is not in every libc's headers. */
#define IOPRIO_CLASS_IDLE 3
#define IOPRIO_CLASS_SHIFT 13
#define IOPRIO_WHO_PROCESS 1

struct Prefetch {
        sd_event *event;
        sd_event_source *child;
        pid_t pid;
};

uint64_t prefetch_budget(const char *meminfo, uint64_t limit)
{
        uint64_t total = 0, avail = 0, margin;
        const char *l;

        if (!meminfo) {
                return 0;
        }
        if ((l = strstr(meminfo, "MemTotal:"))) {
                total = strtoull(l + 9, NULL, 10) * 1024;
        }
        if ((l = strstr(meminfo, "MemAvailable:"))) {
                avail = strtoull(l + 13, NULL, 10) * 1024;
        }
        margin = MAX(PREFETCH_MARGIN_MIN, total / 10);
        avail = avail > margin ? avail - margin : 0;
        return limit > 0 ? MIN(avail, limit) : avail;
}

static int prefetch_on_exit(sd_event_source *s, const siginfo_t *si, void *userdata)
{
        Prefetch *p = userdata;

        p->child = sd_event_source_disable_unref(p->child);
        p->pid = 0;
        if (si->si_code == CLD_EXITED && si->si_status == 0) {
                log_debug("prefetch: done");
        }
        return 0;
}

/* In the helper: nothing but system calls, on what the parent prepared. It keeps no copy of
 * llmd's descriptors: a client's socket it held would stay open after llmd closed it, and a
 * connection to a llama-server would outlive its request (no cancel) until the helper ended. */
_noreturn_ static void prefetch_run(char *const *paths, uint64_t budget)
{
        fd_close_from(3);
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        (void) setpriority(PRIO_PROCESS, 0, 19);
        (void) syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0,
                       IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT);
        for (char *const *f = paths; *f && budget > 0; f++) {
                struct stat st;
                int fd = open_regular(*f, 0, &st);

                if (fd < 0) {
                        continue;
                }
                for (uint64_t off = 0; off < (uint64_t) st.st_size && budget > 0;) {
                        uint64_t n = MIN(MIN(PREFETCH_STEP, budget), (uint64_t) st.st_size - off);

                        if (readahead(fd, (off64_t) off, n) < 0) {
                                break;
                        }
                        off += n;
                        budget -= n;
                }
                close(fd);
        }
        _exit(0);
}

int prefetch_start(Prefetch *p, char *const *paths, uint64_t limit)
{
        _cleanup_free_ char *meminfo = NULL;
        uint64_t budget;
        FILE *f;
        pid_t pid;
        int r;

        prefetch_stop(p);
        if (strv_length(paths) == 0) {
                return 0;
        }
        f = fopen("/proc/meminfo", "re");
        if (f) {
                size_t n = 0;

                if (getdelim(&meminfo, &n, '\0', f) < 0) {
                        free(meminfo);
                        meminfo = NULL;
                }
                fclose(f);
        }
        budget = prefetch_budget(meminfo, limit);
        if (budget == 0) {
                log_debug("prefetch: no memory to spare");
                return 0;
        }
        pid = fork();
        if (pid < 0) {
                return -errno;
        }
        if (pid == 0) {
                prefetch_run(paths, budget);
        }
        p->pid = pid;
        r = sd_event_add_child(p->event, &p->child, pid, WEXITED, prefetch_on_exit, p);
        if (r < 0) {
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
                p->pid = 0;
                return r;
        }
        log_debug("prefetch: reading up to %.1f GiB of %zu file(s), pid %d",
                  (double) budget / (1ULL << 30), strv_length(paths), (int) pid);
        return 0;
}

void prefetch_stop(Prefetch *p)
{
        if (p->pid > 0) {
                (void) kill(p->pid, SIGKILL);
                (void) waitpid(p->pid, NULL, 0);
                p->pid = 0;
        }
        p->child = sd_event_source_disable_unref(p->child);
}

int prefetch_new(sd_event *e, Prefetch **ret)
{
        Prefetch *p = calloc(1, sizeof(Prefetch));

        if (!p) {
                return -ENOMEM;
        }
        p->event = e;
        *ret = p;
        return 0;
}

Prefetch *prefetch_free(Prefetch *p)
{
        if (!p) {
                return NULL;
        }
        prefetch_stop(p);
        free(p);
        return NULL;
}

int prefetch_start_children(Prefetch *p, Child *const *children, size_t n, uint64_t limit)
{
        _cleanup_free_ Child **order = calloc(MAX(n, (size_t) 1), sizeof(Child *));
        _cleanup_strv_free_ char **paths = NULL;

        if (!order) {
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                size_t j = i;

                /* Insertion sort, most recent first; never used keeps the given order. */
                while (j > 0 && child_used_usec(order[j - 1]) < child_used_usec(children[i])) {
                        order[j] = order[j - 1];
                        j--;
                }
                order[j] = children[i];
        }
        for (size_t i = 0; i < n; i++) {
                if (strv_extend(&paths, child_config(order[i])->model_path) < 0) {
                        return -ENOMEM;
                }
        }
        return prefetch_start(p, paths, limit);
}
