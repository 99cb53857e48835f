/* dropout_impl.h -- inverted dropout, forward and backward (T, SFX, TM).
 * The keep decision is an integer test on fnn_dropout_bits (dropout.c), the
 * same for both dtypes, so float and double masks agree bit for bit.  The
 * loops are the ISA registry's (fnn_loops_impl.h). */

/* x, out (n,); mask (n,) or NULL.  out = x * (keep * s) with s = 1/(1-p)
 * rounded to T (as torch: x * (mask / (1-p)), so a dropped inf or nan gives
 * nan and a dropped negative gives -0); mask[i] = keep.  out may alias x. */
int SFX(fnn_dropout_forward)(T *out, uint8_t *mask, const T *x, int64_t n, double p,
                             uint64_t seed, uint64_t offset, int n_threads)
{
    if (n < 0 || !(p >= 0 && p < 1)) return FNN_EINVAL; /* !(..) also rejects NaN */
    if (n == 0) return FNN_OK;
    if (!out || !x) return FNN_EINVAL;
    const int nt = fnn_dropout_threads(n, n_threads);
    /* thr == 0 (p == 0) keeps everything: out = x, mask = 1 */
    const SFX(fnn_dropout_fwd_args) a = {.out = out, .mask = mask, .x = x, .seed = seed,
                                         .offset = offset, .thr = fnn_dropout_threshold(p),
                                         .scale = (T)(1.0 / (1.0 - p))};
    FNN_RUN_RANGES(fnn_ctx()->SFX(loops).dropout_fwd, &a, n, nt);
    return FNN_OK;
}

/* dy, dx, mask (n,): dx = dy * (mask * s) with the forward's s = 1/(1-p).
 * dx may alias dy. */
int SFX(fnn_dropout_backward)(T *dx, const T *dy, const uint8_t *mask, int64_t n, double p,
                              int n_threads)
{
    if (n < 0 || !(p >= 0 && p < 1)) return FNN_EINVAL;
    if (n == 0) return FNN_OK;
    if (!dx || !dy || !mask) return FNN_EINVAL;
    const int nt = fnn_dropout_threads(n, n_threads);
    const SFX(fnn_dropout_bwd_args) a = {.dx = dx, .dy = dy, .mask = mask,
                                         .scale = (T)(1.0 / (1.0 - p))};
    FNN_RUN_RANGES(fnn_ctx()->SFX(loops).dropout_bwd, &a, n, nt);
    return FNN_OK;
}
