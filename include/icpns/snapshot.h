/*
 * icpns/snapshot.h - one immutable, reference-counted version of the tables.
 *
 * A snapshot holds everything a request needs: the id maps, the positives of
 * every user (CSR, sorted), the community of every user, the sparse
 * in-community popularity counts pop_c(i), global popularity pop(i), and the
 * weights (alias tables) of its default parameter setting.  Once built it is
 * never written again, so any number of threads may read it.  Memory is
 * O(users + items + interactions): one sparse table per community over the
 * items it touched, never communities x items.
 */
#ifndef ICPNS_SNAPSHOT_H
#define ICPNS_SNAPSHOT_H

#ifndef __cplusplus
#include <stdatomic.h>
#endif
#include <stdint.h>
#include "icpns/alias.h"
#include "icpns/common.h"
#include "icpns/dataset.h"
#include "icpns/idmap.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * One weighted distribution over items: a sparse support (items[k] with
 * weight w[k] > 0, ascending items) plus, for ICPNS, epsilon on every item of
 * the catalogue, which is sampled as a mixture component and never stored
 * densely.  cdf[k] is the sum of w[0..k-1] (cdf[m] = total sparse mass).
 */
typedef struct icpns_wtable {
    uint32_t m;
    const uint32_t *items; /* NULL means the identity: items[k] == k */
    const double *w;
    const double *cdf;     /* m + 1 entries */
    icpns_alias_t alias;   /* over w; entries live in the weights' arena */
} icpns_wtable_t;

/* The tables of one (alpha, epsilon, beta) setting over one snapshot. */
typedef struct icpns_weights {
    icpns_params_t params;
    uint32_t n_comms;
    icpns_wtable_t *comm;     /* per community */
    icpns_wtable_t global;    /* pop(i)^beta over all items */
    /* Per user: sparse mass of the user's positives under its community's
     * table (and how many positives are in that support), and the same
     * under the global table.  These make the acceptance rate and the exact
     * normaliser of P(i|u) O(1) per request row. */
    double *pos_mass_comm;
    uint32_t *pos_hits_comm;
    double *pos_mass_pop;
    double build_seconds;
    size_t bytes;
    void *arena_w, *arena_cdf, *arena_alias; /* owned storage */
} icpns_weights_t;

typedef struct icpns_snapshot {
#ifdef __cplusplus
    unsigned int refs; /* atomic_uint in C (same size and alignment): only
                        * icpns_snapshot_ref/unref touch it */
#else
    atomic_uint refs;
#endif
    uint64_t version;          /* set by the owner before publication */
    uint64_t fingerprint;      /* icpns_snapshot_fingerprint(), set when built */
    icpns_params_t params;     /* the default setting */
    icpns_idmap_t users, items, comms;
    uint64_t n_interactions;   /* distinct (user, item) pairs */
    uint64_t *pos_off;         /* users.n + 1 */
    uint32_t *pos;             /* positives, ascending per user */
    uint32_t *user_comm;       /* community per user, ICPNS_NONE if none */
    uint32_t *comm_size;       /* users per community */
    uint64_t *sup_off;         /* comms.n + 1 */
    uint32_t *sup_item;        /* support items, ascending per community */
    uint32_t *sup_count;       /* pop_c(i) of each support entry */
    uint32_t *item_pop;        /* pop(i): distinct users per item; with
                                * pop_from_file, sum over communities of
                                * the file's pop_c(i) */
    uint32_t max_count;        /* largest pop_c(i) or pop(i) */
    bool pop_from_file;        /* popularity_source "file": pop_c and pop
                                * come from a popularity file, and do not
                                * follow updates (patch refuses them) */
    icpns_weights_t *weights;  /* of params; owned */
    double build_seconds;      /* index + default weights */
    size_t bytes;              /* everything this snapshot holds */
    /* An owner's attachment (the daemon's cache of other weight settings),
     * freed with the snapshot by ext_free.  Set before publication. */
    void *ext;
    void (*ext_free)(void *ext);
} icpns_snapshot_t;

/*
 * Bumped whenever the same tables, parameters, request and seed would give
 * other negatives than before (a change in the sampler or the tables'
 * layout).  Part of every fingerprint.
 */
#define ICPNS_SAMPLER_REVISION 2

/*
 * A 64-bit hash of everything the negatives depend on: the sampler
 * revision, the default parameters, the id maps (the catalogue included),
 * the positives, the community assignments, the counts pop_c(i) and the
 * global counts pop(i); not how they were read (a popularity file or
 * counted, file names).  Two snapshots with the
 * same fingerprint give the same negatives for the same request and seed,
 * whatever process, replica or tool built them (icpns_snapshot_build and
 * icpns_snapshot_patch set it; this recomputes it).
 */
