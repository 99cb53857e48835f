/* optim.c -- optimizers: each update is one fused pass over a parameter. */
#include <math.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many elements per thread an elementwise update stays on fewer
 * threads: a memory-bound pass over 32k elements takes ~10 us, about the cost
 * of waking a thread. */
#define FNN_OPTIM_MIN_PER_THREAD (1 << 15)

static int fnn_elemwise_threads(int64_t n, int n_threads)
{
    return fnn_threads_for((double)n, FNN_OPTIM_MIN_PER_THREAD, n_threads);
}

#define FNN_TEMPLATE "optim_impl.h"
#include "fnn_template.h"
