/*
 * state.h - the serving snapshot and the rebuilds that replace it.
 *
 * Readers take the current snapshot with a reference under a mutex held for
 * a pointer copy and an increment (never during a build), use it for the
 * whole request, and drop the reference.  Rebuilds run on libuv's thread
 * pool, one at a time; jobs queued meanwhile (reloads, updates) are taken
 * together as the next batch, so concurrent reloads coalesce.  A new snapshot
 * is published by swapping the pointer under the same mutex; the old one is
 * freed by whoever drops its last reference.  A failed rebuild publishes
 * nothing: the old snapshot keeps serving.
 */
#ifndef ICPNSD_STATE_H
#define ICPNSD_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <uv.h>

#include "icpns.h"

typedef enum job_kind {
    JOB_RELOAD, JOB_INTERACTIONS, JOB_COMMUNITIES, JOB_CLUSTER, JOB_SET_ADD, JOB_SET_REMOVE
} job_kind_t;

struct cluster_req;
struct icpnsd_registry;

typedef struct icpnsd_job icpnsd_job_t;
typedef void (*icpnsd_job_done_cb)(icpnsd_job_t *job);

struct icpnsd_job {
    job_kind_t kind;
    icpns_pair_t *pairs; /* owned; (user, item) or (user, community) */
    size_t n;
    bool replace;        /* communities: replace all instead of merging */
    char origin[32];     /* "http", "SIGHUP", "watch" */
    struct cluster_req *cluster; /* JOB_CLUSTER: owned; freed with the job */
    char set_name[64];   /* JOB_SET_ADD / JOB_SET_REMOVE */
    char set_dir[1024];  /* JOB_SET_ADD */
    uint64_t set_bytes;  /* JOB_SET_ADD result */
    /* Result, written by the loop thread before done_cb. */
    int status;          /* HTTP status */
    char code[48];
    char message[512];
    uint64_t version;
    uint64_t fingerprint; /* of the serving snapshot (icpns_snapshot_fingerprint) */
    double build_seconds;
    char rebuild[8];     /* "patch" or "full" */
    uint32_t comms_rebuilt;
    /* JOB_CLUSTER results. */
    uint32_t k, *sizes;  /* sizes owned */
    double inertia, cluster_seconds;
    uint32_t iterations, best_restart;
    bool converged;
    icpnsd_job_done_cb done_cb; /* called on the loop thread; may be NULL */
    void *user;
    icpnsd_job_t *next;
};

typedef struct icpnsd_source {
    char path[1024];
    uint64_t bytes;
    uint64_t fnv1a;
} icpnsd_source_t;

/* What /admin/snapshot reports about the serving version. */
typedef struct icpnsd_meta {
    uint64_t version;
    uint64_t fingerprint;
    time_t built_at;
    double build_seconds;   /* load + index + weights */
    char rebuild[8];        /* "full" or "patch" (only what an update touched) */
    uint32_t comms_rebuilt; /* community tables computed for this version */
    icpnsd_source_t sources[4];
    int n_sources;
    char origin[32];
} icpnsd_meta_t;

typedef struct icpnsd_state {
    pthread_mutex_t lock;          /* guards current, meta, queue, closed */
    char name[64];                 /* the table set's name (logs, metrics) */
    struct icpnsd_registry *reg;   /* for the memory budget and weight caches */
    bool closed;                   /* removed: new jobs are refused */
    bool closing;                  /* loop thread: close once the build ends */
    atomic_uint_fast64_t self_write_ms; /* when the daemon last rewrote a table file */
    void (*closed_cb)(struct icpnsd_state *st); /* after the handle closed */
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
    icpnsd_job_t *batch;
    icpns_snapshot_t *built;
    icpnsd_meta_t built_meta;
    icpns_dataset_t *built_dataset;
    icpns_table_opts_t built_opts; /* the options the built version used */
    int build_rc;
    char build_error[512];
    char build_code[48];
    int build_status;
    uv_loop_t *loop;
    uv_async_t async;
    uv_work_t work;
    uint64_t next_version;
} icpnsd_state_t;

/*
 * Loads the tables (or generates the built-in dataset when @tables is empty)
 * and builds the first version: the number icpnsd.version records for the
 * same content, the next one for other content, else 1.  Returns 0, or
 * -1 with a message in @err, or ICPNS_ELIMIT (and a message) when the
 * snapshot would not fit in what memory_budget leaves beside the sets
 * already in @reg (refused before its weights are allocated).
 */
int icpnsd_state_init(icpnsd_state_t *st, uv_loop_t *loop, const char *name,
                      const char *tables, struct icpnsd_registry *reg, char *err,
                      size_t errsize);
/* Starts the loop handle (loop thread). */
int icpnsd_state_start(icpnsd_state_t *st);
/* Refuses new jobs, fails the queued ones, and closes the loop handle once
 * any running build has finished; then calls st->closed_cb (loop thread). */
void icpnsd_state_shutdown(icpnsd_state_t *st);
void icpnsd_state_free(icpnsd_state_t *st);

/* A new reference to the serving snapshot (never NULL once initialised). */
icpns_snapshot_t *icpnsd_state_acquire(icpnsd_state_t *st);

/* The serving snapshot and its metadata, taken together. */
icpns_snapshot_t *icpnsd_state_acquire_meta(icpnsd_state_t *st, icpnsd_meta_t *ret);

/* Copies the serving version's metadata. */
void icpnsd_state_meta(icpnsd_state_t *st, icpnsd_meta_t *ret);

/* Lowers the calling thread's scheduling priority (nice +10), once per
 * thread: rebuilds and weight builds on libuv's pool yield the CPU to the
 * threads that answer requests. */
void icpnsd_background_thread(void);

/* Frees a job and what it owns. */
void icpnsd_job_free(icpnsd_job_t *j);

/* Queues a job; thread-safe.  The job's done_cb runs on the loop thread. */
void icpnsd_state_submit(icpnsd_state_t *st, icpnsd_job_t *job);

#endif
