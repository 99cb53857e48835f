/*
 * gemm_kernel_avx2.c -- AVX2 + FMA micro-kernels (x86-64 only).
 *
 * Only these functions carry the avx2/fma target attribute; the rest of the
 * extension is built for the baseline ISA, and cpu.c calls them only when
 * the CPU supports AVX2 + FMA.
 *
 * float: 6 x 16 tile = 6 rows x 2 ymm = 12 accumulators, 2 B loads and 6
 * broadcasts per k step (BLIS's haswell/zen3 shape).  double: 6 x 8 likewise.
 *
 * With GCC and Clang the k loop is inline assembly: the compilers' register
 * allocation of the intrinsic version spills accumulators and inserts register
 * moves (measured: ~25% slower).  The asm uses exactly the 16 ymm registers
 * (12 accumulators, 2 B vectors, 2 A broadcasts) handed to it as operands, so
 * the compiler still owns the register assignment and the store of C is plain
 * intrinsics.  Other compilers get the intrinsic loop.
 */
#include "fnn_internal.h"

#ifdef FNN_HAVE_X86
#include <immintrin.h>

#if defined(__GNUC__) || defined(__clang__)
#define FNN_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FNN_AVX2_ASM 1
#else
#define FNN_TARGET_AVX2
#endif

/* Bytes ahead of the A panel read position that the k loop prefetches. */
#define FNN_PF_A "384"

#ifdef FNN_AVX2_ASM
/* One k step.  OA: byte offset of this step's 6 A values from %[ap];
 * B0/B1: memory operands of this step's B row (two vectors); BC/PS: the
 * broadcast suffix (ss/sd) and the arithmetic suffix (ps/pd); ES: element size. */
#define FNN_ASM_STEP(OA, B0, B1, BC, PS, ES)                                                       \
    "vmovups " B0 ", %[b0]\n\t"                                                                    \
    "vmovups " B1 ", %[b1]\n\t"                                                                    \
    "vbroadcast" BC " " OA "+0*" ES "(%[ap]), %[a0]\n\t"                                           \
    "vbroadcast" BC " " OA "+1*" ES "(%[ap]), %[a1]\n\t"                                           \
    "vfmadd231" PS " %[b0], %[a0], %[c00]\n\t"                                                     \
    "vfmadd231" PS " %[b1], %[a0], %[c01]\n\t"                                                     \
    "vfmadd231" PS " %[b0], %[a1], %[c10]\n\t"                                                     \
    "vfmadd231" PS " %[b1], %[a1], %[c11]\n\t"                                                     \
    "vbroadcast" BC " " OA "+2*" ES "(%[ap]), %[a0]\n\t"                                           \
    "vbroadcast" BC " " OA "+3*" ES "(%[ap]), %[a1]\n\t"                                           \
    "vfmadd231" PS " %[b0], %[a0], %[c20]\n\t"                                                     \
    "vfmadd231" PS " %[b1], %[a0], %[c21]\n\t"                                                     \
    "vfmadd231" PS " %[b0], %[a1], %[c30]\n\t"                                                     \
    "vfmadd231" PS " %[b1], %[a1], %[c31]\n\t"                                                     \
    "vbroadcast" BC " " OA "+4*" ES "(%[ap]), %[a0]\n\t"                                           \
    "vbroadcast" BC " " OA "+5*" ES "(%[ap]), %[a1]\n\t"                                           \
    "vfmadd231" PS " %[b0], %[a0], %[c40]\n\t"                                                     \
    "vfmadd231" PS " %[b1], %[a0], %[c41]\n\t"                                                     \
    "vfmadd231" PS " %[b0], %[a1], %[c50]\n\t"                                                     \
    "vfmadd231" PS " %[b1], %[a1], %[c51]\n\t"

/* The k loop: 4 steps per iteration (A offsets 0, 6, 12, 18 elements; B rows
 * bp, bp+ldb, bp+2ldb, bp+3ldb), then the k % 4 remaining steps one by one.
 * A is prefetched FNN_PF_A bytes ahead (two lines per 4 steps cover the 24 or
 * 48 elements consumed). */
