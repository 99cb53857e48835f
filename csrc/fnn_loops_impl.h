/* fnn_loops_impl.h -- the elementwise loops, written once, compiled once per
 * ISA level (T, SFX, TM; included through fnn_template.h by an isa_*.c file).
 *
 * The including file defines
 *   FNN_LOOPS_ISA     the level's name token (generic, avx2, avx512): every
 *                     function here is named fnn_<what>_<isa>_<dtype>, the
 *                     convention tools/check_isa.sh checks the binary against;
 *   FNN_LOOPS_TARGET  the function attribute that lets the compiler vectorize
 *                     the loops for that level (empty for generic).
 * and gets the table SFX(fnn_loops_<isa>) for its registration function.
 *
 * The bodies are always-inline, so each copy is compiled for its target.  No
 * target enables FMA: without contraction every copy rounds exactly as the
 * baseline one does, and results do not depend on the ISA. */
#define FNN_LP_CAT_(a, b, c) a##_##b##_##c
#define FNN_LP_CAT(a, b, c) FNN_LP_CAT_(a, b, c)
/* FNN_LP(adam) -> fnn_adam_<isa>_f32 / _f64 */
#define FNN_LP_SFX(name) SFX(name) /* expands name before SFX pastes _f32 */
#define FNN_LP(what) FNN_LP_SFX(FNN_LP_CAT(fnn, what, FNN_LOOPS_ISA))

/* w (n,) -= lr * (g + wd w), or with momentum buf (n,): torch.optim.SGD. */
FNN_LOOPS_TARGET static void FNN_LP(sgd)(const SFX(fnn_sgd_args) *a, int64_t lo, int64_t hi)
{
    T *FNN_RESTRICT w = a->w, *FNN_RESTRICT buf = a->buf;
    const T *FNN_RESTRICT g = a->g;
    const T lr = a->lr, momentum = a->momentum, damp1 = a->damp1, wd = a->weight_decay;
    const int nesterov = a->nesterov, first = a->first_step;
    if (!a->use_mom) {
        if (a->use_wd)
            for (int64_t i = lo; i < hi; i++) w[i] = w[i] - lr * (g[i] + wd * w[i]);
        else
            for (int64_t i = lo; i < hi; i++) w[i] = w[i] - lr * g[i];
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        const T wi = w[i];
        T d = g[i];
        if (a->use_wd) d = d + wd * wi;
        const T b = first ? d : buf[i] * momentum + damp1 * d;
        buf[i] = b;
        d = nesterov ? d + momentum * b : b;
        w[i] = wi - lr * d;
    }
}

/* w, m, v (n,) (vmax (n,) for amsgrad): one torch.optim.Adam / AdamW step. */
FNN_LOOPS_TARGET static void FNN_LP(adam)(const SFX(fnn_adam_args) *a, int64_t lo, int64_t hi)
{
    T *FNN_RESTRICT w = a->w, *FNN_RESTRICT m = a->m, *FNN_RESTRICT v = a->v;
    T *FNN_RESTRICT vmax = a->vmax;
    const T *FNN_RESTRICT g = a->g;
    const T beta1 = a->beta1, beta2 = a->beta2, one_b1 = a->one_b1, one_b2 = a->one_b2;
    const T eps = a->eps, wd = a->weight_decay, step_size = a->step_size;
    const T bc2_sqrt = a->bc2_sqrt, shrink = a->shrink;
    const int couple_wd = a->couple_wd, use_shrink = a->use_shrink;
    if (!vmax && !couple_wd && !use_shrink) { /* the common case, kept branch-free */
        for (int64_t i = lo; i < hi; i++) {
            const T gi = g[i];
            const T mi = beta1 * m[i] + one_b1 * gi;
            const T vi = v[i] * beta2 + one_b2 * gi * gi;
            m[i] = mi;
            v[i] = vi;
            w[i] = w[i] - step_size * mi / (TM(sqrt)(vi) / bc2_sqrt + eps);
        }
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        T wi = w[i], gi = g[i];
        if (use_shrink) wi = wi * shrink;
        if (couple_wd) gi = gi + wd * wi;
        const T mi = beta1 * m[i] + one_b1 * gi;
        const T vi = v[i] * beta2 + one_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        T vh = vi;
        if (vmax) {
            vh = vmax[i] > vi ? vmax[i] : vi; /* NaN in v propagates */
            vmax[i] = vh;
        }
        const T denom = TM(sqrt)(vh) / bc2_sqrt + eps;
        w[i] = wi - step_size * mi / denom;
    }
}

