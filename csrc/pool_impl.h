/* pool_impl.h -- max / average / global average pooling on NCHW arrays for
 * one type (T, SFX).  x (n, c, h, w); out (n, c, oh, ow) with
 * oh = (h + 2 ph - kh) / sh + 1 (PyTorch's floor mode).  Padded positions
 * never win a max and count as zeros in an average (count_include_pad, so
 * the divisor is always kh kw).  Planes (image, channel) are split across
 * threads; each plane is written by one thread, so results do not depend on
 * the thread count. */

/* Max over each window; idx (or NULL) gets the flat index y*w + x inside the
 * plane of the first maximum (a NaN wins, as in PyTorch). */
int SFX(fnn_maxpool2d_forward)(T *out, int64_t *idx, const T *x, int64_t n, int64_t c, int64_t h,
                               int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                               int64_t ph, int64_t pw, int n_threads)
{
    fnn_pool_geom g;
    int st = fnn_pool_geometry(&g, n, c, h, w, kh, kw, sh, sw, ph, pw);
    if (st != FNN_OK || g.planes == 0 || g.oh == 0 || g.ow == 0) return st;
    const int nt = fnn_pool_threads((double)g.planes * (double)g.oh * (double)g.ow, n_threads);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t pl = 0; pl < g.planes; pl++) {
            const T *xp = x + pl * h * w;
            T *op = out + pl * g.oh * g.ow;
            int64_t *ip = idx ? idx + pl * g.oh * g.ow : NULL;
            for (int64_t oy = 0; oy < g.oh; oy++) {
                int64_t y0, y1;
                fnn_pool_window(oy * sh - ph, kh, h, &y0, &y1);
                for (int64_t ox = 0; ox < g.ow; ox++) {
                    int64_t x0, x1;
                    fnn_pool_window(ox * sw - pw, kw, w, &x0, &x1);
                    int64_t best = y0 * w + x0;
                    T m = -(T)INFINITY;
                    for (int64_t yy = y0; yy < y1; yy++)
                        for (int64_t xx = x0; xx < x1; xx++) {
                            const T v = xp[yy * w + xx];
                            if (v > m || v != v) {
                                m = v;
                                best = yy * w + xx;
                            }
                        }
                    op[oy * g.ow + ox] = m;
                    if (ip) ip[oy * g.ow + ox] = best;
                }
            }
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}

/* dx (n, c, h, w) = scatter-add of dout (n, c, oh, ow) at the saved indices.
 * An index outside [0, h w) is skipped and reported as FNN_EINVAL. */
int SFX(fnn_maxpool2d_backward)(T *dx, const T *dout, const int64_t *idx, int64_t n, int64_t c,
                                int64_t h, int64_t w, int64_t oh, int64_t ow, int n_threads)
{
    if (n < 0 || c < 0 || h < 0 || w < 0 || oh < 0 || ow < 0) return FNN_EINVAL;
    int64_t planes, hw, ohw, t;
    if (fnn_mul_overflows(n, c, &planes) || fnn_mul_overflows(h, w, &hw) ||
        fnn_mul_overflows(oh, ow, &ohw) || fnn_mul_overflows(planes, hw, &t) ||
        fnn_mul_overflows(planes, ohw, &t))
        return FNN_EOVERFLOW;
    if (planes == 0 || hw == 0) return FNN_OK;
    const int nt = fnn_pool_threads((double)planes * (double)(hw + ohw), n_threads);
    int bad = 0;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : bad)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t pl = 0; pl < planes; pl++) {
            T *dp = dx + pl * hw;
            const T *gp = dout + pl * ohw;
            const int64_t *ip = idx + pl * ohw;
            memset(dp, 0, (size_t)hw * sizeof(T));
            for (int64_t j = 0; j < ohw; j++) {
                const int64_t k = ip[j];
                if (k < 0 || k >= hw) {
                    bad |= 1;
                    continue;
                }
                dp[k] += gp[j];
            }
        }
        FNN_PAR_LEAVE();
    }
    return bad ? FNN_EINVAL : FNN_OK;
}

