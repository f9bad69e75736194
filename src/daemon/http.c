/*
 * http.c - routes, limits, errors and the handlers of the HTTP API.
 *
 * libmicrohttpd runs a thread pool on epoll (its fastest mode); handlers run
 * on those threads and only read the snapshot they acquired.  Admin updates
 * suspend their connection, hand a job to the libuv loop, and are resumed
 * when the rebuild finished, so no pool thread waits for a rebuild.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "route.h"

#define CT_JSON "application/json"
#define CT_FRAME "application/x-icpns-frame"
#define CT_EMB "application/x-icpns-embeddings"
#define CT_NPY "application/x-npy"

struct icpnsd_server {
    const icpnsd_config_t *cfg;
    icpnsd_registry_t *reg;
    char token[512];
    size_t token_len;
    bool admin_enabled;
    bool admin_separate;
    double started;
    struct MHD_Daemon *mhd, *mhd_admin;
    atomic_bool quiescing;
    atomic_uint_fast64_t seeds, request_ids;
    pthread_key_t work_key;
    int default_strategy;
    /* The compute pool for large sampling requests. */
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;
    struct neg_task *pool_head, *pool_tail;
    bool pool_stop;
    unsigned pool_threads;
    pthread_t pool[64];
};

typedef struct listener {
    icpnsd_server_t *srv;
    bool admin;
} listener_t;

static listener_t main_listener, admin_listener;

/* ---- per-request context ------------------------------------------------------- */

typedef struct req {
    route_t route;
    double t0;
    uint64_t id;
    char rid[65]; /* the client's X-Request-Id when sane, else id */
    char *body;
    size_t len, cap;
    bool too_large;
    bool answered;
    struct MHD_Connection *conn;
    icpnsd_job_t *job;
    atomic_bool job_done;
    struct neg_task *task;       /* a sampling task on the compute pool */
    unsigned status;
    bool has_fingerprint;        /* negatives: send Icpns-Fingerprint */
    uint64_t fingerprint;
    icpnsd_set_t *set;           /* the table set the request addresses */
    /* Waiting for a weight setting being built: the snapshot it was asked
     * of (the request is served from that one), and a small state machine
     * so that a wake-up before the suspension is not lost. */
    icpns_snapshot_t *wait_snap;
    atomic_int wstate;           /* 0 idle, 1 registering, 2 suspended, 3 woken */
} req_t;

/* ---- a growable output buffer ---------------------------------------------------- */

typedef struct wbuf {
    char *p;
    size_t len, cap;
    bool oom;
} wbuf_t;

static bool wb_reserve(wbuf_t *b, size_t extra)
{
    if (b->oom)
        return false;
    if (b->len + extra <= b->cap)
        return true;
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + extra)
        c *= 2;
    char *q = realloc(b->p, c);
    if (!q) {
        b->oom = true;
        return false;
    }
    b->p = q;
    b->cap = c;
    return true;
}

