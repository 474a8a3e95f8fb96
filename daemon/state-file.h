/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/*
 * llmd's state directory: what must survive a restart, each file written whole and atomically
 * (a temporary file, fsync, rename) and read back leniently (a bad line is skipped, a bad file
 * is as good as none, with a warning).
 *
 *   active-model  "model=NAME" and "loaded=yes|no": the generation model chosen with llmctl
 *   gpu-memory    "NAME BYTES PATH" a line: what each model was seen to use on the GPU
 */

/* Saves the active model; logs a failure (nothing else can be done about it). */
void state_file_save_active(const char *state_dir, const char *active, bool loaded);
/* The saved choice, if it still names a generation model of config: *ret_active (allocated;
 * left alone when nothing usable is saved) and *ret_loaded. */
void state_file_load_active(const char *state_dir, const Config *config, char **ret_active,
                            bool *ret_loaded);

typedef struct StateGpuEntry {
        char *name;
        uint64_t bytes;
        char *path;
} StateGpuEntry;

int state_file_save_gpu(const char *state_dir, const StateGpuEntry *entries, size_t n);
/* The entries saved (an empty list without the file); free with state_gpu_entries_free(). */
int state_file_load_gpu(const char *state_dir, StateGpuEntry **ret, size_t *ret_n);
void state_gpu_entries_free(StateGpuEntry *e, size_t n);
