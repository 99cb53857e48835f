/* pool_impl.h -- max / average / global average pooling on NCHW arrays for
 * one type (T, SFX).  x (n, c, h, w); out (n, c, oh, ow) with
 * oh = (h + 2 ph - kh) / sh + 1 (PyTorch's floor mode).  Padded positions
 * never win a max and count as zeros in an average (count_include_pad, so
 * the divisor is always kh kw).  Planes (image, channel) are split across
 * threads; each plane is written by one thread, so results do not depend on
 * the thread count. */

/* The maximum m of one 2 x 2 window v0 v1 / v2 v3 and its offset k in the
 * window (0, 1, w or w + 1): the general loop's comparisons in its order (a
 * later value wins when it is larger, or NaN), written as selects. */
#define FNN_MAX2X2(v0, v1, v2, v3, w, m, k)                                                     \
    do {                                                                                     \
        const int t1_ = ((v1) > (v0)) | ((v1) != (v1));                                     \
        m = t1_ ? (v1) : (v0);                                                               \
        k = t1_;                                                                             \
        const int t2_ = ((v2) > m) | ((v2) != (v2));                                         \
        m = t2_ ? (v2) : m;                                                                  \
        k = t2_ ? (int32_t)(w) : k;                                                          \
        const int t3_ = ((v3) > m) | ((v3) != (v3));                                         \
        m = t3_ ? (v3) : m;                                                                  \
        k = t3_ ? (int32_t)(w) + 1 : k;                                                      \
    } while (0)

/* One plane (h, w) -> op (oh, ow), ip (oh, ow) or NULL, of the common 2 x 2,
 * stride 2, unpadded max pool, one branch-free loop per output row that the
 * compiler vectorizes (the general loop's data-dependent branches mispredict
 * about once per window on random data).  w < 2^31 here (see the caller). */
FNN_INLINE void SFX(maxpool2x2_plane)(T *FNN_RESTRICT op, int64_t *FNN_RESTRICT ip,
                                      const T *FNN_RESTRICT xp, int64_t w, int64_t oh,
                                      int64_t ow)
{
    for (int64_t oy = 0; oy < oh; oy++) {
        const T *r0 = xp + 2 * oy * w, *r1 = r0 + w;
        T *FNN_RESTRICT o = op + oy * ow;
        if (ip) {
            int64_t *FNN_RESTRICT io = ip + oy * ow;
            const int64_t base = 2 * oy * w;
            for (int64_t ox = 0; ox < ow; ox++) {
                T m;
                int32_t k;
                FNN_MAX2X2(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1], w, m, k);
                o[ox] = m;
                io[ox] = base + 2 * ox + k;
            }
        } else {
            for (int64_t ox = 0; ox < ow; ox++) {
                T m;
                int32_t k;
                FNN_MAX2X2(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1], w, m, k);
                (void)k;
                o[ox] = m;
            }
        }
    }
}

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
            if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && w < INT32_MAX) {
                SFX(maxpool2x2_plane)(op, ip, xp, w, g.oh, g.ow);
                continue;
            }
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
