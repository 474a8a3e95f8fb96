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

int read_file(const char *path, size_t max, char **ret)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                return -errno;
        }
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
