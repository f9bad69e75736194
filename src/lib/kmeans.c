/*
 * kmeans.c - k-means (greedy k-means++ seeding, Lloyd iterations, restarts)
 * and the embedding readers (.npy, text).
 */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "icpns/dataset.h"
#include "icpns/kmeans.h"
#include "icpns/rng.h"

void icpns_kmeans_opts_default(icpns_kmeans_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->k = 8;
    o->restarts = 4;
    o->max_iter = 300;
    o->tol = 1e-4;
    o->seed = 2026;
}

void icpns_kmeans_result_free(icpns_kmeans_result_t *r)
{
    if (!r)
        return;
    free(r->labels);
    free(r->centers);
    free(r->sizes);
    memset(r, 0, sizeof(*r));
}

/* Two doubles: SSE2 on x86-64, NEON on arm64, plain pairs elsewhere. */
typedef double v2d __attribute__((vector_size(16)));

static inline v2d load2(const double *p)
{
    v2d v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/*
 * Squared distance.  Four partial sums by j mod 4, two lanes at a time,
 * added as (s0 + s1) + (s2 + s3): a fixed order, so every result is
 * deterministic and the same on every machine (the build is ISO C, so no
 * fused multiply-adds are contracted).
 */
static inline double sqdist(const double *a, const double *c, uint32_t dim)
{
    v2d s01 = {0, 0}, s23 = {0, 0};
    uint32_t j = 0;
    for (; j + 4 <= dim; j += 4) {
        v2d d01 = load2(a + j) - load2(c + j), d23 = load2(a + j + 2) - load2(c + j + 2);
        s01 += d01 * d01;
        s23 += d23 * d23;
    }
    double s0 = s01[0], s1 = s01[1], s2 = s23[0], s3 = s23[1];
    for (; j < dim; j++) {
        double d = a[j] - c[j];
        s0 += d * d;
    }
    return (s0 + s1) + (s2 + s3);
}

/* Row @i of @x as doubles (exact), so that the distances to many centres
 * convert it once. */
static inline const double *row(const float *x, uint32_t i, uint32_t dim, double *buf)
{
    const float *a = x + (size_t)i * dim;
    for (uint32_t j = 0; j < dim; j++)
        buf[j] = a[j];
    return buf;
}

static void set_center(double *c, const float *a, uint32_t dim)
{
    for (uint32_t j = 0; j < dim; j++)
        c[j] = a[j];
}

/* Index of the first prefix sum above r (cum ascending, cum[n-1] = total). */
static uint32_t pick(const double *cum, uint32_t n, double r)
{
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cum[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

#define MAX_TRIALS 32 /* 2 + ln k is at most 24 for 32-bit k */
#define BLOCK 2048     /* rows per unit of parallel work */
#define MAX_THREADS 256

/*
 * The passes over the rows run block by block on up to @threads threads.
 * A block writes only its own rows and its own partial sums (part), and
 * the partial sums are added in block order, so every result is the same
 * for any number of threads.
 */
typedef struct km {
    const float *x;
    uint32_t n, dim, threads, nblocks;
    double *bufs;          /* threads x dim: each worker's row as doubles */
    double *part;          /* nblocks x MAX_TRIALS partial sums */
    void (*block)(struct km *m, uint32_t b, double *buf);
    atomic_uint next;
    /* The current pass's arguments. */
    const double *cc;      /* the centre(s) compared with */
    uint32_t k, trials;
    double *d2;            /* distance to the nearest centre (seeding) */
    uint32_t *labels;
    double *dist;
    bool sticky;
} km_t;

typedef struct worker {
    km_t *m;
    uint32_t idx;
} worker_t;

static void *work_blocks(void *arg)
{
    worker_t *w = arg;
    km_t *m = w->m;
    double *buf = m->bufs + (size_t)w->idx * m->dim;
    for (uint32_t b; (b = atomic_fetch_add(&m->next, 1)) < m->nblocks;)
        m->block(m, b, buf);
    return NULL;
}

/* Runs @block over every block.  A thread that cannot be started leaves
 * its share to the others. */
static void run_pass(km_t *m, void (*block)(km_t *, uint32_t, double *))
{
    m->block = block;
    atomic_store(&m->next, 0);
    uint32_t t = m->threads < m->nblocks ? m->threads : m->nblocks;
    pthread_t tid[MAX_THREADS];
    worker_t w[MAX_THREADS];
    uint32_t started = 0;
    for (uint32_t i = 1; i < t; i++) {
        w[i] = (worker_t){m, i};
        if (pthread_create(&tid[started], NULL, work_blocks, &w[i]) == 0)
            started++;
    }
    w[0] = (worker_t){m, 0};
    work_blocks(&w[0]);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
}

#define FOR_ROWS(m, b, i)                                                          \
    for (uint32_t i = (b) * BLOCK, i##_end = (m)->n - i < BLOCK ? (m)->n : i + BLOCK; \
         i < i##_end; i++)

static void blk_first(km_t *m, uint32_t b, double *buf)
{
    FOR_ROWS(m, b, i)
        m->d2[i] = sqdist(row(m->x, i, m->dim, buf), m->cc, m->dim);
}

/* Each candidate's potential over the block. */
static void blk_score(km_t *m, uint32_t b, double *buf)
{
    double pot[MAX_TRIALS] = {0};
    FOR_ROWS(m, b, i) {
        const double *a = row(m->x, i, m->dim, buf);
        for (uint32_t t = 0; t < m->trials; t++) {
            double d = sqdist(a, m->cc + (size_t)t * m->dim, m->dim);
            pot[t] += d < m->d2[i] ? d : m->d2[i];
        }
    }
    memcpy(m->part + (size_t)b * MAX_TRIALS, pot, sizeof(pot));
}

static void blk_update(km_t *m, uint32_t b, double *buf)
{
    FOR_ROWS(m, b, i) {
        double d = sqdist(row(m->x, i, m->dim, buf), m->cc, m->dim);
        if (d < m->d2[i])
            m->d2[i] = d;
    }
}

/* Nearest centre of each row.  With sticky a row keeps its label on ties,
 * so points on identical centres (duplicates re-seeding empty clusters) do
 * not all fall back to one. */
static void blk_assign(km_t *m, uint32_t b, double *buf)
{
    double inertia = 0;
    FOR_ROWS(m, b, i) {
        const double *a = row(m->x, i, m->dim, buf);
        uint32_t best = 0;
        double bd = INFINITY;
        if (m->sticky) {
            best = m->labels[i];
            bd = sqdist(a, m->cc + (size_t)best * m->dim, m->dim);
        }
        for (uint32_t c = 0; c < m->k; c++) {
            double d = sqdist(a, m->cc + (size_t)c * m->dim, m->dim);
            if (d < bd) {
                bd = d;
                best = c;
            }
        }
        m->labels[i] = best;
        m->dist[i] = bd;
        inertia += bd;
    }
    m->part[(size_t)b * MAX_TRIALS] = inertia;
}

/* Sum of partial sum @t over the blocks, in block order. */
static double part_sum(const km_t *m, uint32_t t)
{
    double s = 0;
    for (uint32_t b = 0; b < m->nblocks; b++)
        s += m->part[(size_t)b * MAX_TRIALS + t];
    return s;
}

/*
 * Greedy k-means++: each new centre is the best (lowest resulting
 * potential) of 2 + ln k candidates drawn with probability proportional to
 * the squared distance to the nearest centre so far, all scored in one pass
 * over the rows.  @d2 ends as those distances; @cum is scratch (n), @tc
 * scratch (MAX_TRIALS x dim).
 */
static void seed_plusplus(km_t *m, uint32_t k, icpns_rng_t *rng, double *centers, double *d2,
                          double *cum, double *tc)
{
    const float *x = m->x;
    uint32_t n = m->n, dim = m->dim;
    uint32_t trials = 2 + (uint32_t)log((double)k);
    if (trials > MAX_TRIALS)
        trials = MAX_TRIALS;
    uint32_t first = (uint32_t)icpns_rng_below(rng, n);
    set_center(centers, x + (size_t)first * dim, dim);
    m->d2 = d2;
    m->cc = centers;
    run_pass(m, blk_first);
    for (uint32_t c = 1; c < k; c++) {
        double total = 0;
        for (uint32_t i = 0; i < n; i++)
            cum[i] = total += d2[i];
        uint32_t cand[MAX_TRIALS];
        for (uint32_t t = 0; t < trials; t++) {
            cand[t] = total > 0 ? pick(cum, n, icpns_rng_double(rng) * total)
                                : (uint32_t)icpns_rng_below(rng, n);
            set_center(tc + (size_t)t * dim, x + (size_t)cand[t] * dim, dim);
        }
        m->cc = tc;
        m->trials = trials;
        run_pass(m, blk_score);
        uint32_t best = 0;
        double best_pot = part_sum(m, 0);
        for (uint32_t t = 1; t < trials; t++) {
            double pot = part_sum(m, t);
            if (pot < best_pot) {
                best_pot = pot;
                best = t;
            }
        }
        double *cc = centers + (size_t)c * dim;
        memcpy(cc, tc + (size_t)best * dim, (size_t)dim * sizeof(double));
        m->cc = cc;
        run_pass(m, blk_update);
    }
}

/* Assigns every row to its nearest centre; returns the inertia. */
static double assign(km_t *m, uint32_t k, const double *centers, uint32_t *labels, double *dist,
                     bool sticky)
{
    m->cc = centers;
    m->k = k;
    m->labels = labels;
    m->dist = dist;
    m->sticky = sticky;
    run_pass(m, blk_assign);
    return part_sum(m, 0);
}

typedef struct scratch {
    double *centers, *newc, *dist, *cum, *tc;
    uint32_t *labels, *sizes;
} scratch_t;

/* One restart: seeding then Lloyd.  Fills s->centers, s->labels, s->sizes. */
static double one_run(km_t *m, const icpns_kmeans_opts_t *o, double tol_abs, uint32_t restart,
                      scratch_t *s, uint32_t *ret_iter, uint32_t *ret_reseeded,
                      bool *ret_converged, bool *ret_canceled)
{
    const float *x = m->x;
    uint32_t n = m->n, dim = m->dim, k = o->k;
    icpns_rng_t rng;
    icpns_rng_init(&rng, o->seed, restart, 0);
    seed_plusplus(m, k, &rng, s->centers, s->dist, s->cum, s->tc);
    uint32_t it = 0, reseeded = 0;
    bool converged = false;
    double inertia = 0;
    *ret_canceled = false;
    for (it = 1; it <= o->max_iter; it++) {
        double before = assign(m, k, s->centers, s->labels, s->dist, it > 1);
        if (o->iteration && o->iteration(o->progress_arg, restart, it, before)) {
            *ret_canceled = true;
            break;
        }
        memset(s->newc, 0, (size_t)k * dim * sizeof(double));
        memset(s->sizes, 0, (size_t)k * sizeof(uint32_t));
        for (uint32_t i = 0; i < n; i++) {
            double *c = s->newc + (size_t)s->labels[i] * dim;
            const float *a = x + (size_t)i * dim;
            for (uint32_t j = 0; j < dim; j++)
                c[j] += a[j];
            s->sizes[s->labels[i]]++;
        }
        /* Empty clusters take the point farthest from its centre (each
         * point at most once). */
        for (uint32_t c = 0; c < k; c++) {
            if (s->sizes[c])
                continue;
            uint32_t far = 0;
            double fd = -1;
            for (uint32_t i = 0; i < n; i++)
                if (s->dist[i] > fd && s->sizes[s->labels[i]] > 1) {
                    fd = s->dist[i];
                    far = i;
                }
            if (fd < 0)
                break; /* cannot happen with k <= n */
            uint32_t from = s->labels[far];
            const float *a = x + (size_t)far * dim;
            for (uint32_t j = 0; j < dim; j++) {
                s->newc[(size_t)from * dim + j] -= a[j];
                s->newc[(size_t)c * dim + j] = a[j];
            }
            s->sizes[from]--;
            s->sizes[c] = 1;
            s->labels[far] = c;
            s->dist[far] = 0;
            reseeded++;
        }
        double shift = 0;
        for (uint32_t c = 0; c < k; c++) {
            double *nc = s->newc + (size_t)c * dim, *oc = s->centers + (size_t)c * dim;
            for (uint32_t j = 0; j < dim; j++) {
                nc[j] /= s->sizes[c];
                double d = nc[j] - oc[j];
                shift += d * d;
            }
        }
        memcpy(s->centers, s->newc, (size_t)k * dim * sizeof(double));
        if (shift <= tol_abs) {
            converged = true;
            break;
        }
    }
    if (it > o->max_iter)
        it = o->max_iter;
    /* Labels and inertia consistent with the final centres. */
    inertia = assign(m, k, s->centers, s->labels, s->dist, true);
    memset(s->sizes, 0, (size_t)k * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++)
        s->sizes[s->labels[i]]++;
    *ret_iter = it;
    *ret_reseeded = reseeded;
    *ret_converged = converged;
    return inertia;
}

int icpns_kmeans(const float *x, uint32_t n, uint32_t dim, const icpns_kmeans_opts_t *o,
                 icpns_kmeans_result_t *ret, icpns_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    if (n == 0)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "embeddings", "no rows to cluster");
    if (dim == 0)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "embeddings", "rows have no values");
    if (o->k < 1 || o->k > n)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "k",
                               "k must be between 1 and the number of rows (%u), not %u", n, o->k);
    if (o->restarts < 1 || o->max_iter < 1 || !(o->tol >= 0) || !isfinite(o->tol))
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0,
                               o->restarts < 1 ? "restarts" : o->max_iter < 1 ? "max_iter" : "tol",
                               "restarts and max_iter must be >= 1 and tol finite and >= 0");
    if ((uint64_t)o->k * dim > (UINT64_C(1) << 31))
        return icpns_error_set(err, ICPNS_ELIMIT, NULL, 0, "k", "k x dim is too large");
    for (uint64_t i = 0; i < (uint64_t)n * dim; i++)
        if (!isfinite(x[i]))
            return icpns_error_set(err, ICPNS_EINVAL, NULL, i / dim + 1, "embeddings",
                                   "row %llu, column %llu is not a finite number",
                                   (unsigned long long)(i / dim + 1),
                                   (unsigned long long)(i % dim + 1));
    /* tol is relative to the mean per-feature variance (two passes over
     * the rows in memory order: means, then squared deviations). */
    double var = 0;
    double *mean = calloc(dim, sizeof(double)), *m2 = calloc(dim, sizeof(double));
    if (!mean || !m2) {
        free(mean);
        free(m2);
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory for k-means");
    }
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < dim; j++)
            mean[j] += x[(size_t)i * dim + j];
    for (uint32_t j = 0; j < dim; j++)
        mean[j] /= n;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < dim; j++) {
            double d = x[(size_t)i * dim + j] - mean[j];
            m2[j] += d * d;
        }
    for (uint32_t j = 0; j < dim; j++)
        var += m2[j] / n;
    free(mean);
    free(m2);
    double tol_abs = o->tol * var / dim;

    uint32_t k = o->k;
    scratch_t s = {0};
    s.centers = malloc((size_t)k * dim * sizeof(double));
    s.newc = malloc((size_t)k * dim * sizeof(double));
    s.dist = malloc((size_t)n * sizeof(double));
    s.cum = malloc((size_t)n * sizeof(double));
    s.tc = malloc((size_t)MAX_TRIALS * dim * sizeof(double));
    km_t m = {.x = x, .n = n, .dim = dim, .nblocks = (n + BLOCK - 1) / BLOCK};
    m.threads = o->threads < 1 ? 1 : o->threads > MAX_THREADS ? MAX_THREADS : o->threads;
    m.bufs = malloc((size_t)m.threads * dim * sizeof(double));
    m.part = malloc((size_t)m.nblocks * MAX_TRIALS * sizeof(double));
    s.labels = malloc((size_t)n * sizeof(uint32_t));
    s.sizes = malloc((size_t)k * sizeof(uint32_t));
    ret->labels = malloc((size_t)n * sizeof(uint32_t));
    ret->centers = malloc((size_t)k * dim * sizeof(double));
    ret->sizes = malloc((size_t)k * sizeof(uint32_t));
    int rc = 0;
    if (!s.centers || !s.newc || !s.dist || !s.cum || !s.tc || !m.bufs || !m.part || !s.labels || !s.sizes ||
        !ret->labels || !ret->centers || !ret->sizes) {
        rc = icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory for k-means");
        icpns_kmeans_result_free(ret);
        goto out;
    }
    ret->k = k;
    ret->dim = dim;
    ret->inertia = INFINITY;
    for (uint32_t r = 0; r < o->restarts; r++) {
        uint32_t iters, reseeded;
        bool conv, canceled;
        double inertia = one_run(&m, o, tol_abs, r, &s, &iters, &reseeded, &conv, &canceled);
        if (canceled) {
            rc = icpns_error_set(err, ICPNS_ECANCELED, NULL, 0, NULL,
                                 "k-means was canceled (restart %u, iteration %u)", r + 1, iters);
            icpns_kmeans_result_free(ret);
            goto out;
        }
        if (o->progress)
            o->progress(o->progress_arg, r, o->restarts, inertia);
        if (inertia < ret->inertia) {
            ret->inertia = inertia;
            ret->iterations = iters;
            ret->best_restart = r;
            ret->reseeded = reseeded;
            ret->converged = conv;
            memcpy(ret->labels, s.labels, (size_t)n * sizeof(uint32_t));
            memcpy(ret->centers, s.centers, (size_t)k * dim * sizeof(double));
            memcpy(ret->sizes, s.sizes, (size_t)k * sizeof(uint32_t));
        }
    }
