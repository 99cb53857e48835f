/* conv_impl.h -- 2-D convolution on the GEMM micro-kernels, one type (T, SFX, TM).
 *
 * Shapes (NCHW, PyTorch's layout):
 *   x (n, c, h, w), w (oc, c, kh, kw), b (oc,), out/z (n, oc, oh, ow),
 *   oh = (h + 2 ph - kh) / sh + 1, ow = (w + 2 pw - kw) / sw + 1.
 * With K = c kh kw and P = oh ow, image i is one GEMM
 *   out_i (oc, P) = W (oc, K) @ col_i (K, P),
 * col_i being the im2col of x_i (row r = (ci, ki, kj), column p = (y, x)).
 * The output channels are the GEMM's rows, so C tiles land in NCHW directly.
 *
 * Forward (implicit GEMM): W is packed once per call into micro-kernel
 * panels; col_i is never materialized, each im2col row is dealt straight into
 * the packed B panels; the micro-kernel runs on them and writes out_i; the
 * activation and the z store run on each tile right after its last K block,
 * while it is in L1 (fnn_epilogue_tile).  The bias is either in the conv
 * micro-kernel's accumulators (float on AVX2, conv.c) or, with the GEMM
 * engine's micro-kernel, one extra K row of ones against a bias column of W.
 *
 * Backward: per image, delta = act'-folded dout (db summed from it while
 * hot), dW += delta @ col_i^T and dcol = W^T @ delta on fnn_gemm, then col2im.
 * Images with under 128 output pixels go G at a time (fnn_conv_bgroup, G P >=
 * 128): their deltas and im2cols side by side as (oc, G P) and (K, G P), so
 * the two GEMMs get a k / n of G P instead of P (packing paid once per group).
 *
 * Threads: with several images, images are split statically across threads,
 * each with its own slice of the workspace (a per-thread dW, summed in thread
 * order afterwards); with one image, the forward splits its pixel panels and
 * the backward's GEMMs use the threads.  A forward output element is the same
 * K reduction in the same order on any thread count.
 */

/* One im2col row: dst[0:P] = the input pixels (zero outside the image) that
 * kernel tap (ki, kj) of channel plane `plane` (h, w) sees at each output pixel. */
static void SFX(im2col_row)(T *FNN_RESTRICT dst, const T *FNN_RESTRICT plane,
                            const fnn_conv_geom *g, int64_t ki, int64_t kj)
{
    /* output columns whose input column iw = ox*sw - pw + kj is in [0, w) */
    const int64_t off = kj - g->pw;
    int64_t lo = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
    int64_t hi = g->w - 1 - off < 0 ? 0 : (g->w - 1 - off) / g->sw + 1;
    if (lo > g->ow) lo = g->ow;
    if (hi > g->ow) hi = g->ow;
    if (hi < lo) hi = lo;
    if (g->sh == 1 && g->sw == 1 && g->ow == g->w && hi > lo) {
        /* 'same'-style stride 1: input and output rows have one length, so the
         * valid rows are one contiguous copy (from the first row's first valid
         * column to the last row's last), then the columns that wrapped around
         * from a neighbouring row are zeroed: one memcpy instead of one per row */
        const int64_t oy0 = FNN_MAX(g->ph - ki, 0), oy1 = FNN_MIN(g->h + g->ph - ki, g->oh);
        if (oy1 <= oy0) {
            memset(dst, 0, (size_t)(g->oh * g->ow) * sizeof(T));
            return;
        }
        memset(dst, 0, (size_t)(oy0 * g->ow + lo) * sizeof(T));
        const T *src = plane + (oy0 - g->ph + ki) * g->w + off;
        memcpy(dst + oy0 * g->ow + lo, src + lo,
               (size_t)((oy1 - oy0 - 1) * g->ow + hi - lo) * sizeof(T));
        for (int64_t oy = oy0; oy < oy1; oy++) {
            T *d = dst + oy * g->ow;
            for (int64_t ox = 0; ox < lo; ox++) d[ox] = 0;
            for (int64_t ox = hi; ox < g->ow; ox++) d[ox] = 0;
        }
        memset(dst + (oy1 - 1) * g->ow + hi, 0,
               (size_t)((g->oh - oy1 + 1) * g->ow - hi) * sizeof(T));
        return;
    }
    for (int64_t oy = 0; oy < g->oh; oy++, dst += g->ow) {
        const int64_t ih = oy * g->sh - g->ph + ki;
        if (ih < 0 || ih >= g->h) {
            for (int64_t ox = 0; ox < g->ow; ox++) dst[ox] = 0;
            continue;
        }
        const T *src = plane + ih * g->w + off;
        for (int64_t ox = 0; ox < lo; ox++) dst[ox] = 0;
        if (g->sw == 1) {
            for (int64_t ox = lo; ox < hi; ox++) dst[ox] = src[ox];
        } else {
            for (int64_t ox = lo; ox < hi; ox++) dst[ox] = src[ox * g->sw];
        }
        for (int64_t ox = hi; ox < g->ow; ox++) dst[ox] = 0;
    }
}

