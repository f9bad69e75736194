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
#include <limits.h>
#include <strings.h>
#include <pthread.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "acceptor.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "reply.h"
#include "routes.h"
#include "server.h"
#include "tls.h"

typedef struct listener {
    icpnsd_server_t *srv;
    bool admin;
} listener_t;

struct icpnsd_server {
    icpnsd_env_t *env;
    icpnsd_acceptor_t *acceptor;
    pthread_mutex_t live_lock;   /* the requests not yet completed */
    icpnsd_req_t *live;
    unsigned n_live;
    struct MHD_Daemon *mhd, *mhd_admin;
    listener_t main_listener, admin_listener;
    unsigned route_metric[64]; /* metrics id of each route row */
    unsigned other_metric;     /* of requests without a route */
    /* Connections handed to libmicrohttpd that its worker threads have not
     * taken up yet (MHD_add_connection queues them): counted with the
     * connections, so that neither the cap nor the stop misses them. */
    atomic_int handed;
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

typedef struct hdr_count {
    unsigned lengths;
    bool lengths_differ, bad_length, transfer_encoding, content_encoding;
    unsigned long long length;
} hdr_count_t;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    hdr_count_t *h = cls;
    (void)kind;
    if (!strcasecmp(key, "Content-Length")) {
        char *end;
        errno = 0;
        unsigned long long n = value && *value >= '0' && *value <= '9'
                                   ? strtoull(value, &end, 10) : 0;
        bool bad = !value || !(*value >= '0' && *value <= '9') || errno || *end;
        if (h->lengths && (n != h->length || bad))
            h->lengths_differ = true;
        h->bad_length |= bad;
        h->length = bad ? ULLONG_MAX : n;
        h->lengths++;
    } else if (!strcasecmp(key, "Transfer-Encoding")) {
        h->transfer_encoding = true;
    } else if (!strcasecmp(key, "Content-Encoding") && value && strcasecmp(value, "identity")) {
        h->content_encoding = true;
    }
    return MHD_YES;
}

/* A new request: its route, its id, its framing and body limit checked. */
/* Query strings beyond these are refused (414) before libmicrohttpd parses
 * them: libmicrohttpd 0.9.75 runs out of its per-connection memory on a
 * few thousand parameters and then never answers (the connection hangs
 * until its timeout). */
#define MAX_QUERY_BYTES 8192
#define MAX_QUERY_PARAMS 256

/*
 * libmicrohttpd's URI callback, before it parses the query string: a
 * query string over the limits is emptied in place (the parser then finds
 * no parameter) and the request remembers to refuse it.  The request is
 * created here; its pointer is what libmicrohttpd hands on_request.
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    listener_t *l = cls;
    icpnsd_req_t *r = icpnsd_req_new(l->srv->env, conn);
    if (!r)
        return NULL;
    char *q = strchr(uri, '?');
    if (q) {
        size_t bytes = strlen(q + 1), params = 1;
        for (const char *p = q + 1; *p; p++)
            params += *p == '&';
        if (bytes > MAX_QUERY_BYTES || params > MAX_QUERY_PARAMS) {
            r->query_bytes = bytes;
            r->query_params = params;
            q[1] = '\0'; /* writable: the connection's own read buffer */
        }
    }
    return r;
}

