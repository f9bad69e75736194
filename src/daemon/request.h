/*
 * request.h - the parsed form of request bodies and the JSON parsers that
 * produce it: POST /v1/negatives, POST /admin/cluster (JSON and .npy), the
 * pair lists of the admin updates and POST /admin/sets.  Binary frames are
 * in frames.h.  Pure functions (no HTTP, no global state but the fast-path
 * switch below), so that they can be fuzzed and unit-tested alone.
 */
#ifndef ICPNSD_REQUEST_H
#define ICPNSD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "icpns.h"

#define ICPNSD_MAX_PARTS 8

/* Seeds are 0 .. 2^63 - 1 everywhere (JSON integers are signed 64-bit):
 * what a request gives is echoed exactly. */
#define ICPNSD_MAX_SEED INT64_MAX

/* Parses @n characters of @s as a non-negative decimal int64 (a path id):
 * digits only, no sign, no leading zero (as in JSON); false if they are
 * not one. */
bool icpnsd_parse_id(const char *s, size_t n, int64_t *out);

/* The same for a whole string, at most @max. */
bool icpnsd_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* A finite decimal number in JSON's grammar (no hex, inf, nan, blanks or
 * '+'); false if @s is not one. */
bool icpnsd_parse_decimal(const char *s, double *out);

/* @s quoted with invisible and non-ASCII bytes escaped, for messages
 * ('a\xef\xbb\xbf'); returns @buf (ICPNSD_QUOTE_BUF bytes suffice). */
#define ICPNSD_QUOTE_BUF (ICPNS_QUOTE_BUF + 2)
const char *icpnsd_quote(const char *s, char *buf, size_t size);

/* One part of a strategy mix: @n negatives per row drawn with @strategy. */
typedef struct icpnsd_part {
    icpns_strategy_t strategy;
    uint32_t n;
} icpnsd_part_t;

/* A negatives request, from JSON or a frame. */
typedef struct icpnsd_negreq {
    int64_t *users;      /* owned */
    uint32_t rows;
    icpnsd_part_t parts[ICPNSD_MAX_PARTS];
    int nparts;
    bool mixed;          /* "strategy" was a list */
    uint32_t n;          /* negatives per row (all parts) */
    uint32_t m;          /* candidates per negative */
    uint64_t seed;
    bool probs;
    unsigned flags;      /* ICPNS_SAMPLE_* */
    bool binary_in;
    /* Optional: the table set, and a weight setting other than the set's. */
    char tables[ICPNSD_SET_NAME];
    bool has_alpha, has_epsilon, has_beta;
    double alpha, epsilon, beta;
} icpnsd_negreq_t;

/* Whether JSON requests read "users" with the fast path (on; the fuzzer
 * turns it off to compare both paths). */
extern bool icpnsd_json_fastpath;

/*
 * Parses a JSON negatives request into @q (q->users is allocated; free it
 * with icpnsd_negreq_free, also on failure).  @fallback_seed is used when
 * the request has no seed.  Returns 0, or -1 with @e filled.
 */
int icpnsd_negreq_parse_json(const icpnsd_config_t *cfg, int default_strategy,
                             uint64_t fallback_seed, const char *body, size_t len,
                             icpnsd_negreq_t *q, icpnsd_err_t *e);

/* Frees what @q owns; @q may be half-filled by a failed parse. */
void icpnsd_negreq_free(icpnsd_negreq_t *q);

/*
 * Applies a query-string parameter of POST /v1/negatives ("tables",
 * "alpha", "epsilon", "beta") to @q; a value the body already gave
 * differently is an error.  Other keys are ignored.  0 or -1 with @e.
 */
int icpnsd_negreq_query(icpnsd_negreq_t *q, const char *key, const char *value, icpnsd_err_t *e);

/*
 * Which encoding the Accept header @accept (NULL: none) asks for: 1 the
 * frame, 0 JSON, -1 neither (both have q = 0, or neither is named nor
 * matched by a wildcard).  Ties, and no header, follow the request's
 * encoding (@frame_in).
 */
int icpnsd_accept_choice(const char *accept, bool frame_in);

/* ---- admin updates and table sets ---------------------------------------- */

/*
 * Parses {"KEY": [[user, WHAT], ...], "tables"?: NAME} (and "replace":
 * bool for @communities, where a user given two different communities is
 * refused) into *@ret_pairs (owned by the caller), *@ret_n, the set's name
 * (or "") and replace.  Any other field is refused.  Returns 0, or -1 with
 * @e (with the row of a bad pair); outputs untouched then.
 */
int icpnsd_parse_pairs(const char *body, size_t len, const char *key, const char *what,
                       bool communities, icpns_pair_t **ret_pairs, size_t *ret_n,
                       bool *ret_replace, char *ret_tables, size_t tables_size, icpnsd_err_t *e);


#endif
