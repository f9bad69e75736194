/*
 * Fuzz the table loaders: the first byte picks the file kind (interactions
 * in each format, communities, popularity, items, the journal); accepted
 * tables are indexed and sampled from, checking that no positive is ever
 * returned and that the block API gives what row-by-row sampling gives.
 * The first byte's value modulo 9 picks the kind (0-4: the formats auto,
 * pairs (with min_rating 3), recbole, adjacency, lists; 5 communities; 6
 * popularity; 7 items; 8 journal); values from 9 on also ignore extra
 * pairs columns.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "icpns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned kind = data[0] % 9;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    int rc;
    /* A fixed base so that every kind can reach indexing. */
    icpns_dataset_add_interaction(d, 1, 10);
    icpns_dataset_add_interaction(d, 2, 11);
    icpns_dataset_add_community(d, 1, 0);
    icpns_table_opts_t o;
    icpns_table_opts_default(&o);
    if (kind <= 4) {
        o.format = (icpns_format_t)kind;
        o.has_min_rating = kind == 1;
        o.min_rating = 3.0;
        o.extra_columns_ignore = data[0] >= 9;
        rc = icpns_parse_interactions(d, buf, len, &o, "f", &err);
    } else if (kind == 5) {
        rc = icpns_parse_communities(d, buf, len, "f", &err);
    } else if (kind == 6) {
        rc = icpns_parse_popularity(d, buf, len, "f", &err);
    } else if (kind == 7) {
        rc = icpns_parse_items(d, buf, len, "f", &err);
    } else {
        rc = icpns_parse_journal(d, buf, len, "f", &err);
    }
    /* A report per file accepted, its rows what was appended. */
    if (!rc && (d->n_reports != 1 || d->reports[0].kind < 0))
        abort();
    if (!rc) {
        char line[2048];
        icpns_load_report_format(&d->reports[0], line, sizeof(line));
        if (!line[0])
            abort();
    }
    if (rc && (err.code != rc || !err.message[0]))
        abort();
    icpns_params_t p;
    icpns_params_default(&p);
    icpns_snapshot_t *s;
    if (!rc && d->n_inter < 100000 && icpns_snapshot_build(d, &p, &s, &err) == 0) {
        icpns_work_t *w = icpns_work_new();
        uint32_t items[8];
        uint32_t nu = s->users.n < 64 ? s->users.n : 64;
        for (uint32_t u = 0; u < nu; u++)
            for (int st = 0; st < ICPNS_STRATEGY_COUNT; st++) {
                if (icpns_sample_row(s, s->weights, w, (icpns_row_id_t){s->users.ids[u], 0, 1},
                                     (icpns_strategy_t)st, 0, 0, 8, items, NULL, NULL, NULL))
                    continue;
                const uint32_t *pos = s->pos + s->pos_off[u];
                for (int j = 0; j < 8; j++) {
                    if (items[j] >= s->items.n)
                        abort();
                    for (uint32_t k = 0; k < icpns_snapshot_degree(s, u); k++)
                        if (pos[k] == items[j])
                            abort();
                }
            }
        /* The block API over all these users (every one twice, plus an
         * unknown id), a mix of every strategy, equals row by row. */
        int64_t ids[129];
        uint32_t occ[129], n = 0;
        for (uint32_t u = 0; u < nu; u++)
            ids[n++] = s->users.ids[u];
        for (uint32_t u = 0; u < nu; u++)
            ids[n++] = s->users.ids[u];
        ids[n++] = INT64_MIN;
        icpns_part_t parts[3] = {{ICPNS_STRATEGY_ICPNS, 3}, {ICPNS_STRATEGY_UNIFORM, 1},
                                 {ICPNS_STRATEGY_POPULARITY, 2}};
        icpns_rows_t req = {ids, occ, n, parts, 3, 5, ICPNS_SAMPLE_SUBSTITUTE_PNS};
        uint32_t block[129 * 6], row[6], failed = ICPNS_NONE;
        if (icpns_occurrences(ids, n, occ))
            abort();
        int rb = icpns_sample_rows(s, s->weights, w, &req, 0, n, block, NULL, NULL, NULL, &failed);
        for (uint32_t r = 0; r < n; r++) {
            uint32_t slot = 0;
            int rr = 0;
            for (int k = 0; k < 3 && !rr; slot += parts[k].slots, k++)
                rr = icpns_sample_row(s, s->weights, w, (icpns_row_id_t){ids[r], occ[r], 5},
                                      parts[k].strategy, req.flags, slot, parts[k].slots,
                                      row + slot, NULL, NULL, NULL);
            if (rr) { /* the block call failed at the first such row */
                if (!rb || failed > r)
                    abort();
                break;
            }
            if (rb && failed == r)
                abort();
            if (memcmp(row, block + (size_t)r * 6, sizeof(row)))
                abort();
        }
        icpns_work_free(w);
        icpns_snapshot_unref(s);
    }
    icpns_dataset_free(d);
    return 0;
}
