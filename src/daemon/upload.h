/*
 * upload.h - the uploads of the admin routes: POST /admin/cluster's
 * embeddings (JSON and .npy here, ICPE frames in frames.h) and options.
 * Pure functions, fuzzed and unit-tested alone.
 */
#ifndef ICPNSD_UPLOAD_H
#define ICPNSD_UPLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "icpns.h"
#include "request.h"

/* ---- POST /admin/cluster ------------------------------------------------- */

typedef struct icpnsd_clusterreq {
    icpns_embeddings_t emb; /* ids NULL (.npy): row r is the r-th user by ascending id */
    icpns_kmeans_opts_t ko;
    bool replace;           /* users not in the upload lose their community */
    bool dry_run;           /* cluster and report; change nothing */
    bool async;             /* answer 202 with a job to poll */
    char tables[ICPNSD_SET_NAME]; /* the set, from the body or the query */
} icpnsd_clusterreq_t;

void icpnsd_clusterreq_init(icpnsd_clusterreq_t *q);
void icpnsd_clusterreq_free(icpnsd_clusterreq_t *q);

/*
 * Sets one option ("k", "seed", "restarts", "max_iter", "tol", "replace",
 * "dry_run", "async", "tables") from text (a query-string value).  Unknown
 * keys and bad values are errors.
 */
int icpnsd_clusterreq_opt(icpnsd_clusterreq_t *q, const char *key, const char *value,
                          icpnsd_err_t *e);

/* {"users":[...], "embeddings":[[...],...], "k":8, "seed":..., ...} */
int icpnsd_clusterreq_parse_json(const char *body, size_t len, icpnsd_clusterreq_t *q,
                                 icpnsd_err_t *e);

/* A .npy body (options come from the query string). */
int icpnsd_clusterreq_parse_npy(const char *body, size_t len, icpnsd_clusterreq_t *q,
                                icpnsd_err_t *e);

/* Checks the options against the rows (k <= rows, finite values). */
int icpnsd_clusterreq_check(const icpnsd_clusterreq_t *q, icpnsd_err_t *e);

/* ---- POST /admin/sets with the data -------------------------------------- */

/* A table set uploaded over HTTP: what its files will hold. */
typedef struct icpnsd_tableset {
    char name[ICPNSD_SET_NAME];
    icpns_pair_t *inter;     /* (user, item); owned */
    size_t n_inter;
    icpns_pair_t *comm;      /* (user, community), one per user; owned */
    size_t n_comm;
    int64_t *items;          /* the catalogue beyond the interactions; owned, may be NULL */
    size_t n_items;
    bool has_alpha, has_epsilon, has_beta;
    double alpha, epsilon, beta;
} icpnsd_tableset_t;

void icpnsd_tableset_free(icpnsd_tableset_t *t);

/*
 * The JSON body of POST /admin/sets: a directory on the daemon's host
 * ({"name", "tables": DIR}: t->name and @ret_dir set) or the data itself
 * ({"name", "interactions": [[u, i], ...], "communities": [[u, c], ...],
 * "items"?: [...], "alpha"?, "epsilon"?, "beta"?}: @t filled, @ret_dir
 * empty).  Unknown fields are refused.  0, or -1 with @e (the row of a bad
 * pair).
 */
int icpnsd_sets_post_parse(const char *body, size_t len, icpnsd_tableset_t *t, char *ret_dir,
                           size_t dir_size, icpnsd_err_t *e);

/* A query-string parameter of the binary form ("name", "alpha",
 * "epsilon", "beta"). */
int icpnsd_tableset_opt(icpnsd_tableset_t *t, const char *key, const char *value,
                        icpnsd_err_t *e);

/* What both forms must satisfy once parsed (a name, some interactions,
 * one community per user, parameters in range). */
int icpnsd_tableset_check(const icpnsd_tableset_t *t, icpnsd_err_t *e);

#endif
