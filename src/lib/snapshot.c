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

/* What weights_alloc allocates for @s. */
static size_t weights_bytes(const icpns_snapshot_t *s)
{
    uint32_t nc = s->comms.n, ni = s->items.n, nu = s->users.n;
    size_t nsup = (size_t)s->sup_off[nc];
    return sizeof(icpns_weights_t) + (size_t)nc * sizeof(icpns_wtable_t) +
           (nsup + ni) * sizeof(double) + (nsup + nc + ni + 1) * sizeof(double) +
           (nsup + ni) * sizeof(icpns_alias_entry_t) +
           (size_t)nu * (2 * sizeof(double) + sizeof(uint32_t));
}

/* Allocates the weights of @p over @s, tables unfilled. */
static icpns_weights_t *weights_alloc(const icpns_snapshot_t *s, const icpns_params_t *p)
{
    uint32_t nc = s->comms.n, ni = s->items.n, nu = s->users.n;
    size_t nsup = (size_t)s->sup_off[nc];
    icpns_weights_t *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
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
        !w->pos_mass_comm || !w->pos_hits_comm || !w->pos_mass_pop)
        return icpns_weights_free(w);
    w->bytes = weights_bytes(s);
    return w;
}

/* Where community @c's table lives in the arenas (the global table comes
 * after all communities: c = nc). */
static void table_place(const icpns_snapshot_t *s, icpns_weights_t *w, uint32_t c,
                        double **cw, double **ccdf, icpns_alias_entry_t **cal)
{
    size_t off = (size_t)s->sup_off[c];
    *cw = (double *)w->arena_w + off;
    *ccdf = (double *)w->arena_cdf + off + c;
    *cal = (icpns_alias_entry_t *)w->arena_alias + off;
}

/* Points table @t at its arena storage, already filled. */
static void table_bind(icpns_wtable_t *t, uint32_t m, const uint32_t *items, double *cw,
                       double *ccdf, icpns_alias_entry_t *cal)
{
    t->m = m;
    t->items = items;
    t->w = cw;
    t->cdf = ccdf;
    t->alias.n = m;
    t->alias.e = m ? cal : NULL;
}

/* Computes community @c's table: w = pop_c^alpha, prefix sums, alias. */
static int comm_table_fill(const icpns_snapshot_t *s, icpns_weights_t *w, uint32_t c,
                           const pow_cache_t *powa)
{
    size_t off = (size_t)s->sup_off[c];
    uint32_t m = (uint32_t)(s->sup_off[c + 1] - off);
    double *cw, *ccdf;
    icpns_alias_entry_t *cal;
    table_place(s, w, c, &cw, &ccdf, &cal);
    for (uint32_t k = 0; k < m; k++)
        cw[k] = pow_cache_get(powa, s->sup_count[off + k]);
    prefix_sums(cw, m, ccdf);
    icpns_wtable_t *t = &w->comm[c];
    table_bind(t, m, s->sup_item + off, cw, ccdf, cal);
    return m > 0 ? icpns_alias_build(&t->alias, cw, m, cal) : 0;
}

/* Computes the global table: w = pop^beta over all items. */
static int global_table_fill(const icpns_snapshot_t *s, icpns_weights_t *w,
                             const pow_cache_t *powb)
{
    uint32_t ni = s->items.n;
    double *gw, *gcdf;
    icpns_alias_entry_t *gal;
    table_place(s, w, s->comms.n, &gw, &gcdf, &gal);
    for (uint32_t i = 0; i < ni; i++)
        gw[i] = pow_cache_get(powb, s->item_pop[i]);
    prefix_sums(gw, ni, gcdf);
    table_bind(&w->global, ni, NULL, gw, gcdf, gal);
    return icpns_alias_build(&w->global.alias, gw, ni, gal);
}

