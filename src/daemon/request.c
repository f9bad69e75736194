/* request.c - the request parsers: negatives (JSON and binary frames) and
 * cluster uploads (JSON, ICPE frames, .npy). */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

static int reqerr(icpnsd_reqerr_t *e, unsigned status, const char *code, const char *field,
                  long long row, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int reqerr(icpnsd_reqerr_t *e, unsigned status, const char *code, const char *field,
                  long long row, const char *fmt, ...)
{
    e->status = status;
    snprintf(e->code, sizeof(e->code), "%s", code);
    snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
    e->row = row;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -1;
}

int icpnsd_negatives_query(neg_req_t *q, const char *key, const char *value, icpnsd_reqerr_t *e)
{
    if (!value)
        value = "";
    if (!strcmp(key, "tables")) {
        if (!icpnsd_set_name_ok(value))
            return reqerr(e, 400, "bad_request", "tables", -1,
                          "'tables' names a table set: 1..63 of [A-Za-z0-9._-]");
        if (q->tables[0] && strcmp(q->tables, value))
            return reqerr(e, 400, "conflicting_parameter", "tables", -1,
                          "the body names table set '%s', the query '%s'", q->tables, value);
        snprintf(q->tables, sizeof(q->tables), "%s", value);
        return 0;
    }
    double *slot;
    bool *has;
    if (!strcmp(key, "alpha"))
        slot = &q->alpha, has = &q->has_alpha;
    else if (!strcmp(key, "epsilon"))
        slot = &q->epsilon, has = &q->has_epsilon;
    else if (!strcmp(key, "beta"))
        slot = &q->beta, has = &q->has_beta;
    else
        return 0;
    char *end;
    errno = 0;
    double x = strtod(value, &end);
    if (!value[0] || *end || errno == ERANGE)
        return reqerr(e, 400, "bad_parameter", key, -1, "'%s' must be a number, not '%s'", key, value);
    if (*has && *slot != x)
        return reqerr(e, 400, "conflicting_parameter", key, -1,
                      "the body and the query give different values of '%s'", key);
    *slot = x;
    *has = true;
    return 0;
}

void icpnsd_neg_req_free(neg_req_t *q)
{
    free(q->users);
    q->users = NULL;
}

/* ---- a fast path for the "users" array ------------------------------------ */

bool icpnsd_json_fastpath = true;

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Skips a JSON string starting at the quote; NULL if unterminated. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Skips any JSON value (strings, nesting); NULL when it cannot tell.  The
 * value is validated by jansson afterwards; this only has to find its end. */
static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            if (!(p = skip_string(p, end)))
                return NULL;
            if (depth == 0)
                return p;
            continue;
        }
        if (c == '[' || c == '{')
            depth++;
        else if (c == ']' || c == '}') {
            if (depth == 0)
                return p; /* the end of the enclosing object */
            if (--depth == 0)
                return p + 1;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'))
            return p;
        p++;
    }
    return depth == 0 ? p : NULL;
}

/*
 * Finds the top-level "users" array of a request object and, when it is a
 * plain list of non-negative decimal integers, reads it without building
 * a jansson value per id: *@ret gets the ids, and @rest a copy of the body
 * with the array replaced by [] (for jansson to validate everything else).
 * Returns false, leaving the body to jansson alone, in any other case.
 */
