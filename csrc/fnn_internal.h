/*
 * fnn_internal.h -- shared by the C sources, not part of the public API.
 *
 * Type-generic sources: a file `x_impl.h` is written once in terms of
 *   T        the element type (float or double)
 *   SFX(f)   f_f32 / f_f64          (names of generated functions)
 *   TM(f)    f##f / f               (libm function for T: expf / exp)
 * and included twice by `x.c`, once per type:
 *   #define T float / #define SFX(f) f##_f32 / #define TM(f) f##f
 *   #include "x_impl.h"   then #undef all three and repeat for double.
 */
#ifndef FNN_INTERNAL_H
#define FNN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fastnn.h"

#if defined(_MSC_VER)
#define FNN_TLS __declspec(thread)
#define FNN_RESTRICT __restrict
#define FNN_INLINE static __forceinline
#else
#define FNN_TLS _Thread_local
#define FNN_RESTRICT __restrict__
#define FNN_INLINE static inline __attribute__((always_inline))
#endif

#define FNN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FNN_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- size arithmetic ---------------------------------------------------- */
/* *out = a * b; returns 1 on overflow (a, b >= 0). */
static inline int fnn_mul_overflows(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0) return 1;
    if (a != 0 && b > INT64_MAX / a) return 1;
    *out = a * b;
    return 0;
}

/* ---- 64-byte aligned, per-thread reusable buffers (gemm.c) --------------- */
/* Returns a buffer of at least `bytes` bytes, 64-byte aligned, owned by the
 * calling thread and reused by its later calls with the same slot; NULL if it
 * cannot be allocated.  Only grows.  The memory lives until the thread ends
 * (freed by fnn_thread_buffers_free, called at module unload). */
void *fnn_thread_buffer(int slot, size_t bytes);
void fnn_thread_buffers_free(void);
#define FNN_BUF_PACK_A 0
#define FNN_BUF_PACK_B 1
#define FNN_BUF_COUNT 2

/* ---- GEMM micro-kernels and dispatch (cpu.c, gemm_kernel_*.c) ----------- */
/* A micro-kernel computes one MR x NR tile:
 *   C[0:MR, 0:NR] = alpha * Ap @ Bp + beta * C        (beta == 0: C not read)
 * Ap is a packed MR-tall panel, k columns: Ap[p*MR + i].
 * Bp is k rows of NR values, row p at Bp + p*ldbp (ldbp = NR when packed).
 * C has row stride ldc.  Edge tiles are handled by the driver. */
typedef void (*fnn_ukr_f32)(int64_t k, const float *ap, const float *bp, int64_t ldbp, float *c,
                            int64_t ldc, float alpha, float beta);
typedef void (*fnn_ukr_f64)(int64_t k, const double *ap, const double *bp, int64_t ldbp,
                            double *c, int64_t ldc, double alpha, double beta);

/* Optional ISA packing kernels for one full panel (NULL: the portable loops):
 * pack_a: MR rows of non-transposed A -> dst[p*MR + i] = a[i*lda + p];
 * pack_bt: NR rows of transposed B    -> dst[p*NR + j] = b[j*ldb + p]. */
typedef void (*fnn_pack_f32)(float *dst, const float *src, int64_t ld, int64_t kc);
typedef void (*fnn_pack_f64)(double *dst, const double *src, int64_t ld, int64_t kc);

/* Optional edge micro-kernel: the rows x cols corner (rows <= MR, cols <= NR)
 * of a tile, written straight to C with the same alpha/beta rule (NULL: the
 * driver runs the full kernel into a temporary tile and copies the corner). */
typedef void (*fnn_ukr_edge_f32)(int64_t k, int64_t rows, int64_t cols, const float *ap,
                                 const float *bp, int64_t ldbp, float *c, int64_t ldc,
                                 float alpha, float beta);
typedef void (*fnn_ukr_edge_f64)(int64_t k, int64_t rows, int64_t cols, const double *ap,
                                 const double *bp, int64_t ldbp, double *c, int64_t ldc,
                                 double alpha, double beta);

