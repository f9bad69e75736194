/*
 * api_info.c - what a table set says about itself (users, communities, the
 * items ICPNS draws from a community: the interpretability the method
 * claims) and the daemon's health and metrics.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "metrics.h"
#include "metrics_sets.h"
#include "registry.h"
#include "reply.h"

enum MHD_Result icpnsd_api_healthz(icpnsd_req_t *r)
{
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpns_buf_lit(&b, "{\"status\":\"ok\"}");
    return icpnsd_reply_json(r, 200, &b);
}

enum MHD_Result icpnsd_api_readyz(icpnsd_req_t *r)
{
    if (atomic_load(&r->env->quiescing))
        return icpnsd_reply_error(r, ICPNSD_E_SHUTTING_DOWN, NULL, "the daemon is shutting down");
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n = icpnsd_registry_list(r->env->reg, sets, ICPNSD_MAX_SETS);
    bool ready = n > 0;
    uint64_t version = 0;
    for (unsigned k = 0; k < n; k++) {
        icpnsd_meta_t m;
        icpnsd_set_meta(sets[k], &m);
        ready &= icpnsd_set_ready(sets[k]);
        if (k == 0)
            version = m.version;
        icpnsd_set_unref(sets[k]);
    }
    if (!ready)
        return icpnsd_reply_error(r, ICPNSD_E_NOT_READY, NULL, "no snapshot serves yet");
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpns_buf_printf(&b, "{\"status\":\"ready\",\"version\":%llu,\"tables\":%u}",
                     (unsigned long long)version, n);
    return icpnsd_reply_json(r, 200, &b);
}

/* Whether every set serves and the daemon is not stopping (GET /readyz's
 * rule). */
static bool all_ready(icpnsd_env_t *env)
{
    if (atomic_load(&env->quiescing))
        return false;
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n = icpnsd_registry_list(env->reg, sets, ICPNSD_MAX_SETS);
    bool ready = n > 0;
    for (unsigned k = 0; k < n; k++) {
        ready &= icpnsd_set_ready(sets[k]);
        icpnsd_set_unref(sets[k]);
    }
    return ready;
}

enum MHD_Result icpnsd_api_metrics(icpnsd_req_t *r)
{
    icpnsd_env_t *env = r->env;
    const icpnsd_config_t *cfg = env->cfg;
    icpnsd_metrics_daemon_t d = {
        .ready = all_ready(env),
        .connections = atomic_load(&env->connections),
        .max_connections = cfg->max_connections,
        .answer_bytes = atomic_load(&env->answer_bytes),
        .answer_bytes_max = cfg->answers_in_flight_bytes,
        .budget_used = icpnsd_registry_bytes(env->reg),
        .budget = cfg->memory_budget,
    };
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpnsd_metrics_render(&b, &d);
    icpnsd_metrics_render_sets(&b, env->reg);
    return icpnsd_reply(r, 200, ICPNSD_CT_METRICS, &b);
}

/* GET /v1/users/{id} */
enum MHD_Result icpnsd_api_user(icpnsd_req_t *r)
{
    int64_t id;
    if (!icpnsd_parse_id(r->param, strlen(r->param), &id))
        return icpnsd_reply_error(r, ICPNSD_E_BAD_PATH, "id", "user ids are non-negative integers");
    icpns_snapshot_t *s = icpnsd_set_acquire(r->set);
    icpns_user_info_t info;
    if (icpns_snapshot_user(s, id, &info)) {
        icpns_snapshot_unref(s);
        return icpnsd_reply_error(r, ICPNSD_E_NO_SUCH_USER, "id", "user %lld is not in the tables",
                                  (long long)id);
    }
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpnsd_json_snapshot_head(&b, s);
    icpns_buf_lit(&b, ",\"user\":");
    icpns_buf_i64(&b, id);
    icpns_buf_lit(&b, ",\"community\":");
    if (!info.has_community)
        icpns_buf_lit(&b, "null");
    else
        icpns_buf_i64(&b, info.community);
    icpns_buf_lit(&b, ",\"positives\":");
    icpns_buf_u64(&b, info.positives);
    /* The share of its community's mass the user's positives hold: how
     * much ICPNS has to exclude, and whether the fallback applies. */
    if (info.has_community) {
        icpns_buf_printf(&b, ",\"community_mass_covered\":%.6g", info.mass_covered);
        icpns_buf_printf(&b, ",\"fallback\":%s", info.fallback ? "true" : "false");
    }
    icpns_buf_lit(&b, "}");
    icpns_snapshot_unref(s);
    return icpnsd_reply_json(r, 200, &b);
}

