/*
 * icpns/shard.h - splitting one table directory into user shards.
 *
 * Shard s of S holds the users u with icpns_shard_of(u, S) == s: their
 * positives and community assignments, plus what every shard needs to
 * serve exactly the distributions of the whole tables: the global catalogue
 * (items.tsv), the global pop_c(i) (popularity.tsv) and a tables.json with
 * "popularity_source": "file" and the same alpha, epsilon and beta.  Then
 * for every user of a shard, uniform and ICPNS probabilities equal those of
 * the whole tables, and PNS ones too when every user has a community (PNS
 * in "file" mode counts pop(i) as the sum over communities of pop_c(i)).
 */
#ifndef ICPNS_SHARD_H
#define ICPNS_SHARD_H

#include <stdint.h>
#include "icpns/common.h"
#include "icpns/snapshot.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What icpns_shard_write wrote, per shard. */
typedef struct icpns_shard_stats {
    uint64_t users;        /* users with positives or a community */
    uint64_t pairs;        /* distinct (user, item) pairs */
} icpns_shard_stats_t;

/*
 * Writes the @shards (1..65536) shards of @s into new directories
 * @outdir/s0 .. s{shards-1} (@outdir is created if missing; a shard
 * directory that already exists is refused: it could hold another
 * deployment's journal).  @note (may be NULL) goes into each tables.json's
 * "_comment".  @ret_stats (may be NULL) gets @shards entries.
 *
 * Returns 0, ICPNS_EINVAL (bad @shards, or a shard that would have no
 * interactions: nothing is written then), ICPNS_EIO, ICPNS_ENOMEM.
 */
ICPNS_EXPORT int icpns_shard_write(const icpns_snapshot_t *s, uint32_t shards, const char *outdir,
                                   const char *note, icpns_shard_stats_t *ret_stats,
                                   icpns_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
