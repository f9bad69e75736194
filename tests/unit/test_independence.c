/*
 * test_independence.c - the negatives of different rows are independent,
 * the way a trainer calls us: a fixed seed per request, batches of other
 * users at the same row positions, users repeated in a request, other
 * seeds.  Marginals alone cannot show this (each row can follow P(i | u)
 * exactly while two rows copy each other), so every test looks at PAIRS of
 * draws: a contingency table of (item of row A, item of row B), items
 * binned, against the table independence predicts from the exact P(i | u)
 * of both rows (icpns_probability), by chi-square; and the number of equal
 * or near-equal items against its exact expectation.  All seeds are fixed.
 *
 * The power check: the same tests on the draws of the previous key, the
 * row's position in the request (reimplemented here for uniform), fail.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

#define NB 6            /* item bins per side of the table */
#define PASS 1e-5       /* a test passes above this p-value */
#define SEED 7

typedef struct fixture {
    icpns_snapshot_t *s;
    icpns_work_t *work;
    double *marg[ICPNS_STRATEGY_COUNT]; /* users x items, exact P(i | u), lazily */
    bool *have[ICPNS_STRATEGY_COUNT];
    int64_t *pairs_a, *pairs_b;         /* disjoint pairs of one community */
    uint32_t n_pairs;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    icpns_gen_opts_t g;
    icpns_gen_opts_default(&g);
    g.users = 10000;
    g.items = 80;
    g.communities = 2;
    g.interactions = 60000;
    g.seed = 5;
    icpns_dataset_t *d;
    icpns_error_t err;
    assert_int_equal(icpns_gen(&g, &d, &err), 0);
    icpns_params_t par;
    icpns_params_default(&par);
    assert_int_equal(icpns_snapshot_build(d, &par, &f->s, &err), 0);
    icpns_dataset_free(d);
    f->work = icpns_work_new();
    const icpns_snapshot_t *s = f->s;
    size_t cells = (size_t)s->users.n * s->items.n;
    for (int k = 0; k < ICPNS_STRATEGY_COUNT; k++) {
        f->marg[k] = malloc(cells * sizeof(double));
        f->have[k] = calloc(s->users.n, sizeof(bool));
    }
    /* Consecutive users of the same community, paired: A = 1st, B = 2nd
     * of each community's next two. */
    f->pairs_a = malloc(s->users.n * sizeof(int64_t));
    f->pairs_b = malloc(s->users.n * sizeof(int64_t));
    for (uint32_t c = 0; c < s->comms.n; c++) {
        int64_t open = -1;
        for (uint32_t u = 0; u < s->users.n; u++) {
            if (s->user_comm[u] != c || icpns_snapshot_degree(s, u) + 2 > s->items.n)
                continue;
            if (open < 0) {
                open = s->users.ids[u];
            } else {
                f->pairs_a[f->n_pairs] = open;
                f->pairs_b[f->n_pairs++] = s->users.ids[u];
                open = -1;
            }
        }
    }
    assert_true(f->n_pairs > 4000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    for (int k = 0; k < ICPNS_STRATEGY_COUNT; k++) {
        free(f->marg[k]);
        free(f->have[k]);
    }
    free(f->pairs_a);
    free(f->pairs_b);
    icpns_work_free(f->work);
    icpns_snapshot_unref(f->s);
    free(f);
    return 0;
}

/* The exact P(. | user) under @st. */
static const double *marginal(fixture_t *f, icpns_strategy_t st, int64_t user)
{
    const icpns_snapshot_t *s = f->s;
    uint32_t u = icpns_idmap_find(&s->users, user);
    assert_true(u != ICPNS_NONE);
    double *p = f->marg[st] + (size_t)u * s->items.n;
    if (!f->have[st][u]) {
        for (uint32_t i = 0; i < s->items.n; i++) {
            int e;
            p[i] = icpns_probability(s, s->weights, u, st, i, &e);
            assert_int_equal(e, 0);
        }
        f->have[st][u] = true;
    }
    return p;
}

/* Samples a whole request of @rows rows and @n slots with one seed. */
static uint32_t *sample(fixture_t *f, icpns_strategy_t st, const int64_t *users, uint32_t rows,
                        uint32_t n, uint64_t seed)
{
    uint32_t *occ = malloc(rows * sizeof(*occ));
    uint32_t *items = malloc((size_t)rows * n * sizeof(*items));
    assert_int_equal(icpns_occurrences(users, rows, occ), 0);
    icpns_part_t part = {st, n};
    icpns_rows_t req = {users, occ, rows, &part, 1, seed, 0};
    assert_int_equal(icpns_sample_rows(f->s, f->s->weights, f->work, &req, 0, rows, items, NULL,
                                       NULL, NULL, NULL), 0);
    free(occ);
    return items;
}

/* A set of pairs of draws: item xa[k] of a row of user ua[k] and item
 * xb[k] of a row of user ub[k]. */
typedef struct pairs {
    uint32_t n;
    const int64_t *ua, *ub;
    const uint32_t *xa, *xb;
    uint32_t stride_a, stride_b; /* xa[k * stride_a] is pair k's draw */
} pairs_t;

/*
 * The chi-square p-value of the (bin of xa, bin of xb) table against
 * independence: expected cell (a, b) = sum over pairs of
 * P_A(bin a) P_B(bin b) with the exact marginals of both rows.  Bins cut
 * the items (dense order) into NB runs of about equal pooled mass.
 */
static double independence(fixture_t *f, icpns_strategy_t st, const pairs_t *P)
{
    uint32_t ni = f->s->items.n;
    double *pool = calloc(ni, sizeof(*pool));
    for (uint32_t k = 0; k < P->n; k++) {
        const double *pa = marginal(f, st, P->ua[k]), *pb = marginal(f, st, P->ub[k]);
        for (uint32_t i = 0; i < ni; i++)
            pool[i] += pa[i] + pb[i];
    }
    double total = 0, cum = 0;
    for (uint32_t i = 0; i < ni; i++)
        total += pool[i];
    unsigned *bin = malloc(ni * sizeof(*bin));
    for (uint32_t i = 0; i < ni; i++) {
        double mid = cum + pool[i] / 2;
        cum += pool[i];
        unsigned b = (unsigned)(mid / total * NB);
        bin[i] = b < NB ? b : NB - 1;
    }
    double expect[NB * NB] = {0};
    uint64_t count[NB * NB] = {0};
    for (uint32_t k = 0; k < P->n; k++) {
        const double *pa = marginal(f, st, P->ua[k]), *pb = marginal(f, st, P->ub[k]);
        double ba[NB] = {0}, bb[NB] = {0};
        for (uint32_t i = 0; i < ni; i++) {
            ba[bin[i]] += pa[i];
            bb[bin[i]] += pb[i];
        }
        for (int a = 0; a < NB; a++)
            for (int b = 0; b < NB; b++)
                expect[a * NB + b] += ba[a] * bb[b] / P->n;
        count[bin[P->xa[(size_t)k * P->stride_a]] * NB + bin[P->xb[(size_t)k * P->stride_b]]]++;
    }
    free(pool);
    free(bin);
    return chi2_test(count, expect, NB * NB);
}

/*
 * How far (in standard deviations) the number of pairs with |xa - xb| <=
 * @near (0: equal items) lies from its expectation under independence:
 * each pair is a Bernoulli with q = sum_i P_A(i) P_B(i -near..i +near).
 */
static double coincidences_z(fixture_t *f, icpns_strategy_t st, const pairs_t *P, int near,
                             uint32_t *ret_count)
{
    uint32_t ni = f->s->items.n, c = 0;
    double mu = 0, var = 0;
    for (uint32_t k = 0; k < P->n; k++) {
        const double *pa = marginal(f, st, P->ua[k]), *pb = marginal(f, st, P->ub[k]);
        double q = 0;
        for (int64_t i = 0; i < ni; i++)
            for (int64_t j = i - near; j <= i + near; j++)
                if (j >= 0 && j < ni)
                    q += pa[i] * pb[j];
        mu += q;
        var += q * (1 - q);
        int64_t x = P->xa[(size_t)k * P->stride_a], y = P->xb[(size_t)k * P->stride_b];
        c += llabs(x - y) <= near;
    }
    if (ret_count)
        *ret_count = c;
    return ((double)c - mu) / sqrt(var);
}

/* Asserts that @P passes the independence table and both coincidence
 * counts. */
static void assert_independent(fixture_t *f, icpns_strategy_t st, const pairs_t *P,
                               const char *what)
{
    double pv = independence(f, st, P);
    if (!(pv > PASS))
        fail_msg("%s, %s: independence chi-square p = %g", what, icpns_strategy_name(st), pv);
    for (int near = 0; near <= 2; near += 2) {
        uint32_t c;
        double z = coincidences_z(f, st, P, near, &c);
        if (!(fabs(z) < 5))
            fail_msg("%s, %s: %u pairs within %d, z = %.1f", what, icpns_strategy_name(st), c,
                     near, z);
    }
}

static const icpns_strategy_t all[3] = {ICPNS_STRATEGY_UNIFORM, ICPNS_STRATEGY_POPULARITY,
                                        ICPNS_STRATEGY_ICPNS};

/* (a) One seed, request X = the A users, request Y = the B users (each
 * pair of the same community, at the same row position): slot 0 of X's
 * row k against slot 0 of Y's row k.  (b) the same with 8 slots: equal or
 * near-equal items at the same (row, slot) no more often than chance. */
static void test_cross_user_same_seed(void **state)
{
    fixture_t *f = *state;
    for (int k = 0; k < 3; k++) {
        uint32_t *xa = sample(f, all[k], f->pairs_a, f->n_pairs, 8, SEED);
        uint32_t *xb = sample(f, all[k], f->pairs_b, f->n_pairs, 8, SEED);
        pairs_t P = {f->n_pairs, f->pairs_a, f->pairs_b, xa, xb, 8, 8};
        assert_independent(f, all[k], &P, "cross-user slot 0");
        /* Every slot, as 8 x n_pairs pairs (independent across slots). */
        uint32_t n8 = f->n_pairs * 8;
        int64_t *ua = malloc(n8 * sizeof(*ua)), *ub = malloc(n8 * sizeof(*ub));
        for (uint32_t r = 0; r < n8; r++) {
            ua[r] = f->pairs_a[r / 8];
            ub[r] = f->pairs_b[r / 8];
        }
        pairs_t Q = {n8, ua, ub, xa, xb, 1, 1};
        assert_independent(f, all[k], &Q, "cross-request, all slots");
        free(ua);
        free(ub);
        free(xa);
        free(xb);
    }
}

/* (c) A user repeated in one request: rows independent, both when every
 * user of a request comes twice ([u1..uP, u1..uP]) and when one user fills
 * a request. */
static void test_repeated_user(void **state)
{
    fixture_t *f = *state;
    uint32_t P = f->n_pairs;
    int64_t *req = malloc(2 * P * sizeof(*req));
    memcpy(req, f->pairs_a, P * sizeof(*req));
    memcpy(req + P, f->pairs_a, P * sizeof(*req));
    for (int k = 0; k < 3; k++) {
        uint32_t *x = sample(f, all[k], req, 2 * P, 1, SEED);
        pairs_t Q = {P, req, req + P, x, x + P, 1, 1};
        assert_independent(f, all[k], &Q, "repeated users");
        free(x);
    }
    int64_t *one = malloc(2 * P * sizeof(*one));
    for (uint32_t r = 0; r < 2 * P; r++)
        one[r] = f->pairs_a[0];
    for (int k = 0; k < 3; k++) {
        uint32_t *x = sample(f, all[k], one, 2 * P, 1, SEED);
        pairs_t Q = {P, one, one, x, x + 1, 2, 2};
        assert_independent(f, all[k], &Q, "one user, every row");
        free(x);
    }
    free(one);
    free(req);
}

/* (d) The same request under seeds 7 and 8 (and 0 and 2^63). */
static void test_different_seeds(void **state)
{
    fixture_t *f = *state;
    uint64_t seeds[2][2] = {{SEED, SEED + 1}, {0, UINT64_C(1) << 63}};
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 2; j++) {
            uint32_t *x = sample(f, all[k], f->pairs_a, f->n_pairs, 1, seeds[j][0]);
            uint32_t *y = sample(f, all[k], f->pairs_a, f->n_pairs, 1, seeds[j][1]);
            pairs_t Q = {f->n_pairs, f->pairs_a, f->pairs_a, x, y, 1, 1};
            assert_independent(f, all[k], &Q, "different seeds");
            free(x);
            free(y);
        }
}

