/*
 * frames.c - the binary frames of proto/frames.md: ICPQ (negatives
 * request) and ICPE (embeddings upload) decoding, ICPR (negatives answer)
 * encoding.  Little-endian whatever the host.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frames.h"

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* Reads a binary frame (proto/frames.md). */
int icpnsd_frame_parse_negatives(const icpnsd_config_t *cfg, const char *body, size_t len,
                                 icpnsd_negreq_t *q, icpnsd_err_t *e)
{
    const unsigned char *p = (const unsigned char *)body;
    if (len < ICPNSD_FRAME_REQ_HEADER || memcmp(p, ICPNSD_FRAME_REQ_MAGIC, 4)) {
        icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, NULL, -1, "a request frame starts with a 40-byte header and magic 'ICPQ'");
        return -1;
    }
    if (rd16(p + 4) != 1) {
        icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "version", -1, "unsupported frame version %u", rd16(p + 4));
        return -1;
    }
    uint16_t flags = rd16(p + 6);
    uint32_t n = rd32(p + 8), m = rd32(p + 12), count = rd32(p + 20);
    unsigned strategy = p[16];
    if (flags & ~3u) {
        icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "flags", -1, "unknown flag bits 0x%x", flags & ~3u);
        return -1;
    }
    if (strategy >= ICPNS_STRATEGY_COUNT) {
        icpnsd_err_set(e, ICPNSD_E_BAD_STRATEGY, "strategy", -1, "strategy byte %u is not 0, 1 or 2", strategy);
        return -1;
    }
    if (p[17] || p[18] || p[19] || rd64(p + 32))
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "reserved", -1,
                              "reserved header bytes (17-19, 32-39) must be 0");
    if (rd64(p + 24) > ICPNSD_MAX_SEED)
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "seed", -1,
                              "seed %llu is above 2^63 - 1 (seeds are 0 .. 2^63 - 1, as in JSON)",
                              (unsigned long long)rd64(p + 24));
    if (n < 1 || m < 1) {
        icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, n < 1 ? "n" : "candidates", -1, "n and candidates must be >= 1");
        return -1;
    }
    if (count > cfg->max_users || n > cfg->max_n || m > cfg->max_candidates) {
        icpnsd_err_set(e, ICPNSD_E_LIMIT_EXCEEDED, count > cfg->max_users ? "users" : n > cfg->max_n ? "n" : "candidates", -1, "the frame asks beyond the configured limits");
        return -1;
    }
    if ((uint64_t)len != ICPNSD_FRAME_REQ_HEADER + (uint64_t)count * 8) {
        icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "users", -1, "the header announces %u users (%llu bytes) but the body has %zu bytes",
                          count, (unsigned long long)(ICPNSD_FRAME_REQ_HEADER + (uint64_t)count * 8), len);
        return -1;
    }
    q->rows = count;
    q->users = malloc((count ? count : 1) * sizeof(*q->users));
    if (!q->users) {
        icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for the request");
        return -1;
    }
    for (uint32_t k = 0; k < count; k++) {
        q->users[k] = (int64_t)rd64(p + ICPNSD_FRAME_REQ_HEADER + (size_t)k * 8);
        if (q->users[k] < 0) {
            icpnsd_err_set(e, ICPNSD_E_BAD_USER_ID, "users", k, "user ids are non-negative");
            return -1;
        }
    }
    q->nparts = 1;
    q->parts[0].strategy = (icpns_strategy_t)strategy;
    q->parts[0].n = n;
    q->n = n;
    q->m = m;
    q->seed = rd64(p + 24);
    q->probs = flags & 1;
    if (flags & 2)
        q->flags |= ICPNS_SAMPLE_SUBSTITUTE_PNS;
    q->binary_in = true;
    return 0;
}



