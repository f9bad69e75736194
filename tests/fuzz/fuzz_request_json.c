/* Fuzz the JSON negatives request parser. */
#include <stdint.h>
#include <stdlib.h>
#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icpnsd_config_t cfg;
    icpnsd_config_default(&cfg);
    cfg.max_users = 4096;
    neg_req_t q = {0};
    icpnsd_reqerr_t e;
    if (icpnsd_parse_negatives_json(&cfg, ICPNS_STRATEGY_ICPNS, 1, (const char *)data, size, &q, &e) == 0) {
        /* Accepted requests respect the limits. */
        if (q.rows > cfg.max_users || q.n < 1 || q.n > cfg.max_n || q.m < 1 || q.nparts < 1)
            abort();
    } else if (e.status < 400 || e.status > 599 || !e.code[0]) {
        abort();
    }
    icpnsd_neg_req_free(&q);
    return 0;
}
