/*
 * icpns/sampler.h - drawing negatives for the rows of a request.
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
 *
 * Ids: icpns_sample_request takes and returns *external* ids (the numbers
 * in the table files); the lower-level icpns_sample_rows/icpns_sample_row
 * work on *dense* indices (positions in the snapshot's id maps:
 * icpns_snapshot_item_ids() maps a dense item back).  A program usually
 * needs only: icpns_tables_load -> icpns_snapshot_build -> icpns_work_new
 * -> icpns_sample_request (README.md, "The library from C and C++").
 */
#ifndef ICPNS_SAMPLER_H
#define ICPNS_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>
#include "icpns/snapshot.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum icpns_strategy {
    ICPNS_STRATEGY_UNIFORM = 0,    /* RNS */
    ICPNS_STRATEGY_POPULARITY = 1, /* PNS */
    ICPNS_STRATEGY_ICPNS = 2,
    ICPNS_STRATEGY_COUNT
} icpns_strategy_t;

/* "uniform"/"rns", "popularity"/"pns", "icpns"; -1 if unknown. */
ICPNS_EXPORT int icpns_strategy_parse(const char *s);
ICPNS_EXPORT const char *icpns_strategy_name(icpns_strategy_t s);

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

ICPNS_EXPORT icpns_work_t *icpns_work_new(void);
ICPNS_EXPORT icpns_work_t *icpns_work_free(icpns_work_t *w);

/* Counters a caller may sum into metrics. */
typedef struct icpns_sample_stats {
    uint64_t draws;      /* table draws made, including rejected ones */
    uint64_t rejections; /* draws that hit a positive */
    uint64_t residual_rows;
    uint64_t fallback_rows;
} icpns_sample_stats_t;

/*
 * The randomness of a row is keyed on the request's seed, the row's
 * EXTERNAL user id (also for users the snapshot does not know), the user's
 * occurrence index in the request (0 for the first row with that id, 1 for
 * the second, ...) and the slot (icpns/rng.h).  Slots are numbered across
 * the parts of a strategy mix: part k's slots follow those of parts
 * 0..k-1.  So the same request, seed and snapshot give the same items;
 * rows of different users are independent under any seed; a user repeated
 * in a request gets independent rows; and a row's items do not depend on
 * its position, on the other rows, on how the request is sliced into calls
 * or on the thread.
 */

/* One part of a row: @slots consecutive slots (negatives x candidates)
 * drawn with @strategy. */
typedef struct icpns_part {
    icpns_strategy_t strategy;
    uint32_t slots;
} icpns_part_t;

/* A request: rows of users, each given the same parts. */
typedef struct icpns_rows {
    const int64_t *users;      /* external id of each row's user */
    const uint32_t *occ;       /* occurrence index of each row (icpns_occurrences) */
    uint32_t rows;
    const icpns_part_t *parts; /* in slot order */
    uint32_t n_parts;
    uint64_t seed;
    unsigned flags;            /* ICPNS_SAMPLE_* */
} icpns_rows_t;

/* Slots per row of @req: the sum of its parts' slots (0 if above 2^32 - 1,
 * which icpns_sample_rows refuses). */
ICPNS_EXPORT uint32_t icpns_rows_cols(const icpns_rows_t *req);

/*
 * Writes into @ret_occ[r] how many rows before r have the user of row r
 * (the occurrence index the row's random stream is keyed on), for all
 * @rows rows of @users, in expected O(rows) time (a hash table).
 * Returns 0 or ICPNS_ENOMEM (@ret_occ untouched).
 */
ICPNS_EXPORT int icpns_occurrences(const int64_t *users, uint32_t rows, uint32_t *ret_occ);

