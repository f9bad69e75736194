/*
 * reply.h - answers: JSON, binary frames, text, and errors.  The only place
 * that maps an error code to an HTTP status.
 *
 * Every reply function takes over the content of the buffer it is given
 * (freed whatever happens), queues the answer on the request's connection,
 * and returns what libmicrohttpd's access handler must return.  A buffer
 * that failed (out of memory) becomes a 503 out_of_memory answer.
 */
#ifndef ICPNSD_REPLY_H
#define ICPNSD_REPLY_H

#include <microhttpd.h>
#include <stdint.h>

#include "error.h"
#include "icpns.h"
#include "req.h"

#define ICPNSD_CT_JSON "application/json"
#define ICPNSD_CT_FRAME "application/x-icpns-frame"
#define ICPNSD_CT_EMB "application/x-icpns-embeddings"
#define ICPNSD_CT_NPY "application/x-npy"
#define ICPNSD_CT_TABLESET "application/x-icpns-tableset"
#define ICPNSD_CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

/* The HTTP status of an error code. */
unsigned icpnsd_code_status(icpnsd_code_t code);

/* Answers @status with @b's bytes as @ctype. */
enum MHD_Result icpnsd_reply(icpnsd_req_t *r, unsigned status, const char *ctype,
                             icpns_buf_t *b);

/* icpnsd_reply of a buffer holding @reserved bytes of answers_in_flight_bytes:
 * given back when libmicrohttpd frees it (or on failure). */
enum MHD_Result icpnsd_reply_reserved(icpnsd_req_t *r, unsigned status, const char *ctype,
                                      icpns_buf_t *b, uint64_t reserved);

/* Answers with bytes @read produces as the client reads (@size, or
 * MHD_SIZE_UNKNOWN: chunked); @free_cb(@cls) runs when the answer ends,
 * also when this fails. */
enum MHD_Result icpnsd_reply_stream(icpnsd_req_t *r, unsigned status, const char *ctype,
                                    uint64_t size, MHD_ContentReaderCallback read, void *cls,
                                    MHD_ContentReaderFreeCallback free_cb);

/* Answers @status with the JSON document in @b (a newline is added). */
enum MHD_Result icpnsd_reply_json(icpnsd_req_t *r, unsigned status, icpns_buf_t *b);

/* Answers the error @e: {"error":{"code","message","field"?,"row"?}}. */
enum MHD_Result icpnsd_reply_err(icpnsd_req_t *r, const icpnsd_err_t *e);

/* icpnsd_reply_err of an error made on the spot. */
enum MHD_Result icpnsd_reply_error(icpnsd_req_t *r, icpnsd_code_t code, const char *field,
                                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- JSON writing ------------------------------------------------------------ */

/* A JSON string literal of @s with escapes. */
void icpnsd_json_str(icpns_buf_t *b, const char *s);

/* The shortest decimal form of @x that reads back as the same double
 * (0.8, not 0.80000000000000004). */
typedef struct icpnsd_dnum {
    char s[32];
} icpnsd_dnum_t;
icpnsd_dnum_t icpnsd_dnum(double x);

/* Opens an answer about snapshot @s: {"version":N,"fingerprint":"..." */
void icpnsd_json_snapshot_head(icpns_buf_t *b, const icpns_snapshot_t *s);

#endif
