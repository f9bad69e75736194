/* reply.c - answers and the status of every error code (see reply.h). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "reply.h"

unsigned icpnsd_code_status(icpnsd_code_t code)
{
    switch (code) {
    case ICPNSD_E_OK:
        return 200;
    case ICPNSD_E_BAD_JSON:
    case ICPNSD_E_BAD_REQUEST:
    case ICPNSD_E_UNKNOWN_FIELD:
    case ICPNSD_E_UNKNOWN_PARAMETER:
    case ICPNSD_E_CONFLICTING_ASSIGNMENT:
    case ICPNSD_E_BAD_USER_ID:
    case ICPNSD_E_BAD_STRATEGY:
    case ICPNSD_E_BAD_FRAME:
    case ICPNSD_E_BAD_PAIR:
    case ICPNSD_E_BAD_PARAMETER:
    case ICPNSD_E_BAD_EMBEDDINGS:
    case ICPNSD_E_BAD_NPY:
    case ICPNSD_E_CONFLICTING_PARAMETER:
    case ICPNSD_E_TABLES_REQUIRED:
    case ICPNSD_E_CUSTOM_WEIGHTS_DISABLED:
    case ICPNSD_E_BAD_PATH:
    case ICPNSD_E_BAD_QUERY:
        return 400;
    case ICPNSD_E_UNAUTHORIZED:
        return 401;
    case ICPNSD_E_FORBIDDEN:
    case ICPNSD_E_ADMIN_DISABLED:
        return 403;
    case ICPNSD_E_TOO_MANY_AUTH_FAILURES:
        return 429;
    case ICPNSD_E_NOT_FOUND:
    case ICPNSD_E_NO_SUCH_USER:
    case ICPNSD_E_NO_SUCH_COMMUNITY:
    case ICPNSD_E_NO_SUCH_JOB:
    case ICPNSD_E_UNKNOWN_TABLES:
        return 404;
    case ICPNSD_E_METHOD_NOT_ALLOWED:
        return 405;
    case ICPNSD_E_NOT_ACCEPTABLE:
        return 406;
    case ICPNSD_E_READ_ONLY_TABLES:
    case ICPNSD_E_TABLES_EXIST:
    case ICPNSD_E_LAST_TABLES:
    case ICPNSD_E_TOO_MANY_TABLES:
    case ICPNSD_E_TABLES_DIR_IN_USE:
    case ICPNSD_E_POPULARITY_FROM_FILE:
    case ICPNSD_E_INCOMPLETE_ASSIGNMENT:
    case ICPNSD_E_UPLOADS_DISABLED:
    case ICPNSD_E_CANCELED:
        return 409;
    case ICPNSD_E_BODY_TOO_LARGE:
    case ICPNSD_E_LIMIT_EXCEEDED:
        return 413;
    case ICPNSD_E_URI_TOO_LONG:
        return 414;
    case ICPNSD_E_UNSUPPORTED_MEDIA_TYPE:
        return 415;
    case ICPNSD_E_UNKNOWN_USER:
    case ICPNSD_E_NO_COMMUNITY:
    case ICPNSD_E_INFEASIBLE:
    case ICPNSD_E_SAMPLING_FAILED:
    case ICPNSD_E_DUPLICATE_USER:
    case ICPNSD_E_ROW_COUNT_MISMATCH:
    case ICPNSD_E_BUILD_INVALID:
    case ICPNSD_E_UPDATE_TOO_LARGE:
    case ICPNSD_E_UPDATE_FAILED:
        return 422;
    case ICPNSD_E_TABLES_INVALID:
    case ICPNSD_E_TABLES_UNREADABLE:
    case ICPNSD_E_TABLES_TOO_LARGE:
    case ICPNSD_E_REBUILD_FAILED:
        return 500;
    case ICPNSD_E_WEIGHTS_BUILDING:
    case ICPNSD_E_WEIGHTS_FAILED:
    case ICPNSD_E_OUT_OF_MEMORY:
    case ICPNSD_E_NOT_READY:
    case ICPNSD_E_SHUTTING_DOWN:
    case ICPNSD_E_ANSWERS_IN_FLIGHT:
    case ICPNSD_E_REGISTRY_BUSY:
    case ICPNSD_E_TOO_MANY_JOBS:
    case ICPNSD_E_TOO_MANY_CONNECTIONS:
        return 503;
    case ICPNSD_E_MEMORY_BUDGET_EXCEEDED:
    case ICPNSD_E_STORAGE_FAILED:
        return 507;
    case ICPNSD_E_COUNT:
        break;
    }
    return 500;
}

/* Adds the headers every answer has and queues @resp. */
static enum MHD_Result send_response(icpnsd_req_t *r, unsigned status, const char *ctype,
                                     struct MHD_Response *resp, size_t len)
{
    MHD_add_response_header(resp, "Content-Type", ctype);
    if (status == 405 && r->allow[0])
        MHD_add_response_header(resp, "Allow", r->allow);
    if (r->location[0])
        MHD_add_response_header(resp, "Location", r->location);
    if (status == 401) {
        char v[64];
        snprintf(v, sizeof(v), "Bearer realm=\"%s\"", r->auth_realm ? r->auth_realm : "icpnsd");
        MHD_add_response_header(resp, "WWW-Authenticate", v);
    }
    if (status == 503)
        MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 429) {
        char v[16];
        snprintf(v, sizeof(v), "%u", r->retry_after ? r->retry_after : 1);
        MHD_add_response_header(resp, "Retry-After", v);
    }
    MHD_add_response_header(resp, "X-Request-Id", r->rid);
    /* Stopping: keep-alive clients go elsewhere for their next request. */
    if (atomic_load(&r->env->quiescing))
        MHD_add_response_header(resp, "Connection", "close");
    if (r->has_fingerprint) {
        char fp[17];
        snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)r->fingerprint);
        MHD_add_response_header(resp, "Icpns-Fingerprint", fp);
    }
    atomic_fetch_add_explicit(&icpnsd_metrics.bytes_out, len, memory_order_relaxed);
    r->status = status;
    r->answered = true;
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Queues @len bytes at @p (freed with the response when @owned). */
static enum MHD_Result queue(icpnsd_req_t *r, unsigned status, const char *ctype, char *p,
                             size_t len, bool owned)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, p ? p : (void *)"", p && owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (owned)
            free(p);
        return MHD_NO;
    }
    return send_response(r, status, ctype, resp, len);
}

