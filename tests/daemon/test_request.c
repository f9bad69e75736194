/* test_request.c - the request parsers (src/daemon/request.c, frames.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "frames.h"
#include "request.h"
#include "upload.h"

static icpnsd_config_t cfg;

static int setup(void **state)
{
    (void)state;
    icpnsd_config_default(&cfg);
    cfg.max_users = 100;
    cfg.max_n = 50;
    cfg.max_candidates = 8;
    return 0;
}

static int parse_json(const char *body, icpnsd_negreq_t *q, icpnsd_err_t *e)
{
    memset(q, 0, sizeof(*q));
    icpnsd_err_clear(e);
    return icpnsd_negreq_parse_json(&cfg, ICPNS_STRATEGY_ICPNS, 99, body, strlen(body), q, e);
}

static void test_json_accepted(void **state)
{
    (void)state;
    icpnsd_negreq_t q;
    icpnsd_err_t e;
    for (int fast = 1; fast >= 0; fast--) {
        icpnsd_json_fastpath = fast;
        assert_int_equal(parse_json("{\"users\":[1, 20,300],\"n\":4,\"strategy\":\"uniform\","
                                    "\"seed\":7,\"probabilities\":true,\"candidates\":2,"
                                    "\"unknown_users\":\"popularity\",\"tables\":\"k8\","
                                    "\"alpha\":0.5}", &q, &e), 0);
        assert_int_equal(q.rows, 3);
        assert_true(q.users[0] == 1 && q.users[1] == 20 && q.users[2] == 300);
        assert_int_equal(q.n, 4);
        assert_int_equal(q.m, 2);
        assert_int_equal(q.seed, 7);
        assert_true(q.probs);
        assert_true(q.flags & ICPNS_SAMPLE_SUBSTITUTE_PNS);
        assert_string_equal(q.tables, "k8");
        assert_true(q.has_alpha && q.alpha == 0.5 && !q.has_beta);
        assert_int_equal(q.nparts, 1);
        assert_int_equal(q.parts[0].strategy, ICPNS_STRATEGY_UNIFORM);
        icpnsd_negreq_free(&q);
        /* Defaults: the configured n and strategy, one candidate, the
         * fallback seed. */
        assert_int_equal(parse_json("{\"users\":[]}", &q, &e), 0);
        assert_int_equal(q.rows, 0);
        assert_int_equal(q.n, cfg.default_n);
        assert_int_equal(q.m, 1);
        assert_int_equal(q.seed, 99);
        assert_int_equal(q.parts[0].strategy, ICPNS_STRATEGY_ICPNS);
        icpnsd_negreq_free(&q);
        /* A strategy mix: n is the sum. */
        assert_int_equal(parse_json("{\"users\":[5],\"strategy\":[{\"strategy\":\"icpns\",\"n\":3},"
                                    "{\"strategy\":\"rns\",\"n\":1}]}", &q, &e), 0);
        assert_true(q.mixed);
        assert_int_equal(q.nparts, 2);
        assert_int_equal(q.n, 4);
        assert_int_equal(q.parts[1].strategy, ICPNS_STRATEGY_UNIFORM);
        icpnsd_negreq_free(&q);
    }
    icpnsd_json_fastpath = true;
}

