/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

#include "macro.h"

/*
 * The last requests, in memory: a ring of activity-size records, allocated once, each filled in
 * place when a request ends (no allocation on the request path). Every record has a sequence
 * number, so a reader that keeps the next one asks only for what it has not seen. What a client
 * sent (the model asked for, the path) is kept as it came, cut to the record's size, and escaped
 * where it is printed: JSON by cJSON, a terminal by llmctl.
 */

#define ACTIVITY_SIZE_MAX 100000

typedef struct ActivityRecord {
        uint64_t seq;
        double time;     /* when it began, unix seconds */
        char client[64]; /* the client's address, "unix" on a unix socket */
        unsigned key;    /* its position among the API keys, from 1; 0 none */
        char model[96];  /* the profile that served it, else the model asked for */
        char endpoint[96];
        unsigned status;
        int64_t prompt_tokens, cached_tokens, completion_tokens; /* -1 unknown */
        double held_s;       /* waiting for a model to load; 0 not held */
        double ttft_s;       /* to the first byte of the answer's body; -1 none came */
        double tokens_per_s; /* of the generation; -1 unknown */
        double duration_s;
        char error[160]; /* "" none */
} ActivityRecord;

typedef struct Activity Activity;

int activity_new(unsigned size, Activity **ret);
Activity *activity_free(Activity *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(Activity *, activity_free);

/* Keeps the newest records that fit; 0 keeps none. -ENOMEM leaves a as it was. */
int activity_resize(Activity *a, unsigned size);
/* The slot for the next record, cleared, with its seq set; NULL when the size is 0. */
ActivityRecord *activity_add(Activity *a);
/* The seq the next record will have. */
uint64_t activity_next_seq(const Activity *a);
/* {"next": SEQ, "records": [...]}: the records with seq >= since, oldest first, of model only
 * (its name as recorded) unless NULL. */
cJSON *activity_json(const Activity *a, uint64_t since, const char *model);
/* Copies src into a field of a record: cut at a whole UTF-8 character, and every byte that is
 * not UTF-8 written as "?", so that the JSON made of it is valid. */
void activity_copy(char *dst, size_t size, const char *src);
/* One record as JSON; NULL for a value that is unknown. */
cJSON *activity_record_json(const ActivityRecord *r);