ICPNS_EXPORT uint64_t icpns_snapshot_fingerprint(const icpns_snapshot_t *s);

/*
 * Builds a snapshot from @d with default parameters @p.  @d is not changed
 * and may be freed afterwards.  The catalogue is the items of the
 * interactions and of @d's items file.  With @d->has_pop, pop_c(i) are the
 * file's counts, its communities join the assignments' (a user shard lacks
 * members of some), and pop(i) is the sum over communities of pop_c(i).
 * Errors: ICPNS_EINVAL (bad parameters), ICPNS_EPARSE (the popularity file
 * names an item outside the catalogue or lists one twice; no interactions),
 * ICPNS_ELIMIT, ICPNS_ENOMEM; @err says which.  The result has one
 * reference, owned by the caller.
 */
ICPNS_EXPORT int icpns_snapshot_build(const icpns_dataset_t *d, const icpns_params_t *p,
                                      icpns_snapshot_t **ret, icpns_error_t *err);

/*
 * icpns_snapshot_build refusing, with ICPNS_ELIMIT (field "max_bytes"),
 * a snapshot that would take more than @max_bytes (0: no limit).  The
 * check comes before the weights, about half of a snapshot, are allocated,
 * so a refused build peaks lower.
 */
ICPNS_EXPORT int icpns_snapshot_build_limit(const icpns_dataset_t *d, const icpns_params_t *p,
                                            size_t max_bytes, icpns_snapshot_t **ret,
                                            icpns_error_t *err);

/*
 * A change to a snapshot's tables: new positive pairs (user, item) and new
 * community assignments (user, community), in external ids.  Later
 * assignments of the same user win.
 */
typedef struct icpns_delta {
    const icpns_pair_t *inter;
    size_t n_inter;
    const icpns_pair_t *comm;
    size_t n_comm;
} icpns_delta_t;

typedef struct icpns_patch_stats {
    uint64_t pairs_added;    /* distinct pairs that were not positives yet */
    uint32_t users_touched;  /* users whose positives or community changed */
    uint32_t comms_rebuilt;  /* community tables recomputed (others copied) */
    bool global_rebuilt;     /* the popularity (PNS) table was recomputed */
} icpns_patch_stats_t;

/*
 * Builds the snapshot that @old's dataset plus @delta would give, computing
 * only what the change touches: the tables of the communities whose members
 * gained positives or joined or left, the global table when positives were
 * added, and the masses of the users concerned; everything else is copied.
 * The result is bit-identical to icpns_snapshot_build over the changed
 * dataset (same tables, same negatives for the same seed).
 *
 * Returns ICPNS_ENOPATCH (nothing built) when the change cannot be patched
 * and needs icpns_snapshot_build: a new user, item or community id, a
 * community left without members, popularity read from a file.  Otherwise
 * 0, ICPNS_ELIMIT or ICPNS_ENOMEM.  @stats may be NULL.
 */
ICPNS_EXPORT int icpns_snapshot_patch(const icpns_snapshot_t *old, const icpns_delta_t *delta,
                                      icpns_snapshot_t **ret, icpns_patch_stats_t *stats,
                                      icpns_error_t *err);

/* icpns_snapshot_patch with the limit of icpns_snapshot_build_limit. */
ICPNS_EXPORT int icpns_snapshot_patch_limit(const icpns_snapshot_t *old, const icpns_delta_t *delta,
                                            size_t max_bytes, icpns_snapshot_t **ret,
                                            icpns_patch_stats_t *stats, icpns_error_t *err);

/* Takes a reference; returns @s. */
ICPNS_EXPORT icpns_snapshot_t *icpns_snapshot_ref(icpns_snapshot_t *s);

/* Drops a reference, freeing @s with the last one.  Accepts NULL;
 * returns NULL. */
ICPNS_EXPORT icpns_snapshot_t *icpns_snapshot_unref(icpns_snapshot_t *s);

/*
 * Builds the weights of setting @p over @s (for settings other than the
 * snapshot's default).  Returns 0 and *@ret (owned by the caller, valid while
 * @s lives), ICPNS_EINVAL or ICPNS_ENOMEM.
 */
ICPNS_EXPORT int icpns_weights_build(const icpns_snapshot_t *s, const icpns_params_t *p,
                                     icpns_weights_t **ret, icpns_error_t *err);

/* Frees @w; accepts NULL; returns NULL. */
ICPNS_EXPORT icpns_weights_t *icpns_weights_free(icpns_weights_t *w);

