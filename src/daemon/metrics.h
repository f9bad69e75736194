/* metrics.h - counters for /metrics (Prometheus text format 0.0.4). */
#ifndef ICPNSD_METRICS_H
#define ICPNSD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef enum route {
    R_NEGATIVES, R_USER, R_COMMUNITIES, R_COMMUNITY_ITEMS, R_HEALTHZ, R_READYZ, R_METRICS,
    R_ADMIN_RELOAD, R_ADMIN_INTERACTIONS, R_ADMIN_COMMUNITIES, R_ADMIN_SNAPSHOT, R_ADMIN_CLUSTER, R_TABLES, R_ADMIN_SETS, R_ADMIN_SET, R_OTHER,
    R_COUNT
} route_t;

#define N_STATUS 14
#define N_BUCKETS 14

typedef struct icpnsd_metrics {
    atomic_uint_fast64_t requests[R_COUNT][N_STATUS];
    atomic_uint_fast64_t latency_bucket[R_COUNT][N_BUCKETS];
    atomic_uint_fast64_t latency_count[R_COUNT];
    atomic_uint_fast64_t latency_sum_us[R_COUNT];
    atomic_uint_fast64_t negatives[3];   /* by strategy */
    atomic_uint_fast64_t draws, rejections, residual_rows, fallback_rows, substituted_rows;
    atomic_uint_fast64_t reloads_ok, reloads_failed, updates_ok, updates_failed;
    atomic_uint_fast64_t rebuilds_full, rebuilds_patch;
    atomic_uint_fast64_t bytes_in, bytes_out;
} icpnsd_metrics_t;

extern icpnsd_metrics_t icpnsd_metrics;

const char *icpnsd_route_name(route_t r);
void icpnsd_metrics_request(route_t r, unsigned status, double seconds);

/* Appends the text exposition to a new buffer (caller frees). Snapshot
 * figures are passed in by the caller. */
char *icpnsd_metrics_render(uint64_t version, double build_seconds, size_t snapshot_bytes,
                            uint64_t users, uint64_t items, uint64_t interactions,
                            double uptime, size_t *ret_len);

#endif
