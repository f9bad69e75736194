/*
 * upload.c - the uploads of the admin routes that are not a few pairs:
 * POST /admin/cluster (user embeddings as JSON or .npy; ICPE frames are
 * in frames.c) and its options.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upload.h"

/* ---- POST /admin/cluster ------------------------------------------------- */

#define MAX_K 65536
#define MAX_RESTARTS 100
#define MAX_ITER 100000

void icpnsd_clusterreq_init(icpnsd_clusterreq_t *q)
{
    memset(q, 0, sizeof(*q));
    icpns_kmeans_opts_default(&q->ko);
}

void icpnsd_clusterreq_free(icpnsd_clusterreq_t *q)
{
    icpns_embeddings_free(&q->emb);
}

static int opt_u64(const char *key, const char *v, uint64_t lo, uint64_t hi, uint64_t *out,
                   icpnsd_err_t *e)
{
    char shown[ICPNSD_QUOTE_BUF];
    if (!icpnsd_parse_uint(v, hi, out) || *out < lo)
        return icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, key, -1,
                              "%s must be a decimal integer in [%llu, %llu], not %s", key,
                              (unsigned long long)lo, (unsigned long long)hi,
                              icpnsd_quote(v, shown, sizeof(shown)));
    return 0;
}

static int opt_bool(const char *key, const char *v, bool *out, icpnsd_err_t *e)
{
    char shown[ICPNSD_QUOTE_BUF];
    if (!strcmp(v, "true") || !strcmp(v, "1"))
        *out = true;
    else if (!strcmp(v, "false") || !strcmp(v, "0"))
        *out = false;
    else
        return icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, key, -1,
                              "%s must be true or false, not %s", key,
                              icpnsd_quote(v, shown, sizeof(shown)));
    return 0;
}

int icpnsd_clusterreq_opt(icpnsd_clusterreq_t *q, const char *key, const char *v, icpnsd_err_t *e)
{
    uint64_t x;
    char shown[ICPNSD_QUOTE_BUF];
    if (!v)
        v = "";
    if (!strcmp(key, "k")) {
        if (opt_u64(key, v, 1, MAX_K, &x, e))
            return -1;
        q->ko.k = (uint32_t)x;
    } else if (!strcmp(key, "seed")) {
        if (opt_u64(key, v, 0, ICPNSD_MAX_SEED, &x, e))
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
        double t;
        if (!icpnsd_parse_decimal(v, &t) || !(t >= 0) || t > 1)
            return icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, key, -1,
                                  "tol must be a decimal number in [0, 1], not %s",
                                  icpnsd_quote(v, shown, sizeof(shown)));
        q->ko.tol = t;
    } else if (!strcmp(key, "replace")) {
        return opt_bool(key, v, &q->replace, e);
    } else if (!strcmp(key, "dry_run")) {
        return opt_bool(key, v, &q->dry_run, e);
    } else if (!strcmp(key, "async")) {
        return opt_bool(key, v, &q->async, e);
    } else if (!strcmp(key, "tables")) {
        if (!icpnsd_set_name_ok(v))
            return icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "tables", -1,
                                  "'tables' names a table set: 1..63 of [A-Za-z0-9._-], not %s",
                                  icpnsd_quote(v, shown, sizeof(shown)));
        if (q->tables[0] && strcmp(q->tables, v))
            return icpnsd_err_set(e, ICPNSD_E_CONFLICTING_PARAMETER, "tables", -1,
                                  "the body names table set '%s', the query '%s'", q->tables, v);
        snprintf(q->tables, sizeof(q->tables), "%s", v);
    } else {
        return icpnsd_err_set(e, ICPNSD_E_UNKNOWN_PARAMETER, key, -1,
                              "unknown parameter %s (k, seed, restarts, max_iter, tol, replace, "
                              "dry_run, async, tables)", icpnsd_quote(key, shown, sizeof(shown)));
    }
    return 0;
}

int icpnsd_clusterreq_check(const icpnsd_clusterreq_t *q, icpnsd_err_t *e)
{
    if (q->emb.n == 0)
        return icpnsd_err_set(e, ICPNSD_E_BAD_EMBEDDINGS, "embeddings", -1, "no rows to cluster");
    if (q->ko.k > q->emb.n)
        return icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, "k", -1, "k = %u is more than the %u rows", q->ko.k,
                      q->emb.n);
    for (uint64_t i = 0; i < (uint64_t)q->emb.n * q->emb.dim; i++)
        if (!isfinite(q->emb.x[i]))
            return icpnsd_err_set(e, ICPNSD_E_BAD_EMBEDDINGS, "embeddings", (long long)(i / q->emb.dim),
                          "row %llu has a value that is not a finite number",
                          (unsigned long long)(i / q->emb.dim));
    return 0;
}