static bool fast_users(const char *body, size_t len, size_t max_users, int64_t **ret, size_t *ret_n,
                       char **rest, size_t *rest_len)
{
    const char *p = body, *end = body + len, *arr = NULL, *arr_end = NULL;
    p = skip_ws(p, end);
    if (p == end || *p != '{')
        return false;
    p = skip_ws(p + 1, end);
    while (p < end && *p != '}') {
        if (*p != '"')
            return false;
        const char *k = p + 1, *ke = skip_string(p, end);
        if (!ke)
            return false;
        bool is_users = ke - k - 1 == 5 && !memcmp(k, "users", 5);
        p = skip_ws(ke, end);
        if (p == end || *p != ':')
            return false;
        p = skip_ws(p + 1, end);
        if (is_users) {
            if (arr || p == end || *p != '[')
                return false; /* a second "users", or not an array: jansson says why */
            arr = p;
            const char *q = p + 1;
            while (q < end && *q != ']')
                q++;
            if (q == end)
                return false;
            arr_end = q + 1;
            p = arr_end;
        } else if (!(p = skip_value(p, end))) {
            return false;
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',')
            p = skip_ws(p + 1, end);
    }
    if (!arr)
        return false;
    /* The ids: digits, commas and blanks only; no leading zeros, no sign. */
    size_t cap = 0, n = 0;
    int64_t *ids = NULL;
    const char *q = skip_ws(arr + 1, arr_end - 1);
    while (q < arr_end - 1) {
        if (*q < '0' || *q > '9' || (*q == '0' && q + 1 < arr_end - 1 && q[1] >= '0' && q[1] <= '9'))
            goto slow;
        uint64_t v = 0;
        int digits = 0;
        while (q < arr_end - 1 && *q >= '0' && *q <= '9') {
            v = v * 10 + (uint64_t)(*q++ - '0');
            if (++digits > 18)
                goto slow; /* near the int64 limit: leave it to jansson */
        }
        if (n == max_users)
            goto slow; /* jansson's path gives the 413 */
        if (n == cap) {
            size_t c = cap ? cap * 2 : 1024;
            int64_t *ni = realloc(ids, c * sizeof(*ids));
            if (!ni)
                goto slow;
            ids = ni;
            cap = c;
        }
        ids[n++] = (int64_t)v;
        q = skip_ws(q, arr_end - 1);
        if (q < arr_end - 1) {
            if (*q != ',')
                goto slow;
            q = skip_ws(q + 1, arr_end - 1);
            if (q == arr_end - 1)
                goto slow; /* trailing comma: invalid JSON */
        }
    }
    size_t before = (size_t)(arr - body), after = (size_t)(end - arr_end);
    char *r = malloc(before + 2 + after + 1);
    if (!r)
        goto slow;
    memcpy(r, body, before);
    memcpy(r + before, "[]", 2);
    memcpy(r + before + 2, arr_end, after);
    r[before + 2 + after] = '\0';
    *rest = r;
    *rest_len = before + 2 + after;
    *ret = ids;
    *ret_n = n;
    return true;
slow:
    free(ids);
    return false;
}

