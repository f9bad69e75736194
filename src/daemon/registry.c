/*
 * registry.c - the table sets (see registry.h): lookup, file watch,
 * additions and removals.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uploads.h"
#include "log.h"
#include "registry.h"
#include "state.h"
#include "watch.h"

struct icpnsd_set {
    atomic_uint refs;
    char name[ICPNSD_SET_NAME];
    icpnsd_state_t st;
    icpnsd_registry_t *reg;
    icpnsd_wstats_t *wstats;
    icpnsd_setstats_t *stats;
    bool uploaded;           /* its directory is STATE/sets/NAME@GEN, written by the daemon */
    atomic_bool remove_files; /* removed: the directory goes with the last reference */
    char files[1200];        /* ... that directory (moved to STATE/sets.tmp once removed) */
    icpnsd_watch_t watch;  /* loop thread only */
};

struct icpnsd_registry {
    pthread_rwlock_t lock; /* guards sets[] and n */
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n;
    uv_loop_t *loop;
    const icpnsd_config_t *cfg;
    icpnsd_wbuilder_t wbuilder;
    /* Set additions and removals: queued by any thread, taken by the loop
     * thread; additions then load on the thread pool, at most
     * MAX_ADDING at a time, so one that hangs (a slow disk) blocks only
     * its own name and slot, never the registry. */
    pthread_mutex_t alock;
    icpnsd_job_t *aq_head, *aq_tail;
    uv_async_t aasync;
    struct adding *adding; /* loop thread only */
    unsigned n_adding;
    atomic_bool cancel;    /* shutting down: loads in progress give up where they can */
    uint64_t upload_gen;   /* the last generation of STATE/sets/NAME@GEN (loop thread) */
};

#define MAX_ADDING 2

/* One set being added: loaded on the thread pool, published on the loop. */
typedef struct adding {
    uv_work_t work;
    icpnsd_registry_t *reg;
    icpnsd_job_t *job;
    icpnsd_set_t *set;  /* loaded, not serving yet; NULL when the load failed */
    double started;
    struct adding *next;
} adding_t;

/* ---- one set ------------------------------------------------------------------ */

static icpnsd_set_t *set_new(icpnsd_registry_t *reg, const char *name)
{
    icpnsd_set_t *set = calloc(1, sizeof(*set));
    if (!set)
        return NULL;
    set->wstats = icpnsd_wstats_new(name);
    set->stats = icpnsd_setstats_new();
    if (!set->wstats || !set->stats) {
        icpnsd_wstats_unref(set->wstats);
        icpnsd_setstats_unref(set->stats);
        free(set);
        return NULL;
    }
    atomic_init(&set->refs, 1);
    snprintf(set->name, sizeof(set->name), "%s", name);
    set->reg = reg;
    return set;
}

/* Frees a set that never served (its state not initialised or failed). */
static void set_discard(icpnsd_set_t *set)
{
    icpnsd_wstats_unref(set->wstats);
    icpnsd_setstats_unref(set->stats);
    free(set);
}

void icpnsd_set_unref(icpnsd_set_t *set)
{
    if (set && atomic_fetch_sub(&set->refs, 1) == 1) {
        /* The loop handles were closed when the set was removed (or by the
         * final uv_walk at exit): only memory is left, and the files of an
         * uploaded set that was removed. */
        bool remove = atomic_load(&set->remove_files);
        icpnsd_state_free(&set->st);
        if (remove) {
            icpnsd_tableset_remove(set->files);
            log_info("removed the files of table set '%s' (%s)", set->name, set->files);
        }
        icpnsd_wstats_unref(set->wstats);
        icpnsd_setstats_unref(set->stats);
        free(set);
    }
}

const char *icpnsd_set_name(const icpnsd_set_t *set)
{
    return set->name;
}

const char *icpnsd_set_dir(const icpnsd_set_t *set)
{
    return set->st.tables;
}

const char *icpnsd_set_popularity_file(const icpnsd_set_t *set)
{
    return set->st.opts.popularity;
}

bool icpnsd_set_ready(icpnsd_set_t *set)
{
    return atomic_load(&set->st.ready);
}

icpns_snapshot_t *icpnsd_set_acquire(icpnsd_set_t *set)
{
    return icpnsd_state_acquire(&set->st);
}

icpns_snapshot_t *icpnsd_set_acquire_meta(icpnsd_set_t *set, icpnsd_meta_t *ret)
{
    return icpnsd_state_acquire_meta(&set->st, ret);
}

