/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "residency.h"

/* Whether a stops before b: least recently used first, the active model last. */
static bool evict_before(const ResidentModel *a, const ResidentModel *b)
{
        if (a->active != b->active) {
                return !a->active;
        }
        return a->last_used_usec < b->last_used_usec;
}

/* Whether what runs, less what is evicted, plus target (n: none), is within the limits. */
static bool fits(const ResidentModel *models, size_t n, size_t target, const bool *evicted,
                 const ResidencyLimits *l)
{
        unsigned generation = target < n; /* the target */
        uint64_t used = target < n ? models[target].bytes : 0;

        for (size_t i = 0; i < n; i++) {
                if (i == target || !models[i].running || evicted[i]) {
                        continue;
                }
                used += models[i].bytes;
                generation += !models[i].pinned;
        }
        return (l->max_resident == 0 || generation <= l->max_resident) &&
               (l->budget == 0 || used <= l->budget);
}

/* Stops models, least recently used first and the active one last (unless keep_active), until
 * what runs plus target fits; -E2BIG when it cannot. */
static int residency_evict(const ResidentModel *models, size_t n, size_t target,
                           const ResidencyLimits *l, bool keep_active, size_t *ret_evict,
                           size_t *ret_n)
{
        _cleanup_free_ bool *evicted = calloc(MAX(n, (size_t) 1), sizeof(bool));
        size_t k = 0;

        if (!evicted) {
                return -ENOMEM;
        }
        *ret_n = 0;
        while (!fits(models, n, target, evicted, l)) {
                size_t best = n;

                for (size_t i = 0; i < n; i++) {
                        if (i == target || !models[i].running || models[i].pinned || evicted[i] ||
                            (keep_active && models[i].active)) {
                                continue;
                        }
                        if (best == n || evict_before(&models[i], &models[best])) {
                                best = i;
                        }
                }
                if (best == n) {
                        *ret_n = k;
                        return -E2BIG;
                }
                evicted[best] = true;
                ret_evict[k++] = best;
        }
        *ret_n = k;
        return 0;
}

int residency_plan(const ResidentModel *models, size_t n, size_t target, const ResidencyLimits *l,
                   size_t *ret_evict, size_t *ret_n)
{
        int r;

        *ret_n = 0;
        if (models[target].running) {
                return 0;
        }
        r = residency_evict(models, n, target, l, false, ret_evict, ret_n);
        if (r == -E2BIG && models[target].measured) {
                /* It ran before, so it can run alone: everything but the pinned models makes
                 * room, whatever the budget says (a budget is a guess; that run was not). */
                *ret_n = 0;
                for (size_t i = 0; i < n; i++) {
                        if (i != target && models[i].running && !models[i].pinned) {
                                ret_evict[(*ret_n)++] = i;
                        }
                }
                return 0;
        }
        if (r == -E2BIG) {
                *ret_n = 0;
        }
        return r;
}

void residency_trim(const ResidentModel *models, size_t n, const ResidencyLimits *l,
                    size_t *ret_evict, size_t *ret_n)
{
        /* As far as it goes: the active and pinned models stay even over the limits. */
        (void) residency_evict(models, n, n, l, true, ret_evict, ret_n);
}

/* ---- several GPUs ---- */

typedef struct Plan {
        const PlacedModel *models;
        size_t n, target;
        const PlacementGpu *gpus;
        unsigned n_gpus;
        unsigned max_resident;
        bool *evicted;
        size_t *evict;
        size_t n_evict;
        int64_t used[PLACEMENT_GPUS_MAX]; /* by the models running and not evicted */
} Plan;

static bool plan_stoppable(const Plan *p, size_t i)
{
        const ResidentModel *m = &p->models[i].m;

        return i != p->target && m->running && !m->pinned && !p->evicted[i];
}

/* Back to nothing evicted. */
static void plan_reset(Plan *p)
{
        memset(p->used, 0, sizeof(p->used));
        memset(p->evicted, 0, p->n * sizeof(bool));
        p->n_evict = 0;
        for (size_t i = 0; i < p->n; i++) {
                if (i != p->target && p->models[i].m.running) {
                        for (unsigned g = 0; g < p->n_gpus; g++) {
                                p->used[g] += (int64_t) p->models[i].on[g];
                        }
                }
        }
}

/* Stops the first of the models that may stop (on GPU g; g == n_gpus: on any); false when none
 * may. */
