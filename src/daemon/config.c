/* config.c - the key = value configuration file (see configs/icpnsd.conf). */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "icpns.h"
#include "log.h"

void icpnsd_config_default(icpnsd_config_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen, sizeof(c->listen), "127.0.0.1:8470");
    c->threads = 2;
    c->log_level = LOG_LVL_INFO;
    snprintf(c->default_strategy, sizeof(c->default_strategy), "icpns");
    c->default_n = 4;
    c->max_body_bytes = 64u << 20;
    c->max_upload_bytes = UINT64_C(1) << 30;
    c->max_users = 1u << 20;
    c->max_n = 100000;
    c->max_candidates = 1024;
    c->max_negatives = 64u << 20;
    c->connection_timeout = 30;
    c->max_connections = 1024;
    c->max_connections_per_ip = 256;
    c->shutdown_timeout = 10;
    c->watch_settle_ms = 2000;
    c->answer_buffer_bytes = 32u << 20;
    c->answers_in_flight_bytes = UINT64_C(1) << 30;
    c->weights_cache_size = 8;
    c->weights_wait = true;
    icpns_params_default(&c->default_params);
}

bool icpnsd_set_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= ICPNSD_SET_NAME)
        return false;
    for (size_t k = 0; k < n; k++)
        if (!isalnum((unsigned char)name[k]) && !strchr("._-", name[k]))
            return false;
    return true;
}

static int parse_bool(const char *key, const char *v, bool *out, char *eb, size_t es)
{
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1"))
        *out = true;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0"))
        *out = false;
    else {
        snprintf(eb, es, "%s: expected true or false, got '%s'", key, v);
        return -1;
    }
    return 0;
}

#define ICPNSD_CONFIG_UNKNOWN (-2)

static int config_set(icpnsd_config_t *c, const char *key, const char *v, char *eb, size_t es);

/* A known key one edit away from @key (a letter inserted, dropped,
 * changed, or two swapped), found by asking config_set itself, so there is
 * no second list of keys to keep in step; @out empty when none. */
static void suggest_key(const char *key, char *out, size_t size)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz_";
    size_t n = strlen(key);
    out[0] = '\0';
    if (n == 0 || n > 40)
        return;
    icpnsd_config_t *scratch = malloc(sizeof(*scratch));
    if (!scratch)
        return;
    char cand[48], eb[256];
    for (int op = 0; op < 4 && !out[0]; op++)
        for (size_t i = 0; i <= n && !out[0]; i++)
            for (size_t a = 0; a < (op == 1 || op == 3 ? 1 : sizeof(alphabet) - 1) && !out[0];
                 a++) {
                if (op == 0) { /* insert */
                    snprintf(cand, sizeof(cand), "%.*s%c%s", (int)i, key, alphabet[a], key + i);
                } else if (op == 1) { /* delete */
                    if (i == n)
                        continue;
                    snprintf(cand, sizeof(cand), "%.*s%s", (int)i, key, key + i + 1);
                } else if (op == 2) { /* substitute */
                    if (i == n || key[i] == alphabet[a])
                        continue;
                    snprintf(cand, sizeof(cand), "%.*s%c%s", (int)i, key, alphabet[a],
                             key + i + 1);
                } else { /* swap with the next */
                    if (i + 1 >= n)
                        continue;
                    snprintf(cand, sizeof(cand), "%s", key);
                    cand[i] = key[i + 1];
                    cand[i + 1] = key[i];
                }
                icpnsd_config_default(scratch);
                if (config_set(scratch, cand, "", eb, sizeof(eb)) != ICPNSD_CONFIG_UNKNOWN)
                    snprintf(out, size, "%s", cand);
            }
    free(scratch);
}

int icpnsd_config_set(icpnsd_config_t *c, const char *key, const char *v, char *eb, size_t es)
{
    int rc = config_set(c, key, v, eb, es);
    if (rc == ICPNSD_CONFIG_UNKNOWN) {
        char near[64];
        suggest_key(key, near, sizeof(near));
        if (near[0])
            snprintf(eb, es, "unknown key '%s' (did you mean '%s'?)", key, near);
        return -1;
    }
    return rc;
}

