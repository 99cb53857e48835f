/*
 * fnn_internal.h -- shared by the C sources, not part of the public API.
 *
 * Type-generic sources: a file `x_impl.h` is written once in terms of
 *   T        the element type (float or double)
 *   SFX(f)   f_f32 / f_f64          (names of generated functions)
 *   TM(f)    f##f / f               (libm function for T: expf / exp)
 * and included twice by `x.c`, once per type, through fnn_template.h:
 *   #define FNN_TEMPLATE "x_impl.h"
 *   #include "fnn_template.h"
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

/* ---- GEMM micro-kernels and the ISA registry (cpu.c, isa_*.c, gemm_kernel_*.c) */
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

/* Per-dtype GEMM configuration of one ISA: blocking (MR x NR register tile,
 * MC x KC block of packed A, NC columns of packed B), the micro-kernel, the
 * optional packing kernels (NULL: the portable loops of gemm_impl.h, which
 * work for any MR and NR) and the optional edge kernel. */
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

/* The largest MR x NR tile any registered kernel may use (stack tiles in the
 * GEMM and conv drivers are this size); cpu.c refuses a level whose tiles are
 * larger.  32 x 32 covers every shape a 32-register AVX-512 kernel can hold. */
#define FNN_MAX_TILE (32 * 32)

/* Portable micro-kernels (gemm_kernel_generic.c). */
void fnn_ukr_generic_f32(int64_t k, const float *ap, const float *bp, int64_t ldbp, float *c,
                         int64_t ldc, float alpha, float beta);
void fnn_ukr_generic_f64(int64_t k, const double *ap, const double *bp, int64_t ldbp, double *c,
                         int64_t ldc, double alpha, double beta);
/* Sized for 16 SSE2 / NEON vector registers: accumulators + one B row + A. */
#define FNN_GENERIC_MR_F32 4
#define FNN_GENERIC_NR_F32 8
#define FNN_GENERIC_MR_F64 4
#define FNN_GENERIC_NR_F64 4
#if defined(__aarch64__) /* GCC and Clang (Linux, Apple); not MSVC's _M_ARM64 (untested) */
#define FNN_HAVE_ARM64 1
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define FNN_HAVE_X86 1
/* AVX2 + FMA micro-kernels (gemm_kernel_avx2.c). */
void fnn_ukr_avx2_f32(int64_t k, const float *ap, const float *bp, int64_t ldbp, float *c,
                      int64_t ldc, float alpha, float beta);
void fnn_ukr_avx2_f64(int64_t k, const double *ap, const double *bp, int64_t ldbp, double *c,
                      int64_t ldc, double alpha, double beta);
void fnn_pack_a6_avx2_f32(float *dst, const float *a, int64_t lda, int64_t kc);
void fnn_pack_bt16_avx2_f32(float *dst, const float *b, int64_t ldb, int64_t kc);
void fnn_ukr_edge_avx2_f32(int64_t k, int64_t rows, int64_t cols, const float *ap,
                           const float *bp, int64_t ldbp, float *c, int64_t ldc, float alpha,
                           float beta);
/* AVX-512 micro-kernels (gemm_kernel_avx512.c, which includes fnn_simd_avx512.h):
 * the same fnn_ukr_* / fnn_ukr_edge_* types; registered by fnn_register_avx512. */
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
/* The AVX-512 GEMM configuration of both types: kernels and block sizes. */
void fnn_gemm_cfg_avx512(fnn_gemm_cfg_f32 *c32, fnn_gemm_cfg_f64 *c64);
#endif