/* Each refusal has its code, field and row. */
static void test_json_refused(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        icpnsd_code_t code;
        const char *field;
        long long row;
    } cases[] = {
        {"", ICPNSD_E_BAD_JSON, "", -1},
        {"{\"users\":[1,]}", ICPNSD_E_BAD_JSON, "", -1},
        {"[1,2]", ICPNSD_E_BAD_REQUEST, "", -1},
        {"{\"users\":[1],\"users\":[2]}", ICPNSD_E_BAD_JSON, "", -1},
        {"{\"user\":[1]}", ICPNSD_E_UNKNOWN_FIELD, "user", -1},
        {"{\"users\":5}", ICPNSD_E_BAD_REQUEST, "users", -1},
        {"{\"users\":[1,-2]}", ICPNSD_E_BAD_USER_ID, "users", 1},
        {"{\"users\":[1,2.5]}", ICPNSD_E_BAD_USER_ID, "users", 1},
        {"{\"users\":[1,\"3\"]}", ICPNSD_E_BAD_USER_ID, "users", 1},
        {"{\"users\":[1],\"n\":0}", ICPNSD_E_BAD_REQUEST, "n", -1},
        {"{\"users\":[1],\"n\":51}", ICPNSD_E_LIMIT_EXCEEDED, "n", -1},
        {"{\"users\":[1],\"candidates\":9}", ICPNSD_E_LIMIT_EXCEEDED, "candidates", -1},
        {"{\"users\":[1],\"candidates\":0}", ICPNSD_E_BAD_REQUEST, "candidates", -1},
        {"{\"users\":[1],\"strategy\":\"hard\"}", ICPNSD_E_BAD_STRATEGY, "strategy", -1},
        {"{\"users\":[1],\"strategy\":[]}", ICPNSD_E_BAD_STRATEGY, "strategy", -1},
        {"{\"users\":[1],\"strategy\":[{\"strategy\":\"icpns\",\"n\":0}]}", ICPNSD_E_BAD_STRATEGY,
         "strategy", 0},
        {"{\"users\":[1],\"n\":5,\"strategy\":[{\"strategy\":\"icpns\",\"n\":2}]}",
         ICPNSD_E_BAD_REQUEST, "n", -1},
        {"{\"users\":[1],\"seed\":-1}", ICPNSD_E_BAD_REQUEST, "seed", -1},
        {"{\"users\":[1],\"probabilities\":1}", ICPNSD_E_BAD_REQUEST, "probabilities", -1},
        {"{\"users\":[1],\"unknown_users\":\"skip\"}", ICPNSD_E_BAD_REQUEST, "unknown_users", -1},
        {"{\"users\":[1],\"tables\":\"a b\"}", ICPNSD_E_BAD_REQUEST, "tables", -1},
        {"{\"users\":[1],\"alpha\":\"x\"}", ICPNSD_E_BAD_PARAMETER, "alpha", -1},
        {"{\"users\":[1],\"strategy\":[{\"strategy\":\"icpns\",\"n\":2,\"tables\":\"k8\"}]}",
         ICPNSD_E_UNKNOWN_FIELD, "strategy", 0},
        {"{\"users\":[1],\"seed\":9223372036854775808}", ICPNSD_E_BAD_JSON, "", -1},
    };
    for (int fast = 1; fast >= 0; fast--) {
        icpnsd_json_fastpath = fast;
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
            icpnsd_negreq_t q;
            icpnsd_err_t e;
            int rc = parse_json(cases[k].body, &q, &e);
            icpnsd_negreq_free(&q);
            if (rc != -1 || e.code != cases[k].code || strcmp(e.field, cases[k].field) ||
                e.row != cases[k].row) {
                print_error("case %zu (%s): rc %d code %s field '%s' row %lld\n", k,
                            cases[k].body, rc, icpnsd_code_name(e.code), e.field, e.row);
                fail();
            }
            assert_true(e.message[0] != '\0');
        }
    }
    icpnsd_json_fastpath = true;
}

