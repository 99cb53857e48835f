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

/* w, g (n,); buf (n,) momentum buffer, or NULL when momentum == 0. */
int SFX(fnn_sgd_step)(T *w, T *buf, const T *g, int64_t n, T lr, T momentum, T dampening,
                      int nesterov, T weight_decay, int first_step, int n_threads)
{
    if (n < 0) return FNN_EINVAL;
    if (n == 0) return FNN_OK;
    if (!w || !g || (momentum != 0 && !buf)) return FNN_EINVAL;
    if (nesterov && (momentum <= 0 || dampening != 0)) return FNN_EINVAL;
    const int nt = fnn_elemwise_threads(n, n_threads);
    const int use_wd = weight_decay != 0, use_mom = momentum != 0;
    const T damp1 = (T)1 - dampening;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t i = 0; i < n; i++) {
        const T wi = w[i];
        T d = g[i];
        if (use_wd) d = d + weight_decay * wi;
        if (use_mom) {
            const T b = first_step ? d : buf[i] * momentum + damp1 * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        w[i] = wi - lr * d;
    }
    (void)nt;
    return FNN_OK;
}

/* w, m, v, g (n,); vmax (n,) for amsgrad, else NULL.  step >= 1 is the count of
 * steps including this one (torch's state["step"] after its increment). */
int SFX(fnn_adam_step)(T *w, T *m, T *v, T *vmax, const T *g, int64_t n, T lr, T beta1,
                       T beta2, T eps, T weight_decay, int decoupled, int64_t step,
                       int n_threads)
{
    if (n < 0 || step < 1) return FNN_EINVAL;
    if (n == 0) return FNN_OK;
    if (!w || !m || !v || !g) return FNN_EINVAL;
    const int nt = fnn_elemwise_threads(n, n_threads);
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    const T step_size = (T)((double)lr / bc1);
    const T bc2_sqrt = (T)sqrt(bc2);
    const int couple_wd = weight_decay != 0 && !decoupled;
    const T shrink = (T)(1.0 - (double)lr * (double)weight_decay); /* AdamW: w *= 1 - lr wd */
    const int use_shrink = weight_decay != 0 && decoupled;
    const T one_b1 = (T)1 - beta1, one_b2 = (T)1 - beta2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t i = 0; i < n; i++) {
        T wi = w[i], gi = g[i];
        if (use_shrink) wi = wi * shrink;
        if (couple_wd) gi = gi + weight_decay * wi;
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
    (void)nt;
    return FNN_OK;
}

/* w, sq, g (n,); buf (n,) when momentum > 0, gavg (n,) when centered, else NULL.
 * All state starts at zero (torch's). */
int SFX(fnn_rmsprop_step)(T *w, T *sq, T *buf, T *gavg, const T *g, int64_t n, T lr, T alpha,
                          T eps, T weight_decay, T momentum, int centered, int n_threads)
{
    if (n < 0) return FNN_EINVAL;
    if (n == 0) return FNN_OK;
    if (!w || !sq || !g || (momentum > 0 && !buf) || (centered && !gavg)) return FNN_EINVAL;
    const int nt = fnn_elemwise_threads(n, n_threads);
    const int use_wd = weight_decay != 0, use_mom = momentum > 0;
    const T one_a = (T)1 - alpha;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t i = 0; i < n; i++) {
        const T wi = w[i];
        T gi = g[i];
        if (use_wd) gi = gi + weight_decay * wi;
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
    (void)nt;
    return FNN_OK;
}

/* w, sum, g (n,); sum starts at initial_accumulator_value.  step >= 1 counts
 * this step: clr = lr / (1 + (step - 1) lr_decay). */
int SFX(fnn_adagrad_step)(T *w, T *sum, const T *g, int64_t n, T lr, T lr_decay,
                          T weight_decay, T eps, int64_t step, int n_threads)
{
    if (n < 0 || step < 1) return FNN_EINVAL;
    if (n == 0) return FNN_OK;
    if (!w || !sum || !g) return FNN_EINVAL;
    const int nt = fnn_elemwise_threads(n, n_threads);
    const T clr = (T)((double)lr / (1.0 + (double)(step - 1) * (double)lr_decay));
    const int use_wd = weight_decay != 0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int64_t i = 0; i < n; i++) {
        const T wi = w[i];
        T gi = g[i];
        if (use_wd) gi = gi + weight_decay * wi;
        const T si = sum[i] + gi * gi;
        sum[i] = si;
        w[i] = wi - clr * gi / (TM(sqrt)(si) + eps);
    }
    (void)nt;
    return FNN_OK;
}
