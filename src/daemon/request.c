/* request.c - the JSON request parsers: negatives, cluster uploads (JSON and
 * .npy), admin pair lists and table-set additions.  Binary frames are in
 * frames.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "request.h"

bool icpnsd_parse_id(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || n > 19 || (n > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[k] - '0');
    }
    if (v > INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

bool icpnsd_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    size_t n = strlen(s);
    int64_t v;
    if (!icpnsd_parse_id(s, n, &v) || (uint64_t)v > max)
        return false;
    *out = (uint64_t)v;
    return true;
}

bool icpnsd_parse_decimal(const char *s, double *out)
{
    /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, the JSON number
     * grammar: no hex, no inf or nan, no blanks, no leading '+'. */
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return false;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p)
        return false;
    errno = 0;
    double x = strtod(s, NULL);
    if (errno == ERANGE || !isfinite(x))
        return false;
    *out = x;
    return true;
}

const char *icpnsd_quote(const char *s, char *buf, size_t size)
{
    char esc[ICPNS_QUOTE_BUF];
    icpns_escape(s, strlen(s), esc, sizeof(esc));
    snprintf(buf, size, "'%s'", esc);
    return buf;
}

int icpnsd_negreq_query(icpnsd_negreq_t *q, const char *key, const char *value, icpnsd_err_t *e)
{
    char shown[ICPNSD_QUOTE_BUF];
    if (!value)
        value = "";
    if (!strcmp(key, "tables")) {
        if (!icpnsd_set_name_ok(value))
            return icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "tables", -1,
                          "'tables' names a table set: 1..63 of [A-Za-z0-9._-], not %s",
                          icpnsd_quote(value, shown, sizeof(shown)));
        if (q->tables[0] && strcmp(q->tables, value))
            return icpnsd_err_set(e, ICPNSD_E_CONFLICTING_PARAMETER, "tables", -1,
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
        return icpnsd_err_set(e, ICPNSD_E_UNKNOWN_PARAMETER, key, -1,
                              "unknown parameter %s (tables, alpha, epsilon, beta)",
                              icpnsd_quote(key, shown, sizeof(shown)));
    double x;
    if (!icpnsd_parse_decimal(value, &x))
        return icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, key, -1,
                              "'%s' must be a decimal number, not %s", key,
                              icpnsd_quote(value, shown, sizeof(shown)));
    if (*has && *slot != x)
        return icpnsd_err_set(e, ICPNSD_E_CONFLICTING_PARAMETER, key, -1,
                      "the body and the query give different values of '%s'", key);
    *slot = x;
    *has = true;
    return 0;
}

