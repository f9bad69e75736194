/*
 * test_sampler.c - every strategy against an independent brute-force oracle
 * of P(i | u), by chi-square, on both sampling paths.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

#define HEAVY_USER 900001
#define FALLBACK_USER 900002
#define LONELY_USER 900003 /* interactions but no community */
#define FALLBACK_COMM 99
#define UNKNOWN_USER 123456789 /* in no table */

typedef struct fixture {
    icpns_dataset_t *d;
    icpns_snapshot_t *s;
    icpns_work_t *work;
} fixture_t;

/* ---- the oracle: P(i | u) straight from the raw pairs ------------------- */

static bool has_pair(const icpns_dataset_t *d, int64_t u, int64_t i)
{
    for (size_t k = 0; k < d->n_inter; k++)
        if (d->inter[k].a == u && d->inter[k].b == i)
            return true;
    return false;
}

static int64_t community_of(const icpns_dataset_t *d, int64_t u)
{
    for (size_t k = 0; k < d->n_comm; k++)
        if (d->comm[k].a == u)
            return d->comm[k].b;
    return -1;
}

/* Fills p[0..n_items) (dense order = ascending external id). */
static void oracle(const fixture_t *f, int64_t user, icpns_strategy_t strat,
                   const icpns_params_t *par, double *p)
{
    const icpns_snapshot_t *s = f->s;
    const icpns_dataset_t *d = f->d;
    uint32_t n = s->items.n;
    int64_t c = community_of(d, user);
    /* pop_c(i) and pop(i) as distinct-user counts, by brute force. */
    uint32_t *popc = calloc(n, sizeof(*popc)), *pop = calloc(n, sizeof(*pop));
    for (size_t k = 0; k < d->n_inter; k++) {
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = d->inter[j].a == d->inter[k].a && d->inter[j].b == d->inter[k].b;
        if (dup)
            continue;
        uint32_t i = icpns_idmap_find(&s->items, d->inter[k].b);
        pop[i]++;
        if (c >= 0 && community_of(d, d->inter[k].a) == c)
            popc[i]++;
    }
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        double w;
        if (strat == ICPNS_STRATEGY_UNIFORM)
            w = 1;
        else if (strat == ICPNS_STRATEGY_POPULARITY)
            w = pop[i] ? pow(pop[i], par->beta) : 0;
        else
            w = (popc[i] ? pow(popc[i], par->alpha) : 0) + par->epsilon;
        if (has_pair(d, user, s->items.ids[i]))
            w = 0;
        p[i] = w;
        sum += w;
    }
    if (sum == 0) { /* exhausted: uniform over non-positives */
        for (uint32_t i = 0; i < n; i++) {
            p[i] = has_pair(d, user, s->items.ids[i]) ? 0 : 1;
            sum += p[i];
        }
    }
    for (uint32_t i = 0; i < n; i++)
        p[i] /= sum;
    free(popc);
    free(pop);
}

/* The quick O(nnz) oracle for big runs is the same function: our fixture
 * is small enough (a few thousand pairs). */

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    icpns_gen_opts_t g;
    icpns_gen_opts_default(&g);
    g.users = 150;
    g.items = 120;
    g.communities = 3;
    g.interactions = 2500;
    g.seed = 11;
    icpns_error_t err;
    assert_int_equal(icpns_gen(&g, &f->d, &err), 0);
    icpns_params_t par;
    icpns_params_default(&par);
    icpns_snapshot_t *s;
    assert_int_equal(icpns_snapshot_build(f->d, &par, &s, &err), 0);

    /* A heavy user of community 0 holding the community's most popular
     * items until they cover 95 % of its mass: the residual path's case. */
    const icpns_wtable_t *t = &s->weights->comm[0];
    double total = t->cdf[t->m], covered = 0;
    uint32_t m = t->m;
    uint32_t *order = malloc(m * sizeof(*order));
    for (uint32_t k = 0; k < m; k++)
        order[k] = k;
    for (uint32_t a = 0; a < m; a++) /* selection sort by weight, small m */
        for (uint32_t b = a + 1; b < m; b++)
            if (t->w[order[b]] > t->w[order[a]]) {
                uint32_t x = order[a];
                order[a] = order[b];
                order[b] = x;
            }
    for (uint32_t k = 0; k < m && covered < 0.95 * total && k + 3 < m; k++) {
        covered += t->w[order[k]];
        icpns_dataset_add_interaction(f->d, HEAVY_USER, s->items.ids[t->items[order[k]]]);
    }
    free(order);
    icpns_dataset_add_community(f->d, HEAVY_USER, s->comms.ids[0]);
    /* A user alone in its community: its positives are the whole support. */
    icpns_dataset_add_interaction(f->d, FALLBACK_USER, s->items.ids[0]);
    icpns_dataset_add_interaction(f->d, FALLBACK_USER, s->items.ids[5]);
    icpns_dataset_add_community(f->d, FALLBACK_USER, FALLBACK_COMM);
    icpns_dataset_add_interaction(f->d, LONELY_USER, s->items.ids[1]);
    icpns_snapshot_unref(s);
    assert_int_equal(icpns_snapshot_build(f->d, &par, &f->s, &err), 0);
    f->work = icpns_work_new();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    icpns_work_free(f->work);
    icpns_snapshot_unref(f->s);
    icpns_dataset_free(f->d);
    free(f);
    return 0;
}

/*
 * Draws @rows x @n negatives for @user and returns the chi-square p-value
 * against @p; checks probabilities against @p on the way.
 */
