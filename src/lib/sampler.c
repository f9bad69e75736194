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
 * the id it names), the user's community, offsets and mass, its
 * positives, and per slot an alias entry and a support item id are each a
 * likely cache miss, and each depends on the one before.  So rows go
 * through stages a block apart (a block is BATCH_SLOTS / cols rows, 1 to
 * MAX_BLOCK; 16 rows at n = 1, 4 at n = 16), and while block k is drawn:
 *     block k+4  hash the user id, prefetch its hash slot      (hash)
 *     block k+3  read the slot, prefetch the id it names        (probe)
 *     block k+2  confirm the id -> dense user, prefetch the
 *                user's offsets, community and mass             (find)
 *     block k+1  resolve each part's distribution, choose the
 *                path, prefetch the positives                   (resolve)
 *     block k    draw every rejection-path slot's first attempt
 *                (column + coin, or an epsilon item), prefetch
 *                its alias entry                                (draw)
 *     block k-1  resolve the alias entries, prefetch the
 *                support item ids                               (resolve)
 *     block k-2  check the items against the positives, write
 *                them and the rows' flags                       (check)
 * so every fetch has a block of other work to arrive in.  User ids that
 * form one contiguous range skip the hash table (the dense index is the
 * offset).  A slot whose first draw hits a positive continues alone
 * (retries, then the residual path); uniform and residual (row, part)s are
 * sampled outright when drawn, one draw and binary searches a slot.  The
 * binary searches step by masks, not branches.  Every slot reads the same
 * stream values as the one-slot-at-a-time order would, so block sizes and
 * slicing change nothing; no allocation happens after the resolve stage
 * (it reserves the residual scratch), so a failing row leaves every row
 * before it complete.
 */
#include <stdlib.h>
#include <string.h>

#include "icpns/sampler.h"

/* Rejection tries per slot before switching to the residual path. */
#define MAX_TRIES 64
/* Slots whose first draw is in flight together, and rows per block: a
 * block is BATCH_SLOTS / cols rows, at least 1 and at most MAX_BLOCK. */
#define BATCH_SLOTS 64
#define MAX_BLOCK 16
/* Row states held: the two blocks whose slots are still in flight, the
 * block being drawn and four ahead (a power of 2 >= 7 * MAX_BLOCK);
 * resolved distributions: the blocks in flight, this one and the next (a
 * power of 2 >= 4 * MAX_BLOCK). */
#define RING 128
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
    int err;       /* why the row cannot be sampled (see icpns_work.err) */
    unsigned rf;   /* ICPNS_ROW_* */
} rowst_t;

/* One part of every row: its strategy, the stream slot of its first item
 * and where its items go in the row's output. */
typedef struct pplan {
    icpns_strategy_t strategy;
    uint32_t slot0, count, out;
} pplan_t;

/* A slot whose first draw is in flight. */
typedef struct slot {
    icpns_rng_t rng;
    const dist_t *D;
    size_t out;      /* index of the result in the call's outputs */
    uint32_t k;      /* alias column, then support index; or the item */
    double coin;     /* the alias coin; DIRECT: k is an epsilon-part item */
} slot_t;

/* A coin no draw gives (they are < 1). */
#define DIRECT 2.0

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
    slot_t *slots; /* 3 batches of BATCH_SLOTS */
    uint32_t err_row; /* the first resolved row that cannot be sampled */
    bool err;
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
        free(w->slots);
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
    if (!w->slots && !(w->slots = malloc(3 * BATCH_SLOTS * sizeof(*w->slots))))
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

/* Whether @item is in the sorted array @pos[0..d): a lower bound whose
 * steps are masks, not branches (the comparisons are unpredictable, and
 * compilers turn a ?: into a branch). */
static inline bool contains(const uint32_t *pos, uint32_t d, uint32_t item)
{
    if (d == 0)
        return false;
    const uint32_t *base = pos;
    uint32_t n = d;
    while (n > 1) {
        uint32_t half = n / 2;
        base += half & -(uint32_t)(base[half - 1] < item);
        n -= half;
    }
    return *base == item;
}

/* The k-th (0-based) item of [0, n) that is not in the sorted @pos[0..d).
 * pos[s] - s counts the non-positives below pos[s]; it never decreases, so
 * the answer is k + (the number of s with pos[s] - s <= k), a lower bound
 * with mask steps as in contains(). */
