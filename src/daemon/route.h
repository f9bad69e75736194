/* route.h - URL paths to routes. */
#ifndef ICPNSD_ROUTE_H
#define ICPNSD_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

/* Parses @n characters of @s as a non-negative int64; false if not one. */
bool icpnsd_parse_id(const char *s, size_t n, int64_t *out);

/*
 * The route of path @url (no query string); *@allow gets the methods it
 * takes (comma-separated), *@id the path id where the route has one (-1 when
 * it is not a valid id).  R_OTHER (and *@allow NULL) for unknown paths.
 */
route_t icpnsd_route_of(const char *url, const char **allow, int64_t *id);

#endif
