/* gemm_bf16_pack_impl.h -- the bf16 GEMM's packing loops (float -> bf16 while
 * packing), compiled once per ISA: define FNN_BF16_ISA (generic, avx512bf16)
 * and FNN_BF16_TARGET (a target attribute, or empty) before including it.
 * The loops are written for the compiler's vectorizer: the conversion is
 * branch-free integer arithmetic (fnn_bf16_from_bits), the inner loops run
 * over contiguous source values.  Layouts: fnn_internal.h. */
#define FNN_BF16_CAT_(a, b, c) a##b##c
#define FNN_BF16_CAT(a, b, c) FNN_BF16_CAT_(a, b, c)
#define FNN_BF16_FN(what) FNN_BF16_CAT(fnn_, what, FNN_BF16_CAT(_, FNN_BF16_ISA, _bf16))

/* dst[0:n] = bf16 of s[0:n]; s read as raw bits. */
FNN_BF16_TARGET static void FNN_BF16_FN(cvt_run)(uint16_t *FNN_RESTRICT d,
                                                 const float *FNN_RESTRICT s, int64_t n)
{
    const uint32_t *u = (const uint32_t *)(const void *)s;
    for (int64_t i = 0; i < n; i++) {
        const uint32_t x = u[i], mag = x & 0x7fffffffu;
        const uint32_t rne = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
        const uint32_t nan = (x >> 16) | 0x40u, zero = (x >> 16) & 0x8000u;
        d[i] = (uint16_t)(mag > 0x7f800000u ? nan : mag < 0x00800000u ? zero : rne);
    }
}

/* One A panel: op(A) rows [0, rows) (zero-filled to width = MR), k [0, kc)
 * (zero-filled to kp); op(A)(i, p) = trans ? src[p*ld + i] : src[i*ld + p].
 * Element (i, p) at (p / ka) * width * ka + i * ka + p % ka. */
FNN_BF16_TARGET void FNN_BF16_FN(pack_a)(uint16_t *dst, const float *src, int64_t ld, int trans,
                                         int64_t rows, int64_t kc, int64_t kp, int64_t width,
                                         int64_t ka)
{
    uint16_t run[64];
    if (!trans) {
        /* row i of the panel is contiguous in src: convert ka values at a time */
        for (int64_t i = 0; i < width; i++) {
            for (int64_t p0 = 0; p0 < kp; p0 += ka) {
                uint16_t *d = dst + (p0 / ka) * width * ka + i * ka;
                const int64_t nv = i < rows ? FNN_MAX(0, FNN_MIN(ka, kc - p0)) : 0;
                if (nv > 0) FNN_BF16_FN(cvt_run)(d, src + i * ld + p0, nv);
                for (int64_t q = nv; q < ka; q++) d[q] = 0;
            }
        }
        return;
    }
    /* transposed: row p of src holds element p of every panel row (width <= 64) */
    for (int64_t p = 0; p < kp; p++) {
        uint16_t *d = dst + (p / ka) * width * ka + p % ka;
        const int64_t nv = p < kc ? rows : 0;
        if (nv > 0) FNN_BF16_FN(cvt_run)(run, src + p * ld, nv);
        for (int64_t i = 0; i < width; i++) d[i * ka] = i < nv ? run[i] : 0;
    }
}

/* One B panel: op(B) cols [0, cols) (zero-filled to width = NR), k [0, kc)
 * (zero-filled to kp, even); op(B)(p, j) = trans ? src[j*ld + p] : src[p*ld + j].
 * Element (p, j) at (p / 2) * width * 2 + j * 2 + p % 2. */
FNN_BF16_TARGET void FNN_BF16_FN(pack_b)(uint16_t *dst, const float *src, int64_t ld, int trans,
                                         int64_t cols, int64_t kc, int64_t kp, int64_t width,
                                         int64_t ka)
{
    (void)ka;
    uint16_t r0[64], r1[64];
    if (!trans) {
        /* two source rows (k, k+1) at a time, interleaved into pairs */
        for (int64_t p = 0; p < kp; p += 2) {
            uint16_t *d = dst + (p / 2) * width * 2;
            for (int64_t j0 = 0; j0 < width; j0 += 64) {
                const int64_t nj = FNN_MIN(64, width - j0);
                const int64_t nv = FNN_MAX(0, FNN_MIN(nj, cols - j0));
                if (p < kc && nv > 0) FNN_BF16_FN(cvt_run)(r0, src + p * ld + j0, nv);
                if (p + 1 < kc && nv > 0) FNN_BF16_FN(cvt_run)(r1, src + (p + 1) * ld + j0, nv);
                for (int64_t j = 0; j < nj; j++) {
                    const int ok = j < nv;
                    d[(j0 + j) * 2] = ok && p < kc ? r0[j] : 0;
                    d[(j0 + j) * 2 + 1] = ok && p + 1 < kc ? r1[j] : 0;
                }
            }
        }
        return;
    }
    /* transposed: column j of op(B) is contiguous in src */
    for (int64_t j = 0; j < width; j++) {
        for (int64_t p0 = 0; p0 < kp; p0 += 64) {
            const int64_t np = FNN_MIN(64, kp - p0);
            const int64_t nv = j < cols ? FNN_MAX(0, FNN_MIN(np, kc - p0)) : 0;
            if (nv > 0) FNN_BF16_FN(cvt_run)(r0, src + j * ld + p0, nv);
            for (int64_t q = nv; q < np; q++) r0[q] = 0;
            for (int64_t q = 0; q < np; q++)
                dst[((p0 + q) / 2) * width * 2 + j * 2 + (p0 + q) % 2] = r0[q];
        }
    }
}

#undef FNN_BF16_FN
#undef FNN_BF16_CAT
#undef FNN_BF16_CAT_