/*
 * Samples rows @first_row .. @first_row + @n_rows - 1 of @req.  Row r's
 * items go to @ret_items[(r - first_row) * cols + slot] (dense item
 * indices; cols = icpns_rows_cols(@req)), and, if @ret_probs is not NULL,
 * the exact P(i | u) of each to @ret_probs at the same index;
 * @ret_row_flags (may be NULL) gets the ICPNS_ROW_* bits of each row (the
 * union over its parts) at r - first_row.  @w must be weights over @s
 * (usually s->weights); @stats (may be NULL) is added to on success.  Any
 * slicing of a request into calls gives the same results as one call.
 *
 * Rows are processed in blocks, with the user lookups, communities and
 * positives of the coming rows fetched ahead and the first draw of every
 * slot of a block in flight at once; the result is the same for any block
 * size.  @work is this thread's scratch.
 *
 * Returns 0, or on failure: ICPNS_EUNKNOWN_USER, ICPNS_ENOCOMMUNITY (both
 * unless ICPNS_SAMPLE_SUBSTITUTE_PNS), ICPNS_EINFEASIBLE or ICPNS_ENOMEM
 * for the row *@ret_failed_row (absolute index; rows before it are
 * complete in the outputs, later ones unspecified), or ICPNS_EINVAL (bad
 * strategy, no parts, more than 2^32 - 1 slots per row, rows outside
 * @req, NULL arrays) and ICPNS_ENOMEM (scratch) with *@ret_failed_row =
 * ICPNS_NONE.  @ret_failed_row may be NULL and is only written on failure.
 */
ICPNS_EXPORT int icpns_sample_rows(const icpns_snapshot_t *s, const icpns_weights_t *w,
                                   icpns_work_t *work, const icpns_rows_t *req, uint32_t first_row,
                                   uint32_t n_rows, uint32_t *ret_items, double *ret_probs,
                                   unsigned *ret_row_flags, icpns_sample_stats_t *stats,
                                   uint32_t *ret_failed_row);

/*
 * The ICPNS_ROW_FALLBACK and ICPNS_ROW_SUBSTITUTED bits that
 * icpns_sample_rows would report for rows @first_row .. + @n_rows - 1 of
 * @req, and its errors (same codes, same failed row), without drawing
 * anything: O(1) per row and part.  A streamed answer knows its header
 * (how many rows fall back) and its errors before it starts.
 */
ICPNS_EXPORT int icpns_rows_flags(const icpns_snapshot_t *s, const icpns_weights_t *w,
                                  const icpns_rows_t *req, uint32_t first_row, uint32_t n_rows,
                                  unsigned *ret_row_flags, uint32_t *ret_failed_row);

/*
 * A request as icpnsd takes one (POST /v1/negatives): rows of users, the
 * same parts for every row, a seed and ICPNS_SAMPLE_* flags.  Plain
 * fields, so that bindings can fill it (icpns_abi_sizeof("request")).
 */
typedef struct icpns_request {
    const int64_t *users;      /* external id of each row's user */
    uint32_t rows;
    uint32_t n_parts;
    const icpns_part_t *parts; /* in slot order; slots = negatives x candidates */
    uint64_t seed;
    unsigned flags;            /* ICPNS_SAMPLE_* */
} icpns_request_t;

/*
 * The first step of answering @q, shared by icpnsd's answers and
 * icpns_sample_request: writes the occurrence index of every row into
 * @occ (@q->rows entries, owned by the caller), fills *@ret_rows (which
 * points at @q's arrays and @occ) and checks every row without drawing
 * (icpns_rows_flags): @ret_row_flags (may be NULL; @q->rows entries) gets
 * each row's ICPNS_ROW_FALLBACK and ICPNS_ROW_SUBSTITUTED bits.  @w: the
 * weights (NULL: @s's own).
 *
 * Returns 0, or the first failing row's error (ICPNS_EUNKNOWN_USER,
 * ICPNS_ENOCOMMUNITY, ICPNS_EINFEASIBLE) with its index in
 * *@ret_failed_row, or ICPNS_EINVAL (no parts, a bad strategy, 0 or more
 * than 2^32 - 1 slots a row, NULL arrays) and ICPNS_ENOMEM with
 * *@ret_failed_row = ICPNS_NONE.  @ret_failed_row may be NULL and is only
 * written on failure; *@ret_rows is only written on success.
 */
ICPNS_EXPORT int icpns_rows_prepare(const icpns_snapshot_t *s, const icpns_weights_t *w,
                                    const icpns_request_t *q, uint32_t *occ,
                                    icpns_rows_t *ret_rows, unsigned *ret_row_flags,
                                    uint32_t *ret_failed_row);

