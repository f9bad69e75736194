/*
 * api.h - the handlers of the HTTP API, by resource (one file each:
 * api_negatives.c, api_info.c, api_admin.c, api_sets.c).  Each runs on an
 * HTTP thread after the generic checks of its route (routes.c); it answers
 * with the functions of reply.h, or puts the request to sleep (req.h).
 */
#ifndef ICPNSD_API_H
#define ICPNSD_API_H

#include "req.h"

/* api_negatives.c */
enum MHD_Result icpnsd_api_negatives(icpnsd_req_t *r);

/* api_info.c */
enum MHD_Result icpnsd_api_healthz(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_readyz(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_metrics(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_user(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_communities(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_items(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_community_items(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_tables(icpnsd_req_t *r);

/* api_admin.c */
enum MHD_Result icpnsd_api_reload(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_interactions(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_communities_update(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_cluster(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_snapshot(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_jobs(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_job(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_job_cancel(icpnsd_req_t *r);

/* api_sets.c */
enum MHD_Result icpnsd_api_sets_list(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_sets_add(icpnsd_req_t *r);
enum MHD_Result icpnsd_api_sets_remove(icpnsd_req_t *r);

#endif
