/* norm_impl.h -- batch norm and layer norm for one type (T, SFX, TM); see
 * norm.c for the layouts.  Every reduction runs in double, 8 lanes wide, in a
 * fixed order; each channel, row or column block is reduced by one thread. */

/* x (n,): sum of x, in double. */
FNN_INLINE double SFX(fnn_norm_sum)(const T *x, int64_t n)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l];
    for (int l = 0; i < n; i++, l++) acc[l] += (double)x[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* x (n,): sum of (x - m)^2, in double. */
FNN_INLINE double SFX(fnn_norm_sqdev)(const T *x, int64_t n, double m)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            const double d = (double)x[i + l] - m;
            acc[l] += d * d;
        }
    for (int l = 0; i < n; i++, l++) {
        const double d = (double)x[i] - m;
        acc[l] += d * d;
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* dy, x (n,): *sdy += sum dy, *sdyx += sum dy * (x - m), in double. */
FNN_INLINE void SFX(fnn_norm_dysums)(const T *dy, const T *x, int64_t n, double m, double *sdy,
                                     double *sdyx)
{
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            const double g = (double)dy[i + l];
            a[l] += g;
            b[l] += g * ((double)x[i + l] - m);
        }
    for (int l = 0; i < n; i++, l++) {
        const double g = (double)dy[i];
        a[l] += g;
        b[l] += g * ((double)x[i] - m);
    }
    *sdy += ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    *sdyx += ((b[0] + b[4]) + (b[1] + b[5])) + ((b[2] + b[6]) + (b[3] + b[7]));
}

/* dy, w, x (n,): *sdy += sum dy w, *sdyx += sum dy w (x - m), in double. */
FNN_INLINE void SFX(fnn_norm_wdysums)(const T *dy, const T *w, const T *x, int64_t n, double m,
                                      double *sdy, double *sdyx)
{
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            const double g = (double)dy[i + l] * (double)w[i + l];
            a[l] += g;
            b[l] += g * ((double)x[i + l] - m);
        }
    for (int l = 0; i < n; i++, l++) {
        const double g = (double)dy[i] * (double)w[i];
        a[l] += g;
        b[l] += g * ((double)x[i] - m);
    }
    *sdy += ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    *sdyx += ((b[0] + b[4]) + (b[1] + b[5])) + ((b[2] + b[6]) + (b[3] + b[7]));
}

/* x, out (n, c, s); weight, bias (c,) or NULL (ones, zeros); running_mean,
 * running_var (c,) (read in eval only, may be NULL in training); mean, var (c,)
 * written in training (may be NULL in eval).
 * training: mean, var = each channel's mean and biased variance over its n*s
 * values (n*s >= 1), out = (x - mean) / sqrt(var + eps) * weight + bias.
 * eval: the same with running_mean, running_var.  out may alias x. */
