/*
 * gemm_kernel_avx512_impl.h -- AVX-512 GEMM micro-kernels for one element type,
 * included twice by gemm_kernel_avx512.c (see there for the design) with
 *   T, SFX(f)      the element type and name suffix
 *   V, M, VL       the zmm vector type, its opmask type, lanes per vector
 *   MR, NR         the tile (NR = 2 * VL)
 *   VLOAD/VMLOAD/VSTORE/VMSTORE/VFMA/VMUL/VADD/VSET1/VZERO, VTRANSPOSE
 * Every function carries FNN_TARGET_AVX512.
 */

/* One k step of an R x (NV vectors) tile: row i's accumulators
 * x<i>_0, x<i>_1 += A[i] * B row (one broadcast of A[i], two FMAs). */
#define FNN_Z_ROW(i, OA)                                                                         \
    if (R > (i)) {                                                                               \
        const V a_ = VSET1(ap[OA + (i)]);                                                        \
        x##i##_0 = VFMA(a_, b0, x##i##_0);                                                       \
        if (NV > 1) x##i##_1 = VFMA(a_, b1, x##i##_1);                                           \
    }
#define FNN_Z_STEP(OA, OB)                                                                       \
    do {                                                                                         \
        const V b0 = EDGE ? VMLOAD(m0, bp + (OB)) : VLOAD(bp + (OB));                            \
        const V b1 = NV > 1 ? (EDGE ? VMLOAD(m1, bp + (OB) + VL) : VLOAD(bp + (OB) + VL)) : b0;  \
        FNN_Z_ROW(0, OA) FNN_Z_ROW(1, OA) FNN_Z_ROW(2, OA) FNN_Z_ROW(3, OA) FNN_Z_ROW(4, OA)     \
        FNN_Z_ROW(5, OA) FNN_Z_ROW(6, OA) FNN_Z_ROW(7, OA) FNN_Z_ROW(8, OA) FNN_Z_ROW(9, OA)     \
        FNN_Z_ROW(10, OA) FNN_Z_ROW(11, OA) FNN_Z_ROW(12, OA) FNN_Z_ROW(13, OA)                  \
    } while (0)

/* C row i = alpha * acc + beta * C (beta == 0: C not read; alpha == 1: no
 * multiply, so the result is the accumulator bit for bit); edge: lane masks. */

#define FNN_Z_STORE1(i, j, MJ)                                                                   \
    do {                                                                                         \
        T *cr_ = c + (i) * ldc + (j) * VL;                                                       \
        V y_ = x##i##_##j;                                                                       \
        if (alpha != 1) y_ = VMUL(va, y_);                                                       \
        if (beta == 1)                                                                           \
            y_ = VADD(y_, EDGE ? VMLOAD(MJ, cr_) : VLOAD(cr_));                                  \
        else if (beta != 0)                                                                      \
            y_ = VFMA(vb, EDGE ? VMLOAD(MJ, cr_) : VLOAD(cr_), y_);                              \
        if (EDGE)                                                                                \
            VMSTORE(cr_, MJ, y_);                                                                \
        else                                                                                     \
            VSTORE(cr_, y_);                                                                     \
    } while (0)
#define FNN_Z_STORE(i)                                                                           \
    if (R > (i)) {                                                                               \
        FNN_Z_STORE1(i, 0, m0);                                                                  \
        if (NV > 1) FNN_Z_STORE1(i, 1, m1);                                                      \
    }

/* The R x cols tile (R <= MR rows, NV vectors of VL columns, cols <= NV * VL)
 * of C[0:R, 0:cols] = alpha * Ap @ Bp + beta * C.  EDGE == 0: the full MR x NR
 * tile, plain loads and stores; EDGE == 1: B and C through the opmasks of cols.
 * Named accumulators (an array would live in memory); the unused ones of a
 * smaller R or NV are removed by the compiler.  The k loop prefetches the A
 * panel PF_A steps ahead (one prefetch per step: MR * sizeof(T) <= 64 bytes). */
