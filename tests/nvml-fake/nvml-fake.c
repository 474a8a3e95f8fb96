/* SPDX-License-Identifier: MIT */
/*
 * A fake libnvidia-ml.so.1 for the tests: the NVML calls llmd makes, answered from the
 * directory $LLMD_FAKE_NVML, where
 *
 *   total     bytes of memory of each device (required: without it, no driver)
 *   total.N   bytes of memory of device N, where it differs from total
 *   devices   how many devices (default 1)
 *   PID       one file per process using the GPU: its bytes on device 0, or lines "N BYTES",
 *             its bytes on device N (llama-sim writes its own with LLAMA_SIM_GPU_MB, over the
 *             devices of its CUDA_VISIBLE_DEVICES); a process that is gone or a zombie is not
 *             counted, as the driver frees a process's memory when it exits
 *
 * and a device's used memory is the sum of its processes'. Built twice: as today's library
 * (nvmlDeviceGetComputeRunningProcesses_v3, four-field entries) and, with FAKE_NVML_V1, as an
 * old one that has only the plain call and its two-field entries.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_UNKNOWN 999

#define FAKE_DEVICES_MAX 16

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;

typedef struct {
        unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
        unsigned int pid;
        unsigned long long usedGpuMemory;
#ifndef FAKE_NVML_V1
        unsigned int gpuInstanceId, computeInstanceId;
#endif
} fakeProcessInfo_t;

#define EXPORT __attribute__((visibility("default")))

/* The calls, as nvml.h declares them (with our own entry type). */
EXPORT nvmlReturn_t nvmlInit_v2(void);
EXPORT nvmlReturn_t nvmlShutdown(void);
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count);
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *device);
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory);
#ifdef FAKE_NVML_V1
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned *count,
                                                         fakeProcessInfo_t *infos);
#else
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned *count,
                                                            fakeProcessInfo_t *infos);
#endif

static char fake_dir[PATH_MAX];
static bool fake_initialised;
static char fake_devices[FAKE_DEVICES_MAX]; /* their addresses are the handles */

/* A small file, NUL-terminated; false when it cannot be read. */
static bool fake_read(const char *path, char *buf, size_t size)
{
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f) {
                return false;
        }
        n = fread(buf, 1, size - 1, f);
        fclose(f);
        buf[n] = '\0';
        return true;
}

/* A file of fake_dir holding one decimal number; false when absent or malformed. */
static bool fake_read_number(const char *name, unsigned long long *ret)
{
        char path[PATH_MAX + 64], buf[64], *end;

        snprintf(path, sizeof(path), "%s/%s", fake_dir, name);
        if (!fake_read(path, buf, sizeof(buf))) {
                return false;
        }
        errno = 0;
        *ret = strtoull(buf, &end, 10);
        return errno == 0 && end != buf && (*end == '\0' || *end == '\n');
}

static unsigned fake_device_count(void)
{
        unsigned long long n;

        if (!fake_read_number("devices", &n) || n < 1) {
                return 1;
        }
        return n > FAKE_DEVICES_MAX ? FAKE_DEVICES_MAX : (unsigned) n;
}

static int fake_device_index(nvmlDevice_t d)
{
        for (unsigned i = 0; i < fake_device_count(); i++) {
                if ((void *) d == (void *) &fake_devices[i]) {
                        return (int) i;
                }
        }
        return -1;
}

