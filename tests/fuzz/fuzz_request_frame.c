/* Fuzz the binary frame request parser. */
#include <stdint.h>
#include <stdlib.h>
#include "frames.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icpnsd_config_t cfg;
    icpnsd_config_default(&cfg);
    icpnsd_negreq_t q = {0};
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    if (icpnsd_frame_parse_negatives(&cfg, (const char *)data, size, &q, &e) == 0) {
        if (size != ICPNSD_FRAME_REQ_HEADER + (size_t)q.rows * 8 || q.n < 1 || q.m < 1)
            abort();
        for (uint32_t k = 0; k < q.rows; k++)
            if (q.users[k] < 0)
                abort();
    } else if (e.code == ICPNSD_E_OK) {
        abort();
    }
    icpnsd_negreq_free(&q);
    return 0;
}
