/*
 * gemm_impl.h -- the blocked GEMM driver for one element type (T, SFX).
 *
 * Five loops around the micro-kernel (Goto & van de Geijn; BLIS):
 *   jc: NC columns of C       -> B block
 *   pc: KC slice of k         -> pack this thread's NR-wide panels of B[pc.., jc..]
 *   ic: MC rows of this thread's row range -> pack A into MR-tall panels
 *   jr: NR columns (this thread's column panels)
 *   ir: MR rows               -> micro-kernel on an MR x NR tile held in registers
 * Threads: a tm x tn grid over (row panels, column panels); each thread packs
 * what it uses (no shared buffers, no barriers), see fnn_gemm below.
 * k and each thread's rows are split into near-equal blocks of at most KC / MC.
 * Transposes are absorbed by the packing routines (with ISA packing kernels
 * for the common full panels); corner tiles go to the edge micro-kernel when
 * the ISA has one; the epilogue (bias, activation, pre-activation store) runs
 * on each tile after its last K block, while the tile is in L1.
 */

/* The packing loops below are written once for any MR / NR.  Each full
 * panel goes through one always-inline loop whose tile size is a parameter;
 * FNN_PACK_SIZES lists the sizes it is also compiled for as a constant (so
 * the loops unroll and the row pointers stay in registers); any other size
 * runs the same loop with a run-time bound.  An ISA may register its own
 * kernels for the common full panels (fnn_gemm_cfg's pack_a / pack_bt). */
#ifndef FNN_PACK_SIZES
#define FNN_PACK_SIZES(X) X(4) X(6) X(8) X(12) X(14) X(16) X(24) X(32)
#endif

/* One full MR-tall panel of op(A), kc columns: dst[p*mr + i] = op(A)[i, p],
 * a0 at element (0, 0) of the panel (row stride lda of the stored A). */
FNN_INLINE void SFX(pack_a_full)(T *FNN_RESTRICT dst, const T *FNN_RESTRICT a0, int64_t lda,
                                 int trans, int64_t kc, int64_t mr)
{
    if (!trans) {
        for (int64_t p = 0; p < kc; p++)
            for (int64_t i = 0; i < mr; i++) dst[p * mr + i] = a0[i * lda + p];
    } else {
        for (int64_t p = 0; p < kc; p++)
            for (int64_t i = 0; i < mr; i++) dst[p * mr + i] = a0[p * lda + i];
    }
}

/* Full NR-wide panels [q0, qf) of one row of non-transposed B: src is the
 * row, d its slot in panel q0 (panels kc * nr apart). */
FNN_INLINE void SFX(pack_b_row)(T *FNN_RESTRICT d, const T *FNN_RESTRICT src, int64_t kc,
                                int64_t q0, int64_t qf, int64_t nr)
{
    for (int64_t q = q0; q < qf; q++)
        for (int64_t j = 0; j < nr; j++) d[(q - q0) * kc * nr + j] = src[q * nr + j];
}

/* d[0:n] = s[0:n], n >= 4, in 4-element chunks (the last one overlapping): a
 * loop the compilers do not turn into a memcpy call, which costs more than the
 * copy for the short runs (MR or NR values) of a panel with a run-time MR / NR. */
FNN_INLINE void SFX(copy_run)(T *FNN_RESTRICT d, const T *FNN_RESTRICT s, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int u = 0; u < 4; u++) d[i + u] = s[i + u];
    if (i < n)
        for (int u = 0; u < 4; u++) d[n - 4 + u] = s[n - 4 + u];
}

/* Pack rows [i0, i0+mc) x cols [p0, p0+kc) of op(A) into MR-tall panels:
 * panel q holds rows i0+q*MR.., element (i, p) at q*MR*kc + p*MR + i.
 * Rows past mc are zero-filled. */
