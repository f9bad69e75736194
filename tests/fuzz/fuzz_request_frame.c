/* Fuzz the binary frame request parser. */
#include <stdint.h>
#include <stdlib.h>
#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icpnsd_config_t cfg;
    icpnsd_config_default(&cfg);
    neg_req_t q = {0};
    icpnsd_reqerr_t e;
    if (icpnsd_parse_negatives_frame(&cfg, (const char *)data, size, &q, &e) == 0) {
        if (size != FRAME_REQ_HEADER + (size_t)q.rows * 8 || q.n < 1 || q.m < 1)
            abort();
        for (uint32_t k = 0; k < q.rows; k++)
            if (q.users[k] < 0)
                abort();
    } else if (e.status < 400 || !e.code[0]) {
        abort();
    }
    icpnsd_neg_req_free(&q);
    return 0;
}
