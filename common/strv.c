/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "strv.h"

char **strv_free(char **l)
{
        if (l) {
                for (char **i = l; *i; i++) {
                        free(*i);
                }
                free(l);
        }
        return NULL;
}

size_t strv_length(char *const *l)
{
        size_t n = 0;

        while (l && l[n]) {
                n++;
        }
        return n;
}

int strv_consume(char ***l, char *s)
{
        size_t n = strv_length(*l);
        char **c;

        if (!s) {
                return -ENOMEM;
        }
        c = realloc(*l, sizeof(char *) * (n + 2));
        if (!c) {
                free(s);
                return -ENOMEM;
        }
        c[n] = s;
        c[n + 1] = NULL;
        *l = c;
        return 0;
}

int strv_extend(char ***l, const char *s)
{
        return strv_consume(l, strdup(s));
}

bool strv_contains(char *const *l, const char *s)
{
        STRV_FOREACH(i, l) {
                if (streq(*i, s)) {
                        return true;
                }
        }
        return false;
}

char **strv_copy(char *const *l)
{
        _cleanup_strv_free_ char **c = calloc(1, sizeof(char *));

        if (!c) {
                return NULL;
        }
        STRV_FOREACH(i, l) {
                if (strv_extend(&c, *i) < 0) {
                        return NULL;
                }
        }
        return TAKE_PTR(c);
}

bool strv_equal(char *const *a, char *const *b)
{
        size_t n = strv_length(a);

        if (n != strv_length(b)) {
                return false;
        }
        for (size_t i = 0; i < n; i++) {
                if (!streq(a[i], b[i])) {
                        return false;
                }
        }
        return true;
}

int strv_split(const char *s, const char *separators, char ***ret)
{
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));

        if (!l) {
                return -ENOMEM;
        }
        while (*s) {
                size_t n;

                s += strspn(s, separators);
                n = strcspn(s, separators);
                if (n == 0) {
                        break;
                }
                if (strv_consume(&l, strndup(s, n)) < 0) {
                        return -ENOMEM;
                }
                s += n;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

char *strv_join(char *const *l, const char *separator)
{
        size_t n = 1, k = strlen(separator);
        char *r, *p;

        STRV_FOREACH(i, l) {
                n += strlen(*i) + k;
        }
        r = p = malloc(n);
        if (!r) {
                return NULL;
        }
        *p = '\0';
        STRV_FOREACH(i, l) {
                if (i != l) {
                        p = stpcpy(p, separator);
                }
                p = stpcpy(p, *i);
        }
        return r;
}

char *strjoin2(const char *a, const char *b)
{
        char *r;

        if (asprintf(&r, "%s%s", a, b) < 0) {
                return NULL;
        }
        return r;
}

void strv_remove(char **l, const char *s)
{
        size_t j = 0;

        for (size_t i = 0; l && l[i]; i++) {
                if (streq(l[i], s)) {
                        free(l[i]);
                } else {
                        l[j++] = l[i];
                }
        }
        if (l) {
                l[j] = NULL;
        }
}
