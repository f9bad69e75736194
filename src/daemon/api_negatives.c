/*
 * api_negatives.c - POST /v1/negatives: parse (JSON or a frame), choose the
 * table set and its snapshot (one for the whole request), get the weights
 * (the set's own, or another setting from the cache, perhaps waiting for
 * its build), sample, encode.  Small requests are sampled on the HTTP
 * thread; large ones on the compute pool.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "frames.h"
#include "metrics.h"
#include "pool.h"
#include "rebuild.h"
#include "registry.h"
#include "reply.h"
#include "request.h"

/* Requests asking this many negatives or more are sampled on the compute pool. */
#define OFFLOAD_MIN_NEGATIVES 8192

/* Each thread's sampler scratch memory, freed when the thread ends. */
static pthread_key_t work_key;
static pthread_once_t work_once = PTHREAD_ONCE_INIT;

static void free_work(void *p)
{
    icpns_work_free(p);
}

static void make_work_key(void)
{
    pthread_key_create(&work_key, free_work);
}

static icpns_work_t *thread_work(void)
{
    pthread_once(&work_once, make_work_key);
    icpns_work_t *w = pthread_getspecific(work_key);
    if (!w) {
        w = icpns_work_new();
        if (w)
            pthread_setspecific(work_key, w);
    }
    return w;
}

/* One request's sampling and encoding. */
typedef struct neg_task {
    icpnsd_task_t task;        /* on the compute pool */
    icpnsd_req_t *r;
    icpnsd_negreq_t q;         /* owned (users) */
    icpns_snapshot_t *s;       /* a reference */
    const icpns_weights_t *w;
    icpnsd_wentry_t *went;     /* a reference, or NULL */
    bool frame_out;
    const char *set_name;      /* valid while r->set is held */
    icpnsd_err_t err;
    icpns_buf_t out;
} neg_task_t;

static void task_free(neg_task_t *t)
{
    icpnsd_wentry_unref(t->went);
    icpns_snapshot_unref(t->s);
    icpnsd_negreq_free(&t->q);
    icpns_buf_free(&t->out);
    free(t);
}

static icpnsd_code_t sample_code(int e)
{
    switch (e) {
    case ICPNS_EUNKNOWN_USER: return ICPNSD_E_UNKNOWN_USER;
    case ICPNS_EINFEASIBLE: return ICPNSD_E_INFEASIBLE;
    case ICPNS_ENOCOMMUNITY: return ICPNSD_E_NO_COMMUNITY;
    case ICPNS_ENOMEM: return ICPNSD_E_OUT_OF_MEMORY;
    default: return ICPNSD_E_SAMPLING_FAILED;
    }
}