/* Copies table @t of @ow (over @os) into @w's arenas at community @c. */
static void table_copy(const icpns_snapshot_t *s, icpns_weights_t *w, uint32_t c,
                       const icpns_wtable_t *t, icpns_wtable_t *dst, const uint32_t *items)
{
    double *cw, *ccdf;
    icpns_alias_entry_t *cal;
    table_place(s, w, c, &cw, &ccdf, &cal);
    memcpy(cw, t->w, (size_t)t->m * sizeof(double));
    memcpy(ccdf, t->cdf, ((size_t)t->m + 1) * sizeof(double));
    if (t->m)
        memcpy(cal, t->alias.e, (size_t)t->m * sizeof(*cal));
    table_bind(dst, t->m, items, cw, ccdf, cal);
}

/* The masses of user @u's positives under its tables. */
static void user_masses(const icpns_snapshot_t *s, icpns_weights_t *w, uint32_t u)
{
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

/*
 * Fills @w over @s.  With @old (the weights of the same setting over the
 * snapshot @s was patched from), tables of communities not in @touched and,
 * unless @global_changed, the global table are copied; users not in
 * @user_touched whose community was not touched keep their masses.  The
 * result is bit-identical to a fresh build: every value is computed by the
 * same code in the same order.
 */
static int weights_fill(const icpns_snapshot_t *s, icpns_weights_t *w,
                        const icpns_weights_t *old, const uint8_t *touched,
                        bool global_changed, const uint8_t *user_touched)
{
    uint32_t nc = s->comms.n, nu = s->users.n;
    pow_cache_t powa = {0}, powb = {0};
    int rc = ICPNS_ENOMEM;
    if (pow_cache_init(&powa, s->max_count, w->params.alpha) ||
        pow_cache_init(&powb, s->max_count, w->params.beta))
        goto out;
    for (uint32_t c = 0; c < nc; c++) {
        if (old && !touched[c])
            table_copy(s, w, c, &old->comm[c], &w->comm[c], s->sup_item + s->sup_off[c]);
        else if ((rc = comm_table_fill(s, w, c, &powa)))
            goto out;
    }
    if (old && !global_changed)
        table_copy(s, w, nc, &old->global, &w->global, NULL);
    else if ((rc = global_table_fill(s, w, &powb)))
        goto out;
    for (uint32_t u = 0; u < nu; u++) {
        uint32_t c = s->user_comm[u];
        if (old && !global_changed && !user_touched[u] && (c == ICPNS_NONE || !touched[c])) {
            w->pos_mass_comm[u] = old->pos_mass_comm[u];
            w->pos_hits_comm[u] = old->pos_hits_comm[u];
            w->pos_mass_pop[u] = old->pos_mass_pop[u];
        } else if (old && !user_touched[u] && (c == ICPNS_NONE || !touched[c])) {
            /* Only the global weights moved: the community part stands. */
            w->pos_mass_comm[u] = old->pos_mass_comm[u];
            w->pos_hits_comm[u] = old->pos_hits_comm[u];
            const uint32_t *pos = s->pos + s->pos_off[u];
            uint32_t d = icpns_snapshot_degree(s, u);
            double mp = 0;
            for (uint32_t k = 0; k < d; k++)
                mp += w->global.w[pos[k]];
            w->pos_mass_pop[u] = mp;
        } else {
            user_masses(s, w, u);
        }
    }
    rc = 0;
out:
    free(powa.t);
    free(powb.t);
    return rc;
}

int icpns_weights_build(const icpns_snapshot_t *s, const icpns_params_t *p,
                        icpns_weights_t **ret, icpns_error_t *err)
{
    int rc = icpns_params_check(p, err);
    if (rc)
        return rc;
    double t0 = icpns_now();
    icpns_weights_t *w = weights_alloc(s, p);
    if (!w)
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL,
                               "out of memory building weights");
    if ((rc = weights_fill(s, w, NULL, NULL, false, NULL))) {
        icpns_weights_free(w);
        return rc == ICPNS_ENOMEM
                   ? icpns_error_set(err, rc, NULL, 0, NULL, "out of memory building weights")
                   : icpns_error_set(err, ICPNS_EINVAL, NULL, 0, NULL, "invalid weights");
    }
    w->build_seconds = icpns_now() - t0;
    *ret = w;
    return 0;
}

/* ---- snapshot ------------------------------------------------------------- */

