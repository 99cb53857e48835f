/* dense_impl.h -- fused dense layer forward/backward for one type (T, SFX). */

/* x (batch, in), w (in, out), b (out,) or NULL -> a (batch, out) = act(x w + b),
 * z (batch, out) = x w + b when z != NULL.  Bias and activation in the GEMM
 * epilogue; softmax (row-wide) in one pass after it. */
int SFX(fnn_dense_forward)(T *a, T *z, const T *x, const T *w, const T *b, int64_t batch,
                           int64_t in, int64_t out, int act, int n_threads)
{
    if (batch < 0 || in < 0 || out < 0 || act < 0 || act >= FNN_ACT_COUNT) return FNN_EINVAL;
    int64_t tmp;
    if (fnn_mul_overflows(batch, out, &tmp) || fnn_mul_overflows(in, out, &tmp) ||
        fnn_mul_overflows(batch, in, &tmp))
        return FNN_EOVERFLOW;
    if (batch == 0 || out == 0) return FNN_OK;
    fnn_epilogue ep = {b, act == FNN_ACT_SOFTMAX ? FNN_ACT_IDENTITY : act, z, out};
    int st = SFX(fnn_gemm)(a, x, w, batch, out, in, FNN_MAX(in, 1), out, out, 0, 0, (T)1, (T)0,
                           &ep, n_threads);
    if (st != FNN_OK) return st;
    if (act == FNN_ACT_SOFTMAX) {
        if (z) memcpy(z, a, (size_t)(batch * out) * sizeof(T));
        return SFX(fnn_act_forward)(a, a, batch, out, FNN_ACT_SOFTMAX);
    }
    return FNN_OK;
}

/* Backward of dense_forward (shapes in fastnn.h):
 *   delta = da * act'(z), db = sum over the batch of delta   (one pass)
 *   dw = x^T delta + beta_w dw  (skipped when dw is NULL)   (GEMM, A transposed in packing)
 *   dx = delta w^T                                           (GEMM, B transposed in packing) */
int SFX(fnn_dense_backward)(T *dx, T *dw, T *db, T *delta, const T *da, const T *a, const T *z,
                            const T *x, const T *w, int64_t batch, int64_t in, int64_t out, int act,
                            T beta_w, int n_threads)
{
    if (batch < 0 || in < 0 || out < 0 || act < 0 || act >= FNN_ACT_COUNT) return FNN_EINVAL;
    int64_t tmp;
    if (fnn_mul_overflows(batch, out, &tmp) || fnn_mul_overflows(in, out, &tmp) ||
        fnn_mul_overflows(batch, in, &tmp))
        return FNN_EOVERFLOW;
    int st = SFX(fnn_act_backward)(delta, db, da, a, z, batch, out, act);
    if (st != FNN_OK) return st;
    if (out == 0) { /* no outputs: dx = delta w^T is a sum of nothing, zero (dw, db empty) */
        if (dx && batch > 0 && in > 0) memset(dx, 0, (size_t)(batch * in) * sizeof(T));
        return FNN_OK;
    }
    if (in == 0) return FNN_OK;
    if (dw) { /* NULL for a frozen layer */
        st = SFX(fnn_gemm)(dw, x, delta, in, out, batch, FNN_MAX(in, 1), FNN_MAX(out, 1), out, 1,
                           0, (T)1, beta_w, NULL, n_threads);
        if (st != FNN_OK) return st;
    }
    if (dx == NULL || batch == 0) return FNN_OK;
    return SFX(fnn_gemm)(dx, delta, w, batch, in, out, out, out, in, 0, 1, (T)1, (T)0, NULL,
                         n_threads);
}