#define FNN_ASM_KLOOP(BC, PS, ES)                                                                  \
    "vxorps %[c00], %[c00], %[c00]\n\t"                                                             \
    "vxorps %[c01], %[c01], %[c01]\n\t"                                                             \
    "vxorps %[c10], %[c10], %[c10]\n\t"                                                             \
    "vxorps %[c11], %[c11], %[c11]\n\t"                                                             \
    "vxorps %[c20], %[c20], %[c20]\n\t"                                                             \
    "vxorps %[c21], %[c21], %[c21]\n\t"                                                             \
    "vxorps %[c30], %[c30], %[c30]\n\t"                                                             \
    "vxorps %[c31], %[c31], %[c31]\n\t"                                                             \
    "vxorps %[c40], %[c40], %[c40]\n\t"                                                             \
    "vxorps %[c41], %[c41], %[c41]\n\t"                                                             \
    "vxorps %[c50], %[c50], %[c50]\n\t"                                                             \
    "vxorps %[c51], %[c51], %[c51]\n\t"                                                             \
    "test %[k4], %[k4]\n\t"                                                                        \
    "jz 2f\n\t"                                                                                    \
    ".p2align 5\n"                                                                                 \
    "1:\n\t"                                                                                       \
    "prefetcht0 " FNN_PF_A "(%[ap])\n\t"                                                           \
    FNN_ASM_STEP("0*6*" ES, "(%[bp])", "32(%[bp])", BC, PS, ES)                                    \
    FNN_ASM_STEP("1*6*" ES, "(%[bp],%[ldb],1)", "32(%[bp],%[ldb],1)", BC, PS, ES)                  \
    "prefetcht0 " FNN_PF_A "+64(%[ap])\n\t"                                                        \
    FNN_ASM_STEP("2*6*" ES, "(%[bp],%[ldb],2)", "32(%[bp],%[ldb],2)", BC, PS, ES)                  \
    FNN_ASM_STEP("3*6*" ES, "(%[bp],%[ldb3],1)", "32(%[bp],%[ldb3],1)", BC, PS, ES)                \
    "add $4*6*" ES ", %[ap]\n\t"                                                                   \
    "lea (%[bp],%[ldb],4), %[bp]\n\t"                                                              \
    "dec %[k4]\n\t"                                                                                \
    "jnz 1b\n"                                                                                     \
    "2:\n\t"                                                                                       \
    "test %[kl], %[kl]\n\t"                                                                        \
    "jz 4f\n"                                                                                      \
    "3:\n\t"                                                                                       \
    FNN_ASM_STEP("0", "(%[bp])", "32(%[bp])", BC, PS, ES)                                          \
    "add $6*" ES ", %[ap]\n\t"                                                                     \
    "add %[ldb], %[bp]\n\t"                                                                        \
    "dec %[kl]\n\t"                                                                                \
    "jnz 3b\n"                                                                                     \
    "4:\n\t"

#define FNN_ASM_OPERANDS                                                                           \
    : [c00] "=x"(c00), [c01] "=x"(c01), [c10] "=x"(c10), [c11] "=x"(c11), [c20] "=x"(c20),        \
      [c21] "=x"(c21), [c30] "=x"(c30), [c31] "=x"(c31), [c40] "=x"(c40), [c41] "=x"(c41),        \
      [c50] "=x"(c50), [c51] "=x"(c51), [a0] "=x"(a0), [a1] "=x"(a1), [b0] "=x"(b0),              \
      [b1] "=x"(b1), [ap] "+r"(ap), [bp] "+r"(bp), [k4] "+r"(k4), [kl] "+r"(kl)                  \
    : [ldb] "r"(ldb), [ldb3] "r"(ldb3)                                                             \
    : "cc", "memory"
#endif /* FNN_AVX2_ASM */