/* Slots of one row: slot 0 against slot 1. */
static void test_slots_of_a_row(void **state)
{
    fixture_t *f = *state;
    for (int k = 0; k < 3; k++) {
        uint32_t *x = sample(f, all[k], f->pairs_a, f->n_pairs, 2, SEED);
        pairs_t Q = {f->n_pairs, f->pairs_a, f->pairs_a, x, x + 1, 2, 2};
        assert_independent(f, all[k], &Q, "slot 0 vs slot 1");
        free(x);
    }
}

/* The k-th item of [0, n) not in the sorted @pos[0..d). */
static uint32_t kth_free(const uint32_t *pos, uint32_t d, uint64_t k)
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

/* The tests can fail: the previous sampler's uniform draws (stream of
 * (seed, row position, slot)) for requests X and Y, and a row against
 * itself, are caught. */
static void test_power(void **state)
{
    fixture_t *f = *state;
    const icpns_snapshot_t *s = f->s;
    uint32_t P = f->n_pairs;
    uint32_t *xa = malloc(P * sizeof(*xa)), *xb = malloc(P * sizeof(*xb));
    for (uint32_t r = 0; r < P; r++) {
        for (int side = 0; side < 2; side++) {
            uint32_t u = icpns_idmap_find(&s->users, side ? f->pairs_b[r] : f->pairs_a[r]);
            uint32_t d = icpns_snapshot_degree(s, u);
            icpns_rng_t rng;
            icpns_rng_init(&rng, SEED, r, 0);
            uint32_t item = kth_free(s->pos + s->pos_off[u], d,
                                     icpns_rng_below(&rng, (uint64_t)s->items.n - d));
            (side ? xb : xa)[r] = item;
        }
    }
    pairs_t Q = {P, f->pairs_a, f->pairs_b, xa, xb, 1, 1};
    assert_true(independence(f, ICPNS_STRATEGY_UNIFORM, &Q) < 1e-12);
    uint32_t c;
    assert_true(coincidences_z(f, ICPNS_STRATEGY_UNIFORM, &Q, 2, &c) > 20);
    assert_true(c > P / 2); /* most old rows were within 2 items */
    /* And the current sampler, a row against itself. */
    uint32_t *x = sample(f, ICPNS_STRATEGY_ICPNS, f->pairs_a, P, 1, SEED);
    pairs_t S = {P, f->pairs_a, f->pairs_a, x, x, 1, 1};
    assert_true(independence(f, ICPNS_STRATEGY_ICPNS, &S) < 1e-12);
    free(x);
    free(xa);
    free(xb);
}

