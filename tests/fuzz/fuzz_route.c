/*
 * Fuzz what a URL can reach: the path router (with path ids) and the query
 * parameters of POST /v1/negatives and POST /admin/cluster.  Input: a path,
 * optionally '?' then key=value pairs separated by '&'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "request.h"
#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char *q = strchr(s, '?');
    if (q)
        *q++ = '\0';
    const char *allow = NULL;
    int64_t id = -7;
    route_t rt = icpnsd_route_of(s, &allow, &id);
    if ((unsigned)rt >= R_COUNT || (rt == R_OTHER) != (allow == NULL))
        abort();
    if ((rt == R_USER || rt == R_COMMUNITY_ITEMS) && id < -1)
        abort();
    neg_req_t nq = {0};
    cluster_req_t cq;
    icpnsd_cluster_req_init(&cq);
    icpnsd_reqerr_t e;
    for (char *tok = q ? strtok(q, "&") : NULL; tok; tok = strtok(NULL, "&")) {
        char *eq = strchr(tok, '=');
        const char *v = "";
        if (eq) {
            *eq = '\0';
            v = eq + 1;
        }
        memset(&e, 0, sizeof(e));
        if (icpnsd_negatives_query(&nq, tok, v, &e) && (e.status != 400 || !e.code[0]))
            abort();
        memset(&e, 0, sizeof(e));
        if (icpnsd_cluster_opt(&cq, tok, v, &e) && (e.status != 400 || !e.code[0]))
            abort();
    }
    if (nq.tables[0] && !icpnsd_set_name_ok(nq.tables))
        abort();
    if (cq.ko.k < 1 || cq.ko.restarts < 1 || cq.ko.max_iter < 1 || !(cq.ko.tol >= 0))
        abort();
    icpnsd_cluster_req_free(&cq);
    free(s);
    return 0;
}
