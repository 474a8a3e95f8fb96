/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim-slots.h"

#define SLOTS_MAX 256

struct slot {
        bool used; /* has had a task: /slots then shows its details */
        bool busy;
        uint64_t t_last; /* when it was last released, for the LRU choice */
        unsigned task;
        int n_prompt;
        int n_decoded;
        struct infer_params params;
};

static pthread_mutex_t slots_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[SLOTS_MAX];

/* The counters /metrics reports. */
static struct {
        uint64_t prompt_tokens;
        double prompt_ms;
        uint64_t predicted_tokens;
        double predicted_ms;
        uint64_t n_decode;
        uint64_t n_busy_slots;
        uint64_t n_tokens_max;
        unsigned processing; /* running, in a slot or not */
} metrics;

static int slots_count(void)
{
        int n = infer_n_slots();

        return n < SLOTS_MAX ? n : SLOTS_MAX;
}

int slots_acquire(const struct infer_params *params, unsigned task, int n_prompt)
{
        int best = -1;

        pthread_mutex_lock(&slots_mutex);
        metrics.processing++;
        for (int i = slots_count() - 1; i >= 0; i--) {
                if (slots[i].busy) {
                        continue;
                }
                if (best < 0 || slots[i].t_last < slots[best].t_last) {
                        best = i;
                }
        }
        if (best >= 0) {
                struct slot *s = &slots[best];

                s->used = s->busy = true;
                s->task = task;
                s->n_prompt = n_prompt;
                s->n_decoded = 0;
                s->params = *params;
        }
        pthread_mutex_unlock(&slots_mutex);
        return best;
}

void slots_progress(int slot, int n_decoded)
{
        pthread_mutex_lock(&slots_mutex);
        if (slot >= 0 && slot < SLOTS_MAX) {
                slots[slot].n_decoded = n_decoded;
        }
        /* each token is one llama_decode() of every busy slot */
        metrics.n_decode++;
        for (int i = 0; i < slots_count(); i++) {
                metrics.n_busy_slots += slots[i].busy;
        }
        pthread_mutex_unlock(&slots_mutex);
}

void slots_release(int slot, int n_prompt, double prompt_ms, int n_predicted, double predicted_ms)
{
        pthread_mutex_lock(&slots_mutex);
        if (slot >= 0 && slot < SLOTS_MAX) {
                slots[slot].busy = false;
                slots[slot].n_decoded = 0;
                slots[slot].t_last = now_usec(CLOCK_MONOTONIC);
        }
        metrics.processing--;
        metrics.prompt_tokens += (uint64_t) n_prompt;
        metrics.prompt_ms += prompt_ms;
        metrics.predicted_tokens += (uint64_t) n_predicted;
        metrics.predicted_ms += predicted_ms;
        if ((uint64_t) (n_prompt + n_predicted) > metrics.n_tokens_max) {
                metrics.n_tokens_max = (uint64_t) (n_prompt + n_predicted);
        }
        pthread_mutex_unlock(&slots_mutex);
}

#define SLOT_FILE_MAGIC "llama-sim slot cache v1"

int slots_save(int slot, const char *path, long *ret_bytes)
{
        int tokens;
        FILE *f;

        if (slot < 0 || slot >= slots_count()) {
                return -ENOENT;
        }
        pthread_mutex_lock(&slots_mutex);
        tokens = slots[slot].used ? slots[slot].n_prompt + slots[slot].n_decoded : 0;
        pthread_mutex_unlock(&slots_mutex);
        f = fopen(path, "we");
        if (!f) {
                return -errno;
        }
        fprintf(f, "%s\n%d\n", SLOT_FILE_MAGIC, tokens);
        /* 1 KiB a token, about what a 7B model's cache takes (a tiny one's: 270 bytes) */
        for (int i = 0; i < tokens * 32; i++) {
                fputs("0123456789abcdef0123456789abcdef", f);
        }
        *ret_bytes = ftell(f);
        if (fclose(f) != 0) {
                return -errno;
        }
        return tokens;
}

int slots_restore(int slot, const char *path, long *ret_bytes)
{
        char magic[64];
        int tokens = -1;
        FILE *f;

        if (slot < 0 || slot >= slots_count()) {
                return -ENOENT;
        }
        f = fopen(path, "re");
        if (!f) {
                return -errno;
        }
        if (!fgets(magic, sizeof(magic), f) || strcmp(magic, SLOT_FILE_MAGIC "\n") != 0 ||
            fscanf(f, "%d", &tokens) != 1 || tokens < 0) {
                fclose(f);
                return -EBADMSG;
        }
        (void) fseek(f, 0, SEEK_END);
        *ret_bytes = ftell(f);
        fclose(f);
        pthread_mutex_lock(&slots_mutex);
        slots[slot].used = true;
        slots[slot].n_prompt = tokens;
        slots[slot].n_decoded = 0;
        pthread_mutex_unlock(&slots_mutex);
        return tokens;
}

int slots_erase(int slot)
{
        int tokens;

        if (slot < 0 || slot >= slots_count()) {
                return -ENOENT;
        }
        pthread_mutex_lock(&slots_mutex);
        tokens = slots[slot].used ? slots[slot].n_prompt + slots[slot].n_decoded : 0;
        slots[slot].n_prompt = slots[slot].n_decoded = 0;
        pthread_mutex_unlock(&slots_mutex);
        return tokens;
}