/* The JSON answer of a sampled request. */
static void encode_json(icpns_buf_t *b, const neg_task_t *t, const uint32_t *items,
                        const double *probs, const uint32_t *fallbacks, uint32_t nfb,
                        const uint32_t *substituted, uint32_t nsub)
{
    const icpnsd_negreq_t *q = &t->q;
    const icpns_snapshot_t *s = t->s;
    const int64_t *ids = s->items.ids;
    uint64_t cols = (uint64_t)q->n * q->m;
    icpns_buf_reserve(b, 256 + (size_t)q->rows * cols * 8);
    icpnsd_json_snapshot_head(b, s);
    icpns_buf_lit(b, ",\"tables\":");
    icpnsd_json_str(b, t->set_name);
    icpns_buf_printf(b, ",\"alpha\":%s,\"epsilon\":%s,\"beta\":%s", icpnsd_dnum(t->w->params.alpha).s,
                     icpnsd_dnum(t->w->params.epsilon).s, icpnsd_dnum(t->w->params.beta).s);
    icpns_buf_lit(b, ",\"strategy\":");
    if (q->mixed) {
        icpns_buf_lit(b, "[");
        for (int k = 0; k < q->nparts; k++) {
            icpns_buf_puts(b, k ? ",{\"strategy\":" : "{\"strategy\":");
            icpnsd_json_str(b, icpns_strategy_name(q->parts[k].strategy));
            icpns_buf_lit(b, ",\"n\":");
            icpns_buf_u64(b, q->parts[k].n);
            icpns_buf_lit(b, "}");
        }
        icpns_buf_lit(b, "]");
    } else {
        icpnsd_json_str(b, icpns_strategy_name(q->parts[0].strategy));
    }
    icpns_buf_lit(b, ",\"n\":");
    icpns_buf_u64(b, q->n);
    icpns_buf_lit(b, ",\"candidates\":");
    icpns_buf_u64(b, q->m);
    icpns_buf_lit(b, ",\"seed\":");
    icpns_buf_i64(b, (int64_t)q->seed);
    icpns_buf_lit(b, ",\"negatives\":[");
    for (uint32_t row = 0; row < q->rows; row++) {
        icpns_buf_puts(b, row ? ",[" : "[");
        for (uint64_t j = 0; j < cols; j++) {
            if (j)
                icpns_buf_lit(b, ",");
            icpns_buf_i64(b, ids[items[(size_t)row * cols + j]]);
        }
        icpns_buf_lit(b, "]");
    }
    icpns_buf_lit(b, "]");
    if (probs) {
        icpns_buf_lit(b, ",\"probabilities\":[");
        for (uint32_t row = 0; row < q->rows; row++) {
            icpns_buf_puts(b, row ? ",[" : "[");
            for (uint64_t j = 0; j < cols; j++)
                icpns_buf_printf(b, j ? ",%.9g" : "%.9g", probs[(size_t)row * cols + j]);
            icpns_buf_lit(b, "]");
        }
        icpns_buf_lit(b, "]");
    }
    icpns_buf_lit(b, ",\"fallbacks\":[");
    for (uint32_t k = 0; k < nfb; k++) {
        if (k)
            icpns_buf_lit(b, ",");
        icpns_buf_u64(b, fallbacks[k]);
    }
    icpns_buf_lit(b, "],\"substituted\":[");
    for (uint32_t k = 0; k < nsub; k++) {
        if (k)
            icpns_buf_lit(b, ",");
        icpns_buf_u64(b, substituted[k]);
    }
    icpns_buf_lit(b, "]}");
}

/* The ICPR answer of a sampled request. */
static void encode_frame(icpns_buf_t *b, const neg_task_t *t, const uint32_t *items,
                         const double *probs, const uint32_t *fallbacks, uint32_t nfb,
                         uint32_t nsub)
{
    const icpnsd_negreq_t *q = &t->q;
    uint32_t cols = q->n * q->m;
    size_t cells = (size_t)q->rows * cols;
    size_t bytes = icpnsd_frame_negatives_size(q->rows, cols, probs != NULL, nfb);
    if (!icpns_buf_reserve(b, bytes))
        return;
    unsigned char *p = (unsigned char *)b->p;
    icpnsd_frame_negatives_header(p, t->s->version, q->rows, cols, probs != NULL, nfb, nsub);
    unsigned char *o = p + ICPNSD_FRAME_RESP_HEADER;
    o = icpnsd_frame_put_items(o, items, cells, t->s->items.ids);
    if (probs)
        o = icpnsd_frame_put_probs(o, probs, cells);
    icpnsd_frame_put_u32(o, fallbacks, nfb);
    b->len = bytes;
}

