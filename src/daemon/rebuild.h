/*
 * rebuild.h - what a table set's builds do, on libuv's thread pool: load
 * the tables, apply a batch of updates to the raw dataset (durably: journal
 * and communities file first), run k-means for a cluster job, and build the
 * next version, as a patch of the serving one when the change allows it,
 * in full otherwise.  Nothing here publishes: the caller (state.c) swaps
 * the result in on the loop thread.
 */
#ifndef ICPNSD_REBUILD_H
#define ICPNSD_REBUILD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "error.h"
#include "icpns.h"
#include "jobs.h"

typedef struct icpnsd_source {
    char path[1024];
    uint64_t bytes;
    uint64_t fnv1a;
} icpnsd_source_t;

/* What /admin/snapshot reports about a version. */
typedef struct icpnsd_meta {
    uint64_t version;
    uint64_t fingerprint;
    time_t built_at;
    double build_seconds;   /* load + index + weights */
    char rebuild[8];        /* "full" or "patch" (only what an update touched) */
    uint32_t comms_rebuilt; /* community tables computed for this version */
    icpnsd_source_t sources[6];
    int n_sources;
    char origin[32];
} icpnsd_meta_t;

/*
 * The byte limit of a build under the memory budget, given by the set's
 * owner: what the budget leaves beside the other sets (0: no budget);
 * *@others gets the bytes they hold, *@budget the budget.  Called on the
 * build thread.
 */
typedef size_t (*icpnsd_budget_fn)(void *ctx, const void *self, uint64_t *others,
                                   uint64_t *budget);

/* What a build starts from. */
typedef struct icpnsd_rebuild_in {
    const char *name;                  /* the set's, for logs and messages */
    const char *tables;                /* the directory; "" for the built-in dataset */
    icpns_dataset_t *dataset;          /* the raw tables of the serving version
                                          (updates are appended to it) */
    icpns_table_opts_t opts;
    icpns_params_t default_params;     /* unless tables.json says otherwise */
    icpns_snapshot_t *current;         /* the serving version (a reference) */
    bool in_sync;                      /* current was built from dataset as it is */
    icpnsd_job_t *batch;               /* the jobs, in order */
    uint64_t next_version;
    icpnsd_meta_t meta;                /* of the serving version */
    icpnsd_budget_fn budget;           /* may be NULL */
    void *budget_ctx;
    const void *budget_self;
    atomic_uint_fast64_t *self_write_ms; /* stamped around the daemon's own writes */
    unsigned cluster_threads;          /* 0: online CPUs */
} icpnsd_rebuild_in_t;

/* What it produced. */
typedef struct icpnsd_rebuild_out {
    icpns_snapshot_t *built;           /* the new version, or NULL */
    icpns_dataset_t *dataset;          /* a reloaded dataset to adopt, or NULL */
    icpns_table_opts_t opts;           /* the options @built used */
    icpnsd_meta_t meta;                /* of @built */
    bool in_sync;                      /* whether the dataset and @built agree */
} icpnsd_rebuild_out_t;

/*
 * Runs a batch (the thread pool).  Each job ends with an error or not;
 * out->built is the new version when something changed and it built.
 */
void icpnsd_rebuild_run(const icpnsd_rebuild_in_t *in, icpnsd_rebuild_out_t *out);

/*
 * Loads a table directory (or generates the built-in dataset when @tables
 * is empty): tables.json over @opts (set to the defaults and
 * @default_params first), the files and the journal, whose interrupted
 * tail is cut first.  Logs what each file gave (format, lines, pairs) for
 * set @name and fills @meta's sources.  0 or an ICPNS_E* code with @err.
 */
int icpnsd_rebuild_load(const char *name, const char *tables,
                        const icpns_params_t *default_params, icpns_table_opts_t *opts,
                        icpns_dataset_t **ret, icpnsd_meta_t *meta, icpns_error_t *err);

/* The daemon error for a failed load (reload) or build (after updates). */
void icpnsd_rebuild_load_error(int rc, const icpns_error_t *err, icpnsd_err_t *e);

/* Fault injection for the tests of slow work (shutdown during a build):
 * sleeps ICPNSD_TEST_DELAY_MS milliseconds when that variable is set.
 * Called at the start of builds, weight builds, set loads and compute-pool
 * tasks. */
void icpnsd_test_delay(void);

/* Fault injection for the tests of a load that hangs (a slow disk): a set
 * addition of a directory whose path starts with ICPNSD_TEST_STALL_DIR
 * sleeps until *@cancel (the shutdown) or 120 s. */
void icpnsd_test_stall(const char *dir, atomic_bool *cancel);

/* Lowers the calling thread's scheduling priority (nice +10), once per
 * thread: builds yield the CPU to the threads that answer requests. */
void icpnsd_background_thread(void);

#endif
