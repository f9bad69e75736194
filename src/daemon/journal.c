/* journal.c - durable files of a table directory (see journal.h). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "log.h"

int icpnsd_journal_cut_tail(const char *dir, icpns_error_t *err)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/" ICPNS_JOURNAL, dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 0 : icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "%s", strerror(errno));
    struct stat sb;
    off_t keep = 0;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "%s", strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "not a regular file");
    }
    if (sb.st_size > 0) {
        /* Scan back from the end for the last newline. */
        char buf[4096];
        off_t end = sb.st_size;
        keep = -1;
        while (end > 0 && keep < 0) {
            size_t n = end < (off_t)sizeof(buf) ? (size_t)end : sizeof(buf);
            ssize_t got = pread(fd, buf, n, end - (off_t)n);
            if (got != (ssize_t)n) {
                close(fd);
                return icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "cannot read: %s",
                                       got < 0 ? strerror(errno) : "short read");
            }
            for (size_t k = n; k > 0; k--)
                if (buf[k - 1] == '\n') {
                    keep = end - (off_t)n + (off_t)k;
                    break;
                }
            end -= (off_t)n;
        }
        if (keep < 0)
            keep = 0;
    }
    close(fd);
    if (keep < sb.st_size) {
        if (truncate(path, keep) < 0)
            return icpns_error_set(err, ICPNS_EIO, path, 0, NULL,
                                   "cannot cut the partial last line: %s", strerror(errno));
        log_warn("journal %s: dropped an interrupted append of %lld bytes", path,
                 (long long)(sb.st_size - keep));
    }
    return 0;
}

int icpnsd_journal_append(const char *dir, const icpns_pair_t *pairs, size_t n,
                          icpns_error_t *err)
{
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    for (size_t k = 0; k < n; k++) {
        icpns_buf_i64(&b, pairs[k].a);
        icpns_buf_lit(&b, "\t");
        icpns_buf_i64(&b, pairs[k].b);
        icpns_buf_lit(&b, "\n");
    }
    if (b.failed) {
        icpns_buf_free(&b);
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    }
    char path[1200];
    snprintf(path, sizeof(path), "%s/" ICPNS_JOURNAL, dir);
    int rc = icpns_file_append_sync(path, b.p ? b.p : "", b.len, err);
    icpns_buf_free(&b);
    return rc;
}

int icpnsd_communities_write(const char *dir, const char *file, const icpns_pair_t *comm,
                             size_t n, icpns_error_t *err)
{
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpns_buf_lit(&b, "# user\tcommunity\n");
    for (size_t k = 0; k < n; k++) {
        icpns_buf_i64(&b, comm[k].a);
        icpns_buf_lit(&b, "\t");
        icpns_buf_i64(&b, comm[k].b);
        icpns_buf_lit(&b, "\n");
    }
    if (b.failed) {
        icpns_buf_free(&b);
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    }
    char path[1400], prev[1420], tmp[1440];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    /* Keep the assignment being replaced as FILE.prev: a hard link to the
     * old file, renamed into place, so the old content is never lost (a
     * copy where links are not allowed). */
    snprintf(prev, sizeof(prev), "%s.prev", path);
    snprintf(tmp, sizeof(tmp), "%s.prev.tmp.%d", path, (int)getpid());
    unlink(tmp);
    if (access(path, F_OK) == 0) {
        int kept = link(path, tmp) == 0 && rename(tmp, prev) == 0;
        if (!kept) {
            unlink(tmp);
            char *old;
            size_t len;
            icpns_error_t e2;
            if (icpns_file_read(path, (size_t)1 << 40, &old, &len, &e2) == 0) {
                kept = icpns_file_write_atomic(prev, old, len, &e2) == 0;
                free(old);
            }
        }
        if (!kept)
            log_warn("%s: cannot keep the previous assignment as %s: %s", path, prev,
                     strerror(errno));
    }
    int rc = icpns_file_write_atomic(path, b.p, b.len, err);
    icpns_buf_free(&b);
    return rc;
}

int icpnsd_version_load(const char *dir, uint64_t *version, uint64_t *fingerprint)
{
    icpns_error_t err;
    int rc = icpns_version_record_read(dir, version, fingerprint, &err);
    if (rc < 0) {
        char m[700];
        icpns_error_format(&err, m, sizeof(m));
        log_warn("%s; versions start again at 1", m);
        return -1;
    }
    return rc;
}

void icpnsd_version_save(const char *dir, const char *name, uint64_t version,
                         uint64_t fingerprint)
{
    if (!dir[0])
        return;
    icpns_error_t err;
    if (icpns_version_record_write(dir, version, fingerprint, &err)) {
        char m[700];
        icpns_error_format(&err, m, sizeof(m));
        log_warn("tables=%s: cannot record version %llu (%s); a restart may number versions "
                 "from 1 again", name, (unsigned long long)version, m);
    }
}

void icpnsd_remove_stale_temporaries(const char *dir, const char *file)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t n = strlen(file);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *suffix = e->d_name + n + 5;
        if (strncmp(e->d_name, file, n) || strncmp(e->d_name + n, ".tmp.", 5))
            continue;
        /* mkstemp's six characters, or a process id. */
        size_t sl = strlen(suffix), digits = strspn(suffix, "0123456789");
        if (sl != 6 && !(sl >= 1 && sl <= 10 && digits == sl))
            continue;
        char path[1400];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (unlink(path) == 0)
            log_warn("removed %s, left by an interrupted write", path);
    }
    closedir(d);
}
