/*
 * watch.c - reloading a table set when its files change (see watch.h).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "watch.h"

#define WATCH_GIVE_UP 60.0

void icpnsd_state_reload(icpnsd_state_t *st, const char *origin)
{
    icpnsd_job_t *j = icpnsd_job_new(ICPNSD_JOB_RELOAD, origin);
    if (j)
        icpnsd_state_submit(st, j);
}

/* A hash of what the table files look like now: sizes, modification
 * times and whether each ends with a newline (a file being written mostly
 * does not).  Equal stamps a debounce apart: the writer is done. */
static uint64_t files_stamp(icpnsd_state_t *st, bool *complete)
{
    const icpns_table_opts_t *o = &st->opts;
    const char *files[] = {o->interactions, o->communities, o->popularity, o->items};
    uint64_t h = 0;
    *complete = true;
    for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
        if (!files[k][0])
            continue;
        char path[1400];
        snprintf(path, sizeof(path), "%s/%s", st->tables, files[k]);
        struct stat sb;
        uint64_t v[4] = {k, 0, 0, 0};
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            v[1] = (uint64_t)sb.st_size;
            v[2] = (uint64_t)sb.st_mtim.tv_sec * 1000000000u + (uint64_t)sb.st_mtim.tv_nsec;
            int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
            char last = '\n';
            if (fd >= 0) {
                if (sb.st_size > 0 && pread(fd, &last, 1, sb.st_size - 1) != 1)
                    last = 0;
                close(fd);
            }
            v[3] = (uint64_t)(unsigned char)last;
            *complete &= last == '\n';
        }
        h = icpns_hash64(v, sizeof(v), h);
    }
    return h;
}

/* The watch's debounce: reload once the files have stopped changing (the
 * same stamp for watch_settle_ms, last lines complete), so a file
 * rewritten in place, chunk by chunk, is not published half-written
 * unless its writer pauses longer than that.  Writers that replace files
 * with rename(2) are never seen half-written (docs/operations.md). */
static void on_debounce(uv_timer_t *t)
{
    icpnsd_watch_t *w = t->data;
    bool complete;
    uint64_t stamp = files_stamp(w->st, &complete);
    double now = icpns_now();
    bool settled = stamp == w->stamp && complete;
    if (!settled && now - w->unstable_since < WATCH_GIVE_UP) {
        if (!w->unstable_since)
            w->unstable_since = now;
        w->stamp = stamp;
        uv_timer_start(&w->debounce, on_debounce, w->settle_ms, 0);
        return;
    }
    if (!settled)
        log_warn("tables=%s: the table files have been changing for %.0fs (or end without a "
                 "newline); reloading now (a half-written file is refused and the old version "
                 "keeps serving)", w->name, now - w->unstable_since);
    w->unstable_since = 0;
    icpnsd_state_reload(w->st, "watch");
}

static void on_fs_event(uv_fs_event_t *h, const char *file, int events, int status)
{
    icpnsd_watch_t *w = h->data;
    (void)events;
    if (status < 0 || !file)
        return;
    /* Our own writes (temporaries, the journal, the version record,
     * communities.tsv rewritten by an update in the last second) do not
     * trigger reloads. */
    size_t fl = strlen(file);
    if (strstr(file, ".tmp.") || !strcmp(file, ICPNS_JOURNAL) ||
        !strcmp(file, ICPNS_VERSION_FILE) || (fl > 5 && !strcmp(file + fl - 5, ".prev")))
        return;
    uint64_t wrote = atomic_load(&w->st->self_write_ms);
    if (wrote && !strcmp(file, w->st->opts.communities) && icpns_now() * 1000 < (double)wrote + 1000)
        return;
    /* Sample the files now; the debounce compares them again later. */
    bool complete;
    w->stamp = files_stamp(w->st, &complete);
    uv_timer_start(&w->debounce, on_debounce, w->settle_ms, 0);
}

void icpnsd_watch_start(icpnsd_watch_t *w, uv_loop_t *loop, icpnsd_state_t *st, const char *name,
                        unsigned settle_ms)
{
    if (!st->tables[0] || w->watching)
        return;
    w->st = st;
    w->name = name;
    w->settle_ms = settle_ms;
    uv_timer_init(loop, &w->debounce);
    w->debounce.data = w;
    uv_fs_event_init(loop, &w->fs);
    w->fs.data = w;
    w->watching = true;
    if (uv_fs_event_start(&w->fs, on_fs_event, st->tables, 0) == 0)
        log_info("tables=%s: watching %s for changes", name, st->tables);
    else
        log_warn("tables=%s: cannot watch %s; reload with SIGHUP or POST /admin/reload", name,
                 st->tables);
}

static void close_handle(uv_handle_t *h)
{
    (void)h;
}

void icpnsd_watch_stop(icpnsd_watch_t *w)
{
    if (!w->watching)
        return;
    uv_close((uv_handle_t *)&w->fs, close_handle);
    uv_close((uv_handle_t *)&w->debounce, close_handle);
    w->watching = false;
}