static bool plan_evict_one(Plan *p, unsigned g)
{
        size_t best = p->n;

        for (size_t i = 0; i < p->n; i++) {
                if (plan_stoppable(p, i) && (g == p->n_gpus || p->models[i].on[g] > 0) &&
                    (best == p->n || evict_before(&p->models[i].m, &p->models[best].m))) {
                        best = i;
                }
        }
        if (best == p->n) {
                return false;
        }
        p->evicted[best] = true;
        p->evict[p->n_evict++] = best;
        for (unsigned h = 0; h < p->n_gpus; h++) {
                p->used[h] -= (int64_t) p->models[best].on[h];
        }
        return true;
}

/* From nothing evicted: stops models until share fits on each GPU of mask (only models on the
 * GPU short of room) and the count fits max_resident; false when it cannot. */
static bool plan_try(Plan *p, uint64_t mask, const uint64_t *share)
{
        plan_reset(p);
        for (;;) {
                unsigned short_of = p->n_gpus, generation = 1;

                for (unsigned g = 0; g < p->n_gpus && short_of == p->n_gpus; g++) {
                        if ((mask & (UINT64_C(1) << g)) &&
                            p->used[g] + (int64_t) share[g] > (int64_t) p->gpus[g].budget) {
                                short_of = g;
                        }
                }
                if (short_of < p->n_gpus) {
                        if (!plan_evict_one(p, short_of)) {
                                return false;
                        }
                        continue;
                }
                for (size_t i = 0; i < p->n; i++) {
                        generation += i != p->target && p->models[i].m.running &&
                                      !p->models[i].m.pinned && !p->evicted[i];
                }
                if (p->max_resident == 0 || generation <= p->max_resident) {
                        return true;
                }
                if (!plan_evict_one(p, p->n_gpus)) {
                        return false;
                }
        }
}

void placement_split_shares(const PlacementLayers *layers, uint64_t bytes, uint64_t mask,
                            const uint64_t *weight, unsigned n_gpus, uint64_t *share)
{
        unsigned __int128 sum = 0, run = 0, slots = 0;
        uint64_t left = bytes, on[PLACEMENT_GPUS_MAX] = {}, base;
        unsigned last = 0, g = 0;

        memset(share, 0, PLACEMENT_GPUS_MAX * sizeof(uint64_t));
        n_gpus = MIN(n_gpus, (unsigned) PLACEMENT_GPUS_MAX);
        for (unsigned h = 0; h < n_gpus; h++) {
                if (mask & (UINT64_C(1) << h)) {
                        sum += weight[h];
                        last = h;
                }
        }
        if (!layers || layers->n == 0 || sum == 0 || __builtin_popcountll(mask) < 2) {
                for (unsigned h = 0; h < n_gpus; h++) {
                        if (!(mask & (UINT64_C(1) << h))) {
                                continue;
                        }
                        share[h] =
                                h == last || sum == 0
                                        ? left
                                        : (uint64_t) (bytes * (unsigned __int128) weight[h] / sum);
                        left -= share[h];
                }
                return;
        }
        /* llama.cpp: slot k on the first GPU whose running total over sum is above k / n */
        for (unsigned k = 0; k < layers->n; k++) {
                while (g < n_gpus &&
                       (!(mask & (UINT64_C(1) << g)) ||
                        (run + weight[g]) * layers->n <= (unsigned __int128) k * sum)) {
                        run += mask & (UINT64_C(1) << g) ? weight[g] : 0;
                        g++;
                }
                g = MIN(g, last);
                on[g] += MIN(layers->slot[k], UINT64_MAX - on[g]);
                slots += layers->slot[k];
        }
        base = bytes > layers->per_gpu ? bytes - layers->per_gpu : 0;
        for (unsigned h = 0; h < n_gpus; h++) {
                if (mask & (UINT64_C(1) << h)) {
                        uint64_t b =
                                slots ? (uint64_t) (base * (unsigned __int128) on[h] / slots) : 0;

                        share[h] = layers->per_gpu + MIN(b, UINT64_MAX - layers->per_gpu);
                }
        }
}

/* The target over the GPUs of mask by weight: share, and split as llama-server gets it (MiB,
 * at least 1): by layers, the weights, the very numbers the shares came from; in proportion,
 * the shares. */
