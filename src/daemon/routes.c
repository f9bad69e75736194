/*
 * routes.c - the route table and the checks its flags stand for (see
 * routes.h).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "auth.h"
#include "request.h"
#include "reply.h"
#include "routes.h"

enum {
    ADMIN = ICPNSD_ROUTE_ADMIN,
    SET = ICPNSD_ROUTE_SET,
    UPLOAD = ICPNSD_ROUTE_UPLOAD,
    API = ICPNSD_ROUTE_API,
    METRICS = ICPNSD_ROUTE_METRICS,
};

const icpnsd_route_t icpnsd_routes[] = {
    {"POST", "/v1/negatives", API, "tables,alpha,epsilon,beta", "negatives",
     icpnsd_api_negatives},
    {"GET", "/v1/users/{}", API | SET, "tables", "user", icpnsd_api_user},
    {"GET", "/v1/communities", API | SET, "tables", "communities", icpnsd_api_communities},
    {"GET", "/v1/communities/{}/items", API | SET, "tables,top", "community_items",
     icpnsd_api_community_items},
    {"GET", "/v1/items", API | SET, "tables", "items", icpnsd_api_items},
    {"GET", "/v1/tables", API, "", "tables", icpnsd_api_tables},
    {"GET", "/healthz", 0, "", "healthz", icpnsd_api_healthz},
    {"GET", "/readyz", 0, "", "readyz", icpnsd_api_readyz},
    {"GET", "/metrics", METRICS, "", "metrics", icpnsd_api_metrics},
    {"POST", "/admin/reload", ADMIN | SET, "tables", "admin_reload", icpnsd_api_reload},
    {"POST", "/admin/interactions", ADMIN, "tables", "admin_interactions", icpnsd_api_interactions},
    {"PUT", "/admin/communities", ADMIN, "tables", "admin_communities",
     icpnsd_api_communities_update},
    {"GET", "/admin/snapshot", ADMIN | SET, "tables", "admin_snapshot", icpnsd_api_snapshot},
    {"POST", "/admin/cluster", ADMIN | UPLOAD,
     "tables,k,seed,restarts,max_iter,tol,replace,dry_run,async", "admin_cluster",
     icpnsd_api_cluster},
    {"GET", "/admin/jobs", ADMIN, "", "admin_jobs", icpnsd_api_jobs},
    {"GET", "/admin/jobs/{}", ADMIN, "", "admin_job", icpnsd_api_job},
    {"DELETE", "/admin/jobs/{}", ADMIN, "", "admin_job", icpnsd_api_job_cancel},
    {"GET", "/admin/sets", ADMIN, "", "admin_sets", icpnsd_api_sets_list},
    {"POST", "/admin/sets", ADMIN | UPLOAD, "name,alpha,epsilon,beta", "admin_sets", icpnsd_api_sets_add},
    {"DELETE", "/admin/sets/{}", ADMIN, "", "admin_set", icpnsd_api_sets_remove},
};
const size_t icpnsd_n_routes = sizeof(icpnsd_routes) / sizeof(icpnsd_routes[0]);

/* Whether @path matches @pattern; the "{}" segment goes to @param. */
static bool path_matches(const char *pattern, const char *path, char *param, size_t param_size)
{
    const char *hole = strstr(pattern, "{}");
    if (!hole)
        return !strcmp(pattern, path);
    size_t pre = (size_t)(hole - pattern);
    if (strncmp(pattern, path, pre))
        return false;
    const char *p = path + pre, *rest = hole + 2;
    const char *end = *rest ? strchr(p, '/') : p + strlen(p);
    if (!end || (*rest && strcmp(end, rest)))
        return false;
    size_t n = (size_t)(end - p);
    if (param) {
        if (n >= param_size)
            n = param_size - 1;
        memcpy(param, p, n);
        param[n] = '\0';
    }
    return true;
}

const icpnsd_route_t *icpnsd_route_match(const char *method, const char *path, char *param,
                                         size_t param_size, char *allow, size_t allow_size,
                                         const icpnsd_route_t **by_path)
{
    const icpnsd_route_t *found = NULL;
    *by_path = NULL;
    allow[0] = '\0';
    if (param_size)
        param[0] = '\0';
    bool head = !strcmp(method, "HEAD");
    for (size_t k = 0; k < icpnsd_n_routes; k++) {
        const icpnsd_route_t *rt = &icpnsd_routes[k];
        char p[256] = "";
        if (!path_matches(rt->path, path, p, sizeof(p)))
            continue;
        if (!*by_path)
            *by_path = rt;
        size_t l = strlen(allow);
        snprintf(allow + l, allow_size - l, "%s%s", l ? ", " : "", rt->method);
        if (!found && (!strcmp(rt->method, method) || (head && !strcmp(rt->method, "GET")))) {
            found = rt;
            snprintf(param, param_size, "%s", p);
        }
    }
    return found;
}

