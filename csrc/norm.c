/* norm.c -- batch normalization and layer normalization (forward, fused
 * closed-form backward, running statistics).
 *
 * Layouts: batch norm sees its input as (n, c, s): n samples, c channels,
 * s = H*W positions per channel (s = 1 for (N, C) input); statistics are per
 * channel over n*s values.  Layer norm sees (rows, d): every row normalized
 * over its d trailing elements.
 *
 * Sums are accumulated in double in 8 independent lanes (a fixed order, so
 * results are bitwise repeatable and independent of the thread count: a
 * channel, a row or a column block is always reduced by one thread).
 * Variances are two-pass (mean first, then squared deviations): no
 * cancellation for data far from zero.
 */
#include <math.h>
#include <string.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Elements per thread below which a normalization kernel uses fewer threads. */
#define FNN_NORM_MIN_WORK (1 << 15)
/* Columns reduced together when the reduction runs down columns (s == 1). */
#define FNN_NORM_COLS 64

/* Threads for a pass over `work` elements split into `units` independent parts. */
static int fnn_norm_threads(double work, int64_t units, int n_threads)
{
    int nt = fnn_threads_for(work, FNN_NORM_MIN_WORK, n_threads);
    if ((int64_t)nt > units) nt = units < 1 ? 1 : (int)units;
    return nt;
}

/* n, c, s >= 0 and n*c*s fits in int64; *total = n*c*s. */
static int fnn_norm_sizes(int64_t n, int64_t c, int64_t s, int64_t *total)
{
    int64_t t;
    if (n < 0 || c < 0 || s < 0) return FNN_EINVAL;
    if (fnn_mul_overflows(n, c, &t) || fnn_mul_overflows(t, s, total)) return FNN_EOVERFLOW;
    return FNN_OK;
}

#define FNN_TEMPLATE "norm_impl.h"
#include "fnn_template.h"
