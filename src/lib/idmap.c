/* idmap.c - external ids <-> dense indices (sorted array + hash table). */
#include <stdlib.h>
#include <string.h>

#include "icpns/common.h"
#include "icpns/idmap.h"
#include "icpns/rng.h"

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int icpns_idmap_build(icpns_idmap_t *m, int64_t *ids, size_t n)
{
    m->n = 0;
    m->ids = NULL;
    m->mask = 0;
    m->slots = NULL;

    if (n > 0)
        qsort(ids, n, sizeof(*ids), cmp_i64);
    size_t u = 0;
    for (size_t k = 0; k < n; k++)
        if (u == 0 || ids[u - 1] != ids[k])
            ids[u++] = ids[k];
    if (u > (UINT32_C(1) << 31)) {
        free(ids);
        return ICPNS_ELIMIT;
    }
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)u)
        cap <<= 1;
    uint32_t *slots = malloc(cap * sizeof(*slots));
    if (!slots) {
        free(ids);
        return ICPNS_ENOMEM;
    }
    for (uint64_t k = 0; k < cap; k++)
        slots[k] = ICPNS_NONE;
    uint32_t mask = (uint32_t)(cap - 1);
    for (uint32_t k = 0; k < u; k++) {
        uint32_t h = (uint32_t)icpns_idmap_hash(ids[k]) & mask;
        while (slots[h] != ICPNS_NONE)
            h = (h + 1) & mask;
        slots[h] = k;
    }
    if (u < n && u > 0) {
        int64_t *shrunk = realloc(ids, u * sizeof(*ids));
        if (shrunk)
            ids = shrunk;
    }
    m->n = (uint32_t)u;
    m->ids = ids;
    m->mask = mask;
    m->slots = slots;
    return 0;
}

void icpns_idmap_free(icpns_idmap_t *m)
{
    free(m->ids);
    free(m->slots);
    m->ids = NULL;
    m->slots = NULL;
    m->n = 0;
}

uint32_t icpns_idmap_find(const icpns_idmap_t *m, int64_t id)
{
    if (!m->slots)
        return ICPNS_NONE;
    uint32_t h = (uint32_t)icpns_idmap_hash(id) & m->mask;
    for (;;) {
        uint32_t k = m->slots[h];
        if (k == ICPNS_NONE || m->ids[k] == id)
            return k;
        h = (h + 1) & m->mask;
    }
}

int icpns_idmap_copy(icpns_idmap_t *dst, const icpns_idmap_t *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->n = src->n;
    dst->mask = src->mask;
    dst->ids = malloc((src->n ? src->n : 1) * sizeof(*dst->ids));
    dst->slots = src->slots ? malloc(((size_t)src->mask + 1) * sizeof(*dst->slots)) : NULL;
    if (!dst->ids || (src->slots && !dst->slots)) {
        icpns_idmap_free(dst);
        return ICPNS_ENOMEM;
    }
    memcpy(dst->ids, src->ids, (size_t)src->n * sizeof(*dst->ids));
    if (src->slots)
        memcpy(dst->slots, src->slots, ((size_t)src->mask + 1) * sizeof(*dst->slots));
    return 0;
}

size_t icpns_idmap_bytes(const icpns_idmap_t *m)
{
    return (size_t)m->n * sizeof(int64_t) +
           (m->slots ? ((size_t)m->mask + 1) * sizeof(uint32_t) : 0);
}
