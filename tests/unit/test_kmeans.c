/*
 * test_kmeans.c - k-means finds planted clusters, matches the brute-force
 * optimum on small data, is deterministic for a seed, survives empty
 * clusters, and rejects bad input; the .npy and text readers.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

/* Gaussian-ish noise from the counter-based generator (sum of uniforms). */
static double noise(icpns_rng_t *r)
{
    double s = 0;
    for (int k = 0; k < 12; k++)
        s += icpns_rng_double(r);
    return s - 6.0;
}

static float *blobs(uint32_t per, uint32_t k, uint32_t dim, double spread, uint32_t **truth)
{
    uint32_t n = per * k;
    float *x = malloc((size_t)n * dim * sizeof(float));
    *truth = malloc(n * sizeof(uint32_t));
    icpns_rng_t r;
    icpns_rng_init(&r, 42, 0, 0);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = i % k;
        (*truth)[i] = c;
        for (uint32_t j = 0; j < dim; j++)
            x[(size_t)i * dim + j] = (float)((j % k == c ? 10.0 : 0.0) + spread * noise(&r));
    }
    return x;
}

static void test_planted_clusters(void **state)
{
    (void)state;
    uint32_t *truth, k = 4, dim = 8, n = 400;
    float *x = blobs(100, k, dim, 1.0, &truth);
    icpns_kmeans_opts_t o;
    icpns_kmeans_opts_default(&o);
    o.k = k;
    icpns_kmeans_result_t r;
    icpns_error_t err;
    assert_int_equal(icpns_kmeans(x, n, dim, &o, &r, &err), 0);
    /* Each planted cluster is one label, and the labels differ. */
    uint32_t map[4];
    for (uint32_t c = 0; c < k; c++)
        map[c] = r.labels[c];
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(r.labels[i], map[truth[i]]);
    for (uint32_t a = 0; a < k; a++)
        for (uint32_t b = a + 1; b < k; b++)
            assert_int_not_equal(map[a], map[b]);
    for (uint32_t c = 0; c < k; c++)
        assert_int_equal(r.sizes[c], 100);
    assert_true(r.converged);
    /* Inertia equals the sum of squared distances to the centres. */
    double check = 0;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < dim; j++) {
            double d = x[(size_t)i * dim + j] - r.centers[(size_t)r.labels[i] * dim + j];
            check += d * d;
        }
    assert_true(fabs(check - r.inertia) <= 1e-9 * check);

    /* Same seed, same everything; restarts never make it worse. */
    icpns_kmeans_result_t r2;
    assert_int_equal(icpns_kmeans(x, n, dim, &o, &r2, &err), 0);
    assert_memory_equal(r.labels, r2.labels, n * sizeof(uint32_t));
    assert_true(r.inertia == r2.inertia);
    icpns_kmeans_result_free(&r2);
    o.restarts = 1;
    assert_int_equal(icpns_kmeans(x, n, dim, &o, &r2, &err), 0);
    assert_true(r.inertia <= r2.inertia);
    icpns_kmeans_result_free(&r2);
    icpns_kmeans_result_free(&r);
    free(x);
    free(truth);
}

/* The passes over the rows run in blocks of 2048 rows on any number of
 * threads; everything (labels, centres bit for bit, inertia, iterations) is
 * the same for 1, 2, 3 and 8 threads, including a last partial block and a
 * dimension that is not a multiple of the kernel's width. */
static void test_threads_do_not_change_the_result(void **state)
{
    (void)state;
    uint32_t *truth, k = 6, dim = 13, n = 6 * 1500; /* 4 full blocks + 808 rows */
    float *x = blobs(1500, k, dim, 4.0, &truth);
    icpns_kmeans_opts_t o;
    icpns_kmeans_opts_default(&o);
    o.k = k;
    o.restarts = 2;
    icpns_kmeans_result_t ref, r;
    icpns_error_t err;
    o.threads = 1;
    assert_int_equal(icpns_kmeans(x, n, dim, &o, &ref, &err), 0);
    assert_true(ref.iterations > 1);
    static const uint32_t threads[] = {0, 2, 3, 8};
    for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
        o.threads = threads[t];
        assert_int_equal(icpns_kmeans(x, n, dim, &o, &r, &err), 0);
        assert_memory_equal(r.labels, ref.labels, n * sizeof(uint32_t));
        assert_memory_equal(r.centers, ref.centers, (size_t)k * dim * sizeof(double));
        assert_memory_equal(r.sizes, ref.sizes, k * sizeof(uint32_t));
        assert_true(r.inertia == ref.inertia);
        assert_int_equal(r.iterations, ref.iterations);
        assert_int_equal(r.best_restart, ref.best_restart);
        icpns_kmeans_result_free(&r);
    }
    icpns_kmeans_result_free(&ref);
    free(x);
    free(truth);
}

