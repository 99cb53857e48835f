/* embed.c -- embedding lookup (gather / deterministic scatter-add) and the mean over
 * the sequence axis of (n, l, d) arrays (GlobalAvgPool1D). */
#include <string.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Elements touched per thread below which an embedding kernel uses fewer threads. */
#define FNN_EMBED_MIN_WORK (1 << 15)

/* idx (n,): the first position whose value lies outside [0, v), or -1 when all do. */
static int64_t fnn_embedding_first_bad(const int64_t *idx, int64_t n, int64_t v)
{
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= v) return i;
    return -1;
}

/* Threads for an embedding pass touching `work` elements. */
static int fnn_embed_threads(double work, int n_threads)
{
    return fnn_threads_for(work, FNN_EMBED_MIN_WORK, n_threads);
}

/* Check the sizes of an (n, l, d) sequence array; the threads for a pass over it. */
static int fnn_seq_check(int64_t n, int64_t l, int64_t d, int n_threads, int *nt)
{
    if (n < 0 || l < 0 || d < 0) return FNN_EINVAL;
    int64_t t;
    if (fnn_mul_overflows(n, l, &t) || fnn_mul_overflows(t, d, &t)) return FNN_EOVERFLOW;
    *nt = fnn_embed_threads((double)n * (double)(l + 1) * (double)d, n_threads);
    return FNN_OK;
}

#define FNN_TEMPLATE "embed_impl.h"
#include "fnn_template.h"
