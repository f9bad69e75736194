/* test_routes.c - the route table (src/daemon/routes.c) and the status of
 * every error code (src/daemon/reply.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "api.h"
#include "reply.h"
#include "routes.h"

enum {
    A = ICPNSD_ROUTE_ADMIN,
    S = ICPNSD_ROUTE_SET,
    U = ICPNSD_ROUTE_UPLOAD,
    V = ICPNSD_ROUTE_API,
    M = ICPNSD_ROUTE_METRICS,
};

/* Every endpoint of proto/openapi.yaml: method, a concrete path, the
 * handler, the flags, the metric label, the parameter. */
static const struct {
    const char *method, *path;
    icpnsd_handler_fn handler;
    unsigned flags;
    const char *metric, *param;
} expected[] = {
    {"POST", "/v1/negatives", icpnsd_api_negatives, V, "negatives", ""},
    {"GET", "/v1/users/42", icpnsd_api_user, V | S, "user", "42"},
    {"GET", "/v1/communities", icpnsd_api_communities, V | S, "communities", ""},
    {"GET", "/v1/communities/3/items", icpnsd_api_community_items, V | S, "community_items", "3"},
    {"GET", "/v1/items", icpnsd_api_items, V | S, "items", ""},
    {"GET", "/v1/tables", icpnsd_api_tables, V, "tables", ""},
    {"GET", "/healthz", icpnsd_api_healthz, 0, "healthz", ""},
    {"GET", "/readyz", icpnsd_api_readyz, 0, "readyz", ""},
    {"GET", "/metrics", icpnsd_api_metrics, M, "metrics", ""},
    {"POST", "/admin/reload", icpnsd_api_reload, A | S, "admin_reload", ""},
    {"POST", "/admin/interactions", icpnsd_api_interactions, A, "admin_interactions", ""},
    {"PUT", "/admin/communities", icpnsd_api_communities_update, A, "admin_communities", ""},
    {"GET", "/admin/snapshot", icpnsd_api_snapshot, A | S, "admin_snapshot", ""},
    {"POST", "/admin/cluster", icpnsd_api_cluster, A | U, "admin_cluster", ""},
    {"GET", "/admin/jobs", icpnsd_api_jobs, A, "admin_jobs", ""},
    {"GET", "/admin/jobs/0123abcd", icpnsd_api_job, A, "admin_job", "0123abcd"},
    {"DELETE", "/admin/jobs/0123abcd", icpnsd_api_job_cancel, A, "admin_job", "0123abcd"},
    {"GET", "/admin/sets", icpnsd_api_sets_list, A, "admin_sets", ""},
    {"POST", "/admin/sets", icpnsd_api_sets_add, A | U, "admin_sets", ""},
    {"DELETE", "/admin/sets/k8", icpnsd_api_sets_remove, A, "admin_set", "k8"},
};

static const icpnsd_route_t *match(const char *method, const char *path, char *param,
                                   char *allow, const icpnsd_route_t **by_path)
{
    return icpnsd_route_match(method, path, param, 256, allow, 64, by_path);
}

static void test_every_route(void **state)
{
    (void)state;
    size_t n = sizeof(expected) / sizeof(expected[0]);
    /* The table has exactly these rows. */
    assert_int_equal(icpnsd_n_routes, n);
    for (size_t k = 0; k < n; k++) {
        char param[256], allow[64];
        const icpnsd_route_t *by_path;
        const icpnsd_route_t *rt = match(expected[k].method, expected[k].path, param, allow,
                                         &by_path);
        if (!rt || rt->handler != expected[k].handler || rt->flags != expected[k].flags ||
            strcmp(rt->metric, expected[k].metric) || strcmp(param, expected[k].param)) {
            print_error("%s %s: wrong route\n", expected[k].method, expected[k].path);
            fail();
        }
        assert_non_null(by_path);
        assert_non_null(strstr(allow, expected[k].method));
        /* Every route about a set takes ?tables=: the ones that resolve it
         * before the handler and the ones whose body may name it. */
        bool about_set = rt->flags & S || strstr(rt->path, "/admin/interactions") ||
                         strstr(rt->path, "/admin/communities") ||
                         strstr(rt->path, "/admin/cluster") || !strcmp(rt->path, "/v1/negatives");
        assert_int_equal(about_set, strstr(rt->params, "tables") != NULL);
        /* Every /v1 route, and only they, take an API token; every
         * /admin route, and only they, the admin token. */
        assert_int_equal(!strncmp(rt->path, "/v1/", 4), (rt->flags & V) != 0);
        assert_int_equal(!strncmp(rt->path, "/admin/", 7), (rt->flags & A) != 0);
        /* GET routes answer HEAD too; no route answers another method. */
        if (!strcmp(expected[k].method, "GET"))
            assert_ptr_equal(match("HEAD", expected[k].path, param, allow, &by_path), rt);
        assert_null(match("PATCH", expected[k].path, param, allow, &by_path));
        assert_non_null(by_path);
    }
}