static enum MHD_Result begin(listener_t *l, struct MHD_Connection *conn, const char *url,
                             const char *method, icpnsd_req_t *r)
{
    icpnsd_server_t *srv = l->srv;
    r->begun = true;
    r->url = url;
    r->method = method;
    r->admin_listener = l->admin;
    r->t0 = icpns_now();
    r->id = atomic_fetch_add(&srv->env->request_ids, 1) + 1;
    set_request_id(r, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id"));
    r->route = icpnsd_route_match(method, url, r->param, sizeof(r->param), r->allow,
                                  sizeof(r->allow), &r->path_route);
    r->metric = r->path_route ? srv->route_metric[r->path_route - icpnsd_routes]
                              : srv->other_metric;
    uint64_t limit = icpnsd_route_body_limit(r->route ? r->route : r->path_route, srv->env->cfg);
    icpns_buf_init(&r->body, (size_t)limit);
    pthread_mutex_lock(&srv->live_lock);
    r->live_next = srv->live;
    if (srv->live)
        srv->live->live_prev = r;
    srv->live = r;
    srv->n_live++;
    pthread_mutex_unlock(&srv->live_lock);
    if (r->query_bytes)
        return icpnsd_reply_error(r, ICPNSD_E_URI_TOO_LONG, NULL,
                                  "the query string has %zu parameters in %zu bytes; the limits are "
                                  "%d and %d", r->query_params, r->query_bytes, MAX_QUERY_PARAMS,
                                  MAX_QUERY_BYTES);
    /* Framing the HTTP way (RFC 9110, 9112): one length, not both, and no
     * content coding the daemon would misread as the body. */
    hdr_count_t h = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header, &h);
    if (h.lengths > 1 && h.lengths_differ)
        return icpnsd_reply_error(r, ICPNSD_E_BAD_REQUEST, "Content-Length",
                                  "the request has several different Content-Length headers");
    if (h.lengths && h.transfer_encoding)
        return icpnsd_reply_error(r, ICPNSD_E_BAD_REQUEST, "Content-Length",
                                  "the request has both Content-Length and Transfer-Encoding");
    if (h.content_encoding)
        return icpnsd_reply_error(r, ICPNSD_E_UNSUPPORTED_MEDIA_TYPE, "Content-Encoding",
                                  "Content-Encoding is not supported: send the body as is");
    /* Refuse an announced oversize body before reading any of it. */
    if (h.lengths) {
        if (h.bad_length || h.length > limit)
            return icpnsd_reply_error(r, ICPNSD_E_BODY_TOO_LARGE, NULL,
                                      "Content-Length %llu is above the limit of %llu bytes",
                                      (unsigned long long)h.length, (unsigned long long)limit);
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
    if (!r) {
        /* The URI callback could not allocate: refuse without a body. */
        return MHD_NO;
    }
    if (!r->begun)
        return begin(l, conn, url, method, r);
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
        if (atomic_load(&r->wake) != ICPNSD_WAKE_WOKEN) {
            if (!r->cancelled)
                return MHD_YES; /* a spurious wake-up */
            if (icpnsd_req_abandon(r)) {
                /* The shutdown: the work stays with its thread, which frees it. */
                r->resume = NULL;
                return icpnsd_reply_error(r, ICPNSD_E_SHUTTING_DOWN, NULL,
                                          "the daemon is shutting down before this request's "
                                          "work ended; retry (on another replica)");
            }
            /* The work ended just now: answer with it. */
        }
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
    (void)conn;
    icpnsd_req_t *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    if (!r->begun) {
        /* Refused by libmicrohttpd before its headers were in. */
        icpnsd_req_unref(r);
        return;
    }
    if (r->status)
        icpnsd_metrics_request(r->metric, r->status, icpns_now() - r->t0);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug("request id=%s route=%s ended early (%d)", r->rid,
                  icpnsd_metrics_route_name(r->metric), (int)toe);
    icpnsd_server_t *srv = ((listener_t *)cls)->srv;
    pthread_mutex_lock(&srv->live_lock);
    if (r->live_prev)
        r->live_prev->live_next = r->live_next;
    else
        srv->live = r->live_next;
    if (r->live_next)
        r->live_next->live_prev = r->live_prev;
    srv->n_live--;
    pthread_mutex_unlock(&srv->live_lock);
    icpnsd_req_gone(r);
    icpnsd_req_unref(r);
}

/* libmicrohttpd's messages are for debugging, except a failed TLS
 * handshake (its only message for one), which is usually a client that
 * speaks plain HTTP to the HTTPS port or does not trust the certificate:
 * counted, and said at WARN at most once a minute, since the client only
 * sees its connection closed. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    static atomic_uint_fast64_t warned_at; /* seconds of the last warning */
    static atomic_uint_fast64_t since;     /* failures since then */
    (void)cls;
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (strstr(msg, "handshake message out of context")) {
        atomic_fetch_add(&icpnsd_metrics.tls_handshake_failures, 1);
        uint64_t n = atomic_fetch_add(&since, 1) + 1, now = (uint64_t)icpns_now();
        uint64_t last = atomic_load(&warned_at);
        if ((last == 0 || now >= last + 60) &&
            atomic_compare_exchange_strong(&warned_at, &last, now)) {
            atomic_fetch_sub(&since, n);
            log_warn("%llu TLS handshake(s) failed%s: clients speaking plain HTTP to this "
                     "HTTPS listener (use https://) or not trusting its certificate "
                     "(icpnsd_tls_handshake_failures_total counts them)",
                     (unsigned long long)n, last ? " in the last minute or more" : "");
        }
        return;
    }
    log_debug("libmicrohttpd: %s", msg);
}

/* Connections come and go (any HTTP thread). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    listener_t *l = cls;
    (void)conn;
    (void)socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_sub(&l->srv->handed, 1);
    if (l->admin)
        return;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&l->srv->env->connections, 1);
    else
        atomic_fetch_sub(&l->srv->env->connections, 1);
}

/* The acceptor thread: serve the connection, or refuse it at the cap. */
static void on_accept(void *ctx, int fd, const struct sockaddr *addr, socklen_t len, bool admin)
{
    icpnsd_server_t *srv = ctx;
    int handed = atomic_load(&srv->handed);
    if (!admin && atomic_load(&srv->env->connections) + (handed > 0 ? (unsigned)handed : 0) >=
                      srv->env->cfg->max_connections) {
        atomic_fetch_add(&icpnsd_metrics.connections_refused, 1);
        /* Answered here, before libmicrohttpd sees the connection, but
         * with the code and status of every other error (reply.c). */
        icpnsd_acceptor_refuse(srv->acceptor, fd,
                               icpnsd_code_status(ICPNSD_E_TOO_MANY_CONNECTIONS),
                               icpnsd_code_name(ICPNSD_E_TOO_MANY_CONNECTIONS),
                               "the daemon serves max_connections clients already; retry "
                               "shortly");
        return;
    }
    struct MHD_Daemon *d = admin ? srv->mhd_admin : srv->mhd;
    atomic_fetch_add(&srv->handed, 1);
    if (MHD_add_connection(d, fd, addr, len) != MHD_YES) {
        atomic_fetch_sub(&srv->handed, 1);
        atomic_fetch_add(&icpnsd_metrics.connections_refused, 1); /* closed by libmicrohttpd */
    }
}

