/*
 * alias.c - Vose's alias method.
 *
 * Weights are scaled so that their mean is 1; columns below 1 ("small") are
 * topped up by one column above 1 ("large"), which then loses that much.
 * Columns left over at the end are within rounding of 1 and keep
 * probability 1.  A zero weight is always small, gets probability 0, and is
 * never chosen as an alias (only large columns are), so it is never drawn.
 * Only a positive-weight column can be left over, so giving leftovers
 * probability 1 never promotes a zero weight.
 */
#include <math.h>
#include <stdlib.h>

#include "icpns/alias.h"
#include "icpns/common.h"

int icpns_alias_build(icpns_alias_t *a, const double *w, uint32_t n,
                      icpns_alias_entry_t *storage)
{
    a->n = 0;
    a->e = NULL;
    if (n == 0 || n == UINT32_MAX)
        return ICPNS_EINVAL;

    /* Kahan summation keeps the normaliser accurate for large n. */
    double sum = 0, comp = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (!(w[k] >= 0) || !isfinite(w[k]))
            return ICPNS_EINVAL;
        double y = w[k] - comp, t = sum + y;
        comp = (t - sum) - y;
        sum = t;
    }
    if (!(sum > 0) || !isfinite(sum))
        return ICPNS_EINVAL;

    icpns_alias_entry_t *e = storage ? storage : malloc((size_t)n * sizeof(*e));
    uint32_t *work = malloc((size_t)n * sizeof(*work));
    if (!e || !work) {
        if (!storage)
            free(e);
        free(work);
        return ICPNS_ENOMEM;
    }

    /* Small indices fill work[] from the front, large from the back. */
    uint32_t ns = 0, nl = 0, some_large = 0;
    double scale = (double)n / sum;
    for (uint32_t k = 0; k < n; k++) {
        e[k].prob = w[k] * scale;
        e[k].alias = k;
        e[k].pad = 0;
        if (e[k].prob < 1.0)
            work[ns++] = k;
        else {
            work[n - 1 - nl++] = k;
            some_large = k;
        }
    }
    while (ns > 0 && nl > 0) {
        uint32_t s = work[--ns];
        uint32_t l = work[n - nl];
        e[s].alias = l;
        /* The large column gives away (1 - p_s) of its mass. */
        e[l].prob = (e[l].prob + e[s].prob) - 1.0;
        if (e[l].prob < 1.0) {
            nl--;
            work[ns++] = l;
        }
    }
    while (nl > 0)
        e[work[n - nl--]].prob = 1.0;
    while (ns > 0) {
        /* Rounding residue: a column within rounding of 1 keeps itself; a
         * zero-weight column (possible only through rounding) points at a
         * positive column so that it can never return itself. */
        uint32_t s = work[--ns];
        if (w[s] > 0) {
            e[s].prob = 1.0;
        } else {
            e[s].prob = 0.0;
            e[s].alias = some_large;
        }
    }
    free(work);
    a->n = n;
    a->e = e;
    return 0;
}

void icpns_alias_free(icpns_alias_t *a)
{
    free(a->e);
    a->e = NULL;
    a->n = 0;
}
