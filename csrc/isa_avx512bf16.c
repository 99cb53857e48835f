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

#ifdef FNN_AVX512_EMULATED
typedef simde__mmask16 fnn_mask16_avx512bf16;
#else
typedef __mmask16 fnn_mask16_avx512bf16;
#endif

/* 16 floats -> their bf16 bits in the low halves of 16 32-bit lanes
 * (fnn_bf16_from_bits on each lane). */
FNN_TARGET_AVX512_BF16 static inline __m512i fnn_cvt16_avx512bf16_bf16(const float *src)
{
    const __m512i u = _mm512_loadu_si512((const void *)src);
    const __m512i mag = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    const __m512i hi = _mm512_srli_epi32(u, 16);
    const __m512i odd = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16);
    const fnn_mask16_avx512bf16 nan = _mm512_cmpgt_epi32_mask(mag, _mm512_set1_epi32(0x7f800000));
    const fnn_mask16_avx512bf16 sub = _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(0x00800000), mag);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    r = _mm512_mask_mov_epi32(r, sub, _mm512_and_si512(hi, _mm512_set1_epi32(0x8000)));
    return _mm512_and_si512(r, _mm512_set1_epi32(0xffff));
}

/* fnn_pack_b_avx512bf16_bf16 for non-transposed B, full 32-column panels: each
 * pair of rows (p, p+1) becomes 32 32-bit pairs (p's bf16 low, p+1's high), two
 * stores; other panels take the portable loops compiled for AVX-512. */
FNN_TARGET_AVX512_BF16 static void fnn_pack_b_fast_avx512bf16_bf16(
    uint16_t *dst, const float *src, int64_t ld, int trans, int64_t cols, int64_t kc, int64_t kp,
    int64_t width, int64_t ka)
{
    if (trans || width != 32 || cols != 32) {
        fnn_pack_b_avx512bf16_bf16(dst, src, ld, trans, cols, kc, kp, width, ka);
        return;
    }
    for (int64_t p = 0; p < kp; p += 2) {
        uint16_t *d = dst + p * 32;
        for (int h = 0; h < 2; h++) {
            const __m512i lo = p < kc ? fnn_cvt16_avx512bf16_bf16(src + p * ld + 16 * h)
                                      : _mm512_setzero_si512();
            const __m512i up = p + 1 < kc ? fnn_cvt16_avx512bf16_bf16(src + (p + 1) * ld + 16 * h)
                                          : _mm512_setzero_si512();
            _mm512_storeu_si512((void *)(d + 32 * h), _mm512_or_si512(lo, _mm512_slli_epi32(up, 16)));
        }
    }
}

/* fnn_pack_a_avx512bf16_bf16 for non-transposed A with 32-value k blocks (AMX):
 * each row's 32 values of a block are contiguous in the panel (two 16-lane
 * conversions narrowed to 16 bits); other cases take the portable loops. */
FNN_TARGET_AVX512_BF16 static void fnn_pack_a_fast_avx512bf16_bf16(
    uint16_t *dst, const float *src, int64_t ld, int trans, int64_t rows, int64_t kc, int64_t kp,
    int64_t width, int64_t ka)
{
    if (trans || ka != 32) {
        fnn_pack_a_avx512bf16_bf16(dst, src, ld, trans, rows, kc, kp, width, ka);
        return;
    }
    for (int64_t i = 0; i < width; i++)
        for (int64_t p0 = 0; p0 < kp; p0 += 32) {
            uint16_t *d = dst + (p0 / 32) * width * 32 + i * 32;
            if (i < rows && p0 + 32 <= kc) {
                const float *s = src + i * ld + p0;
                /* the 16-bit words 0, 2, 4, ... of the two converted halves */
                const __m512i lo = fnn_cvt16_avx512bf16_bf16(s);
                const __m512i hi = fnn_cvt16_avx512bf16_bf16(s + 16);
                const __m512i idx = _mm512_set_epi16(
                    62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32,
                    30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
                _mm512_storeu_si512((void *)d, _mm512_permutex2var_epi16(lo, idx, hi));
                continue;
            }
            for (int64_t q = 0; q < 32; q++) { /* the last rows and k values: zero-filled */
                uint32_t u = 0;
                if (i < rows && p0 + q < kc) memcpy(&u, src + i * ld + p0 + q, 4);
                d[q] = fnn_bf16_from_bits(u);
            }
        }
}

/* Registers the bf16 GEMM (over what the avx512 level put in ctx). */
void fnn_register_avx512bf16(fnn_isa_ctx *ctx)
{
    ctx->gemm_bf16 = (fnn_gemm_cfg_bf16){.mr = FNN_BF16X_MR, .nr = 16 * FNN_BF16X_NV,
                                         .mc = FNN_BF16X_MR * 16, .kc = 512, .nc = 4096, .ka = 2,
                                         .ukr = fnn_ukr_avx512bf16_bf16,
                                         .pack_a = fnn_pack_a_fast_avx512bf16_bf16,
                                         .pack_b = fnn_pack_b_fast_avx512bf16_bf16};
    ctx->isa_of[FNN_FAM_GEMM_BF16] = FNN_ISA_AVX512_BF16;
}
#endif /* FNN_HAVE_X86 */
