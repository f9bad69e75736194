/*
 * icpns/buf.h - a growable byte buffer with a cap given at init.
 *
 * Every buffer that grows with input or output has a limit (curl's dynbuf):
 * an append that would pass it, or an allocation that fails, puts the
 * buffer in a failed state; later appends are no-ops, so a writer checks
 * once at the end instead of after every call.  The content is always
 * NUL-terminated when it is not empty.
 */
#ifndef ICPNS_BUF_H
#define ICPNS_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "icpns/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct icpns_buf {
    char *p;      /* owned; NULL while empty */
    size_t len;   /* bytes written, not counting the terminating NUL */
    size_t cap;   /* bytes allocated */
    size_t max;   /* the most @len may reach */
    bool failed;  /* an append passed @max or an allocation failed */
    bool too_large; /* the failure was @max, not memory */
} icpns_buf_t;

/* An empty buffer that may hold up to @max bytes (0: SIZE_MAX / 2). */
ICPNS_EXPORT void icpns_buf_init(icpns_buf_t *b, size_t max);

/* Makes room for @extra more bytes (and the NUL).  false (and the buffer
 * failed) when that would pass the cap or memory runs out. */
ICPNS_EXPORT bool icpns_buf_reserve(icpns_buf_t *b, size_t extra);

/* Appends @n bytes of @s. */
ICPNS_EXPORT void icpns_buf_put(icpns_buf_t *b, const void *s, size_t n);

/* Appends the NUL-terminated @s. */
ICPNS_EXPORT void icpns_buf_puts(icpns_buf_t *b, const char *s);

/* Appends formatted text. */
ICPNS_EXPORT void icpns_buf_printf(icpns_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends the decimal form of @v (fast: no printf). */
ICPNS_EXPORT void icpns_buf_i64(icpns_buf_t *b, int64_t v);
ICPNS_EXPORT void icpns_buf_u64(icpns_buf_t *b, uint64_t v);

/* Hands the content over to the caller (who frees it) and empties @b;
 * NULL when the buffer failed or is empty.  *@ret_len may be NULL. */
ICPNS_EXPORT char *icpns_buf_steal(icpns_buf_t *b, size_t *ret_len);

/* Frees the content and empties @b (keeps its cap).  Accepts an empty one. */
ICPNS_EXPORT void icpns_buf_free(icpns_buf_t *b);

/* Only for string literals: sizeof of anything else would be a pointer's. */
#define icpns_buf_lit(b, s) icpns_buf_put(b, "" s "", sizeof(s) - 1)

#ifdef __cplusplus
}
#endif
#endif
