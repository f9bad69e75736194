/*
 * api_admin.c - the admin routes of one table set: reload, updates,
 * clustering, and what serves.  Changes are jobs on the set's build queue;
 * the request sleeps (its connection suspended) until the job is done and
 * then answers with the version that serves the change.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "frames.h"
#include "registry.h"
#include "reply.h"
#include "request.h"
#include "tracker.h"
#include "upload.h"

/* The loop thread: the job is done; its request takes the result, or the
 * job is freed here when the request is gone. */
static void job_done(icpnsd_job_t *j)
{
    if (!icpnsd_req_done(j->user))
        icpnsd_job_free(j);
}

/* The answer of a successful job of a set (reload, update, cluster). */
static void render_result(const icpnsd_job_t *j, icpns_buf_t *b)
{
    icpns_buf_lit(b, "{\"version\":");
    icpns_buf_u64(b, j->out.version);
    icpns_buf_printf(b, ",\"fingerprint\":\"%016llx\"", (unsigned long long)j->out.fingerprint);
    const icpnsd_job_update_t *up = icpnsd_job_update((icpnsd_job_t *)j);
    if (up) {
        icpns_buf_lit(b, ",\"accepted\":");
        icpns_buf_u64(b, up->n);
    }
    if (j->kind == ICPNSD_JOB_CLUSTER) {
        const icpnsd_job_cluster_t *c = &j->u.cluster;
        icpns_buf_printf(b, ",\"dry_run\":%s,\"k\":%u,\"inertia\":%s,\"iterations\":%u,"
                             "\"best_restart\":%u,\"converged\":%s,\"cluster_seconds\":%.6f,"
                             "\"changed\":%u,\"moved\":%u,\"unassigned\":%u,\"sizes\":[",
                         c->dry_run ? "true" : "false", c->k, icpnsd_dnum(c->inertia).s,
                         c->iterations, c->best_restart, c->converged ? "true" : "false",
                         c->seconds, c->changed, c->moved, c->unassigned);
        for (uint32_t k = 0; k < c->k; k++)
            icpns_buf_printf(b, k ? ",%u" : "%u", c->sizes[k]);
        icpns_buf_lit(b, "]");
    }
    icpns_buf_printf(b, ",\"build_seconds\":%.6f,\"rebuild\":\"%s\",\"communities_rebuilt\":%u}",
                     j->out.build_seconds, j->out.rebuild[0] ? j->out.rebuild : "none",
                     j->out.comms_rebuilt);
}

/* Answers a finished job of a set. */
static enum MHD_Result finish_job(icpnsd_req_t *r)
{
    icpnsd_job_t *j = r->work;
    r->work = NULL;
    enum MHD_Result ret;
    if (icpnsd_err_failed(&j->err)) {
        ret = icpnsd_reply_err(r, &j->err);
    } else {
        icpns_buf_t b;
        icpns_buf_init(&b, 0);
        render_result(j, &b);
        ret = icpnsd_reply_json(r, 200, &b);
    }
    icpnsd_job_free(j);
    return ret;
}

static enum MHD_Result submit_tracked(icpnsd_req_t *r, icpnsd_job_t *j);

/* A finished job whose connection ended before finish_job could run. */
static void job_free_cb(void *j)
{
    icpnsd_job_free(j);
}

/* Hands @j to the request's set and sleeps until it is done. */
static enum MHD_Result submit(icpnsd_req_t *r, icpnsd_job_t *j)
{
    j->done_cb = job_done;
    j->user = r;
    r->work = j;
    icpnsd_req_arm(r);
    icpnsd_set_submit(r->set, j);
    icpnsd_req_sleep(r, finish_job, job_free_cb);
    return MHD_YES;
}

/* POST /admin/reload */
enum MHD_Result icpnsd_api_reload(icpnsd_req_t *r)
{
    icpnsd_job_t *j = icpnsd_job_new(ICPNSD_JOB_RELOAD, "http");
    if (!j)
        return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory");
    return submit(r, j);
}

/* The set a change goes to can take it: refused here, before the upload
 * is queued (a job, or a long k-means, would only fail at its end).  The
 * build thread checks again (the set may change meanwhile). */
static int changeable(icpnsd_req_t *r, icpnsd_err_t *e)
{
    if (!icpnsd_set_dir(r->set)[0])
        return icpnsd_err_set(e, ICPNSD_E_READ_ONLY_TABLES, NULL, -1,
                              "table set '%s' is the built-in dataset; start the daemon with "
                              "--tables DIR to accept updates", icpnsd_set_name(r->set));
    icpns_snapshot_t *s = icpnsd_set_acquire(r->set);
    bool from_file = s && s->pop_from_file;
    icpns_snapshot_unref(s);
    if (from_file)
        return icpnsd_err_set(e, ICPNSD_E_POPULARITY_FROM_FILE, NULL, -1,
                              "table set '%s' serves the popularity counts of %s "
                              "(popularity_source \"file\"): a change of interactions or "
                              "communities would not move them; change the files and reload "
                              "instead", icpnsd_set_name(r->set),
                              icpnsd_set_popularity_file(r->set));
    return 0;
}

