/* tables.c - a table directory: tables.json, the table files and the journal. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "icpns/dataset.h"

/* Input files above this are refused rather than read into memory. */
#define MAX_TABLE_FILE ((size_t)16 << 30)

static int opt_number(json_t *v, const char *key, double *out, const char *path,
                      icpns_error_t *err)
{
    if (!json_is_number(v))
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, key, "'%s' must be a number", key);
    *out = json_number_value(v);
    return 0;
}

static int opt_name(json_t *v, const char *key, char *out, size_t size,
                    const char *path, icpns_error_t *err)
{
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) >= size || strchr(json_string_value(v), '\n'))
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, key,
                               "'%s' must be a non-empty file name", key);
    snprintf(out, size, "%s", json_string_value(v));
    return 0;
}

int icpns_table_opts_load(icpns_table_opts_t *o, const char *dir, icpns_error_t *err)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/tables.json", dir);
    if (access(path, F_OK) < 0)
        return 0;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return icpns_error_set(err, ICPNS_EPARSE, path, (uint64_t)(je.line > 0 ? je.line : 0),
                               NULL, "%s", je.text);
    icpns_table_opts_t t = *o;
    int rc = 0;
    if (!json_is_object(root)) {
        rc = icpns_error_set(err, ICPNS_EPARSE, path, 1, NULL, "expected a JSON object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "alpha"))
            rc = opt_number(v, key, &t.params.alpha, path, err);
        else if (!strcmp(key, "epsilon"))
            rc = opt_number(v, key, &t.params.epsilon, path, err);
        else if (!strcmp(key, "beta"))
            rc = opt_number(v, key, &t.params.beta, path, err);
        else if (!strcmp(key, "min_rating")) {
            if (json_is_null(v))
                t.has_min_rating = false;
            else if (!(rc = opt_number(v, key, &t.min_rating, path, err)))
                t.has_min_rating = true;
        } else if (!strcmp(key, "format")) {
            int f = json_is_string(v) ? icpns_format_parse(json_string_value(v)) : -1;
            if (f < 0)
                rc = icpns_error_set(err, ICPNS_EPARSE, path, 0, key,
                                     "'format' must be one of auto, pairs, recbole, adjacency, "
                                     "lists");
            else {
                t.format = (icpns_format_t)f;
                snprintf(t.format_origin, sizeof(t.format_origin), "in tables.json");
            }
        } else if (!strcmp(key, "extra_columns")) {
            const char *x = json_is_string(v) ? json_string_value(v) : "";
            if (!strcmp(x, "ignore") || !strcmp(x, "error"))
                t.extra_columns_ignore = !strcmp(x, "ignore");
            else
                rc = icpns_error_set(err, ICPNS_EPARSE, path, 0, key,
                                     "'extra_columns' must be \"error\" (the default: pairs "
                                     "lines have 2 to 4 columns) or \"ignore\"");
        } else if (!strcmp(key, "popularity_source")) {
            int ps = json_is_string(v) ? icpns_pop_source_parse(json_string_value(v)) : -1;
            if (ps < 0)
                rc = icpns_error_set(err, ICPNS_EPARSE, path, 0, key,
                                     "'popularity_source' must be \"interactions\" (pop_c "
                                     "counted from the interactions) or \"file\" (read from "
                                     "the popularity file)");
            else
                t.pop_source = (icpns_pop_source_t)ps;
        } else if (!strcmp(key, "interactions"))
            rc = opt_name(v, key, t.interactions, sizeof(t.interactions), path, err);
        else if (!strcmp(key, "communities"))
            rc = opt_name(v, key, t.communities, sizeof(t.communities), path, err);
        else if (!strcmp(key, "popularity"))
            rc = opt_name(v, key, t.popularity, sizeof(t.popularity), path, err);
        else if (!strcmp(key, "items")) {
            if (!(rc = opt_name(v, key, t.items, sizeof(t.items), path, err)))
                t.items_required = true;
        } else if (!strcmp(key, "comment") || key[0] == '_')
            ; /* free-form notes */
        else
            rc = icpns_error_set(err, ICPNS_EPARSE, path, 0, key,
                                 "unknown key '%s' (known: alpha, epsilon, beta, format, "
                                 "min_rating, extra_columns, popularity_source, interactions, "
                                 "communities, popularity, items)", key);
        if (rc)
            goto out;
    }
    if ((rc = icpns_params_check(&t.params, err))) {
        if (err) {
            size_t n = strlen(path);
            n = n < sizeof(err->path) - 1 ? n : sizeof(err->path) - 1;
            memcpy(err->path, path, n);
            err->path[n] = '\0';
        }
        goto out;
    }
    *o = t;
out:
    json_decref(root);
    return rc;
}

