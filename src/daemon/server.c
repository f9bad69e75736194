/*
 * server.c - listeners, connections and request bodies (see server.h).
 *
 * libmicrohttpd calls on_request several times per request: once with the
 * headers (the route is chosen and an announced oversize body refused),
 * then with each piece of the body (buffered up to the route's limit; a
 * chunked body has no Content-Length, so bytes are counted), then once
 * more to answer (the route's checks and handler), and again after a
 * suspended request is resumed (the handler's resume function).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "reply.h"
#include "routes.h"
#include "server.h"

typedef struct listener {
    icpnsd_server_t *srv;
    bool admin;
} listener_t;

struct icpnsd_server {
    icpnsd_env_t *env;
    struct MHD_Daemon *mhd, *mhd_admin;
    listener_t main_listener, admin_listener;
    unsigned route_metric[64]; /* metrics id of each route row */
    unsigned other_metric;     /* of requests without a route */
};

/* Adopts a client's (or proxy's) X-Request-Id of 1..64 characters from
 * [A-Za-z0-9._:-] so logs line up across nginx and replicas; anything else
 * is replaced by the daemon's own counter. */
static void set_request_id(icpnsd_req_t *r, const char *h)
{
    size_t n = h ? strlen(h) : 0;
    bool ok = n > 0 && n < sizeof(r->rid);
    for (size_t k = 0; ok && k < n; k++)
        ok = isalnum((unsigned char)h[k]) || strchr("._:-", h[k]);
    if (ok)
        memcpy(r->rid, h, n + 1);
    else
        snprintf(r->rid, sizeof(r->rid), "%llu", (unsigned long long)r->id);
}

/* A new request: its route, its id, and its body limit checked. */
static enum MHD_Result begin(listener_t *l, struct MHD_Connection *conn, const char *url,
                             const char *method, void **con_cls)
{
    icpnsd_server_t *srv = l->srv;
    icpnsd_req_t *r = calloc(1, sizeof(*r));
    if (!r)
        return MHD_NO;
    r->env = srv->env;
    r->conn = conn;
    r->url = url;
    r->method = method;
    r->admin_listener = l->admin;
    r->t0 = icpns_now();
    r->id = atomic_fetch_add(&srv->env->request_ids, 1) + 1;
    atomic_init(&r->wake, ICPNSD_WAKE_IDLE);
    set_request_id(r, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id"));
    r->route = icpnsd_route_match(method, url, r->param, sizeof(r->param), r->allow,
                                  sizeof(r->allow), &r->path_route);
    r->metric = r->path_route ? srv->route_metric[r->path_route - icpnsd_routes]
                              : srv->other_metric;
    uint64_t limit = icpnsd_route_body_limit(r->route ? r->route : r->path_route, srv->env->cfg);
    icpns_buf_init(&r->body, (size_t)limit);
    *con_cls = r;
    /* Refuse an announced oversize body before reading any of it. */
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        unsigned long long n = strtoull(cl, NULL, 10);
        if (n > limit)
            return icpnsd_reply_error(r, ICPNSD_E_BODY_TOO_LARGE, NULL,
                                      "Content-Length %llu is above the limit of %llu bytes", n,
                                      (unsigned long long)limit);
    }
    return MHD_YES;
}

