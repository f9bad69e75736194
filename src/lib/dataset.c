/*
 * dataset.c - the raw tables and their parsers.
 *
 * Parsers work on an in-memory buffer, line by line, and append to the
 * dataset only after the whole buffer parsed: a bad line leaves the dataset
 * as it was ("load nothing half-way").  Each parser first checks the bytes
 * (text_check), then reads the lines, and records what it did in a load
 * report, so that nothing is taken in silently wrong: a file in another
 * format than assumed, a cut last line, invisible bytes, extra columns.
 */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "icpns/dataset.h"

/* ---- growable arrays ---------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem)
            return ICPNS_ENOMEM;
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q)
        return ICPNS_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

icpns_dataset_t *icpns_dataset_new(void)
{
    return calloc(1, sizeof(icpns_dataset_t));
}

icpns_dataset_t *icpns_dataset_free(icpns_dataset_t *d)
{
    if (d) {
        free(d->inter);
        free(d->comm);
        free(d->pop);
        free(d->items);
        free(d);
    }
    return NULL;
}

int icpns_dataset_add_interaction(icpns_dataset_t *d, int64_t user, int64_t item)
{
    if (grow((void **)&d->inter, &d->cap_inter, d->n_inter + 1, sizeof(*d->inter)))
        return ICPNS_ENOMEM;
    d->inter[d->n_inter++] = (icpns_pair_t){user, item};
    return 0;
}

int icpns_dataset_add_community(icpns_dataset_t *d, int64_t user, int64_t community)
{
    if (grow((void **)&d->comm, &d->cap_comm, d->n_comm + 1, sizeof(*d->comm)))
        return ICPNS_ENOMEM;
    d->comm[d->n_comm++] = (icpns_pair_t){user, community};
    return 0;
}

int icpns_dataset_add_item(icpns_dataset_t *d, int64_t item)
{
    if (grow((void **)&d->items, &d->cap_items, d->n_items + 1, sizeof(*d->items)))
        return ICPNS_ENOMEM;
    d->items[d->n_items++] = item;
    d->has_items = true;
    return 0;
}

/* An assignment and where it came from, for finding conflicts. */
typedef struct comm_row {
    int64_t user, comm;
    size_t row; /* position: the dataset's entries first, then the new ones */
} comm_row_t;

static int cmp_comm_row(const void *a, const void *b)
{
    const comm_row_t *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* The first entry of @pairs (0-based) with a negative id, or SIZE_MAX. */
static size_t first_negative(const icpns_pair_t *pairs, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (pairs[k].a < 0 || pairs[k].b < 0)
            return k;
    return SIZE_MAX;
}

int icpns_dataset_add_arrays(icpns_dataset_t *d, const icpns_pair_t *inter, size_t n_inter,
                             const icpns_pair_t *comm, size_t n_comm, const int64_t *items,
                             size_t n_items, icpns_error_t *err)
{
    size_t bad;
    if ((n_inter && !inter) || (n_comm && !comm) || (n_items && !items))
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, NULL, "NULL array");
    if ((bad = first_negative(inter, n_inter)) != SIZE_MAX)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, bad + 1, "interactions",
                               "row %zu: (%lld, %lld): ids are non-negative integers", bad,
                               (long long)inter[bad].a, (long long)inter[bad].b);
    if ((bad = first_negative(comm, n_comm)) != SIZE_MAX)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, bad + 1, "communities",
                               "row %zu: (%lld, %lld): ids are non-negative integers", bad,
                               (long long)comm[bad].a, (long long)comm[bad].b);
    for (size_t k = 0; k < n_items; k++)
        if (items[k] < 0)
            return icpns_error_set(err, ICPNS_EINVAL, NULL, k + 1, "items",
                                   "row %zu: %lld: ids are non-negative integers", k,
                                   (long long)items[k]);
    if (n_comm) {
        /* One community per user, as in communities.tsv: the same pair may
         * come twice, two communities for one user may not. */
        size_t n = d->n_comm + n_comm;
        comm_row_t *v = malloc(n * sizeof(*v));
        if (!v)
            return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
        for (size_t k = 0; k < d->n_comm; k++)
            v[k] = (comm_row_t){d->comm[k].a, d->comm[k].b, k};
        for (size_t k = 0; k < n_comm; k++)
            v[d->n_comm + k] = (comm_row_t){comm[k].a, comm[k].b, d->n_comm + k};
        qsort(v, n, sizeof(*v), cmp_comm_row);
        size_t conflict = SIZE_MAX, first = 0;
        for (size_t k = 1; k < n; k++)
            if (v[k].user == v[k - 1].user && v[k].comm != v[k - 1].comm &&
                (conflict == SIZE_MAX || v[k].row < conflict)) {
                conflict = v[k].row;
                first = v[k - 1].row;
            }
        free(v);
        if (conflict != SIZE_MAX) {
            size_t row = conflict - d->n_comm;
            const icpns_pair_t *earlier = first < d->n_comm ? &d->comm[first]
                                                            : &comm[first - d->n_comm];
            return icpns_error_set(err, ICPNS_EINVAL, NULL, row + 1, "communities",
                                   "row %zu: user %lld is assigned to community %lld here and "
                                   "to community %lld %s %zu: one community per user",
                                   row, (long long)comm[row].a, (long long)comm[row].b,
                                   (long long)earlier->b,
                                   first < d->n_comm ? "by the dataset's entry" : "at row",
                                   first < d->n_comm ? first : first - d->n_comm);
        }
    }
    if (grow((void **)&d->inter, &d->cap_inter, d->n_inter + n_inter, sizeof(*d->inter)) ||
        grow((void **)&d->comm, &d->cap_comm, d->n_comm + n_comm, sizeof(*d->comm)) ||
        grow((void **)&d->items, &d->cap_items, d->n_items + n_items, sizeof(*d->items)))
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    if (n_inter)
        memcpy(d->inter + d->n_inter, inter, n_inter * sizeof(*inter));
    d->n_inter += n_inter;
    if (n_comm)
        memcpy(d->comm + d->n_comm, comm, n_comm * sizeof(*comm));
    d->n_comm += n_comm;
    if (items) {
        if (n_items)
            memcpy(d->items + d->n_items, items, n_items * sizeof(*items));
        d->n_items += n_items;
        d->has_items = true;
    }
    return 0;
}

/* An update's entry and its position: later entries of a user win. */
typedef struct ranked_pair {
    icpns_pair_t p;
    size_t pos;
} ranked_pair_t;

