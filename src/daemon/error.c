/* error.c - the daemon's error type (see error.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

const char *icpnsd_code_name(icpnsd_code_t code)
{
    static const char *names[] = {
#define ICPNSD_CODE_NAME(name, wire) wire,
        ICPNSD_CODES(ICPNSD_CODE_NAME)
#undef ICPNSD_CODE_NAME
    };
    return (unsigned)code < ICPNSD_E_COUNT ? names[code] : "internal_error";
}

void icpnsd_err_clear(icpnsd_err_t *e)
{
    e->code = ICPNSD_E_OK;
    e->field[0] = '\0';
    e->row = -1;
    e->message[0] = '\0';
}

int icpnsd_err_set(icpnsd_err_t *e, icpnsd_code_t code, const char *field, long long row,
                   const char *fmt, ...)
{
    e->code = code;
    snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
    e->row = row;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -1;
}

void icpnsd_err_copy(icpnsd_err_t *dst, const icpnsd_err_t *src)
{
    if (dst != src)
        memcpy(dst, src, sizeof(*dst));
}
