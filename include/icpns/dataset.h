/*
 * icpns/dataset.h - the raw content of a table directory, before indexing,
 * and the loaders for its files.
 *
 * A table directory holds
 *   interactions.tsv   user/item pairs (pairs, RecBole .inter or adjacency)
 *   communities.tsv    user<TAB>community
 *   popularity.tsv     optional community<TAB>item<TAB>count
 *   tables.json        optional {"alpha", "epsilon", "beta", "format",
 *                      "min_rating", "interactions", "communities",
 *                      "popularity"}
 * proto/tables.md documents every format.  A loader either loads a whole
 * file or nothing: on error the dataset is unchanged.
 */
#ifndef ICPNS_DATASET_H
#define ICPNS_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "icpns/common.h"

typedef enum icpns_format {
    ICPNS_FORMAT_AUTO = 0, /* RecBole if the first line has a ':type' header, else pairs */
    ICPNS_FORMAT_PAIRS,    /* user item [rating [anything...]] */
    ICPNS_FORMAT_RECBOLE,  /* header user_id:token item_id:token [rating:float] ... */
    ICPNS_FORMAT_ADJACENCY /* user item item ... */
} icpns_format_t;

/* Parses "auto", "pairs", "recbole", "adjacency"; -1 if unknown. */
int icpns_format_parse(const char *s);
const char *icpns_format_name(icpns_format_t f);

typedef struct icpns_table_opts {
    icpns_params_t params;
    icpns_format_t format;
    bool has_min_rating;
    double min_rating;     /* keep rows whose rating >= this (rated formats) */
    char interactions[256];/* file names inside the directory */
    char communities[256];
    char popularity[256];
} icpns_table_opts_t;

/* Defaults: params default, auto format, no rating filter, standard names. */
void icpns_table_opts_default(icpns_table_opts_t *o);

/*
 * Reads DIR/tables.json into @o when it exists (keys absent keep their
 * value).  Returns 0, or ICPNS_EPARSE / ICPNS_EINVAL naming the key.
 */
int icpns_table_opts_load(icpns_table_opts_t *o, const char *dir,
                          icpns_error_t *err);

typedef struct icpns_pair {
    int64_t a, b;
} icpns_pair_t;

typedef struct icpns_triple {
    int64_t community, item;
    uint64_t count;
    uint64_t line; /* source line, for errors found when indexing */
} icpns_triple_t;

/* Growable arrays of the three tables, in external ids, as read. */
typedef struct icpns_dataset {
    icpns_pair_t *inter;   /* (user, item); duplicates allowed */
    size_t n_inter, cap_inter;
    icpns_pair_t *comm;    /* (user, community) */
    size_t n_comm, cap_comm;
    icpns_triple_t *pop;   /* optional popularity table */
    size_t n_pop, cap_pop;
    bool has_pop;
    char pop_path[512];    /* where the popularity table came from */
    uint64_t skipped_rating; /* rows dropped by the rating filter */
} icpns_dataset_t;

icpns_dataset_t *icpns_dataset_new(void);
/* Frees @d; accepts NULL; returns NULL. */
icpns_dataset_t *icpns_dataset_free(icpns_dataset_t *d);

/* Appends one pair / assignment.  0 or ICPNS_ENOMEM. */
int icpns_dataset_add_interaction(icpns_dataset_t *d, int64_t user, int64_t item);
int icpns_dataset_add_community(icpns_dataset_t *d, int64_t user, int64_t community);

/*
 * Parses interactions from @buf (@len bytes, need not be NUL-terminated)
 * in @format and appends them.  @path names the source in errors.
 */
int icpns_parse_interactions(icpns_dataset_t *d, const char *buf, size_t len,
                             icpns_format_t format, bool has_min_rating,
                             double min_rating, const char *path,
                             icpns_error_t *err);
/* Parses user<TAB>community lines; a user listed twice with two
 * different communities is an error. */
int icpns_parse_communities(icpns_dataset_t *d, const char *buf, size_t len,
                            const char *path, icpns_error_t *err);
/* Parses community<TAB>item<TAB>count lines. */
int icpns_parse_popularity(icpns_dataset_t *d, const char *buf, size_t len,
                           const char *path, icpns_error_t *err);

/* The append journal of icpnsd's updates in a table directory. */
#define ICPNS_JOURNAL "interactions.journal"

/*
 * Loads a whole table directory: tables.json (into @opts, which should hold
 * defaults or command-line values first), then the files, then the
 * journal of updates (ICPNS_JOURNAL, user<TAB>item pairs; an unterminated
 * last line is ignored), so that the tools see what the daemon serves.  On
 * success *@ret owns a new dataset.  On failure nothing is returned.
 */
int icpns_dataset_load_dir(const char *dir, icpns_table_opts_t *opts,
                           icpns_dataset_t **ret, icpns_error_t *err);

/*
 * Appends the pairs of DIR/ICPNS_JOURNAL (if the file exists) to @d; an
 * unterminated last line is ignored.  A bad row is ICPNS_EPARSE naming the
 * journal's line; @d then holds the rows before it.
 */
int icpns_dataset_load_journal(icpns_dataset_t *d, const char *dir, icpns_error_t *err);

/* Loads named files (popularity may be NULL); the format/rating options
 * of @opts apply. */
int icpns_dataset_load_files(const char *interactions, const char *communities,
                             const char *popularity,
                             const icpns_table_opts_t *opts,
                             icpns_dataset_t **ret, icpns_error_t *err);

/*
 * Reads a whole file into a new NUL-terminated buffer (*ret, *ret_len).
 * Refuses files above @max_bytes (ICPNS_ELIMIT).
 */
int icpns_file_read(const char *path, size_t max_bytes, char **ret,
                    size_t *ret_len, icpns_error_t *err);

/*
 * Writes @len bytes to @path durably and atomically: a temporary file in the
 * same directory, fsync, rename over @path, fsync of the directory.  A crash
 * leaves either the old or the new content.
 */
int icpns_file_write_atomic(const char *path, const void *data, size_t len,
                            icpns_error_t *err);

/*
 * Appends @len bytes to @path and fsyncs it (creating it with mode 0644).
 * Used for append journals.
 */
int icpns_file_append_sync(const char *path, const void *data, size_t len,
                           icpns_error_t *err);

/*
 * icpnsd's record of the last version it published from a table directory:
 * DIR/ICPNS_VERSION_FILE holds one line "VERSION FINGERPRINT" (decimal, 16
 * hex digits).  read returns 0 with both values, 1 when there is no record,
 * ICPNS_EPARSE (damaged) or ICPNS_EIO; write replaces it atomically.
 */
#define ICPNS_VERSION_FILE "icpnsd.version"
int icpns_version_record_read(const char *dir, uint64_t *version, uint64_t *fingerprint,
                              icpns_error_t *err);
int icpns_version_record_write(const char *dir, uint64_t version, uint64_t fingerprint,
                               icpns_error_t *err);

#endif