out:
    free(s.centers);
    free(s.newc);
    free(s.dist);
    free(s.cum);
    free(s.tc);
    free(m.bufs);
    free(m.part);
    free(s.labels);
    free(s.sizes);
    return rc;
}

/* ---- embedding files --------------------------------------------------------- */

void icpns_embeddings_free(icpns_embeddings_t *e)
{
    if (!e)
        return;
    free(e->ids);
    free(e->x);
    memset(e, 0, sizeof(*e));
}

/*
 * The .npy header: a Python dict literal with exactly the keys 'descr',
 * 'fortran_order' and 'shape' (numpy.lib.format writes
 * "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"), then
 * spaces and a newline.  A reader that looked for the keys anywhere would
 * accept damaged or hand-made headers; this one refuses anything else,
 * saying what.
 */
typedef struct npy_cur {
    const char *p, *end, *path;
    icpns_error_t *err;
} npy_cur_t;

static void npy_ws(npy_cur_t *c)
{
    while (c->p < c->end && *c->p == ' ')
        c->p++;
}

/* An error quoting the header from the cursor on. */
static int npy_bad(npy_cur_t *c, const char *field, const char *what)
{
    char q[ICPNS_QUOTE_BUF];
    size_t n = (size_t)(c->end - c->p);
    return icpns_error_set(c->err, ICPNS_EPARSE, c->path, 0, field,
                           "malformed header: %s at '%s'", what,
                           icpns_escape(c->p, n > 24 ? 24 : n, q, sizeof(q)));
}

