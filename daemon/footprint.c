/* SPDX-License-Identifier: MIT */
#include <limits.h>

#include "array.h"
#include "footprint.h"
#include "gguf.h"
#include "log.h"
#include "parse-util.h"
#include "state-file.h"

#define FOOTPRINT_MARGIN_MIN (512ULL << 20) /* kept free of an automatic budget, at least */

/* What a model was seen to use on the GPU, and its estimate, by name and file. */
typedef struct Record {
        char *name;
        char *path;
        uint64_t measured;
        uint64_t measured_ready_usec; /* the child's ready_usec when measured: once a run */
        uint64_t measured_on[GPU_DEVICES_MAX]; /* that run's, on each GPU (several only) */
        uint64_t estimated;
        PlacementLayers *layers; /* the estimate by layer, for a split; NULL: none */
        bool estimated_done;
} Record;

struct Footprint {
        char *state_dir;
        GpuSource *gpu; /* NULL: none (why says why) */
        char *why;
        Record *records;
        size_t n_records;
};

static Record *footprint_record(Footprint *f, const char *name, const char *path, bool create)
{
        Record *a;

        for (size_t i = 0; i < f->n_records; i++) {
                if (streq(f->records[i].name, name) && streq(f->records[i].path, path)) {
                        return &f->records[i];
                }
        }
        if (!create || !(a = ARRAY_GROW(f->records, f->n_records))) {
                return NULL;
        }
        *a = (Record) { .name = strdup(name), .path = strdup(path) };
        if (!a->name || !a->path) {
                free(a->name);
                free(a->path);
                return NULL;
        }
        f->n_records++;
        return a;
}

int footprint_new(const char *state_dir, Footprint **ret)
{
        _cleanup_(footprint_freep) Footprint *f = calloc(1, sizeof(Footprint));
        StateGpuEntry *e = NULL;
        size_t n = 0;
        int r;

        if (!f || !(f->state_dir = strdup(state_dir))) {
                return -ENOMEM;
        }
        if (state_file_load_gpu(state_dir, &e, &n) >= 0) {
                for (size_t i = 0; i < n; i++) {
                        Record *g = footprint_record(f, e[i].name, e[i].path, true);

                        if (g) {
                                g->measured = e[i].bytes;
                        }
                }
                state_gpu_entries_free(e, n);
        }
        r = gpu_source_open(&f->gpu, &f->why);
        if (r == -ENOMEM) {
                return r;
        }
        if (r < 0) {
                log_info("GPU memory: %s; only max-resident and configured sizes apply",
                         f->why ? f->why : "no source");
        }
        *ret = TAKE_PTR(f);
        return 0;
}

Footprint *footprint_free(Footprint *f)
{
        if (!f) {
                return NULL;
        }
        for (size_t i = 0; i < f->n_records; i++) {
                free(f->records[i].name);
                free(f->records[i].path);
                free(f->records[i].layers);
        }
        free(f->records);
        gpu_source_free(f->gpu);
        free(f->why);
        free(f->state_dir);
        free(f);
        return NULL;
}

const char *footprint_source(const Footprint *f)
{
        return f->gpu ? gpu_source_name(f->gpu) : NULL;
}

const char *footprint_why(const Footprint *f)
{
        return f->why;
}

unsigned footprint_gpu_devices(const Footprint *f)
{
        return f->gpu ? gpu_devices(f->gpu) : 0;
}

int footprint_gpu_device(Footprint *f, unsigned device, GpuMemory *ret)
{
        return f->gpu ? gpu_device_memory(f->gpu, device, ret) : -ENODEV;
}

uint64_t footprint_budget(uint64_t configured, uint64_t total)
{
        uint64_t margin = MAX(total / 20, FOOTPRINT_MARGIN_MIN);

        if (configured > 0) {
                return configured;
        }
        return total > margin ? total - margin : 0;
}

static void footprint_save(Footprint *f)
{
        _cleanup_free_ StateGpuEntry *e =
                calloc(MAX(f->n_records, (size_t) 1), sizeof(StateGpuEntry));

        if (!e) {
                return;
        }
        for (size_t i = 0; i < f->n_records; i++) {
                e[i] = (StateGpuEntry) { f->records[i].name, f->records[i].measured,
                                         f->records[i].path };
        }
        (void) state_file_save_gpu(f->state_dir, e, f->n_records);
}

