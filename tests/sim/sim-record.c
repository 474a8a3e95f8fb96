/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim-record.h"

static int record_fd = -1;

int record_open(const char *path)
{
        record_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (record_fd < 0) {
                return -errno;
        }
        return 0;
}

cJSON *record_new(const char *event)
{
        cJSON *o;

        if (record_fd < 0) {
                return NULL;
        }
        o = cJSON_CreateObject();
        if (!o) {
                return NULL;
        }
        cJSON_AddStringToObject(o, "event", event);
        cJSON_AddNumberToObject(o, "pid", (double) getpid());
        return o;
}

void record_add_time(cJSON *o, const char *name, uint64_t usec)
{
        char t[32];

        snprintf(t, sizeof(t), "%llu.%06llu", (unsigned long long) (usec / USEC_PER_SEC),
                 (unsigned long long) (usec % USEC_PER_SEC));
        cJSON_AddRawToObject(o, name, t);
}

void record_emit(cJSON *o)
{
        char *line;
        size_t len;

        if (!o) {
                return;
        }
        record_add_time(o, "t", now_usec(CLOCK_MONOTONIC));

        line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!line) {
                return;
        }
        len = strlen(line);
        line[len] = '\n';
        /* One write, so concurrent writers append whole lines. A short write to a regular file
         * only happens when the disk is full, and then the records are lost anyway. */
        (void) !write(record_fd, line, len + 1);
        free(line);
}

void record_signal(int sig, const char *action)
{
        cJSON *o = record_new("signal");

        if (o) {
                cJSON_AddNumberToObject(o, "signal", sig);
                cJSON_AddStringToObject(o, "action", action);
        }
        record_emit(o);
}

void record_exit(int status)
{
        cJSON *o = record_new("exit");

        if (o) {
                cJSON_AddNumberToObject(o, "status", status);
        }
        record_emit(o);
}
