/* req.c - the request as the handlers see it (see req.h). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "registry.h"
#include "req.h"

const char *icpnsd_req_header(icpnsd_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
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

void icpnsd_req_arm(icpnsd_req_t *r)
{
    atomic_store(&r->wake, ICPNSD_WAKE_ARMED);
}

void icpnsd_req_disarm(icpnsd_req_t *r)
{
    atomic_store(&r->wake, ICPNSD_WAKE_IDLE);
}

void icpnsd_req_sleep(icpnsd_req_t *r, icpnsd_handler_fn resume)
{
    r->resume = resume;
    MHD_suspend_connection(r->conn);
    int expect = ICPNSD_WAKE_ARMED;
    if (!atomic_compare_exchange_strong(&r->wake, &expect, ICPNSD_WAKE_SLEEPING))
        MHD_resume_connection(r->conn); /* woken before we slept */
}

void icpnsd_req_wake(icpnsd_req_t *r)
{
    if (atomic_exchange(&r->wake, ICPNSD_WAKE_WOKEN) == ICPNSD_WAKE_SLEEPING)
        MHD_resume_connection(r->conn);
}