/* One torch.optim.RMSprop step over [lo, hi) of w, sq (n,) (buf, gavg (n,) when
 * used), its options as compile-time flags: each of the eight combinations is a
 * branch-free loop the compiler vectorizes (with the flags read in the loop it
 * stayed scalar). */
FNN_LOOPS_TARGET FNN_INLINE void FNN_LP(rmsprop_body)(const SFX(fnn_rmsprop_args) *a,
                                                      int64_t lo, int64_t hi, const int use_wd,
                                                      const int centered, const int use_mom)
{
    T *FNN_RESTRICT w = a->w, *FNN_RESTRICT sq = a->sq, *FNN_RESTRICT buf = a->buf;
    T *FNN_RESTRICT gavg = a->gavg;
    const T *FNN_RESTRICT g = a->g;
    const T lr = a->lr, alpha = a->alpha, one_a = a->one_a, eps = a->eps;
    const T wd = a->weight_decay, momentum = a->momentum;
    for (int64_t i = lo; i < hi; i++) {
        const T wi = w[i];
        T gi = g[i];
        if (use_wd) gi = gi + wd * wi;
        const T si = sq[i] * alpha + one_a * gi * gi;
        sq[i] = si;
        T var = si;
        if (centered) {
            const T ai = alpha * gavg[i] + one_a * gi;
            gavg[i] = ai;
            var = si - ai * ai;
            var = var > 0 ? var : (T)0; /* >= 0 in exact math; rounding may dip below */
        }
        const T avg = TM(sqrt)(var) + eps;
        if (use_mom) {
            const T b = buf[i] * momentum + gi / avg;
            buf[i] = b;
            w[i] = wi - lr * b;
        } else {
            w[i] = wi - lr * gi / avg;
        }
    }
}

/* w, sq (n,) (buf, gavg (n,) when used): one torch.optim.RMSprop step. */
FNN_LOOPS_TARGET static void FNN_LP(rmsprop)(const SFX(fnn_rmsprop_args) *a, int64_t lo,
                                             int64_t hi)
{
    switch ((a->use_wd ? 1 : 0) | (a->centered ? 2 : 0) | (a->use_mom ? 4 : 0)) {
    case 0: FNN_LP(rmsprop_body)(a, lo, hi, 0, 0, 0); break;
    case 1: FNN_LP(rmsprop_body)(a, lo, hi, 1, 0, 0); break;
    case 2: FNN_LP(rmsprop_body)(a, lo, hi, 0, 1, 0); break;
    case 3: FNN_LP(rmsprop_body)(a, lo, hi, 1, 1, 0); break;
    case 4: FNN_LP(rmsprop_body)(a, lo, hi, 0, 0, 1); break;
    case 5: FNN_LP(rmsprop_body)(a, lo, hi, 1, 0, 1); break;
    case 6: FNN_LP(rmsprop_body)(a, lo, hi, 0, 1, 1); break;
    default: FNN_LP(rmsprop_body)(a, lo, hi, 1, 1, 1); break;
    }
}

/* g (n,) += wd * w (n,); returns sum of w^2 in double, element i in partial
 * sum i % 8 (eight sequential chains, so every ISA's vectors give the same
 * bits), the eight added ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)). */
FNN_LOOPS_TARGET static double FNN_LP(l2_grad)(T *FNN_RESTRICT g, const T *FNN_RESTRICT w,
                                               int64_t n, T wd)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) {
            const double x = (double)w[i + u];
            s[u] += x * x;
            g[i + u] = g[i + u] + wd * w[i + u];
        }
    for (int u = 0; i < n; i++, u++) {
        const double x = (double)w[i];
        s[u] += x * x;
        g[i] = g[i] + wd * w[i];
    }
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* w, sum (n,): one torch.optim.Adagrad step. */
FNN_LOOPS_TARGET static void FNN_LP(adagrad)(const SFX(fnn_adagrad_args) *a, int64_t lo,
                                             int64_t hi)
{
    T *FNN_RESTRICT w = a->w, *FNN_RESTRICT sum = a->sum;
    const T *FNN_RESTRICT g = a->g;
    const T clr = a->clr, wd = a->weight_decay, eps = a->eps;
    for (int64_t i = lo; i < hi; i++) {
        const T wi = w[i];
        T gi = g[i];
        if (a->use_wd) gi = gi + wd * wi;
        const T si = sum[i] + gi * gi;
        sum[i] = si;
        w[i] = wi - clr * gi / (TM(sqrt)(si) + eps);
    }
}

