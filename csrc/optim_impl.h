/* optim_impl.h -- optimizer updates, one pass over each parameter (T, SFX, TM).
 *
 * Every step below reads each element of w, g and the state once, updates it
 * in registers and writes it back: one fused pass over memory per parameter.
 * The math is torch.optim's (single-tensor path) in the parameter's dtype and
 * in torch's order of operations, except that moving averages are written
 * b * m + (1 - b) * g where torch calls lerp (equal up to rounding); bias
 * corrections and step sizes are scalars computed once per call in double.  Elements are independent, so threads
 * split the range statically and the result does not depend on their number.
 * A zero weight_decay is skipped (never adds 0 * w), as torch does. */

/* w (n,) -= lr * dw (n,) */
int SFX(fnn_sgd_update)(T *w, const T *dw, int64_t n, T lr)
{
    if (n < 0) return FNN_EINVAL;
    for (int64_t i = 0; i < n; i++) w[i] -= lr * dw[i];
    return FNN_OK;
}

typedef struct {
    T *w, *buf;
    const T *g;
    T lr, momentum, damp1, weight_decay;
    int nesterov, first_step, use_wd, use_mom;
} SFX(sgd_args);

FNN_INLINE void SFX(fnn_sgd_body)(const SFX(sgd_args) *a, int64_t lo, int64_t hi)
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
FNN_MULTIVERSION(SFX(fnn_sgd_body), SFX(fnn_sgd_generic), SFX(fnn_sgd_avx2), SFX(fnn_sgd_run), SFX(sgd_args))

/* w, g (n,); buf (n,) momentum buffer, or NULL when momentum == 0. */
int SFX(fnn_sgd_step)(T *w, T *buf, const T *g, int64_t n, T lr, T momentum, T dampening,
                      int nesterov, T weight_decay, int first_step, int n_threads)
{
    if (n < 0) return FNN_EINVAL;
    if (n == 0) return FNN_OK;
    if (!w || !g || (momentum != 0 && !buf)) return FNN_EINVAL;
    if (nesterov && (momentum <= 0 || dampening != 0)) return FNN_EINVAL;
    const SFX(sgd_args) a = {w, buf, g, lr, momentum, (T)1 - dampening, weight_decay,
                             nesterov, first_step, weight_decay != 0, momentum != 0};
    SFX(fnn_sgd_run)(&a, n, fnn_elemwise_threads(n, n_threads));
    return FNN_OK;
}

typedef struct {
    T *w, *m, *v, *vmax;
    const T *g;
    T beta1, beta2, one_b1, one_b2, eps, weight_decay, step_size, bc2_sqrt, shrink;
    int couple_wd, use_shrink;
} SFX(adam_args);

FNN_INLINE void SFX(fnn_adam_body)(const SFX(adam_args) *a, int64_t lo, int64_t hi)
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
FNN_MULTIVERSION(SFX(fnn_adam_body), SFX(fnn_adam_generic), SFX(fnn_adam_avx2), SFX(fnn_adam_run),
                 SFX(adam_args))

/* w, m, v, g (n,); vmax (n,) for amsgrad, else NULL.  step >= 1 is the count of
 * steps including this one (torch's state["step"] after its increment). */
int SFX(fnn_adam_step)(T *w, T *m, T *v, T *vmax, const T *g, int64_t n, T lr, T beta1,
                       T beta2, T eps, T weight_decay, int decoupled, int64_t step,
                       int n_threads)
{
    if (n < 0 || step < 1) return FNN_EINVAL;
    if (n == 0) return FNN_OK;
    if (!w || !m || !v || !g) return FNN_EINVAL;
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    const SFX(adam_args) a = {
        w, m, v, vmax, g, beta1, beta2, (T)1 - beta1, (T)1 - beta2, eps, weight_decay,
        (T)((double)lr / bc1), (T)sqrt(bc2),
        (T)(1.0 - (double)lr * (double)weight_decay), /* AdamW: w *= 1 - lr wd */
        weight_decay != 0 && !decoupled, weight_decay != 0 && decoupled};
    SFX(fnn_adam_run)(&a, n, fnn_elemwise_threads(n, n_threads));
    return FNN_OK;
}

typedef struct {
    T *w, *sq, *buf, *gavg;
    const T *g;
    T lr, alpha, one_a, eps, weight_decay, momentum;
    int centered, use_wd, use_mom;
} SFX(rmsprop_args);

