/*
 * api_negatives.c - POST /v1/negatives: parse (JSON or a frame), choose the
 * table set and its snapshot (one for the whole request), get the weights
 * (the set's own, or another setting from the cache, perhaps waiting for
 * its build), admit the answer within answers_in_flight_bytes, then sample
 * and encode it (answer.c).  Small answers are made on the HTTP thread,
 * larger ones on the compute pool, and answers above answer_buffer_bytes
 * are streamed: drawn a piece at a time as the client reads.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "answer.h"
#include "frames.h"
#include "log.h"
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

/* Streamed answers are produced this many bytes at a time. */
#define STREAM_PIECE (256 * 1024)
/* What a streamed answer holds: a piece, a block of draws, its lists. */
#define STREAM_RESERVE (2 * STREAM_PIECE + 16384 * 12)

/* A whole answer: sampled here or on the compute pool, then sent. */
typedef struct neg_task {
    icpnsd_task_t task;        /* on the compute pool */
    icpnsd_req_t *r;
    icpnsd_env_t *env;         /* r->env, which outlives r: task_free may run
                                * after icpnsd_req_done let r go */
    icpnsd_answer_t *a;
    bool frame_out;
    uint64_t reserved;         /* bytes taken from answers_in_flight_bytes */
    uint64_t fingerprint;
    icpnsd_err_t err;
    icpns_buf_t out;
} neg_task_t;

static void task_free(neg_task_t *t)
{
    if (t->reserved)
        icpnsd_inflight_give(t->env, t->reserved);
    icpnsd_answer_free(t->a);
    icpns_buf_free(&t->out);
    free(t);
}

