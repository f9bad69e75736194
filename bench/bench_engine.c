/*
 * bench_engine - libicpns on one core: snapshot build time and memory,
 * updates, and negatives per second for each strategy through the block
 * API (icpns_sample_rows, as icpnsd calls it), side by side with two bare
 * loops (alias draw from the user's community table + binary-search
 * rejection of positives, nothing else): one slot at a time, and batched
 * (the slots of 8 rows drawn together with their memory accesses in
 * flight), the physical limit of the method.  n = 1 and n = 16 per row.
 *
 * Usage: bench_engine [--quick] [--negatives]   (figures go to BENCHMARKS.md)
 *   --quick      a small dataset only (seconds; checks that it works)
 *   --negatives  only the negatives/s tables (skip build, memory, updates)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "icpns.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6))
            v = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static volatile uint64_t sink;

/* The negatives/s loops are timed in this thread's CPU time: on a shared
 * machine the time other processes hold the core does not count (their
 * cache traffic still does). */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/*
 * The throughput workload: @rows rows of random users that have a
 * community and a negative, in requests of REQ_ROWS rows (a trainer's
 * batch), with their external ids and occurrence indices.  The bare loops
 * get the dense users for free but compute each row's stream key from
 * (seed, user id, occurrence) as the method defines it, so they draw from
 * the same per-slot streams as the engine.
 */
#define REQ_ROWS 4096
#define SEED 1

typedef struct workload {
    uint32_t rows, n;
    uint32_t *users;  /* dense */
    int64_t *ids;     /* external */
    uint32_t *occ;    /* within each request */
} workload_t;

/* The bare loop: what ICPNS costs at least, one slot after the other:
 * alias draw from the user's community table and binary-search rejection
 * of the positives, nothing else. */
