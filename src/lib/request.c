/*
 * request.c - a whole negatives request, the way icpnsd answers one.
 *
 * icpnsd's answers (src/daemon/answer.c) and in-process bindings
 * (icpns_sample_request, used by the Python icpns_client.Local) go through
 * the same two steps: icpns_rows_prepare (occurrence indices over the whole
 * request, then every row's errors and fallback / substitution flags
 * without drawing), then icpns_sample_rows over blocks of rows.  Draws are
 * pure functions of (seed, user, occurrence, slot), so the block size and
 * the slicing do not change a single item; what could change the bytes is
 * how the request becomes rows, and that is this file.
 */
#include <stdlib.h>
#include <string.h>

#include "icpns/sampler.h"

/* Cells (rows x slots) drawn at a time: the scratch of one block. */
#define REQUEST_BLOCK_CELLS 16384

int icpns_rows_prepare(const icpns_snapshot_t *s, const icpns_weights_t *w,
                       const icpns_request_t *q, uint32_t *occ, icpns_rows_t *ret_rows,
                       unsigned *ret_row_flags, uint32_t *ret_failed_row)
{
    uint32_t failed = ICPNS_NONE;
    int rc = ICPNS_EINVAL;
    if (!s || !q || !q->parts || q->n_parts == 0 || (q->rows && (!q->users || !occ)))
        goto out;
    if (!w)
        w = s->weights;
    icpns_rows_t rows = {q->users, occ, q->rows, q->parts, q->n_parts, q->seed, q->flags};
    if (icpns_rows_cols(&rows) == 0) {
        /* Above 2^32 - 1 slots a row, or parts of 0 slots only. */
        rc = ICPNS_EINVAL;
        goto out;
    }
    if ((rc = icpns_occurrences(q->users, q->rows, occ)))
        goto out;
    /* The row flags are written for every row checked; a caller that does
     * not want them still needs somewhere to put them. */
    unsigned one[256];
    for (uint32_t r = 0; r < q->rows; r += 256) {
        uint32_t n = q->rows - r < 256 ? q->rows - r : 256;
        rc = icpns_rows_flags(s, w, &rows, r, n, ret_row_flags ? ret_row_flags + r : one, &failed);
        if (rc)
            goto out;
    }
    *ret_rows = rows;
    return 0;
out:
    if (ret_failed_row)
        *ret_failed_row = failed;
    return rc;
}

int icpns_sample_request(const icpns_snapshot_t *s, const icpns_weights_t *w,
                         icpns_work_t *work, const icpns_request_t *q, int64_t *ret_items,
                         float *ret_probs, double *ret_probs64, unsigned *ret_row_flags,
                         icpns_sample_stats_t *stats, uint32_t *ret_failed_row)
{
    if (!s || !work || !q || (q->rows && !ret_items)) {
        if (ret_failed_row)
            *ret_failed_row = ICPNS_NONE;
        return ICPNS_EINVAL;
    }
    if (!w)
        w = s->weights;
    uint32_t *occ = malloc((q->rows ? q->rows : 1) * sizeof(*occ));
    if (!occ) {
        if (ret_failed_row)
            *ret_failed_row = ICPNS_NONE;
        return ICPNS_ENOMEM;
    }
    icpns_rows_t rows;
    int rc = icpns_rows_prepare(s, w, q, occ, &rows, ret_row_flags, ret_failed_row);
    if (rc) {
        free(occ);
        return rc;
    }
    uint32_t cols = icpns_rows_cols(&rows);
    uint32_t block_rows = cols >= REQUEST_BLOCK_CELLS ? 1 : REQUEST_BLOCK_CELLS / cols;
    if (block_rows > q->rows)
        block_rows = q->rows ? q->rows : 1;
    size_t block = (size_t)block_rows * cols;
    bool want_probs = ret_probs || ret_probs64;
    uint32_t *dense = malloc(block * sizeof(*dense));
    double *probs = want_probs ? malloc(block * sizeof(*probs)) : NULL;
    const int64_t *ids = icpns_snapshot_item_ids(s);
    uint32_t failed = ICPNS_NONE;
    if (!dense || (want_probs && !probs)) {
        rc = ICPNS_ENOMEM;
        goto out;
    }
    icpns_sample_stats_t st = {0};
    for (uint32_t r = 0; r < q->rows; r += block_rows) {
        uint32_t n = q->rows - r < block_rows ? q->rows - r : block_rows;
        if ((rc = icpns_sample_rows(s, w, work, &rows, r, n, dense, probs, NULL, &st, &failed)))
            goto out;
        size_t cells = (size_t)n * cols, at = (size_t)r * cols;
        int64_t *o = ret_items + at;
        for (size_t k = 0; k < cells; k++)
            o[k] = ids[dense[k]];
        /* float32 the way icpnsd's frames carry them: the C conversion,
         * round to nearest. */
        if (ret_probs)
            for (size_t k = 0; k < cells; k++)
                ret_probs[at + k] = (float)probs[k];
        if (ret_probs64)
            memcpy(ret_probs64 + at, probs, cells * sizeof(*probs));
    }
    if (stats) {
        stats->draws += st.draws;
        stats->rejections += st.rejections;
        stats->residual_rows += st.residual_rows;
        stats->fallback_rows += st.fallback_rows;
    }
out:
    if (rc && ret_failed_row)
        *ret_failed_row = failed;
    free(occ);
    free(dense);
    free(probs);
    return rc;
}