int icpnsd_clusterreq_parse_json(const char *body, size_t len, icpnsd_clusterreq_t *q, icpnsd_err_t *e)
{
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return icpnsd_err_set(e, ICPNSD_E_BAD_JSON, NULL, -1, "line %d column %d: %s", je.line, je.column,
                      je.text);
    int rc = -1;
    if (!json_is_object(root)) {
        icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, NULL, -1, "the body must be a JSON object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "users") || !strcmp(key, "embeddings"))
            continue;
        bool is_bool = !strcmp(key, "replace") || !strcmp(key, "dry_run") || !strcmp(key, "async");
        bool is_num = !strcmp(key, "k") || !strcmp(key, "seed") || !strcmp(key, "restarts") ||
                      !strcmp(key, "max_iter") || !strcmp(key, "tol");
        char text[64];
        if (!is_bool && !is_num && strcmp(key, "tables")) {
            char shown[ICPNSD_QUOTE_BUF];
            icpnsd_err_set(e, ICPNSD_E_UNKNOWN_FIELD, key, -1,
                           "unknown field %s (users, embeddings, k, seed, restarts, max_iter, "
                           "tol, replace, dry_run, async, tables)",
                           icpnsd_quote(key, shown, sizeof(shown)));
            goto out;
        }
        if (is_bool) {
            if (!json_is_boolean(v)) {
                icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, key, -1, "'%s' must be true or false", key);
                goto out;
            }
            snprintf(text, sizeof(text), "%s", json_is_true(v) ? "true" : "false");
        } else if (!is_num) {
            if (!json_is_string(v)) {
                icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, key, -1, "'tables' names a table set");
                goto out;
            }
            snprintf(text, sizeof(text), "%.63s", json_string_value(v));
        } else if (json_is_integer(v) && json_integer_value(v) >= 0) {
            snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(v));
        } else if (json_is_real(v) && !strcmp(key, "tol")) {
            snprintf(text, sizeof(text), "%.17g", json_real_value(v));
        } else {
            icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, key, -1, "'%s' must be a %s", key,
                           strcmp(key, "tol") ? "non-negative integer" : "number");
            goto out;
        }
        if (icpnsd_clusterreq_opt(q, key, text, e))
            goto out;
    }
    json_t *users = json_object_get(root, "users"), *emb = json_object_get(root, "embeddings");
    if (!json_is_array(users) || !json_is_array(emb)) {
        icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, !json_is_array(users) ? "users" : "embeddings", -1,
               "'users' (ids) and 'embeddings' (one array of numbers per user) are required");
        goto out;
    }
    size_t n = json_array_size(users);
    if (json_array_size(emb) != n) {
        icpnsd_err_set(e, ICPNSD_E_BAD_EMBEDDINGS, "embeddings", -1, "%zu users but %zu embedding rows", n,
               json_array_size(emb));
        goto out;
    }
    if (n == 0 || n > UINT32_MAX / 2) {
        icpnsd_err_set(e, ICPNSD_E_BAD_EMBEDDINGS, "users", -1, "between 1 and 2^31 users");
        goto out;
    }
    size_t dim = json_array_size(json_array_get(emb, 0));
    if (dim == 0 || dim > 65536) {
        icpnsd_err_set(e, ICPNSD_E_BAD_EMBEDDINGS, "embeddings", 0, "rows must have 1..65536 numbers");
        goto out;
    }
    q->emb.n = (uint32_t)n;
    q->emb.dim = (uint32_t)dim;
    q->emb.ids = malloc(n * sizeof(int64_t));
    q->emb.x = malloc(n * dim * sizeof(float));
    if (!q->emb.ids || !q->emb.x) {
        icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for the embeddings");
        goto out;
    }
    for (size_t r = 0; r < n; r++) {
        json_t *u = json_array_get(users, r), *row = json_array_get(emb, r);
        if (!json_is_integer(u) || json_integer_value(u) < 0) {
            icpnsd_err_set(e, ICPNSD_E_BAD_USER_ID, "users", (long long)r, "user ids are non-negative integers");
            goto out;
        }
        q->emb.ids[r] = json_integer_value(u);
        if (!json_is_array(row) || json_array_size(row) != dim) {
            icpnsd_err_set(e, ICPNSD_E_BAD_EMBEDDINGS, "embeddings", (long long)r,
                   "every row must have %zu numbers", dim);
            goto out;
        }
        for (size_t j = 0; j < dim; j++) {
            json_t *x = json_array_get(row, j);
            if (!json_is_number(x)) {
                icpnsd_err_set(e, ICPNSD_E_BAD_EMBEDDINGS, "embeddings", (long long)r,
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

int icpnsd_clusterreq_parse_npy(const char *body, size_t len, icpnsd_clusterreq_t *q, icpnsd_err_t *e)
{
    icpns_error_t err;
    icpns_error_clear(&err);
    if (icpns_embeddings_parse_npy(body, len, NULL, &q->emb, &err)) {
        if (err.code == ICPNS_ENOMEM)
            return icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for the embeddings");
        return icpnsd_err_set(e, ICPNSD_E_BAD_NPY, err.field, -1, "%s", err.message);
    }
    return 0;
}


/* ---- POST /admin/sets with the data ----------------------------------------- */

void icpnsd_tableset_free(icpnsd_tableset_t *t)
{
    free(t->inter);
    free(t->comm);
    free(t->items);
    t->inter = t->comm = NULL;
    t->items = NULL;
}

/* [[a, b], ...] into a new array; -1 with @e naming @key and the row. */
static int pairs_of(json_t *arr, const char *key, const char *what, icpns_pair_t **ret,
                    size_t *ret_n, icpnsd_err_t *e)
{
    if (!json_is_array(arr))
        return icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, key, -1,
                              "'%s' must be an array of [user, %s] pairs", key, what);
    size_t n = json_array_size(arr);
    icpns_pair_t *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v)
        return icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for %zu pairs", n);
    for (size_t k = 0; k < n; k++) {
        json_t *p = json_array_get(arr, k), *a = json_array_get(p, 0), *b = json_array_get(p, 1);
        if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_integer(a) ||
            !json_is_integer(b) || json_integer_value(a) < 0 || json_integer_value(b) < 0) {
            free(v);
            return icpnsd_err_set(e, ICPNSD_E_BAD_PAIR, key, (long long)k,
                                  "each entry is [user, %s] with non-negative integer ids", what);
        }
        v[k] = (icpns_pair_t){json_integer_value(a), json_integer_value(b)};
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int icpnsd_tableset_opt(icpnsd_tableset_t *t, const char *key, const char *value,
                        icpnsd_err_t *e)
{
    char shown[ICPNSD_QUOTE_BUF];
    if (!value)
        value = "";
    if (!strcmp(key, "name")) {
        if (!icpnsd_set_name_ok(value))
            return icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "name", -1,
                                  "'name' is 1..63 of [A-Za-z0-9._-], not %s",
                                  icpnsd_quote(value, shown, sizeof(shown)));
        snprintf(t->name, sizeof(t->name), "%s", value);
        return 0;
    }
    double *slot;
    bool *has;
    if (!strcmp(key, "alpha"))
        slot = &t->alpha, has = &t->has_alpha;
    else if (!strcmp(key, "epsilon"))
        slot = &t->epsilon, has = &t->has_epsilon;
    else if (!strcmp(key, "beta"))
        slot = &t->beta, has = &t->has_beta;
    else
        return icpnsd_err_set(e, ICPNSD_E_UNKNOWN_PARAMETER, key, -1,
                              "unknown parameter %s (name, alpha, epsilon, beta)",
                              icpnsd_quote(key, shown, sizeof(shown)));
    if (!icpnsd_parse_decimal(value, slot))
        return icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, key, -1,
                              "'%s' must be a decimal number, not %s", key,
                              icpnsd_quote(value, shown, sizeof(shown)));
    *has = true;
    return 0;
}

int icpnsd_sets_post_parse(const char *body, size_t len, icpnsd_tableset_t *t, char *ret_dir,
                           size_t dir_size, icpnsd_err_t *e)
{
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return icpnsd_err_set(e, ICPNSD_E_BAD_JSON, NULL, -1, "line %d column %d: %s", je.line,
                              je.column, je.text);
    int rc = -1;
    ret_dir[0] = '\0';
    if (!json_is_object(root)) {
        icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, NULL, -1, "the body must be a JSON object");
        goto out;
    }
    json_t *dir = json_object_get(root, "tables");
    if (dir) {
        /* A directory on the daemon's host: {"name", "tables"}. */
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v) {
            if (strcmp(key, "name") && strcmp(key, "tables")) {
                char shown[ICPNSD_QUOTE_BUF];
                icpnsd_err_set(e, ICPNSD_E_UNKNOWN_FIELD, key, -1,
                               "unknown field %s (name, tables; or name, interactions, "
                               "communities, items, alpha, epsilon, beta to upload the data)",
                               icpnsd_quote(key, shown, sizeof(shown)));
                goto out;
            }
        }
        json_t *name = json_object_get(root, "name");
        if (!json_is_string(name) || icpnsd_tableset_opt(t, "name", json_string_value(name), e)) {
            if (!json_is_string(name))
                icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "name", -1,
                               "'name' is 1..63 of [A-Za-z0-9._-]");
            goto out;
        }
        if (!json_is_string(dir) || !json_string_value(dir)[0] ||
            strlen(json_string_value(dir)) >= dir_size) {
            icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "tables", -1,
                           "'tables' is the table directory to load");
            goto out;
        }
        if (json_string_value(dir)[0] != '/') {
            icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "tables", -1,
                           "'tables' must be an absolute path on the daemon's host (a relative "
                           "one would be resolved against the daemon's working directory)");
            goto out;
        }
        snprintf(ret_dir, dir_size, "%s", json_string_value(dir));
        rc = 0;
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "interactions") || !strcmp(key, "communities") || !strcmp(key, "items"))
            continue;
        if (!strcmp(key, "name")) {
            if (!json_is_string(v)) {
                icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "name", -1, "'name' is a string");
                goto out;
            }
            if (icpnsd_tableset_opt(t, key, json_string_value(v), e))
                goto out;
        } else if (!strcmp(key, "alpha") || !strcmp(key, "epsilon") || !strcmp(key, "beta")) {
            if (!json_is_number(v)) {
                icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, key, -1, "'%s' must be a number", key);
                goto out;
            }
            double x = json_number_value(v);
            *(!strcmp(key, "alpha") ? &t->alpha : !strcmp(key, "epsilon") ? &t->epsilon
                                                                          : &t->beta) = x;
            *(!strcmp(key, "alpha") ? &t->has_alpha : !strcmp(key, "epsilon") ? &t->has_epsilon
                                                                              : &t->has_beta) = true;
        } else {
            char shown[ICPNSD_QUOTE_BUF];
            icpnsd_err_set(e, ICPNSD_E_UNKNOWN_FIELD, key, -1,
                           "unknown field %s (name, interactions, communities, items, alpha, "
                           "epsilon, beta; or name and tables for a directory)",
                           icpnsd_quote(key, shown, sizeof(shown)));
            goto out;
        }
    }
    if (pairs_of(json_object_get(root, "interactions"), "interactions", "item", &t->inter,
                 &t->n_inter, e) ||
        pairs_of(json_object_get(root, "communities"), "communities", "community", &t->comm,
                 &t->n_comm, e))
        goto out;
    json_t *items = json_object_get(root, "items");
    if (items) {
        if (!json_is_array(items)) {
            icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "items", -1, "'items' is an array of item ids");
            goto out;
        }
        t->n_items = json_array_size(items);
        t->items = malloc((t->n_items ? t->n_items : 1) * sizeof(*t->items));
        if (!t->items) {
            icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for the items");
            goto out;
        }
        for (size_t k = 0; k < t->n_items; k++) {
            json_t *x = json_array_get(items, k);
            if (!json_is_integer(x) || json_integer_value(x) < 0) {
                icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "items", (long long)k,
                               "item ids are non-negative integers");
                goto out;
            }
            t->items[k] = json_integer_value(x);
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

