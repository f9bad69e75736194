/* test_gen.c - the synthetic generator: seeded, planted, power-law. */
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

static void test_deterministic_and_planted(void **state)
{
    (void)state;
    icpns_gen_opts_t g;
    icpns_gen_opts_default(&g);
    icpns_dataset_t *a, *b, *c;
    icpns_error_t err;
    assert_int_equal(icpns_gen(&g, &a, &err), 0);
    assert_int_equal(icpns_gen(&g, &b, &err), 0);
    assert_int_equal(a->n_inter, b->n_inter);
    assert_memory_equal(a->inter, b->inter, a->n_inter * sizeof(*a->inter));
    assert_memory_equal(a->comm, b->comm, a->n_comm * sizeof(*a->comm));
    g.seed++;
    assert_int_equal(icpns_gen(&g, &c, &err), 0);
    assert_true(c->n_inter != a->n_inter ||
                memcmp(c->inter, a->inter, a->n_inter * sizeof(*a->inter)) != 0);
    assert_int_equal(a->n_comm, g.users);
    assert_true(a->n_inter > g.interactions / 2 && a->n_inter <= g.interactions);

    /* Planted: a community's top-20 items hold far more of its own mass
     * than of the other communities'. */
    icpns_params_t par;
    icpns_params_default(&par);
    icpns_snapshot_t *s;
    assert_int_equal(icpns_snapshot_build(a, &par, &s, &err), 0);
    assert_int_equal(s->comms.n, g.communities);
    /* Power law: the most popular item has many times the median's users. */
    uint32_t mx = 0;
    for (uint32_t i = 0; i < s->items.n; i++)
        if (s->item_pop[i] > mx)
            mx = s->item_pop[i];
    uint32_t *sorted = malloc(s->items.n * sizeof(*sorted));
    memcpy(sorted, s->item_pop, s->items.n * sizeof(*sorted));
    for (uint32_t i = 1; i < s->items.n; i++)
        for (uint32_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            uint32_t t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    assert_true(mx > 10 * (sorted[s->items.n / 2] + 1));
    free(sorted);
    /* In-community share: of community 0's pop_c mass, the items of its
     * heaviest entries are mostly rare elsewhere.  Compare top item of
     * community 0 in community 0 versus its count in community 1. */
    uint32_t best = 0, bestc = 0;
    for (uint64_t k = s->sup_off[0]; k < s->sup_off[1]; k++)
        if (s->sup_count[k] > bestc) {
            bestc = s->sup_count[k];
            best = s->sup_item[k];
        }
    uint32_t other = 0;
    for (uint64_t k = s->sup_off[1]; k < s->sup_off[2]; k++)
        if (s->sup_item[k] == best)
            other = s->sup_count[k];
    assert_true(bestc > 3 * (other + 1));
    icpns_snapshot_unref(s);

    /* Writing and reading back gives the same content. */
    char *dir = tmpdir_new();
    assert_int_equal(icpns_gen_write_dir(a, &par, dir, &err), 0);
    icpns_table_opts_t o;
    icpns_table_opts_default(&o);
    icpns_dataset_t *r;
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &r, &err), 0);
    assert_int_equal(r->n_inter, a->n_inter);
    assert_memory_equal(r->inter, a->inter, a->n_inter * sizeof(*a->inter));
    assert_true(o.params.alpha == par.alpha);
    icpns_dataset_free(r);
    tmpdir_remove(dir);
    free(dir);
    icpns_dataset_free(a);
    icpns_dataset_free(b);
    icpns_dataset_free(c);
}

static void test_bad_options(void **state)
{
    (void)state;
    icpns_gen_opts_t g;
    icpns_gen_opts_default(&g);
    icpns_dataset_t *d = NULL;
    icpns_error_t err;
    g.communities = g.items + 1;
    assert_int_equal(icpns_gen(&g, &d, &err), ICPNS_EINVAL);
    icpns_gen_opts_default(&g);
    g.users = 0;
    assert_int_equal(icpns_gen(&g, &d, &err), ICPNS_EINVAL);
    icpns_gen_opts_default(&g);
    g.interactions = (uint64_t)g.users * g.items + 1;
    assert_int_equal(icpns_gen(&g, &d, &err), ICPNS_EINVAL);
    assert_null(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_and_planted),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
