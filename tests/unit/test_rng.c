/* test_rng.c - the counter-based generator. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

static void test_streams_are_pure_functions(void **state)
{
    (void)state;
    icpns_rng_t a, b;
    icpns_rng_init(&a, 7, 3, 11);
    uint64_t x[8];
    for (int k = 0; k < 8; k++)
        x[k] = icpns_rng_next(&a);
    /* The same (seed, row, slot) replays the same stream... */
    icpns_rng_init(&b, 7, 3, 11);
    for (int k = 0; k < 8; k++)
        assert_int_equal(icpns_rng_next(&b), x[k]);
    /* ... and a neighbour in any coordinate gives another one. */
    icpns_rng_init(&b, 8, 3, 11);
    assert_true(icpns_rng_next(&b) != x[0]);
    icpns_rng_init(&b, 7, 4, 11);
    assert_true(icpns_rng_next(&b) != x[0]);
    icpns_rng_init(&b, 7, 3, 12);
    assert_true(icpns_rng_next(&b) != x[0]);
    icpns_rng_init(&b, 7, 11, 3); /* row and slot are not symmetric */
    assert_true(icpns_rng_next(&b) != x[0]);
}

static void test_below_is_uniform(void **state)
{
    (void)state;
    enum { K = 97, N = 500000 };
    uint64_t c[K] = {0};
    double p[K];
    for (int k = 0; k < K; k++)
        p[k] = 1.0 / K;
    icpns_rng_t r;
    for (int i = 0; i < N; i++) {
        /* One draw per stream, streams indexed by slot: the way the
         * sampler uses them. */
        icpns_rng_init(&r, 2026, 0, (uint64_t)i);
        uint64_t v = icpns_rng_below(&r, K);
        assert_true(v < K);
        c[v]++;
    }
    assert_true(chi2_test(c, p, K) > 1e-6);
}

static void test_below_large_bound(void **state)
{
    (void)state;
    /* n just above 2^63: the top half must be reached about half the time. */
    uint64_t n = (UINT64_C(1) << 63) + 12345, hi = 0;
    icpns_rng_t r;
    icpns_rng_init(&r, 1, 2, 3);
    for (int i = 0; i < 100000; i++) {
        uint64_t v = icpns_rng_below(&r, n);
        assert_true(v < n);
        hi += v >= n / 2;
    }
    assert_true(hi > 49000 && hi < 51000);
    /* n = 1 is always 0. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(icpns_rng_below(&r, 1), 0);
}

static void test_double_range_and_mean(void **state)
{
    (void)state;
    icpns_rng_t r;
    icpns_rng_init(&r, 99, 0, 0);
    double sum = 0;
    for (int i = 0; i < 200000; i++) {
        double u = icpns_rng_double(&r);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
    }
    /* mean 1/2, sd of the mean 1/sqrt(12 * 200000) ~ 0.00065 */
    assert_true(fabs(sum / 200000 - 0.5) < 0.004);
}

static void test_chi2_helper_has_power(void **state)
{
    (void)state;
    /* A fair die tested against a loaded one must fail. */
    uint64_t c[4] = {2500, 2500, 2500, 2500};
    double fair[4] = {0.25, 0.25, 0.25, 0.25}, loaded[4] = {0.3, 0.2, 0.25, 0.25};
    assert_true(chi2_test(c, fair, 4) > 0.99);
    assert_true(chi2_test(c, loaded, 4) < 1e-10);
    /* Known quantile: P(chi2_1 >= 3.841) = 0.05. */
    assert_true(fabs(chi2_sf(3.841459, 1) - 0.05) < 1e-5);
    assert_true(fabs(chi2_sf(124.342, 100) - 0.05) < 1e-3);
}

/* icpns_hash64 is XXH64: vectors from the reference implementation
 * (libxxhash 0.8.1) over the bytes (7k + 3) mod 256, every tail length
 * class and both the short and the 32-byte-stripe paths. */
