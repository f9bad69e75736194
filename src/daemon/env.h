/*
 * env.h - what every handler may read: the configuration, the table sets,
 * the compute pool, the credentials and the daemon-wide counters.  Created
 * by main before the listeners start and freed after they stopped; the
 * fields are set once, except the atomics.
 */
#ifndef ICPNSD_ENV_H
#define ICPNSD_ENV_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct icpnsd_registry;
struct icpnsd_pool;
struct icpnsd_auth;
struct icpnsd_tracker;

typedef struct icpnsd_env {
    const icpnsd_config_t *cfg;
    struct icpnsd_registry *reg;
    struct icpnsd_pool *pool;        /* large sampling requests */
    struct icpnsd_auth *auth;        /* the tokens */
    struct icpnsd_tracker *tracker;  /* background jobs clients poll */
    bool admin_separate;             /* admin routes only on admin_listen */
    int default_strategy;            /* icpns_strategy_t */
    double started;                  /* icpns_now() at start */
    atomic_bool quiescing;           /* stopping: readyz answers 503 */
    atomic_uint_fast64_t seeds;      /* fresh seeds for requests without one */
    atomic_uint_fast64_t request_ids;
    atomic_uint connections;         /* open on the main listener */
    atomic_uint_fast64_t answer_bytes; /* held by answers in flight */
} icpnsd_env_t;

/* Takes @bytes of answers_in_flight_bytes; false (nothing taken) when they
 * are not there.  Any thread. */
static inline bool icpnsd_inflight_take(icpnsd_env_t *env, uint64_t bytes)
{
    uint64_t cap = env->cfg->answers_in_flight_bytes;
    uint_fast64_t cur = atomic_load(&env->answer_bytes);
    do {
        if (cap && cur + bytes > cap && cur > 0)
            return false; /* one answer alone may pass the cap: it is admitted */
    } while (!atomic_compare_exchange_weak(&env->answer_bytes, &cur, cur + bytes));
    return true;
}

/* Gives back what icpnsd_inflight_take took. */
static inline void icpnsd_inflight_give(icpnsd_env_t *env, uint64_t bytes)
{
    atomic_fetch_sub(&env->answer_bytes, bytes);
}

#endif
