/* conv.c -- 2-D convolution forward/backward on NCHW arrays (im2col + GEMM). */
#include <math.h>
#include <string.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
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
    g->oh = fnn_window_out_size(h, kh, sh, ph);
    g->ow = fnn_window_out_size(w, kw, sw, pw);
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

/* Images per GEMM in the backward: enough that the group's G*P pixels give the
 * dW GEMM a k (and the dcol GEMM an n) of at least 128 -- per-image GEMMs on a
 * 4x4 or 7x7 output are too small to pay for their packing -- but 1 when one
 * image already has that many (and never more than the batch). */
static int64_t fnn_conv_bgroup(const fnn_conv_geom *g)
{
    const int64_t P = g->oh * g->ow;
    if (P <= 0 || P >= 128) return 1;
    int64_t G = (128 + P - 1) / P;
    if (G > g->n) G = g->n < 1 ? 1 : g->n;
    return G;
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
    const fnn_isa_ctx *ctx = fnn_ctx();
    /* the ISA's conv forward kernel, if it has one for this dtype (else the engine's) */
    const int64_t cmr = elem == 4 ? (ctx->conv_f32.ukr ? ctx->conv_f32.mr : mr)
                                  : (ctx->conv_f64.ukr ? ctx->conv_f64.mr : mr);
    const int64_t cnr = elem == 4 ? (ctx->conv_f32.ukr ? ctx->conv_f32.nr : nr)
                                  : (ctx->conv_f64.ukr ? ctx->conv_f64.nr : nr);
    const int64_t K = g->c * g->kh * g->kw, P = g->oh * g->ow, Ka = K + 1;
    /* room for the layout of either forward micro-kernel (engine or conv) */
    const int64_t Ppad = FNN_MAX((P + nr - 1) / nr * nr, (P + cnr - 1) / cnr * cnr);
    const int64_t Mpad = FNN_MAX((g->oc + mr - 1) / mr * mr, (g->oc + cmr - 1) / cmr * cmr);
    /* the backward's group of G images: col (K, ldcol(G P)) (+ one line of slack for a
     * short last group), delta (oc, G P) grouped plus one image's (oc, P) when G > 1 */
    const int64_t G = fnn_conv_bgroup(g), GP = G * P;
    const int64_t ldg = fnn_conv_ldcol(GP, elem) + (G > 1 ? (int64_t)(64 / elem) : 0);
    const int64_t dgrp = G > 1 ? g->oc * (GP + P) : g->oc * P;
    const double est = ((double)Ka * Ppad + (double)K * ldg + (double)dgrp + (double)Ppad +
                        2.0 * P +
                        (double)g->oc * K + (double)Mpad * Ka + (double)g->n * g->oc) *
                       (double)elem * (nt < 1 ? 1 : nt);
    if (est > (double)SIZE_MAX / 4 || est > 9e18) return FNN_EOVERFLOW;
    const size_t shared = align64(elem * (size_t)FNN_MAX(Mpad * Ka, g->n * g->oc));
    const size_t col = align64(elem * (size_t)FNN_MAX(Ka * Ppad, K * ldg));
    const size_t delta = align64(elem * (size_t)FNN_MAX(dgrp, Ppad));
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

#define FNN_TEMPLATE "conv_impl.h"
#include "fnn_template.h"
