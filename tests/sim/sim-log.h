/* SPDX-License-Identifier: MIT */
#pragma once

#include "sim.h"

/* llama.cpp's levels: a line is shown when its level is at most -lv (default 3). */
enum log_level {
        LOG_LEVEL_ERROR = 1,
        LOG_LEVEL_WARN = 2,
        LOG_LEVEL_INFO = 3,
        LOG_LEVEL_DEBUG = 5,
};

void log_init(void);
void log_configure(int verbosity, bool disabled);

/*
 * One line in llama.cpp's format, "M.ss.mmm.uuu L mod  function: message". module is "srv",
 * "slot" or "cmn"; NULL writes the bare "L message" of the libraries' own lines. func is the
 * llama.cpp function the line stands for, cut to 12 characters as llama.cpp does.
 */
void log_line(enum log_level level, const char *module, const char *func, const char *fmt, ...)
        _printf_(4, 5);

/* A line without any prefix, always shown (llama.cpp's fprintf(stderr) messages). */
void log_plain(const char *fmt, ...) _printf_(1, 2);

#define SRV_INF(func, ...) log_line(LOG_LEVEL_INFO, "srv", func, __VA_ARGS__)
#define SRV_WRN(func, ...) log_line(LOG_LEVEL_WARN, "srv", func, __VA_ARGS__)
#define SRV_ERR(func, ...) log_line(LOG_LEVEL_ERROR, "srv", func, __VA_ARGS__)
