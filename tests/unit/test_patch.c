/*
 * test_patch.c - patching a snapshot (rebuilding only the communities an
 * update touches) gives exactly what a full build of the changed dataset
 * gives: the same arrays, the same tables bit for bit, the same negatives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

#define EQ_ARRAY(a, b, n) assert_memory_equal((a), (b), (n) * sizeof(*(a)))

static void assert_table_equal(const icpns_wtable_t *a, const icpns_wtable_t *b)
{
    assert_int_equal(a->m, b->m);
    assert_true((a->items == NULL) == (b->items == NULL));
    if (a->items)
        EQ_ARRAY(a->items, b->items, a->m);
    EQ_ARRAY(a->w, b->w, a->m);
    EQ_ARRAY(a->cdf, b->cdf, (size_t)a->m + 1);
    assert_int_equal(a->alias.n, b->alias.n);
    for (uint32_t k = 0; k < a->alias.n; k++) {
        assert_true(a->alias.e[k].prob == b->alias.e[k].prob);
        assert_int_equal(a->alias.e[k].alias, b->alias.e[k].alias);
    }
}

static void assert_snapshot_equal(const icpns_snapshot_t *a, const icpns_snapshot_t *b)
{
    uint32_t nu = a->users.n, nc = a->comms.n;
    assert_int_equal(nu, b->users.n);
    assert_int_equal(a->items.n, b->items.n);
    assert_int_equal(nc, b->comms.n);
    EQ_ARRAY(a->users.ids, b->users.ids, nu);
    EQ_ARRAY(a->items.ids, b->items.ids, a->items.n);
    EQ_ARRAY(a->comms.ids, b->comms.ids, nc);
    assert_int_equal(a->n_interactions, b->n_interactions);
    EQ_ARRAY(a->pos_off, b->pos_off, (size_t)nu + 1);
    EQ_ARRAY(a->pos, b->pos, a->n_interactions);
    EQ_ARRAY(a->user_comm, b->user_comm, nu);
    EQ_ARRAY(a->comm_size, b->comm_size, nc);
    EQ_ARRAY(a->sup_off, b->sup_off, (size_t)nc + 1);
    EQ_ARRAY(a->sup_item, b->sup_item, a->sup_off[nc]);
    EQ_ARRAY(a->sup_count, b->sup_count, a->sup_off[nc]);
    EQ_ARRAY(a->item_pop, b->item_pop, a->items.n);
    assert_int_equal(a->max_count, b->max_count);
    assert_int_equal(a->bytes, b->bytes);
    assert_true(a->fingerprint == b->fingerprint);
    assert_true(a->fingerprint == icpns_snapshot_fingerprint(a));
    const icpns_weights_t *wa = a->weights, *wb = b->weights;
    for (uint32_t c = 0; c < nc; c++)
        assert_table_equal(&wa->comm[c], &wb->comm[c]);
    assert_table_equal(&wa->global, &wb->global);
    EQ_ARRAY(wa->pos_mass_comm, wb->pos_mass_comm, nu);
    EQ_ARRAY(wa->pos_hits_comm, wb->pos_hits_comm, nu);
    EQ_ARRAY(wa->pos_mass_pop, wb->pos_mass_pop, nu);
    /* And so the same negatives, every strategy. */
    icpns_work_t *w = icpns_work_new();
    uint32_t x[16], y[16];
    for (uint32_t u = 0; u < nu; u += 7)
        for (int st = 0; st < ICPNS_STRATEGY_COUNT; st++) {
            icpns_row_id_t row = {a->users.ids[u], 0, 11};
            int ra = icpns_sample_row(a, wa, w, row, (icpns_strategy_t)st, 0, 0, 16, x, NULL,
                                      NULL, NULL);
            int rb = icpns_sample_row(b, wb, w, row, (icpns_strategy_t)st, 0, 0, 16, y, NULL,
                                      NULL, NULL);
            assert_int_equal(ra, rb);
            if (!ra)
                EQ_ARRAY(x, y, 16);
        }
    icpns_work_free(w);
}

