/*
 * auth.h - the bearer tokens that guard routes.  The admin token comes from
 * a file (--admin-token-file); comparison is in constant time.
 */
#ifndef ICPNSD_AUTH_H
#define ICPNSD_AUTH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct icpnsd_auth {
    char admin[512];
    size_t admin_len;   /* 0: the admin routes are disabled */
} icpnsd_auth_t;

/* Sets the admin token (NULL or "" disables the admin routes). */
void icpnsd_auth_set_admin(icpnsd_auth_t *a, const char *token);

/* Whether the admin routes are enabled. */
bool icpnsd_auth_admin_enabled(const icpnsd_auth_t *a);

/* Whether @presented (@n bytes) is the admin token; constant time in the
 * token's length. */
bool icpnsd_auth_admin_ok(const icpnsd_auth_t *a, const char *presented, size_t n);

/* Zeroes the tokens. */
void icpnsd_auth_clear(icpnsd_auth_t *a);

#endif