static void test_json_user_limit(void **state)
{
    (void)state;
    char body[2048] = "{\"users\":[";
    for (int k = 0; k < 101; k++)
        sprintf(body + strlen(body), k ? ",%d" : "%d", k);
    strcat(body, "]}");
    icpnsd_negreq_t q;
    icpnsd_err_t e;
    assert_int_equal(parse_json(body, &q, &e), -1);
    assert_int_equal(e.code, ICPNSD_E_LIMIT_EXCEEDED);
    assert_string_equal(e.field, "users");
    icpnsd_negreq_free(&q);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* An ICPQ frame of @count users 10, 11, ... */
static size_t make_frame(unsigned char *p, uint32_t n, uint32_t m, unsigned strategy,
                         uint16_t flags, uint64_t seed, uint32_t count)
{
    memset(p, 0, ICPNSD_FRAME_REQ_HEADER);
    memcpy(p, "ICPQ", 4);
    p[4] = 1;
    p[6] = (unsigned char)flags;
    put32(p + 8, n);
    put32(p + 12, m);
    p[16] = (unsigned char)strategy;
    put32(p + 20, count);
    put64(p + 24, seed);
    for (uint32_t k = 0; k < count; k++)
        put64(p + ICPNSD_FRAME_REQ_HEADER + 8 * k, 10 + k);
    return ICPNSD_FRAME_REQ_HEADER + 8 * (size_t)count;
}

static void test_frames(void **state)
{
    (void)state;
    unsigned char f[ICPNSD_FRAME_REQ_HEADER + 8 * 4];
    icpnsd_negreq_t q = {0};
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    size_t len = make_frame(f, 3, 2, 1, 3, 77, 4);
    assert_int_equal(icpnsd_frame_parse_negatives(&cfg, (char *)f, len, &q, &e), 0);
    assert_int_equal(q.rows, 4);
    assert_int_equal(q.users[3], 13);
    assert_int_equal(q.n, 3);
    assert_int_equal(q.m, 2);
    assert_int_equal(q.parts[0].strategy, ICPNS_STRATEGY_POPULARITY);
    assert_int_equal(q.seed, 77);
    assert_true(q.probs);
    assert_true(q.flags & ICPNS_SAMPLE_SUBSTITUTE_PNS);
    icpnsd_negreq_free(&q);
    static const struct {
        int what;
        icpnsd_code_t code;
        const char *field;
    } cases[] = {
        {0, ICPNSD_E_BAD_FRAME, ""},          /* bad magic */
        {1, ICPNSD_E_BAD_FRAME, "version"},
        {2, ICPNSD_E_BAD_FRAME, "flags"},
        {3, ICPNSD_E_BAD_STRATEGY, "strategy"},
        {4, ICPNSD_E_BAD_FRAME, "n"},
        {5, ICPNSD_E_LIMIT_EXCEEDED, "n"},
        {6, ICPNSD_E_BAD_FRAME, "users"},     /* length disagrees with count */
        {7, ICPNSD_E_BAD_USER_ID, "users"},
        {8, ICPNSD_E_BAD_FRAME, ""},          /* shorter than a header */
        {9, ICPNSD_E_BAD_FRAME, "reserved"},  /* byte 17 */
        {10, ICPNSD_E_BAD_FRAME, "reserved"}, /* bytes 32-39 */
        {11, ICPNSD_E_BAD_FRAME, "seed"},     /* above 2^63 - 1 */
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        len = make_frame(f, 3, 1, 2, 0, 1, 4);
        switch (cases[k].what) {
        case 0: f[0] = 'X'; break;
        case 1: f[4] = 2; break;
        case 2: f[6] = 4; break;
        case 3: f[16] = 3; break;
        case 4: put32(f + 8, 0); break;
        case 5: put32(f + 8, 51); break;
        case 6: len -= 8; break;
        case 7: put64(f + ICPNSD_FRAME_REQ_HEADER + 8, UINT64_MAX); break;
        case 8: len = 10; break;
        case 9: f[17] = 1; break;
        case 10: f[39] = 1; break;
        case 11: put64(f + 24, UINT64_MAX); break;
        }
        memset(&q, 0, sizeof(q));
        icpnsd_err_clear(&e);
        int rc = icpnsd_frame_parse_negatives(&cfg, (char *)f, len, &q, &e);
        icpnsd_negreq_free(&q);
        if (rc != -1 || e.code != cases[k].code || strcmp(e.field, cases[k].field)) {
            print_error("frame case %zu: rc %d code %s field '%s'\n", k, rc,
                        icpnsd_code_name(e.code), e.field);
            fail();
        }
    }
}

static void test_query_parameters(void **state)
{
    (void)state;
    icpnsd_negreq_t q = {0};
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    assert_int_equal(icpnsd_negreq_query(&q, "tables", "k8", &e), 0);
    assert_int_equal(icpnsd_negreq_query(&q, "alpha", "0.5", &e), 0);
    assert_true(q.has_alpha && q.alpha == 0.5);
    /* Given twice, the values must agree. */
    assert_int_equal(icpnsd_negreq_query(&q, "tables", "k8", &e), 0);
    assert_int_equal(icpnsd_negreq_query(&q, "tables", "k4", &e), -1);
    assert_int_equal(e.code, ICPNSD_E_CONFLICTING_PARAMETER);
    assert_int_equal(icpnsd_negreq_query(&q, "alpha", "0.6", &e), -1);
    assert_int_equal(e.code, ICPNSD_E_CONFLICTING_PARAMETER);
    assert_int_equal(icpnsd_negreq_query(&q, "beta", "x", &e), -1);
    assert_int_equal(e.code, ICPNSD_E_BAD_PARAMETER);
    assert_string_equal(e.field, "beta");
    assert_int_equal(icpnsd_negreq_query(&q, "tables", "a/b", &e), -1);
    assert_int_equal(e.code, ICPNSD_E_BAD_REQUEST);
    /* Decimal numbers only, and no parameter the route does not know. */
    static const char *not_decimal[] = {"0x10", "inf", "nan", " 1", "1 ", "+1", "1.", ".5",
                                        "1e", "01", "1e999", ""};
    for (size_t k = 0; k < sizeof(not_decimal) / sizeof(not_decimal[0]); k++) {
        icpnsd_negreq_t fresh = {0};
        assert_int_equal(icpnsd_negreq_query(&fresh, "epsilon", not_decimal[k], &e), -1);
        assert_int_equal(e.code, ICPNSD_E_BAD_PARAMETER);
    }
    icpnsd_negreq_t fresh = {0};
    assert_int_equal(icpnsd_negreq_query(&fresh, "epsilon", "-0.5e-3", &e), 0);
    assert_true(fresh.epsilon == -0.5e-3); /* the range is checked with the weights */
    assert_int_equal(icpnsd_negreq_query(&fresh, "n", "5", &e), -1);
    assert_int_equal(e.code, ICPNSD_E_UNKNOWN_PARAMETER);
    assert_string_equal(e.field, "n");
    /* Invisible bytes are shown escaped. */
    assert_int_equal(icpnsd_negreq_query(&fresh, "beta", "\xef\xbb\xbf" "1", &e), -1);
    assert_non_null(strstr(e.message, "'\\xef\\xbb\\xbf1'"));
}

static void test_cluster_options(void **state)
{
    (void)state;
    icpnsd_clusterreq_t q;
    icpnsd_clusterreq_init(&q);
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    assert_int_equal(icpnsd_clusterreq_opt(&q, "k", "4", &e), 0);
    assert_int_equal(icpnsd_clusterreq_opt(&q, "seed", "9", &e), 0);
    assert_int_equal(icpnsd_clusterreq_opt(&q, "restarts", "2", &e), 0);
    assert_int_equal(icpnsd_clusterreq_opt(&q, "tol", "0.001", &e), 0);
    assert_int_equal(q.ko.k, 4);
    assert_int_equal(q.ko.seed, 9);
    assert_int_equal(q.ko.restarts, 2);
    static const char *bad[][2] = {{"k", "0"},        {"k", "x"},    {"restarts", "101"},
                                   {"max_iter", "-1"}, {"tol", "2"}, {"k", "010"},
                                   {"seed", "9223372036854775808"}, {"tol", "0x1p-3"},
                                   {"replace", "yes"}};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        icpnsd_err_clear(&e);
        assert_int_equal(icpnsd_clusterreq_opt(&q, bad[k][0], bad[k][1], &e), -1);
        assert_int_equal(e.code, ICPNSD_E_BAD_PARAMETER);
        assert_string_equal(e.field, bad[k][0]);
    }
    assert_int_equal(icpnsd_clusterreq_opt(&q, "kk", "1", &e), -1);
    assert_int_equal(e.code, ICPNSD_E_UNKNOWN_PARAMETER);
    assert_int_equal(icpnsd_clusterreq_opt(&q, "replace", "true", &e), 0);
    assert_true(q.replace);
    assert_int_equal(icpnsd_clusterreq_opt(&q, "seed", "9223372036854775807", &e), 0);
    static const char body[] = "{\"users\":[4,5,6],\"embeddings\":[[0,1],[0,1.5],[9,9]],\"k\":2}";
    assert_int_equal(icpnsd_clusterreq_parse_json(body, sizeof(body) - 1, &q, &e), 0);
    assert_int_equal(q.emb.n, 3);
    assert_int_equal(q.emb.dim, 2);
    assert_int_equal(q.emb.ids[2], 6);
    assert_int_equal(icpnsd_clusterreq_check(&q, &e), 0);
    q.ko.k = 4;
    assert_int_equal(icpnsd_clusterreq_check(&q, &e), -1);
    assert_string_equal(e.field, "k");
    icpnsd_clusterreq_free(&q);
    icpnsd_clusterreq_init(&q);
    static const char ragged[] = "{\"users\":[4,5],\"embeddings\":[[0,1],[2]]}";
    assert_int_equal(icpnsd_clusterreq_parse_json(ragged, sizeof(ragged) - 1, &q, &e), -1);
    assert_int_equal(e.code, ICPNSD_E_BAD_EMBEDDINGS);
    assert_int_equal(e.row, 1);
    icpnsd_clusterreq_free(&q);
}

