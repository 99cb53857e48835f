/* isa_avx512bf16.c -- the AVX512-BF16 level (AVX-512 + VDPBF16PS, x86-64):
 * only the bf16 GEMM: its packing (the portable loops compiled for AVX-512)
 * and a 12 x 32 micro-kernel on VDPBF16PS.  Everything else is inherited from
 * the avx512 level.  Only functions named fnn_<what>_avx512bf16_bf16 are
 * compiled for it (tools/check_isa.sh).  Built on SIMDe with -DFNN_SIMDE_AVX512
 * (tools/simde_check.sh), whose VDPBF16PS adds each pair's two products before
 * accumulating (the hardware adds them one at a time): within the tolerances. */
#include <string.h>

#include "fnn_internal.h"

#ifdef FNN_HAVE_X86
#include "fnn_simd_avx512.h"

#define FNN_BF16_ISA avx512bf16
#define FNN_BF16_TARGET FNN_TARGET_AVX512_LOOPS
#include "gemm_bf16_pack_impl.h"
#undef FNN_BF16_ISA
#undef FNN_BF16_TARGET

#define FNN_BF16X_MR 12
#define FNN_BF16X_NV 2 /* zmm vectors per row: NR = 32 */

/* 512 bits reinterpreted as 32 bf16 values (a register cast natively; SIMDe's
 * type is a struct or a float vector, so a copy there). */
#ifdef FNN_AVX512_EMULATED
FNN_TARGET_AVX512_BF16 static inline __m512bh fnn_as_bh_avx512bf16_bf16(__m512i x)
{
    __m512bh r;
    memcpy(&r, &x, sizeof(r));
    return r;
}
#else
#define fnn_as_bh_avx512bf16_bf16(x) ((__m512bh)(x))
#endif

/* 12 x 32 tile: 24 zmm accumulators; per k pair 2 B vectors (16 columns x 2
 * values each) and 12 broadcast A pairs, 24 VDPBF16PS.  ap: pairs (kp/2, 12);
 * bp: pairs (kp/2, 32).  C = alpha * acc + beta * C (beta 0: not read). */
FNN_TARGET_AVX512_BF16 void fnn_ukr_avx512bf16_bf16(int64_t kp, const uint16_t *ap,
                                                    const uint16_t *bp, float *c, int64_t ldc,
                                                    float alpha, float beta)
{
    __m512 acc[FNN_BF16X_MR][FNN_BF16X_NV];
    for (int i = 0; i < FNN_BF16X_MR; i++)
        for (int j = 0; j < FNN_BF16X_NV; j++) acc[i][j] = _mm512_setzero_ps();
    const int32_t *a32 = (const int32_t *)(const void *)ap;
    for (int64_t q = 0; q < kp / 2; q++) {
        __m512bh bv[FNN_BF16X_NV];
        for (int j = 0; j < FNN_BF16X_NV; j++)
            bv[j] = fnn_as_bh_avx512bf16_bf16(_mm512_loadu_si512((const void *)(bp + 32 * j)));
        for (int i = 0; i < FNN_BF16X_MR; i++) {
            const __m512bh av = fnn_as_bh_avx512bf16_bf16(_mm512_set1_epi32(a32[i]));
            for (int j = 0; j < FNN_BF16X_NV; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
        }
        a32 += FNN_BF16X_MR;
        bp += 32 * FNN_BF16X_NV;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < FNN_BF16X_MR; i++) {
        float *cr = c + i * ldc;
        for (int j = 0; j < FNN_BF16X_NV; j++) {
            __m512 v = _mm512_mul_ps(va, acc[i][j]);
            if (beta != 0) v = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + 16 * j), v);
            _mm512_storeu_ps(cr + 16 * j, v);
        }
    }
}

/* Registers the bf16 GEMM (over what the avx512 level put in ctx). */
void fnn_register_avx512bf16(fnn_isa_ctx *ctx)
{
    ctx->gemm_bf16 = (fnn_gemm_cfg_bf16){.mr = FNN_BF16X_MR, .nr = 16 * FNN_BF16X_NV,
                                         .mc = FNN_BF16X_MR * 16, .kc = 512, .nc = 4096, .ka = 2,
                                         .ukr = fnn_ukr_avx512bf16_bf16,
                                         .pack_a = fnn_pack_a_avx512bf16_bf16,
                                         .pack_b = fnn_pack_b_avx512bf16_bf16};
    ctx->isa_of[FNN_FAM_GEMM_BF16] = FNN_ISA_AVX512_BF16;
}
#endif /* FNN_HAVE_X86 */
