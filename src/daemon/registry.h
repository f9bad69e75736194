/*
 * registry.h - the named table sets the daemon serves.
 *
 * Each set (one per dataset or community assignment, e.g. ml100k-k4,
 * ml100k-k8) has its own state: snapshot, version, builds, updates, and
 * its weights-cache counters.  Requests look a set up by name and hold a
 * reference while they use it; sets are added and removed at run time on
 * the loop thread (additions load on the thread pool, one at a time), and
 * a removed set is freed after its last user.  Sets are opaque: handlers
 * use the accessors below.
 */
#ifndef ICPNSD_REGISTRY_H
#define ICPNSD_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "error.h"
#include "icpns.h"
#include "jobs.h"
#include "metrics.h"
#include "rebuild.h"
#include "wcache.h"

typedef struct icpnsd_registry icpnsd_registry_t;
typedef struct icpnsd_set icpnsd_set_t;

/* An empty registry whose handles live on @loop; NULL when out of memory. */
icpnsd_registry_t *icpnsd_registry_new(uv_loop_t *loop, const icpnsd_config_t *cfg);

/*
 * Loads the configured sets (cfg->tables as "default" unless empty while
 * named sets exist; the built-in dataset when there are none) and starts
 * their loop handles.  0, or -1 with a message in @err.
 */
int icpnsd_registry_load(icpnsd_registry_t *reg, char *err, size_t errsize);

/* Frees everything once the loop has closed all handles (uv_walk and
 * uv_close them first).  Accepts NULL. */
void icpnsd_registry_free(icpnsd_registry_t *reg);

/*
 * The set named @name (NULL or "": the only set, else the one named
 * "default").  Returns a reference (drop it with icpnsd_set_unref) or NULL
 * with *@why = 404 (unknown) or 400 (ambiguous).
 */
icpnsd_set_t *icpnsd_registry_get(icpnsd_registry_t *reg, const char *name, int *why);

/* The set unlabelled figures describe: the default (or only) set, else the
 * first one; a reference, or NULL when there is none. */
icpnsd_set_t *icpnsd_registry_main(icpnsd_registry_t *reg);

/* Every set, referenced, for listings; returns the count.  Unref each. */
unsigned icpnsd_registry_list(icpnsd_registry_t *reg, icpnsd_set_t **out, unsigned max);

/* "a, b, c": the names of the sets, for messages. */
void icpnsd_registry_names(icpnsd_registry_t *reg, char *buf, size_t size);

/* Bytes held by every set's serving snapshot and weights cache. */
uint64_t icpnsd_registry_bytes(icpnsd_registry_t *reg);

/* Queues an addition (ICPNSD_JOB_SET_ADD: job->u.set.name, .dir, .upload)
 * or a removal (ICPNSD_JOB_SET_REMOVE); thread-safe; the job ends on the
 * loop thread.  Removals run at once; additions load on the thread pool,
 * two at a time at most (a third is refused with registry_busy), so a load
 * that hangs holds only its own name and directory. */
void icpnsd_registry_submit(icpnsd_registry_t *reg, icpnsd_job_t *job);

/* The shutdown: asks the running k-means of every set, and the loads of
 * sets being added, to stop (loop thread). */
void icpnsd_registry_cancel(icpnsd_registry_t *reg);

/* Reloads every set (SIGHUP). */
void icpnsd_registry_reload_all(icpnsd_registry_t *reg, const char *origin);

/* Watches every set's table directory (cfg->watch; loop thread). */
void icpnsd_registry_watch(icpnsd_registry_t *reg);


/* ---- one set ------------------------------------------------------------------ */

void icpnsd_set_unref(icpnsd_set_t *set);
const char *icpnsd_set_name(const icpnsd_set_t *set);
/* The table directory ("" for the built-in dataset). */
const char *icpnsd_set_dir(const icpnsd_set_t *set);
/* The name of its popularity file in that directory ("" when none). */
const char *icpnsd_set_popularity_file(const icpnsd_set_t *set);
bool icpnsd_set_ready(icpnsd_set_t *set);
/* A reference to the serving snapshot. */
icpns_snapshot_t *icpnsd_set_acquire(icpnsd_set_t *set);
icpns_snapshot_t *icpnsd_set_acquire_meta(icpnsd_set_t *set, icpnsd_meta_t *ret);
void icpnsd_set_meta(icpnsd_set_t *set, icpnsd_meta_t *ret);
/* Queues a reload or update job on the set. */
void icpnsd_set_submit(icpnsd_set_t *set, icpnsd_job_t *job);
/* The set's weights-cache counters (valid while the set is held). */
const icpnsd_wstats_t *icpnsd_set_wstats(const icpnsd_set_t *set);
/* The set's counters (borrowed: valid while the set is held; take a
 * reference with icpnsd_setstats_ref to keep them longer). */
icpnsd_setstats_t *icpnsd_set_stats(const icpnsd_set_t *set);
/* icpnsd_weights_get for this set. */
int icpnsd_set_weights(icpnsd_set_t *set, icpns_snapshot_t *s, const icpns_params_t *p,
                       icpnsd_waiter_t *waiter, bool resumed, icpnsd_wentry_t **ret, char *msg,
                       size_t msgsize);

#endif
