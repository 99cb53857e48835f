/*
 * gemm_kernel_avx2.c -- AVX2 + FMA micro-kernels (x86-64 only).
 *
 * Only these functions carry the avx2/fma target attribute; the rest of the
 * extension is built for the baseline ISA, and cpu.c calls them only when
 * the CPU supports AVX2 + FMA.
 *
 * float: 6 x 16 tile = 6 rows x 2 ymm = 12 accumulators, 2 B loads and 6
 * broadcasts per k step (BLIS's haswell/zen3 shape).  double: 6 x 8 likewise.
 */
#include "fnn_internal.h"

#ifdef FNN_HAVE_X86
#include <immintrin.h>

#if defined(__GNUC__) || defined(__clang__)
#define FNN_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define FNN_TARGET_AVX2
#endif

/* One k step of the 6 x (2 vectors) tile: row i of A broadcast, times the two
 * B vectors, accumulated.  VEC, SET1, FMA are the type's intrinsics. */
#define FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W)                                                \
    do {                                                                                       \
        VEC b0 = LOAD(bp), b1 = LOAD(bp + (W));                                                \
        VEC a;                                                                                 \
        a = BCAST(ap + 0); c00 = FMA(a, b0, c00); c01 = FMA(a, b1, c01);                       \
        a = BCAST(ap + 1); c10 = FMA(a, b0, c10); c11 = FMA(a, b1, c11);                       \
        a = BCAST(ap + 2); c20 = FMA(a, b0, c20); c21 = FMA(a, b1, c21);                       \
        a = BCAST(ap + 3); c30 = FMA(a, b0, c30); c31 = FMA(a, b1, c31);                       \
        a = BCAST(ap + 4); c40 = FMA(a, b0, c40); c41 = FMA(a, b1, c41);                       \
        a = BCAST(ap + 5); c50 = FMA(a, b0, c50); c51 = FMA(a, b1, c51);                       \
        ap += 6;                                                                               \
        bp += ldbp;                                                                            \
    } while (0)

/* C row r (two vectors) = alpha * acc + beta * C (beta == 0: C not read). */
#define FNN_AVX2_STORE_ROW(VEC, MUL, FMA, LOAD, STORE, SET1, W, r, acc0, acc1)                 \
    do {                                                                                       \
        T *cr = c + (r) * ldc;                                                                 \
        VEC va = SET1(alpha);                                                                  \
        if (beta == 0) {                                                                       \
            STORE(cr, MUL(va, acc0));                                                          \
            STORE(cr + (W), MUL(va, acc1));                                                    \
        } else {                                                                               \
            VEC vb = SET1(beta);                                                               \
            STORE(cr, FMA(va, acc0, MUL(vb, LOAD(cr))));                                       \
            STORE(cr + (W), FMA(va, acc1, MUL(vb, LOAD(cr + (W)))));                           \
        }                                                                                      \
    } while (0)

#define FNN_AVX2_UKR(NAME, VEC, ZERO, BCAST, FMA, LOAD, STORE, MUL, SET1, W)                   \
    FNN_TARGET_AVX2 void NAME(int64_t k, const T *ap, const T *bp, int64_t ldbp, T *c,         \
                              int64_t ldc, T alpha, T beta)                                    \
    {                                                                                          \
        VEC c00 = ZERO(), c01 = ZERO(), c10 = ZERO(), c11 = ZERO(), c20 = ZERO(), c21 = ZERO(); \
        VEC c30 = ZERO(), c31 = ZERO(), c40 = ZERO(), c41 = ZERO(), c50 = ZERO(), c51 = ZERO(); \
        for (int r = 0; r < 6; r++) _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);    \
        int64_t p = 0;                                                                         \
        for (; p + 4 <= k; p += 4) {                                                           \
            _mm_prefetch((const char *)(ap + 6 * 16), _MM_HINT_T0);                            \
            FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W);                                           \
            FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W);                                           \
            FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W);                                           \
            FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W);                                           \
        }                                                                                      \
        for (; p < k; p++) FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W);                            \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, LOAD, STORE, SET1, W, 0, c00, c01);                  \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, LOAD, STORE, SET1, W, 1, c10, c11);                  \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, LOAD, STORE, SET1, W, 2, c20, c21);                  \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, LOAD, STORE, SET1, W, 3, c30, c31);                  \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, LOAD, STORE, SET1, W, 4, c40, c41);                  \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, LOAD, STORE, SET1, W, 5, c50, c51);                  \
    }

#define T float
FNN_AVX2_UKR(fnn_ukr_avx2_f32, __m256, _mm256_setzero_ps, _mm256_broadcast_ss, _mm256_fmadd_ps,
             _mm256_loadu_ps, _mm256_storeu_ps, _mm256_mul_ps, _mm256_set1_ps, 8)
#undef T
#define T double
FNN_AVX2_UKR(fnn_ukr_avx2_f64, __m256d, _mm256_setzero_pd, _mm256_broadcast_sd, _mm256_fmadd_pd,
             _mm256_loadu_pd, _mm256_storeu_pd, _mm256_mul_pd, _mm256_set1_pd, 4)
#undef T

#endif /* FNN_HAVE_X86 */
