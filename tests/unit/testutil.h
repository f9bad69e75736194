/* testutil.h - helpers shared by the unit tests. */
#ifndef ICPNS_TESTUTIL_H
#define ICPNS_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "icpns.h"

/* Upper tail of the chi-square distribution: P(X >= x) with df degrees. */
double chi2_sf(double x, double df);

/*
 * Pearson's chi-square test of @counts (k bins, n draws in all) against the
 * probabilities @p (sum 1).  Bins with expected count below 5 are pooled.
 * A draw in a bin with p = 0 makes the p-value 0.  Returns the p-value.
 */
double chi2_test(const uint64_t *counts, const double *p, size_t k);

/* A fresh empty directory under $TMPDIR; the caller frees the string. */
char *tmpdir_new(void);
/* Removes a directory tree made by tmpdir_new. */
void tmpdir_remove(const char *dir);
/* Writes @text to DIR/NAME. */
void write_text(const char *dir, const char *name, const char *text);

#endif