void icpnsd_negreq_free(icpnsd_negreq_t *q)
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
int icpnsd_negreq_parse_json(const icpnsd_config_t *cfg, int default_strategy,
                                uint64_t fallback_seed, const char *body, size_t len,
                                icpnsd_negreq_t *q, icpnsd_err_t *e)
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
        icpnsd_err_set(e, ICPNSD_E_BAD_JSON, NULL, -1, "line %d column %d: %s", je.line,
                             je.column, je.text);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root)) {
        icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, NULL, -1, "the body must be a JSON object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "alpha") || !strcmp(key, "epsilon") || !strcmp(key, "beta")) {
            if (!json_is_number(v)) {
                icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, key, -1, "'%s' must be a number", key);
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
                icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "tables", -1,
                       "'tables' names a table set: 1..63 of [A-Za-z0-9._-]");
                goto out;
            }
            snprintf(q->tables, sizeof(q->tables), "%s", json_string_value(v));
            continue;
        }
        if (strcmp(key, "users") && strcmp(key, "n") && strcmp(key, "strategy") &&
            strcmp(key, "seed") && strcmp(key, "probabilities") && strcmp(key, "candidates") &&
            strcmp(key, "unknown_users")) {
            icpnsd_err_set(e, ICPNSD_E_UNKNOWN_FIELD, key, -1, "unknown field '%s' (users, n, strategy, seed, probabilities, "
                              "candidates, unknown_users, tables, alpha, epsilon, beta)", key);
            goto out;
        }
    }
    json_t *users = json_object_get(root, "users");
    if (!json_is_array(users)) {
        icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "users", -1, "'users' must be an array of user ids");
        goto out;
    }
    size_t nu = fast ? fast_n : json_array_size(users);
    if (nu > cfg->max_users) {
        icpnsd_err_set(e, ICPNSD_E_LIMIT_EXCEEDED, "users", -1, "%zu users in one request, above the limit of %u", nu, cfg->max_users);
        goto out;
    }
    q->rows = (uint32_t)nu;
    if (fast) {
        q->users = fast_ids ? fast_ids : malloc(sizeof(*q->users));
        fast_ids = NULL;
        if (!q->users) {
            icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for the request");
            goto out;
        }
        nu = 0; /* read already */
    } else {
        q->users = malloc((nu ? nu : 1) * sizeof(*q->users));
    }
    if (!q->users) {
        icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for the request");
        goto out;
    }
    for (size_t k = 0; k < nu; k++) {
        json_t *u = json_array_get(users, k);
        if (!json_is_integer(u) || json_integer_value(u) < 0) {
            icpnsd_err_set(e, ICPNSD_E_BAD_USER_ID, "users", (long long)k, "user ids are non-negative integers");
            goto out;
        }
        q->users[k] = json_integer_value(u);
    }
    json_t *jn = json_object_get(root, "n");
    uint64_t n = cfg->default_n;
    if (jn) {
        if (!json_is_integer(jn) || json_integer_value(jn) < 1) {
            icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "n", -1, "'n' must be a positive integer");
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
            icpnsd_err_set(e, ICPNSD_E_BAD_STRATEGY, "strategy", -1, "unknown strategy '%s' (uniform, popularity, icpns)", json_string_value(js));
            goto out;
        }
        q->parts[0].strategy = (icpns_strategy_t)s;
    } else if (js && json_is_array(js)) {
        /* Mixed: [{"strategy":"icpns","n":3},{"strategy":"uniform","n":1}] */
        size_t np = json_array_size(js);
        if (np < 1 || np > ICPNSD_MAX_PARTS) {
            icpnsd_err_set(e, ICPNSD_E_BAD_STRATEGY, "strategy", -1, "a strategy mix has 1 to %d parts", ICPNSD_MAX_PARTS);
            goto out;
        }
        uint64_t total = 0;
        for (size_t k = 0; k < np; k++) {
            json_t *p = json_array_get(js, k), *ps = json_object_get(p, "strategy"),
                   *pn = json_object_get(p, "n");
            const char *pk;
            json_t *pv;
            json_object_foreach(p, pk, pv) {
                if (strcmp(pk, "strategy") && strcmp(pk, "n")) {
                    char shown[ICPNSD_QUOTE_BUF];
                    icpnsd_err_set(e, ICPNSD_E_UNKNOWN_FIELD, "strategy", (long long)k,
                                   "strategy part %zu has an unknown field %s (strategy, n)", k,
                                   icpnsd_quote(pk, shown, sizeof(shown)));
                    goto out;
                }
            }
            int s = json_is_string(ps) ? icpns_strategy_parse(json_string_value(ps)) : -1;
            if (s < 0 || !json_is_integer(pn) || json_integer_value(pn) < 1 ||
                json_integer_value(pn) > cfg->max_n) {
                icpnsd_err_set(e, ICPNSD_E_BAD_STRATEGY, "strategy", (long long)k, "each part is {\"strategy\": uniform|popularity|icpns, \"n\": 1..%u}",
                                     cfg->max_n);
                goto out;
            }
            q->parts[k].strategy = (icpns_strategy_t)s;
            q->parts[k].n = (uint32_t)json_integer_value(pn);
            total += q->parts[k].n;
        }
        if (jn && total != n) {
            icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "n", -1, "'n' (%llu) differs from the sum of the strategy mix (%llu)",
                              (unsigned long long)n, (unsigned long long)total);
            goto out;
        }
        q->nparts = (int)np;
        q->mixed = true;
        n = total;
    } else if (js) {
        icpnsd_err_set(e, ICPNSD_E_BAD_STRATEGY, "strategy", -1, "'strategy' is a name or a list of {strategy, n}");
        goto out;
    }
    if (n > cfg->max_n) {
        icpnsd_err_set(e, ICPNSD_E_LIMIT_EXCEEDED, "n", -1, "n = %llu is above the limit of %u",
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
            icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "candidates", -1, "'candidates' must be a positive integer");
            goto out;
        }
        if (json_integer_value(jm) > cfg->max_candidates) {
            icpnsd_err_set(e, ICPNSD_E_LIMIT_EXCEEDED, "candidates", -1, "candidates above the limit of %u", cfg->max_candidates);
            goto out;
        }
        q->m = (uint32_t)json_integer_value(jm);
    }
    json_t *jseed = json_object_get(root, "seed");
    if (jseed) {
        if (!json_is_integer(jseed) || json_integer_value(jseed) < 0) {
            icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "seed", -1, "'seed' must be a non-negative integer");
            goto out;
        }
        q->seed = (uint64_t)json_integer_value(jseed);
    } else {
        /* No seed: a fresh one, returned so the answer can be replayed. */
        q->seed = fallback_seed;
    }
    json_t *jp = json_object_get(root, "probabilities");
    if (jp && !json_is_boolean(jp)) {
        icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "probabilities", -1, "'probabilities' must be true or false");
        goto out;
    }
    q->probs = jp && json_is_true(jp);
    json_t *ju = json_object_get(root, "unknown_users");
    if (ju) {
        const char *s = json_is_string(ju) ? json_string_value(ju) : "";
        if (!strcmp(s, "popularity"))
            q->flags |= ICPNS_SAMPLE_SUBSTITUTE_PNS;
        else if (strcmp(s, "error")) {
            icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "unknown_users", -1, "'unknown_users' is \"error\" or \"popularity\"");
            goto out;
        }
    }
    rc = 0;
