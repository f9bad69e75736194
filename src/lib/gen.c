/* gen.c - the seeded synthetic dataset (see icpns/gen.h for the model). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "icpns/alias.h"
#include "icpns/gen.h"

/* The shortest decimal that reads back as @x exactly (0.8, not
 * 0.80000000000000004). */
static const char *shortest(double x, char buf[32])
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, 32, "%.*g", digits, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    return buf;
}

void icpns_gen_opts_default(icpns_gen_opts_t *o)
{
    o->users = 1000;
    o->items = 2000;
    o->communities = 8;
    o->interactions = 30000;
    o->seed = 2026;
    o->affinity = 0.8;
    o->user_base = 1;
    o->item_base = 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Zipf weights 1/(k+1)^s for k = 0..n-1. */
static double *zipf(uint32_t n, double s)
{
    double *w = malloc((size_t)n * sizeof(*w));
    if (w)
        for (uint32_t k = 0; k < n; k++)
            w[k] = pow((double)k + 1, -s);
    return w;
}

/* A seeded permutation of 0..n-1 (Fisher-Yates on a counter stream). */
static uint32_t *permutation(uint32_t n, uint64_t seed, uint64_t tag)
{
    uint32_t *p = malloc((size_t)n * sizeof(*p));
    if (!p)
        return NULL;
    for (uint32_t k = 0; k < n; k++)
        p[k] = k;
    icpns_rng_t r;
    icpns_rng_init(&r, seed, tag, 0);
    for (uint32_t k = n; k > 1; k--) {
        uint32_t j = (uint32_t)icpns_rng_below(&r, k);
        uint32_t t = p[k - 1];
        p[k - 1] = p[j];
        p[j] = t;
    }
    return p;
}

int icpns_gen(const icpns_gen_opts_t *o, icpns_dataset_t **ret, icpns_error_t *err)
{
    if (o->users == 0 || o->items == 0 || o->communities == 0 || o->interactions == 0)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, NULL,
                               "users, items, communities and interactions must be positive");
    if (o->communities > o->items)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "communities",
                               "more communities than items");
    if (o->interactions > (uint64_t)o->users * o->items)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "interactions",
                               "more interactions than user x item pairs");
    if (!(o->affinity >= 0 && o->affinity <= 1))
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "affinity", "affinity must be in [0, 1]");
    if (o->user_base < 0 || o->item_base < 0 ||
        o->user_base > INT64_MAX - o->users || o->item_base > INT64_MAX - o->items)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, NULL, "id bases out of range");

    uint32_t U = o->users, I = o->items, K = o->communities;
    uint32_t block = I / K;
    int rc = ICPNS_ENOMEM;
    icpns_dataset_t *d = icpns_dataset_new();
    double *wu = zipf(U, 0.6), *wg = zipf(I, 0.9), *wb = zipf(block, 1.0);
    uint32_t *pu = permutation(U, o->seed, 1), *pg = permutation(I, o->seed, 2);
    uint32_t *pi = permutation(I, o->seed, 3);
    uint32_t *ucomm = malloc((size_t)U * sizeof(*ucomm));
    uint64_t *keys = malloc(o->interactions * sizeof(*keys));
    icpns_alias_t au = {0}, ag = {0}, ab = {0};
    if (!d || !wu || !wg || !wb || !pu || !pg || !pi || !ucomm || !keys)
        goto out;
    if (icpns_alias_build(&au, wu, U, NULL) || icpns_alias_build(&ag, wg, I, NULL) ||
        icpns_alias_build(&ab, wb, block, NULL))
        goto out;

    icpns_rng_t r;
    icpns_rng_init(&r, o->seed, 4, 0);
    for (uint32_t u = 0; u < U; u++)
        ucomm[u] = (uint32_t)icpns_rng_below(&r, K);
    /* Community c's home block is pi[c*block .. (c+1)*block). */
    for (uint64_t k = 0; k < o->interactions; k++) {
        icpns_rng_init(&r, o->seed, 5, k);
        uint32_t u = pu[icpns_alias_draw(&au, &r)];
        uint32_t i;
        if (icpns_rng_double(&r) < o->affinity)
            i = pi[(size_t)ucomm[u] * block + icpns_alias_draw(&ab, &r)];
        else
            i = pg[icpns_alias_draw(&ag, &r)];
        keys[k] = (uint64_t)u << 32 | i;
    }
    qsort(keys, o->interactions, sizeof(*keys), cmp_u64);
    for (uint64_t k = 0; k < o->interactions; k++) {
        if (k > 0 && keys[k] == keys[k - 1])
            continue;
        if (icpns_dataset_add_interaction(d, o->user_base + (int64_t)(keys[k] >> 32),
                                          o->item_base + (int64_t)(keys[k] & 0xffffffffu)))
            goto out;
    }
    for (uint32_t u = 0; u < U; u++)
        if (icpns_dataset_add_community(d, o->user_base + u, ucomm[u]))
            goto out;
    *ret = d;
    d = NULL;
    rc = 0;
