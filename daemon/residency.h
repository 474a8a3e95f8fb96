/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Which models may stay loaded together, as one pure function: given what runs, what each model
 * needs on the GPU and the limits, which models must stop so that a target can load. The
 * supervisor carries the plan out; this decides, and is table-tested.
 *
 * Generation models count against max_resident; every running model (pinned ones too) counts
 * against the GPU memory budget. Models are stopped least recently used first, the active model
 * last, pinned models never. A target that cannot fit even with every other stoppable model
 * stopped gets -E2BIG and nothing is stopped, unless it ran before (measured): a model that
 * ran alone may always run alone, and then every other generation model stops.
 */

typedef struct ResidentModel {
        const char *name;
        bool running; /* loading or ready: its memory is taken, or soon will be */
        bool pinned;
        bool active;
        uint64_t last_used_usec;
        uint64_t bytes; /* GPU memory it needs (measured, configured or estimated); 0: unknown */
        bool measured;  /* bytes was seen while it ran: it may always run alone */
} ResidentModel;

typedef struct ResidencyLimits {
        unsigned max_resident; /* generation models loaded at once; 0: no limit */
        uint64_t budget;       /* GPU memory for all models together, bytes; 0: unknown */
} ResidencyLimits;

/* Fills ret_evict (room for n entries) with the indices of the models to stop, in the order to
 * stop them, and *ret_n; 0 when target fits then (already running: nothing to stop), -E2BIG when
 * it cannot fit at all. */
int residency_plan(const ResidentModel *models, size_t n, size_t target, const ResidencyLimits *l,
                   size_t *ret_evict, size_t *ret_n);

/* After the limits were lowered (a reload): the models to stop, least recently used first, so
 * that what runs fits again as far as it can without the active and pinned models. */
void residency_trim(const ResidentModel *models, size_t n, const ResidencyLimits *l,
                    size_t *ret_evict, size_t *ret_n);