/* col (K, P) = im2col of one image xi (c, h, w); row r = (ci, ki, kj). */
static void SFX(im2col)(T *FNN_RESTRICT col, const T *FNN_RESTRICT xi, const fnn_conv_geom *g,
                        int64_t ld)
{
    const int64_t P = ld;
    for (int64_t ci = 0; ci < g->c; ci++)
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++)
                SFX(im2col_row)(col + ((ci * g->kh + ki) * g->kw + kj) * P,
                                xi + ci * g->h * g->w, g, ki, kj);
}

/* dst[0:nr] = src[0:nr] with nr the micro-kernel's NR: constant sizes so the
 * copy is inlined (a libc call per 64 bytes would cost more than the copy). */
FNN_INLINE void SFX(copy_nr)(T *FNN_RESTRICT dst, const T *FNN_RESTRICT src, int64_t nr)
{
    switch (nr) {
    case 4: memcpy(dst, src, 4 * sizeof(T)); break;
    case 8: memcpy(dst, src, 8 * sizeof(T)); break;
    case 16: memcpy(dst, src, 16 * sizeof(T)); break;
    case 24: memcpy(dst, src, 24 * sizeof(T)); break;
    case 32: memcpy(dst, src, 32 * sizeof(T)); break;
    case 48: memcpy(dst, src, 48 * sizeof(T)); break;
    default:
        for (int64_t j = 0; j < nr; j++) dst[j] = src[j];
    }
}

/* The B operand of image i's GEMM, [im2col(x_i); 1] (Ka, P), written straight
 * into the micro-kernel's packed layout (no column matrix, no second copy):
 * for each KC block pc, NR-wide panels of kcur rows; element (pc + rr, p) at
 * bp[pc*Ppad + (p/NR)*kcur*NR + rr*NR + p%NR], pixels past P zero.
 * Each im2col row is built in rowbuf (Ppad, in L1), then dealt to the panels. */
static void SFX(pack_image_b)(T *FNN_RESTRICT bp, T *FNN_RESTRICT rowbuf, const T *xi,
                              const fnn_conv_geom *g, int64_t Ka, int64_t NR, int64_t KC)
{
    const int64_t P = g->oh * g->ow, K = g->c * g->kh * g->kw;
    const int64_t npan = (P + NR - 1) / NR, Ppad = npan * NR;
    for (int64_t p = P; p < Ppad; p++) rowbuf[p] = 0;
    for (int64_t r = 0; r < Ka; r++) {
        if (r < K) {
            const int64_t ci = r / (g->kh * g->kw), t = r % (g->kh * g->kw);
            SFX(im2col_row)(rowbuf, xi + ci * g->h * g->w, g, t / g->kw, t % g->kw);
        } else {
            for (int64_t p = 0; p < P; p++) rowbuf[p] = 1; /* the bias row */
        }
        const int64_t pc = (r / KC) * KC, rr = r - pc, kcur = FNN_MIN(KC, Ka - pc);
        T *dst = bp + pc * Ppad + rr * NR;
        for (int64_t q = 0; q < npan; q++) SFX(copy_nr)(dst + q * kcur * NR, rowbuf + q * NR, NR);
    }
}

/* The A operand [W | b] (oc, Ka) packed once per call into MR-tall panels per
 * KC block: element (o, pc + rr) at ap[pc*Mpad + (o/MR)*kcur*MR + rr*MR + o%MR]. */
static void SFX(pack_weights_a)(T *FNN_RESTRICT ap, const T *w, const T *b, int64_t oc, int64_t K,
                                int64_t Ka, int64_t MR, int64_t KC)
{
    const int64_t npan = (oc + MR - 1) / MR, Mpad = npan * MR;
    for (int64_t pc = 0; pc < Ka; pc += KC) {
        const int64_t kcur = FNN_MIN(KC, Ka - pc);
        for (int64_t q = 0; q < npan; q++) {
            T *dst = ap + pc * Mpad + q * kcur * MR;
            for (int64_t rr = 0; rr < kcur; rr++)
                for (int64_t i = 0; i < MR; i++) {
                    const int64_t o = q * MR + i, col = pc + rr;
                    dst[rr * MR + i] = o >= oc ? (T)0 : col < K ? w[o * K + col] : b[o];
                }
        }
    }
}

/* dxi (c, h, w) = col2im(dcol (K, P)): every column entry added back to the
 * input pixel it was copied from (dxi overwritten). */
