/* SPDX-License-Identifier: MIT */
#pragma once

#include <syslog.h>

#include "macro.h"

/*
 * Logging for llmd and llmctl. Under systemd (stderr is the journal stream named by
 * $JOURNAL_STREAM) messages go to the journal with structured fields; otherwise to stderr,
 * one line each. Helpers in common/ never log above LOG_DEBUG: they return errors instead.
 */

void log_open(const char *identifier);
void log_set_max_level(int level);
int log_get_max_level(void);
bool log_to_journal(void);

/* Returns -abs(error) (or 0 when error is 0), so callers can "return log_error_errno(r, ...)".
 * errno is set to abs(error) while formatting, so %m works. */
int log_internal(int level, int error, const char *model, const char *event, const char *format,
                 ...) _printf_(5, 6);

#define log_full_errno(level, error, ...)                                                      \
        ({                                                                                     \
                int _l_ = (level), _e_ = (error);                                              \
                (log_get_max_level() >= _l_) ? log_internal(_l_, _e_, NULL, NULL, __VA_ARGS__) \
                                             : -abs(_e_);                                      \
        })
#define log_full(level, ...) (void) log_full_errno(level, 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)

/* A message about one model: MODEL= and, when event is set, LLMD_EVENT= in the journal. */
#define log_model(level, model, event, ...)                                         \
        ({                                                                          \
                int _l_ = (level);                                                  \
                if (log_get_max_level() >= _l_)                                     \
                        (void) log_internal(_l_, 0, (model), (event), __VA_ARGS__); \
        })

/* One line of a child's own output, passed through as it is. */
void log_child_line(const char *model, const char *line, size_t len);
/* Between these, lines for stderr (not the journal: an entry is a datagram) are gathered and
 * written at the end in one write: a child's burst of lines costs one system call. */
void log_batch_begin(void);
void log_batch_end(void);

/* What a client sent, made safe for a log line: printable ASCII stays, a backslash, a newline
 * and every other byte are written as C escapes (\\ \n \xNN), so a client cannot forge a line
 * or a journal field. At most max bytes of s are shown ("..." marks the cut). NULL without
 * memory; "-" for s NULL. */
char *log_escape(const char *s, size_t max);