static void plan_shares(const Plan *p, uint64_t mask, const uint64_t *weight, uint64_t *share,
                        uint64_t *split)
{
        const PlacedModel *t = &p->models[p->target];

        memset(split, 0, PLACEMENT_GPUS_MAX * sizeof(uint64_t));
        for (unsigned g = 0; g < p->n_gpus; g++) {
                split[g] = mask & (UINT64_C(1) << g) ? MAX(weight[g] >> 20, (uint64_t) 1) : 0;
        }
        placement_split_shares(t->layers, t->m.bytes, mask, t->layers ? split : weight, p->n_gpus,
                               share);
        for (unsigned g = 0; g < p->n_gpus && !t->layers; g++) {
                split[g] = mask & (UINT64_C(1) << g) ? MAX(share[g] >> 20, (uint64_t) 1) : 0;
        }
}

/* The k GPUs of largest weight, as a mask, and whether their weights hold bytes. */
static bool plan_largest(const Plan *p, unsigned k, const uint64_t *weight, uint64_t bytes,
                         uint64_t *ret_mask)
{
        uint64_t mask = 0, sum = 0;

        for (unsigned j = 0; j < k; j++) {
                unsigned best = p->n_gpus;

                for (unsigned g = 0; g < p->n_gpus; g++) {
                        if (!(mask & (UINT64_C(1) << g)) &&
                            (best == p->n_gpus || weight[g] > weight[best])) {
                                best = g;
                        }
                }
                mask |= UINT64_C(1) << best;
                sum += weight[best];
        }
        *ret_mask = mask;
        return sum >= bytes;
}

/* Keeps what plan_try() decided in ret and ret_evict. */
static void plan_take(const Plan *p, PlacementKind kind, uint64_t mask, const uint64_t *share,
                      const uint64_t *split, size_t *ret_evict, Placement *ret)
{
        ret->kind = kind;
        ret->gpus = mask;
        memcpy(ret->share, share, sizeof(ret->share));
        if (split) {
                memcpy(ret->split, split, sizeof(ret->split));
        } else {
                memset(ret->split, 0, sizeof(ret->split));
        }
        ret->n_evict = p->n_evict;
        memcpy(ret_evict, p->evict, p->n_evict * sizeof(size_t));
}

/* What placing on one GPU costs, compared in this order: whether the active model stops, how
 * many models stop, how recently the most recent of them was used, the hole left. */
typedef struct OneCost {
        bool active;
        size_t k;
        uint64_t newest;
        int64_t hole;
} OneCost;

static bool one_cost_less(const OneCost *a, const OneCost *b)
{
        if (a->active != b->active) {
                return !a->active;
        }
        if (a->k != b->k) {
                return a->k < b->k;
        }
        if (a->newest != b->newest) {
                return a->newest < b->newest;
        }
        return a->hole < b->hole;
}

/* On one GPU: the one where the active model does not stop, the fewest models stop, the least
 * recently used of them, then the smallest hole is left. */
static bool plan_one(Plan *p, size_t *ret_evict, Placement *ret)
{
        uint64_t bytes = p->models[p->target].m.bytes, share[PLACEMENT_GPUS_MAX] = {};
        OneCost best = {};
        bool found = false;

        for (unsigned g = 0; g < p->n_gpus; g++) {
                OneCost c = {};

                memset(share, 0, sizeof(share));
                share[g] = bytes;
                if (!plan_try(p, UINT64_C(1) << g, share)) {
                        continue;
                }
                c.k = p->n_evict;
                for (size_t j = 0; j < p->n_evict; j++) {
                        c.newest = MAX(c.newest, p->models[p->evict[j]].m.last_used_usec);
                        c.active = c.active || p->models[p->evict[j]].m.active;
                }
                c.hole = (int64_t) p->gpus[g].budget - p->used[g] - (int64_t) bytes;
                if (!found || one_cost_less(&c, &best)) {
                        best = c;
                        found = true;
                        plan_take(p, PLACEMENT_ONE, UINT64_C(1) << g, share, NULL, ret_evict, ret);
                }
        }
        return found;
}

/* Over the fewest GPUs that hold it: first in the free memory as it is, then in what the
 * GPUs would have with every model that may stop stopped. */
