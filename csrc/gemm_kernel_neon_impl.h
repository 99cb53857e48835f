/* gemm_kernel_neon_impl.h -- the NEON GEMM micro-kernel, written once for both
 * element types (included twice by isa_neon.c).  Needs
 *   T, SFX          the element type and the name suffix (fnn_template.h style);
 *   VEC, W          the vector type and its lanes (float32x4_t, 4 / float64x2_t, 2);
 *   MR, NV          the tile's rows and its width in vectors (NR = NV * W);
 *   TRANSPOSE(r)    r[0..W) (VEC) transposed in place, for the packing kernels;
 *   VLD, VST, VDUP, VFMA, VFMA_LANE, VMUL, VADD   the intrinsics (VFMA(c, a, b) =
 *                   c + a * b, VFMA_LANE(c, a, v, l) = c + a * v[l], fused on
 *                   purpose: see docs/architecture.md, "contraction").
 * One k step loads NV vectors of B and MR / W vectors of A, for MR * NV fused
 * multiply-adds by vector element into MR * NV accumulators: MR * NV + NV + MR / W
 * of the 32 vector registers (float 8 x 12: 24 + 3 + 2; double 6 x 8: 24 + 4 + 3), the
 * shapes of BLIS's armv8a configuration (sgemm 8 x 12, dgemm 6 x 8).  The
 * accumulators are an array whose loops have constant bounds: GCC and Clang
 * unroll them completely and keep every element in a register.  The parameters
 * are undefined at the end, ready for the next instantiation. */

/* C[0:MR, 0:NV*W] = alpha * Ap @ Bp + beta * C (beta == 0: C not read); Ap (k, MR)
 * packed, Bp k rows of NV*W at stride ldbp, C row stride ldc. */
void SFX(fnn_ukr_neon)(int64_t k, const T *ap, const T *bp, int64_t ldbp, T *c, int64_t ldc,
                       T alpha, T beta)
{
    VEC acc[MR][NV];
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < NV; j++) acc[i][j] = VDUP((T)0);
    for (int64_t p = 0; p < k; p++) {
        VEC b[NV], a[MR / W];
#pragma GCC unroll 8
        for (int j = 0; j < NV; j++) b[j] = VLD(bp + j * W);
#pragma GCC unroll 8
        for (int v = 0; v < MR / W; v++) a[v] = VLD(ap + v * W);
#pragma GCC unroll 32
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
            for (int j = 0; j < NV; j++) acc[i][j] = VFMA_LANE(acc[i][j], b[j], a[i / W], i % W);
        ap += MR;
        bp += ldbp;
    }
    const VEC va = VDUP(alpha), vb = VDUP(beta);
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++) {
        T *cr = c + i * ldc;
#pragma GCC unroll 8
        for (int j = 0; j < NV; j++) {
            VEC x = acc[i][j];
            if (alpha != 1) x = VMUL(x, va); /* alpha == 1: the accumulator bit for bit */
            if (beta == 1)
                x = VADD(x, VLD(cr + j * W));
            else if (beta != 0)
                x = VFMA(x, vb, VLD(cr + j * W));
            VST(cr + j * W, x);
        }
    }
}

/* dst[p*R + i] = src[i*ld + p] for i < R, p < kc: one full panel of R rows of a
 * row-major matrix (R a multiple of W), W x W blocks at a time through
 * TRANSPOSE (r[q] row q in, column q out). */
FNN_INLINE void SFX(fnn_pack_rows_neon)(T *FNN_RESTRICT dst, const T *FNN_RESTRICT src,
                                        int64_t ld, int64_t kc, const int R)
{
    int64_t p = 0;
    for (; p + W <= kc; p += W) {
#pragma GCC unroll 8
        for (int i0 = 0; i0 < R; i0 += W) {
            VEC r[W];
#pragma GCC unroll 4
            for (int q = 0; q < W; q++) r[q] = VLD(src + (i0 + q) * ld + p);
            TRANSPOSE(r);
#pragma GCC unroll 4
            for (int q = 0; q < W; q++) VST(dst + (p + q) * R + i0, r[q]);
        }
    }
    for (; p < kc; p++)
        for (int i = 0; i < R; i++) dst[p * R + i] = src[i * ld + p];
}

/* One full MR-row panel of non-transposed A (row stride lda), kc columns:
 * dst[p*MR + i] = a[i*lda + p]. */
void SFX(fnn_pack_a_neon)(T *dst, const T *a, int64_t lda, int64_t kc)
{
    SFX(fnn_pack_rows_neon)(dst, a, lda, kc, MR);
}

/* One full NR-wide panel of transposed B (panel rows j at b + j*ldb), kc values
 * each: dst[p*NR + j] = b[j*ldb + p]. */
void SFX(fnn_pack_bt_neon)(T *dst, const T *b, int64_t ldb, int64_t kc)
{
    SFX(fnn_pack_rows_neon)(dst, b, ldb, kc, NV * W);
}

#undef T
#undef SFX
#undef VEC
#undef W
#undef MR
#undef NV
#undef VLD
#undef VST
#undef VDUP
#undef VFMA
#undef VFMA_LANE
#undef VMUL
#undef VADD
#undef TRANSPOSE
