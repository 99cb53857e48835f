/* mlp_impl.h -- a Dense-only network's forward, loss and backward in one call
 * (T, SFX, TM).  Shapes in fastnn.h (fnn_mlp). */

int SFX(fnn_mlp_step)(double *loss, const fnn_mlp *net, const T *x, const int64_t *labels,
                      const T *target, int64_t batch, int loss_kind, int n_threads)
{
    const int64_t L = net->n_layers;
    if (L < 1 || batch < 1 || net->first_trainable < 0 || net->first_trainable > L) {
        return FNN_EINVAL;
    }
    int st;
    const T *h = x;
    for (int64_t l = 0; l < L; l++) {
        st = SFX(fnn_dense_forward)((T *)net->a[l], (T *)net->z[l], h, (const T *)net->w[l],
                                    (const T *)net->b[l], batch, net->in[l], net->out[l],
                                    net->act[l], n_threads);
        if (st != FNN_OK) return st;
        h = (const T *)net->a[l];
    }
    T *g = (T *)net->gout;
    const int64_t classes = net->out[L - 1];
    switch (loss_kind) {
    case FNN_LOSS_CE_LABELS: st = SFX(fnn_cross_entropy)(loss, g, h, labels, NULL, batch, classes); break;
    case FNN_LOSS_CE_ROWS: st = SFX(fnn_cross_entropy)(loss, g, h, NULL, target, batch, classes); break;
    case FNN_LOSS_MSE: st = SFX(fnn_mse)(loss, g, h, target, batch * classes); break;
    case FNN_LOSS_BCE: st = SFX(fnn_bce_logits)(loss, g, h, target, batch * classes); break;
    default: return FNN_EINVAL;
    }
    if (st != FNN_OK) return st;
    if (!isfinite(*loss)) return FNN_OK; /* the caller stops; no gradient is touched */
    for (int64_t l = L - 1; l >= net->first_trainable; l--) {
        const int need_dx = l > net->first_trainable;
        T *dx = need_dx ? (T *)net->dx[l] : NULL;
        /* delta overwrites g in place: g is this step's scratch (gout or a dx buffer) */
        st = SFX(fnn_dense_backward)(dx, (T *)net->gw[l], (T *)net->gb[l], g, g,
                                     (const T *)net->a[l], (const T *)net->z[l],
                                     l ? (const T *)net->a[l - 1] : x, (const T *)net->w[l],
                                     batch, net->in[l], net->out[l], net->act[l], (T)0,
                                     n_threads);
        if (st != FNN_OK) return st;
        g = dx;
    }
    return FNN_OK;
}
