/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "log.h"

static const char *log_identifier = "llmd";
static int log_max_level = LOG_INFO;
static int log_journal = -1; /* -1: not checked yet */
/* log_batch_begin() .. log_batch_end(): lines for stderr gathered, written in one write. */
static bool log_batching;
static char *log_batch;
static size_t log_batch_len, log_batch_size;

static void log_batch_flush(void);

void log_open(const char *identifier)
{
        log_identifier = identifier;
        log_journal = -1;
}

void log_set_max_level(int level)
{
        log_max_level = level;
}

int log_get_max_level(void)
{
        return log_max_level;
}

/* The same test systemd uses: is our stderr the very stream $JOURNAL_STREAM names? */
bool log_to_journal(void)
{
        if (log_journal < 0) {
                const char *e = getenv("JOURNAL_STREAM");
                unsigned long long dev, ino;
                struct stat st;

                log_journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 &&
                              fstat(STDERR_FILENO, &st) >= 0 && st.st_dev == (dev_t) dev &&
                              st.st_ino == (ino_t) ino;
        }
        return log_journal;
}

static void log_write(int level, const char *model, const char *event, const char *identifier,
                      const char *msg, size_t len)
{
        if (log_to_journal()) {
                char prio[16], *fields[5];
                struct iovec iov[6];
                size_t n = 0;
                int k = 0;

                /* MESSAGE= is built by hand so a line with NULs or no end is kept as it is. */
                _cleanup_free_ char *m = malloc(len + sizeof("MESSAGE="));
                if (!m) {
                        return;
                }
                memcpy(m, "MESSAGE=", 8);
                memcpy(m + 8, msg, len);
                iov[n++] = (struct iovec) { m, len + 8 };

                snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
                iov[n++] = (struct iovec) { prio, strlen(prio) };
                if (asprintf(&fields[k], "SYSLOG_IDENTIFIER=%s", identifier) >= 0) {
                        iov[n++] = (struct iovec) { fields[k], strlen(fields[k]) };
                        k++;
                }
                if (model && asprintf(&fields[k], "MODEL=%s", model) >= 0) {
                        iov[n++] = (struct iovec) { fields[k], strlen(fields[k]) };
                        k++;
                }
                if (event && asprintf(&fields[k], "LLMD_EVENT=%s", event) >= 0) {
                        iov[n++] = (struct iovec) { fields[k], strlen(fields[k]) };
                        k++;
                }
                (void) sd_journal_sendv(iov, (int) n);
                while (k > 0) {
                        free(fields[--k]);
                }
                return;
        }

        /* llmd's own messages name the model in their text; a child's lines need the prefix. */
        bool prefix = model && identifier != log_identifier;
        if (log_batching) {
                size_t need = strlen(identifier) + (prefix ? strlen(model) + 2 : 0) + len + 3;

                if (log_batch_len + need > log_batch_size && log_batch_len > 0) {
                        log_batch_flush();
                }
                if (need > log_batch_size) {
                        char *b = realloc(log_batch, MAX(need, (size_t) 16384));
                        if (b) {
                                log_batch = b;
                                log_batch_size = MAX(need, (size_t) 16384);
                        }
                }
                if (log_batch_len + need <= log_batch_size) {
                        int n = prefix ? snprintf(log_batch + log_batch_len, need,
                                                  "%s[%s]: ", identifier, model)
                                       : snprintf(log_batch + log_batch_len, need,
                                                  "%s: ", identifier);
                        log_batch_len += (size_t) MAX(n, 0);
                        memcpy(log_batch + log_batch_len, msg, len);
                        log_batch_len += len;
                        log_batch[log_batch_len++] = '\n';
                        return;
                }
        }
        if (prefix) {
                fprintf(stderr, "%s[%s]: %.*s\n", identifier, model, (int) len, msg);
        } else {
                fprintf(stderr, "%s: %.*s\n", identifier, (int) len, msg);
        }
}

static void log_batch_flush(void)
{
        if (log_batch_len > 0) {
                (void) fwrite(log_batch, 1, log_batch_len, stderr);
                log_batch_len = 0;
        }
}

void log_batch_begin(void)
{
        log_batching = true;
}

void log_batch_end(void)
{
        log_batching = false;
        log_batch_flush();
}

int log_internal(int level, int error, const char *model, const char *event, const char *format,
                 ...)
{
        char buf[2048];
        va_list ap;
        int saved = errno;

        error = abs(error);
        errno = error;
        va_start(ap, format);
        int n = vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        if (n < 0) {
                n = 0;
        }
        log_write(level, model, event, log_identifier, buf, MIN((size_t) n, sizeof(buf) - 1));
        errno = saved;
        return -error;
}

void log_child_line(const char *model, const char *line, size_t len)
{
        /* llama-server marks its lines " E " / " W " / " I "; keep the journal's priority honest. */
        int level = LOG_INFO;

        if (len > 14 && memmem(line, MIN(len, (size_t) 20), " E ", 3)) {
                level = LOG_ERR;
        } else if (len > 14 && memmem(line, MIN(len, (size_t) 20), " W ", 3)) {
                level = LOG_WARNING;
        }
        log_write(level, model, NULL, "llama-server", line, len);
}

char *log_escape(const char *s, size_t max)
{
        size_t n, k = 0;
        char *out;

        if (!s) {
                return strdup("-");
        }
        n = strnlen(s, max + 1);
        out = malloc(MIN(n, max) * 4 + 4);
        if (!out) {
                return NULL;
        }
        for (size_t i = 0; i < MIN(n, max); i++) {
                unsigned char c = (unsigned char) s[i];

                if (c == '\\') {
                        out[k++] = '\\';
                        out[k++] = '\\';
                } else if (c == '\n') {
                        out[k++] = '\\';
                        out[k++] = 'n';
                } else if (c >= 0x20 && c < 0x7f) {
                        out[k++] = (char) c;
                } else {
                        k += (size_t) snprintf(out + k, 5, "\\x%02x", c);
                }
        }
        if (n > max) {
                memcpy(out + k, "...", 3);
                k += 3;
        }
        out[k] = '\0';
        return out;
}
