/*
 * tracker.h - the jobs a client asked to run in the background
 * (POST /admin/cluster?async=true): an id to poll, their state and
 * progress while they run, their result once they ended.
 *
 * The tracker owns a tracked job from the moment it is added: when the
 * job ends (on the loop thread) its result is rendered to JSON by the
 * function given at registration, kept, and the job is freed.  Finished
 * entries are kept for an hour, and at most ICPNSD_TRACKED of them.
 */
#ifndef ICPNSD_TRACKER_H
#define ICPNSD_TRACKER_H

#include <stdbool.h>

#include "icpns.h"
#include "jobs.h"

#define ICPNSD_TRACKED 64
#define ICPNSD_JOB_ID 17

typedef struct icpnsd_tracker icpnsd_tracker_t;

/* Renders a finished job's successful result (a JSON object) into @b. */
typedef void (*icpnsd_render_fn)(const icpnsd_job_t *j, icpns_buf_t *b);

icpnsd_tracker_t *icpnsd_tracker_new(void);
void icpnsd_tracker_free(icpnsd_tracker_t *t);

/*
 * Tracks @j (which the caller then submits): sets its done callback, and
 * writes its new id to @ret_id.  false when out of memory (nothing done).
 */
bool icpnsd_tracker_add(icpnsd_tracker_t *t, icpnsd_job_t *j, const char *set_name,
                        icpnsd_render_fn render, char *ret_id);

/*
 * The JSON of job @id ({"job", "kind", "tables", "state", "progress"?,
 * "result"?, "error"?, times}) appended to @b; false when there is no such
 * job.
 */
bool icpnsd_tracker_show(icpnsd_tracker_t *t, const char *id, icpns_buf_t *b);

/* {"jobs": [every tracked job, newest first]} appended to @b. */
void icpnsd_tracker_list(icpnsd_tracker_t *t, icpns_buf_t *b);

/* Asks job @id to stop (k-means); false when there is no such job. */
bool icpnsd_tracker_cancel(icpnsd_tracker_t *t, const char *id);

#endif
