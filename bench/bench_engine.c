/*
 * bench_engine - libicpns on one core: snapshot build time and memory, and
 * negatives per second for each strategy with exclusion, side by side with
 * a bare loop (alias draw from the user's community table + binary-search
 * rejection of positives, nothing else): the physical limit of the method.
 *
 * Usage: bench_engine [--quick]   (figures go to BENCHMARKS.md)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The bare loop: what ICPNS costs at least. */
static double bare_loop(const icpns_snapshot_t *s, const uint32_t *users, uint32_t rows, uint32_t n)
{
    double t0 = icpns_now();
    uint64_t acc = 0;
    for (uint32_t r = 0; r < rows; r++) {
        uint32_t u = users[r];
        const icpns_wtable_t *t = &s->weights->comm[s->user_comm[u]];
        const uint32_t *pos = s->pos + s->pos_off[u];
        uint32_t d = icpns_snapshot_degree(s, u);
        for (uint32_t j = 0; j < n; j++) {
            icpns_rng_t rng;
            icpns_rng_init(&rng, 1, r, j);
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
    return (double)rows * n / (icpns_now() - t0);
}

static double strategy_loop(const icpns_snapshot_t *s, icpns_work_t *w, const uint32_t *users,
                            uint32_t rows, uint32_t n, icpns_strategy_t st, uint32_t *out)
{
    double t0 = icpns_now();
    uint64_t acc = 0;
    for (uint32_t r = 0; r < rows; r++) {
        if (icpns_sample_row(s, s->weights, w, users[r], st, 0, 1, r, 0, n, out, NULL, NULL, NULL))
            abort();
        acc += out[0];
    }
    sink = acc;
    return (double)rows * n / (icpns_now() - t0);
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

static void run(const char *name, uint32_t U, uint32_t I, uint32_t K, uint64_t N, int reps)
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
    for (int k = 0; k < reps; k++) {
        icpns_snapshot_unref(s);
        double t0 = icpns_now();
        if (icpns_snapshot_build(d, &p, &s, &err))
            exit(1);
        builds[k] = icpns_now() - t0;
    }
    long rss1 = rss_kib();
    printf("\n### %s: %u users, %u items, %llu interactions, %u communities\n\n", name, s->users.n,
           s->items.n, (unsigned long long)s->n_interactions, s->comms.n);
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

    uint32_t rows = 200000, n = 16;
    uint32_t *users = malloc(rows * sizeof(*users)), *out = malloc(n * sizeof(*out));
    icpns_rng_t rng;
    icpns_rng_init(&rng, 7, 0, 0);
    for (uint32_t r = 0; r < rows; r++) {
        do
            users[r] = (uint32_t)icpns_rng_below(&rng, s->users.n);
        while (s->user_comm[users[r]] == ICPNS_NONE || icpns_snapshot_degree(s, users[r]) >= s->items.n);
    }
    icpns_work_t *w = icpns_work_new();
    enum { R = 7 };
    double bare[R], st[3][R];
    for (int k = 0; k < R; k++) { /* interleaved: same machine state for all */
        bare[k] = bare_loop(s, users, rows, n);
        for (int j = 0; j < 3; j++)
            st[j][k] = strategy_loop(s, w, users, rows, n, (icpns_strategy_t)j, out);
    }
    double mb = median(bare, R);
    printf("\nNegatives per second on one core, n = %u per row, %u random rows, median of %d "
           "interleaved runs:\n\n| loop | negatives/s | ratio to bare |\n|---|---|---|\n", n, rows, R);
    printf("| bare alias + binary-search rejection | %.2f M | 1.00 |\n", mb / 1e6);
    for (int j = 2; j >= 0; j--) {
        double m = median(st[j], R);
        printf("| icpns_sample_row(%s) | %.2f M | %.2f |\n", icpns_strategy_name((icpns_strategy_t)j),
               m / 1e6, m / mb);
    }
    icpns_work_free(w);
    free(users);
    free(out);
    icpns_snapshot_unref(s);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    printf("## libicpns (bench/bench_engine%s)\n", quick ? " --quick" : "");
    if (quick) {
        run("small", 3000, 4100, 8, 100000, 3);
        return 0;
    }
    run("Gowalla-size", 30000, 41000, 8, 1250000, 5);
    run("1M-item catalogue", 300000, 1000000, 16, 10000000, 3);
    return 0;
}
