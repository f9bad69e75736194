/*
 * state.c - publication of a table set's versions and the queue of jobs
 * that rebuild them (see state.h; the builds themselves are in rebuild.c,
 * the durable files in journal.c).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "state.h"

icpns_snapshot_t *icpnsd_state_acquire(icpnsd_state_t *st)
{
    pthread_mutex_lock(&st->lock);
    icpns_snapshot_t *s = st->current ? icpns_snapshot_ref(st->current) : NULL;
    pthread_mutex_unlock(&st->lock);
    return s;
}

icpns_snapshot_t *icpnsd_state_acquire_meta(icpnsd_state_t *st, icpnsd_meta_t *ret)
{
    pthread_mutex_lock(&st->lock);
    icpns_snapshot_t *s = st->current ? icpns_snapshot_ref(st->current) : NULL;
    *ret = st->meta;
    pthread_mutex_unlock(&st->lock);
    return s;
}

void icpnsd_state_meta(icpnsd_state_t *st, icpnsd_meta_t *ret)
{
    pthread_mutex_lock(&st->lock);
    *ret = st->meta;
    pthread_mutex_unlock(&st->lock);
}

static void publish(icpnsd_state_t *st, icpns_snapshot_t *s, const icpnsd_meta_t *meta)
{
    if (st->hooks.prepare)
        st->hooks.prepare(st->hooks.ctx, s);
    pthread_mutex_lock(&st->lock);
    icpns_snapshot_t *old = st->current;
    st->current = s;
    st->meta = *meta;
    atomic_store(&st->ready, true);
    pthread_mutex_unlock(&st->lock);
    /* Requests still holding the old version keep it alive. */
    icpns_snapshot_unref(old);
}

int icpnsd_state_init(icpnsd_state_t *st, uv_loop_t *loop, const char *name,
                      const char *tables, const icpnsd_state_hooks_t *hooks, icpnsd_err_t *e)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    st->loop = loop;
    st->hooks = *hooks;
    snprintf(st->name, sizeof(st->name), "%s", name);
    snprintf(st->tables, sizeof(st->tables), "%s", tables ? tables : "");
    icpns_error_t err;
    icpns_error_clear(&err);
    icpnsd_meta_t meta = {0};
    double t0 = icpns_now();
    icpns_snapshot_t *s = NULL;
    int rc = icpnsd_rebuild_load(st->name, st->tables, &hooks->default_params, &st->opts,
                                 &st->dataset, &meta, &err);
    if (!rc && st->tables[0]) {
        char prev[sizeof(st->opts.communities) + 8];
        icpnsd_remove_stale_temporaries(st->tables, st->opts.communities);
        snprintf(prev, sizeof(prev), "%s.prev", st->opts.communities);
        icpnsd_remove_stale_temporaries(st->tables, prev);
        icpnsd_remove_stale_temporaries(st->tables, ICPNS_VERSION_FILE);
    }
    if (rc) {
        icpnsd_rebuild_load_error(rc, &err, e);
        st->dataset = icpns_dataset_free(st->dataset);
        return -1;
    }
    /* Within what the memory budget leaves beside the sets already held. */
    uint64_t others = 0, budget = 0;
    size_t limit = hooks->budget ? hooks->budget(hooks->ctx, st, &others, &budget) : 0;
    rc = icpns_snapshot_build_limit(st->dataset, &st->opts.params, limit, &s, &err);
    if (rc) {
        icpnsd_rebuild_load_error(rc, &err, e);
        if (e->code == ICPNSD_E_MEMORY_BUDGET_EXCEEDED)
            snprintf(e->message, sizeof(e->message),
                     "%s (memory_budget = %llu minus the other sets' %llu bytes)", err.message,
                     (unsigned long long)budget, (unsigned long long)others);
        st->dataset = icpns_dataset_free(st->dataset);
        return -1;
    }
    uint64_t saved = 0, saved_fp = 0;
    if (st->tables[0] && icpnsd_version_load(st->tables, &saved, &saved_fp) == 0)
        s->version = saved_fp == s->fingerprint ? saved : saved + 1;
    else
        s->version = 1;
    st->next_version = s->version + 1;
    if (s->version != saved || saved_fp != s->fingerprint)
        icpnsd_version_save(st->tables, st->name, s->version, s->fingerprint);
    meta.version = s->version;
    meta.fingerprint = s->fingerprint;
    meta.built_at = time(NULL);
    meta.build_seconds = icpns_now() - t0;
    snprintf(meta.origin, sizeof(meta.origin), "startup");
    snprintf(meta.rebuild, sizeof(meta.rebuild), "full");
    meta.comms_rebuilt = s->comms.n;
    st->in_sync = true;
    publish(st, s, &meta);
    return 0;
}