static struct MHD_Daemon *start_one(icpnsd_server_t *srv, listener_t *l, unsigned threads,
                                    unsigned limit, char *err, size_t es)
{
    const icpnsd_config_t *cfg = srv->env->cfg;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_TURBO | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
    struct MHD_OptionItem opts[16];
    int k = 0;
    /* First, so that libmicrohttpd's messages about the options come here. */
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL};
    if (icpnsd_tls_enabled()) {
        /* HTTPS on both listeners; the certificate is asked for at every
         * handshake, so a reload's new one serves at once. */
        flags |= MHD_USE_TLS;
        opts[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0,
                                            icpnsd_tls_callback()};
    }
    if (threads > 1)
        opts[k++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, limit, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                        cfg->max_connections_per_ip, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, l};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, l};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, l};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, 128 * 1024, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    struct MHD_Daemon *d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, l,
                                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!d)
        snprintf(err, es, "cannot start the HTTP threads: %s",
                 errno ? strerror(errno) : "libmicrohttpd refused to start");
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
    pthread_mutex_init(&srv->live_lock, NULL);
    /* The request metrics: one series per route label, in table order. */
    for (size_t k = 0; k < icpnsd_n_routes && k < 64; k++)
        srv->route_metric[k] = icpnsd_metrics_route(icpnsd_routes[k].metric);
    srv->other_metric = icpnsd_metrics_route("other");
    srv->main_listener = (listener_t){srv, false};
    srv->admin_listener = (listener_t){srv, true};
    const icpnsd_config_t *cfg = env->cfg;
    srv->acceptor = icpnsd_acceptor_new(cfg->listen, listen_fd,
                                        env->admin_separate ? cfg->admin_listen : NULL, ret_port,
                                        ret_admin_port, err, es);
    if (!srv->acceptor)
        goto fail;
    /* libmicrohttpd's own limit is a backstop a little above ours: the
     * acceptor refuses at max_connections with an answer. */
    srv->mhd = start_one(srv, &srv->main_listener, cfg->threads, cfg->max_connections + 64, err,
                         es);
    if (!srv->mhd)
        goto fail;
    if (env->admin_separate &&
        !(srv->mhd_admin = start_one(srv, &srv->admin_listener, 1, 256, err, es)))
        goto fail;
    int rc = icpnsd_acceptor_start(srv->acceptor, on_accept, srv);
    if (rc) {
        snprintf(err, es, "cannot start the acceptor thread: %s", strerror(rc));
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
    icpnsd_acceptor_stop(srv->acceptor);
}

unsigned icpnsd_server_active(icpnsd_server_t *srv, unsigned *ret_sleeping)
{
    pthread_mutex_lock(&srv->live_lock);
    unsigned n = srv->n_live, sleeping = 0;
    for (icpnsd_req_t *r = srv->live; r; r = r->live_next)
        sleeping += atomic_load(&r->wake) == ICPNSD_WAKE_SLEEPING;
    pthread_mutex_unlock(&srv->live_lock);
    if (ret_sleeping)
        *ret_sleeping = sleeping;
    return n;
}

unsigned icpnsd_server_cancel(icpnsd_server_t *srv)
{
    unsigned n = 0;
    pthread_mutex_lock(&srv->live_lock);
    for (icpnsd_req_t *r = srv->live; r; r = r->live_next)
        if (atomic_load(&r->wake) == ICPNSD_WAKE_SLEEPING) {
            icpnsd_req_cancel(r);
            n++;
        }
    pthread_mutex_unlock(&srv->live_lock);
    return n;
}

unsigned icpnsd_server_connections(icpnsd_server_t *srv)
{
    int handed = atomic_load(&srv->handed);
    unsigned n = handed > 0 ? (unsigned)handed : 0;
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
    icpnsd_acceptor_free(srv->acceptor);
    if (srv->mhd)
        MHD_stop_daemon(srv->mhd);
    if (srv->mhd_admin)
        MHD_stop_daemon(srv->mhd_admin);
    pthread_mutex_destroy(&srv->live_lock);
    free(srv);
}
