/*
 * sampler.c - exact negatives for one user.
 *
 * Every strategy is "a weighted table T over items, plus epsilon on every
 * item, restricted to items the user has not touched".  Write S for T's
 * total mass, E = epsilon * |I|, and for user u: d = |Pos(u)|, P = T-mass of
 * Pos(u) (precomputed per user).  The target is
 *     P(i | u) = (T(i) + epsilon) / R,   R = (S - P) + epsilon * (|I| - d),
 * for i not in Pos(u).
 *
 * Rejection path: draw from the mixture (T with probability S/(S+E), else a
 * uniform item) until the draw is not a positive.  Accepted draws follow
 * P(i | u) exactly; the acceptance rate is R / (S + E), known in O(1).
 *
 * Residual path: draw from P(i | u) directly.  Choose the sparse part with
 * probability (S - P)/R.  For it, draw r uniform in [0, S - P) and find the
 * non-positive item whose interval of T's cumulative weights, with the
 * positives' intervals cut out, contains r: binary search over the
 * positives (how many of them lie before r) then over the table.  For the
 * epsilon part, draw k uniform in [0, |I| - d) and return the k-th
 * non-positive item (binary search over the sorted positives).  Uniform
 * (RNS) is exactly that second part with T empty, so it needs no rejection.
 *
 * Randomness comes from the stream of (seed, row, slot), so a slot's result
 * does not depend on other slots, rows or threads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "icpns/sampler.h"

/* Rejection tries per slot before switching to the residual path. */
#define MAX_TRIES 64

struct icpns_work {
    /* For the residual path: support indices of the row's positives that
     * are in the table, and prefix sums of their weights. */
    uint32_t *pidx;
    double *pq;
    size_t cap;
};

icpns_work_t *icpns_work_new(void)
{
    return calloc(1, sizeof(icpns_work_t));
}

icpns_work_t *icpns_work_free(icpns_work_t *w)
{
    if (w) {
        free(w->pidx);
        free(w->pq);
        free(w);
    }
    return NULL;
}

static int work_reserve(icpns_work_t *w, size_t n)
{
    if (n <= w->cap)
        return 0;
    size_t c = w->cap ? w->cap : 256;
    while (c < n)
        c *= 2;
    uint32_t *a = realloc(w->pidx, c * sizeof(*a));
    if (!a)
        return ICPNS_ENOMEM;
    w->pidx = a;
    double *b = realloc(w->pq, (c + 1) * sizeof(*b));
    if (!b)
        return ICPNS_ENOMEM;
    w->pq = b;
    w->cap = c;
    return 0;
}

int icpns_strategy_parse(const char *s)
{
    if (!strcmp(s, "uniform") || !strcmp(s, "rns"))
        return ICPNS_STRATEGY_UNIFORM;
    if (!strcmp(s, "popularity") || !strcmp(s, "pns"))
        return ICPNS_STRATEGY_POPULARITY;
    if (!strcmp(s, "icpns"))
        return ICPNS_STRATEGY_ICPNS;
    return -1;
}

const char *icpns_strategy_name(icpns_strategy_t s)
{
    switch (s) {
    case ICPNS_STRATEGY_UNIFORM: return "uniform";
    case ICPNS_STRATEGY_POPULARITY: return "popularity";
    case ICPNS_STRATEGY_ICPNS: return "icpns";
    default: return "?";
    }
}

/* Whether @item is in the sorted array @pos[0..d): a branchless lower
 * bound (the comparisons are unpredictable, so no branch on them). */
static inline bool contains(const uint32_t *pos, uint32_t d, uint32_t item)
{
    if (d == 0)
        return false;
    const uint32_t *base = pos;
    uint32_t n = d;
    while (n > 1) {
        uint32_t half = n / 2;
        base = base[half - 1] < item ? base + half : base;
        n -= half;
    }
    return *base == item;
}

/* The k-th (0-based) item of [0, n) that is not in the sorted @pos[0..d).
 * pos[s] - s counts the non-positives below pos[s]; it never decreases. */
