/*
 * answer.c - the negatives answer, sampled and encoded a block of rows at a
 * time (see answer.h).
 *
 * Both encodings put every row's items first and every row's
 * probabilities after them, so an answer with probabilities is two passes
 * over the rows.  Whole answers keep the probabilities of the first pass;
 * streamed ones draw the rows again for the second (draws are pure
 * functions of (seed, user, occurrence, slot): the same values come out).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "frames.h"
#include "metrics.h"
#include "reply.h"
#include "wcache.h"

/* Cells (rows x slots) sampled at a time: the scratch of a block. */
#define BLOCK_CELLS 16384

enum phase { P_HEAD, P_ITEMS, P_PROBS, P_TAIL, P_DONE };

struct icpnsd_answer {
    icpnsd_negreq_t q;
    icpns_snapshot_t *s;            /* a reference */
    const icpns_weights_t *w;
    icpnsd_wentry_t *went;          /* a reference, or NULL */
    char set_name[ICPNSD_SET_NAME];
    icpnsd_setstats_t *counters;    /* the set's, a reference */
    bool frame, whole;
    uint32_t cols;                  /* slots per row: n x candidates */
    icpns_part_t parts[ICPNSD_MAX_PARTS];
    uint32_t *occ;                  /* occurrence index of each row */
    icpns_rows_t req;
    uint32_t *fallbacks, nfb;       /* rows served by the uniform fallback */
    uint32_t *substituted, nsub;    /* rows served by popularity */
    /* The cursor. */
    enum phase phase;
    uint32_t row;
    uint32_t block_rows;
    uint32_t *items;                /* a block's items */
    double *probs;                  /* a block's probabilities (streamed) */
    double *probs_all;              /* every row's (whole answers with probabilities) */
    icpns_sample_stats_t stats;
};

static icpnsd_code_t sample_code(int e)
{
    switch (e) {
    case ICPNS_EUNKNOWN_USER: return ICPNSD_E_UNKNOWN_USER;
    case ICPNS_EINFEASIBLE: return ICPNSD_E_INFEASIBLE;
    case ICPNS_ENOCOMMUNITY: return ICPNSD_E_NO_COMMUNITY;
    case ICPNS_ENOMEM: return ICPNSD_E_OUT_OF_MEMORY;
    default: return ICPNSD_E_SAMPLING_FAILED;
    }
}

/* The error of row @row (ICPNS_NONE: of no row) failing with @e. */
static void row_error(const icpnsd_negreq_t *q, int e, uint32_t row, icpnsd_err_t *err)
{
    if (row == ICPNS_NONE) {
        icpnsd_err_set(err, sample_code(e), NULL, -1, "sampling failed: %s", icpns_strerror(e));
        return;
    }
    long long id = (long long)q->users[row];
    switch (e) {
    case ICPNS_EUNKNOWN_USER:
        icpnsd_err_set(err, sample_code(e), "users", row,
                       "user %lld is not in the tables (set \"unknown_users\": \"popularity\" to "
                       "serve it by PNS)", id);
        break;
    case ICPNS_EINFEASIBLE:
        icpnsd_err_set(err, sample_code(e), "users", row,
                       "user %lld has interacted with every item: it has no negatives", id);
        break;
    case ICPNS_ENOCOMMUNITY:
        icpnsd_err_set(err, sample_code(e), "users", row,
                       "user %lld has no community (set \"unknown_users\": \"popularity\" to "
                       "serve it by PNS)", id);
        break;
    default:
        icpnsd_err_set(err, sample_code(e), "users", row, "user %lld: sampling failed: %s", id,
                       icpns_strerror(e));
    }
}

