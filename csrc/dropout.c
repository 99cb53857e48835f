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

/* Hashing is a few multiplies per element: threads pay off from ~16k each. */
#define FNN_DROPOUT_MIN_PER_THREAD (1 << 14)

static int fnn_dropout_threads(int64_t n, int n_threads)
{
    int64_t nt = n_threads < 1 ? 1 : n_threads;
    const int64_t cap = n / FNN_DROPOUT_MIN_PER_THREAD;
    if (cap < nt) nt = cap < 1 ? 1 : cap;
    return (int)nt;
}

/* The top 24 bits of splitmix64 output number k for `seed` (see above). */
FNN_INLINE uint64_t fnn_dropout_bits(uint64_t seed, uint64_t k)
{
    uint64_t z = seed + (k + 1) * UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return (z ^ (z >> 31)) >> 40;
}

/* ceil(p * 2^24) for p in [0, 1): keep iff bits >= it.  p * 2^24 is exact. */
static uint64_t fnn_dropout_threshold(double p) { return (uint64_t)ceil(p * 16777216.0); }

#define FNN_TEMPLATE "dropout_impl.h"
#include "fnn_template.h"