static void SFX(col2im)(T *FNN_RESTRICT dxi, const T *FNN_RESTRICT dcol, const fnn_conv_geom *g,
                        int64_t ld)
{
    const int64_t P = ld;
    memset(dxi, 0, (size_t)(g->c * g->h * g->w) * sizeof(T));
    for (int64_t ci = 0; ci < g->c; ci++) {
        T *plane = dxi + ci * g->h * g->w;
        for (int64_t ki = 0; ki < g->kh; ki++) {
            for (int64_t kj = 0; kj < g->kw; kj++) {
                const T *row = dcol + ((ci * g->kh + ki) * g->kw + kj) * P;
                const int64_t off = kj - g->pw;
                int64_t lo = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
                int64_t hi = g->w - 1 - off < 0 ? 0 : (g->w - 1 - off) / g->sw + 1;
                if (lo > g->ow) lo = g->ow;
                if (hi > g->ow) hi = g->ow;
                for (int64_t oy = 0; oy < g->oh; oy++) {
                    const int64_t ih = oy * g->sh - g->ph + ki;
                    if (ih < 0 || ih >= g->h) continue;
                    const T *src = row + oy * g->ow;
                    T *dst = plane + ih * g->w + off;
                    if (g->sw == 1) {
                        for (int64_t ox = lo; ox < hi; ox++) dst[ox] += src[ox];
                    } else {
                        for (int64_t ox = lo; ox < hi; ox++) dst[ox * g->sw] += src[ox];
                    }
                }
            }
        }
    }
}

/* Softmax over the channel axis of one image: v (oc, P) in place, tmp (2P). */
static void SFX(softmax_channels)(T *v, int64_t oc, int64_t P, T *tmp)
{
    T *mx = tmp, *s = tmp + P;
    for (int64_t p = 0; p < P; p++) mx[p] = v[p];
    for (int64_t o = 1; o < oc; o++)
        for (int64_t p = 0; p < P; p++) mx[p] = v[o * P + p] > mx[p] ? v[o * P + p] : mx[p];
    for (int64_t p = 0; p < P; p++) s[p] = 0;
    for (int64_t o = 0; o < oc; o++)
        for (int64_t p = 0; p < P; p++) {
            T e = TM(exp)(v[o * P + p] - mx[p]);
            v[o * P + p] = e;
            s[p] += e;
        }
    for (int64_t p = 0; p < P; p++) s[p] = (T)1 / s[p];
    for (int64_t o = 0; o < oc; o++)
        for (int64_t p = 0; p < P; p++) v[o * P + p] *= s[p];
}

/* Backward of softmax over channels: dz = a * (da - sum_o da a), all (oc, P); tmp (P). */
static void SFX(softmax_channels_grad)(T *dz, const T *da, const T *a, int64_t oc, int64_t P,
                                       T *tmp)
{
    for (int64_t p = 0; p < P; p++) tmp[p] = 0;
    for (int64_t o = 0; o < oc; o++)
        for (int64_t p = 0; p < P; p++) tmp[p] += da[o * P + p] * a[o * P + p];
    for (int64_t o = 0; o < oc; o++)
        for (int64_t p = 0; p < P; p++) dz[o * P + p] = a[o * P + p] * (da[o * P + p] - tmp[p]);
}

/* The forward's micro-kernel: the ISA's conv kernel (bias in the
 * accumulators) when the registry has one for this dtype, else the GEMM
 * engine's micro-kernel with the bias as a ones row. */
typedef struct {
    int64_t mr, nr, kc;
    SFX(fnn_conv_ukr) conv;
    SFX(fnn_ukr) ukr;
} SFX(fnn_conv_kern);

static SFX(fnn_conv_kern) SFX(conv_kern)(void)
{
    const fnn_isa_ctx *ctx = fnn_ctx();
    const SFX(fnn_conv_cfg) *cc = &ctx->SFX(conv);
    const SFX(fnn_gemm_cfg) *gc = &ctx->SFX(gemm);
    SFX(fnn_conv_kern) kk = {.mr = gc->mr, .nr = gc->nr, .kc = gc->kc, .conv = NULL,
                             .ukr = gc->ukr};
    if (cc->ukr) {
        kk.mr = cc->mr;
        kk.nr = cc->nr;
        kk.conv = cc->ukr;
    }
    return kk;
}

/* One MR x NR tile: C = [C +] Ap @ Bp [+ bias] (beta 0 or 1; bias only when
 * beta == 0, NULL for none; the engine path has it folded into the K rows). */
FNN_INLINE void SFX(conv_tile)(const SFX(fnn_conv_kern) *kk, int64_t k, const T *ap, const T *bp,
                               T *c, int64_t ldc, const T *bias, T beta)
{
    if (kk->conv) {
        kk->conv(k, ap, bp, c, ldc, bias, beta);
        return;
    }
    kk->ukr(k, ap, bp, kk->nr, c, ldc, (T)1, beta);
}