FNN_TARGET_AVX512 FNN_INLINE void SFX(fnn_z_body)(const int R, const int NV, const int EDGE,
                                                  int64_t k, int64_t cols, const T *ap,
                                                  const T *bp, int64_t ldbp, T *c, int64_t ldc,
                                                  T alpha, T beta)
{
    const M m0 = (M)(cols >= VL ? (M)~(M)0 : (M)(((uint32_t)1 << cols) - 1));
    const M m1 = (M)(cols >= 2 * VL ? (M)~(M)0
                                    : cols <= VL ? (M)0 : (M)(((uint32_t)1 << (cols - VL)) - 1));
    V x0_0 = VZERO(), x0_1 = x0_0, x1_0 = x0_0, x1_1 = x0_0, x2_0 = x0_0, x2_1 = x0_0;
    V x3_0 = x0_0, x3_1 = x0_0, x4_0 = x0_0, x4_1 = x0_0, x5_0 = x0_0, x5_1 = x0_0;
    V x6_0 = x0_0, x6_1 = x0_0, x7_0 = x0_0, x7_1 = x0_0, x8_0 = x0_0, x8_1 = x0_0;
    V x9_0 = x0_0, x9_1 = x0_0, x10_0 = x0_0, x10_1 = x0_0, x11_0 = x0_0, x11_1 = x0_0;
    V x12_0 = x0_0, x12_1 = x0_0, x13_0 = x0_0, x13_1 = x0_0;
    /* The C tile is prefetched into L2 now (its rows may come from L3 or memory)
     * and into L1 during the last NV * R steps, one line each: prefetched into
     * L1 now, the lines would be evicted again before the stores (C rows 4 KiB
     * apart share one of L1's 64 sets, 12 ways, with the A and B streams). */
    for (int i = 0; i < R; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T1);
        if (NV > 1) _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T1);
    }
    const int64_t kmain = k > NV * R ? k - NV * R : 0;
    int64_t p = 0;
    /* One step per iteration: GCC's register allocation of an unrolled body
     * rotates the accumulators through other registers and spills. */
#pragma GCC unroll 1
    for (; p < kmain; p++) {
        _mm_prefetch((const char *)(ap + PF_A * MR), _MM_HINT_T0);
        FNN_Z_STEP(0, 0);
        ap += MR;
        bp += ldbp;
    }
#pragma GCC unroll 1
    for (int64_t l = 0; p < k; p++, l++) {
        /* A: also the first steps of the next panel (packed right after this one) */
        _mm_prefetch((const char *)(ap + PF_A * MR), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + (l / NV) * ldc + (l % NV) * VL), _MM_HINT_T0);
        FNN_Z_STEP(0, 0);
        ap += MR;
        bp += ldbp;
    }
    const V va = VSET1(alpha), vb = VSET1(beta);
    FNN_Z_STORE(0) FNN_Z_STORE(1) FNN_Z_STORE(2) FNN_Z_STORE(3) FNN_Z_STORE(4) FNN_Z_STORE(5)
    FNN_Z_STORE(6) FNN_Z_STORE(7) FNN_Z_STORE(8) FNN_Z_STORE(9) FNN_Z_STORE(10) FNN_Z_STORE(11)
    FNN_Z_STORE(12) FNN_Z_STORE(13)
    (void)m0;
    (void)m1;
}

/* MR x NR tile: C = alpha * Ap @ Bp + beta * C (the fnn_ukr contract). */
FNN_TARGET_AVX512 void SFX(fnn_ukr_avx512)(int64_t k, const T *ap, const T *bp, int64_t ldbp,
                                           T *c, int64_t ldc, T alpha, T beta)
{
    SFX(fnn_z_body)(MR, 2, 0, k, NR, ap, bp, ldbp, c, ldc, alpha, beta);
}

/* rows x cols corner (rows <= MR, cols <= NR) straight into C (fnn_ukr_edge):
 * only `rows` accumulator rows and ceil(cols / VL) vectors are computed. */
