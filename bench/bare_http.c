/*
 * bare_http - the HTTP ceiling for bench/http_ceiling.py: libmicrohttpd set
 * up as icpnsd sets it up (epoll, a pool of THREADS threads, turbo), which
 * reads a POSTed ICPQ request frame and answers with a frame of the size
 * icpnsd's answer would have (32-byte header + rows x n item ids, + float
 * probabilities when asked), without sampling anything.  What icpnsd does
 * beyond this is the sampler and its own request handling.
 *
 * Usage: bare_http [PORT [THREADS]]   (PORT 0: a free one, printed)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ANSWER ((size_t)256 << 20)

static char *zeros; /* MAX_ANSWER bytes the answers are cut from */

typedef struct upload {
    unsigned char head[40];
    size_t got;
} upload_t;

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **ctx)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    upload_t *u = *ctx;
    if (!u) {
        u = calloc(1, sizeof(*u));
        if (!u)
            return MHD_NO;
        *ctx = u;
        return MHD_YES;
    }
    if (*size) {
        if (u->got < sizeof(u->head)) {
            size_t k = sizeof(u->head) - u->got < *size ? sizeof(u->head) - u->got : *size;
            memcpy(u->head + u->got, data, k);
        }
        u->got += *size;
        *size = 0;
        return MHD_YES;
    }
    uint32_t n = 0, rows = 0;
    uint16_t flags = 0;
    if (u->got >= sizeof(u->head)) {
        memcpy(&flags, u->head + 6, 2);
        memcpy(&n, u->head + 8, 4);
        memcpy(&rows, u->head + 20, 4);
    }
    size_t bytes = 32 + (size_t)rows * n * (8 + ((flags & 1) ? 4 : 0));
    if (bytes > MAX_ANSWER)
        bytes = MAX_ANSWER;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(bytes, zeros, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/x-icpns-frame");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **ctx,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*ctx);
    *ctx = NULL;
}

int main(int argc, char **argv)
{
    unsigned port = argc > 1 ? (unsigned)atoi(argv[1]) : 0;
    unsigned threads = argc > 2 ? (unsigned)atoi(argv[2]) : 2;
    zeros = calloc(1, MAX_ANSWER);
    if (!zeros)
        return 1;
    /* Signals are taken by sigwait below, never by the server's threads. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO | MHD_USE_ERROR_LOG, (uint16_t)port, NULL,
        NULL, handle, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)128 * 1024, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "bare_http: cannot start libmicrohttpd\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening on 127.0.0.1:%u\n", info ? info->port : port);
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    free(zeros);
    return 0;
}