/* Samples and encodes the answer of @t (any thread). */
static void run_task(neg_task_t *t)
{
    const icpnsd_negreq_t *q = &t->q;
    const icpns_snapshot_t *s = t->s;
    uint64_t cols = (uint64_t)q->n * q->m;
    icpns_work_t *work = thread_work();
    size_t cells = (size_t)q->rows * cols;
    uint32_t *items = malloc((cells ? cells : 1) * sizeof(*items));
    double *probs = q->probs ? malloc((cells ? cells : 1) * sizeof(*probs)) : NULL;
    uint32_t *fallbacks = malloc((q->rows ? q->rows : 1) * sizeof(*fallbacks));
    uint32_t *substituted = malloc((q->rows ? q->rows : 1) * sizeof(*substituted));
    if (!work || !items || (q->probs && !probs) || !fallbacks || !substituted) {
        icpnsd_err_set(&t->err, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for %zu negatives",
                       cells);
        goto out;
    }
    icpns_sample_stats_t stats = {0};
    uint32_t nfb = 0, nsub = 0;
    uint64_t per_strategy[3] = {0};
    for (uint32_t row = 0; row < q->rows; row++) {
        uint32_t u = icpns_idmap_find(&s->users, q->users[row]);
        uint32_t slot = 0;
        unsigned rf_row = 0;
        for (int k = 0; k < q->nparts; k++) {
            uint32_t count = q->parts[k].n * q->m;
            unsigned rf = 0;
            size_t off = (size_t)row * cols + slot;
            int e = icpns_sample_row(s, t->w, work, u, q->parts[k].strategy, q->flags, q->seed, row,
                                     slot, count, items + off, probs ? probs + off : NULL, &rf,
                                     &stats);
            if (e) {
                long long id = (long long)q->users[row];
                const char *msg =
                    e == ICPNS_EUNKNOWN_USER
                        ? "user %lld is not in the tables (set \"unknown_users\": \"popularity\" "
                          "to serve it by PNS)"
                    : e == ICPNS_EINFEASIBLE
                        ? "user %lld has interacted with every item: it has no negatives"
                    : e == ICPNS_ENOCOMMUNITY
                        ? "user %lld has no community (set \"unknown_users\": \"popularity\" to "
                          "serve it by PNS)"
                        : "user %lld: sampling failed";
                char text[256];
                snprintf(text, sizeof(text), msg, id);
                icpnsd_err_set(&t->err, sample_code(e), "users", row, "%s", text);
                goto out;
            }
            rf_row |= rf;
            per_strategy[q->parts[k].strategy] += count;
            slot += count;
        }
        if (rf_row & ICPNS_ROW_FALLBACK)
            fallbacks[nfb++] = row;
        if (rf_row & ICPNS_ROW_SUBSTITUTED)
            substituted[nsub++] = row;
    }
    for (int k = 0; k < 3; k++)
        atomic_fetch_add_explicit(&icpnsd_metrics.negatives[k], per_strategy[k], memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.draws, stats.draws, memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.rejections, stats.rejections, memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.residual_rows, stats.residual_rows, memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.fallback_rows, nfb, memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.substituted_rows, nsub, memory_order_relaxed);
    icpns_buf_init(&t->out, 0);
    if (t->frame_out)
        encode_frame(&t->out, t, items, probs, fallbacks, nfb, nsub);
    else
        encode_json(&t->out, t, items, probs, fallbacks, nfb, substituted, nsub);
out:
    free(items);
    free(probs);
    free(fallbacks);
    free(substituted);
}

/* Sends what run_task produced (the connection's thread). */
static enum MHD_Result finish_task(icpnsd_req_t *r, neg_task_t *t)
{
    enum MHD_Result ret;
    if (icpnsd_err_failed(&t->err)) {
        ret = icpnsd_reply_err(r, &t->err);
    } else {
        r->has_fingerprint = true;
        r->fingerprint = t->s->fingerprint;
        ret = t->frame_out ? icpnsd_reply(r, 200, ICPNSD_CT_FRAME, &t->out)
                           : icpnsd_reply_json(r, 200, &t->out);
    }
    task_free(t);
    return ret;
}

static enum MHD_Result resume_task(icpnsd_req_t *r)
{
    neg_task_t *t = r->work;
    r->work = NULL;
    return finish_task(r, t);
}

