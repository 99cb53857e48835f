/* activation_impl.h -- activations, their derivatives and the GEMM epilogue
 * for one element type (T, SFX, TM).  The elementwise rows (act_row,
 * act_grad_row) are the ISA registry's loops (fnn_loops_impl.h): stable for
 * inputs of any magnitude, exponentials only ever see non-positive arguments. */

/* y[0:n] = softmax(x[0:n]); y may alias x. */
static void SFX(softmax_row)(T *y, const T *x, int64_t n)
{
    if (n <= 0) return;
    T mx = x[0];
    for (int64_t j = 1; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    T s = 0;
    for (int64_t j = 0; j < n; j++) {
        y[j] = TM(exp)(x[j] - mx);
        s += y[j];
    }
    T inv = (T)1 / s;
    for (int64_t j = 0; j < n; j++) y[j] *= inv;
}

int SFX(fnn_act_forward)(T *out, const T *x, int64_t rows, int64_t cols, int act)
{
    if (rows < 0 || cols < 0 || act < 0 || act >= FNN_ACT_COUNT) return FNN_EINVAL;
    void (*act_row)(T *, const T *, int64_t, int) = fnn_ctx()->SFX(loops).act_row;
    if (act != FNN_ACT_SOFTMAX) { /* elementwise: the rows are one contiguous run */
        act_row(out, x, rows * cols, act);
        return FNN_OK;
    }
    for (int64_t i = 0; i < rows; i++) {
        if (act == FNN_ACT_SOFTMAX)
            SFX(softmax_row)(out + i * cols, x + i * cols, cols);
        else
            act_row(out + i * cols, x + i * cols, cols, act);
    }
    return FNN_OK;
}

int SFX(fnn_act_backward)(T *dz, T *dbias, const T *da, const T *a, const T *z, int64_t rows,
                          int64_t cols, int act)
{
    if (rows < 0 || cols < 0 || act < 0 || act >= FNN_ACT_COUNT) return FNN_EINVAL;
    if (fnn_act_needs_z(act) && z == NULL) return FNN_EINVAL;
    void (*act_grad_row)(T *, const T *, const T *, const T *, int64_t, int) =
        fnn_ctx()->SFX(loops).act_grad_row;
    if (dbias == NULL && act != FNN_ACT_SOFTMAX) { /* elementwise: one contiguous run */
        act_grad_row(dz, da, a, z, rows * cols, act);
        return FNN_OK;
    }
    if (dbias)
        for (int64_t j = 0; j < cols; j++) dbias[j] = 0;
    for (int64_t i = 0; i < rows; i++) {
        T *d = dz + i * cols;
        act_grad_row(d, da + i * cols, a + i * cols, z ? z + i * cols : NULL, cols, act);
        if (dbias)
            for (int64_t j = 0; j < cols; j++) dbias[j] += d[j];
    }
    return FNN_OK;
}

void SFX(fnn_epilogue_tile)(T *c, int64_t ldc, int64_t rows, int64_t cols, const T *bias, T *z,
                            int64_t ldz, int act)
{
    void (*act_row)(T *, const T *, int64_t, int) = fnn_ctx()->SFX(loops).act_row;
    for (int64_t i = 0; i < rows; i++) {
        T *r = c + i * ldc;
        if (bias)
            for (int64_t j = 0; j < cols; j++) r[j] += bias[j];
        if (z) memcpy(z + i * ldz, r, (size_t)cols * sizeof(T));
        act_row(r, r, cols, act);
    }
}
