/*
 * state.h - one table set's serving snapshot and the builds that replace it.
 *
 * Readers take the current snapshot with a reference under a mutex held for
 * a pointer copy and an increment (never during a build), use it for the
 * whole request, and drop the reference.  Builds run on libuv's thread
 * pool, one at a time (rebuild.c); jobs queued meanwhile (reloads, updates)
 * are taken together as the next batch, so concurrent reloads coalesce.  A
 * new snapshot is published by swapping the pointer under the same mutex;
 * the old one is freed by whoever drops its last reference.  A failed build
 * publishes nothing: the old snapshot keeps serving.
 *
 * The state knows nothing of other sets: its owner gives it hooks for the
 * memory budget, for preparing a snapshot before publication and for the
 * end of a shutdown.
 */
#ifndef ICPNSD_STATE_H
#define ICPNSD_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "icpns.h"
#include "jobs.h"
#include "metrics.h"
#include "rebuild.h"

typedef struct icpnsd_state icpnsd_state_t;

typedef struct icpnsd_state_hooks {
    void *ctx;
    icpnsd_budget_fn budget;                    /* may be NULL: no budget */
    void (*prepare)(void *ctx, icpns_snapshot_t *s); /* before publication; may be NULL */
    void (*closed)(void *ctx, icpnsd_state_t *st);   /* after a shutdown; may be NULL */
    icpns_params_t default_params;              /* unless tables.json says otherwise */
    unsigned cluster_threads;                   /* k-means threads; 0: online CPUs */
    icpnsd_setstats_t *stats;                   /* the set's counters (borrowed); may be NULL */
} icpnsd_state_hooks_t;

struct icpnsd_state {
    pthread_mutex_t lock;          /* guards current, meta, queue, closed */
    char name[64];                 /* the table set's name (logs) */
    icpnsd_state_hooks_t hooks;
    bool closed;                   /* removed: new jobs are refused */
    atomic_uint_fast64_t self_write_ms; /* when the daemon last rewrote a table file */
    icpns_snapshot_t *current;
    icpnsd_meta_t meta;
    icpnsd_job_t *queue_head, *queue_tail;
    atomic_bool ready;

    /* Owned by the loop thread (and by the one running build). */
    char tables[1024];             /* empty: built-in dataset */
    icpns_table_opts_t opts;
    icpns_dataset_t *dataset;      /* the raw tables the current version came from */
    bool in_sync;                  /* current was built from dataset as it is */
    bool building;
    bool closing;                  /* close once the build ends */
    icpnsd_job_t *batch;
    icpnsd_rebuild_in_t rin;
    icpnsd_rebuild_out_t rout;
    uv_loop_t *loop;
    uv_async_t async;
    uv_work_t work;
    uint64_t next_version;
};

/*
 * Loads the tables (or generates the built-in dataset when @tables is empty)
 * and builds the first version: the number icpnsd.version records for the
 * same content, the next one for other content, else 1.  Returns 0, or -1
 * with @e (tables_invalid, tables_unreadable, memory_budget_exceeded when
 * the snapshot would not fit in what the budget leaves, ...).
 */
int icpnsd_state_init(icpnsd_state_t *st, uv_loop_t *loop, const char *name,
                      const char *tables, const icpnsd_state_hooks_t *hooks, icpnsd_err_t *e);

/* Starts the loop handle (loop thread). */
int icpnsd_state_start(icpnsd_state_t *st);

/* Refuses new jobs, fails the queued ones, and closes the loop handle once
 * any running build has finished; then calls hooks.closed (loop thread). */
void icpnsd_state_shutdown(icpnsd_state_t *st);

/* Asks a running k-means of the current batch to stop (loop thread). */
void icpnsd_state_cancel(icpnsd_state_t *st);

/* Frees what the state holds, failing jobs still queued (after its handle
 * closed, or if never started). */
void icpnsd_state_free(icpnsd_state_t *st);

/* A new reference to the serving snapshot (never NULL once initialised). */
icpns_snapshot_t *icpnsd_state_acquire(icpnsd_state_t *st);

/* The serving snapshot and its metadata, taken together. */
icpns_snapshot_t *icpnsd_state_acquire_meta(icpnsd_state_t *st, icpnsd_meta_t *ret);

/* Copies the serving version's metadata. */
void icpnsd_state_meta(icpnsd_state_t *st, icpnsd_meta_t *ret);

/* Queues a job; thread-safe.  The job ends (icpnsd_job_finish) on the loop
 * thread. */
void icpnsd_state_submit(icpnsd_state_t *st, icpnsd_job_t *job);

#endif