static void test_pairs_and_sets(void **state)
{
    (void)state;
    icpns_pair_t *p = NULL;
    size_t n = 0;
    bool replace = false;
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    char tables[64];
    static const char ok[] = "{\"communities\":[[1,2],[3,4],[1,2]],\"replace\":true,"
                             "\"tables\":\"k8\"}";
    assert_int_equal(icpnsd_parse_pairs(ok, sizeof(ok) - 1, "communities", "community", true, &p,
                                        &n, &replace, tables, sizeof(tables), &e), 0);
    assert_int_equal(n, 3);
    assert_true(replace);
    assert_string_equal(tables, "k8");
    assert_true(p[1].a == 3 && p[1].b == 4);
    free(p);
    static const struct {
        const char *body;
        bool communities;
        icpnsd_code_t code;
        const char *field;
        long long row;
    } bad[] = {
        {"{\"interactions\":[[1,2],[3]]}", false, ICPNSD_E_BAD_PAIR, "interactions", 1},
        {"{\"interactions\":[[1,2]],\"replace\":true}", false, ICPNSD_E_UNKNOWN_FIELD, "replace", -1},
        {"{\"interactions\":[[1,2]],\"table\":\"k8\"}", false, ICPNSD_E_UNKNOWN_FIELD, "table", -1},
        {"{\"interactions\":[[1,2]],\"tables\":\"a b\"}", false, ICPNSD_E_BAD_REQUEST, "tables", -1},
        {"[[1,2]]", false, ICPNSD_E_BAD_REQUEST, "", -1},
        {"{\"communities\":[[1,2],[5,1],[1,3]]}", true, ICPNSD_E_CONFLICTING_ASSIGNMENT,
         "communities", 2},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        icpnsd_err_clear(&e);
        int rc = icpnsd_parse_pairs(bad[k].body, strlen(bad[k].body),
                                    bad[k].communities ? "communities" : "interactions",
                                    "id", bad[k].communities, &p, &n, NULL, tables,
                                    sizeof(tables), &e);
        if (rc != -1 || e.code != bad[k].code || strcmp(e.field, bad[k].field) ||
            e.row != bad[k].row) {
            print_error("pairs case %zu: rc %d code %s field '%s' row %lld\n", k, rc,
                        icpnsd_code_name(e.code), e.field, e.row);
            fail();
        }
    }
}

