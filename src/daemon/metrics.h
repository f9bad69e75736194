/*
 * metrics.h - the daemon-wide counters of /metrics (Prometheus text format
 * 0.0.4).  Counters are lock-free; the per-route series are indexed by a
 * route's metrics id, which the server registers once per route label at
 * start-up (routes sharing a label share its series).
 */
#ifndef ICPNSD_METRICS_H
#define ICPNSD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "icpns/buf.h"

#define ICPNSD_METRICS_ROUTES 48
#define ICPNSD_METRICS_STATUSES 14
#define ICPNSD_METRICS_BUCKETS 14

typedef struct icpnsd_metrics {
    atomic_uint_fast64_t requests[ICPNSD_METRICS_ROUTES][ICPNSD_METRICS_STATUSES];
    atomic_uint_fast64_t latency_bucket[ICPNSD_METRICS_ROUTES][ICPNSD_METRICS_BUCKETS];
    atomic_uint_fast64_t latency_count[ICPNSD_METRICS_ROUTES];
    atomic_uint_fast64_t latency_sum_us[ICPNSD_METRICS_ROUTES];
    atomic_uint_fast64_t negatives[3];   /* by strategy */
    atomic_uint_fast64_t draws, rejections, residual_rows, fallback_rows, substituted_rows;
    atomic_uint_fast64_t reloads_ok, reloads_failed, updates_ok, updates_failed;
    atomic_uint_fast64_t rebuilds_full, rebuilds_patch;
    atomic_uint_fast64_t bytes_in, bytes_out;
    atomic_uint_fast64_t connections_refused; /* at max_connections or the per-IP cap */
    atomic_uint_fast64_t accept_errors;       /* no file descriptor left */
    atomic_uint_fast64_t answers_streamed, answers_refused;
    atomic_uint_fast64_t auth_failures_admin, auth_failures_api, auth_throttled;
} icpnsd_metrics_t;

extern icpnsd_metrics_t icpnsd_metrics;

/*
 * The metrics id of the route label @name, registered on first use (start-up
 * only: not thread-safe).  Ids beyond the table's room share the last one.
 */
unsigned icpnsd_metrics_route(const char *name);

/* The label of a metrics id ("other" when unknown). */
const char *icpnsd_metrics_route_name(unsigned id);

/* Counts one answered request. */
void icpnsd_metrics_request(unsigned route, unsigned status, double seconds);

/* The snapshot figures of the unlabelled gauges (the default set's). */
typedef struct icpnsd_metrics_snapshot {
    uint64_t version;
    double build_seconds;
    size_t bytes;
    uint64_t users, items, interactions;
} icpnsd_metrics_snapshot_t;

/* Appends the daemon-wide exposition to @b. */
void icpnsd_metrics_render(icpns_buf_t *b, const icpnsd_metrics_snapshot_t *snap, double uptime);

#endif