/* A quoted string without escapes: *@s, *@n. */
static int npy_string(npy_cur_t *c, const char **s, size_t *n, const char *field)
{
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return npy_bad(c, field, "expected a quoted string");
    char quote = *c->p;
    const char *b = c->p + 1, *e = b;
    while (e < c->end && *e != quote && *e != '\\')
        e++;
    if (e >= c->end || *e != quote)
        return npy_bad(c, field, "unterminated string");
    *s = b;
    *n = (size_t)(e - b);
    c->p = e + 1;
    return 0;
}

static bool npy_word(npy_cur_t *c, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n))
        return false;
    c->p += n;
    return true;
}

/* A shape tuple "(a, b)", "(a,)", "()": up to 3 dimensions counted in
 * *@ndim (more are counted but not stored). */
static int npy_shape(npy_cur_t *c, unsigned long long *dims, int *ndim)
{
    *ndim = 0;
    if (!npy_word(c, "("))
        return npy_bad(c, "shape", "expected a tuple '(rows, columns)'");
    bool comma = false; /* the last token was a comma */
    for (;;) {
        npy_ws(c);
        if (npy_word(c, ")"))
            break;
        if (*ndim > 0 && !comma) {
            if (!npy_word(c, ","))
                return npy_bad(c, "shape", "expected ',' or ')'");
            comma = true;
            continue;
        }
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return npy_bad(c, "shape", "expected a dimension");
        unsigned long long v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > (ULLONG_MAX - 9) / 10)
                return npy_bad(c, "shape", "dimension too large");
            v = v * 10 + (unsigned)(*c->p++ - '0');
        }
        if (*ndim < 3)
            dims[*ndim] = v;
        if (*ndim < 64)
            (*ndim)++;
        comma = false;
    }
    /* Python's tuple syntax: "(6)" is no tuple, "(6,)" is. */
    if (*ndim == 1 && !comma)
        return npy_bad(c, "shape", "a 1-element shape needs its comma '(n,)'");
    return 0;
}