/* One k step of the 6 x (2 vectors) tile (intrinsic fallback). */
#define FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W)                                                    \
    do {                                                                                           \
        VEC b0 = LOAD(bp), b1 = LOAD(bp + (W));                                                    \
        VEC a;                                                                                     \
        a = BCAST(ap + 0); c00 = FMA(a, b0, c00); c01 = FMA(a, b1, c01);                           \
        a = BCAST(ap + 1); c10 = FMA(a, b0, c10); c11 = FMA(a, b1, c11);                           \
        a = BCAST(ap + 2); c20 = FMA(a, b0, c20); c21 = FMA(a, b1, c21);                           \
        a = BCAST(ap + 3); c30 = FMA(a, b0, c30); c31 = FMA(a, b1, c31);                           \
        a = BCAST(ap + 4); c40 = FMA(a, b0, c40); c41 = FMA(a, b1, c41);                           \
        a = BCAST(ap + 5); c50 = FMA(a, b0, c50); c51 = FMA(a, b1, c51);                           \
        ap += 6;                                                                                   \
        bp += ldbp;                                                                                \
    } while (0)

/* C row r (two vectors) = alpha * acc + beta * C (beta == 0: C not read;
 * alpha == 1: no multiply, so the result is the accumulator bit for bit). */
#define FNN_AVX2_STORE_ROW(VEC, MUL, FMA, ADD, LOAD, STORE, SET1, W, r, acc0, acc1)                \
    do {                                                                                           \
        T *cr = c + (r) * ldc;                                                                     \
        VEC x0 = acc0, x1 = acc1;                                                                  \
        if (alpha != 1) {                                                                          \
            x0 = MUL(va, x0);                                                                      \
            x1 = MUL(va, x1);                                                                      \
        }                                                                                          \
        if (beta == 1) {                                                                           \
            x0 = ADD(x0, LOAD(cr));                                                                \
            x1 = ADD(x1, LOAD(cr + (W)));                                                          \
        } else if (beta != 0) {                                                                    \
            x0 = FMA(vb, LOAD(cr), x0);                                                            \
            x1 = FMA(vb, LOAD(cr + (W)), x1);                                                      \
        }                                                                                          \
        STORE(cr, x0);                                                                             \
        STORE(cr + (W), x1);                                                                       \
    } while (0)

#define FNN_AVX2_STORE_ALL(VEC, MUL, FMA, ADD, LOAD, STORE, SET1, W)                               \
    do {                                                                                           \
        const VEC va = SET1(alpha), vb = SET1(beta);                                               \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, ADD, LOAD, STORE, SET1, W, 0, c00, c01);                 \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, ADD, LOAD, STORE, SET1, W, 1, c10, c11);                 \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, ADD, LOAD, STORE, SET1, W, 2, c20, c21);                 \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, ADD, LOAD, STORE, SET1, W, 3, c30, c31);                 \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, ADD, LOAD, STORE, SET1, W, 4, c40, c41);                 \
        FNN_AVX2_STORE_ROW(VEC, MUL, FMA, ADD, LOAD, STORE, SET1, W, 5, c50, c51);                 \
    } while (0)

#ifdef FNN_AVX2_ASM
#define FNN_AVX2_UKR(NAME, VEC, ZERO, BCAST, FMA, ADD, LOAD, STORE, MUL, SET1, W, BC, PS, ES)      \
    FNN_TARGET_AVX2 void NAME(int64_t k, const T *ap, const T *bp, int64_t ldbp, T *c,             \
                              int64_t ldc, T alpha, T beta)                                        \
    {                                                                                              \
        VEC c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51; /* zeroed by the asm */    \
        VEC a0, a1, b0, b1;                                                                        \
        for (int r = 0; r < 6; r++) {                                                              \
            _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);                                \
            _mm_prefetch((const char *)(c + r * ldc + 2 * (W) - 1), _MM_HINT_T0);                  \
        }                                                                                          \
        int64_t k4 = k / 4, kl = k % 4;                                                            \
        const int64_t ldb = ldbp * (int64_t)sizeof(T), ldb3 = 3 * ldb;                             \
        __asm__ volatile(FNN_ASM_KLOOP(BC, PS, ES) FNN_ASM_OPERANDS);                              \
        FNN_AVX2_STORE_ALL(VEC, MUL, FMA, ADD, LOAD, STORE, SET1, W);                              \
    }
