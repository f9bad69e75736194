/*
 * icpns/dataset.h - the raw content of a table directory, before indexing,
 * and the loaders for its files.
 *
 * A table directory holds
 *   interactions.tsv   user/item pairs (pairs, recbole, adjacency or lists)
 *   communities.tsv    user<TAB>community
 *   popularity.tsv     community<TAB>item<TAB>count, only with
 *                      "popularity_source": "file"
 *   items.tsv          optional catalogue: one item id per line
 *   tables.json        optional {"alpha", "epsilon", "beta", "format",
 *                      "min_rating", "extra_columns", "popularity_source",
 *                      "interactions", "communities", "popularity", "items"}
 * proto/tables.md documents every format and what is refused.  A loader
 * either loads a whole file or nothing: on error the dataset is unchanged.
 * Every loader first checks the bytes: a UTF-8 byte order mark at the very
 * start is skipped; NUL and other control bytes (but tab, and CR before LF),
 * a byte order mark elsewhere, and a last line without its newline are
 * errors.  Every message that quotes the file shows invisible bytes
 * escaped (icpns_escape).
 */
#ifndef ICPNS_DATASET_H
#define ICPNS_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "icpns/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum icpns_format {
    ICPNS_FORMAT_AUTO = 0,  /* detected from the whole file (proto/tables.md) */
    ICPNS_FORMAT_PAIRS,     /* user item [rating [timestamp]]: 2 to 4 columns */
    ICPNS_FORMAT_RECBOLE,   /* header user_id:token item_id:token [rating:float] ... */
    ICPNS_FORMAT_ADJACENCY, /* user item item ...: one line per user (LightGCN train.txt) */
    ICPNS_FORMAT_LISTS      /* user:item item ...: one line per user (sequences) */
} icpns_format_t;

/* Parses "auto", "pairs" (or "tsv", "csv"), "recbole" ("inter"),
 * "adjacency" ("lightgcn"), "lists" ("sequences"); -1 if unknown. */
ICPNS_EXPORT int icpns_format_parse(const char *s);
ICPNS_EXPORT const char *icpns_format_name(icpns_format_t f);

/* Where pop_c(i) comes from. */
typedef enum icpns_pop_source {
    ICPNS_POP_FROM_INTERACTIONS = 0, /* counted from the interactions (+ journal) */
    ICPNS_POP_FROM_FILE = 1          /* read from the popularity file (required) */
} icpns_pop_source_t;

/* Parses "interactions" / "file"; -1 if unknown. */
ICPNS_EXPORT int icpns_pop_source_parse(const char *s);
ICPNS_EXPORT const char *icpns_pop_source_name(icpns_pop_source_t p);

typedef struct icpns_table_opts {
    icpns_params_t params;
    icpns_format_t format;
    char format_origin[32];  /* who named the format, for reports: "in tables.json",
                              * "by --format"; "" for nobody */
    bool has_min_rating;
    double min_rating;       /* keep rows whose rating >= this (pairs, recbole) */
    bool extra_columns_ignore; /* pairs: ignore columns after the 4th instead of refusing */
    icpns_pop_source_t pop_source;
    char interactions[256];  /* file names inside the directory */
    char communities[256];
    char popularity[256];
    char items[256];
    bool items_required;     /* tables.json named the items file: it must exist */
} icpns_table_opts_t;

/* Defaults: params default, auto format, no rating filter, pop_c from the
 * interactions, standard names. */
ICPNS_EXPORT void icpns_table_opts_default(icpns_table_opts_t *o);

/*
 * Reads DIR/tables.json into @o when it exists (keys absent keep their
 * value).  Returns 0, or ICPNS_EPARSE / ICPNS_EINVAL naming the key.
 */
ICPNS_EXPORT int icpns_table_opts_load(icpns_table_opts_t *o, const char *dir,
                                       icpns_error_t *err);