static void test_methods_and_unknown_paths(void **state)
{
    (void)state;
    char param[256], allow[64];
    const icpnsd_route_t *by_path;
    assert_null(match("GET", "/v1/negatives", param, allow, &by_path));
    assert_string_equal(allow, "POST");
    assert_non_null(by_path);
    assert_string_equal(by_path->metric, "negatives");
    assert_null(match("DELETE", "/admin/sets", param, allow, &by_path));
    assert_string_equal(allow, "GET, POST");
    assert_null(match("PUT", "/v1/users/1", param, allow, &by_path));
    assert_string_equal(allow, "GET");
    static const char *unknown[] = {"/", "/v1", "/v1/negative", "/v1/negatives/", "/healthz/x",
                                    "/v1/communities/3", "/v1/communities/3/items/x",
                                    "/admin", "/admin/reload2", "/V1/tables"};
    for (size_t k = 0; k < sizeof(unknown) / sizeof(unknown[0]); k++) {
        assert_null(match("GET", unknown[k], param, allow, &by_path));
        assert_null(by_path);
        assert_string_equal(allow, "");
    }
    /* A trailing parameter takes the rest of the path (the handler then
     * refuses what is not an id or a name). */
    assert_non_null(match("GET", "/v1/users/1/2", param, allow, &by_path));
    assert_string_equal(param, "1/2");
    assert_non_null(match("GET", "/v1/users/", param, allow, &by_path));
    assert_string_equal(param, "");
    /* A long parameter is cut, never overflows. */
    char path[600] = "/admin/sets/";
    memset(path + 12, 'x', 500);
    path[512] = '\0';
    assert_non_null(match("DELETE", path, param, allow, &by_path));
    assert_int_equal(strlen(param), 255);
}

static void test_body_limits(void **state)
{
    (void)state;
    icpnsd_config_t cfg;
    icpnsd_config_default(&cfg);
    cfg.max_body_bytes = 1000;
    cfg.max_upload_bytes = 5000;
    for (size_t k = 0; k < icpnsd_n_routes; k++)
        assert_int_equal(icpnsd_route_body_limit(&icpnsd_routes[k], &cfg),
                         icpnsd_routes[k].flags & U ? 5000 : 1000);
    assert_int_equal(icpnsd_route_body_limit(NULL, &cfg), 1000);
}

/* Every code has a status of its class; the wire names are documented. */
static void test_error_statuses(void **state)
{
    (void)state;
    assert_int_equal(icpnsd_code_status(ICPNSD_E_OK), 200);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_BAD_JSON), 400);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_UNAUTHORIZED), 401);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_FORBIDDEN), 403);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_NO_SUCH_USER), 404);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_UNKNOWN_USER), 422);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_METHOD_NOT_ALLOWED), 405);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_TABLES_DIR_IN_USE), 409);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_BODY_TOO_LARGE), 413);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_UNSUPPORTED_MEDIA_TYPE), 415);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_BUILD_INVALID), 422);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_TABLES_INVALID), 500);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_OUT_OF_MEMORY), 503);
    assert_int_equal(icpnsd_code_status(ICPNSD_E_MEMORY_BUDGET_EXCEEDED), 507);
    FILE *f = fopen(PROTO_ERRORS, "r");
    assert_non_null(f);
    static char doc[65536];
    size_t len = fread(doc, 1, sizeof(doc) - 1, f);
    fclose(f);
    doc[len] = '\0';
    for (int c = 1; c < ICPNSD_E_COUNT; c++) {
        unsigned st = icpnsd_code_status((icpnsd_code_t)c);
        assert_true(st >= 400 && st <= 599);
        char name[80];
        snprintf(name, sizeof(name), "`%s`", icpnsd_code_name((icpnsd_code_t)c));
        if (!strstr(doc, name)) {
            print_error("code %s is not documented in proto/errors.md\n", name);
            fail();
        }
        /* A wire name shared by two codes is one meaning with two statuses
         * (documented as such); codes never share a name within a status. */
        for (int d = 1; d < c; d++)
            if (!strcmp(icpnsd_code_name((icpnsd_code_t)c), icpnsd_code_name((icpnsd_code_t)d)))
                assert_int_not_equal(st, icpnsd_code_status((icpnsd_code_t)d));
    }
    assert_string_equal(icpnsd_code_name(ICPNSD_E_COUNT), "internal_error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route),
        cmocka_unit_test(test_methods_and_unknown_paths),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_error_statuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
