/* request.h - parsing POST /v1/negatives bodies (JSON and binary frames),
 * apart from the HTTP glue so that the parsers can be fuzzed alone. */
#ifndef ICPNSD_REQUEST_H
#define ICPNSD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "icpns.h"

#define FRAME_REQ_MAGIC "ICPQ"
#define FRAME_RESP_MAGIC "ICPR"
#define FRAME_REQ_HEADER 40
#define FRAME_RESP_HEADER 32

#define MAX_PARTS 8

typedef struct part {
    icpns_strategy_t strategy;
    uint32_t n;
} part_t;

typedef struct neg_req {
    int64_t *users;
    uint32_t rows;
    part_t parts[MAX_PARTS];
    int nparts;
    bool mixed;
    uint32_t n;          /* total negatives per row */
    uint32_t m;          /* candidates per negative */
    uint64_t seed;
    bool probs;
    unsigned flags;
    bool binary_in;
    /* Optional: the table set, and a weight setting other than the set's. */
    char tables[ICPNSD_SET_NAME];
    bool has_alpha, has_epsilon, has_beta;
    double alpha, epsilon, beta;
} neg_req_t;


/* Why a request was refused: the HTTP status, machine code, field, row. */
typedef struct icpnsd_reqerr {
    unsigned status;
    char code[48];
    char field[48];
    long long row;
    char message[512];
} icpnsd_reqerr_t;

/*
 * Parses a JSON negatives request into @q (q->users is allocated; free it
 * with icpnsd_neg_req_free, also on failure).  @fallback_seed is used when
 * the request has no seed.  Returns 0, or -1 with @e filled.
 */
/* Whether JSON requests read "users" with the fast path (on; the fuzzer
 * turns it off to compare both paths). */
extern bool icpnsd_json_fastpath;

int icpnsd_parse_negatives_json(const icpnsd_config_t *cfg, int default_strategy,
                                uint64_t fallback_seed, const char *body, size_t len,
                                neg_req_t *q, icpnsd_reqerr_t *e);

/* The same for a binary request frame (proto/frames.md). */
int icpnsd_parse_negatives_frame(const icpnsd_config_t *cfg, const char *body, size_t len,
                                 neg_req_t *q, icpnsd_reqerr_t *e);

void icpnsd_neg_req_free(neg_req_t *q);

/*
 * Applies a query-string parameter of POST /v1/negatives ("tables",
 * "alpha", "epsilon", "beta") to @q; a value the body already gave
 * differently is a 400.  Other keys are ignored.
 */
int icpnsd_negatives_query(neg_req_t *q, const char *key, const char *value, icpnsd_reqerr_t *e);

/* ---- POST /admin/cluster ------------------------------------------------- */

#define FRAME_EMB_MAGIC "ICPE"
#define FRAME_EMB_HEADER 40

typedef struct cluster_req {
    icpns_embeddings_t emb; /* ids NULL (.npy): row r is the r-th user by ascending id */
    icpns_kmeans_opts_t ko;
} cluster_req_t;

/*
 * Sets one k-means option ("k", "seed", "restarts", "max_iter", "tol") from
 * text (a query-string value).  Unknown keys and bad values are 400s.
 */
int icpnsd_cluster_opt(cluster_req_t *q, const char *key, const char *value, icpnsd_reqerr_t *e);

/* {"users":[...], "embeddings":[[...],...], "k":8, "seed":..., ...} */
int icpnsd_parse_cluster_json(const char *body, size_t len, cluster_req_t *q, icpnsd_reqerr_t *e);

/* An ICPE frame: 40-byte header, int64 users, float32 row-major matrix
 * (proto/frames.md). */
int icpnsd_parse_cluster_frame(const char *body, size_t len, cluster_req_t *q,
                               icpnsd_reqerr_t *e);

/* A .npy body (options come from the query string). */
int icpnsd_parse_cluster_npy(const char *body, size_t len, cluster_req_t *q, icpnsd_reqerr_t *e);

/* Checks the options against the rows (k <= rows, limits). */
int icpnsd_cluster_check(const cluster_req_t *q, icpnsd_reqerr_t *e);

void icpnsd_cluster_req_init(cluster_req_t *q);
void icpnsd_cluster_req_free(cluster_req_t *q);

#endif
