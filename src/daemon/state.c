/*
 * state.c - snapshot publication, the append journal of updates, and the
 * background rebuilds.
 *
 * Durability: POST /admin/interactions appends its pairs to
 * TABLES/interactions.journal and fsyncs before the new version is built
 * and before the answer; PUT /admin/communities writes the whole merged
 * communities file to a temporary file, fsyncs and renames it.  Loading a
 * directory reads the journal after the interactions file; a journal tail
 * without its newline (a crash during an append, never acknowledged) is cut
 * off first.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "request.h"
#include "sets.h"
#include "state.h"

#define JOURNAL ICPNS_JOURNAL
#define VERSION_FILE ICPNS_VERSION_FILE

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

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t k = 0; k < n; k++) {
        h ^= (unsigned char)p[k];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static void add_source(icpnsd_meta_t *m, const char *path)
{
    if (m->n_sources >= 4)
        return;
    char *buf;
    size_t len;
    icpns_error_t e;
    if (icpns_file_read(path, (size_t)1 << 40, &buf, &len, &e))
        return;
    icpnsd_source_t *s = &m->sources[m->n_sources++];
    snprintf(s->path, sizeof(s->path), "%s", path);
    s->bytes = len;
    s->fnv1a = fnv1a(buf, len);
    free(buf);
}

/* Cuts an unterminated journal tail (an interrupted append, never
 * acknowledged) off the file itself, so later appends stay aligned; the
 * loader then reads the journal after the interactions. */
static int cut_journal_tail(const char *dir, icpns_error_t *err)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/" JOURNAL, dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "%s", strerror(errno));
    struct stat sb;
    off_t keep = 0;
    if (fstat(fd, &sb) == 0 && sb.st_size > 0) {
        /* Scan back from the end for the last newline. */
        char buf[4096];
        off_t end = sb.st_size;
        keep = -1;
        while (end > 0 && keep < 0) {
            size_t n = end < (off_t)sizeof(buf) ? (size_t)end : sizeof(buf);
            ssize_t got = pread(fd, buf, n, end - (off_t)n);
            if (got != (ssize_t)n) {
                close(fd);
                return icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "cannot read: %s",
                                       got < 0 ? strerror(errno) : "short read");
            }
            for (size_t k = n; k > 0; k--)
                if (buf[k - 1] == '\n') {
                    keep = end - (off_t)n + (off_t)k;
                    break;
                }
            end -= (off_t)n;
        }
        if (keep < 0)
            keep = 0;
    }
    close(fd);
    if (keep < sb.st_size) {
        if (truncate(path, keep) < 0)
            return icpns_error_set(err, ICPNS_EIO, path, 0, NULL,
                                   "cannot cut the partial last line: %s", strerror(errno));
        log_warn("journal %s: dropped an interrupted append of %lld bytes", path,
                 (long long)(sb.st_size - keep));
    }
    return 0;
}

/* Loads everything a version needs from disk (or generates it). */
static int load_dataset(icpnsd_state_t *st, icpns_table_opts_t *opts, icpns_dataset_t **ret,
                        icpnsd_meta_t *meta, icpns_error_t *err)
{
    /* The configuration's default_alpha/epsilon/beta, unless tables.json
     * says otherwise. */
    icpns_table_opts_default(opts);
    if (st->reg)
        opts->params = st->reg->cfg->default_params;
    if (!st->tables[0]) {
        icpns_gen_opts_t g;
        icpns_gen_opts_default(&g);
        meta->n_sources = 0;
        return icpns_gen(&g, ret, err);
    }
    int rc = cut_journal_tail(st->tables, err);
    if (!rc)
        rc = icpns_dataset_load_dir(st->tables, opts, ret, err);
    if (rc)
        return rc;
    char path[1400];
    meta->n_sources = 0;
    snprintf(path, sizeof(path), "%s/%s", st->tables, opts->interactions);
    add_source(meta, path);
    snprintf(path, sizeof(path), "%s/%s", st->tables, opts->communities);
    add_source(meta, path);
    snprintf(path, sizeof(path), "%s/%s", st->tables, opts->popularity);
    if (access(path, F_OK) == 0)
        add_source(meta, path);
    snprintf(path, sizeof(path), "%s/" JOURNAL, st->tables);
    if (access(path, F_OK) == 0)
        add_source(meta, path);
    return 0;
}