cJSON *slots_json(void)
{
        cJSON *arr = cJSON_CreateArray();

        pthread_mutex_lock(&slots_mutex);
        for (int i = 0; i < slots_count(); i++) {
                const struct slot *s = &slots[i];
                cJSON *o = cJSON_CreateObject(), *next, *nt;

                cJSON_AddNumberToObject(o, "id", i);
                cJSON_AddNumberToObject(o, "n_ctx", infer_n_ctx_slot());
                cJSON_AddFalseToObject(o, "speculative");
                cJSON_AddBoolToObject(o, "is_processing", s->busy);
                if (s->used) {
                        cJSON_AddNumberToObject(o, "id_task", s->task);
                        cJSON_AddNumberToObject(o, "n_prompt_tokens", s->n_prompt);
                        cJSON_AddNumberToObject(o, "n_prompt_tokens_processed",
                                                s->busy ? s->n_prompt : 0);
                        cJSON_AddNumberToObject(o, "n_prompt_tokens_cache", 0);
                        cJSON_AddItemToObject(o, "params", infer_params_json(&s->params, false));
                        next = cJSON_AddArrayToObject(o, "next_token");
                        nt = cJSON_CreateObject();
                        cJSON_AddBoolToObject(nt, "has_next_token", s->busy);
                        cJSON_AddFalseToObject(nt, "has_new_line");
                        cJSON_AddNumberToObject(nt, "n_remain",
                                                s->busy && s->params.n_predict >= 0
                                                        ? s->params.n_predict - s->n_decoded
                                                        : -1);
                        cJSON_AddNumberToObject(nt, "n_decoded", s->busy ? s->n_decoded : 0);
                        cJSON_AddItemToArray(next, nt);
                }
                cJSON_AddItemToArray(arr, o);
        }
        pthread_mutex_unlock(&slots_mutex);
        return arr;
}

struct metric {
        const char *name;
        const char *type;
        const char *help;
        double value;
};

char *slots_metrics_text(void)
{
        struct metric m[15];
        unsigned busy_now = 0, processing, deferred;
        size_t size = 0, n = 0;
        char *buf;

        pthread_mutex_lock(&slots_mutex);
        for (int i = 0; i < slots_count(); i++) {
                busy_now += slots[i].busy;
        }
        processing = busy_now;
        deferred = metrics.processing > busy_now ? metrics.processing - busy_now : 0;
        m[0] = (struct metric) { "prompt_tokens_total", "counter",
                                 "Number of prompt tokens processed, excluding cached tokens",
                                 (double) metrics.prompt_tokens };
        m[1] = (struct metric) { "prompt_tokens_cached_total", "counter",
                                 "Number of prompt tokens reused from the cache", 0.0 };
        m[2] = (struct metric) { "prompt_seconds_total", "counter",
                                 "Total time spent processing prompts", metrics.prompt_ms / 1e3 };
        m[3] = (struct metric) { "tokens_predicted_total", "counter",
                                 "Number of generation tokens processed",
                                 (double) metrics.predicted_tokens };
        m[4] = (struct metric) { "tokens_predicted_seconds_total", "counter",
                                 "Total time spent generating tokens", metrics.predicted_ms / 1e3 };
        m[5] = (struct metric) { "n_decode_total", "counter",
                                 "Total number of llama_decode() calls, excluding speculative "
                                 "decoding and multimodal decoding",
                                 (double) metrics.n_decode };
        m[6] = (struct metric) { "n_tokens_max", "counter",
                                 "Largest observed sequence length (prompt + generation)",
                                 (double) metrics.n_tokens_max };
        m[7] = (struct metric) { "spec_decode_num_draft_tokens_total", "counter",
                                 "Speculative: Total draft tokens generated", 0.0 };
        m[8] = (struct metric) { "spec_decode_num_accepted_tokens_total", "counter",
                                 "Speculative: Total draft tokens accepted by the target model",
                                 0.0 };
        m[9] = (struct metric) { "spec_decode_num_drafts_total", "counter",
                                 "Speculative: Total speculative decoding verification steps",
                                 0.0 };
        m[10] = (struct metric) { "prompt_tokens_seconds", "gauge",
                                  "Average prompt throughput in tokens/s",
                                  metrics.prompt_ms > 0
                                          ? 1e3 * (double) metrics.prompt_tokens / metrics.prompt_ms
                                          : 0.0 };
        m[11] = (struct metric) { "predicted_tokens_seconds", "gauge",
                                  "Average generation throughput in tokens/s",
                                  metrics.predicted_ms > 0
                                          ? 1e3 * (double) metrics.predicted_tokens /
                                                    metrics.predicted_ms
                                          : 0.0 };
        m[12] = (struct metric) { "requests_processing", "gauge", "Number of requests processing",
                                  (double) processing };
        m[13] = (struct metric) { "requests_deferred", "gauge", "Number of requests deferred",
                                  (double) deferred };
        m[14] = (struct metric) { "n_busy_slots_per_decode", "gauge",
                                  "Average number of busy slots per llama_decode() call",
                                  metrics.n_decode > 0 ? (double) metrics.n_busy_slots /
                                                                 (double) metrics.n_decode
                                                       : 0.0 };
        pthread_mutex_unlock(&slots_mutex);

        /* two passes: measure, then write */
        for (int pass = 0; pass < 2; pass++) {
                buf = pass ? malloc(size + 1) : NULL;
                if (pass && !buf) {
                        return NULL;
                }
                n = 0;
                for (size_t i = 0; i < ELEMENTSOF(m); i++) {
                        /* values as a C++ ostream writes doubles: six significant digits */
                        int k = snprintf(pass ? buf + n : NULL, pass ? size + 1 - n : 0,
                                         "# HELP llamacpp:%s %s\n# TYPE llamacpp:%s %s\n"
                                         "llamacpp:%s %g\n",
                                         m[i].name, m[i].help, m[i].name, m[i].type, m[i].name,
                                         m[i].value);

                        if (k < 0) {
                                free(buf);
                                return NULL;
                        }
                        n += (size_t) k;
                }
                size = n;
        }
        return buf;
}
