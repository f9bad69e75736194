/* test_loader.c - table files: formats, filters and every error's line. */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include "testutil.h"

/* Parses @text as interactions; returns the code, fills @err, @d. */
static int parse_inter(icpns_dataset_t *d, const char *text, icpns_format_t f,
                       bool has_min, double min, icpns_error_t *err)
{
    icpns_error_clear(err);
    return icpns_parse_interactions(d, text, strlen(text), f, has_min, min, "inter.tsv", err);
}

static void expect_error(const char *text, icpns_format_t f, uint64_t line,
                         const char *field, const char *needle)
{
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    int rc = parse_inter(d, text, f, false, 0, &err);
    assert_int_equal(rc, ICPNS_EPARSE);
    assert_int_equal(err.line, line);
    assert_string_equal(err.field, field);
    assert_string_equal(err.path, "inter.tsv");
    if (!strstr(err.message, needle))
        fail_msg("message '%s' lacks '%s'", err.message, needle);
    /* Nothing half-way. */
    assert_int_equal(d->n_inter, 0);
    icpns_dataset_free(d);
}

static void test_pairs_formats(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    /* MovieLens u.data: user item rating timestamp, tab-separated. */
    assert_int_equal(parse_inter(d, "196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
                                 ICPNS_FORMAT_AUTO, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 2);
    assert_int_equal(d->inter[1].a, 186);
    assert_int_equal(d->inter[1].b, 302);
    /* CSV with a header, CRLF endings, comments and blank lines. */
    assert_int_equal(parse_inter(d, "userId,movieId,rating\r\n# note\r\n\r\n1,2,4.5\r\n3,4,1\r\n",
                                 ICPNS_FORMAT_PAIRS, true, 3.0, &err), 0);
    assert_int_equal(d->n_inter, 3);
    assert_int_equal(d->inter[2].a, 1);
    assert_int_equal(d->skipped_rating, 1);
    /* MovieLens-1M's '::' separator and a last line without newline. */
    assert_int_equal(parse_inter(d, "5::6::5::978300760\n7::8", ICPNS_FORMAT_PAIRS, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 5);
    assert_int_equal(d->inter[4].b, 8);
    icpns_dataset_free(d);
}

static void test_recbole(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    const char *text = "item_id:token\tuser_id:token\trating:float\ttimestamp:float\n"
                       "10\t1\t5\t881250949\n11\t1\t2\t881250949\n12\t2\t3.5\t1\n";
    assert_int_equal(parse_inter(d, text, ICPNS_FORMAT_AUTO, true, 3, &err), 0);
    assert_int_equal(d->n_inter, 2); /* rating 2 dropped */
    assert_int_equal(d->inter[0].a, 1);
    assert_int_equal(d->inter[0].b, 10);
    assert_int_equal(d->inter[1].a, 2);
    icpns_dataset_free(d);
    expect_error("user_id:token\trating:float\n1\t2\n", ICPNS_FORMAT_RECBOLE, 1, "item_id",
                 "item_id:token");
    expect_error("1\t2\n", ICPNS_FORMAT_RECBOLE, 1, "", "RecBole header");
    expect_error("user_id:token\titem_id:token\n1\t2\n3\n", ICPNS_FORMAT_RECBOLE, 3, "item",
                 "missing column");
}

static void test_adjacency(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    assert_int_equal(parse_inter(d, "0 1 2 3\n1 3\n2\n", ICPNS_FORMAT_ADJACENCY, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 4);
    assert_int_equal(d->inter[3].a, 1);
    assert_int_equal(d->inter[3].b, 3);
    icpns_dataset_free(d);
    expect_error("0 1 2\n1 2 x\n", ICPNS_FORMAT_ADJACENCY, 2, "item", "bad number 'x'");
    /* Longer than the field limit of the pairs splitter. */
    char big[8192] = "7";
    for (int k = 0; k < 500; k++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), " %d", k);
    d = icpns_dataset_new();
    assert_int_equal(parse_inter(d, big, ICPNS_FORMAT_ADJACENCY, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 500);
    icpns_dataset_free(d);
}

static void test_interaction_errors(void **state)
{
    (void)state;
    expect_error("1\t2\n3\tx7\n", ICPNS_FORMAT_PAIRS, 2, "item", "bad number 'x7'");
    expect_error("1\t2\n\n-3\t4\n", ICPNS_FORMAT_PAIRS, 3, "user", "negative id '-3'");
    expect_error("1\t2\n3\n", ICPNS_FORMAT_PAIRS, 2, "item", "missing column");
    expect_error("99999999999999999999\t1\n", ICPNS_FORMAT_PAIRS, 1, "user", "out of range");
    expect_error("1\t2.5\n", ICPNS_FORMAT_PAIRS, 1, "item", "bad number");
    /* A line of separators only (found by fuzzing: read a stale field). */
    expect_error("1\t2\n,,;\n", ICPNS_FORMAT_PAIRS, 2, "user", "no fields");
    expect_error("1 2\n,\n", ICPNS_FORMAT_ADJACENCY, 2, "user", "bad number");
    /* The rating filter needs a rating. */
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    assert_int_equal(parse_inter(d, "1\t2\tgood\n", ICPNS_FORMAT_PAIRS, true, 3, &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "rating");
    assert_int_equal(parse_inter(d, "1\t2\n", ICPNS_FORMAT_PAIRS, true, 3, &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "rating");
    assert_int_equal(d->n_inter, 0);
    icpns_dataset_free(d);
}

static void test_communities_and_popularity_errors(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    const char *c1 = "1\t0\n2\t0\n1\t0\n2\t1\n";
    icpns_error_clear(&err);
    assert_int_equal(icpns_parse_communities(d, c1, strlen(c1), "c.tsv", &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 4);
    assert_true(strstr(err.message, "line 2") != NULL);
    assert_int_equal(d->n_comm, 0);
    const char *c2 = "1\t0\n2\n";
    assert_int_equal(icpns_parse_communities(d, c2, strlen(c2), "c.tsv", &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 2);
    assert_string_equal(err.field, "community");
    const char *c3 = "1\t0\n1\t0\n2\t5\n";
    assert_int_equal(icpns_parse_communities(d, c3, strlen(c3), "c.tsv", &err), 0);
    assert_int_equal(d->n_comm, 2); /* a repeated identical line counts once */

    const char *p1 = "0\t1\t2\n0\t2\n";
    assert_int_equal(icpns_parse_popularity(d, p1, strlen(p1), "p.tsv", &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 2);
    assert_string_equal(err.field, "count");
    const char *p2 = "0\t1\t-2\n";
    assert_int_equal(icpns_parse_popularity(d, p2, strlen(p2), "p.tsv", &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "count");
    assert_false(d->has_pop);

    /* Unknown community / item in popularity: found when indexing, with
     * the popularity file's line. */
    const char *inter = "1\t10\n2\t11\n";
    assert_int_equal(parse_inter(d, inter, ICPNS_FORMAT_PAIRS, false, 0, &err), 0);
    const char *p3 = "0\t10\t1\n7\t10\t1\n";
    assert_int_equal(icpns_parse_popularity(d, p3, strlen(p3), "p.tsv", &err), 0);
    icpns_params_t par;
    icpns_params_default(&par);
    icpns_snapshot_t *s = NULL;
    assert_int_equal(icpns_snapshot_build(d, &par, &s, &err), ICPNS_EPARSE);
    assert_null(s);
    assert_string_equal(err.path, "p.tsv");
    assert_int_equal(err.line, 2);
    assert_string_equal(err.field, "community");
    assert_true(strstr(err.message, "unknown community 7") != NULL);
    icpns_dataset_free(d);

    d = icpns_dataset_new();
    assert_int_equal(parse_inter(d, inter, ICPNS_FORMAT_PAIRS, false, 0, &err), 0);
    assert_int_equal(icpns_parse_communities(d, "1\t0\n", 4, "c.tsv", &err), 0);
    const char *p4 = "0\t10\t1\n0\t99\t1\n";
    assert_int_equal(icpns_parse_popularity(d, p4, strlen(p4), "p.tsv", &err), 0);
    assert_int_equal(icpns_snapshot_build(d, &par, &s, &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 2);
    assert_string_equal(err.field, "item");
    icpns_dataset_free(d);
}

/* Popularity counts may be as large as 2^32-1 (found by fuzzing: the build
 * once sized a power table by the largest count, allocating gigabytes). */
static void test_huge_popularity_counts(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    const char *inter = "1\t10\n2\t11\n2\t12\n";
    assert_int_equal(parse_inter(d, inter, ICPNS_FORMAT_PAIRS, false, 0, &err), 0);
    assert_int_equal(icpns_parse_communities(d, "1\t0\n2\t0\n", 8, "c.tsv", &err), 0);
    const char *big = "0\t10\t4294967295\n";
    assert_int_equal(icpns_parse_popularity(d, big, strlen(big), "p.tsv", &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "count");
    const char *pop = "0\t10\t4294967294\n0\t11\t1\n0\t12\t3000000000\n";
    assert_int_equal(icpns_parse_popularity(d, pop, strlen(pop), "p.tsv", &err), 0);
    icpns_params_t par;
    icpns_params_default(&par);
    par.alpha = 0.5;
    icpns_snapshot_t *s = NULL;
    assert_int_equal(icpns_snapshot_build(d, &par, &s, &err), 0);
    assert_int_equal(s->max_count, 4294967294u);
    const icpns_wtable_t *t = &s->weights->comm[0];
    assert_int_equal(t->m, 3);
    /* Weights are count^alpha, exactly as for small counts. */
    for (uint32_t k = 0; k < t->m; k++)
        assert_true(fabs(t->w[k] - pow((double)s->sup_count[t->items - s->sup_item + k], 0.5)) <
                    1e-9 * t->w[k]);
    icpns_snapshot_unref(s);
    icpns_dataset_free(d);
}

static void test_directory_and_tables_json(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    assert_non_null(dir);
    write_text(dir, "interactions.tsv", "1\t10\t5\n1\t10\t4\n1\t11\t1\n2\t10\t5\n3\t12\t5\n");
    write_text(dir, "communities.tsv", "1\t0\n2\t0\n3\t1\n");
    write_text(dir, "tables.json", "{\"alpha\": 0.5, \"min_rating\": 3, \"format\": \"pairs\"}");
    icpns_table_opts_t o;
    icpns_table_opts_default(&o);
    icpns_dataset_t *d = NULL;
    icpns_error_t err;
    icpns_error_clear(&err);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), 0);
    assert_true(o.params.alpha == 0.5);
    assert_true(o.has_min_rating);
    assert_int_equal(d->n_inter, 4); /* (1,11) rated 1 is dropped */
    icpns_snapshot_t *s;
    assert_int_equal(icpns_snapshot_build(d, &o.params, &s, &err), 0);
    assert_int_equal(s->n_interactions, 3); /* duplicate (1,10) counts once */
    assert_int_equal(s->users.n, 3);
    assert_int_equal(s->items.n, 2);
    /* pop_c: community 0 has item 10 from users 1 and 2 (distinct users). */
    assert_int_equal(s->sup_off[1] - s->sup_off[0], 1);
    assert_int_equal(s->sup_count[0], 2);
    icpns_snapshot_unref(s);
    icpns_dataset_free(d);

    /* A typo in tables.json is an error naming the key. */
    write_text(dir, "tables.json", "{\"alpah\": 0.5}");
    icpns_table_opts_default(&o);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "alpah");
    write_text(dir, "tables.json", "{\"alpha\": -1}");
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EINVAL);
    assert_string_equal(err.field, "alpha");
    write_text(dir, "tables.json", "{\"alpha\": 1,\n \"beta\": }");
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 2);
    /* A missing file names itself. */
    write_text(dir, "tables.json", "{\"communities\": \"nope.tsv\"}");
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EIO);
    assert_true(strstr(err.path, "nope.tsv") != NULL);
    tmpdir_remove(dir);
    free(dir);
}

/* The directory loader reads icpnsd's journal after the interactions (so
 * that the tools see what the daemon serves), skips an interrupted last
 * append, and names the journal's line on a bad row. */
static void test_directory_journal(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    assert_non_null(dir);
    write_text(dir, "interactions.tsv", "1\t10\n2\t11\n");
    write_text(dir, "communities.tsv", "1\t0\n2\t0\n");
    write_text(dir, "interactions.journal", "1\t11\n3\t12\n2\t1");
    icpns_table_opts_t o;
    icpns_table_opts_default(&o);
    icpns_dataset_t *d = NULL;
    icpns_error_t err;
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), 0);
    assert_int_equal(d->n_inter, 4); /* "2<TAB>1" without newline: skipped */
    assert_true(d->inter[2].a == 1 && d->inter[2].b == 11);
    assert_true(d->inter[3].a == 3 && d->inter[3].b == 12);
    icpns_dataset_free(d);
    write_text(dir, "interactions.journal", "1\t11\nx\t12\n");
    icpns_table_opts_default(&o);
    d = NULL;
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EPARSE);
    assert_null(d);
    assert_int_equal(err.line, 2);
    assert_true(strstr(err.path, "interactions.journal") != NULL);
    tmpdir_remove(dir);
    free(dir);
}

static void test_idmap(void **state)
{
    (void)state;
    int64_t *ids = malloc(6 * sizeof(*ids));
    int64_t v[6] = {INT64_MAX, 5, 0, 5, 1000000000000LL, 7};
    memcpy(ids, v, sizeof(v));
    icpns_idmap_t m;
    assert_int_equal(icpns_idmap_build(&m, ids, 6), 0);
    assert_int_equal(m.n, 5);
    assert_int_equal(icpns_idmap_find(&m, 0), 0);
    assert_int_equal(icpns_idmap_find(&m, 5), 1);
    assert_int_equal(icpns_idmap_find(&m, 7), 2);
    assert_int_equal(icpns_idmap_find(&m, 1000000000000LL), 3);
    assert_int_equal(icpns_idmap_find(&m, INT64_MAX), 4);
    assert_int_equal(icpns_idmap_find(&m, 6), ICPNS_NONE);
    icpns_idmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pairs_formats),
        cmocka_unit_test(test_recbole),
        cmocka_unit_test(test_adjacency),
        cmocka_unit_test(test_interaction_errors),
        cmocka_unit_test(test_communities_and_popularity_errors),
        cmocka_unit_test(test_huge_popularity_counts),
        cmocka_unit_test(test_directory_and_tables_json),
        cmocka_unit_test(test_directory_journal),
        cmocka_unit_test(test_idmap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