static void test_hash64_is_xxh64(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        uint64_t seed, want;
    } v[] = {
        {0, UINT64_C(0x0), UINT64_C(0xef46db3751d8e999)},
        {1, UINT64_C(0x0), UINT64_C(0x1f25c8d0bc1f4bb6)},
        {3, UINT64_C(0x0), UINT64_C(0x31d2363f52e564c9)},
        {4, UINT64_C(0x0), UINT64_C(0x9bb64b7d66ee9fda)},
        {7, UINT64_C(0x1), UINT64_C(0xd8b4a941715fee31)},
        {8, UINT64_C(0x0), UINT64_C(0xdab99d95c6f90092)},
        {15, UINT64_C(0x2), UINT64_C(0x116848d3d0911219)},
        {31, UINT64_C(0x0), UINT64_C(0xa2aa5f33cc4a6119)},
        {32, UINT64_C(0x0), UINT64_C(0x23c3c17ef790fd97)},
        {33, UINT64_C(0x5), UINT64_C(0xbb0f5983c203f593)},
        {63, UINT64_C(0x0), UINT64_C(0x5e3e54b431c7493c)},
        {64, UINT64_C(0x3039), UINT64_C(0xef589281222c0318)},
        {100, UINT64_C(0x0), UINT64_C(0xa61f8d4c170fe531)},
        {200, UINT64_C(0xdeadbeefcafef00d), UINT64_C(0x8bb3d413caa7c117)},
    };
    unsigned char data[200];
    for (int k = 0; k < 200; k++)
        data[k] = (unsigned char)(k * 7 + 3);
    for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++)
        assert_true(icpns_hash64(data, v[k].n, v[k].seed) == v[k].want);
    /* Unaligned input gives the same value. */
    unsigned char shifted[201];
    memcpy(shifted + 1, data, 200);
    assert_true(icpns_hash64(shifted + 1, 200, UINT64_C(0xdeadbeefcafef00d)) ==
                UINT64_C(0x8bb3d413caa7c117));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The key of a request row: the documented chain, pinned values (a change
 * here changes every negative and needs ICPNS_SAMPLER_REVISION bumped), and
 * no collisions over a grid of (seed, user, occurrence), neighbours in
 * every coordinate included. */
static void test_row_keys(void **state)
{
    (void)state;
    assert_true(ICPNS_RNG_OCC0 == icpns_mix64(ICPNS_RNG_OCC));
    for (uint32_t occ = 0; occ < 3; occ++) {
        uint64_t k0 = icpns_mix64(7 + ICPNS_RNG_GAMMA);
        uint64_t k1 = icpns_mix64(k0 ^ icpns_mix64(42));
        uint64_t k2 = icpns_mix64(k1 ^ icpns_mix64(occ + ICPNS_RNG_OCC));
        assert_true(icpns_rng_user_key(7, 42, occ) == k2);
    }
    assert_true(icpns_rng_user_key(7, 42, 3) == UINT64_C(0x5a01d8daf88cd486));
    assert_true(icpns_rng_user_key(7, -5, 0) == UINT64_C(0xec2d2375e12c066f));
    assert_true(icpns_rng_user_key(0, 0, 0) == UINT64_C(0x08f2d907ee854906));
    enum { SEEDS = 32, USERS = 256, OCCS = 16, N = SEEDS * USERS * OCCS };
    uint64_t *k = malloc(N * sizeof(*k));
    size_t n = 0;
    for (uint64_t s = 0; s < SEEDS; s++)
        for (int64_t u = -USERS / 2; u < USERS / 2; u++)
            for (uint32_t o = 0; o < OCCS; o++)
                k[n++] = icpns_rng_user_key(s, u, o);
    qsort(k, n, sizeof(*k), cmp_u64);
    for (size_t j = 1; j < n; j++)
        assert_true(k[j] != k[j - 1]);
    free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streams_are_pure_functions),
        cmocka_unit_test(test_below_is_uniform),
        cmocka_unit_test(test_below_large_bound),
        cmocka_unit_test(test_double_range_and_mean),
        cmocka_unit_test(test_chi2_helper_has_power),
        cmocka_unit_test(test_hash64_is_xxh64),
        cmocka_unit_test(test_row_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
