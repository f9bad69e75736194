/*
 * Fuzz the POST /admin/cluster parsers: the first byte picks JSON, an ICPE
 * frame or .npy; accepted uploads are checked and, when small, clustered.
 */
#include <stdint.h>
#include <stdlib.h>
#include "frames.h"
#include "upload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    icpnsd_clusterreq_t q;
    icpnsd_clusterreq_init(&q);
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    int rc;
    switch (data[0] % 3) {
    case 0: rc = icpnsd_clusterreq_parse_json(body, len, &q, &e); break;
    case 1: rc = icpnsd_frame_parse_embeddings(body, len, &q, &e); break;
    default: rc = icpnsd_clusterreq_parse_npy(body, len, &q, &e); break;
    }
    if (!rc)
        rc = icpnsd_clusterreq_check(&q, &e);
    if (rc) {
        if (e.code == ICPNSD_E_OK)
            abort();
    } else {
        if (q.emb.n == 0 || q.emb.dim == 0 || q.ko.k < 1 || q.ko.k > q.emb.n)
            abort();
        if ((uint64_t)q.emb.n * q.emb.dim <= 4096) {
            q.ko.restarts = 1;
            q.ko.max_iter = 20;
            icpns_kmeans_result_t r;
            icpns_error_t err;
            if (icpns_kmeans(q.emb.x, q.emb.n, q.emb.dim, &q.ko, &r, &err) == 0) {
                for (uint32_t i = 0; i < q.emb.n; i++)
                    if (r.labels[i] >= q.ko.k)
                        abort();
                icpns_kmeans_result_free(&r);
            } else if (err.code != ICPNS_ELIMIT && err.code != ICPNS_EINVAL) {
                abort();
            }
        }
    }
    icpnsd_clusterreq_free(&q);
    return 0;
}
