/* loss_impl.h -- losses with value and gradient in one pass (T, SFX, TM). */

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
    double total = 0;
    const T inv_b = batch > 0 ? (T)1 / (T)batch : (T)0;
    for (int64_t i = 0; i < batch; i++) {
        const T *x = logits + i * classes;
        T mx = x[0];
        for (int64_t j = 1; j < classes; j++) mx = x[j] > mx ? x[j] : mx;
        T s = 0;
        for (int64_t j = 0; j < classes; j++) s += TM(exp)(x[j] - mx);
        const T lse = mx + TM(log)(s); /* log-sum-exp */
        if (labels) {
            total += (double)(lse - x[labels[i]]);
        } else {
            const T *t = target + i * classes;
            double acc = 0;
            for (int64_t j = 0; j < classes; j++)
                if (t[j] != 0) acc += (double)t[j] * (double)(lse - x[j]);
            total += acc;
        }
        if (grad) {
            T *g = grad + i * classes;
            const T inv_s = (T)1 / s;
            if (labels) {
                for (int64_t j = 0; j < classes; j++) g[j] = TM(exp)(x[j] - mx) * inv_s * inv_b;
                g[labels[i]] -= inv_b;
            } else {
                const T *t = target + i * classes;
                T tsum = 0;
                for (int64_t j = 0; j < classes; j++) tsum += t[j];
                for (int64_t j = 0; j < classes; j++)
                    g[j] = (TM(exp)(x[j] - mx) * inv_s * tsum - t[j]) * inv_b;
            }
        }
    }
    *loss = batch > 0 ? total / (double)batch : 0.0;
    return FNN_OK;
}

/* pred, target (n,): loss = mean (pred - target)^2, grad = 2 (pred - target) / n. */
int SFX(fnn_mse)(double *loss, T *grad, const T *pred, const T *target, int64_t n)
{
    if (n < 0) return FNN_EINVAL;
    double total = 0;
    const T scale = n > 0 ? (T)2 / (T)n : (T)0;
    for (int64_t i = 0; i < n; i++) {
        T d = pred[i] - target[i];
        total += (double)d * (double)d;
        if (grad) grad[i] = scale * d;
    }
    *loss = n > 0 ? total / (double)n : 0.0;
    return FNN_OK;
}

/* logits, target (n,): loss = mean max(x,0) - x t + log1p(exp(-|x|)),
 * grad = (sigmoid(x) - t) / n. */
int SFX(fnn_bce_logits)(double *loss, T *grad, const T *logits, const T *target, int64_t n)
{
    if (n < 0) return FNN_EINVAL;
    double total = 0;
    const T inv_n = n > 0 ? (T)1 / (T)n : (T)0;
    for (int64_t i = 0; i < n; i++) {
        const T x = logits[i], t = target[i];
        const T e = TM(exp)(-TM(fabs)(x)); /* in (0, 1]: never overflows */
        total += (double)((x > 0 ? x : (T)0) - x * t + TM(log1p)(e));
        if (grad) {
            const T sig = x >= 0 ? (T)1 / ((T)1 + e) : e / ((T)1 + e);
            grad[i] = (sig - t) * inv_n;
        }
    }
    *loss = n > 0 ? total / (double)n : 0.0;
    return FNN_OK;
}