#else
#define FNN_AVX2_UKR(NAME, VEC, ZERO, BCAST, FMA, ADD, LOAD, STORE, MUL, SET1, W, BC, PS, ES)      \
    FNN_TARGET_AVX2 void NAME(int64_t k, const T *ap, const T *bp, int64_t ldbp, T *c,             \
                              int64_t ldc, T alpha, T beta)                                        \
    {                                                                                              \
        VEC c00 = ZERO(), c01 = ZERO(), c10 = ZERO(), c11 = ZERO(), c20 = ZERO(), c21 = ZERO();    \
        VEC c30 = ZERO(), c31 = ZERO(), c40 = ZERO(), c41 = ZERO(), c50 = ZERO(), c51 = ZERO();    \
        for (int r = 0; r < 6; r++) _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);        \
        int64_t p = 0;                                                                             \
        for (; p + 4 <= k; p += 4) {                                                               \
            _mm_prefetch((const char *)(ap + 6 * 16), _MM_HINT_T0);                                \
            FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W);                                               \
            FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W);                                               \
            FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W);                                               \
            FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W);                                               \
        }                                                                                          \
        for (; p < k; p++) FNN_AVX2_STEP(VEC, BCAST, FMA, LOAD, W);                                \
        FNN_AVX2_STORE_ALL(VEC, MUL, FMA, ADD, LOAD, STORE, SET1, W);                              \
    }
#endif

#define T float
FNN_AVX2_UKR(fnn_ukr_avx2_f32, __m256, _mm256_setzero_ps, _mm256_broadcast_ss, _mm256_fmadd_ps,
             _mm256_add_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_mul_ps, _mm256_set1_ps, 8,
             "ss", "ps", "4")
#undef T
#define T double
FNN_AVX2_UKR(fnn_ukr_avx2_f64, __m256d, _mm256_setzero_pd, _mm256_broadcast_sd, _mm256_fmadd_pd,
             _mm256_add_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_mul_pd, _mm256_set1_pd, 4,
             "sd", "pd", "8")
#undef T


/* ---- packing kernels (float) ---------------------------------------------- */
/* In-register 8 x 8 transpose: r[i] = row i in, r[j] = column j out. */
FNN_TARGET_AVX2 static inline void fnn_transpose8_ps(__m256 r[8])
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* One full 6-row panel of non-transposed A (row stride lda), kc columns:
 * dst[p*6 + i] = a[i*lda + p].  8 columns at a time through the transpose;
 * each column's 6 values are written as 4 + 2 (no write past the panel). */
FNN_TARGET_AVX2 void fnn_pack_a6_avx2_f32(float *dst, const float *a, int64_t lda, int64_t kc)
{
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 r[8];
        for (int i = 0; i < 6; i++) r[i] = _mm256_loadu_ps(a + i * lda + p);
        r[6] = r[7] = _mm256_setzero_ps();
        fnn_transpose8_ps(r);
        float *d = dst + p * 6;
        for (int j = 0; j < 8; j++) {
            _mm_storeu_ps(d + j * 6, _mm256_castps256_ps128(r[j]));
            _mm_storel_pi((__m64 *)(d + j * 6 + 4), _mm256_extractf128_ps(r[j], 1));
        }
    }
    for (; p < kc; p++)
        for (int i = 0; i < 6; i++) dst[p * 6 + i] = a[i * lda + p];
}

/* One full 16-wide panel of transposed B (B stored (n, ldb), panel rows
 * j = 0..15 at b + j*ldb), kc values each: dst[p*16 + j] = b[j*ldb + p]. */
FNN_TARGET_AVX2 void fnn_pack_bt16_avx2_f32(float *dst, const float *b, int64_t ldb, int64_t kc)
{
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        for (int h = 0; h < 2; h++) {
            __m256 r[8];
            for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(b + (h * 8 + j) * ldb + p);
            fnn_transpose8_ps(r);
            for (int q = 0; q < 8; q++) _mm256_storeu_ps(dst + (p + q) * 16 + h * 8, r[q]);
        }
    }
    for (; p < kc; p++)
        for (int j = 0; j < 16; j++) dst[p * 16 + j] = b[j * ldb + p];
}