static bool plan_split(Plan *p, size_t *ret_evict, Placement *ret)
{
        uint64_t bytes = p->models[p->target].m.bytes, share[PLACEMENT_GPUS_MAX],
                 split[PLACEMENT_GPUS_MAX];
        uint64_t free[PLACEMENT_GPUS_MAX] = {}, room[PLACEMENT_GPUS_MAX] = {}, mask;

        plan_reset(p);
        for (unsigned g = 0; g < p->n_gpus; g++) {
                free[g] = (uint64_t) MAX((int64_t) p->gpus[g].budget - p->used[g], (int64_t) 0);
                room[g] = p->gpus[g].budget;
                for (size_t i = 0; i < p->n; i++) {
                        if (i != p->target && p->models[i].m.running && p->models[i].m.pinned) {
                                room[g] -= MIN(room[g], p->models[i].on[g]);
                        }
                }
        }
        for (unsigned k = 2; k <= p->n_gpus; k++) {
                if (plan_largest(p, k, free, bytes, &mask)) {
                        plan_shares(p, mask, free, share, split);
                        if (plan_try(p, mask, share)) {
                                plan_take(p, PLACEMENT_SPLIT, mask, share, split, ret_evict, ret);
                                return true;
                        }
                }
                if (plan_largest(p, k, room, bytes, &mask)) {
                        plan_shares(p, mask, room, share, split);
                        if (plan_try(p, mask, share)) {
                                plan_take(p, PLACEMENT_SPLIT, mask, share, split, ret_evict, ret);
                                return true;
                        }
                }
        }
        return false;
}

int placement_plan(const PlacedModel *models, size_t n, size_t target, const PlacementGpu *gpus,
                   unsigned n_gpus, unsigned max_resident, size_t *ret_evict, Placement *ret)
{
        _cleanup_free_ bool *evicted = NULL;
        _cleanup_free_ size_t *evict = NULL;
        const PlacedModel *t = &models[target];
        uint64_t budget[PLACEMENT_GPUS_MAX] = {}, share[PLACEMENT_GPUS_MAX] = {},
                 split[PLACEMENT_GPUS_MAX] = {}, all, want;
        Plan p = { .models = models,
                   .n = n,
                   .target = target,
                   .gpus = gpus,
                   .n_gpus = MIN(n_gpus, (unsigned) PLACEMENT_GPUS_MAX),
                   .max_resident = max_resident };

        *ret = (Placement) { .kind = PLACEMENT_RUNNING };
        if (t->m.running) {
                for (unsigned g = 0; g < p.n_gpus; g++) {
                        ret->gpus |= t->on[g] > 0 ? UINT64_C(1) << g : 0;
                        ret->share[g] = t->on[g];
                }
                return 0;
        }
        all = p.n_gpus == 0 ? 0 : UINT64_MAX >> (64 - p.n_gpus);
        want = t->want & all;
        if (p.n_gpus <= 1) {
                /* one budget: the planner of one GPU, unchanged */
                _cleanup_free_ ResidentModel *rm =
                        calloc(MAX(n, (size_t) 1), sizeof(ResidentModel));
                ResidencyLimits l = { .max_resident = max_resident,
                                      .budget = p.n_gpus ? gpus[0].budget : 0 };
                int r;

                if (!rm) {
                        return -ENOMEM;
                }
                for (size_t i = 0; i < n; i++) {
                        rm[i] = models[i].m;
                }
                r = residency_plan(rm, n, target, &l, ret_evict, &ret->n_evict);
                ret->kind = want ? PLACEMENT_FIXED : PLACEMENT_ONE;
                ret->gpus = all;
                ret->share[0] = p.n_gpus ? t->m.bytes : 0;
                return r;
        }

        p.evicted = calloc(n, sizeof(bool));
        p.evict = calloc(n, sizeof(size_t));
        if (!p.evicted || !p.evict) {
                free(p.evicted);
                free(p.evict);
                return -ENOMEM;
        }
        evicted = p.evicted;
        evict = p.evict;
        for (unsigned g = 0; g < p.n_gpus; g++) {
                budget[g] = gpus[g].budget;
        }
        if (want) {
                plan_shares(&p, want, budget, share, split);
                if (plan_try(&p, want, share)) {
                        plan_take(&p, PLACEMENT_FIXED, want, share, split, ret_evict, ret);
                        return 0;
                }
        } else if (plan_one(&p, ret_evict, ret) || plan_split(&p, ret_evict, ret)) {
                return 0;
        }
        if (!t->m.measured) {
                *ret = (Placement) { .kind = want ? PLACEMENT_FIXED : PLACEMENT_ALONE };
                return -E2BIG;
        }
        /* It ran before, so it can run alone (as residency_plan() says) */
        plan_reset(&p);
        while (plan_evict_one(&p, p.n_gpus)) {
        }
        plan_shares(&p, want ? want : all, budget, share, split);
        plan_take(&p, want ? PLACEMENT_FIXED : PLACEMENT_ALONE, want ? want : all, share, split,
                  ret_evict, ret);
        return 0;
}

