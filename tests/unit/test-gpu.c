/* SPDX-License-Identifier: MIT */
/*
 * gpu.c against the fake libnvidia-ml.so.1 of tests/nvml-fake, found through LD_LIBRARY_PATH
 * as the real one would be found:
 *
 *   test-gpu fake     LD_LIBRARY_PATH holds the fake (today's NVML)
 *   test-gpu none     no libnvidia-ml.so.1 at all (skipped where the machine has one)
 */
#include <dirent.h>
#include <dlfcn.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "gpu.h"
#include "tests.h"

#define MiB (UINT64_C(1) << 20)

static char dir[] = "/tmp/test-gpu-XXXXXX";
static bool fake; /* "test-gpu fake"; false for "test-gpu none" */

static void put(const char *name, uint64_t value)
{
        char path[128];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        check(f);
        fprintf(f, "%llu\n", (unsigned long long) value);
        check(fclose(f) == 0);
}

static void put_pid(pid_t pid, uint64_t value)
{
        char name[32];

        snprintf(name, sizeof(name), "%d", (int) pid);
        put(name, value);
}

static void remove_dir(void)
{
        DIR *d = opendir(dir);
        struct dirent *e;

        check(d);
        while ((e = readdir(d))) {
                if (e->d_name[0] != '.') {
                        check(unlinkat(dirfd(d), e->d_name, 0) == 0);
                }
        }
        closedir(d);
        check(rmdir(dir) == 0);
}

static pid_t spawn_idle(void)
{
        pid_t pid = fork();

        check(pid >= 0);
        if (pid == 0) {
                pause();
                _exit(0);
        }
        return pid;
}

static void stop(pid_t pid)
{
        check(kill(pid, SIGKILL) == 0);
        check(waitpid(pid, NULL, 0) == pid);
}

static uint64_t process_memory(GpuSource *g, pid_t pid)
{
        uint64_t bytes = 12345;

        check_inteq(gpu_process_memory(g, pid, &bytes), 0);
        return bytes;
}

/* Without LLMD_FAKE_NVML the fake behaves as a library whose driver is not loaded. */
TEST(driver_not_loaded)
{
        _cleanup_free_ char *why = NULL;
        GpuSource *g = NULL;

        SKIP_UNLESS(fake, "needs the fake NVML (test-gpu fake)");
        unsetenv("LLMD_FAKE_NVML");
        check_inteq(gpu_source_open(&g, &why), -ENODEV);
        check(!g);
        check_streq(why, "NVML: nvmlInit_v2: error 9");
}

TEST(memory_and_processes)
{
        _cleanup_(gpu_source_freep) GpuSource *g = NULL;
        _cleanup_free_ char *why = NULL;
        pid_t a, b, gone, zombie, many[40];
        GpuMemory m;

        SKIP_UNLESS(fake, "needs the fake NVML (test-gpu fake)");
        a = spawn_idle();
        b = spawn_idle();
        gone = spawn_idle();
        zombie = spawn_idle();
        stop(gone); /* reaped: its pid names no process */
        check(kill(zombie, SIGKILL) == 0);
        /* a zombie's memory is already freed: wait until it is one */
        for (;;) {
                char path[64], buf[256], *p;
                FILE *f;
                size_t n;

                snprintf(path, sizeof(path), "/proc/%d/stat", (int) zombie);
                f = fopen(path, "re");
                check(f);
                n = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                buf[n] = '\0';
                p = strrchr(buf, ')');
                if (p && p[2] == 'Z') {
                        break;
                }
                usleep(1000);
        }

        put("total", 80 * 1024 * MiB);
        put_pid(a, 1000 * MiB);
        put_pid(b, 24 * MiB);
        put_pid(gone, 7 * MiB);
        put_pid(zombie, 9 * MiB);
        setenv("LLMD_FAKE_NVML", dir, 1);

        check_inteq(gpu_source_open(&g, &why), 0);
        check(!why);
        check_streq(gpu_source_name(g), "nvml");

        check_inteq(gpu_memory(g, &m), 0);
        check_inteq(m.devices, 1);
        check_inteq(m.total, 80 * 1024 * MiB);
        check_inteq(m.used, 1024 * MiB);
        check_inteq(m.free, (80 * 1024 - 1024) * MiB);

        check_inteq(process_memory(g, a), 1000 * MiB);
        check_inteq(process_memory(g, b), 24 * MiB);
        check_inteq(process_memory(g, gone), 0);
        check_inteq(process_memory(g, zombie), 0);
        check_inteq(process_memory(g, getpid()), 0);
        check_inteq(gpu_process_memory(g, 0, &(uint64_t) { 0 }), -EINVAL);

        /* more processes than the last call had room for: the list grows */
        for (size_t i = 0; i < ELEMENTSOF(many); i++) {
                many[i] = spawn_idle();
                put_pid(many[i], (i + 1) * MiB);
        }
        check_inteq(process_memory(g, many[39]), 40 * MiB);
        check_inteq(process_memory(g, many[0]), 1 * MiB);
        check_inteq(process_memory(g, b), 24 * MiB);
        check_inteq(gpu_memory(g, &m), 0);
        check_inteq(m.used, (1024 + 40 * 41 / 2) * MiB);

        /* a process that exits is no longer counted */
        stop(a);
        check_inteq(process_memory(g, a), 0);
        check_inteq(gpu_memory(g, &m), 0);
        check_inteq(m.used, (24 + 40 * 41 / 2) * MiB);

        /* several devices: their memory adds up */
        put("devices", 2);
        g = gpu_source_free(g);
        check_inteq(gpu_source_open(&g, NULL), 0);
        check_inteq(gpu_memory(g, &m), 0);
        check_inteq(m.devices, 2);
        check_inteq(m.total, 2 * 80 * 1024 * MiB);
        check_inteq(m.free, 2 * 80 * 1024 * MiB - m.used);
        check_inteq(process_memory(g, b), 24 * MiB);

        stop(b);
        stop(zombie);
        for (size_t i = 0; i < ELEMENTSOF(many); i++) {
                stop(many[i]);
        }
}

