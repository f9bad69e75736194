/* tracker.c - background jobs a client polls (see tracker.h). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reply.h"
#include "tracker.h"

#define KEEP_SECONDS 3600

typedef struct entry {
    char id[ICPNSD_JOB_ID];
    char set[ICPNSD_SET_NAME];
    icpnsd_job_kind_t kind;
    icpnsd_job_t *job;           /* while it runs; NULL once it ended */
    icpnsd_render_fn render;
    icpnsd_tracker_t *tracker;
    time_t created, ended;
    bool failed;
    icpnsd_err_t err;
    char *result;                /* rendered JSON, once it succeeded */
} entry_t;

struct icpnsd_tracker {
    pthread_mutex_t lock;
    entry_t *e[ICPNSD_TRACKED];
    unsigned n;
    uint64_t next;
};

icpnsd_tracker_t *icpnsd_tracker_new(void)
{
    icpnsd_tracker_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    pthread_mutex_init(&t->lock, NULL);
    /* Ids that do not repeat across restarts: a counter from the clock. */
    t->next = (uint64_t)time(NULL) << 20;
    return t;
}

static void entry_free(entry_t *e)
{
    if (e) {
        free(e->result);
        free(e);
    }
}

void icpnsd_tracker_free(icpnsd_tracker_t *t)
{
    if (!t)
        return;
    for (unsigned k = 0; k < t->n; k++) {
        /* A job still running belongs to its thread; it finds its entry
         * gone through the job's user pointer being cleared. */
        if (t->e[k]->job)
            t->e[k]->job->user = NULL;
        entry_free(t->e[k]);
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static const char *kind_name(icpnsd_job_kind_t k)
{
    switch (k) {
    case ICPNSD_JOB_RELOAD: return "reload";
    case ICPNSD_JOB_INTERACTIONS: return "interactions";
    case ICPNSD_JOB_COMMUNITIES: return "communities";
    case ICPNSD_JOB_CLUSTER: return "cluster";
    case ICPNSD_JOB_SET_ADD: return "set_add";
    case ICPNSD_JOB_SET_REMOVE: return "set_remove";
    }
    return "?";
}

/* The loop thread: the job ended; keep its result and free it. */
static void tracked_done(icpnsd_job_t *j)
{
    entry_t *e = j->user;
    if (!e) {
        icpnsd_job_free(j);
        return;
    }
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    bool failed = icpnsd_err_failed(&j->err);
    if (!failed)
        e->render(j, &b);
    char *result = failed ? NULL : icpns_buf_steal(&b, NULL);
    icpns_buf_free(&b);
    pthread_mutex_lock(&e->tracker->lock);
    e->job = NULL;
    e->failed = failed;
    e->ended = time(NULL);
    if (failed)
        icpnsd_err_copy(&e->err, &j->err);
    e->result = result;
    pthread_mutex_unlock(&e->tracker->lock);
    icpnsd_job_free(j);
}

bool icpnsd_tracker_add(icpnsd_tracker_t *t, icpnsd_job_t *j, const char *set_name,
                        icpnsd_render_fn render, char *ret_id)
{
    entry_t *e = calloc(1, sizeof(*e));
    if (!e)
        return false;
    e->kind = j->kind;
    e->job = j;
    e->render = render;
    e->tracker = t;
    e->created = time(NULL);
    snprintf(e->set, sizeof(e->set), "%s", set_name ? set_name : "");
    icpnsd_err_clear(&e->err);
    pthread_mutex_lock(&t->lock);
    snprintf(e->id, sizeof(e->id), "%016llx",
             (unsigned long long)icpns_mix64(++t->next));
    if (t->n == ICPNSD_TRACKED) {
        /* Room: the oldest finished entry goes (running ones stay). */
        int victim = -1;
        for (unsigned k = 0; k < t->n; k++)
            if (!t->e[k]->job && (victim < 0 || t->e[k]->created < t->e[victim]->created))
                victim = (int)k;
        if (victim < 0) {
            pthread_mutex_unlock(&t->lock);
            free(e);
            return false;
        }
        entry_free(t->e[victim]);
        t->e[victim] = t->e[--t->n];
    }
    time_t now = time(NULL);
    for (unsigned k = 0; k < t->n;)
        if (!t->e[k]->job && now - t->e[k]->ended > KEEP_SECONDS) {
            entry_free(t->e[k]);
            t->e[k] = t->e[--t->n];
        } else {
            k++;
        }
    t->e[t->n++] = e;
    snprintf(ret_id, ICPNSD_JOB_ID, "%s", e->id);
    pthread_mutex_unlock(&t->lock);
    j->done_cb = tracked_done;
    j->user = e;
    return true;
}

static entry_t *find(icpnsd_tracker_t *t, const char *id)
{
    for (unsigned k = 0; k < t->n; k++)
        if (!strcmp(t->e[k]->id, id))
            return t->e[k];
    return NULL;
}

static void iso_time(icpns_buf_t *b, time_t when)
{
    char s[32];
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
    icpnsd_json_str(b, s);
}

/* One entry as JSON (the tracker's lock held). */
static void show(const entry_t *e, icpns_buf_t *b)
{
    const char *state = e->job ? (atomic_load(&e->job->started) ? "running" : "queued")
                        : e->failed ? "failed" : "done";
    icpns_buf_lit(b, "{\"job\":");
    icpnsd_json_str(b, e->id);
    icpns_buf_lit(b, ",\"kind\":");
    icpnsd_json_str(b, kind_name(e->kind));
    icpns_buf_lit(b, ",\"tables\":");
    icpnsd_json_str(b, e->set);
    icpns_buf_lit(b, ",\"state\":");
    icpnsd_json_str(b, state);
    icpns_buf_lit(b, ",\"created\":");
    iso_time(b, e->created);
    if (!e->job) {
        icpns_buf_lit(b, ",\"ended\":");
        iso_time(b, e->ended);
    }
    if (e->job && e->kind == ICPNSD_JOB_CLUSTER) {
        const icpnsd_job_cluster_t *c = &e->job->u.cluster;
        icpns_buf_printf(b, ",\"progress\":{\"restart\":%u,\"restarts\":%u,\"iteration\":%u,"
                            "\"max_iter\":%u,\"inertia\":%s}",
                         atomic_load(&c->progress_restart) + 1, atomic_load(&c->progress_restarts),
                         atomic_load(&c->progress_iteration), atomic_load(&c->progress_max_iter),
                         icpnsd_dnum(atomic_load_explicit(&c->progress_inertia, memory_order_relaxed)).s);
    }
    if (e->result) {
        icpns_buf_lit(b, ",\"result\":");
        icpns_buf_puts(b, e->result);
    }
    if (e->failed) {
        icpns_buf_lit(b, ",\"error\":{\"code\":");
        icpnsd_json_str(b, icpnsd_code_name(e->err.code));
        icpns_buf_printf(b, ",\"status\":%u,\"message\":", icpnsd_code_status(e->err.code));
        icpnsd_json_str(b, e->err.message);
        if (e->err.field[0]) {
            icpns_buf_lit(b, ",\"field\":");
            icpnsd_json_str(b, e->err.field);
        }
        if (e->err.row >= 0)
            icpns_buf_printf(b, ",\"row\":%lld", (long long)e->err.row);
        icpns_buf_lit(b, "}");
    }
    icpns_buf_lit(b, "}");
}

bool icpnsd_tracker_show(icpnsd_tracker_t *t, const char *id, icpns_buf_t *b)
{
    pthread_mutex_lock(&t->lock);
    entry_t *e = find(t, id);
    if (e)
        show(e, b);
    pthread_mutex_unlock(&t->lock);
    return e != NULL;
}

void icpnsd_tracker_list(icpnsd_tracker_t *t, icpns_buf_t *b)
{
    pthread_mutex_lock(&t->lock);
    entry_t *v[ICPNSD_TRACKED];
    unsigned n = t->n;
    memcpy(v, t->e, n * sizeof(v[0]));
    /* Newest first. */
    for (unsigned i = 1; i < n; i++)
        for (unsigned k = i; k > 0 && v[k]->created > v[k - 1]->created; k--) {
            entry_t *x = v[k];
            v[k] = v[k - 1];
            v[k - 1] = x;
        }
    icpns_buf_lit(b, "{\"jobs\":[");
    for (unsigned k = 0; k < n; k++) {
        if (k)
            icpns_buf_lit(b, ",");
        show(v[k], b);
    }
    icpns_buf_lit(b, "]}");
    pthread_mutex_unlock(&t->lock);
}

bool icpnsd_tracker_cancel(icpnsd_tracker_t *t, const char *id)
{
    pthread_mutex_lock(&t->lock);
    entry_t *e = find(t, id);
    if (e && e->job && e->kind == ICPNSD_JOB_CLUSTER) {
        /* Which code the job ends with: the client's cancel, not the
         * shutdown that sets the same flag. */
        atomic_store(&e->job->u.cluster.canceled_by_client, true);
        atomic_store(&e->job->u.cluster.cancel, true);
    }
    pthread_mutex_unlock(&t->lock);
    return e != NULL;
}