static void pool_run(icpnsd_task_t *task)
{
    neg_task_t *t = (neg_task_t *)task;
    icpnsd_test_delay();
    if (icpnsd_req_wanted(t->r))
        run_task(t);
    if (!icpnsd_req_done(t->r))
        task_free(t);
}

/* The pool stops before running @task (shutdown). */
static void pool_cancel(icpnsd_task_t *task)
{
    neg_task_t *t = (neg_task_t *)task;
    icpnsd_err_set(&t->err, ICPNSD_E_SHUTTING_DOWN, NULL, -1,
                   "the daemon is shutting down; retry on another replica");
    if (!icpnsd_req_done(t->r))
        task_free(t);
}

/* Wakes a request that waited for a weight setting (any thread). */
static void wake_request(void *arg)
{
    icpnsd_req_done(arg);
}

static int query_param(void *q, const char *key, const char *value, icpnsd_err_t *e)
{
    return icpnsd_negreq_query(q, key, value, e);
}

/* The weights of the request's setting over @s: the snapshot's own, or a
 * cached other setting (*@went referenced).  1: the request sleeps until
 * the setting is built; -1: an error in @e. */
static int get_weights(icpnsd_req_t *r, icpns_snapshot_t *s, const icpnsd_negreq_t *q,
                       bool resumed, const icpns_weights_t **ret, icpnsd_wentry_t **went,
                       icpnsd_err_t *e)
{
    *ret = s->weights;
    *went = NULL;
    if (!q->has_alpha && !q->has_epsilon && !q->has_beta)
        return 0;
    icpns_params_t p = s->params;
    if (q->has_alpha)
        p.alpha = q->alpha;
    if (q->has_epsilon)
        p.epsilon = q->epsilon;
    if (q->has_beta)
        p.beta = q->beta;
    icpns_error_t perr;
    if (icpns_params_check(&p, &perr))
        return icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, perr.field, -1, "%s", perr.message);
    if (p.alpha == s->params.alpha && p.epsilon == s->params.epsilon && p.beta == s->params.beta)
        return 0;
    char msg[300] = "";
    icpnsd_waiter_t *waiter = NULL;
    if (r->env->cfg->weights_wait) {
        waiter = malloc(sizeof(*waiter));
        if (waiter) {
            waiter->wake = wake_request;
            waiter->arg = r;
            icpnsd_req_arm(r);
        }
    }
    int g = icpnsd_set_weights(r->set, s, &p, waiter, resumed, went, msg, sizeof(msg));
    if (g == ICPNSD_WGET_WAITING)
        return 1;
    if (waiter)
        icpnsd_req_disarm(r); /* the cache freed the waiter */
    switch (g) {
    case ICPNSD_WGET_READY:
        *ret = icpnsd_wentry_weights(*went);
        return 0;
    case ICPNSD_WGET_DISABLED:
        return icpnsd_err_set(e, ICPNSD_E_CUSTOM_WEIGHTS_DISABLED, "alpha", -1,
                              "this daemon serves only each set's own alpha, epsilon and beta "
                              "(weights_cache_size = 0)");
    case ICPNSD_WGET_FAILED:
        return icpnsd_err_set(e, ICPNSD_E_WEIGHTS_FAILED, NULL, -1, "%s", msg);
    case ICPNSD_WGET_NOMEM:
        return icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for weights");
    default:
        return icpnsd_err_set(e, ICPNSD_E_WEIGHTS_BUILDING, NULL, -1, "%s", msg);
    }
}