/* Mean over each window, padded positions counted as zeros (divisor kh kw). */
int SFX(fnn_avgpool2d_forward)(T *out, const T *x, int64_t n, int64_t c, int64_t h, int64_t w,
                               int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                               int64_t pw, int n_threads)
{
    fnn_pool_geom g;
    int st = fnn_pool_geometry(&g, n, c, h, w, kh, kw, sh, sw, ph, pw);
    if (st != FNN_OK || g.planes == 0 || g.oh == 0 || g.ow == 0) return st;
    const int nt = fnn_pool_threads((double)g.planes * (double)g.oh * (double)g.ow, n_threads);
    const T inv = (T)1 / ((T)kh * (T)kw); /* in T: kh * kw may not fit in int64 */
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t pl = 0; pl < g.planes; pl++) {
            const T *xp = x + pl * h * w;
            T *op = out + pl * g.oh * g.ow;
            for (int64_t oy = 0; oy < g.oh; oy++) {
                int64_t y0, y1;
                fnn_pool_window(oy * sh - ph, kh, h, &y0, &y1);
                for (int64_t ox = 0; ox < g.ow; ox++) {
                    int64_t x0, x1;
                    fnn_pool_window(ox * sw - pw, kw, w, &x0, &x1);
                    T s = 0;
                    for (int64_t yy = y0; yy < y1; yy++)
                        for (int64_t xx = x0; xx < x1; xx++) s += xp[yy * w + xx];
                    op[oy * g.ow + ox] = s * inv;
                }
            }
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}

/* dx (n, c, h, w): each dout / (kh kw) added to every input of its window. */
int SFX(fnn_avgpool2d_backward)(T *dx, const T *dout, int64_t n, int64_t c, int64_t h, int64_t w,
                                int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                                int64_t pw, int n_threads)
{
    fnn_pool_geom g;
    int st = fnn_pool_geometry(&g, n, c, h, w, kh, kw, sh, sw, ph, pw);
    if (st != FNN_OK || g.planes == 0 || h * w == 0) return st;
    const int nt = fnn_pool_threads((double)g.planes * (double)g.oh * (double)g.ow, n_threads);
    const T inv = (T)1 / ((T)kh * (T)kw); /* in T: kh * kw may not fit in int64 */
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t pl = 0; pl < g.planes; pl++) {
            T *dp = dx + pl * h * w;
            const T *gp = dout + pl * g.oh * g.ow;
            memset(dp, 0, (size_t)(h * w) * sizeof(T));
            for (int64_t oy = 0; oy < g.oh; oy++) {
                int64_t y0, y1;
                fnn_pool_window(oy * sh - ph, kh, h, &y0, &y1);
                for (int64_t ox = 0; ox < g.ow; ox++) {
                    int64_t x0, x1;
                    fnn_pool_window(ox * sw - pw, kw, w, &x0, &x1);
                    const T v = gp[oy * g.ow + ox] * inv;
                    for (int64_t yy = y0; yy < y1; yy++)
                        for (int64_t xx = x0; xx < x1; xx++) dp[yy * w + xx] += v;
                }
            }
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}

/* out (n, c) = mean of each (h, w) plane of x (n, c, h, w); h w == 0 gives 0. */
int SFX(fnn_global_avgpool_forward)(T *out, const T *x, int64_t n, int64_t c, int64_t h,
                                    int64_t w, int n_threads)
{
    if (n < 0 || c < 0 || h < 0 || w < 0) return FNN_EINVAL;
    int64_t planes, hw, t;
    if (fnn_mul_overflows(n, c, &planes) || fnn_mul_overflows(h, w, &hw) ||
        fnn_mul_overflows(planes, hw, &t))
        return FNN_EOVERFLOW;
    const int nt = fnn_pool_threads((double)planes * (double)hw, n_threads);
    const T inv = hw ? (T)1 / (T)hw : (T)0;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t pl = 0; pl < planes; pl++) {
            const T *xp = x + pl * hw;
            T s = 0;
            for (int64_t j = 0; j < hw; j++) s += xp[j];
            out[pl] = s * inv;
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}

/* dx (n, c, h, w) = dout (n, c) / (h w), broadcast over each plane. */
int SFX(fnn_global_avgpool_backward)(T *dx, const T *dout, int64_t n, int64_t c, int64_t h,
                                     int64_t w, int n_threads)
{
    if (n < 0 || c < 0 || h < 0 || w < 0) return FNN_EINVAL;
    int64_t planes, hw, t;
    if (fnn_mul_overflows(n, c, &planes) || fnn_mul_overflows(h, w, &hw) ||
        fnn_mul_overflows(planes, hw, &t))
        return FNN_EOVERFLOW;
    const int nt = fnn_pool_threads((double)planes * (double)hw, n_threads);
    const T inv = hw ? (T)1 / (T)hw : (T)0;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t pl = 0; pl < planes; pl++) {
            T *dp = dx + pl * hw;
            const T v = dout[pl] * inv;
            for (int64_t j = 0; j < hw; j++) dp[j] = v;
        }
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}
