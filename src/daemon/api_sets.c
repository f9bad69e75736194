/*
 * api_sets.c - the table sets: GET /v1/tables (what serves), and the admin
 * routes that list, add and remove sets.  Additions load on the thread
 * pool; the request sleeps until the new set serves or is refused.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "frames.h"
#include "registry.h"
#include "reply.h"
#include "request.h"
#include "upload.h"

/* GET /v1/tables (public) and GET /admin/sets (with paths and caches). */
static enum MHD_Result list_sets(icpnsd_req_t *r, bool admin)
{
    icpnsd_registry_t *reg = r->env->reg;
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n = icpnsd_registry_list(reg, sets, ICPNSD_MAX_SETS);
    icpnsd_set_t *def = icpnsd_registry_get(reg, NULL, NULL);
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    uint64_t total = 0;
    icpns_buf_lit(&b, "{\"tables\":[");
    for (unsigned k = 0; k < n; k++) {
        icpnsd_set_t *set = sets[k];
        icpns_snapshot_t *s = icpnsd_set_acquire(set);
        unsigned entries = 0;
        uint64_t wbytes = 0;
        icpnsd_wcache_usage(s, &entries, &wbytes);
        total += s->bytes + wbytes;
        icpns_buf_puts(&b, k ? ",{\"name\":" : "{\"name\":");
        icpnsd_json_str(&b, icpnsd_set_name(set));
        icpns_buf_printf(&b, ",\"default\":%s,\"version\":%llu,\"fingerprint\":\"%016llx\","
                             "\"users\":%u,\"items\":%u,"
                             "\"interactions\":%llu,\"communities\":%u,\"alpha\":%s,"
                             "\"epsilon\":%s,\"beta\":%s",
                         set == def ? "true" : "false", (unsigned long long)s->version,
                         (unsigned long long)s->fingerprint, s->users.n, s->items.n,
                         (unsigned long long)s->n_interactions, s->comms.n,
                         icpnsd_dnum(s->params.alpha).s, icpnsd_dnum(s->params.epsilon).s,
                         icpnsd_dnum(s->params.beta).s);
        if (admin) {
            const icpnsd_wstats_t *ws = icpnsd_set_wstats(set);
            const char *dir = icpnsd_set_dir(set);
            icpns_buf_lit(&b, ",\"path\":");
            if (dir[0])
                icpnsd_json_str(&b, dir);
            else
                icpns_buf_lit(&b, "null");
            icpns_buf_printf(&b, ",\"bytes\":%zu,\"weights_cache\":{\"entries\":%u,\"bytes\":%llu,"
                                 "\"hits\":%llu,\"misses\":%llu,\"builds\":%llu,\"evictions\":%llu}",
                             s->bytes, entries, (unsigned long long)wbytes,
                             (unsigned long long)atomic_load(&ws->hits),
                             (unsigned long long)atomic_load(&ws->misses),
                             (unsigned long long)atomic_load(&ws->builds),
                             (unsigned long long)atomic_load(&ws->evictions));
        }
        icpns_buf_lit(&b, "}");
        icpns_snapshot_unref(s);
        icpnsd_set_unref(set);
    }
    icpns_buf_lit(&b, "]");
    if (admin)
        icpns_buf_printf(&b, ",\"bytes\":%llu,\"memory_budget\":%llu", (unsigned long long)total,
                         (unsigned long long)r->env->cfg->memory_budget);
    icpns_buf_lit(&b, "}");
    icpnsd_set_unref(def);
    return icpnsd_reply_json(r, 200, &b);
}

enum MHD_Result icpnsd_api_tables(icpnsd_req_t *r)
{
    return list_sets(r, false);
}

enum MHD_Result icpnsd_api_sets_list(icpnsd_req_t *r)
{
    return list_sets(r, true);
}

static void job_done(icpnsd_job_t *j)
{
    if (!icpnsd_req_done(j->user))
        icpnsd_job_free(j);
}

/* Answers a finished addition or removal. */
static enum MHD_Result finish(icpnsd_req_t *r)
{
    icpnsd_job_t *j = r->work;
    r->work = NULL;
    enum MHD_Result ret;
    if (icpnsd_err_failed(&j->err)) {
        ret = icpnsd_reply_err(r, &j->err);
    } else {
        icpns_buf_t b;
        icpns_buf_init(&b, 0);
        icpns_buf_lit(&b, "{\"name\":");
        icpnsd_json_str(&b, j->u.set.name);
        if (j->kind == ICPNSD_JOB_SET_ADD)
            icpns_buf_printf(&b, ",\"added\":true,\"version\":%llu,\"fingerprint\":\"%016llx\","
                                 "\"bytes\":%llu,\"build_seconds\":%.6f,\"stored\":%s}",
                             (unsigned long long)j->out.version,
                             (unsigned long long)j->out.fingerprint,
                             (unsigned long long)j->u.set.bytes, j->out.build_seconds,
                             j->u.set.upload ? "true" : "false");
        else
            icpns_buf_lit(&b, ",\"removed\":true}");
        ret = icpnsd_reply_json(r, j->kind == ICPNSD_JOB_SET_ADD ? 201 : 200, &b);
    }
    icpnsd_job_free(j);
    return ret;
}

