/*
 * icpns/sampler.h - drawing negatives for one user.
 *
 * For user u of community c the ICPNS distribution is
 *     P(i | u) = w_c(i) [i not in Pos(u)] / sum_j w_c(j) [j not in Pos(u)],
 *     w_c(i) = pop_c(i)^alpha + epsilon   (pop_c(i)^alpha = 0 when pop_c(i) = 0),
 * PNS uses pop(i)^beta and RNS the constant 1, with the same exclusion.
 *
 * Exclusion is exact.  Rejection is the fast path; when the user's positives
 * hold so much of the mass that rejection would be slow, the sampler draws
 * from the exact residual distribution instead (a binary search over the
 * table's cumulative weights that skips the user's positives), and a slot
 * whose rejection tries run out switches to it too, which keeps the result
 * exact because every accepted draw and every residual draw follow the same
 * P(i | u).  No call loops without bound, returns a positive, or returns
 * fewer items than asked.
 */
#ifndef ICPNS_SAMPLER_H
#define ICPNS_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>
#include "icpns/snapshot.h"

typedef enum icpns_strategy {
    ICPNS_STRATEGY_UNIFORM = 0,    /* RNS */
    ICPNS_STRATEGY_POPULARITY = 1, /* PNS */
    ICPNS_STRATEGY_ICPNS = 2,
    ICPNS_STRATEGY_COUNT
} icpns_strategy_t;

/* "uniform"/"rns", "popularity"/"pns", "icpns"; -1 if unknown. */
int icpns_strategy_parse(const char *s);
const char *icpns_strategy_name(icpns_strategy_t s);

/* Request flags. */
#define ICPNS_SAMPLE_SUBSTITUTE_PNS 1u /* serve unknown / community-less users by PNS */
/* For tests and benchmarks: pin the path instead of choosing it by cost.
 * Both paths are exact; forced rejection still switches to the residual
 * path after 64 rejected tries in a slot. */
#define ICPNS_SAMPLE_FORCE_RESIDUAL 2u
#define ICPNS_SAMPLE_FORCE_REJECTION 4u

/* Row flags reported back. */
#define ICPNS_ROW_FALLBACK 1u    /* community mass exhausted: uniform over non-positives */
#define ICPNS_ROW_SUBSTITUTED 2u /* unknown or community-less user served by PNS */
#define ICPNS_ROW_RESIDUAL 4u    /* at least one slot used the residual path */

/* Scratch memory for one thread; reused across calls. */
typedef struct icpns_work icpns_work_t;

icpns_work_t *icpns_work_new(void);
icpns_work_t *icpns_work_free(icpns_work_t *w);

/* Counters a caller may sum into metrics. */
typedef struct icpns_sample_stats {
    uint64_t draws;      /* table draws made, including rejected ones */
    uint64_t rejections; /* draws that hit a positive */
    uint64_t residual_rows;
    uint64_t fallback_rows;
} icpns_sample_stats_t;

/*
 * Draws @count items for dense user @user (ICPNS_NONE when unknown) with
 * strategy @strategy into @ret_items (dense item indices), slots
 * @slot0 .. @slot0 + count - 1 of row @row under @seed, and, if @ret_probs is
 * not NULL, the exact P(i | u) of each.  @w must be weights over @s (usually
 * s->weights).  *@ret_row_flags gets ICPNS_ROW_* bits; @stats (may be NULL)
 * is added to.
 *
 * Returns 0, ICPNS_EUNKNOWN_USER, ICPNS_ENOCOMMUNITY (both unless
 * ICPNS_SAMPLE_SUBSTITUTE_PNS), ICPNS_EINFEASIBLE, ICPNS_EINVAL or
 * ICPNS_ENOMEM (scratch growth).  On error the outputs are unspecified.
 */
int icpns_sample_row(const icpns_snapshot_t *s, const icpns_weights_t *w,
                     icpns_work_t *work, uint32_t user,
                     icpns_strategy_t strategy, unsigned flags, uint64_t seed,
                     uint64_t row, uint32_t slot0, uint32_t count,
                     uint32_t *ret_items, double *ret_probs,
                     unsigned *ret_row_flags, icpns_sample_stats_t *stats);

/*
 * The exact P(i | u) of dense item @item for dense user @user under
 * @strategy (0 for positives), computed directly, for tests and for the
 * interpretability endpoints.  Returns a negative error code (as a double)
 * only through @ret_err; returns 0 probability when it fails.
 */
double icpns_probability(const icpns_snapshot_t *s, const icpns_weights_t *w,
                         uint32_t user, icpns_strategy_t strategy,
                         uint32_t item, int *ret_err);

/*
 * The normaliser sum_j w(j) [j not in Pos(u)] of the distribution the row
 * is drawn from, and whether it is exhausted (the uniform fallback applies).
 * Used for probabilities and the users endpoint.
 */
int icpns_user_mass(const icpns_snapshot_t *s, const icpns_weights_t *w,
                    uint32_t user, icpns_strategy_t strategy,
                    double *ret_mass, bool *ret_fallback);

#endif
