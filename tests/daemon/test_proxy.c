/*
 * test_proxy.c - trusted proxies: parsing the setting, address ranges,
 * and the client an X-Forwarded-For names (only when a trusted proxy sent
 * it; the rightmost untrusted hop, so a client cannot pick its own).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include "testutil.h"
#include "proxy.h"

static struct sockaddr_in v4(const char *a)
{
    struct sockaddr_in s = {.sin_family = AF_INET};
    inet_pton(AF_INET, a, &s.sin_addr);
    return s;
}

static void test_parse(void **state)
{
    (void)state;
    icpnsd_proxies_t p;
    char err[256];
    assert_int_equal(icpnsd_proxies_parse("", &p, err, sizeof(err)), 0);
    assert_int_equal(p.n, 0);
    assert_int_equal(icpnsd_proxies_parse("127.0.0.1, 10.0.0.0/8 ::1 fd00::/8", &p, err,
                                          sizeof(err)), 0);
    assert_int_equal(p.n, 4);
    assert_int_equal(p.v[1].bits, 8);
    assert_int_equal(p.v[3].len, 16);
    static const char *bad[] = {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/8x", "nginx", "1.2.3",
                                "::1/129", "10.0.0.0/-1"};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        err[0] = '\0';
        assert_int_equal(icpnsd_proxies_parse(bad[k], &p, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "trusted_proxies"));
    }
    /* The entry is named in the error. */
    icpnsd_proxies_parse("127.0.0.1, 10.1.2.3/99", &p, err, sizeof(err));
    assert_non_null(strstr(err, "'10.1.2.3/99'"));
}

static void test_ranges(void **state)
{
    (void)state;
    icpnsd_proxies_t p;
    char err[256];
    assert_int_equal(icpnsd_proxies_parse("10.0.0.0/8, 192.168.1.0/25, ::1", &p, err,
                                          sizeof(err)), 0);
    unsigned char a[16];
    inet_pton(AF_INET, "10.200.3.4", a);
    assert_true(icpnsd_proxies_trust(&p, a, 4));
    inet_pton(AF_INET, "11.0.0.1", a);
    assert_false(icpnsd_proxies_trust(&p, a, 4));
    inet_pton(AF_INET, "192.168.1.127", a);
    assert_true(icpnsd_proxies_trust(&p, a, 4));
    inet_pton(AF_INET, "192.168.1.128", a);
    assert_false(icpnsd_proxies_trust(&p, a, 4));
    inet_pton(AF_INET6, "::1", a);
    assert_true(icpnsd_proxies_trust(&p, a, 16));
    inet_pton(AF_INET6, "::2", a);
    assert_false(icpnsd_proxies_trust(&p, a, 16));
}

static void test_client(void **state)
{
    (void)state;
    icpnsd_proxies_t p;
    char err[256], out[64];
    assert_int_equal(icpnsd_proxies_parse("127.0.0.1, 10.0.0.0/8", &p, err, sizeof(err)), 0);
    struct sockaddr_in proxy = v4("127.0.0.1"), other = v4("192.0.2.7");
    /* A trusted proxy: the rightmost hop that is not one of ours. */
    assert_true(icpnsd_proxies_client(&p, (struct sockaddr *)&proxy, "198.51.100.9", out,
                                      sizeof(out)));
    assert_string_equal(out, "198.51.100.9");
    assert_true(icpnsd_proxies_client(&p, (struct sockaddr *)&proxy,
                                      "6.6.6.6, 198.51.100.9 , 10.1.1.1", out, sizeof(out)));
    assert_string_equal(out, "198.51.100.9");
    /* All hops ours: the leftmost. */
    assert_true(icpnsd_proxies_client(&p, (struct sockaddr *)&proxy, "10.0.0.2,10.0.0.1", out,
                                      sizeof(out)));
    assert_string_equal(out, "10.0.0.2");
    /* No header: the proxy itself. */
    assert_true(icpnsd_proxies_client(&p, (struct sockaddr *)&proxy, NULL, out, sizeof(out)));
    assert_string_equal(out, "127.0.0.1");
    /* An untrusted peer's header is ignored: a client cannot pick its address. */
    assert_true(icpnsd_proxies_client(&p, (struct sockaddr *)&other, "127.0.0.5", out,
                                      sizeof(out)));
    assert_string_equal(out, "192.0.2.7");
    /* A header that does not parse: false, and the peer's address. */
    assert_false(icpnsd_proxies_client(&p, (struct sockaddr *)&proxy, "198.51.100.9, unknown",
                                       out, sizeof(out)));
    assert_string_equal(out, "127.0.0.1");
    assert_false(icpnsd_proxies_client(&p, (struct sockaddr *)&proxy, "", out, sizeof(out)));
    /* IPv4-mapped IPv6 peers count as IPv4. */
    struct sockaddr_in6 m = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &m.sin6_addr);
    assert_true(icpnsd_proxies_client(&p, (struct sockaddr *)&m, "203.0.113.1", out,
                                      sizeof(out)));
    assert_string_equal(out, "203.0.113.1");
    /* Without trusted proxies, always the peer. */
    icpnsd_proxies_t none = {.n = 0};
    assert_true(icpnsd_proxies_client(&none, (struct sockaddr *)&proxy, "203.0.113.1", out,
                                      sizeof(out)));
    assert_string_equal(out, "127.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