int SFX(fnn_batchnorm_forward)(T *out, T *mean, T *var, const T *x, const T *weight,
                               const T *bias, const T *running_mean, const T *running_var,
                               int64_t n, int64_t c, int64_t s, double eps, int training,
                               int n_threads)
{
    int64_t total;
    int st = fnn_norm_sizes(n, c, s, &total);
    if (st != FNN_OK) return st;
    if (!(eps >= 0)) return FNN_EINVAL; /* (also NaN) */
    if (c == 0) return FNN_OK;
    if (training && (n == 0 || s == 0)) return FNN_EINVAL; /* a mean of nothing */
    if (total == 0) return FNN_OK;
    if (!out || !x || (training && (!mean || !var)) ||
        (!training && (!running_mean || !running_var)))
        return FNN_EINVAL;
    const double cnt = (double)n * (double)s;
    if (s > 1) { /* one channel at a time: its n runs of s contiguous values */
        const int nt = fnn_norm_threads((double)total * (training ? 3 : 1), c, n_threads);
        (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
        {
            FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int64_t ch = 0; ch < c; ch++) {
                T mt, vt;
                if (training) {
                    double sum = 0, sq = 0;
                    for (int64_t i = 0; i < n; i++)
                        sum += SFX(fnn_norm_sum)(x + (i * c + ch) * s, s);
                    const double mu = sum / cnt;
                    for (int64_t i = 0; i < n; i++)
                        sq += SFX(fnn_norm_sqdev)(x + (i * c + ch) * s, s, mu);
                    mean[ch] = mt = (T)mu;
                    var[ch] = vt = (T)(sq / cnt);
                } else {
                    mt = running_mean[ch];
                    vt = running_var[ch];
                }
                const double w = weight ? (double)weight[ch] : 1.0;
                const T sc = (T)(w / sqrt((double)vt + eps)), b = bias ? bias[ch] : (T)0;
                for (int64_t i = 0; i < n; i++) {
                    const T *xp = x + (i * c + ch) * s;
                    T *op = out + (i * c + ch) * s;
                    for (int64_t k = 0; k < s; k++) op[k] = (xp[k] - mt) * sc + b;
                }
            }
            FNN_PAR_LEAVE();
        }
        return FNN_OK;
    }
    /* s == 1, (n, c) rows: blocks of FNN_NORM_COLS channels reduced down the rows */
    const int64_t blocks = (c + FNN_NORM_COLS - 1) / FNN_NORM_COLS;
    const int nt = fnn_norm_threads((double)total * (training ? 3 : 1), blocks, n_threads);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t blk = 0; blk < blocks; blk++) {
            const int64_t c0 = blk * FNN_NORM_COLS, nb = FNN_MIN(FNN_NORM_COLS, c - c0);
            double acc[FNN_NORM_COLS];
            T mt[FNN_NORM_COLS], sc[FNN_NORM_COLS], b[FNN_NORM_COLS];
            if (training) {
                double mu[FNN_NORM_COLS];
                for (int64_t j = 0; j < nb; j++) acc[j] = 0;
                for (int64_t i = 0; i < n; i++) {
                    const T *xr = x + i * c + c0;
                    for (int64_t j = 0; j < nb; j++) acc[j] += (double)xr[j];
                }
                for (int64_t j = 0; j < nb; j++) {
                    mu[j] = acc[j] / cnt;
                    acc[j] = 0;
                }
                for (int64_t i = 0; i < n; i++) {
                    const T *xr = x + i * c + c0;
                    for (int64_t j = 0; j < nb; j++) {
                        const double d = (double)xr[j] - mu[j];
                        acc[j] += d * d;
                    }
                }
                for (int64_t j = 0; j < nb; j++) {
                    mean[c0 + j] = mt[j] = (T)mu[j];
                    var[c0 + j] = (T)(acc[j] / cnt);
                }
            }
            const T *mv = training ? mean : running_mean, *vv = training ? var : running_var;
            for (int64_t j = 0; j < nb; j++) {
                const double w = weight ? (double)weight[c0 + j] : 1.0;
                mt[j] = mv[c0 + j];
                sc[j] = (T)(w / sqrt((double)vv[c0 + j] + eps));
                b[j] = bias ? bias[c0 + j] : (T)0;
            }
            for (int64_t i = 0; i < n; i++) {
                const T *xr = x + i * c + c0;
                T *orow = out + i * c + c0;
                for (int64_t j = 0; j < nb; j++) orow[j] = (xr[j] - mt[j]) * sc[j] + b[j];
            }
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}

/* dy, x, dx (n, c, s); mean, var (c,): the statistics the forward normalized
 * with (the batch's in training, the running ones in eval); weight (c,) or
 * NULL (ones).  With xhat = (x - mean) / sqrt(var + eps), per channel:
 * dweight = sum dy * xhat, dbias = sum dy (over n*s values);
 * training: dx = weight / sqrt(var + eps) * (dy - mean(dy) - xhat mean(dy xhat)),
 * the closed form through the batch statistics; eval: dx = dy weight / sqrt(var + eps).
 * dx, dweight, dbias are each NULL when not wanted.  dx may alias dy.
 * Two passes over (dy, x): the sums, then dx. */