static void wb_put(wbuf_t *b, const char *s, size_t n)
{
    if (wb_reserve(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

/* Only for string literals: sizeof of anything else would be a pointer's. */
#define wb_lit(b, s) wb_put(b, "" s "", sizeof(s) - 1)

static void wb_cstr(wbuf_t *b, const char *s)
{
    wb_put(b, s, strlen(s));
}

/* The shortest decimal form of @x that reads back as the same double
 * (0.8, not 0.80000000000000004). */
typedef struct dnum {
    char s[32];
} dnum_t;

static dnum_t dnum(double x)
{
    dnum_t d;
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(d.s, sizeof(d.s), "%.*g", prec, x);
        if (strtod(d.s, NULL) == x)
            break;
    }
    return d;
}

static void wb_printf(wbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wb_printf(wbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !wb_reserve(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Fast decimal for the hot loop of JSON negatives. */
static void wb_i64(wbuf_t *b, int64_t v)
{
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (!wb_reserve(b, (size_t)n + 1))
        return;
    if (v < 0)
        b->p[b->len++] = '-';
    while (n)
        b->p[b->len++] = tmp[--n];
}

/* A JSON string literal with escapes. */
static void wb_str(wbuf_t *b, const char *s)
{
    wb_lit(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            wb_put(b, e, 2);
        } else if (c < 0x20) {
            wb_printf(b, "\\u%04x", c);
        } else {
            wb_put(b, (const char *)&c, 1);
        }
    }
    wb_lit(b, "\"");
}

/* ---- responses -------------------------------------------------------------------- */

/* Adopts a client's (or proxy's) X-Request-Id of 1..64 characters from
 * [A-Za-z0-9._:-] so logs line up across nginx and replicas; anything else
 * is replaced by the daemon's own counter. */
static void set_request_id(req_t *r, const char *h)
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

static enum MHD_Result send_buf(req_t *r, unsigned status, const char *ctype, wbuf_t *b,
                                const char *allow)
{
    if (b->oom) {
        free(b->p);
        static const char oom[] =
            "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"the response could not be allocated\"}}\n";
        struct MHD_Response *resp = MHD_create_response_from_buffer(
            sizeof(oom) - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", CT_JSON);
        r->status = 503;
        enum MHD_Result ret = MHD_queue_response(r->conn, 503, resp);
        MHD_destroy_response(resp);
        r->answered = true;
        return ret;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(b->len, b->p ? b->p : (void *)"", b->p ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(b->p);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    if (allow)
        MHD_add_response_header(resp, "Allow", allow);
    if (status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"icpnsd-admin\"");
    if (status == 503)
        MHD_add_response_header(resp, "Retry-After", "1");
    MHD_add_response_header(resp, "X-Request-Id", r->rid);
    if (r->has_fingerprint) {
        char fp[17];
        snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)r->fingerprint);
        MHD_add_response_header(resp, "Icpns-Fingerprint", fp);
    }
    atomic_fetch_add_explicit(&icpnsd_metrics.bytes_out, b->len, memory_order_relaxed);
    r->status = status;
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->answered = true;
    return ret;
}

static enum MHD_Result send_json(req_t *r, unsigned status, wbuf_t *b)
{
    wb_lit(b, "\n");
    return send_buf(r, status, CT_JSON, b, NULL);
}

/* {"error":{"code":..,"message":..,"field":..,"row":..}} */
static enum MHD_Result send_error_ex(req_t *r, unsigned status, const char *code,
                                     const char *field, long long row, const char *allow,
                                     const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static enum MHD_Result send_error_ex(req_t *r, unsigned status, const char *code,
                                     const char *field, long long row, const char *allow,
                                     const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    wbuf_t b = {0};
    wb_lit(&b, "{\"error\":{\"code\":");
    wb_str(&b, code);
    wb_lit(&b, ",\"message\":");
    wb_str(&b, msg);
    if (field) {
        wb_lit(&b, ",\"field\":");
        wb_str(&b, field);
    }
    if (row >= 0) {
        wb_lit(&b, ",\"row\":");
        wb_i64(&b, row);
    }
    wb_lit(&b, "}}\n");
    if (status >= 500)
        log_warn("request id=%s route=%s status=%u code=%s: %s", r->rid,
                 icpnsd_route_name(r->route), status, code, msg);
    else
        log_debug("request id=%s route=%s status=%u code=%s: %s", r->rid,
                  icpnsd_route_name(r->route), status, code, msg);
    return send_buf(r, status, CT_JSON, &b, allow);
}

#define send_error(r, status, code, field, ...) send_error_ex(r, status, code, field, -1, NULL, __VA_ARGS__)

/* ---- helpers ------------------------------------------------------------------------ */

static icpns_work_t *thread_work(icpnsd_server_t *srv)
{
    icpns_work_t *w = pthread_getspecific(srv->work_key);
    if (!w) {
        w = icpns_work_new();
        if (w)
            pthread_setspecific(srv->work_key, w);
    }
    return w;
}

static void free_work(void *p)
{
    icpns_work_free(p);
}

static bool is_ctype(const char *h, const char *want)
{
    if (!h)
        return false;
    size_t n = strlen(want);
    return !strncasecmp(h, want, n) && (h[n] == '\0' || h[n] == ';' || h[n] == ' ');
}

/* Parses a non-negative decimal int64 in [s, s+n). */

/* Constant-time comparison of the presented bearer token. */
static bool token_ok(const icpnsd_server_t *srv, const char *presented, size_t n)
{
    unsigned char diff = (unsigned char)(n != srv->token_len);
    for (size_t k = 0; k < srv->token_len; k++)
        diff |= (unsigned char)(srv->token[k] ^ (k < n ? presented[k] : 0));
    return diff == 0;
}

/* 0 if authorised, else an error was sent. */
static int check_admin(icpnsd_server_t *srv, req_t *r, enum MHD_Result *ret)
{
    if (!srv->admin_enabled) {
        *ret = send_error(r, 403, "admin_disabled", NULL,
                          "admin endpoints are disabled: start icpnsd with --admin-token-file");
        return -1;
    }
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) {
        *ret = send_error(r, 401, "unauthorized", NULL, "admin endpoints need 'Authorization: Bearer TOKEN'");
        return -1;
    }
    const char *t = h + 7;
    while (*t == ' ')
        t++;
    if (!token_ok(srv, t, strlen(t))) {
        *ret = send_error(r, 403, "forbidden", NULL, "wrong admin token");
        return -1;
    }
    return 0;
}

/* ---- POST /v1/negatives ---------------------------------------------------------------- */

static void wr32(unsigned char *p, uint32_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24); }
static void wr64(unsigned char *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

/* Feeds every query-string parameter to @set until one is refused. */
typedef struct query_ctx {
    int (*set)(void *target, const char *key, const char *value, icpnsd_reqerr_t *e);
    void *target;
    icpnsd_reqerr_t *e;
    int failed;
} query_ctx_t;

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    query_ctx_t *c = cls;
    (void)kind;
    if (!c->failed && c->set(c->target, key, value, c->e))
        c->failed = 1;
    return c->failed ? MHD_NO : MHD_YES;
}

static int negatives_param(void *q, const char *key, const char *value, icpnsd_reqerr_t *e)
{
    return icpnsd_negatives_query(q, key, value, e);
}

static int cluster_param(void *q, const char *key, const char *value, icpnsd_reqerr_t *e)
{
    if (!strcmp(key, "tables"))
        return 0; /* chose the set */
    return icpnsd_cluster_opt(q, key, value, e);
}

/* Wakes a request that waited for a weight setting (any thread). */
static void wake_request(void *arg)
{
    req_t *r = arg;
    if (atomic_exchange(&r->wstate, 3) == 2)
        MHD_resume_connection(r->conn);
}

/* Answers for the table set @name (the request's, or the only/default one). */
static icpnsd_set_t *resolve_set(icpnsd_server_t *srv, req_t *r, const char *name,
                                 enum MHD_Result *ret)
{
    int why = 0;
    icpnsd_set_t *set = icpnsd_registry_get(srv->reg, name, &why);
    if (set)
        return set;
    char names[512] = "";
    icpnsd_set_t *all[ICPNSD_MAX_SETS];
    unsigned n = icpnsd_registry_list(srv->reg, all, ICPNSD_MAX_SETS);
    for (unsigned k = 0; k < n; k++) {
        size_t l = strlen(names);
        snprintf(names + l, sizeof(names) - l, "%s%s", k ? ", " : "", all[k]->name);
        icpnsd_set_unref(all[k]);
    }
    if (why == 404)
        *ret = send_error(r, 404, "unknown_tables", "tables", "no table set named '%s' (there are: %s)",
                          name, names);
    else
        *ret = send_error(r, 400, "tables_required", "tables",
                          "this daemon serves several table sets; name one with \"tables\" or "
                          "?tables= (there are: %s)", names);
    return NULL;
}

/* ---- sampling tasks ------------------------------------------------------------------- */

/* Requests asking this many negatives or more are sampled on the compute pool. */
#define OFFLOAD_MIN_NEGATIVES 8192

/* Opens an answer about snapshot @s: {"version":N,"fingerprint":"..." */
static void wb_snapshot_head(wbuf_t *b, const icpns_snapshot_t *s)
{
    wb_lit(b, "{\"version\":");
    wb_i64(b, (int64_t)s->version);
    wb_printf(b, ",\"fingerprint\":\"%016llx\"", (unsigned long long)s->fingerprint);
}

typedef struct neg_task {
    icpnsd_server_t *srv;
    req_t *r;
    neg_req_t q;               /* owned (users) */
    icpns_snapshot_t *s;       /* a reference */
    const icpns_weights_t *w;
    icpnsd_wentry_t *went;     /* a reference, or NULL */
    bool frame_out;
    const char *set_name;      /* valid while r->set is held */
    /* Result. */
    unsigned status;
    wbuf_t out;
    char code[48], field[32], message[300];
    long long row;
    atomic_bool done;
    struct neg_task *next;
} neg_task_t;

static void task_error(neg_task_t *t, unsigned status, const char *code, const char *field,
                       long long row, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void task_error(neg_task_t *t, unsigned status, const char *code, const char *field,
                       long long row, const char *fmt, ...)
{
    t->status = status;
    snprintf(t->code, sizeof(t->code), "%s", code);
    snprintf(t->field, sizeof(t->field), "%s", field ? field : "");
    t->row = row;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->message, sizeof(t->message), fmt, ap);
    va_end(ap);
}

static void task_free(neg_task_t *t)
{
    icpnsd_wentry_unref(t->went);
    icpns_snapshot_unref(t->s);
    free(t->q.users);
    free(t->out.p);
    free(t);
}

/* Samples and encodes the answer of @t (any thread). */
static void run_task(neg_task_t *t)
{
    icpnsd_server_t *srv = t->srv;
    neg_req_t q = t->q;
    icpns_snapshot_t *s = t->s;
    const icpns_weights_t *w = t->w;
    bool frame_out = t->frame_out;
    uint64_t cols = (uint64_t)q.n * q.m;
    icpns_work_t *work = thread_work(srv);
    size_t cells = (size_t)q.rows * cols;
    uint32_t *items = malloc((cells ? cells : 1) * sizeof(*items));
    double *probs = q.probs ? malloc((cells ? cells : 1) * sizeof(*probs)) : NULL;
    uint32_t *fallbacks = malloc((q.rows ? q.rows : 1) * sizeof(*fallbacks));
    uint32_t *substituted = malloc((q.rows ? q.rows : 1) * sizeof(*substituted));
    /* Each row's stream is keyed on (seed, user, occurrence of the user in
     * this request, slot): the occurrences are computed once for the whole
     * request, so any slicing of the rows gives the same answer. */
    uint32_t *occ = malloc((q.rows ? q.rows : 1) * sizeof(*occ));
    unsigned *row_flags = malloc((q.rows ? q.rows : 1) * sizeof(*row_flags));
    if (!work || !items || (q.probs && !probs) || !fallbacks || !substituted || !occ ||
        !row_flags || icpns_occurrences(q.users, q.rows, occ)) {
        free(items);
        free(probs);
        free(fallbacks);
        free(substituted);
        free(occ);
        free(row_flags);
        task_error(t, 503, "out_of_memory", NULL, -1, "no memory for %zu negatives", cells);
        return;
    }
    icpns_sample_stats_t stats = {0};
    uint32_t nfb = 0, nsub = 0;
    uint64_t per_strategy[3] = {0};
    icpns_part_t parts[MAX_PARTS];
    for (int k = 0; k < q.nparts; k++)
        parts[k] = (icpns_part_t){q.parts[k].strategy, q.parts[k].n * q.m};
    icpns_rows_t req = {q.users, occ, q.rows, parts, (uint32_t)q.nparts, q.seed, q.flags};
    uint32_t failed = 0;
    int e = icpns_sample_rows(s, w, work, &req, 0, q.rows, items, probs, row_flags, &stats,
                              &failed);
    free(occ);
    if (e) {
        long long id = failed != ICPNS_NONE ? (long long)q.users[failed] : 0;
        free(items);
        free(probs);
        free(fallbacks);
        free(substituted);
        free(row_flags);
        const char *msg = e == ICPNS_EUNKNOWN_USER
                              ? "user %lld is not in the tables (set \"unknown_users\": \"popularity\" to serve it by PNS)"
                          : e == ICPNS_EINFEASIBLE
                              ? "user %lld has interacted with every item: it has no negatives"
                          : e == ICPNS_ENOCOMMUNITY
                              ? "user %lld has no community (set \"unknown_users\": \"popularity\" to serve it by PNS)"
                              : "user %lld: sampling failed";
        unsigned st = e == ICPNS_ENOMEM ? 503 : 422;
        char text[256];
        if (failed != ICPNS_NONE)
            snprintf(text, sizeof(text), msg, id);
        else
            snprintf(text, sizeof(text), "sampling failed: %s", icpns_strerror(e));
        task_error(t, st, icpns_errname(e), failed != ICPNS_NONE ? "users" : NULL,
                   failed != ICPNS_NONE ? (long long)failed : -1, "%s", text);
        return;
    }
    for (uint32_t row = 0; row < q.rows; row++) {
        if (row_flags[row] & ICPNS_ROW_FALLBACK)
            fallbacks[nfb++] = row;
        if (row_flags[row] & ICPNS_ROW_SUBSTITUTED)
            substituted[nsub++] = row;
    }
    free(row_flags);
    for (int k = 0; k < q.nparts; k++)
        per_strategy[q.parts[k].strategy] += (uint64_t)q.rows * q.parts[k].n * q.m;
    for (int k = 0; k < 3; k++)
        atomic_fetch_add_explicit(&icpnsd_metrics.negatives[k], per_strategy[k], memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.draws, stats.draws, memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.rejections, stats.rejections, memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.residual_rows, stats.residual_rows, memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.fallback_rows, nfb, memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.substituted_rows, nsub, memory_order_relaxed);

    wbuf_t b = {0};
    const int64_t *ids = s->items.ids;
    if (frame_out) {
        size_t bytes = FRAME_RESP_HEADER + cells * 8 + (probs ? cells * 4 : 0) + (size_t)nfb * 4;
        if (wb_reserve(&b, bytes)) {
            unsigned char *p = (unsigned char *)b.p;
            memcpy(p, FRAME_RESP_MAGIC, 4);
            p[4] = 1, p[5] = 0;
            p[6] = probs ? 1 : 0, p[7] = 0;
            wr64(p + 8, s->version);
            wr32(p + 16, q.rows);
            wr32(p + 20, (uint32_t)cols);
            wr32(p + 24, nfb);
            wr32(p + 28, nsub);
            unsigned char *o = p + FRAME_RESP_HEADER;
            for (size_t k = 0; k < cells; k++, o += 8)
                wr64(o, (uint64_t)ids[items[k]]);
            if (probs)
                for (size_t k = 0; k < cells; k++, o += 4) {
                    float f = (float)probs[k];
                    uint32_t bits;
                    memcpy(&bits, &f, 4);
                    wr32(o, bits);
                }
            for (uint32_t k = 0; k < nfb; k++, o += 4)
                wr32(o, fallbacks[k]);
            b.len = bytes;
        }
    } else {
        wb_reserve(&b, 256 + cells * 8);
        wb_snapshot_head(&b, s);
        wb_lit(&b, ",\"tables\":");
        wb_str(&b, t->set_name);
        wb_printf(&b, ",\"alpha\":%s,\"epsilon\":%s,\"beta\":%s", dnum(w->params.alpha).s,
                  dnum(w->params.epsilon).s, dnum(w->params.beta).s);
        wb_lit(&b, ",\"strategy\":");
        if (q.mixed) {
            wb_lit(&b, "[");
            for (int k = 0; k < q.nparts; k++) {
                wb_cstr(&b, k ? ",{\"strategy\":" : "{\"strategy\":");
                wb_str(&b, icpns_strategy_name(q.parts[k].strategy));
                wb_lit(&b, ",\"n\":");
                wb_i64(&b, q.parts[k].n);
                wb_lit(&b, "}");
            }
            wb_lit(&b, "]");
        } else {
            wb_str(&b, icpns_strategy_name(q.parts[0].strategy));
        }
        wb_lit(&b, ",\"n\":");
        wb_i64(&b, q.n);
        wb_lit(&b, ",\"candidates\":");
        wb_i64(&b, q.m);
        wb_lit(&b, ",\"seed\":");
        wb_i64(&b, (int64_t)q.seed);
        wb_lit(&b, ",\"negatives\":[");
        for (uint32_t row = 0; row < q.rows; row++) {
            wb_cstr(&b, row ? ",[" : "[");
            for (uint64_t j = 0; j < cols; j++) {
                if (j)
                    wb_lit(&b, ",");
                wb_i64(&b, ids[items[(size_t)row * cols + j]]);
            }
            wb_lit(&b, "]");
        }
        wb_lit(&b, "]");
        if (probs) {
            wb_lit(&b, ",\"probabilities\":[");
            for (uint32_t row = 0; row < q.rows; row++) {
                wb_cstr(&b, row ? ",[" : "[");
                for (uint64_t j = 0; j < cols; j++)
                    wb_printf(&b, j ? ",%.9g" : "%.9g", probs[(size_t)row * cols + j]);
                wb_lit(&b, "]");
            }
            wb_lit(&b, "]");
        }
        wb_lit(&b, ",\"fallbacks\":[");
        for (uint32_t k = 0; k < nfb; k++) {
            if (k)
                wb_lit(&b, ",");
            wb_i64(&b, fallbacks[k]);
        }
        wb_lit(&b, "],\"substituted\":[");
        for (uint32_t k = 0; k < nsub; k++) {
            if (k)
                wb_lit(&b, ",");
            wb_i64(&b, substituted[k]);
        }
        wb_lit(&b, "]}");
    }
    free(items);
    free(probs);
    free(fallbacks);
    free(substituted);
    t->out = b;
    t->status = 200;
}

/* Sends what run_task produced (the connection's thread). */
static enum MHD_Result finish_task(req_t *r, neg_task_t *t)
{
    enum MHD_Result ret;
    if (t->status != 200) {
        ret = send_error_ex(r, t->status, t->code, t->field[0] ? t->field : NULL, t->row, NULL,
                            "%s", t->message);
    } else {
        wbuf_t b = t->out;
        t->out = (wbuf_t){0};
        if (t->s) {
            r->has_fingerprint = true;
            r->fingerprint = t->s->fingerprint;
        }
        ret = t->frame_out ? send_buf(r, 200, CT_FRAME, &b, NULL) : send_json(r, 200, &b);
    }
    task_free(t);
    return ret;
}

static void *pool_main(void *arg)
{
    icpnsd_server_t *srv = arg;
    for (;;) {
        pthread_mutex_lock(&srv->pool_lock);
        while (!srv->pool_head && !srv->pool_stop)
            pthread_cond_wait(&srv->pool_cond, &srv->pool_lock);
        neg_task_t *t = srv->pool_head;
        if (t) {
            srv->pool_head = t->next;
            if (!srv->pool_head)
                srv->pool_tail = NULL;
        }
        pthread_mutex_unlock(&srv->pool_lock);
        if (!t)
            return NULL; /* stopping and drained */
        run_task(t);
        atomic_store(&t->done, true);
        MHD_resume_connection(t->r->conn);
    }
}

static void pool_push(icpnsd_server_t *srv, neg_task_t *t)
{
    t->next = NULL;
    pthread_mutex_lock(&srv->pool_lock);
    if (srv->pool_tail)
        srv->pool_tail->next = t;
    else
        srv->pool_head = t;
    srv->pool_tail = t;
    pthread_cond_signal(&srv->pool_cond);
    pthread_mutex_unlock(&srv->pool_lock);
}

static enum MHD_Result handle_negatives(icpnsd_server_t *srv, req_t *r)
{
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    const char *accept = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Accept");
    neg_req_t q = {0};
    bool frame_in = is_ctype(ct, CT_FRAME);
    if (!frame_in && !is_ctype(ct, CT_JSON))
        return send_error(r, 415, "unsupported_media_type", NULL,
                          "send Content-Type: " CT_JSON " or " CT_FRAME);
    icpnsd_reqerr_t perr;
    uint64_t fallback_seed = icpns_mix64(atomic_fetch_add(&srv->seeds, 1) ^ (uint64_t)time(NULL)) >> 11;
    query_ctx_t qc = {negatives_param, &q, &perr, 0};
    if ((frame_in ? icpnsd_parse_negatives_frame(srv->cfg, r->body, r->len, &q, &perr)
                  : icpnsd_parse_negatives_json(srv->cfg, srv->default_strategy, fallback_seed,
                                                r->body, r->len, &q, &perr)) ||
        (MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_arg, &qc),
         qc.failed)) {
        icpnsd_neg_req_free(&q);
        return send_error_ex(r, perr.status, perr.code, perr.field[0] ? perr.field : NULL,
                             perr.row, NULL, "%s", perr.message);
    }
    bool frame_out = (accept && strstr(accept, CT_FRAME)) ||
                     (frame_in && !(accept && strstr(accept, CT_JSON)));
    uint64_t cols = (uint64_t)q.n * q.m;
    if ((uint64_t)q.rows * cols > srv->cfg->max_negatives) {
        free(q.users);
        return send_error(r, 413, "limit_exceeded", "users",
                          "%llu negatives in one request, above the limit of %llu",
                          (unsigned long long)((uint64_t)q.rows * cols),
                          (unsigned long long)srv->cfg->max_negatives);
    }
    /* The table set: the body's "tables" (or ?tables=). */
    if (!r->set) {
        enum MHD_Result ret;
        if (!(r->set = resolve_set(srv, r, q.tables, &ret))) {
            free(q.users);
            return ret;
        }
    }
    /* One snapshot for the whole request (after a wait, the one waited on). */
    bool resumed = r->wait_snap != NULL;
    icpns_snapshot_t *s = resumed ? r->wait_snap : icpnsd_state_acquire(&r->set->st);
    r->wait_snap = NULL;
    atomic_store(&r->wstate, 0);
    const icpns_weights_t *w = s->weights;
    icpnsd_wentry_t *went = NULL;
    if (q.has_alpha || q.has_epsilon || q.has_beta) {
        icpns_params_t p = s->params;
        if (q.has_alpha)
            p.alpha = q.alpha;
        if (q.has_epsilon)
            p.epsilon = q.epsilon;
        if (q.has_beta)
            p.beta = q.beta;
        icpns_error_t perr2;
        if (icpns_params_check(&p, &perr2)) {
            icpns_snapshot_unref(s);
            free(q.users);
            return send_error(r, 400, "bad_parameter", perr2.field, "%s", perr2.message);
        }
        if (p.alpha != s->params.alpha || p.epsilon != s->params.epsilon ||
            p.beta != s->params.beta) {
            char msg[300] = "";
            icpnsd_waiter_t *waiter = NULL;
            if (srv->cfg->weights_wait) {
                waiter = malloc(sizeof(*waiter));
                if (waiter) {
                    waiter->wake = wake_request;
                    waiter->arg = r;
                }
                atomic_store(&r->wstate, 1);
            }
            int g = icpnsd_weights_get(r->set, s, &p, waiter, resumed, &went, msg, sizeof(msg));
            if (g == WGET_WAITING) {
                /* Suspend until the build wakes us; then this runs again on
                 * the same snapshot. */
                r->wait_snap = s;
                free(q.users);
                MHD_suspend_connection(r->conn);
                int expect = 1;
                if (!atomic_compare_exchange_strong(&r->wstate, &expect, 2))
                    MHD_resume_connection(r->conn); /* woken before we slept */
                return MHD_YES;
            }
            atomic_store(&r->wstate, 0);
            if (g != WGET_READY) {
                icpns_snapshot_unref(s);
                free(q.users);
                if (g == WGET_DISABLED)
                    return send_error(r, 400, "custom_weights_disabled", "alpha",
                                      "this daemon serves only each set's own alpha, epsilon and "
                                      "beta (weights_cache_size = 0)");
                if (g == WGET_FAILED)
                    return send_error(r, 503, "weights_failed", NULL, "%s", msg);
                if (g == WGET_NOMEM)
                    return send_error(r, 503, "out_of_memory", NULL, "no memory for weights");
                return send_error(r, 503, "weights_building", NULL, "%s", msg);
            }
            w = icpnsd_wentry_weights(went);
        }
    }
    /* Sample and encode: here for small requests, on the compute pool for
     * large ones (so that two connections that happen to share an HTTP
     * thread still use two cores). */
    neg_task_t *t = calloc(1, sizeof(*t));
    if (!t) {
        icpnsd_wentry_unref(went);
        icpns_snapshot_unref(s);
        free(q.users);
        return send_error(r, 503, "out_of_memory", NULL, "no memory");
    }
    t->srv = srv;
    t->r = r;
    t->q = q;
    t->s = s;
    t->w = w;
    t->went = went;
    t->frame_out = frame_out;
    t->set_name = r->set->name;
    if ((uint64_t)q.rows * cols >= OFFLOAD_MIN_NEGATIVES && srv->pool_threads) {
        r->task = t;
        MHD_suspend_connection(r->conn);
        pool_push(srv, t);
        return MHD_YES;
    }
    run_task(t);
    return finish_task(r, t);
}

/* ---- interpretability ------------------------------------------------------------------ */

static enum MHD_Result handle_user(icpnsd_server_t *srv, req_t *r, int64_t id)
{
    icpns_snapshot_t *s = icpnsd_state_acquire(&r->set->st);
    uint32_t u = icpns_idmap_find(&s->users, id);
    if (u == ICPNS_NONE) {
        icpns_snapshot_unref(s);
        return send_error(r, 404, "unknown_user", "id", "user %lld is not in the tables", (long long)id);
    }
    wbuf_t b = {0};
    wb_snapshot_head(&b, s);
    wb_lit(&b, ",\"user\":");
    wb_i64(&b, id);
    wb_lit(&b, ",\"community\":");
    uint32_t c = s->user_comm[u];
    if (c == ICPNS_NONE)
        wb_lit(&b, "null");
    else
        wb_i64(&b, s->comms.ids[c]);
    wb_lit(&b, ",\"positives\":");
    wb_i64(&b, icpns_snapshot_degree(s, u));
    /* The share of its community's mass the user's positives hold: how
     * much ICPNS has to exclude, and whether the fallback applies. */
    if (c != ICPNS_NONE) {
        const icpns_wtable_t *t = &s->weights->comm[c];
        double total = t->cdf[t->m];
        wb_printf(&b, ",\"community_mass_covered\":%.6g",
                  total > 0 ? s->weights->pos_mass_comm[u] / total : 0.0);
        wb_printf(&b, ",\"fallback\":%s",
                  s->weights->pos_hits_comm[u] >= t->m && s->params.epsilon == 0 ? "true" : "false");
    }
    wb_lit(&b, "}");
    icpns_snapshot_unref(s);
    return send_json(r, 200, &b);
}

static enum MHD_Result handle_communities(icpnsd_server_t *srv, req_t *r)
{
    icpns_snapshot_t *s = icpnsd_state_acquire(&r->set->st);
    wbuf_t b = {0};
    wb_snapshot_head(&b, s);
    wb_printf(&b, ",\"alpha\":%s,\"epsilon\":%s,\"items\":%u,\"communities\":[",
              dnum(s->params.alpha).s, dnum(s->params.epsilon).s, s->items.n);
    for (uint32_t c = 0; c < s->comms.n; c++) {
        const icpns_wtable_t *t = &s->weights->comm[c];
        wb_cstr(&b, c ? ",{\"community\":" : "{\"community\":");
        wb_i64(&b, s->comms.ids[c]);
        wb_lit(&b, ",\"users\":");
        wb_i64(&b, s->comm_size[c]);
        wb_lit(&b, ",\"support\":");
        wb_i64(&b, t->m);
        wb_printf(&b, ",\"mass\":%s}", dnum(t->cdf[t->m]).s);
    }
    wb_lit(&b, "]}");
    icpns_snapshot_unref(s);
    return send_json(r, 200, &b);
}

typedef struct ranked_item {
    double w;
    uint32_t k;
} ranked_item_t;

static int cmp_ranked_item(const void *a, const void *b)
{
    const ranked_item_t *x = a, *y = b;
    if (x->w != y->w)
        return x->w < y->w ? 1 : -1;
    return (x->k > y->k) - (x->k < y->k);
}

static enum MHD_Result handle_community_items(icpnsd_server_t *srv, req_t *r, int64_t cid)
{
    const char *top_s = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "top");
    int64_t top = 20;
    if (top_s && (!icpnsd_parse_id(top_s, strlen(top_s), &top) || top < 1 || top > 100000))
        return send_error(r, 400, "bad_query", "top", "'top' must be an integer in [1, 100000]");
    icpns_snapshot_t *s = icpnsd_state_acquire(&r->set->st);
    uint32_t c = icpns_idmap_find(&s->comms, cid);
    if (c == ICPNS_NONE) {
        icpns_snapshot_unref(s);
        return send_error(r, 404, "unknown_community", "community", "community %lld does not exist",
                          (long long)cid);
    }
    const icpns_wtable_t *t = &s->weights->comm[c];
    ranked_item_t *v = malloc((t->m ? t->m : 1) * sizeof(*v));
    if (!v) {
        icpns_snapshot_unref(s);
        return send_error(r, 503, "out_of_memory", NULL, "no memory");
    }
    for (uint32_t k = 0; k < t->m; k++)
        v[k] = (ranked_item_t){t->w[k], k};
    qsort(v, t->m, sizeof(*v), cmp_ranked_item);
    double eps = s->params.epsilon, total = t->cdf[t->m] + eps * s->items.n;
    wbuf_t b = {0};
    wb_snapshot_head(&b, s);
    wb_lit(&b, ",\"community\":");
    wb_i64(&b, cid);
    wb_printf(&b, ",\"alpha\":%s,\"epsilon\":%s,\"support\":%u,\"items\":[", dnum(s->params.alpha).s,
              dnum(eps).s, t->m);
    uint32_t shown = t->m < top ? t->m : (uint32_t)top;
    uint64_t base = s->sup_off[c];
    for (uint32_t j = 0; j < shown; j++) {
        uint32_t k = v[j].k;
        wb_cstr(&b, j ? ",{\"item\":" : "{\"item\":");
        wb_i64(&b, s->items.ids[t->items[k]]);
        wb_lit(&b, ",\"count\":");
        wb_i64(&b, s->sup_count[base + k]);
        wb_printf(&b, ",\"weight\":%s,\"probability\":%s}", dnum(t->w[k] + eps).s,
                  dnum((t->w[k] + eps) / total).s);
    }
    wb_lit(&b, "]}");
    free(v);
    icpns_snapshot_unref(s);
    return send_json(r, 200, &b);
}

/* ---- admin ------------------------------------------------------------------------------- */

static void job_done_cb(icpnsd_job_t *job)
{
    req_t *r = job->user;
    atomic_store(&r->job_done, true);
    MHD_resume_connection(r->conn);
}

/* Makes @r wait for @j: the job's completion resumes the connection, which
 * then answers with finish_job.  The caller submits @j afterwards (the
 * connection is suspended first, so the resume cannot come before it). */
static void await_job(req_t *r, icpnsd_job_t *j, const char *origin)
{
    snprintf(j->origin, sizeof(j->origin), "%s", origin);
    j->done_cb = job_done_cb;
    j->user = r;
    r->job = j;
    MHD_suspend_connection(r->conn);
}

static enum MHD_Result submit_job(icpnsd_server_t *srv, req_t *r, job_kind_t kind,
                                  icpns_pair_t *pairs, size_t n, bool replace)
{
    icpnsd_job_t *j = calloc(1, sizeof(*j));
    if (!j) {
        free(pairs);
        return send_error(r, 503, "out_of_memory", NULL, "no memory");
    }
    j->kind = kind;
    j->pairs = pairs;
    j->n = n;
    j->replace = replace;
    await_job(r, j, "http");
    icpnsd_state_submit(&r->set->st, j);
    return MHD_YES;
}

static enum MHD_Result finish_job(req_t *r)
{
    icpnsd_job_t *j = r->job;
    r->job = NULL;
    enum MHD_Result ret;
    if (j->kind == JOB_SET_ADD || j->kind == JOB_SET_REMOVE) {
        if (j->status != 200 && j->status != 201) {
            ret = send_error(r, (unsigned)j->status, j->code, "tables", "%s", j->message);
        } else {
            wbuf_t b = {0};
            wb_lit(&b, "{\"name\":");
            wb_str(&b, j->set_name);
            if (j->kind == JOB_SET_ADD)
                wb_printf(&b, ",\"added\":true,\"version\":%llu,\"fingerprint\":\"%016llx\","
                              "\"bytes\":%llu,\"build_seconds\":%.6f}",
                          (unsigned long long)j->version, (unsigned long long)j->fingerprint,
                          (unsigned long long)j->set_bytes,
                          j->build_seconds);
            else
                wb_lit(&b, ",\"removed\":true}");
            ret = send_json(r, (unsigned)j->status, &b);
        }
        icpnsd_job_free(j);
        return ret;
    }
    if (j->status != 200) {
        ret = send_error(r, (unsigned)j->status, j->code, NULL, "%s", j->message);
    } else {
        wbuf_t b = {0};
        wb_lit(&b, "{\"version\":");
        wb_i64(&b, (int64_t)j->version);
        wb_printf(&b, ",\"fingerprint\":\"%016llx\"", (unsigned long long)j->fingerprint);
        if (j->kind != JOB_RELOAD) {
            wb_lit(&b, ",\"accepted\":");
            wb_i64(&b, (int64_t)j->n);
        }
        if (j->kind == JOB_CLUSTER) {
            wb_printf(&b, ",\"k\":%u,\"inertia\":%s,\"iterations\":%u,\"best_restart\":%u,"
                          "\"converged\":%s,\"cluster_seconds\":%.6f,\"sizes\":[",
                      j->k, dnum(j->inertia).s, j->iterations, j->best_restart,
                      j->converged ? "true" : "false", j->cluster_seconds);
            for (uint32_t c = 0; c < j->k; c++)
                wb_printf(&b, c ? ",%u" : "%u", j->sizes[c]);
            wb_lit(&b, "]");
        }
        wb_printf(&b, ",\"build_seconds\":%.6f,\"rebuild\":\"%s\",\"communities_rebuilt\":%u}",
                  j->build_seconds, j->rebuild[0] ? j->rebuild : "none", j->comms_rebuilt);
        ret = send_json(r, 200, &b);
    }
    icpnsd_job_free(j);
    return ret;
}

/* Parses {"KEY": [[a, b], ...]} into pairs. */
static int parse_pairs(req_t *r, const char *key, const char *what, icpns_pair_t **ret_pairs,
                       size_t *ret_n, bool *ret_replace, enum MHD_Result *ret)
{
    json_error_t je;
    json_t *root = json_loadb(r->body ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        *ret = send_error_ex(r, 400, "bad_json", NULL, -1, NULL, "line %d column %d: %s", je.line,
                             je.column, je.text);
        return -1;
    }
    json_t *arr = json_object_get(root, key);
    int rc = -1;
    if (!json_is_array(arr)) {
        *ret = send_error(r, 400, "bad_request", key, "'%s' must be an array of [user, %s] pairs", key, what);
        goto out;
    }
    if (ret_replace) {
        json_t *rep = json_object_get(root, "replace");
        if (rep && !json_is_boolean(rep)) {
            *ret = send_error(r, 400, "bad_request", "replace", "'replace' must be true or false");
            goto out;
        }
        *ret_replace = rep && json_is_true(rep);
    }
    size_t n = json_array_size(arr);
    icpns_pair_t *pairs = malloc((n ? n : 1) * sizeof(*pairs));
    if (!pairs) {
        *ret = send_error(r, 503, "out_of_memory", NULL, "no memory");
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        json_t *p = json_array_get(arr, k), *a = json_array_get(p, 0), *b = json_array_get(p, 1);
        if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_integer(a) ||
            !json_is_integer(b) || json_integer_value(a) < 0 || json_integer_value(b) < 0) {
            free(pairs);
            *ret = send_error_ex(r, 400, "bad_pair", key, (long long)k, NULL,
                                 "each entry is [user, %s] with non-negative integer ids", what);
            goto out;
        }
        pairs[k] = (icpns_pair_t){json_integer_value(a), json_integer_value(b)};
    }
    *ret_pairs = pairs;
    *ret_n = n;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* POST /admin/cluster: embeddings in (JSON, an ICPE frame or .npy), k-means
 * and the new communities on the build thread, the answer when published. */
static enum MHD_Result handle_admin_cluster(icpnsd_server_t *srv, req_t *r)
{
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    if (!is_ctype(ct, CT_JSON) && !is_ctype(ct, CT_EMB) && !is_ctype(ct, CT_NPY))
        return send_error(r, 415, "unsupported_media_type", NULL,
                          "send Content-Type: " CT_JSON ", " CT_EMB " or " CT_NPY);
    cluster_req_t *q = malloc(sizeof(*q));
    icpnsd_job_t *j = calloc(1, sizeof(*j));
    if (!q || !j) {
        free(q);
        free(j);
        return send_error(r, 503, "out_of_memory", NULL, "no memory");
    }
    icpnsd_cluster_req_init(q);
    j->kind = JOB_CLUSTER;
    j->cluster = q;
    icpnsd_reqerr_t e = {0};
    query_ctx_t qc = {cluster_param, q, &e, 0};
    int rc;
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_arg, &qc);
    if (qc.failed)
        rc = -1;
    else if (is_ctype(ct, CT_JSON))
        rc = icpnsd_parse_cluster_json(r->body, r->len, q, &e);
    else if (is_ctype(ct, CT_EMB))
        rc = icpnsd_parse_cluster_frame(r->body, r->len, q, &e);
    else
        rc = icpnsd_parse_cluster_npy(r->body, r->len, q, &e);
    if (!rc)
        rc = icpnsd_cluster_check(q, &e);
    /* The upload is parsed: drop the raw body now, it may be large. */
    free(r->body);
    r->body = NULL;
    r->len = r->cap = 0;
    if (rc) {
        icpnsd_job_free(j);
        return send_error_ex(r, e.status, e.code, e.field[0] ? e.field : NULL, e.row, NULL, "%s",
                             e.message);
    }
    await_job(r, j, "cluster");
    icpnsd_state_submit(&r->set->st, j);
    return MHD_YES;
}

static enum MHD_Result handle_admin_snapshot(icpnsd_server_t *srv, req_t *r)
{
    icpnsd_meta_t m;
    icpns_snapshot_t *s = icpnsd_state_acquire_meta(&r->set->st, &m);
    char when[64];
    struct tm tm;
    gmtime_r(&m.built_at, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    wbuf_t b = {0};
    wb_snapshot_head(&b, s);
    wb_lit(&b, ",\"built_at\":");
    wb_str(&b, when);
    wb_printf(&b, ",\"build_seconds\":%.6f,\"rebuild\":\"%s\",\"communities_rebuilt\":%u,"
                  "\"origin\":",
              m.build_seconds, m.rebuild, m.comms_rebuilt);
    wb_str(&b, m.origin);
    wb_lit(&b, ",\"name\":");
    wb_str(&b, r->set->name);
    wb_lit(&b, ",\"tables\":");
    if (r->set->st.tables[0])
        wb_str(&b, r->set->st.tables);
    else
        wb_lit(&b, "null");
    wb_printf(&b, ",\"users\":%u,\"items\":%u,\"interactions\":%llu,\"communities\":%u,"
                  "\"bytes\":%zu,\"alpha\":%s,\"epsilon\":%s,\"beta\":%s,\"sources\":[",
              s->users.n, s->items.n, (unsigned long long)s->n_interactions, s->comms.n, s->bytes,
              dnum(s->params.alpha).s, dnum(s->params.epsilon).s, dnum(s->params.beta).s);
    for (int k = 0; k < m.n_sources; k++) {
        wb_cstr(&b, k ? ",{\"path\":" : "{\"path\":");
        wb_str(&b, m.sources[k].path);
        wb_printf(&b, ",\"bytes\":%llu,\"fnv1a64\":\"%016llx\"}",
                  (unsigned long long)m.sources[k].bytes, (unsigned long long)m.sources[k].fnv1a);
    }
    wb_lit(&b, "]}");
    icpns_snapshot_unref(s);
    return send_json(r, 200, &b);
}

/* ---- table sets ------------------------------------------------------------------------- */

/* GET /v1/tables (public) and GET /admin/sets (with paths and caches). */
static enum MHD_Result handle_tables(icpnsd_server_t *srv, req_t *r, bool admin)
{
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned n = icpnsd_registry_list(srv->reg, sets, ICPNSD_MAX_SETS);
    int why;
    icpnsd_set_t *def = icpnsd_registry_get(srv->reg, NULL, &why);
    wbuf_t b = {0};
    uint64_t total = 0;
    wb_lit(&b, "{\"tables\":[");
    for (unsigned k = 0; k < n; k++) {
        icpnsd_set_t *set = sets[k];
        icpns_snapshot_t *s = icpnsd_state_acquire(&set->st);
        unsigned entries = 0;
        uint64_t wbytes = 0;
        icpnsd_wcache_usage(s, &entries, &wbytes);
        total += s->bytes + wbytes;
        wb_cstr(&b, k ? ",{\"name\":" : "{\"name\":");
        wb_str(&b, set->name);
        wb_printf(&b, ",\"default\":%s,\"version\":%llu,\"fingerprint\":\"%016llx\","
                      "\"users\":%u,\"items\":%u,"
                      "\"interactions\":%llu,\"communities\":%u,\"alpha\":%s,"
                      "\"epsilon\":%s,\"beta\":%s",
                  set == def ? "true" : "false", (unsigned long long)s->version,
                  (unsigned long long)s->fingerprint, s->users.n,
                  s->items.n, (unsigned long long)s->n_interactions, s->comms.n,
                  dnum(s->params.alpha).s, dnum(s->params.epsilon).s, dnum(s->params.beta).s);
        if (admin) {
            wb_lit(&b, ",\"path\":");
            if (set->st.tables[0])
                wb_str(&b, set->st.tables);
            else
                wb_lit(&b, "null");
            wb_printf(&b, ",\"bytes\":%zu,\"weights_cache\":{\"entries\":%u,\"bytes\":%llu,"
                          "\"hits\":%llu,\"misses\":%llu,\"builds\":%llu,\"evictions\":%llu}",
                      s->bytes, entries, (unsigned long long)wbytes,
                      (unsigned long long)atomic_load(&set->wstats.hits),
                      (unsigned long long)atomic_load(&set->wstats.misses),
                      (unsigned long long)atomic_load(&set->wstats.builds),
                      (unsigned long long)atomic_load(&set->wstats.evictions));
        }
        wb_lit(&b, "}");
        icpns_snapshot_unref(s);
        icpnsd_set_unref(set);
    }
    wb_lit(&b, "]");
    if (admin)
        wb_printf(&b, ",\"bytes\":%llu,\"memory_budget\":%llu", (unsigned long long)total,
                  (unsigned long long)srv->cfg->memory_budget);
    wb_lit(&b, "}");
    icpnsd_set_unref(def);
    return send_json(r, 200, &b);
}

static enum MHD_Result submit_set_job(icpnsd_server_t *srv, req_t *r, icpnsd_job_t *j)
{
    await_job(r, j, "http");
    icpnsd_registry_submit(srv->reg, j);
    return MHD_YES;
}

/* POST /admin/sets {"name": "ml100k-k8", "tables": "/path/to/dir"} */
static enum MHD_Result handle_add_set(icpnsd_server_t *srv, req_t *r)
{
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    if (!is_ctype(ct, CT_JSON))
        return send_error(r, 415, "unsupported_media_type", NULL, "send Content-Type: " CT_JSON);
    json_error_t je;
    json_t *root = json_loadb(r->body ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return send_error(r, 400, "bad_json", NULL, "line %d column %d: %s", je.line, je.column,
                          je.text);
    json_t *name = json_object_get(root, "name"), *dir = json_object_get(root, "tables");
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "name") && strcmp(key, "tables")) {
            json_decref(root);
            return send_error(r, 400, "unknown_field", key, "unknown field '%s' (name, tables)", key);
        }
    }
    if (!json_is_string(name) || !icpnsd_set_name_ok(json_string_value(name)) ||
        !json_is_string(dir) || !json_string_value(dir)[0] ||
        strlen(json_string_value(dir)) >= 1024) {
        bool bad_name = !json_is_string(name) || !icpnsd_set_name_ok(json_string_value(name));
        json_decref(root);
        return send_error(r, 400, "bad_request", bad_name ? "name" : "tables",
                          bad_name ? "'name' is 1..63 of [A-Za-z0-9._-]"
                                   : "'tables' is the table directory to load");
    }
    icpnsd_job_t *j = calloc(1, sizeof(*j));
    if (!j) {
        json_decref(root);
        return send_error(r, 503, "out_of_memory", NULL, "no memory");
    }
    j->kind = JOB_SET_ADD;
    snprintf(j->set_name, sizeof(j->set_name), "%s", json_string_value(name));
    snprintf(j->set_dir, sizeof(j->set_dir), "%s", json_string_value(dir));
    json_decref(root);
    return submit_set_job(srv, r, j);
}

