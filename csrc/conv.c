/* conv.c -- 2-D convolution forward/backward on NCHW arrays (im2col + GEMM). */
#include <math.h>
#include <string.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Tile of the float AVX2 forward micro-kernel (below). */
#define CONV_FAST_MR 4
#define CONV_FAST_NR 24
/* The widest fast tile any ISA uses (the AVX-512 one: 4 x 48, same MR). */
#ifdef FNN_HAVE_X86
#define CONV_FAST_NR_MAX FNN_CONV_AVX512_NR
#else
#define CONV_FAST_NR_MAX CONV_FAST_NR
#endif

/* Sizes of one convolution, checked once (see fnn_conv_geometry). */
typedef struct {
    int64_t n, c, h, w, oc, kh, kw, sh, sw, ph, pw, oh, ow;
} fnn_conv_geom;

/* Workspace layout, byte offsets into the caller's buffer:
 *   [shared: Wa (oc, K+1) in the forward / per-image bias sums (n, oc) in the backward]
 *   [slot 0][slot 1]...  one per thread, each
 *   [col ((K+1), P)][delta (oc, P)][tmp (2P)][dw partial (oc, K)]
 * every part 64-byte aligned (the caller's pointer should be too). */
typedef struct {
    size_t wa_off, dbp_off, slot_off, slot_bytes, delta_off, tmp_off, dw_off, total;
    int slots;
} fnn_conv_ws;

static size_t align64(size_t v) { return (v + 63) & ~(size_t)63; }

static int fnn_conv_geometry(fnn_conv_geom *g, int64_t n, int64_t c, int64_t h, int64_t w,
                             int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                             int64_t ph, int64_t pw)
{
    if (n < 0 || c < 0 || h < 0 || w < 0 || oc < 0 || kh < 1 || kw < 1 || sh < 1 || sw < 1 ||
        ph < 0 || pw < 0)
        return FNN_EINVAL;
    if (ph > (INT64_MAX - h) / 2 || pw > (INT64_MAX - w) / 2) return FNN_EOVERFLOW;
    if (h + 2 * ph < kh || w + 2 * pw < kw) return FNN_EINVAL;
    g->n = n, g->c = c, g->h = h, g->w = w, g->oc = oc, g->kh = kh, g->kw = kw;
    g->sh = sh, g->sw = sw, g->ph = ph, g->pw = pw;
    g->oh = (h + 2 * ph - kh) / sh + 1;
    g->ow = (w + 2 * pw - kw) / sw + 1;
    int64_t t, K, P;
    if (fnn_mul_overflows(c, kh, &t) || fnn_mul_overflows(t, kw, &K) ||
        fnn_mul_overflows(g->oh, g->ow, &P) || fnn_mul_overflows(K + 1, P, &t) ||
        fnn_mul_overflows(oc, P, &t) || fnn_mul_overflows(t, n, &t) ||
        fnn_mul_overflows(c, h, &t) || fnn_mul_overflows(t, w, &t) ||
        fnn_mul_overflows(t, n, &t) || fnn_mul_overflows(oc, K + 1, &t) ||
        fnn_mul_overflows(n, oc, &t))
        return FNN_EOVERFLOW;
    return FNN_OK;
}

/* Row stride of the backward's im2col / dcol (K, P): P, plus one cache line
 * when P elements are a multiple of 512 bytes (rows 4 KiB apart would all fall
 * in one L1 set and thrash it inside the GEMM). */
static int64_t fnn_conv_ldcol(int64_t P, size_t elem)
{
    return ((size_t)P * elem) % 512 == 0 ? P + (int64_t)(64 / elem) : P;
}

/* Plan the workspace for up to nt threads.  With avail == 0 the plan is for
 * exactly min(nt, n) slots (the size query); otherwise the number of slots is
 * cut to what fits in avail bytes, and FNN_EINVAL if not even one does.
 * Element counts (Ka = K + 1, P = oh ow, Ppad / Mpad = P / oc rounded up to
 * the micro-kernel's NR / MR):
 *   shared: max(Mpad Ka   packed [W | b], forward;  n oc   bias sums, backward)
 *   slot:   col   max(Ka Ppad  packed B, forward;  K ld  im2col / dcol, backward)
 *           delta max(Ppad     im2col row, forward; oc P  act'-folded delta)
 *           tmp   2 P (softmax over channels), dw  oc K (per-thread dw). */
