/*
 * icpns/rng.h - counter-based random numbers.
 *
 * A stream is a 64-bit key derived from (seed, row, slot) and a counter.
 * Output k of a stream is a bijective mix of key + k * golden-ratio (the
 * SplitMix64 construction), so a negative depends only on (seed, row, slot),
 * never on which thread computed it or on what was drawn before.
 */
#ifndef ICPNS_RNG_H
#define ICPNS_RNG_H

#include <stdint.h>

typedef struct icpns_rng {
    uint64_t key;
    uint64_t ctr;
} icpns_rng_t;

#define ICPNS_RNG_GAMMA UINT64_C(0x9e3779b97f4a7c15)

/* The SplitMix64 / Stafford "Mix13" finaliser: a bijection on 64 bits. */
static inline uint64_t icpns_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* The part of a stream's key that depends on (seed, row) only: computed
 * once per row, it leaves one mix per slot. */
static inline uint64_t icpns_rng_row_key(uint64_t seed, uint64_t row)
{
    uint64_t k = icpns_mix64(seed + ICPNS_RNG_GAMMA);
    return icpns_mix64(k ^ (row * UINT64_C(0xd1b54a32d192ed03)));
}

/* Starts the stream of (row key, slot). */
static inline void icpns_rng_init_slot(icpns_rng_t *r, uint64_t row_key, uint64_t slot)
{
    r->key = icpns_mix64(row_key ^ (slot * UINT64_C(0x8cb92ba72f3d8dd7)));
    r->ctr = 0;
}

/* Starts the stream of (seed, row, slot). */
static inline void icpns_rng_init(icpns_rng_t *r, uint64_t seed, uint64_t row,
                                  uint64_t slot)
{
    icpns_rng_init_slot(r, icpns_rng_row_key(seed, row), slot);
}

/* The next 64 uniformly distributed bits. */
static inline uint64_t icpns_rng_next(icpns_rng_t *r)
{
    r->ctr++;
    return icpns_mix64(r->key + r->ctr * ICPNS_RNG_GAMMA);
}

/*
 * A uniform integer in [0, n), n >= 1, without bias: Lemire's
 * multiply-and-shift with rejection of the short final interval.
 */
static inline uint64_t icpns_rng_below(icpns_rng_t *r, uint64_t n)
{
    uint64_t x = icpns_rng_next(r);
    __uint128_t m = (__uint128_t)x * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = -n % n;
        while (low < threshold) {
            x = icpns_rng_next(r);
            m = (__uint128_t)x * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* A uniform double in [0, 1) with 53 random bits. */
static inline double icpns_rng_double(icpns_rng_t *r)
{
    return (double)(icpns_rng_next(r) >> 11) * 0x1.0p-53;
}

#endif