/* Reads a JSON request. */
int icpnsd_parse_negatives_json(const icpnsd_config_t *cfg, int default_strategy,
                                uint64_t fallback_seed, const char *body, size_t len,
                                neg_req_t *q, icpnsd_reqerr_t *e)
{
    json_error_t je;
    int64_t *fast_ids = NULL;
    size_t fast_n = 0, rest_len = 0;
    char *rest = NULL;
    bool fast = icpnsd_json_fastpath && body &&
                fast_users(body, len, cfg->max_users, &fast_ids, &fast_n, &rest, &rest_len);
    json_t *root = fast ? json_loadb(rest, rest_len, JSON_REJECT_DUPLICATES, &je)
                        : json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    free(rest);
    if (!root) {
        free(fast_ids);
        /* Report against the body the client sent. */
        if (fast)
            json_decref(json_loadb(body, len, JSON_REJECT_DUPLICATES, &je));
        reqerr(e, 400, "bad_json", NULL, -1, "line %d column %d: %s", je.line,
                             je.column, je.text);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root)) {
        reqerr(e, 400, "bad_request", NULL, -1, "the body must be a JSON object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "alpha") || !strcmp(key, "epsilon") || !strcmp(key, "beta")) {
            if (!json_is_number(v)) {
                reqerr(e, 400, "bad_parameter", key, -1, "'%s' must be a number", key);
                goto out;
            }
            double x = json_number_value(v);
            if (!strcmp(key, "alpha"))
                q->alpha = x, q->has_alpha = true;
            else if (!strcmp(key, "epsilon"))
                q->epsilon = x, q->has_epsilon = true;
            else
                q->beta = x, q->has_beta = true;
            continue;
        }
        if (!strcmp(key, "tables")) {
            if (!json_is_string(v) || !icpnsd_set_name_ok(json_string_value(v))) {
                reqerr(e, 400, "bad_request", "tables", -1,
                       "'tables' names a table set: 1..63 of [A-Za-z0-9._-]");
                goto out;
            }
            snprintf(q->tables, sizeof(q->tables), "%s", json_string_value(v));
            continue;
        }
        if (strcmp(key, "users") && strcmp(key, "n") && strcmp(key, "strategy") &&
            strcmp(key, "seed") && strcmp(key, "probabilities") && strcmp(key, "candidates") &&
            strcmp(key, "unknown_users")) {
            reqerr(e, 400, "unknown_field", key, -1, "unknown field '%s' (users, n, strategy, seed, probabilities, "
                              "candidates, unknown_users, tables, alpha, epsilon, beta)", key);
            goto out;
        }
    }
    json_t *users = json_object_get(root, "users");
    if (!json_is_array(users)) {
        reqerr(e, 400, "bad_request", "users", -1, "'users' must be an array of user ids");
        goto out;
    }
    size_t nu = fast ? fast_n : json_array_size(users);
    if (nu > cfg->max_users) {
        reqerr(e, 413, "limit_exceeded", "users", -1, "%zu users in one request, above the limit of %u", nu, cfg->max_users);
        goto out;
    }
    q->rows = (uint32_t)nu;
    if (fast) {
        q->users = fast_ids ? fast_ids : malloc(sizeof(*q->users));
        fast_ids = NULL;
        if (!q->users) {
            reqerr(e, 503, "out_of_memory", NULL, -1, "no memory for the request");
            goto out;
        }
        nu = 0; /* read already */
    } else {
        q->users = malloc((nu ? nu : 1) * sizeof(*q->users));
    }
    if (!q->users) {
        reqerr(e, 503, "out_of_memory", NULL, -1, "no memory for the request");
        goto out;
    }
    for (size_t k = 0; k < nu; k++) {
        json_t *u = json_array_get(users, k);
        if (!json_is_integer(u) || json_integer_value(u) < 0) {
            reqerr(e, 400, "bad_user_id", "users", (long long)k, "user ids are non-negative integers");
            goto out;
        }
        q->users[k] = json_integer_value(u);
    }
    json_t *jn = json_object_get(root, "n");
    uint64_t n = cfg->default_n;
    if (jn) {
        if (!json_is_integer(jn) || json_integer_value(jn) < 1) {
            reqerr(e, 400, "bad_request", "n", -1, "'n' must be a positive integer");
            goto out;
        }
        n = (uint64_t)json_integer_value(jn);
    }
    json_t *js = json_object_get(root, "strategy");
    q->nparts = 1;
    q->parts[0].strategy = (icpns_strategy_t)default_strategy;
    if (js && json_is_string(js)) {
        int s = icpns_strategy_parse(json_string_value(js));
        if (s < 0) {
            reqerr(e, 400, "bad_strategy", "strategy", -1, "unknown strategy '%s' (uniform, popularity, icpns)", json_string_value(js));
            goto out;
        }
        q->parts[0].strategy = (icpns_strategy_t)s;
    } else if (js && json_is_array(js)) {
        /* Mixed: [{"strategy":"icpns","n":3},{"strategy":"uniform","n":1}] */
        size_t np = json_array_size(js);
        if (np < 1 || np > MAX_PARTS) {
            reqerr(e, 400, "bad_strategy", "strategy", -1, "a strategy mix has 1 to %d parts", MAX_PARTS);
            goto out;
        }
        uint64_t total = 0;
        for (size_t k = 0; k < np; k++) {
            json_t *p = json_array_get(js, k), *ps = json_object_get(p, "strategy"),
                   *pn = json_object_get(p, "n");
            int s = json_is_string(ps) ? icpns_strategy_parse(json_string_value(ps)) : -1;
            if (s < 0 || !json_is_integer(pn) || json_integer_value(pn) < 1 ||
                json_integer_value(pn) > cfg->max_n) {
                reqerr(e, 400, "bad_strategy", "strategy", (long long)k, "each part is {\"strategy\": uniform|popularity|icpns, \"n\": 1..%u}",
                                     cfg->max_n);
                goto out;
            }
            q->parts[k].strategy = (icpns_strategy_t)s;
            q->parts[k].n = (uint32_t)json_integer_value(pn);
            total += q->parts[k].n;
        }
        if (jn && total != n) {
            reqerr(e, 400, "bad_request", "n", -1, "'n' (%llu) differs from the sum of the strategy mix (%llu)",
                              (unsigned long long)n, (unsigned long long)total);
            goto out;
        }
        q->nparts = (int)np;
        q->mixed = true;
        n = total;
    } else if (js) {
        reqerr(e, 400, "bad_strategy", "strategy", -1, "'strategy' is a name or a list of {strategy, n}");
        goto out;
    }
    if (n > cfg->max_n) {
        reqerr(e, 413, "limit_exceeded", "n", -1, "n = %llu is above the limit of %u",
                          (unsigned long long)n, cfg->max_n);
        goto out;
    }
    q->n = (uint32_t)n;
    if (!q->mixed)
        q->parts[0].n = q->n;
    json_t *jm = json_object_get(root, "candidates");
    q->m = 1;
    if (jm) {
        if (!json_is_integer(jm) || json_integer_value(jm) < 1) {
            reqerr(e, 400, "bad_request", "candidates", -1, "'candidates' must be a positive integer");
            goto out;
        }
        if (json_integer_value(jm) > cfg->max_candidates) {
            reqerr(e, 413, "limit_exceeded", "candidates", -1, "candidates above the limit of %u", cfg->max_candidates);
            goto out;
        }
        q->m = (uint32_t)json_integer_value(jm);
    }
    json_t *jseed = json_object_get(root, "seed");
    if (jseed) {
        if (!json_is_integer(jseed) || json_integer_value(jseed) < 0) {
            reqerr(e, 400, "bad_request", "seed", -1, "'seed' must be a non-negative integer");
            goto out;
        }
        q->seed = (uint64_t)json_integer_value(jseed);
    } else {
        /* No seed: a fresh one, returned so the answer can be replayed. */
        q->seed = fallback_seed;
    }
    json_t *jp = json_object_get(root, "probabilities");
    if (jp && !json_is_boolean(jp)) {
        reqerr(e, 400, "bad_request", "probabilities", -1, "'probabilities' must be true or false");
        goto out;
    }
    q->probs = jp && json_is_true(jp);
    json_t *ju = json_object_get(root, "unknown_users");
    if (ju) {
        const char *s = json_is_string(ju) ? json_string_value(ju) : "";
        if (!strcmp(s, "popularity"))
            q->flags |= ICPNS_SAMPLE_SUBSTITUTE_PNS;
        else if (strcmp(s, "error")) {
            reqerr(e, 400, "bad_request", "unknown_users", -1, "'unknown_users' is \"error\" or \"popularity\"");
            goto out;
        }
    }
    rc = 0;