enum { KIND_INTER, KIND_COMM, KIND_POP, KIND_ITEMS, KIND_JOURNAL };

static int load_one(const char *path, int kind, const icpns_table_opts_t *o,
                    icpns_dataset_t *d, icpns_error_t *err)
{
    char *buf;
    size_t len;
    int rc = icpns_file_read(path, MAX_TABLE_FILE, &buf, &len, err);
    if (rc)
        return rc;
    switch (kind) {
    case KIND_INTER: rc = icpns_parse_interactions(d, buf, len, o, path, err); break;
    case KIND_COMM: rc = icpns_parse_communities(d, buf, len, path, err); break;
    case KIND_POP: rc = icpns_parse_popularity(d, buf, len, path, err); break;
    case KIND_ITEMS: rc = icpns_parse_items(d, buf, len, path, err); break;
    default: rc = icpns_parse_journal(d, buf, len, path, err); break;
    }
    free(buf);
    return rc;
}

int icpns_dataset_load_paths(const icpns_table_paths_t *p, const icpns_table_opts_t *o,
                             icpns_dataset_t **ret, icpns_error_t *err)
{
    icpns_dataset_t *d = icpns_dataset_new();
    if (!d)
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    int rc = load_one(p->interactions, KIND_INTER, o, d, err);
    if (!rc)
        rc = load_one(p->communities, KIND_COMM, o, d, err);
    if (!rc && p->popularity[0])
        rc = load_one(p->popularity, KIND_POP, o, d, err);
    if (!rc && p->items[0])
        rc = load_one(p->items, KIND_ITEMS, o, d, err);
    if (!rc && p->journal[0])
        rc = load_one(p->journal, KIND_JOURNAL, o, d, err);
    if (!rc && d->n_inter == 0)
        rc = icpns_error_set(err, ICPNS_EPARSE, p->interactions, 0, "interactions",
                             "no interactions: the file holds no data lines (only a header, "
                             "comments or blank lines?), and there is nothing to sample from");
    if (rc) {
        icpns_dataset_free(d);
        return rc;
    }
    *ret = d;
    return 0;
}

/* DIR/NAME into @out; ICPNS_EINVAL when it does not fit. */
static int join(char *out, size_t size, const char *dir, const char *name, icpns_error_t *err)
{
    if ((size_t)snprintf(out, size, "%s/%s", dir, name) >= size)
        return icpns_error_set(err, ICPNS_EINVAL, dir, 0, NULL, "path too long: %s/%s", dir,
                               name);
    return 0;
}