/* POST /admin/sets: a directory, the data as JSON, the data as ICPT. */
static void test_tableset(void **state)
{
    (void)state;
    icpnsd_err_t e;
    icpnsd_tableset_t t;
    char dir[1024];
    memset(&t, 0, sizeof(t));
    static const char add[] = "{\"name\":\"k8\",\"tables\":\"/srv/k8\"}";
    assert_int_equal(icpnsd_sets_post_parse(add, sizeof(add) - 1, &t, dir, sizeof(dir), &e), 0);
    assert_string_equal(t.name, "k8");
    assert_string_equal(dir, "/srv/k8");
    static const char extra[] = "{\"name\":\"k8\",\"tables\":\"/x\",\"path\":1}";
    assert_int_equal(icpnsd_sets_post_parse(extra, sizeof(extra) - 1, &t, dir, sizeof(dir), &e),
                     -1);
    assert_int_equal(e.code, ICPNSD_E_UNKNOWN_FIELD);
    assert_string_equal(e.field, "path");

    memset(&t, 0, sizeof(t));
    static const char data[] = "{\"name\":\"up\",\"interactions\":[[1,10],[2,11],[1,12]],"
                               "\"communities\":[[1,0],[2,1]],\"items\":[13],\"alpha\":0.5}";
    assert_int_equal(icpnsd_sets_post_parse(data, sizeof(data) - 1, &t, dir, sizeof(dir), &e), 0);
    assert_string_equal(dir, "");
    assert_int_equal(t.n_inter, 3);
    assert_int_equal(t.inter[2].a, 1);
    assert_int_equal(t.inter[2].b, 12);
    assert_int_equal(t.n_comm, 2);
    assert_int_equal(t.n_items, 1);
    assert_true(t.has_alpha && t.alpha == 0.5 && !t.has_beta);
    assert_int_equal(icpnsd_tableset_check(&t, &e), 0);
    icpnsd_tableset_free(&t);

    /* The row of the first bad pair, the row of a second community. */
    memset(&t, 0, sizeof(t));
    static const char badpair[] = "{\"name\":\"up\",\"interactions\":[[1,10],[2,-1]],"
                                  "\"communities\":[]}";
    assert_int_equal(icpnsd_sets_post_parse(badpair, sizeof(badpair) - 1, &t, dir, sizeof(dir),
                                            &e), -1);
    assert_int_equal(e.code, ICPNSD_E_BAD_PAIR);
    assert_string_equal(e.field, "interactions");
    assert_int_equal(e.row, 1);
    icpnsd_tableset_free(&t);
    memset(&t, 0, sizeof(t));
    static const char twice[] = "{\"name\":\"up\",\"interactions\":[[1,10]],"
                                "\"communities\":[[1,0],[5,1],[1,0],[1,2]]}";
    assert_int_equal(icpnsd_sets_post_parse(twice, sizeof(twice) - 1, &t, dir, sizeof(dir), &e),
                     0);
    assert_int_equal(icpnsd_tableset_check(&t, &e), -1);
    assert_int_equal(e.code, ICPNSD_E_CONFLICTING_ASSIGNMENT);
    assert_int_equal(e.row, 3);
    icpnsd_tableset_free(&t);
    memset(&t, 0, sizeof(t));
    static const char badalpha[] = "{\"name\":\"up\",\"interactions\":[[1,10]],"
                                   "\"communities\":[[1,0]],\"alpha\":-1}";
    assert_int_equal(icpnsd_sets_post_parse(badalpha, sizeof(badalpha) - 1, &t, dir,
                                            sizeof(dir), &e), 0);
    assert_int_equal(icpnsd_tableset_check(&t, &e), -1);
    assert_int_equal(e.code, ICPNSD_E_BAD_PARAMETER);
    icpnsd_tableset_free(&t);

    /* ICPT: 40-byte header, 2 interactions, 1 community, 1 item. */
    unsigned char f[40 + 16 * 3 + 8];
    memset(f, 0, sizeof(f));
    memcpy(f, "ICPT", 4);
    f[4] = 1;
    f[16] = 2;
    f[24] = 1;
    f[32] = 1;
    int64_t body[7] = {7, 70, 8, 71, 7, 3, 99};
    memcpy(f + 40, body, sizeof(body));
    memset(&t, 0, sizeof(t));
    assert_int_equal(icpnsd_tableset_opt(&t, "name", "bin", &e), 0);
    assert_int_equal(icpnsd_frame_parse_tableset((const char *)f, sizeof(f), &t, &e), 0);
    assert_int_equal(t.n_inter, 2);
    assert_int_equal(t.inter[1].b, 71);
    assert_int_equal(t.comm[0].b, 3);
    assert_int_equal(t.items[0], 99);
    icpnsd_tableset_free(&t);
    /* Truncated, a reserved byte set, counts beyond the body. */
    memset(&t, 0, sizeof(t));
    assert_int_equal(icpnsd_frame_parse_tableset((const char *)f, sizeof(f) - 1, &t, &e), -1);
    assert_int_equal(e.code, ICPNSD_E_BAD_FRAME);
    f[9] = 1;
    assert_int_equal(icpnsd_frame_parse_tableset((const char *)f, sizeof(f), &t, &e), -1);
    assert_int_equal(e.code, ICPNSD_E_BAD_FRAME);
    f[9] = 0;
    f[23] = 0x80;
    assert_int_equal(icpnsd_frame_parse_tableset((const char *)f, sizeof(f), &t, &e), -1);
    assert_int_equal(e.code, ICPNSD_E_BAD_FRAME);
    icpnsd_tableset_free(&t);
    assert_int_equal(icpnsd_tableset_opt(&t, "nmae", "x", &e), -1);
    assert_int_equal(e.code, ICPNSD_E_UNKNOWN_PARAMETER);
    assert_int_equal(icpnsd_tableset_opt(&t, "alpha", "1e400", &e), -1);
}

static void test_path_ids(void **state)
{
    (void)state;
    int64_t v = -1;
    assert_true(icpnsd_parse_id("42", 2, &v) && v == 42);
    assert_true(icpnsd_parse_id("9223372036854775807", 19, &v) && v == INT64_MAX);
    assert_false(icpnsd_parse_id("9223372036854775808", 19, &v));
    assert_false(icpnsd_parse_id("", 0, &v));
    assert_false(icpnsd_parse_id("-1", 2, &v));
    assert_false(icpnsd_parse_id("1a", 2, &v));
    assert_false(icpnsd_parse_id("+1", 2, &v));
    assert_false(icpnsd_parse_id("01", 2, &v));
    assert_true(icpnsd_parse_id("0", 1, &v) && v == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_accepted),
        cmocka_unit_test(test_json_refused),
        cmocka_unit_test(test_json_user_limit),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_query_parameters),
        cmocka_unit_test(test_cluster_options),
        cmocka_unit_test(test_pairs_and_sets),
        cmocka_unit_test(test_tableset),
        cmocka_unit_test(test_path_ids),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
