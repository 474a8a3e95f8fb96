/* SPDX-License-Identifier: MIT */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "array.h"
#include "fileio.h"
#include "log.h"
#include "parse-util.h"
#include "probe.h"
#include "prompt-cache.h"
#include "strv.h"
#include "time-util.h"

#define INDEX_NAME "index.json"
#define INDEX_MAX (1024 * 1024)
#define SLOTS_MAX 4096
/* Tokens and bytes above this are not a cache's (and would not fit the integer they go in). */
#define COUNT_MAX 1e15
/* Automatic limit: 10% of the file system, at most this. */
#define LIMIT_AUTO_MAX (64ULL << 30)

typedef struct CacheSlot {
        unsigned id;
        uint64_t tokens, bytes;
        bool done; /* saved or restored by this job */
} CacheSlot;

struct CacheJob {
        sd_event *event;
        char *socket_path, *dir, *fingerprint;
        bool save;
        unsigned min_tokens;
        uint64_t start_usec;
        sd_event_source *timer;
        sd_event_source *kick; /* the first step, from the loop: done never runs at once */
        Probe *probe;
        CacheSlot *slots; /* save: the slots to save; restore: those in the index */
        size_t n_slots, next;
        CacheSlot *kept; /* save: the index's entries for slots not saved now */
        size_t n_kept;
        char *error;
        cache_job_done_t done;
        void *userdata;
        bool cleared; /* save: llmctl prompt-cache clear came meanwhile; nothing is kept */
        CacheJob *jobs_prev, *jobs_next;
};

/* The jobs under way, for a clear to find the saves it must undo. */
static CacheJob *jobs;