static int set_u64(const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)v[0]))
        return -1;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int config_set(icpnsd_config_t *c, const char *key, const char *v, char *eb, size_t es)
{
    uint64_t x;
#define STR(name)                                                              \
    if (!strcmp(key, #name)) {                                                 \
        if (strlen(v) >= sizeof(c->name))                                      \
            goto too_long;                                                     \
        snprintf(c->name, sizeof(c->name), "%s", v);                           \
        return 0;                                                              \
    }
#define NUM(name, lo, hi)                                                      \
    if (!strcmp(key, #name)) {                                                 \
        if (set_u64(v, lo, hi, &x)) {                                          \
            snprintf(eb, es, "%s: expected an integer in [%llu, %llu], got '%s'", key, \
                     (unsigned long long)(lo), (unsigned long long)(hi), v);   \
            return -1;                                                         \
        }                                                                      \
        c->name = x;                                                           \
        return 0;                                                              \
    }
    STR(listen)
    STR(admin_listen)
    STR(tables)
    STR(admin_token_file)
    STR(api_token_file)
    STR(tls_cert)
    STR(tls_key)
    STR(state_dir)
    NUM(threads, 1, 256)
    NUM(default_n, 1, 1000000)
    NUM(max_body_bytes, 1024, UINT64_C(1) << 40)
    NUM(max_upload_bytes, 1024, UINT64_C(1) << 40)
    NUM(max_users, 1, UINT32_MAX / 2)
    NUM(max_n, 1, UINT32_MAX / 2)
    NUM(max_candidates, 1, 65536)
    NUM(max_negatives, 1, UINT64_C(1) << 36)
    NUM(connection_timeout, 1, 86400)
    NUM(max_connections, 1, 1000000)
    NUM(max_connections_per_ip, 1, 1000000)
    NUM(shutdown_timeout, 0, 3600)
    NUM(watch_settle_ms, 50, 600000)
    NUM(memory_budget, 0, UINT64_C(1) << 50)
    NUM(answer_buffer_bytes, 65536, UINT64_C(1) << 40)
    NUM(answers_in_flight_bytes, 0, UINT64_C(1) << 50)
    NUM(weights_cache_size, 0, 1024)
    NUM(cluster_threads, 0, 256)
#undef STR
#undef NUM
    if (!strcmp(key, "trusted_proxies")) {
        if (strlen(v) >= sizeof(c->trusted_proxies)) {
            snprintf(eb, es, "trusted_proxies: too long");
            return -1;
        }
        if (icpnsd_proxies_parse(v, &c->proxies, eb, es))
            return -1;
        snprintf(c->trusted_proxies, sizeof(c->trusted_proxies), "%s", v);
        return 0;
    }
    if (!strcmp(key, "log_level")) {
        int l = icpnsd_log_parse_level(v);
        if (l < 0) {
            snprintf(eb, es, "log_level: expected error, warn, info or debug, got '%s'", v);
            return -1;
        }
        c->log_level = l;
        return 0;
    }
    if (!strcmp(key, "default_alpha") || !strcmp(key, "default_epsilon") ||
        !strcmp(key, "default_beta")) {
        icpns_params_t p = c->default_params;
        double *dst = key[8] == 'a' ? &p.alpha : key[8] == 'e' ? &p.epsilon : &p.beta;
        char *end;
        errno = 0;
        *dst = strtod(v, &end);
        icpns_error_t perr;
        if (errno || end == v || *end || icpns_params_check(&p, &perr)) {
            snprintf(eb, es, "%s: expected a number (alpha and beta in [0, 64], epsilon in "
                     "[0, 1e12]), got '%s'", key, v);
            return -1;
        }
        c->default_params = p;
        return 0;
    }
    if (!strcmp(key, "metrics_auth")) {
        if (!strcmp(v, "none"))
            c->metrics_auth = ICPNSD_METRICS_OPEN;
        else if (!strcmp(v, "api"))
            c->metrics_auth = ICPNSD_METRICS_API;
        else if (!strcmp(v, "admin"))
            c->metrics_auth = ICPNSD_METRICS_ADMIN;
        else {
            snprintf(eb, es, "metrics_auth: expected none, api or admin, got '%s'", v);
            return -1;
        }
        return 0;
    }
    if (!strcmp(key, "watch"))
        return parse_bool(key, v, &c->watch, eb, es);
    if (!strcmp(key, "weights_wait"))
        return parse_bool(key, v, &c->weights_wait, eb, es);
    if (!strncmp(key, "tables.", 7)) {
        const char *name = key + 7;
        if (!icpnsd_set_name_ok(name) || !strcmp(name, "default")) {
            snprintf(eb, es, "%s: a table-set name is 1..63 of [A-Za-z0-9._-] (and not 'default', "
                     "which is the plain 'tables' key)", key);
            return -1;
        }
        if (!v[0] || strlen(v) >= sizeof(c->sets[0].dir)) {
            snprintf(eb, es, "%s: expected a directory", key);
            return -1;
        }
        unsigned k = 0;
        while (k < c->n_sets && strcmp(c->sets[k].name, name))
            k++;
        if (k == c->n_sets) {
            if (c->n_sets == ICPNSD_MAX_SETS - 1) {
                snprintf(eb, es, "%s: at most %d table sets", key, ICPNSD_MAX_SETS - 1);
                return -1;
            }
            c->n_sets++;
        }
        snprintf(c->sets[k].name, sizeof(c->sets[k].name), "%s", name);
        snprintf(c->sets[k].dir, sizeof(c->sets[k].dir), "%s", v);
        return 0;
    }
    if (!strcmp(key, "default_strategy")) {
        if (strcmp(v, "icpns") && strcmp(v, "uniform") && strcmp(v, "popularity")) {
            snprintf(eb, es, "default_strategy: expected icpns, uniform or popularity, got '%s'", v);
            return -1;
        }
        snprintf(c->default_strategy, sizeof(c->default_strategy), "%s", v);
        return 0;
    }
    snprintf(eb, es, "unknown key '%s'", key);
    return ICPNSD_CONFIG_UNKNOWN;
too_long:
    snprintf(eb, es, "%s: value too long", key);
    return -1;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int icpnsd_config_parse(icpnsd_config_t *c, const char *buf, size_t len, const char *name,
                        char *eb, size_t es)
{
    char line[4096], msg[512];
    unsigned lineno = 0;
    for (const char *p = buf, *end = buf + len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((eol ? eol : end) - p);
        lineno++;
        if (n >= sizeof(line)) {
            snprintf(eb, es, "%s:%u: line longer than %zu bytes", name, lineno, sizeof(line) - 1);
            return -1;
        }
        if (memchr(p, '\0', n)) {
            snprintf(eb, es, "%s:%u: NUL byte in the line", name, lineno);
            return -1;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + 1;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(eb, es, "%s:%u: expected 'key = value'", name, lineno);
            return -1;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        size_t vn = strlen(val);
        if (vn >= 2 && val[0] == '"' && val[vn - 1] == '"') {
            val[vn - 1] = '\0';
            val++;
        }
        if (icpnsd_config_set(c, key, val, msg, sizeof(msg))) {
            snprintf(eb, es, "%s:%u: %s", name, lineno, msg);
            return -1;
        }
    }
    return 0;
}

int icpnsd_config_load(icpnsd_config_t *c, const char *path, char *eb, size_t es)
{
    char *buf;
    size_t len;
    icpns_error_t err;
    if (icpns_file_read(path, 1 << 20, &buf, &len, &err)) {
        icpns_error_format(&err, eb, es);
        return -1;
    }
    int rc = icpnsd_config_parse(c, buf, len, path, eb, es);
    free(buf);
    return rc;
}