/* DELETE /admin/sets/{name} */
static enum MHD_Result handle_remove_set(icpnsd_server_t *srv, req_t *r, const char *name)
{
    if (!icpnsd_set_name_ok(name))
        return send_error(r, 400, "bad_path", "name", "a table-set name is 1..63 of [A-Za-z0-9._-]");
    icpnsd_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return send_error(r, 503, "out_of_memory", NULL, "no memory");
    j->kind = JOB_SET_REMOVE;
    snprintf(j->set_name, sizeof(j->set_name), "%s", name);
    return submit_set_job(srv, r, j);
}

/* ---- routing ------------------------------------------------------------------------------- */

/* The body limit of a route: uploads of embeddings may be larger. */
static uint64_t body_limit(const icpnsd_server_t *srv, route_t rt)
{
    return rt == R_ADMIN_CLUSTER ? srv->cfg->max_upload_bytes : srv->cfg->max_body_bytes;
}

static bool is_admin_route(route_t rt)
{
    return rt == R_ADMIN_RELOAD || rt == R_ADMIN_INTERACTIONS || rt == R_ADMIN_COMMUNITIES ||
           rt == R_ADMIN_SNAPSHOT || rt == R_ADMIN_CLUSTER || rt == R_ADMIN_SETS ||
           rt == R_ADMIN_SET;
}