static int cmp_ranked_pair(const void *x, const void *y)
{
    const ranked_pair_t *a = x, *b = y;
    if (a->p.a != b->p.a)
        return a->p.a < b->p.a ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

static int cmp_pair_user(const void *x, const void *y)
{
    const icpns_pair_t *a = x, *b = y;
    return (a->a > b->a) - (a->a < b->a);
}

int icpns_communities_merge(const icpns_pair_t *old, size_t n_old, const icpns_pair_t *upd,
                            size_t n_upd, bool replace, icpns_pair_t **ret, size_t *ret_n)
{
    /* The update's last entry per user, by ascending user. */
    ranked_pair_t *r = malloc((n_upd ? n_upd : 1) * sizeof(*r));
    icpns_pair_t *last = malloc((n_upd ? n_upd : 1) * sizeof(*last));
    icpns_pair_t *out = malloc(((replace ? 0 : n_old) + n_upd + 1) * sizeof(*out));
    if (!r || !last || !out) {
        free(r);
        free(last);
        free(out);
        return ICPNS_ENOMEM;
    }
    for (size_t k = 0; k < n_upd; k++)
        r[k] = (ranked_pair_t){upd[k], k};
    qsort(r, n_upd, sizeof(*r), cmp_ranked_pair);
    size_t u = 0, n = 0;
    for (size_t k = 0; k < n_upd; k++)
        if (k + 1 == n_upd || r[k + 1].p.a != r[k].p.a)
            last[u++] = r[k].p;
    free(r);
    if (!replace)
        for (size_t k = 0; k < n_old; k++)
            if (!bsearch(&old[k], last, u, sizeof(*last), cmp_pair_user))
                out[n++] = old[k];
    for (size_t k = 0; k < u; k++)
        out[n++] = last[k];
    free(last);
    *ret = out;
    *ret_n = n;
    return 0;
}

int icpns_dataset_set_communities(icpns_dataset_t *d, const icpns_pair_t *pairs, size_t n,
                                  bool replace, icpns_error_t *err)
{
    if (d->has_pop)
        return icpns_error_set(err, ICPNS_EINVAL, d->pop_path, 0, "popularity_source",
                               "the popularity counts come from a file (popularity_source "
                               "\"file\"): new communities would not move them; change the "
                               "files and load them again instead");
    if (n && !pairs)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, NULL, "NULL array");
    size_t bad = first_negative(pairs, n);
    if (bad != SIZE_MAX)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, bad + 1, "communities",
                               "row %zu: (%lld, %lld): ids are non-negative integers", bad,
                               (long long)pairs[bad].a, (long long)pairs[bad].b);
    icpns_pair_t *merged;
    size_t m;
    if (icpns_communities_merge(d->comm, d->n_comm, pairs, n, replace, &merged, &m))
        return icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    free(d->comm);
    d->comm = merged;
    d->n_comm = m;
    d->cap_comm = m;
    return 0;
}

/* ---- options ------------------------------------------------------------ */

int icpns_format_parse(const char *s)
{
    if (!strcmp(s, "auto")) return ICPNS_FORMAT_AUTO;
    if (!strcmp(s, "pairs") || !strcmp(s, "tsv") || !strcmp(s, "csv")) return ICPNS_FORMAT_PAIRS;
    if (!strcmp(s, "recbole") || !strcmp(s, "inter")) return ICPNS_FORMAT_RECBOLE;
    if (!strcmp(s, "adjacency") || !strcmp(s, "lightgcn")) return ICPNS_FORMAT_ADJACENCY;
    if (!strcmp(s, "lists") || !strcmp(s, "sequences")) return ICPNS_FORMAT_LISTS;
    return -1;
}

const char *icpns_format_name(icpns_format_t f)
{
    switch (f) {
    case ICPNS_FORMAT_PAIRS: return "pairs";
    case ICPNS_FORMAT_RECBOLE: return "recbole";
    case ICPNS_FORMAT_ADJACENCY: return "adjacency";
    case ICPNS_FORMAT_LISTS: return "lists";
    default: return "auto";
    }
}

int icpns_pop_source_parse(const char *s)
{
    if (!strcmp(s, "interactions")) return ICPNS_POP_FROM_INTERACTIONS;
    if (!strcmp(s, "file")) return ICPNS_POP_FROM_FILE;
    return -1;
}

const char *icpns_pop_source_name(icpns_pop_source_t p)
{
    return p == ICPNS_POP_FROM_FILE ? "file" : "interactions";
}

void icpns_table_opts_default(icpns_table_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    icpns_params_default(&o->params);
    o->format = ICPNS_FORMAT_AUTO;
    o->pop_source = ICPNS_POP_FROM_INTERACTIONS;
    snprintf(o->interactions, sizeof(o->interactions), "interactions.tsv");
    snprintf(o->communities, sizeof(o->communities), "communities.tsv");
    snprintf(o->popularity, sizeof(o->popularity), "popularity.tsv");
    snprintf(o->items, sizeof(o->items), "items.tsv");
}

/* ---- reports -------------------------------------------------------------- */

size_t icpns_load_report_size(void)
{
    return sizeof(icpns_load_report_t);
}

static void report_init(icpns_load_report_t *r, icpns_table_kind_t kind, const char *path)
{
    memset(r, 0, sizeof(*r));
    r->kind = (int32_t)kind;
    snprintf(r->path, sizeof(r->path), "%s", path ? path : "");
}

/* Counts one data line with @k fields (or items). */
static void report_count(icpns_load_report_t *r, uint64_t k)
{
    if (r->data_lines == 0 || k < r->count_min)
        r->count_min = k;
    if (k > r->count_max)
        r->count_max = k;
    r->by_count[k < ICPNS_REPORT_COUNTS - 1 ? k : ICPNS_REPORT_COUNTS - 1]++;
    r->data_lines++;
}

/* Keeps @r in @d (the first ICPNS_MAX_REPORTS files). */
static void report_keep(icpns_dataset_t *d, const icpns_load_report_t *r)
{
    if (d->n_reports < ICPNS_MAX_REPORTS)
        d->reports[d->n_reports++] = *r;
}