static void publish(icpnsd_state_t *st, icpns_snapshot_t *s, const icpnsd_meta_t *meta)
{
    if (st->reg)
        icpnsd_wcache_attach(s, st->reg->cfg->weights_cache_size);
    pthread_mutex_lock(&st->lock);
    icpns_snapshot_t *old = st->current;
    st->current = s;
    st->meta = *meta;
    atomic_store(&st->ready, true);
    pthread_mutex_unlock(&st->lock);
    /* Requests still holding the old version keep it alive. */
    icpns_snapshot_unref(old);
}

/* Removes the temporary files an interrupted atomic write left (NAME.tmp.XXXXXX
 * of the files the daemon writes); they are never read. */
static void remove_stale_temporaries(const char *dir, const char *file)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t n = strlen(file);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, file, n) || strncmp(e->d_name + n, ".tmp.", 5) ||
            strlen(e->d_name + n + 5) != 6)
            continue;
        char path[1400];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (unlink(path) == 0)
            log_warn("removed %s, left by an interrupted write", path);
    }
    closedir(d);
}

/* The byte limit of a build under memory_budget: what the budget leaves
 * beside the other sets' snapshots and caches (@except not counted), 0
 * when there is no budget; *@others receives those bytes. */
static size_t budget_left(struct icpnsd_registry *reg, const icpnsd_state_t *except,
                          uint64_t *others)
{
    uint64_t budget = reg ? reg->cfg->memory_budget : 0;
    *others = 0;
    if (!budget)
        return 0;
    *others = icpnsd_registry_bytes(reg, except);
    return *others >= budget ? 1 : (size_t)(budget - *others);
}

/* ---- versions that survive restarts ------------------------------------------------ */

/* TABLES/icpnsd.version (icpns_version_record_*) holds the last version
 * published from the directory and its fingerprint.  A restart that loads
 * the same content (same fingerprint) serves it under the same number;
 * other content gets the next one, so a number never names two contents
 * of one directory. */
static int read_saved_version(const char *dir, uint64_t *version, uint64_t *fp)
{
    icpns_error_t err;
    int rc = icpns_version_record_read(dir, version, fp, &err);
    if (rc < 0) {
        char m[700];
        icpns_error_format(&err, m, sizeof(m));
        log_warn("%s; versions start again at 1", m);
    }
    return rc;
}

/* Runs on the build thread (it fsyncs).  A failure costs only the numbering
 * across a restart: logged, not fatal. */
static void save_version(icpnsd_state_t *st, uint64_t version, uint64_t fp)
{
    if (!st->tables[0])
        return;
    icpns_error_t err;
    if (icpns_version_record_write(st->tables, version, fp, &err)) {
        char m[700];
        icpns_error_format(&err, m, sizeof(m));
        log_warn("tables=%s: cannot record version %llu (%s); a restart may number versions "
                 "from 1 again", st->name, (unsigned long long)version, m);
    }
}

