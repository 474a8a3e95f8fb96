/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "sim-lockstep.h"

/*
 * How often a waiting stream looks at its client. Waiting is on a condition variable, not on a
 * descriptor per stream: a thousand streams already hold a thousand sockets, and a soft limit of
 * 1024 descriptors leaves no room for as many more.
 */
#define LOCKSTEP_CHECK_MS 100

struct lockstep {
        uint64_t credits;
        struct lockstep *prev, *next;
};

static pthread_mutex_t lockstep_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lockstep_cond;
static pthread_once_t lockstep_once = PTHREAD_ONCE_INIT;
static struct lockstep *lockstep_list;

static void lockstep_init(void)
{
        pthread_condattr_t attr;

        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&lockstep_cond, &attr);
        pthread_condattr_destroy(&attr);
}

struct lockstep *lockstep_new(void)
{
        struct lockstep *l;

        if (!sim_config.lockstep) {
                return NULL;
        }
        pthread_once(&lockstep_once, lockstep_init);
        l = calloc(1, sizeof(*l));
        if (!l) {
                return NULL;
        }
        pthread_mutex_lock(&lockstep_mutex);
        l->next = lockstep_list;
        if (lockstep_list) {
                lockstep_list->prev = l;
        }
        lockstep_list = l;
        pthread_mutex_unlock(&lockstep_mutex);
        return l;
}

void lockstep_free(struct lockstep *l)
{
        if (!l) {
                return;
        }
        pthread_mutex_lock(&lockstep_mutex);
        if (l->prev) {
                l->prev->next = l->next;
        } else {
                lockstep_list = l->next;
        }
        if (l->next) {
                l->next->prev = l->prev;
        }
        pthread_mutex_unlock(&lockstep_mutex);
        free(l);
}

int lockstep_take(struct lockstep *l, struct http_request *req)
{
        pthread_mutex_lock(&lockstep_mutex);
        while (l->credits == 0) {
                struct timespec ts;

                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += LOCKSTEP_CHECK_MS * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                if (pthread_cond_timedwait(&lockstep_cond, &lockstep_mutex, &ts) == ETIMEDOUT) {
                        /* the socket is looked at without the lock held */
                        pthread_mutex_unlock(&lockstep_mutex);
                        if (http_wait_client_gone(req, 0)) {
                                return -ECONNRESET;
                        }
                        pthread_mutex_lock(&lockstep_mutex);
                }
        }
        l->credits--;
        pthread_mutex_unlock(&lockstep_mutex);
        return 0;
}

unsigned lockstep_release(uint64_t n)
{
        unsigned count = 0;

        pthread_once(&lockstep_once, lockstep_init);
        pthread_mutex_lock(&lockstep_mutex);
        for (struct lockstep *l = lockstep_list; l; l = l->next) {
                l->credits += n;
                count++;
        }
        pthread_cond_broadcast(&lockstep_cond);
        pthread_mutex_unlock(&lockstep_mutex);
        return count;
}
