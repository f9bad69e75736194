/* config.h - icpnsd's configuration: a key = value file, then flags. */
#ifndef ICPNSD_CONFIG_H
#define ICPNSD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "icpns/common.h"
#include "proxy.h"

#define ICPNSD_MAX_SETS 64
#define ICPNSD_SET_NAME 64

/* A named table set from the configuration (tables.NAME = DIR). */
typedef struct icpnsd_set_conf {
    char name[ICPNSD_SET_NAME];
    char dir[1024];
} icpnsd_set_conf_t;

typedef struct icpnsd_config {
    char listen[256];          /* ADDR:PORT; [v6]:PORT */
    char admin_listen[256];    /* optional separate listener for /admin */
    char tables[1024];         /* table directory; empty = built-in dataset */
    char admin_token_file[1024];
    char api_token_file[1024]; /* tokens for the v1 routes, one a line; empty: open */
    char tls_cert[1024];       /* PEM certificate chain: HTTPS on every listener */
    char tls_key[1024];        /* its private key */
    char state_dir[1024];      /* uploaded table sets go to STATE/sets/NAME; empty: no uploads */
    int metrics_auth;          /* ICPNSD_METRICS_*: who may read /metrics */
    char trusted_proxies[1024]; /* peers whose X-Forwarded-For names the client */
    icpnsd_proxies_t proxies;  /* ... parsed */
    unsigned threads;
    int log_level;
    bool watch;                /* reload when the table directory changes */
    unsigned watch_settle_ms;  /* the files must stay unchanged this long first */
    char default_strategy[16];
    uint32_t default_n;
    uint64_t max_body_bytes;
    uint64_t max_upload_bytes; /* POST /admin/cluster */
    uint32_t max_users;        /* rows per request */
    uint32_t max_n;
    uint32_t max_candidates;
    uint64_t max_negatives;    /* rows x n x candidates per request */
    unsigned connection_timeout;
    unsigned max_connections;
    unsigned max_connections_per_ip;
    unsigned shutdown_timeout;
    /* Table sets besides the default one ("tables"). */
    icpnsd_set_conf_t sets[ICPNSD_MAX_SETS];
    unsigned n_sets;
    uint64_t memory_budget;        /* bytes of snapshots + weight caches; 0 = none */
    uint64_t answer_buffer_bytes;  /* answers larger than this are streamed */
    uint64_t answers_in_flight_bytes; /* all answers being made or sent; 0 = no cap */
    uint32_t weights_cache_size;   /* per-request (alpha, epsilon, beta) settings kept per set */
    bool weights_wait;             /* a request for a setting being built waits (else 503) */
    unsigned cluster_threads;      /* k-means threads for POST /admin/cluster; 0 = online CPUs */
    /* Weight parameters of the table sets whose tables.json does not set
     * them (default_alpha, default_epsilon, default_beta). */
    icpns_params_t default_params;
} icpnsd_config_t;

enum { ICPNSD_METRICS_OPEN, ICPNSD_METRICS_API, ICPNSD_METRICS_ADMIN };

/* Whether @name is a valid table-set name: 1..63 of [A-Za-z0-9._-]. */
bool icpnsd_set_name_ok(const char *name);

void icpnsd_config_default(icpnsd_config_t *c);

/*
 * Reads @path into @c (keys absent keep their value).  On error returns -1
 * and writes "path:line: message" into @errbuf.
 */
int icpnsd_config_load(icpnsd_config_t *c, const char *path, char *errbuf, size_t errsize);

/* Parses configuration text (@name for messages); as icpnsd_config_load. */
int icpnsd_config_parse(icpnsd_config_t *c, const char *buf, size_t len, const char *name,
                        char *errbuf, size_t errsize);

/* Sets one key from a string (used by the file and by flags). */
int icpnsd_config_set(icpnsd_config_t *c, const char *key, const char *value,
                      char *errbuf, size_t errsize);

#endif