int icpnsd_state_init(icpnsd_state_t *st, uv_loop_t *loop, const char *name,
                      const char *tables, struct icpnsd_registry *reg, char *errbuf,
                      size_t errsize)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    st->loop = loop;
    st->reg = reg;
    snprintf(st->name, sizeof(st->name), "%s", name);
    snprintf(st->tables, sizeof(st->tables), "%s", tables ? tables : "");
    icpns_error_t err;
    icpns_error_clear(&err);
    icpnsd_meta_t meta = {0};
    double t0 = icpns_now();
    icpns_snapshot_t *s;
    int rc = load_dataset(st, &st->opts, &st->dataset, &meta, &err);
    if (!rc && st->tables[0]) {
        remove_stale_temporaries(st->tables, st->opts.communities);
        remove_stale_temporaries(st->tables, VERSION_FILE);
    }
    /* Within what the memory budget leaves beside the sets already held. */
    uint64_t others;
    size_t limit = budget_left(reg, NULL, &others);
    if (!rc)
        rc = icpns_snapshot_build_limit(st->dataset, &st->opts.params, limit, &s, &err);
    if (rc) {
        bool budget_hit = rc == ICPNS_ELIMIT && !strcmp(err.field, "max_bytes");
        char m[1024];
        icpns_error_format(&err, m, sizeof(m));
        if (budget_hit)
            snprintf(errbuf, errsize, "%s (memory_budget = %llu minus the other sets' %llu bytes)",
                     err.message, (unsigned long long)reg->cfg->memory_budget,
                     (unsigned long long)others);
        else
            snprintf(errbuf, errsize, "%s", m);
        st->dataset = icpns_dataset_free(st->dataset);
        return budget_hit ? ICPNS_ELIMIT : -1;
    }
    uint64_t saved = 0, saved_fp = 0;
    if (st->tables[0] && read_saved_version(st->tables, &saved, &saved_fp) == 0)
        s->version = saved_fp == s->fingerprint ? saved : saved + 1;
    else
        s->version = 1;
    st->next_version = s->version + 1;
    if (s->version != saved || saved_fp != s->fingerprint)
        save_version(st, s->version, s->fingerprint);
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

void icpnsd_state_free(icpnsd_state_t *st)
{
    icpns_snapshot_unref(st->current);
    st->current = NULL;
    icpns_dataset_free(st->dataset);
    st->dataset = NULL;
    pthread_mutex_destroy(&st->lock);
}

/* ---- updates ---------------------------------------------------------------- */

static int cmp_pair_a(const void *x, const void *y)
{
    const icpns_pair_t *a = x, *b = y;
    return (a->a > b->a) - (a->a < b->a);
}

typedef struct ranked {
    icpns_pair_t p;
    size_t pos;
} ranked_t;