static icpns_dataset_t *gen(uint64_t seed)
{
    icpns_gen_opts_t o;
    icpns_gen_opts_default(&o);
    o.users = 400;
    o.items = 600;
    o.communities = 6;
    o.interactions = 8000;
    o.seed = seed;
    icpns_dataset_t *d = NULL;
    icpns_error_t err;
    assert_int_equal(icpns_gen(&o, &d, &err), 0);
    return d;
}

static icpns_snapshot_t *full(const icpns_dataset_t *d, double alpha, double eps)
{
    icpns_params_t p;
    icpns_params_default(&p);
    p.alpha = alpha;
    p.epsilon = eps;
    icpns_snapshot_t *s = NULL;
    icpns_error_t err;
    assert_int_equal(icpns_snapshot_build(d, &p, &s, &err), 0);
    return s;
}

/* Sets user @u's community in @d (the daemon's merge). */
static void reassign(icpns_dataset_t *d, int64_t u, int64_t c)
{
    for (size_t k = 0; k < d->n_comm; k++)
        if (d->comm[k].a == u) {
            d->comm[k].b = c;
            return;
        }
    assert_int_equal(icpns_dataset_add_community(d, u, c), 0);
}

/* Random deltas of every kind, checked against full builds, chained: each
 * patch starts from the previous patch's result. */
static void test_patch_equals_full_build(void **state)
{
    (void)state;
    for (int params = 0; params < 2; params++) {
        double alpha = params ? 0.5 : 0.8, eps = params ? 0.25 : 0;
        icpns_dataset_t *d = gen(7 + (uint64_t)params);
        icpns_snapshot_t *cur = full(d, alpha, eps);
        icpns_rng_t r;
        icpns_rng_init(&r, 2026, (uint64_t)params, 0);
        for (int round = 0; round < 12; round++) {
            icpns_pair_t inter[64], comm[16];
            size_t ni = round % 3 == 2 ? 0 : 1 + icpns_rng_below(&r, 63);
            size_t nc = round % 3 == 1 ? 0 : icpns_rng_below(&r, 16);
            for (size_t k = 0; k < ni; k++) {
                /* Existing ids only; repeats and known positives included. */
                int64_t u = cur->users.ids[icpns_rng_below(&r, cur->users.n)];
                int64_t i = k % 5 == 4 && k ? inter[k - 1].b
                                            : cur->items.ids[icpns_rng_below(&r, cur->items.n)];
                inter[k] = (icpns_pair_t){.a = u, .b = i};
            }
            for (size_t k = 0; k < nc; k++) {
                int64_t u = cur->users.ids[icpns_rng_below(&r, cur->users.n)];
                int64_t c = cur->comms.ids[icpns_rng_below(&r, cur->comms.n)];
                comm[k] = (icpns_pair_t){.a = u, .b = c};
            }
            icpns_delta_t delta = {inter, ni, comm, nc};
            icpns_snapshot_t *patched = NULL;
            icpns_patch_stats_t ps;
            icpns_error_t err;
            int rc = icpns_snapshot_patch(cur, &delta, &patched, &ps, &err);
            for (size_t k = 0; k < ni; k++)
                assert_int_equal(icpns_dataset_add_interaction(d, inter[k].a, inter[k].b), 0);
            for (size_t k = 0; k < nc; k++)
                reassign(d, comm[k].a, comm[k].b);
            icpns_snapshot_t *ref = full(d, alpha, eps);
            if (rc == ICPNS_ENOPATCH) {
                /* Only when a community emptied. */
                assert_true(ref->comms.n < cur->comms.n);
                assert_null(patched);
                icpns_snapshot_unref(cur);
                cur = ref;
                continue;
            }
            assert_int_equal(rc, 0);
            assert_snapshot_equal(patched, ref);
            /* The fingerprint moves exactly when the content did. */
            assert_int_equal(patched->fingerprint != cur->fingerprint,
                             ps.pairs_added > 0 || ps.users_touched > 0);
            assert_true(ps.comms_rebuilt <= cur->comms.n);
            assert_int_equal(ps.global_rebuilt, ps.pairs_added > 0);
            assert_int_equal(ref->n_interactions, cur->n_interactions + ps.pairs_added);
            icpns_snapshot_unref(ref);
            icpns_snapshot_unref(cur);
            cur = patched;
        }
        icpns_snapshot_unref(cur);
        icpns_dataset_free(d);
    }
}