/* Against the optimum found by trying every 2-partition of 12 points. */
static void test_matches_brute_force_optimum(void **state)
{
    (void)state;
    enum { N = 12, D = 2 };
    float x[N * D];
    icpns_rng_t rng;
    for (int trial = 0; trial < 20; trial++) {
        icpns_rng_init(&rng, 7, (uint64_t)trial, 0);
        for (int i = 0; i < N * D; i++)
            x[i] = (float)(icpns_rng_double(&rng) * 10);
        double best = INFINITY;
        for (uint32_t mask = 1; mask < (1u << N) - 1; mask++) {
            double c[2][D] = {{0}}, cnt[2] = {0}, in = 0;
            for (int i = 0; i < N; i++) {
                int g = (mask >> i) & 1;
                cnt[g]++;
                for (int j = 0; j < D; j++)
                    c[g][j] += x[i * D + j];
            }
            for (int i = 0; i < N; i++) {
                int g = (mask >> i) & 1;
                for (int j = 0; j < D; j++) {
                    double d = x[i * D + j] - c[g][j] / cnt[g];
                    in += d * d;
                }
            }
            if (in < best)
                best = in;
        }
        icpns_kmeans_opts_t o;
        icpns_kmeans_opts_default(&o);
        o.k = 2;
        o.restarts = 50;
        o.tol = 0; /* iterate to the fixed point */
        o.seed = (uint64_t)trial;
        icpns_kmeans_result_t r;
        icpns_error_t err;
        assert_int_equal(icpns_kmeans(x, N, D, &o, &r, &err), 0);
        assert_true(r.inertia >= best - 1e-6 * best);
        if (r.inertia > best * (1 + 1e-6))
            fprintf(stderr, "trial %d: %.9g vs optimum %.9g\n", trial, r.inertia, best);
        assert_true(r.inertia <= best * (1 + 1e-6));
        icpns_kmeans_result_free(&r);
    }
}

static void test_empty_clusters_and_duplicates(void **state)
{
    (void)state;
    /* Five points, three of them identical, k = 5: every cluster must get
     * exactly one point, found by re-seeding empty clusters. */
    float x[5] = {0, 0, 0, 1, 2};
    icpns_kmeans_opts_t o;
    icpns_kmeans_opts_default(&o);
    o.k = 5;
    icpns_kmeans_result_t r;
    icpns_error_t err;
    assert_int_equal(icpns_kmeans(x, 5, 1, &o, &r, &err), 0);
    for (uint32_t c = 0; c < 5; c++)
        assert_int_equal(r.sizes[c], 1);
    assert_true(r.inertia == 0);
    icpns_kmeans_result_free(&r);
    /* All rows identical, k = 3: still k non-empty clusters. */
    float same[12] = {1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2};
    o.k = 3;
    assert_int_equal(icpns_kmeans(same, 6, 2, &o, &r, &err), 0);
    uint32_t total = 0;
    for (uint32_t c = 0; c < 3; c++) {
        assert_true(r.sizes[c] >= 1);
        total += r.sizes[c];
    }
    assert_int_equal(total, 6);
    icpns_kmeans_result_free(&r);
    /* k = 1 and k = n. */
    o.k = 1;
    assert_int_equal(icpns_kmeans(x, 5, 1, &o, &r, &err), 0);
    assert_true(fabs(r.centers[0] - 0.6) < 1e-12);
    icpns_kmeans_result_free(&r);
}

static void test_bad_input(void **state)
{
    (void)state;
    float x[6] = {0, 1, 2, 3, 4, 5};
    icpns_kmeans_opts_t o;
    icpns_kmeans_opts_default(&o);
    icpns_kmeans_result_t r;
    icpns_error_t err;
    o.k = 0;
    assert_int_equal(icpns_kmeans(x, 3, 2, &o, &r, &err), ICPNS_EINVAL);
    assert_string_equal(err.field, "k");
    o.k = 4;
    assert_int_equal(icpns_kmeans(x, 3, 2, &o, &r, &err), ICPNS_EINVAL);
    o.k = 2;
    assert_int_equal(icpns_kmeans(x, 0, 2, &o, &r, &err), ICPNS_EINVAL);
    x[3] = NAN;
    assert_int_equal(icpns_kmeans(x, 3, 2, &o, &r, &err), ICPNS_EINVAL);
    assert_int_equal(err.line, 2);
    assert_true(strstr(err.message, "row 2, column 2") != NULL);
    x[3] = 1;
    o.restarts = 0;
    assert_int_equal(icpns_kmeans(x, 3, 2, &o, &r, &err), ICPNS_EINVAL);
    assert_string_equal(err.field, "restarts");
}

