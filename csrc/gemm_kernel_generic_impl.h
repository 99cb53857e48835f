/* Portable micro-kernel, one tile of MR x NR (see fnn_internal.h for the
 * packed format).  Plain C the compiler vectorizes for the baseline ISA of
 * the build (SSE2 on x86-64, NEON on arm64).  Needs T, SFX, MR, NR. */
void SFX(fnn_ukr_generic)(int64_t k, const T *ap, const T *bp, int64_t ldbp, T *c, int64_t ldc,
                          T alpha, T beta)
{
    T acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = 0;
    for (int64_t p = 0; p < k; p++) {
        const T *brow = bp + p * ldbp;
        for (int i = 0; i < MR; i++) {
            T ai = ap[p * MR + i];
            for (int j = 0; j < NR; j++) acc[i][j] += ai * brow[j];
        }
    }
    for (int i = 0; i < MR; i++) {
        T *crow = c + i * ldc;
        if (beta == 0) {
            for (int j = 0; j < NR; j++) crow[j] = alpha * acc[i][j];
        } else {
            for (int j = 0; j < NR; j++) crow[j] = alpha * acc[i][j] + beta * crow[j];
        }
    }
}
