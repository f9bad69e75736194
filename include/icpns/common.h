/*
 * icpns/common.h - error codes, error details and small shared types of
 * libicpns, the ICPNS sampling engine.
 *
 * Every fallible function returns an int: 0 on success, a negative ICPNS_E*
 * code on failure.  Functions that read files also fill an icpns_error_t with
 * where the problem is (file, line, field) and a human sentence.  The library
 * never logs and never exits.
 */
#ifndef ICPNS_COMMON_H
#define ICPNS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ICPNS_VERSION_STRING "0.1.0"

/*
 * Marks a function of the public API.  libicpns is compiled with
 * -fvisibility=hidden, so these are the only symbols the shared library
 * exports (tests/integration/test_local.py compares `nm -D` with the
 * functions marked here); the static library the tools link is unaffected.
 */
#if defined(__GNUC__) || defined(__clang__)
#define ICPNS_EXPORT __attribute__((visibility("default")))
#else
#define ICPNS_EXPORT
#endif

/* A dense index that does not exist (unknown id, user without community). */
#define ICPNS_NONE UINT32_MAX

enum {
    ICPNS_OK = 0,
    ICPNS_ENOMEM = -1,        /* an allocation failed */
    ICPNS_EINVAL = -2,        /* a bad argument or parameter value */
    ICPNS_EIO = -3,           /* a file could not be opened, read or written */
    ICPNS_EPARSE = -4,        /* a malformed input file (see icpns_error_t) */
    ICPNS_EUNKNOWN_USER = -5, /* the user id is not in the snapshot */
    ICPNS_EINFEASIBLE = -6,   /* the user has every item: no negative exists */
    ICPNS_ENOCOMMUNITY = -7,  /* ICPNS asked for a user without community */
    ICPNS_ELIMIT = -8,        /* more ids or entries than the engine allows */
    ICPNS_ENOPATCH = -9,      /* a change needs a full rebuild, not a patch */
    ICPNS_ECANCELED = -10,    /* the caller asked a long computation to stop */
};

/* The library's version, ICPNS_VERSION_STRING of the build ("0.1.0"). */
ICPNS_EXPORT const char *icpns_version(void);

/*
 * sizeof of a plain struct of the public API, by its name without icpns_
 * and _t ("error", "params", "part", "request", "pair", "load_report",
 * "snapshot_info", "user_info", "community_info", "item_rank",
 * "sample_stats"; and "snapshot", whose reference count C++ sees as a
 * plain unsigned int); 0 for a name it does not know.  Bindings that mirror
 * the structs (Python ctypes) compare their sizes with these when they
 * load the library, so that a mismatched library is refused, not misread.
 */
ICPNS_EXPORT size_t icpns_abi_sizeof(const char *type);

/* A short sentence for an error code ("out of memory"). Never NULL. */
ICPNS_EXPORT const char *icpns_strerror(int code);

/* A stable machine-readable name for an error code ("unknown_user"). */
ICPNS_EXPORT const char *icpns_errname(int code);

/*
 * Where and why something failed.  @path and @line are empty/0 when the
 * error is not about a file; @field names the column, key or parameter.
 */
typedef struct icpns_error {
    int code;
    char path[512];
    uint64_t line;
    char field[64];
    char message[256];
} icpns_error_t;

/* Resets @err to "no error".  Accepts NULL. */
ICPNS_EXPORT void icpns_error_clear(icpns_error_t *err);

/*
 * Records an error in @err (may be NULL) and returns @code, so callers can
 * write `return icpns_error_set(err, ICPNS_EPARSE, path, line, "item", ...)`.
 * @path and @field may be NULL.
 */
ICPNS_EXPORT int icpns_error_set(icpns_error_t *err, int code, const char *path,
                                 uint64_t line, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Formats @err as "path:line: field: message" (parts omitted when empty). */
ICPNS_EXPORT void icpns_error_format(const icpns_error_t *err, char *buf, size_t size);

/*
 * Writes @len bytes at @p into @buf (@size bytes, always NUL-terminated) so
 * that a message quoting a file shows what is really there: printable ASCII
 * as is, backslash as \\, tab, CR and LF as \t, \r, \n, every other
 * byte (control bytes, NUL, a UTF-8 byte order mark, any non-ASCII byte) as
 * \xHH.  At most ICPNS_QUOTE_MAX bytes of input are shown, then "...".
 * ICPNS_QUOTE_BUF bytes always suffice.  Returns @buf.  Every loader quotes
 * file bytes through this function.
 */
#define ICPNS_QUOTE_MAX 40
#define ICPNS_QUOTE_BUF (4 * ICPNS_QUOTE_MAX + 4)
ICPNS_EXPORT const char *icpns_escape(const void *p, size_t len, char *buf, size_t size);

/* The smoothing parameters of one weight setting. */
typedef struct icpns_params {
    double alpha;   /* exponent on in-community popularity, >= 0 */
    double epsilon; /* mass added to every item in ICPNS, >= 0 */
    double beta;    /* exponent on global popularity for PNS, >= 0 */
} icpns_params_t;

#define ICPNS_DEFAULT_ALPHA 0.8
#define ICPNS_DEFAULT_EPSILON 0.0
#define ICPNS_DEFAULT_BETA 1.0

/* Fills @p with the defaults (alpha 0.8, epsilon 0, beta 1). */
ICPNS_EXPORT void icpns_params_default(icpns_params_t *p);

/*
 * Checks that alpha, epsilon and beta are finite, >= 0 and not absurd
 * (<= 64 for the exponents, <= 1e12 for epsilon).  Returns 0 or ICPNS_EINVAL
 * with the offending field in @err.
 */
ICPNS_EXPORT int icpns_params_check(const icpns_params_t *p, icpns_error_t *err);

/* Monotonic clock in seconds, for build-time statistics. */
ICPNS_EXPORT double icpns_now(void);

/*
 * XXH64 of @len bytes at @p with @seed (the xxHash 64-bit algorithm; equal
 * to xxhash.xxh64_intdigest(bytes, seed)).  Words are read little-endian,
 * so the value does not depend on the host.  Used for snapshot
 * fingerprints, not for security.
 */
ICPNS_EXPORT uint64_t icpns_hash64(const void *p, size_t len, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