#define GIB(x) ((double) (x) / (1024.0 * 1024 * 1024))

/* "GPU 1" or "GPUs 0,2" */
static void describe_gpus(FILE *f, const PlacementGpu *gpus, unsigned n_gpus, uint64_t mask)
{
        bool first = true;

        fputs(__builtin_popcountll(mask) > 1 ? "GPUs " : "GPU ", f);
        for (unsigned g = 0; g < n_gpus; g++) {
                if (mask & (UINT64_C(1) << g)) {
                        fprintf(f, "%s%u", first ? "" : ",", gpus[g].index);
                        first = false;
                }
        }
}

char *placement_describe(const PlacedModel *models, size_t n, size_t target,
                         const PlacementGpu *gpus, unsigned n_gpus, const size_t *evict,
                         const Placement *p, int r)
{
        static const char *const why[_PLACEMENT_KIND_MAX] = {
                [PLACEMENT_RUNNING] = "it runs already",
                [PLACEMENT_ONE] = "it fits on one GPU",
                [PLACEMENT_SPLIT] =
                        "it fits on no single GPU: split over the fewest that hold it, in proportion to their free memory",
                [PLACEMENT_FIXED] = "where its configuration puts it",
                [PLACEMENT_ALONE] =
                        "over the budgets, but it ran alone before: every other model stops",
        };
        const PlacedModel *t = &models[target];
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f) {
                return NULL;
        }
        n_gpus = MIN(n_gpus, (unsigned) PLACEMENT_GPUS_MAX);
        if (r == -E2BIG) {
                fprintf(f,
                        "%s needs %.1f GiB: it fits nowhere, even with every model that may stop stopped (budgets:",
                        t->m.name, GIB(t->m.bytes));
                for (unsigned g = 0; g < n_gpus; g++) {
                        fprintf(f, "%s GPU %u %.1f GiB", g ? "," : "", gpus[g].index,
                                GIB(gpus[g].budget));
                }
                fputs(n_gpus ? "); nothing stops" : " unknown); nothing stops", f);
        } else if (n_gpus == 0) {
                fprintf(f, "%s: no GPU known", t->m.name);
        } else {
                int64_t left[PLACEMENT_GPUS_MAX];

                for (unsigned g = 0; g < n_gpus; g++) {
                        left[g] = (int64_t) gpus[g].budget - (int64_t) p->share[g];
                        for (size_t i = 0; i < n; i++) {
                                bool stops = false;

                                for (size_t j = 0; j < p->n_evict; j++) {
                                        stops = stops || evict[j] == i;
                                }
                                if (i != target && models[i].m.running && !stops) {
                                        left[g] -= (int64_t) models[i].on[g];
                                }
                        }
                }
                fprintf(f, "%s on ", t->m.name);
                describe_gpus(f, gpus, n_gpus, p->gpus);
                fputs(" (", f);
                for (unsigned g = 0, k = 0; g < n_gpus; g++) {
                        if (p->gpus & (UINT64_C(1) << g)) {
                                fprintf(f, "%s%.1f GiB", k++ ? "; " : "", GIB(p->share[g]));
                                if (gpus[g].budget > 0) {
                                        fprintf(f, ", %.1f GiB left", GIB(left[g]));
                                }
                        }
                }
                fprintf(f, "): %s", why[p->kind]);
                if (p->kind == PLACEMENT_ONE && p->n_evict == 0) {
                        fputs(", and leaves the smallest hole there (best fit)", f);
                }
                if (p->kind != PLACEMENT_RUNNING && p->kind != PLACEMENT_ALONE) {
                        fputs(p->n_evict ? "; stops " : "; stops nothing", f);
                        for (size_t j = 0; j < p->n_evict; j++) {
                                fprintf(f, "%s%s", j ? ", " : "", models[evict[j]].m.name);
                        }
                        if (p->n_evict) {
                                fputs(" (least recently used first, where room is needed)", f);
                        }
                } else if (p->kind == PLACEMENT_ALONE) {
                        fputs("; stops ", f);
                        for (size_t j = 0; j < p->n_evict; j++) {
                                fprintf(f, "%s%s", j ? ", " : "", models[evict[j]].m.name);
                        }
                        fputs(p->n_evict ? "" : "nothing", f);
                }
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}