/* ---- edge tiles (float) --------------------------------------------------- */
/* rows x cols corner of a 6 x 16 tile (rows <= 6, cols <= 16) straight into C:
 * only `rows` accumulator rows are computed and C is read and written through
 * lane masks, so no temporary tile and no wasted rows.  Bp must hold 16
 * readable values per row (packed panels are zero-padded). */
#define FNN_EDGE_ROW(i)                                                                            \
    if (R > (i)) {                                                                                 \
        const __m256 a = _mm256_broadcast_ss(ap + p * 6 + (i));                                    \
        x##i##0 = _mm256_fmadd_ps(a, b0, x##i##0);                                                 \
        x##i##1 = _mm256_fmadd_ps(a, b1, x##i##1);                                                 \
    }
#define FNN_EDGE_STORE(i)                                                                          \
    if (R > (i)) {                                                                                 \
        float *cr = c + (i) * ldc;                                                                 \
        __m256 y0 = x##i##0, y1 = x##i##1;                                                         \
        if (alpha != 1) {                                                                          \
            y0 = _mm256_mul_ps(va, y0);                                                            \
            y1 = _mm256_mul_ps(va, y1);                                                            \
        }                                                                                          \
        if (beta == 1) {                                                                           \
            y0 = _mm256_add_ps(y0, _mm256_maskload_ps(cr, m0));                                    \
            y1 = _mm256_add_ps(y1, _mm256_maskload_ps(cr + 8, m1));                                \
        } else if (beta != 0) {                                                                    \
            y0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr, m0), y0);                              \
            y1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8, m1), y1);                          \
        }                                                                                          \
        _mm256_maskstore_ps(cr, m0, y0);                                                           \
        _mm256_maskstore_ps(cr + 8, m1, y1);                                                       \
    }

/* Named accumulators (not an array: GCC would keep an array in memory). */
FNN_TARGET_AVX2 static inline __attribute__((always_inline)) void
fnn_edge_body_f32(const int R, int64_t k, int64_t cols, const float *ap, const float *bp,
                  int64_t ldbp, float *c, int64_t ldc, float alpha, float beta)
{
    __m256 x00 = _mm256_setzero_ps(), x01 = x00, x10 = x00, x11 = x00, x20 = x00, x21 = x00;
    __m256 x30 = x00, x31 = x00, x40 = x00, x41 = x00, x50 = x00, x51 = x00;
    for (int64_t p = 0; p < k; p++) {
        const __m256 b0 = _mm256_loadu_ps(bp + p * ldbp), b1 = _mm256_loadu_ps(bp + p * ldbp + 8);
        FNN_EDGE_ROW(0) FNN_EDGE_ROW(1) FNN_EDGE_ROW(2) FNN_EDGE_ROW(3) FNN_EDGE_ROW(4)
        FNN_EDGE_ROW(5)
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)cols), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)cols - 8), lane);
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    FNN_EDGE_STORE(0) FNN_EDGE_STORE(1) FNN_EDGE_STORE(2) FNN_EDGE_STORE(3) FNN_EDGE_STORE(4)
    FNN_EDGE_STORE(5)
}

FNN_TARGET_AVX2 void fnn_ukr_edge_avx2_f32(int64_t k, int64_t rows, int64_t cols, const float *ap,
                                           const float *bp, int64_t ldbp, float *c, int64_t ldc,
                                           float alpha, float beta)
{
    switch (rows) {
    case 1: fnn_edge_body_f32(1, k, cols, ap, bp, ldbp, c, ldc, alpha, beta); break;
    case 2: fnn_edge_body_f32(2, k, cols, ap, bp, ldbp, c, ldc, alpha, beta); break;
    case 3: fnn_edge_body_f32(3, k, cols, ap, bp, ldbp, c, ldc, alpha, beta); break;
    case 4: fnn_edge_body_f32(4, k, cols, ap, bp, ldbp, c, ldc, alpha, beta); break;
    case 5: fnn_edge_body_f32(5, k, cols, ap, bp, ldbp, c, ldc, alpha, beta); break;
    default: fnn_edge_body_f32(6, k, cols, ap, bp, ldbp, c, ldc, alpha, beta); break;
    }
}

#endif /* FNN_HAVE_X86 */
