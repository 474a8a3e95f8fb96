/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fd-util.h"

#ifndef __NR_close_range
#define __NR_close_range 436 /* the same on every architecture since the shared table */
#endif

/* What getdents64(2) fills; <dirent.h> has no public struct for it. */
struct fd_dirent {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[];
};

static int fd_parse(const char *s)
{
        int n = 0;

        if (!*s) {
                return -1;
        }
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || n > 100000000) {
                        return -1;
                }
                n = n * 10 + (*s - '0');
        }
        return n;
}

void fd_close_from(int from)
{
        struct rlimit rl;
        long max = 1L << 20;
        int dir;

        if (syscall(__NR_close_range, (unsigned) from, ~0U, 0) == 0) {
                return;
        }
        /* Closing as we read is fine: the directory's offsets are descriptor numbers. */
        dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir >= 0) {
                char buf[4096] __attribute__((aligned(8)));
                long n;

                while ((n = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
                        for (long off = 0; off < n;) {
                                struct fd_dirent *de = (struct fd_dirent *) (buf + off);
                                int fd = fd_parse(de->name);

                                off += de->reclen;
                                if (fd >= from && fd != dir) {
                                        (void) close(fd);
                                }
                        }
                }
                (void) close(dir);
                if (n == 0) {
                        return;
                }
        }
        /* Neither: the last resort, bounded (the kernel's own nr_open default is 2^20). */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur < (rlim_t) max) {
                max = (long) rl.rlim_cur;
        }
        for (long fd = from; fd < max; fd++) {
                (void) close((int) fd);
        }
}

void fd_cloexec_from(int from)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;

        if (!d) {
                return;
        }
        while ((de = readdir(d))) {
                int fd = fd_parse(de->d_name), flags;

                if (fd < from || fd == dirfd(d) || (flags = fcntl(fd, F_GETFD)) < 0) {
                        continue;
                }
                (void) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
        closedir(d);
}