void icpnsd_state_cancel(icpnsd_state_t *st)
{
    for (icpnsd_job_t *j = st->batch; j; j = j->next)
        if (j->kind == ICPNSD_JOB_CLUSTER)
            atomic_store(&j->u.cluster.cancel, true);
}

static void refuse_job(icpnsd_state_t *st, icpnsd_job_t *j);

void icpnsd_state_free(icpnsd_state_t *st)
{
    icpnsd_job_t *q = st->queue_head;
    st->queue_head = st->queue_tail = NULL;
    for (icpnsd_job_t *j = q, *next; j; j = next) {
        next = j->next;
        refuse_job(st, j);
    }
    icpns_snapshot_unref(st->current);
    st->current = NULL;
    icpns_dataset_free(st->dataset);
    st->dataset = NULL;
    pthread_mutex_destroy(&st->lock);
}

/* ---- builds --------------------------------------------------------------------- */

static void start_batch(icpnsd_state_t *st);
static void async_closed(uv_handle_t *h);

/* The thread pool: everything slow happens here. */
static void build_work(uv_work_t *w)
{
    icpnsd_background_thread();
    icpnsd_test_delay();
    icpnsd_state_t *st = w->data;
    icpnsd_rebuild_run(&st->rin, &st->rout);
}

/* Counts an answered reload or update in the set's counters. */
static void count_job(icpnsd_setstats_t *c, icpnsd_job_kind_t kind, bool ok)
{
    if (!c)
        return;
    int u = kind == ICPNSD_JOB_INTERACTIONS ? ICPNSD_UPDATE_INTERACTIONS
          : kind == ICPNSD_JOB_COMMUNITIES  ? ICPNSD_UPDATE_COMMUNITIES
          : kind == ICPNSD_JOB_CLUSTER      ? ICPNSD_UPDATE_CLUSTER
                                            : -1;
    if (kind == ICPNSD_JOB_RELOAD)
        atomic_fetch_add(ok ? &c->reloads_ok : &c->reloads_failed, 1);
    else if (u >= 0)
        atomic_fetch_add(ok ? &c->updates_ok[u] : &c->updates_failed[u], 1);
}

/* Back on the loop thread: publish and answer. */
static void build_done(uv_work_t *w, int status)
{
    icpnsd_state_t *st = w->data;
    icpnsd_rebuild_out_t *out = &st->rout;
    (void)status;
    icpns_snapshot_unref(st->rin.current);
    st->rin.current = NULL;
    st->in_sync = out->in_sync;
    icpnsd_meta_t meta = out->meta;
    bool built = out->built != NULL;
    if (out->built) {
        if (out->dataset) {
            icpns_dataset_free(st->dataset);
            st->dataset = out->dataset;
            out->dataset = NULL;
        }
        st->opts = out->opts;
        st->next_version = out->built->version + 1;
        snprintf(meta.origin, sizeof(meta.origin), "%s", st->batch ? st->batch->origin : "?");
        publish(st, out->built, &meta);
        if (st->hooks.stats)
            atomic_fetch_add(strcmp(meta.rebuild, "patch") ? &st->hooks.stats->rebuilds_full
                                                           : &st->hooks.stats->rebuilds_patch,
                             1);
        log_info("tables=%s snapshot version=%llu fingerprint=%016llx built (%s, %u communities) "
                 "in %.3fs users=%u items=%u interactions=%llu",
                 st->name, (unsigned long long)meta.version, (unsigned long long)meta.fingerprint,
                 meta.rebuild, meta.comms_rebuilt, meta.build_seconds, out->built->users.n,
                 out->built->items.n, (unsigned long long)out->built->n_interactions);
        out->built = NULL;
    } else {
        icpnsd_state_meta(st, &meta);
    }
    bool any_reload = false;
    for (icpnsd_job_t *j = st->batch, *next; j; j = next) {
        next = j->next;
        any_reload |= j->kind == ICPNSD_JOB_RELOAD;
        j->out.version = meta.version;
        j->out.fingerprint = meta.fingerprint;
        if (built) {
            j->out.build_seconds = out->meta.build_seconds;
            snprintf(j->out.rebuild, sizeof(j->out.rebuild), "%s", out->meta.rebuild);
            j->out.comms_rebuilt = out->meta.comms_rebuilt;
        }
        bool ok = !icpnsd_err_failed(&j->err);
        count_job(st->hooks.stats, j->kind, ok);
        if (j->kind == ICPNSD_JOB_RELOAD) {
            if (!ok)
                log_error("reload (%s) failed, version %llu keeps serving: %s", j->origin,
                          (unsigned long long)meta.version, j->err.message);
        } else {
            if (!ok)
                log_warn("update failed: %s: %s", icpnsd_code_name(j->err.code), j->err.message);
        }
        icpnsd_job_finish(j);
    }
    st->batch = NULL;
    st->building = false;
    if (st->closing) {
        if (!uv_is_closing((uv_handle_t *)&st->async))
            uv_close((uv_handle_t *)&st->async, async_closed);
        return;
    }
    if (any_reload) {
        char msg[192];
        snprintf(msg, sizeof(msg), "READY=1\nSTATUS=serving tables=%s version %llu (fingerprint %016llx)",
                 st->name, (unsigned long long)meta.version, (unsigned long long)meta.fingerprint);
        icpnsd_notify(msg);
    }
    start_batch(st);
}