/* Pixel panels [q0, q1) of one image for K block pc (see conv_fwd_image). */
static void SFX(conv_fwd_panels)(const SFX(fnn_conv_kern) *kk, T *outi, T *zi, const T *bp,
                                 const T *ap, const T *bias, int64_t q0, int64_t q1, int64_t pc,
                                 int64_t kcur, int last, int64_t P, int64_t oc, int act_ep,
                                 int need_ep)
{
    const int64_t MR = kk->mr, NR = kk->nr;
    const int64_t Ppad = (P + NR - 1) / NR * NR, mpan = (oc + MR - 1) / MR, Mpad = mpan * MR;
    const T beta = pc == 0 ? (T)0 : (T)1;
    T tile[FNN_MAX_TILE], bpad[FNN_MAX_TILE];
    const int use_bias = kk->conv != NULL && bias != NULL && pc == 0;
    /* Blocks of QB pixel panels, their B (up to 256 KiB) kept in L2; in a block,
     * channel panel by channel panel, so the tiles walk along 4-6 output rows
     * (pages) at a time.  Panel by panel over all channels instead touches every
     * output row (with 32x32 images, rows 4 KiB apart: one L1 set, one page
     * each) for each tile column, measured ~1.5x slower. */
    const int64_t QB = FNN_MAX(4, (int64_t)(256 * 1024) / (kcur * NR * (int64_t)sizeof(T)));
    for (int64_t qb = q0; qb < q1; qb += QB) {
        const int64_t qe = FNN_MIN(qb + QB, q1);
        for (int64_t a = 0; a < mpan; a++) {
            const int64_t ib = FNN_MIN(MR, oc - a * MR);
            const T *aq = ap + pc * Mpad + a * kcur * MR;
            const T *bt = use_bias ? bias + a * MR : NULL;
            if (bt && ib < MR) { /* the bias of the rows that exist, zeros after */
                for (int64_t i = 0; i < MR; i++) bpad[i] = i < ib ? bt[i] : (T)0;
                bt = bpad;
            }
            for (int64_t q = qb; q < qe; q++) {
                const int64_t nb = FNN_MIN(NR, P - q * NR);
                const T *bq = bp + pc * Ppad + q * kcur * NR;
                T *ct = outi + a * MR * P + q * NR;
                if (ib == MR && nb == NR) {
                    SFX(conv_tile)(kk, kcur, aq, bq, ct, P, bt, beta);
                } else {
                    SFX(conv_tile)(kk, kcur, aq, bq, tile, NR, bt, (T)0);
                    for (int64_t i = 0; i < ib; i++)
                        for (int64_t j = 0; j < nb; j++)
                            ct[i * P + j] = beta == 0 ? tile[i * NR + j]
                                                      : ct[i * P + j] + tile[i * NR + j];
                }
                if (last && need_ep)
                    SFX(fnn_epilogue_tile)(ct, P, ib, nb, NULL,
                                           zi ? zi + a * MR * P + q * NR : NULL, P, act_ep);
            }
        }
    }
}

/* One image's forward, implicit GEMM on a micro-kernel:
 *   out_i (oc, P) = act(Ap (oc, Ka) @ Bp (Ka, P) [+ b]), z_i = the value before act.
 * Ap was packed once per call; Bp is packed here from x_i.  The micro-kernel
 * writes C tiles straight into NCHW out_i (row stride P); after a tile's last
 * K block the epilogue (act, z store) runs while the tile is in L1.  K blocks
 * (pc) are the outer loop so a KC slice of Ap stays in cache across panels.
 * nt > 1 splits the pixel panels across threads (used when there are few images). */
static void SFX(conv_fwd_image)(const SFX(fnn_conv_kern) *kk, T *outi, T *zi, T *bp, T *rowbuf,
                                T *tmp, const T *xi, const T *ap, const T *bias,
                                const fnn_conv_geom *g, int64_t Ka, int act, int nt)
{
    const int64_t P = g->oh * g->ow, oc = g->oc;
    const int64_t NR = kk->nr, KC = kk->kc;
    const int64_t npan = (P + NR - 1) / NR;
    const int act_ep = act == FNN_ACT_SOFTMAX ? FNN_ACT_IDENTITY : act;
    const int need_ep = act_ep != FNN_ACT_IDENTITY || zi != NULL;
    SFX(pack_image_b)(bp, rowbuf, xi, g, Ka, NR, KC);
    if (Ka == 0) { /* nothing to reduce: out = act(b or 0) */
        for (int64_t o = 0; o < oc; o++)
            for (int64_t p = 0; p < P; p++) outi[o * P + p] = bias ? bias[o] : (T)0;
        if (need_ep) SFX(fnn_epilogue_tile)(outi, P, oc, P, NULL, zi, P, act_ep);
    }
    for (int64_t pc = 0; pc < Ka; pc += KC) {
        const int64_t kcur = FNN_MIN(KC, Ka - pc);
        const int last = pc + kcur == Ka;
        if (nt <= 1 || npan < 2) {
            SFX(conv_fwd_panels)(kk, outi, zi, bp, ap, bias, 0, npan, pc, kcur, last, P, oc,
                                 act_ep, need_ep);
            continue;
        }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
        {
            FNN_PAR_ENTER();
            const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
            SFX(conv_fwd_panels)(kk, outi, zi, bp, ap, bias, npan * tid / nth,
                                 npan * (tid + 1) / nth, pc, kcur, last, P, oc, act_ep, need_ep);
            FNN_PAR_LEAVE();
        }
#else
        SFX(conv_fwd_panels)(kk, outi, zi, bp, ap, bias, 0, npan, pc, kcur, last, P, oc, act_ep,
                             need_ep);
#endif
    }
    if (act == FNN_ACT_SOFTMAX) SFX(softmax_channels)(outi, oc, P, tmp);
}