/* @v with thousands separators ("6,726"). */
static const char *group(uint64_t v, char *buf)
{
    char t[32];
    int n = snprintf(t, sizeof(t), "%llu", (unsigned long long)v), o = 0;
    for (int k = 0; k < n; k++) {
        if (k > 0 && (n - k) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = t[k];
    }
    buf[o] = '\0';
    return buf;
}

void icpns_load_report_format(const icpns_load_report_t *r, char *buf, size_t size)
{
    size_t off = 0;
    if (size == 0)
        return;
    buf[0] = '\0';
#define APPEND(...)                                                            \
    do {                                                                       \
        int k_ = snprintf(buf + off, size - off, __VA_ARGS__);                 \
        if (k_ > 0)                                                            \
            off = off + (size_t)k_ >= size ? size - 1 : off + (size_t)k_;      \
    } while (0)
    char g1[40], g2[40];
    static const char *kinds[] = {"interactions", "journal (icpnsd's updates)", "communities",
                                  "popularity", "items"};
    static const char *rows[] = {"pair", "pair", "assignment", "count", "item"};
    int kind = r->kind >= 0 && r->kind <= ICPNS_TABLE_ITEMS ? r->kind : 0;
    APPEND("%s: ", r->path);
    if (kind == ICPNS_TABLE_INTERACTIONS)
        APPEND("%s (%s)", icpns_format_name((icpns_format_t)r->format), r->reason);
    else
        APPEND("%s", kinds[kind]);
    APPEND(": %s line%s -> %s %s%s", group(r->data_lines, g1), r->data_lines == 1 ? "" : "s",
           group(r->rows, g2), rows[kind], r->rows == 1 ? "" : "s");
    if (r->separator[0])
        APPEND("; separator %s", r->separator);
    if (r->data_lines && r->counts_items) {
        APPEND("; %s to %s items per line", group(r->count_min, g1), group(r->count_max, g2));
    } else if (r->data_lines) {
        APPEND("; fields per line:");
        for (int k = 0; k < ICPNS_REPORT_COUNTS; k++)
            if (r->by_count[k])
                APPEND(" %d%s (%s line%s)", k, k == ICPNS_REPORT_COUNTS - 1 ? "+" : "",
                       group(r->by_count[k], g1), r->by_count[k] == 1 ? "" : "s");
    }
    if (r->header_line)
        APPEND("; header skipped (line %llu: '%s')", (unsigned long long)r->header_line,
               r->header);
    if (r->skipped_lines)
        APPEND("; %s comment/blank line%s", group(r->skipped_lines, g1),
               r->skipped_lines == 1 ? "" : "s");
    if (r->dropped_rating)
        APPEND("; %s row%s dropped by min_rating", group(r->dropped_rating, g1),
               r->dropped_rating == 1 ? "" : "s");
    if (r->bom)
        APPEND("; UTF-8 byte order mark skipped");
    if (r->crlf)
        APPEND("; CRLF line endings");
#undef APPEND
}

/* ---- bytes ---------------------------------------------------------------- */

/* The line (1-based) and column of byte @at of @buf. */
static uint64_t line_of(const char *buf, const char *at, uint64_t *col)
{
    uint64_t line = 1;
    const char *ls = buf;
    for (const char *p = buf; p < at && (p = memchr(p, '\n', (size_t)(at - p))); p++) {
        line++;
        ls = p + 1;
    }
    if (col)
        *col = (uint64_t)(at - ls) + 1;
    return line;
}

/*
 * Checks that [buf, buf + len) is a text table: a UTF-8 byte order mark is
 * allowed only at the very start (skipped, noted in @r), no NUL or other
 * control byte but tab and CR before LF, and the last line ends with its
 * newline (unless @allow_cut: then an unterminated last line is left out of
 * *@ret_len).  *@ret_p / *@ret_len get the text to parse.
 */
static int text_check(const char *buf, size_t len, const char *path, bool allow_cut,
                      icpns_load_report_t *r, const char **ret_p, size_t *ret_len,
                      icpns_error_t *err)
{
    const char *p = buf, *end = buf + len;
    char q[ICPNS_QUOTE_BUF];
    uint64_t col;
    if (len >= 3 && !memcmp(p, "\xef\xbb\xbf", 3)) {
        p += 3;
        r->bom = 1;
    }
    if (allow_cut) {
        while (end > p && end[-1] != '\n')
            end--;
    } else if (end > p && end[-1] != '\n') {
        uint64_t line = line_of(buf, end - 1, NULL);
        return icpns_error_set(err, ICPNS_EPARSE, path, line, NULL,
                               "the last line has no newline: the file may still be being "
                               "written; if it is complete, end it with a newline "
                               "(echo >> FILE)");
    }
    bool crlf = false;
    for (const char *s = p; s < end; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != 0x7f && c != 0xef)
            continue;
        if (c == '\n' || c == '\t')
            continue;
        if (c == '\r' && s + 1 < end && s[1] == '\n') {
            crlf = true;
            continue;
        }
        if (c == 0xef) {
            if (end - s >= 3 && (unsigned char)s[1] == 0xbb && (unsigned char)s[2] == 0xbf) {
                uint64_t line = line_of(buf, s, &col);
                return icpns_error_set(err, ICPNS_EPARSE, path, line, NULL,
                                       "a UTF-8 byte order mark '\\xef\\xbb\\xbf' at column "
                                       "%llu: it belongs only at the start of a file "
                                       "(files concatenated?); remove it",
                                       (unsigned long long)col);
            }
            continue;
        }
        uint64_t line = line_of(buf, s, &col);
        if (c == 0)
            return icpns_error_set(err, ICPNS_EPARSE, path, line, NULL,
                                   "a NUL byte at column %llu: not a text file, or a damaged "
                                   "one (tables are text)", (unsigned long long)col);
        if (c == '\r')
            return icpns_error_set(err, ICPNS_EPARSE, path, line, NULL,
                                   "a carriage return '\\r' at column %llu not followed by "
                                   "a newline: lines must end with LF or CR LF",
                                   (unsigned long long)col);
        return icpns_error_set(err, ICPNS_EPARSE, path, line, NULL,
                               "control byte '%s' at column %llu: tables are text (only tab "
                               "separates fields)",
                               icpns_escape(s, 1, q, sizeof(q)), (unsigned long long)col);
    }
    r->crlf = crlf;
    *ret_p = p;
    *ret_len = (size_t)(end - p);
    return 0;
}

/* ---- lines ---------------------------------------------------------------- */

/* Iterates the lines of checked text; skips (and counts) blank lines and
 * '#' comments.  Line numbers count the byte order mark's line as 1. */
typedef struct lines {
    const char *p, *end;
    uint64_t lineno;
    icpns_load_report_t *r;
} lines_t;

static bool next_line(lines_t *it, const char **ls, const char **le)
{
    while (it->p < it->end) {
        const char *s = it->p;
        const char *e = memchr(s, '\n', (size_t)(it->end - s));
        if (!e)
            e = it->end;
        it->p = e < it->end ? e + 1 : e;
        it->lineno++;
        it->r->lines++;
        const char *t = e;
        if (t > s && t[-1] == '\r')
            t--;
        const char *q = s;
        while (q < t && (*q == ' ' || *q == '\t'))
            q++;
        if (q == t || *q == '#') {
            it->r->skipped_lines++;
            continue;
        }
        /* Spaces at the end of a line are no field (tabs are, in
         * tab-separated files). */
        while (t > s && t[-1] == ' ')
            t--;
        *ls = s;
        *le = t;
        return true;
    }
    return false;
}

/* ---- fields --------------------------------------------------------------- */

typedef struct field {
    const char *p;
    size_t len;
} field_t;

/* How the fields of a line are separated.  Whitespace separates by runs of
 * spaces and tabs; the others by exactly one separator each (so "1,,3" has
 * an empty second field, never a shifted one), fields trimmed of spaces. */
typedef enum sep {
    SEP_WS = 0,
    SEP_TAB,
    SEP_COMMA,
    SEP_SEMI,
    SEP_DCOLON
} sep_t;

static const char *const sep_names[] = {"whitespace", "tab", "comma", "semicolon", "'::'"};

/* The separator of a file, from its first line: '::' (MovieLens .dat),
 * else tab, comma, semicolon, else whitespace. */
static sep_t sep_detect(const char *s, const char *e)
{
    if (memmem(s, (size_t)(e - s), "::", 2))
        return SEP_DCOLON;
    if (memchr(s, '\t', (size_t)(e - s)))
        return SEP_TAB;
    if (memchr(s, ',', (size_t)(e - s)))
        return SEP_COMMA;
    if (memchr(s, ';', (size_t)(e - s)))
        return SEP_SEMI;
    return SEP_WS;
}

/* Splits [s, e) by @sep; stores the first @max fields in @f and returns
 * the number of fields. */