/* A buffer whose bytes are reserved in answers_in_flight_bytes until
 * libmicrohttpd frees it. */
typedef struct reserved {
    icpnsd_env_t *env;
    uint64_t bytes;
    char *p;
} reserved_t;

static void free_reserved(void *cls)
{
    reserved_t *rs = cls;
    icpnsd_inflight_give(rs->env, rs->bytes);
    free(rs->p);
    free(rs);
}

enum MHD_Result icpnsd_reply_reserved(icpnsd_req_t *r, unsigned status, const char *ctype,
                                      icpns_buf_t *b, uint64_t reserved)
{
    if (b->failed || !reserved) {
        if (reserved)
            icpnsd_inflight_give(r->env, reserved);
        return icpnsd_reply(r, status, ctype, b);
    }
    reserved_t *rs = malloc(sizeof(*rs));
    size_t len;
    char *p = icpns_buf_steal(b, &len);
    if (!rs) {
        free(p);
        icpnsd_inflight_give(r->env, reserved);
        return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory for the answer");
    }
    *rs = (reserved_t){r->env, reserved, p};
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        len, p ? p : (void *)"", free_reserved, rs);
    if (!resp) {
        free_reserved(rs);
        return MHD_NO;
    }
    return send_response(r, status, ctype, resp, len);
}