typedef struct {
    int64_t mr, nr, mc, kc, nc;
    fnn_ukr_f32 ukr;
    fnn_pack_f32 pack_a, pack_bt;
    fnn_ukr_edge_f32 ukr_edge;
} fnn_gemm_cfg_f32;
typedef struct {
    int64_t mr, nr, mc, kc, nc;
    fnn_ukr_f64 ukr;
    fnn_pack_f64 pack_a, pack_bt;
    fnn_ukr_edge_f64 ukr_edge;
} fnn_gemm_cfg_f64;

/* The dispatch table: filled once by fnn_init, read-only afterwards. */
extern fnn_gemm_cfg_f32 fnn_cfg_f32;
extern fnn_gemm_cfg_f64 fnn_cfg_f64;

/* Micro-kernels; the largest MR x NR any kernel uses is FNN_MAX_TILE. */
#define FNN_MAX_TILE (16 * 32)
void fnn_ukr_generic_f32(int64_t k, const float *ap, const float *bp, int64_t ldbp, float *c,
                         int64_t ldc, float alpha, float beta);
void fnn_ukr_generic_f64(int64_t k, const double *ap, const double *bp, int64_t ldbp, double *c,
                         int64_t ldc, double alpha, double beta);
/* Sized for 16 SSE2 / NEON vector registers: accumulators + one B row + A. */
#define FNN_GENERIC_MR_F32 4
#define FNN_GENERIC_NR_F32 8
#define FNN_GENERIC_MR_F64 4
#define FNN_GENERIC_NR_F64 4
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define FNN_HAVE_X86 1
void fnn_ukr_avx2_f32(int64_t k, const float *ap, const float *bp, int64_t ldbp, float *c,
                      int64_t ldc, float alpha, float beta);
void fnn_ukr_avx2_f64(int64_t k, const double *ap, const double *bp, int64_t ldbp, double *c,
                      int64_t ldc, double alpha, double beta);
void fnn_pack_a6_avx2_f32(float *dst, const float *a, int64_t lda, int64_t kc);
void fnn_pack_bt16_avx2_f32(float *dst, const float *b, int64_t ldb, int64_t kc);
void fnn_ukr_edge_avx2_f32(int64_t k, int64_t rows, int64_t cols, const float *ap,
                           const float *bp, int64_t ldbp, float *c, int64_t ldc, float alpha,
                           float beta);
/* AVX-512 (gemm_kernel_avx512.c): the kernels and block sizes of both types. */
void fnn_gemm_cfg_avx512(fnn_gemm_cfg_f32 *c32, fnn_gemm_cfg_f64 *c64);
void fnn_ukr_avx512_f32(int64_t k, const float *ap, const float *bp, int64_t ldbp, float *c,
                        int64_t ldc, float alpha, float beta);
void fnn_ukr_avx512_f64(int64_t k, const double *ap, const double *bp, int64_t ldbp, double *c,
                        int64_t ldc, double alpha, double beta);
void fnn_ukr_edge_avx512_f32(int64_t k, int64_t rows, int64_t cols, const float *ap,
                             const float *bp, int64_t ldbp, float *c, int64_t ldc, float alpha,
                             float beta);
void fnn_ukr_edge_avx512_f64(int64_t k, int64_t rows, int64_t cols, const double *ap,
                             const double *bp, int64_t ldbp, double *c, int64_t ldc,
                             double alpha, double beta);
void fnn_pack_a_avx512_f32(float *dst, const float *a, int64_t lda, int64_t kc);
void fnn_pack_bt_avx512_f32(float *dst, const float *b, int64_t ldb, int64_t kc);
void fnn_pack_a_avx512_f64(double *dst, const double *a, int64_t lda, int64_t kc);
void fnn_pack_bt_avx512_f64(double *dst, const double *b, int64_t ldb, int64_t kc);
/* conv forward 4 x 48 tile (conv.c's contract of its AVX2 4 x 24 kernel). */
#define FNN_CONV_AVX512_MR 4
#define FNN_CONV_AVX512_NR 48
void fnn_conv_ukr_avx512_f32(int64_t k, const float *ap, const float *bp, float *c, int64_t ldc,
                             const float *bias, float beta);
#endif

