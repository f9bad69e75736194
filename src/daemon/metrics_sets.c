/*
 * metrics_sets.c - the families of /metrics that describe table sets: for
 * each family its HELP and TYPE lines once, then one series per set
 * labelled tables="NAME" (the daemon-wide families are in metrics.c).
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>

#include "metrics.h"
#include "metrics_sets.h"
#include "registry.h"
#include "wcache.h"

static uint64_t ld(const atomic_uint_fast64_t *a)
{
    return atomic_load_explicit((atomic_uint_fast64_t *)a, memory_order_relaxed);
}

static void family(icpns_buf_t *b, const char *name, const char *type, const char *help)
{
    icpns_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The counter families of one set, by offset in icpnsd_setstats_t. */
static const struct {
    const char *name, *help;
    size_t off;
} set_counters[] = {
    {"icpnsd_rows_total", "Request rows answered (one per entry of \"users\"), whatever "
     "their strategies.", offsetof(icpnsd_setstats_t, rows)},
    {"icpnsd_draws_total", "Alias-table draws, the rejected ones included.",
     offsetof(icpnsd_setstats_t, draws)},
    {"icpnsd_rejections_total", "Draws rejected because they hit one of the user's positives.",
     offsetof(icpnsd_setstats_t, rejections)},
    {"icpnsd_residual_rows_total", "Rows drawn from the exact per-user residual distribution "
     "(the user's positives hold most of the mass).", offsetof(icpnsd_setstats_t, residual_rows)},
    {"icpnsd_fallback_rows_total", "Rows whose weighted draws (icpns, or popularity) fell "
     "back to uniform over the user's non-positives: the positives hold all of the "
     "community's (or the global) mass and epsilon is 0.",
     offsetof(icpnsd_setstats_t, fallback_rows)},
    {"icpnsd_substituted_rows_total", "Rows of unknown or community-less users served by "
     "popularity (\"unknown_users\": \"popularity\").",
     offsetof(icpnsd_setstats_t, substituted_rows)},
};

/* The counter families: HELP and TYPE once, then a series per set. */
static void render_counters(icpns_buf_t *b, const char *const *names,
                            icpnsd_setstats_t *const *stats, unsigned n)
{
    for (size_t k = 0; k < sizeof(set_counters) / sizeof(set_counters[0]); k++) {
        family(b, set_counters[k].name, "counter", set_counters[k].help);
        for (unsigned j = 0; j < n; j++) {
            const atomic_uint_fast64_t *v =
                (const atomic_uint_fast64_t *)((const char *)stats[j] + set_counters[k].off);
            icpns_buf_printf(b, "%s{tables=\"%s\"} %llu\n", set_counters[k].name, names[j],
                             (unsigned long long)ld(v));
        }
    }
    static const char *strat[3] = {"uniform", "popularity", "icpns"};
    family(b, "icpnsd_negatives_total", "counter",
           "Negatives served, by strategy (each of a slot's candidates counts).");
    for (unsigned j = 0; j < n; j++)
        for (int k = 0; k < 3; k++)
            icpns_buf_printf(b, "icpnsd_negatives_total{tables=\"%s\",strategy=\"%s\"} %llu\n",
                             names[j], strat[k], (unsigned long long)ld(&stats[j]->negatives[k]));
    family(b, "icpnsd_reloads_total", "counter",
           "Reload requests (SIGHUP, POST /admin/reload, the file watch) answered, by result; "
           "requests that arrive during a build are answered together by the next build and "
           "each one counts.");
    for (unsigned j = 0; j < n; j++)
        icpns_buf_printf(b, "icpnsd_reloads_total{tables=\"%s\",result=\"ok\"} %llu\n"
                            "icpnsd_reloads_total{tables=\"%s\",result=\"failed\"} %llu\n",
                         names[j], (unsigned long long)ld(&stats[j]->reloads_ok), names[j],
                         (unsigned long long)ld(&stats[j]->reloads_failed));
    static const char *kinds[ICPNSD_UPDATE_KINDS] = {"interactions", "communities", "cluster"};
    family(b, "icpnsd_updates_total", "counter",
           "Updates answered (POST /admin/interactions, PUT /admin/communities, POST "
           "/admin/cluster, synchronous or not), by kind and result; a dry run that succeeds "
           "counts as ok, a cancelled job as failed.");
    for (unsigned j = 0; j < n; j++)
        for (int k = 0; k < ICPNSD_UPDATE_KINDS; k++)
            icpns_buf_printf(b, "icpnsd_updates_total{tables=\"%s\",kind=\"%s\",result=\"ok\"} %llu\n"
                                "icpnsd_updates_total{tables=\"%s\",kind=\"%s\",result=\"failed\"} %llu\n",
                             names[j], kinds[k], (unsigned long long)ld(&stats[j]->updates_ok[k]),
                             names[j], kinds[k],
                             (unsigned long long)ld(&stats[j]->updates_failed[k]));
    family(b, "icpnsd_rebuilds_total", "counter",
           "Snapshots built and published after the start-up one, by kind: full (reloads, "
           "replacements, clustering, updates a patch cannot express) or patch (only the "
           "communities an update touched).  One build may answer several reloads and updates.");
    for (unsigned j = 0; j < n; j++)
        icpns_buf_printf(b, "icpnsd_rebuilds_total{tables=\"%s\",kind=\"full\"} %llu\n"
                            "icpnsd_rebuilds_total{tables=\"%s\",kind=\"patch\"} %llu\n",
                         names[j], (unsigned long long)ld(&stats[j]->rebuilds_full), names[j],
                         (unsigned long long)ld(&stats[j]->rebuilds_patch));
}

