/* auth.c - bearer tokens (see auth.h). */
#include <stdio.h>
#include <string.h>

#include "auth.h"

void icpnsd_auth_set_admin(icpnsd_auth_t *a, const char *token)
{
    memset(a->admin, 0, sizeof(a->admin));
    a->admin_len = 0;
    if (token && *token) {
        snprintf(a->admin, sizeof(a->admin), "%s", token);
        a->admin_len = strlen(a->admin);
    }
}

bool icpnsd_auth_admin_enabled(const icpnsd_auth_t *a)
{
    return a->admin_len > 0;
}

bool icpnsd_auth_admin_ok(const icpnsd_auth_t *a, const char *presented, size_t n)
{
    unsigned char diff = (unsigned char)(n != a->admin_len);
    for (size_t k = 0; k < a->admin_len; k++)
        diff |= (unsigned char)(a->admin[k] ^ (k < n ? presented[k] : 0));
    return a->admin_len > 0 && diff == 0;
}

void icpnsd_auth_clear(icpnsd_auth_t *a)
{
    memset(a, 0, sizeof(*a));
}
