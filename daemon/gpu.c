/* SPDX-License-Identifier: MIT */
#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>

#include "gpu.h"

#define GPU_PROCESSES_MAX 65536 /* per device: a driver that claims more is not believed */

typedef struct GpuVendor {
        const char *name;
        /* On failure, sets *ret_why (allocated) unless the failure is -ENOMEM. */
        int (*open)(GpuSource *g, char **ret_why);
        void (*close)(GpuSource *g);
        unsigned (*devices)(const GpuSource *g);
        int (*memory)(GpuSource *g, unsigned device, GpuMemory *ret);
        int (*process_memory)(GpuSource *g, unsigned device, pid_t pid, uint64_t *ret);
} GpuVendor;

struct GpuSource {
        const GpuVendor *vendor;
        void *state;
};

static int gpu_why(char **ret_why, const char *format, ...) _printf_(2, 3);

static int gpu_why(char **ret_why, const char *format, ...)
{
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(ret_why, format, ap);
        va_end(ap);
        if (r < 0) {
                *ret_why = NULL;
                return -ENOMEM;
        }
        return -ENODEV;
}

/*
 * NVIDIA: NVML, with its types declared here (nvml.h's, as of API version 13) so that nothing
 * of NVIDIA's is needed to build. The process list comes in two layouts: the plain call's (v1:
 * pid, usedGpuMemory) and that of _v2 and _v3 (nvmlProcessInfo_t: two instance ids more).
 */
typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NO_PERMISSION 4
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_ERROR_MEMORY 20
#define NVML_VALUE_NOT_AVAILABLE ULLONG_MAX /* (unsigned long long) -1 */

