/* buf.c - the growable buffer of icpns/buf.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "icpns/buf.h"

void icpns_buf_init(icpns_buf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max ? max : SIZE_MAX / 2;
}

static bool fail(icpns_buf_t *b, bool too_large)
{
    b->failed = true;
    b->too_large = b->too_large || too_large;
    return false;
}

bool icpns_buf_reserve(icpns_buf_t *b, size_t extra)
{
    if (b->failed)
        return false;
    if (extra > b->max - b->len)
        return fail(b, true);
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return true;
    size_t c = b->cap ? b->cap : 256;
    while (c < need)
        c = c > SIZE_MAX / 2 ? need : c * 2;
    char *q = realloc(b->p, c);
    if (!q)
        return fail(b, false);
    b->p = q;
    b->cap = c;
    return true;
}

void icpns_buf_put(icpns_buf_t *b, const void *s, size_t n)
{
    if (n == 0 || !icpns_buf_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void icpns_buf_puts(icpns_buf_t *b, const char *s)
{
    icpns_buf_put(b, s, strlen(s));
}

void icpns_buf_printf(icpns_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fail(b, false);
        return;
    }
    if (!icpns_buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void icpns_buf_u64(icpns_buf_t *b, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (!icpns_buf_reserve(b, (size_t)n))
        return;
    while (n)
        b->p[b->len++] = tmp[--n];
    b->p[b->len] = '\0';
}

void icpns_buf_i64(icpns_buf_t *b, int64_t v)
{
    if (v < 0) {
        icpns_buf_lit(b, "-");
        icpns_buf_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        icpns_buf_u64(b, (uint64_t)v);
    }
}

char *icpns_buf_steal(icpns_buf_t *b, size_t *ret_len)
{
    char *p = b->failed ? NULL : b->p;
    if (ret_len)
        *ret_len = p ? b->len : 0;
    if (!p)
        free(b->p);
    size_t max = b->max;
    icpns_buf_init(b, max);
    return p;
}

void icpns_buf_free(icpns_buf_t *b)
{
    free(b->p);
    size_t max = b->max;
    icpns_buf_init(b, max);
}
