/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "utf8.h"

size_t utf8_char_length(const char *s, size_t n)
{
        const unsigned char *u = (const unsigned char *) s;
        unsigned char lo = 0x80, hi = 0xbf;
        size_t len;

        if (n == 0) {
                return 0;
        }
        if (u[0] < 0x80) {
                return 1;
        }
        /* The second byte's range is what rules out overlong forms, surrogates and code points
         * past U+10FFFF (RFC 3629, section 4). */
        if (u[0] >= 0xc2 && u[0] <= 0xdf) {
                len = 2;
        } else if (u[0] >= 0xe0 && u[0] <= 0xef) {
                len = 3;
                lo = u[0] == 0xe0 ? 0xa0 : 0x80;
                hi = u[0] == 0xed ? 0x9f : 0xbf;
        } else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
                len = 4;
                lo = u[0] == 0xf0 ? 0x90 : 0x80;
                hi = u[0] == 0xf4 ? 0x8f : 0xbf;
        } else {
                return 0;
        }
        if (n < len || u[1] < lo || u[1] > hi) {
                return 0;
        }
        for (size_t i = 2; i < len; i++) {
                if ((u[i] & 0xc0) != 0x80) {
                        return 0;
                }
        }
        return len;
}

bool utf8_valid(const char *s, size_t n)
{
        for (size_t i = 0, k; i < n; i += k) {
                k = utf8_char_length(s + i, n - i);
                if (k == 0) {
                        return false;
                }
        }
        return true;
}

char *utf8_escape_terminal(const char *s)
{
        size_t n = s ? strlen(s) : 0, o = 0;
        char *out;

        /* At most 6 bytes for each byte of s: a C1 control is 2 bytes written as 6. */
        out = malloc(n * 6 + 1);
        if (!out) {
                return NULL;
        }
        for (size_t i = 0, k; i < n; i += k) {
                unsigned char c = (unsigned char) s[i];

                k = utf8_char_length(s + i, n - i);
                if (k == 0) {
                        o += (size_t) sprintf(out + o, "\\x%02x", c);
                        k = 1;
                } else if (c == 0x1b || c == '\n' || c == '\r' || c == '\t') {
                        out[o++] = '\\';
                        out[o++] = c == 0x1b ? 'e' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
                } else if (c < 0x20 || c == 0x7f) {
                        o += (size_t) sprintf(out + o, "\\x%02x", c);
                } else if (c == 0xc2 && (unsigned char) s[i + 1] < 0xa0) {
                        /* U+0080 to U+009F: C1 controls, CSI (U+009B) among them. */
                        o += (size_t) sprintf(out + o, "\\u%04x", (unsigned char) s[i + 1]);
                } else {
                        memcpy(out + o, s + i, k);
                        o += k;
                }
        }
        out[o] = '\0';
        return out;
}
