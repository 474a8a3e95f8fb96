/* SPDX-License-Identifier: MIT */
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