out:
    free(fast_ids);
    json_decref(root);
    return rc;
}

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* Reads a binary frame (proto/frames.md). */
int icpnsd_parse_negatives_frame(const icpnsd_config_t *cfg, const char *body, size_t len,
                                 neg_req_t *q, icpnsd_reqerr_t *e)
{
    const unsigned char *p = (const unsigned char *)body;
    if (len < FRAME_REQ_HEADER || memcmp(p, FRAME_REQ_MAGIC, 4)) {
        reqerr(e, 400, "bad_frame", NULL, -1, "a request frame starts with a 40-byte header and magic 'ICPQ'");
        return -1;
    }
    if (rd16(p + 4) != 1) {
        reqerr(e, 400, "bad_frame", "version", -1, "unsupported frame version %u", rd16(p + 4));
        return -1;
    }
    uint16_t flags = rd16(p + 6);
    uint32_t n = rd32(p + 8), m = rd32(p + 12), count = rd32(p + 20);
    unsigned strategy = p[16];
    if (flags & ~3u) {
        reqerr(e, 400, "bad_frame", "flags", -1, "unknown flag bits 0x%x", flags & ~3u);
        return -1;
    }
    if (strategy >= ICPNS_STRATEGY_COUNT) {
        reqerr(e, 400, "bad_strategy", "strategy", -1, "strategy byte %u is not 0, 1 or 2", strategy);
        return -1;
    }
    if (n < 1 || m < 1) {
        reqerr(e, 400, "bad_frame", n < 1 ? "n" : "candidates", -1, "n and candidates must be >= 1");
        return -1;
    }
    if (count > cfg->max_users || n > cfg->max_n || m > cfg->max_candidates) {
        reqerr(e, 413, "limit_exceeded", count > cfg->max_users ? "users" : n > cfg->max_n ? "n" : "candidates", -1, "the frame asks beyond the configured limits");
        return -1;
    }
    if ((uint64_t)len != FRAME_REQ_HEADER + (uint64_t)count * 8) {
        reqerr(e, 400, "bad_frame", "users", -1, "the header announces %u users (%llu bytes) but the body has %zu bytes",
                          count, (unsigned long long)(FRAME_REQ_HEADER + (uint64_t)count * 8), len);
        return -1;
    }
    q->rows = count;
    q->users = malloc((count ? count : 1) * sizeof(*q->users));
    if (!q->users) {
        reqerr(e, 503, "out_of_memory", NULL, -1, "no memory for the request");
        return -1;
    }
    for (uint32_t k = 0; k < count; k++) {
        q->users[k] = (int64_t)rd64(p + FRAME_REQ_HEADER + (size_t)k * 8);
        if (q->users[k] < 0) {
            reqerr(e, 400, "bad_user_id", "users", k, "user ids are non-negative");
            return -1;
        }
    }
    q->nparts = 1;
    q->parts[0].strategy = (icpns_strategy_t)strategy;
    q->parts[0].n = n;
    q->n = n;
    q->m = m;
    q->seed = rd64(p + 24);
    q->probs = flags & 1;
    if (flags & 2)
        q->flags |= ICPNS_SAMPLE_SUBSTITUTE_PNS;
    q->binary_in = true;
    return 0;
}