static double sample_test(fixture_t *f, const icpns_weights_t *w, int64_t user,
                          icpns_strategy_t strat, unsigned flags, const double *p,
                          uint32_t rows, uint32_t n, unsigned *ret_rf,
                          icpns_sample_stats_t *st)
{
    const icpns_snapshot_t *s = f->s;
    uint64_t *c = calloc(s->items.n, sizeof(*c));
    uint32_t *items = malloc(n * sizeof(*items));
    double *probs = malloc(n * sizeof(*probs));
    unsigned rf_all = 0;
    for (uint32_t r = 0; r < rows; r++) {
        unsigned rf;
        /* Row r is the user's r-th row of one long request. */
        int rc = icpns_sample_row(s, w, f->work, (icpns_row_id_t){user, r, 2026}, strat, flags,
                                  0, n, items, (r % 16 == 0) ? probs : NULL, &rf, st);
        assert_int_equal(rc, 0);
        rf_all |= rf;
        for (uint32_t j = 0; j < n; j++) {
            assert_true(items[j] < s->items.n);
            c[items[j]]++;
            if (r % 16 == 0) {
                double rel = fabs(probs[j] - p[items[j]]) / p[items[j]];
                if (!(rel < 1e-9))
                    fail_msg("user %lld item %u: probability %.17g, exact %.17g",
                             (long long)user, items[j], probs[j], p[items[j]]);
            }
        }
    }
    double pv = chi2_test(c, p, s->items.n);
    free(c);
    free(items);
    free(probs);
    if (ret_rf)
        *ret_rf = rf_all;
    return pv;
}

static void test_each_strategy_ordinary_users(void **state)
{
    fixture_t *f = *state;
    double *p = malloc(f->s->items.n * sizeof(*p));
    int64_t users[3] = {1, 7, 42};
    for (int k = 0; k < 3; k++)
        for (int st = 0; st < ICPNS_STRATEGY_COUNT; st++) {
            oracle(f, users[k], (icpns_strategy_t)st, &f->s->params, p);
            unsigned rf;
            double pv = sample_test(f, f->s->weights, users[k], (icpns_strategy_t)st, 0, p,
                                    20000, 4, &rf, NULL);
            if (!(pv > 1e-6))
                fail_msg("user %lld strategy %s: chi-square p = %g", (long long)users[k],
                         icpns_strategy_name((icpns_strategy_t)st), pv);
            assert_false(rf & ICPNS_ROW_FALLBACK);
        }
    free(p);
}

static void test_heavy_user_both_paths(void **state)
{
    fixture_t *f = *state;
    double *p = malloc(f->s->items.n * sizeof(*p));
    oracle(f, HEAVY_USER, ICPNS_STRATEGY_ICPNS, &f->s->params, p);
    unsigned flags[3] = {0, ICPNS_SAMPLE_FORCE_RESIDUAL, ICPNS_SAMPLE_FORCE_REJECTION};
    for (int k = 0; k < 3; k++) {
        icpns_sample_stats_t st = {0};
        unsigned rf;
        double pv = sample_test(f, f->s->weights, HEAVY_USER, ICPNS_STRATEGY_ICPNS, flags[k],
                                p, 20000, 8, &rf, &st);
        if (!(pv > 1e-6))
            fail_msg("heavy user, flags %u: chi-square p = %g", flags[k], pv);
        if (flags[k] != ICPNS_SAMPLE_FORCE_REJECTION)
            assert_true(rf & ICPNS_ROW_RESIDUAL); /* the cost model picks residual */
        else
            assert_true(st.rejections > st.draws / 2);
    }
    free(p);
}

static void test_epsilon_mass(void **state)
{
    fixture_t *f = *state;
    icpns_params_t par = f->s->params;
    par.epsilon = 0.7;
    par.alpha = 0.4;
    icpns_weights_t *w;
    icpns_error_t err;
    assert_int_equal(icpns_weights_build(f->s, &par, &w, &err), 0);
    double *p = malloc(f->s->items.n * sizeof(*p));
    int64_t users[3] = {3, HEAVY_USER, FALLBACK_USER};
    unsigned flags[2] = {ICPNS_SAMPLE_FORCE_RESIDUAL, ICPNS_SAMPLE_FORCE_REJECTION};
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 2; j++) {
            oracle(f, users[k], ICPNS_STRATEGY_ICPNS, &par, p);
            unsigned rf;
            double pv = sample_test(f, w, users[k], ICPNS_STRATEGY_ICPNS, flags[j], p, 20000,
                                    4, &rf, NULL);
            if (!(pv > 1e-6))
                fail_msg("epsilon, user %lld, flags %u: p = %g", (long long)users[k], flags[j], pv);
            /* With epsilon > 0 nothing is exhausted. */
            assert_false(rf & ICPNS_ROW_FALLBACK);
        }
    free(p);
    icpns_weights_free(w);
}

static void test_fallback_user(void **state)
{
    fixture_t *f = *state;
    double *p = malloc(f->s->items.n * sizeof(*p));
    oracle(f, FALLBACK_USER, ICPNS_STRATEGY_ICPNS, &f->s->params, p);
    unsigned rf;
    icpns_sample_stats_t st = {0};
    double pv = sample_test(f, f->s->weights, FALLBACK_USER, ICPNS_STRATEGY_ICPNS, 0, p,
                            10000, 4, &rf, &st);
    assert_true(pv > 1e-6);
    assert_true(rf & ICPNS_ROW_FALLBACK);
    assert_int_equal(st.fallback_rows, 10000);
    /* The oracle's fallback is uniform over the non-positives. */
    assert_true(fabs(p[2] - 1.0 / (f->s->items.n - 2)) < 1e-12);
    assert_true(p[0] == 0 && p[5] == 0);
    free(p);
}