static size_t split(const char *s, const char *e, sep_t sep, field_t *f, size_t max)
{
    size_t n = 0;
    if (sep == SEP_WS) {
        const char *p = s;
        for (;;) {
            while (p < e && (*p == ' ' || *p == '\t'))
                p++;
            if (p >= e)
                break;
            const char *q = p;
            while (q < e && *q != ' ' && *q != '\t')
                q++;
            if (n < max)
                f[n] = (field_t){p, (size_t)(q - p)};
            n++;
            p = q;
        }
        return n;
    }
    const char *p = s;
    for (;;) {
        const char *q;
        size_t sl = 1;
        if (sep == SEP_DCOLON) {
            q = memmem(p, (size_t)(e - p), "::", 2);
            sl = 2;
        } else {
            q = memchr(p, sep == SEP_TAB ? '\t' : sep == SEP_COMMA ? ',' : ';', (size_t)(e - p));
        }
        const char *fs = p, *fe = q ? q : e;
        while (fs < fe && (*fs == ' ' || (sep != SEP_TAB && *fs == '\t')))
            fs++;
        while (fe > fs && (fe[-1] == ' ' || (sep != SEP_TAB && fe[-1] == '\t')))
            fe--;
        if (n < max)
            f[n] = (field_t){fs, (size_t)(fe - fs)};
        n++;
        if (!q)
            break;
        p = q + sl;
    }
    return n;
}

/* Parses a non-negative integer below 2^63 (@noun: "id" or "count"); 0,
 * or ICPNS_EPARSE naming @what with the field quoted. */
static int parse_uint(const field_t *f, int64_t *out, const char *path, uint64_t line,
                      const char *what, const char *noun, icpns_error_t *err)
{
    char q[ICPNS_QUOTE_BUF];
    const char *s = f->p;
    size_t n = f->len;
    if (n == 0)
        return icpns_error_set(err, ICPNS_EPARSE, path, line, what,
                               "empty field (expected a non-negative integer %s)", noun);
    if (s[0] == '+' && n > 1)
        s++, n--;
    if (s[0] == '-' && n > 1) {
        bool digits = true;
        for (size_t k = 1; k < n; k++)
            digits = digits && isdigit((unsigned char)s[k]);
        if (digits)
            return icpns_error_set(err, ICPNS_EPARSE, path, line, what,
                                   "negative %s '%s' (%ss are non-negative integers)", noun,
                                   icpns_escape(f->p, f->len, q, sizeof(q)), noun);
    }
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) {
        if (!isdigit((unsigned char)s[k]))
            return icpns_error_set(err, ICPNS_EPARSE, path, line, what,
                                   "bad number '%s' (expected a non-negative integer %s)",
                                   icpns_escape(f->p, f->len, q, sizeof(q)), noun);
        unsigned d = (unsigned)(s[k] - '0');
        if (v > (UINT64_C(0x7fffffffffffffff) - d) / 10)
            return icpns_error_set(err, ICPNS_EPARSE, path, line, what,
                                   "%s '%s' is out of range (at most 2^63-1)", noun,
                                   icpns_escape(f->p, f->len, q, sizeof(q)));
        v = v * 10 + d;
    }
    *out = (int64_t)v;
    return 0;
}

static int parse_id(const field_t *f, int64_t *out, const char *path, uint64_t line,
                    const char *what, icpns_error_t *err)
{
    return parse_uint(f, out, path, line, what, "id", err);
}

/* Whether @f is a non-negative integer id (no error). */
static bool is_id(const field_t *f, int64_t *out)
{
    return parse_uint(f, out, NULL, 0, NULL, "id", NULL) == 0;
}

/* A decimal rating: digits, sign, point, exponent (no hex, inf or nan). */
static int parse_double(const field_t *f, double *out, const char *path,
                        uint64_t line, const char *what, icpns_error_t *err)
{
    char tmp[64], q[ICPNS_QUOTE_BUF];
    if (f->len == 0 || f->len >= sizeof(tmp))
        goto bad;
    for (size_t k = 0; k < f->len; k++)
        if (!strchr("0123456789+-.eE", f->p[k]) || f->p[k] == '\0')
            goto bad;
    memcpy(tmp, f->p, f->len);
    tmp[f->len] = '\0';
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (*end != '\0' || !isfinite(v))
        goto bad;
    *out = v;
    return 0;
bad:
    return icpns_error_set(err, ICPNS_EPARSE, path, line, what,
                           f->len ? "bad number '%s' (expected a decimal rating)"
                                  : "empty field%s (expected a decimal rating)",
                           f->len ? icpns_escape(f->p, f->len, q, sizeof(q)) : "");
}

/* A header: the first field of the first line starts with a letter, or
 * with a quote and a letter (R's write.csv: "userId","movieId"). */
static bool looks_like_header(const field_t *f)
{
    return (f->len > 0 && isalpha((unsigned char)f->p[0])) ||
           (f->len > 1 && f->p[0] == '"' && isalpha((unsigned char)f->p[1]));
}

/* A header whose first column has no name and the second one does: what
 * pandas' to_csv writes with the DataFrame's index (",user_id,item_id"). */
static bool unnamed_first_column(const char *ls, const char *le, sep_t sep)
{
    field_t f[2];
    return sep != SEP_WS && split(ls, le, sep, f, 2) >= 2 && f[0].len == 0 &&
           looks_like_header(&f[1]);
}

static void keep_header(icpns_load_report_t *r, uint64_t line, const char *ls, const char *le)
{
    r->header_line = line;
    char q[ICPNS_QUOTE_BUF];
    icpns_escape(ls, (size_t)(le - ls), q, sizeof(q));
    snprintf(r->header, sizeof(r->header), "%s", q);
}

/* The name part of a RecBole header field "name:type". */
static bool header_is(const field_t *f, const char *name)
{
    size_t n = strlen(name);
    return f->len > n && !memcmp(f->p, name, n) && f->p[n] == ':';
}

/* A RecBole .inter header: the first field is "name:type" with a name of
 * letters, digits and '_' and a lower-case type (token, float, ...). */
