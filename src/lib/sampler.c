/*
 * sampler.c - exact negatives for the rows of a request.
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
 * Randomness: slot j of a row comes from the stream of (row key, j), the
 * row key a hash chain of (seed, external user id, occurrence index)
 * (icpns/rng.h); a rejected draw's retries continue the same stream.  So a
 * slot's result does not depend on other slots, rows, threads, the row's
 * position or the order in which this file computes things.
 *
 * The pipeline.  Sampling is latency-bound: a user lookup (hash slot, then
 * the id it names), the user's community, offsets and masses, its
 * positives, and per slot an alias entry and a support item id are each a
 * likely cache miss, and each depends on the one before.  So rows go
 * through stages a block apart (a block is BATCH_SLOTS / cols rows, 1 to
 * MAX_BLOCK), and while block k is sampled:
 *     block k+4  hash the user id, prefetch its hash slot      (stage_hash)
 *     block k+3  read the slot, prefetch the id it names        (stage_probe)
 *     block k+2  confirm the id -> dense user, prefetch the
 *                user's offsets, community and masses           (stage_find)
 *     block k+1  resolve each part's distribution, choose the
 *                path, prefetch the positives                   (stage_resolve)
 * and within block k every slot on the rejection path gets its first draw
 * (column + coin, or an epsilon item) with the alias entry prefetched, then
 * all entries are resolved with the support item ids prefetched, then the
 * items are checked against the positives.  A slot whose first draw hits a
 * positive continues alone (retries, then the residual path).  Uniform
 * rows take one draw and a binary search per slot; residual rows are
 * sampled row by row.  Every step reads the same stream values as the
 * one-slot-at-a-time order would, so blocks and slicing change nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "icpns/sampler.h"

/* Rejection tries per slot before switching to the residual path. */
#define MAX_TRIES 64
/* Slots whose first draw is in flight together, and rows per block: a
 * block is BATCH_SLOTS / cols rows, at least 1 and at most MAX_BLOCK. */
#define BATCH_SLOTS 64
#define MAX_BLOCK 32
/* Row states held: the block being sampled and four ahead (a power of 2
 * >= 5 * MAX_BLOCK); resolved distributions: this block and the next. */
#define RING 256
#define DRING 64

#define PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)

/* How a (row, part) is sampled. */
enum { PATH_UNIFORM, PATH_REJECT, PATH_RESIDUAL };

/* The resolved distribution of one row's part. */
typedef struct dist {
    const icpns_wtable_t *t; /* NULL for uniform */
    double eps;
    uint32_t n_items;
    const uint32_t *pos;
    uint32_t d;
    double sparse;      /* S */
    double sparse_rest; /* S - P */
    double mass;        /* R */
    double total;       /* S + E */
    uint32_t hits;      /* positives inside the table's support */
    unsigned char path;
    bool fallback;      /* the uniform fallback of an exhausted table */
} dist_t;

/* A row on its way through the stages. */
typedef struct rowst {
    int64_t id;
    uint64_t key;  /* the row's stream key */
    uint32_t h;    /* hash slot of the first probe */
    uint32_t cand; /* dense index the first probe names */
    uint32_t u;    /* dense user, ICPNS_NONE if unknown */
    int err;       /* why the row cannot be sampled, or 0 */
    unsigned rf;   /* ICPNS_ROW_* */
} rowst_t;

/* One part of every row: its strategy, the stream slot of its first item
 * and where its items go in the row's output. */
typedef struct pplan {
    icpns_strategy_t strategy;
    uint32_t slot0, count, out;
} pplan_t;

