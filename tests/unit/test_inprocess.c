/*
 * test_inprocess.c - the one-call API that in-process bindings use
 * (icpns_sample_request, the dataset from arrays, community updates, the
 * table loader, the snapshot's info) gives what the pieces icpnsd uses
 * give: the same items and probabilities as icpns_sample_rows row by row,
 * the same fingerprint as the equivalent files, the same refusals.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

static icpns_dataset_t *gen(uint32_t users, uint32_t items, uint32_t comms, uint64_t seed)
{
    icpns_gen_opts_t o;
    icpns_gen_opts_default(&o);
    o.users = users;
    o.items = items;
    o.communities = comms;
    o.interactions = (uint64_t)users * 12;
    o.seed = seed;
    icpns_dataset_t *d = NULL;
    assert_int_equal(icpns_gen(&o, &d, NULL), 0);
    return d;
}

static icpns_snapshot_t *build(const icpns_dataset_t *d, double alpha, double eps)
{
    icpns_params_t p;
    icpns_params_default(&p);
    p.alpha = alpha;
    p.epsilon = eps;
    icpns_snapshot_t *s = NULL;
    icpns_error_t err;
    int rc = icpns_snapshot_build(d, &p, &s, &err);
    if (rc)
        fail_msg("build: %s", err.message);
    return s;
}

/* The reference: icpnsd's pieces, one row at a time. */
static void reference(const icpns_snapshot_t *s, const icpns_weights_t *w, icpns_work_t *work,
                      const icpns_request_t *q, int64_t *items, double *probs)
{
    uint32_t *occ = malloc((q->rows ? q->rows : 1) * sizeof(*occ));
    assert_int_equal(icpns_occurrences(q->users, q->rows, occ), 0);
    icpns_rows_t rows = {q->users, occ, q->rows, q->parts, q->n_parts, q->seed, q->flags};
    uint32_t cols = icpns_rows_cols(&rows);
    uint32_t *dense = malloc(cols * sizeof(*dense));
    for (uint32_t r = 0; r < q->rows; r++) {
        assert_int_equal(icpns_sample_rows(s, w, work, &rows, r, 1, dense, probs + (size_t)r * cols,
                                           NULL, NULL, NULL), 0);
        for (uint32_t j = 0; j < cols; j++)
            items[(size_t)r * cols + j] = s->items.ids[dense[j]];
    }
    free(dense);
    free(occ);
}

#define GUARD 16
#define CANARY INT64_C(0x5a5a5a5a5a5a5a5a)

