/* jobs.c - job payloads and their lifetime (see jobs.h). */
#include <stdio.h>
#include <stdlib.h>

#include "jobs.h"

icpnsd_job_t *icpnsd_job_new(icpnsd_job_kind_t kind, const char *origin)
{
    icpnsd_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->kind = kind;
    snprintf(j->origin, sizeof(j->origin), "%s", origin ? origin : "?");
    icpnsd_err_clear(&j->err);
    return j;
}

void icpnsd_job_free(icpnsd_job_t *j)
{
    if (!j)
        return;
    switch (j->kind) {
    case ICPNSD_JOB_INTERACTIONS:
    case ICPNSD_JOB_COMMUNITIES:
        free(j->u.update.pairs);
        break;
    case ICPNSD_JOB_CLUSTER:
        if (j->u.cluster.req) {
            icpnsd_clusterreq_free(j->u.cluster.req);
            free(j->u.cluster.req);
        }
        free(j->u.cluster.assign.pairs);
        free(j->u.cluster.sizes);
        break;
    case ICPNSD_JOB_SET_ADD:
        if (j->u.set.upload) {
            icpnsd_tableset_free(j->u.set.upload);
            free(j->u.set.upload);
        }
        break;
    case ICPNSD_JOB_RELOAD:
    case ICPNSD_JOB_SET_REMOVE:
        break;
    }
    free(j);
}

icpnsd_job_update_t *icpnsd_job_update(icpnsd_job_t *j)
{
    switch (j->kind) {
    case ICPNSD_JOB_INTERACTIONS:
    case ICPNSD_JOB_COMMUNITIES:
        return &j->u.update;
    case ICPNSD_JOB_CLUSTER:
        return &j->u.cluster.assign;
    default:
        return NULL;
    }
}

void icpnsd_job_fail(icpnsd_job_t *j, const icpnsd_err_t *e)
{
    if (!icpnsd_err_failed(&j->err))
        icpnsd_err_copy(&j->err, e);
}

void icpnsd_job_finish(icpnsd_job_t *j)
{
    j->finished = true;
    if (j->done_cb)
        j->done_cb(j);
    else
        icpnsd_job_free(j);
}
