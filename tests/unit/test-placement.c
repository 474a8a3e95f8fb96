/* SPDX-License-Identifier: MIT */
/* placement_plan(): where a model goes on a machine with several GPUs, and what stops there. */
#include "residency.h"
#include "tests.h"

#define G (1024ULL * 1024 * 1024)

static const char *const kinds[_PLACEMENT_KIND_MAX] = {
        [PLACEMENT_RUNNING] = "running", [PLACEMENT_ONE] = "one",     [PLACEMENT_SPLIT] = "split",
        [PLACEMENT_FIXED] = "fixed",     [PLACEMENT_ALONE] = "alone",
};

static PlacementGpu gpus[PLACEMENT_GPUS_MAX];
static unsigned n_gpus;

/* n GPUs of budget GiB each, numbered from 0. */
static void gpus_of(unsigned n, uint64_t budget)
{
        n_gpus = n;
        for (unsigned g = 0; g < n; g++) {
                gpus[g] = (PlacementGpu) { .index = g, .budget = budget * G };
        }
}

/* A running model of GiB on GPU g (a negative g: -1 - g, pinned). */
static PlacedModel on(const char *name, int g, uint64_t gib, uint64_t last_used)
{
        PlacedModel m = { .m = { .name = name,
                                 .running = true,
                                 .pinned = g < 0,
                                 .last_used_usec = last_used,
                                 .bytes = gib * G } };

        m.on[g < 0 ? -1 - g : g] = gib * G;
        return m;
}

static PlacedModel off(const char *name, uint64_t gib, uint64_t want)
{
        return (PlacedModel) { .m = { .name = name, .bytes = gib * G }, .want = want };
}

/* "KIND GPU,GPU (GiB GiB); stops NAME NAME", or "E2BIG; stops NAME" (nothing, it must be). */
static const char *place(const PlacedModel *m, size_t n, const char *target, unsigned max)
{
        static char out[512];
        size_t evict[16], t = n;
        Placement p;
        int r;

        for (size_t i = 0; i < n; i++) {
                if (streq(m[i].m.name, target)) {
                        t = i;
                }
        }
        check(t < n);
        r = placement_plan(m, n, t, gpus, n_gpus, max, evict, &p);
        if (r == -E2BIG) {
                check_inteq(p.n_evict, 0); /* nothing stops for a model that cannot load */
                snprintf(out, sizeof(out), "E2BIG; stops");
        } else {
                char *o = out;

                check_inteq(r, 0);
                o += sprintf(o, "%s", kinds[p.kind]);
                for (unsigned g = 0, k = 0; g < n_gpus; g++) {
                        if (p.gpus & (1ULL << g)) {
                                o += sprintf(o, "%s%u", k++ ? "," : " ", g);
                        }
                }
                o += sprintf(o, " (");
                for (unsigned g = 0, k = 0; g < n_gpus; g++) {
                        if (p.gpus & (1ULL << g)) {
                                o += sprintf(o, "%s%g", k++ ? " " : "", (double) p.share[g] / G);
                        }
                }
                o += sprintf(o, "); stops");
                for (size_t j = 0; j < p.n_evict; j++) {
                        o += sprintf(o, " %s", m[evict[j]].m.name);
                }
        }
        return out;
}

TEST(fits_one_best_fit)
{
        const PlacedModel m[] = {
                on("a", 0, 16, 100), on("b", 1, 8, 200), off("t8", 8, 0),
                off("t12", 12, 0),   off("t24", 24, 0),
        };

        gpus_of(4, 24);
        /* GPU 0 has exactly 8 left: the smallest hole */
        check_streq(place(m, ELEMENTSOF(m), "t8", 0), "one 0 (8); stops");
        check_streq(place(m, ELEMENTSOF(m), "t12", 0), "one 1 (12); stops");
        check_streq(place(m, ELEMENTSOF(m), "t24", 0), "one 2 (24); stops");
        check_streq(place(m, ELEMENTSOF(m), "a", 0), "running 0 (16); stops");
}

TEST(fragmentation)
{
        /* two 16 GiB models on two 24 GiB GPUs: one each, neither split */
        PlacedModel m[] = { off("x", 16, 0), off("y", 16, 0) };

        gpus_of(2, 24);
        check_streq(place(m, ELEMENTSOF(m), "x", 0), "one 0 (16); stops");
        m[0] = on("x", 0, 16, 100);
        check_streq(place(m, ELEMENTSOF(m), "y", 0), "one 1 (16); stops");
}

