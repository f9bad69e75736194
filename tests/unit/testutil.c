/* testutil.c - chi-square and temporary directories for the tests. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* Regularised upper incomplete gamma Q(a, x) (Numerical Recipes' series
 * and continued fraction). */
static double gamma_q(double a, double x)
{
    if (x <= 0)
        return 1.0;
    double gln = lgamma(a);
    if (x < a + 1) {
        double ap = a, sum = 1.0 / a, del = sum;
        for (int n = 0; n < 100000; n++) {
            ap += 1;
            del *= x / ap;
            sum += del;
            if (fabs(del) < fabs(sum) * 1e-15)
                break;
        }
        return 1.0 - sum * exp(-x + a * log(x) - gln);
    }
    double b = x + 1 - a, c = 1.0 / 1e-300, d = 1.0 / b, h = d;
    for (int i = 1; i < 100000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < 1e-300)
            d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300)
            c = 1e-300;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-15)
            break;
    }
    return exp(-x + a * log(x) - gln) * h;
}

double chi2_sf(double x, double df)
{
    return gamma_q(df / 2, x / 2);
}

double chi2_test(const uint64_t *counts, const double *p, size_t k)
{
    uint64_t n = 0;
    for (size_t i = 0; i < k; i++)
        n += counts[i];
    double stat = 0, pool_e = 0, pool_o = 0;
    size_t bins = 0;
    for (size_t i = 0; i < k; i++) {
        if (p[i] <= 0) {
            if (counts[i] > 0)
                return 0.0;
            continue;
        }
        double e = p[i] * (double)n;
        if (e < 5) {
            pool_e += e;
            pool_o += (double)counts[i];
            continue;
        }
        stat += ((double)counts[i] - e) * ((double)counts[i] - e) / e;
        bins++;
    }
    if (pool_e > 0) {
        stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        bins++;
    }
    if (bins < 2)
        return 1.0;
    return chi2_sf(stat, (double)(bins - 1));
}

char *tmpdir_new(void)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/icpns-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

void tmpdir_remove(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

void write_text(const char *dir, const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}