int prompt_cache_fingerprint(const struct stat *model, const char *binary, char *const *argv,
                             char **ret)
{
        struct stat b = {};
        _cleanup_free_ char *args = strv_join((char **) argv, " ");

        if (!args) {
                return -ENOMEM;
        }
        (void) stat(binary, &b);
        if (asprintf(ret,
                     "model %llx:%llu %lld %lld.%09ld; llama-server %llx:%llu %lld %lld.%09ld; %s",
                     (unsigned long long) model->st_dev, (unsigned long long) model->st_ino,
                     (long long) model->st_size, (long long) model->st_mtim.tv_sec,
                     model->st_mtim.tv_nsec, (unsigned long long) b.st_dev,
                     (unsigned long long) b.st_ino, (long long) b.st_size,
                     (long long) b.st_mtim.tv_sec, b.st_mtim.tv_nsec, args) < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

static char *slot_file(unsigned id, bool partial)
{
        char *f;

        return asprintf(&f, "slot-%u.bin%s", id, partial ? ".part" : "") < 0 ? NULL : f;
}

/* ---- the index ---- */

static int index_read(const char *dir, char **ret_fingerprint, CacheSlot **ret_slots, size_t *ret_n)
{
        _cleanup_free_ char *path = NULL, *text = NULL;
        _cleanup_free_ CacheSlot *slots = NULL;
        cJSON *j, *fp, *a, *it;
        size_t n = 0;
        int r;

        *ret_fingerprint = NULL;
        *ret_slots = NULL;
        *ret_n = 0;
        if (asprintf(&path, "%s/%s", dir, INDEX_NAME) < 0) {
                return -ENOMEM;
        }
        r = read_file(path, O_NOFOLLOW, INDEX_MAX, &text);
        if (r < 0) {
                return r;
        }
        j = cJSON_Parse(text);
        fp = cJSON_GetObjectItemCaseSensitive(j, "fingerprint");
        a = cJSON_GetObjectItemCaseSensitive(j, "slots");
        if (!cJSON_IsString(fp) || !cJSON_IsArray(a)) {
                cJSON_Delete(j);
                return -EBADMSG;
        }
        cJSON_ArrayForEach(it, a) {
                cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
                cJSON *tokens = cJSON_GetObjectItemCaseSensitive(it, "tokens");
                cJSON *bytes = cJSON_GetObjectItemCaseSensitive(it, "bytes");
                CacheSlot *s;

                if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= SLOTS_MAX ||
                    !cJSON_IsNumber(tokens) || !(tokens->valuedouble >= 0) ||
                    tokens->valuedouble > COUNT_MAX || !cJSON_IsNumber(bytes) ||
                    !(bytes->valuedouble >= 0) || bytes->valuedouble > COUNT_MAX ||
                    n >= SLOTS_MAX) {
                        cJSON_Delete(j);
                        return -EBADMSG;
                }
                s = ARRAY_GROW(slots, n);
                if (!s) {
                        cJSON_Delete(j);
                        return -ENOMEM;
                }
                *s = (CacheSlot) { .id = (unsigned) id->valuedouble,
                                   .tokens = (uint64_t) tokens->valuedouble,
                                   .bytes = (uint64_t) bytes->valuedouble };
                n++;
        }
        *ret_fingerprint = strdup(fp->valuestring);
        cJSON_Delete(j);
        if (!*ret_fingerprint) {
                return -ENOMEM;
        }
        *ret_slots = TAKE_PTR(slots);
        *ret_n = n;
        return 0;
}

static int index_write(const char *dir, const char *fingerprint, const CacheSlot *a, size_t na,
                       const CacheSlot *b, size_t nb)
{
        _cleanup_free_ char *path = NULL, *text = NULL;
        cJSON *j = cJSON_CreateObject(), *slots = cJSON_CreateArray();
        int r;

        if (!j || !slots || asprintf(&path, "%s/%s", dir, INDEX_NAME) < 0) {
                cJSON_Delete(j);
                cJSON_Delete(slots);
                return -ENOMEM;
        }
        cJSON_AddItemToObject(j, "slots", slots);
        for (size_t i = 0; i < na + nb; i++) {
                const CacheSlot *s = i < na ? &a[i] : &b[i - na];
                _cleanup_free_ char *file = slot_file(s->id, false);
                cJSON *o = cJSON_CreateObject();

                if (!o || !file) {
                        cJSON_Delete(o);
                        cJSON_Delete(j);
                        return -ENOMEM;
                }
                cJSON_AddItemToArray(slots, o);
                cJSON_AddNumberToObject(o, "id", s->id);
                cJSON_AddStringToObject(o, "file", file);
                cJSON_AddNumberToObject(o, "tokens", (double) s->tokens);
                cJSON_AddNumberToObject(o, "bytes", (double) s->bytes);
        }
        if (!cJSON_AddStringToObject(j, "fingerprint", fingerprint)) {
                cJSON_Delete(j);
                return -ENOMEM;
        }
        text = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        if (!text) {
                return -ENOMEM;
        }
        r = write_file_atomic(path, text, 0600);
        return r;
}

/* The slot's file is what the index says: a regular file (no link) of that size. */
static bool slot_file_good(const char *dir, const CacheSlot *s)
{
        _cleanup_free_ char *file = slot_file(s->id, false), *path = NULL;
        struct stat st;

        if (!file || asprintf(&path, "%s/%s", dir, file) < 0) {
                return false;
        }
        return lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t) st.st_size == s->bytes;
}

/* ---- jobs ---- */

static void job_next(CacheJob *j);