/* One image's forward as an explicit GEMM (matmul precision bf16, float only):
 * col = im2col(x_i) (K, P; rows ld apart), out_i (oc, P) = W (oc, K) @ col + b,
 * act and the z store in the GEMM's epilogue; the bias is written first and
 * accumulated into (beta 1), the GEMM's epilogue bias being per column. */
static int SFX(conv_fwd_image_gemm)(T *outi, T *zi, T *col, T *tmp, const T *xi, const T *w,
                                    const T *bias, const fnn_conv_geom *g, int act, int nt)
{
    const int64_t P = g->oh * g->ow, K = g->c * g->kh * g->kw, oc = g->oc;
    const int64_t ld = fnn_conv_ldcol(P, sizeof(T));
    const int act_ep = act == FNN_ACT_SOFTMAX ? FNN_ACT_IDENTITY : act;
    const fnn_epilogue ep = {.bias = NULL, .act = act_ep, .z = zi, .ldz = P};
    if (K > 0) SFX(im2col)(col, xi, g, ld);
    if (bias)
        for (int64_t o = 0; o < oc; o++)
            for (int64_t p = 0; p < P; p++) outi[o * P + p] = bias[o];
    int st = SFX(fnn_gemm)(outi, w, col, oc, P, K, FNN_MAX(K, 1), ld, P, 0, 0, (T)1,
                           bias ? (T)1 : (T)0, &ep, nt);
    if (st == FNN_OK && act == FNN_ACT_SOFTMAX) SFX(softmax_channels)(outi, oc, P, tmp);
    return st;
}

/* The forward under matmul precision bf16: images through conv_fwd_image_gemm
 * (the bf16 GEMM engine), threads over images or inside each image's GEMM. */
static int SFX(conv_fwd_gemm)(T *out, T *z, const fnn_conv_ws *ws, char *base, const T *x,
                              const T *w, const T *b, const fnn_conv_geom *g, int act, int nt)
{
    const int64_t P = g->oh * g->ow, img_in = g->c * g->h * g->w, img_out = g->oc * P;
    int failed = FNN_OK;
    if (ws->slots <= 1) {
        char *slot = base + ws->slot_off;
        for (int64_t i = 0; i < g->n && failed == FNN_OK; i++)
            failed = SFX(conv_fwd_image_gemm)(out + i * img_out, z ? z + i * img_out : NULL,
                                              (T *)slot, (T *)(slot + ws->tmp_off),
                                              x + i * img_in, w, b, g, act, nt);
        return failed;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(ws->slots)
#endif
    {
        FNN_PAR_ENTER();
        const int prev = fnn_set_thread_matmul_precision(FNN_PREC_BF16);
#ifdef _OPENMP
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int tid = 0, nth = 1;
#endif
        char *slot = base + ws->slot_off + (size_t)tid * ws->slot_bytes;
        const int64_t i0 = g->n * tid / nth, i1 = g->n * (tid + 1) / nth;
        for (int64_t i = i0; i < i1; i++) {
            const int s = SFX(conv_fwd_image_gemm)(out + i * img_out, z ? z + i * img_out : NULL,
                                                   (T *)slot, (T *)(slot + ws->tmp_off),
                                                   x + i * img_in, w, b, g, act, 1);
            if (s != FNN_OK) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
                failed = s;
                break;
            }
        }
        fnn_set_thread_matmul_precision(prev);
        FNN_PAR_LEAVE();
    }
    return failed;
}

