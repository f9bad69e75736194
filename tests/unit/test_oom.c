/*
 * test_oom.c - every allocation of the engine and of the request parsers is
 * made to fail in turn (a failing allocator: the link wraps malloc, calloc
 * and realloc, and jansson gets the same through json_set_alloc_funcs).
 * Each run must end in a clean error (ICPNS_ENOMEM, or a 503 out_of_memory
 * for the parsers) or, when the allocation was optional, in success: never
 * a crash, never a leak (the sanitizer build's LeakSanitizer checks that at
 * exit), never a half-built object handed out.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "request.h"
#include "upload.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

static long countdown = -1; /* fail when it reaches 0; -1 = never */
static long calls;

static int should_fail(void)
{
    calls++;
    if (countdown < 0)
        return 0;
    return countdown-- == 0;
}

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { return should_fail() ? NULL : __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { return should_fail() ? NULL : __real_realloc(p, n); }
static void *json_malloc(size_t n) { return __wrap_malloc(n); }
static void json_free(void *p) { free(p); }

/* Runs @f with the k-th allocation failing, for every k until a run makes
 * no more allocations than k; returns how many failure points were tried. */
static long every_failure(int (*f)(void), const char *what)
{
    countdown = -1;
    calls = 0;
    assert_int_equal(f(), 0); /* succeeds with memory */
    long total = calls, k;
    for (k = 0; k < total + 1; k++) {
        countdown = k;
        calls = 0;
        int rc = f();
        countdown = -1;
        if (rc != 0 && rc != ICPNS_ENOMEM) {
            fprintf(stderr, "%s: allocation %ld failing gave %d\n", what, k, rc);
            fail();
        }
        if (calls <= k)
            break; /* this run needed fewer allocations: all points covered */
    }
    fprintf(stderr, "%s: %ld allocations, each made to fail in turn\n", what, total);
    return total;
}

static icpns_dataset_t *small_dataset(void)
{
    icpns_gen_opts_t o;
    icpns_gen_opts_default(&o);
    o.users = 60;
    o.items = 80;
    o.communities = 3;
    o.interactions = 900;
    icpns_dataset_t *d = NULL;
    icpns_error_t err;
    countdown = -1;
    assert_int_equal(icpns_gen(&o, &d, &err), 0);
    return d;
}

static icpns_dataset_t *dataset;

/* Load + index + weights + sampling (both paths) + patch. */
static int engine_run(void)
{
    static const char text[] = "1\t10\n1\t11\n2\t10\n3\t12\n3\t13\n4\t10\n4\t11\n4\t12\n";
    icpns_error_t err;
    icpns_dataset_t *d = icpns_dataset_new();
    if (!d)
        return ICPNS_ENOMEM;
    icpns_table_opts_t o;
    icpns_table_opts_default(&o);
    o.format = ICPNS_FORMAT_PAIRS;
    int rc = icpns_parse_interactions(d, text, sizeof(text) - 1, &o, "t", &err);
    if (!rc)
        rc = icpns_parse_communities(d, "1\t0\n2\t0\n3\t1\n4\t1\n", 16, "c", &err);
    icpns_dataset_free(d);
    if (rc)
        return rc;
    icpns_params_t p;
    icpns_params_default(&p);
    icpns_snapshot_t *s = NULL;
    if ((rc = icpns_snapshot_build(dataset, &p, &s, &err)))
        return rc;
    icpns_work_t *w = icpns_work_new();
    if (!w) {
        icpns_snapshot_unref(s);
        return ICPNS_ENOMEM;
    }
    uint32_t items[16];
    for (uint32_t u = 0; u < s->users.n && !rc; u++)
        for (unsigned f = 0; f < 2 && !rc; f++) {
            rc = icpns_sample_row(s, s->weights, w, (icpns_row_id_t){s->users.ids[u], 0, 1},
                                  ICPNS_STRATEGY_ICPNS, f ? ICPNS_SAMPLE_FORCE_RESIDUAL : 0, 0,
                                  16, items, NULL, NULL, NULL);
            if (rc == ICPNS_ENOCOMMUNITY || rc == ICPNS_EINFEASIBLE)
                rc = 0;
        }
    icpns_work_free(w);
    icpns_weights_t *w2 = NULL;
    p.alpha = 0.3;
    if (!rc)
        rc = icpns_weights_build(s, &p, &w2, &err);
    icpns_weights_free(w2);
    icpns_pair_t add = {.a = s->users.ids[0], .b = s->items.ids[s->items.n - 1]};
    icpns_pair_t move = {.a = s->users.ids[1], .b = s->comms.ids[0]};
    icpns_delta_t delta = {&add, 1, &move, 1};
    icpns_snapshot_t *s2 = NULL;
    if (!rc) {
        rc = icpns_snapshot_patch(s, &delta, &s2, NULL, &err);
        if (rc == ICPNS_ENOPATCH)
            rc = 0;
    }
    icpns_snapshot_unref(s2);
    icpns_snapshot_unref(s);
    return rc;
}

static int kmeans_run(void)
{
    float x[40];
    for (int k = 0; k < 40; k++)
        x[k] = (float)((k * 7919) % 13);
    icpns_kmeans_opts_t o;
    icpns_kmeans_opts_default(&o);
    o.k = 3;
    icpns_kmeans_result_t r;
    icpns_error_t err;
    int rc = icpns_kmeans(x, 20, 2, &o, &r, &err);
    if (!rc)
        icpns_kmeans_result_free(&r);
    return rc;
}

/* The request parsers: a 503 out_of_memory is the clean failure. */
static int parsers_run(void)
{
    icpnsd_config_t cfg;
    icpnsd_config_default(&cfg);
    static const char body[] = "{\"users\":[1,2,3],\"n\":4,\"strategy\":[{\"strategy\":\"icpns\","
                               "\"n\":3},{\"strategy\":\"uniform\",\"n\":1}],\"seed\":5,"
                               "\"alpha\":0.5,\"tables\":\"a\"}";
    icpnsd_negreq_t q = {0};
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    int rc = icpnsd_negreq_parse_json(&cfg, 2, 1, body, sizeof(body) - 1, &q, &e);
    icpnsd_negreq_free(&q);
    if (rc && !(e.code == ICPNSD_E_OUT_OF_MEMORY || e.code == ICPNSD_E_BAD_JSON))
        return -100;
    bool failed = rc != 0;
    icpnsd_clusterreq_t c;
    icpnsd_clusterreq_init(&c);
    static const char cj[] = "{\"users\":[1,2,3],\"embeddings\":[[1,2],[3,4],[5,6]],\"k\":2}";
    rc = icpnsd_clusterreq_parse_json(cj, sizeof(cj) - 1, &c, &e);
    icpnsd_clusterreq_free(&c);
    if (rc && !(e.code == ICPNSD_E_OUT_OF_MEMORY || e.code == ICPNSD_E_BAD_JSON))
        return -101;
    failed |= rc != 0;
    char eb[256];
    static const char conf[] = "threads = 3\nlisten = 127.0.0.1:1\ntables.x = /tmp\n";
    rc = icpnsd_config_parse(&cfg, conf, sizeof(conf) - 1, "c", eb, sizeof(eb));
    if (rc && !strstr(eb, "memory"))
        return -102;
    failed |= rc != 0;
    return failed ? ICPNS_ENOMEM : 0;
}

static void test_engine(void **state)
{
    (void)state;
    long n = every_failure(engine_run, "engine");
    assert_true(n > 20);
}

static void test_kmeans(void **state)
{
    (void)state;
    assert_true(every_failure(kmeans_run, "kmeans") > 5);
}

static void test_parsers(void **state)
{
    (void)state;
    json_set_alloc_funcs(json_malloc, json_free);
    assert_true(every_failure(parsers_run, "parsers") > 10);
    json_set_alloc_funcs(malloc, free);
}

static int setup(void **state)
{
    (void)state;
    dataset = small_dataset();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    icpns_dataset_free(dataset);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine),
        cmocka_unit_test(test_kmeans),
        cmocka_unit_test(test_parsers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