static void job_finish(CacheJob *j, const char *error)
{
        PromptCacheResult r = { .usec = event_now_usec(j->event) - j->start_usec };
        cache_job_done_t done = j->done;

        j->done = NULL;
        j->probe = probe_free(j->probe);
        j->timer = sd_event_source_disable_unref(j->timer);
        j->kick = sd_event_source_disable_unref(j->kick);
        if (error && !j->error) {
                j->error = strdup(error);
        }
        for (size_t i = 0; i < j->n_slots; i++) {
                if (j->slots[i].done) {
                        r.n++;
                        r.tokens += j->slots[i].tokens;
                        r.bytes += j->slots[i].bytes;
                }
        }
        if (j->save) {
                _cleanup_free_ CacheSlot *saved = calloc(MAX(r.n, 1u), sizeof(CacheSlot));
                size_t n = 0;

                for (size_t i = 0; saved && i < j->n_slots; i++) {
                        if (j->slots[i].done) {
                                saved[n++] = j->slots[i];
                        } else {
                                /* A .part left by a save cut off: never restored, removed. */
                                _cleanup_free_ char *f = slot_file(j->slots[i].id, true), *p = NULL;
                                if (f && asprintf(&p, "%s/%s", j->dir, f) >= 0) {
                                        (void) unlink(p);
                                }
                        }
                }
                if (j->cleared) {
                        /* Cleared while it saved: what it wrote goes too, and no index. */
                        (void) prompt_cache_clear(j->dir);
                } else if (n + j->n_kept > 0 &&
                           (!saved || index_write(j->dir, j->fingerprint, saved, n, j->kept,
                                                  j->n_kept) < 0)) {
                        log_warning("prompt cache: cannot write %s/%s", j->dir, INDEX_NAME);
                }
        } else {
                _cleanup_free_ char *path = NULL;

                /* Used now: the least recently used cache is dropped first. */
                if (asprintf(&path, "%s/%s", j->dir, INDEX_NAME) >= 0) {
                        (void) utimensat(AT_FDCWD, path, NULL, AT_SYMLINK_NOFOLLOW);
                }
        }
        r.error = j->error;
        if (done) {
                done(&r, j->userdata);
        }
}

static int job_on_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        CacheJob *j = userdata;
        char buf[32], msg[64];

        (void) snprintf(msg, sizeof(msg), "timed out after %s",
                        format_duration(buf, sizeof(buf), usec - j->start_usec));
        job_finish(j, msg);
        return 0;
}

/* An error answer's message, or the status. */
static void job_error(CacheJob *j, int status, const char *body)
{
        cJSON *b = body ? cJSON_Parse(body) : NULL;
        cJSON *m = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "error"),
                                                    "message");

        if (!j->error) {
                if (cJSON_IsString(m)) {
                        j->error = strdup(m->valuestring);
                } else if (status < 0) {
                        (void) asprintf(&j->error, "%s", strerror(-status));
                } else {
                        (void) asprintf(&j->error, "llama-server answered %d", status);
                }
        }
        cJSON_Delete(b);
}

static void job_on_slot(Probe *p, int status, void *userdata)
{
        CacheJob *j = userdata;
        CacheSlot *s = &j->slots[j->next];
        const char *body = status >= 0 ? probe_body(p) : NULL;
        cJSON *b = status == 200 && body ? cJSON_Parse(body) : NULL;
        cJSON *n = cJSON_GetObjectItemCaseSensitive(b, j->save ? "n_saved" : "n_restored");
        cJSON *w = cJSON_GetObjectItemCaseSensitive(b, j->save ? "n_written" : "n_read");

        if (cJSON_IsNumber(n) && cJSON_IsNumber(w) && n->valuedouble >= 0 &&
            n->valuedouble <= COUNT_MAX && w->valuedouble >= 0 && w->valuedouble <= COUNT_MAX) {
                s->tokens = (uint64_t) n->valuedouble;
                s->bytes = (uint64_t) w->valuedouble;
                s->done = true;
        } else {
                job_error(j, status == 200 ? -EBADMSG : status, body);
        }
        j->probe = probe_free(j->probe); /* body was its buffer */
        if (s->done && j->save) {
                _cleanup_free_ char *from = slot_file(s->id, true), *to = slot_file(s->id, false);
                _cleanup_close_ int dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                if (!from || !to || dfd < 0 || renameat(dfd, from, dfd, to) < 0 ||
                    fchmodat(dfd, to, 0600, 0) < 0) {
                        s->done = false;
                        job_error(j, -errno, NULL);
                }
        }
        cJSON_Delete(b);
        j->next++;
        job_next(j);
}