/*
 * The per-set families, each with its HELP and TYPE once and one series per
 * set labelled tables="NAME": the serving snapshot's gauges, its
 * fingerprint, the weight caches, and the set's counters (metrics.c).
 * Each set's snapshot is taken once, so that a set's series describe one
 * version even when a reload publishes another meanwhile.
 */
void icpnsd_metrics_render_sets(icpns_buf_t *b, icpnsd_registry_t *reg)
{
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n = icpnsd_registry_list(reg, sets, ICPNSD_MAX_SETS);
    icpns_snapshot_t *snaps[ICPNSD_MAX_SETS];
    icpnsd_meta_t metas[ICPNSD_MAX_SETS];
    const char *names[ICPNSD_MAX_SETS];
    icpnsd_setstats_t *stats[ICPNSD_MAX_SETS];
    for (unsigned j = 0; j < n; j++) {
        snaps[j] = icpnsd_set_acquire_meta(sets[j], &metas[j]);
        names[j] = icpnsd_set_name(sets[j]);
        stats[j] = icpnsd_set_stats(sets[j]);
    }
    static const struct {
        const char *name, *help, *type;
    } m[] = {
        {"icpnsd_snapshot_version", "Version of the serving snapshot (each replica counts its "
         "own; compare fingerprints across replicas).", "gauge"},
        {"icpnsd_snapshot_build_seconds", "Time the serving snapshot took to build (reading "
         "the files included for a reload).", "gauge"},
        {"icpnsd_snapshot_timestamp_seconds", "When the serving snapshot was published, in "
         "seconds since the epoch.", "gauge"},
        {"icpnsd_snapshot_bytes", "Memory held by the serving snapshot (the weight caches "
         "not included).", "gauge"},
        {"icpnsd_snapshot_users", "Users in the serving snapshot.", "gauge"},
        {"icpnsd_snapshot_items", "Items in the serving snapshot's catalogue.", "gauge"},
        {"icpnsd_snapshot_interactions", "Distinct (user, item) interactions in the serving "
         "snapshot.", "gauge"},
        {"icpnsd_snapshot_communities", "Communities in the serving snapshot.", "gauge"},
        {"icpnsd_weights_cache_entries", "Cached (alpha, epsilon, beta) settings asked for by "
         "requests (the set's own not counted).", "gauge"},
        {"icpnsd_weights_cache_bytes", "Memory of the cached settings.", "gauge"},
        {"icpnsd_weights_cache_hits_total", "Requests served from a cached setting.", "counter"},
        {"icpnsd_weights_cache_misses_total", "Requests for a setting that was not cached.",
         "counter"},
        {"icpnsd_weights_cache_builds_total", "Settings built.", "counter"},
        {"icpnsd_weights_cache_failures_total", "Settings whose build failed.", "counter"},
        {"icpnsd_weights_cache_evictions_total", "Settings evicted (least recently used).",
         "counter"},
        {"icpnsd_weights_cache_waits_total", "Requests that waited for a setting being built.",
         "counter"},
        {"icpnsd_weights_cache_busy_total", "Requests answered 503 weights_building while their "
         "setting was built (weights_wait = false).", "counter"},
    };
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        icpns_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name,
                         m[k].type);
        for (unsigned j = 0; j < n; j++) {
            const icpnsd_wstats_t *ws = icpnsd_set_wstats(sets[j]);
            icpns_snapshot_t *s = snaps[j];
            const icpnsd_meta_t *mt = &metas[j];
            if (!s && k < 10)
                continue; /* no version serves yet: no snapshot series */
            unsigned entries = 0;
            uint64_t wb = 0, v = 0;
            if (s)
                icpnsd_wcache_usage(s, &entries, &wb);
            switch (k) {
            case 1:
                icpns_buf_printf(b, "%s{tables=\"%s\"} %.6f\n", m[k].name, names[j],
                                 mt->build_seconds);
                continue;
            case 0: v = s->version; break;
            case 2: v = (uint64_t)mt->built_at; break;
            case 3: v = s->bytes; break;
            case 4: v = s->users.n; break;
            case 5: v = s->items.n; break;
            case 6: v = s->n_interactions; break;
            case 7: v = s->comms.n; break;
            case 8: v = entries; break;
            case 9: v = wb; break;
            case 10: v = atomic_load(&ws->hits); break;
            case 11: v = atomic_load(&ws->misses); break;
            case 12: v = atomic_load(&ws->builds); break;
            case 13: v = atomic_load(&ws->failures); break;
            case 14: v = atomic_load(&ws->evictions); break;
            case 15: v = atomic_load(&ws->waits); break;
            default: v = atomic_load(&ws->busy); break;
            }
            icpns_buf_printf(b, "%s{tables=\"%s\"} %llu\n", m[k].name, names[j],
                             (unsigned long long)v);
        }
    }
    icpns_buf_lit(b, "# HELP icpnsd_tables_info Always 1: the fingerprint of each set's serving "
                     "snapshot (equal fingerprints: equal negatives for equal requests).\n"
                     "# TYPE icpnsd_tables_info gauge\n");
    for (unsigned j = 0; j < n; j++)
        if (snaps[j])
            icpns_buf_printf(b, "icpnsd_tables_info{tables=\"%s\",fingerprint=\"%016llx\"} 1\n",
                             names[j], (unsigned long long)snaps[j]->fingerprint);
    render_counters(b, names, stats, n);
    for (unsigned j = 0; j < n; j++) {
        icpns_snapshot_unref(snaps[j]);
        icpnsd_set_unref(sets[j]);
    }
}