static bool is_recbole_header(const char *ls, const char *le)
{
    field_t f;
    if (split(ls, le, SEP_TAB, &f, 1) == 0 || !looks_like_header(&f))
        return false;
    const char *c = memchr(f.p, ':', f.len);
    if (!c || c + 1 >= f.p + f.len)
        return false;
    for (const char *p = f.p; p < c; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    for (const char *p = c + 1; p < f.p + f.len; p++)
        if (!islower((unsigned char)*p) && *p != '_')
            return false;
    return true;
}

/* ---- pair buffers ------------------------------------------------------------ */

typedef struct pairbuf {
    icpns_pair_t *v;
    size_t n, cap;
} pairbuf_t;

/* Sizes @b for @n pairs exactly: a file's pairs are counted (by its lines)
 * before they are parsed, so that loading never holds a doubled array. */
static int pairbuf_reserve(pairbuf_t *b, size_t n)
{
    if (n <= b->cap)
        return 0;
    if (n > SIZE_MAX / sizeof(*b->v))
        return ICPNS_ENOMEM;
    icpns_pair_t *q = realloc(b->v, n * sizeof(*q));
    if (!q)
        return ICPNS_ENOMEM;
    b->v = q;
    b->cap = n;
    return 0;
}

/* Lines in @buf (an upper bound on its pairs but for adjacency lists). */
static size_t count_lines(const char *buf, size_t len)
{
    size_t n = 1;
    for (const char *p = buf, *end = buf + len; (p = memchr(p, '\n', (size_t)(end - p))); p++)
        n++;
    return n;
}

/* Moves @src's pairs to the end of @d's interactions or communities: the
 * first file's buffer is adopted as is, later ones are appended exactly. */
static int append_pairs(icpns_pair_t **dst, size_t *dn, size_t *dcap, pairbuf_t *src)
{
    if (src->n == 0)
        return 0;
    if (*dn == 0) {
        free(*dst);
        *dst = src->v;
        *dcap = src->cap;
        *dn = src->n;
        *src = (pairbuf_t){0};
        return 0;
    }
    if (*dn + src->n > *dcap) {
        icpns_pair_t *q = realloc(*dst, (*dn + src->n) * sizeof(*q));
        if (!q)
            return ICPNS_ENOMEM;
        *dst = q;
        *dcap = *dn + src->n;
    }
    memcpy(*dst + *dn, src->v, src->n * sizeof(*src->v));
    *dn += src->n;
    return 0;
}

static int pairbuf_push(pairbuf_t *b, int64_t x, int64_t y)
{
    if (grow((void **)&b->v, &b->cap, b->n + 1, sizeof(*b->v)))
        return ICPNS_ENOMEM;
    b->v[b->n++] = (icpns_pair_t){x, y};
    return 0;
}

/* ---- one line per user ------------------------------------------------------- */

/* (user, line) of each line of an adjacency or lists file, or of the first
 * field of each line during detection. */
typedef struct uline {
    int64_t user;
    uint64_t line;
} uline_t;

typedef struct ulines {
    uline_t *v;
    size_t n, cap;
} ulines_t;

static int ulines_push(ulines_t *u, int64_t user, uint64_t line)
{
    if (grow((void **)&u->v, &u->cap, u->n + 1, sizeof(*u->v)))
        return ICPNS_ENOMEM;
    u->v[u->n++] = (uline_t){user, line};
    return 0;
}

static int cmp_uline(const void *a, const void *b)
{
    const uline_t *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/* Whether a user has two lines; if so *@dup is the later line of the
 * earliest repeated pair and *@first the line before it.  Sorts @u. */
static bool ulines_repeat(ulines_t *u, uline_t *dup, uint64_t *first)
{
    /* Most pairs files list a user's rows together: no sort needed. */
    for (size_t k = 1; k < u->n; k++)
        if (u->v[k].user == u->v[k - 1].user) {
            *dup = u->v[k];
            *first = u->v[k - 1].line;
            return true;
        }
    if (u->n > 1)
        qsort(u->v, u->n, sizeof(*u->v), cmp_uline);
    bool found = false;
    for (size_t k = 1; k < u->n; k++)
        if (u->v[k].user == u->v[k - 1].user && (!found || u->v[k].line < dup->line)) {
            *dup = u->v[k];
            *first = u->v[k - 1].line;
            found = true;
        }
    return found;
}

/* ---- format detection -------------------------------------------------------- */

/* What kind of ':' a line has. */
enum { COLON_NONE = 0, COLON_LISTS = 1, COLON_DOUBLE = 2 };

static int colon_kind(const char *ls, const char *le)
{
    const char *c = memchr(ls, ':', (size_t)(le - ls));
    if (!c)
        return COLON_NONE;
    return memmem(c, (size_t)(le - c), "::", 2) ? COLON_DOUBLE : COLON_LISTS;
}

/* Whether a user of the data lines from @p on is on two lines (*@dup, the
 * later line, and *@first, the earlier): the second look detection takes
 * only when the shape of the lines leaves the question open. */
static int users_repeat(const char *p, const char *end, sep_t sep, bool *ret, uline_t *dup,
                        uint64_t *first)
{
    icpns_load_report_t scratch = {0};
    lines_t it = {p, end, 0, &scratch};
    const char *ls, *le;
    ulines_t users = {0};
    field_t f;
    int64_t id;
    while (next_line(&it, &ls, &le))
        if (split(ls, le, sep, &f, 1) > 0 && is_id(&f, &id) && ulines_push(&users, id, it.lineno)) {
            free(users.v);
            return ICPNS_ENOMEM;
        }
    *ret = ulines_repeat(&users, dup, first);
    free(users.v);
    return 0;
}

static const char *const colon_words[] = {"has no ':'", "is 'user:item item ...'",
                                          "uses '::' separators"};

#define AMBIGUOUS_HINT "say which with \"format\" in tables.json (icpns --format)"

/*
 * Chooses the format of interactions text [p, end) for auto, from the whole
 * file: a RecBole header; 'user:item ...' lines (lists); '::' separators or
 * a header line (pairs); else the shape of the lines.  Writes the reason
 * into @r.  A file that fits more than one format is refused with the line
 * that makes it ambiguous and the formats it could be.
 */
static int detect_format(const char *p, const char *end, const char *path, bool extra_ignore,
                         icpns_load_report_t *r, icpns_format_t *ret, icpns_error_t *err)
{
    icpns_load_report_t scratch = {0};
    lines_t it = {p, end, 0, &scratch};
    const char *ls, *le;
    if (!next_line(&it, &ls, &le)) {
        *ret = ICPNS_FORMAT_PAIRS;
        snprintf(r->reason, sizeof(r->reason), "detected: no data lines");
        return 0;
    }
    if (is_recbole_header(ls, le)) {
        *ret = ICPNS_FORMAT_RECBOLE;
        snprintf(r->reason, sizeof(r->reason), "detected: RecBole 'name:type' header");
        return 0;
    }
    sep_t sep = sep_detect(ls, le);
    field_t f[8];
    if ((split(ls, le, sep, f, 1) > 0 && looks_like_header(&f[0])) ||
        unnamed_first_column(ls, le, sep)) {
        *ret = ICPNS_FORMAT_PAIRS;
        snprintf(r->reason, sizeof(r->reason), "detected: header line");
        return 0;
    }

    int colon0 = colon_kind(ls, le);
    uint64_t line0 = it.lineno;
    size_t fmin = SIZE_MAX, fmax = 0;
    uint64_t line_min = 0, line_max = 0;
    bool rated = false; /* a column after the second is no id */
    int rc = 0;
    do {
        int ck = colon_kind(ls, le);
        if (ck != colon0) {
            rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, NULL,
                                 "this line %s but line %llu %s: one format per file",
                                 colon_words[ck], (unsigned long long)line0,
                                 colon_words[colon0]);
            goto out;
        }
        if (colon0 != COLON_NONE)
            continue;
        size_t n = split(ls, le, sep, f, 8);
        if (n < fmin)
            fmin = n, line_min = it.lineno;
        if (n > fmax)
            fmax = n, line_max = it.lineno;
        int64_t id;
        for (size_t k = 2; k < n && k < 8 && !rated; k++)
            rated = !is_id(&f[k], &id);
    } while (next_line(&it, &ls, &le));

    if (colon0 == COLON_LISTS) {
        *ret = ICPNS_FORMAT_LISTS;
        snprintf(r->reason, sizeof(r->reason), "detected: 'user:item item ...' lines");
        goto out;
    }
    if (colon0 == COLON_DOUBLE) {
        *ret = ICPNS_FORMAT_PAIRS;
        snprintf(r->reason, sizeof(r->reason), "detected: '::' separators");
        goto out;
    }
    uline_t dup = {0, 0};
    uint64_t first = 0;
    bool repeat = false;
    bool need = fmin == fmax ? fmin >= 3 && !rated : sep == SEP_WS || sep == SEP_TAB;
    if (need && users_repeat(p, end, sep, &repeat, &dup, &first)) {
        rc = icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
        goto out;
    }
    if (fmin == fmax) {
        if (fmin == 1) {
            rc = icpns_error_set(err, ICPNS_EPARSE, path, line0, NULL,
                                 "every line has a single field: no items (user item ... "
                                 "expected)");
        } else if (fmin == 2) {
            *ret = ICPNS_FORMAT_PAIRS;
            snprintf(r->reason, sizeof(r->reason), "detected: 2 fields on every line");
        } else if (rated) {
            *ret = ICPNS_FORMAT_PAIRS;
            snprintf(r->reason, sizeof(r->reason),
                     "detected: %zu fields on every line, a rating column", fmin);
        } else if (repeat) {
            *ret = ICPNS_FORMAT_PAIRS;
            snprintf(r->reason, sizeof(r->reason),
                     "detected: %zu fields on every line, users repeat over lines", fmin);
        } else if (fmin > 4 && !extra_ignore) {
            /* Pairs would refuse the line: adjacency is the only reading. */
            *ret = ICPNS_FORMAT_ADJACENCY;
            snprintf(r->reason, sizeof(r->reason),
                     "detected: %zu fields on every line, one line per user (pairs have at "
                     "most 4)", fmin);
        } else {
            rc = icpns_error_set(err, ICPNS_EPARSE, path, line0, "format",
                                 "ambiguous: every line has %zu integer fields, one line per "
                                 "user: pairs (user item rating ...) or adjacency (user item "
                                 "item ...)? " AMBIGUOUS_HINT, fmin);
        }
        goto out;
    }
    if (sep != SEP_WS && sep != SEP_TAB) {
        rc = icpns_error_set(err, ICPNS_EPARSE, path, line_max, NULL,
                             "this line has %zu %s-separated fields, line %llu has %zu: pairs "
                             "have the same columns on every line",
                             fmax, sep_names[sep], (unsigned long long)line_min, fmin);
        goto out;
    }
    if (repeat) {
        rc = icpns_error_set(err, ICPNS_EPARSE, path, dup.line, "format",
                             "ambiguous: lines have %zu to %zu fields (not pairs) and user "
                             "%lld is also on line %llu (not adjacency, one line per user); "
                             AMBIGUOUS_HINT,
                             fmin, fmax, (long long)dup.user, (unsigned long long)first);
        goto out;
    }
    *ret = ICPNS_FORMAT_ADJACENCY;
    snprintf(r->reason, sizeof(r->reason),
             "detected: variable number of fields per line, one line per user");
out:
    return rc;
}

/* ---- interactions ------------------------------------------------------------ */

/* How an interactions parse behaves beyond the table options. */
typedef struct inter_ctx {
    icpns_format_t format;
    bool has_min_rating;
    double min_rating;
    bool extra_ignore;
    icpns_table_kind_t kind;
    bool allow_cut; /* the journal: an unterminated last line is skipped */
    const char *origin;
} inter_ctx_t;

/* Adjacency ("user item item ...") or lists ("user:item item ...") line. */
static int parse_list_line(const char *ls, const char *le, bool lists, const char *path,
                           uint64_t line, pairbuf_t *out, ulines_t *users,
                           icpns_load_report_t *r, icpns_error_t *err)
{
    const char *p = ls, *items;
    field_t fu;
    int64_t u, i;
    int rc;
    if (lists) {
        const char *c = memchr(ls, ':', (size_t)(le - ls));
        if (!c)
            return icpns_error_set(err, ICPNS_EPARSE, path, line, "user",
                                   "no ':' after the user: lists lines are 'user:item item ...'");
        /* The user: everything before the ':', trimmed ("5 : 1 2" works;
         * "5 6: 1" is a bad number, not user 5). */
        const char *us = ls, *ue = c;
        while (us < ue && (*us == ' ' || *us == '\t'))
            us++;
        while (ue > us && (ue[-1] == ' ' || ue[-1] == '\t'))
            ue--;
        fu = (field_t){us, (size_t)(ue - us)};
        items = c + 1;
        if (memchr(items, ':', (size_t)(le - items)))
            return icpns_error_set(err, ICPNS_EPARSE, path, line, "item",
                                   "a second ':' on the line: lists lines are 'user:item "
                                   "item ...' with one ':'");
    } else {
        while (p < le && (*p == ' ' || *p == '\t'))
            p++;
        const char *q = p;
        while (q < le && *q != ' ' && *q != '\t')
            q++;
        fu = (field_t){p, (size_t)(q - p)};
        items = q;
    }
    if ((rc = parse_id(&fu, &u, path, line, "user", err)))
        return rc;
    if (ulines_push(users, u, line))
        return ICPNS_ENOMEM;
    /* An adjacency line may be arbitrarily long: walk it. */
    uint64_t k = 0;
    p = items;
    for (;;) {
        while (p < le && (*p == ' ' || *p == '\t'))
            p++;
        if (p >= le)
            break;
        const char *s = p;
        while (p < le && *p != ' ' && *p != '\t')
            p++;
        field_t fi = {s, (size_t)(p - s)};
        if ((rc = parse_id(&fi, &i, path, line, "item", err)))
            return rc;
        if (pairbuf_push(out, u, i))
            return ICPNS_ENOMEM;
        k++;
    }
    report_count(r, k);
    return 0;
}

static int parse_inter(icpns_dataset_t *d, const char *buf, size_t len, const inter_ctx_t *x,
                       const char *path, icpns_error_t *err)
{
    icpns_load_report_t rep;
    report_init(&rep, x->kind, path);
    const char *text;
    size_t tlen;
    int rc = text_check(buf, len, path, x->allow_cut, &rep, &text, &tlen, err);
    if (rc)
        return rc;
    icpns_format_t format = x->format;
    if (format == ICPNS_FORMAT_AUTO) {
        if ((rc = detect_format(text, text + tlen, path, x->extra_ignore, &rep, &format, err)))
            return rc;
        rep.detected = 1;
    } else if (x->kind == ICPNS_TABLE_JOURNAL) {
        snprintf(rep.reason, sizeof(rep.reason), "icpnsd's journal");
    } else {
        snprintf(rep.reason, sizeof(rep.reason), "given%s%s",
                 x->origin && x->origin[0] ? " " : "", x->origin ? x->origin : "");
    }
    rep.format = (int32_t)format;
    bool lists = format == ICPNS_FORMAT_LISTS;
    if (x->has_min_rating && (lists || format == ICPNS_FORMAT_ADJACENCY))
        return icpns_error_set(err, ICPNS_EPARSE, path, 0, "min_rating",
                               "min_rating is set but %s lines have no ratings (it applies to "
                               "pairs and recbole)", icpns_format_name(format));

    lines_t it = {text, text + tlen, 0, &rep};
    const char *ls, *le;
    field_t f[8];
    pairbuf_t out = {0};
    ulines_t users = {0};
    uint64_t skipped = 0;
    /* Column positions (pairs: 0, 1, rating 2); RecBole's from its header. */
    size_t cu = 0, ci = 1, cr = 2, ncols = 0;
    uint64_t cols_line = 0;
    sep_t sep = SEP_WS;
    bool first = true;
    if (format == ICPNS_FORMAT_PAIRS || format == ICPNS_FORMAT_RECBOLE) {
        if (pairbuf_reserve(&out, count_lines(text, tlen)))
            return icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
    }

    while (next_line(&it, &ls, &le)) {
        if (first && format != ICPNS_FORMAT_ADJACENCY && !lists) {
            first = false;
            sep = format == ICPNS_FORMAT_RECBOLE ? SEP_TAB : sep_detect(ls, le);
            snprintf(rep.separator, sizeof(rep.separator), "%s", sep_names[sep]);
            if (format == ICPNS_FORMAT_RECBOLE) {
                size_t n = split(ls, le, SEP_TAB, f, 8);
                if (!is_recbole_header(ls, le)) {
                    rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, NULL,
                                         "expected a RecBole header such as "
                                         "'user_id:token<TAB>item_id:token'");
                    goto out;
                }
                /* Columns past the eighth are never user, item or rating
                 * in practice; they are named but not looked at. */
                cu = ci = cr = SIZE_MAX;
                for (size_t k = 0; k < n && k < 8; k++) {
                    if (header_is(&f[k], "user_id")) cu = k;
                    else if (header_is(&f[k], "item_id")) ci = k;
                    else if (header_is(&f[k], "rating")) cr = k;
                }
                if (cu == SIZE_MAX || ci == SIZE_MAX) {
                    rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno,
                                         cu == SIZE_MAX ? "user_id" : "item_id",
                                         "RecBole header lacks a '%s:token' column",
                                         cu == SIZE_MAX ? "user_id" : "item_id");
                    goto out;
                }
                if (x->has_min_rating && cr == SIZE_MAX) {
                    rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, "rating",
                                         "min_rating is set but the header has no 'rating' column");
                    goto out;
                }
                ncols = n;
                cols_line = it.lineno;
                keep_header(&rep, it.lineno, ls, le);
                continue;
            }
            if (unnamed_first_column(ls, le, sep)) {
                rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, NULL,
                                     "the header's first column has no name: a pandas index "
                                     "(DataFrame.to_csv without index=False)? Write the file "
                                     "with index=False, or remove that column; icpns does not "
                                     "guess which columns hold the user and the item");
                goto out;
            }
            if (split(ls, le, sep, f, 1) > 0 && looks_like_header(&f[0])) {
                /* A CSV header such as userId,movieId,rating. */
                keep_header(&rep, it.lineno, ls, le);
                continue;
            }
        }
        if (format == ICPNS_FORMAT_ADJACENCY || lists) {
            if ((rc = parse_list_line(ls, le, lists, path, it.lineno, &out, &users, &rep, err))) {
                if (rc == ICPNS_ENOMEM)
                    goto oom;
                goto out;
            }
            continue;
        }

        size_t n = split(ls, le, sep, f, 8);
        report_count(&rep, n);
        if (format == ICPNS_FORMAT_RECBOLE && n != ncols) {
            rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, n < ncols ? "item" : NULL,
                                 "%s: the line has %zu field%s, the header (line %llu) %zu",
                                 n < ncols ? "missing column" : "extra column", n,
                                 n == 1 ? "" : "s", (unsigned long long)cols_line, ncols);
            goto out;
        }
        if (format == ICPNS_FORMAT_PAIRS) {
            if (n < 2) {
                rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, "item",
                                     "missing column: the line has %zu field%s, pairs have "
                                     "'user item [rating [timestamp]]'", n, n == 1 ? "" : "s");
                goto out;
            }
            if (n > 4 && !x->extra_ignore) {
                rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, NULL,
                                     "%zu fields: pairs have 2 to 4 (user item [rating "
                                     "[timestamp]]); adjacency lists? say \"format\"; to "
                                     "drop the extra columns set \"extra_columns\": \"ignore\"",
                                     n);
                goto out;
            }
            if (ncols == 0) {
                ncols = n;
                cols_line = it.lineno;
            } else if (n != ncols) {
                rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, NULL,
                                     "the line has %zu fields, line %llu has %zu: pairs have "
                                     "the same columns on every line (adjacency lists? say "
                                     "\"format\")",
                                     n, (unsigned long long)cols_line, ncols);
                goto out;
            }
            if (x->has_min_rating && n < 3) {
                rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, "rating",
                                     "min_rating is set but the line has no rating column");
                goto out;
            }
        }
        int64_t u, i;
        if ((rc = parse_id(&f[cu], &u, path, it.lineno, "user", err)) ||
            (rc = parse_id(&f[ci], &i, path, it.lineno, "item", err)))
            goto out;
        if (x->has_min_rating) {
            double rv = 0;
            if ((rc = parse_double(&f[cr], &rv, path, it.lineno, "rating", err)))
                goto out;
            if (rv < x->min_rating) {
                skipped++;
                continue;
            }
        }
        if (pairbuf_push(&out, u, i))
            goto oom;
    }
    if (format == ICPNS_FORMAT_ADJACENCY || lists) {
        /* One line per user: a repeated user means another format (a
         * pairs file with ratings read as lists would be silently wrong). */
        uline_t dup;
        uint64_t firstl;
        if (ulines_repeat(&users, &dup, &firstl)) {
            rc = icpns_error_set(err, ICPNS_EPARSE, path, dup.line, "user",
                                 "user %lld already has line %llu: %s files have one line per "
                                 "user (a pairs file? say \"format\")",
                                 (long long)dup.user, (unsigned long long)firstl,
                                 icpns_format_name(format));
            goto out;
        }
        rep.counts_items = 1;
    }
    rep.rows = out.n;
    rep.dropped_rating = skipped;
    if (append_pairs(&d->inter, &d->n_inter, &d->cap_inter, &out))
        goto oom;
    d->skipped_rating += skipped;
    report_keep(d, &rep);
    goto out;
