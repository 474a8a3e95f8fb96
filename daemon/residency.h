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

/*
 * Where a model goes on a machine with several GPUs, and what stops for it there: the same
 * decision as residency_plan(), per GPU. Each GPU has its own budget; a running model has its
 * bytes on the GPUs it runs on (on[]). A target the planner may place (want 0):
 *
 *   - fits on one GPU as things are: the GPU where it leaves the smallest hole (best fit, so
 *     the largest holes stay for what comes next);
 *   - fits on one GPU once models there stop: the GPU where the fewest, and the least recently
 *     used, stop; only models on that GPU stop, least recently used first, the active one last;
 *   - fits on no single GPU: split over the fewest GPUs that hold it, in proportion to their
 *     free memory (after what must stop on them);
 *   - none of these: -E2BIG, and nothing stops (unless it ran before: then it runs alone,
 *     over every GPU).
 *
 * A target with want set (its gpus = N,M or its profile's device, tensor-split, main-gpu or
 * CUDA_VISIBLE_DEVICES) goes there, split in proportion to those GPUs' budgets.
 *
 * Split over several GPUs, what each must hold is the target's layers there (its layers, see
 * PlacementLayers), else its bytes in proportion to the split.
 * One GPU (or none known) is residency_plan(), exactly.
 */
#define PLACEMENT_GPUS_MAX 16

typedef struct PlacementGpu {
        unsigned index; /* NVML's number, as CUDA_VISIBLE_DEVICES names it */
        uint64_t budget;
} PlacementGpu;

/*
 * How a model's bytes fall on the GPUs of a layer split, as llama.cpp assigns them: slot k of n
 * (its offloaded repeating layers in order, then its output layer) goes to the first GPU of the
 * split whose running total of the --tensor-split weights, over their sum, is above k / n; each
 * GPU of the split holds per_gpu besides. Scaled so that the slots and one per_gpu make the
 * model's bytes (an estimate gives the shape, a measurement the size).
 */
typedef struct PlacementLayers {
        const uint64_t *slot;
        unsigned n;
        uint64_t per_gpu;
} PlacementLayers;

typedef struct PlacedModel {
        ResidentModel m;
        const PlacementLayers *layers;   /* NULL: split in proportion to the weights */
        uint64_t want;                   /* not running: the GPUs it must go on (positions in the
                                            GPU array); 0: the planner chooses */
        uint64_t on[PLACEMENT_GPUS_MAX]; /* running: its bytes on each GPU */
} PlacedModel;

typedef enum PlacementKind {
        PLACEMENT_RUNNING, /* it runs already: nothing to do */
        PLACEMENT_ONE,     /* on one GPU, where it fits best */
        PLACEMENT_SPLIT,   /* over several, none holding it alone */
        PLACEMENT_FIXED,   /* where its configuration says */
        PLACEMENT_ALONE,   /* over every GPU, alone: over the budgets, but it ran before */
        _PLACEMENT_KIND_MAX,
} PlacementKind;

typedef struct Placement {
        PlacementKind kind;
        uint64_t gpus;                      /* positions in the GPU array; 0 with no GPU known */
        uint64_t share[PLACEMENT_GPUS_MAX]; /* its bytes on each */
        uint64_t split[PLACEMENT_GPUS_MAX]; /* split over several: --tensor-split, MiB */
        size_t n_evict;                     /* models to stop, in ret_evict, in this order */
} Placement;

/* A split of bytes over the GPUs of mask (n_gpus known) by weight: by layers (NULL: in
 * proportion to weight, the last GPU taking what rounding left), into share. */
void placement_split_shares(const PlacementLayers *layers, uint64_t bytes, uint64_t mask,
                            const uint64_t *weight, unsigned n_gpus, uint64_t *share);

int placement_plan(const PlacedModel *models, size_t n, size_t target, const PlacementGpu *gpus,
                   unsigned n_gpus, unsigned max_resident, size_t *ret_evict, Placement *ret);

/* What placement_plan() decided, in words, for llmctl plan and switch: "on GPU 1 (10.0 GiB,
 * best fit: 4.0 GiB left there); stops gemma (least recently used on GPU 1)". r is what
 * placement_plan() returned. */
char *placement_describe(const PlacedModel *models, size_t n, size_t target,
                         const PlacementGpu *gpus, unsigned n_gpus, const size_t *evict,
                         const Placement *p, int r);