static int fnn_conv_workspace_plan(fnn_conv_ws *ws, const fnn_conv_geom *g, size_t elem,
                                   int nt, size_t avail)
{
    int64_t mr, nr, mc, kc, nc;
    fnn_gemm_blocking((int)elem, &mr, &nr, &mc, &kc, &nc);
    const int64_t K = g->c * g->kh * g->kw, P = g->oh * g->ow, Ka = K + 1;
    /* room for the layout of either forward micro-kernel (engine or conv AVX2) */
    const int64_t fnr = FNN_MAX(CONV_FAST_NR, CONV_FAST_NR_MAX);
    const int64_t Ppad = FNN_MAX((P + nr - 1) / nr * nr, (P + fnr - 1) / fnr * fnr);
    const int64_t Mpad = FNN_MAX((g->oc + mr - 1) / mr * mr,
                                 (g->oc + CONV_FAST_MR - 1) / CONV_FAST_MR * CONV_FAST_MR);
    const double est = ((double)Ka * Ppad + (double)g->oc * P + (double)Ppad + 2.0 * P +
                        (double)g->oc * K + (double)Mpad * Ka + (double)g->n * g->oc) *
                       (double)elem * (nt < 1 ? 1 : nt);
    if (est > (double)SIZE_MAX / 4 || est > 9e18) return FNN_EOVERFLOW;
    const size_t shared = align64(elem * (size_t)FNN_MAX(Mpad * Ka, g->n * g->oc));
    const size_t col = align64(elem * (size_t)FNN_MAX(Ka * Ppad, K * fnn_conv_ldcol(P, elem)));
    const size_t delta = align64(elem * (size_t)FNN_MAX(g->oc * P, Ppad));
    const size_t tmp = align64(elem * (size_t)(2 * P));
    const size_t dw = align64(elem * (size_t)(g->oc * K));
    ws->wa_off = 0;
    ws->dbp_off = 0;
    ws->slot_off = shared;
    ws->delta_off = col;
    ws->tmp_off = col + delta;
    ws->dw_off = col + delta + tmp;
    ws->slot_bytes = col + delta + tmp + dw;
    int64_t want = nt < 1 ? 1 : nt;
    if (want > g->n) want = g->n < 1 ? 1 : g->n;
    if (avail != 0) {
        if (avail < shared + ws->slot_bytes) return FNN_EINVAL;
        const size_t fit = (avail - shared) / ws->slot_bytes;
        if ((size_t)want > fit) want = (int64_t)fit;
    }
    ws->slots = (int)want;
    ws->total = shared + (size_t)want * ws->slot_bytes;
    return FNN_OK;
}

int fnn_conv2d_workspace_size(size_t *bytes, int64_t n, int64_t c, int64_t h, int64_t w,
                              int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                              int64_t ph, int64_t pw, int elem_size, int n_threads)
{
    fnn_conv_geom g;
    fnn_conv_ws ws;
    if (bytes == NULL || (elem_size != 4 && elem_size != 8)) return FNN_EINVAL;
    int st = fnn_conv_geometry(&g, n, c, h, w, oc, kh, kw, sh, sw, ph, pw);
    if (st != FNN_OK) return st;
    st = fnn_conv_workspace_plan(&ws, &g, (size_t)elem_size, n_threads, 0);
    if (st != FNN_OK) return st;
    *bytes = ws.total;
    return FNN_OK;
}

