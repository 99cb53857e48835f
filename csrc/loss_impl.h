/* loss_impl.h -- losses with value and gradient in one pass (T, SFX, TM).
 * The loops are the ISA registry's (fnn_loops_impl.h); the loss value is
 * accumulated in double in index order at every ISA level. */

/* logits (batch, classes); labels (batch,) or target (batch, classes);
 * loss = mean over the batch of -sum_c t_c log softmax(logits)_c;
 * grad (batch, classes) = (softmax * sum_c t_c - t) / batch. */
int SFX(fnn_cross_entropy)(double *loss, T *grad, const T *logits, const int64_t *labels,
                           const T *target, int64_t batch, int64_t classes)
{
    if (batch < 0 || classes <= 0 || (labels == NULL && target == NULL)) return FNN_EINVAL;
    if (labels)
        for (int64_t i = 0; i < batch; i++)
            if (labels[i] < 0 || labels[i] >= classes) return FNN_ELABEL;
    double (*ce_row)(T *, const T *, int64_t, const T *, int64_t, T) = fnn_ctx()->SFX(loops).ce_row;
    double total = 0;
    const T inv_b = batch > 0 ? (T)1 / (T)batch : (T)0;
    for (int64_t i = 0; i < batch; i++)
        total += ce_row(grad ? grad + i * classes : NULL, logits + i * classes,
                        labels ? labels[i] : -1, labels ? NULL : target + i * classes, classes,
                        inv_b);
    *loss = batch > 0 ? total / (double)batch : 0.0;
    return FNN_OK;
}

/* pred, target (n,): loss = mean (pred - target)^2, grad = 2 (pred - target) / n. */
int SFX(fnn_mse)(double *loss, T *grad, const T *pred, const T *target, int64_t n)
{
    if (n < 0) return FNN_EINVAL;
    const T scale = n > 0 ? (T)2 / (T)n : (T)0;
    const double total = n > 0 ? fnn_ctx()->SFX(loops).mse(grad, pred, target, n, scale) : 0.0;
    *loss = n > 0 ? total / (double)n : 0.0;
    return FNN_OK;
}

/* logits, target (n,): loss = mean max(x,0) - x t + log1p(exp(-|x|)),
 * grad = (sigmoid(x) - t) / n. */
int SFX(fnn_bce_logits)(double *loss, T *grad, const T *logits, const T *target, int64_t n)
{
    if (n < 0) return FNN_EINVAL;
    const T inv_n = n > 0 ? (T)1 / (T)n : (T)0;
    const double total = n > 0 ? fnn_ctx()->SFX(loops).bce(grad, logits, target, n, inv_n) : 0.0;
    *loss = n > 0 ? total / (double)n : 0.0;
    return FNN_OK;
}