int SFX(fnn_conv2d_forward)(T *out, T *z, void *work, size_t work_bytes, const T *x, const T *w,
                            const T *b, int64_t n, int64_t c, int64_t h, int64_t wd, int64_t oc,
                            int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                            int act, int n_threads)
{
    fnn_conv_geom g;
    int st = fnn_conv_geometry(&g, n, c, h, wd, oc, kh, kw, sh, sw, ph, pw);
    if (st != FNN_OK) return st;
    if (act < 0 || act >= FNN_ACT_COUNT) return FNN_EINVAL;
    if (n == 0 || oc == 0 || g.oh == 0 || g.ow == 0) return FNN_OK;
    fnn_init();
    if (sizeof(T) == sizeof(float) && fnn_matmul_precision() == FNN_PREC_BF16) {
        fnn_conv_ws wsb;
        st = fnn_conv_workspace_plan(&wsb, &g, sizeof(T), n_threads < 1 ? 1 : n_threads,
                                     work_bytes);
        if (st != FNN_OK) return st;
        if (work == NULL) return FNN_EINVAL;
        return SFX(conv_fwd_gemm)(out, z, &wsb, (char *)work, x, w, b, &g, act,
                                  n_threads < 1 ? 1 : n_threads);
    }
    const SFX(fnn_conv_kern) kk = SFX(conv_kern)();
    /* the engine's kernel takes the bias as a ones row of K; the fast one in its accumulators */
    const int64_t P = g.oh * g.ow, K = c * kh * kw, Ka = K + (b != NULL && kk.conv == NULL);
    fnn_conv_ws ws;
    int nt = n_threads < 1 ? 1 : n_threads;
    st = fnn_conv_workspace_plan(&ws, &g, sizeof(T), nt, work_bytes);
    if (st != FNN_OK) return st;
    if (work == NULL) return FNN_EINVAL;
    char *base = (char *)work;
    T *ap = (T *)(base + ws.wa_off);
    SFX(pack_weights_a)(ap, w, b, oc, K, Ka, kk.mr, kk.kc);
    const int64_t img_in = c * h * wd, img_out = oc * P;
    if (ws.slots <= 1) { /* one image at a time, threads over its pixel panels */
        char *slot = base + ws.slot_off;
        for (int64_t i = 0; i < n; i++)
            SFX(conv_fwd_image)(&kk, out + i * img_out, z ? z + i * img_out : NULL, (T *)slot,
                                (T *)(slot + ws.delta_off), (T *)(slot + ws.tmp_off),
                                x + i * img_in, ap, b, &g, Ka, act, nt);
        return FNN_OK;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(ws.slots)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int tid = 0, nth = 1;
#endif
        char *slot = base + ws.slot_off + (size_t)tid * ws.slot_bytes;
        const int64_t i0 = n * tid / nth, i1 = n * (tid + 1) / nth;
        for (int64_t i = i0; i < i1; i++)
            SFX(conv_fwd_image)(&kk, out + i * img_out, z ? z + i * img_out : NULL, (T *)slot,
                                (T *)(slot + ws.delta_off), (T *)(slot + ws.tmp_off),
                                x + i * img_in, ap, b, &g, Ka, act, 1);
        FNN_PAR_LEAVE();
    }
    return FNN_OK;
}

/* Sum of r[0:n] in 16 interleaved partial sums (vectorizable, fixed order). */
static T SFX(sum_row)(const T *FNN_RESTRICT r, int64_t n)
{
    T acc[16] = {0};
    int64_t p = 0;
    for (; p + 16 <= n; p += 16)
        for (int j = 0; j < 16; j++) acc[j] += r[p + j];
    T s = 0;
    for (; p < n; p++) s += r[p];
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
}

/* One image's backward.  delta (oc, P) = act'-folded gradient (may point at
 * dout_i for identity), dbp (oc,) its row sums, dwt (oc, K) = delta col^T
 * (+ beta_w dwt), dxi (c, h, w) = col2im(W^T delta) unless dxi is NULL. */
static int SFX(conv_bwd_image)(T *dxi, T *dwt, T beta_w, T *dbp, T *col, T *dscratch, T *tmp,
                               const T *douti, const T *ai, const T *zi, const T *xi, const T *w,
                               const fnn_conv_geom *g, int act, int nt)
{
    const int64_t P = g->oh * g->ow, K = g->c * g->kh * g->kw, oc = g->oc;
    const T *delta = douti;
    int st = FNN_OK;
    if (act == FNN_ACT_SOFTMAX) {
        SFX(softmax_channels_grad)(dscratch, douti, ai, oc, P, tmp);
        delta = dscratch;
    } else if (act != FNN_ACT_IDENTITY) {
        st = SFX(fnn_act_backward)(dscratch, NULL, douti, ai, zi, oc, P, act);
        if (st != FNN_OK) return st;
        delta = dscratch;
    }
    if (dbp)
        for (int64_t o = 0; o < oc; o++) dbp[o] = SFX(sum_row)(delta + o * P, P);
    if (K == 0) return FNN_OK;
    /* col rows ld apart, ld chosen so the rows do not all map to one L1 set */
    const int64_t ld = fnn_conv_ldcol(P, sizeof(T));
    SFX(im2col)(col, xi, g, ld);
    /* dW (oc, K) += delta (oc, P) @ col^T (P, K): col read transposed by the packing */
    st = SFX(fnn_gemm)(dwt, delta, col, oc, K, P, P, ld, K, 0, 1, (T)1, beta_w, NULL, nt);
    if (st != FNN_OK || dxi == NULL) return st;
    /* dcol (K, P) = W^T (K, oc) @ delta (oc, P), into col's buffer, then col2im */
    st = SFX(fnn_gemm)(col, w, delta, K, P, oc, K, P, ld, 1, 0, (T)1, (T)0, NULL, nt);
    if (st != FNN_OK) return st;
    SFX(col2im)(dxi, col, g, ld);
    return FNN_OK;
}