static inline uint32_t kth_non_positive(const uint32_t *pos, uint32_t d, uint64_t k)
{
    uint32_t lo = 0, hi = d;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if ((uint64_t)pos[mid] - mid <= k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (uint32_t)(k + lo);
}

/* The resolved distribution of one row. */
typedef struct dist {
    const icpns_wtable_t *t; /* NULL for uniform */
    double eps;
    uint32_t n_items;
    const uint32_t *pos;
    uint32_t d;
    double sparse_rest; /* S - P */
    double mass;        /* R */
    double total;       /* S + E */
    uint32_t hits;      /* positives inside the table's support */
} dist_t;

static inline uint32_t table_item(const icpns_wtable_t *t, uint32_t k)
{
    return t->items ? t->items[k] : k;
}

static inline double item_weight(const dist_t *D, uint32_t item)
{
    double w = D->eps;
    if (D->t) {
        uint32_t k = icpns_wtable_find(D->t, item);
        if (k != ICPNS_NONE)
            w += D->t->w[k];
    }
    return w;
}

/* Prepares the residual path: the positives' support indices and prefix
 * sums of their weights. */
static int residual_setup(const dist_t *D, icpns_work_t *wk, uint32_t *ret_h)
{
    int rc = work_reserve(wk, (size_t)D->d + 1);
    if (rc)
        return rc;
    uint32_t h = 0;
    double q = 0;
    wk->pq[0] = 0;
    for (uint32_t s = 0; s < D->d; s++) {
        uint32_t k = icpns_wtable_find(D->t, D->pos[s]);
        if (k == ICPNS_NONE)
            continue;
        wk->pidx[h] = k;
        q += D->t->w[k];
        wk->pq[++h] = q;
    }
    *ret_h = h;
    return 0;
}

/*
 * The non-positive support entry at residual position r in [0, S - P).
 * Gap g lies between positives g-1 and g; the non-positive mass before
 * positive s is cdf[pidx[s]] - pq[s].
 */
static uint32_t residual_sparse(const icpns_wtable_t *t, const icpns_work_t *wk,
                                uint32_t h, double r)
{
    const double *cdf = t->cdf;
    uint32_t lo = 0, hi = h;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cdf[wk->pidx[mid]] - wk->pq[mid] <= r)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t g = lo;
    /* Rounding can point at an empty gap (adjacent positives) or past the
     * last one; step to the nearest gap that has entries. */
    for (;;) {
        uint32_t a = g ? wk->pidx[g - 1] + 1 : 0, b = g < h ? wk->pidx[g] : t->m;
        if (a < b) {
            double x = r + wk->pq[g];
            /* Largest k in [a, b) with cdf[k] <= x. */
            uint32_t l = a, u = b;
            while (u - l > 1) {
                uint32_t mid = l + (u - l) / 2;
                if (cdf[mid] <= x)
                    l = mid;
                else
                    u = mid;
            }
            return l;
        }
        if (g < h)
            g++;
        else
            g = 0; /* wrap: some gap is non-empty since hits < m */
    }
}

static uint32_t draw_residual(const dist_t *D, const icpns_work_t *wk, uint32_t h,
                              icpns_rng_t *rng, double *ret_w)
{
    double r = icpns_rng_double(rng) * D->mass;
    if (D->t && D->sparse_rest > 0 && (r < D->sparse_rest || D->eps == 0)) {
        if (r >= D->sparse_rest)
            r = 0; /* unreachable but for rounding of mass */
        uint32_t k = residual_sparse(D->t, wk, h, r);
        if (ret_w)
            *ret_w = D->t->w[k] + D->eps;
        return table_item(D->t, k);
    }
    uint64_t k = icpns_rng_below(rng, (uint64_t)D->n_items - D->d);
    uint32_t item = kth_non_positive(D->pos, D->d, k);
    if (ret_w)
        *ret_w = item_weight(D, item);
    return item;
}

