/*
 * rebuild.c - loading, updating and building a table set's versions (see
 * rebuild.h).  Runs on libuv's thread pool, one build per set at a time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "journal.h"
#include "log.h"
#include "rebuild.h"

void icpnsd_background_thread(void)
{
    static _Thread_local bool done;
    static atomic_flag warned = ATOMIC_FLAG_INIT;
    if (done)
        return;
    done = true;
    /* Per-thread nice on Linux; raising it needs no privilege.  It fails
     * only when something forbids the system call, typically a seccomp
     * filter (systemd's SystemCallFilter= denying @resources): then builds
     * compete with the request threads for the CPU and latency suffers
     * during every rebuild, which the operator must hear about, once per
     * process rather than once per pool thread. */
    long tid = syscall(SYS_gettid);
    if (setpriority(PRIO_PROCESS, (id_t)tid, 10) < 0) {
        int e = errno;
        if (!atomic_flag_test_and_set(&warned))
            log_warn("cannot lower the priority of build threads to nice +10: %s; rebuilds "
                     "and k-means now compete with requests for the CPU (under systemd, "
                     "allow setpriority in SystemCallFilter=, see docs/operations.md)",
                     strerror(e));
        else
            log_debug("cannot lower the priority of build thread %ld: %s", tid, strerror(e));
    }
}

static unsigned test_delay_ms;
static pthread_once_t test_delay_once = PTHREAD_ONCE_INIT;

static void read_test_delay(void)
{
    const char *v = getenv("ICPNSD_TEST_DELAY_MS");
    test_delay_ms = v ? (unsigned)strtoul(v, NULL, 10) : 0;
}

