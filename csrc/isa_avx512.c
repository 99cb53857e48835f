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
/* An 8 x 48 tile (8 output channels x 48 pixels): 24 zmm accumulators and 3 B
 * vectors per k step, each A value broadcast straight into its 3 FMAs (24 FMAs
 * to 3 loads + 8 broadcasts), accumulators started at the bias.  Ap: 8 values
 * per k step; Bp: 48 values per k step; C row stride ldc; beta 0 or 1.  The
 * loops have constant bounds: the compiler unrolls them and keeps acc in
 * registers. */
#define FNN_CONV512_MR 8
#define FNN_CONV512_NV 3 /* zmm vectors per row: NR = 48 */
FNN_TARGET_AVX512 static void fnn_conv_ukr_avx512_f32(int64_t k, const float *ap,
                                                      const float *bp, float *c, int64_t ldc,
                                                      const float *bias, float beta)
{
    __m512 acc[FNN_CONV512_MR][FNN_CONV512_NV];
    for (int i = 0; i < FNN_CONV512_MR; i++) {
        const __m512 init = bias ? _mm512_set1_ps(bias[i]) : _mm512_setzero_ps();
        for (int j = 0; j < FNN_CONV512_NV; j++) acc[i][j] = init;
    }
    for (int64_t p = 0; p < k; p++) {
        __m512 bv[FNN_CONV512_NV];
        for (int j = 0; j < FNN_CONV512_NV; j++) bv[j] = _mm512_loadu_ps(bp + 16 * j);
        for (int i = 0; i < FNN_CONV512_MR; i++) {
            const __m512 a = _mm512_set1_ps(ap[i]);
            for (int j = 0; j < FNN_CONV512_NV; j++) acc[i][j] = _mm512_fmadd_ps(a, bv[j], acc[i][j]);
        }
        ap += FNN_CONV512_MR;
        bp += 16 * FNN_CONV512_NV;
    }
    for (int i = 0; i < FNN_CONV512_MR; i++) {
        float *cr = c + i * ldc;
        for (int j = 0; j < FNN_CONV512_NV; j++) {
            __m512 v = acc[i][j];
            if (beta != 0) v = _mm512_add_ps(v, _mm512_loadu_ps(cr + 16 * j));
            _mm512_storeu_ps(cr + 16 * j, v);
        }
    }
}

/* Registers the AVX-512 GEMM, the float conv kernel and the loops (over what the
 * lower levels put in ctx). */
void fnn_register_avx512(fnn_isa_ctx *ctx)
{
    /* GEMM: gemm_kernel_avx512.c's micro-kernels, edge kernels, packing and blocking */
    fnn_gemm_cfg_avx512(&ctx->gemm_f32, &ctx->gemm_f64);
    ctx->isa_of[FNN_FAM_GEMM_F32] = ctx->isa_of[FNN_FAM_GEMM_F64] = FNN_ISA_AVX512;
    /* conv: 8 x 48 float tile; double keeps the GEMM engine's kernel */
    ctx->conv_f32 = (fnn_conv_cfg_f32){.mr = FNN_CONV512_MR, .nr = 16 * FNN_CONV512_NV,
                                       .ukr = fnn_conv_ukr_avx512_f32};
    ctx->isa_of[FNN_FAM_CONV_F32] = FNN_ISA_AVX512;
    ctx->loops_f32 = fnn_loops_avx512_f32;
    ctx->loops_f64 = fnn_loops_avx512_f64;
    ctx->isa_of[FNN_FAM_ACTIVATION] = ctx->isa_of[FNN_FAM_DROPOUT] = FNN_ISA_AVX512;
    ctx->isa_of[FNN_FAM_OPTIMIZER] = ctx->isa_of[FNN_FAM_ALL_FINITE] = FNN_ISA_AVX512;
    ctx->isa_of[FNN_FAM_LOSS] = FNN_ISA_AVX512;
}
#endif /* FNN_HAVE_X86 */
