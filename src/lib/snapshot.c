/*
 * snapshot.c - indexing a dataset into an immutable snapshot, and the
 * weights (alias tables) of one parameter setting.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "icpns/snapshot.h"

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Sorts a short run of uint32 ascending; insertion sort below 32. */
static void sort_u32(uint32_t *v, size_t n)
{
    if (n > 32) {
        qsort(v, n, sizeof(*v), cmp_u32);
        return;
    }
    for (size_t k = 1; k < n; k++) {
        uint32_t x = v[k];
        size_t j = k;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

uint32_t icpns_wtable_find(const icpns_wtable_t *t, uint32_t item)
{
    if (!t->items)
        return item < t->m ? item : ICPNS_NONE;
    uint32_t lo = 0, hi = t->m;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->items[mid] < item)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->m && t->items[lo] == item ? lo : ICPNS_NONE;
}

/* ---- weights -------------------------------------------------------------- */

icpns_weights_t *icpns_weights_free(icpns_weights_t *w)
{
    if (w) {
        free(w->comm);
        free(w->pos_mass_comm);
        free(w->pos_hits_comm);
        free(w->pos_mass_pop);
        free(w->arena_w);
        free(w->arena_cdf);
        free(w->arena_alias);
        free(w);
    }
    return NULL;
}

/* x^e for integer counts, with 0^e = 0 for every e (an item nobody in the
 * community touched has no popularity mass, even when e = 0). */
static double count_pow(uint32_t k, double e)
{
    return k == 0 ? 0.0 : e == 1.0 ? (double)k : e == 0.0 ? 1.0 : pow((double)k, e);
}

/* Counts are tabulated up to POW_TABLE_MAX (pow() is the expensive part of a
 * build); a popularity file may carry counts up to 2^32-2, which are computed
 * directly rather than sizing the table by the largest count. */
enum { POW_TABLE_MAX = 1 << 16 };

typedef struct {
    double *t;
    uint32_t n;
    double e;
} pow_cache_t;

static int pow_cache_init(pow_cache_t *pc, uint32_t max, double e)
{
    pc->n = (max < POW_TABLE_MAX ? max : POW_TABLE_MAX) + 1;
    pc->e = e;
    pc->t = malloc((size_t)pc->n * sizeof(*pc->t));
    if (!pc->t)
        return -1;
    for (uint32_t k = 0; k < pc->n; k++)
        pc->t[k] = count_pow(k, e);
    return 0;
}

static inline double pow_cache_get(const pow_cache_t *pc, uint32_t k)
{
    return k < pc->n ? pc->t[k] : count_pow(k, pc->e);
}

/* Fills cdf[0..m] with prefix sums of w (Kahan-compensated). */
static void prefix_sums(const double *w, uint32_t m, double *cdf)
{
    double sum = 0, comp = 0;
    cdf[0] = 0;
    for (uint32_t k = 0; k < m; k++) {
        double y = w[k] - comp, t = sum + y;
        comp = (t - sum) - y;
        sum = t;
        cdf[k + 1] = sum;
    }
}

int icpns_weights_build(const icpns_snapshot_t *s, const icpns_params_t *p,
                        icpns_weights_t **ret, icpns_error_t *err)
{
    int rc = icpns_params_check(p, err);
    if (rc)
        return rc;
    double t0 = icpns_now();
    uint32_t nc = s->comms.n, ni = s->items.n, nu = s->users.n;
    size_t nsup = (size_t)s->sup_off[nc];
    pow_cache_t powa = {0}, powb = {0};
    icpns_weights_t *w = calloc(1, sizeof(*w));
    if (!w)
        goto oom;
    w->params = *p;
    w->n_comms = nc;
    w->comm = calloc(nc ? nc : 1, sizeof(*w->comm));
    w->arena_w = malloc((nsup + ni) * sizeof(double));
    w->arena_cdf = malloc((nsup + nc + ni + 1) * sizeof(double));
    w->arena_alias = malloc((nsup + ni) * sizeof(icpns_alias_entry_t));
    w->pos_mass_comm = malloc((nu ? nu : 1) * sizeof(double));
    w->pos_hits_comm = malloc((nu ? nu : 1) * sizeof(uint32_t));
    w->pos_mass_pop = malloc((nu ? nu : 1) * sizeof(double));
    if (!w->comm || !w->arena_w || !w->arena_cdf || !w->arena_alias ||
        !w->pos_mass_comm || !w->pos_hits_comm || !w->pos_mass_pop ||
        pow_cache_init(&powa, s->max_count, p->alpha) ||
        pow_cache_init(&powb, s->max_count, p->beta))
        goto oom;

    double *aw = w->arena_w, *acdf = w->arena_cdf;
    icpns_alias_entry_t *aal = w->arena_alias;
    for (uint32_t c = 0; c < nc; c++) {
        size_t off = (size_t)s->sup_off[c];
        uint32_t m = (uint32_t)(s->sup_off[c + 1] - off);
        icpns_wtable_t *t = &w->comm[c];
        double *cw = aw + off, *ccdf = acdf + off + c;
        for (uint32_t k = 0; k < m; k++)
            cw[k] = pow_cache_get(&powa, s->sup_count[off + k]);
        prefix_sums(cw, m, ccdf);
        t->m = m;
        t->items = s->sup_item + off;
        t->w = cw;
        t->cdf = ccdf;
        if (m > 0 && (rc = icpns_alias_build(&t->alias, cw, m, aal + off)))
            goto fail;
    }
    {
        icpns_wtable_t *g = &w->global;
        double *gw = aw + nsup, *gcdf = acdf + nsup + nc;
        for (uint32_t i = 0; i < ni; i++)
            gw[i] = pow_cache_get(&powb, s->item_pop[i]);
        prefix_sums(gw, ni, gcdf);
        g->m = ni;
        g->items = NULL;
        g->w = gw;
        g->cdf = gcdf;
        if ((rc = icpns_alias_build(&g->alias, gw, ni, aal + nsup)))
            goto fail;
    }
    for (uint32_t u = 0; u < nu; u++) {
        const uint32_t *pos = s->pos + s->pos_off[u];
        uint32_t d = icpns_snapshot_degree(s, u);
        double mp = 0, mc = 0;
        uint32_t hits = 0;
        for (uint32_t k = 0; k < d; k++)
            mp += w->global.w[pos[k]];
        uint32_t c = s->user_comm[u];
        if (c != ICPNS_NONE) {
            const icpns_wtable_t *t = &w->comm[c];
            for (uint32_t k = 0; k < d; k++) {
                uint32_t j = icpns_wtable_find(t, pos[k]);
                if (j != ICPNS_NONE) {
                    mc += t->w[j];
                    hits++;
                }
            }
        }
        w->pos_mass_comm[u] = mc;
        w->pos_hits_comm[u] = hits;
        w->pos_mass_pop[u] = mp;
    }
    free(powa.t);
    free(powb.t);
    w->bytes = sizeof(*w) + (size_t)nc * sizeof(*w->comm) + (nsup + ni) * sizeof(double) +
               (nsup + nc + ni + 1) * sizeof(double) +
               (nsup + ni) * sizeof(icpns_alias_entry_t) +
               (size_t)nu * (2 * sizeof(double) + sizeof(uint32_t));
    w->build_seconds = icpns_now() - t0;
    *ret = w;
    return 0;
oom:
    rc = icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory building weights");
fail:
    if (rc == ICPNS_EINVAL)
        rc = icpns_error_set(err, ICPNS_EINVAL, NULL, 0, NULL, "invalid weights");
    free(powa.t);
    free(powb.t);
    icpns_weights_free(w);
    return rc;
}

/* ---- snapshot ------------------------------------------------------------- */

static void snapshot_free(icpns_snapshot_t *s)
{
    icpns_idmap_free(&s->users);
    icpns_idmap_free(&s->items);
    icpns_idmap_free(&s->comms);
    free(s->pos_off);
    free(s->pos);
    free(s->user_comm);
    free(s->comm_size);
    free(s->sup_off);
    free(s->sup_item);
    free(s->sup_count);
    free(s->item_pop);
    icpns_weights_free(s->weights);
    free(s);
}

icpns_snapshot_t *icpns_snapshot_ref(icpns_snapshot_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

icpns_snapshot_t *icpns_snapshot_unref(icpns_snapshot_t *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snapshot_free(s);
    return NULL;
}

typedef struct popent {
    uint32_t c, i, count;
    uint64_t line;
} popent_t;

static int cmp_popent(const void *a, const void *b)
{
    const popent_t *x = a, *y = b;
    if (x->c != y->c)
        return x->c < y->c ? -1 : 1;
    if (x->i != y->i)
        return x->i < y->i ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/* Index the popularity table given in a file. */
static int support_from_file(icpns_snapshot_t *s, const icpns_dataset_t *d,
                             icpns_error_t *err)
{
    uint32_t nc = s->comms.n;
    popent_t *v = malloc((d->n_pop ? d->n_pop : 1) * sizeof(*v));
    if (!v)
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    size_t n = 0;
    for (size_t k = 0; k < d->n_pop; k++) {
        const icpns_triple_t *t = &d->pop[k];
        uint32_t c = icpns_idmap_find(&s->comms, t->community);
        uint32_t i = icpns_idmap_find(&s->items, t->item);
        if (c == ICPNS_NONE || i == ICPNS_NONE) {
            free(v);
            return icpns_error_set(err, ICPNS_EPARSE, d->pop_path, t->line,
                                   c == ICPNS_NONE ? "community" : "item",
                                   c == ICPNS_NONE
                                       ? "unknown community %lld (not in the communities table)"
                                       : "unknown item %lld (not in the interactions table)",
                                   (long long)(c == ICPNS_NONE ? t->community : t->item));
        }
        if (t->count == 0)
            continue;
        v[n++] = (popent_t){c, i, (uint32_t)t->count, t->line};
    }
    if (n)
        qsort(v, n, sizeof(*v), cmp_popent);
    for (size_t k = 1; k < n; k++)
        if (v[k].c == v[k - 1].c && v[k].i == v[k - 1].i) {
            int rc = icpns_error_set(err, ICPNS_EPARSE, d->pop_path, v[k].line, "item",
                                     "item %lld of community %lld is listed twice (first at line %llu)",
                                     (long long)s->items.ids[v[k].i],
                                     (long long)s->comms.ids[v[k].c],
                                     (unsigned long long)v[k - 1].line);
            free(v);
            return rc;
        }
    s->sup_off = calloc((size_t)nc + 1, sizeof(*s->sup_off));
    s->sup_item = malloc((n ? n : 1) * sizeof(uint32_t));
    s->sup_count = malloc((n ? n : 1) * sizeof(uint32_t));
    if (!s->sup_off || !s->sup_item || !s->sup_count) {
        free(v);
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    }
    for (size_t k = 0; k < n; k++) {
        s->sup_off[v[k].c + 1]++;
        s->sup_item[k] = v[k].i;
        s->sup_count[k] = v[k].count;
        if (v[k].count > s->max_count)
            s->max_count = v[k].count;
    }
    for (uint32_t c = 0; c < nc; c++)
        s->sup_off[c + 1] += s->sup_off[c];
    free(v);
    return 0;
}

/* Computes pop_c(i) from the positives: for each community, a dense
 * counter touched only at the items its users have, then sorted. */
static int support_from_positives(icpns_snapshot_t *s, icpns_error_t *err)
{
    uint32_t nc = s->comms.n, nu = s->users.n, ni = s->items.n;
    uint64_t bound = 0;
    for (uint32_t u = 0; u < nu; u++)
        if (s->user_comm[u] != ICPNS_NONE)
            bound += icpns_snapshot_degree(s, u);
    uint32_t *by_comm = malloc(((size_t)nu + 1) * sizeof(*by_comm));
    uint64_t *coff = calloc((size_t)nc + 1, sizeof(*coff));
    uint32_t *cnt = calloc(ni, sizeof(*cnt));
    uint32_t *touched = malloc(ni * sizeof(*touched));
    s->sup_off = calloc((size_t)nc + 1, sizeof(*s->sup_off));
    s->sup_item = malloc((bound ? bound : 1) * sizeof(uint32_t));
    s->sup_count = malloc((bound ? bound : 1) * sizeof(uint32_t));
    if (!by_comm || !coff || !cnt || !touched || !s->sup_off || !s->sup_item ||
        !s->sup_count) {
        free(by_comm);
        free(coff);
        free(cnt);
        free(touched);
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    }
    /* Users grouped by community (counting sort). */
    for (uint32_t u = 0; u < nu; u++)
        if (s->user_comm[u] != ICPNS_NONE)
            coff[s->user_comm[u] + 1]++;
    for (uint32_t c = 0; c < nc; c++)
        coff[c + 1] += coff[c];
    {
        uint64_t *fill = malloc(((size_t)nc + 1) * sizeof(*fill));
        if (!fill) {
            free(by_comm);
            free(coff);
            free(cnt);
            free(touched);
            return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
        }
        memcpy(fill, coff, ((size_t)nc + 1) * sizeof(*fill));
        for (uint32_t u = 0; u < nu; u++)
            if (s->user_comm[u] != ICPNS_NONE)
                by_comm[fill[s->user_comm[u]]++] = u;
        free(fill);
    }
    uint64_t out = 0;
    for (uint32_t c = 0; c < nc; c++) {
        uint32_t nt = 0;
        for (uint64_t k = coff[c]; k < coff[c + 1]; k++) {
            uint32_t u = by_comm[k];
            for (uint64_t j = s->pos_off[u]; j < s->pos_off[u + 1]; j++) {
                uint32_t i = s->pos[j];
                if (cnt[i]++ == 0)
                    touched[nt++] = i;
            }
        }
        sort_u32(touched, nt);
        for (uint32_t k = 0; k < nt; k++) {
            uint32_t i = touched[k];
            s->sup_item[out] = i;
            s->sup_count[out] = cnt[i];
            if (cnt[i] > s->max_count)
                s->max_count = cnt[i];
            cnt[i] = 0;
            out++;
        }
        s->sup_off[c + 1] = out;
    }
    free(by_comm);
    free(coff);
    free(cnt);
    free(touched);
    return 0;
}

int icpns_snapshot_build(const icpns_dataset_t *d, const icpns_params_t *p,
                         icpns_snapshot_t **ret, icpns_error_t *err)
{
    int rc = icpns_params_check(p, err);
    if (rc)
        return rc;
    if (d->n_inter == 0)
        return icpns_error_set(err, ICPNS_EPARSE, NULL, 0, "interactions",
                               "no interactions: there are no items to sample");
    if (d->n_inter > UINT32_MAX - 1)
        return icpns_error_set(err, ICPNS_ELIMIT, NULL, 0, "interactions",
                               "more than 2^32-2 interactions");
    double t0 = icpns_now();
    icpns_snapshot_t *s = calloc(1, sizeof(*s));
    uint32_t *tmp = NULL;
    if (!s)
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    atomic_init(&s->refs, 1);
    s->params = *p;

    /* Id maps: users from both tables, items from interactions,
     * communities from the assignments. */
    int64_t *uids = malloc((d->n_inter + d->n_comm) * sizeof(int64_t));
    int64_t *iids = malloc(d->n_inter * sizeof(int64_t));
    int64_t *cids = malloc((d->n_comm ? d->n_comm : 1) * sizeof(int64_t));
    if (!uids || !iids || !cids) {
        free(uids);
        free(iids);
        free(cids);
        goto oom;
    }
    for (size_t k = 0; k < d->n_inter; k++) {
        uids[k] = d->inter[k].a;
        iids[k] = d->inter[k].b;
    }
    for (size_t k = 0; k < d->n_comm; k++) {
        uids[d->n_inter + k] = d->comm[k].a;
        cids[k] = d->comm[k].b;
    }
    int r1 = icpns_idmap_build(&s->users, uids, d->n_inter + d->n_comm);
    int r2 = icpns_idmap_build(&s->items, iids, d->n_inter);
    int r3 = icpns_idmap_build(&s->comms, cids, d->n_comm);
    if (r1 || r2 || r3) {
        rc = r1 ? r1 : r2 ? r2 : r3;
        if (rc == ICPNS_ENOMEM)
            goto oom;
        rc = icpns_error_set(err, rc, NULL, 0, NULL, "more than 2^31 distinct ids");
        goto fail;
    }
    uint32_t nu = s->users.n, ni = s->items.n, nc = s->comms.n;

    /* Positives: counting sort by user, then sort and dedup each row. */
    s->pos_off = calloc((size_t)nu + 1, sizeof(*s->pos_off));
    tmp = malloc(d->n_inter * sizeof(*tmp));
    uint32_t *du = malloc(d->n_inter * sizeof(*du));
    if (!s->pos_off || !tmp || !du) {
        free(du);
        goto oom;
    }
    for (size_t k = 0; k < d->n_inter; k++) {
        du[k] = icpns_idmap_find(&s->users, d->inter[k].a);
        s->pos_off[du[k] + 1]++;
    }
    for (uint32_t u = 0; u < nu; u++)
        s->pos_off[u + 1] += s->pos_off[u];
    {
        uint64_t *fill = malloc(((size_t)nu + 1) * sizeof(*fill));
        if (!fill) {
            free(du);
            goto oom;
        }
        memcpy(fill, s->pos_off, ((size_t)nu + 1) * sizeof(*fill));
        for (size_t k = 0; k < d->n_inter; k++)
            tmp[fill[du[k]]++] = icpns_idmap_find(&s->items, d->inter[k].b);
        free(fill);
    }
    free(du);
    uint64_t out = 0;
    for (uint32_t u = 0; u < nu; u++) {
        uint64_t a = s->pos_off[u], b = s->pos_off[u + 1];
        sort_u32(tmp + a, (size_t)(b - a));
        s->pos_off[u] = out;
        for (uint64_t k = a; k < b; k++)
            if (k == a || tmp[k] != tmp[k - 1])
                tmp[out++] = tmp[k];
    }
    s->pos_off[nu] = out;
    s->n_interactions = out;
    /* Keep the array as is: shrinking it would save at most the duplicate
     * pairs and cost a copy. */
    s->pos = tmp;
    tmp = NULL;

    /* Communities and popularity. */
    s->user_comm = malloc((nu ? nu : 1) * sizeof(*s->user_comm));
    s->comm_size = calloc(nc ? nc : 1, sizeof(*s->comm_size));
    s->item_pop = calloc(ni, sizeof(*s->item_pop));
    if (!s->user_comm || !s->comm_size || !s->item_pop)
        goto oom;
    for (uint32_t u = 0; u < nu; u++)
        s->user_comm[u] = ICPNS_NONE;
    for (size_t k = 0; k < d->n_comm; k++) {
        uint32_t u = icpns_idmap_find(&s->users, d->comm[k].a);
        uint32_t c = icpns_idmap_find(&s->comms, d->comm[k].b);
        if (s->user_comm[u] != ICPNS_NONE && s->user_comm[u] != c) {
            rc = icpns_error_set(err, ICPNS_EPARSE, NULL, 0, "community",
                                 "user %lld is assigned to two communities",
                                 (long long)d->comm[k].a);
            goto fail;
        }
        if (s->user_comm[u] == ICPNS_NONE)
            s->comm_size[c]++;
        s->user_comm[u] = c;
    }
    for (uint64_t k = 0; k < out; k++)
        s->item_pop[s->pos[k]]++;
    for (uint32_t i = 0; i < ni; i++)
        if (s->item_pop[i] > s->max_count)
            s->max_count = s->item_pop[i];
    s->pop_from_file = d->has_pop;
    rc = d->has_pop ? support_from_file(s, d, err) : support_from_positives(s, err);
    if (rc)
        goto fail;

    if ((rc = icpns_weights_build(s, p, &s->weights, err)))
        goto fail;
    size_t nsup = (size_t)s->sup_off[nc];
    s->bytes = sizeof(*s) + icpns_idmap_bytes(&s->users) + icpns_idmap_bytes(&s->items) +
               icpns_idmap_bytes(&s->comms) + ((size_t)nu + 1) * sizeof(uint64_t) +
               (size_t)out * sizeof(uint32_t) + (size_t)nu * sizeof(uint32_t) +
               (size_t)nc * sizeof(uint32_t) + ((size_t)nc + 1) * sizeof(uint64_t) +
               nsup * 2 * sizeof(uint32_t) + (size_t)ni * sizeof(uint32_t) +
               s->weights->bytes;
    s->build_seconds = icpns_now() - t0;
    *ret = s;
    return 0;
oom:
    rc = icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory building the snapshot");
fail:
    free(tmp);
    snapshot_free(s);
    return rc;
}

int icpns_snapshot_popularity_tsv(const icpns_snapshot_t *s, char **ret, size_t *ret_len)
{
    size_t cap = 4096 + (size_t)s->sup_off[s->comms.n] * 64, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return ICPNS_ENOMEM;
    len += (size_t)snprintf(buf, cap, "# community\titem\tcount\n");
    for (uint32_t c = 0; c < s->comms.n; c++)
        for (uint64_t k = s->sup_off[c]; k < s->sup_off[c + 1]; k++)
            len += (size_t)snprintf(buf + len, cap - len, "%lld\t%lld\t%u\n",
                                    (long long)s->comms.ids[c],
                                    (long long)s->items.ids[s->sup_item[k]],
                                    s->sup_count[k]);
    *ret = buf;
    *ret_len = len;
    return 0;
}
