/*
 * icpns/rng.h - counter-based random numbers.
 *
 * A stream is a 64-bit key and a counter.  Output k of a stream is a
 * bijective mix of key + k * golden-ratio (the SplitMix64 construction), so
 * what a stream gives depends only on its key, never on which thread
 * computed it or on what was drawn before.
 *
 * The stream of negative `slot` of a request row is keyed on the seed, the
 * row's external user id, the user's occurrence index in the request (0 for
 * the first row with that id, 1 for the second, ...) and the slot:
 *
 *     seed key  k0 = mix64(seed + gamma)
 *     user      k1 = mix64(k0 ^ mix64(user))
 *     occurrence k2 = mix64(k1 ^ mix64(occ + c_occ))     (the row key)
 *     slot      key = mix64(k2 ^ slot * c_slot)
 *
 * Every step is a bijection of its new input for a fixed state, so under
 * one seed no two (user, occurrence) pairs share a row key, and tuples that
 * differ anywhere give keys that agree only by 64-bit chance (no structural
 * collision such as (user + 1, occ - 1)).  The row's position in the
 * request is not an input: rows of different users are independent under
 * any seed, and a user repeated in a request gets independent rows.
 *
 * icpns_rng_init(seed, stream, slot) is the plain (seed, stream, slot) key
 * of the generator and the k-means seeding; negatives never use it.
 */
#ifndef ICPNS_RNG_H
#define ICPNS_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

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

/* The key of (seed, stream) for icpns_rng_init: computed once per
 * stream, it leaves one mix per slot.  Not the key of a request row. */
static inline uint64_t icpns_rng_row_key(uint64_t seed, uint64_t row)
{
    uint64_t k = icpns_mix64(seed + ICPNS_RNG_GAMMA);
    return icpns_mix64(k ^ (row * UINT64_C(0xd1b54a32d192ed03)));
}

/* The part of a request row's key that depends on the seed only. */
static inline uint64_t icpns_rng_seed_key(uint64_t seed)
{
    return icpns_mix64(seed + ICPNS_RNG_GAMMA);
}

/*
 * The row key of (seed, user, occurrence) from icpns_rng_seed_key(seed) and
 * the user's hash icpns_mix64((uint64_t)user), which the sampler computes
 * anyway for the id map lookup (icpns_idmap_hash).
 */
#define ICPNS_RNG_OCC UINT64_C(0x632be59bd9b4e019)
#define ICPNS_RNG_OCC0 UINT64_C(0x6db6ca64564daeaa) /* icpns_mix64(ICPNS_RNG_OCC) */

static inline uint64_t icpns_rng_user_key_hashed(uint64_t seed_key, uint64_t user_hash,
                                                 uint32_t occ)
{
    uint64_t k = icpns_mix64(seed_key ^ user_hash);
    /* The first occurrence, most rows, has a constant term. */
    uint64_t o = occ ? icpns_mix64((uint64_t)occ + ICPNS_RNG_OCC) : ICPNS_RNG_OCC0;
    return icpns_mix64(k ^ o);
}

/* The key of request row (seed, external user id, occurrence index). */
static inline uint64_t icpns_rng_user_key(uint64_t seed, int64_t user, uint32_t occ)
{
    return icpns_rng_user_key_hashed(icpns_rng_seed_key(seed), icpns_mix64((uint64_t)user), occ);
}

/* Starts the stream of (row key, slot). */
static inline void icpns_rng_init_slot(icpns_rng_t *r, uint64_t row_key, uint64_t slot)
{
    r->key = icpns_mix64(row_key ^ (slot * UINT64_C(0x8cb92ba72f3d8dd7)));
    r->ctr = 0;
}

/* Starts the stream of (seed, stream, slot) (generator, k-means). */
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
    return (double)(icpns_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); /* 2^-53, exact */
}

#ifdef __cplusplus
}
#endif
#endif