/* ---- the bf16 GEMM (gemm_bf16.c, isa_avx512bf16.c, isa_amx.c) ------------ */
/* Packed bf16 panels (uint16_t bit patterns), k padded with zeros to kp:
 *   A panel (MR rows): element (i, p) at (p / KA) * MR * KA + i * KA + p % KA,
 *     KA = 2 (pairs, VDPBF16PS's broadcast operand) or 32 (16 x 32 AMX tiles);
 *   B panel (NR cols): element (p, j) at (p / 2) * NR * 2 + j * 2 + p % 2
 *     (the VNNI pair layout both VDPBF16PS and TDPBF16PS read).
 * The micro-kernel: C[0:MR, 0:NR] = alpha * Ap @ Bp + beta * C (beta 0: C not
 * read), kp (a multiple of KA) the padded depth. */
typedef void (*fnn_ukr_bf16)(int64_t kp, const uint16_t *ap, const uint16_t *bp, float *c,
                             int64_t ldc, float alpha, float beta);
/* Optional packing of rows [0, rows) x k [0, kc) of op(X) into one panel
 * (zero-filled to MR / NR and kp): NULL takes the portable loops. */
typedef void (*fnn_pack_bf16)(uint16_t *dst, const float *src, int64_t ld, int trans,
                              int64_t rows, int64_t kc, int64_t kp, int64_t width, int64_t ka);
typedef struct {
    int64_t mr, nr, mc, kc, nc, ka; /* kc: a multiple of ka */
    fnn_ukr_bf16 ukr;
    fnn_pack_bf16 pack_a, pack_b;
    void (*thread_begin)(void); /* per thread and call, before its first tile (AMX) */
    void (*thread_end)(void);
} fnn_gemm_cfg_bf16;
/* The driver (gemm_bf16.c): fnn_gemm_f32's arguments, already checked, k > 0. */
int fnn_gemm_bf16_run(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k,
                      int64_t lda, int64_t ldb, int64_t ldc, int trans_a, int trans_b,
                      float alpha, float beta, const fnn_epilogue *ep, int n_threads);
/* The portable packing loops, also compiled per ISA (gemm_bf16_pack_impl.h). */
void fnn_pack_a_generic_bf16(uint16_t *dst, const float *src, int64_t ld, int trans,
                             int64_t rows, int64_t kc, int64_t kp, int64_t width, int64_t ka);
void fnn_pack_b_generic_bf16(uint16_t *dst, const float *src, int64_t ld, int trans,
                             int64_t rows, int64_t kc, int64_t kp, int64_t width, int64_t ka);
void fnn_ukr_generic_bf16(int64_t kp, const uint16_t *ap, const uint16_t *bp, float *c,
                          int64_t ldc, float alpha, float beta);
#define FNN_GENERIC_MR_BF16 4
#define FNN_GENERIC_NR_BF16 16

