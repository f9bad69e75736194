/*
 * info.c - what a snapshot says about itself (its sizes, a user, the
 * communities and the items ICPNS draws from each: the interpretability
 * the method claims), in plain structs that icpnsd's info endpoints and
 * bindings read alike, and the sizes of those structs for bindings.
 */
#include <stdlib.h>
#include <string.h>

#include "icpns.h"

const char *icpns_version(void)
{
    return ICPNS_VERSION_STRING;
}

size_t icpns_abi_sizeof(const char *type)
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
    if (!type)
        return 0;
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
        if (!strcmp(type, sizes[k].name))
            return sizes[k].size;
    return 0;
}

void icpns_snapshot_info(const icpns_snapshot_t *s, icpns_snapshot_info_t *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->fingerprint = s->fingerprint;
    ret->interactions = s->n_interactions;
    ret->bytes = s->bytes;
    ret->users = s->users.n;
    ret->items = s->items.n;
    ret->communities = s->comms.n;
    ret->sampler_revision = ICPNS_SAMPLER_REVISION;
    ret->params = s->params;
    ret->pop_from_file = s->pop_from_file;
}

const int64_t *icpns_snapshot_item_ids(const icpns_snapshot_t *s)
{
    return s->items.ids;
}

int icpns_snapshot_user(const icpns_snapshot_t *s, int64_t user, icpns_user_info_t *ret)
{
    uint32_t u = icpns_idmap_find(&s->users, user);
    if (u == ICPNS_NONE)
        return ICPNS_EUNKNOWN_USER;
    icpns_user_info_t info = {.community = -1, .positives = icpns_snapshot_degree(s, u)};
    uint32_t c = s->user_comm[u];
    if (c != ICPNS_NONE) {
        /* The share of its community's mass the user's positives hold: how
         * much ICPNS has to exclude, and whether the fallback applies. */
        const icpns_wtable_t *t = &s->weights->comm[c];
        double total = t->cdf[t->m];
        info.community = s->comms.ids[c];
        info.has_community = 1;
        info.mass_covered = total > 0 ? s->weights->pos_mass_comm[u] / total : 0.0;
        info.fallback = s->weights->pos_hits_comm[u] >= t->m && s->params.epsilon == 0;
    }
    *ret = info;
    return 0;
}

uint32_t icpns_snapshot_community_find(const icpns_snapshot_t *s, int64_t community)
{
    return icpns_idmap_find(&s->comms, community);
}

int icpns_snapshot_community(const icpns_snapshot_t *s, uint32_t index,
                             icpns_community_info_t *ret)
{
    if (index >= s->comms.n)
        return ICPNS_EINVAL;
    const icpns_wtable_t *t = &s->weights->comm[index];
    *ret = (icpns_community_info_t){s->comms.ids[index], s->comm_size[index], t->m,
                                    t->cdf[t->m]};
    return 0;
}

typedef struct ranked_item {
    double w;
    uint32_t k;
} ranked_item_t;

static int cmp_ranked_item(const void *a, const void *b)
{
    const ranked_item_t *x = a, *y = b;
    if (x->w != y->w)
        return x->w < y->w ? 1 : -1;
    return (x->k > y->k) - (x->k < y->k);
}

int icpns_community_top_items(const icpns_snapshot_t *s, uint32_t index, uint32_t top,
                              icpns_item_rank_t *ret, uint32_t *ret_n)
{
    if (index >= s->comms.n)
        return ICPNS_EINVAL;
    const icpns_wtable_t *t = &s->weights->comm[index];
    ranked_item_t *v = malloc((t->m ? t->m : 1) * sizeof(*v));
    if (!v)
        return ICPNS_ENOMEM;
    for (uint32_t k = 0; k < t->m; k++)
        v[k] = (ranked_item_t){t->w[k], k};
    qsort(v, t->m, sizeof(*v), cmp_ranked_item);
    double eps = s->params.epsilon, total = t->cdf[t->m] + eps * s->items.n;
    uint32_t shown = t->m < top ? t->m : top;
    uint64_t base = s->sup_off[index];
    for (uint32_t j = 0; j < shown; j++) {
        uint32_t k = v[j].k;
        ret[j] = (icpns_item_rank_t){s->items.ids[t->items ? t->items[k] : k], s->sup_count[base + k],
                                     t->w[k] + eps, (t->w[k] + eps) / total};
    }
    free(v);
    *ret_n = shown;
    return 0;
}
