/* test_shard.c - user shards (icpns shard): on long-tail data, where shards
 * miss items, every shard loads and serves its users exactly the uniform,
 * PNS and ICPNS distributions of the whole tables, over the whole
 * catalogue. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "testutil.h"

/* Long tail: 3000 items, 1500 draws over 200 users, so that most items
 * have one or two users and every shard lacks many of them. */
static icpns_dataset_t *long_tail(void)
{
    icpns_gen_opts_t g;
    icpns_gen_opts_default(&g);
    g.users = 200;
    g.items = 3000;
    g.communities = 5;
    g.interactions = 1500;
    g.seed = 17;
    icpns_dataset_t *d;
    icpns_error_t err;
    assert_int_equal(icpns_gen(&g, &d, &err), 0);
    return d;
}

static icpns_snapshot_t *load(const char *dir)
{
    icpns_table_opts_t o;
    icpns_table_opts_default(&o);
    icpns_dataset_t *d = NULL;
    icpns_error_t err;
    icpns_error_clear(&err);
    int rc = icpns_dataset_load_dir(dir, &o, &d, &err);
    if (rc) {
        char m[1200];
        icpns_error_format(&err, m, sizeof(m));
        fail_msg("%s", m);
    }
    icpns_snapshot_t *s;
    assert_int_equal(icpns_snapshot_build(d, &o.params, &s, &err), 0);
    icpns_dataset_free(d);
    return s;
}

/* Every user of @part has in @part exactly the probabilities of @full, for
 * every item of the catalogue and every strategy (PNS only if @pns).
 * Returns the number of users compared. */
static uint32_t compare(const icpns_snapshot_t *full, const icpns_snapshot_t *part, bool pns)
{
    assert_int_equal(part->items.n, full->items.n);
    assert_memory_equal(part->items.ids, full->items.ids, full->items.n * sizeof(int64_t));
    uint32_t compared = 0;
    for (uint32_t pu = 0; pu < part->users.n; pu++) {
        uint32_t fu = icpns_idmap_find(&full->users, part->users.ids[pu]);
        assert_int_not_equal(fu, ICPNS_NONE);
        for (int st = 0; st < ICPNS_STRATEGY_COUNT; st++) {
            if (st == ICPNS_STRATEGY_POPULARITY && !pns)
                continue;
            if (st == ICPNS_STRATEGY_ICPNS && full->user_comm[fu] == ICPNS_NONE)
                continue;
            double sum = 0;
            for (uint32_t i = 0; i < full->items.n; i++) {
                int e1 = 0, e2 = 0;
                double a = icpns_probability(full, full->weights, fu, (icpns_strategy_t)st, i, &e1);
                double b = icpns_probability(part, part->weights, pu, (icpns_strategy_t)st, i, &e2);
                assert_int_equal(e1, 0);
                assert_int_equal(e2, 0);
                if (fabs(a - b) > 1e-12 * (a > 1e-300 ? a : 1))
                    fail_msg("user %lld item %lld strategy %d: %.17g whole, %.17g shard",
                             (long long)part->users.ids[pu], (long long)full->items.ids[i], st,
                             a, b);
                sum += b;
            }
            assert_true(fabs(sum - 1) < 1e-9);
        }
        compared++;
    }
    return compared;
}

