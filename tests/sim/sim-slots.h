/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

#include "sim-infer.h"

/*
 * llama-server's slots and its /metrics counters. Every running inference takes a free slot,
 * least recently used first (highest id among the never used), as llama-server's LRU choice
 * does; when all -np slots are busy it still runs (the simulator does not queue) but counts as
 * "deferred" and shows in no slot. Thread-safe.
 */

/* Returns the slot id, or -1 when every slot is busy. */
int slots_acquire(const struct infer_params *params, unsigned task, int n_prompt);

/* One more token decoded by the request in slot (-1: a deferred one). */
void slots_progress(int slot, int n_decoded);

/* The request in slot ended, having evaluated n_prompt tokens and predicted n_predicted. */
void slots_release(int slot, int n_prompt, double prompt_ms, int n_predicted, double predicted_ms);

/* GET /slots: an array as server_task_result_slots::to_json() writes it. */
cJSON *slots_json(void);

/* GET /metrics: the Prometheus text of server_task_result_metrics::to_metrics(). */
char *slots_metrics_text(void);

/* POST /slots/ID?action=save|restore: a slot's cache to and from a file as llama-server's
 * slot save path holds them (the simulator's own format: a line naming the tokens). The
 * tokens written, or read (the slot is then "used" with that many prompt tokens); -ENOENT for
 * a slot that does not exist, -EBADMSG for a file that is not a slot's. */
int slots_save(int slot, const char *path, long *ret_bytes);
int slots_restore(int slot, const char *path, long *ret_bytes);
/* action=erase: the tokens the slot held. */
int slots_erase(int slot);