int icpns_embeddings_parse_npy(const void *buf, size_t len, const char *path,
                               icpns_embeddings_t *ret, icpns_error_t *err)
{
    const unsigned char *b = buf;
    memset(ret, 0, sizeof(*ret));
    if (len < 10 || memcmp(b, "\x93NUMPY", 6))
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "npy", "not a .npy file (bad magic)");
    unsigned major = b[6];
    size_t hl, off;
    if (major == 1) {
        hl = (size_t)b[8] | (size_t)b[9] << 8;
        off = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12)
            return icpns_error_set(err, ICPNS_EPARSE, path, 0, "npy", "truncated header");
        hl = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        off = 12;
    } else {
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "npy", "unsupported .npy version %u",
                               major);
    }
    if (hl > len - off)
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "npy", "truncated header");
    size_t data = off + hl;
    if (hl > 4096)
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "npy",
                               "header of %zu bytes; a 2-D array needs far less", hl);
    npy_cur_t c = {(const char *)b + off, (const char *)b + data, path, err};
    /* The header ends with spaces and one newline. */
    if (hl == 0 || c.end[-1] != '\n')
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "npy",
                               "malformed header: it must end with a newline");
    c.end--;
    const char *descr = NULL;
    size_t descr_len = 0;
    int fortran = -1, ndim = -1;
    unsigned long long dims[3] = {0, 0, 0};
    int rc;
    npy_ws(&c);
    if (!npy_word(&c, "{"))
        return npy_bad(&c, "npy", "expected a dict '{'");
    for (;;) {
        npy_ws(&c);
        if (npy_word(&c, "}"))
            break;
        const char *key;
        size_t kl;
        if ((rc = npy_string(&c, &key, &kl, "npy")))
            return rc;
        npy_ws(&c);
        if (!npy_word(&c, ":"))
            return npy_bad(&c, "npy", "expected ':' after a key");
        npy_ws(&c);
        if (kl == 5 && !memcmp(key, "descr", 5)) {
            if (descr)
                return npy_bad(&c, "npy", "'descr' twice");
            if ((rc = npy_string(&c, &descr, &descr_len, "dtype")))
                return rc;
        } else if (kl == 13 && !memcmp(key, "fortran_order", 13)) {
            if (fortran >= 0)
                return npy_bad(&c, "npy", "'fortran_order' twice");
            if (npy_word(&c, "False"))
                fortran = 0;
            else if (npy_word(&c, "True"))
                fortran = 1;
            else
                return npy_bad(&c, "fortran_order", "expected True or False");
        } else if (kl == 5 && !memcmp(key, "shape", 5)) {
            if (ndim >= 0)
                return npy_bad(&c, "npy", "'shape' twice");
            if ((rc = npy_shape(&c, dims, &ndim)))
                return rc;
        } else {
            char q[ICPNS_QUOTE_BUF];
            return icpns_error_set(err, ICPNS_EPARSE, path, 0, "npy",
                                   "malformed header: unknown key '%s' (a .npy header has "
                                   "'descr', 'fortran_order', 'shape')",
                                   icpns_escape(key, kl, q, sizeof(q)));
        }
        npy_ws(&c);
        if (npy_word(&c, ","))
            continue;
        if (npy_word(&c, "}"))
            break;
        return npy_bad(&c, "npy", "expected ',' or '}'");
    }
    npy_ws(&c);
    if (c.p != c.end)
        return npy_bad(&c, "npy", "text after the dict");
    if (!descr || fortran < 0 || ndim < 0)
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "npy",
                               "malformed header: it lacks '%s'",
                               !descr ? "descr" : fortran < 0 ? "fortran_order" : "shape");
    size_t esz;
    if (descr_len == 3 && !memcmp(descr, "<f4", 3))
        esz = 4;
    else if (descr_len == 3 && !memcmp(descr, "<f8", 3))
        esz = 8;
    else
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "dtype",
                               "dtype must be little-endian float32 or float64 ('<f4', '<f8')");
    if (fortran)
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "fortran_order",
                               "Fortran-ordered arrays are not supported (use np.ascontiguousarray)");
    if (ndim != 2)
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "shape",
                               "the array must be 2-D (users x dimensions), not %d-D", ndim);
    unsigned long long rows = dims[0], cols = dims[1];
    if (rows == 0 || cols == 0 || rows > UINT32_MAX - 1 || cols > 65536)
        return icpns_error_set(err, ICPNS_ELIMIT, path, 0, "shape",
                               "shape (%llu, %llu) is out of range (rows 1..2^32-2, columns 1..65536)",
                               rows, cols);
    if ((len - data) / esz / cols < rows)
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "npy",
                               "truncated: the shape needs %llu bytes of data, the file has %zu",
                               rows * cols * esz, len - data);
    if (len - data != rows * cols * esz)
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "npy",
                               "%llu bytes after the array (shape (%llu, %llu) needs %llu): a "
                               "damaged file, or more than one array in it",
                               (unsigned long long)(len - data) - rows * cols * esz, rows, cols,
                               rows * cols * esz);
    ret->x = malloc(rows * cols * sizeof(float));
    if (!ret->x)
        return icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
    ret->n = (uint32_t)rows;
    ret->dim = (uint32_t)cols;
    const unsigned char *src = b + data;
    for (size_t i = 0; i < rows * cols; i++) {
        if (esz == 4) {
            memcpy(&ret->x[i], src + i * 4, 4);
        } else {
            double v;
            memcpy(&v, src + i * 8, 8);
            ret->x[i] = (float)v;
        }
    }
    return 0;
}

