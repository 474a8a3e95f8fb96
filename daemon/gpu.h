/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/types.h>

#include "macro.h"

/*
 * The GPUs' memory, from whichever vendor's library this machine has, loaded at run time: no
 * build-time dependency, and a machine without it still runs llmd (with explicit sizes only).
 * Today that is NVIDIA's NVML (libnvidia-ml.so.1, which comes with the driver). Another
 * vendor is one more row in gpu.c's table of sources.
 *
 * Each call asks the driver (an ioctl or a few): cheap, but not free; and gpu_source_open()
 * can take a while (NVML initialises the driver when no persistence daemon holds it open).
 * NVML reports processes by their pid in the first pid namespace: in a container of its own,
 * llmd's children's pids do not match, and gpu_process_memory() finds nothing (0).
 */

#define GPU_DEVICES_MAX 64 /* devices beyond are not used */

typedef struct GpuMemory {
        uint64_t total, used, free;
        unsigned devices;
} GpuMemory;

typedef struct GpuSource GpuSource;

/* Opens the first source that works; -ENODEV with *ret_why (when ret_why is not NULL: "no
 * NVIDIA driver (libnvidia-ml.so.1: ...)", "NVML: nvmlInit_v2: ...") when none does. */
int gpu_source_open(GpuSource **ret, char **ret_why);
GpuSource *gpu_source_free(GpuSource *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(GpuSource *, gpu_source_free);
const char *gpu_source_name(const GpuSource *g); /* "nvml" */
/* How many devices, numbered from 0 in NVML's order (by PCI bus, which is CUDA's numbering,
 * and so CUDA_VISIBLE_DEVICES's, when CUDA_DEVICE_ORDER=PCI_BUS_ID). */
unsigned gpu_devices(const GpuSource *g);
/* Summed over all devices. */
int gpu_memory(GpuSource *g, GpuMemory *ret);
/* One device's (ret->devices is 1); -EINVAL for a device that is not there. */
int gpu_device_memory(GpuSource *g, unsigned device, GpuMemory *ret);
/* GPU memory used by process pid on all devices, 0 if it has none; -errno on failure. */
int gpu_process_memory(GpuSource *g, pid_t pid, uint64_t *ret);
/* The same on one device. */
int gpu_device_process_memory(GpuSource *g, unsigned device, pid_t pid, uint64_t *ret);