static unsigned digits(uint64_t v)
{
    unsigned n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

uint64_t icpnsd_answer_estimate(const icpnsd_negreq_t *q, const icpns_snapshot_t *s, bool frame)
{
    uint64_t cells = (uint64_t)q->rows * q->n * q->m, rows = q->rows;
    uint64_t id_len = s->items.n ? digits((uint64_t)s->items.ids[s->items.n - 1]) : 1;
    uint64_t out = frame ? ICPNSD_FRAME_RESP_HEADER + cells * 8 + (q->probs ? cells * 4 : 0) + rows * 4
                         : 512 + cells * (id_len + 1) + rows * 3 +
                               (q->probs ? cells * 17 + rows * 3 : 0) + rows * 22;
    /* What the answer holds while it is made: occurrences, row flags and
     * lists, a block of draws, and the probabilities of every row when
     * they are kept. */
    uint64_t scratch = rows * 16 + (uint64_t)BLOCK_CELLS * 12 + (q->probs ? cells * 8 : 0);
    return out + scratch;
}

icpnsd_answer_t *icpnsd_answer_new(icpnsd_negreq_t *q, icpns_snapshot_t *s,
                                   const icpns_weights_t *w, struct icpnsd_wentry *went,
                                   const char *set_name, icpnsd_setstats_t *stats, bool frame,
                                   bool whole, icpnsd_err_t *e)
{
    icpnsd_answer_t *a = calloc(1, sizeof(*a));
    if (!a) {
        icpnsd_wentry_unref(went);
        icpnsd_negreq_free(q);
        icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for the answer");
        return NULL;
    }
    a->q = *q;
    memset(q, 0, sizeof(*q));
    a->s = icpns_snapshot_ref(s);
    a->w = w;
    a->went = went;
    snprintf(a->set_name, sizeof(a->set_name), "%s", set_name);
    a->counters = icpnsd_setstats_ref(stats);
    a->frame = frame;
    a->whole = whole;
    a->cols = a->q.n * a->q.m;
    for (int k = 0; k < a->q.nparts; k++)
        a->parts[k] = (icpns_part_t){a->q.parts[k].strategy, a->q.parts[k].n * a->q.m};
    uint32_t rows = a->q.rows;
    size_t rn = rows ? rows : 1;
    a->block_rows = a->cols >= BLOCK_CELLS ? 1 : BLOCK_CELLS / a->cols;
    size_t block = (size_t)a->block_rows * a->cols;
    a->occ = malloc(rn * sizeof(*a->occ));
    unsigned *flags = malloc(rn * sizeof(*flags));
    a->fallbacks = malloc(rn * sizeof(*a->fallbacks));
    a->substituted = malloc(rn * sizeof(*a->substituted));
    a->items = malloc(block * sizeof(*a->items));
    if (a->q.probs && whole)
        a->probs_all = malloc(((size_t)rows * a->cols + 1) * sizeof(*a->probs_all));
    else if (a->q.probs)
        a->probs = malloc(block * sizeof(*a->probs));
    if (!a->occ || !flags || !a->fallbacks || !a->substituted || !a->items ||
        (a->q.probs && !a->probs_all && !a->probs)) {
        free(flags);
        icpnsd_answer_free(a);
        icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for %llu negatives",
                       (unsigned long long)rows * a->cols);
        return NULL;
    }
    /* The rows (occurrence indices over the whole request), the request's
     * errors and its fallback and substituted rows, before a byte of the
     * answer is written: the library's first step, which in-process
     * bindings (icpns_sample_request) take the same way. */
    icpns_request_t req = {a->q.users, rows, (uint32_t)a->q.nparts, a->parts, a->q.seed,
                           a->q.flags};
    uint32_t failed = ICPNS_NONE;
    int rc = icpns_rows_prepare(s, w, &req, a->occ, &a->req, flags, &failed);
    if (rc) {
        if (rc == ICPNS_ENOMEM && failed == ICPNS_NONE)
            icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for %llu negatives",
                           (unsigned long long)rows * a->cols);
        else
            row_error(&a->q, rc, failed, e);
        free(flags);
        icpnsd_answer_free(a);
        return NULL;
    }
    for (uint32_t r = 0; r < rows; r++) {
        if (flags[r] & ICPNS_ROW_FALLBACK)
            a->fallbacks[a->nfb++] = r;
        if (flags[r] & ICPNS_ROW_SUBSTITUTED)
            a->substituted[a->nsub++] = r;
    }
    free(flags);
    /* Keep only what the lists hold: a streamed answer lives long. */
    uint32_t *v = realloc(a->fallbacks, (a->nfb ? a->nfb : 1) * sizeof(*v));
    if (v)
        a->fallbacks = v;
    v = realloc(a->substituted, (a->nsub ? a->nsub : 1) * sizeof(*v));
    if (v)
        a->substituted = v;
    return a;
}

