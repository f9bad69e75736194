/* req.c - the request as the handlers see it (see req.h). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "proxy.h"
#include "registry.h"
#include "req.h"

const char *icpnsd_req_header(icpnsd_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* Every X-Forwarded-For header, in order, joined by commas. */
typedef struct xff_ctx {
    char buf[1024];
    size_t len;
    bool overflow;
} xff_ctx_t;

static enum MHD_Result collect_xff(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    xff_ctx_t *x = cls;
    (void)kind;
    if (!key || strcasecmp(key, "X-Forwarded-For") || !value)
        return MHD_YES;
    size_t n = strlen(value);
    if (x->len + n + 2 > sizeof(x->buf)) {
        x->overflow = true;
        return MHD_NO;
    }
    if (x->len)
        x->buf[x->len++] = ',';
    memcpy(x->buf + x->len, value, n + 1);
    x->len += n;
    return MHD_YES;
}

void icpnsd_req_client(icpnsd_req_t *r, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *peer = ci ? ci->client_addr : NULL;
    const icpnsd_proxies_t *p = &r->env->cfg->proxies;
    xff_ctx_t x = {.len = 0, .overflow = false};
    x.buf[0] = '\0';
    if (p->n)
        MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_xff, &x);
    if (!icpnsd_proxies_client(p, peer, x.len ? x.buf : NULL, out, size) || x.overflow) {
        static atomic_uint warned;
        if (atomic_fetch_add(&warned, 1) < 3)
            log_warn("a trusted proxy (%s) sent an X-Forwarded-For that does not parse "
                     "(or is over 1 KiB): using the proxy's address", out);
    }
}

const char *icpnsd_req_query(icpnsd_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

typedef struct query_ctx {
    int (*fn)(void *arg, const char *key, const char *value, icpnsd_err_t *e);
    void *arg;
    icpnsd_err_t *e;
    int rc;
} query_ctx_t;

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    query_ctx_t *c = cls;
    (void)kind;
    if (!c->rc)
        c->rc = c->fn(c->arg, key, value, c->e);
    return c->rc ? MHD_NO : MHD_YES;
}

int icpnsd_req_query_each(icpnsd_req_t *r,
                          int (*fn)(void *arg, const char *key, const char *value, icpnsd_err_t *e),
                          void *arg, icpnsd_err_t *e)
{
    query_ctx_t c = {fn, arg, e, 0};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_arg, &c);
    return c.rc;
}

bool icpnsd_req_ctype_is(icpnsd_req_t *r, const char *ctype)
{
    const char *h = icpnsd_req_header(r, "Content-Type");
    if (!h)
        return false;
    size_t n = strlen(ctype);
    return !strncasecmp(h, ctype, n) && (h[n] == '\0' || h[n] == ';' || h[n] == ' ');
}

int icpnsd_req_use_set(icpnsd_req_t *r, const char *name, icpnsd_err_t *e)
{
    int why = 0;
    icpnsd_set_t *set = icpnsd_registry_get(r->env->reg, name, &why);
    if (set) {
        icpnsd_set_unref(r->set);
        r->set = set;
        return 0;
    }
    char names[512];
    icpnsd_registry_names(r->env->reg, names, sizeof(names));
    if (why == 404)
        return icpnsd_err_set(e, ICPNSD_E_UNKNOWN_TABLES, "tables",
                              -1, "no table set named '%s' (there are: %s)", name, names);
    return icpnsd_err_set(e, ICPNSD_E_TABLES_REQUIRED, "tables", -1,
                          "this daemon serves several table sets; name one with \"tables\" or "
                          "?tables= (there are: %s)", names);
}

int icpnsd_req_use_set_named(icpnsd_req_t *r, const char *body_name, icpnsd_err_t *e)
{
    const char *query = icpnsd_req_query(r, "tables");
    if (body_name && body_name[0] && query && strcmp(body_name, query))
        return icpnsd_err_set(e, ICPNSD_E_CONFLICTING_PARAMETER, "tables", -1,
                              "the body names table set '%s', the query '%s'", body_name, query);
    return icpnsd_req_use_set(r, body_name && body_name[0] ? body_name : query, e);
}

icpnsd_req_t *icpnsd_req_new(icpnsd_env_t *env, struct MHD_Connection *conn)
{
    icpnsd_req_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    atomic_init(&r->wake, ICPNSD_WAKE_IDLE);
    pthread_mutex_init(&r->lock, NULL);
    r->env = env;
    r->conn = conn;
    return r;
}

void icpnsd_req_unref(icpnsd_req_t *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    icpns_snapshot_unref(r->wait_snap);
    icpnsd_set_unref(r->set);
    icpns_buf_free(&r->body);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

void icpnsd_req_gone(icpnsd_req_t *r)
{
    void *orphan = NULL;
    pthread_mutex_lock(&r->lock);
    r->gone = true;
    /* Woken (icpnsd_req_done gave the work to the request under this lock)
     * but the handler that takes it never ran: libmicrohttpd closed the
     * connection on a socket error first.  Before the wake-up the worker
     * sees r->gone and keeps its work; after the handler r->work is NULL. */
    if (atomic_load(&r->wake) == ICPNSD_WAKE_WOKEN && r->resume && r->work && r->work_free) {
        orphan = r->work;
        r->work = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    if (orphan)
        r->work_free(orphan);
}

void icpnsd_req_arm(icpnsd_req_t *r)
{
    atomic_fetch_add(&r->refs, 1);
    atomic_store(&r->wake, ICPNSD_WAKE_ARMED);
}

void icpnsd_req_disarm(icpnsd_req_t *r)
{
    atomic_store(&r->wake, ICPNSD_WAKE_IDLE);
    icpnsd_req_unref(r);
}

void icpnsd_req_sleep(icpnsd_req_t *r, icpnsd_handler_fn resume, void (*work_free)(void *work))
{
    r->resume = resume;
    r->work_free = work_free;
    MHD_suspend_connection(r->conn);
    int expect = ICPNSD_WAKE_ARMED;
    if (!atomic_compare_exchange_strong(&r->wake, &expect, ICPNSD_WAKE_SLEEPING))
        MHD_resume_connection(r->conn); /* done before we slept */
}

bool icpnsd_req_done(icpnsd_req_t *r)
{
    pthread_mutex_lock(&r->lock);
    bool taken = !r->gone && !r->abandoned;
    if (taken && atomic_exchange(&r->wake, ICPNSD_WAKE_WOKEN) == ICPNSD_WAKE_SLEEPING &&
        !r->cancelled)
        MHD_resume_connection(r->conn);
    pthread_mutex_unlock(&r->lock);
    icpnsd_req_unref(r);
    return taken;
}

bool icpnsd_req_wanted(icpnsd_req_t *r)
{
    pthread_mutex_lock(&r->lock);
    bool wanted = !r->gone && !r->abandoned;
    pthread_mutex_unlock(&r->lock);
    return wanted;
}

void icpnsd_req_cancel(icpnsd_req_t *r)
{
    pthread_mutex_lock(&r->lock);
    if (!r->gone && !r->abandoned && !r->cancelled &&
        atomic_load(&r->wake) == ICPNSD_WAKE_SLEEPING) {
        r->cancelled = true;
        MHD_resume_connection(r->conn);
    }
    pthread_mutex_unlock(&r->lock);
}

bool icpnsd_req_abandon(icpnsd_req_t *r)
{
    pthread_mutex_lock(&r->lock);
    bool done = atomic_load(&r->wake) == ICPNSD_WAKE_WOKEN;
    if (!done) {
        r->abandoned = true;
        r->work = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    return !done;
}
