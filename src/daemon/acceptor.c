/* acceptor.c - listening sockets and the accepting thread (see acceptor.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acceptor.h"
#include "icpns.h"
#include "log.h"
#include "metrics.h"

/* Refused sockets linger a moment before they are closed (see
 * icpnsd_acceptor_refuse). */
#define LINGER_MAX 256
#define LINGER_SECONDS 0.5

struct icpnsd_acceptor {
    int fd[2];            /* main, admin (-1 when none) */
    int linger[LINGER_MAX];
    double linger_until[LINGER_MAX];
    int n_linger;
    int wake[2];          /* a pipe that interrupts poll() to stop */
    pthread_t thread;
    bool running;
    atomic_bool stopping;
    icpnsd_accept_cb cb;
    void *ctx;
    atomic_uint_fast64_t fd_errors;
    double last_warn;
};

/* Parses "HOST:PORT" / "[V6]:PORT" into @ss. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *err,
                        size_t es)
{
    char host[256];
    const char *colon;
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            goto bad;
        snprintf(host, sizeof(host), "%.*s", (int)(end - s - 1), s + 1);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            goto bad;
        snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
    }
    char *e;
    long port = strtol(colon + 1, &e, 10);
    if (*e || port < 0 || port > 65535 || colon[1] == '\0')
        goto bad;
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (!strcmp(host, "localhost"))
        snprintf(host, sizeof(host), "127.0.0.1");
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a6);
        return 0;
    }
bad:
    snprintf(err, es, "listen address '%s' is not IPv4:PORT or [IPv6]:PORT", s);
    return -1;
}

static uint16_t bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

static int open_listener(const char *addr, char *err, size_t es)
{
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    if (parse_listen(addr, &ss, &sl, err, es))
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, es, "cannot listen on %s: %s", addr, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 1024) < 0) {
        snprintf(err, es, "cannot listen on %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

icpnsd_acceptor_t *icpnsd_acceptor_new(const char *listen_addr, int inherited_fd,
                                       const char *admin_listen, uint16_t *ret_port,
                                       uint16_t *ret_admin_port, char *err, size_t es)
{
    icpnsd_acceptor_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, es, "out of memory");
        return NULL;
    }
    a->fd[0] = a->fd[1] = a->wake[0] = a->wake[1] = -1;
    if (inherited_fd >= 0) {
        a->fd[0] = inherited_fd;
        int fl = fcntl(inherited_fd, F_GETFL);
        if (fl < 0 || fcntl(inherited_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            snprintf(err, es, "the inherited socket: %s", strerror(errno));
            goto fail;
        }
    } else if ((a->fd[0] = open_listener(listen_addr, err, es)) < 0) {
        goto fail;
    }
    *ret_port = bound_port(a->fd[0]);
    if (admin_listen && admin_listen[0]) {
        if ((a->fd[1] = open_listener(admin_listen, err, es)) < 0)
            goto fail;
        *ret_admin_port = bound_port(a->fd[1]);
    }
    if (pipe2(a->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        snprintf(err, es, "pipe: %s", strerror(errno));
        goto fail;
    }
    return a;
fail:
    icpnsd_acceptor_free(a);
    return NULL;
}

/* No descriptor left: say so now and then, and pause accepting a moment
 * (the listening socket stays readable, so polling at once would spin). */