/* Routes about one table set, chosen with ?tables= (negatives: also the body). */
static bool needs_set(route_t rt)
{
    return rt == R_USER || rt == R_COMMUNITIES || rt == R_COMMUNITY_ITEMS ||
           rt == R_ADMIN_RELOAD || rt == R_ADMIN_INTERACTIONS || rt == R_ADMIN_COMMUNITIES ||
           rt == R_ADMIN_SNAPSHOT || rt == R_ADMIN_CLUSTER;
}

/* Whether @method is one of the comma-separated @allow. */
static bool method_allowed(const char *allow, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = allow; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        if ((size_t)(e - p) == n && !strncmp(p, method, n))
            return true;
        p = e;
    }
    return !strcmp(method, "HEAD") && strstr(allow, "GET");
}


static enum MHD_Result dispatch(icpnsd_server_t *srv, listener_t *l, req_t *r, const char *url,
                                const char *method)
{
    const char *allow;
    int64_t id = -1;
    route_t rt = icpnsd_route_of(url, &allow, &id);
    enum MHD_Result ret;
    if (rt == R_OTHER || (is_admin_route(rt) && srv->admin_separate && !l->admin) ||
        (!is_admin_route(rt) && l->admin && srv->admin_separate))
        return send_error(r, 404, "not_found", NULL, "no such endpoint: %s", url);
    if (!method_allowed(allow, method))
        return send_error_ex(r, 405, "method_not_allowed", NULL, -1, allow,
                             "%s takes %s, not %s", url, allow, method);
    if (r->too_large)
        return send_error(r, 413, "body_too_large", NULL, "the body is above the limit of %llu bytes",
                          (unsigned long long)body_limit(srv, rt));
    if (is_admin_route(rt) && check_admin(srv, r, &ret))
        return ret;
    if (needs_set(rt) && !r->set) {
        const char *name = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "tables");
        if (!(r->set = resolve_set(srv, r, name, &ret)))
            return ret;
    }
    switch (rt) {
    case R_HEALTHZ: {
        wbuf_t b = {0};
        wb_lit(&b, "{\"status\":\"ok\"}");
        return send_json(r, 200, &b);
    }
    case R_READYZ: {
        if (atomic_load(&srv->quiescing))
            return send_error(r, 503, "shutting_down", NULL, "the daemon is shutting down");
        icpnsd_set_t *sets[ICPNSD_MAX_SETS];
        unsigned n = icpnsd_registry_list(srv->reg, sets, ICPNSD_MAX_SETS);
        bool ready = n > 0;
        uint64_t version = 0;
        for (unsigned k = 0; k < n; k++) {
            icpnsd_meta_t m;
            icpnsd_state_meta(&sets[k]->st, &m);
            ready &= atomic_load(&sets[k]->st.ready);
            if (k == 0)
                version = m.version;
            icpnsd_set_unref(sets[k]);
        }
        if (!ready)
            return send_error(r, 503, "not_ready", NULL, "no snapshot serves yet");
        wbuf_t b = {0};
        wb_printf(&b, "{\"status\":\"ready\",\"version\":%llu,\"tables\":%u}",
                  (unsigned long long)version, n);
        return send_json(r, 200, &b);
    }
    case R_METRICS: {
        /* The unlabelled snapshot gauges describe the default (or first) set;
         * every set has its labelled series below them. */
        int why;
        icpnsd_set_t *set = icpnsd_registry_get(srv->reg, NULL, &why);
        if (!set) {
            icpnsd_set_t *one[1];
            if (icpnsd_registry_list(srv->reg, one, 1) == 1)
                set = one[0];
        }
        if (!set)
            return send_error(r, 503, "not_ready", NULL, "no table set");
        icpnsd_meta_t m;
        icpns_snapshot_t *s = icpnsd_state_acquire_meta(&set->st, &m);
        size_t len;
        char *text = icpnsd_metrics_render(s->version, m.build_seconds, s->bytes, s->users.n,
                                           s->items.n, s->n_interactions,
                                           icpns_now() - srv->started, &len);
        icpns_snapshot_unref(s);
        icpnsd_set_unref(set);
        size_t cap = len + 1;
        if (text)
            text = icpnsd_registry_metrics(srv->reg, text, &len, &cap);
        if (!text)
            return send_error(r, 503, "out_of_memory", NULL, "no memory");
        wbuf_t b = {text, len, cap, false};
        return send_buf(r, 200, "text/plain; version=0.0.4; charset=utf-8", &b, NULL);
    }
    case R_TABLES:
        return handle_tables(srv, r, false);
    case R_ADMIN_SETS:
        if (!strcmp(method, "POST"))
            return handle_add_set(srv, r);
        return handle_tables(srv, r, true);
    case R_ADMIN_SET:
        return handle_remove_set(srv, r, url + 12);
    case R_NEGATIVES:
        return handle_negatives(srv, r);
    case R_USER:
        if (id < 0)
            return send_error(r, 400, "bad_path", "id", "user ids are non-negative integers");
        return handle_user(srv, r, id);
    case R_COMMUNITIES:
        return handle_communities(srv, r);
    case R_COMMUNITY_ITEMS:
        if (id < 0)
            return send_error(r, 400, "bad_path", "community", "community ids are non-negative integers");
        return handle_community_items(srv, r, id);
    case R_ADMIN_RELOAD:
        return submit_job(srv, r, JOB_RELOAD, NULL, 0, false);
    case R_ADMIN_INTERACTIONS:
    case R_ADMIN_COMMUNITIES: {
        /* Both updates are a JSON list of id pairs; communities may replace. */
        bool is_comm = rt == R_ADMIN_COMMUNITIES;
        icpns_pair_t *pairs;
        size_t n;
        bool replace = false;
        const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
        if (!is_ctype(ct, CT_JSON))
            return send_error(r, 415, "unsupported_media_type", NULL, "send Content-Type: " CT_JSON);
        if (parse_pairs(r, is_comm ? "communities" : "interactions", is_comm ? "community" : "item",
                        &pairs, &n, is_comm ? &replace : NULL, &ret))
            return ret;
        return submit_job(srv, r, is_comm ? JOB_COMMUNITIES : JOB_INTERACTIONS, pairs, n, replace);
    }
    case R_ADMIN_SNAPSHOT:
        return handle_admin_snapshot(srv, r);
    case R_ADMIN_CLUSTER:
        return handle_admin_cluster(srv, r);
    default:
        return send_error(r, 404, "not_found", NULL, "no such endpoint");
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    listener_t *l = cls;
    icpnsd_server_t *srv = l->srv;
    req_t *r = *con_cls;
    (void)version;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        r->t0 = icpns_now();
        r->conn = conn;
        r->id = atomic_fetch_add(&srv->request_ids, 1) + 1;
        set_request_id(r, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id"));
        const char *allow;
        int64_t id;
        r->route = icpnsd_route_of(url, &allow, &id);
        *con_cls = r;
        /* Refuse an announced oversize body before reading any of it. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            unsigned long long n = strtoull(cl, NULL, 10);
            if (n > body_limit(srv, r->route))
                return send_error(r, 413, "body_too_large", NULL,
                                  "Content-Length %llu is above the limit of %llu bytes", n,
                                  (unsigned long long)body_limit(srv, r->route));
        }
        return MHD_YES;
    }
    if (r->answered) {
        *upload_data_size = 0; /* discard the rest of a refused body */
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        atomic_fetch_add_explicit(&icpnsd_metrics.bytes_in, n, memory_order_relaxed);
        if (!r->too_large) {
            if (r->len + n > body_limit(srv, r->route)) {
                /* Chunked bodies have no Content-Length: count and stop. */
                r->too_large = true;
                free(r->body);
                r->body = NULL;
                r->len = r->cap = 0;
            } else {
                if (r->len + n + 1 > r->cap) {
                    size_t c = r->cap ? r->cap : 4096;
                    while (c < r->len + n + 1)
                        c *= 2;
                    char *nb = realloc(r->body, c);
                    if (!nb)
                        return send_error(r, 503, "out_of_memory", NULL, "no memory for the body");
                    r->body = nb;
                    r->cap = c;
                }
                memcpy(r->body + r->len, upload_data, n);
                r->len += n;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->job) {
        if (!atomic_load(&r->job_done))
            return MHD_YES; /* spurious wake-up */
        return finish_job(r);
    }
    if (r->task) {
        if (!atomic_load(&r->task->done))
            return MHD_YES;
        neg_task_t *t = r->task;
        r->task = NULL;
        return finish_task(r, t);
    }
    return dispatch(srv, l, r, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    req_t *r = *con_cls;
    if (!r)
        return;
    if (r->status)
        icpnsd_metrics_request(r->route, r->status, icpns_now() - r->t0);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug("request id=%s route=%s ended early (%d)", r->rid,
                  icpnsd_route_name(r->route), (int)toe);
    icpns_snapshot_unref(r->wait_snap);
    icpnsd_set_unref(r->set);
    free(r->body);
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
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *err, size_t es)
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
                                    int fd, unsigned threads, uint16_t *ret_port, char *err, size_t es)
{
    const icpnsd_config_t *cfg = srv->cfg;
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
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_ip, NULL};
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

icpnsd_server_t *icpnsd_server_start(const icpnsd_config_t *cfg, icpnsd_registry_t *reg,
                                     const char *token, int listen_fd, uint16_t *ret_port,
                                     uint16_t *ret_admin_port, char *err, size_t es)
{
    icpnsd_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        snprintf(err, es, "out of memory");
        return NULL;
    }
    srv->cfg = cfg;
    srv->reg = reg;
    srv->started = icpns_now();
    srv->default_strategy = icpns_strategy_parse(cfg->default_strategy);
    if (token && *token) {
        snprintf(srv->token, sizeof(srv->token), "%s", token);
        srv->token_len = strlen(srv->token);
        srv->admin_enabled = true;
    }
    srv->admin_separate = cfg->admin_listen[0] != '\0';
    pthread_key_create(&srv->work_key, free_work);
    pthread_mutex_init(&srv->pool_lock, NULL);
    pthread_cond_init(&srv->pool_cond, NULL);
    unsigned want = cfg->threads < 64 ? cfg->threads : 64;
    for (unsigned k = 0; k < want; k++) {
        if (pthread_create(&srv->pool[k], NULL, pool_main, srv)) {
            snprintf(err, es, "cannot start the compute threads: %s", strerror(errno));
            goto fail;
        }
        srv->pool_threads++;
    }
    main_listener = (listener_t){srv, false};
    admin_listener = (listener_t){srv, true};
    srv->mhd = start_one(srv, &main_listener, cfg->listen, listen_fd, cfg->threads, ret_port, err, es);
    if (!srv->mhd)
        goto fail;
    if (srv->admin_separate) {
        srv->mhd_admin = start_one(srv, &admin_listener, cfg->admin_listen, -1, 1, ret_admin_port, err, es);
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
    atomic_store(&srv->quiescing, true);
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
            const union MHD_DaemonInfo *i = MHD_get_daemon_info(ds[k], MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
            n += i ? i->num_connections : 0;
        }
    return n;
}

void icpnsd_server_stop(icpnsd_server_t *srv)
{
    if (!srv)
        return;
    /* The compute pool first: it finishes the tasks it holds (their
     * connections are still open), then the HTTP threads stop. */
    pthread_mutex_lock(&srv->pool_lock);
    srv->pool_stop = true;
    pthread_cond_broadcast(&srv->pool_cond);
    pthread_mutex_unlock(&srv->pool_lock);
    for (unsigned k = 0; k < srv->pool_threads; k++)
        pthread_join(srv->pool[k], NULL);
    srv->pool_threads = 0;
    if (srv->mhd)
        MHD_stop_daemon(srv->mhd);
    if (srv->mhd_admin)
        MHD_stop_daemon(srv->mhd_admin);
    pthread_mutex_destroy(&srv->pool_lock);
    pthread_cond_destroy(&srv->pool_cond);
    pthread_key_delete(srv->work_key);
    free(srv);
}