/* Number of positives of dense user @u. */
static inline uint32_t icpns_snapshot_degree(const icpns_snapshot_t *s, uint32_t u)
{
    return (uint32_t)(s->pos_off[u + 1] - s->pos_off[u]);
}

/*
 * Index of dense item @item in the support of table @t, or ICPNS_NONE.
 */
ICPNS_EXPORT uint32_t icpns_wtable_find(const icpns_wtable_t *t, uint32_t item);

/*
 * Writes the popularity table (community<TAB>item<TAB>count, external ids,
 * communities and items ascending) of @s into a new buffer.
 */
ICPNS_EXPORT int icpns_snapshot_popularity_tsv(const icpns_snapshot_t *s, char **ret,
                                               size_t *ret_len);

/* ---- what a snapshot says about itself (plain structs, for bindings) ---- */

/* A snapshot's sizes and setting (icpns_abi_sizeof("snapshot_info")). */
typedef struct icpns_snapshot_info {
    uint64_t fingerprint;
    uint64_t interactions;   /* distinct (user, item) pairs */
    uint64_t bytes;
    uint32_t users, items, communities;
    uint32_t sampler_revision; /* ICPNS_SAMPLER_REVISION of the library */
    icpns_params_t params;   /* the default setting */
    uint8_t pop_from_file;   /* popularity_source "file" */
} icpns_snapshot_info_t;

/* Fills *@ret with @s's sizes and setting. */
ICPNS_EXPORT void icpns_snapshot_info(const icpns_snapshot_t *s, icpns_snapshot_info_t *ret);

/* The item catalogue of @s: items.n ascending external ids; the dense
 * index of an item is its position.  Borrowed: valid while @s lives. */
ICPNS_EXPORT const int64_t *icpns_snapshot_item_ids(const icpns_snapshot_t *s);

/* One user as icpnsd's GET /v1/users/{id} shows it. */
typedef struct icpns_user_info {
    int64_t community;      /* external id; -1 when the user has none */
    uint32_t positives;     /* distinct positives */
    uint8_t has_community;
    uint8_t fallback;       /* ICPNS at the default setting falls back to
                             * uniform (the positives hold all the mass) */
    double mass_covered;    /* the share of its community's mass (default
                             * setting) that its positives hold; 0 without
                             * community */
} icpns_user_info_t;

/* Fills *@ret for external user id @user.  0 or ICPNS_EUNKNOWN_USER
 * (*@ret untouched). */
ICPNS_EXPORT int icpns_snapshot_user(const icpns_snapshot_t *s, int64_t user,
                                     icpns_user_info_t *ret);

/* One community as icpnsd's GET /v1/communities lists it. */
typedef struct icpns_community_info {
    int64_t community;  /* external id */
    uint32_t users;     /* members */
    uint32_t support;   /* items with pop_c(i) > 0 */
    double mass;        /* the sum of pop_c(i)^alpha over the support
                         * (default setting; without epsilon) */
} icpns_community_info_t;

/* The dense index of external community id @community, or ICPNS_NONE. */
ICPNS_EXPORT uint32_t icpns_snapshot_community_find(const icpns_snapshot_t *s,
                                                    int64_t community);

/* Fills *@ret for the community of dense index @index (0 .. communities
 * - 1, ascending external ids).  0 or ICPNS_EINVAL. */
ICPNS_EXPORT int icpns_snapshot_community(const icpns_snapshot_t *s, uint32_t index,
                                          icpns_community_info_t *ret);

/* One item of a community's ranking. */
typedef struct icpns_item_rank {
    int64_t item;        /* external id */
    uint64_t count;      /* pop_c(i) */
    double weight;       /* pop_c(i)^alpha + epsilon (default setting) */
    double probability;  /* weight / (mass + epsilon x items): what ICPNS
                          * draws for a member with no positives */
} icpns_item_rank_t;

/*
 * The items of community @index's support by decreasing weight (ties by
 * ascending item), as icpnsd's GET /v1/communities/{c}/items ranks them:
 * the first min(@top, support) go to @ret (room for that many, owned by
 * the caller), their number to *@ret_n.  Returns 0, ICPNS_EINVAL (no
 * such community) or ICPNS_ENOMEM; outputs untouched on failure.
 */
ICPNS_EXPORT int icpns_community_top_items(const icpns_snapshot_t *s, uint32_t index,
                                           uint32_t top, icpns_item_rank_t *ret,
                                           uint32_t *ret_n);

#ifdef __cplusplus
}
#endif
#endif