out:
    free(fast_ids);
    json_decref(root);
    return rc;
}

/* ---- admin bodies ---------------------------------------------------------- */

typedef struct pair_row {
    icpns_pair_t p;
    size_t row;
} pair_row_t;

static int cmp_pair_row(const void *x, const void *y)
{
    const pair_row_t *a = x, *b = y;
    if (a->p.a != b->p.a)
        return a->p.a < b->p.a ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

/* The row of the first user given two different second ids, or -1. */
static long long conflicting_row(const icpns_pair_t *pairs, size_t n, long long *ret_first)
{
    pair_row_t *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v)
        return -2;
    for (size_t k = 0; k < n; k++)
        v[k] = (pair_row_t){pairs[k], k};
    qsort(v, n, sizeof(*v), cmp_pair_row);
    long long bad = -1;
    for (size_t k = 1; k < n; k++)
        if (v[k].p.a == v[k - 1].p.a && v[k].p.b != v[k - 1].p.b &&
            (bad < 0 || (long long)v[k].row < bad)) {
            bad = (long long)v[k].row;
            *ret_first = (long long)v[k - 1].row;
        }
    free(v);
    return bad;
}

int icpnsd_parse_pairs(const char *body, size_t len, const char *key, const char *what,
                       bool communities, icpns_pair_t **ret_pairs, size_t *ret_n,
                       bool *ret_replace, char *ret_tables, size_t tables_size, icpnsd_err_t *e)
{
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return icpnsd_err_set(e, ICPNSD_E_BAD_JSON, NULL, -1, "line %d column %d: %s", je.line,
                              je.column, je.text);
    int rc = -1;
    icpns_pair_t *pairs = NULL;
    if (!json_is_object(root)) {
        icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, NULL, -1, "the body must be a JSON object");
        goto out;
    }
    const char *k0;
    json_t *v0;
    json_object_foreach(root, k0, v0) {
        if (strcmp(k0, key) && strcmp(k0, "tables") && (!communities || strcmp(k0, "replace"))) {
            char shown[ICPNSD_QUOTE_BUF];
            icpnsd_err_set(e, ICPNSD_E_UNKNOWN_FIELD, k0, -1, "unknown field %s (%s, tables%s)",
                           icpnsd_quote(k0, shown, sizeof(shown)), key,
                           communities ? ", replace" : "");
            goto out;
        }
    }
    json_t *arr = json_object_get(root, key);
    if (!json_is_array(arr)) {
        icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, key, -1, "'%s' must be an array of [user, %s] pairs",
                       key, what);
        goto out;
    }
    json_t *jt = json_object_get(root, "tables");
    if (jt && (!json_is_string(jt) || !icpnsd_set_name_ok(json_string_value(jt)))) {
        icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "tables", -1,
                       "'tables' names a table set: 1..63 of [A-Za-z0-9._-]");
        goto out;
    }
    bool replace = false;
    json_t *rep = json_object_get(root, "replace");
    if (rep && !json_is_boolean(rep)) {
        icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "replace", -1, "'replace' must be true or false");
        goto out;
    }
    replace = rep && json_is_true(rep);
    size_t n = json_array_size(arr);
    pairs = malloc((n ? n : 1) * sizeof(*pairs));
    if (!pairs) {
        icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for %zu pairs", n);
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        json_t *p = json_array_get(arr, k), *a = json_array_get(p, 0), *b = json_array_get(p, 1);
        if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_integer(a) ||
            !json_is_integer(b) || json_integer_value(a) < 0 || json_integer_value(b) < 0) {
            icpnsd_err_set(e, ICPNSD_E_BAD_PAIR, key, (long long)k,
                           "each entry is [user, %s] with non-negative integer ids", what);
            goto out;
        }
        pairs[k] = (icpns_pair_t){json_integer_value(a), json_integer_value(b)};
    }
    if (communities) {
        /* One community per user, as in communities.tsv. */
        long long first = -1, bad = conflicting_row(pairs, n, &first);
        if (bad == -2) {
            icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for %zu pairs", n);
            goto out;
        }
        if (bad >= 0) {
            icpnsd_err_set(e, ICPNSD_E_CONFLICTING_ASSIGNMENT, key, bad,
                           "user %lld is assigned to community %lld here and to community %lld "
                           "at row %lld: one community per user",
                           (long long)pairs[bad].a, (long long)pairs[bad].b,
                           (long long)pairs[first].b, first);
            goto out;
        }
    }
    if (ret_tables)
        snprintf(ret_tables, tables_size, "%s", jt ? json_string_value(jt) : "");
    *ret_pairs = pairs;
    pairs = NULL;
    *ret_n = n;
    if (ret_replace)
        *ret_replace = replace;
    rc = 0;