/* Saves or restores the next slot, or ends. */
static void job_next(CacheJob *j)
{
        for (; j->next < j->n_slots; j->next++) {
                CacheSlot *s = &j->slots[j->next];
                _cleanup_free_ char *file = slot_file(s->id, j->save), *path = NULL, *body = NULL;
                char url[64];
                int r;

                if (!file || asprintf(&path, "%s/%s", j->dir, file) < 0) {
                        job_finish(j, "out of memory");
                        return;
                }
                if (j->save) {
                        (void) unlink(path); /* whatever is there, llama-server writes anew */
                } else if (!slot_file_good(j->dir, s)) {
                        log_warning("prompt cache: %s is not the file %s recorded, not restored",
                                    path, INDEX_NAME);
                        continue;
                }
                (void) snprintf(url, sizeof(url), "/slots/%u?action=%s", s->id,
                                j->save ? "save" : "restore");
                if (asprintf(&body, "{\"filename\":\"%s\"}", file) < 0) {
                        job_finish(j, "out of memory");
                        return;
                }
                r = probe_new_request(j->event, j->socket_path, url, body, true, UINT64_MAX / 2,
                                      job_on_slot, j, &j->probe);
                if (r < 0) {
                        job_finish(j, strerror(-r));
                }
                return;
        }
        job_finish(j, NULL);
}

/* GET /slots answered: the slots worth saving. */
static void job_on_slots(Probe *p, int status, void *userdata)
{
        CacheJob *j = userdata;
        cJSON *a = status == 200 ? cJSON_Parse(probe_body(p)) : NULL, *it;

        j->probe = probe_free(j->probe);
        if (!cJSON_IsArray(a)) {
                cJSON_Delete(a);
                job_finish(j, status == 200      ? "GET /slots: not a list"
                              : status == -EFBIG ? "GET /slots: too long an answer"
                              : status == 501    ? "llama-server has no /slots"
                                                 : "GET /slots failed");
                return;
        }
        cJSON_ArrayForEach(it, a) {
                cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
                cJSON *tokens = cJSON_GetObjectItemCaseSensitive(it, "n_prompt_tokens");
                CacheSlot *s;

                if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= SLOTS_MAX ||
                    !cJSON_IsNumber(tokens) || tokens->valuedouble < j->min_tokens ||
                    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "is_processing"))) {
                        continue;
                }
                s = ARRAY_GROW(j->slots, j->n_slots);
                if (!s) {
                        break;
                }
                *s = (CacheSlot) { .id = (unsigned) id->valuedouble };
                j->n_slots++;
        }
        cJSON_Delete(a);
        /* What the index holds for the other slots stays: still that slot's cache, if older. */
        for (size_t i = 0; i < j->n_kept;) {
                bool saving = false;

                for (size_t k = 0; k < j->n_slots; k++) {
                        saving = saving || j->slots[k].id == j->kept[i].id;
                }
                if (saving || !slot_file_good(j->dir, &j->kept[i])) {
                        j->kept[i] = j->kept[--j->n_kept];
                } else {
                        i++;
                }
        }
        job_next(j);
}

static int job_on_kick(sd_event_source *s, void *userdata)
{
        CacheJob *j = userdata;
        int r;

        j->kick = sd_event_source_disable_unref(j->kick);
        if (!j->save) {
                job_next(j);
                return 0;
        }
        r = probe_new_request(j->event, j->socket_path, "/slots", NULL, true, UINT64_MAX / 2,
                              job_on_slots, j, &j->probe);
        if (r < 0) {
                job_finish(j, strerror(-r));
        }
        return 0;
}

static int job_new(sd_event *e, const char *socket_path, const char *dir, const char *fingerprint,
                   uint64_t timeout_usec, CacheJob **ret)
{
        _cleanup_(cache_job_freep) CacheJob *j = calloc(1, sizeof(CacheJob));
        int r;

        if (!j) {
                return -ENOMEM;
        }
        j->event = e;
        j->start_usec = event_now_usec(e);
        j->socket_path = strdup(socket_path);
        j->dir = strdup(dir);
        j->fingerprint = strdup(fingerprint);
        if (!j->socket_path || !j->dir || !j->fingerprint) {
                return -ENOMEM;
        }
        r = sd_event_add_time_relative(e, &j->timer, CLOCK_MONOTONIC,
                                       timeout_usec > 0 ? timeout_usec : 1, USEC_PER_MSEC,
                                       job_on_timeout, j);
        if (r < 0) {
                return r;
        }
        r = sd_event_add_defer(e, &j->kick, job_on_kick, j);
        if (r < 0) {
                return r;
        }
        j->jobs_next = jobs;
        if (jobs) {
                jobs->jobs_prev = j;
        }
        jobs = j;
        *ret = TAKE_PTR(j);
        return 0;
}

