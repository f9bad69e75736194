/*
 * uploads.h - table sets uploaded over HTTP (POST /admin/sets with the
 * data), on disk: each in STATE/sets/NAME@GENERATION, written through
 * STATE/sets.tmp and a rename, found again at start.
 */
#ifndef ICPNSD_UPLOADS_H
#define ICPNSD_UPLOADS_H

#include <stddef.h>
#include <stdint.h>

#include "icpns.h"
#include "upload.h"

/*
 * Writes an uploaded table set as directory @dir (interactions.tsv,
 * communities.tsv, items.tsv when there are items, tables.json with its
 * format and parameters): the files go into directory @tmp (on the same
 * file system; replaced if there), are fsynced, and @tmp is renamed to
 * @dir, so @dir is either absent or whole.  0, or an ICPNS_E* code with
 * @err.
 */
int icpnsd_tableset_store(const char *dir, const char *tmp, const icpnsd_tableset_t *t,
                          icpns_error_t *err);

/* Removes the directory of an uploaded table set and the files in it
 * (one level: what icpnsd writes there).  Logged when it cannot. */
void icpnsd_tableset_remove(const char *dir);

/* Called for each uploaded set found: 0, or -1 with @err to stop. */
typedef int (*icpnsd_upload_fn)(void *ctx, const char *name, const char *dir, char *err,
                                size_t es);

/*
 * The sets uploaded before a restart, in name order: STATE must be a
 * directory; STATE/sets and STATE/sets.tmp are created, what an interrupted
 * upload left in STATE/sets.tmp is removed, and of two generations of one
 * name (a crash between an upload and the removal of its predecessor) the
 * older is removed.  @fn gets each set to load; *@ret_gen the highest
 * generation seen.  0, or -1 with @err.
 */
int icpnsd_uploads_scan(const char *state, icpnsd_upload_fn fn, void *ctx, uint64_t *ret_gen,
                        char *err, size_t es);

#endif