int SFX(fnn_batchnorm_backward)(T *dx, T *dweight, T *dbias, const T *dy, const T *x,
                                const T *mean, const T *var, const T *weight, int64_t n,
                                int64_t c, int64_t s, double eps, int training, int n_threads)
{
    int64_t total;
    int st = fnn_norm_sizes(n, c, s, &total);
    if (st != FNN_OK) return st;
    if (!(eps >= 0)) return FNN_EINVAL;
    if (c == 0 || (!dx && !dweight && !dbias)) return FNN_OK;
    if (!mean || !var) return FNN_EINVAL;
    if (total == 0) { /* sums over nothing */
        if (training && dx) return FNN_EINVAL;
        for (int64_t ch = 0; ch < c; ch++) {
            if (dweight) dweight[ch] = 0;
            if (dbias) dbias[ch] = 0;
        }
        return FNN_OK;
    }
    if (!dy || !x) return FNN_EINVAL;
    const int sums = dweight || dbias || (training && dx);
    const double cnt = (double)n * (double)s;
    if (s > 1) {
        const int nt = fnn_norm_threads((double)total * 3, c, n_threads);
        (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
        {
            FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int64_t ch = 0; ch < c; ch++) {
                const double mu = (double)mean[ch], inv = 1.0 / sqrt((double)var[ch] + eps);
                double sdy = 0, sdyx = 0;
                if (sums)
                    for (int64_t i = 0; i < n; i++)
                        SFX(fnn_norm_dysums)(dy + (i * c + ch) * s, x + (i * c + ch) * s, s, mu,
                                             &sdy, &sdyx);
                if (dweight) dweight[ch] = (T)(sdyx * inv);
                if (dbias) dbias[ch] = (T)sdy;
                if (!dx) continue;
                const double w = weight ? (double)weight[ch] : 1.0;
                const T k = (T)(w * inv), mt = mean[ch];
                const T a = training ? (T)(sdy / cnt) : (T)0;
                const T b = training ? (T)(inv * inv * sdyx / cnt) : (T)0;
                for (int64_t i = 0; i < n; i++) {
                    const T *gp = dy + (i * c + ch) * s, *xp = x + (i * c + ch) * s;
                    T *dp = dx + (i * c + ch) * s;
                    if (training)
                        for (int64_t q = 0; q < s; q++)
                            dp[q] = k * ((gp[q] - a) - (xp[q] - mt) * b);
                    else
                        for (int64_t q = 0; q < s; q++) dp[q] = gp[q] * k;
                }
            }
            FNN_PAR_LEAVE();
        }
        return FNN_OK;
    }
    const int64_t blocks = (c + FNN_NORM_COLS - 1) / FNN_NORM_COLS;
    const int nt = fnn_norm_threads((double)total * 3, blocks, n_threads);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t blk = 0; blk < blocks; blk++) {
            const int64_t c0 = blk * FNN_NORM_COLS, nb = FNN_MIN(FNN_NORM_COLS, c - c0);
            double sdy[FNN_NORM_COLS], sdyx[FNN_NORM_COLS], mu[FNN_NORM_COLS], inv[FNN_NORM_COLS];
            T k[FNN_NORM_COLS], mt[FNN_NORM_COLS], a[FNN_NORM_COLS], b[FNN_NORM_COLS];
            for (int64_t j = 0; j < nb; j++) {
                mu[j] = (double)mean[c0 + j];
                inv[j] = 1.0 / sqrt((double)var[c0 + j] + eps);
                sdy[j] = sdyx[j] = 0;
            }
            if (sums)
                for (int64_t i = 0; i < n; i++) {
                    const T *gr = dy + i * c + c0, *xr = x + i * c + c0;
                    for (int64_t j = 0; j < nb; j++) {
                        const double g = (double)gr[j];
                        sdy[j] += g;
                        sdyx[j] += g * ((double)xr[j] - mu[j]);
                    }
                }
            for (int64_t j = 0; j < nb; j++) {
                if (dweight) dweight[c0 + j] = (T)(sdyx[j] * inv[j]);
                if (dbias) dbias[c0 + j] = (T)sdy[j];
                const double w = weight ? (double)weight[c0 + j] : 1.0;
                k[j] = (T)(w * inv[j]);
                mt[j] = mean[c0 + j];
                a[j] = training ? (T)(sdy[j] / cnt) : (T)0;
                b[j] = training ? (T)(inv[j] * inv[j] * sdyx[j] / cnt) : (T)0;
            }
            if (!dx) continue;
            for (int64_t i = 0; i < n; i++) {
                const T *gr = dy + i * c + c0, *xr = x + i * c + c0;
                T *dr = dx + i * c + c0;
                if (training)
                    for (int64_t j = 0; j < nb; j++)
                        dr[j] = k[j] * ((gr[j] - a[j]) - (xr[j] - mt[j]) * b[j]);
                else
                    for (int64_t j = 0; j < nb; j++) dr[j] = gr[j] * k[j];
            }
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}