/* Running and not a zombie: what the driver would still list. */
static bool fake_pid_alive(const char *pid)
{
        char path[64], buf[512], *p;

        snprintf(path, sizeof(path), "/proc/%s/stat", pid);
        if (!fake_read(path, buf, sizeof(buf))) {
                return false;
        }
        p = strrchr(buf, ')'); /* after the command name, which may hold anything */
        return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* A process file's bytes on device i: "BYTES" (device 0) or lines "N BYTES"; false when it has
 * none there or is malformed. */
static bool fake_process_bytes(const char *name, unsigned i, unsigned long long *ret)
{
        char path[PATH_MAX + 64], buf[1024], *p, *end;
        unsigned long long device, bytes;
        bool found = false;

        snprintf(path, sizeof(path), "%s/%s", fake_dir, name);
        if (!fake_read(path, buf, sizeof(buf))) {
                return false;
        }
        *ret = 0;
        for (p = buf; *p; p = end) {
                errno = 0;
                device = strtoull(p, &end, 10);
                if (errno != 0 || end == p) {
                        return false;
                }
                if (*end == '\n' || *end == '\0') {
                        if (p != buf) {
                                return false;
                        }
                        bytes = device; /* the plain form: device 0 */
                        device = 0;
                } else {
                        p = end;
                        bytes = strtoull(p, &end, 10);
                        if (errno != 0 || end == p || (*end != '\n' && *end != '\0')) {
                                return false;
                        }
                }
                if (device == i) {
                        *ret += bytes;
                        found = true;
                }
                end += *end == '\n';
        }
        return found;
}

/* Calls each(pid, bytes) for every live process of the directory with memory on device i;
 * returns how many. */
static unsigned fake_processes(unsigned i,
                               void (*each)(unsigned pid, unsigned long long bytes, void *u),
                               void *userdata)
{
        struct dirent *e;
        unsigned count = 0;
        DIR *d = opendir(fake_dir);

        if (!d) {
                return 0;
        }
        while ((e = readdir(d))) {
                unsigned long long bytes;
                bool digits = e->d_name[0] != '\0';

                for (const char *c = e->d_name; *c; c++) {
                        digits = digits && isdigit((unsigned char) *c);
                }
                if (!digits || !fake_pid_alive(e->d_name) ||
                    !fake_process_bytes(e->d_name, i, &bytes)) {
                        continue;
                }
                if (each) {
                        each((unsigned) strtoul(e->d_name, NULL, 10), bytes, userdata);
                }
                count++;
        }
        closedir(d);
        return count;
}

EXPORT nvmlReturn_t nvmlInit_v2(void)
{
        const char *dir = getenv("LLMD_FAKE_NVML");
        unsigned long long total;

        if (!dir || !*dir || strlen(dir) >= sizeof(fake_dir)) {
                return NVML_ERROR_DRIVER_NOT_LOADED;
        }
        strcpy(fake_dir, dir);
        if (!fake_read_number("total", &total)) {
                return NVML_ERROR_DRIVER_NOT_LOADED;
        }
        fake_initialised = true;
        return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlShutdown(void)
{
        if (!fake_initialised) {
                return NVML_ERROR_UNINITIALIZED;
        }
        fake_initialised = false;
        return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count)
{
        if (!fake_initialised) {
                return NVML_ERROR_UNINITIALIZED;
        }
        if (!count) {
                return NVML_ERROR_INVALID_ARGUMENT;
        }
        *count = fake_device_count();
        return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *device)
{
        if (!fake_initialised) {
                return NVML_ERROR_UNINITIALIZED;
        }
        if (!device || index >= fake_device_count()) {
                return NVML_ERROR_INVALID_ARGUMENT;
        }
        *device = (nvmlDevice_t) (void *) &fake_devices[index];
        return NVML_SUCCESS;
}

static void fake_add(unsigned pid, unsigned long long bytes, void *userdata)
{
        *(unsigned long long *) userdata += bytes;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
        unsigned long long total, used = 0;
        int i = fake_device_index(device);
        char name[32];

        if (!fake_initialised) {
                return NVML_ERROR_UNINITIALIZED;
        }
        if (i < 0 || !memory) {
                return NVML_ERROR_INVALID_ARGUMENT;
        }
        snprintf(name, sizeof(name), "total.%d", i);
        if (!fake_read_number(name, &total) && !fake_read_number("total", &total)) {
                return NVML_ERROR_UNKNOWN;
        }
        fake_processes((unsigned) i, fake_add, &used);
        memory->total = total;
        memory->used = used;
        memory->free = used < total ? total - used : 0;
        return NVML_SUCCESS;
}

struct fake_fill {
        fakeProcessInfo_t *infos;
        unsigned n, max;
};

static void fake_fill(unsigned pid, unsigned long long bytes, void *userdata)
{
        struct fake_fill *f = userdata;

        if (f->n < f->max) {
                f->infos[f->n] = (fakeProcessInfo_t) { .pid = pid, .usedGpuMemory = bytes };
#ifndef FAKE_NVML_V1
                f->infos[f->n].gpuInstanceId = 0xFFFFFFFF;
                f->infos[f->n].computeInstanceId = 0xFFFFFFFF;
#endif
        }
        f->n++;
}

static nvmlReturn_t fake_get_processes(nvmlDevice_t device, unsigned *count,
                                       fakeProcessInfo_t *infos)
{
        int i = fake_device_index(device);
        struct fake_fill f = { .infos = infos };

        if (!fake_initialised) {
                return NVML_ERROR_UNINITIALIZED;
        }
        if (i < 0 || !count || (*count > 0 && !infos)) {
                return NVML_ERROR_INVALID_ARGUMENT;
        }
        f.max = *count;
        fake_processes((unsigned) i, fake_fill, &f);
        /* NVML's contract: the count needed, and no entries, when the array is too small */
        *count = f.n;
        return f.n > f.max ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
}

#ifdef FAKE_NVML_V1
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned *count,
                                                         fakeProcessInfo_t *infos)
#else
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned *count,
                                                            fakeProcessInfo_t *infos)
#endif
{
        return fake_get_processes(device, count, infos);
}
