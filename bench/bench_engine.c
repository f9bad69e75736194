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
