/*
 * gemm_kernel_avx512.c -- AVX-512 (F + BW + VL + DQ) GEMM micro-kernels,
 * edge kernels and packing for float and double (x86-64 only).
 *
 * Only these functions carry the avx512 target attribute; cpu.c calls them
 * only when the CPU and the OS support AVX-512.  Standard Intel intrinsics
 * only (no inline assembly), so the same source also builds against SIMDe.
 *
 * Tiles, for 32 zmm registers (BLIS's skx shapes, transposed to our row-major C):
 *   float  14 x 32: 14 rows x 2 zmm = 28 accumulators,
 *   double 14 x 16: likewise with 8 doubles per zmm;
 * per k step 2 B vectors are loaded and each of the 14 A values broadcast once
 * for its two FMAs: the k loop holds 28 + 2 + 1 zmm and issues 28 FMAs per
 * 16 loads (14 x 32 measured a little ahead of 12 x 32 here).
 * Prefetch: the A panel 16 steps ahead (and the next panel's start during the
 * last steps); the C tile into L2 at the start and into L1, one line per step,
 * during the last 28 steps; the B micro-panel stays in L1 across the ir loop.
 * Edge tiles run the same body with fewer rows (and one vector when cols <= VL)
 * and opmasked B loads and C loads/stores; packing transposes VL x VL blocks in
 * registers.  (The AVX-512 conv forward kernel is isa_avx512.c's.)
 * The type-generic code is gemm_kernel_avx512_impl.h, included once per type.
 */
#include "fnn_internal.h"

#ifdef FNN_HAVE_X86
#include "fnn_simd_avx512.h" /* <immintrin.h> and FNN_TARGET_AVX512 (or SIMDe) */

/* Tiles and cache blocking (cfg values: see fnn_gemm_cfg_avx512 below). */
#ifndef FNN_AVX512_MR_F32 /* overridable for tuning experiments (<= 14) */
#define FNN_AVX512_MR_F32 14
#endif
#ifndef FNN_AVX512_MR_F64
#define FNN_AVX512_MR_F64 14
#endif
#define FNN_AVX512_NR_F32 32
#define FNN_AVX512_NR_F64 16

/* k steps ahead of the current one at which the A panel is prefetched. */
#ifndef PF_A
#define PF_A 16
#endif
#ifndef FNN_AVX512_KC_F32
#define FNN_AVX512_KC_F32 256
#endif

/* 128-bit lanes of a (imm bits 0-3) and b (bits 4-7), through the integer form
 * of the shuffle: SIMDe 0.7 has no alias for _mm512_shuffle_f32x4 / _f64x2. */
#define FNN_LANES_PS(a, b, imm)                                                                  \
    _mm512_castsi512_ps(                                                                         \
        _mm512_shuffle_i32x4(_mm512_castps_si512(a), _mm512_castps_si512(b), (imm)))
#define FNN_LANES_PD(a, b, imm)                                                                  \
    _mm512_castsi512_pd(                                                                         \
        _mm512_shuffle_i32x4(_mm512_castpd_si512(a), _mm512_castpd_si512(b), (imm)))

/* In-register 16 x 16 transpose: r[i] = row i in, r[j] = column j out. */
FNN_TARGET_AVX512 FNN_INLINE void fnn_transpose16_avx512_ps(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    /* u[4i + q], 128-bit lane L: column 4L + q of rows 4i..4i+3 */
    for (int q = 0; q < 4; q++) {
        const __m512 w0 = FNN_LANES_PS(u[q], u[4 + q], 0x88);
        const __m512 w1 = FNN_LANES_PS(u[q], u[4 + q], 0xDD);
        const __m512 w2 = FNN_LANES_PS(u[8 + q], u[12 + q], 0x88);
        const __m512 w3 = FNN_LANES_PS(u[8 + q], u[12 + q], 0xDD);
        r[q] = FNN_LANES_PS(w0, w2, 0x88);
        r[4 + q] = FNN_LANES_PS(w1, w3, 0x88);
        r[8 + q] = FNN_LANES_PS(w0, w2, 0xDD);
        r[12 + q] = FNN_LANES_PS(w1, w3, 0xDD);
    }
}

