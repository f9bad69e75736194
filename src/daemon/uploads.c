/*
 * uploads.c - table sets uploaded over HTTP, on disk (see uploads.h).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "uploads.h"

/* Writes @n pairs as "a<TAB>b" lines to DIR/FILE (durably). */
static int write_pairs(const char *dir, const char *file, const icpns_pair_t *v, size_t n,
                       const char *header, icpns_error_t *err)
{
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpns_buf_puts(&b, header);
    for (size_t k = 0; k < n; k++) {
        icpns_buf_i64(&b, v[k].a);
        icpns_buf_lit(&b, "\t");
        icpns_buf_i64(&b, v[k].b);
        icpns_buf_lit(&b, "\n");
    }
    if (b.failed) {
        icpns_buf_free(&b);
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    }
    char path[1400];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int rc = icpns_file_write_atomic(path, b.p, b.len, err);
    icpns_buf_free(&b);
    return rc;
}

int icpnsd_tableset_store(const char *dir, const char *tmp, const icpnsd_tableset_t *t,
                          icpns_error_t *err)
{
    char parent[1100];
    snprintf(parent, sizeof(parent), "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = '\0';
    icpnsd_tableset_remove(tmp);
    if (mkdir(tmp, 0750) < 0)
        return icpns_error_set(err, ICPNS_EIO, tmp, 0, NULL, "cannot create: %s", strerror(errno));
    int rc = write_pairs(tmp, "interactions.tsv", t->inter, t->n_inter, "# user\titem\n", err);
    if (!rc)
        rc = write_pairs(tmp, "communities.tsv", t->comm, t->n_comm, "# user\tcommunity\n", err);
    if (!rc && t->n_items) {
        icpns_buf_t b;
        icpns_buf_init(&b, 0);
        icpns_buf_lit(&b, "# item\n");
        for (size_t k = 0; k < t->n_items; k++) {
            icpns_buf_i64(&b, t->items[k]);
            icpns_buf_lit(&b, "\n");
        }
        char path[1400];
        snprintf(path, sizeof(path), "%s/items.tsv", tmp);
        rc = b.failed ? icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory")
                      : icpns_file_write_atomic(path, b.p, b.len, err);
        icpns_buf_free(&b);
    }
    if (!rc) {
        icpns_buf_t b;
        icpns_buf_init(&b, 0);
        icpns_buf_lit(&b, "{\"format\": \"pairs\"");
        if (t->n_items)
            icpns_buf_lit(&b, ", \"items\": \"items.tsv\"");
        if (t->has_alpha)
            icpns_buf_printf(&b, ", \"alpha\": %.17g", t->alpha);
        if (t->has_epsilon)
            icpns_buf_printf(&b, ", \"epsilon\": %.17g", t->epsilon);
        if (t->has_beta)
            icpns_buf_printf(&b, ", \"beta\": %.17g", t->beta);
        icpns_buf_lit(&b, ", \"_origin\": \"uploaded to icpnsd (POST /admin/sets)\"}\n");
        char path[1400];
        snprintf(path, sizeof(path), "%s/tables.json", tmp);
        rc = b.failed ? icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory")
                      : icpns_file_write_atomic(path, b.p, b.len, err);
        icpns_buf_free(&b);
    }
    if (!rc && rename(tmp, dir) < 0)
        rc = icpns_error_set(err, ICPNS_EIO, dir, 0, NULL, "cannot rename %s into place: %s", tmp,
                             strerror(errno));
    if (rc) {
        icpnsd_tableset_remove(tmp);
        return rc;
    }
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
}

void icpnsd_tableset_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[1400];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (unlink(path) < 0)
            log_warn("cannot remove %s: %s", path, strerror(errno));
    }
    closedir(d);
    if (rmdir(dir) < 0)
        log_warn("cannot remove %s: %s", dir, strerror(errno));
}

/* mkdir DIR unless it is a directory already. */
static int ensure_dir(const char *dir, char *err, size_t es)
{
    struct stat st;
    if (mkdir(dir, 0750) < 0 && (errno != EEXIST || stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))) {
        snprintf(err, es, "state_dir: cannot create %s: %s", dir,
                 errno == EEXIST ? "a file of that name is in the way" : strerror(errno));
        return -1;
    }
    return 0;
}

static int uploads_prepare(const char *state, char *sets, size_t sets_size, char *err, size_t es)
{
    struct stat st;
    if (stat(state, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, es, "state_dir %s: %s", state,
                 stat(state, &st) < 0 ? strerror(errno) : "not a directory");
        return -1;
    }
    char tmp[1100];
    snprintf(sets, sets_size, "%s/sets", state);
    snprintf(tmp, sizeof(tmp), "%s/sets.tmp", state);
    if (ensure_dir(sets, err, es) || ensure_dir(tmp, err, es))
        return -1;
    DIR *d = opendir(tmp);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[1400];
        snprintf(path, sizeof(path), "%s/%s", tmp, e->d_name);
        log_warn("removing %s: an upload that never finished", path);
        icpnsd_tableset_remove(path);
    }
    if (d)
        closedir(d);
    return 0;
}

/* "NAME@GENERATION" into @name and @gen; false when @entry is not one. */
static bool upload_entry(const char *entry, char *name, uint64_t *gen)
{
    const char *at = strrchr(entry, '@');
    if (!at || at == entry || (size_t)(at - entry) >= ICPNSD_SET_NAME || !at[1])
        return false;
    snprintf(name, ICPNSD_SET_NAME, "%.*s", (int)(at - entry), entry);
    char *end;
    errno = 0;
    unsigned long long g = strtoull(at + 1, &end, 10);
    if (*end || errno || at[1] < '0' || at[1] > '9' || !icpnsd_set_name_ok(name))
        return false;
    *gen = g;
    return true;
}

int icpnsd_uploads_scan(const char *state, icpnsd_upload_fn fn, void *ctx, uint64_t *ret_gen,
                        char *err, size_t es)
{
    char sets[1100];
    if (uploads_prepare(state, sets, sizeof(sets), err, es))
        return -1;
    struct stat st;
    struct dirent **names;
    int n = scandir(sets, &names, NULL, alphasort);
    if (n < 0) {
        snprintf(err, es, "state_dir: cannot read %s: %s", sets, strerror(errno));
        return -1;
    }
    int rc = 0;
    uint64_t top = 0;
    for (int k = 0; k < n; k++) {
        const char *entry = names[k]->d_name;
        char path[1400], name[ICPNSD_SET_NAME], other[ICPNSD_SET_NAME];
        uint64_t gen = 0, g2;
        snprintf(path, sizeof(path), "%s/%s", sets, entry);
        if (rc || !strcmp(entry, ".") || !strcmp(entry, ".."))
            continue;
        if (!upload_entry(entry, name, &gen) || stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
            log_warn("ignoring %s: not a table set the daemon stored (a directory NAME@N, NAME "
                     "1..63 of [A-Za-z0-9._-])", path);
            continue;
        }
        if (gen > top)
            top = gen;
        bool newer = false;
        for (int i = 0; i < n; i++)
            newer |= upload_entry(names[i]->d_name, other, &g2) && !strcmp(other, name) &&
                     g2 > gen;
        if (newer) {
            log_warn("removing %s: a newer upload of '%s' is there", path, name);
            icpnsd_tableset_remove(path);
            continue;
        }
        rc = fn(ctx, name, path, err, es);
    }
    for (int k = 0; k < n; k++)
        free(names[k]);
    free(names);
    *ret_gen = top;
    return rc;
}