struct icpns_work {
    /* For the residual path: support indices of the row's positives that
     * are in the table, and prefix sums of their weights. */
    uint32_t *pidx;
    double *pq;
    size_t cap;
    /* The pipeline: RING row states, DRING x dparts distributions, and
     * the parts of the current request. */
    rowst_t *ring;
    dist_t *dists;
    pplan_t *parts;
    uint32_t dparts;
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
        free(w->ring);
        free(w->dists);
        free(w->parts);
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

/* Room for the pipeline of a request with @n_parts parts. */
static int work_pipeline(icpns_work_t *w, uint32_t n_parts)
{
    if (!w->ring && !(w->ring = malloc(RING * sizeof(*w->ring))))
        return ICPNS_ENOMEM;
    if (n_parts > w->dparts) {
        dist_t *d = malloc((size_t)DRING * n_parts * sizeof(*d));
        pplan_t *p = malloc(n_parts * sizeof(*p));
        if (!d || !p) {
            free(d);
            free(p);
            return ICPNS_ENOMEM;
        }
        free(w->dists);
        free(w->parts);
        w->dists = d;
        w->parts = p;
        w->dparts = n_parts;
    }
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
 * sums of their weights.  The scratch was reserved when the row was
 * resolved (d + 1 entries), so this cannot fail. */
static uint32_t residual_setup(const dist_t *D, icpns_work_t *wk)
{
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
    return h;
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

/* One rejection attempt: a draw from the mixture T + epsilon.  The batch
 * in sample_block makes the first attempt of a slot with the same draws
 * in the same order. */
static inline uint32_t draw_mixture(const dist_t *D, icpns_rng_t *rng, double *ret_w,
                                    bool *known_w)
{
    if (D->eps > 0 && icpns_rng_double(rng) * D->total >= D->sparse) {
        *known_w = false;
        return (uint32_t)icpns_rng_below(rng, D->n_items);
    }
    uint32_t k = icpns_alias_draw(&D->t->alias, rng);
    *known_w = true;
    *ret_w = D->t->w[k] + D->eps;
    return table_item(D->t, k);
}

/* Resolves the distribution of a row's part; sets ICPNS_ROW_* bits. */
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
            D->fallback = true;
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
    D->sparse = D->t->cdf[D->t->m];
    D->total = D->sparse + E;
    D->mass = D->sparse_rest + D->eps * (double)(D->n_items - D->d);
    if (!(D->mass > 0)) {
        /* Rounding left nothing though some support remains: fall back. */
        D->t = NULL;
        D->eps = 1;
        D->mass = (double)(D->n_items - D->d);
        D->fallback = true;
        *row_flags |= ICPNS_ROW_FALLBACK;
    }
    return 0;
}

/* log2(x) for x >= 1 to within 0.09, from the bits of the double: the
 * path choice needs only the order of magnitude, and a libm call per row
 * costs as much as a draw. */
static inline double log2_rough(double x)
{
    uint64_t b;
    memcpy(&b, &x, sizeof(b));
    double e = (double)((int)(b >> 52) - 1023);
    return e + (double)(b & ((UINT64_C(1) << 52) - 1)) * 0x1.0p-52;
}

/* Chooses how a resolved (row, part) of @count slots is sampled. */
static unsigned char choose_path(const dist_t *D, uint32_t count, unsigned flags)
{
    if (!D->t)
        return PATH_UNIFORM;
    if (flags & ICPNS_SAMPLE_FORCE_RESIDUAL)
        return PATH_RESIDUAL;
    if (flags & ICPNS_SAMPLE_FORCE_REJECTION)
        return PATH_REJECT;
    /* By expected cost: rejection costs about 1/accept draws per slot;
     * the residual path a setup over the positives plus two binary
     * searches per slot. */
    double accept = D->mass / D->total;
    if (accept < 1.0 / 64)
        return PATH_RESIDUAL;
    double logd = log2_rough((double)D->d + 2), logm = log2_rough((double)D->t->m + 2);
    double cost_rej = (double)count / accept * (2 + logd);
    double cost_res = (double)D->d * (1 + logm) + (double)count * (2 + logd + logm);
    return cost_res < cost_rej ? PATH_RESIDUAL : PATH_REJECT;
}

/* ---- the pipeline ----------------------------------------------------- */

/* What a request's sampling needs to know, fixed for its duration. */
typedef struct plan {
    const icpns_snapshot_t *s;
    const icpns_weights_t *w;
    icpns_work_t *wk;
    const pplan_t *parts;
    uint32_t n_parts, cols;
    unsigned flags;
    uint64_t seed_key;
    bool need_comm, need_pop; /* per-user arrays worth prefetching */
} plan_t;

static inline rowst_t *ring_at(const plan_t *P, uint32_t r)
{
    return &P->wk->ring[r & (RING - 1)];
}

static inline dist_t *dist_at(const plan_t *P, uint32_t r, uint32_t k)
{
    return &P->wk->dists[(size_t)(r & (DRING - 1)) * P->n_parts + k];
}

/* Stage 1: the row key, and the user's hash slot on its way. */
static inline void stage_hash(const plan_t *P, const int64_t *users, const uint32_t *occ,
                              uint32_t r)
{
    rowst_t *R = ring_at(P, r);
    const icpns_idmap_t *m = &P->s->users;
    R->id = users[r];
    uint64_t hash = icpns_idmap_hash(R->id);
    R->key = icpns_rng_user_key_hashed(P->seed_key, hash, occ[r]);
    R->h = (uint32_t)hash & m->mask;
    if (m->slots)
        PREFETCH(&m->slots[R->h]);
}

/* Stage 2: the dense index the slot names, its id on its way. */
static inline void stage_probe(const plan_t *P, uint32_t r)
{
    rowst_t *R = ring_at(P, r);
    const icpns_idmap_t *m = &P->s->users;
    R->cand = m->slots ? m->slots[R->h] : ICPNS_NONE;
    if (R->cand != ICPNS_NONE)
        PREFETCH(&m->ids[R->cand]);
}

/* Stage 3: the dense user (the probe continues past other ids, as in
 * icpns_idmap_find), its offsets, community and masses on their way. */
static inline void stage_find(const plan_t *P, uint32_t r)
{
    rowst_t *R = ring_at(P, r);
    const icpns_idmap_t *m = &P->s->users;
    uint32_t u = R->cand, h = R->h;
    while (u != ICPNS_NONE && m->ids[u] != R->id) {
        h = (h + 1) & m->mask;
        u = m->slots[h];
    }
    R->u = u;
    if (u == ICPNS_NONE)
        return;
    const icpns_snapshot_t *s = P->s;
    PREFETCH(&s->pos_off[u]);
    PREFETCH(&s->pos_off[u + 1]);
    if (P->need_comm) {
        PREFETCH(&s->user_comm[u]);
        PREFETCH(&P->w->pos_mass_comm[u]);
        PREFETCH(&P->w->pos_hits_comm[u]);
    }
    if (P->need_pop)
        PREFETCH(&P->w->pos_mass_pop[u]);
}

/* Prefetches the cache lines a binary search over @n entries of @p
 * touches first. */
static inline void prefetch_sorted(const uint32_t *p, uint32_t n)
{
    if (n == 0)
        return;
    PREFETCH(p);
    if (n > 16) {
        PREFETCH(p + n / 2);
        PREFETCH(p + n - 1);
        if (n > 64) {
            PREFETCH(p + n / 4);
            PREFETCH(p + n / 2 + n / 4);
        }
    }
}

/* Stage 4: every part's distribution and path; the positives on their
 * way.  A row that cannot be sampled keeps its error in R->err. */
static inline void stage_resolve(const plan_t *P, uint32_t r)
{
    rowst_t *R = ring_at(P, r);
    R->rf = 0;
    R->err = 0;
    for (uint32_t k = 0; k < P->n_parts; k++) {
        dist_t *D = dist_at(P, r, k);
        int rc = resolve(P->s, P->w, R->u, P->parts[k].strategy, P->flags, D, &R->rf);
        if (rc) {
            R->err = rc;
            return;
        }
        D->path = choose_path(D, P->parts[k].count, P->flags);
        /* A rejection slot may run out of tries and need the residual
         * scratch: reserve it now, so sampling itself cannot fail. */
        if (D->path != PATH_UNIFORM && P->parts[k].count &&
            (rc = work_reserve(P->wk, (size_t)D->d + 1))) {
            R->err = rc;
            return;
        }
        if (k == 0)
            prefetch_sorted(D->pos, D->d);
    }
}

/* A slot whose first draw is in flight. */
typedef struct slot {
    icpns_rng_t rng;
    const dist_t *D;
    uint32_t *item;  /* where the result goes */
    double *prob;    /* NULL without probabilities */
    unsigned *rf;
    uint32_t k;      /* alias column, then support index; or the item */
    bool direct;     /* k is an item of the epsilon part */
    double coin;
} slot_t;

/* The residual scratch's current owner, so a (row, part) sets it up once. */
typedef struct residual_cache {
    const dist_t *D;
    uint32_t h;
} residual_cache_t;

static inline uint32_t residual_h(const plan_t *P, residual_cache_t *rc, const dist_t *D)
{
    if (rc->D != D) {
        rc->h = residual_setup(D, P->wk);
        rc->D = D;
    }
    return rc->h;
}

/* Resolves the alias entries of a batch, then checks its items; a slot
 * whose first draw was a positive continues alone. */
static void batch_finish(const plan_t *P, slot_t *b, uint32_t nb, residual_cache_t *rcache,
                         icpns_sample_stats_t *st)
{
    for (uint32_t i = 0; i < nb; i++) {
        slot_t *x = &b[i];
        if (x->direct)
            continue;
        const icpns_wtable_t *t = x->D->t;
        const icpns_alias_entry_t *e = &t->alias.e[x->k];
        x->k = x->coin < e->prob ? x->k : e->alias;
        if (t->items)
            PREFETCH(&t->items[x->k]);
        if (x->prob)
            PREFETCH(&t->w[x->k]);
    }
    st->draws += nb;
    for (uint32_t i = 0; i < nb; i++) {
        slot_t *x = &b[i];
        const dist_t *D = x->D;
        uint32_t item = x->direct ? x->k : table_item(D->t, x->k);
        if (!contains(D->pos, D->d, item)) {
            *x->item = item;
            if (x->prob)
                *x->prob = (x->direct ? item_weight(D, item) : D->t->w[x->k] + D->eps) / D->mass;
            continue;
        }
        /* The rare path: the first draw was a positive. */
        st->rejections++;
        double wi = 0;
        bool got = false;
        for (int t = 1; t < MAX_TRIES; t++) {
            bool known;
            item = draw_mixture(D, &x->rng, &wi, &known);
            st->draws++;
            if (!contains(D->pos, D->d, item)) {
                if (!known && x->prob)
                    wi = item_weight(D, item);
                got = true;
                break;
            }
            st->rejections++;
        }
        if (!got) {
            uint32_t h = residual_h(P, rcache, D);
            item = draw_residual(D, P->wk, h, &x->rng, x->prob ? &wi : NULL);
            st->draws++;
            *x->rf |= ICPNS_ROW_RESIDUAL;
        }
        *x->item = item;
        if (x->prob)
            *x->prob = wi / D->mass;
    }
}

/* Samples the resolved rows [a, b) into @items / @probs (row a first). */
static void sample_block(const plan_t *P, uint32_t a, uint32_t b, uint32_t *items,
                         double *probs, icpns_sample_stats_t *st)
{
    slot_t batch[BATCH_SLOTS];
    uint32_t nb = 0;
    residual_cache_t rcache = {NULL, 0};
    for (uint32_t r = a; r < b; r++) {
        rowst_t *R = ring_at(P, r);
        uint32_t *ri = items + (size_t)(r - a) * P->cols;
        double *rp = probs ? probs + (size_t)(r - a) * P->cols : NULL;
        for (uint32_t k = 0; k < P->n_parts; k++) {
            const dist_t *D = dist_at(P, r, k);
            const pplan_t *pp = &P->parts[k];
            uint32_t *pi = ri + pp->out;
            double *pr = rp ? rp + pp->out : NULL;
            icpns_rng_t rng;
            if (D->path == PATH_UNIFORM) {
                /* Uniform over non-positives: exact in one draw. */
                uint64_t left = (uint64_t)D->n_items - D->d;
                for (uint32_t j = 0; j < pp->count; j++) {
                    icpns_rng_init_slot(&rng, R->key, pp->slot0 + j);
                    pi[j] = kth_non_positive(D->pos, D->d, icpns_rng_below(&rng, left));
                    if (pr)
                        pr[j] = 1.0 / D->mass;
                }
                st->draws += pp->count;
                if (D->fallback)
                    st->fallback_rows++;
            } else if (D->path == PATH_RESIDUAL) {
                if (!pp->count)
                    continue;
                uint32_t h = residual_h(P, &rcache, D);
                for (uint32_t j = 0; j < pp->count; j++) {
                    double wi = 0;
                    icpns_rng_init_slot(&rng, R->key, pp->slot0 + j);
                    pi[j] = draw_residual(D, P->wk, h, &rng, pr ? &wi : NULL);
                    if (pr)
                        pr[j] = wi / D->mass;
                }
                st->draws += pp->count;
                st->residual_rows++;
                R->rf |= ICPNS_ROW_RESIDUAL;
            } else {
                const icpns_alias_t *al = &D->t->alias;
                for (uint32_t j = 0; j < pp->count; j++) {
                    if (nb == BATCH_SLOTS) {
                        batch_finish(P, batch, nb, &rcache, st);
                        nb = 0;
                    }
                    slot_t *x = &batch[nb++];
                    icpns_rng_init_slot(&x->rng, R->key, pp->slot0 + j);
                    x->D = D;
                    x->item = pi + j;
                    x->prob = pr ? pr + j : NULL;
                    x->rf = &R->rf;
                    /* The first attempt of draw_mixture, split so that the
                     * alias entry is fetched while other slots draw. */
                    if (D->eps > 0 && icpns_rng_double(&x->rng) * D->total >= D->sparse) {
                        x->direct = true;
                        x->k = (uint32_t)icpns_rng_below(&x->rng, D->n_items);
                    } else {
                        x->direct = false;
                        x->k = (uint32_t)icpns_rng_below(&x->rng, al->n);
                        x->coin = icpns_rng_double(&x->rng);
                        PREFETCH(&al->e[x->k]);
                    }
                }
            }
        }
    }
    if (nb)
        batch_finish(P, batch, nb, &rcache, st);
}

/*
 * Drives rows [first, first + n) of @users / @occ through the stages and
 * samples them block by block.  Rows before a failing row are complete.
 */
static int run_rows(const plan_t *P, const int64_t *users, const uint32_t *occ,
                    uint32_t first, uint32_t n, uint32_t *items, double *probs,
                    unsigned *row_flags, icpns_sample_stats_t *stats, uint32_t *ret_failed)
{
    uint32_t rb = P->cols ? BATCH_SLOTS / P->cols : MAX_BLOCK;
    if (rb < 1)
        rb = 1;
    if (rb > MAX_BLOCK)
        rb = MAX_BLOCK;
    uint64_t end = (uint64_t)first + n, n1 = first, n2 = first, n3 = first, n4 = first;
    icpns_sample_stats_t st = {0};
    for (uint64_t a = first; a < end; a += rb) {
        uint64_t b = a + rb < end ? a + rb : end;
        /* Each stage runs a block ahead of the next one. */
        uint64_t t = b + 4 * rb < end ? b + 4 * rb : end;
        for (; n1 < t; n1++)
            stage_hash(P, users, occ, (uint32_t)n1);
        for (t = b + 3 * rb < end ? b + 3 * rb : end; n2 < t; n2++)
            stage_probe(P, (uint32_t)n2);
        for (t = b + 2 * rb < end ? b + 2 * rb : end; n3 < t; n3++)
            stage_find(P, (uint32_t)n3);
        for (t = b + rb < end ? b + rb : end; n4 < t; n4++)
            stage_resolve(P, (uint32_t)n4);
        uint64_t stop = b;
        int err = 0;
        for (uint64_t r = a; r < b; r++)
            if ((err = ring_at(P, (uint32_t)r)->err)) {
                stop = r;
                break;
            }
        size_t off = (size_t)(a - first) * P->cols;
        sample_block(P, (uint32_t)a, (uint32_t)stop, items + off, probs ? probs + off : NULL,
                     &st);
        if (row_flags)
            for (uint64_t r = a; r < stop; r++)
                row_flags[r - first] = ring_at(P, (uint32_t)r)->rf;
        if (err) {
            if (ret_failed)
                *ret_failed = (uint32_t)stop;
            return err;
        }
    }
    if (stats) {
        stats->draws += st.draws;
        stats->rejections += st.rejections;
        stats->residual_rows += st.residual_rows;
        stats->fallback_rows += st.fallback_rows;
    }
    return 0;
}

static void plan_init(plan_t *P, const icpns_snapshot_t *s, const icpns_weights_t *w,
                      icpns_work_t *work, uint32_t n_parts, uint32_t cols, unsigned flags,
                      uint64_t seed)
{
    P->s = s;
    P->w = w;
    P->wk = work;
    P->parts = work->parts;
    P->n_parts = n_parts;
    P->cols = cols;
    P->flags = flags;
    P->seed_key = icpns_rng_seed_key(seed);
    P->need_comm = P->need_pop = false;
    for (uint32_t k = 0; k < n_parts; k++) {
        P->need_comm |= work->parts[k].strategy == ICPNS_STRATEGY_ICPNS;
        P->need_pop |= work->parts[k].strategy == ICPNS_STRATEGY_POPULARITY;
    }
}

uint32_t icpns_rows_cols(const icpns_rows_t *req)
{
    uint64_t c = 0;
    for (uint32_t k = 0; k < req->n_parts; k++)
        c += req->parts[k].slots;
    return c > UINT32_MAX ? 0 : (uint32_t)c;
}

int icpns_occurrences(const int64_t *users, uint32_t rows, uint32_t *ret_occ)
{
    if (rows <= 1) {
        if (rows)
            ret_occ[0] = 0;
        return 0;
    }
    /* Open addressing at load <= 1/2: ids and their counts so far. */
    size_t cap = 16;
    while (cap < 2 * (size_t)rows)
        cap <<= 1;
    int64_t *ids = malloc(cap * sizeof(*ids));
    uint32_t *cnt = calloc(cap, sizeof(*cnt));
    if (!ids || !cnt) {
        free(ids);
        free(cnt);
        return ICPNS_ENOMEM;
    }
    size_t mask = cap - 1;
    for (uint32_t r = 0; r < rows; r++) {
        size_t h = (size_t)icpns_mix64((uint64_t)users[r]) & mask;
        while (cnt[h] && ids[h] != users[r])
            h = (h + 1) & mask;
        ids[h] = users[r];
        ret_occ[r] = cnt[h]++;
    }
    free(ids);
    free(cnt);
    return 0;
}

int icpns_sample_rows(const icpns_snapshot_t *s, const icpns_weights_t *w,
                      icpns_work_t *work, const icpns_rows_t *req, uint32_t first_row,
                      uint32_t n_rows, uint32_t *ret_items, double *ret_probs,
                      unsigned *ret_row_flags, icpns_sample_stats_t *stats,
                      uint32_t *ret_failed_row)
{
    int rc = ICPNS_EINVAL;
    uint64_t cols = 0;
    if (!req || !req->parts || req->n_parts == 0 || (uint64_t)first_row + n_rows > req->rows)
        goto fail;
    if (n_rows && (!req->users || !req->occ || !ret_items))
        goto fail;
    for (uint32_t k = 0; k < req->n_parts; k++) {
        if ((unsigned)req->parts[k].strategy >= ICPNS_STRATEGY_COUNT)
            goto fail;
        cols += req->parts[k].slots;
    }
    if (cols > UINT32_MAX)
        goto fail;
    if ((rc = work_pipeline(work, req->n_parts)))
        goto fail;
    uint32_t slot = 0;
    for (uint32_t k = 0; k < req->n_parts; k++) {
        work->parts[k] = (pplan_t){req->parts[k].strategy, slot, req->parts[k].slots, slot};
        slot += req->parts[k].slots;
    }
    plan_t P;
    plan_init(&P, s, w, work, req->n_parts, (uint32_t)cols, req->flags, req->seed);
    return run_rows(&P, req->users, req->occ, first_row, n_rows, ret_items, ret_probs,
                    ret_row_flags, stats, ret_failed_row);
fail:
    if (ret_failed_row)
        *ret_failed_row = ICPNS_NONE;
    return rc;
}

int icpns_sample_row(const icpns_snapshot_t *s, const icpns_weights_t *w,
                     icpns_work_t *work, icpns_row_id_t row, icpns_strategy_t strategy,
                     unsigned flags, uint32_t slot0, uint32_t count, uint32_t *ret_items,
                     double *ret_probs, unsigned *ret_row_flags, icpns_sample_stats_t *stats)
{
    if ((unsigned)strategy >= ICPNS_STRATEGY_COUNT || (uint64_t)slot0 + count > UINT32_MAX)
        return ICPNS_EINVAL;
    int rc = work_pipeline(work, 1);
    if (rc)
        return rc;
    work->parts[0] = (pplan_t){strategy, slot0, count, 0};
    plan_t P;
    plan_init(&P, s, w, work, 1, count, flags, row.seed);
    unsigned rf = 0;
    rc = run_rows(&P, &row.user, &row.occ, 0, 1, ret_items, ret_probs, &rf, stats, NULL);
    if (rc)
        return rc;
    if (ret_row_flags)
        *ret_row_flags = rf;
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
