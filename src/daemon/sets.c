/*
 * sets.c - the registry of named table sets, and each snapshot's cache of
 * weight settings (see sets.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "sets.h"

/* ---- sets ------------------------------------------------------------------ */

static icpnsd_set_t *set_new(void)
{
    icpnsd_set_t *set = calloc(1, sizeof(*set));
    if (set)
        atomic_init(&set->refs, 1);
    return set;
}

void icpnsd_set_unref(icpnsd_set_t *set)
{
    if (set && atomic_fetch_sub(&set->refs, 1) == 1) {
        /* The loop handles were closed when the set was removed (or by the
         * final uv_walk at exit): only memory is left. */
        icpnsd_state_free(&set->st);
        free(set);
    }
}

static icpnsd_set_t *find_locked(icpnsd_registry_t *reg, const char *name)
{
    for (unsigned k = 0; k < reg->n; k++)
        if (!strcmp(reg->sets[k]->name, name))
            return reg->sets[k];
    return NULL;
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

uint64_t icpnsd_registry_bytes(icpnsd_registry_t *reg, const icpnsd_state_t *except)
{
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n = icpnsd_registry_list(reg, sets, ICPNSD_MAX_SETS);
    uint64_t total = 0;
    for (unsigned k = 0; k < n; k++) {
        if (&sets[k]->st != except) {
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

/* ---- file watch --------------------------------------------------------------- */

static void submit_reload(icpnsd_set_t *set, const char *origin)
{
    icpnsd_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->kind = JOB_RELOAD;
    snprintf(j->origin, sizeof(j->origin), "%s", origin);
    icpnsd_state_submit(&set->st, j);
}

static void on_debounce(uv_timer_t *t)
{
    submit_reload(t->data, "watch");
}

static void on_fs_event(uv_fs_event_t *h, const char *file, int events, int status)
{
    icpnsd_set_t *set = h->data;
    (void)events;
    if (status < 0 || !file)
        return;
    /* Our own writes (temporaries, the journal, the version record,
     * communities.tsv rewritten by an update in the last second) do not
     * trigger reloads. */
    if (strstr(file, ".tmp.") || !strcmp(file, "interactions.journal") ||
        !strcmp(file, "icpnsd.version"))
        return;
    uint64_t wrote = atomic_load(&set->st.self_write_ms);
    if (wrote && !strcmp(file, set->st.opts.communities) && icpns_now() * 1000 < (double)wrote + 1000)
        return;
    uv_timer_start(&set->debounce, on_debounce, 300, 0);
}

static void watch_set(icpnsd_registry_t *reg, icpnsd_set_t *set)
{
    if (!reg->cfg->watch || !set->st.tables[0] || set->watching)
        return;
    uv_timer_init(reg->loop, &set->debounce);
    set->debounce.data = set;
    uv_fs_event_init(reg->loop, &set->watch);
    set->watch.data = set;
    set->watching = true;
    if (uv_fs_event_start(&set->watch, on_fs_event, set->st.tables, 0) == 0)
        log_info("tables=%s: watching %s for changes", set->name, set->st.tables);
    else
        log_warn("tables=%s: cannot watch %s; reload with SIGHUP or POST /admin/reload",
                 set->name, set->st.tables);
}

void icpnsd_registry_watch(icpnsd_registry_t *reg)
{
    pthread_rwlock_rdlock(&reg->lock);
    for (unsigned k = 0; k < reg->n; k++)
        watch_set(reg, reg->sets[k]);
    pthread_rwlock_unlock(&reg->lock);
}

void icpnsd_registry_reload_all(icpnsd_registry_t *reg, const char *origin)
{
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n = icpnsd_registry_list(reg, sets, ICPNSD_MAX_SETS);
    for (unsigned k = 0; k < n; k++) {
        submit_reload(sets[k], origin);
        icpnsd_set_unref(sets[k]);
    }
}

/* ---- adding and removing sets ------------------------------------------------------ */

static void admin_next(icpnsd_registry_t *reg);

static void job_finish(icpnsd_job_t *j, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void job_finish(icpnsd_job_t *j, int status, const char *code, const char *fmt, ...)
{
    j->status = status;
    snprintf(j->code, sizeof(j->code), "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->message, sizeof(j->message), fmt, ap);
    va_end(ap);
    if (j->done_cb)
        j->done_cb(j);
    else
        icpnsd_job_free(j);
}

/* Thread pool: load and build the new set, and check the budget. */
static void add_work(uv_work_t *w)
{
    icpnsd_background_thread();
    icpnsd_registry_t *reg = w->data;
    icpnsd_job_t *j = reg->ajob;
    icpnsd_set_t *set = set_new();
    char err[1024];
    if (!set) {
        j->status = 503;
        snprintf(j->code, sizeof(j->code), "out_of_memory");
        snprintf(j->message, sizeof(j->message), "no memory for a table set");
        return;
    }
    snprintf(set->name, sizeof(set->name), "%s", j->set_name);
    set->reg = reg;
    int rc = icpnsd_state_init(&set->st, reg->loop, j->set_name, j->set_dir, reg, err, sizeof(err));
    if (rc) {
        j->status = rc == ICPNS_ELIMIT ? 507 : 422;
        snprintf(j->code, sizeof(j->code), "%s",
                 rc == ICPNS_ELIMIT ? "memory_budget_exceeded" : "tables_invalid");
        snprintf(j->message, sizeof(j->message), "table set '%s': %s", j->set_name, err);
        free(set);
        return;
    }
    icpns_snapshot_t *s = icpnsd_state_acquire(&set->st);
    j->set_bytes = s->bytes;
    j->version = s->version;
    j->fingerprint = s->fingerprint;
    j->build_seconds = s->build_seconds;
    icpns_snapshot_unref(s);
    uint64_t budget = reg->cfg->memory_budget, others = icpnsd_registry_bytes(reg, NULL);
    if (budget && others + j->set_bytes > budget) {
        j->status = 507;
        snprintf(j->code, sizeof(j->code), "memory_budget_exceeded");
        snprintf(j->message, sizeof(j->message),
                 "table set '%s' needs %llu bytes; with the %llu bytes the other sets hold "
                 "that is above memory_budget = %llu",
                 j->set_name, (unsigned long long)j->set_bytes, (unsigned long long)others,
                 (unsigned long long)budget);
        icpnsd_set_unref(set);
        return;
    }
    reg->anew = set;
}

static void add_done(uv_work_t *w, int status)
{
    icpnsd_registry_t *reg = w->data;
    icpnsd_job_t *j = reg->ajob;
    icpnsd_set_t *set = reg->anew;
    (void)status;
    reg->ajob = NULL;
    reg->anew = NULL;
    if (!set) {
        char msg[sizeof(j->message)], code[sizeof(j->code)];
        snprintf(msg, sizeof(msg), "%s", j->message);
        snprintf(code, sizeof(code), "%s", j->code);
        log_warn("adding table set '%s' failed: %s", j->set_name, msg);
        job_finish(j, j->status, code, "%s", msg);
    } else {
        pthread_rwlock_wrlock(&reg->lock);
        bool dup = find_locked(reg, set->name) != NULL, full = reg->n == ICPNSD_MAX_SETS;
        if (!dup && !full)
            reg->sets[reg->n++] = set;
        pthread_rwlock_unlock(&reg->lock);
        if (dup || full) {
            icpnsd_set_unref(set);
            if (dup)
                job_finish(j, 409, "tables_exist", "a table set named '%s' exists", j->set_name);
            else
                job_finish(j, 409, "too_many_tables", "at most %d table sets", ICPNSD_MAX_SETS);
        } else {
            icpnsd_state_start(&set->st);
            watch_set(reg, set);
            log_info("added table set '%s' from %s: version %llu, %llu bytes", set->name,
                     set->st.tables, (unsigned long long)j->version,
                     (unsigned long long)j->set_bytes);
            job_finish(j, 201, "", "added");
        }
    }
    reg->abusy = false;
    admin_next(reg);
}

static void set_closed(icpnsd_state_t *st)
{
    icpnsd_set_t *set = (icpnsd_set_t *)((char *)st - offsetof(icpnsd_set_t, st));
    log_info("table set '%s' closed", set->name);
    icpnsd_set_unref(set); /* the registry's reference */
}

static void close_handle(uv_handle_t *h)
{
    (void)h;
}

static void remove_set(icpnsd_registry_t *reg, icpnsd_job_t *j)
{
    pthread_rwlock_wrlock(&reg->lock);
    icpnsd_set_t *set = NULL;
    unsigned k = 0;
    for (; k < reg->n; k++)
        if (!strcmp(reg->sets[k]->name, j->set_name)) {
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
        job_finish(j, 404, "unknown_tables", "no table set named '%s'", j->set_name);
        return;
    }
    if (last) {
        job_finish(j, 409, "last_tables", "'%s' is the only table set; add another first",
                   j->set_name);
        return;
    }
    if (set->watching) {
        uv_close((uv_handle_t *)&set->watch, close_handle);
        uv_close((uv_handle_t *)&set->debounce, close_handle);
        set->watching = false;
    }
    /* Requests holding the set finish on it; it is freed after the last. */
    set->st.closed_cb = set_closed;
    icpnsd_state_shutdown(&set->st);
    log_info("removed table set '%s'", j->set_name);
    job_finish(j, 200, "", "removed");
}

static void admin_next(icpnsd_registry_t *reg)
{
    while (!reg->abusy) {
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
        if (j->kind == JOB_SET_REMOVE) {
            remove_set(reg, j);
            continue;
        }
        int why = 0;
        icpnsd_set_t *exists = icpnsd_registry_get(reg, j->set_name, &why);
        if (exists) {
            icpnsd_set_unref(exists);
            job_finish(j, 409, "tables_exist", "a table set named '%s' exists", j->set_name);
            continue;
        }
        char other[ICPNSD_SET_NAME];
        if (dir_in_use(reg, j->set_dir, other, sizeof(other))) {
            job_finish(j, 409, "tables_dir_in_use",
                       "table set '%s' already serves %s; each set needs its own directory "
                       "(its journal, version record and communities file): copy it",
                       other, j->set_dir);
            continue;
        }
        reg->abusy = true;
        reg->ajob = j;
        reg->anew = NULL;
        reg->awork.data = reg;
        uv_queue_work(reg->loop, &reg->awork, add_work, add_done);
    }
}

static void admin_async(uv_async_t *a)
{
    admin_next(a->data);
}

void icpnsd_registry_submit(icpnsd_registry_t *reg, icpnsd_job_t *job)
{
    job->next = NULL;
    job->status = 0;
    pthread_mutex_lock(&reg->alock);
    if (reg->aq_tail)
        reg->aq_tail->next = job;
    else
        reg->aq_head = job;
    reg->aq_tail = job;
    pthread_mutex_unlock(&reg->alock);
    uv_async_send(&reg->aasync);
}

/* ---- the weights cache ------------------------------------------------------------------ */

enum { W_BUILDING, W_READY, W_FAILED };

struct icpnsd_wentry {
    atomic_uint refs;
    icpns_params_t p;
    int state;
    icpns_weights_t *w;
    char error[256];
    uint64_t used;
    icpnsd_waiter_t *waiters;
    /* While building: */
    icpns_snapshot_t *snap;  /* a reference */
    icpnsd_set_t *set;       /* a reference */
    uv_work_t work;
    icpnsd_wentry_t *next;   /* in the registry's build queue */
};

typedef struct wcache {
    pthread_mutex_t lock;
    uint32_t cap, n;
    uint64_t tick;
    atomic_uint_fast64_t bytes;
    icpnsd_wentry_t **e;
} wcache_t;

static void wentry_free(icpnsd_wentry_t *e)
{
    icpns_weights_free(e->w);
    free(e);
}

void icpnsd_wentry_unref(icpnsd_wentry_t *e)
{
    if (e && atomic_fetch_sub(&e->refs, 1) == 1)
        wentry_free(e);
}

const icpns_weights_t *icpnsd_wentry_weights(const icpnsd_wentry_t *e)
{
    return e->w;
}

static void wcache_free(void *p)
{
    wcache_t *c = p;
    for (uint32_t k = 0; k < c->n; k++)
        icpnsd_wentry_unref(c->e[k]);
    free(c->e);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void icpnsd_wcache_attach(icpns_snapshot_t *s, uint32_t cap)
{
    if (s->ext || cap == 0)
        return;
    wcache_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->e = calloc(cap, sizeof(*c->e));
    if (!c->e) {
        free(c);
        return;
    }
    c->cap = cap;
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->bytes, 0);
    s->ext = c;
    s->ext_free = wcache_free;
}

void icpnsd_wcache_usage(const icpns_snapshot_t *s, unsigned *entries, uint64_t *bytes)
{
    wcache_t *c = s->ext;
    if (entries)
        *entries = 0;
    if (bytes)
        *bytes = 0;
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    if (entries)
        *entries = c->n;
    pthread_mutex_unlock(&c->lock);
    if (bytes)
        *bytes = atomic_load(&c->bytes);
}

static bool same_params(const icpns_params_t *a, const icpns_params_t *b)
{
    return a->alpha == b->alpha && a->epsilon == b->epsilon && a->beta == b->beta;
}

/* Thread pool: the build itself. */
static void wbuild_work(uv_work_t *w)
{
    icpnsd_background_thread();
    icpnsd_wentry_t *e = w->data;
    icpns_error_t err;
    icpns_error_clear(&err);
    icpns_weights_t *ws = NULL;
    if (icpns_weights_build(e->snap, &e->p, &ws, &err)) {
        snprintf(e->error, sizeof(e->error), "building weights for alpha=%g epsilon=%g beta=%g: %s",
                 e->p.alpha, e->p.epsilon, e->p.beta, err.message);
        e->w = NULL;
    } else {
        e->w = ws;
    }
}

/* Loop thread: publish the entry and wake whoever waits for it. */
static void wbuild_done(uv_work_t *w, int status)
{
    icpnsd_wentry_t *e = w->data;
    (void)status;
    wcache_t *c = e->snap->ext;
    pthread_mutex_lock(&c->lock);
    e->state = e->w ? W_READY : W_FAILED;
    icpnsd_waiter_t *wt = e->waiters;
    e->waiters = NULL;
    pthread_mutex_unlock(&c->lock);
    if (e->w) {
        atomic_fetch_add(&c->bytes, e->w->bytes);
        atomic_fetch_add(&e->set->wstats.builds, 1);
        log_info("tables=%s: weights for alpha=%g epsilon=%g beta=%g built in %.3fs (%zu bytes)",
                 e->set->name, e->p.alpha, e->p.epsilon, e->p.beta, e->w->build_seconds,
                 e->w->bytes);
    } else {
        atomic_fetch_add(&e->set->wstats.failures, 1);
        log_warn("tables=%s: %s", e->set->name, e->error);
    }
    while (wt) {
        icpnsd_waiter_t *next = wt->next;
        wt->wake(wt->arg);
        free(wt);
        wt = next;
    }
    icpns_snapshot_unref(e->snap);
    e->snap = NULL;
    icpnsd_set_unref(e->set);
    e->set = NULL;
    icpnsd_wentry_unref(e); /* the build's reference */
}

static void wbuild_async(uv_async_t *a)
{
    icpnsd_registry_t *reg = a->data;
    pthread_mutex_lock(&reg->wlock);
    icpnsd_wentry_t *q = reg->wq;
    reg->wq = NULL;
    pthread_mutex_unlock(&reg->wlock);
    while (q) {
        icpnsd_wentry_t *next = q->next;
        q->work.data = q;
        uv_queue_work(reg->loop, &q->work, wbuild_work, wbuild_done);
        q = next;
    }
}

int icpnsd_weights_get(icpnsd_set_t *set, icpns_snapshot_t *s, const icpns_params_t *p,
                       icpnsd_waiter_t *waiter, bool resumed, icpnsd_wentry_t **ret, char *msg,
                       size_t msgsize)
{
    wcache_t *c = s->ext;
    if (!c) {
        free(waiter);
        return WGET_DISABLED;
    }
    pthread_mutex_lock(&c->lock);
    icpnsd_wentry_t *e = NULL;
    for (uint32_t k = 0; k < c->n; k++)
        if (same_params(&c->e[k]->p, p)) {
            e = c->e[k];
            break;
        }
    if (e) {
        e->used = ++c->tick;
        if (e->state == W_READY) {
            atomic_fetch_add(&e->refs, 1);
            pthread_mutex_unlock(&c->lock);
            if (!resumed)
                atomic_fetch_add(&set->wstats.hits, 1);
            free(waiter);
            *ret = e;
            return WGET_READY;
        }
        if (e->state == W_FAILED) {
            snprintf(msg, msgsize, "%s", e->error);
            pthread_mutex_unlock(&c->lock);
            free(waiter);
            return WGET_FAILED;
        }
        /* Building. */
        if (waiter) {
            waiter->next = e->waiters;
            e->waiters = waiter;
            pthread_mutex_unlock(&c->lock);
            atomic_fetch_add(&set->wstats.waits, 1);
            return WGET_WAITING;
        }
        pthread_mutex_unlock(&c->lock);
        atomic_fetch_add(&set->wstats.busy, 1);
        return WGET_BUSY;
    }
    /* A miss: make room (least recently used among the finished entries). */
    if (c->n == c->cap) {
        int victim = -1;
        for (uint32_t k = 0; k < c->n; k++)
            if (c->e[k]->state != W_BUILDING && (victim < 0 || c->e[k]->used < c->e[victim]->used))
                victim = (int)k;
        if (victim < 0) {
            pthread_mutex_unlock(&c->lock);
            atomic_fetch_add(&set->wstats.busy, 1);
            free(waiter);
            snprintf(msg, msgsize, "all %u weight settings of the cache are being built", c->cap);
            return WGET_BUSY;
        }
        icpnsd_wentry_t *old = c->e[victim];
        c->e[victim] = c->e[--c->n];
        if (old->w)
            atomic_fetch_sub(&c->bytes, old->w->bytes);
        atomic_fetch_add(&set->wstats.evictions, 1);
        icpnsd_wentry_unref(old); /* readers still holding it keep it alive */
    }
    e = calloc(1, sizeof(*e));
    if (!e) {
        pthread_mutex_unlock(&c->lock);
        free(waiter);
        return WGET_NOMEM;
    }
    atomic_init(&e->refs, 2); /* the cache's and the build's */
    e->p = *p;
    e->state = W_BUILDING;
    e->used = ++c->tick;
    e->snap = icpns_snapshot_ref(s);
    e->set = set;
    atomic_fetch_add(&set->refs, 1);
    if (waiter) {
        waiter->next = NULL;
        e->waiters = waiter;
    }
    c->e[c->n++] = e;
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_add(&set->wstats.misses, 1);
    icpnsd_registry_t *reg = set->reg;
    pthread_mutex_lock(&reg->wlock);
    e->next = reg->wq;
    reg->wq = e;
    pthread_mutex_unlock(&reg->wlock);
    uv_async_send(&reg->wasync);
    if (waiter) {
        atomic_fetch_add(&set->wstats.waits, 1);
        return WGET_WAITING;
    }
    atomic_fetch_add(&set->wstats.busy, 1);
    snprintf(msg, msgsize, "the weights for alpha=%g epsilon=%g beta=%g are being built",
             p->alpha, p->epsilon, p->beta);
    return WGET_BUSY;
}

/* ---- metrics ---------------------------------------------------------------------------- */

static int appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return 0;
        }
        size_t nc = *cap * 2 + (size_t)n;
        char *nb = realloc(*buf, nc);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = nc;
    }
}

char *icpnsd_registry_metrics(icpnsd_registry_t *reg, char *buf, size_t *len, size_t *cap)
{
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n = icpnsd_registry_list(reg, sets, ICPNSD_MAX_SETS);
    static const struct {
        const char *name, *help, *type;
    } m[] = {
        {"icpnsd_tables_version", "Serving snapshot version of each table set.", "gauge"},
        {"icpnsd_tables_bytes", "Memory of each table set's serving snapshot.", "gauge"},
        {"icpnsd_tables_users", "Users of each table set.", "gauge"},
        {"icpnsd_tables_interactions", "Distinct interactions of each table set.", "gauge"},
        {"icpnsd_weights_cache_entries", "Cached (alpha, epsilon, beta) settings per set.", "gauge"},
        {"icpnsd_weights_cache_bytes", "Memory of the cached settings per set.", "gauge"},
        {"icpnsd_weights_cache_hits_total", "Requests served from a cached setting.", "counter"},
        {"icpnsd_weights_cache_misses_total", "Settings not cached when asked for.", "counter"},
        {"icpnsd_weights_cache_builds_total", "Settings built.", "counter"},
        {"icpnsd_weights_cache_failures_total", "Settings whose build failed.", "counter"},
        {"icpnsd_weights_cache_evictions_total", "Settings evicted (least recently used).", "counter"},
        {"icpnsd_weights_cache_waits_total", "Requests that waited for a setting.", "counter"},
        {"icpnsd_weights_cache_busy_total", "Requests answered 503 while a setting was built.", "counter"},
    };
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        appendf(&buf, len, cap, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name,
                m[k].type);
        for (unsigned j = 0; j < n; j++) {
            icpnsd_set_t *set = sets[j];
            icpns_snapshot_t *s = icpnsd_state_acquire(&set->st);
            unsigned entries = 0;
            uint64_t wb = 0, v = 0;
            if (s)
                icpnsd_wcache_usage(s, &entries, &wb);
            switch (k) {
            case 0: v = s ? s->version : 0; break;
            case 1: v = s ? s->bytes : 0; break;
            case 2: v = s ? s->users.n : 0; break;
            case 3: v = s ? s->n_interactions : 0; break;
            case 4: v = entries; break;
            case 5: v = wb; break;
            case 6: v = atomic_load(&set->wstats.hits); break;
            case 7: v = atomic_load(&set->wstats.misses); break;
            case 8: v = atomic_load(&set->wstats.builds); break;
            case 9: v = atomic_load(&set->wstats.failures); break;
            case 10: v = atomic_load(&set->wstats.evictions); break;
            case 11: v = atomic_load(&set->wstats.waits); break;
            default: v = atomic_load(&set->wstats.busy); break;
            }
            icpns_snapshot_unref(s);
            appendf(&buf, len, cap, "%s{tables=\"%s\"} %llu\n", m[k].name, set->name,
                    (unsigned long long)v);
        }
    }
    appendf(&buf, len, cap, "# HELP icpnsd_tables_info The fingerprint of each set's serving "
                            "snapshot (equal fingerprints: equal negatives for equal requests).\n"
                            "# TYPE icpnsd_tables_info gauge\n");
    for (unsigned j = 0; j < n; j++) {
        icpns_snapshot_t *s = icpnsd_state_acquire(&sets[j]->st);
        if (s)
            appendf(&buf, len, cap, "icpnsd_tables_info{tables=\"%s\",fingerprint=\"%016llx\"} 1\n",
                    sets[j]->name, (unsigned long long)s->fingerprint);
        icpns_snapshot_unref(s);
    }
    for (unsigned j = 0; j < n; j++)
        icpnsd_set_unref(sets[j]);
    return buf;
}

/* ---- lifetime ---------------------------------------------------------------------------- */

static int add_initial(icpnsd_registry_t *reg, const char *name, const char *dir, char *err,
                       size_t es)
{
    icpnsd_set_t *set = set_new();
    if (!set) {
        snprintf(err, es, "out of memory");
        return -1;
    }
    snprintf(set->name, sizeof(set->name), "%s", name);
    set->reg = reg;
    char e[1024], other[ICPNSD_SET_NAME];
    if (dir_in_use(reg, dir, other, sizeof(other))) {
        snprintf(err, es, "table sets '%s' and '%s' name the same directory %s; each set needs "
                 "its own (its journal, version record and communities file): copy it",
                 other, name, dir);
        free(set);
        return -1;
    }
    log_info("tables=%s: loading %s", name, dir[0] ? dir : "(built-in synthetic dataset)");
    if (icpnsd_state_init(&set->st, reg->loop, name, dir, reg, e, sizeof(e))) {
        snprintf(err, es, "table set '%s': %s", name, e);
        free(set);
        return -1;
    }
    if (reg->cfg->memory_budget) {
        uint64_t total = icpnsd_registry_bytes(reg, NULL);
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
    icpnsd_state_start(&set->st);
    pthread_rwlock_wrlock(&reg->lock);
    reg->sets[reg->n++] = set;
    pthread_rwlock_unlock(&reg->lock);
    return 0;
}

int icpnsd_registry_init(icpnsd_registry_t *reg, uv_loop_t *loop, const icpnsd_config_t *cfg,
                         char *err, size_t errsize)
{
    memset(reg, 0, sizeof(*reg));
    pthread_rwlock_init(&reg->lock, NULL);
    pthread_mutex_init(&reg->wlock, NULL);
    pthread_mutex_init(&reg->alock, NULL);
    reg->loop = loop;
    reg->cfg = cfg;
    uv_async_init(loop, &reg->wasync, wbuild_async);
    reg->wasync.data = reg;
    uv_async_init(loop, &reg->aasync, admin_async);
    reg->aasync.data = reg;
    /* The plain "tables" key is the set named "default"; without any
     * table directory the built-in dataset is. */
    if (cfg->tables[0] || cfg->n_sets == 0)
        if (add_initial(reg, "default", cfg->tables, err, errsize))
            return -1;
    for (unsigned k = 0; k < cfg->n_sets; k++)
        if (add_initial(reg, cfg->sets[k].name, cfg->sets[k].dir, err, errsize))
            return -1;
    return 0;
}

void icpnsd_registry_free(icpnsd_registry_t *reg)
{
    pthread_rwlock_wrlock(&reg->lock);
    unsigned n = reg->n;
    reg->n = 0;
    pthread_rwlock_unlock(&reg->lock);
    for (unsigned k = 0; k < n; k++)
        icpnsd_set_unref(reg->sets[k]);
    pthread_rwlock_destroy(&reg->lock);
    pthread_mutex_destroy(&reg->wlock);
    pthread_mutex_destroy(&reg->alock);
}