static void snapshot_free(icpns_snapshot_t *s)
{
    if (s->ext && s->ext_free)
        s->ext_free(s->ext);
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
        if (i == ICPNS_NONE) {
            /* A count for an item outside the catalogue would be served
             * for no item: refuse it. */
            free(v);
            return icpns_error_set(err, ICPNS_EPARSE, d->pop_path, t->line, "item",
                                   "unknown item %lld: not in the catalogue (the interactions"
                                   "%s); list every item in items.tsv (icpns shard writes it)",
                                   (long long)t->item, d->has_items ? " and items.tsv" : "");
        }
        if (c == ICPNS_NONE) { /* the id map holds the file's communities */
            free(v);
            return icpns_error_set(err, ICPNS_EPARSE, d->pop_path, t->line, "community",
                                   "unknown community %lld", (long long)t->community);
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
    /* Global popularity for PNS: the sum over communities of the file's
     * counts, so that the shards of a user-sharded deployment (each with
     * the global file) agree with the whole. */
    memset(s->item_pop, 0, (size_t)s->items.n * sizeof(*s->item_pop));
    for (size_t k = 0; k < n; k++) {
        uint32_t i = s->sup_item[k];
        if (s->item_pop[i] > UINT32_MAX - 1 - s->sup_count[k])
            return icpns_error_set(err, ICPNS_ELIMIT, d->pop_path, 0, "count",
                                   "item %lld: the sum of its counts over the communities "
                                   "is above 2^32-2", (long long)s->items.ids[i]);
        s->item_pop[i] += s->sup_count[k];
    }
    return 0;
}

/*
 * Computes pop_c(i) from the positives: for each community (each one with
 * @only[c] set, when @only is given; the others get empty supports), a dense
 * counter touched only at the items its users have, then sorted.  Writes
 * *@ret_off (nc + 1 offsets), *@ret_item and *@ret_count.
 */
static int count_support(const icpns_snapshot_t *s, const uint8_t *only, uint64_t **ret_off,
                         uint32_t **ret_item, uint32_t **ret_count)
{
    uint32_t nc = s->comms.n, nu = s->users.n, ni = s->items.n;
    uint64_t bound = 0;
    for (uint32_t u = 0; u < nu; u++) {
        uint32_t c = s->user_comm[u];
        if (c != ICPNS_NONE && (!only || only[c]))
            bound += icpns_snapshot_degree(s, u);
    }
    uint32_t *by_comm = malloc(((size_t)nu + 1) * sizeof(*by_comm));
    uint64_t *coff = calloc((size_t)nc + 1, sizeof(*coff));
    uint64_t *fill = malloc(((size_t)nc + 1) * sizeof(*fill));
    uint32_t *cnt = calloc(ni, sizeof(*cnt));
    uint32_t *touched = malloc(ni * sizeof(*touched));
    uint64_t *off = calloc((size_t)nc + 1, sizeof(*off));
    uint32_t *item = malloc((bound ? bound : 1) * sizeof(uint32_t));
    uint32_t *count = malloc((bound ? bound : 1) * sizeof(uint32_t));
    int rc = ICPNS_ENOMEM;
    if (!by_comm || !coff || !fill || !cnt || !touched || !off || !item || !count)
        goto out;
    /* Users grouped by community (counting sort). */
    for (uint32_t u = 0; u < nu; u++) {
        uint32_t c = s->user_comm[u];
        if (c != ICPNS_NONE && (!only || only[c]))
            coff[c + 1]++;
    }
    for (uint32_t c = 0; c < nc; c++)
        coff[c + 1] += coff[c];
    memcpy(fill, coff, ((size_t)nc + 1) * sizeof(*fill));
    for (uint32_t u = 0; u < nu; u++) {
        uint32_t c = s->user_comm[u];
        if (c != ICPNS_NONE && (!only || only[c]))
            by_comm[fill[c]++] = u;
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
            item[out] = i;
            count[out] = cnt[i];
            cnt[i] = 0;
            out++;
        }
        off[c + 1] = out;
    }
    *ret_off = off;
    *ret_item = item;
    *ret_count = count;
    off = NULL;
    item = count = NULL;
    rc = 0;
out:
    free(by_comm);
    free(coff);
    free(fill);
    free(cnt);
    free(touched);
    free(off);
    free(item);
    free(count);
    return rc;
}