/* The backward of images [i0, i0 + gs) in one pair of GEMMs (gs >= 2, see
 * fnn_conv_bgroup): each image's delta (oc, P), found as conv_bwd_image does (its
 * bias row sums dbp (gs, oc) the same), is copied into its P columns of dgrp
 * (oc, gs P), and its im2col into the same columns of col (K, gs P); then
 * dwt (oc, K) = dgrp @ col^T (+ beta_w dwt), dcol = W^T dgrp and col2im per image.
 * dscratch holds dgrp then one image's delta: oc (gs P + P). */
static int SFX(conv_bwd_group)(T *dx, T *dwt, T beta_w, T *dbp, T *col, T *dscratch, T *tmp,
                               const T *dout, const T *a, const T *z, const T *x, const T *w,
                               const fnn_conv_geom *g, int act, int64_t gs, int nt)
{
    const int64_t P = g->oh * g->ow, K = g->c * g->kh * g->kw, oc = g->oc, GP = gs * P;
    const int64_t img_in = g->c * g->h * g->w, img_out = oc * P;
    T *dgrp = dscratch, *dimg = dscratch + oc * GP;
    /* col rows ld apart, ld chosen so the rows do not all map to one L1 set */
    const int64_t ld = fnn_conv_ldcol(GP, sizeof(T));
    for (int64_t j = 0; j < gs; j++) {
        const T *douti = dout + j * img_out, *delta = douti;
        if (act == FNN_ACT_SOFTMAX) {
            SFX(softmax_channels_grad)(dimg, douti, a + j * img_out, oc, P, tmp);
            delta = dimg;
        } else if (act != FNN_ACT_IDENTITY) {
            int st = SFX(fnn_act_backward)(dimg, NULL, douti, a ? a + j * img_out : NULL,
                                           z ? z + j * img_out : NULL, oc, P, act);
            if (st != FNN_OK) return st;
            delta = dimg;
        }
        for (int64_t o = 0; o < oc; o++) {
            if (dbp) dbp[j * oc + o] = SFX(sum_row)(delta + o * P, P);
            memcpy(dgrp + o * GP + j * P, delta + o * P, (size_t)P * sizeof(T));
        }
        if (K) SFX(im2col)(col + j * P, x + j * img_in, g, ld);
    }
    if (K == 0) return FNN_OK;
    /* dW (oc, K) += dgrp (oc, GP) @ col^T (GP, K): col read transposed by the packing */
    int st = SFX(fnn_gemm)(dwt, dgrp, col, oc, K, GP, GP, ld, K, 0, 1, (T)1, beta_w, NULL, nt);
    if (st != FNN_OK || dx == NULL) return st;
    /* dcol (K, GP) = W^T (K, oc) @ dgrp (oc, GP), into col's buffer, then col2im */
    st = SFX(fnn_gemm)(col, w, dgrp, K, GP, oc, K, GP, ld, 1, 0, (T)1, (T)0, NULL, nt);
    if (st != FNN_OK) return st;
    for (int64_t j = 0; j < gs; j++) SFX(col2im)(dx + j * img_in, col + j * P, g, ld);
    return FNN_OK;
}

/* Images [i0, i1) of the backward into dwt (+ beta_w dwt for the first), in
 * groups of G (conv_bwd_group; one image at a time when G is 1). */
static int SFX(conv_bwd_range)(T *dx, T *dwt, T beta_w, T *dbp, T *col, T *dsc, T *tmp,
                               const T *dout, const T *a, const T *z, const T *x, const T *w,
                               const fnn_conv_geom *g, int act, int64_t i0, int64_t i1,
                               int64_t G, int nt)
{
    const int64_t P = g->oh * g->ow, oc = g->oc;
    const int64_t img_in = g->c * g->h * g->w, img_out = oc * P;
    int st = FNN_OK;
    for (int64_t i = i0; i < i1 && st == FNN_OK;) {
        const int64_t gs = FNN_MIN(G, i1 - i);
        const T bw = i == i0 ? beta_w : (T)1;
        if (gs == 1)
            st = SFX(conv_bwd_image)(dx ? dx + i * img_in : NULL, dwt, bw,
                                     dbp ? dbp + i * oc : NULL, col, dsc, tmp,
                                     dout + i * img_out, a ? a + i * img_out : NULL,
                                     z ? z + i * img_out : NULL, x + i * img_in, w, g, act, nt);
        else
            st = SFX(conv_bwd_group)(dx ? dx + i * img_in : NULL, dwt, bw,
                                     dbp ? dbp + i * oc : NULL, col, dsc, tmp,
                                     dout + i * img_out, a ? a + i * img_out : NULL,
                                     z ? z + i * img_out : NULL, x + i * img_in, w, g, act, gs,
                                     nt);
        i += gs;
    }
    return st;
}