/* ---- elementwise kernels compiled twice: baseline ISA and AVX2+FMA ---------- */
#if defined(FNN_HAVE_X86) && (defined(__GNUC__) || defined(__clang__))
/* "avx2" without "fma": no multiply-add contraction, so the AVX2 copy rounds exactly
 * as the baseline (SSE2) copy does and results do not depend on the ISA. */
#define FNN_TARGET_AVX2_FN __attribute__((target("avx2")))
#define FNN_MULTIVERSIONED 1
#elif defined(FNN_HAVE_X86) && defined(_MSC_VER)
#define FNN_TARGET_AVX2_FN /* MSVC: no per-function ISA; the generic copy is used */
#endif

/* FNN_MULTIVERSION(BODY, GENERIC, AVX2, RUN, ARGS) defines, for an always-inline
 *   void BODY(const ARGS *a, int64_t lo, int64_t hi)   (the loop over [lo, hi)):
 *   GENERIC, a copy compiled for the build's baseline ISA;
 *   AVX2, a copy the compiler vectorizes 8-wide with AVX2 (x86 GCC/Clang only);
 *   void RUN(const ARGS *a, int64_t n, int nt): splits [0, n) into nt ranges
 *   (boundaries at multiples of 64 elements) and calls the copy fnn_isa() chose.
 * Elements are independent, so results do not depend on nt. */
#ifdef FNN_MULTIVERSIONED
#define FNN_MV_AVX2_COPY(BODY, AVX2, ARGS)                                                   \
    FNN_TARGET_AVX2_FN static void AVX2(const ARGS *a, int64_t lo, int64_t hi)               \
    {                                                                                        \
        BODY(a, lo, hi);                                                                     \
    }
#define FNN_MV_PICK(GENERIC, AVX2) (fnn_isa() >= FNN_ISA_AVX2 ? AVX2 : GENERIC)
#else
#define FNN_MV_AVX2_COPY(BODY, AVX2, ARGS)
#define FNN_MV_PICK(GENERIC, AVX2) GENERIC
#endif
#ifdef _OPENMP
#define FNN_MV_PARALLEL_RANGES(fn, a, n, nt)                                                 \
    _Pragma("omp parallel num_threads(nt)")                                                  \
    {                                                                                        \
        const int64_t k_ = omp_get_num_threads(), t_ = omp_get_thread_num();                 \
        const int64_t blocks_ = (n + 63) / 64;                                               \
        const int64_t lo_ = FNN_MIN(n, blocks_ * t_ / k_ * 64);                              \
        const int64_t hi_ = FNN_MIN(n, blocks_ * (t_ + 1) / k_ * 64);                        \
        if (hi_ > lo_) fn(a, lo_, hi_);                                                      \
    }
#else
#define FNN_MV_PARALLEL_RANGES(fn, a, n, nt) fn(a, 0, n);
#endif
#define FNN_MULTIVERSION(BODY, GENERIC, AVX2, RUN, ARGS)                                     \
    static void GENERIC(const ARGS *a, int64_t lo, int64_t hi) { BODY(a, lo, hi); }          \
    FNN_MV_AVX2_COPY(BODY, AVX2, ARGS)                                                       \
    static void RUN(const ARGS *a, int64_t n, int nt)                                        \
    {                                                                                        \
        void (*fn)(const ARGS *, int64_t, int64_t) = FNN_MV_PICK(GENERIC, AVX2);             \
        if (nt <= 1) {                                                                       \
            fn(a, 0, n);                                                                     \
            return;                                                                          \
        }                                                                                    \
        FNN_MV_PARALLEL_RANGES(fn, a, n, nt)                                                 \
    }

/* ---- epilogue (activation.c) ------------------------------------------- */
/* On an (rows, cols) tile of C with row stride ldc;
 * bias is NULL or points at the bias of the tile's first column:
 * v = c + bias[j]; z = v (if z);
 * c = act(v).  z points at the tile's first element, row stride ldz. */
void fnn_epilogue_tile_f32(float *c, int64_t ldc, int64_t rows, int64_t cols, const float *bias,
                           float *z, int64_t ldz, int act);
void fnn_epilogue_tile_f64(double *c, int64_t ldc, int64_t rows, int64_t cols,
                           const double *bias, double *z, int64_t ldz, int act);

#endif /* FNN_INTERNAL_H */