/* One new pair touches one community; a move touches two; nothing else is
 * recomputed. */
static void test_patch_touches_only_what_changed(void **state)
{
    (void)state;
    icpns_dataset_t *d = gen(3);
    icpns_snapshot_t *s = full(d, 0.8, 0);
    /* A user with a community and an item it has not touched. */
    uint32_t u = 0;
    while (s->user_comm[u] == ICPNS_NONE)
        u++;
    uint32_t item = 0;
    while (item < s->items.n && s->pos[s->pos_off[u]] == item)
        item++;
    const uint32_t *row = s->pos + s->pos_off[u];
    for (item = 0;; item++) {
        bool has = false;
        for (uint32_t k = 0; k < icpns_snapshot_degree(s, u); k++)
            has |= row[k] == item;
        if (!has)
            break;
    }
    icpns_pair_t p = {.a = s->users.ids[u], .b = s->items.ids[item]};
    icpns_delta_t delta = {&p, 1, NULL, 0};
    icpns_snapshot_t *n1 = NULL;
    icpns_patch_stats_t ps;
    icpns_error_t err;
    assert_int_equal(icpns_snapshot_patch(s, &delta, &n1, &ps, &err), 0);
    assert_int_equal(ps.pairs_added, 1);
    assert_int_equal(ps.comms_rebuilt, 1);
    assert_int_equal(ps.users_touched, 1);
    assert_true(ps.global_rebuilt);
    /* The same pair again is no change at all. */
    icpns_snapshot_t *n2 = NULL;
    assert_int_equal(icpns_snapshot_patch(n1, &delta, &n2, &ps, &err), 0);
    assert_int_equal(ps.pairs_added, 0);
    assert_int_equal(ps.comms_rebuilt, 0);
    assert_false(ps.global_rebuilt);
    icpns_snapshot_unref(n2);
    /* Moving the user to another community touches both. */
    uint32_t other = (s->user_comm[u] + 1) % s->comms.n;
    icpns_pair_t m = {.a = s->users.ids[u], .b = s->comms.ids[other]};
    icpns_delta_t move = {NULL, 0, &m, 1};
    assert_int_equal(icpns_snapshot_patch(n1, &move, &n2, &ps, &err), 0);
    assert_int_equal(ps.comms_rebuilt, 2);
    assert_int_equal(ps.users_touched, 1);
    assert_false(ps.global_rebuilt);
    assert_int_equal(n2->user_comm[u], other);
    icpns_snapshot_unref(n2);
    icpns_snapshot_unref(n1);

    /* What cannot be patched says so and builds nothing. */
    icpns_pair_t nu = {.a = 999999, .b = s->items.ids[0]};
    icpns_delta_t newuser = {&nu, 1, NULL, 0};
    n2 = NULL;
    assert_int_equal(icpns_snapshot_patch(s, &newuser, &n2, NULL, &err), ICPNS_ENOPATCH);
    assert_null(n2);
    assert_string_equal(err.field, "user");
    icpns_pair_t nc = {.a = s->users.ids[u], .b = 424242};
    icpns_delta_t newcomm = {NULL, 0, &nc, 1};
    assert_int_equal(icpns_snapshot_patch(s, &newcomm, &n2, NULL, &err), ICPNS_ENOPATCH);
    assert_string_equal(err.field, "community");
    icpns_snapshot_unref(s);
    icpns_dataset_free(d);
}

/* The fingerprint names the content, not the way it was read: rows in
 * another order and duplicate pairs give the same value; a different
 * parameter, pair or assignment gives another. */