static void test_request_equals_rows(void **state)
{
    (void)state;
    icpns_dataset_t *d = gen(300, 400, 5, 3);
    icpns_snapshot_t *s = build(d, 0.8, 0);
    icpns_work_t *work = icpns_work_new();
    /* Repeated users, a mix and candidates (slots = n x m per part), and
     * enough rows that the request spans several blocks. */
    uint32_t rows = 3000;
    int64_t *users = malloc(rows * sizeof(*users));
    for (uint32_t r = 0; r < rows; r++)
        users[r] = 1 + (int64_t)((r * 7919u) % 290u);
    icpns_part_t parts[3] = {{ICPNS_STRATEGY_ICPNS, 3 * 2}, {ICPNS_STRATEGY_UNIFORM, 1 * 2},
                             {ICPNS_STRATEGY_POPULARITY, 2 * 2}};
    icpns_request_t q = {users, rows, 3, parts, 77, 0};
    uint32_t cols = 12;
    size_t cells = (size_t)rows * cols;
    int64_t *items = malloc((cells + GUARD) * sizeof(*items)), *ref = malloc(cells * sizeof(*ref));
    float *p32 = malloc((cells + GUARD) * sizeof(*p32));
    double *p64 = malloc(cells * sizeof(*p64)), *pref = malloc(cells * sizeof(*pref));
    unsigned *flags = malloc((rows + GUARD) * sizeof(*flags));
    for (int k = 0; k < GUARD; k++) {
        items[cells + k] = CANARY;
        p32[cells + k] = -1.0f;
        flags[rows + k] = 0xdeadu;
    }
    icpns_sample_stats_t st = {0};
    uint32_t failed = 123;
    assert_int_equal(icpns_sample_request(s, NULL, work, &q, items, p32, p64, flags, &st, &failed),
                     0);
    assert_int_equal(failed, 123); /* only written on failure */
    reference(s, s->weights, work, &q, ref, pref);
    assert_memory_equal(items, ref, cells * sizeof(*ref));
    assert_memory_equal(p64, pref, cells * sizeof(*pref));
    for (size_t k = 0; k < cells; k++)
        assert_true(p32[k] == (float)pref[k]);
    for (int k = 0; k < GUARD; k++) {
        assert_true(items[cells + k] == CANARY);
        assert_true(p32[cells + k] == -1.0f);
        assert_int_equal(flags[rows + k], 0xdeadu);
    }
    assert_true(st.draws >= cells);
    /* Without probabilities, and sliced differently (one row): the same items. */
    assert_int_equal(icpns_sample_request(s, s->weights, work, &q, items, NULL, NULL, NULL, NULL,
                                          NULL), 0);
    assert_memory_equal(items, ref, cells * sizeof(*ref));
    icpns_request_t one = {users + 5, 1, 3, parts, 77, 0};
    int64_t row5[12];
    assert_int_equal(icpns_sample_request(s, NULL, work, &one, row5, NULL, NULL, NULL, NULL, NULL),
                     0);
    /* Row 5 alone is its user's first occurrence; in the request it may not be. */
    uint32_t occ5 = 0;
    for (uint32_t r = 0; r < 5; r++)
        occ5 += users[r] == users[5];
    if (occ5 == 0)
        assert_memory_equal(row5, ref + 5 * cols, sizeof(row5));
    /* Zero rows: nothing written, success. */
    icpns_request_t none = {users, 0, 3, parts, 77, 0};
    assert_int_equal(icpns_sample_request(s, NULL, work, &none, NULL, NULL, NULL, NULL, NULL, NULL),
                     0);
    free(users);
    free(items);
    free(ref);
    free(p32);
    free(p64);
    free(pref);
    free(flags);
    icpns_work_free(work);
    icpns_snapshot_unref(s);
    icpns_dataset_free(d);
}