TEST(needs_split)
{
        const PlacedModel m[] = { on("a", 0, 8, 100), off("big", 30, 0), off("bigger", 60, 0),
                                  off("fill", 88, 0), off("over", 90, 0) };

        gpus_of(2, 24);
        /* in proportion to the free memory: 16 and 24 */
        check_streq(place(m, ELEMENTSOF(m), "big", 0), "split 0,1 (12 18); stops");
        /* over all, it does not fit beside a: a stops, and then 24 + 24 hold 40, not 60 */
        check_streq(place(m, ELEMENTSOF(m), "bigger", 0), "E2BIG; stops");
        gpus_of(4, 24);
        /* the fewest GPUs: 3 of 4, the ones with the most free memory */
        check_streq(place(m, ELEMENTSOF(m), "bigger", 0), "split 1,2,3 (20 20 20); stops");
        /* all four, each as it has free: a stays */
        check_streq(place(m, ELEMENTSOF(m), "fill", 0), "split 0,1,2,3 (16 24 24 24); stops");
        /* all four, once a stops */
        check_streq(place(m, ELEMENTSOF(m), "over", 0),
                    "split 0,1,2,3 (22.5 22.5 22.5 22.5); stops a");
}

TEST(pinned_and_active_stay)
{
        PlacedModel m[] = { on("e", -1, 20, 0), on("c", 1, 20, 500), on("a", 2, 20, 100),
                            off("t", 10, 0) };

        m[1].m.active = true;
        gpus_of(3, 24);
        /* the pinned e never stops, the active c only as a last resort: a stops */
        check_streq(place(m, ELEMENTSOF(m), "t", 0), "one 2 (10); stops a");
        gpus_of(2, 24);
        check_streq(place(m, 2, "c", 0), "running 1 (20); stops");
        m[2] = off("a", 10, 0);
        check_streq(place(m, 3, "a", 0), "one 1 (10); stops c");
}

TEST(eviction_on_one_gpu)
{
        /* A global LRU would stop a first, which frees too little on GPU 0; on GPU 1 one model
         * makes room: c stops, a and b stay. */
        const PlacedModel m[] = { on("a", 0, 4, 100), on("b", 0, 18, 300), on("c", 1, 22, 200),
                                  off("t", 10, 0) };

        gpus_of(2, 24);
        check_streq(place(m, ELEMENTSOF(m), "t", 0), "one 1 (10); stops c");
}

TEST(eviction_least_recently_used_gpu)
{
        /* one model stops either way: the one used longest ago */
        const PlacedModel m[] = { on("a", 0, 20, 300), on("b", 1, 20, 100), off("t", 10, 0) };

        gpus_of(2, 24);
        check_streq(place(m, ELEMENTSOF(m), "t", 0), "one 1 (10); stops b");
}

TEST(active_stops_last)
{
        /* the active c was used longest ago, but a stops rather than c */
        PlacedModel m[] = { on("c", 0, 20, 50), on("a", 1, 20, 300), off("t", 10, 0) };

        m[0].m.active = true;
        gpus_of(2, 24);
        check_streq(place(m, ELEMENTSOF(m), "t", 0), "one 1 (10); stops a");
}

TEST(larger_than_all_refused)
{
        const PlacedModel m[] = { on("a", 0, 10, 100), on("e", -2, 10, 0), off("huge", 60, 0),
                                  off("big", 40, 0) };

        gpus_of(2, 24);
        check_streq(place(m, ELEMENTSOF(m), "huge", 0), "E2BIG; stops");
        /* the pinned e leaves 24 + 14: not 40 */
        check_streq(place(m, ELEMENTSOF(m), "big", 0), "E2BIG; stops");
}

TEST(ran_alone_runs_alone)
{
        PlacedModel m[] = { on("a", 0, 10, 100), on("e", -2, 4, 0), off("huge", 60, 0) };

        m[2].m.measured = true;
        gpus_of(2, 24);
        check_streq(place(m, ELEMENTSOF(m), "huge", 0), "alone 0,1 (30 30); stops a");
}

TEST(configured_devices)
{
        const PlacedModel m[] = { on("a", 2, 20, 100), off("here", 10, 1ULL << 2),
                                  off("pair", 30, (1ULL << 0) | (1ULL << 1)),
                                  off("nowhere", 30, 1ULL << 2) };

        gpus_of(4, 24);
        /* GPU 2 as configured, though GPU 0 is empty: a stops there */
        check_streq(place(m, ELEMENTSOF(m), "here", 0), "fixed 2 (10); stops a");
        check_streq(place(m, ELEMENTSOF(m), "pair", 0), "fixed 0,1 (15 15); stops");
        check_streq(place(m, ELEMENTSOF(m), "nowhere", 0), "E2BIG; stops");
}