static void SFX(pack_a)(T *FNN_RESTRICT dst, const T *FNN_RESTRICT a, int64_t lda, int trans,
                        int64_t i0, int64_t mc, int64_t p0, int64_t kc, int64_t mr,
                        SFX(fnn_pack) fast)
{
    for (int64_t ip = 0; ip < mc; ip += mr) {
        int64_t ib = FNN_MIN(mr, mc - ip);
        const T *a0 = trans ? a + p0 * lda + i0 + ip : a + (i0 + ip) * lda + p0;
        if (ib == mr && !trans && fast) {
            fast(dst, a0, lda, kc);
        } else if (ib == mr) {
#define FNN_PACK_A_CASE(M)                                                                   \
    case M: SFX(pack_a_full)(dst, a0, lda, trans, kc, M); break;
            switch (mr) {
                FNN_PACK_SIZES(FNN_PACK_A_CASE)
            default: SFX(pack_a_full)(dst, a0, lda, trans, kc, mr);
            }
#undef FNN_PACK_A_CASE
        } else {
            /* the last, partial panel: ib < mr rows, zero-filled to mr; a transposed
             * A's rows are contiguous runs of ib values (copy_run: no memcpy call) */
            for (int64_t p = 0; p < kc; p++) {
                if (trans && ib >= 4) {
                    SFX(copy_run)(dst + p * mr, a0 + p * lda, ib);
                } else {
                    for (int64_t i = 0; i < ib; i++)
                        dst[p * mr + i] = trans ? a0[p * lda + i] : a0[i * lda + p];
                }
                for (int64_t i = ib; i < mr; i++) dst[p * mr + i] = 0;
            }
        }
        dst += mr * kc;
    }
}

/* Pack NR-wide panels [q0, q1) of op(B) rows [p0, p0+kc), cols [j0, j0+ncur):
 * panel q (columns j0+q*NR..) at dst + (q-q0)*kc*NR, element (p, j) at p*NR + j;
 * columns past ncur zero-filled.  Non-transposed B is read row by row (one
 * contiguous stretch per row, so the hardware prefetcher streams it). */
static void SFX(pack_b)(T *FNN_RESTRICT dst, const T *FNN_RESTRICT b, int64_t ldb, int trans,
                        int64_t p0, int64_t kc, int64_t j0, int64_t ncur, int64_t q0, int64_t q1,
                        int64_t nr, SFX(fnn_pack) fast)
{
    if (q0 >= q1) return;
    const int64_t qfull = FNN_MAX(q0, FNN_MIN(q1, ncur / nr)); /* [q0, qfull) are full */
    if (!trans) {
        for (int64_t p = 0; p < kc; p++) {
            const T *src = b + (p0 + p) * ldb + j0;
            T *d = dst + p * nr;
#define FNN_PACK_B_CASE(N)                                                                   \
    case N: SFX(pack_b_row)(d, src, kc, q0, qfull, N); break;
            switch (nr) {
                FNN_PACK_SIZES(FNN_PACK_B_CASE)
            default: SFX(pack_b_row)(d, src, kc, q0, qfull, nr);
            }
#undef FNN_PACK_B_CASE
            for (int64_t q = qfull; q < q1; q++) {
                const int64_t nb = FNN_MIN(nr, ncur - q * nr);
                int64_t j0 = 0;
                if (nb >= 4) {
                    SFX(copy_run)(d + (q - q0) * kc * nr, src + q * nr, nb);
                    j0 = nb;
                }
                for (int64_t j = j0; j < nb; j++) d[(q - q0) * kc * nr + j] = src[q * nr + j];
                for (int64_t j = nb; j < nr; j++) d[(q - q0) * kc * nr + j] = 0;
            }
        }
    } else {
        for (int64_t q = q0; q < q1; q++) {
            const int64_t nb = FNN_MIN(nr, ncur - q * nr);
            T *d = dst + (q - q0) * kc * nr;
            if (nb == nr && fast) {
                fast(d, b + (j0 + q * nr) * ldb + p0, ldb, kc);
                continue;
            }
            for (int64_t j = 0; j < nb; j++) {
                const T *src = b + (j0 + q * nr + j) * ldb + p0;
                for (int64_t p = 0; p < kc; p++) d[p * nr + j] = src[p];
            }
            if (nb < nr)
                for (int64_t p = 0; p < kc; p++)
                    for (int64_t j = nb; j < nr; j++) d[p * nr + j] = 0;
        }
    }
}

/* C (rows, cols), row stride ldc: C = beta * C (beta == 0 writes zeros). */
static void SFX(scale_c)(T *c, int64_t ldc, int64_t rows, int64_t cols, T beta)
{
    for (int64_t i = 0; i < rows; i++) {
        T *r = c + i * ldc;
        if (beta == 0)
            for (int64_t j = 0; j < cols; j++) r[j] = 0;
        else if (beta != 1)
            for (int64_t j = 0; j < cols; j++) r[j] *= beta;
    }
}