/* Builds a .npy file in memory from the header dict's text. */
static size_t make_npy_raw(unsigned char *out, const char *hdr, const void *data, size_t dlen)
{
    int hl = (int)strlen(hdr);
    int pad = 64 - (10 + hl + 1) % 64;
    if (pad == 64)
        pad = 0;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    uint16_t total = (uint16_t)(hl + pad + 1);
    out[8] = (unsigned char)(total & 0xff);
    out[9] = (unsigned char)(total >> 8);
    memcpy(out + 10, hdr, (size_t)hl);
    memset(out + 10 + hl, ' ', (size_t)pad);
    out[10 + hl + pad] = '\n';
    memcpy(out + 10 + total, data, dlen);
    return 10 + total + dlen;
}

/* Builds a .npy file in memory, as numpy.save writes it. */
static size_t make_npy(unsigned char *out, const char *descr, const char *fortran,
                       const char *shape, const void *data, size_t dlen)
{
    char hdr[256];
    snprintf(hdr, sizeof(hdr), "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
             fortran, shape);
    return make_npy_raw(out, hdr, data, dlen);
}

/* Trailing data and malformed header dicts are refused, saying what. */
static void test_npy_strict(void **state)
{
    (void)state;
    unsigned char buf[512];
    float f[6] = {1, 2, 3, 4, 5, 6};
    icpns_embeddings_t e;
    icpns_error_t err;
    /* Other valid Python spellings of the same dict. */
    const char *ok[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2)}",
        "{\"shape\": (3,2), \"descr\": \"<f4\", \"fortran_order\": False}",
        "{ 'descr' : '<f4' , 'fortran_order' : False , 'shape' : ( 3 , 2 , ) , }",
    };
    for (size_t k = 0; k < sizeof(ok) / sizeof(ok[0]); k++) {
        size_t len = make_npy_raw(buf, ok[k], f, sizeof(f));
        if (icpns_embeddings_parse_npy(buf, len, "e.npy", &e, &err))
            fail_msg("'%s' refused: %s", ok[k], err.message);
        assert_int_equal(e.n, 3);
        icpns_embeddings_free(&e);
    }
    /* Bytes after the array: refused (numpy.save appended twice, or a
     * damaged file). */
    size_t len = make_npy(buf, "<f4", "False", "(3, 2)", f, sizeof(f));
    memcpy(buf + len, "\x93NUMPY", 6);
    assert_int_equal(icpns_embeddings_parse_npy(buf, len + 6, "e.npy", &e, &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "npy");
    assert_non_null(strstr(err.message, "6 bytes after the array"));
    assert_null(e.x);
    struct {
        const char *hdr, *field, *needle;
    } bad[] = {
        {"{'descr': '<f4', 'shape': (3, 2), }", "npy", "lacks 'fortran_order'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), 'x': 1}", "npy",
         "unknown key 'x'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3, 2)}", "npy",
         "'descr' twice"},
        {"'descr': '<f4', 'fortran_order': False, 'shape': (3, 2)", "npy", "expected a dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2)} junk", "npy",
         "text after the dict"},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': (3, 2)}", "npy", "expected ',' or '}'"},
        {"{'descr': '<f4', 'fortran_order': false, 'shape': (3, 2)}", "fortran_order",
         "True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [3, 2]}", "shape", "tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", "shape", "(n,)"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3 2)}", "shape", "',' or ')'"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': (3, 2)}", "npy", "expected ':'"},
        {"{'descr': <f4, 'fortran_order': False, 'shape': (3, 2)}", "dtype", "quoted string"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2)}\x01", "npy", "text after the dict at '\\x01"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, -2)}", "shape", "dimension"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        len = make_npy_raw(buf, bad[k].hdr, f, sizeof(f));
        int rc = icpns_embeddings_parse_npy(buf, len, "e.npy", &e, &err);
        if (rc != ICPNS_EPARSE || strcmp(err.field, bad[k].field) || !strstr(err.message, bad[k].needle))
            fail_msg("'%s': rc %d field '%s' message '%s'", bad[k].hdr, rc, err.field, err.message);
        assert_null(e.x);
    }
    /* The header must end with its newline. */
    len = make_npy(buf, "<f4", "False", "(3, 2)", f, sizeof(f));
    size_t hl = (size_t)buf[8] | (size_t)buf[9] << 8;
    buf[10 + hl - 1] = ' ';
    assert_int_equal(icpns_embeddings_parse_npy(buf, len, "e.npy", &e, &err), ICPNS_EPARSE);
    assert_non_null(strstr(err.message, "newline"));
}

