/* isa_avx2.c -- the AVX2 + FMA level (x86-64): registers the GEMM kernels of
 * gemm_kernel_avx2.c with their blocking, the conv forward kernel below and
 * the elementwise loops compiled for AVX2.  Only functions named
 * fnn_<what>_avx2_<dtype> carry a target attribute (tools/check_isa.sh). */
#include <math.h>
#include <string.h>

#include "fnn_internal.h"

#ifdef FNN_HAVE_X86
#include <immintrin.h>

#if defined(__GNUC__) || defined(__clang__)
#define FNN_TARGET_AVX2 __attribute__((target("avx2,fma")))
/* "avx2" without "fma": no multiply-add contraction, so the AVX2 loops round
 * exactly as the baseline (SSE2) ones and results do not depend on the ISA. */
#define FNN_LOOPS_TARGET __attribute__((target("avx2")))
#else /* MSVC: intrinsics need no attribute; the loops stay at the baseline ISA */
#define FNN_TARGET_AVX2
#define FNN_LOOPS_TARGET
#endif

#define FNN_LOOPS_ISA avx2
#define FNN_TEMPLATE "fnn_loops_impl.h"
#include "fnn_template.h"
#undef FNN_LOOPS_ISA
#undef FNN_LOOPS_TARGET

/* ---- the conv forward micro-kernel for float ------------------------------ */
/* A 4 x 24 tile (4 output channels x 24 pixels): 12 ymm accumulators, 3 B
 * vectors and 1 broadcast per k step, 12 FMAs to 7 loads.  Against the GEMM
 * engine's 6 x 16 it wastes no rows when the channel count is a multiple of 4
 * (6 x 16 runs 36 rows for 32 channels), and it starts the accumulators at the
 * bias, so the bias costs nothing (the engine path spends one more K row).
 * Registered for float at the AVX2 level (and inherited by AVX-512 unless it
 * registers its own). */
FNN_TARGET_AVX2 static void fnn_conv_ukr_avx2_f32(int64_t k, const float *ap, const float *bp, float *c,
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
/* BLIS's zen3 starting points: sgemm 6x16, dgemm 6x8 (12 ymm accumulators). */
const fnn_gemm_cfg_f32 fnn_gemm_cfg_avx2_f32 = {
    .mr = 6, .nr = 16, .mc = 144, .kc = 256, .nc = 4080, .ukr = fnn_ukr_avx2_f32,
    .pack_a = fnn_pack_a6_avx2_f32, .pack_bt = fnn_pack_bt16_avx2_f32,
    .ukr_edge = fnn_ukr_edge_avx2_f32};
const fnn_gemm_cfg_f64 fnn_gemm_cfg_avx2_f64 = {
    .mr = 6, .nr = 8, .mc = 72, .kc = 256, .nc = 4080, .ukr = fnn_ukr_avx2_f64};

/* Registers the AVX2 GEMM kernels and blocking, the 4 x 24 float conv kernel and
 * the AVX2 loops (over what fnn_register_generic put in ctx). */
void fnn_register_avx2(fnn_isa_ctx *ctx)
{
    ctx->gemm_f32 = fnn_gemm_cfg_avx2_f32;
    ctx->gemm_f64 = fnn_gemm_cfg_avx2_f64;
    ctx->isa_of[FNN_FAM_GEMM_F32] = ctx->isa_of[FNN_FAM_GEMM_F64] = FNN_ISA_AVX2;
    /* 4 x 24 float conv tile; double keeps the GEMM engine's kernel */
    ctx->conv_f32 = (fnn_conv_cfg_f32){.mr = 4, .nr = 24, .ukr = fnn_conv_ukr_avx2_f32};
    ctx->isa_of[FNN_FAM_CONV_F32] = FNN_ISA_AVX2;
    ctx->loops_f32 = fnn_loops_avx2_f32;
    ctx->loops_f64 = fnn_loops_avx2_f64;
    ctx->isa_of[FNN_FAM_ACTIVATION] = ctx->isa_of[FNN_FAM_DROPOUT] = FNN_ISA_AVX2;
    ctx->isa_of[FNN_FAM_OPTIMIZER] = ctx->isa_of[FNN_FAM_ALL_FINITE] = FNN_ISA_AVX2;
    ctx->isa_of[FNN_FAM_LOSS] = FNN_ISA_AVX2;
}
#endif /* FNN_HAVE_X86 */
