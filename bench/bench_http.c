/*
 * bench_http - a small keep-alive HTTP/1.1 load generator for icpnsd on
 * loopback: C threads, each with one connection, sending the same
 * negatives request (binary frame or JSON) in a loop for a fixed time, with
 * an optional thread that posts /admin/reload continuously.
 *
 * Usage: bench_http PORT {binary|json} USERS N SECONDS CONNS [TOKEN]
 * Prints one markdown table row: negatives/s, requests/s, p50, p99.
 *
 * BENCH_USER_RANGE=R spreads the request's users over ids 1..R (default
 * 1000, the built-in dataset); BENCH_TLS=1 speaks HTTPS (GnuTLS, the
 * certificate not verified: loopback only).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "icpns.h"

static int port;
static char *req;
static size_t req_len;
static double seconds;
static atomic_bool stop_flag;
static const char *token;
static atomic_ulong reloads;

typedef struct worker {
    pthread_t t;
    double *lat;
    size_t nlat, cap;
    uint64_t bytes;
    int errors;
} worker_t;

static bool use_tls;
static gnutls_certificate_credentials_t tls_cred;

/* A connection: a socket, and a TLS session over it with BENCH_TLS. */
typedef struct conn {
    int fd;
    gnutls_session_t tls;
} conn_t;

static conn_t connect_lo(void)
{
    conn_t c = {socket(AF_INET, SOCK_STREAM, 0), NULL};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("connect");
        exit(1);
    }
    if (use_tls) {
        gnutls_init(&c.tls, GNUTLS_CLIENT);
        gnutls_set_default_priority(c.tls);
        gnutls_credentials_set(c.tls, GNUTLS_CRD_CERTIFICATE, tls_cred);
        gnutls_transport_set_int(c.tls, c.fd);
        int rc;
        do
            rc = gnutls_handshake(c.tls);
        while (rc < 0 && !gnutls_error_is_fatal(rc));
        if (rc < 0) {
            fprintf(stderr, "TLS handshake: %s\n", gnutls_strerror(rc));
            exit(1);
        }
    }
    return c;
}

static void conn_close(conn_t *c)
{
    if (c->tls) {
        gnutls_bye(c->tls, GNUTLS_SHUT_WR);
        gnutls_deinit(c->tls);
        c->tls = NULL;
    }
    close(c->fd);
}

static ssize_t conn_write(conn_t *c, const void *p, size_t n)
{
    return c->tls ? gnutls_record_send(c->tls, p, n) : write(c->fd, p, n);
}

static ssize_t conn_read(conn_t *c, void *p, size_t n)
{
    return c->tls ? gnutls_record_recv(c->tls, p, n) : read(c->fd, p, n);
}

/* Sends @msg and reads one response; returns the status or -1. */
static int roundtrip(conn_t *c, const char *msg, size_t len, char **buf, size_t *cap,
                     uint64_t *bytes)
{
    size_t off = 0;
    while (off < len) {
        ssize_t k = conn_write(c, msg + off, len - off);
        if (k <= 0)
            return -1;
        off += (size_t)k;
    }
    size_t have = 0;
    char *hdr_end = NULL;
    for (;;) {
        if (have + 65536 > *cap) {
            *cap = (*cap ? *cap * 2 : 1 << 20) + have;
            *buf = realloc(*buf, *cap);
        }
        ssize_t k = conn_read(c, *buf + have, *cap - have - 1);
        if (k <= 0)
            return -1;
        have += (size_t)k;
        (*buf)[have] = '\0';
        if (!hdr_end && (hdr_end = strstr(*buf, "\r\n\r\n"))) {
            /* fallthrough to length check */
        }
        if (hdr_end) {
            char *cl = strcasestr(*buf, "Content-Length:");
            size_t body = cl ? strtoull(cl + 15, NULL, 10) : 0;
            size_t total = (size_t)(hdr_end + 4 - *buf) + body;
            if (have >= total) {
                *bytes += body;
                return atoi(*buf + 9);
            }
            if (total + 1 > *cap) {
                size_t hoff = (size_t)(hdr_end - *buf);
                *cap = total + 1;
                *buf = realloc(*buf, *cap);
                hdr_end = *buf + hoff;
            }
        }
    }
}

static void *work(void *arg)
{
    worker_t *w = arg;
    conn_t c = connect_lo();
    char *buf = NULL;
    size_t cap = 0;
    double end = icpns_now() + seconds;
    while (icpns_now() < end) {
        double t0 = icpns_now();
        int st = roundtrip(&c, req, req_len, &buf, &cap, &w->bytes);
        if (st != 200) {
            w->errors++;
            conn_close(&c);
            c = connect_lo();
            continue;
        }
        if (w->nlat == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 4096;
            w->lat = realloc(w->lat, w->cap * sizeof(double));
        }
        w->lat[w->nlat++] = icpns_now() - t0;
    }
    conn_close(&c);
    free(buf);
    return NULL;
}