out:
    free(pairs);
    json_decref(root);
    return rc;
}

/* The q-value of media range @type in @accept: the most specific match
 * (exact, then type slash star, then star slash star); -1 when none matches. */
static double accept_q(const char *accept, const char *type)
{
    double best = -1;
    int best_rank = -1;
    const char *slash = strchr(type, '/');
    size_t major = slash ? (size_t)(slash - type) : strlen(type);
    for (const char *p = accept; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *semi = memchr(p, ';', len);
        size_t tl = semi ? (size_t)(semi - p) : len;
        while (tl && p[tl - 1] == ' ')
            tl--;
        double q = 1;
        for (const char *a = semi; a && a < p + len; a = memchr(a + 1, ';', (size_t)(p + len - a - 1))) {
            const char *v = a + 1;
            while (*v == ' ')
                v++;
            if ((v[0] == 'q' || v[0] == 'Q') && v[1] == '=') {
                char num[16];
                size_t nl = 0;
                for (const char *c = v + 2; c < p + len && *c != ';' && *c != ' ' && nl < 15; c++)
                    num[nl++] = *c;
                num[nl] = '\0';
                char *e;
                q = strtod(num, &e);
                if (*e || q < 0 || q > 1)
                    q = 0; /* malformed: not acceptable */
            }
        }
        int rank = -1;
        if (tl == strlen(type) && !strncasecmp(p, type, tl))
            rank = 2;
        else if (tl == major + 2 && !strncasecmp(p, type, major) && !strncmp(p + major, "/*", 2))
            rank = 1;
        else if (tl == 3 && !strncmp(p, "*/*", 3))
            rank = 0;
        if (rank > best_rank) {
            best_rank = rank;
            best = q;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return best;
}

int icpnsd_accept_choice(const char *accept, bool frame_in)
{
    if (!accept || !*accept)
        return frame_in ? 1 : 0;
    double qf = accept_q(accept, "application/x-icpns-frame"),
           qj = accept_q(accept, "application/json");
    if (qf <= 0 && qj <= 0)
        return -1;
    if (qf > qj)
        return 1;
    if (qj > qf)
        return 0;
    return frame_in ? 1 : 0;
}
