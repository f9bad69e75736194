/* test_config.c - the configuration file and flags (src/daemon/config.c). */
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "config.h"

static int parse(icpnsd_config_t *c, const char *text, char *err, size_t es)
{
    icpnsd_config_default(c);
    return icpnsd_config_parse(c, text, strlen(text), "t.conf", err, es);
}

static void test_defaults(void **state)
{
    (void)state;
    icpnsd_config_t c;
    icpnsd_config_default(&c);
    assert_string_equal(c.listen, "127.0.0.1:8470");
    assert_int_equal(c.threads, 2);
    assert_string_equal(c.default_strategy, "icpns");
    assert_int_equal(c.default_n, 4);
    assert_int_equal(c.connection_timeout, 30);
    assert_true(c.weights_wait);
    assert_int_equal(c.weights_cache_size, 8);
    assert_true(c.default_params.alpha == 0.8 && c.default_params.epsilon == 0 &&
                c.default_params.beta == 1);
    assert_int_equal(c.n_sets, 0);
}

static void test_every_kind_of_value(void **state)
{
    (void)state;
    icpnsd_config_t c;
    char err[512] = "";
    const char *text = "# a comment\n"
                       "listen = [::1]:9000   # trailing comment\n"
                       "threads = 8\n"
                       "watch = yes\n"
                       "weights_wait = false\n"
                       "tables = \"/srv/t\"\n"
                       "tables.k8 = /srv/k8\n"
                       "tables.k4 = /srv/k4\n"
                       "tables.k8 = /srv/k8b\n"
                       "default_strategy = uniform\n"
                       "default_alpha = 0.25\n"
                       "memory_budget = 123456789\n"
                       "log_level = debug\n"
                       "\r\n";
    assert_int_equal(parse(&c, text, err, sizeof(err)), 0);
    assert_string_equal(c.listen, "[::1]:9000");
    assert_int_equal(c.threads, 8);
    assert_true(c.watch);
    assert_false(c.weights_wait);
    assert_string_equal(c.tables, "/srv/t");
    assert_int_equal(c.n_sets, 2);
    assert_string_equal(c.sets[0].name, "k8");
    assert_string_equal(c.sets[0].dir, "/srv/k8b"); /* a repeated key wins */
    assert_string_equal(c.sets[1].name, "k4");
    assert_string_equal(c.default_strategy, "uniform");
    assert_true(c.default_params.alpha == 0.25);
    assert_int_equal(c.memory_budget, 123456789);
}

/* Each bad line is refused with file, line and key. */
static void test_errors_name_line_and_key(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"threads = 0\n", "t.conf:1: threads: expected an integer in [1, 256], got '0'"},
        {"\n\nthreads = 2x\n", "t.conf:3: threads:"},
        {"threads = -1\n", "t.conf:1: threads:"},
        {"threads = 0x10\n", "t.conf:1: threads:"},
        {"thread = 2\n", "t.conf:1: unknown key 'thread' (did you mean 'threads'?)"},
        {"thraeds = 2\n", "t.conf:1: unknown key 'thraeds' (did you mean 'threads'?)"},
        {"log_levle = info\n", "t.conf:1: unknown key 'log_levle' (did you mean 'log_level'?)"},
        {"statedir = /x\n", "t.conf:1: unknown key 'statedir' (did you mean 'state_dir'?)"},
        {"just words\n", "t.conf:1: expected 'key = value'"},
        {"watch = maybe\n", "t.conf:1: watch: expected true or false, got 'maybe'"},
        {"default_strategy = hard\n", "t.conf:1: default_strategy:"},
        {"log_level = loud\n", "t.conf:1: log_level:"},
        {"default_alpha = 65\n", "t.conf:1: default_alpha:"},
        {"default_epsilon = -1\n", "t.conf:1: default_epsilon:"},
        {"tables.default = /x\n", "t.conf:1: tables.default:"},
        {"tables.a/b = /x\n", "t.conf:1: tables.a/b:"},
        {"tables.k = \n", "t.conf:1: tables.k: expected a directory"},
        {"max_body_bytes = 10\n", "t.conf:1: max_body_bytes:"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        icpnsd_config_t c;
        char err[512] = "";
        assert_int_equal(parse(&c, cases[k].text, err, sizeof(err)), -1);
        if (strncmp(err, cases[k].want, strlen(cases[k].want))) {
            print_error("case %zu: got '%s', want '%s...'\n", k, err, cases[k].want);
            fail();
        }
    }
    /* Nothing near: no guess. */
    icpnsd_config_t c;
    char err[512] = "";
    assert_int_equal(parse(&c, "colour = blue\n", err, sizeof(err)), -1);
    assert_string_equal(err, "t.conf:1: unknown key 'colour'");
}

static void test_nul_and_long_lines(void **state)
{
    (void)state;
    icpnsd_config_t c;
    char err[512] = "";
    static const char nul[] = "threads = 2\nlisten\0 = x\n";
    icpnsd_config_default(&c);
    assert_int_equal(icpnsd_config_parse(&c, nul, sizeof(nul) - 1, "t.conf", err, sizeof(err)), -1);
    assert_string_equal(err, "t.conf:2: NUL byte in the line");
    char *lng = malloc(5000);
    memset(lng, 'a', 4999);
    lng[4999] = '\0';
    assert_int_equal(parse(&c, lng, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "t.conf:1: line longer than"));
    free(lng);
}

static void test_set_names(void **state)
{
    (void)state;
    assert_true(icpnsd_set_name_ok("ml100k-k8"));
    assert_true(icpnsd_set_name_ok("a.b_c-9"));
    assert_false(icpnsd_set_name_ok(""));
    assert_false(icpnsd_set_name_ok("a b"));
    assert_false(icpnsd_set_name_ok("../x"));
    char long_name[80];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_false(icpnsd_set_name_ok(long_name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_kind_of_value),
        cmocka_unit_test(test_errors_name_line_and_key),
        cmocka_unit_test(test_nul_and_long_lines),
        cmocka_unit_test(test_set_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
