/*
 * icpns/gen.h - a seeded synthetic dataset with planted communities and
 * power-law popularity: the tests' and the default dataset's source, so the
 * repository never needs external data.
 *
 * Each user belongs to one of K planted communities (uniformly at random).
 * Items are split into K home blocks.  An interaction picks a user with a
 * Zipf(0.6) activity, then with probability @affinity an item from the user's
 * community block by Zipf(1.0) within the block, otherwise an item from the
 * whole catalogue by Zipf(0.9) global popularity.  Duplicate pairs are
 * dropped, so the distinct count may be slightly below @interactions.
 */
#ifndef ICPNS_GEN_H
#define ICPNS_GEN_H

#include <stdint.h>
#include "icpns/common.h"
#include "icpns/dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct icpns_gen_opts {
    uint32_t users, items, communities;
    uint64_t interactions; /* draws; distinct pairs are at most this */
    uint64_t seed;
    double affinity;       /* share of in-community draws, default 0.8 */
    int64_t user_base;     /* external id of the first user (default 1) */
    int64_t item_base;     /* external id of the first item (default 1) */
} icpns_gen_opts_t;

ICPNS_EXPORT void icpns_gen_opts_default(icpns_gen_opts_t *o);

/*
 * Generates a dataset: distinct interactions sorted by (user, item) and one
 * community per user.  Returns 0, ICPNS_EINVAL (zero sizes, more
 * communities than items) or ICPNS_ENOMEM.
 */
ICPNS_EXPORT int icpns_gen(const icpns_gen_opts_t *o, icpns_dataset_t **ret, icpns_error_t *err);

/*
 * Writes @d as a table directory @dir (created if missing):
 * interactions.tsv, communities.tsv and tables.json with @p, each atomically.
 */
ICPNS_EXPORT int icpns_gen_write_dir(const icpns_dataset_t *d, const icpns_params_t *p,
                                     const char *dir, icpns_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