void footprint_measure(Footprint *f, const Child *c)
{
        const ModelConfig *m = child_config(c);
        Record *g;
        uint64_t bytes = 0;
        int r;

        if (!f->gpu || child_state(c) != CHILD_READY || child_pid(c) <= 0 ||
            !(g = footprint_record(f, m->name, m->model_path, true)) ||
            g->measured_ready_usec == child_ready_usec(c)) {
                return;
        }
        r = gpu_process_memory(f->gpu, child_pid(c), &bytes);
        if (r < 0 || bytes == 0) {
                return;
        }
        memset(g->measured_on, 0, sizeof(g->measured_on));
        for (unsigned d = 0; gpu_devices(f->gpu) > 1 && d < gpu_devices(f->gpu); d++) {
                if (gpu_device_process_memory(f->gpu, d, child_pid(c), &g->measured_on[d]) < 0) {
                        g->measured_on[d] = 0;
                }
        }
        g->measured_ready_usec = child_ready_usec(c);
        log_model(LOG_INFO, m->name, NULL, "%s: uses %.2f GiB of GPU memory (estimated %.2f GiB)",
                  m->name, (double) bytes / (1ULL << 30),
                  (double) footprint_estimate(f, m) / (1ULL << 30));
        if (g->measured != bytes) {
                g->measured = bytes;
                footprint_save(f);
        }
}

/* From the file's header and the flags llama-server gets: the estimate, and by layer. */
static uint64_t footprint_estimate_file(const ModelConfig *m, PlacementLayers **ret_layers)
{
        GgufEstimateParams p = { .n_gpu_layers = -1, .cache_k_bits = 16, .cache_v_bits = 16 };
        _cleanup_free_ GgufInfo *info = calloc(1, sizeof(GgufInfo));
        _cleanup_free_ uint64_t *slot = calloc(GGUF_LAYERS_MAX + 1, sizeof(uint64_t));
        PlacementLayers *l;
        uint64_t bytes;
        unsigned n;

        *ret_layers = NULL;
        if (!info || !slot) {
                return 0;
        }
        for (char **a = m->args; a && *a; a++) {
                const char *v = a[1];
                unsigned *bits = streq(*a, "--cache-type-k")   ? &p.cache_k_bits
                                 : streq(*a, "--cache-type-v") ? &p.cache_v_bits
                                                               : NULL;

                if (!v) {
                        continue;
                }
                if (streq(*a, "--ctx-size") && parse_unsigned(v, UINT_MAX, &n) >= 0) {
                        p.ctx_size = n;
                } else if (streq(*a, "--n-gpu-layers")) {
                        /* "auto", "all", -1 and anything from 999 up: every layer. */
                        p.n_gpu_layers =
                                parse_unsigned(v, UINT_MAX, &n) >= 0 && n < 999 ? (int64_t) n : -1;
                } else if (bits) {
                        (void) gguf_cache_type_bits(v, bits);
                }
        }
        if (gguf_read(m->model_path, info) < 0) {
                return 0;
        }
        bytes = gguf_estimate_gpu_bytes(info, &p);
        if (bytes > 0 && gguf_estimate_slots(info, &p, slot, &n) >= 0 && n > 0 &&
            (l = malloc(sizeof(PlacementLayers) + n * sizeof(uint64_t)))) {
                uint64_t *copy = (uint64_t *) (l + 1);

                memcpy(copy, slot, n * sizeof(uint64_t));
                *l = (PlacementLayers) { .slot = copy, .n = n, .per_gpu = GGUF_MARGIN_FIXED };
                *ret_layers = l;
        }
        gguf_info_done(info);
        return bytes;
}

static Record *footprint_estimated(Footprint *f, const ModelConfig *m)
{
        Record *g = footprint_record(f, m->name, m->model_path, true);

        if (g && !g->estimated_done) {
                g->estimated = footprint_estimate_file(m, &g->layers);
                g->estimated_done = true;
        }
        return g;
}

uint64_t footprint_estimate(Footprint *f, const ModelConfig *m)
{
        Record *g = footprint_estimated(f, m);

        return g ? g->estimated : 0;
}

const PlacementLayers *footprint_layers(Footprint *f, const ModelConfig *m)
{
        Record *g = footprint_estimated(f, m);

        return g && !m->gpu_memory ? g->layers : NULL;
}

uint64_t footprint_measured(Footprint *f, const ModelConfig *m)
{
        Record *g = footprint_record(f, m->name, m->model_path, false);

        return g ? g->measured : 0;
}

bool footprint_measured_on(Footprint *f, const Child *c, uint64_t ret_on[GPU_DEVICES_MAX])
{
        const ModelConfig *m = child_config(c);
        Record *g = footprint_record(f, m->name, m->model_path, false);
        bool any = false;

        memset(ret_on, 0, GPU_DEVICES_MAX * sizeof(uint64_t));
        if (!g || child_state(c) != CHILD_READY || g->measured_ready_usec != child_ready_usec(c)) {
                return false;
        }
        for (unsigned d = 0; d < GPU_DEVICES_MAX; d++) {
                ret_on[d] = g->measured_on[d];
                any = any || ret_on[d] > 0;
        }
        return any;
}

uint64_t footprint_need(Footprint *f, const ModelConfig *m, const char **ret_how)
{
        const char *how = NULL;
        uint64_t b;

        if (m->gpu_memory) {
                how = "configured";
                b = m->gpu_memory;
        } else if ((b = footprint_measured(f, m)) > 0) {
                how = "measured";
        } else if ((b = footprint_estimate(f, m)) > 0) {
                how = "estimated";
        }
        if (ret_how) {
                *ret_how = how;
        }
        return b;
}
