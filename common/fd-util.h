/* SPDX-License-Identifier: MIT */
#pragma once

/* Closes every descriptor from `from` up, for a forked child before exec(): it then holds only
 * what it was meant to have. Only system calls, no allocation: safe after fork() in a process
 * with threads. close_range(2) where the kernel has it (5.9), else the numbers in
 * /proc/self/fd, else every number below RLIMIT_NOFILE. */
void fd_close_from(int from);

/* Marks every descriptor from `from` up close-on-exec: for those a library opened without it. */
void fd_cloexec_from(int from);
