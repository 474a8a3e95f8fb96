/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/stat.h>
#include <systemd/sd-event.h>

#include "macro.h"

/*
 * llama-server's prompt caches, kept across stops of the process. A generation model runs with
 * --slot-save-path STATE_DIR/prompt-cache/MODEL/ (a directory of llmd's own, mode 0700: the
 * files hold users' prompts). Before a planned stop llmd asks the child to save every slot that
 * holds enough tokens (POST /slots/ID?action=save), and when the model is ready again to restore
 * them (action=restore) before it sends it any request. Beside the files, index.json names each
 * slot's file with its tokens and bytes, and the fingerprint of what the cache belongs to: the
 * model file, the llama-server binary and the child's whole command line. A cache whose
 * fingerprint differs is dropped, never restored. llama-server itself reads and writes the
 * files; llmd names them, renames them into place and checks them (a regular file of the size
 * recorded) before it asks for a restore.
 */

#define PROMPT_CACHE_DIR "prompt-cache"

typedef struct PromptCacheResult {
        unsigned n; /* slots saved or restored */
        uint64_t tokens;
        uint64_t bytes;
        uint64_t usec;     /* how long it took */
        const char *error; /* why it stopped short (a timeout, a refusal), or NULL */
} PromptCacheResult;

typedef struct CacheJob CacheJob;
typedef void (*cache_job_done_t)(const PromptCacheResult *r, void *userdata);

/* What a saved cache belongs to: the model file (device, inode, size, mtime), the binary (the
 * same) and the child's argv, as one string. */
int prompt_cache_fingerprint(const struct stat *model, const char *binary, char *const *argv,
                             char **ret);

/* Saves the slots of the child on socket_path that hold at least min_tokens and are not
 * processing, into dir, within timeout_usec. done runs once, later, unless the job is freed
 * first. */
int cache_job_save(sd_event *e, const char *socket_path, const char *dir, const char *fingerprint,
                   unsigned min_tokens, uint64_t timeout_usec, cache_job_done_t done,
                   void *userdata, CacheJob **ret);
/* Restores what dir holds for this fingerprint into the child; a cache of another fingerprint
 * is removed. 0 with *ret NULL: nothing to restore (done does not run). */
int cache_job_restore(sd_event *e, const char *socket_path, const char *dir,
                      const char *fingerprint, uint64_t timeout_usec, cache_job_done_t done,
                      void *userdata, CacheJob **ret);
CacheJob *cache_job_free(CacheJob *j);
DEFINE_TRIVIAL_CLEANUP_FUNC(CacheJob *, cache_job_free);

/* What dir holds: slots, tokens, bytes (all 0 without a cache). */
void prompt_cache_summary(const char *dir, PromptCacheResult *ret);
/* Removes what dir holds (every entry but subdirectories); the number of files removed. */
int prompt_cache_clear(const char *dir);
/* Drops whole caches of models under root, least recently used first, until all together
 * take at most limit bytes (0: the smaller of 10% of the file system and 64 GiB). */
void prompt_cache_trim(const char *root, uint64_t limit);
uint64_t prompt_cache_limit(const char *root, uint64_t configured);