static void *reloader(void *arg)
{
    (void)arg;
    char msg[512];
    int n = snprintf(msg, sizeof(msg),
                     "POST /admin/reload HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer %s\r\n"
                     "Content-Length: 0\r\n\r\n", token);
    conn_t c = connect_lo();
    char *buf = NULL;
    size_t cap = 0;
    uint64_t bytes = 0;
    while (!atomic_load(&stop_flag)) {
        if (roundtrip(&c, msg, (size_t)n, &buf, &cap, &bytes) == 200)
            atomic_fetch_add(&reloads, 1);
    }
    conn_close(&c);
    free(buf);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: bench_http PORT binary|json USERS N SECONDS CONNS [TOKEN]\n");
        return 2;
    }
    port = atoi(argv[1]);
    bool binary = !strcmp(argv[2], "binary");
    uint32_t users = (uint32_t)atoi(argv[3]), n = (uint32_t)atoi(argv[4]);
    seconds = atof(argv[5]);
    int conns = atoi(argv[6]);
    token = argc > 7 ? argv[7] : NULL;
    const char *range_env = getenv("BENCH_USER_RANGE");
    uint64_t range = range_env ? strtoull(range_env, NULL, 10) : 1000;
    if (range < 1)
        range = 1;
    use_tls = getenv("BENCH_TLS") && !strcmp(getenv("BENCH_TLS"), "1");
    if (use_tls) {
        gnutls_global_init();
        gnutls_certificate_allocate_credentials(&tls_cred);
    }

    /* The body: USERS ids spread over 1..range (the built-in dataset's
     * 1..1000 by default). */
    size_t cap = 256 + (size_t)users * 24;
    char *body = malloc(cap);
    size_t blen = 0;
    if (binary) {
        unsigned char *p = (unsigned char *)body;
        memset(p, 0, 40);
        memcpy(p, "ICPQ", 4);
        p[4] = 1;
        memcpy(p + 8, &n, 4);
        uint32_t one = 1;
        memcpy(p + 12, &one, 4);
        p[16] = 2;
        memcpy(p + 20, &users, 4);
        uint64_t seed = 7;
        memcpy(p + 24, &seed, 8);
        for (uint32_t k = 0; k < users; k++) {
            int64_t id = 1 + (int64_t)(((uint64_t)k * 7919) % range);
            memcpy(p + 40 + (size_t)k * 8, &id, 8);
        }
        blen = 40 + (size_t)users * 8;
    } else {
        blen = (size_t)snprintf(body, cap, "{\"n\":%u,\"seed\":7,\"users\":[", n);
        for (uint32_t k = 0; k < users; k++)
            blen += (size_t)snprintf(body + blen, cap - blen, k ? ",%llu" : "%llu",
                                     (unsigned long long)(1 + ((uint64_t)k * 7919) % range));
        blen += (size_t)snprintf(body + blen, cap - blen, "]}");
    }
    req = malloc(blen + 512);
    req_len = (size_t)snprintf(req, 512,
                               "POST /v1/negatives HTTP/1.1\r\nHost: bench\r\nContent-Type: %s\r\n"
                               "Content-Length: %zu\r\n\r\n",
                               binary ? "application/x-icpns-frame" : "application/json", blen);
    memcpy(req + req_len, body, blen);
    req_len += blen;
    free(body);

    worker_t *ws = calloc((size_t)conns, sizeof(*ws));
    pthread_t rl;
    if (token)
        pthread_create(&rl, NULL, reloader, NULL);
    for (int k = 0; k < conns; k++)
        pthread_create(&ws[k].t, NULL, work, &ws[k]);
    size_t total = 0;
    int errors = 0;
    for (int k = 0; k < conns; k++) {
        pthread_join(ws[k].t, NULL);
        total += ws[k].nlat;
        errors += ws[k].errors;
    }
    atomic_store(&stop_flag, true);
    if (token)
        pthread_join(rl, NULL);
    double *all = malloc((total ? total : 1) * sizeof(double));
    size_t off = 0;
    for (int k = 0; k < conns; k++) {
        memcpy(all + off, ws[k].lat, ws[k].nlat * sizeof(double));
        off += ws[k].nlat;
        free(ws[k].lat);
    }
    qsort(all, total, sizeof(double), cmp_d);
    double p50 = total ? all[total / 2] : 0, p99 = total ? all[(size_t)(total * 0.99)] : 0;
    printf("| %s%s | %u | %u | %d | %s | %.2f M | %.0f | %.2f ms | %.2f ms | %d | %lu |\n",
           binary ? "binary" : "JSON", use_tls ? " (TLS)" : "", users, n, conns, token ? "yes" : "no",
           (double)total * users * n / seconds / 1e6, (double)total / seconds, p50 * 1e3,
           p99 * 1e3, errors, (unsigned long)atomic_load(&reloads));
    free(all);
    free(ws);
    free(req);
    if (use_tls) {
        gnutls_certificate_free_credentials(tls_cred);
        gnutls_global_deinit();
    }
    return errors ? 1 : 0;
}