static void test_power_against_wrong_alpha(void **state)
{
    /* The test must be able to fail: alpha 0.8 draws against alpha 1. */
    fixture_t *f = *state;
    double *p = malloc(f->s->items.n * sizeof(*p));
    icpns_params_t wrong = f->s->params;
    wrong.alpha = 1.0;
    oracle(f, 7, ICPNS_STRATEGY_ICPNS, &wrong, p);
    uint64_t *c = calloc(f->s->items.n, sizeof(*c));
    uint32_t items[4];
    for (uint32_t r = 0; r < 50000; r++) {
        assert_int_equal(icpns_sample_row(f->s, f->s->weights, f->work, (icpns_row_id_t){7, r, 5},
                                          ICPNS_STRATEGY_ICPNS, 0, 0, 4, items, NULL, NULL, NULL),
                         0);
        for (int j = 0; j < 4; j++)
            c[items[j]]++;
    }
    assert_true(chi2_test(c, p, f->s->items.n) < 1e-6);
    free(c);
    free(p);
}

static void test_probability_function(void **state)
{
    fixture_t *f = *state;
    double *p = malloc(f->s->items.n * sizeof(*p));
    int64_t users[3] = {2, HEAVY_USER, FALLBACK_USER};
    for (int k = 0; k < 3; k++)
        for (int st = 0; st < ICPNS_STRATEGY_COUNT; st++) {
            oracle(f, users[k], (icpns_strategy_t)st, &f->s->params, p);
            uint32_t u = icpns_idmap_find(&f->s->users, users[k]);
            double sum = 0;
            for (uint32_t i = 0; i < f->s->items.n; i++) {
                int e;
                double q = icpns_probability(f->s, f->s->weights, u, (icpns_strategy_t)st, i, &e);
                assert_int_equal(e, 0);
                if (p[i] == 0)
                    assert_true(q == 0);
                else
                    assert_true(fabs(q - p[i]) <= 1e-12 + 1e-9 * p[i]);
                sum += q;
            }
            assert_true(fabs(sum - 1) < 1e-9);
        }
    free(p);
}

typedef struct job {
    fixture_t *f;
    uint32_t first, step, rows;
    uint32_t *out; /* rows x 8 */
} job_t;

static void *run_job(void *arg)
{
    job_t *j = arg;
    icpns_work_t *w = icpns_work_new();
    for (uint32_t r = j->first; r < j->rows; r += j->step) {
        int64_t user = (r % 7 == 0) ? HEAVY_USER : 1 + (int64_t)(r % 150);
        icpns_strategy_t st = (icpns_strategy_t)(r % 3);
        if (icpns_sample_row(j->f->s, j->f->s->weights, w, (icpns_row_id_t){user, r / 150, 77},
                             st, 0, 0, 8, j->out + (size_t)r * 8, NULL, NULL, NULL))
            abort();
    }
    icpns_work_free(w);
    return NULL;
}

static void test_same_seed_same_output_any_threads(void **state)
{
    fixture_t *f = *state;
    enum { ROWS = 4000 };
    uint32_t *one = calloc(ROWS * 8, sizeof(*one)), *two = calloc(ROWS * 8, sizeof(*two));
    job_t a = {f, 0, 1, ROWS, one};
    run_job(&a);
    job_t b0 = {f, 0, 2, ROWS, two}, b1 = {f, 1, 2, ROWS, two};
    pthread_t t0, t1;
    pthread_create(&t0, NULL, run_job, &b0);
    pthread_create(&t1, NULL, run_job, &b1);
    pthread_join(t0, NULL);
    pthread_join(t1, NULL);
    assert_memory_equal(one, two, ROWS * 8 * sizeof(*one));
    /* Row 1 is user 2's first row, popularity.  A different seed changes
     * its output. */
    uint32_t x[8];
    assert_int_equal(icpns_sample_row(f->s, f->s->weights, f->work, (icpns_row_id_t){2, 0, 78},
                                      ICPNS_STRATEGY_POPULARITY, 0, 0, 8, x, NULL, NULL, NULL),
                     0);
    assert_memory_not_equal(x, one + 8, sizeof(x));
    /* Slots are independent: asking for slots 4..7 alone gives the same. */
    uint32_t y[4];
    assert_int_equal(icpns_sample_row(f->s, f->s->weights, f->work, (icpns_row_id_t){2, 0, 77},
                                      ICPNS_STRATEGY_POPULARITY, 0, 4, 4, y, NULL, NULL, NULL),
                     0);
    assert_memory_equal(y, one + 8 + 4, sizeof(y));
    free(one);
    free(two);
}

