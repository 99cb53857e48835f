/* fnn_simd_avx512.h -- what an AVX-512 source includes instead of <immintrin.h>.
 *
 * Normal builds: <immintrin.h>, and the function attributes that compile one
 * function for AVX-512 (the rest of the extension stays at the baseline ISA):
 *   FNN_TARGET_AVX512        F + BW + VL + DQ with AVX2 + FMA (intrinsic kernels);
 *   FNN_TARGET_AVX512_LOOPS  the same without FMA, for compiler-vectorized loops
 *                            (no contraction: they round as the baseline copy).
 * The test build (-DFNN_SIMDE_AVX512, tools/simde_check.sh): SIMDe's portable
 * implementation of the same intrinsics under their native names, no target
 * attributes, and cpu.c forces the avx512 level on, so the AVX-512 code runs
 * (emulated) on any x86-64 CPU.  A file that includes this header must not
 * include <immintrin.h> itself. */
#ifndef FNN_SIMD_AVX512_H
#define FNN_SIMD_AVX512_H

#ifdef FNN_SIMDE_AVX512
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define FNN_TARGET_AVX512
#define FNN_TARGET_AVX512_LOOPS
#define FNN_TARGET_AVX512_BF16
#define FNN_AVX512_EMULATED 1
#elif defined(__GNUC__) || defined(__clang__)
#include <immintrin.h>
#define FNN_TARGET_AVX512                                                                   \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define FNN_TARGET_AVX512_LOOPS                                                             \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,prefer-vector-width=512")))
/* + AVX512-BF16 (VDPBF16PS), for the bf16 GEMM kernel (isa_avx512bf16.c) */
#define FNN_TARGET_AVX512_BF16                                                              \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))
#else /* MSVC: intrinsics need no attribute; the loops stay at the baseline ISA */
#include <immintrin.h>
#define FNN_TARGET_AVX512
#define FNN_TARGET_AVX512_LOOPS
#define FNN_TARGET_AVX512_BF16
#endif

#endif /* FNN_SIMD_AVX512_H */