/* POST /admin/interactions and PUT /admin/communities: JSON pair lists. */
static enum MHD_Result update(icpnsd_req_t *r, icpnsd_job_kind_t kind)
{
    bool comm = kind == ICPNSD_JOB_COMMUNITIES;
    if (!icpnsd_req_ctype_is(r, ICPNSD_CT_JSON))
        return icpnsd_reply_error(r, ICPNSD_E_UNSUPPORTED_MEDIA_TYPE, NULL,
                                  "send Content-Type: " ICPNSD_CT_JSON);
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    icpns_pair_t *pairs;
    size_t n;
    bool replace = false;
    char tables[ICPNSD_SET_NAME];
    if (icpnsd_parse_pairs(r->body.p, r->body.len, comm ? "communities" : "interactions",
                           comm ? "community" : "item", comm, &pairs, &n, &replace, tables,
                           sizeof(tables), &e))
        return icpnsd_reply_err(r, &e);
    /* The set the body names (updates to the wrong set are the worst
     * silent error: they must go where the caller said). */
    if (icpnsd_req_use_set_named(r, tables, &e) || changeable(r, &e)) {
        free(pairs);
        return icpnsd_reply_err(r, &e);
    }
    icpnsd_job_t *j = icpnsd_job_new(kind, "http");
    if (!j) {
        free(pairs);
        return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory");
    }
    j->u.update = (icpnsd_job_update_t){pairs, n, replace};
    return submit(r, j);
}

enum MHD_Result icpnsd_api_interactions(icpnsd_req_t *r)
{
    return update(r, ICPNSD_JOB_INTERACTIONS);
}

enum MHD_Result icpnsd_api_communities_update(icpnsd_req_t *r)
{
    return update(r, ICPNSD_JOB_COMMUNITIES);
}

static int cluster_param(void *q, const char *key, const char *value, icpnsd_err_t *e)
{
    return icpnsd_clusterreq_opt(q, key, value, e);
}

/* POST /admin/cluster: embeddings in (JSON, an ICPE frame or .npy), k-means
 * and the new communities on the build thread, the answer when published. */
enum MHD_Result icpnsd_api_cluster(icpnsd_req_t *r)
{
    bool json = icpnsd_req_ctype_is(r, ICPNSD_CT_JSON), frame = icpnsd_req_ctype_is(r, ICPNSD_CT_EMB);
    if (!json && !frame && !icpnsd_req_ctype_is(r, ICPNSD_CT_NPY))
        return icpnsd_reply_error(r, ICPNSD_E_UNSUPPORTED_MEDIA_TYPE, NULL,
                                  "send Content-Type: " ICPNSD_CT_JSON ", " ICPNSD_CT_EMB " or "
                                  ICPNSD_CT_NPY);
    icpnsd_clusterreq_t *q = malloc(sizeof(*q));
    icpnsd_job_t *j = icpnsd_job_new(ICPNSD_JOB_CLUSTER, "cluster");
    if (!q || !j) {
        free(q);
        icpnsd_job_free(j);
        return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory");
    }
    icpnsd_clusterreq_init(q);
    j->u.cluster.req = q;
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    /* The body first, then the query string: a query parameter overrides
     * the frame's header or the JSON field (proto/frames.md). */
    int rc = json ? icpnsd_clusterreq_parse_json(r->body.p, r->body.len, q, &e)
             : frame ? icpnsd_frame_parse_embeddings(r->body.p, r->body.len, q, &e)
                     : icpnsd_clusterreq_parse_npy(r->body.p, r->body.len, q, &e);
    if (!rc)
        rc = icpnsd_req_query_each(r, cluster_param, q, &e);
    if (!rc)
        rc = icpnsd_clusterreq_check(q, &e);
    if (!rc)
        rc = icpnsd_req_use_set_named(r, q->tables, &e);
    if (!rc)
        rc = changeable(r, &e);
    /* The upload is parsed: drop the raw body now, it may be large. */
    icpns_buf_free(&r->body);
    if (rc) {
        icpnsd_job_free(j);
        return icpnsd_reply_err(r, &e);
    }
    if (q->async)
        return submit_tracked(r, j);
    return submit(r, j);
}