static void test_npy(void **state)
{
    (void)state;
    unsigned char buf[512];
    float f[6] = {1, 2, 3, 4, 5, 6};
    double d[6] = {1.5, 2, 3, 4, 5, -6.25};
    icpns_embeddings_t e;
    icpns_error_t err;
    size_t len = make_npy(buf, "<f4", "False", "(3, 2)", f, sizeof(f));
    assert_int_equal(icpns_embeddings_parse_npy(buf, len, "e.npy", &e, &err), 0);
    assert_int_equal(e.n, 3);
    assert_int_equal(e.dim, 2);
    assert_null(e.ids);
    assert_memory_equal(e.x, f, sizeof(f));
    icpns_embeddings_free(&e);
    len = make_npy(buf, "<f8", "False", "(2, 3)", d, sizeof(d));
    assert_int_equal(icpns_embeddings_parse_npy(buf, len, "e.npy", &e, &err), 0);
    assert_int_equal(e.n, 2);
    assert_int_equal(e.dim, 3);
    assert_true(e.x[0] == 1.5f && e.x[5] == -6.25f);
    icpns_embeddings_free(&e);

    struct {
        const char *descr, *fortran, *shape, *field;
        size_t cut;
    } bad[] = {
        {">f4", "False", "(3, 2)", "dtype", 0},
        {"<i8", "False", "(3, 2)", "dtype", 0},
        {"<f4", "True", "(3, 2)", "fortran_order", 0},
        {"<f4", "False", "(6,)", "shape", 0},
        {"<f4", "False", "(1, 3, 2)", "shape", 0},
        {"<f4", "False", "(3, 2)", "npy", 4}, /* truncated data */
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        len = make_npy(buf, bad[k].descr, bad[k].fortran, bad[k].shape, f, sizeof(f));
        int rc = icpns_embeddings_parse_npy(buf, len - bad[k].cut, "e.npy", &e, &err);
        assert_int_not_equal(rc, 0);
        assert_string_equal(err.field, bad[k].field);
    }
    assert_int_equal(icpns_embeddings_parse_npy("NUMPY", 5, "e.npy", &e, &err), ICPNS_EPARSE);
}

static void test_tsv(void **state)
{
    (void)state;
    icpns_embeddings_t e;
    icpns_error_t err;
    const char *ok = "# user v...\n7\t1.5\t2\n\n9 3 -4e1\n12,0.25,1\n";
    assert_int_equal(icpns_embeddings_parse_tsv(ok, strlen(ok), "e.tsv", &e, &err), 0);
    assert_int_equal(e.n, 3);
    assert_int_equal(e.dim, 2);
    assert_true(e.ids[0] == 7 && e.ids[1] == 9 && e.ids[2] == 12);
    assert_true(e.x[3] == -40.0f && e.x[4] == 0.25f);
    icpns_embeddings_free(&e);
    struct {
        const char *text, *field;
        uint64_t line;
    } bad[] = {
        {"1 2 3\n2 4\n", "value", 2},
        {"1 2 3\n2 4 5 6\n", "value", 2},
        {"1 2\nx 3\n", "user", 2},
        {"1 2\n2 nan\n", "value", 2},
        {"1 2\n3 4q\n", "value", 2},
        {"5\n", "value", 1},
        {"# nothing\n", "embeddings", 0},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        assert_int_equal(icpns_embeddings_parse_tsv(bad[k].text, strlen(bad[k].text), "e.tsv", &e,
                                                    &err),
                         ICPNS_EPARSE);
        assert_string_equal(err.field, bad[k].field);
        assert_int_equal(err.line, bad[k].line);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planted_clusters),
        cmocka_unit_test(test_threads_do_not_change_the_result),
        cmocka_unit_test(test_matches_brute_force_optimum),
        cmocka_unit_test(test_empty_clusters_and_duplicates),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_npy),
        cmocka_unit_test(test_npy_strict),
        cmocka_unit_test(test_tsv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