typedef struct icpns_pair {
    int64_t a, b;
} icpns_pair_t;

typedef struct icpns_triple {
    int64_t community, item;
    uint64_t count;
    uint64_t line; /* source line, for errors found when indexing */
} icpns_triple_t;

/* Which file a load report is about. */
typedef enum icpns_table_kind {
    ICPNS_TABLE_INTERACTIONS = 0,
    ICPNS_TABLE_JOURNAL,
    ICPNS_TABLE_COMMUNITIES,
    ICPNS_TABLE_POPULARITY,
    ICPNS_TABLE_ITEMS
} icpns_table_kind_t;

/* by_count[k]: data lines with k fields (k items for adjacency and lists);
 * the last entry counts every line with ICPNS_REPORT_COUNTS - 1 or more. */
#define ICPNS_REPORT_COUNTS 9

/*
 * What a loader made of one file, so that nothing is silently wrong: the
 * format and why, what was skipped, what was produced.  Plain fixed-size
 * fields (no pointers), so that ctypes can mirror it; icpns_load_report_size
 * gives its size to check the mirror.
 */
typedef struct icpns_load_report {
    uint64_t lines;          /* lines in the file */
    uint64_t data_lines;     /* lines that carried rows */
    uint64_t skipped_lines;  /* comment ('#') and blank lines */
    uint64_t header_line;    /* line of the skipped header, 0 if none */
    uint64_t rows;           /* pairs, assignments, counts or items produced */
    uint64_t dropped_rating; /* rows dropped by min_rating */
    uint64_t by_count[ICPNS_REPORT_COUNTS];
    uint64_t count_min, count_max; /* fewest and most fields (items) per data line */
    int32_t kind;            /* icpns_table_kind_t */
    int32_t format;          /* icpns_format_t (interactions and journal) */
    uint8_t detected;        /* the format was detected (auto) */
    uint8_t bom;             /* a UTF-8 byte order mark was skipped */
    uint8_t crlf;            /* lines end with CR LF */
    uint8_t counts_items;    /* by_count counts items, not fields */
    char separator[12];      /* "tab", "comma", "semicolon", "'::'", "whitespace" */
    char reason[100];        /* "detected: ..." or "given in tables.json" */
    char header[100];        /* the skipped header line, escaped */
    char path[512];
} icpns_load_report_t;

/* sizeof(icpns_load_report_t), for bindings that mirror the struct. */
ICPNS_EXPORT size_t icpns_load_report_size(void);

/*
 * Formats @r on one line into @buf (always NUL-terminated), e.g.
 * "train.txt: adjacency (detected: variable number of fields per line, one
 * line per user): 300 lines -> 6,726 pairs; 1 to 212 items per line".
 */
ICPNS_EXPORT void icpns_load_report_format(const icpns_load_report_t *r, char *buf, size_t size);

#define ICPNS_MAX_REPORTS 8

/* Growable arrays of the tables, in external ids, as read. */
typedef struct icpns_dataset {
    icpns_pair_t *inter;   /* (user, item); duplicates allowed */
    size_t n_inter, cap_inter;
    icpns_pair_t *comm;    /* (user, community) */
    size_t n_comm, cap_comm;
    icpns_triple_t *pop;   /* the popularity file's counts (has_pop) */
    size_t n_pop, cap_pop;
    bool has_pop;          /* pop_c comes from @pop (popularity_source file) */
    char pop_path[512];    /* where the popularity table came from */
    int64_t *items;        /* the catalogue file's items (has_items) */
    size_t n_items, cap_items;
    bool has_items;
    uint64_t skipped_rating; /* rows dropped by the rating filter */
    /* One report per file parsed, in load order (the first
     * ICPNS_MAX_REPORTS files). */
    icpns_load_report_t reports[ICPNS_MAX_REPORTS];
    uint32_t n_reports;
} icpns_dataset_t;

