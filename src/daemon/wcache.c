/* wcache.c - each snapshot's cache of other weight settings (see wcache.h). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rebuild.h"
#include "wcache.h"

icpnsd_wstats_t *icpnsd_wstats_new(const char *name)
{
    icpnsd_wstats_t *st = calloc(1, sizeof(*st));
    if (st) {
        atomic_init(&st->refs, 1);
        snprintf(st->name, sizeof(st->name), "%s", name);
    }
    return st;
}

void icpnsd_wstats_unref(icpnsd_wstats_t *st)
{
    if (st && atomic_fetch_sub(&st->refs, 1) == 1)
        free(st);
}


enum { W_BUILDING, W_READY, W_FAILED };

struct icpnsd_wentry {
    atomic_uint refs;
    icpns_params_t p;
    int state;
    icpns_weights_t *w;
    char error[256];
    uint64_t used;
    icpnsd_waiter_t *waiters;
    /* While building: */
    icpns_snapshot_t *snap;  /* a reference */
    icpnsd_wstats_t *stats;  /* a reference */
    uint64_t reserved;       /* bytes counted for it while it is built */
    uv_work_t work;
    icpnsd_wentry_t *next;   /* in the registry's build queue */
};

typedef struct wcache {
    pthread_mutex_t lock;
    uint32_t cap, n;
    uint64_t tick;
    atomic_uint_fast64_t bytes;
    icpnsd_wentry_t **e;
} wcache_t;

static void wentry_free(icpnsd_wentry_t *e)
{
    icpns_weights_free(e->w);
    free(e);
}

void icpnsd_wentry_unref(icpnsd_wentry_t *e)
{
    if (e && atomic_fetch_sub(&e->refs, 1) == 1)
        wentry_free(e);
}

const icpns_weights_t *icpnsd_wentry_weights(const icpnsd_wentry_t *e)
{
    return e->w;
}

static void wcache_free(void *p)
{
    wcache_t *c = p;
    for (uint32_t k = 0; k < c->n; k++)
        icpnsd_wentry_unref(c->e[k]);
    free(c->e);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void icpnsd_wcache_attach(icpns_snapshot_t *s, uint32_t cap)
{
    if (s->ext || cap == 0)
        return;
    wcache_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->e = calloc(cap, sizeof(*c->e));
    if (!c->e) {
        free(c);
        return;
    }
    c->cap = cap;
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->bytes, 0);
    s->ext = c;
    s->ext_free = wcache_free;
}

void icpnsd_wcache_usage(const icpns_snapshot_t *s, unsigned *entries, uint64_t *bytes)
{
    wcache_t *c = s->ext;
    if (entries)
        *entries = 0;
    if (bytes)
        *bytes = 0;
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    if (entries)
        *entries = c->n;
    pthread_mutex_unlock(&c->lock);
    if (bytes)
        *bytes = atomic_load(&c->bytes);
}

static bool same_params(const icpns_params_t *a, const icpns_params_t *b)
{
    return a->alpha == b->alpha && a->epsilon == b->epsilon && a->beta == b->beta;
}

/* Thread pool: the build itself. */
static void wbuild_work(uv_work_t *w)
{
    icpnsd_background_thread();
    icpnsd_test_delay();
    icpnsd_wentry_t *e = w->data;
    icpns_error_t err;
    icpns_error_clear(&err);
    icpns_weights_t *ws = NULL;
    if (icpns_weights_build(e->snap, &e->p, &ws, &err)) {
        snprintf(e->error, sizeof(e->error), "building weights for alpha=%g epsilon=%g beta=%g: %s",
                 e->p.alpha, e->p.epsilon, e->p.beta, err.message);
        e->w = NULL;
    } else {
        e->w = ws;
    }
}