uint64_t icpnsd_route_body_limit(const icpnsd_route_t *route, const icpnsd_config_t *cfg)
{
    return route && (route->flags & UPLOAD) ? cfg->max_upload_bytes : cfg->max_body_bytes;
}

/* 0 if the request holds a token of @kind, else -1 with @e (and, when
 * throttled, r->retry_after). */
static int check_token(icpnsd_req_t *r, icpnsd_auth_kind_t kind, icpnsd_err_t *e)
{
    char client[64];
    icpnsd_req_client(r, client, sizeof(client));
    unsigned retry = 0;
    const char *who = kind == ICPNSD_AUTH_ADMIN ? "admin" : "API";
    switch (icpnsd_auth_check(r->env->auth, kind, icpnsd_req_header(r, "Authorization"),
                              client, r->url, &retry)) {
    case ICPNSD_AUTH_OK:
        return 0;
    case ICPNSD_AUTH_DISABLED:
        return icpnsd_err_set(e, ICPNSD_E_ADMIN_DISABLED, NULL, -1,
                              "admin endpoints are disabled: start icpnsd with --admin-token-file");
    case ICPNSD_AUTH_MISSING:
        r->auth_realm = kind == ICPNSD_AUTH_ADMIN ? "icpnsd-admin" : "icpnsd";
        return icpnsd_err_set(e, ICPNSD_E_UNAUTHORIZED, NULL, -1,
                              "%s needs 'Authorization: Bearer TOKEN' with an %s token", r->url,
                              who);
    case ICPNSD_AUTH_WRONG:
        return icpnsd_err_set(e, ICPNSD_E_FORBIDDEN, NULL, -1, "wrong %s token", who);
    case ICPNSD_AUTH_THROTTLED:
        r->retry_after = retry;
        return icpnsd_err_set(e, ICPNSD_E_TOO_MANY_AUTH_FAILURES, NULL, -1,
                              "too many failed attempts from this address; retry in %u s", retry);
    }
    return -1;
}

/* Whether @key is one of the comma-separated @list. */
static bool listed(const char *list, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, key, n))
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

static int check_param(void *arg, const char *key, const char *value, icpnsd_err_t *e)
{
    const icpnsd_route_t *rt = arg;
    (void)value;
    if (listed(rt->params, key))
        return 0;
    char shown[ICPNSD_QUOTE_BUF];
    return icpnsd_err_set(e, ICPNSD_E_UNKNOWN_PARAMETER, key, -1,
                          "%s takes no parameter %s%s%s", rt->path,
                          icpnsd_quote(key, shown, sizeof(shown)),
                          rt->params[0] ? "; it takes: " : "", rt->params);
}

enum MHD_Result icpnsd_route_dispatch(icpnsd_req_t *r)
{
    const icpnsd_route_t *rt = r->route, *by_path = r->path_route;
    bool separate = r->env->admin_separate;
    if (!by_path ||
        (separate && (by_path->flags & ADMIN) != 0 && !r->admin_listener) ||
        (separate && (by_path->flags & ADMIN) == 0 && r->admin_listener))
        return icpnsd_reply_error(r, ICPNSD_E_NOT_FOUND, NULL, "no such endpoint: %s", r->url);
    if (!rt)
        return icpnsd_reply_error(r, ICPNSD_E_METHOD_NOT_ALLOWED, NULL, "%s takes %s, not %s",
                                  r->url, r->allow, r->method);
    if (r->too_large)
        return icpnsd_reply_error(r, ICPNSD_E_BODY_TOO_LARGE, NULL,
                                  "the body is above the limit of %llu bytes",
                                  (unsigned long long)icpnsd_route_body_limit(rt, r->env->cfg));
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    const icpnsd_config_t *cfg = r->env->cfg;
    if ((rt->flags & ADMIN) && check_token(r, ICPNSD_AUTH_ADMIN, &e))
        return icpnsd_reply_err(r, &e);
    if ((rt->flags & API) && icpnsd_auth_api_required(r->env->auth) &&
        check_token(r, ICPNSD_AUTH_API, &e))
        return icpnsd_reply_err(r, &e);
    if ((rt->flags & METRICS) && cfg->metrics_auth != ICPNSD_METRICS_OPEN &&
        check_token(r, cfg->metrics_auth == ICPNSD_METRICS_ADMIN ? ICPNSD_AUTH_ADMIN
                                                                 : ICPNSD_AUTH_API, &e))
        return icpnsd_reply_err(r, &e);
    if (icpnsd_req_query_each(r, check_param, (void *)rt, &e))
        return icpnsd_reply_err(r, &e);
    if ((rt->flags & SET) && !r->set &&
        icpnsd_req_use_set(r, icpnsd_req_query(r, "tables"), &e))
        return icpnsd_reply_err(r, &e);
    return rt->handler(r);
}
