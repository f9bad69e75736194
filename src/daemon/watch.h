/*
 * watch.h - reloading a table set when its files change (the `watch`
 * setting): an inotify watch on the set's directory, then a debounce that
 * waits until the files have stopped changing before it submits a reload.
 * Loop thread only.
 */
#ifndef ICPNSD_WATCH_H
#define ICPNSD_WATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "state.h"

typedef struct icpnsd_watch {
    bool watching;
    icpnsd_state_t *st;     /* the set's state: its directory, file names, reloads */
    const char *name;       /* the set's, for the log */
    unsigned settle_ms;     /* the files must stay unchanged this long */
    uv_fs_event_t fs;
    uv_timer_t debounce;
    uint64_t stamp;         /* sizes, times and last bytes of the table files */
    double unstable_since;  /* the files have been changing since (0: settled) */
} icpnsd_watch_t;

/*
 * Watches the directory of @st (nothing for the built-in dataset or when
 * @w watches already).  @w must stay where it is until icpnsd_watch_stop
 * and the loop closed its handles.  Failing to watch is logged: reloads
 * then need SIGHUP or POST /admin/reload.
 */
void icpnsd_watch_start(icpnsd_watch_t *w, uv_loop_t *loop, icpnsd_state_t *st, const char *name,
                        unsigned settle_ms);

/* Stops watching (closes the handles); nothing when not watching. */
void icpnsd_watch_stop(icpnsd_watch_t *w);

/* Submits a reload of @st from @origin ("SIGHUP", "watch", ...). */
void icpnsd_state_reload(icpnsd_state_t *st, const char *origin);

#endif