static void test_unknown_and_community_less_users(void **state)
{
    fixture_t *f = *state;
    uint32_t items[4];
    unsigned rf;
    assert_int_equal(icpns_sample_row(f->s, f->s->weights, f->work,
                                      (icpns_row_id_t){UNKNOWN_USER, 0, 1}, ICPNS_STRATEGY_ICPNS,
                                      0, 0, 4, items, NULL, &rf, NULL), ICPNS_EUNKNOWN_USER);
    assert_true(icpns_idmap_find(&f->s->users, LONELY_USER) != ICPNS_NONE);
    assert_int_equal(icpns_sample_row(f->s, f->s->weights, f->work,
                                      (icpns_row_id_t){LONELY_USER, 0, 1}, ICPNS_STRATEGY_ICPNS,
                                      0, 0, 4, items, NULL, &rf, NULL), ICPNS_ENOCOMMUNITY);
    /* Uniform and PNS need no community. */
    assert_int_equal(icpns_sample_row(f->s, f->s->weights, f->work,
                                      (icpns_row_id_t){LONELY_USER, 0, 1}, ICPNS_STRATEGY_UNIFORM,
                                      0, 0, 4, items, NULL, &rf, NULL), 0);
    /* Substituted by PNS when asked: community-less keeps its exclusion. */
    double *p = malloc(f->s->items.n * sizeof(*p));
    oracle(f, LONELY_USER, ICPNS_STRATEGY_POPULARITY, &f->s->params, p);
    double pv = sample_test(f, f->s->weights, LONELY_USER, ICPNS_STRATEGY_ICPNS,
                            ICPNS_SAMPLE_SUBSTITUTE_PNS, p, 10000, 4, &rf, NULL);
    assert_true(pv > 1e-6);
    assert_true(rf & ICPNS_ROW_SUBSTITUTED);
    /* Unknown user substituted: PNS over every item. */
    uint64_t *c = calloc(f->s->items.n, sizeof(*c));
    double tot = 0;
    for (uint32_t i = 0; i < f->s->items.n; i++)
        tot += f->s->item_pop[i];
    for (uint32_t i = 0; i < f->s->items.n; i++)
        p[i] = f->s->item_pop[i] / tot; /* beta = 1 */
    for (uint32_t r = 0; r < 10000; r++) {
        assert_int_equal(icpns_sample_row(f->s, f->s->weights, f->work,
                                          (icpns_row_id_t){UNKNOWN_USER, r, 3},
                                          ICPNS_STRATEGY_ICPNS, ICPNS_SAMPLE_SUBSTITUTE_PNS, 0, 4,
                                          items, NULL, &rf, NULL), 0);
        assert_true(rf & ICPNS_ROW_SUBSTITUTED);
        for (int j = 0; j < 4; j++)
            c[items[j]]++;
    }
    assert_true(chi2_test(c, p, f->s->items.n) > 1e-6);
    free(c);
    free(p);
}

static void test_infeasible_user(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    /* User 1 has all three items. */
    for (int i = 0; i < 3; i++)
        icpns_dataset_add_interaction(d, 1, 10 + i);
    icpns_dataset_add_interaction(d, 2, 10);
    icpns_dataset_add_community(d, 1, 0);
    icpns_dataset_add_community(d, 2, 0);
    icpns_params_t par;
    icpns_params_default(&par);
    icpns_snapshot_t *s;
    icpns_error_t err;
    assert_int_equal(icpns_snapshot_build(d, &par, &s, &err), 0);
    icpns_work_t *w = icpns_work_new();
    uint32_t items[3];
    for (int st = 0; st < ICPNS_STRATEGY_COUNT; st++)
        assert_int_equal(icpns_sample_row(s, s->weights, w, (icpns_row_id_t){1, 0, 1},
                                          (icpns_strategy_t)st, 0, 0, 3, items, NULL, NULL, NULL),
                         ICPNS_EINFEASIBLE);
    /* User 2 has only item 10 left out: all its negatives are 11 or 12,
     * and ICPNS gives 11 and 12 pop_c = 1 each. */
    for (uint32_t r = 0; r < 50; r++) {
        assert_int_equal(icpns_sample_row(s, s->weights, w, (icpns_row_id_t){2, r, 1},
                                          ICPNS_STRATEGY_ICPNS, 0, 0, 3, items, NULL, NULL, NULL),
                         0);
        for (int j = 0; j < 3; j++)
            assert_true(items[j] == 1 || items[j] == 2);
    }
    icpns_work_free(w);
    icpns_snapshot_unref(s);
    icpns_dataset_free(d);
}

static void test_bad_parameters(void **state)
{
    fixture_t *f = *state;
    icpns_params_t par = f->s->params;
    icpns_weights_t *w = NULL;
    icpns_error_t err;
    par.alpha = NAN;
    assert_int_equal(icpns_weights_build(f->s, &par, &w, &err), ICPNS_EINVAL);
    assert_string_equal(err.field, "alpha");
    par.alpha = 0.5;
    par.epsilon = -1;
    assert_int_equal(icpns_weights_build(f->s, &par, &w, &err), ICPNS_EINVAL);
    assert_string_equal(err.field, "epsilon");
    par.epsilon = 0;
    par.beta = 1e9;
    assert_int_equal(icpns_weights_build(f->s, &par, &w, &err), ICPNS_EINVAL);
    assert_null(w);
    uint32_t items[1];
    assert_int_equal(icpns_sample_row(f->s, f->s->weights, f->work, (icpns_row_id_t){1, 0, 0},
                                      (icpns_strategy_t)9, 0, 0, 1, items, NULL, NULL, NULL),
                     ICPNS_EINVAL);
}


/* ---- the block API ---------------------------------------------------- */

typedef struct config {
    const char *name;
    icpns_part_t parts[3];
    uint32_t n_parts;
    unsigned flags;
    bool eps; /* weights with epsilon > 0 (draws from the epsilon part) */
} config_t;