ICPNS_EXPORT icpns_dataset_t *icpns_dataset_new(void);
/* Frees @d; accepts NULL; returns NULL. */
ICPNS_EXPORT icpns_dataset_t *icpns_dataset_free(icpns_dataset_t *d);

/* Appends one pair / assignment / catalogue item.  0 or ICPNS_ENOMEM. */
ICPNS_EXPORT int icpns_dataset_add_interaction(icpns_dataset_t *d, int64_t user, int64_t item);
ICPNS_EXPORT int icpns_dataset_add_community(icpns_dataset_t *d, int64_t user, int64_t community);
ICPNS_EXPORT int icpns_dataset_add_item(icpns_dataset_t *d, int64_t item);

/*
 * Appends in-memory tables to @d, all or nothing: @n_inter interactions
 * (user, item), @n_comm community assignments (user, community) and,
 * when @items is not NULL, @n_items catalogue items (the dataset then has
 * a catalogue, as with an items file).  The snapshot built from the result
 * is the one a table directory with the same rows in its files gives (the
 * same fingerprint).  Refuses, with ICPNS_EINVAL naming the field
 * ("interactions", "communities", "items") and the 1-based row in
 * err->line, a negative id and a user assigned to two different
 * communities (here or already in @d); ICPNS_ENOMEM.  @d is unchanged on
 * failure.
 */
ICPNS_EXPORT int icpns_dataset_add_arrays(icpns_dataset_t *d, const icpns_pair_t *inter,
                                          size_t n_inter, const icpns_pair_t *comm,
                                          size_t n_comm, const int64_t *items, size_t n_items,
                                          icpns_error_t *err);

/*
 * The community assignments after an update, as icpnsd's PUT
 * /admin/communities makes them: each user of @upd (its last entry wins)
 * gets its new community; with @replace the other users lose theirs,
 * otherwise they keep their entries of @old.  *@ret (owned by the
 * caller, never NULL on success) gets @old's kept entries in order, then
 * @upd's users ascending.  Returns 0 or ICPNS_ENOMEM (outputs untouched).
 */
ICPNS_EXPORT int icpns_communities_merge(const icpns_pair_t *old, size_t n_old,
                                         const icpns_pair_t *upd, size_t n_upd, bool replace,
                                         icpns_pair_t **ret, size_t *ret_n);

/*
 * Applies a community update to @d in memory (icpns_communities_merge
 * over d's assignments), so that a snapshot rebuilt from @d is the one
 * icpnsd serves after the same PUT /admin/communities.  Refuses with
 * ICPNS_EINVAL: negative ids (field "communities", 1-based row in
 * err->line), and a dataset whose popularity comes from a file (field
 * "popularity_source": its counts would not follow the communities, as
 * icpnsd refuses); ICPNS_ENOMEM.  @d is unchanged on failure.
 */
ICPNS_EXPORT int icpns_dataset_set_communities(icpns_dataset_t *d, const icpns_pair_t *pairs,
                                               size_t n, bool replace, icpns_error_t *err);

/*
 * Parses interactions from @buf (@len bytes, need not be NUL-terminated)
 * in @o's format (auto: detected), with @o's min_rating and extra_columns,
 * and appends them and a report to @d.  @path names the source in errors.
 * Errors: ICPNS_EPARSE naming line and field (also for an ambiguous file in
 * auto, listing the formats it could be), ICPNS_ENOMEM.
 */
ICPNS_EXPORT int icpns_parse_interactions(icpns_dataset_t *d, const char *buf, size_t len,
                                          const icpns_table_opts_t *o, const char *path,
                                          icpns_error_t *err);
/* Parses icpnsd's journal (user<TAB>item lines); an unterminated last line
 * is an interrupted append and is skipped, not an error. */
ICPNS_EXPORT int icpns_parse_journal(icpns_dataset_t *d, const char *buf, size_t len,
                                     const char *path, icpns_error_t *err);