void icpnsd_set_meta(icpnsd_set_t *set, icpnsd_meta_t *ret)
{
    icpnsd_state_meta(&set->st, ret);
}

void icpnsd_set_submit(icpnsd_set_t *set, icpnsd_job_t *job)
{
    icpnsd_state_submit(&set->st, job);
}

const icpnsd_wstats_t *icpnsd_set_wstats(const icpnsd_set_t *set)
{
    return set->wstats;
}

icpnsd_setstats_t *icpnsd_set_stats(const icpnsd_set_t *set)
{
    return set->stats;
}

int icpnsd_set_weights(icpnsd_set_t *set, icpns_snapshot_t *s, const icpns_params_t *p,
                       icpnsd_waiter_t *waiter, bool resumed, icpnsd_wentry_t **ret, char *msg,
                       size_t msgsize)
{
    return icpnsd_weights_get(&set->reg->wbuilder, set->wstats, s, p, waiter, resumed, ret, msg,
                              msgsize);
}

/* ---- lookup ---------------------------------------------------------------------- */

static icpnsd_set_t *find_locked(icpnsd_registry_t *reg, const char *name)
{
    for (unsigned k = 0; k < reg->n; k++)
        if (!strcmp(reg->sets[k]->name, name))
            return reg->sets[k];
    return NULL;
}

icpnsd_set_t *icpnsd_registry_get(icpnsd_registry_t *reg, const char *name, int *why)
{
    pthread_rwlock_rdlock(&reg->lock);
    icpnsd_set_t *set = NULL;
    if (name && *name)
        set = find_locked(reg, name);
    else if (reg->n == 1)
        set = reg->sets[0];
    else
        set = find_locked(reg, "default");
    if (set)
        atomic_fetch_add(&set->refs, 1);
    else if (why)
        *why = name && *name ? 404 : 400;
    pthread_rwlock_unlock(&reg->lock);
    return set;
}

icpnsd_set_t *icpnsd_registry_main(icpnsd_registry_t *reg)
{
    icpnsd_set_t *set = icpnsd_registry_get(reg, NULL, NULL);
    if (!set) {
        pthread_rwlock_rdlock(&reg->lock);
        if (reg->n > 0) {
            set = reg->sets[0];
            atomic_fetch_add(&set->refs, 1);
        }
        pthread_rwlock_unlock(&reg->lock);
    }
    return set;
}

unsigned icpnsd_registry_list(icpnsd_registry_t *reg, icpnsd_set_t **out, unsigned max)
{
    pthread_rwlock_rdlock(&reg->lock);
    unsigned n = reg->n < max ? reg->n : max;
    for (unsigned k = 0; k < n; k++) {
        out[k] = reg->sets[k];
        atomic_fetch_add(&out[k]->refs, 1);
    }
    pthread_rwlock_unlock(&reg->lock);
    return n;
}

void icpnsd_registry_names(icpnsd_registry_t *reg, char *buf, size_t size)
{
    buf[0] = '\0';
    pthread_rwlock_rdlock(&reg->lock);
    for (unsigned k = 0; k < reg->n; k++) {
        size_t l = strlen(buf);
        snprintf(buf + l, size - l, "%s%s", k ? ", " : "", reg->sets[k]->name);
    }
    pthread_rwlock_unlock(&reg->lock);
}

/* The bytes of every set but @except's state (may be NULL). */
static uint64_t bytes_except(icpnsd_registry_t *reg, const void *except)
{
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n = icpnsd_registry_list(reg, sets, ICPNSD_MAX_SETS);
    uint64_t total = 0;
    for (unsigned k = 0; k < n; k++) {
        if ((const void *)&sets[k]->st != except) {
            icpns_snapshot_t *s = icpnsd_state_acquire(&sets[k]->st);
            if (s) {
                uint64_t wb = 0;
                icpnsd_wcache_usage(s, NULL, &wb);
                total += s->bytes + wb;
                icpns_snapshot_unref(s);
            }
        }
        icpnsd_set_unref(sets[k]);
    }
    return total;
}

uint64_t icpnsd_registry_bytes(icpnsd_registry_t *reg)
{
    return bytes_except(reg, NULL);
}