/* Buffers a piece of the body (counting what a chunked body sends). */
static enum MHD_Result take_body(icpnsd_req_t *r, const char *data, size_t n)
{
    atomic_fetch_add_explicit(&icpnsd_metrics.bytes_in, n, memory_order_relaxed);
    if (r->too_large)
        return MHD_YES;
    icpns_buf_put(&r->body, data, n);
    if (r->body.failed) {
        if (!r->body.too_large)
            return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory for the body");
        r->too_large = true;
        icpns_buf_free(&r->body);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    listener_t *l = cls;
    icpnsd_req_t *r = *con_cls;
    (void)version;
    if (!r)
        return begin(l, conn, url, method, con_cls);
    if (r->answered) {
        *upload_data_size = 0; /* discard the rest of a refused body */
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return take_body(r, upload_data, n);
    }
    if (r->resume) {
        if (atomic_load(&r->wake) != ICPNSD_WAKE_WOKEN)
            return MHD_YES; /* spurious wake-up */
        icpnsd_handler_fn fn = r->resume;
        r->resume = NULL;
        atomic_store(&r->wake, ICPNSD_WAKE_IDLE);
        return fn(r);
    }
    return icpnsd_route_dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    icpnsd_req_t *r = *con_cls;
    if (!r)
        return;
    if (r->status)
        icpnsd_metrics_request(r->metric, r->status, icpns_now() - r->t0);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug("request id=%s route=%s ended early (%d)", r->rid,
                  icpnsd_metrics_route_name(r->metric), (int)toe);
    icpns_snapshot_unref(r->wait_snap);
    icpnsd_set_unref(r->set);
    icpns_buf_free(&r->body);
    free(r);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    log_debug("libmicrohttpd: %s", msg);
}

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

static struct MHD_Daemon *start_one(icpnsd_server_t *srv, listener_t *l, const char *addr,
                                    int fd, unsigned threads, uint16_t *ret_port, char *err,
                                    size_t es)
{
    const icpnsd_config_t *cfg = srv->env->cfg;
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    if (fd < 0 && parse_listen(addr, &ss, &sl, err, es))
        return NULL;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    if (fd < 0 && ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[12];
    int k = 0;
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL};
    if (threads > 1)
        opts[k++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                        cfg->max_connections_per_ip, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, 128 * 1024, NULL};
    if (fd >= 0)
        opts[k++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, fd, NULL};
    else
        opts[k++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    struct MHD_Daemon *d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, l,
                                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!d) {
        snprintf(err, es, "cannot listen on %s: %s", fd >= 0 ? "the inherited socket" : addr,
                 errno ? strerror(errno) : "libmicrohttpd refused to start");
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *ret_port = info ? info->port : 0;
    return d;
}

icpnsd_server_t *icpnsd_server_start(icpnsd_env_t *env, int listen_fd, uint16_t *ret_port,
                                     uint16_t *ret_admin_port, char *err, size_t es)
{
    icpnsd_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        snprintf(err, es, "out of memory");
        return NULL;
    }
    srv->env = env;
    /* The request metrics: one series per route label, in table order. */
    for (size_t k = 0; k < icpnsd_n_routes && k < 64; k++)
        srv->route_metric[k] = icpnsd_metrics_route(icpnsd_routes[k].metric);
    srv->other_metric = icpnsd_metrics_route("other");
    srv->main_listener = (listener_t){srv, false};
    srv->admin_listener = (listener_t){srv, true};
    const icpnsd_config_t *cfg = env->cfg;
    srv->mhd = start_one(srv, &srv->main_listener, cfg->listen, listen_fd, cfg->threads, ret_port,
                         err, es);
    if (!srv->mhd)
        goto fail;
    if (env->admin_separate) {
        srv->mhd_admin = start_one(srv, &srv->admin_listener, cfg->admin_listen, -1, 1,
                                   ret_admin_port, err, es);
        if (!srv->mhd_admin)
            goto fail;
    }
    return srv;
fail:
    icpnsd_server_stop(srv);
    return NULL;
}

void icpnsd_server_quiesce(icpnsd_server_t *srv)
{
    atomic_store(&srv->env->quiescing, true);
    if (srv->mhd)
        MHD_quiesce_daemon(srv->mhd);
    if (srv->mhd_admin)
        MHD_quiesce_daemon(srv->mhd_admin);
}

unsigned icpnsd_server_connections(icpnsd_server_t *srv)
{
    unsigned n = 0;
    struct MHD_Daemon *ds[2] = {srv->mhd, srv->mhd_admin};
    for (int k = 0; k < 2; k++)
        if (ds[k]) {
            const union MHD_DaemonInfo *i =
                MHD_get_daemon_info(ds[k], MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
            n += i ? i->num_connections : 0;
        }
    return n;
}

void icpnsd_server_stop(icpnsd_server_t *srv)
{
    if (!srv)
        return;
    if (srv->mhd)
        MHD_stop_daemon(srv->mhd);
    if (srv->mhd_admin)
        MHD_stop_daemon(srv->mhd_admin);
    free(srv);
}