/* Loop thread: publish the entry and wake whoever waits for it. */
static void wbuild_done(uv_work_t *w, int status)
{
    icpnsd_wentry_t *e = w->data;
    (void)status;
    wcache_t *c = e->snap->ext;
    pthread_mutex_lock(&c->lock);
    e->state = e->w ? W_READY : W_FAILED;
    icpnsd_waiter_t *wt = e->waiters;
    e->waiters = NULL;
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_sub(&c->bytes, e->reserved);
    if (e->w) {
        atomic_fetch_add(&c->bytes, e->w->bytes);
        atomic_fetch_add(&e->stats->builds, 1);
        log_info("tables=%s: weights for alpha=%g epsilon=%g beta=%g built in %.3fs (%zu bytes)",
                 e->stats->name, e->p.alpha, e->p.epsilon, e->p.beta, e->w->build_seconds,
                 e->w->bytes);
    } else {
        atomic_fetch_add(&e->stats->failures, 1);
        log_warn("tables=%s: %s", e->stats->name, e->error);
    }
    while (wt) {
        icpnsd_waiter_t *next = wt->next;
        wt->wake(wt->arg);
        free(wt);
        wt = next;
    }
    icpns_snapshot_unref(e->snap);
    e->snap = NULL;
    icpnsd_wstats_unref(e->stats);
    e->stats = NULL;
    icpnsd_wentry_unref(e); /* the build's reference */
}

static void wbuild_async(uv_async_t *a)
{
    icpnsd_wbuilder_t *b = a->data;
    pthread_mutex_lock(&b->lock);
    icpnsd_wentry_t *q = b->queue;
    b->queue = NULL;
    pthread_mutex_unlock(&b->lock);
    while (q) {
        icpnsd_wentry_t *next = q->next;
        q->work.data = q;
        uv_queue_work(b->loop, &q->work, wbuild_work, wbuild_done);
        q = next;
    }
}

int icpnsd_wbuilder_init(icpnsd_wbuilder_t *b, uv_loop_t *loop)
{
    memset(b, 0, sizeof(*b));
    b->loop = loop;
    pthread_mutex_init(&b->lock, NULL);
    b->async.data = b;
    return uv_async_init(loop, &b->async, wbuild_async);
}

void icpnsd_wbuilder_free(icpnsd_wbuilder_t *b)
{
    pthread_mutex_destroy(&b->lock);
}