out:
    if (rc)
        icpns_error_set(err, rc, NULL, 0, NULL, "out of memory generating the dataset");
    icpns_alias_free(&au);
    icpns_alias_free(&ag);
    icpns_alias_free(&ab);
    free(wu);
    free(wg);
    free(wb);
    free(pu);
    free(pg);
    free(pi);
    free(ucomm);
    free(keys);
    icpns_dataset_free(d);
    return rc;
}

/* A growable text buffer for the writers. */
typedef struct tbuf {
    char *p;
    size_t len, cap;
    bool oom;
} tbuf_t;

static void tb_printf(tbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));


static void tb_printf(tbuf_t *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t c = b->cap ? b->cap * 2 : 1 << 16;
        while (c < b->len + (size_t)n + 1)
            c *= 2;
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = c;
    }
}

int icpns_gen_write_dir(const icpns_dataset_t *d, const icpns_params_t *p,
                        const char *dir, icpns_error_t *err)
{
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return icpns_error_set(err, ICPNS_EIO, dir, 0, NULL, "cannot create directory: %s",
                               strerror(errno));
    char path[1024];
    tbuf_t b = {0};
    int rc = 0;

    tb_printf(&b, "# user\titem (synthetic, icpns gen)\n");
    for (size_t k = 0; k < d->n_inter; k++)
        tb_printf(&b, "%lld\t%lld\n", (long long)d->inter[k].a, (long long)d->inter[k].b);
    snprintf(path, sizeof(path), "%s/interactions.tsv", dir);
    if (b.oom || (rc = icpns_file_write_atomic(path, b.p, b.len, err)))
        goto out;

    b.len = 0;
    tb_printf(&b, "# user\tcommunity (planted)\n");
    for (size_t k = 0; k < d->n_comm; k++)
        tb_printf(&b, "%lld\t%lld\n", (long long)d->comm[k].a, (long long)d->comm[k].b);
    snprintf(path, sizeof(path), "%s/communities.tsv", dir);
    if (b.oom || (rc = icpns_file_write_atomic(path, b.p, b.len, err)))
        goto out;

    b.len = 0;
    char alpha[32], epsilon[32], beta[32];
    tb_printf(&b, "{\n  \"alpha\": %s,\n  \"epsilon\": %s,\n  \"beta\": %s,\n"
                  "  \"format\": \"pairs\"\n}\n",
              shortest(p->alpha, alpha), shortest(p->epsilon, epsilon), shortest(p->beta, beta));
    snprintf(path, sizeof(path), "%s/tables.json", dir);
    if (b.oom || (rc = icpns_file_write_atomic(path, b.p, b.len, err)))
        goto out;
out:
    if (b.oom)
        rc = icpns_error_set(err, ICPNS_ENOMEM, dir, 0, NULL, "out of memory");
    free(b.p);
    return rc;
}
