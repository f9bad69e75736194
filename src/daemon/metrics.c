/* metrics.c - lock-free counters and their Prometheus rendering. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"

icpnsd_metrics_t icpnsd_metrics;

static const unsigned statuses[ICPNSD_METRICS_STATUSES] = {200, 400, 401, 403, 404, 405, 409,
                                                           413, 415, 422, 500, 503, 507, 0};
static const double buckets[ICPNSD_METRICS_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                       0.005,  0.01,    0.025,  0.05,  0.1,
                                                       0.25,   0.5,     1.0,    2.5};
static const char *route_names[ICPNSD_METRICS_ROUTES];
static unsigned n_routes;

unsigned icpnsd_metrics_route(const char *name)
{
    for (unsigned k = 0; k < n_routes; k++)
        if (!strcmp(route_names[k], name))
            return k;
    if (n_routes == ICPNSD_METRICS_ROUTES)
        return ICPNSD_METRICS_ROUTES - 1;
    route_names[n_routes] = name;
    return n_routes++;
}

const char *icpnsd_metrics_route_name(unsigned id)
{
    return id < n_routes ? route_names[id] : "other";
}

void icpnsd_metrics_request(unsigned r, unsigned status, double seconds)
{
    if (r >= ICPNSD_METRICS_ROUTES)
        r = ICPNSD_METRICS_ROUTES - 1;
    int k = ICPNSD_METRICS_STATUSES - 1;
    for (int i = 0; i < ICPNSD_METRICS_STATUSES - 1; i++)
        if (statuses[i] == status) {
            k = i;
            break;
        }
    atomic_fetch_add_explicit(&icpnsd_metrics.requests[r][k], 1, memory_order_relaxed);
    for (int b = 0; b < ICPNSD_METRICS_BUCKETS; b++)
        if (seconds <= buckets[b]) {
            atomic_fetch_add_explicit(&icpnsd_metrics.latency_bucket[r][b], 1, memory_order_relaxed);
            break;
        }
    atomic_fetch_add_explicit(&icpnsd_metrics.latency_count[r], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.latency_sum_us[r], (uint64_t)(seconds * 1e6),
                              memory_order_relaxed);
}

static uint64_t ld(atomic_uint_fast64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

void icpnsd_metrics_render(icpns_buf_t *out, const icpnsd_metrics_snapshot_t *snap, double uptime)
{
    icpns_buf_t *b = out;
    icpnsd_metrics_t *m = &icpnsd_metrics;
    icpns_buf_printf(b, "# HELP icpnsd_requests_total HTTP requests by route and status.\n"
           "# TYPE icpnsd_requests_total counter\n");
    for (unsigned r = 0; r < n_routes; r++)
        for (int k = 0; k < ICPNSD_METRICS_STATUSES; k++) {
            uint64_t v = ld(&m->requests[r][k]);
            if (v)
                icpns_buf_printf(b, "icpnsd_requests_total{route=\"%s\",status=\"%u\"} %llu\n", route_names[r],
                   statuses[k], (unsigned long long)v);
        }
    icpns_buf_printf(b, "# HELP icpnsd_request_duration_seconds Request latency by route.\n"
           "# TYPE icpnsd_request_duration_seconds histogram\n");
    for (unsigned r = 0; r < n_routes; r++) {
        uint64_t count = ld(&m->latency_count[r]);
        if (!count)
            continue;
        uint64_t cum = 0;
        for (int k = 0; k < ICPNSD_METRICS_BUCKETS; k++) {
            cum += ld(&m->latency_bucket[r][k]);
            icpns_buf_printf(b, "icpnsd_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
               route_names[r], buckets[k], (unsigned long long)cum);
        }
        icpns_buf_printf(b, "icpnsd_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
           route_names[r], (unsigned long long)count);
        icpns_buf_printf(b, "icpnsd_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route_names[r],
           (double)ld(&m->latency_sum_us[r]) / 1e6);
        icpns_buf_printf(b, "icpnsd_request_duration_seconds_count{route=\"%s\"} %llu\n", route_names[r],
           (unsigned long long)count);
    }
    static const char *strat[3] = {"uniform", "popularity", "icpns"};
    icpns_buf_printf(b, "# HELP icpnsd_negatives_total Negatives served by strategy.\n"
           "# TYPE icpnsd_negatives_total counter\n");
    for (int k = 0; k < 3; k++)
        icpns_buf_printf(b, "icpnsd_negatives_total{strategy=\"%s\"} %llu\n", strat[k],
           (unsigned long long)ld(&m->negatives[k]));
#define COUNTER(name, help, field)                                             \
    icpns_buf_printf(b, "# HELP icpnsd_" name " " help "\n# TYPE icpnsd_" name " counter\nicpnsd_" name \
           " %llu\n", (unsigned long long)ld(&m->field))
    COUNTER("draws_total", "Table draws including rejected ones.", draws);
    COUNTER("rejections_total", "Draws rejected because they hit a positive.", rejections);
    COUNTER("residual_rows_total", "Rows served by the exact residual path.", residual_rows);
    COUNTER("fallback_rows_total", "Rows served by the uniform fallback (community mass exhausted).", fallback_rows);
    COUNTER("substituted_rows_total", "Unknown or community-less users served by popularity.", substituted_rows);
    COUNTER("reloads_ok_total", "Successful snapshot rebuilds.", reloads_ok);
    COUNTER("reloads_failed_total", "Failed snapshot rebuilds (old snapshot kept).", reloads_failed);
    icpns_buf_printf(b, "# HELP icpnsd_rebuilds_total Snapshots built, by kind (full, or a patch of the "
           "communities an update touched).\n# TYPE icpnsd_rebuilds_total counter\n"
           "icpnsd_rebuilds_total{kind=\"full\"} %llu\nicpnsd_rebuilds_total{kind=\"patch\"} %llu\n",
       (unsigned long long)ld(&m->rebuilds_full), (unsigned long long)ld(&m->rebuilds_patch));
    COUNTER("updates_ok_total", "Admin updates applied.", updates_ok);
    COUNTER("updates_failed_total", "Admin updates refused or failed.", updates_failed);
    COUNTER("request_bytes_total", "Request body bytes received.", bytes_in);
    COUNTER("response_bytes_total", "Response body bytes sent.", bytes_out);
    COUNTER("connections_refused_total", "Connections refused at max_connections or the per-IP cap.", connections_refused);
    COUNTER("accept_errors_total", "Connections not accepted for lack of file descriptors.", accept_errors);
    COUNTER("answers_streamed_total", "Answers above answer_buffer_bytes, produced as the client read them.", answers_streamed);
    icpns_buf_printf(b, "# HELP icpnsd_auth_failures_total Requests with a missing or wrong bearer token, by kind of token.\n"
           "# TYPE icpnsd_auth_failures_total counter\n"
           "icpnsd_auth_failures_total{kind=\"admin\"} %llu\nicpnsd_auth_failures_total{kind=\"api\"} %llu\n",
       (unsigned long long)ld(&m->auth_failures_admin), (unsigned long long)ld(&m->auth_failures_api));
    COUNTER("auth_throttled_total", "Requests answered 429 because their address failed too often.", auth_throttled);
    COUNTER("answers_refused_total", "Requests refused because answers_in_flight_bytes was reached (503).", answers_refused);
#undef COUNTER
    icpns_buf_printf(b, "# HELP icpnsd_snapshot_version Version of the serving snapshot.\n"
           "# TYPE icpnsd_snapshot_version gauge\nicpnsd_snapshot_version %llu\n",
       (unsigned long long)snap->version);
    icpns_buf_printf(b, "# HELP icpnsd_snapshot_build_seconds Build time of the serving snapshot.\n"
           "# TYPE icpnsd_snapshot_build_seconds gauge\nicpnsd_snapshot_build_seconds %.6f\n",
       snap->build_seconds);
    icpns_buf_printf(b, "# HELP icpnsd_snapshot_bytes Memory held by the serving snapshot.\n"
           "# TYPE icpnsd_snapshot_bytes gauge\nicpnsd_snapshot_bytes %zu\n", snap->bytes);
    icpns_buf_printf(b, "# HELP icpnsd_snapshot_users Users in the serving snapshot.\n"
           "# TYPE icpnsd_snapshot_users gauge\nicpnsd_snapshot_users %llu\n",
       (unsigned long long)snap->users);
    icpns_buf_printf(b, "# HELP icpnsd_snapshot_items Items in the serving snapshot.\n"
           "# TYPE icpnsd_snapshot_items gauge\nicpnsd_snapshot_items %llu\n",
       (unsigned long long)snap->items);
    icpns_buf_printf(b, "# HELP icpnsd_snapshot_interactions Distinct interactions in the serving snapshot.\n"
           "# TYPE icpnsd_snapshot_interactions gauge\nicpnsd_snapshot_interactions %llu\n",
       (unsigned long long)snap->interactions);
    icpns_buf_printf(b, "# HELP icpnsd_resident_memory_bytes Resident set size of the process.\n"
           "# TYPE icpnsd_resident_memory_bytes gauge\nicpnsd_resident_memory_bytes %ld\n",
       rss_bytes());
    icpns_buf_printf(b, "# HELP icpnsd_uptime_seconds Seconds since start.\n"
           "# TYPE icpnsd_uptime_seconds gauge\nicpnsd_uptime_seconds %.3f\n", uptime);
}