enum MHD_Result icpnsd_api_negatives(icpnsd_req_t *r)
{
    icpnsd_env_t *env = r->env;
    const icpnsd_config_t *cfg = env->cfg;
    icpnsd_negreq_t q = {0};
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    bool frame_in = icpnsd_req_ctype_is(r, ICPNSD_CT_FRAME);
    if (!frame_in && !icpnsd_req_ctype_is(r, ICPNSD_CT_JSON))
        return icpnsd_reply_error(r, ICPNSD_E_UNSUPPORTED_MEDIA_TYPE, NULL,
                                  "send Content-Type: " ICPNSD_CT_JSON " or " ICPNSD_CT_FRAME);
    uint64_t fallback_seed =
        icpns_mix64(atomic_fetch_add(&env->seeds, 1) ^ (uint64_t)time(NULL)) >> 11;
    if ((frame_in ? icpnsd_frame_parse_negatives(cfg, r->body.p, r->body.len, &q, &e)
                  : icpnsd_negreq_parse_json(cfg, env->default_strategy, fallback_seed, r->body.p,
                                             r->body.len, &q, &e)) ||
        icpnsd_req_query_each(r, query_param, &q, &e)) {
        icpnsd_negreq_free(&q);
        return icpnsd_reply_err(r, &e);
    }
    const char *accept = icpnsd_req_header(r, "Accept");
    bool frame_out = (accept && strstr(accept, ICPNSD_CT_FRAME)) ||
                     (frame_in && !(accept && strstr(accept, ICPNSD_CT_JSON)));
    uint64_t cols = (uint64_t)q.n * q.m;
    if ((uint64_t)q.rows * cols > cfg->max_negatives) {
        icpnsd_negreq_free(&q);
        return icpnsd_reply_error(r, ICPNSD_E_LIMIT_EXCEEDED, "users",
                                  "%llu negatives in one request, above the limit of %llu",
                                  (unsigned long long)((uint64_t)q.rows * cols),
                                  (unsigned long long)cfg->max_negatives);
    }
    /* The table set: the body's "tables" (or ?tables=). */
    if (!r->set && icpnsd_req_use_set(r, q.tables, &e)) {
        icpnsd_negreq_free(&q);
        return icpnsd_reply_err(r, &e);
    }
    /* One snapshot for the whole request (after a wait, the one waited on). */
    bool resumed = r->wait_snap != NULL;
    icpns_snapshot_t *s = resumed ? r->wait_snap : icpnsd_set_acquire(r->set);
    r->wait_snap = NULL;
    const icpns_weights_t *w;
    icpnsd_wentry_t *went;
    int g = get_weights(r, s, &q, resumed, &w, &went, &e);
    if (g == 1) {
        /* Sleep until the build wakes us; then this runs again on the same
         * snapshot. */
        r->wait_snap = s;
        icpnsd_negreq_free(&q);
        icpnsd_req_sleep(r, icpnsd_api_negatives);
        return MHD_YES;
    }
    if (g < 0) {
        icpns_snapshot_unref(s);
        icpnsd_negreq_free(&q);
        return icpnsd_reply_err(r, &e);
    }
    neg_task_t *t = calloc(1, sizeof(*t));
    if (!t) {
        icpnsd_wentry_unref(went);
        icpns_snapshot_unref(s);
        icpnsd_negreq_free(&q);
        return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory");
    }
    t->r = r;
    t->q = q;
    t->s = s;
    t->w = w;
    t->went = went;
    t->frame_out = frame_out;
    t->set_name = icpnsd_set_name(r->set);
    icpnsd_err_clear(&t->err);
    icpns_buf_init(&t->out, 0);
    /* Large requests go to the compute pool, so that two connections that
     * happen to share an HTTP thread still use two cores. */
    if ((uint64_t)q.rows * cols >= OFFLOAD_MIN_NEGATIVES && icpnsd_pool_threads(env->pool)) {
        r->work = t;
        t->task.fn = pool_run;
        t->task.cancel = pool_cancel;
        icpnsd_req_arm(r);
        icpnsd_pool_submit(env->pool, &t->task);
        icpnsd_req_sleep(r, resume_task);
        return MHD_YES;
    }
    run_task(t);
    return finish_task(r, t);
}
