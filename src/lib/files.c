/* files.c - whole-file reads and durable, atomic writes. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "icpns/dataset.h"

static const char *file_kind(mode_t m)
{
    return S_ISFIFO(m) ? "a FIFO" : S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device"
           : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

int icpns_file_open_regular(const char *path, int *ret_fd, struct stat *ret_st, icpns_error_t *err)
{
    /* Non-blocking: opening a FIFO for reading would otherwise wait for a
     * writer, forever. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "cannot open: %s",
                               strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL,
                               "%s, not a regular file: table, token and configuration files "
                               "must be regular files", file_kind(st.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *ret_fd = fd;
    if (ret_st)
        *ret_st = st;
    return 0;
}

int icpns_file_read(const char *path, size_t max_bytes, char **ret,
                    size_t *ret_len, icpns_error_t *err)
{
    int fd;
    struct stat st;
    int rc = icpns_file_open_regular(path, &fd, &st, err);
    if (rc)
        return rc;
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return icpns_error_set(err, ICPNS_ELIMIT, path, 0, NULL,
                               "file is %lld bytes, above the limit of %zu",
                               (long long)st.st_size, max_bytes);
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
    }
    for (;;) {
        if (len + 1 == cap) {
            /* The file grew while we read it. */
            if (cap > max_bytes) {
                free(buf);
                close(fd);
                return icpns_error_set(err, ICPNS_ELIMIT, path, 0, NULL,
                                       "file grew above the limit of %zu bytes", max_bytes);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                close(fd);
                return icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t k = read(fd, buf + len, cap - 1 - len);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            close(fd);
            return icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "read failed: %s",
                                   strerror(e));
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = '\0';
    *ret = buf;
    *ret_len = len;
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -1;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int icpns_file_write_atomic(const char *path, const void *data, size_t len,
                            icpns_error_t *err)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (!tmp)
        return icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL,
                               "cannot create a temporary file: %s", strerror(e));
    }
    int e = 0;
    if (fchmod(fd, 0644) < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0)
        e = errno;
    if (close(fd) < 0 && !e)
        e = errno;
    if (!e && rename(tmp, path) < 0)
        e = errno;
    if (e) {
        unlink(tmp);
        free(tmp);
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "write failed: %s",
                               strerror(e));
    }
    free(tmp);
    if (fsync_dir_of(path) < 0)
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL,
                               "fsync of the directory failed: %s", strerror(errno));
    return 0;
}

int icpns_file_append_sync(const char *path, const void *data, size_t len,
                           icpns_error_t *err)
{
    struct stat st;
    bool created = stat(path, &st) < 0;
    /* Non-blocking: opening a FIFO for writing would wait for a reader. */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0644);
    if (fd < 0)
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "cannot open: %s",
                               strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "%s, not a regular file",
                               file_kind(st.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    int e = 0;
    off_t before = fstat(fd, &st) == 0 ? st.st_size : -1;
    if (before < 0 || write_all(fd, data, len) < 0 || fdatasync(fd) < 0) {
        e = errno;
        /* A partial append (disk full) must not stay: the next append would
         * glue its first line to the torn one. */
        if (before >= 0 && ftruncate(fd, before) == 0)
            fdatasync(fd);
    }
    if (close(fd) < 0 && !e)
        e = errno;
    if (e)
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL, "append failed: %s",
                               strerror(e));
    if (created && fsync_dir_of(path) < 0)
        return icpns_error_set(err, ICPNS_EIO, path, 0, NULL,
                               "fsync of the directory failed: %s", strerror(errno));
    return 0;
}

int icpns_version_record_read(const char *dir, uint64_t *version, uint64_t *fingerprint,
                              icpns_error_t *err)
{
    char path[1100], text[128];
    snprintf(path, sizeof(path), "%s/" ICPNS_VERSION_FILE, dir);
    if (access(path, F_OK) < 0 && errno == ENOENT)
        return 1;
    int fd, rc = icpns_file_open_regular(path, &fd, NULL, err);
    if (rc)
        return rc;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    text[n > 0 ? n : 0] = 0;
    unsigned long long v, h;
    char end;
    if (sscanf(text, "%llu %16llx%c", &v, &h, &end) != 3 || end != '\n' || v == 0)
        return icpns_error_set(err, ICPNS_EPARSE, path, 1, NULL,
                               "not \"VERSION FINGERPRINT\"");
    *version = v;
    *fingerprint = h;
    return 0;
}

int icpns_version_record_write(const char *dir, uint64_t version, uint64_t fingerprint,
                               icpns_error_t *err)
{
    char path[1100], text[64];
    snprintf(path, sizeof(path), "%s/" ICPNS_VERSION_FILE, dir);
    int len = snprintf(text, sizeof(text), "%llu %016llx\n", (unsigned long long)version,
                       (unsigned long long)fingerprint);
    return icpns_file_write_atomic(path, text, (size_t)len, err);
}
