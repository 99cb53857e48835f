/* optim_impl.h -- optimizer updates, one pass over each parameter (T, SFX, TM). */

/* w (n,) -= lr * dw (n,) */
int SFX(fnn_sgd_update)(T *w, const T *dw, int64_t n, T lr)
{
    if (n < 0) return FNN_EINVAL;
    for (int64_t i = 0; i < n; i++) w[i] -= lr * dw[i];
    return FNN_OK;
}
