/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/stat.h>

#include "fileio.h"

int write_file_atomic(const char *path, const char *content, mode_t mode)
{
        _cleanup_free_ char *tmp = NULL, *dir = NULL;
        _cleanup_close_ int fd = -1, dfd = -1;
        size_t len = strlen(content), off = 0;

        if (asprintf(&tmp, "%s.tmp.%d", path, (int) getpid()) < 0) {
                return -ENOMEM;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0) {
                return -errno;
        }
        while (off < len) {
                ssize_t n = write(fd, content + off, len - off);
                if (n < 0) {
                        if (errno == EINTR) {
                                continue;
                        }
                        int r = -errno;
                        (void) unlink(tmp);
                        return r;
                }
                off += (size_t) n;
        }
        if (fsync(fd) < 0 || rename(tmp, path) < 0) {
                int r = -errno;
                (void) unlink(tmp);
                return r;
        }
        dir = strdup(path);
        if (!dir) {
                return -ENOMEM;
        }
        dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0) {
                return -errno;
        }
        return 0;
}

int open_regular(const char *path, int flags, struct stat *ret_stat)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | flags);
        if (fd < 0) {
                /* open() of a socket, or of a device without its driver */
                return errno == ENXIO ? -EBADFD : -errno;
        }
        if (fstat(fd, &st) < 0) {
                return -errno;
        }
        if (!S_ISREG(st.st_mode)) {
                return S_ISDIR(st.st_mode) ? -EISDIR : -EBADFD;
        }
        if (ret_stat) {
                *ret_stat = st;
        }
        return TAKE_FD(fd);
}

const char *file_strerror(int r)
{
        switch (r) {
        case -EBADFD:
                return "not a regular file";
        case -EISDIR:
                return "a directory, not a regular file";
        case -ELOOP:
                return "a symbolic link, not a regular file";
        case -EFBIG:
                return "too large";
        default:
                return strerror(-r);
        }
}

int read_fd(int fd, size_t max, char **ret)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;

        buf = malloc(max + 1);
        if (!buf) {
                return -ENOMEM;
        }
        for (;;) {
                ssize_t n = read(fd, buf + len, max + 1 - len);
                if (n < 0) {
                        if (errno == EINTR) {
                                continue;
                        }
                        return -errno;
                }
                if (n == 0) {
                        break;
                }
                len += (size_t) n;
                if (len > max) {
                        return -EFBIG;
                }
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        return (int) MIN(len, (size_t) INT32_MAX);
}

int read_file(const char *path, int flags, size_t max, char **ret)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        fd = open_regular(path, flags, &st);
        if (fd < 0) {
                return fd;
        }
        /* a sparse file of 16 GiB is refused before a byte of it is read */
        if ((uint64_t) st.st_size > max) {
                return -EFBIG;
        }
        return read_fd(fd, max, ret);
}

int mkdir_p(const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p) {
                return -ENOMEM;
        }
        for (char *s = p + 1; *s; s++) {
                if (*s == '/') {
                        *s = '\0';
                        if (mkdir(p, mode) < 0 && errno != EEXIST) {
                                return -errno;
                        }
                        *s = '/';
                }
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST) {
                return -errno;
        }
        return 0;
}
