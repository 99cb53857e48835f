/* optim_impl.h -- optimizer updates, one pass over each parameter (T, SFX, TM).
 *
 * Every step below reads each element of w, g and the state once, updates it
 * in registers and writes it back: one fused pass over memory per parameter.
 * The math is torch.optim's (single-tensor path) in the parameter's dtype and
 * in torch's order of operations, except that moving averages are written
 * b * m + (1 - b) * g where torch calls lerp (equal up to rounding); bias
 * corrections and step sizes are scalars computed once per call in double.  Elements are
 * independent, so threads split the range statically and the result does not depend on their
 * number.  The loops are the ISA registry's (fnn_loops_impl.h, one copy per ISA level).
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
    const SFX(fnn_sgd_args) a = {.w = w, .buf = buf, .g = g, .lr = lr, .momentum = momentum,
                                 .damp1 = (T)1 - dampening, .weight_decay = weight_decay,
                                 .nesterov = nesterov, .first_step = first_step,
                                 .use_wd = weight_decay != 0, .use_mom = momentum != 0};
    const int nt = fnn_elemwise_threads(n, n_threads);
    FNN_RUN_RANGES(fnn_ctx()->SFX(loops).sgd, &a, n, nt);
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
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    const SFX(fnn_adam_args) a = {
        .w = w, .m = m, .v = v, .vmax = vmax, .g = g, .beta1 = beta1, .beta2 = beta2,
        .one_b1 = (T)1 - beta1, .one_b2 = (T)1 - beta2, .eps = eps, .weight_decay = weight_decay,
        .step_size = (T)((double)lr / bc1), .bc2_sqrt = (T)sqrt(bc2),
        .shrink = (T)(1.0 - (double)lr * (double)weight_decay), /* AdamW: w *= 1 - lr wd */
        .couple_wd = weight_decay != 0 && !decoupled,
        .use_shrink = weight_decay != 0 && decoupled};
    const int nt = fnn_elemwise_threads(n, n_threads);
    FNN_RUN_RANGES(fnn_ctx()->SFX(loops).adam, &a, n, nt);
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
    const SFX(fnn_rmsprop_args) a = {.w = w, .sq = sq, .buf = buf, .gavg = gavg, .g = g,
                                     .lr = lr, .alpha = alpha, .one_a = (T)1 - alpha,
                                     .eps = eps, .weight_decay = weight_decay,
                                     .momentum = momentum, .centered = centered,
                                     .use_wd = weight_decay != 0, .use_mom = momentum > 0};
    const int nt = fnn_elemwise_threads(n, n_threads);
    FNN_RUN_RANGES(fnn_ctx()->SFX(loops).rmsprop, &a, n, nt);
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
    const SFX(fnn_adagrad_args) a = {
        .w = w, .sum = sum, .g = g,
        .clr = (T)((double)lr / (1.0 + (double)(step - 1) * (double)lr_decay)),
        .weight_decay = weight_decay, .eps = eps, .use_wd = weight_decay != 0};
    const int nt = fnn_elemwise_threads(n, n_threads);
    FNN_RUN_RANGES(fnn_ctx()->SFX(loops).adagrad, &a, n, nt);
    return FNN_OK;
}

/* g (n,) += wd * w (n,) (scikit-learn's L2 term of the gradient, g + (wd * w) in T);
 * *sq = sum of w^2 in double (the registry's loop: fnn_loops_impl.h documents
 * the order of the sum, the same at every ISA level). */
int SFX(fnn_l2_grad)(double *sq, T *g, const T *w, int64_t n, T wd)
{
    if (n < 0 || !sq) return FNN_EINVAL;
    *sq = n == 0 ? 0.0 : fnn_ctx()->SFX(loops).l2_grad(g, w, n, wd);
    return FNN_OK;
}

/* 1 when every x[i] (n,) is finite (the registry's loop for the ISA in use). */
int SFX(fnn_all_finite)(const T *x, int64_t n)
{
    if (n <= 0) return 1;
    return fnn_ctx()->SFX(loops).all_finite(x, n);
}
