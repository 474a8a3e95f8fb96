/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/* UTF-8 as peers send it: checked strictly (no overlong forms, no surrogates, nothing past
 * U+10FFFF), and made safe to print on a terminal. */

/* The length of the valid UTF-8 character at s (1 to 4 bytes of the n there), or 0 when the
 * bytes at s are not one. */
size_t utf8_char_length(const char *s, size_t n);
/* Whether the n bytes at s are all valid UTF-8 (NUL bytes count as characters). */
bool utf8_valid(const char *s, size_t n);

/* s as it may reach a terminal: a string from a box, a server or llmd cannot move the cursor,
 * change colours or start a line of its own. Printable UTF-8 stays; C0 controls and DEL are
 * written as \e \n \r \t or \xNN, C1 controls as \u0080 to \u009f, and every byte that is not
 * UTF-8 as \xNN. NULL without memory; "" for s NULL. The caller frees it. */
char *utf8_escape_terminal(const char *s);