/* A finished job whose connection ended before finish could run. */
static void job_free_cb(void *j)
{
    icpnsd_job_free(j);
}

static enum MHD_Result submit(icpnsd_req_t *r, icpnsd_job_t *j)
{
    j->done_cb = job_done;
    j->user = r;
    r->work = j;
    icpnsd_req_arm(r);
    icpnsd_registry_submit(r->env->reg, j);
    icpnsd_req_sleep(r, finish, job_free_cb);
    return MHD_YES;
}

static int tableset_param(void *t, const char *key, const char *value, icpnsd_err_t *e)
{
    return icpnsd_tableset_opt(t, key, value, e);
}

static int no_param(void *t, const char *key, const char *value, icpnsd_err_t *e)
{
    char shown[ICPNSD_QUOTE_BUF];
    (void)t;
    (void)value;
    return icpnsd_err_set(e, ICPNSD_E_CONFLICTING_PARAMETER, key, -1,
                          "with a JSON body the set's fields go in the body, not the query "
                          "string (%s)", icpnsd_quote(key, shown, sizeof(shown)));
}

/*
 * POST /admin/sets: {"name", "tables": DIR} loads a directory on this
 * host; {"name", "interactions", "communities", ...} or an ICPT frame
 * (?name=...) uploads the data, stored under STATE/sets/NAME first.
 */
enum MHD_Result icpnsd_api_sets_add(icpnsd_req_t *r)
{
    bool json = icpnsd_req_ctype_is(r, ICPNSD_CT_JSON);
    if (!json && !icpnsd_req_ctype_is(r, ICPNSD_CT_TABLESET))
        return icpnsd_reply_error(r, ICPNSD_E_UNSUPPORTED_MEDIA_TYPE, NULL,
                                  "send Content-Type: " ICPNSD_CT_JSON " or " ICPNSD_CT_TABLESET);
    icpnsd_job_t *j = icpnsd_job_new(ICPNSD_JOB_SET_ADD, "http");
    icpnsd_tableset_t *t = calloc(1, sizeof(*t));
    if (!j || !t) {
        icpnsd_job_free(j);
        free(t);
        return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory");
    }
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    int rc = icpnsd_req_query_each(r, json ? no_param : tableset_param, t, &e);
    if (!rc)
        rc = json ? icpnsd_sets_post_parse(r->body.p, r->body.len, t, j->u.set.dir,
                                           sizeof(j->u.set.dir), &e)
                  : icpnsd_frame_parse_tableset(r->body.p, r->body.len, t, &e);
    icpns_buf_free(&r->body);
    bool upload = !rc && !j->u.set.dir[0];
    if (upload)
        rc = icpnsd_tableset_check(t, &e);
    if (upload && !rc && !r->env->cfg->state_dir[0])
        rc = icpnsd_err_set(&e, ICPNSD_E_UPLOADS_DISABLED, NULL, -1,
                            "this daemon keeps no uploaded tables: start it with state_dir "
                            "(--state-dir DIR), or send {\"name\", \"tables\": DIR} for a "
                            "directory on its host");
    if (rc) {
        icpnsd_tableset_free(t);
        free(t);
        icpnsd_job_free(j);
        return icpnsd_reply_err(r, &e);
    }
    snprintf(j->u.set.name, sizeof(j->u.set.name), "%s", t->name);
    if (upload) {
        j->u.set.upload = t;
    } else {
        icpnsd_tableset_free(t);
        free(t);
    }
    return submit(r, j);
}

/* DELETE /admin/sets/{name} */
enum MHD_Result icpnsd_api_sets_remove(icpnsd_req_t *r)
{
    if (!icpnsd_set_name_ok(r->param))
        return icpnsd_reply_error(r, ICPNSD_E_BAD_PATH, "name",
                                  "a table-set name is 1..63 of [A-Za-z0-9._-]");
    icpnsd_job_t *j = icpnsd_job_new(ICPNSD_JOB_SET_REMOVE, "http");
    if (!j)
        return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory");
    snprintf(j->u.set.name, sizeof(j->u.set.name), "%s", r->param);
    return submit(r, j);
}
