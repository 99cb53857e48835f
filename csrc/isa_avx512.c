/* isa_avx512.c -- the AVX-512 level (F + BW + VL + DQ, x86-64): the
 * elementwise loops compiled for 512-bit vectors, the conv forward kernel
 * below, and the GEMM slots (see fnn_register_avx512).  Only functions named
 * fnn_<what>_avx512_<dtype> are compiled for AVX-512 (tools/check_isa.sh).
 * Built against SIMDe instead of the hardware with -DFNN_SIMDE_AVX512
 * (fnn_simd_avx512.h, tools/simde_check.sh). */
#include <math.h>
#include <string.h>

#include "fnn_internal.h"

#ifdef FNN_HAVE_X86
#include "fnn_simd_avx512.h"

#define FNN_LOOPS_ISA avx512
#define FNN_LOOPS_TARGET FNN_TARGET_AVX512_LOOPS
#define FNN_TEMPLATE "fnn_loops_impl.h"
#include "fnn_template.h"
#undef FNN_LOOPS_ISA
#undef FNN_LOOPS_TARGET

/* ---- the conv forward micro-kernel for float ------------------------------ */
/* The AVX2 kernel's shape on zmm registers: a 4 x 48 tile (4 output channels
 * x 48 pixels), 12 zmm accumulators, 3 B vectors and 1 broadcast per k step
 * (12 FMAs to 7 loads), accumulators started at the bias.  Ap: 4 values per k
 * step; Bp: 48 values per k step; C row stride ldc; beta 0 or 1. */
FNN_TARGET_AVX512 static void fnn_conv_ukr_avx512_f32(int64_t k, const float *ap,
                                                      const float *bp, float *c, int64_t ldc,
                                                      const float *bias, float beta)
{
    __m512 c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32;
    if (bias) {
        c00 = c01 = c02 = _mm512_set1_ps(bias[0]);
        c10 = c11 = c12 = _mm512_set1_ps(bias[1]);
        c20 = c21 = c22 = _mm512_set1_ps(bias[2]);
        c30 = c31 = c32 = _mm512_set1_ps(bias[3]);
    } else {
        c00 = c01 = c02 = c10 = c11 = c12 = _mm512_setzero_ps();
        c20 = c21 = c22 = c30 = c31 = c32 = _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < k; p++) {
        const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16),
                     b2 = _mm512_loadu_ps(bp + 32);
        __m512 a = _mm512_set1_ps(ap[0]);
        c00 = _mm512_fmadd_ps(a, b0, c00), c01 = _mm512_fmadd_ps(a, b1, c01),
        c02 = _mm512_fmadd_ps(a, b2, c02);
        a = _mm512_set1_ps(ap[1]);
        c10 = _mm512_fmadd_ps(a, b0, c10), c11 = _mm512_fmadd_ps(a, b1, c11),
        c12 = _mm512_fmadd_ps(a, b2, c12);
        a = _mm512_set1_ps(ap[2]);
        c20 = _mm512_fmadd_ps(a, b0, c20), c21 = _mm512_fmadd_ps(a, b1, c21),
        c22 = _mm512_fmadd_ps(a, b2, c22);
        a = _mm512_set1_ps(ap[3]);
        c30 = _mm512_fmadd_ps(a, b0, c30), c31 = _mm512_fmadd_ps(a, b1, c31),
        c32 = _mm512_fmadd_ps(a, b2, c32);
        ap += 4;
        bp += 48;
    }
#define CONV_STORE_ROW(r, v0, v1, v2)                                                          \
    do {                                                                                       \
        float *cr = c + (r) * ldc;                                                             \
        if (beta != 0) {                                                                       \
            v0 = _mm512_add_ps(v0, _mm512_loadu_ps(cr));                                       \
            v1 = _mm512_add_ps(v1, _mm512_loadu_ps(cr + 16));                                  \
            v2 = _mm512_add_ps(v2, _mm512_loadu_ps(cr + 32));                                  \
        }                                                                                      \
        _mm512_storeu_ps(cr, v0);                                                              \
        _mm512_storeu_ps(cr + 16, v1);                                                         \
        _mm512_storeu_ps(cr + 32, v2);                                                         \
    } while (0)
    CONV_STORE_ROW(0, c00, c01, c02);
    CONV_STORE_ROW(1, c10, c11, c12);
    CONV_STORE_ROW(2, c20, c21, c22);
    CONV_STORE_ROW(3, c30, c31, c32);
#undef CONV_STORE_ROW
}

/* Registers the AVX-512 loops and float conv kernel, and (placeholder) the AVX2
 * GEMM (over what the lower levels put in ctx). */
void fnn_register_avx512(fnn_isa_ctx *ctx)
{
    /* GEMM: placeholder -- the AVX2 kernels with the AVX2 blocking, so that the
     * level works end to end; replaced by gemm_kernel_avx512.c (its fnn_ukr_avx512_*,
     * fnn_ukr_edge_avx512_*, fnn_pack_*_avx512_* and blocking, with isa_of AVX512). */
    ctx->gemm_f32 = fnn_gemm_cfg_avx2_f32;
    ctx->gemm_f64 = fnn_gemm_cfg_avx2_f64;
    ctx->isa_of[FNN_FAM_GEMM_F32] = ctx->isa_of[FNN_FAM_GEMM_F64] = FNN_ISA_AVX2;
    /* conv: 4 x 48 float tile; double keeps the GEMM engine's kernel */
    ctx->conv_f32 = (fnn_conv_cfg_f32){.mr = 4, .nr = 48, .ukr = fnn_conv_ukr_avx512_f32};
    ctx->isa_of[FNN_FAM_CONV_F32] = FNN_ISA_AVX512;
    ctx->loops_f32 = fnn_loops_avx512_f32;
    ctx->loops_f64 = fnn_loops_avx512_f64;
    ctx->isa_of[FNN_FAM_ACTIVATION] = ctx->isa_of[FNN_FAM_DROPOUT] = FNN_ISA_AVX512;
    ctx->isa_of[FNN_FAM_OPTIMIZER] = ctx->isa_of[FNN_FAM_ALL_FINITE] = FNN_ISA_AVX512;
}
#endif /* FNN_HAVE_X86 */