/* float -> bf16 bits: RNE, NaN quiet, subnormal -> signed zero (fastnn.h). */
FNN_INLINE uint16_t fnn_bf16_from_bits(uint32_t u)
{
    const uint32_t mag = u & 0x7fffffffu;
    if (mag > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN, made quiet */
    if (mag < 0x00800000u) return (uint16_t)((u >> 16) & 0x8000u); /* subnormal or 0 */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* The top 24 bits of splitmix64 output number k for `seed` (dropout.c). */
FNN_INLINE uint64_t fnn_dropout_bits(uint64_t seed, uint64_t k)
{
    uint64_t z = seed + (k + 1) * UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return (z ^ (z >> 31)) >> 40;
}

/* Per-ISA elementwise loops and the conv kernel: the argument blocks of the
 * range loops and the per-dtype tables (fnn_loops_decl.h, both dtypes). */
#define FNN_TEMPLATE "fnn_loops_decl.h"
#include "fnn_template.h"

/* Everything one ISA level provides, filled once by fnn_init (cpu.c) from the
 * registration functions of the levels up to the chosen one, read-only after.
 * Fields are named <what>_f32 / <what>_f64, so type-generic code reaches its
 * own dtype's with SFX(what). */
typedef struct {
    fnn_gemm_cfg_f32 gemm_f32;
    fnn_gemm_cfg_f64 gemm_f64;
    fnn_conv_cfg_f32 conv_f32;
    fnn_conv_cfg_f64 conv_f64;
    fnn_loops_f32 loops_f32;
    fnn_loops_f64 loops_f64;
    fnn_gemm_cfg_bf16 gemm_bf16;
    int isa_of[FNN_FAM_COUNT]; /* the level whose kernels each family runs */
} fnn_isa_ctx;

/* One line per level in cpu.c's table: the registration function overrides
 * the context's entries that the level provides (and their isa_of). */
void fnn_register_generic(fnn_isa_ctx *ctx);
#ifdef FNN_HAVE_X86
void fnn_register_avx2(fnn_isa_ctx *ctx);
void fnn_register_avx512(fnn_isa_ctx *ctx);
void fnn_register_avx512bf16(fnn_isa_ctx *ctx);
void fnn_register_amx(fnn_isa_ctx *ctx);
/* 1 once the OS granted this process the AMX tile data state (isa_amx.c). */
int fnn_amx_permitted(void);
/* The AVX2 level's GEMM configurations (isa_avx2.c), reused by other levels. */
extern const fnn_gemm_cfg_f32 fnn_gemm_cfg_avx2_f32;
extern const fnn_gemm_cfg_f64 fnn_gemm_cfg_avx2_f64;
#endif

#ifdef FNN_HAVE_ARM64
void fnn_register_neon(fnn_isa_ctx *ctx); /* isa_neon.c */
#endif

/* The registry in use; fnn_ctx() initializes it on first use (thread-safe). */
extern fnn_isa_ctx fnn_ctx_global;
int fnn_ctx_ready(void);
static inline const fnn_isa_ctx *fnn_ctx(void)
{
    if (!fnn_ctx_ready()) fnn_init();
    return &fnn_ctx_global;
}

/* ---- threads ------------------------------------------------------------ */
/* Threads for a parallel loop of `work` units with at least `min_per_thread`
 * units per thread: min(n_threads, work / min_per_thread), at least 1
 * (n_threads <= 0 means 1). */
static inline int fnn_threads_for(double work, double min_per_thread, int n_threads)
{
    int nt = n_threads < 1 ? 1 : n_threads;
    const double cap = work / min_per_thread;
    if (cap < (double)nt) nt = cap < 1.0 ? 1 : (int)cap;
    return nt;
}

/* FPU mode of an OpenMP worker: FNN_PAR_ENTER() first in each parallel region's
 * body, FNN_PAR_LEAVE() last, so every thread of the region runs with the
 * process's subnormal setting and gets its own MXCSR back (see fastnn.h). */
#define FNN_PAR_ENTER() const unsigned fnn_par_fe_ = fnn_fpenv_enter()
#define FNN_PAR_LEAVE() fnn_fpenv_leave(fnn_par_fe_)

/* fn(a, lo, hi) over [0, n) on nt threads, ranges split at multiples of 64
 * elements; elements are independent, so results do not depend on nt. */
#ifdef _OPENMP
#define FNN_RUN_RANGES(fn, a, n, nt)                                                         \
    do {                                                                                     \
        if ((nt) <= 1) {                                                                     \
            fn(a, 0, n);                                                                     \
            break;                                                                           \
        }                                                                                    \
        _Pragma("omp parallel num_threads(nt)")                                              \
        {                                                                                    \
            FNN_PAR_ENTER();                                                                 \
            const int64_t k_ = omp_get_num_threads(), t_ = omp_get_thread_num();             \
            const int64_t blocks_ = ((n) + 63) / 64;                                         \
            const int64_t lo_ = FNN_MIN((n), blocks_ * t_ / k_ * 64);                        \
            const int64_t hi_ = FNN_MIN((n), blocks_ * (t_ + 1) / k_ * 64);                  \
            if (hi_ > lo_) fn(a, lo_, hi_);                                                  \
            FNN_PAR_LEAVE();                                                                 \
        }                                                                                    \
    } while (0)
#else
#define FNN_RUN_RANGES(fn, a, n, nt) fn(a, 0, n)
#endif

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