/* The state hooks: what the memory budget leaves for a build of @self. */
static size_t budget_left(void *ctx, const void *self, uint64_t *others, uint64_t *budget)
{
    icpnsd_registry_t *reg = ctx;
    *budget = reg->cfg->memory_budget;
    *others = 0;
    if (!*budget)
        return 0;
    *others = bytes_except(reg, self);
    return *others >= *budget ? 1 : (size_t)(*budget - *others);
}

static uint64_t weights_room(void *ctx)
{
    icpnsd_registry_t *reg = ctx;
    uint64_t budget = reg->cfg->memory_budget, used = icpnsd_registry_bytes(reg);
    return used >= budget ? 0 : budget - used;
}

static void prepare_snapshot(void *ctx, icpns_snapshot_t *s)
{
    icpnsd_registry_t *reg = ctx;
    icpnsd_wcache_attach(s, reg->cfg->weights_cache_size);
}

static void set_closed(void *ctx, icpnsd_state_t *st)
{
    (void)ctx;
    icpnsd_set_t *set = (icpnsd_set_t *)((char *)st - offsetof(icpnsd_set_t, st));
    log_info("table set '%s' closed", set->name);
    icpnsd_set_unref(set); /* the registry's reference */
}

static int set_load(icpnsd_registry_t *reg, icpnsd_set_t *set, const char *dir, icpnsd_err_t *e)
{
    icpnsd_state_hooks_t hooks = {
        .ctx = reg,
        .budget = budget_left,
        .prepare = prepare_snapshot,
        .closed = set_closed,
        .default_params = reg->cfg->default_params,
        .cluster_threads = reg->cfg->cluster_threads,
        .stats = set->stats,
    };
    return icpnsd_state_init(&set->st, reg->loop, set->name, dir, &hooks, e);
}

/* The name of a set already serving directory @dir (the same file, by
 * device and inode), copied to @other; false if none.  Two sets on one
 * directory would append to one journal and overwrite one version record
 * and one communities file: each set owns its directory. */