/* In-register 8 x 8 transpose of doubles: r[i] = row i in, r[j] = column j out. */
FNN_TARGET_AVX512 FNN_INLINE void fnn_transpose8_avx512_pd(__m512d r[8])
{
    __m512d t[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    /* t[2i + q], 128-bit lane L: column 2L + q of rows 2i, 2i+1 */
    for (int q = 0; q < 2; q++) {
        const __m512d w0 = FNN_LANES_PD(t[q], t[2 + q], 0x88);
        const __m512d w1 = FNN_LANES_PD(t[q], t[2 + q], 0xDD);
        const __m512d w2 = FNN_LANES_PD(t[4 + q], t[6 + q], 0x88);
        const __m512d w3 = FNN_LANES_PD(t[4 + q], t[6 + q], 0xDD);
        r[q] = FNN_LANES_PD(w0, w2, 0x88);
        r[2 + q] = FNN_LANES_PD(w1, w3, 0x88);
        r[4 + q] = FNN_LANES_PD(w0, w2, 0xDD);
        r[6 + q] = FNN_LANES_PD(w1, w3, 0xDD);
    }
}

#ifdef FNN_AVX512_EMULATED
/* SIMDe 0.7 lacks the masked unaligned loads and stores: lane by lane through a
 * buffer, touching only the lanes the mask selects (as the instructions do). */
static inline __m512 fnn_maskz_loadu_avx512_ps(uint16_t m, const float *p)
{
    float t[16] = {0};
    for (int i = 0; i < 16; i++)
        if ((m >> i) & 1) t[i] = p[i];
    return _mm512_loadu_ps(t);
}
static inline void fnn_mask_storeu_avx512_ps(float *p, uint16_t m, __m512 v)
{
    float t[16];
    _mm512_storeu_ps(t, v);
    for (int i = 0; i < 16; i++)
        if ((m >> i) & 1) p[i] = t[i];
}
static inline __m512d fnn_maskz_loadu_avx512_pd(uint8_t m, const double *p)
{
    double t[8] = {0};
    for (int i = 0; i < 8; i++)
        if ((m >> i) & 1) t[i] = p[i];
    return _mm512_loadu_pd(t);
}
static inline void fnn_mask_storeu_avx512_pd(double *p, uint8_t m, __m512d v)
{
    double t[8];
    _mm512_storeu_pd(t, v);
    for (int i = 0; i < 8; i++)
        if ((m >> i) & 1) p[i] = t[i];
}
#define FNN_MASKZ_LOADU_PS fnn_maskz_loadu_avx512_ps
#define FNN_MASK_STOREU_PS fnn_mask_storeu_avx512_ps
#define FNN_MASKZ_LOADU_PD fnn_maskz_loadu_avx512_pd
#define FNN_MASK_STOREU_PD fnn_mask_storeu_avx512_pd
#else
#define FNN_MASKZ_LOADU_PS _mm512_maskz_loadu_ps
#define FNN_MASK_STOREU_PS _mm512_mask_storeu_ps
#define FNN_MASKZ_LOADU_PD _mm512_maskz_loadu_pd
#define FNN_MASK_STOREU_PD _mm512_mask_storeu_pd
#endif

#define T float
#define SFX(f) f##_f32
#define V __m512
#define M uint16_t /* = __mmask16; SIMDe 0.7 has only simde__mmask16 */
#define VL 16
#define MR FNN_AVX512_MR_F32
#define NR FNN_AVX512_NR_F32
#define VLOAD _mm512_loadu_ps
#define VMLOAD(m, p) FNN_MASKZ_LOADU_PS(m, p)
#define VSTORE _mm512_storeu_ps
#define VMSTORE(p, m, v) FNN_MASK_STOREU_PS(p, m, v)
#define VFMA _mm512_fmadd_ps
#define VMUL _mm512_mul_ps
#define VADD _mm512_add_ps
#define VSET1 _mm512_set1_ps
#define VZERO _mm512_setzero_ps
#define VTRANSPOSE fnn_transpose16_avx512_ps
#include "gemm_kernel_avx512_impl.h"
#undef T
#undef SFX
#undef V
#undef M
#undef VL
#undef MR
#undef NR
#undef VLOAD
#undef VMLOAD
#undef VSTORE
#undef VMSTORE
#undef VFMA
#undef VMUL
#undef VADD
#undef VSET1
#undef VZERO
#undef VTRANSPOSE

#define T double
#define SFX(f) f##_f64
#define V __m512d
#define M uint8_t /* = __mmask8 */
#define VL 8
#define MR FNN_AVX512_MR_F64
#define NR FNN_AVX512_NR_F64
#define VLOAD _mm512_loadu_pd
#define VMLOAD(m, p) FNN_MASKZ_LOADU_PD(m, p)
#define VSTORE _mm512_storeu_pd
#define VMSTORE(p, m, v) FNN_MASK_STOREU_PD(p, m, v)
#define VFMA _mm512_fmadd_pd
#define VMUL _mm512_mul_pd
#define VADD _mm512_add_pd
#define VSET1 _mm512_set1_pd
#define VZERO _mm512_setzero_pd
#define VTRANSPOSE fnn_transpose8_avx512_pd
#include "gemm_kernel_avx512_impl.h"

/* The AVX-512 GEMM configuration of both types (kernels and block sizes), for
 * Sapphire Rapids' caches: L1d (48 KiB) holds the kc x NR B micro-panel that
 * the ir loop reuses (256 x 32 floats or 256 x 16 doubles = 32 KiB) next to the
 * streamed 14 x kc A panel; L2 (2 MiB) the packed mc x kc A block (476 KiB);
 * the kc x nc B block (up to 4 MiB) L3.  MC is a multiple of MR.  KC 192 / 320,
 * MC 240 / 952 and NC 1024 / 2048 measured no better. */
void fnn_gemm_cfg_avx512(fnn_gemm_cfg_f32 *c32, fnn_gemm_cfg_f64 *c64)
{
    *c32 = (fnn_gemm_cfg_f32){FNN_AVX512_MR_F32, FNN_AVX512_NR_F32, 476, FNN_AVX512_KC_F32,
                              4096, fnn_ukr_avx512_f32, fnn_pack_a_avx512_f32,
                              fnn_pack_bt_avx512_f32, fnn_ukr_edge_avx512_f32};
    *c64 = (fnn_gemm_cfg_f64){FNN_AVX512_MR_F64, FNN_AVX512_NR_F64, 238, 256, 4096,
                              fnn_ukr_avx512_f64, fnn_pack_a_avx512_f64, fnn_pack_bt_avx512_f64,
                              fnn_ukr_edge_avx512_f64};
}

#endif /* FNN_HAVE_X86 */
