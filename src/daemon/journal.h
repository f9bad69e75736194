/*
 * journal.h - the files icpnsd writes into a table directory, durably.
 *
 * POST /admin/interactions appends its pairs to TABLES/interactions.journal
 * and fsyncs before the new version is built and before the answer; a
 * communities update writes the whole merged communities file to a
 * temporary file, fsyncs and renames it.  Loading a directory reads the
 * journal after the interactions file; a journal tail without its newline
 * (a crash during an append, never acknowledged) is cut off first.
 * TABLES/icpnsd.version records the last published version and its
 * fingerprint, so versions go on across restarts.
 */
#ifndef ICPNSD_JOURNAL_H
#define ICPNSD_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "icpns.h"

/* Cuts an unterminated journal tail off DIR's journal (logged).  0 or
 * ICPNS_EIO with @err. */
int icpnsd_journal_cut_tail(const char *dir, icpns_error_t *err);

/* Appends @n (user, item) pairs to DIR's journal and fsyncs.  0, ICPNS_EIO
 * or ICPNS_ENOMEM with @err. */
int icpnsd_journal_append(const char *dir, const icpns_pair_t *pairs, size_t n,
                          icpns_error_t *err);

/* Writes the (user, community) pairs as DIR/FILE, atomically and durably;
 * the file it replaces is kept as DIR/FILE.prev. */
int icpnsd_communities_write(const char *dir, const char *file, const icpns_pair_t *comm,
                             size_t n, icpns_error_t *err);

/* The version record of DIR: 0 with both values, 1 when there is none, -1
 * when it is damaged or unreadable (logged: versions start again at 1). */
int icpnsd_version_load(const char *dir, uint64_t *version, uint64_t *fingerprint);

/* Records @version and @fingerprint for DIR; a failure is logged, not
 * returned (it costs only the numbering across a restart).  @name is the
 * set's, for the log. */
void icpnsd_version_save(const char *dir, const char *name, uint64_t version,
                         uint64_t fingerprint);

/* Removes what an interrupted write left: DIR/FILE.tmp.XXXXXX (mkstemp)
 * and DIR/FILE.tmp.PID.  Called with FILE.prev too: icpnsd_communities_write
 * keeps the replaced assignment through a link FILE.prev.tmp.PID. */
void icpnsd_remove_stale_temporaries(const char *dir, const char *file);

#endif
