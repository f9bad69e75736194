/*
 * Fuzz the POST /admin/sets parsers: the first byte picks the JSON body or
 * an ICPT frame.  Refusals carry a code; accepted uploads have a name and
 * interactions, non-negative ids, and one community per user.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "frames.h"
#include "upload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    icpnsd_tableset_t t;
    memset(&t, 0, sizeof(t));
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    char dir[1024];
    int rc;
    if (data[0] & 1) {
        rc = icpnsd_tableset_opt(&t, "name", "fuzz", &e);
        if (!rc)
            rc = icpnsd_frame_parse_tableset(body, len, &t, &e);
        dir[0] = '\0';
    } else {
        rc = icpnsd_sets_post_parse(body, len, &t, dir, sizeof(dir), &e);
    }
    bool upload = !rc && !dir[0];
    if (upload)
        rc = icpnsd_tableset_check(&t, &e);
    if (rc) {
        if (e.code == ICPNSD_E_OK)
            abort();
    } else if (upload) {
        if (!t.name[0] || t.n_inter == 0 || !t.inter || (t.n_comm && !t.comm))
            abort();
        for (size_t k = 0; k < t.n_inter; k++)
            if (t.inter[k].a < 0 || t.inter[k].b < 0)
                abort();
        for (size_t k = 0; k < t.n_comm; k++)
            for (size_t j = k + 1; j < t.n_comm && j < k + 64; j++)
                if (t.comm[k].a == t.comm[j].a && t.comm[k].b != t.comm[j].b)
                    abort();
    } else if (!t.name[0]) {
        abort();
    }
    icpnsd_tableset_free(&t);
    return 0;
}