/* Split nth threads into a tm x tn grid over (row panels pm, column panels pn)
 * that minimizes the largest per-thread share of work, counted as rows (at most
 * m; a partial last row panel counts its rows, not MR) times column panels.
 * A split of the columns must beat the row split by more than 10%: each thread
 * packs the A panels of its rows, so column-split threads pack the same A. */
static void SFX(thread_grid)(int nth, int64_t m, int64_t mr, int64_t pm, int64_t pn, int *tm,
                             int *tn)
{
    int64_t best = -1;
    *tm = 1;
    *tn = nth;
    for (int d = nth; d >= 1; d--) {
        if (nth % d) continue;
        const int64_t rows = FNN_MIN(m, ((pm + d - 1) / d) * mr);
        const int64_t share = rows * ((pn + nth / d - 1) / (nth / d));
        if (best < 0 || share * 10 < best * 9) {
            best = share;
            *tm = d;
            *tn = nth / d;
        }
    }
}

/* One GEMM call's arguments and derived blocking, shared by its threads. */
typedef struct {
    T *c;
    const T *a, *b;
    int64_t m, n, k, lda, ldb, ldc;
    int trans_a, trans_b;
    T alpha, beta;
    const T *bias;
    T *z;
    int64_t ldz;
    int act, has_ep;
    const SFX(fnn_gemm_cfg) *cfg;
    int64_t kc_max, nc_max, pm;
    size_t apack_bytes;
    int one_ic, direct_b;
    int *failed;
} SFX(fnn_gemm_job);

/* Thread tid of nth: its tile of the tm x tn grid of C (see fnn_gemm below). */
static void SFX(gemm_thread)(const SFX(fnn_gemm_job) *J, int tid, int nth)
{
    T *const c = J->c;
    const T *const a = J->a, *const b = J->b;
    const int64_t m = J->m, n = J->n, k = J->k, lda = J->lda, ldb = J->ldb, ldc = J->ldc;
    const int trans_a = J->trans_a, trans_b = J->trans_b;
    const T alpha = J->alpha, beta = J->beta;
    const T *const bias = J->bias;
    T *const z = J->z;
    const int64_t ldz = J->ldz;
    const int act = J->act, has_ep = J->has_ep;
    const SFX(fnn_gemm_cfg) *cfg = J->cfg;
    const int64_t MR = cfg->mr, NR = cfg->nr, MC = cfg->mc;
    const SFX(fnn_ukr) ukr = cfg->ukr;
    const SFX(fnn_ukr_edge) ukr_edge = cfg->ukr_edge;
    const int64_t kc_max = J->kc_max, nc_max = J->nc_max, pm = J->pm;
    const size_t apack_bytes = J->apack_bytes;
    const int one_ic = J->one_ic, direct_b = J->direct_b;
    const int64_t NC = cfg->nc;
    int tm, tn;
    SFX(thread_grid)(nth, m, MR, pm, (nc_max + NR - 1) / NR, &tm, &tn);
    const int ti = tid / tn, tj = tid % tn;
    /* this thread's rows, in whole MR panels, and its share of column panels */
    const int64_t r0 = FNN_MIN(m, (pm * ti / tm) * MR);
    const int64_t r1 = FNN_MIN(m, (pm * (ti + 1) / tm) * MR);
    const int64_t pn_max = (nc_max + NR - 1) / NR;
    const int64_t my_panels = one_ic ? 1 : (pn_max + tn - 1) / tn + 1;
    T *apack = (T *)fnn_thread_buffer(FNN_BUF_PACK_A, apack_bytes);
    T *bpack = (T *)fnn_thread_buffer(
        FNN_BUF_PACK_B, (size_t)kc_max * (size_t)(my_panels * NR) * sizeof(T));
    if (!apack || !bpack) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
        *J->failed = 1;
    } else if (r0 < r1) {
        T tmp[FNN_MAX_TILE];
        /* this thread's rows in near-equal blocks of at most MC, whole MR panels */
        const int64_t nmb = (r1 - r0 + MC - 1) / MC;
        const int64_t mc_bal =
            nmb > 0 ? FNN_MIN(MC, ((r1 - r0 + nmb - 1) / nmb + MR - 1) / MR * MR) : MC;

        for (int64_t jc = 0; jc < n; jc += NC) {
            const int64_t ncur = FNN_MIN(NC, n - jc);
            const int64_t pn = (ncur + NR - 1) / NR;
            const int64_t q0 = pn * tj / tn, q1 = pn * (tj + 1) / tn;
            for (int64_t pc = 0; pc < k; pc += kc_max) {
                const int64_t kcur = FNN_MIN(kc_max, k - pc);
                const T beff = pc == 0 ? beta : (T)1;
                const int last = pc + kcur == k;
                if (!one_ic && q0 < q1)
                    SFX(pack_b)(bpack, b, ldb, trans_b, pc, kcur, jc, ncur, q0, q1, NR,
                                cfg->pack_bt);
                for (int64_t ic = r0; ic < r1; ic += mc_bal) {
                    const int64_t mcur = FNN_MIN(mc_bal, r1 - ic);
                    SFX(pack_a)(apack, a, lda, trans_a, ic, mcur, pc, kcur, MR,
                                cfg->pack_a);
                    for (int64_t q = q0; q < q1; q++) {
                        const int64_t j = jc + q * NR;
                        const int64_t nb = FNN_MIN(NR, ncur - q * NR);
                        const T *bp;
                        int64_t ldbp = NR;
                        if (!one_ic) {
                            bp = bpack + (q - q0) * kcur * NR;
                        } else if (direct_b && nb == NR) {
                            bp = b + pc * ldb + j;
                            ldbp = ldb;
                        } else {
                            SFX(pack_b)(bpack, b, ldb, trans_b, pc, kcur, jc, ncur, q, q + 1,
                                        NR, cfg->pack_bt);
                            bp = bpack;
                        }
                        for (int64_t ip = 0; ip < mcur; ip += MR) {
                            const int64_t ib = FNN_MIN(MR, mcur - ip);
                            T *ct = c + (ic + ip) * ldc + j;
                            const T *ap = apack + ip * kcur;
                            if (ib == MR && nb == NR) {
                                ukr(kcur, ap, bp, ldbp, ct, ldc, alpha, beff);
                            } else if (ukr_edge) {
                                ukr_edge(kcur, ib, nb, ap, bp, ldbp, ct, ldc, alpha, beff);
                            } else {
                                ukr(kcur, ap, bp, ldbp, tmp, NR, alpha, 0);
                                for (int64_t i = 0; i < ib; i++)
                                    for (int64_t jj = 0; jj < nb; jj++)
                                        ct[i * ldc + jj] =
                                            beff == 0 ? tmp[i * NR + jj]
                                                      : tmp[i * NR + jj] + beff * ct[i * ldc + jj];
                            }
                            if (last && has_ep)
                                SFX(fnn_epilogue_tile)(ct, ldc, ib, nb, bias ? bias + j : NULL,
                                                       z ? z + (ic + ip) * ldz + j : NULL, ldz,
                                                       act);
                        }
                    }
                }
            }
        }
    }
}

