/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/* Replaces path with content so that a crash leaves the old file or the new one, never a mix:
 * write a temporary file beside it, fsync, rename over, fsync the directory. */
int write_file_atomic(const char *path, const char *content, mode_t mode);
/* Reads a small file whole (at most max bytes; -EFBIG beyond). */
int read_file(const char *path, size_t max, char **ret);