static const config_t configs[] = {
    {"icpns n=1", {{ICPNS_STRATEGY_ICPNS, 1}}, 1, ICPNS_SAMPLE_SUBSTITUTE_PNS, false},
    {"icpns n=16", {{ICPNS_STRATEGY_ICPNS, 16}}, 1, ICPNS_SAMPLE_SUBSTITUTE_PNS, false},
    {"popularity n=3", {{ICPNS_STRATEGY_POPULARITY, 3}}, 1, ICPNS_SAMPLE_SUBSTITUTE_PNS, false},
    {"uniform n=5", {{ICPNS_STRATEGY_UNIFORM, 5}}, 1, ICPNS_SAMPLE_SUBSTITUTE_PNS, false},
    {"mix 3x4 icpns + 1x4 uniform + 2x4 popularity",
     {{ICPNS_STRATEGY_ICPNS, 12}, {ICPNS_STRATEGY_UNIFORM, 4}, {ICPNS_STRATEGY_POPULARITY, 8}},
     3, ICPNS_SAMPLE_SUBSTITUTE_PNS, false},
    {"icpns n=70 (a row spans batches)", {{ICPNS_STRATEGY_ICPNS, 70}}, 1,
     ICPNS_SAMPLE_SUBSTITUTE_PNS, false},
    {"icpns epsilon n=2", {{ICPNS_STRATEGY_ICPNS, 2}}, 1, ICPNS_SAMPLE_SUBSTITUTE_PNS, true},
    {"mix epsilon", {{ICPNS_STRATEGY_POPULARITY, 1}, {ICPNS_STRATEGY_ICPNS, 6}}, 2,
     ICPNS_SAMPLE_SUBSTITUTE_PNS, true},
    {"icpns forced rejection", {{ICPNS_STRATEGY_ICPNS, 4}}, 1,
     ICPNS_SAMPLE_SUBSTITUTE_PNS | ICPNS_SAMPLE_FORCE_REJECTION, false},
    {"icpns forced residual", {{ICPNS_STRATEGY_ICPNS, 4}}, 1,
     ICPNS_SAMPLE_SUBSTITUTE_PNS | ICPNS_SAMPLE_FORCE_RESIDUAL, true},
};

/* A request over every kind of row: ordinary users, the heavy user
 * (residual path), the fallback user, the community-less user and unknown
 * users (substituted), many of them more than once. */
static int64_t *mixed_users(uint32_t rows)
{
    int64_t *u = malloc(rows * sizeof(*u));
    icpns_rng_t rng;
    icpns_rng_init(&rng, 4, 0, 0);
    for (uint32_t r = 0; r < rows; r++) {
        uint64_t x = icpns_rng_below(&rng, 20);
        u[r] = x == 0   ? HEAVY_USER
               : x == 1 ? FALLBACK_USER
               : x == 2 ? LONELY_USER
               : x == 3 ? UNKNOWN_USER + (int64_t)icpns_rng_below(&rng, 3)
                        : 1 + (int64_t)icpns_rng_below(&rng, 60);
    }
    return u;
}

typedef struct result {
    uint32_t *items;
    double *probs;
    unsigned *rf;
    icpns_sample_stats_t st;
} result_t;

static void result_alloc(result_t *x, uint32_t rows, uint32_t cols)
{
    x->items = calloc((size_t)rows * cols + 1, sizeof(*x->items));
    x->probs = calloc((size_t)rows * cols + 1, sizeof(*x->probs));
    x->rf = calloc(rows + 1, sizeof(*x->rf));
    memset(&x->st, 0, sizeof(x->st));
}

static void result_free(result_t *x)
{
    free(x->items);
    free(x->probs);
    free(x->rf);
}

static void assert_same(const result_t *a, const result_t *b, uint32_t rows, uint32_t cols,
                        const char *what)
{
    if (memcmp(a->items, b->items, (size_t)rows * cols * sizeof(*a->items)))
        fail_msg("%s: items differ", what);
    if (memcmp(a->probs, b->probs, (size_t)rows * cols * sizeof(*a->probs)))
        fail_msg("%s: probabilities differ", what);
    if (memcmp(a->rf, b->rf, rows * sizeof(*a->rf)))
        fail_msg("%s: row flags differ", what);
    if (memcmp(&a->st, &b->st, sizeof(a->st)))
        fail_msg("%s: stats differ", what);
}

/*
 * The same request gives bit-identical items, probabilities, row flags and
 * statistics whether sampled in one call (blocks of many rows), row by row
 * (blocks of one row), in random slices, or with icpns_sample_row per row
 * and part; for every strategy, mixes, candidates, epsilon, both paths,
 * unknown users, fallback and residual rows.
 */