int icpns_table_paths_resolve(const char *dir, const icpns_table_opts_t *o,
                              icpns_table_paths_t *ret, icpns_error_t *err)
{
    struct stat st;
    if (stat(dir, &st) < 0)
        return icpns_error_set(err, ICPNS_EIO, dir, 0, NULL, "cannot open the table directory: %s",
                               strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return icpns_error_set(err, ICPNS_EIO, dir, 0, NULL, "not a directory");
    icpns_table_paths_t p;
    memset(&p, 0, sizeof(p));
    char pop[1024];
    int rc;
    if ((rc = join(p.interactions, sizeof(p.interactions), dir, o->interactions, err)) ||
        (rc = join(p.communities, sizeof(p.communities), dir, o->communities, err)) ||
        (rc = join(pop, sizeof(pop), dir, o->popularity, err)) ||
        (rc = join(p.items, sizeof(p.items), dir, o->items, err)) ||
        (rc = join(p.journal, sizeof(p.journal), dir, ICPNS_JOURNAL, err)))
        return rc;
    bool has_pop = access(pop, F_OK) == 0;
    if (o->pop_source == ICPNS_POP_FROM_INTERACTIONS && has_pop)
        /* Counts that nobody reads would go stale silently as the
         * interactions move on: refuse them. */
        return icpns_error_set(err, ICPNS_EINVAL, pop, 0, "popularity_source",
                               "this file exists but popularity_source is \"interactions\" "
                               "(the default): its counts would be ignored. To serve them set "
                               "\"popularity_source\": \"file\" in tables.json; else delete it");
    if (o->pop_source == ICPNS_POP_FROM_FILE) {
        if (!has_pop)
            return icpns_error_set(err, ICPNS_EIO, pop, 0, "popularity_source",
                                   "popularity_source is \"file\" but this file does not exist: "
                                   "%s", strerror(errno));
        memcpy(p.popularity, pop, sizeof(pop));
    }
    if (access(p.items, F_OK) < 0) {
        if (o->items_required)
            return icpns_error_set(err, ICPNS_EIO, p.items, 0, "items",
                                   "tables.json names this catalogue file: %s", strerror(errno));
        p.items[0] = '\0';
    }
    if (access(p.journal, F_OK) < 0)
        p.journal[0] = '\0';
    *ret = p;
    return 0;
}

int icpns_dataset_load_dir(const char *dir, icpns_table_opts_t *opts,
                           icpns_dataset_t **ret, icpns_error_t *err)
{
    struct stat st;
    if (stat(dir, &st) < 0)
        return icpns_error_set(err, ICPNS_EIO, dir, 0, NULL, "cannot open the table directory: %s",
                               strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return icpns_error_set(err, ICPNS_EIO, dir, 0, NULL, "not a directory");
    int rc = icpns_table_opts_load(opts, dir, err);
    if (rc)
        return rc;
    icpns_table_paths_t *p = malloc(sizeof(*p));
    if (!p)
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    rc = icpns_table_paths_resolve(dir, opts, p, err);
    if (!rc)
        rc = icpns_dataset_load_paths(p, opts, ret, err);
    free(p);
    return rc;
}

int icpns_tables_load(const char *dir, icpns_params_t *params, icpns_dataset_t **ret,
                      icpns_error_t *err)
{
    icpns_table_opts_t *o = malloc(sizeof(*o));
    if (!o)
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    icpns_table_opts_default(o);
    o->params = *params;
    icpns_dataset_t *d = NULL;
    int rc = icpns_dataset_load_dir(dir, o, &d, err);
    if (!rc) {
        *params = o->params;
        *ret = d;
    }
    free(o);
    return rc;
}

int icpns_dataset_load_journal(icpns_dataset_t *d, const char *dir, icpns_error_t *err)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, ICPNS_JOURNAL);
    if (access(path, F_OK) < 0)
        return 0;
    char *buf;
    size_t len;
    int rc = icpns_file_read(path, MAX_TABLE_FILE, &buf, &len, err);
    if (rc)
        return rc;
    /* A last line without its newline is an interrupted append, never
     * acknowledged: skipped (the daemon also cuts it off the file). */
    rc = icpns_parse_journal(d, buf, len, path, err);
    free(buf);
    return rc;
}

int icpns_interactions_read(const char *path, const char *format, double min_rating,
                            unsigned flags, int64_t **ret_users, int64_t **ret_items,
                            size_t *ret_n, icpns_load_report_t *report, icpns_error_t *err)
{
    icpns_table_opts_t o;
    icpns_table_opts_default(&o);
    if (format) {
        int f = icpns_format_parse(format);
        if (f < 0)
            return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "format",
                                   "unknown format '%.40s' (auto, pairs, recbole, adjacency, "
                                   "lists)", format);
        o.format = (icpns_format_t)f;
        snprintf(o.format_origin, sizeof(o.format_origin), "by the caller");
    }
    if (!isnan(min_rating)) {
        o.has_min_rating = true;
        o.min_rating = min_rating;
    }
    o.extra_columns_ignore = (flags & ICPNS_READ_EXTRA_COLUMNS_IGNORE) != 0;
    icpns_dataset_t *d = icpns_dataset_new();
    if (!d)
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    int rc = load_one(path, KIND_INTER, &o, d, err);
    if (rc) {
        icpns_dataset_free(d);
        return rc;
    }
    size_t n = d->n_inter;
    int64_t *u = malloc((n ? n : 1) * sizeof(*u));
    int64_t *i = malloc((n ? n : 1) * sizeof(*i));
    if (!u || !i) {
        free(u);
        free(i);
        icpns_dataset_free(d);
        return icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
    }
    for (size_t k = 0; k < n; k++) {
        u[k] = d->inter[k].a;
        i[k] = d->inter[k].b;
    }
    if (report && d->n_reports)
        *report = d->reports[0];
    icpns_dataset_free(d);
    *ret_users = u;
    *ret_items = i;
    *ret_n = n;
    return 0;
}

void icpns_interactions_free(int64_t *users, int64_t *items)
{
    free(users);
    free(items);
}
