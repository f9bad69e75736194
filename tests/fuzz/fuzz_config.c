/* Fuzz the configuration parser (key = value text). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icpnsd_config_t c;
    icpnsd_config_default(&c);
    char err[600] = "";
    if (icpnsd_config_parse(&c, (const char *)data, size, "fuzz.conf", err, sizeof(err))) {
        if (!err[0])
            abort();
    } else if (c.threads < 1 || c.max_body_bytes < 1024 || !memchr(c.listen, '\0', sizeof(c.listen))) {
        abort();
    }
    return 0;
}
