/*
 * dataset.c - the raw tables and their parsers.
 *
 * Parsers work on an in-memory buffer, line by line, and append to the
 * dataset only after the whole buffer parsed: a bad line leaves the dataset
 * as it was ("load nothing half-way").
 */
#define _POSIX_C_SOURCE 200809L
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

/* ---- options ------------------------------------------------------------ */

int icpns_format_parse(const char *s)
{
    if (!strcmp(s, "auto")) return ICPNS_FORMAT_AUTO;
    if (!strcmp(s, "pairs") || !strcmp(s, "tsv") || !strcmp(s, "csv")) return ICPNS_FORMAT_PAIRS;
    if (!strcmp(s, "recbole") || !strcmp(s, "inter")) return ICPNS_FORMAT_RECBOLE;
    if (!strcmp(s, "adjacency") || !strcmp(s, "lightgcn")) return ICPNS_FORMAT_ADJACENCY;
    return -1;
}

const char *icpns_format_name(icpns_format_t f)
{
    switch (f) {
    case ICPNS_FORMAT_PAIRS: return "pairs";
    case ICPNS_FORMAT_RECBOLE: return "recbole";
    case ICPNS_FORMAT_ADJACENCY: return "adjacency";
    default: return "auto";
    }
}

void icpns_table_opts_default(icpns_table_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    icpns_params_default(&o->params);
    o->format = ICPNS_FORMAT_AUTO;
    snprintf(o->interactions, sizeof(o->interactions), "interactions.tsv");
    snprintf(o->communities, sizeof(o->communities), "communities.tsv");
    snprintf(o->popularity, sizeof(o->popularity), "popularity.tsv");
}

/* ---- tokenising ----------------------------------------------------------- */

typedef struct field {
    const char *p;
    size_t len;
} field_t;

#define MAX_FIELDS 64

/*
 * Splits [p, end) into fields at any run of the characters in @seps.
 * Returns the number of fields (at most MAX_FIELDS; the rest ignored),
 * and in *@more whether there were more.
 */
static size_t split(const char *p, const char *end, const char *seps,
                    field_t *f, bool *more)
{
    size_t n = 0;
    *more = false;
    while (p < end) {
        while (p < end && *p && strchr(seps, *p))
            p++;
        if (p >= end)
            break;
        const char *s = p;
        while (p < end && !(*p && strchr(seps, *p)))
            p++;
        if (n == MAX_FIELDS) {
            *more = true;
            break;
        }
        f[n].p = s;
        f[n].len = (size_t)(p - s);
        n++;
    }
    return n;
}

/* Parses a non-negative 63-bit integer; 0 ok, else writes an error. */
static int parse_id(const field_t *f, int64_t *out, const char *path,
                    uint64_t line, const char *what, icpns_error_t *err)
{
    const char *s = f->p;
    size_t n = f->len;
    if (n > 0 && s[0] == '+')
        s++, n--;
    if (n > 0 && s[0] == '-') {
        bool digits = n > 1;
        for (size_t k = 1; k < n; k++)
            digits = digits && isdigit((unsigned char)s[k]);
        if (digits)
            return icpns_error_set(err, ICPNS_EPARSE, path, line, what,
                                   "negative id '%.*s' (ids are non-negative integers)",
                                   (int)(f->len > 40 ? 40 : f->len), f->p);
    }
    if (n == 0)
        goto bad;
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) {
        if (!isdigit((unsigned char)s[k]))
            goto bad;
        unsigned d = (unsigned)(s[k] - '0');
        if (v > (UINT64_C(0x7fffffffffffffff) - d) / 10)
            return icpns_error_set(err, ICPNS_EPARSE, path, line, what,
                                   "id '%.*s' is out of range (at most 2^63-1)",
                                   (int)(f->len > 40 ? 40 : f->len), f->p);
        v = v * 10 + d;
    }
    *out = (int64_t)v;
    return 0;
bad:
    return icpns_error_set(err, ICPNS_EPARSE, path, line, what,
                           "bad number '%.*s' (expected a non-negative integer id)",
                           (int)(f->len > 40 ? 40 : f->len), f->p);
}

static int parse_double(const field_t *f, double *out, const char *path,
                        uint64_t line, const char *what, icpns_error_t *err)
{
    char tmp[64];
    if (f->len == 0 || f->len >= sizeof(tmp))
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
                           "bad number '%.*s'", (int)(f->len > 40 ? 40 : f->len), f->p);
}

/* Iterates the lines of a buffer; skips blank lines and '#' comments. */
typedef struct lines {
    const char *p, *end;
    uint64_t lineno;
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
        const char *t = e;
        if (t > s && t[-1] == '\r')
            t--;
        const char *q = s;
        while (q < t && (*q == ' ' || *q == '\t'))
            q++;
        if (q == t || *q == '#')
            continue;
        *ls = s;
        *le = t;
        return true;
    }
    return false;
}

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