/* running_mean, running_var, mean, var (c,): running = (1 - momentum) running +
 * momentum batch, the batch variance made unbiased (var count / (count - 1)),
 * as torch.  count (the n*s values behind each statistic) >= 2;
 * 0 <= momentum <= 1. */
int SFX(fnn_batchnorm_update_stats)(T *running_mean, T *running_var, const T *mean,
                                    const T *var, int64_t c, int64_t count, double momentum)
{
    if (c < 0 || count < 2 || !(momentum >= 0 && momentum <= 1)) return FNN_EINVAL;
    if (c == 0) return FNN_OK;
    if (!running_mean || !running_var || !mean || !var) return FNN_EINVAL;
    const double unbias = (double)count / (double)(count - 1), keep = 1.0 - momentum;
    for (int64_t ch = 0; ch < c; ch++) {
        running_mean[ch] = (T)(momentum * (double)mean[ch] + keep * (double)running_mean[ch]);
        running_var[ch] =
            (T)(momentum * ((double)var[ch] * unbias) + keep * (double)running_var[ch]);
    }
    return FNN_OK;
}

/* x, out (rows, d); weight, bias (d,) or NULL (ones, zeros); mean, rstd
 * (rows,) written: each row's mean and 1 / sqrt(biased variance + eps).
 * out = (x - mean) * rstd * weight + bias.  d >= 1 (when rows > 0).
 * out may alias x. */
int SFX(fnn_layernorm_forward)(T *out, T *mean, T *rstd, const T *x, const T *weight,
                               const T *bias, int64_t rows, int64_t d, double eps,
                               int n_threads)
{
    int64_t total;
    int st = fnn_norm_sizes(rows, d, 1, &total);
    if (st != FNN_OK) return st;
    if (!(eps >= 0)) return FNN_EINVAL;
    if (rows == 0) return FNN_OK;
    if (d == 0 || !out || !mean || !rstd || !x) return FNN_EINVAL;
    const int nt = fnn_norm_threads((double)total * 3, rows, n_threads);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t r = 0; r < rows; r++) {
            const T *xr = x + r * d;
            T *orow = out + r * d;
            const double mu = SFX(fnn_norm_sum)(xr, d) / (double)d;
            const double v = SFX(fnn_norm_sqdev)(xr, d, mu) / (double)d;
            const T mt = (T)mu, rt = (T)(1.0 / sqrt(v + eps));
            mean[r] = mt;
            rstd[r] = rt;
            if (weight && bias)
                for (int64_t j = 0; j < d; j++)
                    orow[j] = ((xr[j] - mt) * rt) * weight[j] + bias[j];
            else if (weight)
                for (int64_t j = 0; j < d; j++) orow[j] = ((xr[j] - mt) * rt) * weight[j];
            else if (bias)
                for (int64_t j = 0; j < d; j++) orow[j] = (xr[j] - mt) * rt + bias[j];
            else
                for (int64_t j = 0; j < d; j++) orow[j] = (xr[j] - mt) * rt;
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}