oom:
    rc = icpns_error_set(err, ICPNS_ENOMEM, path, it.lineno, NULL, "out of memory");
out:
    free(out.v);
    free(users.v);
    return rc;
}

int icpns_parse_interactions(icpns_dataset_t *d, const char *buf, size_t len,
                             const icpns_table_opts_t *o, const char *path,
                             icpns_error_t *err)
{
    inter_ctx_t x = {o->format, o->has_min_rating, o->min_rating, o->extra_columns_ignore,
                     ICPNS_TABLE_INTERACTIONS, false, o->format_origin};
    return parse_inter(d, buf, len, &x, path, err);
}

int icpns_parse_journal(icpns_dataset_t *d, const char *buf, size_t len, const char *path,
                        icpns_error_t *err)
{
    inter_ctx_t x = {ICPNS_FORMAT_PAIRS, false, 0, false, ICPNS_TABLE_JOURNAL, true, NULL};
    return parse_inter(d, buf, len, &x, path, err);
}

/* ---- communities, popularity, items ------------------------------------------ */

/*
 * Reads the lines of a small table with exactly @ncols columns (separator
 * from the first line; a first line starting with a letter is a header)
 * and hands each data line's fields to @row.
 */
typedef int (*row_fn)(void *arg, const field_t *f, uint64_t line, const char *path,
                      icpns_error_t *err);

