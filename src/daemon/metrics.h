/*
 * metrics.h - the counters of /metrics (Prometheus text format 0.0.4):
 * daemon-wide ones in one global, a table set's in its icpnsd_setstats_t.
 * Counters are lock-free; the per-route series are indexed by a route's
 * metrics id, which the server registers once per route label at start-up
 * (routes sharing a label share its series).  docs/operations.md lists
 * every family and what it counts.
 */
#ifndef ICPNSD_METRICS_H
#define ICPNSD_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "icpns/buf.h"

#define ICPNSD_METRICS_ROUTES 48
#define ICPNSD_METRICS_STATUSES 19
#define ICPNSD_METRICS_BUCKETS 14

typedef struct icpnsd_metrics {
    atomic_uint_fast64_t requests[ICPNSD_METRICS_ROUTES][ICPNSD_METRICS_STATUSES];
    atomic_uint_fast64_t latency_bucket[ICPNSD_METRICS_ROUTES][ICPNSD_METRICS_BUCKETS];
    atomic_uint_fast64_t latency_count[ICPNSD_METRICS_ROUTES];
    atomic_uint_fast64_t latency_sum_us[ICPNSD_METRICS_ROUTES];
    atomic_uint_fast64_t bytes_in, bytes_out;
    atomic_uint_fast64_t connections_refused; /* at max_connections or the per-IP cap */
    atomic_uint_fast64_t accept_errors;       /* no file descriptor left */
    atomic_uint_fast64_t tls_handshake_failures; /* plain HTTP on HTTPS, untrusted certs */
    atomic_uint_fast64_t answers_streamed, answers_refused;
    atomic_uint_fast64_t auth_failures_admin, auth_failures_api, auth_throttled;
} icpnsd_metrics_t;

/* The kinds of update a table set counts (icpnsd_updates_total{kind}). */
enum { ICPNSD_UPDATE_INTERACTIONS, ICPNSD_UPDATE_COMMUNITIES, ICPNSD_UPDATE_CLUSTER,
       ICPNSD_UPDATE_KINDS };

/*
 * The counters of one table set (the series labelled tables="NAME").  The
 * set owns one reference; answers being drawn hold another, so a streamed
 * answer that outlives the removal of its set still counts into live
 * memory.  Counters only: the gauges are read from the set when rendered.
 */
typedef struct icpnsd_setstats {
    atomic_uint refs;
    atomic_uint_fast64_t rows;           /* request rows answered, any strategy */
    atomic_uint_fast64_t negatives[3];   /* by strategy (uniform, popularity, icpns) */
    atomic_uint_fast64_t draws, rejections, residual_rows, fallback_rows, substituted_rows;
    atomic_uint_fast64_t reloads_ok, reloads_failed;
    atomic_uint_fast64_t updates_ok[ICPNSD_UPDATE_KINDS], updates_failed[ICPNSD_UPDATE_KINDS];
    atomic_uint_fast64_t rebuilds_full, rebuilds_patch;
} icpnsd_setstats_t;

/* New zeroed counters with one reference, or NULL when out of memory. */
icpnsd_setstats_t *icpnsd_setstats_new(void);

/* Adds a reference to @st and returns it (NULL stays NULL). */
icpnsd_setstats_t *icpnsd_setstats_ref(icpnsd_setstats_t *st);

/* Drops a reference; the last one frees.  Accepts NULL. */
void icpnsd_setstats_unref(icpnsd_setstats_t *st);

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

/* What the daemon-wide gauges show, gathered by the handler. */
typedef struct icpnsd_metrics_daemon {
    bool ready;                   /* as GET /readyz */
    unsigned connections;         /* open on the main listener */
    unsigned max_connections;     /* the cap (0: none) */
    uint64_t answer_bytes;        /* held by answers in flight */
    uint64_t answer_bytes_max;    /* answers_in_flight_bytes (0: none) */
    uint64_t budget_used;         /* what memory_budget counts: snapshots and weight caches */
    uint64_t budget;              /* memory_budget (0: none) */
} icpnsd_metrics_daemon_t;

/*
 * Appends the daemon-wide families to @b: build info, requests, latency,
 * connections, authentication, answers, the gauges of @d, and the process
 * families (process_*: CPU, memory, file descriptors, start time) in the
 * names Prometheus' client libraries use.  The per-set families follow,
 * from icpnsd_metrics_render_sets (metrics_sets.h).  Appends nothing on failure other than
 * what @b records (b->failed when out of memory).
 */
void icpnsd_metrics_render(icpns_buf_t *b, const icpnsd_metrics_daemon_t *d);

#endif
