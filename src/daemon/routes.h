/*
 * routes.h - THE route table: every endpoint is one row {method, path,
 * flags, metric label, handler}; what the flags mean (admin token, table
 * set, body limit) is checked generically before the handler runs.  A new
 * endpoint is one row here plus its handler.
 */
#ifndef ICPNSD_ROUTES_H
#define ICPNSD_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "req.h"

enum icpnsd_route_flags {
    ICPNSD_ROUTE_ADMIN = 1u << 0,  /* needs the admin token; only on the admin listener
                                      when there is one */
    ICPNSD_ROUTE_SET = 1u << 1,    /* about one table set, named by ?tables= (resolved
                                      before the handler; routes whose body may name
                                      the set resolve it themselves) */
    ICPNSD_ROUTE_UPLOAD = 1u << 2, /* the body may reach max_upload_bytes, not
                                      max_body_bytes */
    ICPNSD_ROUTE_API = 1u << 3,    /* needs an API token when api_token_file is set */
    ICPNSD_ROUTE_METRICS = 1u << 4, /* needs the token metrics_auth names */
};

typedef struct icpnsd_route {
    const char *method;            /* "GET" also answers HEAD */
    const char *path;              /* literal, or with one "{}" segment (the parameter;
                                      at the end it takes the rest of the path) */
    unsigned flags;
    const char *params;            /* the query parameters it takes ("a,b"; others
                                      are refused) */
    const char *metric;            /* the route label of the request metrics */
    icpnsd_handler_fn handler;
} icpnsd_route_t;

extern const icpnsd_route_t icpnsd_routes[];
extern const size_t icpnsd_n_routes;

/*
 * The route of @method on @path (no query string), or NULL.  The path
 * parameter goes to @param (empty when none; cut to @param_size - 1 bytes),
 * the methods the path takes to @allow ("GET, POST"; empty when no route
 * has the path), and the first route of the path whatever the method to
 * *@by_path (NULL when none): a 405 is counted under its label.
 */
const icpnsd_route_t *icpnsd_route_match(const char *method, const char *path, char *param,
                                         size_t param_size, char *allow, size_t allow_size,
                                         const icpnsd_route_t **by_path);

/* The body limit of @route (NULL: max_body_bytes). */
uint64_t icpnsd_route_body_limit(const icpnsd_route_t *route, const icpnsd_config_t *cfg);

/*
 * Runs the generic checks of the request's route (listener, method, body
 * size, admin token, table set) and then its handler.
 */
enum MHD_Result icpnsd_route_dispatch(icpnsd_req_t *r);

#endif