static bool looks_like_header(const field_t *f)
{
    return f->len > 0 && isalpha((unsigned char)f->p[0]);
}

/* The name part of a RecBole header field "name:type". */
static bool header_is(const field_t *f, const char *name)
{
    size_t n = strlen(name);
    return f->len > n && !memcmp(f->p, name, n) && f->p[n] == ':';
}

int icpns_parse_interactions(icpns_dataset_t *d, const char *buf, size_t len,
                             icpns_format_t format, bool has_min_rating,
                             double min_rating, const char *path,
                             icpns_error_t *err)
{
    lines_t it = {buf, buf + len, 0};
    const char *ls, *le;
    field_t f[MAX_FIELDS];
    bool more;
    pairbuf_t out = {0};
    uint64_t skipped = 0;
    int rc = 0;
    /* Column positions (pairs: 0, 1, rating 2). */
    size_t cu = 0, ci = 1, cr = 2;
    bool have_rating_col = true;
    bool first = true;
    const char *seps = format == ICPNS_FORMAT_RECBOLE ? "\t" : " \t,;:";
    if (pairbuf_reserve(&out, count_lines(buf, len)))
        return icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");

    while (next_line(&it, &ls, &le)) {
        if (first) {
            first = false;
            if (format == ICPNS_FORMAT_AUTO || format == ICPNS_FORMAT_RECBOLE) {
                const char *colon = memchr(ls, ':', (size_t)(le - ls));
                bool recbole_header = colon && looks_like_header(&(field_t){ls, 1});
                if (recbole_header)
                    format = ICPNS_FORMAT_RECBOLE;
                else if (format == ICPNS_FORMAT_AUTO)
                    format = ICPNS_FORMAT_PAIRS;
                else {
                    rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, NULL,
                                         "expected a RecBole header such as "
                                         "'user_id:token<TAB>item_id:token'");
                    goto out;
                }
                seps = format == ICPNS_FORMAT_RECBOLE ? "\t" : " \t,;:";
            }
            if (format == ICPNS_FORMAT_RECBOLE) {
                size_t n = split(ls, le, "\t", f, &more);
                cu = ci = cr = SIZE_MAX;
                for (size_t k = 0; k < n; k++) {
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
                have_rating_col = cr != SIZE_MAX;
                if (has_min_rating && !have_rating_col) {
                    rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, "rating",
                                         "min_rating is set but the header has no 'rating' column");
                    goto out;
                }
                continue;
            }
            if (format == ICPNS_FORMAT_PAIRS) {
                size_t n = split(ls, le, seps, f, &more);
                if (n > 0 && looks_like_header(&f[0]))
                    continue; /* a CSV header such as userId,movieId,rating */
            }
        }

        size_t n = split(ls, le, format == ICPNS_FORMAT_ADJACENCY ? " \t" : seps, f, &more);
        if (n == 0) {
            /* Only separators, e.g. ",,": no user field at all. */
            rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, "user",
                                 "missing column: the line has no fields");
            goto out;
        }
        if (format == ICPNS_FORMAT_ADJACENCY) {
            int64_t u, i;
            if ((rc = parse_id(&f[0], &u, path, it.lineno, "user", err)))
                goto out;
            /* An adjacency line may be longer than MAX_FIELDS: walk it. */
            const char *p = f[0].p + f[0].len;
            for (;;) {
                while (p < le && (*p == ' ' || *p == '\t'))
                    p++;
                if (p >= le)
                    break;
                const char *s = p;
                while (p < le && *p != ' ' && *p != '\t')
                    p++;
                field_t fi = {s, (size_t)(p - s)};
                if ((rc = parse_id(&fi, &i, path, it.lineno, "item", err)))
                    goto out;
                if ((rc = pairbuf_push(&out, u, i)))
                    goto oom;
            }
            continue;
        }
        size_t need = (ci > cu ? ci : cu) + 1;
        if (has_min_rating && cr + 1 > need)
            need = cr + 1;
        if (n < need && !more) {
            const char *what = n <= cu ? "user" : n <= ci ? "item" : "rating";
            rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, what,
                                 "missing column: the line has %zu field%s, %zu needed",
                                 n, n == 1 ? "" : "s", need);
            goto out;
        }
        int64_t u, i;
        if ((rc = parse_id(&f[cu], &u, path, it.lineno, "user", err)) ||
            (rc = parse_id(&f[ci], &i, path, it.lineno, "item", err)))
            goto out;
        if (has_min_rating) {
            double r = 0;
            if ((rc = parse_double(&f[cr], &r, path, it.lineno, "rating", err)))
                goto out;
            if (r < min_rating) {
                skipped++;
                continue;
            }
        }
        if ((rc = pairbuf_push(&out, u, i)))
            goto oom;
    }
    if ((rc = append_pairs(&d->inter, &d->n_inter, &d->cap_inter, &out)))
        goto oom;
    d->skipped_rating += skipped;
    goto out;
