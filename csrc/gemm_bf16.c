/*
 * gemm_bf16.c -- the bfloat16 matmul precision: the setting, the operand
 * conversion, and the blocked driver of the bf16 GEMM (fnn_gemm_f32 hands a
 * call over here when the precision in force is FNN_PREC_BF16).
 *
 * Same five loops as gemm_impl.h (jc -> pc -> ic -> jr -> ir), but the packed
 * panels are bf16 in the layouts of fnn_internal.h: the float -> bf16 rounding
 * happens once per element, in the packing, and the micro-kernel (portable
 * here, VDPBF16PS in isa_avx512bf16.c, TDPBF16PS tiles in isa_amx.c) is the
 * only ISA-specific piece.  Threads each pack the A panels of their rows and
 * the B panels of their columns (no shared packed data, no barriers), and
 * every C tile is the same sequence of micro-kernel calls on any thread
 * count, so results are bitwise identical across thread counts.
 */
#include <string.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- the setting ------------------------------------------------------------ */
#if defined(_MSC_VER)
#include <windows.h>
static volatile LONG fnn_prec_global = FNN_PREC_F32;
#define FNN_PREC_LOAD() ((int)fnn_prec_global)
#define FNN_PREC_STORE(v) InterlockedExchange(&fnn_prec_global, (LONG)(v))
#else
static int fnn_prec_global = FNN_PREC_F32;
#define FNN_PREC_LOAD() __atomic_load_n(&fnn_prec_global, __ATOMIC_RELAXED)
#define FNN_PREC_STORE(v) __atomic_store_n(&fnn_prec_global, (v), __ATOMIC_RELAXED)
#endif
static FNN_TLS int fnn_prec_thread = -1;

/* Process-wide precision: FNN_PREC_F32 or FNN_PREC_BF16. */
void fnn_set_matmul_precision(int prec)
{
    FNN_PREC_STORE(prec == FNN_PREC_BF16 ? FNN_PREC_BF16 : FNN_PREC_F32);
}

/* The process-wide precision. */
int fnn_get_matmul_precision(void) { return FNN_PREC_LOAD(); }

/* This thread's override (-1 none); returns the previous one. */
int fnn_set_thread_matmul_precision(int prec)
{
    const int old = fnn_prec_thread;
    fnn_prec_thread = prec < 0 ? -1 : prec == FNN_PREC_BF16 ? FNN_PREC_BF16 : FNN_PREC_F32;
    return old;
}

/* The precision in force on this thread. */
int fnn_matmul_precision(void)
{
    const int t = fnn_prec_thread;
    return t >= 0 ? t : FNN_PREC_LOAD();
}

/* dst[0:n] = bf16(src[0:n]) (n elements, any alignment). */
void fnn_f32_to_bf16(uint16_t *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, 4);
        dst[i] = fnn_bf16_from_bits(u);
    }
}

/* ---- portable packing and micro-kernel ------------------------------------- */
#define FNN_BF16_ISA generic
#define FNN_BF16_TARGET
#include "gemm_bf16_pack_impl.h"
#undef FNN_BF16_ISA
#undef FNN_BF16_TARGET

