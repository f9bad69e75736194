/* common.c - error codes, error details, parameters. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "icpns/common.h"

const char *icpns_strerror(int code)
{
    switch (code) {
    case ICPNS_OK: return "success";
    case ICPNS_ENOMEM: return "out of memory";
    case ICPNS_EINVAL: return "invalid argument";
    case ICPNS_EIO: return "input/output error";
    case ICPNS_EPARSE: return "malformed input";
    case ICPNS_EUNKNOWN_USER: return "unknown user";
    case ICPNS_EINFEASIBLE: return "user has interacted with every item";
    case ICPNS_ENOCOMMUNITY: return "user has no community";
    case ICPNS_ELIMIT: return "limit exceeded";
    case ICPNS_ENOPATCH: return "the change needs a full rebuild";
    case ICPNS_ECANCELED: return "canceled";
    default: return "unknown error";
    }
}

const char *icpns_errname(int code)
{
    switch (code) {
    case ICPNS_OK: return "ok";
    case ICPNS_ENOMEM: return "out_of_memory";
    case ICPNS_EINVAL: return "invalid_argument";
    case ICPNS_EIO: return "io_error";
    case ICPNS_EPARSE: return "malformed_input";
    case ICPNS_EUNKNOWN_USER: return "unknown_user";
    case ICPNS_EINFEASIBLE: return "infeasible";
    case ICPNS_ENOCOMMUNITY: return "no_community";
    case ICPNS_ELIMIT: return "limit_exceeded";
    case ICPNS_ENOPATCH: return "needs_full_rebuild";
    case ICPNS_ECANCELED: return "canceled";
    default: return "unknown_error";
    }
}

void icpns_error_clear(icpns_error_t *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

int icpns_error_set(icpns_error_t *err, int code, const char *path,
                    uint64_t line, const char *field, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    snprintf(err->path, sizeof(err->path), "%s", path ? path : "");
    err->line = line;
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return code;
}

void icpns_error_format(const icpns_error_t *err, char *buf, size_t size)
{
    size_t off = 0;
    if (size == 0)
        return;
    buf[0] = '\0';
#define APPEND(...)                                                            \
    do {                                                                       \
        int k_ = snprintf(buf + off, size - off, __VA_ARGS__);                 \
        if (k_ > 0)                                                            \
            off = off + (size_t)k_ >= size ? size - 1 : off + (size_t)k_;      \
    } while (0)
    if (err->path[0]) {
        APPEND("%s", err->path);
        if (err->line)
            APPEND(":%llu", (unsigned long long)err->line);
        APPEND(": ");
    }
    if (err->field[0])
        APPEND("%s: ", err->field);
    APPEND("%s", err->message[0] ? err->message : icpns_strerror(err->code));
#undef APPEND
}

const char *icpns_escape(const void *p, size_t len, char *buf, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = p;
    size_t o = 0;
    if (size == 0)
        return buf;
    bool cut = len > ICPNS_QUOTE_MAX;
    if (cut)
        len = ICPNS_QUOTE_MAX;
    for (size_t k = 0; k < len; k++) {
        char e[5];
        size_t n;
        unsigned char c = b[k];
        if (c == '\\' || c == '\t' || c == '\r' || c == '\n') {
            e[0] = '\\';
            e[1] = c == '\\' ? '\\' : c == '\t' ? 't' : c == '\r' ? 'r' : 'n';
            n = 2;
        } else if (c >= 0x20 && c < 0x7f) {
            e[0] = (char)c;
            n = 1;
        } else {
            e[0] = '\\';
            e[1] = 'x';
            e[2] = hex[c >> 4];
            e[3] = hex[c & 15];
            n = 4;
        }
        if (o + n + 1 > size)
            break;
        memcpy(buf + o, e, n);
        o += n;
    }
    if (cut && o + 4 <= size) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

void icpns_params_default(icpns_params_t *p)
{
    p->alpha = ICPNS_DEFAULT_ALPHA;
    p->epsilon = ICPNS_DEFAULT_EPSILON;
    p->beta = ICPNS_DEFAULT_BETA;
}

int icpns_params_check(const icpns_params_t *p, icpns_error_t *err)
{
    if (!isfinite(p->alpha) || p->alpha < 0 || p->alpha > 64)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "alpha",
                               "alpha must be a number in [0, 64]");
    if (!isfinite(p->beta) || p->beta < 0 || p->beta > 64)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "beta",
                               "beta must be a number in [0, 64]");
    if (!isfinite(p->epsilon) || p->epsilon < 0 || p->epsilon > 1e12)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "epsilon",
                               "epsilon must be a number in [0, 1e12]");
    return 0;
}

double icpns_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- XXH64 ------------------------------------------------------------------- */

#define P1 UINT64_C(11400714785074694791)
#define P2 UINT64_C(14029467366897019727)
#define P3 UINT64_C(1609587929392839161)
#define P4 UINT64_C(9650029242287828579)
#define P5 UINT64_C(2870177450012600261)

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = v << 8 | b[k];
    return v;
}

static inline uint64_t le32(const unsigned char *b)
{
    return (uint64_t)b[0] | (uint64_t)b[1] << 8 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 24;
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t in)
{
    return rotl64(acc + in * P2, 31) * P1;
}

static inline uint64_t xxh_merge(uint64_t h, uint64_t v)
{
    return (h ^ xxh_round(0, v)) * P1 + P4;
}

uint64_t icpns_hash64(const void *p, size_t len, uint64_t seed)
{
    const unsigned char *b = p, *end = b + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
        for (; end - b >= 32; b += 32) {
            v1 = xxh_round(v1, le64(b));
            v2 = xxh_round(v2, le64(b + 8));
            v3 = xxh_round(v3, le64(b + 16));
            v4 = xxh_round(v4, le64(b + 24));
        }
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = seed + P5;
    }
    h += (uint64_t)len;
    for (; end - b >= 8; b += 8)
        h = rotl64(h ^ xxh_round(0, le64(b)), 27) * P1 + P4;
    if (end - b >= 4) {
        h = rotl64(h ^ le32(b) * P1, 23) * P2 + P3;
        b += 4;
    }
    for (; b < end; b++)
        h = rotl64(h ^ *b * P5, 11) * P1;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}