/* Exactness is not lost on the way: the marginal of slot 0 over all rows
 * of request X follows the mixture of the rows' exact P(i | u). */
static void test_pooled_marginal(void **state)
{
    fixture_t *f = *state;
    uint32_t ni = f->s->items.n;
    for (int k = 0; k < 3; k++) {
        uint32_t *x = sample(f, all[k], f->pairs_a, f->n_pairs, 4, SEED);
        double *p = calloc(ni, sizeof(*p));
        uint64_t *c = calloc(ni, sizeof(*c));
        for (uint32_t r = 0; r < f->n_pairs; r++) {
            const double *q = marginal(f, all[k], f->pairs_a[r]);
            for (uint32_t i = 0; i < ni; i++)
                p[i] += q[i] / f->n_pairs;
            for (int j = 0; j < 4; j++)
                c[x[r * 4 + j]]++;
        }
        double pv = chi2_test(c, p, ni);
        if (!(pv > PASS))
            fail_msg("%s: pooled marginal p = %g", icpns_strategy_name(all[k]), pv);
        free(p);
        free(c);
        free(x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cross_user_same_seed),
        cmocka_unit_test(test_repeated_user),
        cmocka_unit_test(test_different_seeds),
        cmocka_unit_test(test_slots_of_a_row),
        cmocka_unit_test(test_power),
        cmocka_unit_test(test_pooled_marginal),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