int icpnsd_weights_get(icpnsd_wbuilder_t *b, icpnsd_wstats_t *stats, icpns_snapshot_t *s,
                       const icpns_params_t *p, icpnsd_waiter_t *waiter, bool resumed,
                       icpnsd_wentry_t **ret, char *msg, size_t msgsize)
{
    wcache_t *c = s->ext;
    if (!c) {
        free(waiter);
        return ICPNSD_WGET_DISABLED;
    }
    /* What the memory budget leaves (asked before taking the cache's lock:
     * the answer reads every cache). */
    uint64_t room = b->room ? b->room(b->room_ctx) : UINT64_MAX;
    pthread_mutex_lock(&c->lock);
    icpnsd_wentry_t *e = NULL;
    for (uint32_t k = 0; k < c->n; k++)
        if (same_params(&c->e[k]->p, p)) {
            e = c->e[k];
            break;
        }
    if (e) {
        e->used = ++c->tick;
        if (e->state == W_READY) {
            atomic_fetch_add(&e->refs, 1);
            pthread_mutex_unlock(&c->lock);
            if (!resumed)
                atomic_fetch_add(&stats->hits, 1);
            free(waiter);
            *ret = e;
            return ICPNSD_WGET_READY;
        }
        if (e->state == W_FAILED) {
            snprintf(msg, msgsize, "%s", e->error);
            pthread_mutex_unlock(&c->lock);
            free(waiter);
            return ICPNSD_WGET_FAILED;
        }
        /* Building. */
        if (waiter) {
            waiter->next = e->waiters;
            e->waiters = waiter;
            pthread_mutex_unlock(&c->lock);
            atomic_fetch_add(&stats->waits, 1);
            return ICPNSD_WGET_WAITING;
        }
        pthread_mutex_unlock(&c->lock);
        atomic_fetch_add(&stats->busy, 1);
        snprintf(msg, msgsize, "the weights for alpha=%g epsilon=%g beta=%g are being built",
                 p->alpha, p->epsilon, p->beta);
        return ICPNSD_WGET_BUSY;
    }
    /* A miss.  Under the memory budget the new setting (about the size of
     * the snapshot's own weights) must fit beside everything the sets hold:
     * evict finished entries, least recently used first, until it does. */
    uint64_t need = s->weights->bytes;
    while (need > room) {
        int victim = -1;
        for (uint32_t k = 0; k < c->n; k++)
            if (c->e[k]->state != W_BUILDING && (victim < 0 || c->e[k]->used < c->e[victim]->used))
                victim = (int)k;
        if (victim < 0) {
            pthread_mutex_unlock(&c->lock);
            free(waiter);
            snprintf(msg, msgsize, "the weights for alpha=%g epsilon=%g beta=%g need %llu bytes; "
                     "memory_budget leaves %llu beside the sets' snapshots and caches",
                     p->alpha, p->epsilon, p->beta, (unsigned long long)need,
                     (unsigned long long)room);
            return ICPNSD_WGET_BUDGET;
        }
        icpnsd_wentry_t *old = c->e[victim];
        c->e[victim] = c->e[--c->n];
        uint64_t freed = old->w ? old->w->bytes : 0;
        atomic_fetch_sub(&c->bytes, freed);
        room += freed;
        atomic_fetch_add(&stats->evictions, 1);
        icpnsd_wentry_unref(old);
    }
    /* Make room in the cache (least recently used among the finished
     * entries). */
    if (c->n == c->cap) {
        int victim = -1;
        for (uint32_t k = 0; k < c->n; k++)
            if (c->e[k]->state != W_BUILDING && (victim < 0 || c->e[k]->used < c->e[victim]->used))
                victim = (int)k;
        if (victim < 0) {
            pthread_mutex_unlock(&c->lock);
            atomic_fetch_add(&stats->busy, 1);
            free(waiter);
            snprintf(msg, msgsize, "all %u weight settings of the cache are being built", c->cap);
            return ICPNSD_WGET_BUSY;
        }
        icpnsd_wentry_t *old = c->e[victim];
        c->e[victim] = c->e[--c->n];
        if (old->w)
            atomic_fetch_sub(&c->bytes, old->w->bytes);
        atomic_fetch_add(&stats->evictions, 1);
        icpnsd_wentry_unref(old); /* readers still holding it keep it alive */
    }
    e = calloc(1, sizeof(*e));
    if (!e) {
        pthread_mutex_unlock(&c->lock);
        free(waiter);
        return ICPNSD_WGET_NOMEM;
    }
    atomic_init(&e->refs, 2); /* the cache's and the build's */
    e->reserved = need; /* counted now, so that concurrent misses see it */
    atomic_fetch_add(&c->bytes, need);
    e->p = *p;
    e->state = W_BUILDING;
    e->used = ++c->tick;
    e->snap = icpns_snapshot_ref(s);
    e->stats = stats;
    atomic_fetch_add(&stats->refs, 1);
    if (waiter) {
        waiter->next = NULL;
        e->waiters = waiter;
    }
    c->e[c->n++] = e;
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_add(&stats->misses, 1);
    pthread_mutex_lock(&b->lock);
    e->next = b->queue;
    b->queue = e;
    pthread_mutex_unlock(&b->lock);
    uv_async_send(&b->async);
    if (waiter) {
        atomic_fetch_add(&stats->waits, 1);
        return ICPNSD_WGET_WAITING;
    }
    atomic_fetch_add(&stats->busy, 1);
    snprintf(msg, msgsize, "the weights for alpha=%g epsilon=%g beta=%g are being built",
             p->alpha, p->epsilon, p->beta);
    return ICPNSD_WGET_BUSY;
}