static int parse_table(const char *buf, size_t len, const char *path, size_t ncols,
                       const char *shape, const char *const *names,
                       icpns_load_report_t *rep, row_fn row, void *arg, icpns_error_t *err)
{
    const char *text;
    size_t tlen;
    int rc = text_check(buf, len, path, false, rep, &text, &tlen, err);
    if (rc)
        return rc;
    lines_t it = {text, text + tlen, 0, rep};
    const char *ls, *le;
    field_t f[4];
    bool first = true;
    sep_t sep = SEP_WS;
    while (next_line(&it, &ls, &le)) {
        if (first) {
            first = false;
            sep = sep_detect(ls, le);
            snprintf(rep->separator, sizeof(rep->separator), "%s", sep_names[sep]);
            if (split(ls, le, sep, f, 1) > 0 && looks_like_header(&f[0])) {
                keep_header(rep, it.lineno, ls, le);
                continue;
            }
        }
        size_t k = split(ls, le, sep, f, 4);
        report_count(rep, k);
        if (k < ncols)
            return icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, names[k],
                                   "missing column: the line has %zu field%s, expected '%s'",
                                   k, k == 1 ? "" : "s", shape);
        if (k > ncols)
            return icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, NULL,
                                   "%zu fields: this file has exactly %zu column%s ('%s')", k,
                                   ncols, ncols == 1 ? "" : "s", shape);
        if ((rc = row(arg, f, it.lineno, path, err)))
            return rc;
    }
    return 0;
}

