/*
 * Fuzz what a URL can reach: the route table (methods, paths, the path
 * parameter) and the query parameters of POST /v1/negatives and POST
 * /admin/cluster.  Input: a method byte, then a path, optionally '?' then
 * key=value pairs separated by '&'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "request.h"
#include "upload.h"
#include "routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"};
    if (size < 1)
        return 0;
    const char *method = methods[data[0] % 6];
    char *s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    char *q = strchr(s, '?');
    if (q)
        *q++ = '\0';
    char param[256], allow[64];
    const icpnsd_route_t *by_path = NULL;
    const icpnsd_route_t *rt = icpnsd_route_match(method, s, param, sizeof(param), allow,
                                                  sizeof(allow), &by_path);
    /* A route for the method implies one for the path; a path with routes
     * lists their methods; the parameter is a C string of the buffer. */
    if ((rt && !by_path) || (by_path != NULL) != (allow[0] != '\0') ||
        !memchr(param, '\0', sizeof(param)))
        abort();
    icpnsd_negreq_t nq = {0};
    icpnsd_clusterreq_t cq;
    icpnsd_clusterreq_init(&cq);
    icpnsd_err_t e;
    for (char *tok = q ? strtok(q, "&") : NULL; tok; tok = strtok(NULL, "&")) {
        char *eq = strchr(tok, '=');
        const char *v = "";
        if (eq) {
            *eq = '\0';
            v = eq + 1;
        }
        icpnsd_err_clear(&e);
        if (icpnsd_negreq_query(&nq, tok, v, &e) && e.code == ICPNSD_E_OK)
            abort();
        icpnsd_err_clear(&e);
        if (icpnsd_clusterreq_opt(&cq, tok, v, &e) && e.code == ICPNSD_E_OK)
            abort();
    }
    if (nq.tables[0] && !icpnsd_set_name_ok(nq.tables))
        abort();
    if (cq.ko.k < 1 || cq.ko.restarts < 1 || cq.ko.max_iter < 1 || !(cq.ko.tol >= 0))
        abort();
    icpnsd_clusterreq_free(&cq);
    free(s);
    return 0;
}
