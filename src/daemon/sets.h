/*
 * sets.h - named table sets, and the per-set cache of weight settings.
 *
 * The registry holds every table set the daemon serves (one per dataset or
 * community assignment, e.g. ml100k-k4, ml100k-k8), each with its own state:
 * snapshot, version, rebuilds, updates.  Requests look a set up by name and
 * hold a reference while they use it; sets are added and removed at run
 * time on the loop thread, and a removed set is freed after its last user.
 *
 * Each snapshot carries a bounded LRU cache of the weights of other
 * (alpha, epsilon, beta) settings than its default.  A miss builds the
 * setting on libuv's thread pool, never on a request thread; requests for a
 * setting being built wait for it (their connections suspended) or get 503,
 * by configuration.  A reload starts an empty cache.
 */
#ifndef ICPNSD_SETS_H
#define ICPNSD_SETS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "state.h"

typedef struct icpnsd_wstats {
    atomic_uint_fast64_t hits, misses, builds, failures, evictions, waits, busy;
} icpnsd_wstats_t;

typedef struct icpnsd_set {
    atomic_uint refs;
    char name[ICPNSD_SET_NAME];
    icpnsd_state_t st;
    struct icpnsd_registry *reg;
    icpnsd_wstats_t wstats;
    /* Loop thread only. */
    bool watching;
    uv_fs_event_t watch;
    uv_timer_t debounce;
} icpnsd_set_t;

typedef struct icpnsd_wentry icpnsd_wentry_t;

typedef struct icpnsd_registry {
    pthread_rwlock_t lock; /* guards sets[] and n */
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n;
    uv_loop_t *loop;
    const icpnsd_config_t *cfg;
    /* Weight builds, handed to the loop thread. */
    pthread_mutex_t wlock;
    icpnsd_wentry_t *wq;
    uv_async_t wasync;
    /* Set additions and removals, one at a time on the loop thread. */
    pthread_mutex_t alock;
    icpnsd_job_t *aq_head, *aq_tail;
    bool abusy;
    uv_async_t aasync;
    uv_work_t awork;
    icpnsd_job_t *ajob;
    icpnsd_set_t *anew;
} icpnsd_registry_t;

/* Loads the configured sets (cfg->tables as "default" unless empty while
 * named sets exist; the built-in dataset when there are none) and starts
 * their loop handles.  Returns 0, or -1 with a message in @err. */
int icpnsd_registry_init(icpnsd_registry_t *reg, uv_loop_t *loop, const icpnsd_config_t *cfg,
                         char *err, size_t errsize);
/* Frees everything once the loop has closed all handles. */
void icpnsd_registry_free(icpnsd_registry_t *reg);

/*
 * The set named @name (NULL or "": the only set, else the one named
 * "default").  Returns a reference (drop it with icpnsd_set_unref) or NULL
 * with *@why = 404 (unknown) or 400 (ambiguous).
 */
icpnsd_set_t *icpnsd_registry_get(icpnsd_registry_t *reg, const char *name, int *why);
void icpnsd_set_unref(icpnsd_set_t *set);

/* Every set, referenced, for listings and metrics; returns the count.
 * Unref each when done. */
unsigned icpnsd_registry_list(icpnsd_registry_t *reg, icpnsd_set_t **out, unsigned max);

/* Bytes held by every set's serving snapshot and weights cache, except
 * the state @except (may be NULL). */
uint64_t icpnsd_registry_bytes(icpnsd_registry_t *reg, const icpnsd_state_t *except);

/* Queues an addition (JOB_SET_ADD: job->set_name, job->set_dir) or a
 * removal (JOB_SET_REMOVE); thread-safe; done_cb on the loop thread. */
void icpnsd_registry_submit(icpnsd_registry_t *reg, icpnsd_job_t *job);

/* Reloads every set (SIGHUP). */
void icpnsd_registry_reload_all(icpnsd_registry_t *reg, const char *origin);

/* Watches every set's table directory (cfg->watch). */
void icpnsd_registry_watch(icpnsd_registry_t *reg);

/* ---- weights of other settings ------------------------------------------ */

typedef struct icpnsd_waiter {
    void (*wake)(void *arg);
    void *arg;
    struct icpnsd_waiter *next;
} icpnsd_waiter_t;

enum { WGET_READY = 0, WGET_WAITING = 1, WGET_BUSY = -1, WGET_FAILED = -2, WGET_NOMEM = -3,
       WGET_DISABLED = -4 };

/*
 * The weights of @p over snapshot @s of @set.  WGET_READY: *@ret is a
 * referenced entry (icpnsd_wentry_weights, then icpnsd_wentry_unref).
 * Otherwise the setting is being built: with @waiter (allocated by the
 * caller, owned by the cache from then on) the caller is woken once it is
 * ready (WGET_WAITING); without, WGET_BUSY.  WGET_FAILED copies the build's
 * error into @msg.  @resumed: a request that waited looks again (not a hit).
 */
int icpnsd_weights_get(icpnsd_set_t *set, icpns_snapshot_t *s, const icpns_params_t *p,
                       icpnsd_waiter_t *waiter, bool resumed, icpnsd_wentry_t **ret, char *msg,
                       size_t msgsize);
const icpns_weights_t *icpnsd_wentry_weights(const icpnsd_wentry_t *e);
void icpnsd_wentry_unref(icpnsd_wentry_t *e);

/* Gives snapshot @s an empty cache of @cap settings (before publication). */
void icpnsd_wcache_attach(icpns_snapshot_t *s, uint32_t cap);

/* Entries and bytes of a snapshot's cache. */
void icpnsd_wcache_usage(const icpns_snapshot_t *s, unsigned *entries, uint64_t *bytes);

/* Appends the per-set Prometheus series to @buf (a malloc'd string). */
char *icpnsd_registry_metrics(icpnsd_registry_t *reg, char *buf, size_t *len, size_t *cap);

#endif