static bool dir_in_use(icpnsd_registry_t *reg, const char *dir, char *other, size_t size)
{
    struct stat a, b;
    if (!dir[0] || stat(dir, &a) < 0)
        return false;
    bool found = false;
    pthread_rwlock_rdlock(&reg->lock);
    for (unsigned k = 0; k < reg->n && !found; k++) {
        const char *t = reg->sets[k]->st.tables;
        if (t[0] && stat(t, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            snprintf(other, size, "%s", reg->sets[k]->name);
            found = true;
        }
    }
    pthread_rwlock_unlock(&reg->lock);
    return found;
}

/* ---- file watch --------------------------------------------------------------- */

static void watch_set(icpnsd_registry_t *reg, icpnsd_set_t *set)
{
    if (reg->cfg->watch)
        icpnsd_watch_start(&set->watch, reg->loop, &set->st, set->name, reg->cfg->watch_settle_ms);
}

void icpnsd_registry_watch(icpnsd_registry_t *reg)
{
    pthread_rwlock_rdlock(&reg->lock);
    for (unsigned k = 0; k < reg->n; k++)
        watch_set(reg, reg->sets[k]);
    pthread_rwlock_unlock(&reg->lock);
}

void icpnsd_registry_cancel(icpnsd_registry_t *reg)
{
    atomic_store(&reg->cancel, true);
    pthread_rwlock_rdlock(&reg->lock);
    for (unsigned k = 0; k < reg->n; k++)
        icpnsd_state_cancel(&reg->sets[k]->st);
    pthread_rwlock_unlock(&reg->lock);
}

void icpnsd_registry_reload_all(icpnsd_registry_t *reg, const char *origin)
{
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n = icpnsd_registry_list(reg, sets, ICPNSD_MAX_SETS);
    for (unsigned k = 0; k < n; k++) {
        icpnsd_state_reload(&sets[k]->st, origin);
        icpnsd_set_unref(sets[k]);
    }
}

/* ---- adding and removing sets ------------------------------------------------------ */

static void admin_next(icpnsd_registry_t *reg);

/* Fails @j (about field "tables") and ends it. */
static void job_end(icpnsd_job_t *j, icpnsd_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_end(icpnsd_job_t *j, icpnsd_code_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    j->err.code = code;
    snprintf(j->err.field, sizeof(j->err.field), "tables");
    vsnprintf(j->err.message, sizeof(j->err.message), fmt, ap);
    va_end(ap);
    icpnsd_job_finish(j);
}

/* Thread pool: writes an uploaded set to STATE/sets/NAME (through
 * STATE/sets.tmp/NAME).  A directory already there serves no set (the
 * name was checked free on the loop thread): a removal that failed to
 * delete it, or a crash between storing and loading. */
static int store_upload(icpnsd_registry_t *reg, icpnsd_job_t *j)
{
    char tmp[1200];
    const char *base = strrchr(j->u.set.dir, '/');
    snprintf(tmp, sizeof(tmp), "%s/sets.tmp/%s.part", reg->cfg->state_dir,
             base ? base + 1 : j->u.set.name);
    struct stat st;
    if (stat(j->u.set.dir, &st) == 0) {
        log_warn("%s serves no table set: replacing it with the upload", j->u.set.dir);
        icpnsd_tableset_remove(j->u.set.dir);
    }
    icpns_error_t err;
    if (icpnsd_tableset_store(j->u.set.dir, tmp, j->u.set.upload, &err)) {
        icpnsd_err_set(&j->err, ICPNSD_E_STORAGE_FAILED, "tables", -1,
                       "cannot store table set '%s' in %s: %s", j->u.set.name, j->u.set.dir,
                       err.message);
        return -1;
    }
    return 0;
}

/* Fails @j with memory_budget_exceeded when @bytes more do not fit. */
static bool over_budget(icpnsd_registry_t *reg, icpnsd_job_t *j, uint64_t bytes)
{
    uint64_t budget = reg->cfg->memory_budget, others = icpnsd_registry_bytes(reg);
    if (!budget || others + bytes <= budget)
        return false;
    icpnsd_err_set(&j->err, ICPNSD_E_MEMORY_BUDGET_EXCEEDED, "tables", -1,
                   "table set '%s' needs %llu bytes; with the %llu bytes the other sets hold "
                   "that is above memory_budget = %llu",
                   j->u.set.name, (unsigned long long)bytes, (unsigned long long)others,
                   (unsigned long long)budget);
    return true;
}

/* Thread pool: load and build the new set, and check the budget. */
static void add_work(uv_work_t *w)
{
    adding_t *a = w->data;
    icpnsd_registry_t *reg = a->reg;
    icpnsd_job_t *j = a->job;
    icpnsd_background_thread();
    icpnsd_test_delay();
    icpnsd_test_stall(j->u.set.dir, &reg->cancel);
    icpnsd_set_t *set = set_new(reg, j->u.set.name);
    if (!set) {
        icpnsd_err_set(&j->err, ICPNSD_E_OUT_OF_MEMORY, "tables", -1, "no memory for a table set");
        return;
    }
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    if (j->u.set.upload && store_upload(reg, j)) {
        set_discard(set);
        return;
    }
    if (set_load(reg, set, j->u.set.dir, &e)) {
        icpnsd_err_set(&j->err,
                       e.code == ICPNSD_E_MEMORY_BUDGET_EXCEEDED || e.code == ICPNSD_E_OUT_OF_MEMORY
                           ? e.code : ICPNSD_E_BUILD_INVALID,
                       "tables", -1, "table set '%s': %s", j->u.set.name, e.message);
        set_discard(set);
        if (j->u.set.upload)
            icpnsd_tableset_remove(j->u.set.dir);
        return;
    }
    if (j->u.set.upload) {
        set->uploaded = true;
        /* Refused below or in add_done: its files go with it. */
        snprintf(set->files, sizeof(set->files), "%s", j->u.set.dir);
        atomic_store(&set->remove_files, true);
    }
    icpns_snapshot_t *s = icpnsd_state_acquire(&set->st);
    j->u.set.bytes = s->bytes;
    j->out.version = s->version;
    j->out.fingerprint = s->fingerprint;
    j->out.build_seconds = s->build_seconds;
    icpns_snapshot_unref(s);
    /* Checked early here, and for good on the loop thread (another
     * addition may have been published meanwhile). */
    if (over_budget(reg, j, j->u.set.bytes)) {
        icpnsd_set_unref(set);
        return;
    }
    a->set = set;
}

static void add_done(uv_work_t *w, int status)
{
    adding_t *a = w->data;
    icpnsd_registry_t *reg = a->reg;
    icpnsd_job_t *j = a->job;
    icpnsd_set_t *set = a->set;
    (void)status;
    for (adding_t **p = &reg->adding; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            break;
        }
    reg->n_adding--;
    free(a);
    if (set && atomic_load(&reg->cancel)) {
        /* Stopping: the loop is closing its handles, a new set would
         * open some.  An upload's files go with it (its client was told
         * shutting_down). */
        icpnsd_err_set(&j->err, ICPNSD_E_SHUTTING_DOWN, "tables", -1,
                       "the daemon stopped before table set '%s' was published", j->u.set.name);
        icpnsd_set_unref(set);
        set = NULL;
    }
    if (set && over_budget(reg, j, j->u.set.bytes)) {
        icpnsd_set_unref(set);
        set = NULL;
    }
    if (!set) {
        log_warn("adding table set '%s' failed: %s", j->u.set.name, j->err.message);
        icpnsd_job_finish(j);
    } else {
        pthread_rwlock_wrlock(&reg->lock);
        bool dup = find_locked(reg, set->name) != NULL, full = reg->n == ICPNSD_MAX_SETS;
        if (!dup && !full)
            reg->sets[reg->n++] = set;
        pthread_rwlock_unlock(&reg->lock);
        if (dup || full) {
            icpnsd_set_unref(set);
            if (dup)
                job_end(j, ICPNSD_E_TABLES_EXIST, "a table set named '%s' exists", j->u.set.name);
            else
                job_end(j, ICPNSD_E_TOO_MANY_TABLES, "at most %d table sets", ICPNSD_MAX_SETS);
        } else {
            atomic_store(&set->remove_files, false);
            icpnsd_state_start(&set->st);
            watch_set(reg, set);
            log_info("added table set '%s' from %s: version %llu, %llu bytes", set->name,
                     set->st.tables, (unsigned long long)j->out.version,
                     (unsigned long long)j->u.set.bytes);
            icpnsd_job_finish(j);
        }
    }
    admin_next(reg);
}

static void remove_set(icpnsd_registry_t *reg, icpnsd_job_t *j)
{
    pthread_rwlock_wrlock(&reg->lock);
    icpnsd_set_t *set = NULL;
    unsigned k = 0;
    for (; k < reg->n; k++)
        if (!strcmp(reg->sets[k]->name, j->u.set.name)) {
            set = reg->sets[k];
            break;
        }
    bool last = set && reg->n == 1;
    if (set && !last) {
        memmove(&reg->sets[k], &reg->sets[k + 1], (reg->n - k - 1) * sizeof(reg->sets[0]));
        reg->n--;
    }
    pthread_rwlock_unlock(&reg->lock);
    if (!set) {
        job_end(j, ICPNSD_E_UNKNOWN_TABLES, "no table set named '%s'", j->u.set.name);
        return;
    }
    if (last) {
        job_end(j, ICPNSD_E_LAST_TABLES, "'%s' is the only table set; add another first",
                j->u.set.name);
        return;
    }
    icpnsd_watch_stop(&set->watch);
    /* Requests holding the set finish on it; it is freed after the last
     * (with its files, when it was uploaded).  The files leave
     * STATE/sets now: a restart does not bring the set back, and a build
     * still running for it writes nowhere that matters. */
    if (set->uploaded) {
        const char *base = strrchr(set->st.tables, '/');
        snprintf(set->files, sizeof(set->files), "%s/sets.tmp/%s", reg->cfg->state_dir,
                 base ? base + 1 : set->st.tables);
        if (rename(set->st.tables, set->files) < 0) {
            log_warn("cannot move %s to %s: %s; removing it in place", set->st.tables,
                     set->files, strerror(errno));
            snprintf(set->files, sizeof(set->files), "%s", set->st.tables);
        }
        atomic_store(&set->remove_files, true);
    }
    icpnsd_state_shutdown(&set->st);
    log_info("removed table set '%s'", j->u.set.name);
    icpnsd_job_finish(j);
}

/* The addition of @name or of directory @dir in progress, or NULL. */
static adding_t *find_adding(icpnsd_registry_t *reg, const char *name, const char *dir)
{
    struct stat x, y;
    bool have_dir = dir[0] && stat(dir, &x) == 0;
    for (adding_t *a = reg->adding; a; a = a->next) {
        if (!strcmp(a->job->u.set.name, name) || !strcmp(a->job->u.set.dir, dir))
            return a;
        if (have_dir && a->job->u.set.dir[0] && stat(a->job->u.set.dir, &y) == 0 &&
            x.st_dev == y.st_dev && x.st_ino == y.st_ino)
            return a;
    }
    return NULL;
}

/* Starts addition @j on the thread pool, or ends it refused. */
static void add_start(icpnsd_registry_t *reg, icpnsd_job_t *j)
{
    if (j->u.set.upload &&
        (size_t)snprintf(j->u.set.dir, sizeof(j->u.set.dir), "%s/sets/%s@%llu",
                         reg->cfg->state_dir, j->u.set.name,
                         (unsigned long long)++reg->upload_gen) >= sizeof(j->u.set.dir)) {
        job_end(j, ICPNSD_E_BAD_REQUEST, "state_dir is too long");
        return;
    }
    pthread_rwlock_rdlock(&reg->lock);
    bool exists = find_locked(reg, j->u.set.name) != NULL;
    pthread_rwlock_unlock(&reg->lock);
    if (exists) {
        job_end(j, ICPNSD_E_TABLES_EXIST, "a table set named '%s' exists", j->u.set.name);
        return;
    }
    char other[ICPNSD_SET_NAME];
    if (dir_in_use(reg, j->u.set.dir, other, sizeof(other))) {
        job_end(j, ICPNSD_E_TABLES_DIR_IN_USE,
                "table set '%s' already serves %s; each set needs its own directory "
                "(its journal, version record and communities file): copy it",
                other, j->u.set.dir);
        return;
    }
    adding_t *busy = find_adding(reg, j->u.set.name, j->u.set.dir);
    if (busy) {
        job_end(j, ICPNSD_E_TABLES_EXIST,
                "table set '%s' (%s) is being added (for %.0f s); wait for its answer",
                busy->job->u.set.name, busy->job->u.set.dir, icpns_now() - busy->started);
        return;
    }
    if (reg->n_adding >= MAX_ADDING) {
        char names[200] = "";
        for (adding_t *a = reg->adding; a; a = a->next)
            snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s'%s' (%.0f s)",
                     a == reg->adding ? "" : ", ", a->job->u.set.name, icpns_now() - a->started);
        job_end(j, ICPNSD_E_REGISTRY_BUSY,
                "%d table sets are being added already: %s; retry when one is done",
                MAX_ADDING, names);
        return;
    }
    adding_t *a = calloc(1, sizeof(*a));
    if (!a) {
        job_end(j, ICPNSD_E_OUT_OF_MEMORY, "no memory");
        return;
    }
    a->reg = reg;
    a->job = j;
    a->started = icpns_now();
    a->work.data = a;
    a->next = reg->adding;
    reg->adding = a;
    reg->n_adding++;
    uv_queue_work(reg->loop, &a->work, add_work, add_done);
}

/* Loop thread: runs the queued removals and starts the queued additions. */
static void admin_next(icpnsd_registry_t *reg)
{
    for (;;) {
        pthread_mutex_lock(&reg->alock);
        icpnsd_job_t *j = reg->aq_head;
        if (j) {
            reg->aq_head = j->next;
            if (!reg->aq_head)
                reg->aq_tail = NULL;
        }
        pthread_mutex_unlock(&reg->alock);
        if (!j)
            return;
        if (j->kind == ICPNSD_JOB_SET_REMOVE)
            remove_set(reg, j);
        else
            add_start(reg, j);
    }
}

static void admin_async(uv_async_t *a)
{
    admin_next(a->data);
}

void icpnsd_registry_submit(icpnsd_registry_t *reg, icpnsd_job_t *job)
{
    job->next = NULL;
    pthread_mutex_lock(&reg->alock);
    if (reg->aq_tail)
        reg->aq_tail->next = job;
    else
        reg->aq_head = job;
    reg->aq_tail = job;
    pthread_mutex_unlock(&reg->alock);
    uv_async_send(&reg->aasync);
}

/* ---- lifetime ---------------------------------------------------------------------------- */

static int add_initial(icpnsd_registry_t *reg, const char *name, const char *dir, bool uploaded,
                       char *err, size_t es)
{
    char other[ICPNSD_SET_NAME];
    if (dir_in_use(reg, dir, other, sizeof(other))) {
        snprintf(err, es, "table sets '%s' and '%s' name the same directory %s; each set needs "
                 "its own (its journal, version record and communities file): copy it",
                 other, name, dir);
        return -1;
    }
    icpnsd_set_t *set = set_new(reg, name);
    if (!set) {
        snprintf(err, es, "out of memory");
        return -1;
    }
    log_info("tables=%s: loading %s", name, dir[0] ? dir : "(built-in synthetic dataset)");
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    if (set_load(reg, set, dir, &e)) {
        snprintf(err, es, "table set '%s': %s", name, e.message);
        set_discard(set);
        return -1;
    }
    if (reg->cfg->memory_budget) {
        uint64_t total = icpnsd_registry_bytes(reg);
        icpns_snapshot_t *s = icpnsd_state_acquire(&set->st);
        size_t bytes = s->bytes;
        icpns_snapshot_unref(s);
        if (total + bytes > reg->cfg->memory_budget) {
            snprintf(err, es, "table set '%s' needs %zu bytes; with the sets before it (%llu "
                     "bytes) that is above memory_budget = %llu", name, bytes,
                     (unsigned long long)total, (unsigned long long)reg->cfg->memory_budget);
            icpnsd_set_unref(set);
            return -1;
        }
    }
    set->uploaded = uploaded;
    if (uploaded)
        snprintf(set->files, sizeof(set->files), "%s", dir);
    icpnsd_state_start(&set->st);
    pthread_rwlock_wrlock(&reg->lock);
    reg->sets[reg->n++] = set;
    pthread_rwlock_unlock(&reg->lock);
    return 0;
}

/* An uploaded set found at start (icpnsd_uploads_scan). */
static int add_uploaded(void *ctx, const char *name, const char *dir, char *err, size_t es)
{
    icpnsd_registry_t *reg = ctx;
    if (find_locked(reg, name)) {
        snprintf(err, es, "the uploaded table set %s has the name of a configured set; "
                 "rename or remove one of them", dir);
        return -1;
    }
    if (reg->n == ICPNSD_MAX_SETS) {
        snprintf(err, es, "%s: at most %d table sets", dir, ICPNSD_MAX_SETS);
        return -1;
    }
    return add_initial(reg, name, dir, true, err, es);
}

icpnsd_registry_t *icpnsd_registry_new(uv_loop_t *loop, const icpnsd_config_t *cfg)
{
    icpnsd_registry_t *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return NULL;
    pthread_rwlock_init(&reg->lock, NULL);
    pthread_mutex_init(&reg->alock, NULL);
    reg->loop = loop;
    reg->cfg = cfg;
    icpnsd_wbuilder_init(&reg->wbuilder, loop);
    if (cfg->memory_budget) {
        reg->wbuilder.room = weights_room;
        reg->wbuilder.room_ctx = reg;
    }
    uv_async_init(loop, &reg->aasync, admin_async);
    reg->aasync.data = reg;
    return reg;
}

int icpnsd_registry_load(icpnsd_registry_t *reg, char *err, size_t errsize)
{
    const icpnsd_config_t *cfg = reg->cfg;
    /* The plain "tables" key is the set named "default"; without any
     * table directory the built-in dataset is. */
    if (cfg->tables[0] || cfg->n_sets == 0)
        if (add_initial(reg, "default", cfg->tables, false, err, errsize))
            return -1;
    for (unsigned k = 0; k < cfg->n_sets; k++)
        if (add_initial(reg, cfg->sets[k].name, cfg->sets[k].dir, false, err, errsize))
            return -1;
    return cfg->state_dir[0] ? icpnsd_uploads_scan(cfg->state_dir, add_uploaded, reg,
                                                    &reg->upload_gen, err, errsize)
                             : 0;
}

void icpnsd_registry_free(icpnsd_registry_t *reg)
{
    if (!reg)
        return;
    /* Additions and removals that never ran (the loop stopped first). */
    for (icpnsd_job_t *j = reg->aq_head, *next; j; j = next) {
        next = j->next;
        job_end(j, ICPNSD_E_SHUTTING_DOWN, "the daemon stopped before the change ran");
    }
    reg->aq_head = reg->aq_tail = NULL;
    pthread_rwlock_wrlock(&reg->lock);
    unsigned n = reg->n;
    reg->n = 0;
    pthread_rwlock_unlock(&reg->lock);
    for (unsigned k = 0; k < n; k++)
        icpnsd_set_unref(reg->sets[k]);
    icpnsd_wbuilder_free(&reg->wbuilder);
    pthread_rwlock_destroy(&reg->lock);
    pthread_mutex_destroy(&reg->alock);
    free(reg);
}