enum MHD_Result icpnsd_reply_stream(icpnsd_req_t *r, unsigned status, const char *ctype,
                                    uint64_t size, MHD_ContentReaderCallback read, void *cls,
                                    MHD_ContentReaderFreeCallback free_cb)
{
    struct MHD_Response *resp = MHD_create_response_from_callback(size, 64 * 1024, read, cls,
                                                                  free_cb);
    if (!resp) {
        free_cb(cls);
        return icpnsd_reply_error(r, ICPNSD_E_OUT_OF_MEMORY, NULL, "no memory for the answer");
    }
    return send_response(r, status, ctype, resp, size == MHD_SIZE_UNKNOWN ? 0 : size);
}

enum MHD_Result icpnsd_reply(icpnsd_req_t *r, unsigned status, const char *ctype, icpns_buf_t *b)
{
    if (b->failed) {
        static char oom[] = "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"the response "
                            "could not be allocated\"}}\n";
        icpns_buf_free(b);
        log_warn("request id=%s: no memory for the answer", r->rid);
        return queue(r, 503, ICPNSD_CT_JSON, oom, sizeof(oom) - 1, false);
    }
    size_t len;
    char *p = icpns_buf_steal(b, &len);
    return queue(r, status, ctype, p, len, true);
}

enum MHD_Result icpnsd_reply_json(icpnsd_req_t *r, unsigned status, icpns_buf_t *b)
{
    icpns_buf_lit(b, "\n");
    return icpnsd_reply(r, status, ICPNSD_CT_JSON, b);
}

enum MHD_Result icpnsd_reply_err(icpnsd_req_t *r, const icpnsd_err_t *e)
{
    unsigned status = icpnsd_code_status(e->code);
    const char *code = icpnsd_code_name(e->code);
    icpns_buf_t b;
    icpns_buf_init(&b, 0);
    icpns_buf_lit(&b, "{\"error\":{\"code\":");
    icpnsd_json_str(&b, code);
    icpns_buf_lit(&b, ",\"message\":");
    icpnsd_json_str(&b, e->message);
    if (e->field[0]) {
        icpns_buf_lit(&b, ",\"field\":");
        icpnsd_json_str(&b, e->field);
    }
    if (e->row >= 0) {
        icpns_buf_lit(&b, ",\"row\":");
        icpns_buf_i64(&b, e->row);
    }
    icpns_buf_lit(&b, "}}\n");
    const char *route = icpnsd_metrics_route_name(r->metric);
    if (status >= 500)
        log_warn("request id=%s route=%s status=%u code=%s: %s", r->rid, route, status, code,
                 e->message);
    else
        log_debug("request id=%s route=%s status=%u code=%s: %s", r->rid, route, status, code,
                  e->message);
    return icpnsd_reply(r, status, ICPNSD_CT_JSON, &b);
}

enum MHD_Result icpnsd_reply_error(icpnsd_req_t *r, icpnsd_code_t code, const char *field,
                                   const char *fmt, ...)
{
    icpnsd_err_t e;
    icpnsd_err_clear(&e);
    e.code = code;
    snprintf(e.field, sizeof(e.field), "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    return icpnsd_reply_err(r, &e);
}

/* ---- JSON writing ------------------------------------------------------------ */

void icpnsd_json_str(icpns_buf_t *b, const char *s)
{
    icpns_buf_lit(b, "\"");
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c != '"' && c != '\\' && c >= 0x20)
            continue;
        icpns_buf_put(b, run, (size_t)(s - run));
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            icpns_buf_put(b, e, 2);
        } else {
            icpns_buf_printf(b, "\\u%04x", c);
        }
        run = s + 1;
    }
    icpns_buf_put(b, run, (size_t)(s - run));
    icpns_buf_lit(b, "\"");
}

icpnsd_dnum_t icpnsd_dnum(double x)
{
    icpnsd_dnum_t d;
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(d.s, sizeof(d.s), "%.*g", prec, x);
        if (strtod(d.s, NULL) == x)
            break;
    }
    return d;
}

void icpnsd_json_snapshot_head(icpns_buf_t *b, const icpns_snapshot_t *s)
{
    icpns_buf_lit(b, "{\"version\":");
    icpns_buf_u64(b, s->version);
    icpns_buf_printf(b, ",\"fingerprint\":\"%016llx\"", (unsigned long long)s->fingerprint);
}