uint64_t icpnsd_answer_size(const icpnsd_answer_t *a)
{
    return a->frame ? icpnsd_frame_negatives_size(a->q.rows, a->cols, a->q.probs, a->nfb) : 0;
}

const icpns_snapshot_t *icpnsd_answer_snapshot(const icpnsd_answer_t *a)
{
    return a->s;
}

void icpnsd_answer_free(icpnsd_answer_t *a)
{
    if (!a)
        return;
    icpnsd_wentry_unref(a->went);
    icpns_snapshot_unref(a->s);
    icpnsd_setstats_unref(a->counters);
    icpnsd_negreq_free(&a->q);
    free(a->occ);
    free(a->fallbacks);
    free(a->substituted);
    free(a->items);
    free(a->probs);
    free(a->probs_all);
    free(a);
}

static void json_head(icpnsd_answer_t *a, icpns_buf_t *b)
{
    const icpnsd_negreq_t *q = &a->q;
    icpnsd_json_snapshot_head(b, a->s);
    icpns_buf_lit(b, ",\"tables\":");
    icpnsd_json_str(b, a->set_name);
    icpns_buf_printf(b, ",\"alpha\":%s,\"epsilon\":%s,\"beta\":%s",
                     icpnsd_dnum(a->w->params.alpha).s, icpnsd_dnum(a->w->params.epsilon).s,
                     icpnsd_dnum(a->w->params.beta).s);
    icpns_buf_lit(b, ",\"strategy\":");
    if (q->mixed) {
        icpns_buf_lit(b, "[");
        for (int k = 0; k < q->nparts; k++) {
            icpns_buf_puts(b, k ? ",{\"strategy\":" : "{\"strategy\":");
            icpnsd_json_str(b, icpns_strategy_name(q->parts[k].strategy));
            icpns_buf_lit(b, ",\"n\":");
            icpns_buf_u64(b, q->parts[k].n);
            icpns_buf_lit(b, "}");
        }
        icpns_buf_lit(b, "]");
    } else {
        icpnsd_json_str(b, icpns_strategy_name(q->parts[0].strategy));
    }
    icpns_buf_lit(b, ",\"n\":");
    icpns_buf_u64(b, q->n);
    icpns_buf_lit(b, ",\"candidates\":");
    icpns_buf_u64(b, q->m);
    icpns_buf_lit(b, ",\"seed\":");
    icpns_buf_u64(b, q->seed);
    icpns_buf_lit(b, ",\"negatives\":[");
}

static void json_list(icpns_buf_t *b, const uint32_t *v, uint32_t n)
{
    icpns_buf_lit(b, "[");
    for (uint32_t k = 0; k < n; k++) {
        if (k)
            icpns_buf_lit(b, ",");
        icpns_buf_u64(b, v[k]);
    }
    icpns_buf_lit(b, "]");
}

static void tail(icpnsd_answer_t *a, icpns_buf_t *b)
{
    if (a->frame) {
        if (icpns_buf_reserve(b, (size_t)a->nfb * 4)) {
            icpnsd_frame_put_u32((unsigned char *)b->p + b->len, a->fallbacks, a->nfb);
            b->len += (size_t)a->nfb * 4;
        }
        return;
    }
    icpns_buf_lit(b, ",\"fallbacks\":");
    json_list(b, a->fallbacks, a->nfb);
    icpns_buf_lit(b, ",\"substituted\":");
    json_list(b, a->substituted, a->nsub);
    icpns_buf_lit(b, "}\n");
}

/* Counts the request in its set's counters, once its rows are drawn. */
static void count(icpnsd_answer_t *a)
{
    icpnsd_setstats_t *c = a->counters;
    if (!c)
        return;
    uint64_t per[ICPNS_STRATEGY_COUNT] = {0};
    for (int k = 0; k < a->q.nparts; k++)
        per[a->q.parts[k].strategy] += (uint64_t)a->q.rows * a->q.parts[k].n * a->q.m;
    for (int k = 0; k < ICPNS_STRATEGY_COUNT; k++)
        atomic_fetch_add_explicit(&c->negatives[k], per[k], memory_order_relaxed);
    atomic_fetch_add_explicit(&c->rows, a->q.rows, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->draws, a->stats.draws, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->rejections, a->stats.rejections, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->residual_rows, a->stats.residual_rows, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->fallback_rows, a->nfb, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->substituted_rows, a->nsub, memory_order_relaxed);
}