static int support_from_positives(icpns_snapshot_t *s, icpns_error_t *err)
{
    if (count_support(s, NULL, &s->sup_off, &s->sup_item, &s->sup_count))
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    for (uint64_t k = 0; k < s->sup_off[s->comms.n]; k++)
        if (s->sup_count[k] > s->max_count)
            s->max_count = s->sup_count[k];
    return 0;
}

/* Everything but the weights. */
static size_t index_bytes(const icpns_snapshot_t *s)
{
    uint32_t nu = s->users.n, ni = s->items.n, nc = s->comms.n;
    size_t nsup = (size_t)s->sup_off[nc];
    return sizeof(*s) + icpns_idmap_bytes(&s->users) + icpns_idmap_bytes(&s->items) +
           icpns_idmap_bytes(&s->comms) + ((size_t)nu + 1) * sizeof(uint64_t) +
           (size_t)s->n_interactions * sizeof(uint32_t) + (size_t)nu * sizeof(uint32_t) +
           (size_t)nc * sizeof(uint32_t) + ((size_t)nc + 1) * sizeof(uint64_t) +
           nsup * 2 * sizeof(uint32_t) + (size_t)ni * sizeof(uint32_t);
}

static size_t snapshot_bytes(const icpns_snapshot_t *s)
{
    return index_bytes(s) + s->weights->bytes;
}

/* Refuses a snapshot above @max_bytes (0: no limit) before its weights,
 * about half of it, are allocated. */
static int check_limit(const icpns_snapshot_t *s, size_t max_bytes, icpns_error_t *err)
{
    size_t need = index_bytes(s) + weights_bytes(s);
    if (max_bytes && need > max_bytes)
        return icpns_error_set(err, ICPNS_ELIMIT, NULL, 0, "max_bytes",
                               "the snapshot would take %zu bytes, more than the %zu allowed",
                               need, max_bytes);
    return 0;
}

uint64_t icpns_snapshot_fingerprint(const icpns_snapshot_t *s)
{
    uint32_t nu = s->users.n, nc = s->comms.n;
    uint64_t nsup = s->sup_off[nc];
    /* A fixed-layout header (no padding bytes), then each array chained. */
    /* Content only: how it was read (popularity file or not, file
     * names) is no part of it. */
    uint64_t head[8] = {ICPNS_SAMPLER_REVISION, nu, s->items.n, nc, s->n_interactions};
    memcpy(&head[5], &s->params.alpha, 8);
    memcpy(&head[6], &s->params.epsilon, 8);
    memcpy(&head[7], &s->params.beta, 8);
    uint64_t h = icpns_hash64(head, sizeof(head), 0);
    h = icpns_hash64(s->users.ids, (size_t)nu * sizeof(int64_t), h);
    h = icpns_hash64(s->items.ids, (size_t)s->items.n * sizeof(int64_t), h);
    h = icpns_hash64(s->comms.ids, (size_t)nc * sizeof(int64_t), h);
    h = icpns_hash64(s->pos_off, ((size_t)nu + 1) * sizeof(uint64_t), h);
    h = icpns_hash64(s->pos, (size_t)s->n_interactions * sizeof(uint32_t), h);
    h = icpns_hash64(s->user_comm, (size_t)nu * sizeof(uint32_t), h);
    h = icpns_hash64(s->sup_off, ((size_t)nc + 1) * sizeof(uint64_t), h);
    h = icpns_hash64(s->sup_item, (size_t)nsup * sizeof(uint32_t), h);
    h = icpns_hash64(s->sup_count, (size_t)nsup * sizeof(uint32_t), h);
    /* Global counts: derived from the positives, or from a popularity
     * file's counts, which may differ (users without community). */
    h = icpns_hash64(s->item_pop, (size_t)s->items.n * sizeof(uint32_t), h);
    return h;
}

int icpns_snapshot_build(const icpns_dataset_t *d, const icpns_params_t *p,
                         icpns_snapshot_t **ret, icpns_error_t *err)
{
    return icpns_snapshot_build_limit(d, p, 0, ret, err);
}