static void test_block_equals_row_by_row(void **state)
{
    fixture_t *f = *state;
    const icpns_snapshot_t *s = f->s;
    enum { ROWS = 400 };
    int64_t *users = mixed_users(ROWS);
    uint32_t occ[ROWS];
    assert_int_equal(icpns_occurrences(users, ROWS, occ), 0);
    icpns_params_t par = s->params;
    par.epsilon = 0.7;
    par.alpha = 0.4;
    icpns_weights_t *weps;
    icpns_error_t err;
    assert_int_equal(icpns_weights_build(s, &par, &weps, &err), 0);
    unsigned seen = 0;
    for (size_t c = 0; c < sizeof(configs) / sizeof(configs[0]); c++) {
        const config_t *C = &configs[c];
        const icpns_weights_t *w = C->eps ? weps : s->weights;
        icpns_rows_t req = {users, occ, ROWS, C->parts, C->n_parts, 99, C->flags};
        uint32_t cols = icpns_rows_cols(&req);
        result_t one, byrow, sliced, single;
        result_alloc(&one, ROWS, cols);
        result_alloc(&byrow, ROWS, cols);
        result_alloc(&sliced, ROWS, cols);
        result_alloc(&single, ROWS, cols);
        assert_int_equal(icpns_sample_rows(s, w, f->work, &req, 0, ROWS, one.items, one.probs,
                                           one.rf, &one.st, NULL), 0);
        /* Row by row, with a fresh scratch. */
        icpns_work_t *w2 = icpns_work_new();
        for (uint32_t r = 0; r < ROWS; r++)
            assert_int_equal(icpns_sample_rows(s, w, w2, &req, r, 1, byrow.items + (size_t)r * cols,
                                               byrow.probs + (size_t)r * cols, byrow.rf + r,
                                               &byrow.st, NULL), 0);
        assert_same(&one, &byrow, ROWS, cols, C->name);
        /* Random slices. */
        icpns_rng_t rng;
        icpns_rng_init(&rng, 5, c, 0);
        for (uint32_t r = 0; r < ROWS;) {
            uint32_t n = 1 + (uint32_t)icpns_rng_below(&rng, 70);
            if (n > ROWS - r)
                n = ROWS - r;
            assert_int_equal(icpns_sample_rows(s, w, w2, &req, r, n,
                                               sliced.items + (size_t)r * cols,
                                               sliced.probs + (size_t)r * cols, sliced.rf + r,
                                               &sliced.st, NULL), 0);
            r += n;
        }
        assert_same(&one, &sliced, ROWS, cols, C->name);
        /* icpns_sample_row, part by part: the same items and flags. */
        for (uint32_t r = 0; r < ROWS; r++) {
            uint32_t slot = 0;
            for (uint32_t k = 0; k < C->n_parts; k++) {
                unsigned rf = 0;
                size_t off = (size_t)r * cols + slot;
                assert_int_equal(icpns_sample_row(s, w, w2, (icpns_row_id_t){users[r], occ[r], 99},
                                                  C->parts[k].strategy, C->flags, slot,
                                                  C->parts[k].slots, single.items + off,
                                                  single.probs + off, &rf, &single.st), 0);
                single.rf[r] |= rf;
                slot += C->parts[k].slots;
            }
        }
        assert_same(&one, &single, ROWS, cols, C->name);
        icpns_work_free(w2);
        /* Valid negatives, and every kind of row was there. */
        for (uint32_t r = 0; r < ROWS; r++) {
            uint32_t u = icpns_idmap_find(&s->users, users[r]);
            seen |= one.rf[r];
            for (uint32_t j = 0; j < cols; j++) {
                uint32_t it = one.items[(size_t)r * cols + j];
                assert_true(it < s->items.n);
                assert_true(one.probs[(size_t)r * cols + j] > 0);
                if (u != ICPNS_NONE)
                    for (uint64_t q = s->pos_off[u]; q < s->pos_off[u + 1]; q++)
                        assert_true(s->pos[q] != it);
            }
        }
        result_free(&one);
        result_free(&byrow);
        result_free(&sliced);
        result_free(&single);
    }
    assert_true(seen & ICPNS_ROW_RESIDUAL);
    assert_true(seen & ICPNS_ROW_FALLBACK);
    assert_true(seen & ICPNS_ROW_SUBSTITUTED);
    icpns_weights_free(weps);
    free(users);
}

/* The same inputs give the same bytes, from any scratch; the seed and the
 * user change them; a repeated user's rows differ. */