typedef struct user_row {
    int64_t user, comm;
    size_t row;
} user_row_t;

static int cmp_user_row(const void *a, const void *b)
{
    const user_row_t *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

int icpnsd_tableset_check(const icpnsd_tableset_t *t, icpnsd_err_t *e)
{
    if (!t->name[0])
        return icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "name", -1,
                              "the set needs a name ('name', or ?name= with the binary form)");
    if (t->n_inter == 0)
        return icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "interactions", -1,
                              "a table set needs interactions");
    icpns_params_t p;
    icpns_params_default(&p);
    if (t->has_alpha)
        p.alpha = t->alpha;
    if (t->has_epsilon)
        p.epsilon = t->epsilon;
    if (t->has_beta)
        p.beta = t->beta;
    icpns_error_t perr;
    if (icpns_params_check(&p, &perr))
        return icpnsd_err_set(e, ICPNSD_E_BAD_PARAMETER, perr.field, -1, "%s", perr.message);
    /* One community per user (as communities.tsv requires). */
    user_row_t *v = malloc((t->n_comm ? t->n_comm : 1) * sizeof(*v));
    if (!v)
        return icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory");
    for (size_t k = 0; k < t->n_comm; k++)
        v[k] = (user_row_t){t->comm[k].a, t->comm[k].b, k};
    qsort(v, t->n_comm, sizeof(*v), cmp_user_row);
    for (size_t k = 1; k < t->n_comm; k++)
        if (v[k].user == v[k - 1].user && v[k].comm != v[k - 1].comm) {
            int rc = icpnsd_err_set(e, ICPNSD_E_CONFLICTING_ASSIGNMENT, "communities",
                                    (long long)v[k].row,
                                    "user %lld is assigned to community %lld here and to "
                                    "community %lld at row %zu: one community per user",
                                    (long long)v[k].user, (long long)v[k].comm,
                                    (long long)v[k - 1].comm, v[k - 1].row);
            free(v);
            return rc;
        }
    free(v);
    return 0;
}