int SFX(fnn_gemm)(T *c, const T *a, const T *b, int64_t m, int64_t n, int64_t k, int64_t lda,
                  int64_t ldb, int64_t ldc, int trans_a, int trans_b, T alpha, T beta,
                  const fnn_epilogue *ep, int n_threads)
{
    if (m < 0 || n < 0 || k < 0) return FNN_EINVAL;
    if (ldc < FNN_MAX(n, 1) || lda < FNN_MAX(trans_a ? m : k, 1) ||
        ldb < FNN_MAX(trans_b ? k : n, 1))
        return FNN_EINVAL;
    if (ep && (ep->act < 0 || ep->act >= FNN_ACT_COUNT || ep->act == FNN_ACT_SOFTMAX ||
               (ep->z && ep->ldz < n)))
        return FNN_EINVAL;
    if (m == 0 || n == 0) return FNN_OK;
    fnn_init();

    const int has_ep = ep && (ep->bias || ep->z || ep->act != FNN_ACT_IDENTITY);
    const T *bias = has_ep ? (const T *)ep->bias : NULL;
    T *z = has_ep ? (T *)ep->z : NULL;
    const int64_t ldz = has_ep ? ep->ldz : 0;
    const int act = has_ep ? ep->act : FNN_ACT_IDENTITY;

    if (k == 0 || alpha == 0) {
        SFX(scale_c)(c, ldc, m, n, beta);
        if (has_ep) SFX(fnn_epilogue_tile)(c, ldc, m, n, bias, z, ldz, act);
        return FNN_OK;
    }

    /* matmul precision bf16: float GEMMs run the bf16 engine (gemm_bf16.c) */
    if (sizeof(T) == sizeof(float) && fnn_matmul_precision() == FNN_PREC_BF16)
        return fnn_gemm_bf16_run((float *)c, (const float *)a, (const float *)b, m, n, k, lda,
                                 ldb, ldc, trans_a, trans_b, (float)alpha, (float)beta, ep,
                                 n_threads);

    const SFX(fnn_gemm_cfg) *cfg = &fnn_ctx()->SFX(gemm);
    const int64_t MR = cfg->mr, NR = cfg->nr;
    const int64_t MC = cfg->mc, KC = cfg->kc, NC = cfg->nc;

    /* Threads: at least FNN_GEMM_MIN_WORK multiply-adds each. */
    const int nt = fnn_threads_for((double)m * (double)n * (double)k, FNN_GEMM_MIN_WORK,
                                   n_threads);

    /* Balanced blocks: k split into ceil(k/KC) near-equal slices (784 -> 4 x 196,
     * not 3 x 256 + 16), rounded up to a multiple of 8. */
    const int64_t nkb = (k + KC - 1) / KC;
    const int64_t kc_max = FNN_MIN(k, (((k + nkb - 1) / nkb) + 7) / 8 * 8);
    const int64_t nc_max = FNN_MIN(NC, ((n + NR - 1) / NR) * NR);
    const size_t apack_bytes =
        (size_t)kc_max * (size_t)(((FNN_MIN(MC, m) + MR - 1) / MR) * MR) * sizeof(T);
    /* No shared packed data and no barriers: each thread packs the B panels of
     * its own column range (the whole KC x ncur block when the threads split
     * rows only), so a thread that the OS preempts never stalls the others, and
     * every C tile is computed by the same sequence of micro-kernel calls
     * whatever the thread count (results are bitwise identical across counts).
     * The price is packing B once per thread row (tm times), which is small next
     * to the (m / tm) * k * n multiply-adds each thread does with it.
     * Panel-at-a-time mode: when a thread's rows fit in one MC block each B
     * panel is used by one ic pass only, so it is packed right before use into
     * an L1-sized buffer (or read in place, see direct_b). */
    const int64_t pm = (m + MR - 1) / MR;
    int one_ic;
    {
        int tm0, tn0;
        SFX(thread_grid)(nt, m, MR, pm, (nc_max + NR - 1) / NR, &tm0, &tn0);
        one_ic = ((pm + tm0 - 1) / tm0) * MR <= MC;
    }
    /* With B not transposed and one ic pass, the micro-kernel can read full B
     * panels in place (row stride ldb) instead of packing them: for small M the
     * copy costs more than it saves.  Only when the kc rows of a panel do not
     * collide in the cache sets: a row stride that is a multiple of a large power
     * of two maps them to few sets (a 4 KiB stride to 1/64 of a 1024-set L2). */
    int direct_b = 0;
    if (one_ic && !trans_b) {
        uint64_t stride = (uint64_t)ldb * sizeof(T), pow2 = 1;
        while (pow2 < (1u << 20) && (stride & pow2) == 0) pow2 <<= 1;
        const uint64_t lines_held = pow2 <= 64 ? 8192 : 8 * (65536 / pow2);
        direct_b = lines_held >= 2 * (uint64_t)kc_max;
    }
    int failed = 0;

    const SFX(fnn_gemm_job) job = {
        .c = c, .a = a, .b = b, .m = m, .n = n, .k = k, .lda = lda, .ldb = ldb, .ldc = ldc,
        .trans_a = trans_a, .trans_b = trans_b, .alpha = alpha, .beta = beta, .bias = bias,
        .z = z, .ldz = ldz, .act = act, .has_ep = has_ep, .cfg = cfg, .kc_max = kc_max,
        .nc_max = nc_max, .pm = pm, .apack_bytes = apack_bytes, .one_ic = one_ic,
        .direct_b = direct_b, .failed = &failed};
    /* One thread: no parallel region (entering one costs more than a small GEMM) */
    if (nt <= 1) {
        FNN_PAR_ENTER();
        SFX(gemm_thread)(&job, 0, 1);
        FNN_PAR_LEAVE();
        return failed ? FNN_ENOMEM : FNN_OK;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
        FNN_PAR_ENTER();
        SFX(gemm_thread)(&job, omp_get_thread_num(), omp_get_num_threads());
        FNN_PAR_LEAVE();
    }
#else
    SFX(gemm_thread)(&job, 0, 1);
#endif
    return failed ? FNN_ENOMEM : FNN_OK;
}