void icpnsd_test_delay(void)
{
    pthread_once(&test_delay_once, read_test_delay);
    if (test_delay_ms) {
        struct timespec ts = {test_delay_ms / 1000, (long)(test_delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

void icpnsd_test_stall(const char *dir, atomic_bool *cancel)
{
    const char *v = getenv("ICPNSD_TEST_STALL_DIR");
    if (!v || !v[0] || strncmp(v, dir, strlen(v)))
        return;
    for (int k = 0; k < 2400 && !atomic_load(cancel); k++) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* ---- loading ------------------------------------------------------------------ */

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t k = 0; k < n; k++) {
        h ^= (unsigned char)p[k];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static void add_source(icpnsd_meta_t *m, const char *dir, const char *file)
{
    if (m->n_sources >= 6 || !file[0])
        return;
    char path[1400];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    char *buf;
    size_t len;
    icpns_error_t e;
    if (access(path, F_OK) != 0 || icpns_file_read(path, (size_t)1 << 40, &buf, &len, &e))
        return;
    icpnsd_source_t *s = &m->sources[m->n_sources++];
    snprintf(s->path, sizeof(s->path), "%s", path);
    s->bytes = len;
    s->fnv1a = fnv1a(buf, len);
    free(buf);
}

int icpnsd_rebuild_load(const char *name, const char *tables,
                        const icpns_params_t *default_params, icpns_table_opts_t *opts,
                        icpns_dataset_t **ret, icpnsd_meta_t *meta, icpns_error_t *err)
{
    /* The configuration's default_alpha/epsilon/beta, unless tables.json
     * says otherwise. */
    icpns_table_opts_default(opts);
    if (default_params)
        opts->params = *default_params;
    meta->n_sources = 0;
    if (!tables[0]) {
        icpns_gen_opts_t g;
        icpns_gen_opts_default(&g);
        return icpns_gen(&g, ret, err);
    }
    int rc = icpnsd_journal_cut_tail(tables, err);
    if (!rc)
        rc = icpns_dataset_load_dir(tables, opts, ret, err);
    if (rc)
        return rc;
    /* What each file gave: the format (and how it was recognised), lines,
     * rows: a file misread shows here. */
    for (uint32_t k = 0; k < (*ret)->n_reports; k++) {
        char line[1024];
        icpns_load_report_format(&(*ret)->reports[k], line, sizeof(line));
        log_info("tables=%s: %s", name, line);
    }
    add_source(meta, tables, opts->interactions);
    add_source(meta, tables, opts->communities);
    add_source(meta, tables, opts->popularity);
    add_source(meta, tables, opts->items);
    add_source(meta, tables, ICPNS_JOURNAL);
    return 0;
}

/* ICPNS_ELIMIT is the memory budget when the build's byte limit refused
 * it (field "max_bytes"), else tables beyond the engine's limits. */
static bool over_budget(int rc, const icpns_error_t *err)
{
    return rc == ICPNS_ELIMIT && !strcmp(err->field, "max_bytes");
}

void icpnsd_rebuild_load_error(int rc, const icpns_error_t *err, icpnsd_err_t *e)
{
    char m[1024];
    icpns_error_format(err, m, sizeof(m));
    icpnsd_code_t code;
    switch (rc) {
    case ICPNS_EIO: code = ICPNSD_E_TABLES_UNREADABLE; break;
    case ICPNS_EPARSE: code = ICPNSD_E_TABLES_INVALID; break;
    case ICPNS_ENOMEM: code = ICPNSD_E_OUT_OF_MEMORY; break;
    case ICPNS_ELIMIT:
        code = over_budget(rc, err) ? ICPNSD_E_MEMORY_BUDGET_EXCEEDED : ICPNSD_E_TABLES_TOO_LARGE;
        break;
    default: code = ICPNSD_E_REBUILD_FAILED; break;
    }
    icpnsd_err_set(e, code, NULL, -1, "%s", m);
}

/* ---- updates ---------------------------------------------------------------- */

static void stamp(const icpnsd_rebuild_in_t *in)
{
    if (in->self_write_ms)
        atomic_store(in->self_write_ms, (uint64_t)(icpns_now() * 1000));
}

/* Applies a communities update to @d (merge or replace) and writes the
 * file atomically. */
static int apply_communities(const icpnsd_rebuild_in_t *in, icpns_dataset_t *d,
                             const icpnsd_job_update_t *up, icpns_error_t *err)
{
    /* The merge (later entries of a user win; replace or keep the other
     * users' entries) is the library's, which icpns_dataset_set_communities
     * (in-process bindings) applies too. */
    icpns_pair_t *merged = NULL;
    size_t n_merged = 0;
    if (icpns_communities_merge(d->comm, d->n_comm, up->pairs, up->n, up->replace, &merged,
                                &n_merged))
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    stamp(in);
    int rc = icpnsd_communities_write(in->tables, in->opts.communities, merged, n_merged, err);
    stamp(in);
    if (rc) {
        free(merged);
        return rc;
    }
    /* Swap the communities into the dataset. */
    free(d->comm);
    d->comm = merged;
    d->n_comm = n_merged;
    d->cap_comm = n_merged;
    return 0;
}

static int apply_interactions(const icpnsd_rebuild_in_t *in, icpns_dataset_t *d,
                              const icpnsd_job_update_t *up, icpns_error_t *err)
{
    int rc = icpnsd_journal_append(in->tables, up->pairs, up->n, err);
    if (rc)
        return rc;
    for (size_t k = 0; k < up->n; k++)
        if (icpns_dataset_add_interaction(d, up->pairs[k].a, up->pairs[k].b))
            return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    return 0;
}

/* Whether the batch is updates that a patch can express. */
static bool can_patch(const icpnsd_job_t *batch)
{
    for (const icpnsd_job_t *j = batch; j; j = j->next)
        if (j->kind == ICPNSD_JOB_RELOAD || j->kind == ICPNSD_JOB_CLUSTER ||
            (j->kind == ICPNSD_JOB_COMMUNITIES && j->u.update.replace))
            return false;
    return true;
}

/* The batch's successfully applied updates as one delta (communities in
 * job order, so later assignments win as they did in the dataset). */
static int gather_delta(icpnsd_job_t *batch, icpns_delta_t *ret)
{
    size_t ni = 0, nc = 0;
    for (icpnsd_job_t *j = batch; j; j = j->next)
        if (!icpnsd_err_failed(&j->err) && icpnsd_job_update(j))
            *(j->kind == ICPNSD_JOB_INTERACTIONS ? &ni : &nc) += icpnsd_job_update(j)->n;
    icpns_pair_t *inter = malloc((ni ? ni : 1) * sizeof(*inter));
    icpns_pair_t *comm = malloc((nc ? nc : 1) * sizeof(*comm));
    if (!inter || !comm) {
        free(inter);
        free(comm);
        return -1;
    }
    ni = nc = 0;
    for (icpnsd_job_t *j = batch; j; j = j->next) {
        icpnsd_job_update_t *up = icpnsd_job_update(j);
        if (icpnsd_err_failed(&j->err) || !up)
            continue;
        if (j->kind == ICPNSD_JOB_INTERACTIONS) {
            memcpy(inter + ni, up->pairs, up->n * sizeof(*inter));
            ni += up->n;
        } else {
            memcpy(comm + nc, up->pairs, up->n * sizeof(*comm));
            nc += up->n;
        }
    }
    *ret = (icpns_delta_t){inter, ni, comm, nc};
    return 0;
}

/* ---- clustering --------------------------------------------------------------- */

/* The users with a community in @s that are not marked in @seen (dense
 * users); up to 10 of their ids go to @first. */
static uint32_t missing_users(const icpns_snapshot_t *s, const uint8_t *seen, int64_t *first,
                              uint32_t *n_first)
{
    uint32_t missing = 0;
    *n_first = 0;
    for (uint32_t u = 0; u < s->users.n; u++)
        if (s->user_comm[u] != ICPNS_NONE && !seen[u]) {
            if (*n_first < 10)
                first[(*n_first)++] = s->users.ids[u];
            missing++;
        }
    return missing;
}

typedef struct label_pair {
    uint32_t old_c, new_c;
} label_pair_t;

static int cmp_label_pair(const void *a, const void *b)
{
    const label_pair_t *x = a, *y = b;
    if (x->old_c != y->old_c)
        return x->old_c < y->old_c ? -1 : 1;
    return (x->new_c > y->new_c) - (x->new_c < y->new_c);
}

typedef struct overlap {
    uint64_t count;
    uint32_t old_c, new_c;
} overlap_t;

static int cmp_overlap(const void *a, const void *b)
{
    const overlap_t *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    if (x->old_c != y->old_c)
        return x->old_c < y->old_c ? -1 : 1;
    return (x->new_c > y->new_c) - (x->new_c < y->new_c);
}

/*
 * How the new labels compare with the serving assignment, for the users of
 * the upload that had a community: *@ret_changed counts those whose
 * community id differs, *@ret_moved those that left the group they were in
 * once old and new communities are matched by largest overlap (labels are
 * arbitrary: moved is what re-clustering really changed).  -1 when out of
 * memory.
 */
static int compare_assignment(const icpns_snapshot_t *s, const icpns_pair_t *assign, uint32_t n,
                              uint32_t *ret_changed, uint32_t *ret_moved)
{
    label_pair_t *v = malloc((n ? n : 1) * sizeof(*v));
    overlap_t *o = malloc((n ? n : 1) * sizeof(*o));
    uint8_t *old_used = calloc(s->comms.n ? s->comms.n : 1, 1);
    uint8_t *new_used = NULL;
    if (!v || !o || !old_used)
        goto oom;
    uint32_t m = 0, changed = 0, max_new = 0;
    for (uint32_t r = 0; r < n; r++) {
        uint32_t u = icpns_idmap_find(&s->users, assign[r].a);
        if (u == ICPNS_NONE || s->user_comm[u] == ICPNS_NONE)
            continue;
        uint32_t c = s->user_comm[u];
        changed += s->comms.ids[c] != assign[r].b;
        v[m++] = (label_pair_t){c, (uint32_t)assign[r].b};
        if ((uint32_t)assign[r].b > max_new)
            max_new = (uint32_t)assign[r].b;
    }
    new_used = calloc((size_t)max_new + 1, 1);
    if (!new_used)
        goto oom;
    qsort(v, m, sizeof(*v), cmp_label_pair);
    uint32_t no = 0;
    for (uint32_t k = 0; k < m;) {
        uint32_t j = k;
        while (j < m && v[j].old_c == v[k].old_c && v[j].new_c == v[k].new_c)
            j++;
        o[no++] = (overlap_t){j - k, v[k].old_c, v[k].new_c};
        k = j;
    }
    qsort(o, no, sizeof(*o), cmp_overlap);
    uint64_t kept = 0;
    for (uint32_t k = 0; k < no; k++)
        if (!old_used[o[k].old_c] && !new_used[o[k].new_c]) {
            old_used[o[k].old_c] = new_used[o[k].new_c] = 1;
            kept += o[k].count;
        }
    *ret_changed = changed;
    *ret_moved = m - (uint32_t)kept;
    free(v);
    free(o);
    free(old_used);
    free(new_used);
    return 0;
oom:
    free(v);
    free(o);
    free(old_used);
    free(new_used);
    return -1;
}

static int kmeans_iteration(void *arg, uint32_t restart, uint32_t iteration, double inertia)
{
    icpnsd_job_cluster_t *c = arg;
    atomic_store(&c->progress_restart, restart);
    atomic_store(&c->progress_iteration, iteration);
    atomic_store_explicit(&c->progress_inertia, inertia, memory_order_relaxed);
    return atomic_load(&c->cancel) ? 1 : 0;
}

static void kmeans_progress(void *arg, uint32_t r, uint32_t n, double inertia)
{
    (void)arg;
    log_info("cluster: restart %u/%u inertia %.6g", r + 1, n, inertia);
}

/*
 * A cluster job: checks the users against the serving snapshot (known,
 * once each, and, unless replace, every user that has a community), runs
 * k-means and turns the labels into a replacing communities update.
 * Returns 0 with the job's assignment set, or -1 with the job's error.
 */
static int run_cluster(const icpnsd_rebuild_in_t *in, icpnsd_job_t *j)
{
    icpnsd_job_cluster_t *c = &j->u.cluster;
    icpnsd_clusterreq_t *q = c->req;
    const icpns_snapshot_t *s = in->current;
    uint32_t n = q->emb.n;
    icpnsd_err_t *e = &j->err;
    if (!q->emb.ids) {
        /* A bare .npy: row r is the r-th user by ascending id. */
        if (n != s->users.n)
            return icpnsd_err_set(e, ICPNSD_E_ROW_COUNT_MISMATCH, NULL, -1,
                                  "the .npy has %u rows but the tables have %u users (row r is "
                                  "the r-th user by ascending id; send an ICPE frame or JSON to "
                                  "name the users)", n, s->users.n);
        q->emb.ids = malloc((size_t)n * sizeof(int64_t));
        if (!q->emb.ids)
            return icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for the user ids");
        memcpy(q->emb.ids, s->users.ids, (size_t)n * sizeof(int64_t));
    } else {
        uint8_t *seen = calloc(s->users.n ? s->users.n : 1, 1);
        if (!seen)
            return icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory");
        for (uint32_t r = 0; r < n; r++) {
            uint32_t u = icpns_idmap_find(&s->users, q->emb.ids[r]);
            if (u == ICPNS_NONE || seen[u]) {
                free(seen);
                if (u == ICPNS_NONE)
                    return icpnsd_err_set(e, ICPNSD_E_UNKNOWN_USER, "users", r,
                                          "row %u: user %lld is not in the tables (send the "
                                          "tables' user ids, not a trainer's dense index)",
                                          r, (long long)q->emb.ids[r]);
                return icpnsd_err_set(e, ICPNSD_E_DUPLICATE_USER, "users", r,
                                      "row %u: user %lld appears twice", r,
                                      (long long)q->emb.ids[r]);
            }
            seen[u] = 1;
        }
        /* A partial upload must not strip the other users of their
         * communities silently. */
        int64_t first[10];
        uint32_t n_first;
        c->unassigned = missing_users(s, seen, first, &n_first);
        free(seen);
        if (c->unassigned && !q->replace) {
            char ids[256] = "";
            for (uint32_t k = 0; k < n_first; k++) {
                size_t l = strlen(ids);
                snprintf(ids + l, sizeof(ids) - l, "%s%lld", k ? ", " : "", (long long)first[k]);
            }
            return icpnsd_err_set(e, ICPNSD_E_INCOMPLETE_ASSIGNMENT, "users", -1,
                                  "the upload has %u users, but %u users with a community are "
                                  "not in it (%s%s): they would lose their community; upload "
                                  "every user, or say replace=true to leave them without one",
                                  n, c->unassigned, ids, c->unassigned > n_first ? ", ..." : "");
        }
    }
    icpns_kmeans_result_t res;
    icpns_error_t err;
    icpns_error_clear(&err);
    q->ko.progress = kmeans_progress;
    q->ko.iteration = kmeans_iteration;
    q->ko.progress_arg = c;
    atomic_store(&c->progress_restarts, q->ko.restarts);
    atomic_store(&c->progress_max_iter, q->ko.max_iter);
    /* The helper threads inherit this thread's nice +10: they take what
     * the HTTP workers leave. */
    unsigned threads = in->cluster_threads;
    if (threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cpus < 1 ? 1 : cpus > 256 ? 256 : (unsigned)cpus;
    }
    q->ko.threads = threads;
    double t0 = icpns_now();
    log_info("cluster: %u users x %u dimensions, k=%u, %u restarts, seed %llu, %u threads%s", n,
             q->emb.dim, q->ko.k, q->ko.restarts, (unsigned long long)q->ko.seed, threads,
             q->dry_run ? " (dry run)" : "");
    if (icpns_kmeans(q->emb.x, n, q->emb.dim, &q->ko, &res, &err)) {
        /* Canceled: by DELETE /admin/jobs/ID, or by the shutdown. */
        icpnsd_code_t code = err.code == ICPNS_ENOMEM ? ICPNSD_E_OUT_OF_MEMORY
                             : err.code != ICPNS_ECANCELED ? ICPNSD_E_BAD_EMBEDDINGS
                             : atomic_load(&c->canceled_by_client) ? ICPNSD_E_CANCELED
                                                                   : ICPNSD_E_SHUTTING_DOWN;
        return icpnsd_err_set(e, code, NULL, -1, "%s%s", err.message,
                              code == ICPNSD_E_CANCELED ? " by DELETE /admin/jobs/ID" : "");
    }
    c->seconds = icpns_now() - t0;
    c->assign.pairs = malloc((size_t)n * sizeof(*c->assign.pairs));
    if (!c->assign.pairs) {
        icpns_kmeans_result_free(&res);
        return icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory");
    }
    for (uint32_t r = 0; r < n; r++)
        c->assign.pairs[r] = (icpns_pair_t){q->emb.ids[r], res.labels[r]};
    c->assign.n = n;
    c->assign.replace = true;
    c->dry_run = q->dry_run;
    c->k = res.k;
    c->sizes = res.sizes;
    res.sizes = NULL;
    c->inertia = res.inertia;
    c->iterations = res.iterations;
    c->best_restart = res.best_restart;
    c->converged = res.converged;
    icpns_kmeans_result_free(&res);
    if (compare_assignment(s, c->assign.pairs, n, &c->changed, &c->moved))
        return icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory");
    log_info("cluster: inertia %.6g after %u iterations (restart %u) in %.3fs; %u users change "
             "community id, %u move to another group, %u lose their community",
             c->inertia, c->iterations, c->best_restart + 1, c->seconds, c->changed, c->moved,
             c->unassigned);
    /* The matrix is no longer needed: free it before the rebuild. */
    icpnsd_clusterreq_free(q);
    free(q);
    c->req = NULL;
    return 0;
}

/* ---- the batch ------------------------------------------------------------------ */

void icpnsd_rebuild_run(const icpnsd_rebuild_in_t *in, icpnsd_rebuild_out_t *out)
{
    icpns_error_t err;
    icpns_error_clear(&err);
    icpnsd_err_t load_err;
    icpnsd_err_clear(&load_err);
    double t0 = icpns_now();
    bool reload = false;
    for (icpnsd_job_t *j = in->batch; j; j = j->next)
        reload |= j->kind == ICPNSD_JOB_RELOAD;

    memset(out, 0, sizeof(*out));
    out->meta = in->meta; /* sources unchanged unless reloaded */
    out->opts = in->opts;
    out->in_sync = in->in_sync;
    icpns_dataset_t *d = in->dataset;
    if (reload) {
        icpns_dataset_t *nd = NULL;
        int rc = icpnsd_rebuild_load(in->name, in->tables, &in->default_params, &out->opts, &nd,
                                     &out->meta, &err);
        if (rc) {
            icpnsd_rebuild_load_error(rc, &err, &load_err);
            /* Updates in the same batch still apply to the old tables. */
            out->opts = in->opts;
            out->meta = in->meta;
            reload = false;
        } else {
            d = nd;
            out->dataset = nd;
        }
    }
    bool changed = reload;
    for (icpnsd_job_t *j = in->batch; j; j = j->next)
        atomic_store(&j->started, true);
    for (icpnsd_job_t *j = in->batch; j; j = j->next) {
        if (j->kind == ICPNSD_JOB_RELOAD) {
            icpnsd_job_fail(j, &load_err);
            continue;
        }
        if (!in->tables[0]) {
            icpnsd_err_set(&j->err, ICPNSD_E_READ_ONLY_TABLES, NULL, -1,
                           "the daemon serves the built-in dataset; start it with --tables DIR "
                           "to accept updates");
            continue;
        }
        if (in->current->pop_from_file) {
            icpnsd_err_set(&j->err, ICPNSD_E_POPULARITY_FROM_FILE, NULL, -1,
                           "table set '%s' serves the popularity counts of %s "
                           "(popularity_source \"file\"): %s would not move them; change the "
                           "files and reload instead", in->name, in->opts.popularity,
                           j->kind == ICPNSD_JOB_INTERACTIONS ? "new interactions"
                                                              : "new communities");
            continue;
        }
        if (j->kind == ICPNSD_JOB_CLUSTER && (run_cluster(in, j) || j->u.cluster.dry_run))
            continue;
        icpnsd_job_update_t *up = icpnsd_job_update(j);
        int rc = j->kind == ICPNSD_JOB_INTERACTIONS ? apply_interactions(in, d, up, &err)
                                                    : apply_communities(in, d, up, &err);
        if (rc) {
            char m[1024];
            icpns_error_format(&err, m, sizeof(m));
            icpnsd_err_set(&j->err, rc == ICPNS_EIO ? ICPNSD_E_STORAGE_FAILED
                                    : rc == ICPNS_ENOMEM ? ICPNSD_E_OUT_OF_MEMORY
                                                         : ICPNSD_E_UPDATE_FAILED,
                           NULL, -1, "%s", m);
            continue;
        }
        changed = true;
    }
    if (!changed)
        return;
    /* Updates alone patch the serving snapshot: only the communities they
     * touch are recomputed.  Reloads, replacements and whatever the patch
     * cannot express (new ids, emptied communities) take a full build.
     * The memory budget is a byte limit on the build itself: a version
     * that would not fit is refused before its weights are allocated. */
    uint64_t others = 0, budget = 0;
    size_t limit = in->budget ? in->budget(in->budget_ctx, in->budget_self, &others, &budget) : 0;
    icpns_snapshot_t *s = NULL;
    int rc = ICPNS_ENOPATCH;
    if (!reload && in->in_sync && can_patch(in->batch)) {
        icpns_delta_t delta;
        if (gather_delta(in->batch, &delta) == 0) {
            icpns_patch_stats_t ps;
            rc = icpns_snapshot_patch_limit(in->current, &delta, limit, &s, &ps, &err);
            free((void *)delta.inter);
            free((void *)delta.comm);
            if (rc == 0) {
                snprintf(out->meta.rebuild, sizeof(out->meta.rebuild), "patch");
                out->meta.comms_rebuilt = ps.comms_rebuilt;
            } else if (rc == ICPNS_ENOPATCH) {
                log_debug("update needs a full rebuild: %s", err.message);
            }
        }
    }
    if (rc == ICPNS_ENOPATCH) {
        rc = icpns_snapshot_build_limit(d, &out->opts.params, limit, &s, &err);
        snprintf(out->meta.rebuild, sizeof(out->meta.rebuild), "full");
        out->meta.comms_rebuilt = s ? s->comms.n : 0;
    }
    if (rc) {
        out->in_sync = false; /* the dataset moved on without a snapshot */
        icpnsd_err_t e;
        if (over_budget(rc, &err)) {
            bool updates = false;
            for (icpnsd_job_t *j = in->batch; j; j = j->next)
                updates |= j->kind != ICPNSD_JOB_RELOAD && !icpnsd_err_failed(&j->err);
            icpnsd_err_set(&e, ICPNSD_E_MEMORY_BUDGET_EXCEEDED, NULL, -1,
                           "memory_budget: the new version of '%s': %s (memory_budget = %llu "
                           "minus the other sets' %llu bytes); the old version keeps serving%s",
                           in->name, err.message, (unsigned long long)budget,
                           (unsigned long long)others,
                           updates ? "; the update is recorded on disk and the next build that "
                                     "fits serves it (repeating it is harmless)" : "");
        } else {
            char m[1024];
            icpns_error_format(&err, m, sizeof(m));
            icpnsd_err_set(&e, rc == ICPNS_ENOMEM ? ICPNSD_E_OUT_OF_MEMORY
                               : rc == ICPNS_EPARSE ? ICPNSD_E_BUILD_INVALID
                               : rc == ICPNS_ELIMIT ? ICPNSD_E_UPDATE_TOO_LARGE
                                                    : ICPNSD_E_UPDATE_FAILED,
                           NULL, -1, "%s", m);
        }
        for (icpnsd_job_t *j = in->batch; j; j = j->next)
            icpnsd_job_fail(j, &e);
        out->dataset = icpns_dataset_free(out->dataset);
        return;
    }
    s->version = in->next_version;
    icpnsd_version_save(in->tables, in->name, s->version, s->fingerprint);
    out->built = s;
    out->in_sync = true;
    out->meta.version = s->version;
    out->meta.fingerprint = s->fingerprint;
    out->meta.build_seconds = icpns_now() - t0;
    out->meta.built_at = time(NULL);
}