static void test_fingerprint(void **state)
{
    (void)state;
    icpns_dataset_t *d = gen(3);
    icpns_snapshot_t *a = full(d, 0.8, 0);
    icpns_dataset_t *r = icpns_dataset_new();
    assert_non_null(r);
    for (size_t k = d->n_inter; k-- > 0;)
        assert_int_equal(icpns_dataset_add_interaction(r, d->inter[k].a, d->inter[k].b), 0);
    for (size_t k = 0; k < d->n_inter; k += 5)
        assert_int_equal(icpns_dataset_add_interaction(r, d->inter[k].a, d->inter[k].b), 0);
    for (size_t k = d->n_comm; k-- > 0;)
        assert_int_equal(icpns_dataset_add_community(r, d->comm[k].a, d->comm[k].b), 0);
    icpns_snapshot_t *b = full(r, 0.8, 0);
    assert_true(a->fingerprint == b->fingerprint);
    assert_snapshot_equal(a, b);

    icpns_snapshot_t *other[4];
    other[0] = full(d, 0.7, 0);
    other[1] = full(d, 0.8, 0.5);
    assert_int_equal(icpns_dataset_add_interaction(r, d->inter[0].a, 999999), 0);
    other[2] = full(r, 0.8, 0);
    size_t moved = 1;
    while (d->comm[moved].b == d->comm[0].b)
        moved++;
    reassign(d, d->comm[0].a, d->comm[moved].b);
    other[3] = full(d, 0.8, 0);
    for (int k = 0; k < 4; k++) {
        assert_true(other[k]->fingerprint != a->fingerprint);
        for (int j = 0; j < k; j++)
            assert_true(other[k]->fingerprint != other[j]->fingerprint);
    }
    for (int k = 0; k < 4; k++)
        icpns_snapshot_unref(other[k]);
    icpns_snapshot_unref(a);
    icpns_snapshot_unref(b);
    icpns_dataset_free(d);
    icpns_dataset_free(r);
}

/* A byte limit refuses exactly the snapshots above it, before their
 * weights are allocated, for builds and patches alike. */
static void test_byte_limit(void **state)
{
    (void)state;
    icpns_dataset_t *d = gen(5);
    icpns_snapshot_t *a = full(d, 0.8, 0), *b = NULL;
    icpns_params_t p = a->params;
    icpns_error_t err;
    assert_int_equal(icpns_snapshot_build_limit(d, &p, a->bytes, &b, &err), 0);
    assert_int_equal(b->bytes, a->bytes);
    icpns_snapshot_unref(b);
    b = NULL;
    assert_int_equal(icpns_snapshot_build_limit(d, &p, a->bytes - 1, &b, &err), ICPNS_ELIMIT);
    assert_null(b);
    assert_string_equal(err.field, "max_bytes");
    /* A patch adding pairs grows the positives: the old size is too small. */
    icpns_pair_t inter[3] = {{a->users.ids[0], a->items.ids[1]},
                             {a->users.ids[1], a->items.ids[2]},
                             {a->users.ids[2], a->items.ids[3]}};
    icpns_delta_t delta = {inter, 3, NULL, 0};
    icpns_patch_stats_t ps;
    icpns_snapshot_t *c = NULL;
    assert_int_equal(icpns_snapshot_patch_limit(a, &delta, 0, &c, &ps, &err), 0);
    size_t need = c->bytes;
    icpns_snapshot_unref(c);
    c = NULL;
    assert_true(ps.pairs_added > 0);
    assert_true(need > a->bytes);
    assert_int_equal(icpns_snapshot_patch_limit(a, &delta, need - 1, &c, &ps, &err),
                     ICPNS_ELIMIT);
    assert_null(c);
    assert_int_equal(icpns_snapshot_patch_limit(a, &delta, need, &c, &ps, &err), 0);
    icpns_snapshot_unref(c);
    icpns_snapshot_unref(a);
    icpns_dataset_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patch_equals_full_build),
        cmocka_unit_test(test_patch_touches_only_what_changed),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_byte_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