/* Samples and encodes the whole answer of @t (any thread). */
static void run_task(neg_task_t *t)
{
    icpns_work_t *work = thread_work();
    int rc = work ? icpnsd_answer_next(t->a, work, &t->out, SIZE_MAX) : ICPNS_ENOMEM;
    if (rc != 0)
        icpnsd_err_set(&t->err, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for the answer");
    /* The answer's scratch is no longer needed; its bytes stay reserved
     * until the response is freed (the encoded answer is most of them). */
    icpnsd_answer_free(t->a);
    t->a = NULL;
}

/* Sends what run_task produced (the connection's thread). */
static enum MHD_Result finish_task(icpnsd_req_t *r, neg_task_t *t)
{
    enum MHD_Result ret;
    if (icpnsd_err_failed(&t->err)) {
        ret = icpnsd_reply_err(r, &t->err);
    } else {
        r->has_fingerprint = true;
        r->fingerprint = t->fingerprint;
        /* The reservation goes with the buffer: released when it is freed. */
        ret = icpnsd_reply_reserved(r, 200, t->frame_out ? ICPNSD_CT_FRAME : ICPNSD_CT_JSON,
                                    &t->out, t->reserved);
        t->reserved = 0;
    }
    task_free(t);
    return ret;
}

/* A finished task whose connection ended before resume_task could run. */
static void task_free_cb(void *t)
{
    task_free(t);
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

/* ---- streamed answers ---------------------------------------------------------- */

typedef struct neg_stream {
    icpnsd_env_t *env;
    icpnsd_answer_t *a;
    icpns_buf_t piece;
    size_t off;                /* bytes of piece already sent */
    bool done;
} neg_stream_t;

/* libmicrohttpd asks for the next bytes (the connection's thread): the
 * next piece is drawn and encoded only when the last one was sent, so a
 * client that reads slowly holds one piece, whatever the answer's size. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    neg_stream_t *st = cls;
    (void)pos;
    if (st->off == st->piece.len) {
        if (st->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        st->piece.len = 0;
        st->off = 0;
        icpns_work_t *work = thread_work();
        int rc = work ? icpnsd_answer_next(st->a, work, &st->piece, STREAM_PIECE) : ICPNS_ENOMEM;
        if (rc < 0) {
            /* Too late for an error answer: the connection is closed, so
             * the client sees a cut answer, never a wrong one. */
            log_warn("a streamed answer stopped: %s", icpns_strerror(rc));
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        st->done = rc == 0;
        if (st->piece.len == 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = st->piece.len - st->off < max ? st->piece.len - st->off : max;
    memcpy(buf, st->piece.p + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    neg_stream_t *st = cls;
    icpnsd_answer_free(st->a);
    icpns_buf_free(&st->piece);
    icpnsd_inflight_give(st->env, STREAM_RESERVE);
    free(st);
}

static enum MHD_Result stream(icpnsd_req_t *r, icpnsd_answer_t *a, bool frame_out)
{
    neg_stream_t *st = calloc(1, sizeof(*st));
    if (!st) {
        icpnsd_answer_free(a);
        icpnsd_inflight_give(r->env, STREAM_RESERVE);
        return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory for the answer");
    }
    st->env = r->env;
    st->a = a;
    icpns_buf_init(&st->piece, 4 * STREAM_PIECE);
    atomic_fetch_add(&icpnsd_metrics.answers_streamed, 1);
    r->has_fingerprint = true;
    r->fingerprint = icpnsd_answer_snapshot(a)->fingerprint;
    uint64_t size = icpnsd_answer_size(a);
    return icpnsd_reply_stream(r, 200, frame_out ? ICPNSD_CT_FRAME : ICPNSD_CT_JSON,
                               size ? size : MHD_SIZE_UNKNOWN, stream_read, st, stream_free);
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
    case ICPNSD_WGET_BUDGET:
        return icpnsd_err_set(e, ICPNSD_E_MEMORY_BUDGET_EXCEEDED, "alpha", -1, "%s", msg);
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
    int choice = icpnsd_accept_choice(icpnsd_req_header(r, "Accept"), frame_in);
    if (choice < 0) {
        icpnsd_negreq_free(&q);
        return icpnsd_reply_error(r, ICPNSD_E_NOT_ACCEPTABLE, NULL,
                                  "the Accept header refuses both " ICPNSD_CT_JSON " and "
                                  ICPNSD_CT_FRAME);
    }
    bool frame_out = choice == 1;
    uint64_t cells = (uint64_t)q.rows * q.n * q.m;
    if (cells > cfg->max_negatives) {
        icpnsd_negreq_free(&q);
        return icpnsd_reply_error(r, ICPNSD_E_LIMIT_EXCEEDED, "users",
                                  "%llu negatives in one request, above the limit of %llu",
                                  (unsigned long long)cells,
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
        icpnsd_req_sleep(r, icpnsd_api_negatives, NULL);
        return MHD_YES;
    }
    if (g < 0) {
        icpns_snapshot_unref(s);
        icpnsd_negreq_free(&q);
        return icpnsd_reply_err(r, &e);
    }
    /* Admission: what the answer will hold, before anything is allocated.
     * Answers above answer_buffer_bytes are streamed (a piece at a time
     * as the client reads) and hold little. */
    uint64_t need = icpnsd_answer_estimate(&q, s, frame_out);
    bool streamed = need > cfg->answer_buffer_bytes;
    uint64_t take = streamed ? STREAM_RESERVE : need;
    if (!icpnsd_inflight_take(env, take)) {
        icpnsd_wentry_unref(went);
        icpns_snapshot_unref(s);
        icpnsd_negreq_free(&q);
        atomic_fetch_add(&icpnsd_metrics.answers_refused, 1);
        return icpnsd_reply_error(r, ICPNSD_E_ANSWERS_IN_FLIGHT, NULL,
                                  "the answers in flight hold %llu of answers_in_flight_bytes = "
                                  "%llu; this one needs %llu: retry shortly",
                                  (unsigned long long)atomic_load(&env->answer_bytes),
                                  (unsigned long long)cfg->answers_in_flight_bytes,
                                  (unsigned long long)take);
    }
    icpnsd_answer_t *a = icpnsd_answer_new(&q, s, w, went, icpnsd_set_name(r->set),
                                           icpnsd_set_stats(r->set), frame_out, !streamed, &e);
    uint64_t fingerprint = s->fingerprint;
    icpns_snapshot_unref(s);
    if (!a) {
        icpnsd_inflight_give(env, take);
        return icpnsd_reply_err(r, &e);
    }
    if (streamed) {
        icpns_buf_free(&r->body); /* parsed: the answer has what it needs */
        return stream(r, a, frame_out);
    }
    neg_task_t *t = calloc(1, sizeof(*t));
    if (!t) {
        icpnsd_answer_free(a);
        icpnsd_inflight_give(env, take);
        return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory");
    }
    t->r = r;
    t->env = env;
    t->a = a;
    t->frame_out = frame_out;
    t->reserved = take;
    t->fingerprint = fingerprint;
    icpnsd_err_clear(&t->err);
    icpns_buf_init(&t->out, 0);
    /* Large requests go to the compute pool, so that two connections that
     * happen to share an HTTP thread still use two cores. */
    if (cells >= OFFLOAD_MIN_NEGATIVES && icpnsd_pool_threads(env->pool)) {
        r->work = t;
        t->task.fn = pool_run;
        t->task.cancel = pool_cancel;
        icpnsd_req_arm(r);
        icpnsd_pool_submit(env->pool, &t->task);
        icpnsd_req_sleep(r, resume_task, task_free_cb);
        return MHD_YES;
    }
    run_task(t);
    return finish_task(r, t);
}