/*
 * Answers request @q in one call, with the bytes icpnsd would serve for it
 * over the same snapshot content, weights and seed: icpns_rows_prepare,
 * then icpns_sample_rows a block of rows at a time.  Writes, for row r and
 * slot j (cols = the sum of the parts' slots), at index r * cols + j:
 *   @ret_items      the item's EXTERNAL id (required when @q->rows > 0);
 *   @ret_probs      (may be NULL) P(i | u) as float, the C conversion of
 *                   the exact double (what icpnsd's frames carry);
 *   @ret_probs64    (may be NULL) the exact double;
 * and @ret_row_flags[r] (may be NULL) the row's ICPNS_ROW_FALLBACK and
 * ICPNS_ROW_SUBSTITUTED bits.  @w: the weights (NULL: @s's own); @work:
 * the calling thread's scratch; @stats (may be NULL) is added to on
 * success.  The caller's buffers hold rows x cols entries; nothing else
 * is written.  Thread-safe for distinct @work (the snapshot and weights
 * are only read).
 *
 * Returns 0, or the errors of icpns_rows_prepare (the request's errors
 * come before anything is drawn, as in icpnsd), or ICPNS_ENOMEM (scratch;
 * *@ret_failed_row = ICPNS_NONE).  On failure the outputs are unspecified.
 */
ICPNS_EXPORT int icpns_sample_request(const icpns_snapshot_t *s, const icpns_weights_t *w,
                                      icpns_work_t *work, const icpns_request_t *q,
                                      int64_t *ret_items, float *ret_probs, double *ret_probs64,
                                      unsigned *ret_row_flags, icpns_sample_stats_t *stats,
                                      uint32_t *ret_failed_row);

/* Who a single row is for: the user's external id, the index of this row
 * among the request's rows of that user, and the request's seed. */
typedef struct icpns_row_id {
    int64_t user;
    uint32_t occ;
    uint64_t seed;
} icpns_row_id_t;

/*
 * One row: draws @count items for the row @row names with @strategy,
 * slots @slot0 .. @slot0 + count - 1, into @ret_items (dense item indices)
 * and, if @ret_probs is not NULL, the exact P(i | u) of each.  The same
 * items as the row of icpns_sample_rows whose part with these slots has
 * @strategy.  *@ret_row_flags (may be NULL) gets ICPNS_ROW_* bits; @stats
 * (may be NULL) is added to on success.
 *
 * Returns 0, ICPNS_EUNKNOWN_USER, ICPNS_ENOCOMMUNITY (both unless
 * ICPNS_SAMPLE_SUBSTITUTE_PNS), ICPNS_EINFEASIBLE, ICPNS_EINVAL or
 * ICPNS_ENOMEM (scratch growth).  On error the outputs are unspecified.
 */
ICPNS_EXPORT int icpns_sample_row(const icpns_snapshot_t *s, const icpns_weights_t *w,
                                  icpns_work_t *work, icpns_row_id_t row,
                                  icpns_strategy_t strategy, unsigned flags, uint32_t slot0,
                                  uint32_t count, uint32_t *ret_items, double *ret_probs,
                                  unsigned *ret_row_flags, icpns_sample_stats_t *stats);

/*
 * The exact P(i | u) of dense item @item for dense user @user under
 * @strategy (0 for positives), computed directly, for tests and for the
 * interpretability endpoints.  On failure returns 0 and sets *@ret_err to
 * a negative error code (ICPNS_EINVAL for an index out of range); on
 * success *@ret_err is 0.
 */
ICPNS_EXPORT double icpns_probability(const icpns_snapshot_t *s, const icpns_weights_t *w,
                                      uint32_t user, icpns_strategy_t strategy,
                                      uint32_t item, int *ret_err);

/*
 * The normaliser sum_j w(j) [j not in Pos(u)] of the distribution the row
 * is drawn from, and whether it is exhausted (the uniform fallback applies).
 * Used for probabilities and the users endpoint.
 */
ICPNS_EXPORT int icpns_user_mass(const icpns_snapshot_t *s, const icpns_weights_t *w,
                                 uint32_t user, icpns_strategy_t strategy,
                                 double *ret_mass, bool *ret_fallback);

#ifdef __cplusplus
}
#endif
#endif
