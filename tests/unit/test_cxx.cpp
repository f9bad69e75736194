/*
 * test_cxx.cpp - the public headers from C++: icpns.h compiles as C++11
 * (-Wall -Wextra -Werror -pedantic, see tests/meson.build), its functions
 * link with C linkage, and the structs C++ sees have the library's sizes
 * (icpns_snapshot_t's reference count is atomic_uint in C, a plain unsigned
 * int of the same size in C++).  No cmocka: a C++ program that exits 1 on
 * the first failed check.
 */
#include <icpns.h>

#include <cstdio>
#include <cstring>

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            std::fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, \
                         #cond);                                            \
            return 1;                                                       \
        }                                                                   \
    } while (0)

int main()
{
    static const struct {
        const char *name;
        size_t size;
    } sizes[] = {
        {"error", sizeof(icpns_error_t)},
        {"params", sizeof(icpns_params_t)},
        {"part", sizeof(icpns_part_t)},
        {"request", sizeof(icpns_request_t)},
        {"pair", sizeof(icpns_pair_t)},
        {"load_report", sizeof(icpns_load_report_t)},
        {"snapshot_info", sizeof(icpns_snapshot_info_t)},
        {"user_info", sizeof(icpns_user_info_t)},
        {"community_info", sizeof(icpns_community_info_t)},
        {"item_rank", sizeof(icpns_item_rank_t)},
        {"sample_stats", sizeof(icpns_sample_stats_t)},
        {"snapshot", sizeof(icpns_snapshot_t)},
    };
    for (const auto &t : sizes) {
        if (icpns_abi_sizeof(t.name) != t.size)
            std::fprintf(stderr, "icpns_%s_t: %zu bytes in C, %zu in C++\n", t.name,
                         icpns_abi_sizeof(t.name), t.size);
        CHECK(icpns_abi_sizeof(t.name) == t.size);
    }
    CHECK(std::strcmp(icpns_version(), ICPNS_VERSION_STRING) == 0);

    /* Two users of one community, four items: a snapshot built and
     * reference-counted from C++. */
    icpns_dataset_t *d = icpns_dataset_new();
    CHECK(d != nullptr);
    for (int64_t i = 10; i < 14; i++)
        CHECK(icpns_dataset_add_interaction(d, 1 + (i & 1), i) == 0);
    CHECK(icpns_dataset_add_community(d, 1, 7) == 0);
    CHECK(icpns_dataset_add_community(d, 2, 7) == 0);
    icpns_params_t p;
    icpns_params_default(&p);
    icpns_snapshot_t *s = nullptr;
    icpns_error_t err;
    std::memset(&err, 0, sizeof(err));
    CHECK(icpns_snapshot_build(d, &p, &s, &err) == 0);
    CHECK(s != nullptr);
    icpns_snapshot_info_t info;
    icpns_snapshot_info(s, &info);
    CHECK(info.interactions == 4);
    CHECK(info.fingerprint == icpns_snapshot_fingerprint(s));
    CHECK(s->refs == 1);
    CHECK(icpns_snapshot_ref(s) == s);
    CHECK(s->refs == 2);
    CHECK(icpns_snapshot_unref(s) == nullptr);
    CHECK(s->refs == 1);
    icpns_snapshot_unref(s);
    icpns_dataset_free(d);

    icpns_rng_t a, b;
    icpns_rng_init(&a, 42, 1, 0);
    icpns_rng_init(&b, 42, 1, 0);
    for (int k = 0; k < 100; k++) {
        double x = icpns_rng_double(&a);
        CHECK(x >= 0.0 && x < 1.0);
        CHECK(x == icpns_rng_double(&b));
    }
    std::puts("icpns.h from C++: sizes match, snapshot built and counted");
    return 0;
}
