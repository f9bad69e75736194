/*
 * metrics_sets.h - the per-set families of /metrics (see metrics.h for the
 * daemon-wide ones).
 */
#ifndef ICPNSD_METRICS_SETS_H
#define ICPNSD_METRICS_SETS_H

#include "icpns/buf.h"

struct icpnsd_registry;

/*
 * Appends the families of every set of @reg to @b: the serving snapshot's
 * gauges, its fingerprint, the weight caches and the set's counters, each
 * family's HELP and TYPE once, one series per set labelled tables="NAME".
 * Each set's snapshot is taken once, so that its series describe one
 * version even when a reload publishes another meanwhile.  Out of memory
 * is recorded in @b (b->failed).
 */
void icpnsd_metrics_render_sets(icpns_buf_t *b, struct icpnsd_registry *reg);

#endif