/* One rejection attempt: a draw from the mixture T + epsilon. */
static inline uint32_t draw_mixture(const dist_t *D, icpns_rng_t *rng, double *ret_w,
                                    bool *known_w)
{
    if (D->eps > 0 && icpns_rng_double(rng) * D->total >= D->t->cdf[D->t->m]) {
        *known_w = false;
        return (uint32_t)icpns_rng_below(rng, D->n_items);
    }
    uint32_t k = icpns_alias_draw(&D->t->alias, rng);
    *known_w = true;
    *ret_w = D->t->w[k] + D->eps;
    return table_item(D->t, k);
}

/* Resolves the distribution of a row; returns a flag for "fallback". */
static int resolve(const icpns_snapshot_t *s, const icpns_weights_t *w, uint32_t user,
                   icpns_strategy_t strategy, unsigned flags, dist_t *D,
                   unsigned *row_flags)
{
    static const uint32_t none[1] = {0};
    memset(D, 0, sizeof(*D));
    D->n_items = s->items.n;
    if (user == ICPNS_NONE) {
        if (!(flags & ICPNS_SAMPLE_SUBSTITUTE_PNS))
            return ICPNS_EUNKNOWN_USER;
        *row_flags |= ICPNS_ROW_SUBSTITUTED;
        D->pos = none;
        D->d = 0;
        D->t = &w->global;
        D->sparse_rest = D->t->cdf[D->t->m];
        D->hits = 0;
        goto weighted;
    }
    D->pos = s->pos + s->pos_off[user];
    D->d = icpns_snapshot_degree(s, user);
    if (D->d >= D->n_items)
        return ICPNS_EINFEASIBLE;
    if (strategy == ICPNS_STRATEGY_ICPNS) {
        uint32_t c = s->user_comm[user];
        if (c == ICPNS_NONE) {
            if (!(flags & ICPNS_SAMPLE_SUBSTITUTE_PNS))
                return ICPNS_ENOCOMMUNITY;
            *row_flags |= ICPNS_ROW_SUBSTITUTED;
            strategy = ICPNS_STRATEGY_POPULARITY;
        } else {
            D->t = &w->comm[c];
            D->eps = w->params.epsilon;
            D->hits = w->pos_hits_comm[user];
            D->sparse_rest = D->t->cdf[D->t->m] - w->pos_mass_comm[user];
        }
    }
    if (strategy == ICPNS_STRATEGY_POPULARITY) {
        D->t = &w->global;
        D->hits = D->d;
        D->sparse_rest = D->t->cdf[D->t->m] - w->pos_mass_pop[user];
    }
weighted:
    if (D->t && D->hits >= D->t->m) {
        /* The table's mass is all on positives: only epsilon is left. */
        D->sparse_rest = 0;
        if (D->eps == 0) {
            D->t = NULL;
            *row_flags |= ICPNS_ROW_FALLBACK;
        }
    }
    if (!D->t) {
        D->eps = 1;
        D->mass = (double)(D->n_items - D->d);
        D->total = D->n_items;
        return 0;
    }
    if (D->sparse_rest < 0)
        D->sparse_rest = 0;
    double E = D->eps * (double)D->n_items;
    D->total = D->t->cdf[D->t->m] + E;
    D->mass = D->sparse_rest + D->eps * (double)(D->n_items - D->d);
    if (!(D->mass > 0)) {
        /* Rounding left nothing though some support remains: fall back. */
        D->t = NULL;
        D->eps = 1;
        D->mass = (double)(D->n_items - D->d);
        *row_flags |= ICPNS_ROW_FALLBACK;
    }
    return 0;
}