static void test_shards_are_exact(void **state)
{
    (void)state;
    icpns_dataset_t *d = long_tail();
    char *dir = tmpdir_new();
    char full_dir[4200], out[4200], sdir[4300];
    snprintf(full_dir, sizeof(full_dir), "%s/full", dir);
    snprintf(out, sizeof(out), "%s/shards", dir);
    icpns_params_t p;
    icpns_params_default(&p);
    p.alpha = 0.6;
    p.epsilon = 0.05; /* mass on items the community never touched */
    p.beta = 0.9;
    icpns_error_t err;
    assert_int_equal(icpns_gen_write_dir(d, &p, full_dir, &err), 0);
    icpns_dataset_free(d);
    icpns_snapshot_t *full = load(full_dir);

    enum { S = 3 };
    icpns_shard_stats_t st[S];
    assert_int_equal(icpns_shard_write(full, S, out, "test", st, &err), 0);
    uint64_t users = 0, pairs = 0;
    uint32_t compared = 0;
    for (uint32_t k = 0; k < S; k++) {
        snprintf(sdir, sizeof(sdir), "%s/s%u", out, k);
        icpns_snapshot_t *part = load(sdir);
        assert_true(part->pop_from_file);
        /* Long tail: this shard's interactions miss items of the catalogue. */
        uint8_t *seen = calloc(part->items.n, 1);
        uint32_t distinct = 0;
        for (uint64_t j = 0; j < part->n_interactions; j++)
            distinct += !seen[part->pos[j]]++;
        free(seen);
        assert_true(distinct < part->items.n / 2);
        assert_int_equal(part->n_interactions, st[k].pairs);
        for (uint32_t u = 0; u < part->users.n; u++)
            assert_int_equal(icpns_shard_of(part->users.ids[u], S), k);
        /* The same pop_c and pop as the whole. */
        assert_memory_equal(part->item_pop, full->item_pop, full->items.n * sizeof(uint32_t));
        compared += compare(full, part, true);
        users += part->users.n;
        pairs += part->n_interactions;
        icpns_snapshot_unref(part);
    }
    assert_int_equal(users, full->users.n);
    assert_int_equal(compared, full->users.n);
    assert_int_equal(pairs, full->n_interactions);

    /* Shard directories are never written over (one may hold a journal). */
    assert_int_equal(icpns_shard_write(full, S, out, NULL, NULL, &err), ICPNS_EIO);
    assert_true(strstr(err.message, "already exists") != NULL);
    /* More shards than users with interactions: refused, nothing written. */
    snprintf(sdir, sizeof(sdir), "%s/many", dir);
    assert_int_equal(icpns_shard_write(full, 5000, sdir, NULL, NULL, &err), ICPNS_EINVAL);
    assert_true(strstr(err.message, "no interactions") != NULL);
    struct stat sb;
    assert_true(stat(sdir, &sb) < 0);
    assert_int_equal(icpns_shard_write(full, 0, sdir, NULL, NULL, &err), ICPNS_EINVAL);
    icpns_snapshot_unref(full);
    tmpdir_remove(dir);
    free(dir);
}

/* Users without community: ICPNS and uniform stay exact, PNS does not
 * (the shards count pop(i) over the communities) - documented, and said
 * by icpns shard. */
static void test_users_without_community(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    char full_dir[4200], out[4200], sdir[4300];
    snprintf(full_dir, sizeof(full_dir), "%s/full", dir);
    snprintf(out, sizeof(out), "%s/shards", dir);
    icpns_dataset_t *d = long_tail();
    /* Ten more users with positives and no community. */
    for (int64_t u = 0; u < 10; u++)
        for (int64_t i = 1; i <= 30; i += 3)
            assert_int_equal(icpns_dataset_add_interaction(d, 100000 + u, i + u), 0);
    icpns_params_t p;
    icpns_params_default(&p);
    icpns_error_t err;
    assert_int_equal(icpns_gen_write_dir(d, &p, full_dir, &err), 0);
    icpns_dataset_free(d);
    icpns_snapshot_t *full = load(full_dir);
    assert_int_equal(icpns_shard_write(full, 2, out, NULL, NULL, &err), 0);
    bool pns_differs = false;
    for (uint32_t k = 0; k < 2; k++) {
        snprintf(sdir, sizeof(sdir), "%s/s%u", out, k);
        icpns_snapshot_t *part = load(sdir);
        compare(full, part, false);
        pns_differs = pns_differs || memcmp(part->item_pop, full->item_pop,
                                            full->items.n * sizeof(uint32_t)) != 0;
        icpns_snapshot_unref(part);
    }
    assert_true(pns_differs);
    icpns_snapshot_unref(full);
    tmpdir_remove(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards_are_exact),
        cmocka_unit_test(test_users_without_community),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