/* Parses user<TAB>community lines (exactly 2 columns); a user listed twice
 * with two different communities is an error. */
ICPNS_EXPORT int icpns_parse_communities(icpns_dataset_t *d, const char *buf, size_t len,
                                         const char *path, icpns_error_t *err);
/* Parses community<TAB>item<TAB>count lines (exactly 3 columns) and marks
 * @d's popularity as read from a file (has_pop). */
ICPNS_EXPORT int icpns_parse_popularity(icpns_dataset_t *d, const char *buf, size_t len,
                                        const char *path, icpns_error_t *err);
/* Parses a catalogue: one item id per line (exactly 1 column). */
ICPNS_EXPORT int icpns_parse_items(icpns_dataset_t *d, const char *buf, size_t len,
                                   const char *path, icpns_error_t *err);

/* The append journal of icpnsd's updates in a table directory. */
#define ICPNS_JOURNAL "interactions.journal"

/* The files one dataset is loaded from; "" means none. */
typedef struct icpns_table_paths {
    char interactions[1024];
    char communities[1024];
    char popularity[1024]; /* set: pop_c is read from it (popularity_source file) */
    char items[1024];      /* the catalogue file, if any */
    char journal[1024];    /* icpnsd's journal, if any */
} icpns_table_paths_t;

/*
 * The files of table directory @dir under @o (its names and
 * popularity_source; tables.json is not read here).  Refuses, with
 * ICPNS_EINVAL naming the file, a popularity file that exists while
 * popularity_source is "interactions" (its counts would be ignored), a
 * missing popularity file in "file" mode, and a missing items file that
 * tables.json named.  The journal and the default items.tsv are taken when
 * they exist.
 */
ICPNS_EXPORT int icpns_table_paths_resolve(const char *dir, const icpns_table_opts_t *o,
                                           icpns_table_paths_t *ret, icpns_error_t *err);

/*
 * Loads the files of @p (interactions, communities, then the popularity
 * and items files and the journal when named) with @o's format options.
 * On success *@ret owns a new dataset; on failure nothing is returned.
 */
ICPNS_EXPORT int icpns_dataset_load_paths(const icpns_table_paths_t *p, const icpns_table_opts_t *o,
                                          icpns_dataset_t **ret, icpns_error_t *err);

/*
 * Loads a whole table directory: tables.json (into @opts, which should hold
 * defaults first), icpns_table_paths_resolve, icpns_dataset_load_paths; so
 * that the tools see what the daemon serves, the journal is included.
 */
ICPNS_EXPORT int icpns_dataset_load_dir(const char *dir, icpns_table_opts_t *opts,
                                        icpns_dataset_t **ret, icpns_error_t *err);

/*
 * Loads table directory @dir as icpnsd loads a table set (at start and on
 * reload): icpns_table_opts_default, then icpns_dataset_load_dir (tables.json,
 * the files it names, the journal, whose unterminated last line is skipped
 * as icpnsd cuts it).  *@params: in, the setting where tables.json names
 * none (icpnsd's default_alpha, default_epsilon, default_beta); out, the
 * set's effective setting (tables.json wins).  Nothing is written in @dir.
 * On success *@ret owns a new dataset; errors as icpns_dataset_load_dir,
 * *@params and *@ret untouched.
 */
ICPNS_EXPORT int icpns_tables_load(const char *dir, icpns_params_t *params,
                                   icpns_dataset_t **ret, icpns_error_t *err);

/*
 * Appends the pairs of DIR/ICPNS_JOURNAL (if the file exists) to @d; an
 * unterminated last line is ignored.  A bad row is ICPNS_EPARSE naming the
 * journal's line; @d is then unchanged.
 */
ICPNS_EXPORT int icpns_dataset_load_journal(icpns_dataset_t *d, const char *dir,
                                            icpns_error_t *err);

/* icpns_interactions_read flag: ignore pairs columns after the 4th. */
#define ICPNS_READ_EXTRA_COLUMNS_IGNORE 1u

