/* common.c - error codes, error details, parameters. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
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