int cache_job_save(sd_event *e, const char *socket_path, const char *dir, const char *fingerprint,
                   unsigned min_tokens, uint64_t timeout_usec, cache_job_done_t done,
                   void *userdata, CacheJob **ret)
{
        _cleanup_(cache_job_freep) CacheJob *j = NULL;
        _cleanup_free_ char *old = NULL;
        int r;

        r = job_new(e, socket_path, dir, fingerprint, timeout_usec, &j);
        if (r < 0) {
                return r;
        }
        j->save = true;
        j->min_tokens = min_tokens;
        j->done = done;
        j->userdata = userdata;
        if (index_read(dir, &old, &j->kept, &j->n_kept) >= 0 && !streq(old, fingerprint)) {
                free(j->kept);
                j->kept = NULL;
                j->n_kept = 0;
        }
        *ret = TAKE_PTR(j);
        return 0;
}

int cache_job_restore(sd_event *e, const char *socket_path, const char *dir,
                      const char *fingerprint, uint64_t timeout_usec, cache_job_done_t done,
                      void *userdata, CacheJob **ret)
{
        _cleanup_(cache_job_freep) CacheJob *j = NULL;
        _cleanup_free_ char *saved = NULL;
        _cleanup_free_ CacheSlot *slots = NULL;
        size_t n = 0;
        int r;

        *ret = NULL;
        r = index_read(dir, &saved, &slots, &n);
        if (r == -ENOENT) {
                return 0;
        }
        if (r < 0 || !streq(saved, fingerprint)) {
                int k = prompt_cache_clear(dir);

                if (k > 0) {
                        log_info("prompt cache: dropped %d files in %s: %s", k, dir,
                                 r < 0 ? "its index is unreadable"
                                       : "llama-server, the model file or its flags changed");
                }
                return 0;
        }
        for (size_t i = 0; i < n;) {
                if (slot_file_good(dir, &slots[i])) {
                        i++;
                        continue;
                }
                log_warning(
                        "prompt cache: slot %u's file in %s is not what %s recorded, "
                        "not restored",
                        slots[i].id, dir, INDEX_NAME);
                slots[i] = slots[--n];
        }
        if (n == 0) {
                return 0;
        }
        r = job_new(e, socket_path, dir, fingerprint, timeout_usec, &j);
        if (r < 0) {
                return r;
        }
        j->slots = TAKE_PTR(slots);
        j->n_slots = n;
        j->done = done;
        j->userdata = userdata;
        *ret = TAKE_PTR(j);
        return 0;
}

CacheJob *cache_job_free(CacheJob *j)
{
        if (!j) {
                return NULL;
        }
        if (j->jobs_prev) {
                j->jobs_prev->jobs_next = j->jobs_next;
        } else if (jobs == j) {
                jobs = j->jobs_next;
        }
        if (j->jobs_next) {
                j->jobs_next->jobs_prev = j->jobs_prev;
        }
        probe_free(j->probe);
        sd_event_source_disable_unref(j->timer);
        sd_event_source_disable_unref(j->kick);
        free(j->slots);
        free(j->kept);
        free(j->error);
        free(j->socket_path);
        free(j->dir);
        free(j->fingerprint);
        free(j);
        return NULL;
}

/* ---- on disk ---- */

void prompt_cache_summary(const char *dir, PromptCacheResult *ret)
{
        _cleanup_free_ char *fp = NULL;
        _cleanup_free_ CacheSlot *slots = NULL;
        size_t n = 0;

        *ret = (PromptCacheResult) {};
        if (index_read(dir, &fp, &slots, &n) < 0) {
                return;
        }
        for (size_t i = 0; i < n; i++) {
                if (slot_file_good(dir, &slots[i])) {
                        ret->n++;
                        ret->tokens += slots[i].tokens;
                        ret->bytes += slots[i].bytes;
                }
        }
}