/* ---- POST /admin/cluster ------------------------------------------------- */

#define MAX_K 65536
#define MAX_RESTARTS 100
#define MAX_ITER 100000

void icpnsd_cluster_req_init(cluster_req_t *q)
{
    memset(q, 0, sizeof(*q));
    icpns_kmeans_opts_default(&q->ko);
}

void icpnsd_cluster_req_free(cluster_req_t *q)
{
    icpns_embeddings_free(&q->emb);
}

static int opt_u64(const char *key, const char *v, uint64_t lo, uint64_t hi, uint64_t *out,
                   icpnsd_reqerr_t *e)
{
    char *end;
    errno = 0;
    unsigned long long x = v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
    if (!(v[0] >= '0' && v[0] <= '9') || errno || *end || x < lo || x > hi)
        return reqerr(e, 400, "bad_parameter", key, -1, "%s must be an integer in [%llu, %llu], not '%s'",
                      key, (unsigned long long)lo, (unsigned long long)hi, v);
    *out = x;
    return 0;
}

int icpnsd_cluster_opt(cluster_req_t *q, const char *key, const char *v, icpnsd_reqerr_t *e)
{
    uint64_t x;
    if (!v)
        v = "";
    if (!strcmp(key, "k")) {
        if (opt_u64(key, v, 1, MAX_K, &x, e))
            return -1;
        q->ko.k = (uint32_t)x;
    } else if (!strcmp(key, "seed")) {
        if (opt_u64(key, v, 0, UINT64_MAX, &x, e))
            return -1;
        q->ko.seed = x;
    } else if (!strcmp(key, "restarts")) {
        if (opt_u64(key, v, 1, MAX_RESTARTS, &x, e))
            return -1;
        q->ko.restarts = (uint32_t)x;
    } else if (!strcmp(key, "max_iter")) {
        if (opt_u64(key, v, 1, MAX_ITER, &x, e))
            return -1;
        q->ko.max_iter = (uint32_t)x;
    } else if (!strcmp(key, "tol")) {
        char *end;
        double t = strtod(v, &end);
        if (!v[0] || *end || !(t >= 0) || !isfinite(t) || t > 1)
            return reqerr(e, 400, "bad_parameter", key, -1, "tol must be a number in [0, 1], not '%s'", v);
        q->ko.tol = t;
    } else {
        return reqerr(e, 400, "bad_parameter", key, -1,
                      "unknown parameter '%s' (k, seed, restarts, max_iter, tol)", key);
    }
    return 0;
}