/* Each device its own total and its processes' use; a process on several devices. */
TEST(several_devices)
{
        _cleanup_(gpu_source_freep) GpuSource *g = NULL;
        char path[128];
        uint64_t bytes;
        GpuMemory m;
        pid_t a, b;
        FILE *f;

        SKIP_UNLESS(fake, "needs the fake NVML (test-gpu fake)");
        a = spawn_idle();
        b = spawn_idle();
        put("devices", 4);
        put("total", 24 * 1024 * MiB);
        put("total.2", 48 * 1024 * MiB);
        snprintf(path, sizeof(path), "%s/%d", dir, (int) a);
        f = fopen(path, "we");
        check(f);
        fprintf(f, "1 %llu\n2 %llu\n", 3000 * (unsigned long long) MiB,
                5000 * (unsigned long long) MiB);
        check(fclose(f) == 0);
        put_pid(b, 700 * MiB); /* the plain form: device 0 */
        setenv("LLMD_FAKE_NVML", dir, 1);

        check_inteq(gpu_source_open(&g, NULL), 0);
        check_inteq(gpu_devices(g), 4);
        check_inteq(gpu_device_memory(g, 0, &m), 0);
        check_inteq(m.devices, 1);
        check_inteq(m.total, 24 * 1024 * MiB);
        check_inteq(m.used, 700 * MiB);
        check_inteq(gpu_device_memory(g, 1, &m), 0);
        check_inteq(m.used, 3000 * MiB);
        check_inteq(m.free, (24 * 1024 - 3000) * MiB);
        check_inteq(gpu_device_memory(g, 2, &m), 0);
        check_inteq(m.total, 48 * 1024 * MiB);
        check_inteq(m.used, 5000 * MiB);
        check_inteq(gpu_device_memory(g, 3, &m), 0);
        check_inteq(m.used, 0);
        check_inteq(gpu_device_memory(g, 4, &m), -EINVAL);
        check_inteq(gpu_memory(g, &m), 0);
        check_inteq(m.devices, 4);
        check_inteq(m.total, (3 * 24 + 48) * 1024 * MiB);
        check_inteq(m.used, 8700 * MiB);

        check_inteq(gpu_device_process_memory(g, 2, a, &bytes), 0);
        check_inteq(bytes, 5000 * MiB);
        check_inteq(gpu_device_process_memory(g, 0, a, &bytes), 0);
        check_inteq(bytes, 0);
        check_inteq(gpu_device_process_memory(g, 0, b, &bytes), 0);
        check_inteq(bytes, 700 * MiB);
        check_inteq(gpu_device_process_memory(g, 4, b, &bytes), -EINVAL);
        check_inteq(process_memory(g, a), 8000 * MiB);

        stop(a);
        stop(b);
        check(unlink(path) == 0);
        snprintf(path, sizeof(path), "%s/total.2", dir);
        check(unlink(path) == 0);
        put("devices", 1);
}

TEST(no_library)
{
        _cleanup_free_ char *why = NULL;
        GpuSource *g = NULL;

        SKIP_UNLESS(!fake, "needs no NVML at all (test-gpu none)");
        check_inteq(gpu_source_open(&g, &why), -ENODEV);
        check(!g);
        /* dlerror()'s words after the library's name are the C library's own */
        check(why && startswith(why, "no NVIDIA driver (libnvidia-ml.so.1: "));
        /* the reason is optional */
        check_inteq(gpu_source_open(&g, NULL), -ENODEV);
}

int main(int argc, char *argv[])
{
        int r;

        if (argc != 2) {
                fprintf(stderr, "usage: test-gpu fake|none\n");
                return 2;
        }
        fake = streq(argv[1], "fake");
        if (!fake) {
                void *dl = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);

                check(streq(argv[1], "none"));
                if (dl) {
                        dlclose(dl);
                        printf("1..0 # SKIP this machine has a libnvidia-ml.so.1\n");
                        return 77;
                }
                return tests_run();
        }
        check(mkdtemp(dir));
        r = tests_run();
        remove_dir();
        return r;
}