#define FNN_Z_EDGE_CASE(r)                                                                       \
    case r:                                                                                      \
        if (cols > VL)                                                                           \
            SFX(fnn_z_body)(r, 2, 1, k, cols, ap, bp, ldbp, c, ldc, alpha, beta);                \
        else                                                                                     \
            SFX(fnn_z_body)(r, 1, 1, k, cols, ap, bp, ldbp, c, ldc, alpha, beta);                \
        break;
FNN_TARGET_AVX512 void SFX(fnn_ukr_edge_avx512)(int64_t k, int64_t rows, int64_t cols,
                                                const T *ap, const T *bp, int64_t ldbp, T *c,
                                                int64_t ldc, T alpha, T beta)
{
    switch (rows < MR ? rows : MR) {
        FNN_Z_EDGE_CASE(1) FNN_Z_EDGE_CASE(2) FNN_Z_EDGE_CASE(3) FNN_Z_EDGE_CASE(4)
        FNN_Z_EDGE_CASE(5) FNN_Z_EDGE_CASE(6) FNN_Z_EDGE_CASE(7) FNN_Z_EDGE_CASE(8)
        FNN_Z_EDGE_CASE(9) FNN_Z_EDGE_CASE(10) FNN_Z_EDGE_CASE(11) FNN_Z_EDGE_CASE(12)
#if MR > 12
        FNN_Z_EDGE_CASE(13)
#endif
#if MR > 13
        FNN_Z_EDGE_CASE(14)
#endif
    default: break;
    }
}
#undef FNN_Z_EDGE_CASE

/* ---- packing: dst[p*ROWS + i] = src[i*ld + p], i < ROWS, p < kc -------------- */
/* ROWS source rows (row stride ld) -> kc packed columns of ROWS values each:
 * blocks of VL rows x VL columns are transposed in registers (a partial block
 * of rows padded with zeros), each column stored through a lane mask so
 * nothing is written past its ROWS values; the kc % VL last columns by scalars. */
FNN_TARGET_AVX512 FNN_INLINE void SFX(fnn_z_pack_t)(const int ROWS, T *dst, const T *src,
                                                    int64_t ld, int64_t kc)
{
    int64_t p = 0;
    for (; p + VL <= kc; p += VL) {
        for (int h = 0; h * VL < ROWS; h++) {
            const int nrow = ROWS - h * VL < VL ? ROWS - h * VL : VL;
            const M mk = (M)(nrow == VL ? (M)~(M)0 : (M)(((uint32_t)1 << nrow) - 1));
            V r[VL];
            for (int i = 0; i < VL; i++)
                r[i] = i < nrow ? VLOAD(src + (int64_t)(h * VL + i) * ld + p) : VZERO();
            VTRANSPOSE(r);
            T *d = dst + p * ROWS + h * VL;
            for (int j = 0; j < VL; j++) {
                if (nrow == VL)
                    VSTORE(d + j * ROWS, r[j]);
                else
                    VMSTORE(d + j * ROWS, mk, r[j]);
            }
        }
    }
    for (; p < kc; p++)
        for (int i = 0; i < ROWS; i++) dst[p * ROWS + i] = src[(int64_t)i * ld + p];
}

/* One full MR-row panel of non-transposed A (fnn_pack): dst[p*MR + i] = a[i*lda + p]. */
FNN_TARGET_AVX512 void SFX(fnn_pack_a_avx512)(T *dst, const T *a, int64_t lda, int64_t kc)
{
    SFX(fnn_z_pack_t)(MR, dst, a, lda, kc);
}

/* One full NR-wide panel of transposed B (fnn_pack): dst[p*NR + j] = b[j*ldb + p]. */
FNN_TARGET_AVX512 void SFX(fnn_pack_bt_avx512)(T *dst, const T *b, int64_t ldb, int64_t kc)
{
    SFX(fnn_z_pack_t)(NR, dst, b, ldb, kc);
}
