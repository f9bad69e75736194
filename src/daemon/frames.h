/*
 * frames.h - the binary frames of proto/frames.md, decoded into the
 * request types of request.h and encoded from sampled arrays.
 */
#ifndef ICPNSD_FRAMES_H
#define ICPNSD_FRAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "request.h"
#include "upload.h"

#define ICPNSD_FRAME_REQ_MAGIC "ICPQ"
#define ICPNSD_FRAME_RESP_MAGIC "ICPR"
#define ICPNSD_FRAME_EMB_MAGIC "ICPE"
#define ICPNSD_FRAME_REQ_HEADER 40
#define ICPNSD_FRAME_RESP_HEADER 32
#define ICPNSD_FRAME_EMB_HEADER 40
#define ICPNSD_FRAME_SET_MAGIC "ICPT"
#define ICPNSD_FRAME_SET_HEADER 40

/* An ICPQ request frame into @q (q->users allocated; free with
 * icpnsd_negreq_free, also on failure).  0 or -1 with @e. */
int icpnsd_frame_parse_negatives(const icpnsd_config_t *cfg, const char *body, size_t len,
                                 icpnsd_negreq_t *q, icpnsd_err_t *e);

/* An ICPE frame: 40-byte header, int64 users, float32 row-major matrix. */
int icpnsd_frame_parse_embeddings(const char *body, size_t len, icpnsd_clusterreq_t *q,
                                  icpnsd_err_t *e);

/* An ICPT frame (a table set uploaded whole): 40-byte header, then int64
 * (user, item) pairs, (user, community) pairs and item ids. */
int icpnsd_frame_parse_tableset(const char *body, size_t len, icpnsd_tableset_t *t,
                                icpnsd_err_t *e);

/* Bytes of an ICPR answer. */
size_t icpnsd_frame_negatives_size(uint32_t rows, uint32_t cols, bool probs, uint32_t nfb);

/* Writes the 32-byte ICPR header at @p. */
void icpnsd_frame_negatives_header(unsigned char *p, uint64_t version, uint32_t rows,
                                   uint32_t cols, bool probs, uint32_t nfb, uint32_t nsub);

/* Write @n int64 item ids (dense @items through @ids), @n float32
 * probabilities, or @n uint32 values at @o; return the end. */
unsigned char *icpnsd_frame_put_items(unsigned char *o, const uint32_t *items, size_t n,
                                      const int64_t *ids);
unsigned char *icpnsd_frame_put_probs(unsigned char *o, const double *probs, size_t n);
unsigned char *icpnsd_frame_put_u32(unsigned char *o, const uint32_t *v, size_t n);

#endif