int icpns_sample_row(const icpns_snapshot_t *s, const icpns_weights_t *w,
                     icpns_work_t *work, uint32_t user, icpns_strategy_t strategy,
                     unsigned flags, uint64_t seed, uint64_t row, uint32_t slot0,
                     uint32_t count, uint32_t *ret_items, double *ret_probs,
                     unsigned *ret_row_flags, icpns_sample_stats_t *stats)
{
    if ((unsigned)strategy >= ICPNS_STRATEGY_COUNT || (uint64_t)slot0 + count > UINT32_MAX)
        return ICPNS_EINVAL;
    unsigned rf = 0;
    dist_t D;
    int rc = resolve(s, w, user, strategy, flags, &D, &rf);
    if (rc)
        return rc;
    icpns_sample_stats_t st = {0};
    icpns_rng_t rng;
    uint64_t row_key = icpns_rng_row_key(seed, row);

    if (!D.t) {
        /* Uniform over non-positives: exact in one draw. */
        double p = 1.0 / D.mass;
        for (uint32_t j = 0; j < count; j++) {
            icpns_rng_init_slot(&rng, row_key, slot0 + j);
            ret_items[j] = kth_non_positive(D.pos, D.d,
                                            icpns_rng_below(&rng, (uint64_t)D.n_items - D.d));
            if (ret_probs)
                ret_probs[j] = p;
        }
        st.draws += count;
        if (rf & ICPNS_ROW_FALLBACK)
            st.fallback_rows++;
        goto done;
    }

    /* Choose the path by expected cost: rejection costs about 1/accept
     * draws per slot; the residual path a setup over the positives plus
     * two binary searches per slot. */
    double accept = D.mass / D.total;
    double logd = log2((double)D.d + 2), logm = log2((double)D.t->m + 2);
    double cost_rej = (double)count / accept * (2 + logd);
    double cost_res = (double)D.d * (1 + logm) + (double)count * (2 + logd + logm);
    bool residual = accept < 1.0 / 64 || cost_res < cost_rej;
    if (flags & ICPNS_SAMPLE_FORCE_RESIDUAL)
        residual = true;
    else if (flags & ICPNS_SAMPLE_FORCE_REJECTION)
        residual = false;
    uint32_t h = 0;
    bool ready = false;
    if (residual) {
        if ((rc = residual_setup(&D, work, &h)))
            return rc;
        ready = true;
        rf |= ICPNS_ROW_RESIDUAL;
        st.residual_rows++;
    }
    for (uint32_t j = 0; j < count; j++) {
        icpns_rng_init_slot(&rng, row_key, slot0 + j);
        uint32_t item = 0;
        double wi = 0;
        bool got = false;
        if (!residual) {
            for (int t = 0; t < MAX_TRIES; t++) {
                bool known;
                item = draw_mixture(&D, &rng, &wi, &known);
                st.draws++;
                if (!contains(D.pos, D.d, item)) {
                    if (!known && ret_probs)
                        wi = item_weight(&D, item);
                    got = true;
                    break;
                }
                st.rejections++;
            }
        }
        if (!got) {
            if (!ready) {
                if ((rc = residual_setup(&D, work, &h)))
                    return rc;
                ready = true;
                rf |= ICPNS_ROW_RESIDUAL;
            }
            item = draw_residual(&D, work, h, &rng, ret_probs ? &wi : NULL);
            st.draws++;
        }
        ret_items[j] = item;
        if (ret_probs)
            ret_probs[j] = wi / D.mass;
    }
done:
    if (ret_row_flags)
        *ret_row_flags = rf;
    if (stats) {
        stats->draws += st.draws;
        stats->rejections += st.rejections;
        stats->residual_rows += st.residual_rows;
        stats->fallback_rows += st.fallback_rows;
    }
    return 0;
}

int icpns_user_mass(const icpns_snapshot_t *s, const icpns_weights_t *w, uint32_t user,
                    icpns_strategy_t strategy, double *ret_mass, bool *ret_fallback)
{
    dist_t D;
    unsigned rf = 0;
    int rc = resolve(s, w, user, strategy, ICPNS_SAMPLE_SUBSTITUTE_PNS, &D, &rf);
    if (rc)
        return rc;
    *ret_mass = D.mass;
    *ret_fallback = (rf & ICPNS_ROW_FALLBACK) != 0;
    return 0;
}

double icpns_probability(const icpns_snapshot_t *s, const icpns_weights_t *w, uint32_t user,
                         icpns_strategy_t strategy, uint32_t item, int *ret_err)
{
    dist_t D;
    unsigned rf = 0;
    int rc = resolve(s, w, user, strategy, 0, &D, &rf);
    if (ret_err)
        *ret_err = rc;
    if (rc || item >= D.n_items || contains(D.pos, D.d, item))
        return 0;
    return item_weight(&D, item) / D.mass;
}