static void start_batch(icpnsd_state_t *st)
{
    if (st->building)
        return;
    pthread_mutex_lock(&st->lock);
    icpnsd_job_t *batch = st->queue_head;
    st->queue_head = st->queue_tail = NULL;
    pthread_mutex_unlock(&st->lock);
    if (!batch)
        return;
    for (icpnsd_job_t *j = batch; j; j = j->next)
        if (j->kind == ICPNSD_JOB_RELOAD) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            char msg[96];
            snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
                     (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
            icpnsd_notify(msg);
            break;
        }
    st->building = true;
    st->batch = batch;
    icpnsd_meta_t meta;
    icpnsd_state_meta(st, &meta);
    st->rin = (icpnsd_rebuild_in_t){
        .name = st->name,
        .tables = st->tables,
        .dataset = st->dataset,
        .opts = st->opts,
        .default_params = st->hooks.default_params,
        .current = icpnsd_state_acquire(st),
        .in_sync = st->in_sync,
        .batch = batch,
        .next_version = st->next_version,
        .meta = meta,
        .budget = st->hooks.budget,
        .budget_ctx = st->hooks.ctx,
        .budget_self = st,
        .self_write_ms = &st->self_write_ms,
        .cluster_threads = st->hooks.cluster_threads,
    };
    st->work.data = st;
    uv_queue_work(st->loop, &st->work, build_work, build_done);
}

static void async_cb(uv_async_t *a)
{
    start_batch(a->data);
}

/* Answers a job that never ran (its set was removed). */
static void refuse_job(icpnsd_state_t *st, icpnsd_job_t *j)
{
    icpnsd_err_set(&j->err, ICPNSD_E_UNKNOWN_TABLES, NULL, -1, "the table set '%s' was removed",
                   st->name);
    icpnsd_job_finish(j);
}

void icpnsd_state_submit(icpnsd_state_t *st, icpnsd_job_t *job)
{
    job->next = NULL;
    pthread_mutex_lock(&st->lock);
    if (st->closed) {
        pthread_mutex_unlock(&st->lock);
        refuse_job(st, job);
        return;
    }
    if (st->queue_tail)
        st->queue_tail->next = job;
    else
        st->queue_head = job;
    st->queue_tail = job;
    pthread_mutex_unlock(&st->lock);
    uv_async_send(&st->async);
}

int icpnsd_state_start(icpnsd_state_t *st)
{
    st->async.data = st;
    return uv_async_init(st->loop, &st->async, async_cb);
}

static void async_closed(uv_handle_t *h)
{
    icpnsd_state_t *st = h->data;
    if (st->hooks.closed)
        st->hooks.closed(st->hooks.ctx, st);
}

void icpnsd_state_shutdown(icpnsd_state_t *st)
{
    pthread_mutex_lock(&st->lock);
    st->closed = true;
    icpnsd_job_t *q = st->queue_head;
    st->queue_head = st->queue_tail = NULL;
    pthread_mutex_unlock(&st->lock);
    for (icpnsd_job_t *j = q, *next; j; j = next) {
        next = j->next;
        refuse_job(st, j);
    }
    st->closing = true;
    if (!st->building && !uv_is_closing((uv_handle_t *)&st->async))
        uv_close((uv_handle_t *)&st->async, async_closed);
}