static void test_request_weights_and_errors(void **state)
{
    (void)state;
    icpns_dataset_t *d = gen(200, 300, 4, 5);
    /* User 9999 has no interactions but a community; user 8888 nothing. */
    assert_int_equal(icpns_dataset_add_community(d, 9999, d->comm[0].b), 0);
    icpns_snapshot_t *s = build(d, 0.8, 0);
    icpns_work_t *work = icpns_work_new();
    icpns_params_t p = {0.2, 0.5, 0.5};
    icpns_weights_t *w = NULL;
    assert_int_equal(icpns_weights_build(s, &p, &w, NULL), 0);
    int64_t users[6] = {1, 2, 3, 2, 8888, 4};
    icpns_part_t part = {ICPNS_STRATEGY_ICPNS, 4};
    icpns_request_t q = {users, 6, 1, &part, 9, 0};
    int64_t items[24], ref[24];
    double probs[24], pref[24];
    unsigned flags[6];
    uint32_t failed = 0;
    /* The unknown user is refused at its row, before anything is drawn. */
    assert_int_equal(icpns_sample_request(s, w, work, &q, items, NULL, NULL, flags, NULL, &failed),
                     ICPNS_EUNKNOWN_USER);
    assert_int_equal(failed, 4);
    /* Served by popularity when asked: flagged, and the same draws as the pieces. */
    q.flags = ICPNS_SAMPLE_SUBSTITUTE_PNS;
    assert_int_equal(icpns_sample_request(s, w, work, &q, items, NULL, probs, flags, NULL, &failed),
                     0);
    assert_int_equal(flags[4], ICPNS_ROW_SUBSTITUTED);
    assert_int_equal(flags[0] & ICPNS_ROW_SUBSTITUTED, 0);
    reference(s, w, work, &q, ref, pref);
    assert_memory_equal(items, ref, sizeof(ref));
    assert_memory_equal(probs, pref, sizeof(pref));
    /* Other weights give other probabilities than the default ones. */
    double pdef[24];
    assert_int_equal(icpns_sample_request(s, NULL, work, &q, items, NULL, pdef, NULL, NULL, NULL),
                     0);
    assert_memory_not_equal(pdef, probs, sizeof(pdef));
    /* A user without positives still samples; one row per prepare flag. */
    int64_t u2[1] = {9999};
    icpns_request_t q2 = {u2, 1, 1, &part, 9, 0};
    assert_int_equal(icpns_sample_request(s, NULL, work, &q2, items, NULL, NULL, flags, NULL,
                                          &failed), 0);
    /* Bad requests: no parts, zero slots, a bad strategy. */
    icpns_request_t bad = q;
    bad.n_parts = 0;
    failed = 0;
    assert_int_equal(icpns_sample_request(s, NULL, work, &bad, items, NULL, NULL, NULL, NULL,
                                          &failed), ICPNS_EINVAL);
    assert_int_equal(failed, ICPNS_NONE);
    icpns_part_t zero = {ICPNS_STRATEGY_ICPNS, 0};
    bad = q;
    bad.parts = &zero;
    assert_int_equal(icpns_sample_request(s, NULL, work, &bad, items, NULL, NULL, NULL, NULL,
                                          NULL), ICPNS_EINVAL);
    icpns_part_t wrong = {(icpns_strategy_t)7, 1};
    bad.parts = &wrong;
    assert_int_equal(icpns_sample_request(s, NULL, work, &bad, items, NULL, NULL, NULL, NULL,
                                          NULL), ICPNS_EINVAL);
    /* icpns_rows_prepare: the flags icpns_rows_flags gives. */
    uint32_t occ[6];
    icpns_rows_t rows;
    unsigned f2[6];
    assert_int_equal(icpns_rows_prepare(s, w, &q, occ, &rows, flags, NULL), 0);
    assert_int_equal(occ[3], 1); /* user 2's second row */
    assert_int_equal(icpns_rows_flags(s, w, &rows, 0, 6, f2, NULL), 0);
    assert_memory_equal(flags, f2, sizeof(f2));
    icpns_weights_free(w);
    icpns_work_free(work);
    icpns_snapshot_unref(s);
    icpns_dataset_free(d);
}

static void test_arrays_equal_files(void **state)
{
    (void)state;
    icpns_dataset_t *g = gen(150, 200, 3, 8);
    icpns_params_t p;
    icpns_params_default(&p);
    char *dir = tmpdir_new();
    assert_int_equal(icpns_gen_write_dir(g, &p, dir, NULL), 0);
    write_text(dir, "items.tsv", "100000\n100001\n");
    icpns_params_t lp = {0.3, 0, 1}; /* tables.json (gen writes one) wins */
    icpns_dataset_t *fromdir = NULL;
    icpns_error_t err;
    assert_int_equal(icpns_tables_load(dir, &lp, &fromdir, &err), 0);
    assert_true(lp.alpha == p.alpha);
    icpns_snapshot_t *a = build(fromdir, lp.alpha, lp.epsilon);
    /* The same rows as arrays, the communities in reverse order. */
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_pair_t *rc = malloc(g->n_comm * sizeof(*rc));
    for (size_t k = 0; k < g->n_comm; k++)
        rc[k] = g->comm[g->n_comm - 1 - k];
    int64_t cat[2] = {100001, 100000};
    assert_int_equal(icpns_dataset_add_arrays(d, g->inter, g->n_inter, rc, g->n_comm, cat, 2,
                                              &err), 0);
    icpns_snapshot_t *b = build(d, p.alpha, p.epsilon);
    assert_true(a->fingerprint == b->fingerprint);
    assert_int_equal(b->items.n, a->items.n);
    /* Refusals name the field and the 1-based row, and change nothing. */
    size_t before = d->n_inter;
    icpns_pair_t neg[2] = {{1, 2}, {3, -4}};
    assert_int_equal(icpns_dataset_add_arrays(d, neg, 2, NULL, 0, NULL, 0, &err), ICPNS_EINVAL);
    assert_string_equal(err.field, "interactions");
    assert_int_equal(err.line, 2);
    assert_int_equal(d->n_inter, before);
    icpns_pair_t clash[3] = {{5000, 1}, {5001, 2}, {rc[0].a, rc[0].b + 1}};
    assert_int_equal(icpns_dataset_add_arrays(d, neg, 1, clash, 3, NULL, 0, &err), ICPNS_EINVAL);
    assert_string_equal(err.field, "communities");
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.message, "one community per user"));
    assert_int_equal(d->n_inter, before);
    int64_t badcat[1] = {-1};
    assert_int_equal(icpns_dataset_add_arrays(d, NULL, 0, NULL, 0, badcat, 1, &err), ICPNS_EINVAL);
    assert_string_equal(err.field, "items");
    /* The same pair twice is no conflict. */
    icpns_pair_t same[2] = {{5000, 1}, {5000, 1}};
    assert_int_equal(icpns_dataset_add_arrays(d, NULL, 0, same, 2, NULL, 0, &err), 0);
    /* tables_load refuses what the daemon refuses, with the file named. */
    write_text(dir, "tables.json", "{\"alpha\": -1}\n");
    icpns_dataset_t *none = NULL;
    assert_int_not_equal(icpns_tables_load(dir, &lp, &none, &err), 0);
    assert_null(none);
    assert_true(lp.alpha == p.alpha); /* untouched on failure */
    free(rc);
    icpns_snapshot_unref(a);
    icpns_snapshot_unref(b);
    icpns_dataset_free(d);
    icpns_dataset_free(fromdir);
    icpns_dataset_free(g);
    tmpdir_remove(dir);
    free(dir);
}