int icpns_snapshot_build_limit(const icpns_dataset_t *d, const icpns_params_t *p,
                               size_t max_bytes, icpns_snapshot_t **ret, icpns_error_t *err)
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

    /* Id maps: users from both tables; items (the catalogue) from the
     * interactions and the items file; communities from the assignments
     * and, when pop_c is read from a file, the file's (a user shard may
     * lack members of a community that still counts for pop(i)).  One at
     * a time, so that only one full-length id array is alive (each map
     * keeps its distinct ids). */
    size_t n_pop = d->has_pop ? d->n_pop : 0;
    for (int which = 0; which < 3; which++) {
        size_t n = which == 0   ? d->n_inter + d->n_comm
                   : which == 1 ? d->n_inter + d->n_items
                                : d->n_comm + n_pop;
        int64_t *ids = malloc((n ? n : 1) * sizeof(int64_t));
        if (!ids)
            goto oom;
        for (size_t k = 0; k < n; k++)
            ids[k] = which == 0   ? (k < d->n_inter ? d->inter[k].a : d->comm[k - d->n_inter].a)
                     : which == 1 ? (k < d->n_inter ? d->inter[k].b : d->items[k - d->n_inter])
                                  : (k < d->n_comm ? d->comm[k].b : d->pop[k - d->n_comm].community);
        icpns_idmap_t *m = which == 0 ? &s->users : which == 1 ? &s->items : &s->comms;
        if ((rc = icpns_idmap_build(m, ids, n))) {
            if (rc == ICPNS_ENOMEM)
                goto oom;
            rc = icpns_error_set(err, rc, NULL, 0, NULL, "more than 2^31 distinct ids");
            goto fail;
        }
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
    s->pop_from_file = d->has_pop;
    rc = d->has_pop ? support_from_file(s, d, err) : support_from_positives(s, err);
    if (rc)
        goto fail;
    for (uint32_t i = 0; i < ni; i++)
        if (s->item_pop[i] > s->max_count)
            s->max_count = s->item_pop[i];

    if ((rc = check_limit(s, max_bytes, err)) || (rc = icpns_weights_build(s, p, &s->weights, err)))
        goto fail;
    s->bytes = snapshot_bytes(s);
    s->fingerprint = icpns_snapshot_fingerprint(s);
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

/* ---- patching ------------------------------------------------------------- */

typedef struct upair {
    uint32_t u, i;
} upair_t;

static int cmp_upair(const void *a, const void *b)
{
    const upair_t *x = a, *y = b;
    if (x->u != y->u)
        return x->u < y->u ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Whether @item is among the sorted positives of @u in @s. */
static bool has_positive(const icpns_snapshot_t *s, uint32_t u, uint32_t item)
{
    const uint32_t *pos = s->pos + s->pos_off[u];
    uint32_t lo = 0, hi = icpns_snapshot_degree(s, u);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (pos[mid] < item)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < icpns_snapshot_degree(s, u) && pos[lo] == item;
}

int icpns_snapshot_patch(const icpns_snapshot_t *o, const icpns_delta_t *dl,
                         icpns_snapshot_t **ret, icpns_patch_stats_t *stats,
                         icpns_error_t *err)
{
    return icpns_snapshot_patch_limit(o, dl, 0, ret, stats, err);
}

int icpns_snapshot_patch_limit(const icpns_snapshot_t *o, const icpns_delta_t *dl,
                               size_t max_bytes, icpns_snapshot_t **ret,
                               icpns_patch_stats_t *stats, icpns_error_t *err)
{
    if (o->pop_from_file)
        return icpns_error_set(err, ICPNS_ENOPATCH, NULL, 0, NULL,
                               "pop_c comes from a popularity file");
    double t0 = icpns_now();
    uint32_t nu = o->users.n, ni = o->items.n, nc = o->comms.n;
    icpns_snapshot_t *s = NULL;
    upair_t *np = malloc((dl->n_inter ? dl->n_inter : 1) * sizeof(*np));
    uint8_t *user_touched = calloc(nu ? nu : 1, 1);
    uint8_t *touched = calloc(nc ? nc : 1, 1);
    uint64_t *toff = NULL;
    uint32_t *titem = NULL, *tcount = NULL;
    int rc = 0;
    if (!np || !user_touched || !touched)
        goto oom;

    /* The new pairs, dense, sorted, without duplicates or known positives. */
    size_t n = 0;
    for (size_t k = 0; k < dl->n_inter; k++) {
        uint32_t u = icpns_idmap_find(&o->users, dl->inter[k].a);
        uint32_t i = icpns_idmap_find(&o->items, dl->inter[k].b);
        if (u == ICPNS_NONE || i == ICPNS_NONE) {
            rc = icpns_error_set(err, ICPNS_ENOPATCH, NULL, 0, u == ICPNS_NONE ? "user" : "item",
                                 "new %s id %lld", u == ICPNS_NONE ? "user" : "item",
                                 (long long)(u == ICPNS_NONE ? dl->inter[k].a : dl->inter[k].b));
            goto fail;
        }
        if (!has_positive(o, u, i))
            np[n++] = (upair_t){u, i};
    }
    if (n > 1)
        qsort(np, n, sizeof(*np), cmp_upair);
    size_t na = 0;
    for (size_t k = 0; k < n; k++)
        if (k == 0 || np[k].u != np[k - 1].u || np[k].i != np[k - 1].i)
            np[na++] = np[k];
    if (o->n_interactions + na > UINT32_MAX - 1) {
        rc = icpns_error_set(err, ICPNS_ELIMIT, NULL, 0, "interactions",
                             "more than 2^32-2 interactions");
        goto fail;
    }

    s = calloc(1, sizeof(*s));
    if (!s)
        goto oom;
    atomic_init(&s->refs, 1);
    s->params = o->params;
    if (icpns_idmap_copy(&s->users, &o->users) || icpns_idmap_copy(&s->items, &o->items) ||
        icpns_idmap_copy(&s->comms, &o->comms))
        goto oom;

    /* Positives: each row merged with its new items. */
    s->n_interactions = o->n_interactions + na;
    s->pos_off = malloc(((size_t)nu + 1) * sizeof(*s->pos_off));
    s->pos = malloc((s->n_interactions ? s->n_interactions : 1) * sizeof(*s->pos));
    s->item_pop = malloc(ni * sizeof(*s->item_pop));
    s->user_comm = malloc((nu ? nu : 1) * sizeof(*s->user_comm));
    s->comm_size = malloc((nc ? nc : 1) * sizeof(*s->comm_size));
    if (!s->pos_off || !s->pos || !s->item_pop || !s->user_comm || !s->comm_size)
        goto oom;
    memcpy(s->item_pop, o->item_pop, ni * sizeof(*s->item_pop));
    memcpy(s->user_comm, o->user_comm, nu * sizeof(*s->user_comm));
    memcpy(s->comm_size, o->comm_size, nc * sizeof(*s->comm_size));
    uint64_t out = 0;
    size_t q = 0;
    for (uint32_t u = 0; u < nu; u++) {
        s->pos_off[u] = out;
        const uint32_t *row = o->pos + o->pos_off[u];
        uint32_t d = icpns_snapshot_degree(o, u), k = 0;
        if (q < na && np[q].u == u)
            user_touched[u] = 1;
        while (k < d || (q < na && np[q].u == u)) {
            if (q < na && np[q].u == u && (k == d || np[q].i < row[k])) {
                s->item_pop[np[q].i]++;
                s->pos[out++] = np[q++].i;
            } else {
                s->pos[out++] = row[k++];
            }
        }
    }
    s->pos_off[nu] = out;

    /* Communities: apply the assignments in order. */
    for (size_t k = 0; k < dl->n_comm; k++) {
        uint32_t u = icpns_idmap_find(&o->users, dl->comm[k].a);
        uint32_t c = icpns_idmap_find(&o->comms, dl->comm[k].b);
        if (u == ICPNS_NONE || c == ICPNS_NONE) {
            rc = icpns_error_set(err, ICPNS_ENOPATCH, NULL, 0,
                                 u == ICPNS_NONE ? "user" : "community", "new %s id %lld",
                                 u == ICPNS_NONE ? "user" : "community",
                                 (long long)(u == ICPNS_NONE ? dl->comm[k].a : dl->comm[k].b));
            goto fail;
        }
        uint32_t was = s->user_comm[u];
        if (was == c)
            continue;
        if (was != ICPNS_NONE) {
            s->comm_size[was]--;
            touched[was] = 1;
        }
        s->comm_size[c]++;
        touched[c] = 1;
        user_touched[u] = 1;
        s->user_comm[u] = c;
    }
    for (uint32_t c = 0; c < nc; c++)
        if (s->comm_size[c] == 0) {
            rc = icpns_error_set(err, ICPNS_ENOPATCH, NULL, 0, "community",
                                 "community %lld would be left without members",
                                 (long long)o->comms.ids[c]);
            goto fail;
        }
    for (size_t k = 0; k < na; k++)
        if (s->user_comm[np[k].u] != ICPNS_NONE)
            touched[s->user_comm[np[k].u]] = 1;

    /* Supports: recount the touched communities, copy the others. */
    if (count_support(s, touched, &toff, &titem, &tcount))
        goto oom;
    s->sup_off = malloc(((size_t)nc + 1) * sizeof(*s->sup_off));
    if (!s->sup_off)
        goto oom;
    s->sup_off[0] = 0;
    for (uint32_t c = 0; c < nc; c++)
        s->sup_off[c + 1] = s->sup_off[c] + (touched[c] ? toff[c + 1] - toff[c]
                                                         : o->sup_off[c + 1] - o->sup_off[c]);
    size_t nsup = (size_t)s->sup_off[nc];
    s->sup_item = malloc((nsup ? nsup : 1) * sizeof(uint32_t));
    s->sup_count = malloc((nsup ? nsup : 1) * sizeof(uint32_t));
    if (!s->sup_item || !s->sup_count)
        goto oom;
    for (uint32_t c = 0; c < nc; c++) {
        const uint32_t *si = touched[c] ? titem + toff[c] : o->sup_item + o->sup_off[c];
        const uint32_t *sc = touched[c] ? tcount + toff[c] : o->sup_count + o->sup_off[c];
        size_t m = (size_t)(s->sup_off[c + 1] - s->sup_off[c]);
        memcpy(s->sup_item + s->sup_off[c], si, m * sizeof(uint32_t));
        memcpy(s->sup_count + s->sup_off[c], sc, m * sizeof(uint32_t));
    }
    for (uint32_t i = 0; i < ni; i++)
        if (s->item_pop[i] > s->max_count)
            s->max_count = s->item_pop[i];
    for (size_t k = 0; k < nsup; k++)
        if (s->sup_count[k] > s->max_count)
            s->max_count = s->sup_count[k];

    /* Weights: copy what did not move. */
    if ((rc = check_limit(s, max_bytes, err)))
        goto fail;
    if (!(s->weights = weights_alloc(s, &o->params)))
        goto oom;
    double tw = icpns_now();
    if ((rc = weights_fill(s, s->weights, o->weights, touched, na > 0, user_touched))) {
        rc = rc == ICPNS_ENOMEM
                 ? icpns_error_set(err, rc, NULL, 0, NULL, "out of memory building weights")
                 : icpns_error_set(err, ICPNS_EINVAL, NULL, 0, NULL, "invalid weights");
        goto fail;
    }
    s->weights->build_seconds = icpns_now() - tw;
    s->bytes = snapshot_bytes(s);
    s->fingerprint = icpns_snapshot_fingerprint(s);
    s->build_seconds = icpns_now() - t0;
    if (stats) {
        memset(stats, 0, sizeof(*stats));
        stats->pairs_added = na;
        stats->global_rebuilt = na > 0;
        for (uint32_t u = 0; u < nu; u++)
            stats->users_touched += user_touched[u];
        for (uint32_t c = 0; c < nc; c++)
            stats->comms_rebuilt += touched[c];
    }
    *ret = s;
    s = NULL;
    goto done;
oom:
    rc = icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory patching the snapshot");
fail:
done:
    if (s)
        snapshot_free(s);
    free(np);
    free(user_touched);
    free(touched);
    free(toff);
    free(titem);
    free(tcount);
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