static inline uint32_t kth_non_positive(const uint32_t *pos, uint32_t d, uint64_t k)
{
    if (d == 0)
        return (uint32_t)k;
    uint32_t lo = 0, n = d;
    while (n > 1) {
        uint32_t half = n / 2;
        lo += half & -(uint32_t)((uint64_t)pos[lo + half - 1] - (lo + half - 1) <= k);
        n -= half;
    }
    return (uint32_t)(k + lo + ((uint64_t)pos[lo] - lo <= k));
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

/* Resolves the distribution of a row's part, every case; sets ICPNS_ROW_*
 * bits.  resolve() takes the common cases inline and gives the same
 * results. */
static __attribute__((noinline)) int resolve_all(const icpns_snapshot_t *s, const icpns_weights_t *w, uint32_t user,
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

/*
 * Resolves the distribution of a row's part; sets ICPNS_ROW_* bits.  The
 * cases of nearly every row (a known user with negatives left, uniform, or
 * a table whose mass is not exhausted) inline, with the very expressions
 * of resolve_all; everything else there.
 */
static inline __attribute__((always_inline)) int
resolve(const icpns_snapshot_t *s, const icpns_weights_t *w, uint32_t user,
        icpns_strategy_t strategy, unsigned flags, dist_t *D, unsigned *row_flags)
{
    if (user == ICPNS_NONE)
        return resolve_all(s, w, user, strategy, flags, D, row_flags);
    uint32_t n = s->items.n, d = icpns_snapshot_degree(s, user);
    if (d >= n)
        return ICPNS_EINFEASIBLE;
    const icpns_wtable_t *t;
    double eps = 0, pmass;
    uint32_t hits;
    if (strategy == ICPNS_STRATEGY_ICPNS) {
        uint32_t c = s->user_comm[user];
        if (c == ICPNS_NONE)
            return resolve_all(s, w, user, strategy, flags, D, row_flags);
        t = &w->comm[c];
        eps = w->params.epsilon;
        /* resolve_all first asks whether the positives hold the whole
         * support (hits >= m).  Then their mass equals the table's up to
         * the rounding of two sums of m positive terms, less than
         * 2 m 2^-53 S < 1e-6 S for any m < 2^32: a remainder above
         * 4e-6 S says no without reading the hits (one cache miss fewer
         * per row), and anything below goes to resolve_all. */
        hits = 0;
        pmass = w->pos_mass_comm[user];
        if (!(t->cdf[t->m] - pmass > 4e-6 * t->cdf[t->m]))
            return resolve_all(s, w, user, strategy, flags, D, row_flags);
    } else if (strategy == ICPNS_STRATEGY_POPULARITY) {
        t = &w->global;
        hits = d;
        pmass = w->pos_mass_pop[user];
    } else {
        D->t = NULL;
        D->pos = s->pos + s->pos_off[user];
        D->d = d;
        D->n_items = n;
        D->eps = 1;
        D->mass = (double)(n - d);
        D->total = n;
        D->fallback = false;
        return 0;
    }
    if (hits >= t->m)
        return resolve_all(s, w, user, strategy, flags, D, row_flags);
    double S = t->cdf[t->m], rest = S - pmass;
    if (rest < 0)
        rest = 0;
    /* rest + 0 * x is rest (rest is not -0 here): skip the terms of an
     * epsilon of 0, the usual case. */
    double mass = eps > 0 ? rest + eps * (double)(n - d) : rest;
    if (!(mass > 0))
        return resolve_all(s, w, user, strategy, flags, D, row_flags);
    D->t = t;
    D->pos = s->pos + s->pos_off[user];
    D->d = d;
    D->n_items = n;
    D->eps = eps;
    D->sparse = S;
    D->sparse_rest = rest;
    D->mass = mass;
    D->total = eps > 0 ? S + eps * (double)n : S;
    D->fallback = false;
    return 0;
}

/* The bit length of @x >= 1: log2 to within 1, which is all the path
 * choice needs, for two instructions. */
static inline uint64_t bit_length(uint64_t x)
{
    return (uint64_t)(64 - __builtin_clzll(x));
}

/* Chooses how a resolved (row, part) of @count slots is sampled. */
static inline unsigned char choose_path(const dist_t *D, uint32_t count, unsigned flags)
{
    if (!D->t)
        return PATH_UNIFORM;
    if (flags & ICPNS_SAMPLE_FORCE_RESIDUAL)
        return PATH_RESIDUAL;
    if (flags & ICPNS_SAMPLE_FORCE_REJECTION)
        return PATH_REJECT;
    /* By expected cost, with accept = mass / total the acceptance rate.
     * At accept >= 1/2 rejection takes at most two draws a slot on
     * average: take it without further thought (most rows).  Below,
     * rejection costs about count / accept draws, each a search of the
     * positives (2 + log d); the residual path a setup over the positives,
     * d (1 + log m), plus count (2 + log d + log m) for its searches.
     * Logs are bit lengths, and both sides are multiplied by total (> 0)
     * to spare a division. */
    if (2 * D->mass >= D->total)
        return PATH_REJECT;
    if (64 * D->mass < D->total)
        return PATH_RESIDUAL; /* accept < 1/64 */
    uint64_t ld = bit_length((uint64_t)D->d + 2), lm = bit_length((uint64_t)D->t->m + 2);
    double cost_res = (double)((uint64_t)D->d * (1 + lm) + (uint64_t)count * (2 + ld + lm));
    return cost_res * D->mass < (double)((uint64_t)count * (2 + ld)) * D->total ? PATH_RESIDUAL
                                                                              : PATH_REJECT;
}

/* ---- the pipeline ----------------------------------------------------- */

/* What a request's sampling needs to know, fixed for its duration. */
typedef struct plan {
    const icpns_snapshot_t *s;
    const icpns_weights_t *w;
    icpns_work_t *wk;
    rowst_t *ring;
    dist_t *dists;
    const pplan_t *parts;
    uint32_t n_parts, cols;
    unsigned flags;
    uint64_t seed_key;
    bool need_comm, need_pop; /* per-user arrays worth prefetching */
    bool contiguous;          /* the user ids are id_base .. id_base + n - 1 */
    int64_t id_base;
} plan_t;

static inline dist_t *dist_at(dist_t *dists, uint32_t n_parts, uint32_t r, uint32_t k)
{
    return &dists[(size_t)(r & (DRING - 1)) * n_parts + k];
}

/* Prefetches the cache lines a binary search over @n entries of @p
 * touches first. */
static inline void prefetch_sorted(const uint32_t *p, uint32_t n)
{
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

/* How far each stage has got: rows below n[k] have been through stage k. */
typedef struct stages {
    uint64_t hashed, probed, found, resolved;
} stages_t;

/*
 * Runs the stages up to the targets t[0..3] (rows, decreasing):
 *   1. hash: the row key, and the user's hash slot on its way;
 *   2. probe: the dense index the slot names, its id on its way;
 *   3. find: the dense user (the probe continues past other ids, as in
 *      icpns_idmap_find), its offsets, community and masses on their way;
 *   4. resolve: every part's distribution and path, the positives on
 *      their way.  A row that cannot be sampled keeps its error in
 *      R->err, and the first such row is noted in the work.
 * The plan's fields are read once into locals here: the stages store
 * through pointers the compiler cannot tell apart from the plan.
 */
static void run_stages(const plan_t *P, const int64_t *users, const uint32_t *occ,
                       stages_t *n, const uint64_t t[4])
{
    const icpns_snapshot_t *s = P->s;
    const icpns_weights_t *w = P->w;
    rowst_t *const ring = P->ring;
    const uint32_t *const slots = s->users.slots;
    const int64_t *const ids = s->users.ids;
    const uint32_t mask = s->users.mask;
    const uint64_t seed_key = P->seed_key;
    const bool contiguous = P->contiguous;
    const uint64_t id_base = (uint64_t)P->id_base, n_users = s->users.n;
    for (uint64_t r = n->hashed; r < t[0]; r++) {
        rowst_t *R = &ring[r & (RING - 1)];
        int64_t id = users[r];
        uint64_t hash = icpns_idmap_hash(id);
        R->id = id;
        R->key = icpns_rng_user_key_hashed(seed_key, hash, occ[r]);
        if (contiguous) {
            /* The dense index is the id's offset: no table to probe. */
            uint64_t off = (uint64_t)id - id_base;
            R->cand = off < n_users ? (uint32_t)off : ICPNS_NONE;
        } else {
            uint32_t h = (uint32_t)hash & mask;
            R->h = h;
            PREFETCH(&slots[h]);
        }
    }
    n->hashed = n->hashed > t[0] ? n->hashed : t[0];
    if (!contiguous)
        for (uint64_t r = n->probed; r < t[1]; r++) {
            rowst_t *R = &ring[r & (RING - 1)];
            uint32_t c = slots[R->h];
            R->cand = c;
            if (c != ICPNS_NONE)
                PREFETCH(&ids[c]);
        }
    n->probed = n->probed > t[1] ? n->probed : t[1];
    const bool need_comm = P->need_comm, need_pop = P->need_pop;
    const uint64_t *const pos_off = s->pos_off;
    for (uint64_t r = n->found; r < t[2]; r++) {
        rowst_t *R = &ring[r & (RING - 1)];
        uint32_t u = R->cand;
        if (!contiguous) {
            uint32_t h = R->h;
            int64_t id = R->id;
            while (u != ICPNS_NONE && ids[u] != id) {
                h = (h + 1) & mask;
                u = slots[h];
            }
        }
        R->u = u;
        if (u == ICPNS_NONE)
            continue;
        PREFETCH(&pos_off[u]);
        PREFETCH(&pos_off[u + 1]);
        if (need_comm) {
            PREFETCH(&s->user_comm[u]);
            PREFETCH(&w->pos_mass_comm[u]);
        }
        if (need_pop)
            PREFETCH(&w->pos_mass_pop[u]);
    }
    n->found = n->found > t[2] ? n->found : t[2];
    const uint32_t n_parts = P->n_parts;
    const unsigned flags = P->flags;
    const pplan_t *const parts = P->parts;
    dist_t *const dists = P->dists;
    icpns_work_t *const wk = P->wk;
    for (uint64_t r = n->resolved; r < t[3]; r++) {
        rowst_t *R = &ring[r & (RING - 1)];
        dist_t *D = dist_at(dists, n_parts, (uint32_t)r, 0);
        uint32_t u = R->u;
        unsigned rf = 0;
        int rc = 0;
        for (uint32_t k = 0; k < n_parts; k++) {
            if ((rc = resolve(s, w, u, parts[k].strategy, flags, D + k, &rf)))
                break;
            D[k].path = choose_path(D + k, parts[k].count, flags);
            /* A rejection slot may run out of tries and need the residual
             * scratch: reserve it now, so sampling itself cannot fail. */
            if (D[k].path != PATH_UNIFORM && D[k].d >= wk->cap &&
                (rc = work_reserve(wk, (size_t)D[k].d + 1)))
                break;
        }
        R->rf = rf;
        R->err = rc;
        if (__builtin_expect(rc != 0, 0)) {
            /* Rows are resolved in order: the first failure is the one
             * to report. */
            if (!wk->err) {
                wk->err = true;
                wk->err_row = (uint32_t)r;
            }
            continue;
        }
        prefetch_sorted(D->pos, D->d);
    }
    n->resolved = n->resolved > t[3] ? n->resolved : t[3];
}

/* The residual scratch's current owner, so a (row, part) sets it up once. */
typedef struct residual_cache {
    const dist_t *D;
    uint32_t h;
} residual_cache_t;

static inline uint32_t residual_h(icpns_work_t *wk, residual_cache_t *rc, const dist_t *D)
{
    if (rc->D != D) {
        rc->h = residual_setup(D, wk);
        rc->D = D;
    }
    return rc->h;
}

/* The outputs of a call. */
typedef struct outs {
    uint32_t *items;
    double *probs;
    unsigned *row_flags; /* may be NULL */
    uint32_t first;      /* the call's first row */
    icpns_sample_stats_t *st;
    residual_cache_t rcache;
} outs_t;

/* The slots of one block on their way: drawn (alias entries on their way),
 * then resolved (support items on their way), then checked. */
typedef struct batch {
    slot_t *x;
    uint32_t n;
    uint32_t a, b;  /* its rows */
    int state;      /* BATCH_* */
} batch_t;

enum { BATCH_EMPTY, BATCH_DRAWN, BATCH_RESOLVED };

/* The rare end of a slot whose first draw hit a positive: the remaining
 * tries of the same stream, then the residual path. */
static void slot_retry(const plan_t *P, slot_t *x, outs_t *o)
{
    const dist_t *D = x->D;
    icpns_sample_stats_t *st = o->st;
    double wi = 0;
    uint32_t item = 0;
    bool got = false;
    st->rejections++;
    for (int t = 1; t < MAX_TRIES; t++) {
        bool known;
        item = draw_mixture(D, &x->rng, &wi, &known);
        st->draws++;
        if (!contains(D->pos, D->d, item)) {
            if (!known && o->probs)
                wi = item_weight(D, item);
            got = true;
            break;
        }
        st->rejections++;
    }
    if (!got) {
        uint32_t h = residual_h(P->wk, &o->rcache, D);
        item = draw_residual(D, P->wk, h, &x->rng, o->probs ? &wi : NULL);
        st->draws++;
        P->ring[(o->first + x->out / P->cols) & (RING - 1)].rf |= ICPNS_ROW_RESIDUAL;
    }
    o->items[x->out] = item;
    if (o->probs)
        o->probs[x->out] = wi / D->mass;
}

/* Resolves the alias entries of a batch (fetched since it was drawn), with
 * the support item ids on their way. */
static inline __attribute__((always_inline)) void
batch_resolve(slot_t *b, uint32_t nb, const bool with_probs)
{
    for (uint32_t i = 0; i < nb; i++) {
        slot_t *x = &b[i];
        if (x->coin == DIRECT)
            continue;
        const icpns_wtable_t *t = x->D->t;
        const icpns_alias_entry_t *e = &t->alias.e[x->k];
        x->k = x->coin < e->prob ? x->k : e->alias;
        if (t->items)
            PREFETCH(&t->items[x->k]);
        if (with_probs)
            PREFETCH(&t->w[x->k]);
    }
}

/* Checks the items of a resolved batch against the positives and writes
 * them; a slot whose first draw was a positive continues alone. */
static inline __attribute__((always_inline)) void
batch_check(const plan_t *P, slot_t *b, uint32_t nb, outs_t *o, const bool with_probs)
{
    o->st->draws += nb;
    uint32_t *items = o->items;
    double *probs = o->probs;
    for (uint32_t i = 0; i < nb; i++) {
        slot_t *x = &b[i];
        const dist_t *D = x->D;
        bool direct = x->coin == DIRECT;
        uint32_t item = direct ? x->k : table_item(D->t, x->k);
        if (__builtin_expect(contains(D->pos, D->d, item), 0)) {
            slot_retry(P, x, o);
            continue;
        }
        items[x->out] = item;
        if (with_probs)
            probs[x->out] = (direct ? item_weight(D, item) : D->t->w[x->k] + D->eps) / D->mass;
    }
}

/* Finishes batch @B whatever its state, and writes its rows' flags. */
static inline __attribute__((always_inline)) void
batch_finish(const plan_t *P, batch_t *B, outs_t *o, const bool with_probs)
{
    if (B->state == BATCH_EMPTY)
        return;
    if (B->state == BATCH_DRAWN)
        batch_resolve(B->x, B->n, with_probs);
    batch_check(P, B->x, B->n, o, with_probs);
    if (o->row_flags)
        for (uint32_t r = B->a; r < B->b; r++)
            o->row_flags[r - o->first] = P->ring[r & (RING - 1)].rf;
    B->state = BATCH_EMPTY;
}

/*
 * The first attempt of draw_mixture for slots @slot0 .. @slot0 + m - 1 of
 * a row (key @key), results to go to @out ..: the same draws in the same
 * order, split so that the alias entries are fetched while other work is
 * done.
 */
static inline __attribute__((always_inline)) void
fill_slots(slot_t *x, const dist_t *D, uint64_t key, uint32_t slot0, size_t out, uint32_t m)
{
    const icpns_alias_t *al = &D->t->alias;
    const icpns_alias_entry_t *e = al->e;
    uint32_t n = al->n;
    if (D->eps == 0) {
        for (uint32_t i = 0; i < m; i++, x++) {
            icpns_rng_init_slot(&x->rng, key, slot0 + i);
            x->D = D;
            x->out = out + i;
            x->k = (uint32_t)icpns_rng_below(&x->rng, n);
            x->coin = icpns_rng_double(&x->rng);
            PREFETCH(&e[x->k]);
        }
        return;
    }
    for (uint32_t i = 0; i < m; i++, x++) {
        icpns_rng_init_slot(&x->rng, key, slot0 + i);
        x->D = D;
        x->out = out + i;
        if (icpns_rng_double(&x->rng) * D->total >= D->sparse) {
            x->k = (uint32_t)icpns_rng_below(&x->rng, D->n_items);
            x->coin = DIRECT;
        } else {
            x->k = (uint32_t)icpns_rng_below(&x->rng, n);
            x->coin = icpns_rng_double(&x->rng);
            PREFETCH(&e[x->k]);
        }
    }
}

/* A (row, part) on the uniform or the residual path, slot after slot:
 * each takes one draw and binary searches, no rejection. */
static void sample_part_direct(const plan_t *P, uint32_t r, const dist_t *D, uint64_t key,
                               uint32_t slot0, uint32_t count, uint32_t *items, double *probs,
                               outs_t *o)
{
    icpns_sample_stats_t *st = o->st;
    icpns_rng_t rng;
    if (D->path == PATH_UNIFORM) {
        /* Uniform over non-positives: exact in one draw. */
        uint64_t left = (uint64_t)D->n_items - D->d;
        for (uint32_t j = 0; j < count; j++) {
            icpns_rng_init_slot(&rng, key, slot0 + j);
            items[j] = kth_non_positive(D->pos, D->d, icpns_rng_below(&rng, left));
            if (probs)
                probs[j] = 1.0 / D->mass;
        }
        st->draws += count;
        if (D->fallback)
            st->fallback_rows++;
        return;
    }
    if (!count)
        return;
    uint32_t h = residual_h(P->wk, &o->rcache, D);
    for (uint32_t j = 0; j < count; j++) {
        double wi = 0;
        icpns_rng_init_slot(&rng, key, slot0 + j);
        items[j] = draw_residual(D, P->wk, h, &rng, probs ? &wi : NULL);
        if (probs)
            probs[j] = wi / D->mass;
    }
    st->draws += count;
    st->residual_rows++;
    P->ring[r & (RING - 1)].rf |= ICPNS_ROW_RESIDUAL;
}

/*
 * Draws the first attempt of every rejection-path slot of the resolved
 * rows [a, b) into batch @B, and samples their uniform and residual parts
 * outright.  A row with more slots than a batch holds (rb is then 1) has
 * its full batches finished on the spot.  @one_part: the request has a
 * single part (most do), which spares the loop over parts.
 */
static inline __attribute__((always_inline)) void
draw_block(const plan_t *P, uint32_t a, uint32_t b, batch_t *B, outs_t *o,
           const bool with_probs, const bool one_part)
{
    const uint32_t n_parts = one_part ? 1 : P->n_parts, cols = P->cols;
    const pplan_t *parts = P->parts;
    const rowst_t *ring = P->ring;
    const dist_t *D = dist_at(P->dists, n_parts, a, 0);
    const dist_t *dists_end = P->dists + (size_t)DRING * n_parts;
    slot_t *x = B->x;
    uint32_t nb = 0;
    size_t base = (size_t)(a - o->first) * cols;
    B->a = a;
    B->b = b;
    for (uint32_t r = a; r < b; r++, base += cols) {
        uint64_t key = ring[r & (RING - 1)].key;
        for (uint32_t k = 0; k < n_parts; k++, D++) {
            const pplan_t *pp = &parts[k];
            uint32_t count = pp->count, slot0 = pp->slot0;
            size_t out = base + pp->out;
            if (__builtin_expect(D->path == PATH_REJECT, 1)) {
                if (count <= BATCH_SLOTS - nb) { /* the usual case: all fit */
                    fill_slots(x + nb, D, key, slot0, out, count);
                    nb += count;
                    continue;
                }
                for (uint32_t j = 0; j < count;) {
                    if (nb == BATCH_SLOTS) {
                        batch_resolve(x, nb, with_probs);
                        batch_check(P, x, nb, o, with_probs);
                        nb = 0;
                    }
                    uint32_t m = count - j < BATCH_SLOTS - nb ? count - j : BATCH_SLOTS - nb;
                    fill_slots(x + nb, D, key, slot0 + j, out + j, m);
                    nb += m;
                    j += m;
                }
            } else {
                sample_part_direct(P, r, D, key, slot0, count, o->items + out,
                                   with_probs ? o->probs + out : NULL, o);
            }
        }
        if (D == dists_end)
            D = P->dists;
    }
    B->n = nb;
    B->state = BATCH_DRAWN;
}

/*
 * Samples the resolved rows [a, b) as one step of the slot pipeline over
 * the batches B[0..2]: the batch two blocks back is checked, the one a
 * block back resolved, and this block drawn into the third, so that each
 * of the alias entries and support item ids has a whole block of work to
 * arrive in.  (The same draws as slot by slot, in another order.)
 */
static inline __attribute__((always_inline)) void
pipe_step(const plan_t *P, uint32_t a, uint32_t b, batch_t *B, uint64_t k, outs_t *o,
          const bool with_probs, const bool one_part)
{
    batch_t *old = &B[(k + 1) % 3], *prev = &B[(k + 2) % 3], *cur = &B[k % 3];
    batch_finish(P, old, o, with_probs);
    if (prev->state == BATCH_DRAWN) {
        batch_resolve(prev->x, prev->n, with_probs);
        prev->state = BATCH_RESOLVED;
    }
    draw_block(P, a, b, cur, o, with_probs, one_part);
}

static void pipe_step_items(const plan_t *P, uint32_t a, uint32_t b, batch_t *B, uint64_t k,
                            outs_t *o)
{
    pipe_step(P, a, b, B, k, o, false, false);
}

static void pipe_step_items1(const plan_t *P, uint32_t a, uint32_t b, batch_t *B, uint64_t k,
                             outs_t *o)
{
    pipe_step(P, a, b, B, k, o, false, true);
}

static void pipe_step_probs(const plan_t *P, uint32_t a, uint32_t b, batch_t *B, uint64_t k,
                            outs_t *o)
{
    pipe_step(P, a, b, B, k, o, true, false);
}

static void pipe_step_probs1(const plan_t *P, uint32_t a, uint32_t b, batch_t *B, uint64_t k,
                             outs_t *o)
{
    pipe_step(P, a, b, B, k, o, true, true);
}

/* Finishes the batches in flight, oldest first. */
static void pipe_drain(const plan_t *P, batch_t *B, uint64_t k, outs_t *o)
{
    for (uint64_t j = k + 1; j <= k + 3; j++)
        if (o->probs)
            batch_finish(P, &B[j % 3], o, true);
        else
            batch_finish(P, &B[j % 3], o, false);
}

/*
 * Drives rows [first, first + n) of @users / @occ through the stages and
 * the slot pipeline, block by block.  Rows before a failing row are
 * complete.
 */
static int run_rows(const plan_t *P, const int64_t *users, const uint32_t *occ,
                    uint32_t first, uint32_t n, uint32_t *items, double *probs,
                    unsigned *row_flags, icpns_sample_stats_t *stats, uint32_t *ret_failed)
{
    uint64_t rb = P->cols ? BATCH_SLOTS / P->cols : MAX_BLOCK;
    if (rb < 1)
        rb = 1;
    if (rb > MAX_BLOCK)
        rb = MAX_BLOCK;
    uint64_t end = (uint64_t)first + n;
    stages_t done = {first, first, first, first};
    icpns_sample_stats_t st = {0};
    outs_t o = {items, probs, row_flags, first, &st, {NULL, 0}};
    batch_t B[3];
    for (int j = 0; j < 3; j++)
        B[j] = (batch_t){P->wk->slots + j * BATCH_SLOTS, 0, 0, 0, BATCH_EMPTY};
    void (*step)(const plan_t *, uint32_t, uint32_t, batch_t *, uint64_t, outs_t *) =
        probs ? (P->n_parts == 1 ? pipe_step_probs1 : pipe_step_probs)
              : (P->n_parts == 1 ? pipe_step_items1 : pipe_step_items);
    P->wk->err = false;
    uint64_t k = 0;
    int err = 0;
    for (uint64_t a = first; a < end; a += rb, k++) {
        uint64_t b = a + rb < end ? a + rb : end;
        /* Each stage runs a block ahead of the next one. */
        uint64_t t[4];
        for (int j = 0; j < 4; j++)
            t[j] = b + (4 - j) * rb < end ? b + (4 - j) * rb : end;
        run_stages(P, users, occ, &done, t);
        if (__builtin_expect(P->wk->err, 0) && P->wk->err_row < b) {
            uint32_t stop = P->wk->err_row;
            err = P->ring[stop & (RING - 1)].err;
            step(P, (uint32_t)a, stop, B, k, &o);
            pipe_drain(P, B, k, &o);
            if (ret_failed)
                *ret_failed = stop;
            return err;
        }
        /* A residual setup belongs to distributions that may be reused. */
        o.rcache.D = NULL;
        step(P, (uint32_t)a, (uint32_t)b, B, k, &o);
    }
    pipe_drain(P, B, k ? k - 1 : 0, &o);
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
    P->ring = work->ring;
    P->dists = work->dists;
    P->parts = work->parts;
    P->n_parts = n_parts;
    P->cols = cols;
    P->flags = flags;
    P->seed_key = icpns_rng_seed_key(seed);
    /* Ids 0..n-1 or 1..n, as most datasets number their users, need no
     * hash lookup (ascending ids, so the span says it). */
    const icpns_idmap_t *m = &s->users;
    P->contiguous = m->n > 0 && (uint64_t)m->ids[m->n - 1] - (uint64_t)m->ids[0] == m->n - 1;
    P->id_base = m->n ? m->ids[0] : 0;
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

/* An (id, row) pair, for the sorting fallback of icpns_occurrences. */
typedef struct id_row {
    int64_t id;
    uint32_t row;
} id_row_t;

static int cmp_id_row(const void *a, const void *b)
{
    const id_row_t *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* icpns_occurrences in O(rows log rows) whatever the ids: sort (id, row)
 * pairs and count along each run of one id. */
static int occurrences_sorted(const int64_t *users, uint32_t rows, uint32_t *ret_occ)
{
    id_row_t *v = malloc((size_t)rows * sizeof(*v));
    if (!v)
        return ICPNS_ENOMEM;
    for (uint32_t r = 0; r < rows; r++)
        v[r] = (id_row_t){users[r], r};
    qsort(v, rows, sizeof(*v), cmp_id_row);
    for (uint32_t k = 0, c = 0; k < rows; k++) {
        c = k && v[k].id == v[k - 1].id ? c + 1 : 0;
        ret_occ[v[k].row] = c;
    }
    free(v);
    return 0;
}

int icpns_occurrences(const int64_t *users, uint32_t rows, uint32_t *ret_occ)
{
    if (rows <= 1) {
        if (rows)
            ret_occ[0] = 0;
        return 0;
    }
    /* Open addressing at load <= 1/2: ids, and how many rows had each so
     * far (0: empty), in one block (12 bytes an entry keep a 4096-row
     * request's table under glibc's mmap threshold).  The ids come from
     * the network and the hash is not secret, so they could be chosen to
     * collide: past a budget of probes the table gives way to sorting,
     * which bounds the time by O(rows log rows). */
    unsigned bits = 4;
    while (((size_t)1 << bits) < 2 * (size_t)rows)
        bits++;
    size_t cap = (size_t)1 << bits, mask = cap - 1;
    int64_t *ids = calloc(cap, sizeof(*ids) + sizeof(uint32_t));
    if (!ids)
        return ICPNS_ENOMEM;
    uint32_t *cnt = (uint32_t *)(ids + cap);
    uint64_t budget = 8 * (uint64_t)rows + 64;
    for (uint32_t r = 0; r < rows; r++) {
        int64_t id = users[r];
        /* Fibonacci hashing: the top bits of id x 2^64 / phi. */
        size_t h = (size_t)(((uint64_t)id * ICPNS_RNG_GAMMA) >> (64 - bits));
        while (cnt[h] && ids[h] != id) {
            h = (h + 1) & mask;
            if (--budget == 0) {
                free(ids);
                return occurrences_sorted(users, rows, ret_occ);
            }
        }
        ids[h] = id;
        ret_occ[r] = cnt[h]++;
    }
    free(ids);
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

int icpns_rows_flags(const icpns_snapshot_t *s, const icpns_weights_t *w,
                     const icpns_rows_t *req, uint32_t first_row, uint32_t n_rows,
                     unsigned *ret_row_flags, uint32_t *ret_failed_row)
{
    if (!req->n_parts || (uint64_t)first_row + n_rows > req->rows)
        return ICPNS_EINVAL;
    for (uint32_t k = 0; k < req->n_parts; k++)
        if ((unsigned)req->parts[k].strategy >= ICPNS_STRATEGY_COUNT)
            return ICPNS_EINVAL;
    /* The users' dense indices: by offset when the ids are contiguous (as
     * the sampler finds them), else through the hash table with the slots
     * of rows further on already on their way. */
    const icpns_idmap_t *m = &s->users;
    bool contiguous = m->n > 0 && (uint64_t)m->ids[m->n - 1] - (uint64_t)m->ids[0] == m->n - 1;
    uint64_t id_base = m->n ? (uint64_t)m->ids[0] : 0;
    enum { AHEAD = 8 };
    const uint32_t end = first_row + n_rows;
    if (!contiguous && m->slots)
        for (uint32_t r = first_row; r < end && r < first_row + AHEAD; r++)
            PREFETCH(&m->slots[(uint32_t)icpns_idmap_hash(req->users[r]) & m->mask]);
    for (uint32_t r = first_row; r < end; r++) {
        uint32_t u;
        if (contiguous) {
            uint64_t off = (uint64_t)req->users[r] - id_base;
            u = off < m->n ? (uint32_t)off : ICPNS_NONE;
        } else {
            if (m->slots && r + AHEAD < end)
                PREFETCH(&m->slots[(uint32_t)icpns_idmap_hash(req->users[r + AHEAD]) & m->mask]);
            u = icpns_idmap_find(m, req->users[r]);
        }
        unsigned rf = 0;
        for (uint32_t k = 0; k < req->n_parts; k++) {
            dist_t D;
            int rc = resolve(s, w, u, req->parts[k].strategy, req->flags, &D, &rf);
            if (rc) {
                if (ret_failed_row)
                    *ret_failed_row = r;
                return rc;
            }
        }
        ret_row_flags[r - first_row] = rf & (ICPNS_ROW_FALLBACK | ICPNS_ROW_SUBSTITUTED);
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
