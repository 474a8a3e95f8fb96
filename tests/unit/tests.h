/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Minimal checks that say what failed and where, then abort: a unit test binary is one meson
 * test, and its first failure is what matters. */

#define check(expr)                                                                        \
        do {                                                                               \
                if (!(expr)) {                                                             \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                                #expr);                                                    \
                        abort();                                                           \
                }                                                                          \
        } while (0)

#define check_streq(a, b)                                                                  \
        do {                                                                               \
                const char *_a_ = (a), *_b_ = (b);                                         \
                if (!_a_ || !_b_ || strcmp(_a_, _b_) != 0) {                               \
                        fprintf(stderr, "%s:%d: %s == %s failed:\n  got:      %s\n  expected: %s\n", \
                                __FILE__, __LINE__, #a, #b, _a_ ? _a_ : "(null)",          \
                                _b_ ? _b_ : "(null)");                                     \
                        abort();                                                           \
                }                                                                          \
        } while (0)

#define check_inteq(a, b)                                                                  \
        do {                                                                               \
                long long _a_ = (long long) (a), _b_ = (long long) (b);                    \
                if (_a_ != _b_) {                                                          \
                        fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, \
                                __LINE__, #a, #b, _a_, _b_);                               \
                        abort();                                                           \
                }                                                                          \
        } while (0)

#define TEST(name) static void test_##name(void)
#define RUN(name)                                                                          \
        do {                                                                               \
                test_##name();                                                             \
                printf("ok - %s\n", #name);                                                \
        } while (0)
