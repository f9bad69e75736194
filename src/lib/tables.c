/* tables.c - a table directory: tables.json and the three files. */
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
                                     "'format' must be one of auto, pairs, recbole, adjacency");
            else
                t.format = (icpns_format_t)f;
        } else if (!strcmp(key, "interactions"))
            rc = opt_name(v, key, t.interactions, sizeof(t.interactions), path, err);
        else if (!strcmp(key, "communities"))
            rc = opt_name(v, key, t.communities, sizeof(t.communities), path, err);
        else if (!strcmp(key, "popularity"))
            rc = opt_name(v, key, t.popularity, sizeof(t.popularity), path, err);
        else if (!strcmp(key, "comment") || key[0] == '_')
            ; /* free-form notes */
        else
            rc = icpns_error_set(err, ICPNS_EPARSE, path, 0, key,
                                 "unknown key '%s' (known: alpha, epsilon, beta, format, "
                                 "min_rating, interactions, communities, popularity)", key);
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

static int load_one(const char *path, int kind, const icpns_table_opts_t *o,
                    icpns_dataset_t *d, icpns_error_t *err)
{
    char *buf;
    size_t len;
    int rc = icpns_file_read(path, MAX_TABLE_FILE, &buf, &len, err);
    if (rc)
        return rc;
    if (kind == 0)
        rc = icpns_parse_interactions(d, buf, len, o->format, o->has_min_rating,
                                      o->min_rating, path, err);
    else if (kind == 1)
        rc = icpns_parse_communities(d, buf, len, path, err);
    else
        rc = icpns_parse_popularity(d, buf, len, path, err);
    free(buf);
    return rc;
}

int icpns_dataset_load_files(const char *interactions, const char *communities,
                             const char *popularity, const icpns_table_opts_t *opts,
                             icpns_dataset_t **ret, icpns_error_t *err)
{
    icpns_dataset_t *d = icpns_dataset_new();
    if (!d)
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    int rc = load_one(interactions, 0, opts, d, err);
    if (!rc)
        rc = load_one(communities, 1, opts, d, err);
    if (!rc && popularity)
        rc = load_one(popularity, 2, opts, d, err);
    if (rc) {
        icpns_dataset_free(d);
        return rc;
    }
    *ret = d;
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
    char pi[1024], pc[1024], pp[1024];
    snprintf(pi, sizeof(pi), "%s/%s", dir, opts->interactions);
    snprintf(pc, sizeof(pc), "%s/%s", dir, opts->communities);
    snprintf(pp, sizeof(pp), "%s/%s", dir, opts->popularity);
    bool has_pop = access(pp, F_OK) == 0;
    rc = icpns_dataset_load_files(pi, pc, has_pop ? pp : NULL, opts, ret, err);
    if (!rc && (rc = icpns_dataset_load_journal(*ret, dir, err)))
        *ret = icpns_dataset_free(*ret);
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
    while (len > 0 && buf[len - 1] != '\n')
        len--;
    rc = icpns_parse_interactions(d, buf, len, ICPNS_FORMAT_PAIRS, false, 0, path, err);
    free(buf);
    return rc;
}
