/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Minimal checks that say what failed and where, then abort: a unit test binary is one meson
 * test, and its first failure is what matters. */

#define check(expr)                                                                              \
        do {                                                                                     \
                if (!(expr)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

#define check_streq(a, b)                                                                    \
        do {                                                                                 \
                const char *_a_ = (a), *_b_ = (b);                                           \
                if (!_a_ || !_b_ || strcmp(_a_, _b_) != 0) {                                 \
                        fprintf(stderr,                                                      \
                                "%s:%d: %s == %s failed:\n  got:      %s\n  expected: %s\n", \
                                __FILE__, __LINE__, #a, #b, _a_ ? _a_ : "(null)",            \
                                _b_ ? _b_ : "(null)");                                       \
                        abort();                                                             \
                }                                                                            \
        } while (0)

#define check_inteq(a, b)                                                                   \
        do {                                                                                \
                long long _a_ = (long long) (a), _b_ = (long long) (b);                     \
                if (_a_ != _b_) {                                                           \
                        fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, \
                                __LINE__, #a, #b, _a_, _b_);                                \
                        abort();                                                            \
                }                                                                           \
        } while (0)

/*
 * A test is a TEST(name) { ... } block, and that is all: it registers itself (a constructor,
 * before main()), and tests_run() runs every test of the file in the order they are written,
 * printing "ok - name" after each. There is no list to forget a test in. A file whose main()
 * has nothing to set up ends with TEST_MAIN().
 */

typedef struct TestCase {
        const char *name;
        void (*run)(void);
        unsigned line;
} TestCase;

#define TESTS_MAX 64
static TestCase tests_table[TESTS_MAX];
static size_t tests_n;
static const char *tests_skip_why;

static inline void tests_register(const char *name, void (*run)(void), unsigned line)
{
        if (tests_n == TESTS_MAX) {
                fprintf(stderr, "%s: more than %d tests in one file\n", name, TESTS_MAX);
                abort();
        }
        tests_table[tests_n++] = (TestCase) { .name = name, .run = run, .line = line };
}

#define TEST(name)                                                          \
        static void test_##name(void);                                      \
        __attribute__((constructor)) static void test_register_##name(void) \
        {                                                                   \
                tests_register(#name, test_##name, __LINE__);               \
        }                                                                   \
        static void test_##name(void)

/* For a test that needs what main() set up in some runs of the binary only: the test returns,
 * and is reported as skipped, unless cond holds. */
#define SKIP_UNLESS(cond, why)                  \
        do {                                    \
                if (!(cond)) {                  \
                        tests_skip_why = (why); \
                        return;                 \
                }                               \
        } while (0)

/* Runs every test in the order of the file (constructors promise no order). A failed check has
 * aborted already; returns 0, or 77 (skipped, for meson) when every test was skipped. */
static inline int tests_run(void)
{
        size_t skipped = 0;

        for (size_t i = 1; i < tests_n; i++) {
                for (size_t j = i; j > 0 && tests_table[j - 1].line > tests_table[j].line; j--) {
                        TestCase t = tests_table[j];

                        tests_table[j] = tests_table[j - 1];
                        tests_table[j - 1] = t;
                }
        }
        for (size_t i = 0; i < tests_n; i++) {
                tests_skip_why = NULL;
                tests_table[i].run();
                if (tests_skip_why) {
                        printf("ok - %s # SKIP %s\n", tests_table[i].name, tests_skip_why);
                        skipped++;
                } else {
                        printf("ok - %s\n", tests_table[i].name);
                }
        }
        return tests_n > 0 && skipped == tests_n ? 77 : 0;
}

#define TEST_MAIN()                 \
        int main(void)              \
        {                           \
                return tests_run(); \
        }