typedef struct lined {
    int64_t user, comm;
    uint64_t line;
} lined_t;

typedef struct lineds {
    lined_t *v;
    size_t n, cap;
} lineds_t;

static int cmp_lined(const void *a, const void *b)
{
    const lined_t *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

static int comm_row(void *arg, const field_t *f, uint64_t line, const char *path,
                    icpns_error_t *err)
{
    lineds_t *v = arg;
    int64_t u, c;
    int rc;
    if ((rc = parse_id(&f[0], &u, path, line, "user", err)) ||
        (rc = parse_id(&f[1], &c, path, line, "community", err)))
        return rc;
    if (grow((void **)&v->v, &v->cap, v->n + 1, sizeof(*v->v)))
        return icpns_error_set(err, ICPNS_ENOMEM, path, line, NULL, "out of memory");
    v->v[v->n++] = (lined_t){u, c, line};
    return 0;
}

int icpns_parse_communities(icpns_dataset_t *d, const char *buf, size_t len,
                            const char *path, icpns_error_t *err)
{
    static const char *const names[] = {"user", "community", NULL};
    icpns_load_report_t rep;
    report_init(&rep, ICPNS_TABLE_COMMUNITIES, path);
    lineds_t v = {0};
    pairbuf_t out = {0};
    int rc = parse_table(buf, len, path, 2, "user<TAB>community", names, &rep, comm_row, &v,
                         err);
    if (rc)
        goto out;
    /* A user may be listed twice only with the same community. */
    if (v.n > 0)
        qsort(v.v, v.n, sizeof(*v.v), cmp_lined);
    for (size_t k = 0; k < v.n; k++) {
        if (k > 0 && v.v[k].user == v.v[k - 1].user) {
            if (v.v[k].comm != v.v[k - 1].comm) {
                rc = icpns_error_set(err, ICPNS_EPARSE, path, v.v[k].line, "community",
                                     "user %lld is assigned to community %lld here and "
                                     "to community %lld at line %llu",
                                     (long long)v.v[k].user, (long long)v.v[k].comm,
                                     (long long)v.v[k - 1].comm,
                                     (unsigned long long)v.v[k - 1].line);
                goto out;
            }
            continue;
        }
        if (pairbuf_push(&out, v.v[k].user, v.v[k].comm))
            goto oom;
    }
    rep.rows = out.n;
    if (append_pairs(&d->comm, &d->n_comm, &d->cap_comm, &out))
        goto oom;
    report_keep(d, &rep);
    goto out;
oom:
    rc = icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
out:
    free(v.v);
    free(out.v);
    return rc;
}

typedef struct triples {
    icpns_triple_t *v;
    size_t n, cap;
} triples_t;

static int pop_row(void *arg, const field_t *f, uint64_t line, const char *path,
                   icpns_error_t *err)
{
    triples_t *v = arg;
    int64_t c, i, cnt;
    int rc;
    if ((rc = parse_id(&f[0], &c, path, line, "community", err)) ||
        (rc = parse_id(&f[1], &i, path, line, "item", err)) ||
        (rc = parse_uint(&f[2], &cnt, path, line, "count", "count", err)))
        return rc;
    if (cnt > UINT32_MAX - 1)
        return icpns_error_set(err, ICPNS_EPARSE, path, line, "count",
                               "count %lld is too large (at most 2^32-2)", (long long)cnt);
    if (grow((void **)&v->v, &v->cap, v->n + 1, sizeof(*v->v)))
        return icpns_error_set(err, ICPNS_ENOMEM, path, line, NULL, "out of memory");
    v->v[v->n++] = (icpns_triple_t){c, i, (uint64_t)cnt, line};
    return 0;
}

int icpns_parse_popularity(icpns_dataset_t *d, const char *buf, size_t len,
                           const char *path, icpns_error_t *err)
{
    static const char *const names[] = {"community", "item", "count", NULL};
    icpns_load_report_t rep;
    report_init(&rep, ICPNS_TABLE_POPULARITY, path);
    triples_t v = {0};
    int rc = parse_table(buf, len, path, 3, "community<TAB>item<TAB>count", names, &rep,
                         pop_row, &v, err);
    if (rc)
        goto out;
    if (grow((void **)&d->pop, &d->cap_pop, d->n_pop + v.n, sizeof(*d->pop))) {
        rc = icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
        goto out;
    }
    if (v.n)
        memcpy(d->pop + d->n_pop, v.v, v.n * sizeof(*v.v));
    d->n_pop += v.n;
    d->has_pop = true;
    snprintf(d->pop_path, sizeof(d->pop_path), "%s", path ? path : "");
    rep.rows = v.n;
    report_keep(d, &rep);
out:
    free(v.v);
    return rc;
}

typedef struct idbuf {
    int64_t *v;
    size_t n, cap;
} idbuf_t;

static int item_row(void *arg, const field_t *f, uint64_t line, const char *path,
                    icpns_error_t *err)
{
    idbuf_t *v = arg;
    int64_t i;
    int rc = parse_id(&f[0], &i, path, line, "item", err);
    if (rc)
        return rc;
    if (grow((void **)&v->v, &v->cap, v->n + 1, sizeof(*v->v)))
        return icpns_error_set(err, ICPNS_ENOMEM, path, line, NULL, "out of memory");
    v->v[v->n++] = i;
    return 0;
}

int icpns_parse_items(icpns_dataset_t *d, const char *buf, size_t len, const char *path,
                      icpns_error_t *err)
{
    static const char *const names[] = {"item", NULL};
    icpns_load_report_t rep;
    report_init(&rep, ICPNS_TABLE_ITEMS, path);
    idbuf_t v = {0};
    int rc = parse_table(buf, len, path, 1, "item", names, &rep, item_row, &v, err);
    if (rc)
        goto out;
    if (grow((void **)&d->items, &d->cap_items, d->n_items + v.n, sizeof(*d->items))) {
        rc = icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
        goto out;
    }
    if (v.n)
        memcpy(d->items + d->n_items, v.v, v.n * sizeof(*v.v));
    d->n_items += v.n;
    d->has_items = true;
    rep.rows = v.n;
    report_keep(d, &rep);
out:
    free(v.v);
    return rc;
}

/* ---- shards ------------------------------------------------------------------ */

uint32_t icpns_shard_of(int64_t user, uint32_t shards)
{
    uint64_t z = (uint64_t)user;
    z ^= z >> 30;
    z *= UINT64_C(0xBF58476D1CE4E5B9);
    z ^= z >> 27;
    z *= UINT64_C(0x94D049BB133111EB);
    z ^= z >> 31;
    return shards ? (uint32_t)(z % shards) : 0;
}