TEST(max_resident)
{
        const PlacedModel m[] = { on("a", 0, 4, 300), on("b", 1, 4, 100), off("t", 4, 0),
                                  on("e", -1, 4, 0) };

        gpus_of(2, 24);
        check_streq(place(m, ELEMENTSOF(m), "t", 2), "one 0 (4); stops b");
        check_streq(place(m, ELEMENTSOF(m), "t", 3), "one 0 (4); stops");
}

TEST(one_gpu_as_before)
{
        /* the table of test-residency's plans: the same answers through placement_plan() */
        PlacedModel m[] = { on("a", 0, 10, 100), on("b", 0, 20, 200), on("c", 0, 30, 50),
                            off("d", 25, 0),     on("e", -1, 5, 0),   off("huge", 200, 0) };
        static const struct {
                const char *target;
                unsigned max;
                uint64_t budget;
                const char *want;
        } rows[] = {
                { "b", 1, 1, "running 0 (20); stops" },    { "d", 0, 100, "one 0 (25); stops" },
                { "d", 0, 85, "one 0 (25); stops a" },     { "d", 0, 70, "one 0 (25); stops a b" },
                { "d", 0, 40, "one 0 (25); stops a b c" }, { "d", 0, 29, "E2BIG; stops" },
                { "huge", 0, 100, "E2BIG; stops" },        { "d", 3, 0, "one 0 (25); stops a" },
                { "d", 3, 60, "one 0 (25); stops a b" },
        };

        m[2].m.active = true;
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                gpus_of(1, rows[i].budget);
                check_streq(place(m, ELEMENTSOF(m), rows[i].target, rows[i].max), rows[i].want);
        }
        /* no GPU known: the count alone */
        n_gpus = 0;
        check_streq(place(m, ELEMENTSOF(m), "huge", 3), "one (); stops a");
}

/* A model of 8 layers of 2 GiB and an output layer of 1 GiB, 1 GiB on each GPU it uses: 18 GiB
 * on one GPU. */
static const uint64_t slots18[] = { 2 * G, 2 * G, 2 * G, 2 * G, 2 * G, 2 * G, 2 * G, 2 * G, 1 * G };
static const PlacementLayers layers18 = { slots18, ELEMENTSOF(slots18), 1 * G };

/* placement_split_shares() as "GiB GiB ..." over the GPUs of mask. */
static const char *shares(const PlacementLayers *l, uint64_t gib, uint64_t mask, uint64_t w0,
                          uint64_t w1, uint64_t w2)
{
        static char out[128];
        const uint64_t weight[PLACEMENT_GPUS_MAX] = { w0, w1, w2 };
        uint64_t share[PLACEMENT_GPUS_MAX];
        char *o = out;

        placement_split_shares(l, gib * G, mask, weight, 3, share);
        *o = '\0';
        for (unsigned g = 0; g < 3; g++) {
                if (mask & (1ULL << g)) {
                        o += sprintf(o, "%s%g", o > out ? " " : "", (double) share[g] / G);
                }
        }
        return out;
}

TEST(split_shares_by_layer)
{
        static const struct {
                const PlacementLayers *layers;
                uint64_t gib, mask, w[3];
                const char *want;
        } rows[] = {
                /* 1:1 over 9 slots: slots 0-4 (k / 9 below 1/2) on the first, 5-8 (three
                 * layers and the output) on the second; 1 GiB on each besides */
                { &layers18, 18, 0x3, { 1, 1, 0 }, "11 8" },
                /* 3:1: slots 0-6 on the first */
                { &layers18, 18, 0x3, { 3, 1, 0 }, "15 4" },
                { &layers18, 18, 0x7, { 1, 1, 1 }, "7 7 6" },
                /* a GPU outside the split takes nothing, whatever its weight */
                { &layers18, 18, 0x5, { 1, 9, 1 }, "11 8" },
                /* a weight of 0: no layer, but its CUDA context */
                { &layers18, 18, 0x3, { 1, 0, 0 }, "18 1" },
                /* measured at 35 GiB: the same shape, twice the size */
                { &layers18, 35, 0x3, { 1, 1, 0 }, "21 15" },
                /* one GPU: the whole of it */
                { &layers18, 18, 0x2, { 1, 1, 0 }, "18" },
                /* no layers known: in proportion */
                { NULL, 18, 0x3, { 1, 1, 0 }, "9 9" },
                { NULL, 18, 0x3, { 2, 1, 0 }, "12 6" },
        };

        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                check_streq(shares(rows[i].layers, rows[i].gib, rows[i].mask, rows[i].w[0],
                                   rows[i].w[1], rows[i].w[2]),
                            rows[i].want);
        }
}

