/* pool.c - the compute pool (see pool.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#define MAX_THREADS 64

struct icpnsd_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    icpnsd_task_t *head, *tail;
    bool stop;
    bool cancelled;
    unsigned threads;
    pthread_t tid[MAX_THREADS];
};

static void *pool_main(void *arg)
{
    icpnsd_pool_t *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cond, &p->lock);
        icpnsd_task_t *t = p->head;
        if (t) {
            p->head = t->next;
            if (!p->head)
                p->tail = NULL;
        }
        pthread_mutex_unlock(&p->lock);
        if (!t)
            return NULL; /* stopping and drained */
        t->fn(t);
    }
}

icpnsd_pool_t *icpnsd_pool_new(unsigned threads, char *err, size_t es)
{
    icpnsd_pool_t *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, es, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    unsigned want = threads < MAX_THREADS ? threads : MAX_THREADS;
    for (unsigned k = 0; k < want; k++) {
        int rc = pthread_create(&p->tid[k], NULL, pool_main, p);
        if (rc) {
            snprintf(err, es, "cannot start the compute threads: %s", strerror(rc));
            icpnsd_pool_free(p);
            return NULL;
        }
        p->threads++;
    }
    return p;
}

unsigned icpnsd_pool_threads(const icpnsd_pool_t *p)
{
    return p ? p->threads : 0;
}

void icpnsd_pool_submit(icpnsd_pool_t *p, icpnsd_task_t *t)
{
    t->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->cancelled) {
        pthread_mutex_unlock(&p->lock);
        t->cancel(t);
        return;
    }
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void icpnsd_pool_cancel(icpnsd_pool_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->cancelled = true;
    icpnsd_task_t *q = p->head;
    p->head = p->tail = NULL;
    pthread_mutex_unlock(&p->lock);
    while (q) {
        icpnsd_task_t *next = q->next;
        q->cancel(q);
        q = next;
    }
}

void icpnsd_pool_free(icpnsd_pool_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned k = 0; k < p->threads; k++)
        pthread_join(p->tid[k], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}
