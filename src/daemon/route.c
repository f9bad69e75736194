/* route.c - URL paths to routes, and path ids (apart so they can be fuzzed). */
#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "route.h"

/* A non-negative decimal id of @n characters (no sign, no spaces). */
bool icpnsd_parse_id(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) {
        if (!isdigit((unsigned char)s[k]))
            return false;
        v = v * 10 + (uint64_t)(s[k] - '0');
    }
    if (v > INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

/* Finds the route of @url; *@allow gets the methods it takes. */
route_t icpnsd_route_of(const char *url, const char **allow, int64_t *id)
{
    if (!strcmp(url, "/v1/negatives")) return *allow = "POST", R_NEGATIVES;
    if (!strcmp(url, "/v1/communities")) return *allow = "GET", R_COMMUNITIES;
    if (!strcmp(url, "/healthz")) return *allow = "GET", R_HEALTHZ;
    if (!strcmp(url, "/readyz")) return *allow = "GET", R_READYZ;
    if (!strcmp(url, "/metrics")) return *allow = "GET", R_METRICS;
    if (!strcmp(url, "/admin/reload")) return *allow = "POST", R_ADMIN_RELOAD;
    if (!strcmp(url, "/admin/interactions")) return *allow = "POST", R_ADMIN_INTERACTIONS;
    if (!strcmp(url, "/admin/communities")) return *allow = "PUT", R_ADMIN_COMMUNITIES;
    if (!strcmp(url, "/admin/snapshot")) return *allow = "GET", R_ADMIN_SNAPSHOT;
    if (!strcmp(url, "/admin/cluster")) return *allow = "POST", R_ADMIN_CLUSTER;
    if (!strcmp(url, "/v1/tables")) return *allow = "GET", R_TABLES;
    if (!strcmp(url, "/admin/sets")) return *allow = "GET, POST", R_ADMIN_SETS;
    if (!strncmp(url, "/admin/sets/", 12)) return *allow = "DELETE", R_ADMIN_SET;
    if (!strncmp(url, "/v1/users/", 10)) {
        *allow = "GET";
        *id = -1;
        const char *p = url + 10;
        icpnsd_parse_id(p, strlen(p), id);
        return R_USER;
    }
    if (!strncmp(url, "/v1/communities/", 16)) {
        const char *p = url + 16, *slash = strchr(p, '/');
        if (slash && !strcmp(slash, "/items")) {
            *allow = "GET";
            *id = -1;
            icpnsd_parse_id(p, (size_t)(slash - p), id);
            return R_COMMUNITY_ITEMS;
        }
    }
    *allow = NULL;
    return R_OTHER;
}
