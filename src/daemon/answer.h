/*
 * answer.h - the answer of POST /v1/negatives, sampled and encoded a block
 * of rows at a time.
 *
 * One generator writes both encodings (JSON and ICPR frames) for both ways
 * of answering: whole (the pieces appended into one buffer) or streamed
 * (each piece handed to the connection as the client reads, so a large
 * answer holds a few hundred kilobytes, not gigabytes).  The bytes are the
 * same either way.  Everything a streamed answer must know before its
 * first byte (its errors, which rows fall back or are substituted, the
 * frame's size) is worked out when the answer is made, without sampling.
 */
#ifndef ICPNSD_ANSWER_H
#define ICPNSD_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "icpns.h"
#include "metrics.h"
#include "request.h"

typedef struct icpnsd_answer icpnsd_answer_t;
struct icpnsd_wentry;

/*
 * An answer to @q (taken over: q->users is the answer's now; @q is left
 * empty) drawn from snapshot @s (a new reference is taken) with weights @w
 * (valid while @s is held, or while @went is; @went, may be NULL, is taken
 * over), for table set @set_name, counted in @stats (a new reference is
 * taken), as a frame or JSON.  @whole: the answer
 * is produced in one go (probabilities are kept between the two halves of
 * the encoding instead of drawn twice).  NULL with @e: the request's
 * errors (unknown users, no community, infeasible rows, with the row) or
 * out of memory.
 */
icpnsd_answer_t *icpnsd_answer_new(icpnsd_negreq_t *q, icpns_snapshot_t *s,
                                   const icpns_weights_t *w, struct icpnsd_wentry *went,
                                   const char *set_name, icpnsd_setstats_t *stats, bool frame,
                                   bool whole, icpnsd_err_t *e);

/* The exact size of a frame answer; 0 for JSON (not known in advance). */
uint64_t icpnsd_answer_size(const icpnsd_answer_t *a);

/* An upper bound of the answer's size, for admission before it is made:
 * what the whole answer and its sampling take. */
uint64_t icpnsd_answer_estimate(const icpnsd_negreq_t *q, const icpns_snapshot_t *s, bool frame);

/*
 * Appends the next piece (whole rows, about @target bytes; SIZE_MAX: the
 * rest) to @b.  Returns 1 when more follows, 0 when the answer is
 * complete, or a negative ICPNS_E* code (out of memory) with @b unchanged
 * in length.  @work is the calling thread's sampler scratch.
 */
int icpnsd_answer_next(icpnsd_answer_t *a, icpns_work_t *work, icpns_buf_t *b, size_t target);

/* The snapshot the answer is drawn from (its fingerprint goes in a header). */
const icpns_snapshot_t *icpnsd_answer_snapshot(const icpnsd_answer_t *a);

/* Frees the answer; accepts NULL. */
void icpnsd_answer_free(icpnsd_answer_t *a);

#endif
