/* activation_impl.h -- activations, their derivatives and the GEMM epilogue
 * for one element type (T, SFX, TM).  Stable for inputs of any magnitude:
 * exponentials only ever see non-positive arguments. */

/* sigmoid(x) without overflow: exp of -|x| only. */
static inline T SFX(sigmoid1)(T x)
{
    if (x >= 0) {
        T e = TM(exp)(-x);
        return (T)1 / ((T)1 + e);
    }
    T e = TM(exp)(x);
    return e / ((T)1 + e);
}

/* y[0:n] = act(x[0:n]) for every elementwise act (not softmax); y may alias x. */
static void SFX(act_row)(T *y, const T *x, int64_t n, int act)
{
    const T sqrt1_2 = (T)0.70710678118654752440;
    switch (act) {
    case FNN_ACT_IDENTITY:
        if (y != x) memmove(y, x, (size_t)n * sizeof(T));
        break;
    case FNN_ACT_SIGMOID:
        for (int64_t j = 0; j < n; j++) y[j] = SFX(sigmoid1)(x[j]);
        break;
    case FNN_ACT_TANH:
        for (int64_t j = 0; j < n; j++) y[j] = TM(tanh)(x[j]);
        break;
    case FNN_ACT_RELU: /* NaN propagates: NaN < 0 is false */
        for (int64_t j = 0; j < n; j++) y[j] = x[j] < 0 ? (T)0 : x[j];
        break;
    case FNN_ACT_LEAKY_RELU:
        for (int64_t j = 0; j < n; j++) y[j] = x[j] < 0 ? (T)0.01 * x[j] : x[j];
        break;
    case FNN_ACT_ELU:
        for (int64_t j = 0; j < n; j++) y[j] = x[j] > 0 ? x[j] : TM(expm1)(x[j]);
        break;
    case FNN_ACT_GELU: /* x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2: accurate in both tails */
        for (int64_t j = 0; j < n; j++) y[j] = x[j] * (T)0.5 * TM(erfc)(-x[j] * sqrt1_2);
        break;
    case FNN_ACT_SOFTPLUS:
        for (int64_t j = 0; j < n; j++) {
            T v = x[j];
            y[j] = (v > 0 ? v : (T)0) + TM(log1p)(TM(exp)(-TM(fabs)(v)));
        }
        break;
    case FNN_ACT_SILU:
        for (int64_t j = 0; j < n; j++) y[j] = x[j] * SFX(sigmoid1)(x[j]);
        break;
    default:
        break;
    }
}

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

/* dz[0:n] = da * act'(z), from a = act(z) and (gelu, silu) z. */
static void SFX(act_grad_row)(T *dz, const T *da, const T *a, const T *z, int64_t n, int act)
{
    const T sqrt1_2 = (T)0.70710678118654752440;
    const T inv_sqrt_2pi = (T)0.39894228040143267794;
    switch (act) {
    case FNN_ACT_IDENTITY:
        if (dz != da) memmove(dz, da, (size_t)n * sizeof(T));
        break;
    case FNN_ACT_SIGMOID:
        for (int64_t j = 0; j < n; j++) dz[j] = da[j] * a[j] * ((T)1 - a[j]);
        break;
    case FNN_ACT_TANH:
        for (int64_t j = 0; j < n; j++) dz[j] = da[j] * ((T)1 - a[j] * a[j]);
        break;
    case FNN_ACT_RELU: /* a > 0 exactly when z > 0; a mask, not a branch (vectorizes) */
        for (int64_t j = 0; j < n; j++) dz[j] = da[j] * (T)(a[j] > 0);
        break;
    case FNN_ACT_LEAKY_RELU:
        for (int64_t j = 0; j < n; j++) dz[j] = da[j] * (a[j] > 0 ? (T)1 : (T)0.01);
        break;
    case FNN_ACT_ELU: /* for z <= 0, d/dz expm1(z) = a + 1 */
        for (int64_t j = 0; j < n; j++) dz[j] = a[j] > 0 ? da[j] : da[j] * (a[j] + (T)1);
        break;
    case FNN_ACT_GELU:
        for (int64_t j = 0; j < n; j++) {
            T v = z[j];
            T cdf = (T)0.5 * TM(erfc)(-v * sqrt1_2);
            T pdf = inv_sqrt_2pi * TM(exp)((T)-0.5 * v * v);
            dz[j] = da[j] * (cdf + v * pdf);
        }
        break;
    case FNN_ACT_SOFTPLUS: /* sigmoid(z) = 1 - exp(-a), accurate for tiny a via expm1 */
        for (int64_t j = 0; j < n; j++) dz[j] = -da[j] * TM(expm1)(-a[j]);
        break;
    case FNN_ACT_SILU:
        for (int64_t j = 0; j < n; j++) {
            T s = SFX(sigmoid1)(z[j]);
            dz[j] = da[j] * s * ((T)1 + z[j] * ((T)1 - s));
        }
        break;
    case FNN_ACT_SOFTMAX: {
        T dot = 0;
        for (int64_t j = 0; j < n; j++) dot += da[j] * a[j];
        for (int64_t j = 0; j < n; j++) dz[j] = a[j] * (da[j] - dot);
        break;
    }
    default:
        break;
    }
}

int SFX(fnn_act_forward)(T *out, const T *x, int64_t rows, int64_t cols, int act)
{
    if (rows < 0 || cols < 0 || act < 0 || act >= FNN_ACT_COUNT) return FNN_EINVAL;
    for (int64_t i = 0; i < rows; i++) {
        if (act == FNN_ACT_SOFTMAX)
            SFX(softmax_row)(out + i * cols, x + i * cols, cols);
        else
            SFX(act_row)(out + i * cols, x + i * cols, cols, act);
    }
    return FNN_OK;
}

int SFX(fnn_act_backward)(T *dz, T *dbias, const T *da, const T *a, const T *z, int64_t rows,
                          int64_t cols, int act)
{
    if (rows < 0 || cols < 0 || act < 0 || act >= FNN_ACT_COUNT) return FNN_EINVAL;
    if (fnn_act_needs_z(act) && z == NULL) return FNN_EINVAL;
    if (dbias)
        for (int64_t j = 0; j < cols; j++) dbias[j] = 0;
    for (int64_t i = 0; i < rows; i++) {
        T *d = dz + i * cols;
        SFX(act_grad_row)(d, da + i * cols, a + i * cols, z ? z + i * cols : NULL, cols, act);
        if (dbias)
            for (int64_t j = 0; j < cols; j++) dbias[j] += d[j];
    }
    return FNN_OK;
}

void SFX(fnn_epilogue_tile)(T *c, int64_t ldc, int64_t rows, int64_t cols, const T *bias, T *z,
                            int64_t ldz, int act)
{
    for (int64_t i = 0; i < rows; i++) {
        T *r = c + i * ldc;
        if (bias)
            for (int64_t j = 0; j < cols; j++) r[j] += bias[j];
        if (z) memcpy(z + i * ldz, r, (size_t)cols * sizeof(T));
        SFX(act_row)(r, r, cols, act);
    }
}