/* The float value of bf16 bits h. */
FNN_INLINE float fnn_bf16_to_float(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* 4 x 16 tile from pair-packed panels (KA = 2): per pair, acc += a1 b1 then
 * acc += a0 b0, VDPBF16PS's order; the products of bf16 values are exact in
 * float, so fused or not the result is the same. */
void fnn_ukr_generic_bf16(int64_t kp, const uint16_t *ap, const uint16_t *bp, float *c,
                          int64_t ldc, float alpha, float beta)
{
    enum { MR = FNN_GENERIC_MR_BF16, NR = FNN_GENERIC_NR_BF16 };
    float acc[MR][NR] = {{0}};
    for (int64_t q = 0; q < kp / 2; q++) {
        float b0[NR], b1[NR];
        for (int j = 0; j < NR; j++) {
            b0[j] = fnn_bf16_to_float(bp[(q * NR + j) * 2]);
            b1[j] = fnn_bf16_to_float(bp[(q * NR + j) * 2 + 1]);
        }
        for (int i = 0; i < MR; i++) {
            const float a0 = fnn_bf16_to_float(ap[(q * MR + i) * 2]);
            const float a1 = fnn_bf16_to_float(ap[(q * MR + i) * 2 + 1]);
            for (int j = 0; j < NR; j++) {
                acc[i][j] += a1 * b1[j];
                acc[i][j] += a0 * b0[j];
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            c[i * ldc + j] = beta == 0 ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[i * ldc + j];
}

/* ---- the driver --------------------------------------------------------------- */
/* Below this many multiply-adds per thread a GEMM does not use another thread. */
#define FNN_BF16_MIN_WORK (1 << 19)

int fnn_gemm_bf16_run(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k,
                      int64_t lda, int64_t ldb, int64_t ldc, int trans_a, int trans_b,
                      float alpha, float beta, const fnn_epilogue *ep, int n_threads)
{
    const fnn_gemm_cfg_bf16 *cfg = &fnn_ctx()->gemm_bf16;
    const int64_t MR = cfg->mr, NR = cfg->nr, MC = cfg->mc, KC = cfg->kc, NC = cfg->nc;
    const int64_t KA = cfg->ka;
    const fnn_pack_bf16 pack_a = cfg->pack_a ? cfg->pack_a : fnn_pack_a_generic_bf16;
    const fnn_pack_bf16 pack_b = cfg->pack_b ? cfg->pack_b : fnn_pack_b_generic_bf16;
    const fnn_ukr_bf16 ukr = cfg->ukr;

    const int has_ep = ep && (ep->bias || ep->z || ep->act != FNN_ACT_IDENTITY);
    const float *bias = has_ep ? (const float *)ep->bias : NULL;
    float *z = has_ep ? (float *)ep->z : NULL;
    const int64_t ldz = has_ep ? ep->ldz : 0;
    const int act = has_ep ? ep->act : FNN_ACT_IDENTITY;

    const int nt = fnn_threads_for((double)m * (double)n * (double)k, FNN_BF16_MIN_WORK,
                                   n_threads);
    /* k in near-equal slices of at most KC, each a multiple of KA */
    const int64_t nkb = (k + KC - 1) / KC;
    const int64_t kc_max = FNN_MIN(KC, ((k + nkb - 1) / nkb + KA - 1) / KA * KA);
    const int64_t kp_max = (kc_max + KA - 1) / KA * KA;
    const int64_t pm = (m + MR - 1) / MR, pn_all = (n + NR - 1) / NR;
    /* threads over row panels when there are enough of them, else over column panels */
    const int tm = pm >= nt ? nt : 1, tn = pm >= nt ? 1 : nt;
    int failed = 0;

#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        FNN_PAR_ENTER();
#ifdef _OPENMP
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int tid = 0, nth = 1;
#endif
        const int tmm = nth == nt ? tm : nth, tnn = nth == nt ? tn : 1;
        const int ti = tid / tnn, tj = tid % tnn;
        const int64_t r0 = FNN_MIN(m, (pm * ti / tmm) * MR), r1 = FNN_MIN(m, (pm * (ti + 1) / tmm) * MR);
        const int64_t c0 = FNN_MIN(n, (pn_all * tj / tnn) * NR);
        const int64_t c1 = FNN_MIN(n, (pn_all * (tj + 1) / tnn) * NR);
        const int64_t mc_rows = FNN_MIN(MC, (r1 - r0 + MR - 1) / MR * MR);
        const int64_t nc_cols = FNN_MIN(NC, (c1 - c0 + NR - 1) / NR * NR);
        uint16_t *apack = (uint16_t *)fnn_thread_buffer(
            FNN_BUF_PACK_A, (size_t)FNN_MAX(mc_rows, MR) * (size_t)kp_max * 2);
        uint16_t *bpack = (uint16_t *)fnn_thread_buffer(
            FNN_BUF_PACK_B, (size_t)FNN_MAX(nc_cols, NR) * (size_t)kp_max * 2);
        if (!apack || !bpack) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            failed = 1;
        } else if (r0 < r1 && c0 < c1) {
            float tmp[FNN_MAX_TILE];
            if (cfg->thread_begin) cfg->thread_begin();
            for (int64_t jc = c0; jc < c1; jc += NC) {
                const int64_t ncur = FNN_MIN(NC, c1 - jc);
                const int64_t pn = (ncur + NR - 1) / NR;
                for (int64_t pc = 0; pc < k; pc += kc_max) {
                    const int64_t kcur = FNN_MIN(kc_max, k - pc);
                    const int64_t kp = (kcur + KA - 1) / KA * KA;
                    const float beff = pc == 0 ? beta : 1.0f;
                    const int last = pc + kcur == k;
                    for (int64_t q = 0; q < pn; q++) {
                        const int64_t j = jc + q * NR;
                        const float *src = trans_b ? b + j * ldb + pc : b + pc * ldb + j;
                        pack_b(bpack + q * kp * NR, src, ldb, trans_b, FNN_MIN(NR, c1 - j),
                               kcur, kp, NR, KA);
                    }
                    for (int64_t ic = r0; ic < r1; ic += MC) {
                        const int64_t mcur = FNN_MIN(MC, r1 - ic);
                        for (int64_t ip = 0; ip < mcur; ip += MR) {
                            const int64_t i = ic + ip;
                            const float *src = trans_a ? a + pc * lda + i : a + i * lda + pc;
                            pack_a(apack + ip * kp, src, lda, trans_a, FNN_MIN(MR, r1 - i), kcur,
                                   kp, MR, KA);
                        }
                        for (int64_t q = 0; q < pn; q++) {
                            const int64_t j = jc + q * NR;
                            const int64_t nb = FNN_MIN(NR, c1 - j);
                            const uint16_t *bp = bpack + q * kp * NR;
                            for (int64_t ip = 0; ip < mcur; ip += MR) {
                                const int64_t ib = FNN_MIN(MR, mcur - ip);
                                float *ct = c + (ic + ip) * ldc + j;
                                const uint16_t *ap = apack + ip * kp;
                                if (ib == MR && nb == NR) {
                                    ukr(kp, ap, bp, ct, ldc, alpha, beff);
                                } else {
                                    ukr(kp, ap, bp, tmp, NR, alpha, 0.0f);
                                    for (int64_t ii = 0; ii < ib; ii++)
                                        for (int64_t jj = 0; jj < nb; jj++)
                                            ct[ii * ldc + jj] =
                                                beff == 0 ? tmp[ii * NR + jj]
                                                          : tmp[ii * NR + jj] + beff * ct[ii * ldc + jj];
                                }
                                if (last && has_ep)
                                    fnn_epilogue_tile_f32(ct, ldc, ib, nb, bias ? bias + j : NULL,
                                                          z ? z + (ic + ip) * ldz + j : NULL, ldz,
                                                          act);
                            }
                        }
                    }
                }
            }
            if (cfg->thread_end) cfg->thread_end();
        }
        FNN_PAR_LEAVE();
    }
    return failed ? FNN_ENOMEM : FNN_OK;
}

/* fnn_gemm_f32 with precision bf16 for this call. */
int fnn_gemm_bf16(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k,
                  int64_t lda, int64_t ldb, int64_t ldc, int trans_a, int trans_b, float alpha,
                  float beta, const fnn_epilogue *ep, int n_threads)
{
    const int old = fnn_set_thread_matmul_precision(FNN_PREC_BF16);
    const int st = fnn_gemm_f32(c, a, b, m, n, k, lda, ldb, ldc, trans_a, trans_b, alpha, beta,
                                ep, n_threads);
    fnn_set_thread_matmul_precision(old);
    return st;
}

/* The bf16 GEMM blocking in use. */
void fnn_gemm_bf16_blocking(int64_t *mr, int64_t *nr, int64_t *mc, int64_t *kc, int64_t *nc)
{
    const fnn_gemm_cfg_bf16 *cfg = &fnn_ctx()->gemm_bf16;
    *mr = cfg->mr, *nr = cfg->nr, *mc = cfg->mc, *kc = cfg->kc, *nc = cfg->nc;
}
