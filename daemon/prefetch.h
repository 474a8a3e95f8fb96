/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "child.h"
#include "macro.h"

/*
 * Warm page cache: the files of models that are not loaded, read ahead into the page cache so
 * that the next switch to one of them costs a warm load, not a disk read. A helper process does
 * the reading at idle I/O and CPU priority, in order (most wanted first), and never more than
 * the memory available now less a margin (or the limit given, whichever is less). It is killed
 * when a load begins, so it never competes with one; prefetch_start() again afterwards.
 */

typedef struct Prefetch Prefetch;

int prefetch_new(sd_event *e, Prefetch **ret);
Prefetch *prefetch_free(Prefetch *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Prefetch *, prefetch_free);

/* Reads paths (most wanted first), at most limit bytes (0: as available memory allows),
 * replacing a round in progress. */
int prefetch_start(Prefetch *p, char *const *paths, uint64_t limit);
/* Reads the model files of children (models that are not loaded), the most recently used first;
 * never used ones in their order. */
int prefetch_start_children(Prefetch *p, Child *const *children, size_t n, uint64_t limit);
/* Stops a round in progress (a load begins). */
void prefetch_stop(Prefetch *p);

/* What may be read now: MemAvailable less max(1 GiB, 10% of MemTotal), and at most limit
 * (when not 0); 0 when /proc/meminfo cannot be read. Exported for the tests. */
uint64_t prefetch_budget(const char *meminfo, uint64_t limit);
