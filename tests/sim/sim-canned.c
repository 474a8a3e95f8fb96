/* SPDX-License-Identifier: MIT */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim-canned.h"

#define CANNED_FILE_MAX (16 * 1024 * 1024)

static char *canned_read(const char *path)
{
        FILE *f = fopen(path, "re");
        char *buf;
        size_t n;

        if (!f) {
                return NULL;
        }
        buf = malloc(CANNED_FILE_MAX + 1);
        n = buf ? fread(buf, 1, CANNED_FILE_MAX, f) : 0;
        fclose(f);
        if (buf) {
                buf[n] = '\0';
        }
        return buf;
}

static bool canned_matches(const cJSON *messages, const char *match)
{
        const cJSON *m;

        cJSON_ArrayForEach(m, messages) {
                const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");

                if (cJSON_IsString(c) && strstr(c->valuestring, match)) {
                        return true;
                }
        }
        return false;
}

/* Appends the tokens of s: each ends after a run of blanks. */
static int canned_split(struct canned *c, const char *s)
{
        while (*s) {
                size_t n = strcspn(s, " \n\t");
                char **w;

                n += strspn(s + n, " \n\t");
                w = realloc(c->words, (c->n_words + 1) * sizeof(char *));
                if (!w) {
                        return -1;
                }
                c->words = w;
                c->words[c->n_words] = strndup(s, n);
                if (!c->words[c->n_words]) {
                        return -1;
                }
                c->n_words++;
                s += n;
        }
        return 0;
}

struct canned *canned_find(const cJSON *messages)
{
        const char *path = getenv("LLAMA_SIM_CANNED");
        char *text;
        cJSON *all, *e;
        struct canned *c = NULL;

        if (!path || !*path) {
                return NULL;
        }
        text = canned_read(path);
        all = text ? cJSON_Parse(text) : NULL;
        free(text);
        if (!cJSON_IsArray(all)) {
                fprintf(stderr, "llama-sim: LLAMA_SIM_CANNED=%s: not a JSON array\n", path);
                cJSON_Delete(all);
                return NULL;
        }
        cJSON_ArrayForEach(e, all) {
                const cJSON *match = cJSON_GetObjectItemCaseSensitive(e, "match");
                const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
                const cJSON *reasoning = cJSON_GetObjectItemCaseSensitive(e, "reasoning_content");

                if (!cJSON_IsString(match) || !canned_matches(messages, match->valuestring)) {
                        continue;
                }
                c = calloc(1, sizeof(*c));
                if (!c ||
                    (cJSON_IsString(reasoning) && canned_split(c, reasoning->valuestring) < 0)) {
                        goto fail;
                }
                c->n_reasoning = c->n_words;
                if (cJSON_IsString(content) && canned_split(c, content->valuestring) < 0) {
                        goto fail;
                }
                break;
        }
        cJSON_Delete(all);
        return c;
fail:
        cJSON_Delete(all);
        canned_free(c);
        return NULL;
}

void canned_free(struct canned *c)
{
        if (!c) {
                return;
        }
        for (int i = 0; i < c->n_words; i++) {
                free(c->words[i]);
        }
        free(c->words);
        free(c);
}
