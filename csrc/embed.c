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

#define FNN_TEMPLATE "embed_impl.h"
#include "fnn_template.h"
