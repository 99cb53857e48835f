/* embed_impl.h -- type-generic body of embed.c (instantiated by fnn_template.h). */

/* out (n, d) = w[idx[i], :] for idx (n,), w (v, d).  An index outside [0, v) returns
 * FNN_EINDEX before anything is written, with its position in *bad (when bad != NULL). */
int SFX(fnn_embedding_forward)(T *out, int64_t *bad, const int64_t *idx, const T *w,
                               int64_t n, int64_t v, int64_t d, int n_threads)
{
    if (n < 0 || v < 0 || d < 0) return FNN_EINVAL;
    int64_t t;
    if (fnn_mul_overflows(n, d, &t) || fnn_mul_overflows(v, d, &t)) return FNN_EOVERFLOW;
    const int64_t b = fnn_embedding_first_bad(idx, n, v);
    if (bad) *bad = b;
    if (b >= 0) return FNN_EINDEX;
    if (d == 0) return FNN_OK;
    const int nt = fnn_embed_threads((double)n * (double)d, n_threads);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t i = 0; i < n; i++)
            memcpy(out + i * d, w + idx[i] * d, (size_t)d * sizeof(T));
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}

/* dw (v, d) = beta * dw + sum over i with idx[i] = r of dout[i, :] (beta 0: overwrite),
 * for idx (n,), dout (n, d).  Deterministic: each thread owns a block of the d columns
 * and adds the rows of dout in order i = 0..n-1, so every element's sum has one order,
 * whatever the thread count.  A bad index returns FNN_EINDEX before anything is written. */
int SFX(fnn_embedding_backward)(T *dw, int64_t *bad, const int64_t *idx, const T *dout,
                                int64_t n, int64_t v, int64_t d, T beta, int n_threads)
{
    if (n < 0 || v < 0 || d < 0) return FNN_EINVAL;
    int64_t t;
    if (fnn_mul_overflows(n, d, &t) || fnn_mul_overflows(v, d, &t)) return FNN_EOVERFLOW;
    const int64_t b = fnn_embedding_first_bad(idx, n, v);
    if (bad) *bad = b;
    if (b >= 0) return FNN_EINDEX;
    if (d == 0 || v == 0) return FNN_OK;
    /* column blocks of at least 16 elements (a cache line of floats), one or more per thread */
    int nt = fnn_embed_threads((double)(n + v) * (double)d, n_threads);
    const int64_t max_blocks = (d + 15) / 16;
    if (nt > max_blocks) nt = (int)max_blocks;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
        const int th = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int th = 0, nth = 1;
#endif
        const int64_t blocks = (d + 15) / 16;
        const int64_t c0 = FNN_MIN(d, (blocks * th / nth) * 16);
        const int64_t c1 = FNN_MIN(d, (blocks * (th + 1) / nth) * 16);
        const int64_t w = c1 - c0;
        if (w > 0) {
            for (int64_t r = 0; r < v; r++) {
                T *row = dw + r * d + c0;
                if (beta == (T)0) {
                    memset(row, 0, (size_t)w * sizeof(T));
                } else if (beta != (T)1) {
                    for (int64_t j = 0; j < w; j++) row[j] *= beta;
                }
            }
            for (int64_t i = 0; i < n; i++) {
                T *row = dw + idx[i] * d + c0;
                const T *g = dout + i * d + c0;
                for (int64_t j = 0; j < w; j++) row[j] += g[j];
            }
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}

/* out (n, d) = mean over l of x (n, l, d); an empty sequence (l = 0) gives zeros. */
int SFX(fnn_global_avgpool1d_forward)(T *out, const T *x, int64_t n, int64_t l, int64_t d,
                                      int n_threads)
{
    int nt;
    const int st = fnn_seq_check(n, l, d, n_threads, &nt);
    if (st != FNN_OK) return st;
    const T inv = l ? (T)1 / (T)l : (T)0;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t i = 0; i < n; i++) {
            T *o = out + i * d;
            const T *xs = x + i * l * d;
            for (int64_t j = 0; j < d; j++) o[j] = 0;
            for (int64_t s = 0; s < l; s++)
                for (int64_t j = 0; j < d; j++) o[j] += xs[s * d + j];
            for (int64_t j = 0; j < d; j++) o[j] *= inv;
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}

/* dx (n, l, d) = dout (n, d) / l, broadcast over the l axis. */
int SFX(fnn_global_avgpool1d_backward)(T *dx, const T *dout, int64_t n, int64_t l, int64_t d,
                                       int n_threads)
{
    int nt;
    const int st = fnn_seq_check(n, l, d, n_threads, &nt);
    if (st != FNN_OK) return st;
    const T inv = l ? (T)1 / (T)l : (T)0;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t i = 0; i < n; i++) {
            const T *g = dout + i * d;
            T *o = dx + i * l * d;
            for (int64_t s = 0; s < l; s++)
                for (int64_t j = 0; j < d; j++) o[s * d + j] = g[j] * inv;
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}
