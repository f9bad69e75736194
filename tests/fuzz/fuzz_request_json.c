/*
 * Fuzz the JSON negatives request parser, differentially: the fast path for
 * the "users" array and jansson alone must accept the same requests, with
 * the same fields, and refuse the same ones with the same status and code.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "request.h"

static int parse(bool fast, const uint8_t *data, size_t size, icpnsd_negreq_t *q, icpnsd_err_t *e)
{
    icpnsd_config_t cfg;
    icpnsd_config_default(&cfg);
    cfg.max_users = 4096;
    icpnsd_json_fastpath = fast;
    memset(q, 0, sizeof(*q));
    icpnsd_err_clear(e);
    int rc = icpnsd_negreq_parse_json(&cfg, ICPNS_STRATEGY_ICPNS, 1, (const char *)data, size, q, e);
    if (rc == 0) {
        /* Accepted requests respect the limits. */
        if (q->rows > cfg.max_users || q->n < 1 || q->n > cfg.max_n || q->m < 1 || q->nparts < 1)
            abort();
    } else if (e->code == ICPNSD_E_OK) {
        abort();
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icpnsd_negreq_t a, b;
    icpnsd_err_t ea, eb;
    int ra = parse(true, data, size, &a, &ea), rb = parse(false, data, size, &b, &eb);
    if (ra != rb)
        abort();
    if (ra == 0) {
        if (a.rows != b.rows || memcmp(a.users, b.users, (size_t)a.rows * sizeof(*a.users)) ||
            a.n != b.n || a.m != b.m || a.seed != b.seed || a.probs != b.probs ||
            a.flags != b.flags || a.nparts != b.nparts || strcmp(a.tables, b.tables) ||
            a.has_alpha != b.has_alpha || (a.has_alpha && a.alpha != b.alpha))
            abort();
    } else if (ea.code != eb.code || ea.row != eb.row) {
        abort();
    }
    icpnsd_negreq_free(&a);
    icpnsd_negreq_free(&b);
    icpnsd_json_fastpath = true;
    return 0;
}