oom:
    rc = icpns_error_set(err, ICPNS_ENOMEM, path, it.lineno, NULL, "out of memory");
out:
    free(out.v);
    return rc;
}

typedef struct lined {
    int64_t user, comm;
    uint64_t line;
} lined_t;

static int cmp_lined(const void *a, const void *b)
{
    const lined_t *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

int icpns_parse_communities(icpns_dataset_t *d, const char *buf, size_t len,
                            const char *path, icpns_error_t *err)
{
    lines_t it = {buf, buf + len, 0};
    const char *ls, *le;
    field_t f[MAX_FIELDS];
    bool more, first = true;
    lined_t *v = NULL;
    size_t n = 0, cap = 0;
    pairbuf_t out = {0};
    int rc = 0;

    while (next_line(&it, &ls, &le)) {
        size_t k = split(ls, le, " \t,;", f, &more);
        if (first && k > 0 && looks_like_header(&f[0])) {
            first = false;
            continue;
        }
        first = false;
        if (k < 2) {
            rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, "community",
                                 "missing column: expected 'user<TAB>community'");
            goto out;
        }
        int64_t u, c;
        if ((rc = parse_id(&f[0], &u, path, it.lineno, "user", err)) ||
            (rc = parse_id(&f[1], &c, path, it.lineno, "community", err)))
            goto out;
        if (grow((void **)&v, &cap, n + 1, sizeof(*v)))
            goto oom;
        v[n++] = (lined_t){u, c, it.lineno};
    }
    /* A user may be listed twice only with the same community. */
    if (n > 0)
        qsort(v, n, sizeof(*v), cmp_lined);
    for (size_t k = 0; k < n; k++) {
        if (k > 0 && v[k].user == v[k - 1].user) {
            if (v[k].comm != v[k - 1].comm) {
                rc = icpns_error_set(err, ICPNS_EPARSE, path, v[k].line, "community",
                                     "user %lld is assigned to community %lld here and "
                                     "to community %lld at line %llu",
                                     (long long)v[k].user, (long long)v[k].comm,
                                     (long long)v[k - 1].comm,
                                     (unsigned long long)v[k - 1].line);
                goto out;
            }
            continue;
        }
        if (pairbuf_push(&out, v[k].user, v[k].comm))
            goto oom;
    }
    if (append_pairs(&d->comm, &d->n_comm, &d->cap_comm, &out))
        goto oom;
    goto out;
oom:
    rc = icpns_error_set(err, ICPNS_ENOMEM, path, it.lineno, NULL, "out of memory");
out:
    free(v);
    free(out.v);
    return rc;
}

int icpns_parse_popularity(icpns_dataset_t *d, const char *buf, size_t len,
                           const char *path, icpns_error_t *err)
{
    lines_t it = {buf, buf + len, 0};
    const char *ls, *le;
    field_t f[MAX_FIELDS];
    bool more, first = true;
    icpns_triple_t *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;

    while (next_line(&it, &ls, &le)) {
        size_t k = split(ls, le, " \t,;", f, &more);
        if (first && k > 0 && looks_like_header(&f[0])) {
            first = false;
            continue;
        }
        first = false;
        if (k < 3) {
            rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno,
                                 k < 2 ? "item" : "count",
                                 "missing column: expected 'community<TAB>item<TAB>count'");
            goto out;
        }
        int64_t c, i, cnt;
        if ((rc = parse_id(&f[0], &c, path, it.lineno, "community", err)) ||
            (rc = parse_id(&f[1], &i, path, it.lineno, "item", err)) ||
            (rc = parse_id(&f[2], &cnt, path, it.lineno, "count", err)))
            goto out;
        if (cnt > UINT32_MAX - 1) {
            rc = icpns_error_set(err, ICPNS_EPARSE, path, it.lineno, "count",
                                 "count %lld is too large", (long long)cnt);
            goto out;
        }
        if (grow((void **)&v, &cap, n + 1, sizeof(*v)))
            goto oom;
        v[n++] = (icpns_triple_t){c, i, (uint64_t)cnt, it.lineno};
    }
    if (grow((void **)&d->pop, &d->cap_pop, d->n_pop + n, sizeof(*d->pop)))
        goto oom;
    if (n)
        memcpy(d->pop + d->n_pop, v, n * sizeof(*v));
    d->n_pop += n;
    d->has_pop = true;
    snprintf(d->pop_path, sizeof(d->pop_path), "%s", path ? path : "");
    goto out;
oom:
    rc = icpns_error_set(err, ICPNS_ENOMEM, path, it.lineno, NULL, "out of memory");
out:
    free(v);
    return rc;
}