/* By user, then by position in the request. */
static int cmp_ranked(const void *x, const void *y)
{
    const ranked_t *a = x, *b = y;
    if (a->p.a != b->p.a)
        return (a->p.a > b->p.a) - (a->p.a < b->p.a);
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* Applies a communities update to @d (merge or replace) and writes the
 * file atomically. */
static int apply_communities(icpnsd_state_t *st, icpns_dataset_t *d, icpnsd_job_t *job,
                             icpns_error_t *err)
{
    /* Later entries for the same user win inside one update: sort by
     * (user, position) and keep each user's last entry. */
    size_t n = job->n, u = 0;
    ranked_t *r = malloc((n ? n : 1) * sizeof(*r));
    icpns_pair_t *tmp = malloc((n ? n : 1) * sizeof(*tmp));
    if (!r || !tmp) {
        free(r);
        free(tmp);
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    }
    for (size_t k = 0; k < n; k++)
        r[k] = (ranked_t){job->pairs[k], k};
    qsort(r, n, sizeof(*r), cmp_ranked);
    for (size_t k = 0; k < n; k++)
        if (k + 1 == n || r[k + 1].p.a != r[k].p.a)
            tmp[u++] = r[k].p;
    free(r);

    icpns_dataset_t *nd = icpns_dataset_new();
    if (!nd) {
        free(tmp);
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    }
    if (!job->replace)
        for (size_t k = 0; k < d->n_comm; k++)
            if (!bsearch(&d->comm[k], tmp, u, sizeof(*tmp), cmp_pair_a) &&
                icpns_dataset_add_community(nd, d->comm[k].a, d->comm[k].b))
                goto oom;
    for (size_t k = 0; k < u; k++)
        if (icpns_dataset_add_community(nd, tmp[k].a, tmp[k].b))
            goto oom;
    free(tmp);
    tmp = NULL;

    /* Write the whole file, atomically and durably. */
    size_t cap = 64 + nd->n_comm * 42, len = 0;
    char *text = malloc(cap);
    if (!text)
        goto oom;
    len += (size_t)snprintf(text, cap, "# user\tcommunity\n");
    for (size_t k = 0; k < nd->n_comm; k++)
        len += (size_t)snprintf(text + len, cap - len, "%lld\t%lld\n", (long long)nd->comm[k].a,
                                (long long)nd->comm[k].b);
    char path[1400];
    snprintf(path, sizeof(path), "%s/%s", st->tables, st->opts.communities);
    atomic_store(&st->self_write_ms, (uint64_t)(icpns_now() * 1000));
    int rc = icpns_file_write_atomic(path, text, len, err);
    atomic_store(&st->self_write_ms, (uint64_t)(icpns_now() * 1000));
    free(text);
    if (rc) {
        icpns_dataset_free(nd);
        return rc;
    }
    /* Swap the communities into the dataset. */
    free(d->comm);
    d->comm = nd->comm;
    d->n_comm = nd->n_comm;
    d->cap_comm = nd->cap_comm;
    nd->comm = NULL;
    icpns_dataset_free(nd);
    return 0;
oom:
    free(tmp);
    icpns_dataset_free(nd);
    return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
}

static int apply_interactions(icpnsd_state_t *st, icpns_dataset_t *d, icpnsd_job_t *job,
                              icpns_error_t *err)
{
    size_t cap = 16 + job->n * 42, len = 0;
    char *text = malloc(cap);
    if (!text)
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    for (size_t k = 0; k < job->n; k++)
        len += (size_t)snprintf(text + len, cap - len, "%lld\t%lld\n",
                                (long long)job->pairs[k].a, (long long)job->pairs[k].b);
    char path[1200];
    snprintf(path, sizeof(path), "%s/" JOURNAL, st->tables);
    int rc = icpns_file_append_sync(path, text, len, err);
    free(text);
    if (rc)
        return rc;
    for (size_t k = 0; k < job->n; k++)
        if (icpns_dataset_add_interaction(d, job->pairs[k].a, job->pairs[k].b))
            return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    return 0;
}

/* ---- the build batch ---------------------------------------------------------- */

static void set_job_error(icpnsd_job_t *j, int status, const char *code, const char *msg)
{
    j->status = status;
    snprintf(j->code, sizeof(j->code), "%s", code);
    snprintf(j->message, sizeof(j->message), "%s", msg);
}

/* ICPNS_ELIMIT is the memory budget when the build's byte limit refused
 * it (field "max_bytes"), else tables beyond the engine's limits. */
static bool over_budget(int rc, const icpns_error_t *err)
{
    return rc == ICPNS_ELIMIT && !strcmp(err->field, "max_bytes");
}

static const char *code_of(int rc, const icpns_error_t *err)
{
    switch (rc) {
    case ICPNS_EIO: return "tables_unreadable";
    case ICPNS_EPARSE: return "tables_invalid";
    case ICPNS_ENOMEM: return "out_of_memory";
    case ICPNS_ELIMIT: return over_budget(rc, err) ? "memory_budget_exceeded" : "tables_too_large";
    default: return "rebuild_failed";
    }
}

/* Whether the batch is updates that a patch can express. */
static bool can_patch(const icpnsd_job_t *batch)
{
    for (const icpnsd_job_t *j = batch; j; j = j->next)
        if (j->kind == JOB_RELOAD || j->kind == JOB_CLUSTER ||
            (j->kind == JOB_COMMUNITIES && j->replace))
            return false;
    return true;
}

/* The batch's successfully applied updates as one delta (communities in
 * job order, so later assignments win as they did in the dataset). */
static int gather_delta(const icpnsd_job_t *batch, icpns_delta_t *ret)
{
    size_t ni = 0, nc = 0;
    for (const icpnsd_job_t *j = batch; j; j = j->next)
        if (j->status == 0)
            *(j->kind == JOB_INTERACTIONS ? &ni : &nc) += j->n;
    icpns_pair_t *inter = malloc((ni ? ni : 1) * sizeof(*inter));
    icpns_pair_t *comm = malloc((nc ? nc : 1) * sizeof(*comm));
    if (!inter || !comm) {
        free(inter);
        free(comm);
        return -1;
    }
    ni = nc = 0;
    for (const icpnsd_job_t *j = batch; j; j = j->next) {
        if (j->status != 0)
            continue;
        if (j->kind == JOB_INTERACTIONS) {
            memcpy(inter + ni, j->pairs, j->n * sizeof(*inter));
            ni += j->n;
        } else {
            memcpy(comm + nc, j->pairs, j->n * sizeof(*comm));
            nc += j->n;
        }
    }
    *ret = (icpns_delta_t){inter, ni, comm, nc};
    return 0;
}

void icpnsd_job_free(icpnsd_job_t *j)
{
    if (!j)
        return;
    if (j->cluster) {
        icpnsd_cluster_req_free(j->cluster);
        free(j->cluster);
    }
    free(j->sizes);
    free(j->pairs);
    free(j);
}

static void kmeans_progress(void *arg, uint32_t r, uint32_t n, double inertia)
{
    (void)arg;
    log_info("cluster: restart %u/%u inertia %.6g", r + 1, n, inertia);
}

/*
 * A cluster job: checks the users against the serving snapshot, runs
 * k-means (here, on the thread pool: sampling requests never wait for it)
 * and turns the labels into a replacing communities update.  Returns 0 with
 * j->pairs set, or an error status already in the job.
 */
static int run_cluster(icpnsd_state_t *st, icpnsd_job_t *j)
{
    cluster_req_t *q = j->cluster;
    icpns_snapshot_t *s = icpnsd_state_acquire(st);
    uint32_t n = q->emb.n;
    int rc = -1;
    if (!q->emb.ids) {
        /* A bare .npy: row r is the r-th user by ascending id. */
        if (n != s->users.n) {
            set_job_error(j, 422, "row_count_mismatch", "");
            snprintf(j->message, sizeof(j->message),
                     "the .npy has %u rows but the tables have %u users (row r is the r-th user "
                     "by ascending id; send an ICPE frame or JSON to name the users)",
                     n, s->users.n);
            goto out;
        }
        q->emb.ids = malloc((size_t)n * sizeof(int64_t));
        if (!q->emb.ids) {
            set_job_error(j, 503, "out_of_memory", "no memory for the user ids");
            goto out;
        }
        memcpy(q->emb.ids, s->users.ids, (size_t)n * sizeof(int64_t));
    } else {
        uint8_t *seen = calloc(s->users.n ? s->users.n : 1, 1);
        if (!seen) {
            set_job_error(j, 503, "out_of_memory", "no memory");
            goto out;
        }
        for (uint32_t r = 0; r < n; r++) {
            uint32_t u = icpns_idmap_find(&s->users, q->emb.ids[r]);
            if (u == ICPNS_NONE || seen[u]) {
                set_job_error(j, 422, u == ICPNS_NONE ? "unknown_user" : "duplicate_user", "");
                snprintf(j->message, sizeof(j->message),
                         u == ICPNS_NONE ? "row %u: user %lld is not in the tables (send the "
                                           "tables' user ids, not a trainer's dense index)"
                                         : "row %u: user %lld appears twice",
                         r, (long long)q->emb.ids[r]);
                free(seen);
                goto out;
            }
            seen[u] = 1;
        }
        free(seen);
    }
    icpns_kmeans_result_t res;
    icpns_error_t err;
    icpns_error_clear(&err);
    q->ko.progress = kmeans_progress;
    /* The helper threads inherit this thread's nice +10: they take what
     * the HTTP workers leave. */
    unsigned threads = st->reg ? st->reg->cfg->cluster_threads : 1;
    if (threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cpus < 1 ? 1 : cpus > 256 ? 256 : (unsigned)cpus;
    }
    q->ko.threads = threads;
    double t0 = icpns_now();
    log_info("cluster: %u users x %u dimensions, k=%u, %u restarts, seed %llu, %u threads", n,
             q->emb.dim, q->ko.k, q->ko.restarts, (unsigned long long)q->ko.seed, threads);
    if (icpns_kmeans(q->emb.x, n, q->emb.dim, &q->ko, &res, &err)) {
        set_job_error(j, err.code == ICPNS_ENOMEM ? 503 : 400,
                      err.code == ICPNS_ENOMEM ? "out_of_memory" : "bad_embeddings", err.message);
        goto out;
    }
    j->cluster_seconds = icpns_now() - t0;
    j->pairs = malloc((size_t)n * sizeof(*j->pairs));
    if (!j->pairs) {
        icpns_kmeans_result_free(&res);
        set_job_error(j, 503, "out_of_memory", "no memory");
        goto out;
    }
    for (uint32_t r = 0; r < n; r++)
        j->pairs[r] = (icpns_pair_t){q->emb.ids[r], res.labels[r]};
    j->n = n;
    j->replace = true;
    j->k = res.k;
    j->sizes = res.sizes;
    res.sizes = NULL;
    j->inertia = res.inertia;
    j->iterations = res.iterations;
    j->best_restart = res.best_restart;
    j->converged = res.converged;
    icpns_kmeans_result_free(&res);
    log_info("cluster: inertia %.6g after %u iterations (restart %u) in %.3fs", j->inertia,
             j->iterations, j->best_restart + 1, j->cluster_seconds);
    /* The matrix is no longer needed: free it before the rebuild. */
    icpnsd_cluster_req_free(q);
    rc = 0;
out:
    icpns_snapshot_unref(s);
    return rc;
}

void icpnsd_background_thread(void)
{
    static _Thread_local bool done;
    if (done)
        return;
    done = true;
    /* Per-thread nice on Linux; raising it needs no privilege. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) < 0)
        log_debug("cannot lower the priority of a build thread: %s", strerror(errno));
}

/* Runs on the thread pool: everything slow happens here. */
static void build_work(uv_work_t *w)
{
    icpnsd_background_thread();
    icpnsd_state_t *st = w->data;
    icpns_error_t err;
    icpns_error_clear(&err);
    double t0 = icpns_now();
    bool reload = false;
    for (icpnsd_job_t *j = st->batch; j; j = j->next)
        reload |= j->kind == JOB_RELOAD;

    st->build_rc = 0;
    st->built = NULL;
    st->built_dataset = NULL;
    st->built_meta = st->meta; /* sources unchanged unless reloaded */
    st->build_status = 200;
    icpns_dataset_t *d = st->dataset;
    icpns_table_opts_t opts = st->opts;
    if (reload) {
        icpns_dataset_t *nd = NULL;
        int rc = load_dataset(st, &opts, &nd, &st->built_meta, &err);
        if (rc) {
            icpns_error_format(&err, st->build_error, sizeof(st->build_error));
            snprintf(st->build_code, sizeof(st->build_code), "%s", code_of(rc, &err));
            st->build_rc = rc;
            st->build_status = rc == ICPNS_ENOMEM ? 503 : 500;
            /* Updates in the same batch still apply to the old tables. */
            reload = false;
        } else {
            d = nd;
            st->built_dataset = nd;
        }
    }
    bool changed = reload;
    for (icpnsd_job_t *j = st->batch; j; j = j->next) {
        if (j->kind == JOB_RELOAD) {
            if (st->build_rc)
                set_job_error(j, st->build_status, st->build_code, st->build_error);
            continue;
        }
        if (!st->tables[0]) {
            set_job_error(j, 409, "read_only_tables",
                          "the daemon serves the built-in dataset; start it with --tables DIR "
                          "to accept updates");
            continue;
        }
        if (j->kind == JOB_CLUSTER && run_cluster(st, j))
            continue;
        int rc = j->kind == JOB_INTERACTIONS ? apply_interactions(st, d, j, &err)
                                             : apply_communities(st, d, j, &err);
        if (rc) {
            char m[600];
            icpns_error_format(&err, m, sizeof(m));
            set_job_error(j, rc == ICPNS_EIO ? 507 : 500,
                          rc == ICPNS_EIO ? "storage_failed" : code_of(rc, &err), m);
            continue;
        }
        changed = true;
    }
    if (!changed)
        return;
    /* Updates alone patch the serving snapshot: only the communities they
     * touch are recomputed.  Reloads, replacements and whatever the patch
     * cannot express (new ids, emptied communities) take a full build. */
    icpns_snapshot_t *s = NULL;
    int rc = ICPNS_ENOPATCH;
    /* The memory budget is a byte limit on the build itself: a version
     * that would not fit is refused before its weights are allocated. */
    uint64_t others;
    size_t limit = budget_left(st->reg, st, &others);
    if (!reload && st->in_sync && can_patch(st->batch)) {
        icpns_delta_t delta;
        if (gather_delta(st->batch, &delta) == 0) {
            icpns_snapshot_t *cur = icpnsd_state_acquire(st);
            icpns_patch_stats_t ps;
            rc = icpns_snapshot_patch_limit(cur, &delta, limit, &s, &ps, &err);
            icpns_snapshot_unref(cur);
            free((void *)delta.inter);
            free((void *)delta.comm);
            if (rc == 0) {
                snprintf(st->built_meta.rebuild, sizeof(st->built_meta.rebuild), "patch");
                st->built_meta.comms_rebuilt = ps.comms_rebuilt;
            } else if (rc == ICPNS_ENOPATCH) {
                log_debug("update needs a full rebuild: %s", err.message);
            }
        }
    }
    if (rc == ICPNS_ENOPATCH) {
        rc = icpns_snapshot_build_limit(d, &opts.params, limit, &s, &err);
        snprintf(st->built_meta.rebuild, sizeof(st->built_meta.rebuild), "full");
        st->built_meta.comms_rebuilt = s ? s->comms.n : 0;
    }
    if (rc)
        st->in_sync = false; /* the dataset moved on without a snapshot */
    if (rc) {
        bool budget_hit = over_budget(rc, &err);
        if (budget_hit) {
            bool updates = false;
            for (icpnsd_job_t *j = st->batch; j; j = j->next)
                updates |= j->kind != JOB_RELOAD && j->status == 0;
            char why[256];
            snprintf(why, sizeof(why), "%s", err.message);
            icpns_error_set(&err, ICPNS_ELIMIT, NULL, 0, "memory_budget",
                            "the new version of '%s': %s (memory_budget = %llu minus the other "
                            "sets' %llu bytes); the old version keeps serving%s",
                            st->name, why, (unsigned long long)st->reg->cfg->memory_budget,
                            (unsigned long long)others,
                            updates ? "; the update is recorded on disk and the next build that "
                                      "fits serves it (repeating it is harmless)" : "");
        }
        icpns_error_format(&err, st->build_error, sizeof(st->build_error));
        snprintf(st->build_code, sizeof(st->build_code), "%s",
                 budget_hit ? "memory_budget_exceeded" : code_of(rc, &err));
        st->build_rc = rc;
        st->build_status = rc == ICPNS_ENOMEM ? 503 : budget_hit ? 507 : 422;
        for (icpnsd_job_t *j = st->batch; j; j = j->next)
            if (j->status == 0)
                set_job_error(j, st->build_status, st->build_code, st->build_error);
        if (st->built_dataset)
            st->built_dataset = icpns_dataset_free(st->built_dataset);
        return;
    }
    s->version = st->next_version; /* the loop thread counts it when published */
    save_version(st, s->version, s->fingerprint);
    st->built = s;
    st->built_opts = opts; /* st->opts is the loop thread's: set when published */
    st->built_meta.build_seconds = icpns_now() - t0;
    st->built_meta.built_at = time(NULL);
}

static void start_batch(icpnsd_state_t *st);
static void async_closed(uv_handle_t *h);

/* Back on the loop thread: publish and answer. */
static void build_done(uv_work_t *w, int status)
{
    icpnsd_state_t *st = w->data;
    (void)status;
    uint64_t version, fingerprint;
    if (st->built) {
        if (st->built_dataset) {
            icpns_dataset_free(st->dataset);
            st->dataset = st->built_dataset;
            st->built_dataset = NULL;
        }
        st->in_sync = true;
        st->opts = st->built_opts;
        st->next_version = st->built->version + 1;
        st->built_meta.version = st->built->version;
        st->built_meta.fingerprint = st->built->fingerprint;
        snprintf(st->built_meta.origin, sizeof(st->built_meta.origin), "%s",
                 st->batch ? st->batch->origin : "?");
        version = st->built->version;
        fingerprint = st->built->fingerprint;
        publish(st, st->built, &st->built_meta);
        atomic_fetch_add(strcmp(st->built_meta.rebuild, "patch") ? &icpnsd_metrics.rebuilds_full
                                                                 : &icpnsd_metrics.rebuilds_patch,
                         1);
        log_info("tables=%s snapshot version=%llu fingerprint=%016llx built (%s, %u communities) "
                 "in %.3fs users=%u items=%u interactions=%llu",
                 st->name, (unsigned long long)version, (unsigned long long)fingerprint,
                 st->built_meta.rebuild,
                 st->built_meta.comms_rebuilt, st->built_meta.build_seconds,
                 st->built->users.n, st->built->items.n,
                 (unsigned long long)st->built->n_interactions);
        st->built = NULL;
    } else {
        icpnsd_meta_t m;
        icpnsd_state_meta(st, &m);
        version = m.version;
        fingerprint = m.fingerprint;
    }
    bool any_reload = false;
    for (icpnsd_job_t *j = st->batch, *next; j; j = next) {
        next = j->next;
        any_reload |= j->kind == JOB_RELOAD;
        if (j->status == 0)
            j->status = 200;
        j->version = version;
        j->fingerprint = fingerprint;
        j->build_seconds = st->built_meta.build_seconds;
        snprintf(j->rebuild, sizeof(j->rebuild), "%s", st->built_meta.rebuild);
        j->comms_rebuilt = st->built_meta.comms_rebuilt;
        bool ok = j->status == 200;
        if (j->kind == JOB_RELOAD) {
            atomic_fetch_add(ok ? &icpnsd_metrics.reloads_ok : &icpnsd_metrics.reloads_failed, 1);
            if (!ok)
                log_error("reload (%s) failed, version %llu keeps serving: %s", j->origin,
                          (unsigned long long)version, j->message);
        } else {
            atomic_fetch_add(ok ? &icpnsd_metrics.updates_ok : &icpnsd_metrics.updates_failed, 1);
            if (!ok)
                log_warn("update failed: %s: %s", j->code, j->message);
        }
        if (j->done_cb)
            j->done_cb(j);
        else {
            icpnsd_job_free(j);
        }
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
                 st->name, (unsigned long long)version, (unsigned long long)fingerprint);
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
        if (j->kind == JOB_RELOAD) {
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
    set_job_error(j, 404, "unknown_tables", "");
    snprintf(j->message, sizeof(j->message), "the table set '%s' was removed", st->name);
    if (j->done_cb)
        j->done_cb(j);
    else
        icpnsd_job_free(j);
}

void icpnsd_state_submit(icpnsd_state_t *st, icpnsd_job_t *job)
{
    job->next = NULL;
    job->status = 0;
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
    if (st->closed_cb)
        st->closed_cb(st);
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
