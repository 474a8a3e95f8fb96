/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "activity.h"
#include "utf8.h"

struct Activity {
        ActivityRecord *ring;
        unsigned size;
        uint64_t first, next; /* the records kept: first .. next-1 */
};

int activity_new(unsigned size, Activity **ret)
{
        _cleanup_(activity_freep) Activity *a = calloc(1, sizeof(Activity));
        int r;

        if (!a) {
                return -ENOMEM;
        }
        a->first = a->next = 1;
        r = activity_resize(a, size);
        if (r < 0) {
                return r;
        }
        *ret = TAKE_PTR(a);
        return 0;
}

Activity *activity_free(Activity *a)
{
        if (!a) {
                return NULL;
        }
        free(a->ring);
        free(a);
        return NULL;
}

int activity_resize(Activity *a, unsigned size)
{
        ActivityRecord *ring = NULL;

        if (size == a->size) {
                return 0;
        }
        if (size > 0) {
                ring = calloc(size, sizeof(ActivityRecord));
                if (!ring) {
                        return -ENOMEM;
                }
        }
        a->first = MAX(a->first, a->next - MIN((uint64_t) size, a->next - a->first));
        for (uint64_t s = a->first; s < a->next; s++) {
                ring[s % size] = a->ring[s % a->size];
        }
        free(a->ring);
        a->ring = ring;
        a->size = size;
        return 0;
}

ActivityRecord *activity_add(Activity *a)
{
        ActivityRecord *r;

        if (a->size == 0) {
                return NULL;
        }
        if (a->next - a->first == a->size) {
                a->first++; /* the oldest makes room */
        }
        r = &a->ring[a->next % a->size];
        *r = (ActivityRecord) {
                .seq = a->next++,
                .prompt_tokens = -1,
                .cached_tokens = -1,
                .completion_tokens = -1,
                .ttft_s = -1,
                .tokens_per_s = -1,
        };
        return r;
}

uint64_t activity_next_seq(const Activity *a)
{
        return a->next;
}

static void add_number_or_null(cJSON *o, const char *name, double v)
{
        if (v < 0 || !isfinite(v)) {
                cJSON_AddNullToObject(o, name);
        } else {
                cJSON_AddNumberToObject(o, name, v);
        }
}

cJSON *activity_record_json(const ActivityRecord *r)
{
        cJSON *o = cJSON_CreateObject();

        cJSON_AddNumberToObject(o, "seq", (double) r->seq);
        cJSON_AddNumberToObject(o, "time", r->time);
        cJSON_AddStringToObject(o, "client", r->client);
        add_number_or_null(o, "key", r->key > 0 ? (double) r->key : -1);
        cJSON_AddStringToObject(o, "model", r->model);
        cJSON_AddStringToObject(o, "endpoint", r->endpoint);
        cJSON_AddNumberToObject(o, "status", r->status);
        add_number_or_null(o, "prompt_tokens", (double) r->prompt_tokens);
        add_number_or_null(o, "cached_tokens", (double) r->cached_tokens);
        add_number_or_null(o, "completion_tokens", (double) r->completion_tokens);
        cJSON_AddNumberToObject(o, "held_s", r->held_s);
        add_number_or_null(o, "ttft_s", r->ttft_s);
        add_number_or_null(o, "tokens_per_s", r->tokens_per_s);
        cJSON_AddNumberToObject(o, "duration_s", r->duration_s);
        if (r->error[0]) {
                cJSON_AddStringToObject(o, "error", r->error);
        } else {
                cJSON_AddNullToObject(o, "error");
        }
        return o;
}

cJSON *activity_json(const Activity *a, uint64_t since, const char *model)
{
        cJSON *o = cJSON_CreateObject(), *records;

        cJSON_AddNumberToObject(o, "next", (double) a->next);
        records = cJSON_AddArrayToObject(o, "records");
        for (uint64_t s = MAX(since, a->first); s < a->next; s++) {
                const ActivityRecord *r = &a->ring[s % a->size];

                if (!model || streq(r->model, model)) {
                        cJSON_AddItemToArray(records, activity_record_json(r));
                }
        }
        return o;
}

void activity_copy(char *dst, size_t size, const char *src)
{
        size_t n = 0, len = src ? strlen(src) : 0;

        for (size_t i = 0; i < len && n + 1 < size;) {
                size_t l = utf8_char_length(src + i, len - i);

                if (l == 0) {
                        dst[n++] = '?';
                        i++;
                        continue;
                }
                if (n + l >= size) {
                        break;
                }
                memcpy(dst + n, src + i, l);
                n += l;
                i += l;
        }
        dst[n] = '\0';
}
