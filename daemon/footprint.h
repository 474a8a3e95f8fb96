/* SPDX-License-Identifier: MIT */
#pragma once

#include "child.h"
#include "config.h"
#include "gpu.h"
#include "residency.h"

/*
 * What each model takes on the GPU, and how that is known: configured (gpu-memory in its
 * profile), measured (what the GPU source saw its process use, kept in the state directory
 * across restarts), or estimated (from the GGUF header and the flags llama-server gets). Also
 * what the GPUs have, and the budget for llmd's models. The planner (residency.h) decides with
 * these numbers; this file only finds them.
 */

typedef struct Footprint Footprint;

/* Opens the GPU source (none is no error: footprint_source() is then NULL) and reads what
 * was measured before from state_dir. */
int footprint_new(const char *state_dir, Footprint **ret);
Footprint *footprint_free(Footprint *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(Footprint *, footprint_free);

/* "nvml", or NULL and footprint_why() says why there is none. */
const char *footprint_source(const Footprint *f);
const char *footprint_why(const Footprint *f);
/* How many GPUs the source has (0 without one), and what one has. */
unsigned footprint_gpu_devices(const Footprint *f);
int footprint_gpu_device(Footprint *f, unsigned device, GpuMemory *ret);
/* The budget for llmd's models: configured (gpu_memory, bytes), else total less a margin;
 * 0: unknown. */
uint64_t footprint_budget(uint64_t configured, uint64_t total);

/* Measures a ready child, once each time it became ready (again later when the source showed
 * nothing yet); a new figure is saved. */
void footprint_measure(Footprint *f, const Child *c);
uint64_t footprint_estimate(Footprint *f, const ModelConfig *m);
uint64_t footprint_measured(Footprint *f, const ModelConfig *m);
/* What c's process uses on each GPU, as measured since it last became ready (on a machine with
 * several GPUs only); false when nothing was. */
bool footprint_measured_on(Footprint *f, const Child *c, uint64_t ret_on[GPU_DEVICES_MAX]);
/* The estimate by layer, for a split over several GPUs (residency.h); NULL where the GGUF gives
 * none or m's gpu-memory is configured (then split in proportion). Valid until f is freed. */
const PlacementLayers *footprint_layers(Footprint *f, const ModelConfig *m);
/* What m needs: configured, else measured, else estimated; *ret_how (where ret_how is not
 * NULL) says which (NULL and 0: unknown). */
uint64_t footprint_need(Footprint *f, const ModelConfig *m, const char **ret_how);