/* dy, x, dx (rows, d); mean, rstd (rows,) from the forward; weight (d,) or NULL
 * (ones).  With xhat = (x - mean) rstd and g = dy weight, per row:
 * dx = rstd (g - mean(g) - xhat mean(g xhat)); over the rows:
 * dweight = sum dy xhat, dbias = sum dy.  dx, dweight, dbias each NULL when not
 * wanted; dx may alias dy.  One pass over the rows (dx, each row's sums while
 * it is in cache), one down the columns (dweight, dbias). */
int SFX(fnn_layernorm_backward)(T *dx, T *dweight, T *dbias, const T *dy, const T *x,
                                const T *mean, const T *rstd, const T *weight, int64_t rows,
                                int64_t d, int n_threads)
{
    int64_t total;
    int st = fnn_norm_sizes(rows, d, 1, &total);
    if (st != FNN_OK) return st;
    if (d == 0 || (!dx && !dweight && !dbias)) return FNN_OK;
    if (rows == 0) {
        for (int64_t j = 0; j < d; j++) {
            if (dweight) dweight[j] = 0;
            if (dbias) dbias[j] = 0;
        }
        return FNN_OK;
    }
    if (!dy || !x || !mean || !rstd) return FNN_EINVAL;
    /* the column sums first: dx may overwrite dy */
    if (dweight || dbias) {
        const int64_t blocks = (d + FNN_NORM_COLS - 1) / FNN_NORM_COLS;
        const int nt = fnn_norm_threads((double)total * 2, blocks, n_threads);
        (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
        {
            FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int64_t blk = 0; blk < blocks; blk++) {
                const int64_t c0 = blk * FNN_NORM_COLS, nb = FNN_MIN(FNN_NORM_COLS, d - c0);
                double sw[FNN_NORM_COLS], sb[FNN_NORM_COLS];
                for (int64_t j = 0; j < nb; j++) sw[j] = sb[j] = 0;
                for (int64_t r = 0; r < rows; r++) {
                    const T *gr = dy + r * d + c0, *xr = x + r * d + c0;
                    const double mu = (double)mean[r], rs = (double)rstd[r];
                    for (int64_t j = 0; j < nb; j++) {
                        const double g = (double)gr[j];
                        sb[j] += g;
                        sw[j] += g * (((double)xr[j] - mu) * rs);
                    }
                }
                for (int64_t j = 0; j < nb; j++) {
                    if (dweight) dweight[c0 + j] = (T)sw[j];
                    if (dbias) dbias[c0 + j] = (T)sb[j];
                }
            }
            FNN_PAR_LEAVE();
        }
    }
    if (!dx) return FNN_OK;
    const int nt = fnn_norm_threads((double)total * 3, rows, n_threads);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t r = 0; r < rows; r++) {
            const T *gr = dy + r * d, *xr = x + r * d;
            T *dr = dx + r * d;
            const double mu = (double)mean[r], rs = (double)rstd[r];
            double sa = 0, sbx = 0; /* sum g, sum g (x - mean), g = dy weight */
            if (weight)
                SFX(fnn_norm_wdysums)(gr, weight, xr, d, mu, &sa, &sbx);
            else
                SFX(fnn_norm_dysums)(gr, xr, d, mu, &sa, &sbx);
            sbx *= rs;
            const T mt = mean[r], rt = rstd[r];
            const T ma = (T)(sa / (double)d), mb = (T)(sbx / (double)d);
            if (weight)
                for (int64_t q = 0; q < d; q++)
                    dr[q] = rt * ((gr[q] * weight[q] - ma) - ((xr[q] - mt) * rt) * mb);
            else
                for (int64_t q = 0; q < d; q++)
                    dr[q] = rt * ((gr[q] - ma) - ((xr[q] - mt) * rt) * mb);
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}