int icpnsd_frame_parse_embeddings(const char *body, size_t len, icpnsd_clusterreq_t *q,
                               icpnsd_err_t *e)
{
    const unsigned char *p = (const unsigned char *)body;
    if (len < ICPNSD_FRAME_EMB_HEADER || memcmp(p, ICPNSD_FRAME_EMB_MAGIC, 4))
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, NULL, -1,
                      "an embeddings frame starts with a 40-byte header and magic 'ICPE'");
    if (rd16(p + 4) != 1)
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "version", -1, "unsupported frame version %u", rd16(p + 4));
    if (rd16(p + 6) != 0)
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "flags", -1, "unknown flag bits 0x%x", rd16(p + 6));
    uint32_t k = rd32(p + 8), rows = rd32(p + 12), dim = rd32(p + 16), restarts = rd32(p + 20),
             max_iter = rd32(p + 24);
    if (rd32(p + 28))
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "reserved", -1,
                              "reserved header bytes (28-31) must be 0");
    char text[32];
    snprintf(text, sizeof(text), "%u", k);
    if (icpnsd_clusterreq_opt(q, "k", text, e))
        return -1;
    snprintf(text, sizeof(text), "%llu", (unsigned long long)rd64(p + 32));
    if (icpnsd_clusterreq_opt(q, "seed", text, e))
        return -1;
    if (restarts) {
        snprintf(text, sizeof(text), "%u", restarts);
        if (icpnsd_clusterreq_opt(q, "restarts", text, e))
            return -1;
    }
    if (max_iter) {
        snprintf(text, sizeof(text), "%u", max_iter);
        if (icpnsd_clusterreq_opt(q, "max_iter", text, e))
            return -1;
    }
    if (rows == 0 || dim == 0 || dim > 65536 || rows > UINT32_MAX / 2)
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, rows == 0 ? "rows" : "dim", -1,
                      "rows must be 1..2^31 and dim 1..65536");
    uint64_t need = ICPNSD_FRAME_EMB_HEADER + (uint64_t)rows * 8 + (uint64_t)rows * dim * 4;
    if ((uint64_t)len != need)
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "embeddings", -1,
                      "the header announces %u x %u (%llu bytes) but the body has %zu bytes", rows,
                      dim, (unsigned long long)need, len);
    q->emb.n = rows;
    q->emb.dim = dim;
    q->emb.ids = malloc((size_t)rows * sizeof(int64_t));
    q->emb.x = malloc((size_t)rows * dim * sizeof(float));
    if (!q->emb.ids || !q->emb.x)
        return icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for the embeddings");
    for (uint32_t r = 0; r < rows; r++) {
        q->emb.ids[r] = (int64_t)rd64(p + ICPNSD_FRAME_EMB_HEADER + (size_t)r * 8);
        if (q->emb.ids[r] < 0)
            return icpnsd_err_set(e, ICPNSD_E_BAD_USER_ID, "users", r, "user ids are non-negative");
    }
    memcpy(q->emb.x, p + ICPNSD_FRAME_EMB_HEADER + (size_t)rows * 8, (size_t)rows * dim * 4);
    return 0;
}


/* ---- ICPT --------------------------------------------------------------------- */