/* out, x (n,), mask (n,) or NULL: inverted dropout forward over [lo, hi). */
FNN_LOOPS_TARGET static void FNN_LP(dropout_fwd)(const SFX(fnn_dropout_fwd_args) *a, int64_t lo,
                                                 int64_t hi)
{
    T *out = a->out;
    uint8_t *mask = a->mask;
    const T *x = a->x;
    const uint64_t seed = a->seed, offset = a->offset, thr = a->thr;
    const T scale = a->scale;
    if (thr == 0) { /* p == 0 */
        for (int64_t i = lo; i < hi; i++) out[i] = x[i];
        if (mask)
            for (int64_t i = lo; i < hi; i++) mask[i] = 1;
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        const int keep = fnn_dropout_bits(seed, offset + (uint64_t)i) >= thr;
        out[i] = x[i] * ((T)keep * scale); /* branch-free; x * 0 as torch (inf -> nan) */
        if (mask) mask[i] = (uint8_t)keep;
    }
}

/* dx, dy, mask (n,): dropout backward over [lo, hi). */
FNN_LOOPS_TARGET static void FNN_LP(dropout_bwd)(const SFX(fnn_dropout_bwd_args) *a, int64_t lo,
                                                 int64_t hi)
{
    T *FNN_RESTRICT dx = a->dx;
    const T *dy = a->dy;
    const uint8_t *FNN_RESTRICT mask = a->mask;
    const T scale = a->scale;
    for (int64_t i = lo; i < hi; i++) dx[i] = dy[i] * ((T)(mask[i] != 0) * scale);
}

/* 1 when every x[i] (n,) is finite.  Tests the exponent bits with integer
 * operations (an OR-reduction the compiler vectorizes without reassociating
 * floating-point sums); one pass, no early exit, so its time does not depend on
 * the data. */
