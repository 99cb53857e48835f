/* dropout.c -- inverted dropout with a counter-based RNG.
 *
 * The random number of element i is a pure function of (seed, offset + i):
 *
 *   k = offset + i                                   (uint64, wrapping)
 *   z = seed + (k + 1) * 0x9E3779B97F4A7C15          (uint64, wrapping)
 *   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
 *   z = (z ^ (z >> 27)) * 0x94D049BB133111EB
 *   h = z ^ (z >> 31)
 *
 * i.e. h is output number k (0-based) of Vigna's splitmix64 generator seeded
 * with `seed`.  u = (h >> 40) / 2^24 is uniform on [0, 1) with 24 bits for
 * both dtypes, and element i is kept iff u >= p (exactly: h >> 40 >=
 * ceil(p * 2^24)), so P(keep) = 1 - ceil(p 2^24) / 2^24.  No state, no
 * sequence: masks are reproducible, identical for float and double, and
 * independent of how threads split the range.
 */
#include <math.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Hashing is a few multiplies per element: threads pay off from ~16k each. */
#define FNN_DROPOUT_MIN_PER_THREAD (1 << 14)

static int fnn_dropout_threads(int64_t n, int n_threads)
{
    return fnn_threads_for((double)n, FNN_DROPOUT_MIN_PER_THREAD, n_threads);
}
/* (fnn_dropout_bits, the hash above, is in fnn_internal.h: the loops are the
 * ISA registry's, fnn_loops_impl.h.) */

/* ceil(p * 2^24) for p in [0, 1): keep iff bits >= it.  p * 2^24 is exact. */
static uint64_t fnn_dropout_threshold(double p) { return (uint64_t)ceil(p * 16777216.0); }

#define FNN_TEMPLATE "dropout_impl.h"
#include "fnn_template.h"
