/* SPDX-License-Identifier: MIT */
#pragma once

#include <fcntl.h> /* the flags of open_regular() */
#include <sys/stat.h>

#include "macro.h"

/* Replaces path with content so that a crash leaves the old file or the new one, never a mix:
 * write a temporary file beside it, fsync, rename over, fsync the directory. */
int write_file_atomic(const char *path, const char *content, mode_t mode);
/* Creates path and the directories above it that are missing, with mode. */
int mkdir_p(const char *path, mode_t mode);
/*
 * Opens path for reading when it is a regular file, whoever controls it: O_RDONLY|O_NONBLOCK|
 * O_CLOEXEC|O_NOCTTY plus flags (O_NOFOLLOW where a symbolic link is not expected), so that a
 * FIFO, a socket or a device can neither block the caller nor be read. Returns the fd, with
 * its stat in *ret_stat when given, or -EISDIR (a directory), -ELOOP (a link under O_NOFOLLOW),
 * -EBADFD (anything else that is not a regular file, a socket included) or open's -errno.
 */
int open_regular(const char *path, int flags, struct stat *ret_stat);
/* What a negative errno from open_regular() or read_file() means, for a message. */
const char *file_strerror(int r);
/* Reads fd from where it is to its end, at most max bytes (-EFBIG beyond), NUL-terminated;
 * returns the length. */
int read_fd(int fd, size_t max, char **ret);
/* A small regular file whole: open_regular() with flags, then read_fd(). */
int read_file(const char *path, int flags, size_t max, char **ret);