static void test_communities_merge(void **state)
{
    (void)state;
    icpns_pair_t old[4] = {{1, 10}, {2, 10}, {3, 11}, {4, 11}};
    icpns_pair_t upd[4] = {{3, 12}, {9, 13}, {3, 14}, {1, 10}};
    icpns_pair_t *out = NULL;
    size_t n = 0;
    assert_int_equal(icpns_communities_merge(old, 4, upd, 4, false, &out, &n), 0);
    /* old's untouched users in order, then the update's last entry per user. */
    icpns_pair_t want[5] = {{2, 10}, {4, 11}, {1, 10}, {3, 14}, {9, 13}};
    assert_int_equal(n, 5);
    assert_memory_equal(out, want, sizeof(want));
    free(out);
    assert_int_equal(icpns_communities_merge(old, 4, upd, 4, true, &out, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, want + 2, 3 * sizeof(*want));
    free(out);
    assert_int_equal(icpns_communities_merge(old, 4, NULL, 0, true, &out, &n), 0);
    assert_int_equal(n, 0);
    assert_non_null(out);
    free(out);

    /* On a dataset: the snapshot is the one the merged file gives. */
    icpns_dataset_t *g = gen(120, 150, 3, 2);
    icpns_pair_t moves[2] = {{g->comm[0].a, 77}, {g->comm[1].a, 78}};
    icpns_error_t err;
    assert_int_equal(icpns_dataset_set_communities(g, moves, 2, false, &err), 0);
    icpns_snapshot_t *a = build(g, 0.8, 0);
    icpns_dataset_t *h = gen(120, 150, 3, 2);
    for (size_t k = 0; k < h->n_comm; k++)
        if (h->comm[k].a == moves[0].a)
            h->comm[k].b = 77;
        else if (h->comm[k].a == moves[1].a)
            h->comm[k].b = 78;
    icpns_snapshot_t *b = build(h, 0.8, 0);
    assert_true(a->fingerprint == b->fingerprint);
    icpns_pair_t negative[1] = {{-3, 1}};
    assert_int_equal(icpns_dataset_set_communities(g, negative, 1, false, &err), ICPNS_EINVAL);
    assert_int_equal(err.line, 1);
    /* Popularity from a file does not follow communities: refused. */
    g->has_pop = true;
    assert_int_equal(icpns_dataset_set_communities(g, moves, 1, true, &err), ICPNS_EINVAL);
    assert_string_equal(err.field, "popularity_source");
    g->has_pop = false;
    icpns_snapshot_unref(a);
    icpns_snapshot_unref(b);
    icpns_dataset_free(g);
    icpns_dataset_free(h);
}

static void test_info(void **state)
{
    (void)state;
    icpns_dataset_t *d = gen(150, 200, 3, 4);
    assert_int_equal(icpns_dataset_add_interaction(d, 7777, 1), 0); /* no community */
    icpns_snapshot_t *s = build(d, 0.5, 0);
    icpns_snapshot_info_t si;
    icpns_snapshot_info(s, &si);
    assert_true(si.fingerprint == s->fingerprint);
    assert_int_equal(si.users, s->users.n);
    assert_int_equal(si.items, s->items.n);
    assert_int_equal(si.communities, 3);
    assert_int_equal(si.sampler_revision, ICPNS_SAMPLER_REVISION);
    assert_true(si.params.alpha == 0.5);
    assert_ptr_equal(icpns_snapshot_item_ids(s), s->items.ids);
    icpns_user_info_t ui;
    assert_int_equal(icpns_snapshot_user(s, 123456789, &ui), ICPNS_EUNKNOWN_USER);
    assert_int_equal(icpns_snapshot_user(s, 7777, &ui), 0);
    assert_int_equal(ui.has_community, 0);
    assert_int_equal(ui.community, -1);
    assert_int_equal(ui.positives, 1);
    int64_t u1 = d->comm[0].a;
    assert_int_equal(icpns_snapshot_user(s, u1, &ui), 0);
    assert_int_equal(ui.has_community, 1);
    assert_int_equal(ui.community, d->comm[0].b);
    assert_true(ui.mass_covered > 0 && ui.mass_covered < 1);
    icpns_community_info_t ci;
    assert_int_equal(icpns_snapshot_community(s, 3, &ci), ICPNS_EINVAL);
    uint32_t c = icpns_snapshot_community_find(s, d->comm[0].b);
    assert_int_not_equal(c, ICPNS_NONE);
    assert_int_equal(icpns_snapshot_community_find(s, 424242), ICPNS_NONE);
    assert_int_equal(icpns_snapshot_community(s, c, &ci), 0);
    assert_true(ci.community == d->comm[0].b);
    assert_true(ci.support > 5);
    /* The ranking: decreasing weight = count^alpha, probabilities summing
     * to 1 over the whole support; top beyond the support gives it all. */
    icpns_item_rank_t *r = malloc(ci.support * sizeof(*r));
    uint32_t n = 0;
    assert_int_equal(icpns_community_top_items(s, c, 1000000, r, &n), 0);
    assert_int_equal(n, ci.support);
    double total = 0, mass = 0;
    for (uint32_t k = 0; k < n; k++) {
        assert_true(fabs(r[k].weight - pow((double)r[k].count, 0.5)) < 1e-12);
        if (k)
            assert_true(r[k].weight < r[k - 1].weight ||
                        (r[k].weight == r[k - 1].weight && r[k].item > r[k - 1].item));
        total += r[k].probability;
        mass += r[k].weight;
    }
    assert_true(fabs(total - 1) < 1e-9);
    assert_true(fabs(mass - ci.mass) < 1e-9 * mass);
    icpns_item_rank_t top3[3];
    assert_int_equal(icpns_community_top_items(s, c, 3, top3, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(top3, r, sizeof(top3));
    assert_int_equal(icpns_community_top_items(s, 99, 3, top3, &n), ICPNS_EINVAL);
    free(r);
    /* The sizes bindings check. */
    assert_int_equal(icpns_abi_sizeof("request"), sizeof(icpns_request_t));
    assert_int_equal(icpns_abi_sizeof("load_report"), icpns_load_report_size());
    assert_int_equal(icpns_abi_sizeof("item_rank"), sizeof(icpns_item_rank_t));
    assert_int_equal(icpns_abi_sizeof("nonsense"), 0);
    assert_int_equal(icpns_abi_sizeof(NULL), 0);
    assert_string_equal(icpns_version(), ICPNS_VERSION_STRING);
    icpns_snapshot_unref(s);
    icpns_dataset_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_equals_rows),
        cmocka_unit_test(test_request_weights_and_errors),
        cmocka_unit_test(test_arrays_equal_files),
        cmocka_unit_test(test_communities_merge),
        cmocka_unit_test(test_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
