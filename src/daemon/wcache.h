/*
 * wcache.h - each snapshot's cache of weight settings other than its own.
 *
 * A request may ask for another (alpha, epsilon, beta) than its set's.
 * Each snapshot carries a bounded LRU cache of such settings (attached
 * before publication through the snapshot's ext hook, freed with it).  A
 * miss builds the setting on libuv's thread pool, never on a request
 * thread; requests for a setting being built wait for it (woken through a
 * waiter) or are told it is busy.  A reload starts an empty cache.
 */
#ifndef ICPNSD_WCACHE_H
#define ICPNSD_WCACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "icpns.h"

/* Counters of one table set's caches (across its versions), shared with
 * the builds in flight: reference-counted. */
typedef struct icpnsd_wstats {
    atomic_uint refs;
    char name[64]; /* the set's, for logs */
    atomic_uint_fast64_t hits, misses, builds, failures, evictions, waits, busy;
} icpnsd_wstats_t;

/* New counters for set @name (one reference), or NULL. */
icpnsd_wstats_t *icpnsd_wstats_new(const char *name);
void icpnsd_wstats_unref(icpnsd_wstats_t *st);

typedef struct icpnsd_wentry icpnsd_wentry_t;

/* Hands weight builds to the loop thread, which queues them on libuv's
 * thread pool. */
typedef struct icpnsd_wbuilder {
    /* What the memory budget leaves for a new setting (NULL: no budget). */
    uint64_t (*room)(void *ctx);
    void *room_ctx;
    uv_loop_t *loop;
    pthread_mutex_t lock;
    icpnsd_wentry_t *queue;
    uv_async_t async;
} icpnsd_wbuilder_t;

/* On the loop thread. */
int icpnsd_wbuilder_init(icpnsd_wbuilder_t *b, uv_loop_t *loop);
/* After the loop closed its handles. */
void icpnsd_wbuilder_free(icpnsd_wbuilder_t *b);

/* Who to wake when a setting is ready (allocated by the caller, owned by
 * the cache once given). */
typedef struct icpnsd_waiter {
    void (*wake)(void *arg);
    void *arg;
    struct icpnsd_waiter *next;
} icpnsd_waiter_t;

enum {
    ICPNSD_WGET_READY = 0,
    ICPNSD_WGET_WAITING = 1,
    ICPNSD_WGET_BUSY = -1,
    ICPNSD_WGET_FAILED = -2,
    ICPNSD_WGET_NOMEM = -3,
    ICPNSD_WGET_DISABLED = -4,
    ICPNSD_WGET_BUDGET = -5,
};

/*
 * The weights of @p over snapshot @s.  READY: *@ret is a referenced entry
 * (icpnsd_wentry_weights, then icpnsd_wentry_unref).  Otherwise the setting
 * is being built: with @waiter the caller is woken once it is ready
 * (WAITING); without, BUSY (with a message).  FAILED copies the build's
 * error into @msg; DISABLED: the snapshot has no cache; BUDGET: the setting
 * does not fit in memory_budget even after evicting the cache's finished
 * settings (with a message).  @resumed: a
 * request that waited looks again (not counted as a hit).
 */
int icpnsd_weights_get(icpnsd_wbuilder_t *b, icpnsd_wstats_t *stats, icpns_snapshot_t *s,
                       const icpns_params_t *p, icpnsd_waiter_t *waiter, bool resumed,
                       icpnsd_wentry_t **ret, char *msg, size_t msgsize);
const icpns_weights_t *icpnsd_wentry_weights(const icpnsd_wentry_t *e);
void icpnsd_wentry_unref(icpnsd_wentry_t *e);

/* Gives snapshot @s an empty cache of @cap settings (before publication). */
void icpnsd_wcache_attach(icpns_snapshot_t *s, uint32_t cap);

/* Entries and bytes of a snapshot's cache (either may be NULL). */
void icpnsd_wcache_usage(const icpns_snapshot_t *s, unsigned *entries, uint64_t *bytes);

#endif