static double bare_loop(const icpns_snapshot_t *s, const workload_t *L)
{
    double t0 = cpu_now();
    uint64_t seed_key = icpns_rng_seed_key(SEED);
    uint64_t acc = 0;
    for (uint32_t r = 0; r < L->rows; r++) {
        uint32_t u = L->users[r];
        const icpns_wtable_t *t = &s->weights->comm[s->user_comm[u]];
        const uint32_t *pos = s->pos + s->pos_off[u];
        uint32_t d = icpns_snapshot_degree(s, u);
        uint64_t key = icpns_rng_user_key_hashed(seed_key, icpns_idmap_hash(L->ids[r]), L->occ[r]);
        for (uint32_t j = 0; j < L->n; j++) {
            icpns_rng_t rng;
            icpns_rng_init_slot(&rng, key, j);
            for (;;) {
                uint32_t k = icpns_alias_draw(&t->alias, &rng);
                uint32_t item = t->items[k];
                uint32_t lo = 0, hi = d;
                while (lo < hi) {
                    uint32_t mid = (lo + hi) / 2;
                    if (pos[mid] < item)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                if (lo == d || pos[lo] != item) {
                    acc += item;
                    break;
                }
            }
        }
    }
    sink = acc;
    return (double)L->rows * L->n / (cpu_now() - t0);
}

/*
 * The batched bare loop, the reference of the block API: the same draws
 * (same distribution, same per-slot streams), but the slots of BARE_ROWS
 * rows at once: draw all their columns and coins, prefetch the alias
 * entries, resolve them, prefetch the support item ids, then reject
 * positives (a rejected slot retries alone).  Both bare loops keep the
 * plain branching binary search over the positives; the engine's searches
 * step by masks (no mispredicted branches), which is part of its margin at
 * n = 16.
 */
#define BARE_ROWS 8
#define BARE_SLOTS (BARE_ROWS * 16)

static double bare_batched(const icpns_snapshot_t *s, const workload_t *L)
{
    double t0 = cpu_now();
    uint64_t seed_key = icpns_rng_seed_key(SEED);
    uint64_t acc = 0;
    uint32_t per = L->n <= 16 ? BARE_ROWS : 1;
    struct {
        icpns_rng_t rng;
        const icpns_wtable_t *t;
        const uint32_t *pos;
        uint32_t d, k;
        double coin;
    } b[BARE_SLOTS];
    for (uint32_t r0 = 0; r0 < L->rows; r0 += per) {
        uint32_t r1 = r0 + per < L->rows ? r0 + per : L->rows, nb = 0;
        for (uint32_t r = r0; r < r1; r++) {
            uint32_t u = L->users[r];
            const icpns_wtable_t *t = &s->weights->comm[s->user_comm[u]];
            const uint32_t *pos = s->pos + s->pos_off[u];
            uint32_t d = icpns_snapshot_degree(s, u);
            uint64_t key =
                icpns_rng_user_key_hashed(seed_key, icpns_idmap_hash(L->ids[r]), L->occ[r]);
            for (uint32_t j = 0; j < L->n && nb < BARE_SLOTS; j++, nb++) {
                icpns_rng_init_slot(&b[nb].rng, key, j);
                b[nb].t = t;
                b[nb].pos = pos;
                b[nb].d = d;
                b[nb].k = (uint32_t)icpns_rng_below(&b[nb].rng, t->alias.n);
                b[nb].coin = icpns_rng_double(&b[nb].rng);
                __builtin_prefetch(&t->alias.e[b[nb].k]);
            }
        }
        for (uint32_t i = 0; i < nb; i++) {
            const icpns_alias_entry_t *e = &b[i].t->alias.e[b[i].k];
            b[i].k = b[i].coin < e->prob ? b[i].k : e->alias;
            __builtin_prefetch(&b[i].t->items[b[i].k]);
        }
        for (uint32_t i = 0; i < nb; i++) {
            const icpns_wtable_t *t = b[i].t;
            const uint32_t *pos = b[i].pos;
            uint32_t d = b[i].d, item = t->items[b[i].k];
            for (;;) {
                uint32_t lo = 0, hi = d;
                while (lo < hi) {
                    uint32_t mid = (lo + hi) / 2;
                    if (pos[mid] < item)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                if (lo == d || pos[lo] != item)
                    break;
                item = t->items[icpns_alias_draw(&t->alias, &b[i].rng)];
            }
            acc += item;
        }
    }
    sink = acc;
    return (double)L->rows * L->n / (cpu_now() - t0);
}

/* The block API as the daemon calls it: per request, the occurrences,
 * then icpns_sample_rows over its rows. */
static double block_loop(const icpns_snapshot_t *s, icpns_work_t *w, const workload_t *L,
                         icpns_strategy_t st, uint32_t *out, uint32_t *occ)
{
    double t0 = cpu_now();
    uint64_t acc = 0;
    icpns_part_t part = {st, L->n};
    for (uint32_t r0 = 0; r0 < L->rows; r0 += REQ_ROWS) {
        uint32_t rows = L->rows - r0 < REQ_ROWS ? L->rows - r0 : REQ_ROWS;
        if (icpns_occurrences(L->ids + r0, rows, occ))
            abort();
        icpns_rows_t req = {L->ids + r0, occ, rows, &part, 1, SEED, 0};
        if (icpns_sample_rows(s, s->weights, w, &req, 0, rows, out, NULL, NULL, NULL, NULL))
            abort();
        acc += out[0];
    }
    sink = acc;
    return (double)L->rows * L->n / (cpu_now() - t0);
}

/* icpns_sample_row, one row after the other (the per-row API). */
static double row_loop(const icpns_snapshot_t *s, icpns_work_t *w, const workload_t *L,
                       icpns_strategy_t st, uint32_t *out)
{
    double t0 = cpu_now();
    uint64_t acc = 0;
    for (uint32_t r = 0; r < L->rows; r++) {
        icpns_row_id_t id = {L->ids[r], L->occ[r], SEED};
        if (icpns_sample_row(s, s->weights, w, id, st, 0, 0, L->n, out, NULL, NULL, NULL))
            abort();
        acc += out[0];
    }
    sink = acc;
    return (double)L->rows * L->n / (cpu_now() - t0);
}

static void workload_make(const icpns_snapshot_t *s, uint32_t rows, uint32_t n, workload_t *L)
{
    L->rows = rows;
    L->n = n;
    L->users = malloc(rows * sizeof(*L->users));
    L->ids = malloc(rows * sizeof(*L->ids));
    L->occ = malloc(rows * sizeof(*L->occ));
    if (!L->users || !L->ids || !L->occ)
        abort();
    icpns_rng_t rng;
    icpns_rng_init(&rng, 7, n, 0);
    for (uint32_t r = 0; r < rows; r++) {
        do
            L->users[r] = (uint32_t)icpns_rng_below(&rng, s->users.n);
        while (s->user_comm[L->users[r]] == ICPNS_NONE ||
               icpns_snapshot_degree(s, L->users[r]) >= s->items.n);
        L->ids[r] = s->users.ids[L->users[r]];
    }
    for (uint32_t r0 = 0; r0 < rows; r0 += REQ_ROWS)
        if (icpns_occurrences(L->ids + r0, rows - r0 < REQ_ROWS ? rows - r0 : REQ_ROWS,
                              L->occ + r0))
            abort();
}

static void workload_free(workload_t *L)
{
    free(L->users);
    free(L->ids);
    free(L->occ);
}

/* Negatives per second of every loop, interleaved run by run so that all
 * see the same machine state, for rows of @n negatives. */
static void throughput(const icpns_snapshot_t *s, uint32_t negatives, uint32_t n)
{
    workload_t L;
    workload_make(s, negatives / n, n, &L);
    icpns_work_t *w = icpns_work_new();
    uint32_t *out = malloc((size_t)REQ_ROWS * n * sizeof(*out));
    uint32_t *occ = malloc(REQ_ROWS * sizeof(*occ));
    if (!w || !out || !occ)
        abort();
    enum { R = 7, LOOPS = 6 };
    static const char *names[LOOPS] = {
        "bare loop, one slot at a time", "**batched bare loop (reference)**",
        "icpns_sample_rows(icpns)", "icpns_sample_rows(popularity)",
        "icpns_sample_rows(uniform)", "icpns_sample_row(icpns), row by row"};
    double v[LOOPS][R];
    for (int k = 0; k < R; k++) {
        v[0][k] = bare_loop(s, &L);
        v[1][k] = bare_batched(s, &L);
        v[2][k] = block_loop(s, w, &L, ICPNS_STRATEGY_ICPNS, out, occ);
        v[3][k] = block_loop(s, w, &L, ICPNS_STRATEGY_POPULARITY, out, occ);
        v[4][k] = block_loop(s, w, &L, ICPNS_STRATEGY_UNIFORM, out, occ);
        v[5][k] = row_loop(s, w, &L, ICPNS_STRATEGY_ICPNS, out);
    }
    double ref = median(v[1], R);
    printf("\nNegatives per second of thread CPU time on one core, n = %u per row, %u random "
           "rows in requests of %u rows, median of %d interleaved runs:\n\n| loop | negatives/s "
           "| ratio to batched bare |\n|---|---|---|\n", n, L.rows, REQ_ROWS, R);
    for (int j = 0; j < LOOPS; j++) {
        double m = median(v[j], R);
        printf("| %s | %.2f M | %.2f |\n", names[j], m / 1e6, m / ref);
    }
    icpns_work_free(w);
    free(out);
    free(occ);
    workload_free(&L);
}

/* An item @u has not touched. */
static uint32_t fresh_item(const icpns_snapshot_t *s, uint32_t u, icpns_rng_t *r)
{
    for (;;) {
        uint32_t i = (uint32_t)icpns_rng_below(r, s->items.n);
        bool has = false;
        for (uint64_t k = s->pos_off[u]; k < s->pos_off[u + 1]; k++)
            has |= s->pos[k] == i;
        if (!has)
            return i;
    }
}

/* Update costs: patching the snapshot against a full build of the same
 * change, interleaved. */
static void update_bench(const icpns_snapshot_t *s, const icpns_dataset_t *d, int reps)
{
    icpns_rng_t r;
    icpns_rng_init(&r, 99, 0, 0);
    uint32_t u0 = 0;
    while (s->user_comm[u0] == ICPNS_NONE)
        u0++;
    icpns_pair_t one = {.a = s->users.ids[u0], .b = s->items.ids[fresh_item(s, u0, &r)]};
    icpns_pair_t many[100];
    for (int k = 0; k < 100; k++) {
        uint32_t u = (uint32_t)icpns_rng_below(&r, s->users.n);
        many[k] = (icpns_pair_t){.a = s->users.ids[u], .b = s->items.ids[fresh_item(s, u, &r)]};
    }
    icpns_pair_t move = {.a = s->users.ids[u0],
                         .b = s->comms.ids[(s->user_comm[u0] + 1) % s->comms.n]};
    struct {
        const char *what;
        icpns_delta_t delta;
    } cases[3] = {
        {"1 new pair (1 community)", {&one, 1, NULL, 0}},
        {"100 new pairs, random users", {many, 100, NULL, 0}},
        {"1 user moves community (2 communities)", {NULL, 0, &move, 1}},
    };
    double full[7], patch[3][7];
    uint32_t touched[3] = {0};
    icpns_error_t err;
    for (int k = 0; k < reps; k++) {
        icpns_snapshot_t *x;
        double t0 = icpns_now();
        if (icpns_snapshot_build(d, &s->params, &x, &err))
            exit(1);
        full[k] = icpns_now() - t0;
        icpns_snapshot_unref(x);
        for (int c = 0; c < 3; c++) {
            icpns_patch_stats_t ps;
            t0 = icpns_now();
            if (icpns_snapshot_patch(s, &cases[c].delta, &x, &ps, &err)) {
                fprintf(stderr, "patch: %s\n", err.message);
                exit(1);
            }
            patch[c][k] = icpns_now() - t0;
            touched[c] = ps.comms_rebuilt;
            icpns_snapshot_unref(x);
        }
    }
    double mf = median(full, reps);
    printf("\nUpdates: icpns_snapshot_patch against a full icpns_snapshot_build (median of %d "
           "interleaved runs):\n\n| update | communities rebuilt | patch | full build | ratio |\n"
           "|---|---|---|---|---|\n", reps);
    for (int c = 0; c < 3; c++) {
        double mp = median(patch[c], reps);
        printf("| %s | %u of %u | %.1f ms | %.1f ms | %.2f |\n", cases[c].what, touched[c],
               s->comms.n, mp * 1e3, mf * 1e3, mp / mf);
    }
}

static void run(const char *name, uint32_t U, uint32_t I, uint32_t K, uint64_t N, int reps,
                bool tables, uint32_t negatives)
{
    icpns_gen_opts_t g;
    icpns_gen_opts_default(&g);
    g.users = U;
    g.items = I;
    g.communities = K;
    g.interactions = N;
    g.seed = 2026;
    icpns_dataset_t *d;
    icpns_error_t err;
    if (icpns_gen(&g, &d, &err)) {
        fprintf(stderr, "gen: %s\n", err.message);
        exit(1);
    }
    icpns_params_t p;
    icpns_params_default(&p);
    double builds[7];
    icpns_snapshot_t *s = NULL;
    long rss0 = rss_kib();
    if (!tables)
        reps = 1;
    for (int k = 0; k < reps; k++) {
        icpns_snapshot_unref(s);
        double t0 = icpns_now();
        if (icpns_snapshot_build(d, &p, &s, &err))
            exit(1);
        builds[k] = icpns_now() - t0;
    }
    long rss1 = rss_kib();
    printf("\n### %s: %u users, %u items, %llu interactions, %u communities\n", name, s->users.n,
           s->items.n, (unsigned long long)s->n_interactions, s->comms.n);
    if (!tables) {
        icpns_dataset_free(d);
        goto negatives;
    }
    printf("\n");
    printf("| measure | value |\n|---|---|\n");
    printf("| snapshot build (median of %d) | %.3f s |\n", reps, median(builds, reps));
    printf("| snapshot memory (accounted) | %.1f MB |\n", (double)s->bytes / 1e6);
    printf("| RSS growth while building | %.1f MB |\n", (double)(rss1 - rss0) / 1024.0);
    /* Part of every build and patch. */
    double fps[7];
    uint64_t fp = 0;
    for (int k = 0; k < reps; k++) {
        double t0 = icpns_now();
        fp ^= icpns_snapshot_fingerprint(s);
        fps[k] = icpns_now() - t0;
    }
    printf("| fingerprint (median of %d; included in build and patch) | %.1f ms |\n", reps,
           median(fps, reps) * 1e3);
    if (fp == 1) /* keep the calls */
        printf("\n");
    update_bench(s, d, reps);
    icpns_dataset_free(d);
negatives:
    throughput(s, negatives, 1);
    throughput(s, negatives, 16);
    icpns_snapshot_unref(s);
}

int main(int argc, char **argv)
{
    bool quick = false, tables = true;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--quick"))
            quick = true;
        else if (!strcmp(argv[k], "--negatives"))
            tables = false;
        else {
            fprintf(stderr, "usage: bench_engine [--quick] [--negatives]\n");
            return 2;
        }
    }
    printf("## libicpns (bench/bench_engine%s%s)\n", quick ? " --quick" : "",
           tables ? "" : " --negatives");
    if (quick) {
        run("small", 3000, 4100, 8, 100000, 3, tables, 200000);
        return 0;
    }
    run("Gowalla-size", 30000, 41000, 8, 1250000, 5, tables, 3200000);
    run("1M-item catalogue", 300000, 1000000, 16, 10000000, 3, tables, 3200000);
    return 0;
}