/* Encodes rows [first, first + n) of the block just drawn (or of the kept
 * probabilities). */
static void encode_rows(icpnsd_answer_t *a, icpns_buf_t *b, uint32_t first, uint32_t n,
                        bool probs, const double *p)
{
    size_t cells = (size_t)n * a->cols;
    if (a->frame) {
        size_t bytes = cells * (probs ? 4 : 8);
        if (!icpns_buf_reserve(b, bytes))
            return;
        unsigned char *o = (unsigned char *)b->p + b->len;
        if (probs)
            icpnsd_frame_put_probs(o, p, cells);
        else
            icpnsd_frame_put_items(o, a->items, cells, a->s->items.ids);
        b->len += bytes;
        return;
    }
    const int64_t *ids = a->s->items.ids;
    for (uint32_t r = 0; r < n; r++) {
        icpns_buf_puts(b, first + r ? ",[" : "[");
        for (uint32_t j = 0; j < a->cols; j++) {
            size_t c = (size_t)r * a->cols + j;
            if (probs)
                icpns_buf_printf(b, j ? ",%.9g" : "%.9g", p[c]);
            else {
                if (j)
                    icpns_buf_lit(b, ",");
                icpns_buf_i64(b, ids[a->items[c]]);
            }
        }
        icpns_buf_lit(b, "]");
    }
}

int icpnsd_answer_next(icpnsd_answer_t *a, icpns_work_t *work, icpns_buf_t *b, size_t target)
{
    size_t start = b->len;
    while (a->phase != P_DONE && b->len - start < target && !b->failed) {
        switch (a->phase) {
        case P_HEAD:
            if (a->frame) {
                if (icpns_buf_reserve(b, ICPNSD_FRAME_RESP_HEADER)) {
                    icpnsd_frame_negatives_header((unsigned char *)b->p + b->len, a->s->version,
                                                  a->q.rows, a->cols, a->q.probs, a->nfb,
                                                  a->nsub);
                    b->len += ICPNSD_FRAME_RESP_HEADER;
                }
            } else {
                json_head(a, b);
            }
            a->phase = P_ITEMS;
            a->row = 0;
            break;
        case P_ITEMS:
        case P_PROBS: {
            bool probs = a->phase == P_PROBS;
            if (a->row == a->q.rows) {
                if (!probs)
                    count(a);
                if (!a->frame)
                    icpns_buf_lit(b, "]");
                if (!probs && a->q.probs) {
                    if (!a->frame)
                        icpns_buf_lit(b, ",\"probabilities\":[");
                    a->phase = P_PROBS;
                } else {
                    a->phase = P_TAIL;
                }
                a->row = 0;
                break;
            }
            uint32_t n = a->q.rows - a->row < a->block_rows ? a->q.rows - a->row : a->block_rows;
            const double *p = NULL;
            if (probs && a->probs_all) {
                p = a->probs_all + (size_t)a->row * a->cols;
            } else {
                /* Draw the block (again, for the probabilities of a
                 * streamed answer). */
                double *pout = !a->q.probs ? NULL
                               : a->probs_all ? a->probs_all + (size_t)a->row * a->cols
                                              : a->probs;
                uint32_t failed = ICPNS_NONE;
                int rc = icpns_sample_rows(a->s, a->w, work, &a->req, a->row, n, a->items, pout,
                                           NULL, probs ? NULL : &a->stats, &failed);
                if (rc) {
                    b->len = start;
                    return rc;
                }
                p = pout;
            }
            encode_rows(a, b, a->row, n, probs, p);
            a->row += n;
            break;
        }
        case P_TAIL:
            tail(a, b);
            a->phase = P_DONE;
            break;
        case P_DONE:
            break;
        }
    }
    if (b->failed) {
        b->len = start < b->len ? start : b->len;
        return ICPNS_ENOMEM;
    }
    return a->phase == P_DONE ? 0 : 1;
}
