/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>

#include "array.h"
#include "fileio.h"
#include "log.h"
#include "parse-util.h"
#include "state-file.h"
#include "strv.h"

#define STATE_FILE_ACTIVE "active-model"
#define STATE_FILE_GPU "gpu-memory"

void state_file_save_active(const char *state_dir, const char *active, bool loaded)
{
        _cleanup_free_ char *path = NULL, *content = NULL;
        int r;

        if (asprintf(&path, "%s/%s", state_dir, STATE_FILE_ACTIVE) < 0 ||
            asprintf(&content,
                     "# llmd: the active generation model, as chosen with llmctl\n"
                     "model=%s\nloaded=%s\n",
                     active, loaded ? "yes" : "no") < 0) {
                log_error("Out of memory");
                return;
        }
        r = write_file_atomic(path, content, 0644);
        if (r < 0) {
                log_error_errno(r, "Failed to save the active model in %s: %m", path);
        }
}

void state_file_load_active(const char *state_dir, const Config *config, char **ret_active,
                            bool *ret_loaded)
{
        _cleanup_free_ char *path = NULL, *content = NULL, *active = NULL;
        _cleanup_strv_free_ char **lines = NULL;
        bool loaded = true;
        int r;

        if (asprintf(&path, "%s/%s", state_dir, STATE_FILE_ACTIVE) < 0) {
                return;
        }
        r = read_file(path, O_NOFOLLOW, 4096, &content);
        if (r == -ENOENT) {
                return;
        }
        if (r < 0) {
                log_warning("Cannot read %s, using the default model: %s", path, file_strerror(r));
                return;
        }
        if (strv_split(content, "\n", &lines) < 0) {
                return;
        }
        STRV_FOREACH(l, lines) {
                if (strneq(*l, "model=", 6)) {
                        const ModelConfig *m = config_find_model(config, *l + 6);

                        if (!m || m->pin) {
                                log_warning(
                                        "%s names '%s', which is no generation model in %s now; "
                                        "using the default",
                                        path, *l + 6, config->path);
                                return;
                        }
                        free(active);
                        active = strdup(m->name);
                        if (!active) {
                                return;
                        }
                } else if (streq(*l, "loaded=no")) {
                        loaded = false;
                }
        }
        if (active) {
                free(*ret_active);
                *ret_active = TAKE_PTR(active);
        }
        *ret_loaded = loaded;
}

int state_file_save_gpu(const char *state_dir, const StateGpuEntry *entries, size_t n)
{
        _cleanup_free_ char *path = NULL,
                            *content = strdup("# llmd: GPU memory each model was seen to use\n");
        int r;

        if (!content || asprintf(&path, "%s/%s", state_dir, STATE_FILE_GPU) < 0) {
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                char *c;

                if (entries[i].bytes == 0) {
                        continue;
                }
                if (asprintf(&c, "%s%s %" PRIu64 " %s\n", content, entries[i].name,
                             entries[i].bytes, entries[i].path) < 0) {
                        return -ENOMEM;
                }
                free(content);
                content = c;
        }
        r = write_file_atomic(path, content, 0644);
        if (r < 0) {
                log_warning_errno(r, "Cannot save %s: %m", path);
        }
        return r;
}

void state_gpu_entries_free(StateGpuEntry *e, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(e[i].name);
                free(e[i].path);
        }
        free(e);
}

int state_file_load_gpu(const char *state_dir, StateGpuEntry **ret, size_t *ret_n)
{
        _cleanup_free_ char *path = NULL, *content = NULL;
        _cleanup_strv_free_ char **lines = NULL;
        StateGpuEntry *e = NULL;
        size_t n = 0;
        int r;

        *ret = NULL;
        *ret_n = 0;
        if (asprintf(&path, "%s/%s", state_dir, STATE_FILE_GPU) < 0) {
                return -ENOMEM;
        }
        r = read_file(path, O_NOFOLLOW, 1 << 20, &content);
        if (r == -ENOENT) {
                return 0;
        }
        if (r < 0) {
                log_warning("Cannot read %s, ignoring the measured sizes: %s", path,
                            file_strerror(r));
                return r;
        }
        r = strv_split(content, "\n", &lines);
        if (r < 0) {
                return r;
        }
        STRV_FOREACH(l, lines) {
                _cleanup_free_ char *name = NULL, *size = NULL;
                const char *p = *l, *file;
                uint64_t bytes;
                StateGpuEntry *a;
                size_t k;

                /* NAME BYTES PATH, where PATH is the rest of the line (it may hold spaces). */
                if (*p == '#' || (k = strcspn(p, " ")) == 0 || !(name = strndup(p, k))) {
                        continue;
                }
                p += k + strspn(p + k, " ");
                k = strcspn(p, " ");
                if (k == 0 || !(size = strndup(p, k)) || parse_size(size, &bytes) < 0) {
                        continue;
                }
                file = p + k + strspn(p + k, " ");
                if (*file == '\0') {
                        continue;
                }
                a = ARRAY_GROW(e, n);
                if (!a) {
                        state_gpu_entries_free(e, n);
                        return -ENOMEM;
                }
                *a = (StateGpuEntry) { .name = TAKE_PTR(name),
                                       .bytes = bytes,
                                       .path = strdup(file) };
                if (!a->path) {
                        state_gpu_entries_free(e, n + 1);
                        return -ENOMEM;
                }
                n++;
        }
        *ret = e;
        *ret_n = n;
        return 0;
}
