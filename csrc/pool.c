/* pool.c -- max / average / global average pooling on NCHW arrays. */
#include <math.h>
#include <string.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Elements touched per thread below which a pooling kernel uses fewer threads. */
#define FNN_POOL_MIN_WORK (1 << 16)

typedef struct {
    int64_t planes, oh, ow;
} fnn_pool_geom;

/* Check the sizes of a windowed pooling and derive its output size. */
static int fnn_pool_geometry(fnn_pool_geom *g, int64_t n, int64_t c, int64_t h, int64_t w,
                             int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                             int64_t pw)
{
    if (n < 0 || c < 0 || h < 0 || w < 0 || kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 ||
        pw < 0 || ph > kh / 2 || pw > kw / 2)
        return FNN_EINVAL;
    if (h + 2 * ph < kh || w + 2 * pw < kw) return FNN_EINVAL;
    /* h + 2 ph below must not overflow: ph <= kh / 2, so bound kh and h */
    if (kh > INT64_MAX / 4 || kw > INT64_MAX / 4 || h > INT64_MAX / 4 || w > INT64_MAX / 4)
        return FNN_EOVERFLOW;
    int64_t t;
    g->oh = fnn_window_out_size(h, kh, sh, ph);
    g->ow = fnn_window_out_size(w, kw, sw, pw);
    /* array sizes only: kh * kw (a window may be far larger than the input it covers)
     * is never formed in integers */
    if (fnn_mul_overflows(n, c, &g->planes) || fnn_mul_overflows(h, w, &t) ||
        fnn_mul_overflows(g->planes, t, &t) || fnn_mul_overflows(g->oh, g->ow, &t) ||
        fnn_mul_overflows(g->planes, t, &t))
        return FNN_EOVERFLOW;
    return FNN_OK;
}

/* Threads for a pooling pass touching `work` elements: FNN_POOL_MIN_WORK each. */
static int fnn_pool_threads(double work, int n_threads)
{
    return fnn_threads_for(work, FNN_POOL_MIN_WORK, n_threads);
}

/* [*lo, *hi): the input positions in [0, n) that a window of size k starting
 * at position start (may be negative: padding) covers. */
FNN_INLINE void fnn_pool_window(int64_t start, int64_t k, int64_t n, int64_t *lo, int64_t *hi)
{
    *lo = FNN_MAX(start, 0);
    *hi = FNN_MIN(start + k, n);
}

#define FNN_TEMPLATE "pool_impl.h"
#include "fnn_template.h"
