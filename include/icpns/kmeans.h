/*
 * icpns/kmeans.h - k-means for turning user embeddings into communities,
 * and readers for the embedding files trainers write.
 *
 * k-means++ seeding (greedy, 2 + ln k candidates per step, as scikit-learn
 * does), Lloyd iterations until the centres move less than tol (relative to
 * the data's mean per-feature variance, scikit-learn's convention) or
 * max_iter, several restarts keeping the lowest inertia.  An empty cluster
 * takes the point farthest from its centre.  Deterministic for a seed: all
 * randomness comes from the counter-based generator of (seed, restart, step),
 * and every sum runs in a fixed order: by blocks of rows, added in block
 * order, so that the result does not depend on the number of threads.
 */
#ifndef ICPNS_KMEANS_H
#define ICPNS_KMEANS_H

#include <stdint.h>
#include "icpns/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct icpns_kmeans_opts {
    uint32_t k;
    uint32_t restarts;  /* default 4 */
    uint32_t max_iter;  /* per restart, default 300 */
    double tol;         /* default 1e-4 */
    uint64_t seed;      /* default 2026 */
    uint32_t threads;   /* threads for the passes over the rows (0 or 1:
                         * the caller's only; at most 256); the result is
                         * the same for every value */
    /* Called after each restart with (restart, restarts, its inertia) for
     * progress reports; may be NULL. */
    void (*progress)(void *arg, uint32_t restart, uint32_t restarts, double inertia);
    /* Called before each Lloyd iteration @iteration (from 1) of restart
     * @restart (from 0) with the inertia of the current centres; returning
     * non-zero cancels the run (ICPNS_ECANCELED).  May be NULL.  Both
     * callbacks get progress_arg, on the caller's thread. */
    int (*iteration)(void *arg, uint32_t restart, uint32_t iteration, double inertia);
    void *progress_arg;
} icpns_kmeans_opts_t;

typedef struct icpns_kmeans_result {
    uint32_t k, dim;
    uint32_t *labels;     /* cluster of each row, 0..k-1 */
    double *centers;      /* k x dim */
    uint32_t *sizes;      /* rows per cluster (every one >= 1) */
    double inertia;       /* sum of squared distances to the centres */
    uint32_t iterations;  /* Lloyd iterations of the kept restart */
    uint32_t best_restart;
    uint32_t reseeded;    /* empty clusters re-seeded (kept restart) */
    bool converged;       /* the kept restart met tol before max_iter */
} icpns_kmeans_result_t;

ICPNS_EXPORT void icpns_kmeans_opts_default(icpns_kmeans_opts_t *o);

/*
 * Clusters the @n rows of @x (row-major, n x dim floats).  Needs
 * 1 <= k <= n, dim >= 1, finite values; ICPNS_EINVAL otherwise (the field
 * or the first non-finite row in @err), ICPNS_ENOMEM.  On success the
 * caller frees *@ret with icpns_kmeans_result_free.
 */
ICPNS_EXPORT int icpns_kmeans(const float *x, uint32_t n, uint32_t dim,
                              const icpns_kmeans_opts_t *o, icpns_kmeans_result_t *ret,
                              icpns_error_t *err);

ICPNS_EXPORT void icpns_kmeans_result_free(icpns_kmeans_result_t *r);

/* Embeddings as loaded: ids (when the file names them) and a float matrix. */
typedef struct icpns_embeddings {
    uint32_t n, dim;
    int64_t *ids;  /* n user ids, or NULL when the file has none */
    float *x;      /* n x dim */
} icpns_embeddings_t;

/*
 * Parses a NumPy .npy file (version 1-3, 2-D, little-endian float32 or
 * float64, C order) from memory.  No ids.  ICPNS_EPARSE with what is wrong.
 */
ICPNS_EXPORT int icpns_embeddings_parse_npy(const void *buf, size_t len, const char *path,
                                            icpns_embeddings_t *ret, icpns_error_t *err);

/*
 * Parses TSV/whitespace text "user v1 v2 ..." (every row the same length;
 * '#' comments and blank lines skipped).  ICPNS_EPARSE with the line.
 */
ICPNS_EXPORT int icpns_embeddings_parse_tsv(const char *buf, size_t len, const char *path,
                                            icpns_embeddings_t *ret, icpns_error_t *err);

/* Reads a file: .npy by its magic, text otherwise. */
ICPNS_EXPORT int icpns_embeddings_load(const char *path, icpns_embeddings_t *ret,
                                       icpns_error_t *err);

ICPNS_EXPORT void icpns_embeddings_free(icpns_embeddings_t *e);

#ifdef __cplusplus
}
#endif
#endif
