/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/* NULL-terminated string vectors, as execve() and friends want them. */

char **strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);
#define _cleanup_strv_free_ _cleanup_(strv_freep)

size_t strv_length(char *const *l);
/* Appends a copy of s; -ENOMEM on failure (l is unchanged then). */
int strv_extend(char ***l, const char *s);
/* Takes ownership of s, also on failure. */
int strv_consume(char ***l, char *s);
bool strv_contains(char *const *l, const char *s);
/* Removes (and frees) every entry equal to s. */
void strv_remove(char **l, const char *s);
char **strv_copy(char *const *l);
bool strv_equal(char *const *a, char *const *b);
/* Splits at any character of separators; empty items are dropped. */
int strv_split(const char *s, const char *separators, char ***ret);
/* Joins with separator; NULL on allocation failure. */
char *strv_join(char *const *l, const char *separator);

#define STRV_FOREACH(s, l) for (char *const *s = (l); s && *s; s++)

/* a followed by b, newly allocated; NULL on allocation failure. */
char *strjoin2(const char *a, const char *b);
