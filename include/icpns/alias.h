/*
 * icpns/alias.h - Walker/Vose alias tables.
 *
 * A draw takes one uniform column (its own 64-bit draw, unbiased for any n)
 * and one coin (a second 53-bit draw), so the result is exact up to the
 * rounding of the weights to doubles.  Zero weights are never drawn:
 * their threshold is 0 and no column ever aliases to them.
 */
#ifndef ICPNS_ALIAS_H
#define ICPNS_ALIAS_H

#include <stdint.h>
#include "icpns/common.h"
#include "icpns/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct icpns_alias_entry {
    double prob;    /* keep column k with this probability ... */
    uint32_t alias; /* ... otherwise return this index */
    uint32_t pad;
} icpns_alias_entry_t;

typedef struct icpns_alias {
    uint32_t n;
    icpns_alias_entry_t *e; /* n entries; owned */
} icpns_alias_t;

/*
 * Builds the table of @n weights into @a.  Weights must be finite and >= 0
 * with a positive sum; n may be 1 or 2^32 - 2.  On failure @a is left empty.
 * Returns 0, ICPNS_EINVAL (n == 0, bad weight, zero sum) or ICPNS_ENOMEM.
 * When @storage is not NULL it must hold n entries and is used instead of
 * an allocation; the caller then owns it and must not call icpns_alias_free.
 */
ICPNS_EXPORT int icpns_alias_build(icpns_alias_t *a, const double *w, uint32_t n,
                                   icpns_alias_entry_t *storage);

/* Frees what icpns_alias_build allocated.  Accepts an empty table. */
ICPNS_EXPORT void icpns_alias_free(icpns_alias_t *a);

/* Draws an index with probability w[k] / sum(w). */
static inline uint32_t icpns_alias_draw(const icpns_alias_t *a, icpns_rng_t *r)
{
    uint32_t k = (uint32_t)icpns_rng_below(r, a->n);
    double coin = icpns_rng_double(r);
    return coin < a->e[k].prob ? k : a->e[k].alias;
}

#ifdef __cplusplus
}
#endif
#endif