/* The job goes on in the background: 202 with where to poll it. */
static enum MHD_Result submit_tracked(icpnsd_req_t *r, icpnsd_job_t *j)
{
    char id[ICPNSD_JOB_ID];
    if (!icpnsd_tracker_add(r->env->tracker, j, icpnsd_set_name(r->set), render_result, id)) {
        icpnsd_job_free(j);
        return icpnsd_reply_error(r, ICPNSD_E_TOO_MANY_JOBS, NULL,
                                  "%d jobs are queued or running; retry when one has ended "
                                  "(GET /admin/jobs), or ask without async", ICPNSD_TRACKED);
    }
    icpnsd_set_submit(r->set, j);
    snprintf(r->location, sizeof(r->location), "/admin/jobs/%s", id);
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpns_buf_lit(&b, "{\"job\":");
    icpnsd_json_str(&b, id);
    icpns_buf_lit(&b, ",\"kind\":\"cluster\",\"state\":\"queued\",\"tables\":");
    icpnsd_json_str(&b, icpnsd_set_name(r->set));
    icpns_buf_lit(&b, ",\"location\":");
    icpnsd_json_str(&b, r->location);
    icpns_buf_lit(&b, "}");
    return icpnsd_reply_json(r, 202, &b);
}

/* GET /admin/jobs and GET /admin/jobs/{id} */
enum MHD_Result icpnsd_api_jobs(icpnsd_req_t *r)
{
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpnsd_tracker_list(r->env->tracker, &b);
    return icpnsd_reply_json(r, 200, &b);
}

enum MHD_Result icpnsd_api_job(icpnsd_req_t *r)
{
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    if (!icpnsd_tracker_show(r->env->tracker, r->param, &b)) {
        icpns_buf_free(&b);
        return icpnsd_reply_error(r, ICPNSD_E_NO_SUCH_JOB, "job",
                                  "no job %.32s (jobs are kept for an hour after they end)",
                                  r->param);
    }
    return icpnsd_reply_json(r, 200, &b);
}

/* DELETE /admin/jobs/{id}: asks a running k-means to stop. */
enum MHD_Result icpnsd_api_job_cancel(icpnsd_req_t *r)
{
    if (!icpnsd_tracker_cancel(r->env->tracker, r->param))
        return icpnsd_reply_error(r, ICPNSD_E_NO_SUCH_JOB, "job", "no job %.32s", r->param);
    return icpnsd_api_job(r);
}

/* GET /admin/snapshot */
enum MHD_Result icpnsd_api_snapshot(icpnsd_req_t *r)
{
    icpnsd_meta_t m;
    icpns_snapshot_t *s = icpnsd_set_acquire_meta(r->set, &m);
    char when[64];
    struct tm tm;
    gmtime_r(&m.built_at, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpnsd_json_snapshot_head(&b, s);
    icpns_buf_lit(&b, ",\"built_at\":");
    icpnsd_json_str(&b, when);
    icpns_buf_printf(&b, ",\"build_seconds\":%.6f,\"rebuild\":\"%s\",\"communities_rebuilt\":%u,"
                         "\"origin\":",
                     m.build_seconds, m.rebuild, m.comms_rebuilt);
    icpnsd_json_str(&b, m.origin);
    icpns_buf_lit(&b, ",\"name\":");
    icpnsd_json_str(&b, icpnsd_set_name(r->set));
    icpns_buf_lit(&b, ",\"tables\":");
    const char *dir = icpnsd_set_dir(r->set);
    if (dir[0])
        icpnsd_json_str(&b, dir);
    else
        icpns_buf_lit(&b, "null");
    icpns_buf_printf(&b, ",\"users\":%u,\"items\":%u,\"interactions\":%llu,\"communities\":%u,"
                         "\"bytes\":%zu,\"alpha\":%s,\"epsilon\":%s,\"beta\":%s,\"sources\":[",
                     s->users.n, s->items.n, (unsigned long long)s->n_interactions, s->comms.n,
                     s->bytes, icpnsd_dnum(s->params.alpha).s, icpnsd_dnum(s->params.epsilon).s,
                     icpnsd_dnum(s->params.beta).s);
    for (int k = 0; k < m.n_sources; k++) {
        icpns_buf_puts(&b, k ? ",{\"path\":" : "{\"path\":");
        icpnsd_json_str(&b, m.sources[k].path);
        icpns_buf_printf(&b, ",\"bytes\":%llu,\"fnv1a64\":\"%016llx\"}",
                         (unsigned long long)m.sources[k].bytes,
                         (unsigned long long)m.sources[k].fnv1a);
    }
    icpns_buf_lit(&b, "]}");
    icpns_snapshot_unref(s);
    return icpnsd_reply_json(r, 200, &b);
}