int icpnsd_cluster_check(const cluster_req_t *q, icpnsd_reqerr_t *e)
{
    if (q->emb.n == 0)
        return reqerr(e, 400, "bad_embeddings", "embeddings", -1, "no rows to cluster");
    if (q->ko.k > q->emb.n)
        return reqerr(e, 400, "bad_parameter", "k", -1, "k = %u is more than the %u rows", q->ko.k,
                      q->emb.n);
    for (uint64_t i = 0; i < (uint64_t)q->emb.n * q->emb.dim; i++)
        if (!isfinite(q->emb.x[i]))
            return reqerr(e, 400, "bad_embeddings", "embeddings", (long long)(i / q->emb.dim),
                          "row %llu has a value that is not a finite number",
                          (unsigned long long)(i / q->emb.dim));
    return 0;
}

int icpnsd_parse_cluster_json(const char *body, size_t len, cluster_req_t *q, icpnsd_reqerr_t *e)
{
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return reqerr(e, 400, "bad_json", NULL, -1, "line %d column %d: %s", je.line, je.column,
                      je.text);
    int rc = -1;
    if (!json_is_object(root)) {
        reqerr(e, 400, "bad_request", NULL, -1, "the body must be a JSON object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "users") || !strcmp(key, "embeddings"))
            continue;
        char text[64];
        if (json_is_integer(v))
            snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            snprintf(text, sizeof(text), "%.17g", json_real_value(v));
        else {
            reqerr(e, 400, "bad_parameter", key, -1, "'%s' must be a number", key);
            goto out;
        }
        if (icpnsd_cluster_opt(q, key, text, e))
            goto out;
    }
    json_t *users = json_object_get(root, "users"), *emb = json_object_get(root, "embeddings");
    if (!json_is_array(users) || !json_is_array(emb)) {
        reqerr(e, 400, "bad_request", !json_is_array(users) ? "users" : "embeddings", -1,
               "'users' (ids) and 'embeddings' (one array of numbers per user) are required");
        goto out;
    }
    size_t n = json_array_size(users);
    if (json_array_size(emb) != n) {
        reqerr(e, 400, "bad_embeddings", "embeddings", -1, "%zu users but %zu embedding rows", n,
               json_array_size(emb));
        goto out;
    }
    if (n == 0 || n > UINT32_MAX / 2) {
        reqerr(e, 400, "bad_embeddings", "users", -1, "between 1 and 2^31 users");
        goto out;
    }
    size_t dim = json_array_size(json_array_get(emb, 0));
    if (dim == 0 || dim > 65536) {
        reqerr(e, 400, "bad_embeddings", "embeddings", 0, "rows must have 1..65536 numbers");
        goto out;
    }
    q->emb.n = (uint32_t)n;
    q->emb.dim = (uint32_t)dim;
    q->emb.ids = malloc(n * sizeof(int64_t));
    q->emb.x = malloc(n * dim * sizeof(float));
    if (!q->emb.ids || !q->emb.x) {
        reqerr(e, 503, "out_of_memory", NULL, -1, "no memory for the embeddings");
        goto out;
    }
    for (size_t r = 0; r < n; r++) {
        json_t *u = json_array_get(users, r), *row = json_array_get(emb, r);
        if (!json_is_integer(u) || json_integer_value(u) < 0) {
            reqerr(e, 400, "bad_user_id", "users", (long long)r, "user ids are non-negative integers");
            goto out;
        }
        q->emb.ids[r] = json_integer_value(u);
        if (!json_is_array(row) || json_array_size(row) != dim) {
            reqerr(e, 400, "bad_embeddings", "embeddings", (long long)r,
                   "every row must have %zu numbers", dim);
            goto out;
        }
        for (size_t j = 0; j < dim; j++) {
            json_t *x = json_array_get(row, j);
            if (!json_is_number(x)) {
                reqerr(e, 400, "bad_embeddings", "embeddings", (long long)r,
                       "column %zu is not a number", j);
                goto out;
            }
            q->emb.x[r * dim + j] = (float)json_number_value(x);
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int icpnsd_parse_cluster_frame(const char *body, size_t len, cluster_req_t *q,
                               icpnsd_reqerr_t *e)
{
    const unsigned char *p = (const unsigned char *)body;
    if (len < FRAME_EMB_HEADER || memcmp(p, FRAME_EMB_MAGIC, 4))
        return reqerr(e, 400, "bad_frame", NULL, -1,
                      "an embeddings frame starts with a 40-byte header and magic 'ICPE'");
    if (rd16(p + 4) != 1)
        return reqerr(e, 400, "bad_frame", "version", -1, "unsupported frame version %u", rd16(p + 4));
    if (rd16(p + 6) != 0)
        return reqerr(e, 400, "bad_frame", "flags", -1, "unknown flag bits 0x%x", rd16(p + 6));
    uint32_t k = rd32(p + 8), rows = rd32(p + 12), dim = rd32(p + 16), restarts = rd32(p + 20),
             max_iter = rd32(p + 24);
    char text[32];
    snprintf(text, sizeof(text), "%u", k);
    if (icpnsd_cluster_opt(q, "k", text, e))
        return -1;
    snprintf(text, sizeof(text), "%llu", (unsigned long long)rd64(p + 32));
    if (icpnsd_cluster_opt(q, "seed", text, e))
        return -1;
    if (restarts) {
        snprintf(text, sizeof(text), "%u", restarts);
        if (icpnsd_cluster_opt(q, "restarts", text, e))
            return -1;
    }
    if (max_iter) {
        snprintf(text, sizeof(text), "%u", max_iter);
        if (icpnsd_cluster_opt(q, "max_iter", text, e))
            return -1;
    }
    if (rows == 0 || dim == 0 || dim > 65536 || rows > UINT32_MAX / 2)
        return reqerr(e, 400, "bad_frame", rows == 0 ? "rows" : "dim", -1,
                      "rows must be 1..2^31 and dim 1..65536");
    uint64_t need = FRAME_EMB_HEADER + (uint64_t)rows * 8 + (uint64_t)rows * dim * 4;
    if ((uint64_t)len != need)
        return reqerr(e, 400, "bad_frame", "embeddings", -1,
                      "the header announces %u x %u (%llu bytes) but the body has %zu bytes", rows,
                      dim, (unsigned long long)need, len);
    q->emb.n = rows;
    q->emb.dim = dim;
    q->emb.ids = malloc((size_t)rows * sizeof(int64_t));
    q->emb.x = malloc((size_t)rows * dim * sizeof(float));
    if (!q->emb.ids || !q->emb.x)
        return reqerr(e, 503, "out_of_memory", NULL, -1, "no memory for the embeddings");
    for (uint32_t r = 0; r < rows; r++) {
        q->emb.ids[r] = (int64_t)rd64(p + FRAME_EMB_HEADER + (size_t)r * 8);
        if (q->emb.ids[r] < 0)
            return reqerr(e, 400, "bad_user_id", "users", r, "user ids are non-negative");
    }
    memcpy(q->emb.x, p + FRAME_EMB_HEADER + (size_t)rows * 8, (size_t)rows * dim * 4);
    return 0;
}

int icpnsd_parse_cluster_npy(const char *body, size_t len, cluster_req_t *q, icpnsd_reqerr_t *e)
{
    icpns_error_t err;
    icpns_error_clear(&err);
    if (icpns_embeddings_parse_npy(body, len, NULL, &q->emb, &err)) {
        if (err.code == ICPNS_ENOMEM)
            return reqerr(e, 503, "out_of_memory", NULL, -1, "no memory for the embeddings");
        return reqerr(e, 400, "bad_npy", err.field, -1, "%s", err.message);
    }
    return 0;
}
