/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <strings.h>

#include "parse-util.h"

int parse_boolean(const char *s)
{
        static const char *const yes[] = { "1", "yes", "true", "on", "y" };
        static const char *const no[] = { "0", "no", "false", "off", "n" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        return 1;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        return 0;
                }
        }
        return -EINVAL;
}

int parse_duration(const char *s, uint64_t *ret_usec)
{
        static const struct {
                const char *suffix;
                double usec;
        } units[] = {
                { "", 1e6 }, { "s", 1e6 },    { "sec", 1e6 }, { "ms", 1e3 },   { "msec", 1e3 },
                { "us", 1 }, { "min", 60e6 }, { "m", 60e6 },  { "h", 3600e6 }, { "hour", 3600e6 },
        };
        char *end;
        double v;

        if (isempty(s) || !(isdigit((unsigned char) s[0]) || s[0] == '.')) {
                return -EINVAL;
        }
        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || !isfinite(v) || v < 0) {
                return -ERANGE;
        }
        while (*end == ' ') {
                end++;
        }
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                if (streq(end, units[i].suffix)) {
                        double usec = v * units[i].usec;

                        if (usec > (double) UINT64_MAX / 2) {
                                return -ERANGE;
                        }
                        *ret_usec = (uint64_t) llround(usec);
                        return 0;
                }
        }
        return -EINVAL;
}

int parse_unsigned(const char *s, unsigned max, unsigned *ret)
{
        unsigned long v;
        char *end;

        if (isempty(s) || !isdigit((unsigned char) s[0])) {
                return -EINVAL;
        }
        errno = 0;
        v = strtoul(s, &end, 10);
        if (*end != '\0') {
                return -EINVAL;
        }
        if (errno != 0 || v > max) {
                return -ERANGE;
        }
        *ret = (unsigned) v;
        return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
        unsigned long long v;
        char *end;

        if (isempty(s) || !isdigit((unsigned char) s[0])) {
                return -EINVAL;
        }
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0) {
                return -ERANGE;
        }
        const char *units = "KMGT", *u = *end ? strchr(units, *end) : NULL;
        if (*end && !u) {
                return -EINVAL;
        }
        if (u) {
                for (const char *k = units; k <= u; k++) {
                        if (v > (1ULL << 50)) {
                                return -ERANGE;
                        }
                        v *= 1024;
                }
                end++;
        }
        if (*end == 'B' || *end == 'i') {
                end += *end == 'i' && end[1] == 'B' ? 2 : 1;
        }
        if (*end != '\0' || v > (1ULL << 50)) {
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

int parse_port(const char *s, uint16_t *ret)
{
        unsigned v;
        int r = parse_unsigned(s, 65535, &v);

        if (r < 0) {
                return r;
        }
        if (v == 0) {
                return -ERANGE;
        }
        *ret = (uint16_t) v;
        return 0;
}

int parse_listen_address(const char *s, char **ret_host, uint16_t *ret_port)
{
        _cleanup_free_ char *host = NULL;
        const char *colon, *port;
        uint16_t p;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');

                if (!close || close[1] != ':' || close == s + 1) {
                        return -EINVAL;
                }
                host = strndup(s + 1, close - s - 1);
                port = close + 2;
        } else if ((colon = strrchr(s, ':'))) {
                if (strchr(s, ':') != colon) {
                        return -EINVAL; /* a bare IPv6 address needs brackets */
                }
                host = colon == s ? strdup("") : strndup(s, colon - s);
                port = colon + 1;
        } else {
                host = strdup("127.0.0.1");
                port = s;
        }
        if (!host) {
                return -ENOMEM;
        }
        if (parse_port(port, &p) < 0) {
                return -EINVAL;
        }
        *ret_host = TAKE_PTR(host);
        *ret_port = p;
        return 0;
}

const char *format_duration(char *buf, size_t size, uint64_t usec)
{
        if (usec % (60 * USEC_PER_SEC) == 0 && usec >= 60 * USEC_PER_SEC) {
                snprintf(buf, size, "%llumin", (unsigned long long) (usec / (60 * USEC_PER_SEC)));
        } else if (usec >= USEC_PER_SEC) {
                snprintf(buf, size, "%gs", (double) usec / USEC_PER_SEC);
        } else {
                snprintf(buf, size, "%gms", (double) usec / USEC_PER_MSEC);
        }
        return buf;
}

const char *format_size(char *buf, size_t size, uint64_t bytes)
{
        int unit = -1;

        while (unit < 3 && bytes >= 1024 && bytes % 1024 == 0) {
                bytes /= 1024;
                unit++;
        }
        if (unit < 0) {
                snprintf(buf, size, "%llu", (unsigned long long) bytes);
        } else {
                snprintf(buf, size, "%llu%c", (unsigned long long) bytes, "KMGT"[unit]);
        }
        return buf;
}

bool alias_valid(const char *s)
{
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > 256) {
                return false;
        }
        return strspn(s,
                      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/+@=") ==
               n;
}

int parse_u64(const char *s, uint64_t *ret)
{
        uint64_t v = 0;

        if (!s || !*s) {
                return -EINVAL;
        }
        for (; *s; s++) {
                if (*s < '0' || *s > '9') {
                        return -EINVAL;
                }
                if (v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10) {
                        return -ERANGE;
                }
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return 0;
}

int parse_double(const char *s, double min, double max, double *ret)
{
        char *end;
        double d;

        if (isempty(s)) {
                return -EINVAL;
        }
        errno = 0;
        d = strtod(s, &end);
        if (errno != 0 || *end != '\0' || !isfinite(d) || d < min || d > max) {
                return -EINVAL;
        }
        *ret = d;
        return 0;
}