/* GET /v1/communities */
enum MHD_Result icpnsd_api_communities(icpnsd_req_t *r)
{
    icpns_snapshot_t *s = icpnsd_set_acquire(r->set);
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpnsd_json_snapshot_head(&b, s);
    icpns_buf_printf(&b, ",\"alpha\":%s,\"epsilon\":%s,\"items\":%u,\"communities\":[",
                     icpnsd_dnum(s->params.alpha).s, icpnsd_dnum(s->params.epsilon).s, s->items.n);
    for (uint32_t c = 0; c < s->comms.n; c++) {
        icpns_community_info_t ci;
        icpns_snapshot_community(s, c, &ci);
        icpns_buf_puts(&b, c ? ",{\"community\":" : "{\"community\":");
        icpns_buf_i64(&b, ci.community);
        icpns_buf_lit(&b, ",\"users\":");
        icpns_buf_u64(&b, ci.users);
        icpns_buf_lit(&b, ",\"support\":");
        icpns_buf_u64(&b, ci.support);
        icpns_buf_printf(&b, ",\"mass\":%s}", icpnsd_dnum(ci.mass).s);
    }
    icpns_buf_lit(&b, "]}");
    icpns_snapshot_unref(s);
    return icpnsd_reply_json(r, 200, &b);
}

/* GET /v1/items: the catalogue in dense order (ascending ids): a trainer's
 * item-embedding row k is the item at position k. */
enum MHD_Result icpnsd_api_items(icpnsd_req_t *r)
{
    icpns_snapshot_t *s = icpnsd_set_acquire(r->set);
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpns_buf_reserve(&b, 128 + (size_t)s->items.n * 8);
    icpnsd_json_snapshot_head(&b, s);
    icpns_buf_lit(&b, ",\"tables\":");
    icpnsd_json_str(&b, icpnsd_set_name(r->set));
    icpns_buf_lit(&b, ",\"count\":");
    icpns_buf_u64(&b, s->items.n);
    icpns_buf_lit(&b, ",\"items\":[");
    for (uint32_t k = 0; k < s->items.n; k++) {
        if (k)
            icpns_buf_lit(&b, ",");
        icpns_buf_i64(&b, s->items.ids[k]);
    }
    icpns_buf_lit(&b, "]}");
    r->has_fingerprint = true;
    r->fingerprint = s->fingerprint;
    icpns_snapshot_unref(s);
    return icpnsd_reply_json(r, 200, &b);
}

/* GET /v1/communities/{c}/items?top=N */
enum MHD_Result icpnsd_api_community_items(icpnsd_req_t *r)
{
    int64_t cid;
    if (!icpnsd_parse_id(r->param, strlen(r->param), &cid))
        return icpnsd_reply_error(r, ICPNSD_E_BAD_PATH, "community",
                                  "community ids are non-negative integers");
    const char *top_s = icpnsd_req_query(r, "top");
    int64_t top = 20;
    if (top_s && (!icpnsd_parse_id(top_s, strlen(top_s), &top) || top < 1 || top > 100000))
        return icpnsd_reply_error(r, ICPNSD_E_BAD_QUERY, "top",
                                  "'top' must be an integer in [1, 100000]");
    icpns_snapshot_t *s = icpnsd_set_acquire(r->set);
    uint32_t c = icpns_snapshot_community_find(s, cid);
    if (c == ICPNS_NONE) {
        icpns_snapshot_unref(s);
        return icpnsd_reply_error(r, ICPNSD_E_NO_SUCH_COMMUNITY, "community",
                                  "community %lld does not exist", (long long)cid);
    }
    /* The ranking is the library's (in-process bindings show the same). */
    icpns_community_info_t ci;
    icpns_snapshot_community(s, c, &ci);
    uint32_t want = ci.support < top ? ci.support : (uint32_t)top, shown = 0;
    icpns_item_rank_t *v = malloc((want ? want : 1) * sizeof(*v));
    if (!v || icpns_community_top_items(s, c, (uint32_t)top, v, &shown)) {
        free(v);
        icpns_snapshot_unref(s);
        return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory");
    }
    double eps = s->params.epsilon;
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpnsd_json_snapshot_head(&b, s);
    icpns_buf_lit(&b, ",\"community\":");
    icpns_buf_i64(&b, cid);
    icpns_buf_printf(&b, ",\"alpha\":%s,\"epsilon\":%s,\"support\":%u,\"items\":[",
                     icpnsd_dnum(s->params.alpha).s, icpnsd_dnum(eps).s, ci.support);
    for (uint32_t j = 0; j < shown; j++) {
        icpns_buf_puts(&b, j ? ",{\"item\":" : "{\"item\":");
        icpns_buf_i64(&b, v[j].item);
        icpns_buf_lit(&b, ",\"count\":");
        icpns_buf_u64(&b, v[j].count);
        icpns_buf_printf(&b, ",\"weight\":%s,\"probability\":%s}", icpnsd_dnum(v[j].weight).s,
                         icpnsd_dnum(v[j].probability).s);
    }
    icpns_buf_lit(&b, "]}");
    free(v);
    icpns_snapshot_unref(s);
    return icpnsd_reply_json(r, 200, &b);
}