int SFX(fnn_conv2d_backward)(T *dx, T *dw, T *db, void *work, size_t work_bytes, const T *dout,
                             const T *a, const T *z, const T *x, const T *w, int64_t n, int64_t c,
                             int64_t h, int64_t wd, int64_t oc, int64_t kh, int64_t kw, int64_t sh,
                             int64_t sw, int64_t ph, int64_t pw, int act, T beta_w, int n_threads)
{
    fnn_conv_geom g;
    int st = fnn_conv_geometry(&g, n, c, h, wd, oc, kh, kw, sh, sw, ph, pw);
    if (st != FNN_OK) return st;
    if (act < 0 || act >= FNN_ACT_COUNT) return FNN_EINVAL;
    if (fnn_act_needs_z(act) && z == NULL) return FNN_EINVAL;
    const int64_t P = g.oh * g.ow, K = c * kh * kw;
    const int64_t img_in = c * h * wd, nw = oc * K;
    if (n == 0 || P == 0 || oc == 0) {
        /* no output: every gradient is zero (dw scaled by beta_w) */
        if (dx && img_in) memset(dx, 0, (size_t)(n * img_in) * sizeof(T));
        for (int64_t j = 0; j < nw; j++) dw[j] = beta_w == 0 ? (T)0 : beta_w * dw[j];
        if (db) memset(db, 0, (size_t)oc * sizeof(T));
        return FNN_OK;
    }
    fnn_conv_ws ws;
    int nt = n_threads < 1 ? 1 : n_threads;
    st = fnn_conv_workspace_plan(&ws, &g, sizeof(T), nt, work_bytes);
    if (st != FNN_OK) return st;
    if (work == NULL) return FNN_EINVAL;
    char *base = (char *)work;
    T *dbp = (T *)(base + ws.dbp_off); /* (n, oc) per-image bias sums */
    const int64_t G = fnn_conv_bgroup(&g);
    if (ws.slots <= 1) {
        char *slot = base + ws.slot_off;
        T *col = (T *)slot, *dsc = (T *)(slot + ws.delta_off), *tmp = (T *)(slot + ws.tmp_off);
        st = SFX(conv_bwd_range)(dx, dw, beta_w, db ? dbp : NULL, col, dsc, tmp, dout, a, z, x,
                                 w, &g, act, 0, n, G, nt);
        if (st != FNN_OK) return st;
    } else {
        int failed = FNN_OK;
        const int prec = fnn_matmul_precision(); /* the workers' GEMMs use the caller's */
#ifdef _OPENMP
#pragma omp parallel num_threads(ws.slots)
#endif
        {
            FNN_PAR_ENTER();
            const int prec_prev = fnn_set_thread_matmul_precision(prec);
#ifdef _OPENMP
            const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
            const int tid = 0, nth = 1;
#endif
            char *slot = base + ws.slot_off + (size_t)tid * ws.slot_bytes;
            T *col = (T *)slot, *dsc = (T *)(slot + ws.delta_off);
            T *tmp = (T *)(slot + ws.tmp_off), *dwt = (T *)(slot + ws.dw_off);
            const int64_t i0 = n * tid / nth, i1 = n * (tid + 1) / nth;
            if (i1 == i0) memset(dwt, 0, (size_t)nw * sizeof(T));
            {
                int s = SFX(conv_bwd_range)(dx, dwt, (T)0, db ? dbp : NULL, col, dsc, tmp, dout,
                                            a, z, x, w, &g, act, i0, i1, G, 1);
                if (s != FNN_OK) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
                    failed = s;
                }
            }
#ifdef _OPENMP
#pragma omp barrier
#endif
            /* dw = beta_w dw + sum over threads, in thread order (repeatable) */
            const int64_t j0 = nw * tid / nth, j1 = nw * (tid + 1) / nth;
            for (int64_t j = j0; j < j1; j++) {
                T s = beta_w == 0 ? (T)0 : beta_w * dw[j];
                for (int t = 0; t < nth; t++)
                    s += ((const T *)(base + ws.slot_off + (size_t)t * ws.slot_bytes +
                                      ws.dw_off))[j];
                dw[j] = s;
            }
            fnn_set_thread_matmul_precision(prec_prev);
            FNN_PAR_LEAVE();
        }
        if (failed != FNN_OK) return failed;
    }
    if (db) {
        /* db = sum over images of the per-image sums, in image order */
        for (int64_t o = 0; o < oc; o++) db[o] = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t o = 0; o < oc; o++) db[o] += dbp[i * oc + o];
    }
    return FNN_OK;
}