/* ---- the AVX2 forward micro-kernel for float ---------------------------- */
/* A 4 x 24 tile (4 output channels x 24 pixels): 12 ymm accumulators, 3 B
 * vectors and 1 broadcast per k step, 12 FMAs to 7 loads.  Against the GEMM
 * engine's 6 x 16 it wastes no rows when the channel count is a multiple of 4
 * (6 x 16 runs 36 rows for 32 channels), and it starts the accumulators at the
 * bias, so the bias costs nothing (the engine path spends one more K row).
 * Only this function is compiled for AVX2 + FMA; it runs when cpu.c chose the
 * AVX2 path (so FASTNN_ISA=generic turns it off). */
#ifdef FNN_HAVE_X86
#include <immintrin.h>
#if defined(__GNUC__) || defined(__clang__)
__attribute__((target("avx2,fma")))
#endif
static void fnn_conv_ukr_avx2_f32(int64_t k, const float *ap, const float *bp, float *c,
                              int64_t ldc, const float *bias, float beta)
{
    __m256 c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32;
    if (bias) {
        c00 = c01 = c02 = _mm256_broadcast_ss(bias + 0);
        c10 = c11 = c12 = _mm256_broadcast_ss(bias + 1);
        c20 = c21 = c22 = _mm256_broadcast_ss(bias + 2);
        c30 = c31 = c32 = _mm256_broadcast_ss(bias + 3);
    } else {
        c00 = c01 = c02 = c10 = c11 = c12 = _mm256_setzero_ps();
        c20 = c21 = c22 = c30 = c31 = c32 = _mm256_setzero_ps();
    }
    for (int64_t p = 0; p < k; p++) {
        const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8),
                     b2 = _mm256_loadu_ps(bp + 16);
        __m256 a = _mm256_broadcast_ss(ap + 0);
        c00 = _mm256_fmadd_ps(a, b0, c00), c01 = _mm256_fmadd_ps(a, b1, c01),
        c02 = _mm256_fmadd_ps(a, b2, c02);
        a = _mm256_broadcast_ss(ap + 1);
        c10 = _mm256_fmadd_ps(a, b0, c10), c11 = _mm256_fmadd_ps(a, b1, c11),
        c12 = _mm256_fmadd_ps(a, b2, c12);
        a = _mm256_broadcast_ss(ap + 2);
        c20 = _mm256_fmadd_ps(a, b0, c20), c21 = _mm256_fmadd_ps(a, b1, c21),
        c22 = _mm256_fmadd_ps(a, b2, c22);
        a = _mm256_broadcast_ss(ap + 3);
        c30 = _mm256_fmadd_ps(a, b0, c30), c31 = _mm256_fmadd_ps(a, b1, c31),
        c32 = _mm256_fmadd_ps(a, b2, c32);
        ap += 4;
        bp += 24;
    }
#define CONV_STORE_ROW(r, v0, v1, v2)                                                          \
    do {                                                                                       \
        float *cr = c + (r) * ldc;                                                             \
        if (beta != 0) {                                                                       \
            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cr));                                       \
            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cr + 8));                                   \
            v2 = _mm256_add_ps(v2, _mm256_loadu_ps(cr + 16));                                  \
        }                                                                                      \
        _mm256_storeu_ps(cr, v0);                                                              \
        _mm256_storeu_ps(cr + 8, v1);                                                          \
        _mm256_storeu_ps(cr + 16, v2);                                                         \
    } while (0)
    CONV_STORE_ROW(0, c00, c01, c02);
    CONV_STORE_ROW(1, c10, c11, c12);
    CONV_STORE_ROW(2, c20, c21, c22);
    CONV_STORE_ROW(3, c30, c31, c32);
#undef CONV_STORE_ROW
}
#define CONV_FAST_UKR fnn_conv_ukr_avx2_f32
#define CONV_FAST_UKR512 fnn_conv_ukr_avx512_f32 /* gemm_kernel_avx512.c, 4 x 48 */
#endif /* FNN_HAVE_X86 */

#define T float
#define SFX(f) f##_f32
#define TM(fn) fn##f
#include "conv_impl.h"
#undef T
#undef SFX
#undef TM
#undef CONV_FAST_UKR
#undef CONV_FAST_UKR512

#define T double
#define SFX(f) f##_f64
#define TM(fn) fn
#include "conv_impl.h"
#undef T
#undef SFX
#undef TM