int icpns_embeddings_parse_tsv(const char *buf, size_t len, const char *path,
                               icpns_embeddings_t *ret, icpns_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    size_t cap_rows = 0, cap_x = 0;
    uint64_t line = 0;
    const char *p = buf, *end = buf + len;
    int rc = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        line++;
        const char *q = p;
        while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r' || *q == ','))
            q++;
        if (q == eol || *q == '#') {
            p = eol + 1;
            continue;
        }
        char tmp[64];
        uint32_t col = 0;
        int64_t id = 0;
        while (q < eol) {
            const char *f = q;
            while (q < eol && *q != ' ' && *q != '\t' && *q != '\r' && *q != ',')
                q++;
            size_t fl = (size_t)(q - f);
            if (fl >= sizeof(tmp)) {
                rc = icpns_error_set(err, ICPNS_EPARSE, path, line, col ? "value" : "user",
                                     "field %u is too long", col + 1);
                goto fail;
            }
            memcpy(tmp, f, fl);
            tmp[fl] = '\0';
            char *e;
            if (col == 0) {
                long long v = strtoll(tmp, &e, 10);
                if (*e || v < 0 || !fl) {
                    char qb[ICPNS_QUOTE_BUF];
                    rc = icpns_error_set(err, ICPNS_EPARSE, path, line, "user",
                                         "bad user id '%s'", icpns_escape(f, fl, qb, sizeof(qb)));
                    goto fail;
                }
                id = v;
            } else {
                double v = strtod(tmp, &e);
                if (*e || !isfinite(v) || !fl) {
                    char qb[ICPNS_QUOTE_BUF];
                    rc = icpns_error_set(err, ICPNS_EPARSE, path, line, "value",
                                         "column %u: bad number '%s'", col + 1,
                                         icpns_escape(f, fl, qb, sizeof(qb)));
                    goto fail;
                }
                if (ret->n > 0 && col > ret->dim) {
                    rc = icpns_error_set(err, ICPNS_EPARSE, path, line, "value",
                                         "row has more than %u values", ret->dim);
                    goto fail;
                }
                /* The first row's length sets dim (0 until then). */
                size_t at = (size_t)ret->n * ret->dim + (col - 1);
                if (at >= cap_x) {
                    size_t nc = cap_x ? cap_x * 2 : 1024;
                    while (nc <= at)
                        nc *= 2;
                    float *nx = realloc(ret->x, nc * sizeof(float));
                    if (!nx)
                        goto oom;
                    ret->x = nx;
                    cap_x = nc;
                }
                ret->x[at] = (float)v;
            }
            col++;
            while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r' || *q == ','))
                q++;
        }
        if (col < 2) {
            rc = icpns_error_set(err, ICPNS_EPARSE, path, line, "value",
                                 "missing values: expected 'user v1 v2 ...'");
            goto fail;
        }
        if (ret->n == 0)
            ret->dim = col - 1;
        else if (col - 1 != ret->dim) {
            rc = icpns_error_set(err, ICPNS_EPARSE, path, line, "value",
                                 "row has %u values, the first row has %u", col - 1, ret->dim);
            goto fail;
        }
        if (ret->n >= cap_rows) {
            size_t nc = cap_rows ? cap_rows * 2 : 1024;
            int64_t *ni = realloc(ret->ids, nc * sizeof(int64_t));
            if (!ni)
                goto oom;
            ret->ids = ni;
            cap_rows = nc;
        }
        if (ret->n == UINT32_MAX - 1) {
            rc = icpns_error_set(err, ICPNS_ELIMIT, path, line, NULL, "too many rows");
            goto fail;
        }
        ret->ids[ret->n++] = id;
        p = eol + 1;
    }
    if (ret->n == 0) {
        rc = icpns_error_set(err, ICPNS_EPARSE, path, 0, "embeddings", "no rows");
        goto fail;
    }
    return 0;
oom:
    rc = icpns_error_set(err, ICPNS_ENOMEM, path, line, NULL, "out of memory");
fail:
    icpns_embeddings_free(ret);
    return rc;
}

int icpns_embeddings_load(const char *path, icpns_embeddings_t *ret, icpns_error_t *err)
{
    char *buf;
    size_t len;
    int rc = icpns_file_read(path, (size_t)1 << 40, &buf, &len, err);
    if (rc)
        return rc;
    if (len >= 6 && !memcmp(buf, "\x93NUMPY", 6))
        rc = icpns_embeddings_parse_npy(buf, len, path, ret, err);
    else
        rc = icpns_embeddings_parse_tsv(buf, len, path, ret, err);
    free(buf);
    return rc;
}
