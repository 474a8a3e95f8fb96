/* SPDX-License-Identifier: MIT */
#include "prefetch.h"
#include "residency.h"
#include "tests.h"

#define G (1024ULL * 1024 * 1024)

/* The names of models[evict[0..k)], space-separated. */
static const char *names(const ResidentModel *m, const size_t *evict, size_t k)
{
        static char out[256];

        out[0] = '\0';
        for (size_t i = 0; i < k; i++) {
                strcat(out, i ? " " : "");
                strcat(out, m[evict[i]].name);
        }
        return out;
}

/* The names of the models plan stops, or "E2BIG". */
static const char *plan(const ResidentModel *m, size_t n, const char *target, unsigned max,
                        uint64_t budget)
{
        ResidencyLimits l = { .max_resident = max, .budget = budget };
        size_t evict[16], k = 0, t = n;

        for (size_t i = 0; i < n; i++) {
                if (streq(m[i].name, target)) {
                        t = i;
                }
        }
        check(t < n);
        if (residency_plan(m, n, t, &l, evict, &k) == -E2BIG) {
                return "E2BIG";
        }
        return names(m, evict, k);
}

TEST(plans)
{
        /* a, b, c loaded (a least recently used, c active); d not; e pinned. */
        /* clang-format off */
        const ResidentModel m[] = {
                { "a", true, false, false, 100, 10 * G, false },
                { "b", true, false, false, 200, 20 * G, false },
                { "c", true, false, true, 50, 30 * G, false },
                { "d", false, false, false, 0, 25 * G, false },
                { "e", true, true, false, 0, 5 * G, false },
                { "huge", false, false, false, 0, 200 * G, false },
        };
        /* clang-format on */
        size_t n = ELEMENTSOF(m);

        /* Already loaded: nothing to do, whatever the limits. */
        check_streq(plan(m, n, "b", 1, 1), "");
        /* Room enough. */
        check_streq(plan(m, n, "d", 0, 100 * G), "");
        /* Memory: LRU first (a, then b), the active (c) last, the pinned (e) never. */
        check_streq(plan(m, n, "d", 0, 85 * G), "a");
        check_streq(plan(m, n, "d", 0, 70 * G), "a b");
        check_streq(plan(m, n, "d", 0, 40 * G), "a b c");
        check_streq(plan(m, n, "d", 0, 30 * G), "a b c");
        check_streq(plan(m, n, "d", 0, 29 * G), "E2BIG"); /* d and pinned e: 30 G */
        check_streq(plan(m, n, "huge", 0, 100 * G), "E2BIG");
        /* Count: the pinned model does not count. */
        check_streq(plan(m, n, "d", 4, 0), "");
        check_streq(plan(m, n, "d", 3, 0), "a");
        check_streq(plan(m, n, "d", 1, 0), "a b c");
        /* Unknown budget and no count limit: anything fits. */
        check_streq(plan(m, n, "huge", 0, 0), "");
        /* Both limits at once. */
        check_streq(plan(m, n, "d", 3, 60 * G), "a b");
}

TEST(ran_alone_runs_alone)
{
        /* huge was seen to use 200 G, over a 100 G budget: it ran then, so it runs alone now
         * (every generation model stops; the pinned e stays). Estimated, it is refused. */
        /* clang-format off */
        const ResidentModel m[] = {
                { "a", true, false, false, 100, 10 * G, false },
                { "b", true, false, true, 200, 20 * G, false },
                { "e", true, true, false, 0, 5 * G, false },
                { "huge", false, false, false, 0, 200 * G, .measured = true },
                { "guess", false, false, false, 0, 200 * G, false },
        };
        /* clang-format on */
        size_t n = ELEMENTSOF(m);

        check_streq(plan(m, n, "huge", 0, 100 * G), "a b");
        check_streq(plan(m, n, "guess", 0, 100 * G), "E2BIG");
        /* Where it fits, the plan is the usual one: nothing stops. */
        check_streq(plan(m, n, "huge", 0, 300 * G), "");
}

static const char *trim(const ResidentModel *m, size_t n, unsigned max, uint64_t budget)
{
        ResidencyLimits l = { .max_resident = max, .budget = budget };
        size_t evict[16], k = 0;

        residency_trim(m, n, &l, evict, &k);
        return names(m, evict, k);
}

TEST(trims)
{
        /* clang-format off */
        const ResidentModel m[] = {
                { "a", true, false, false, 100, 10 * G, false },
                { "b", true, false, false, 200, 20 * G, false },
                { "c", true, false, true, 50, 30 * G, false },
                { "d", false, false, false, 0, 25 * G, false },
                { "e", true, true, false, 0, 5 * G, false },
        };
        /* clang-format on */
        size_t n = ELEMENTSOF(m);

        check_streq(trim(m, n, 0, 0), "");
        check_streq(trim(m, n, 3, 65 * G), "");
        check_streq(trim(m, n, 2, 0), "a");
        check_streq(trim(m, n, 1, 0), "a b");
        check_streq(trim(m, n, 0, 50 * G), "a b");
        /* Never the active or a pinned model, even over the limit. */
        check_streq(trim(m, n, 0, 10 * G), "a b");
}

TEST(prefetch_budget)
{
        /* 32 GiB, 20 GiB available: 10% of the total (3.2 GiB) kept free. */
        const char *m =
                "MemTotal:       33554432 kB\nMemFree:         1000000 kB\n"
                "MemAvailable:   20971520 kB\n";
        /* 4 GiB, 1.5 GiB available: at least 1 GiB kept free. */
        const char *small = "MemTotal: 4194304 kB\nMemAvailable: 1572864 kB\n";

        check(prefetch_budget(m, 0) == 20 * G - 33554432ULL * 1024 / 10);
        check(prefetch_budget(m, 2 * G) == 2 * G);
        check(prefetch_budget(small, 0) == G / 2);
        check(prefetch_budget("MemTotal: 4194304 kB\nMemAvailable: 524288 kB\n", 0) == 0);
        check(prefetch_budget(NULL, 0) == 0);
        check(prefetch_budget("garbage", 5) == 0);
}

TEST_MAIN()