int icpnsd_frame_parse_tableset(const char *body, size_t len, icpnsd_tableset_t *t,
                                icpnsd_err_t *e)
{
    const unsigned char *p = (const unsigned char *)body;
    if (len < ICPNSD_FRAME_SET_HEADER || memcmp(p, ICPNSD_FRAME_SET_MAGIC, 4))
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, NULL, -1,
                              "a table-set frame starts with a 40-byte header and magic 'ICPT'");
    if (rd16(p + 4) != 1)
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "version", -1, "unsupported frame version %u",
                              rd16(p + 4));
    if (rd16(p + 6) != 0)
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "flags", -1, "unknown flag bits 0x%x",
                              rd16(p + 6));
    if (rd64(p + 8))
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "reserved", -1,
                              "reserved header bytes (8-15) must be 0");
    uint64_t ni = rd64(p + 16), nc = rd64(p + 24), nt = rd64(p + 32);
    if (ni > ((uint64_t)1 << 40) || nc > ((uint64_t)1 << 40) || nt > ((uint64_t)1 << 40) ||
        (uint64_t)len != ICPNSD_FRAME_SET_HEADER + 16 * ni + 16 * nc + 8 * nt)
        return icpnsd_err_set(e, ICPNSD_E_BAD_FRAME, "interactions", -1,
                              "the header announces %llu interactions, %llu communities and %llu "
                              "items but the body has %zu bytes", (unsigned long long)ni,
                              (unsigned long long)nc, (unsigned long long)nt, len);
    t->inter = malloc((ni ? ni : 1) * sizeof(*t->inter));
    t->comm = malloc((nc ? nc : 1) * sizeof(*t->comm));
    t->items = nt ? malloc(nt * sizeof(*t->items)) : NULL;
    if (!t->inter || !t->comm || (nt && !t->items))
        return icpnsd_err_set(e, ICPNSD_E_OUT_OF_MEMORY, NULL, -1, "no memory for the table set");
    const unsigned char *q = p + ICPNSD_FRAME_SET_HEADER;
    const char *field = "interactions";
    icpns_pair_t *dst = t->inter;
    for (uint64_t k = 0; k < ni + nc; k++, q += 16) {
        if (k == ni) {
            field = "communities";
            dst = t->comm;
        }
        int64_t a = (int64_t)rd64(q), b = (int64_t)rd64(q + 8);
        uint64_t row = k < ni ? k : k - ni;
        if (a < 0 || b < 0)
            return icpnsd_err_set(e, ICPNSD_E_BAD_PAIR, field, (long long)row,
                                  "ids are non-negative");
        dst[row] = (icpns_pair_t){a, b};
    }
    for (uint64_t k = 0; k < nt; k++, q += 8) {
        t->items[k] = (int64_t)rd64(q);
        if (t->items[k] < 0)
            return icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "items", (long long)k,
                                  "item ids are non-negative");
    }
    t->n_inter = ni;
    t->n_comm = nc;
    t->n_items = nt;
    return 0;
}

/* ---- ICPR -------------------------------------------------------------------- */

static void wr32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void wr64(unsigned char *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

size_t icpnsd_frame_negatives_size(uint32_t rows, uint32_t cols, bool probs, uint32_t nfb)
{
    size_t cells = (size_t)rows * cols;
    return ICPNSD_FRAME_RESP_HEADER + cells * 8 + (probs ? cells * 4 : 0) + (size_t)nfb * 4;
}

void icpnsd_frame_negatives_header(unsigned char *p, uint64_t version, uint32_t rows,
                                   uint32_t cols, bool probs, uint32_t nfb, uint32_t nsub)
{
    memcpy(p, ICPNSD_FRAME_RESP_MAGIC, 4);
    p[4] = 1, p[5] = 0;
    p[6] = probs ? 1 : 0, p[7] = 0;
    wr64(p + 8, version);
    wr32(p + 16, rows);
    wr32(p + 20, cols);
    wr32(p + 24, nfb);
    wr32(p + 28, nsub);
}

unsigned char *icpnsd_frame_put_items(unsigned char *o, const uint32_t *items, size_t n,
                                      const int64_t *ids)
{
    for (size_t k = 0; k < n; k++, o += 8)
        wr64(o, (uint64_t)ids[items[k]]);
    return o;
}

unsigned char *icpnsd_frame_put_probs(unsigned char *o, const double *probs, size_t n)
{
    for (size_t k = 0; k < n; k++, o += 4) {
        float f = (float)probs[k];
        uint32_t bits;
        memcpy(&bits, &f, 4);
        wr32(o, bits);
    }
    return o;
}

unsigned char *icpnsd_frame_put_u32(unsigned char *o, const uint32_t *v, size_t n)
{
    for (size_t k = 0; k < n; k++, o += 4)
        wr32(o, v[k]);
    return o;
}
