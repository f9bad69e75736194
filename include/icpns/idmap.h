/*
 * icpns/idmap.h - external 64-bit ids <-> dense 32-bit indices.
 *
 * Dense indices follow ascending external id, so the same set of ids always
 * gets the same indices whatever order the files list them in.  Lookups use
 * an open-addressing hash table (linear probing, load <= 1/2).
 */
#ifndef ICPNS_IDMAP_H
#define ICPNS_IDMAP_H

#include <stddef.h>
#include <stdint.h>
#include "icpns/common.h"
#include "icpns/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct icpns_idmap {
    uint32_t n;
    int64_t *ids;     /* n ascending external ids: dense -> external */
    uint32_t mask;    /* hash capacity - 1 */
    uint32_t *slots;  /* dense index or ICPNS_NONE */
} icpns_idmap_t;

/*
 * Builds @m from @n ids (any order, duplicates allowed); takes ownership of
 * @ids (sorts and shrinks it in place; freed on failure too).
 * Returns 0, ICPNS_ELIMIT (more than 2^31 distinct ids) or ICPNS_ENOMEM.
 */
ICPNS_EXPORT int icpns_idmap_build(icpns_idmap_t *m, int64_t *ids, size_t n);

/* Frees @m's arrays.  Accepts an empty map. */
ICPNS_EXPORT void icpns_idmap_free(icpns_idmap_t *m);

/* The hash of @id: the table is probed from icpns_idmap_hash(id) & mask
 * on.  The sampler computes it once per request row, for the lookup and
 * for the row's random stream key (icpns_rng_user_key_hashed). */
static inline uint64_t icpns_idmap_hash(int64_t id)
{
    return icpns_mix64((uint64_t)id);
}

/* The dense index of @id, or ICPNS_NONE. */
ICPNS_EXPORT uint32_t icpns_idmap_find(const icpns_idmap_t *m, int64_t id);

/* Bytes the map holds. */
/* Makes @dst an independent copy of @src.  Returns 0 or ICPNS_ENOMEM. */
ICPNS_EXPORT int icpns_idmap_copy(icpns_idmap_t *dst, const icpns_idmap_t *src);

ICPNS_EXPORT size_t icpns_idmap_bytes(const icpns_idmap_t *m);

#ifdef __cplusplus
}
#endif
#endif