TEST(split_by_layer)
{
        /* 8 layers of 4 GiB and an output layer of 2 GiB, 1 GiB on each GPU: 35 GiB */
        static const uint64_t slots[] = { 4 * G, 4 * G, 4 * G, 4 * G, 4 * G,
                                          4 * G, 4 * G, 4 * G, 2 * G };
        static const PlacementLayers layers = { slots, ELEMENTSOF(slots), 1 * G };
        PlacedModel m[] = { off("t", 35, 0), on("a", 0, 8, 100) };
        size_t evict[4];
        Placement p;

        m[0].layers = &layers;
        gpus_of(2, 24);
        m[1].m.running = false;
        /* 1:1: five layers on GPU 0, three and the output on GPU 1 */
        check_streq(place(m, ELEMENTSOF(m), "t", 0), "split 0,1 (21 15); stops");
        check_inteq(placement_plan(m, ELEMENTSOF(m), 0, gpus, n_gpus, 0, evict, &p), 0);
        /* llama-server's --tensor-split, in MiB: the weights the shares came from */
        check_inteq(p.split[0], 24 * 1024);
        check_inteq(p.split[1], 24 * 1024);
        /* a on GPU 0: 16:24 by free memory, four layers (17 GiB) on GPU 0, which has 16: a
         * stops there, where in proportion (14 + 21) it would have stayed */
        m[1].m.running = true;
        check_streq(place(m, ELEMENTSOF(m), "t", 0), "split 0,1 (17 19); stops a");
        /* pinned, a cannot stop: refused */
        m[1].m.pinned = true;
        check_streq(place(m, ELEMENTSOF(m), "t", 0), "E2BIG; stops");
        /* without layers, the same 35 GiB in proportion: it fits beside a */
        m[0].layers = NULL;
        check_streq(place(m, ELEMENTSOF(m), "t", 0), "split 0,1 (14 21); stops");
        check_inteq(placement_plan(m, ELEMENTSOF(m), 0, gpus, n_gpus, 0, evict, &p), 0);
        check_inteq(p.split[0], 14 * 1024);
        check_inteq(p.split[1], 21 * 1024);
        /* on one GPU, layers or not, its whole estimate there */
        m[0].layers = &layers;
        gpus_of(2, 40);
        check_streq(place(m, ELEMENTSOF(m), "t", 0), "one 1 (35); stops");
}

TEST(describe)
{
        PlacedModel m[] = { on("a", 0, 4, 100), on("b", 0, 18, 300), on("c", 1, 22, 200),
                            off("t", 10, 0),    off("big", 40, 0),   off("huge", 90, 0) };
        size_t evict[8];
        Placement p;
        char *s;

        gpus_of(2, 24);
        check_inteq(placement_plan(m, ELEMENTSOF(m), 3, gpus, n_gpus, 0, evict, &p), 0);
        s = placement_describe(m, ELEMENTSOF(m), 3, gpus, n_gpus, evict, &p, 0);
        check_streq(s,
                    "t on GPU 1 (10.0 GiB, 14.0 GiB left): it fits on one GPU; stops c "
                    "(least recently used first, where room is needed)");
        free(s);
        m[2] = off("c", 22, 0);
        check_inteq(placement_plan(m, ELEMENTSOF(m), 3, gpus, n_gpus, 0, evict, &p), 0);
        s = placement_describe(m, ELEMENTSOF(m), 3, gpus, n_gpus, evict, &p, 0);
        check_streq(s,
                    "t on GPU 1 (10.0 GiB, 14.0 GiB left): it fits on one GPU, and leaves "
                    "the smallest hole there (best fit); stops nothing");
        free(s);
        check_inteq(placement_plan(m, ELEMENTSOF(m), 5, gpus, n_gpus, 0, evict, &p), -E2BIG);
        s = placement_describe(m, ELEMENTSOF(m), 5, gpus, n_gpus, evict, &p, -E2BIG);
        check_streq(s,
                    "huge needs 90.0 GiB: it fits nowhere, even with every model that may "
                    "stop stopped (budgets: GPU 0 24.0 GiB, GPU 1 24.0 GiB); nothing stops");
        free(s);
}

TEST_MAIN()