typedef struct nvmlMemory_st {
        unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct nvmlProcessInfo_v1_st {
        unsigned int pid;
        unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

typedef struct nvmlProcessInfo_v2_st {
        unsigned int pid;
        unsigned long long usedGpuMemory;
        unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_v2_t;

_Static_assert(offsetof(nvmlProcessInfo_v1_t, usedGpuMemory) ==
                       offsetof(nvmlProcessInfo_v2_t, usedGpuMemory),
               "the two layouts share their first fields");

typedef struct Nvml {
        void *dl;
        nvmlReturn_t (*shutdown)(void);
        const char *(*error_string)(nvmlReturn_t);
        nvmlReturn_t (*get_memory)(nvmlDevice_t, nvmlMemory_t *);
        nvmlReturn_t (*get_processes)(nvmlDevice_t, unsigned *, void *);
        size_t process_info_size;
        unsigned n_devices;
        nvmlDevice_t devices[GPU_DEVICES_MAX];
        void *processes; /* room for processes_max entries, kept between calls */
        unsigned processes_max;
} Nvml;

static int nvml_errno(nvmlReturn_t e)
{
        switch (e) {
        case NVML_ERROR_NO_PERMISSION:
                return -EACCES;
        case NVML_ERROR_NOT_SUPPORTED:
                return -EOPNOTSUPP;
        case NVML_ERROR_GPU_IS_LOST:
                return -ENODEV;
        case NVML_ERROR_MEMORY:
                return -ENOMEM;
        case NVML_ERROR_NOT_FOUND:
                return -ENOENT;
        case NVML_ERROR_INVALID_ARGUMENT:
                return -EINVAL;
        default:
                return -EIO;
        }
}

static const char *nvml_strerror(Nvml *n, nvmlReturn_t e, char buf[static 32])
{
        const char *s = n->error_string ? n->error_string(e) : NULL;

        if (s) {
                return s;
        }
        snprintf(buf, 32, "error %d", e);
        return buf;
}

/* The first of names that the library has (newest first). */
static void *nvml_symbol(Nvml *n, const char *const *names)
{
        for (; *names; names++) {
                void *f = dlsym(n->dl, *names);
                if (f) {
                        return f;
                }
        }
        return NULL;
}

static void nvml_close(GpuSource *g)
{
        Nvml *n = g->state;

        if (!n) {
                return;
        }
        if (n->shutdown) {
                (void) n->shutdown();
        }
        if (n->dl) {
                dlclose(n->dl);
        }
        free(n->processes);
        free(n);
        g->state = NULL;
}

static int nvml_open(GpuSource *g, char **ret_why)
{
        static const char *const init_names[] = { "nvmlInit_v2", "nvmlInit", NULL };
        static const char *const count_names[] = { "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount",
                                                   NULL };
        static const char *const handle_names[] = { "nvmlDeviceGetHandleByIndex_v2",
                                                    "nvmlDeviceGetHandleByIndex", NULL };
        static const char *const memory_names[] = { "nvmlDeviceGetMemoryInfo", NULL };
        static const char *const shutdown_names[] = { "nvmlShutdown", NULL };
        nvmlReturn_t (*init)(void);
        nvmlReturn_t (*get_count)(unsigned *);
        nvmlReturn_t (*get_handle)(unsigned, nvmlDevice_t *);
        unsigned count;
        char buf[32];
        Nvml *n;
        nvmlReturn_t e;

        n = calloc(1, sizeof(Nvml));
        if (!n) {
                return -ENOMEM;
        }
        g->state = n;
        n->dl = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!n->dl) {
                return gpu_why(ret_why, "no NVIDIA driver (%s)", dlerror());
        }
        init = nvml_symbol(n, init_names);
        get_count = nvml_symbol(n, count_names);
        get_handle = nvml_symbol(n, handle_names);
        n->get_memory = nvml_symbol(n, memory_names);
        n->error_string = dlsym(n->dl, "nvmlErrorString");
        /* the newest process call we know, and its layout */
        n->get_processes = dlsym(n->dl, "nvmlDeviceGetComputeRunningProcesses_v3");
        if (!n->get_processes) {
                n->get_processes = dlsym(n->dl, "nvmlDeviceGetComputeRunningProcesses_v2");
        }
        n->process_info_size = sizeof(nvmlProcessInfo_v2_t);
        if (!n->get_processes) {
                n->get_processes = dlsym(n->dl, "nvmlDeviceGetComputeRunningProcesses");
                n->process_info_size = sizeof(nvmlProcessInfo_v1_t);
        }
        if (!init || !get_count || !get_handle || !n->get_memory || !n->get_processes) {
                return gpu_why(ret_why, "NVML: libnvidia-ml.so.1 lacks %s",
                               !init            ? init_names[0]
                               : !get_count     ? count_names[0]
                               : !get_handle    ? handle_names[0]
                               : !n->get_memory ? memory_names[0]
                                                : "nvmlDeviceGetComputeRunningProcesses");
        }

        e = init();
        if (e != NVML_SUCCESS) {
                return gpu_why(ret_why, "NVML: %s: %s", init_names[0], nvml_strerror(n, e, buf));
        }
        /* initialised: from here on, closing shuts it down again */
        n->shutdown = nvml_symbol(n, shutdown_names);

        e = get_count(&count);
        if (e != NVML_SUCCESS) {
                return gpu_why(ret_why, "NVML: %s: %s", count_names[0], nvml_strerror(n, e, buf));
        }
        if (count == 0) {
                return gpu_why(ret_why, "NVML: no NVIDIA GPU");
        }
        n->n_devices = MIN(count, (unsigned) GPU_DEVICES_MAX);
        for (unsigned i = 0; i < n->n_devices; i++) {
                e = get_handle(i, &n->devices[i]);
                if (e != NVML_SUCCESS) {
                        return gpu_why(ret_why, "NVML: GPU %u: %s: %s", i, handle_names[0],
                                       nvml_strerror(n, e, buf));
                }
        }
        return 0;
}

static unsigned nvml_devices(const GpuSource *g)
{
        const Nvml *n = g->state;

        return n->n_devices;
}

static int nvml_memory(GpuSource *g, unsigned device, GpuMemory *ret)
{
        Nvml *n = g->state;
        nvmlMemory_t d;
        nvmlReturn_t e = n->get_memory(n->devices[device], &d);

        if (e != NVML_SUCCESS) {
                return nvml_errno(e);
        }
        *ret = (GpuMemory) { .total = d.total, .used = d.used, .free = d.free, .devices = 1 };
        return 0;
}

/* The compute processes of one device into n->processes; returns how many. */
static int nvml_processes(Nvml *n, nvmlDevice_t d)
{
        /* the list can grow between two calls: a few tries, each with the size it asked for */
        for (int tries = 0; tries < 4; tries++) {
                unsigned count = n->processes_max;
                nvmlReturn_t e = n->get_processes(d, &count, n->processes);
                void *p;

                if (e == NVML_SUCCESS) {
                        return (int) MIN(count, n->processes_max);
                }
                if (e != NVML_ERROR_INSUFFICIENT_SIZE) {
                        return nvml_errno(e);
                }
                if (count > GPU_PROCESSES_MAX || count < n->processes_max) {
                        return -EIO;
                }
                count += 16;
                p = reallocarray(n->processes, count, n->process_info_size);
                if (!p) {
                        return -ENOMEM;
                }
                n->processes = p;
                n->processes_max = count;
        }
        return -EAGAIN;
}

static int nvml_process_memory(GpuSource *g, unsigned device, pid_t pid, uint64_t *ret)
{
        Nvml *n = g->state;
        uint64_t sum = 0;
        int count = nvml_processes(n, n->devices[device]);

        if (count < 0) {
                return count;
        }
        for (int j = 0; j < count; j++) {
                const uint8_t *entry =
                        (const uint8_t *) n->processes + (size_t) j * n->process_info_size;
                nvmlProcessInfo_v1_t p;

                memcpy(&p, entry, sizeof(p)); /* v2 begins with v1's fields */
                if (p.pid != (unsigned) pid) {
                        continue;
                }
                if (p.usedGpuMemory == NVML_VALUE_NOT_AVAILABLE) {
                        return -ENODATA;
                }
                sum += p.usedGpuMemory;
        }
        *ret = sum;
        return 0;
}

static const GpuVendor nvml_vendor = {
        .name = "nvml",
        .open = nvml_open,
        .close = nvml_close,
        .devices = nvml_devices,
        .memory = nvml_memory,
        .process_memory = nvml_process_memory,
};

/* Tried in this order; the first that opens is used. */
static const GpuVendor *const gpu_vendors[] = {
        &nvml_vendor,
};

int gpu_source_open(GpuSource **ret, char **ret_why)
{
        _cleanup_free_ char *whys = NULL;

        for (size_t i = 0; i < ELEMENTSOF(gpu_vendors); i++) {
                _cleanup_free_ char *why = NULL;
                GpuSource *g;
                int r;

                g = calloc(1, sizeof(GpuSource));
                if (!g) {
                        return -ENOMEM;
                }
                g->vendor = gpu_vendors[i];
                r = g->vendor->open(g, &why);
                if (r >= 0) {
                        *ret = g;
                        return 0;
                }
                gpu_source_free(g);
                if (r == -ENOMEM || !why) {
                        return -ENOMEM;
                }
                if (whys) {
                        char *s = NULL;
                        if (asprintf(&s, "%s; %s", whys, why) < 0) {
                                return -ENOMEM;
                        }
                        free(whys);
                        whys = s;
                } else {
                        whys = TAKE_PTR(why);
                }
        }
        if (ret_why) {
                *ret_why = TAKE_PTR(whys);
        }
        return -ENODEV;
}

GpuSource *gpu_source_free(GpuSource *g)
{
        if (!g) {
                return NULL;
        }
        g->vendor->close(g);
        free(g);
        return NULL;
}

const char *gpu_source_name(const GpuSource *g)
{
        return g->vendor->name;
}

unsigned gpu_devices(const GpuSource *g)
{
        return g->vendor->devices(g);
}

int gpu_device_memory(GpuSource *g, unsigned device, GpuMemory *ret)
{
        if (device >= gpu_devices(g)) {
                return -EINVAL;
        }
        return g->vendor->memory(g, device, ret);
}

int gpu_memory(GpuSource *g, GpuMemory *ret)
{
        GpuMemory m = { .devices = gpu_devices(g) };

        for (unsigned i = 0; i < m.devices; i++) {
                GpuMemory d;
                int r = g->vendor->memory(g, i, &d);

                if (r < 0) {
                        return r;
                }
                m.total += d.total;
                m.used += d.used;
                m.free += d.free;
        }
        *ret = m;
        return 0;
}

int gpu_device_process_memory(GpuSource *g, unsigned device, pid_t pid, uint64_t *ret)
{
        if (pid <= 0 || device >= gpu_devices(g)) {
                return -EINVAL;
        }
        return g->vendor->process_memory(g, device, pid, ret);
}

int gpu_process_memory(GpuSource *g, pid_t pid, uint64_t *ret)
{
        uint64_t sum = 0;

        if (pid <= 0) {
                return -EINVAL;
        }
        for (unsigned i = 0; i < gpu_devices(g); i++) {
                uint64_t d;
                int r = g->vendor->process_memory(g, i, pid, &d);

                if (r < 0) {
                        return r;
                }
                sum += d;
        }
        *ret = sum;
        return 0;
}
