/* shard.c - user shards of a snapshot's tables (icpns shard). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "icpns/dataset.h"
#include "icpns/shard.h"

/* A growable text buffer; @oom sticks. */
typedef struct text {
    char *p;
    size_t len, cap;
    bool oom;
} text_t;

static void text_printf(text_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(text_t *b, const char *fmt, ...)
{
    while (!b->oom) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t c = b->cap ? b->cap * 2 : 1 << 16;
        while (c < b->len + (size_t)n + 1)
            c *= 2;
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = c;
    }
}

/* Writes @b to DIR/NAME atomically and empties it. */
static int text_write(text_t *b, const char *dir, const char *name, icpns_error_t *err)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (b->oom)
        return icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
    int rc = icpns_file_write_atomic(path, b->p ? b->p : "", b->len, err);
    b->len = 0;
    return rc;
}

/* A JSON string body: the note without quotes, backslashes or controls. */
static void json_safe(char *dst, size_t size, const char *src)
{
    size_t o = 0;
    for (; src && *src && o + 1 < size; src++)
        dst[o++] = (*src == '"' || *src == '\\' || (unsigned char)*src < 0x20) ? ' ' : *src;
    dst[o] = '\0';
}

int icpns_shard_write(const icpns_snapshot_t *s, uint32_t shards, const char *outdir,
                      const char *note, icpns_shard_stats_t *ret_stats, icpns_error_t *err)
{
    if (shards < 1 || shards > 65536)
        return icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "shards",
                               "the number of shards must be 1..65536");
    uint32_t nu = s->users.n;
    uint32_t *shard = malloc((nu ? nu : 1) * sizeof(*shard));
    icpns_shard_stats_t *st = calloc(shards, sizeof(*st));
    text_t b = {0};
    char *pop = NULL;
    size_t pop_len = 0;
    int rc = 0;
    if (!shard || !st) {
        rc = icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
        goto out;
    }
    for (uint32_t u = 0; u < nu; u++) {
        shard[u] = icpns_shard_of(s->users.ids[u], shards);
        st[shard[u]].users++;
        st[shard[u]].pairs += icpns_snapshot_degree(s, u);
    }
    /* Refused before anything is written: a shard without interactions
     * has nothing to load. */
    for (uint32_t k = 0; k < shards; k++)
        if (st[k].pairs == 0) {
            rc = icpns_error_set(err, ICPNS_EINVAL, NULL, 0, "shards",
                                 "shard %u of %u would have no interactions (%llu users in "
                                 "all): use fewer shards", k, shards,
                                 (unsigned long long)nu);
            goto out;
        }
    if (icpns_snapshot_popularity_tsv(s, &pop, &pop_len)) {
        rc = icpns_error_set(err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
        goto out;
    }
    if (mkdir(outdir, 0755) < 0 && errno != EEXIST) {
        rc = icpns_error_set(err, ICPNS_EIO, outdir, 0, NULL, "cannot create: %s",
                             strerror(errno));
        goto out;
    }
    char safe[400];
    json_safe(safe, sizeof(safe), note);
    for (uint32_t k = 0; k < shards; k++) {
        char dir[1100];
        snprintf(dir, sizeof(dir), "%s/s%u", outdir, k);
        if (mkdir(dir, 0755) < 0) {
            rc = icpns_error_set(err, ICPNS_EIO, dir, 0, NULL,
                                 errno == EEXIST ? "already exists: icpns shard writes new "
                                                   "directories (an old one may hold a journal); "
                                                   "remove it or choose another output"
                                                 : "cannot create: %s",
                                 strerror(errno));
            goto out;
        }
        text_printf(&b, "# user\titem (shard %u of %u, icpns shard)\n", k, shards);
        for (uint32_t u = 0; u < nu; u++) {
            if (shard[u] != k)
                continue;
            for (uint64_t j = s->pos_off[u]; j < s->pos_off[u + 1]; j++)
                text_printf(&b, "%lld\t%lld\n", (long long)s->users.ids[u],
                            (long long)s->items.ids[s->pos[j]]);
        }
        if ((rc = text_write(&b, dir, "interactions.tsv", err)))
            goto out;
        text_printf(&b, "# user\tcommunity (shard %u of %u)\n", k, shards);
        for (uint32_t u = 0; u < nu; u++)
            if (shard[u] == k && s->user_comm[u] != ICPNS_NONE)
                text_printf(&b, "%lld\t%lld\n", (long long)s->users.ids[u],
                            (long long)s->comms.ids[s->user_comm[u]]);
        if ((rc = text_write(&b, dir, "communities.tsv", err)))
            goto out;
        text_printf(&b, "# item (the global catalogue: every shard has every item)\n");
        for (uint32_t i = 0; i < s->items.n; i++)
            text_printf(&b, "%lld\n", (long long)s->items.ids[i]);
        if ((rc = text_write(&b, dir, "items.tsv", err)))
            goto out;
        char path[1200];
        snprintf(path, sizeof(path), "%s/popularity.tsv", dir);
        if ((rc = icpns_file_write_atomic(path, pop, pop_len, err)))
            goto out;
        text_printf(&b,
                    "{\n  \"_comment\": \"shard %u of %u (icpns shard)%s%s: this shard's users, "
                    "the global catalogue and the global pop_c(i)\",\n"
                    "  \"alpha\": %.17g,\n  \"epsilon\": %.17g,\n  \"beta\": %.17g,\n"
                    "  \"format\": \"pairs\",\n  \"popularity_source\": \"file\"\n}\n",
                    k, shards, safe[0] ? " of " : "", safe, s->params.alpha, s->params.epsilon,
                    s->params.beta);
        if ((rc = text_write(&b, dir, "tables.json", err)))
            goto out;
    }
    if (ret_stats)
        memcpy(ret_stats, st, shards * sizeof(*st));
out:
    free(shard);
    free(st);
    free(b.p);
    free(pop);
    return rc;
}