static void test_block_determinism(void **state)
{
    fixture_t *f = *state;
    int64_t users[6] = {1, 2, 1, 3, 1, 2};
    uint32_t occ[6];
    assert_int_equal(icpns_occurrences(users, 6, occ), 0);
    icpns_part_t part = {ICPNS_STRATEGY_ICPNS, 8};
    icpns_rows_t req = {users, occ, 6, &part, 1, 42, 0};
    uint32_t a[48], b[48];
    double pa[48], pb[48];
    assert_int_equal(icpns_sample_rows(f->s, f->s->weights, f->work, &req, 0, 6, a, pa, NULL,
                                       NULL, NULL), 0);
    icpns_work_t *w = icpns_work_new();
    assert_int_equal(icpns_sample_rows(f->s, f->s->weights, w, &req, 0, 6, b, pb, NULL, NULL,
                                       NULL), 0);
    icpns_work_free(w);
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_equal(pa, pb, sizeof(pa));
    /* User 1's three rows, user 2's two rows: all different. */
    assert_memory_not_equal(a, a + 16, 8 * sizeof(*a));
    assert_memory_not_equal(a + 16, a + 32, 8 * sizeof(*a));
    assert_memory_not_equal(a + 8, a + 40, 8 * sizeof(*a));
    /* A row depends on its user and occurrence, not on its position or on
     * the other rows: user 3 alone gives row 3's items. */
    int64_t three = 3;
    uint32_t zero = 0, c[8];
    icpns_rows_t alone = {&three, &zero, 1, &part, 1, 42, 0};
    assert_int_equal(icpns_sample_rows(f->s, f->s->weights, f->work, &alone, 0, 1, c, NULL,
                                       NULL, NULL, NULL), 0);
    assert_memory_equal(c, a + 24, sizeof(c));
    req.seed = 43;
    assert_int_equal(icpns_sample_rows(f->s, f->s->weights, f->work, &req, 0, 6, b, NULL, NULL,
                                       NULL, NULL), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    /* The stream key is the documented hash chain. */
    assert_true(icpns_rng_user_key(42, 3, 0) ==
                icpns_rng_user_key_hashed(icpns_rng_seed_key(42), icpns_idmap_hash(3), 0));
    assert_true(icpns_rng_user_key(42, 3, 0) != icpns_rng_user_key(42, 3, 1));
    assert_true(icpns_rng_user_key(42, 3, 1) != icpns_rng_user_key(42, 4, 0));
}

/* Failures name the first bad row; rows before it are complete. */
static void test_block_errors(void **state)
{
    fixture_t *f = *state;
    const icpns_snapshot_t *s = f->s;
    enum { ROWS = 200, BAD = 137 };
    int64_t users[ROWS];
    for (uint32_t r = 0; r < ROWS; r++)
        users[r] = 1 + r % 50;
    uint32_t occ[ROWS], failed = 0;
    assert_int_equal(icpns_occurrences(users, ROWS, occ), 0);
    icpns_part_t part = {ICPNS_STRATEGY_ICPNS, 3};
    icpns_rows_t req = {users, occ, ROWS, &part, 1, 5, 0};
    uint32_t *good = malloc(ROWS * 3 * sizeof(*good)), *bad = malloc(ROWS * 3 * sizeof(*bad));
    assert_int_equal(icpns_sample_rows(s, s->weights, f->work, &req, 0, ROWS, good, NULL, NULL,
                                       NULL, NULL), 0);
    int64_t culprits[2] = {UNKNOWN_USER, LONELY_USER};
    int codes[2] = {ICPNS_EUNKNOWN_USER, ICPNS_ENOCOMMUNITY};
    for (int k = 0; k < 2; k++) {
        users[BAD] = culprits[k];
        memset(bad, 0xff, ROWS * 3 * sizeof(*bad));
        assert_int_equal(icpns_sample_rows(s, s->weights, f->work, &req, 0, ROWS, bad, NULL,
                                           NULL, NULL, &failed), codes[k]);
        assert_int_equal(failed, BAD);
        assert_memory_equal(good, bad, BAD * 3 * sizeof(*bad));
        /* From row 100 on: the failed row is still absolute. */
        assert_int_equal(icpns_sample_rows(s, s->weights, f->work, &req, 100, 100, bad, NULL,
                                           NULL, NULL, &failed), codes[k]);
        assert_int_equal(failed, BAD);
        /* A slice without it samples. */
        assert_int_equal(icpns_sample_rows(s, s->weights, f->work, &req, BAD + 1,
                                           ROWS - BAD - 1, bad, NULL, NULL, NULL, &failed), 0);
        assert_memory_equal(good + (BAD + 1) * 3, bad, (ROWS - BAD - 1) * 3 * sizeof(*bad));
    }
    /* Bad arguments are not about a row. */
    failed = 0;
    assert_int_equal(icpns_sample_rows(s, s->weights, f->work, &req, 150, 51, bad, NULL, NULL,
                                       NULL, &failed), ICPNS_EINVAL);
    assert_int_equal(failed, ICPNS_NONE);
    icpns_part_t wrong = {(icpns_strategy_t)7, 1};
    icpns_rows_t r2 = {users, occ, ROWS, &wrong, 1, 5, 0};
    assert_int_equal(icpns_sample_rows(s, s->weights, f->work, &r2, 0, 1, bad, NULL, NULL, NULL,
                                       NULL), ICPNS_EINVAL);
    r2.n_parts = 0;
    assert_int_equal(icpns_sample_rows(s, s->weights, f->work, &r2, 0, 1, bad, NULL, NULL, NULL,
                                       NULL), ICPNS_EINVAL);
    icpns_part_t huge[2] = {{ICPNS_STRATEGY_ICPNS, UINT32_MAX}, {ICPNS_STRATEGY_ICPNS, 1}};
    icpns_rows_t r3 = {users, occ, ROWS, huge, 2, 5, 0};
    assert_int_equal(icpns_rows_cols(&r3), 0);
    assert_int_equal(icpns_sample_rows(s, s->weights, f->work, &r3, 0, 1, bad, NULL, NULL, NULL,
                                       NULL), ICPNS_EINVAL);
    free(good);
    free(bad);
}

static void test_occurrences(void **state)
{
    (void)state;
    int64_t u[8] = {5, 7, 5, 5, INT64_MIN, 7, INT64_MAX, INT64_MIN};
    uint32_t occ[8], want[8] = {0, 0, 1, 2, 0, 1, 0, 1};
    assert_int_equal(icpns_occurrences(u, 8, occ), 0);
    assert_memory_equal(occ, want, sizeof(occ));
    assert_int_equal(icpns_occurrences(u, 1, occ), 0);
    assert_int_equal(occ[0], 0);
    /* Against the quadratic count, many repeats. */
    enum { N = 3000 };
    int64_t *v = malloc(N * sizeof(*v));
    uint32_t *o = malloc(N * sizeof(*o));
    icpns_rng_t rng;
    icpns_rng_init(&rng, 3, 0, 0);
    for (int k = 0; k < N; k++)
        v[k] = (int64_t)icpns_rng_below(&rng, 500) * 1000003 - 250000000;
    assert_int_equal(icpns_occurrences(v, N, o), 0);
    for (int k = 0; k < N; k++) {
        uint32_t c = 0;
        for (int j = 0; j < k; j++)
            c += v[j] == v[k];
        assert_int_equal(o[k], c);
    }
    free(v);
    free(o);
    /* Ids chosen to collide in the hash (x / gamma mod 2^64 all land in
     * one bucket) with repeats: still exact, in bounded time. */
    enum { M = 6000 };
    uint64_t inv = ICPNS_RNG_GAMMA;
    for (int k = 0; k < 6; k++)
        inv *= 2 - ICPNS_RNG_GAMMA * inv;
    assert_true(inv * ICPNS_RNG_GAMMA == 1);
    v = malloc(M * sizeof(*v));
    o = malloc(M * sizeof(*o));
    for (int k = 0; k < M; k++)
        v[k] = (int64_t)(icpns_rng_below(&rng, 2000) * inv);
    assert_int_equal(icpns_occurrences(v, M, o), 0);
    for (int k = 0; k < M; k++) {
        uint32_t c = 0;
        for (int j = 0; j < k; j++)
            c += v[j] == v[k];
        assert_int_equal(o[k], c);
    }
    free(v);
    free(o);
}

/* User ids that form one range are looked up by offset, others by hash:
 * the same tables give the same rows either way.  A user with a community
 * but no interactions changes no table, only the ids' range. */
static void test_contiguous_ids(void **state)
{
    (void)state;
    icpns_gen_opts_t g;
    icpns_gen_opts_default(&g);
    g.users = 300;
    g.items = 200;
    g.communities = 3;
    g.interactions = 5000;
    g.seed = 8;
    icpns_dataset_t *d;
    icpns_error_t err;
    assert_int_equal(icpns_gen(&g, &d, &err), 0);
    icpns_params_t par;
    icpns_params_default(&par);
    icpns_snapshot_t *a, *b;
    assert_int_equal(icpns_snapshot_build(d, &par, &a, &err), 0);
    assert_int_equal(a->users.n, 300);
    assert_true(a->users.ids[299] - a->users.ids[0] == 299); /* one range */
    icpns_dataset_add_community(d, 1000000007, d->comm[0].b);
    assert_int_equal(icpns_snapshot_build(d, &par, &b, &err), 0);
    assert_int_equal(b->users.n, 301);
    enum { ROWS = 500 };
    int64_t users[ROWS];
    uint32_t occ[ROWS];
    icpns_rng_t rng;
    icpns_rng_init(&rng, 6, 0, 0);
    for (uint32_t r = 0; r < ROWS; r++)
        users[r] = r % 50 == 7 ? (r % 100 == 7 ? 0 : 301) /* unknown: below, above */
                               : 1 + (int64_t)icpns_rng_below(&rng, 300);
    assert_int_equal(icpns_occurrences(users, ROWS, occ), 0);
    icpns_part_t parts[2] = {{ICPNS_STRATEGY_ICPNS, 3}, {ICPNS_STRATEGY_UNIFORM, 1}};
    icpns_rows_t req = {users, occ, ROWS, parts, 2, 17, ICPNS_SAMPLE_SUBSTITUTE_PNS};
    uint32_t *x = malloc(ROWS * 4 * sizeof(*x)), *y = malloc(ROWS * 4 * sizeof(*y));
    unsigned fx[ROWS], fy[ROWS];
    icpns_work_t *w = icpns_work_new();
    assert_int_equal(icpns_sample_rows(a, a->weights, w, &req, 0, ROWS, x, NULL, fx, NULL, NULL),
                     0);
    assert_int_equal(icpns_sample_rows(b, b->weights, w, &req, 0, ROWS, y, NULL, fy, NULL, NULL),
                     0);
    assert_memory_equal(x, y, ROWS * 4 * sizeof(*x));
    assert_memory_equal(fx, fy, sizeof(fx));
    assert_true(fx[7] & ICPNS_ROW_SUBSTITUTED);
    assert_true(fx[57] & ICPNS_ROW_SUBSTITUTED);
    assert_false(fx[8] & ICPNS_ROW_SUBSTITUTED);
    /* Without substitution the unknown ids are refused in both. */
    uint32_t failed = 0;
    req.flags = 0;
    assert_int_equal(icpns_sample_rows(a, a->weights, w, &req, 0, ROWS, x, NULL, NULL, NULL,
                                       &failed), ICPNS_EUNKNOWN_USER);
    assert_int_equal(failed, 7);
    assert_int_equal(icpns_sample_rows(b, b->weights, w, &req, 8, 60, y, NULL, NULL, NULL,
                                       &failed), ICPNS_EUNKNOWN_USER);
    assert_int_equal(failed, 7 + 50);
    icpns_work_free(w);
    free(x);
    free(y);
    icpns_snapshot_unref(a);
    icpns_snapshot_unref(b);
    icpns_dataset_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_strategy_ordinary_users),
        cmocka_unit_test(test_heavy_user_both_paths),
        cmocka_unit_test(test_epsilon_mass),
        cmocka_unit_test(test_fallback_user),
        cmocka_unit_test(test_power_against_wrong_alpha),
        cmocka_unit_test(test_probability_function),
        cmocka_unit_test(test_same_seed_same_output_any_threads),
        cmocka_unit_test(test_unknown_and_community_less_users),
        cmocka_unit_test(test_infeasible_user),
        cmocka_unit_test(test_bad_parameters),
        cmocka_unit_test(test_block_equals_row_by_row),
        cmocka_unit_test(test_block_determinism),
        cmocka_unit_test(test_block_errors),
        cmocka_unit_test(test_occurrences),
        cmocka_unit_test(test_contiguous_ids),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