FNN_INLINE void SFX(fnn_rmsprop_body)(const SFX(rmsprop_args) *a, int64_t lo, int64_t hi)
{
    T *FNN_RESTRICT w = a->w, *FNN_RESTRICT sq = a->sq, *FNN_RESTRICT buf = a->buf;
    T *FNN_RESTRICT gavg = a->gavg;
    const T *FNN_RESTRICT g = a->g;
    const T lr = a->lr, alpha = a->alpha, one_a = a->one_a, eps = a->eps;
    const T wd = a->weight_decay, momentum = a->momentum;
    for (int64_t i = lo; i < hi; i++) {
        const T wi = w[i];
        T gi = g[i];
        if (a->use_wd) gi = gi + wd * wi;
        const T si = sq[i] * alpha + one_a * gi * gi;
        sq[i] = si;
        T var = si;
        if (a->centered) {
            const T ai = alpha * gavg[i] + one_a * gi;
            gavg[i] = ai;
            var = si - ai * ai;
            var = var > 0 ? var : (T)0; /* >= 0 in exact math; rounding may dip below */
        }
        const T avg = TM(sqrt)(var) + eps;
        if (a->use_mom) {
            const T b = buf[i] * momentum + gi / avg;
            buf[i] = b;
            w[i] = wi - lr * b;
        } else {
            w[i] = wi - lr * gi / avg;
        }
    }
}
FNN_MULTIVERSION(SFX(fnn_rmsprop_body), SFX(fnn_rmsprop_generic), SFX(fnn_rmsprop_avx2), SFX(fnn_rmsprop_run),
                 SFX(rmsprop_args))

/* w, sq, g (n,); buf (n,) when momentum > 0, gavg (n,) when centered, else NULL.
 * All state starts at zero (torch's). */
int SFX(fnn_rmsprop_step)(T *w, T *sq, T *buf, T *gavg, const T *g, int64_t n, T lr, T alpha,
                          T eps, T weight_decay, T momentum, int centered, int n_threads)
{
    if (n < 0) return FNN_EINVAL;
    if (n == 0) return FNN_OK;
    if (!w || !sq || !g || (momentum > 0 && !buf) || (centered && !gavg)) return FNN_EINVAL;
    const SFX(rmsprop_args) a = {w, sq, buf, gavg, g, lr, alpha, (T)1 - alpha, eps,
                                 weight_decay, momentum, centered, weight_decay != 0,
                                 momentum > 0};
    SFX(fnn_rmsprop_run)(&a, n, fnn_elemwise_threads(n, n_threads));
    return FNN_OK;
}

typedef struct {
    T *w, *sum;
    const T *g;
    T clr, weight_decay, eps;
    int use_wd;
} SFX(adagrad_args);

FNN_INLINE void SFX(fnn_adagrad_body)(const SFX(adagrad_args) *a, int64_t lo, int64_t hi)
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
FNN_MULTIVERSION(SFX(fnn_adagrad_body), SFX(fnn_adagrad_generic), SFX(fnn_adagrad_avx2), SFX(fnn_adagrad_run),
                 SFX(adagrad_args))

/* w, sum, g (n,); sum starts at initial_accumulator_value.  step >= 1 counts
 * this step: clr = lr / (1 + (step - 1) lr_decay). */
int SFX(fnn_adagrad_step)(T *w, T *sum, const T *g, int64_t n, T lr, T lr_decay,
                          T weight_decay, T eps, int64_t step, int n_threads)
{
    if (n < 0 || step < 1) return FNN_EINVAL;
    if (n == 0) return FNN_OK;
    if (!w || !sum || !g) return FNN_EINVAL;
    const SFX(adagrad_args) a = {
        w, sum, g, (T)((double)lr / (1.0 + (double)(step - 1) * (double)lr_decay)),
        weight_decay, eps, weight_decay != 0};
    SFX(fnn_adagrad_run)(&a, n, fnn_elemwise_threads(n, n_threads));
    return FNN_OK;
}

/* 1 when every x[i] (n,) is finite.  Tests the exponent bits with integer
 * operations (an OR-reduction the compiler vectorizes without reassociating
 * floating-point sums); one pass, no early exit, so its time does not depend on
 * the data.  Compiled for the baseline ISA and for AVX2 (8 or 4 lanes). */
FNN_INLINE int SFX(fnn_all_finite_body)(const T *x, int64_t n)
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

#ifdef FNN_MULTIVERSIONED
FNN_TARGET_AVX2_FN static int SFX(fnn_all_finite_avx2)(const T *x, int64_t n)
{
    return SFX(fnn_all_finite_body)(x, n);
}
#endif

int SFX(fnn_all_finite)(const T *x, int64_t n)
{
    if (n <= 0) return 1;
#ifdef FNN_MULTIVERSIONED
    if (fnn_isa() >= FNN_ISA_AVX2) return SFX(fnn_all_finite_avx2)(x, n);
#endif
    return SFX(fnn_all_finite_body)(x, n);
}