/*
 * Reads one interactions file into two new arrays of @*ret_n external ids
 * (users[k], items[k]: the k-th pair in file order, duplicates kept), with
 * the same parser as the daemon: for bindings (Python ctypes) that want the
 * loader without a table directory.
 *
 * @format: NULL or "auto", or a name icpns_format_parse knows.
 * @min_rating: keep rows rated >= it; NAN for no filter.
 * @flags: ICPNS_READ_* bits.
 * @report: may be NULL; filled on success.
 * @err: may be NULL.
 *
 * Returns 0 with *@ret_users and *@ret_items (never NULL, even when
 * *@ret_n is 0; free both with icpns_interactions_free), or ICPNS_EINVAL
 * (unknown format), ICPNS_EIO, ICPNS_ELIMIT, ICPNS_EPARSE, ICPNS_ENOMEM;
 * the ret_* are then untouched.
 */
ICPNS_EXPORT int icpns_interactions_read(const char *path, const char *format, double min_rating,
                                         unsigned flags, int64_t **ret_users, int64_t **ret_items,
                                         size_t *ret_n, icpns_load_report_t *report,
                                         icpns_error_t *err);

/* Frees the arrays of icpns_interactions_read; accepts NULLs. */
ICPNS_EXPORT void icpns_interactions_free(int64_t *users, int64_t *items);

/*
 * The shard of user @user among @shards (>= 1): SplitMix64's finaliser of
 * the id as an unsigned 64-bit integer, mod @shards; the same function as
 * the Python client's shard_of.
 */
ICPNS_EXPORT uint32_t icpns_shard_of(int64_t user, uint32_t shards);

/*
 * Opens @path for reading without blocking (a FIFO would wait for a writer
 * forever) and checks that it is a regular file: 0 with *@ret_fd (blocking
 * again) and, if @ret_st is not NULL, its stat; ICPNS_EIO naming what it
 * is otherwise ("a FIFO, not a regular file").
 */
struct stat;
ICPNS_EXPORT int icpns_file_open_regular(const char *path, int *ret_fd, struct stat *ret_st,
                                         icpns_error_t *err);

/*
 * Reads a whole file into a new NUL-terminated buffer (*ret, *ret_len);
 * only regular files (icpns_file_open_regular).
 * Refuses files above @max_bytes (ICPNS_ELIMIT).
 */
ICPNS_EXPORT int icpns_file_read(const char *path, size_t max_bytes, char **ret,
                                 size_t *ret_len, icpns_error_t *err);

/*
 * Writes @len bytes to @path durably and atomically: a temporary file in the
 * same directory, fsync, rename over @path, fsync of the directory.  A crash
 * leaves either the old or the new content.
 */
ICPNS_EXPORT int icpns_file_write_atomic(const char *path, const void *data, size_t len,
                                         icpns_error_t *err);

/*
 * Appends @len bytes to @path and fsyncs it (creating it with mode 0644).
 * Used for append journals.
 */
ICPNS_EXPORT int icpns_file_append_sync(const char *path, const void *data, size_t len,
                                        icpns_error_t *err);

/*
 * icpnsd's record of the last version it published from a table directory:
 * DIR/ICPNS_VERSION_FILE holds one line "VERSION FINGERPRINT" (decimal, 16
 * hex digits).  read returns 0 with both values, 1 when there is no record,
 * ICPNS_EPARSE (damaged) or ICPNS_EIO; write replaces it atomically.
 */
#define ICPNS_VERSION_FILE "icpnsd.version"
ICPNS_EXPORT int icpns_version_record_read(const char *dir, uint64_t *version,
                                           uint64_t *fingerprint, icpns_error_t *err);
ICPNS_EXPORT int icpns_version_record_write(const char *dir, uint64_t version, uint64_t fingerprint,
                                            icpns_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