FNN_LOOPS_TARGET static int FNN_LP(all_finite)(const T *x, int64_t n)
{
    if (sizeof(T) == 4) {
        const uint32_t *u = (const uint32_t *)(const void *)x;
        uint32_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad |= (uint32_t)((u[i] & 0x7f800000u) == 0x7f800000u);
        return !bad;
    }
    const uint64_t *u = (const uint64_t *)(const void *)x;
    uint64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad |= (uint64_t)((u[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
    return !bad;
}

/* sigmoid(x) without overflow: exp of -|x| only. */
FNN_INLINE T FNN_LP(sigmoid1)(T x)
{
    if (x >= 0) {
        T e = TM(exp)(-x);
        return (T)1 / ((T)1 + e);
    }
    T e = TM(exp)(x);
    return e / ((T)1 + e);
}

/* y[0:n] = act(x[0:n]) for every elementwise act (not softmax); y may alias x.
 * Stable for inputs of any magnitude: exponentials only see non-positive
 * arguments. */
FNN_LOOPS_TARGET static void FNN_LP(act_row)(T *y, const T *x, int64_t n, int act)
{
    const T sqrt1_2 = (T)0.70710678118654752440;
    switch (act) {
    case FNN_ACT_IDENTITY:
        if (y != x) memmove(y, x, (size_t)n * sizeof(T));
        break;
    case FNN_ACT_SIGMOID:
        for (int64_t j = 0; j < n; j++) y[j] = FNN_LP(sigmoid1)(x[j]);
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
        for (int64_t j = 0; j < n; j++) y[j] = x[j] * FNN_LP(sigmoid1)(x[j]);
        break;
    default:
        break;
    }
}

/* dz[0:n] = da * act'(z), from a = act(z) and (gelu, silu) z; dz may alias da. */
FNN_LOOPS_TARGET static void FNN_LP(act_grad_row)(T *dz, const T *da, const T *a, const T *z,
                                                  int64_t n, int act)
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
            T s = FNN_LP(sigmoid1)(z[j]);
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

/* One row x (classes,) of softmax cross-entropy: returns lse - x[label] (label >= 0)
 * or sum_c t_c (lse - x_c) (probability row t); grad (classes,) or NULL =
 * (softmax * sum_c t_c - t) * inv_b (t one-hot at label for labels). */
FNN_LOOPS_TARGET static double FNN_LP(ce_row)(T *grad, const T *x, int64_t label, const T *t,
                                              int64_t classes, T inv_b)
{
    T mx = x[0];
    for (int64_t j = 1; j < classes; j++) mx = x[j] > mx ? x[j] : mx;
    T s = 0;
    for (int64_t j = 0; j < classes; j++) s += TM(exp)(x[j] - mx);
    const T lse = mx + TM(log)(s); /* log-sum-exp */
    double total;
    if (label >= 0) {
        total = (double)(lse - x[label]);
    } else {
        double acc = 0;
        for (int64_t j = 0; j < classes; j++)
            if (t[j] != 0) acc += (double)t[j] * (double)(lse - x[j]);
        total = acc;
    }
    if (grad) {
        const T inv_s = (T)1 / s;
        if (label >= 0) {
            for (int64_t j = 0; j < classes; j++) grad[j] = TM(exp)(x[j] - mx) * inv_s * inv_b;
            grad[label] -= inv_b;
        } else {
            T tsum = 0;
            for (int64_t j = 0; j < classes; j++) tsum += t[j];
            for (int64_t j = 0; j < classes; j++)
                grad[j] = (TM(exp)(x[j] - mx) * inv_s * tsum - t[j]) * inv_b;
        }
    }
    return total;
}

/* pred, target (n,): returns sum (pred - target)^2 (in double, in index order);
 * grad (n,) or NULL = scale (pred - target).  Two passes, so that the gradient
 * pass vectorizes (the double sum is sequential, as before). */
FNN_LOOPS_TARGET static double FNN_LP(mse)(T *grad, const T *pred, const T *target, int64_t n,
                                           T scale)
{
    if (grad)
        for (int64_t i = 0; i < n; i++) grad[i] = scale * (pred[i] - target[i]);
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        const T d = pred[i] - target[i];
        total += (double)d * (double)d;
    }
    return total;
}

/* logits, target (n,): returns sum max(x,0) - x t + log1p(exp(-|x|)) (in double);
 * grad (n,) or NULL = (sigmoid(x) - t) * inv_n. */
FNN_LOOPS_TARGET static double FNN_LP(bce)(T *grad, const T *logits, const T *target, int64_t n,
                                           T inv_n)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        const T x = logits[i], t = target[i];
        const T e = TM(exp)(-TM(fabs)(x)); /* in (0, 1]: never overflows */
        total += (double)((x > 0 ? x : (T)0) - x * t + TM(log1p)(e));
        if (grad) {
            const T sig = x >= 0 ? (T)1 / ((T)1 + e) : e / ((T)1 + e);
            grad[i] = (sig - t) * inv_n;
        }
    }
    return total;
}

/* The level's table, for its registration function. */
static const SFX(fnn_loops) FNN_LP(loops) = {
    .sgd = FNN_LP(sgd),
    .adam = FNN_LP(adam),
    .rmsprop = FNN_LP(rmsprop),
    .adagrad = FNN_LP(adagrad),
    .dropout_fwd = FNN_LP(dropout_fwd),
    .dropout_bwd = FNN_LP(dropout_bwd),
    .all_finite = FNN_LP(all_finite),
    .act_row = FNN_LP(act_row),
    .act_grad_row = FNN_LP(act_grad_row),
    .ce_row = FNN_LP(ce_row),
    .mse = FNN_LP(mse),
    .bce = FNN_LP(bce),
    .l2_grad = FNN_LP(l2_grad),
};

#undef FNN_LP
#undef FNN_LP_SFX
#undef FNN_LP_CAT
#undef FNN_LP_CAT_