static void out_of_fds(icpnsd_acceptor_t *a, int e)
{
    atomic_fetch_add(&a->fd_errors, 1);
    atomic_fetch_add(&icpnsd_metrics.accept_errors, 1);
    double now = icpns_now();
    if (now - a->last_warn >= 10) {
        a->last_warn = now;
        log_warn("cannot accept connections: %s (%llu times so far); raise the file descriptor "
                 "limit (LimitNOFILE) or lower max_connections", strerror(e),
                 (unsigned long long)atomic_load(&a->fd_errors));
    }
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static void *accept_main(void *arg)
{
    icpnsd_acceptor_t *a = arg;
    while (!atomic_load(&a->stopping)) {
        struct pollfd p[3 + LINGER_MAX];
        int n = 0;
        for (int k = 0; k < 2; k++)
            if (a->fd[k] >= 0)
                p[n++] = (struct pollfd){a->fd[k], POLLIN, 0};
        p[n++] = (struct pollfd){a->wake[0], POLLIN, 0};
        int first_linger = n;
        for (int k = 0; k < a->n_linger; k++)
            p[n++] = (struct pollfd){a->linger[k], POLLIN, 0};
        if (poll(p, (nfds_t)n, a->n_linger ? 50 : -1) < 0) {
            if (errno != EINTR)
                log_warn("accept poll: %s", strerror(errno));
            continue;
        }
        if (atomic_load(&a->stopping))
            break;
        /* Lingering sockets: close at the client's end of stream or after
         * their time. */
        double now = icpns_now();
        int kept = 0;
        for (int k = 0; k < a->n_linger; k++) {
            bool done = now >= a->linger_until[k];
            if (!done && (p[first_linger + k].revents & (POLLIN | POLLHUP | POLLERR))) {
                char sink[4096];
                ssize_t got;
                while ((got = recv(a->linger[k], sink, sizeof(sink), MSG_DONTWAIT)) > 0)
                    ;
                done = got == 0 || (got < 0 && errno != EAGAIN);
            }
            if (done) {
                close(a->linger[k]);
            } else {
                a->linger[kept] = a->linger[k];
                a->linger_until[kept++] = a->linger_until[k];
            }
        }
        a->n_linger = kept;
        for (int k = 0; k < 2; k++) {
            if (a->fd[k] < 0)
                continue;
            /* Drain what is pending, a bounded batch at a time. */
            for (int batch = 0; batch < 64; batch++) {
                struct sockaddr_storage ss;
                socklen_t len = sizeof(ss);
                int fd = accept4(a->fd[k], (struct sockaddr *)&ss, &len,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                        out_of_fds(a, errno);
                    break; /* EAGAIN, or an aborted connection */
                }
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                a->cb(a->ctx, fd, (struct sockaddr *)&ss, len, k == 1);
            }
        }
    }
    return NULL;
}

int icpnsd_acceptor_start(icpnsd_acceptor_t *a, icpnsd_accept_cb cb, void *ctx)
{
    a->cb = cb;
    a->ctx = ctx;
    int rc = pthread_create(&a->thread, NULL, accept_main, a);
    if (rc == 0)
        a->running = true;
    return rc;
}

uint64_t icpnsd_acceptor_fd_errors(const icpnsd_acceptor_t *a)
{
    return atomic_load(&a->fd_errors);
}

void icpnsd_acceptor_stop(icpnsd_acceptor_t *a)
{
    if (!a)
        return;
    atomic_store(&a->stopping, true);
    if (a->running) {
        ssize_t w = write(a->wake[1], "x", 1);
        (void)w;
        pthread_join(a->thread, NULL);
        a->running = false;
    }
    for (int k = 0; k < 2; k++)
        if (a->fd[k] >= 0) {
            close(a->fd[k]);
            a->fd[k] = -1;
        }
}

void icpnsd_acceptor_free(icpnsd_acceptor_t *a)
{
    if (!a)
        return;
    icpnsd_acceptor_stop(a);
    for (int k = 0; k < a->n_linger; k++)
        close(a->linger[k]);
    for (int k = 0; k < 2; k++)
        if (a->wake[k] >= 0)
            close(a->wake[k]);
    free(a);
}

void icpnsd_acceptor_refuse(icpnsd_acceptor_t *a, int fd, unsigned status, const char *code,
                            const char *message)
{
    char body[512], msg[1024];
    int bl = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n",
                      code, message);
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                     "Connection: close\r\nContent-Length: %d\r\n\r\n%s",
                     status, status == 503 ? "Service Unavailable" : "Error", bl, body);
    ssize_t w = send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w;
    /* Half-close, and keep reading what the client sends for a moment:
     * closing with its request unread would reset the connection, and the
     * client could lose the answer. */
    shutdown(fd, SHUT_WR);
    if (a->n_linger == LINGER_MAX) {
        close(a->linger[0]);
        memmove(a->linger, a->linger + 1, (LINGER_MAX - 1) * sizeof(a->linger[0]));
        memmove(a->linger_until, a->linger_until + 1, (LINGER_MAX - 1) * sizeof(a->linger_until[0]));
        a->n_linger--;
    }
    a->linger[a->n_linger] = fd;
    a->linger_until[a->n_linger++] = icpns_now() + LINGER_SECONDS;
}
