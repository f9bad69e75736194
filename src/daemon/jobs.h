/*
 * jobs.h - the work that changes a table set or the set registry: reloads,
 * updates, clustering, set additions and removals.  Each kind carries its
 * own payload; icpnsd_job_free frees what the kind owns.  The result (an
 * error, or the version that serves the change) is written by the thread
 * that ran the job before its done callback runs on the loop thread.
 */
#ifndef ICPNSD_JOBS_H
#define ICPNSD_JOBS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "icpns.h"
#include "request.h"
#include "upload.h"

typedef enum icpnsd_job_kind {
    ICPNSD_JOB_RELOAD,
    ICPNSD_JOB_INTERACTIONS,
    ICPNSD_JOB_COMMUNITIES,
    ICPNSD_JOB_CLUSTER,
    ICPNSD_JOB_SET_ADD,
    ICPNSD_JOB_SET_REMOVE,
} icpnsd_job_kind_t;

/* What a rebuild published (or, when nothing changed, what serves). */
typedef struct icpnsd_build_info {
    uint64_t version;
    uint64_t fingerprint;
    double build_seconds;
    char rebuild[8];        /* "full", "patch", or "" when nothing was built */
    uint32_t comms_rebuilt;
} icpnsd_build_info_t;

typedef struct icpnsd_job icpnsd_job_t;
typedef void (*icpnsd_job_done_cb)(icpnsd_job_t *job);

/* Pairs of an update: (user, item) or (user, community). */
typedef struct icpnsd_job_update {
    icpns_pair_t *pairs;   /* owned */
    size_t n;
    bool replace;          /* communities: replace all instead of merging */
} icpnsd_job_update_t;

typedef struct icpnsd_job_cluster {
    icpnsd_clusterreq_t *req;   /* owned until k-means ran */
    icpnsd_job_update_t assign; /* the labels, as a replacing communities update */
    bool dry_run;               /* report only: nothing is written or published */
    uint32_t k, *sizes;         /* sizes owned */
    double inertia, seconds;
    uint32_t iterations, best_restart;
    bool converged;
    uint32_t changed;           /* users of the upload whose community id changes */
    uint32_t moved;             /* ... that leave their group (labels matched) */
    uint32_t unassigned;        /* users with a community that the upload leaves out */
    /* Progress, written by the k-means thread, read by anyone. */
    atomic_uint progress_restart, progress_restarts, progress_iteration, progress_max_iter;
    _Atomic double progress_inertia;
    atomic_bool cancel;         /* asks k-means to stop */
    atomic_bool canceled_by_client; /* ... because of DELETE /admin/jobs/ID, not a shutdown */
} icpnsd_job_cluster_t;

typedef struct icpnsd_job_set {
    char name[ICPNSD_SET_NAME];
    char dir[1024];             /* SET_ADD */
    icpnsd_tableset_t *upload;  /* SET_ADD of uploaded data: written to dir first; owned */
    uint64_t bytes;             /* SET_ADD: the new set's snapshot */
} icpnsd_job_set_t;

struct icpnsd_job {
    icpnsd_job_kind_t kind;
    char origin[32];            /* "http", "SIGHUP", "watch", "cluster" */
    union {
        icpnsd_job_update_t update;     /* INTERACTIONS, COMMUNITIES */
        icpnsd_job_cluster_t cluster;   /* CLUSTER */
        icpnsd_job_set_t set;           /* SET_ADD, SET_REMOVE */
    } u;
    atomic_bool started;        /* a build thread took it (for job listings) */
    /* The result. */
    bool finished;
    icpnsd_err_t err;
    icpnsd_build_info_t out;
    icpnsd_job_done_cb done_cb; /* on the loop thread; NULL: the job is freed */
    void *user;
    icpnsd_job_t *next;
};

/* A new job of @kind with @origin, or NULL (out of memory). */
icpnsd_job_t *icpnsd_job_new(icpnsd_job_kind_t kind, const char *origin);

/* Frees @j and what its kind owns.  Accepts NULL. */
void icpnsd_job_free(icpnsd_job_t *j);

/* The update pairs of a job (interactions, communities, or a cluster's
 * labels once k-means ran); NULL for the other kinds. */
icpnsd_job_update_t *icpnsd_job_update(icpnsd_job_t *j);

/* Records @e as the job's result unless it has one already. */
void icpnsd_job_fail(icpnsd_job_t *j, const icpnsd_err_t *e);

/* Ends @j: runs its done callback, or frees it when it has none. */
void icpnsd_job_finish(icpnsd_job_t *j);

#endif