/* The bytes of the regular files in dir, and when its index was last written or used. */
static uint64_t dir_usage(int dfd, uint64_t *ret_used)
{
        _cleanup_close_ int fd = dup(dfd);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        uint64_t total = 0;
        struct dirent *de;
        struct stat st;

        *ret_used = 0;
        if (!d) {
                return 0;
        }
        fd = -1; /* the DIR has it */
        while ((de = readdir(d))) {
                if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISREG(st.st_mode)) {
                        continue;
                }
                total += (uint64_t) st.st_size;
                if (streq(de->d_name, INDEX_NAME)) {
                        *ret_used = (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC +
                                    (uint64_t) st.st_mtim.tv_nsec / 1000;
                }
        }
        closedir(d);
        return total;
}

int prompt_cache_clear(const char *dir)
{
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int fd = dfd >= 0 ? dup(dfd) : -1;
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;
        int n = 0;

        for (CacheJob *j = jobs; j; j = j->jobs_next) {
                if (j->save && streq(j->dir, dir)) {
                        j->cleared = true;
                }
        }
        if (!d) {
                return dfd < 0 && errno == ENOENT ? 0 : -errno;
        }
        fd = -1;
        while ((de = readdir(d))) {
                struct stat st;

                /* Files, links, FIFOs and whatever else was put there; never what a link
                 * points to, never a directory's contents. */
                if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    !S_ISDIR(st.st_mode) && unlinkat(dfd, de->d_name, 0) == 0) {
                        n++;
                }
        }
        closedir(d);
        return n;
}

uint64_t prompt_cache_limit(const char *root, uint64_t configured)
{
        struct statvfs v;
        uint64_t fs;

        if (configured > 0) {
                return configured;
        }
        if (statvfs(root, &v) < 0) {
                return LIMIT_AUTO_MAX;
        }
        fs = (uint64_t) v.f_blocks * v.f_frsize / 10;
        return MIN(fs, LIMIT_AUTO_MAX);
}

typedef struct TrimEntry {
        char *name;
        uint64_t bytes, used;
} TrimEntry;

static int trim_entry_compare(const void *a, const void *b)
{
        const TrimEntry *x = a, *y = b;

        return x->used < y->used ? -1 : x->used > y->used;
}

void prompt_cache_trim(const char *root, uint64_t limit)
{
        _cleanup_close_ int rfd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int fd = rfd >= 0 ? dup(rfd) : -1;
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        TrimEntry *e = NULL;
        size_t n = 0;
        uint64_t total = 0;
        struct dirent *de;

        if (!d) {
                return;
        }
        fd = -1;
        limit = prompt_cache_limit(root, limit);
        while ((de = readdir(d))) {
                _cleanup_close_ int dfd = -1;
                TrimEntry *t;

                if (de->d_name[0] == '.') {
                        continue;
                }
                dfd = openat(rfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                t = dfd >= 0 ? ARRAY_GROW(e, n) : NULL;
                if (!t) {
                        continue;
                }
                *t = (TrimEntry) { .name = strdup(de->d_name) };
                t->bytes = dir_usage(dfd, &t->used);
                if (!t->name) {
                        continue;
                }
                total += t->bytes;
                n++;
        }
        closedir(d);
        qsort(e, n, sizeof(TrimEntry), trim_entry_compare);
        for (size_t i = 0; i < n; i++) {
                if (total > limit && e[i].bytes > 0) {
                        _cleanup_free_ char *path = NULL;

                        if (asprintf(&path, "%s/%s", root, e[i].name) >= 0 &&
                            prompt_cache_clear(path) > 0) {
                                log_info(
                                        "prompt cache: dropped %s's (%.1f MB): all caches "
                                        "together are over prompt-cache-size",
                                        e[i].name, (double) e[i].bytes / 1e6);
                                total -= e[i].bytes;
                        }
                }
                free(e[i].name);
        }
        free(e);
}
