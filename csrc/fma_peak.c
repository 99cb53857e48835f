/*
 * fma_peak.c -- the machine's float32 multiply-add peak, measured with the widest
 * vectors of the ISA level in use (512-bit FMAs at avx512, 256-bit at avx2, 128-bit
 * at neon, the compiler's baseline vectors otherwise), for the benchmarks' "% of peak" columns.
 *
 * Each thread runs 12 independent chains x <- x * m + a (enough to cover the FMA
 * latency on two pipes); a chain step is 2 flops per lane.  Only the chain loops
 * are ISA-specific (named fnn_<what>_<isa>_f32, tools/check_isa.sh).
 */
#include <stdint.h>
#include <time.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define FNN_FMA_CHAINS 12

/* n steps of 12 scalar chains (2 flops each); returns a value that depends on all. */
static float fnn_fma_chains_generic_f32(int64_t n)
{
    float x[FNN_FMA_CHAINS];
    for (int j = 0; j < FNN_FMA_CHAINS; j++) x[j] = 0.1f + 0.01f * (float)j;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < FNN_FMA_CHAINS; j++) x[j] = x[j] * 0.999f + 0.001f;
    float s = 0.0f;
    for (int j = 0; j < FNN_FMA_CHAINS; j++) s += x[j];
    return s;
}

#ifdef FNN_HAVE_X86
#include "fnn_simd_avx512.h" /* <immintrin.h> (or SIMDe in the emulated build) */

#if defined(__GNUC__) || defined(__clang__)
#define FNN_TARGET_FMA_AVX2 __attribute__((target("avx2,fma")))
#else
#define FNN_TARGET_FMA_AVX2
#endif

#define FNN_FMA_STEP(F, x, m, a)                                                           \
    x[0] = F(x[0], m, a); x[1] = F(x[1], m, a); x[2] = F(x[2], m, a);                      \
    x[3] = F(x[3], m, a); x[4] = F(x[4], m, a); x[5] = F(x[5], m, a);                      \
    x[6] = F(x[6], m, a); x[7] = F(x[7], m, a); x[8] = F(x[8], m, a);                      \
    x[9] = F(x[9], m, a); x[10] = F(x[10], m, a); x[11] = F(x[11], m, a)

/* n steps of 12 chains of 8-lane FMAs (16 flops a chain step). */
FNN_TARGET_FMA_AVX2 static float fnn_fma_chains_avx2_f32(int64_t n)
{
    __m256 x[FNN_FMA_CHAINS], m = _mm256_set1_ps(0.999f), a = _mm256_set1_ps(0.001f);
    for (int j = 0; j < FNN_FMA_CHAINS; j++) x[j] = _mm256_set1_ps(0.1f + 0.01f * (float)j);
    for (int64_t i = 0; i < n; i++) {
        FNN_FMA_STEP(_mm256_fmadd_ps, x, m, a);
    }
    __m256 s = x[0];
    for (int j = 1; j < FNN_FMA_CHAINS; j++) s = _mm256_add_ps(s, x[j]);
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[7];
}

/* n steps of 12 chains of 16-lane FMAs (32 flops a chain step). */
FNN_TARGET_AVX512 static float fnn_fma_chains_avx512_f32(int64_t n)
{
    __m512 x[FNN_FMA_CHAINS], m = _mm512_set1_ps(0.999f), a = _mm512_set1_ps(0.001f);
    for (int j = 0; j < FNN_FMA_CHAINS; j++) x[j] = _mm512_set1_ps(0.1f + 0.01f * (float)j);
    for (int64_t i = 0; i < n; i++) {
        FNN_FMA_STEP(_mm512_fmadd_ps, x, m, a);
    }
    __m512 s = x[0];
    for (int j = 1; j < FNN_FMA_CHAINS; j++) s = _mm512_add_ps(s, x[j]);
    float v[16];
    _mm512_storeu_ps(v, s);
    return v[0] + v[15];
}
#endif

#ifdef FNN_HAVE_ARM64
#include <arm_neon.h>

/* n steps of 12 chains of 4-lane FMAs (8 flops a chain step). */
static float fnn_fma_chains_neon_f32(int64_t n)
{
    float32x4_t x[FNN_FMA_CHAINS];
    const float32x4_t m = vdupq_n_f32(0.999f), a = vdupq_n_f32(0.001f);
    for (int j = 0; j < FNN_FMA_CHAINS; j++) x[j] = vdupq_n_f32(0.1f + 0.01f * (float)j);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < FNN_FMA_CHAINS; j++) x[j] = vfmaq_f32(a, x[j], m);
    float32x4_t s = x[0];
    for (int j = 1; j < FNN_FMA_CHAINS; j++) s = vaddq_f32(s, x[j]);
    return vgetq_lane_f32(s, 0) + vgetq_lane_f32(s, 3);
}
#endif

typedef float (*fnn_fma_chains_fn)(int64_t n);

static double fnn_now(void)
{
#ifdef _OPENMP
    return omp_get_wtime();
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

/* CPU seconds of the calling thread (its wall clock where no such clock exists). */
static double fnn_thread_cpu_seconds(void)
{
#if defined(CLOCK_THREAD_CPUTIME_ID)
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#endif
    return fnn_now();
}

/* The FMA peak on n_threads threads, each running for about `seconds`:
 *   *wall  = flops of all threads / wall-clock seconds, in GFLOP/s;
 *   *cpu   = sum over threads of flops / that thread's CPU seconds (the peak while
 *            running, even when other processes share the cores);
 *   *width = the vector width used, in bits (0: the compiler's baseline code).
 * Returns FNN_EINVAL for seconds <= 0 or n_threads < 1. */
int fnn_fma_peak(double *wall, double *cpu, int *width, double seconds, int n_threads)
{
    if (!(seconds > 0.0) || n_threads < 1) return FNN_EINVAL;
    fnn_fma_chains_fn run = fnn_fma_chains_generic_f32;
    int lanes = 1;
    /* the vectors of the level the float32 GEMM runs at (the bf16 levels above avx512
     * keep avx512's float kernels) */
    const int isa = fnn_family_isa(FNN_FAM_GEMM_F32);
    (void)isa;
#ifdef FNN_HAVE_X86
    if (isa == FNN_ISA_AVX512) {
        run = fnn_fma_chains_avx512_f32;
        lanes = 16;
    } else if (isa == FNN_ISA_AVX2) {
        run = fnn_fma_chains_avx2_f32;
        lanes = 8;
    }
#endif
#ifdef FNN_HAVE_ARM64
    if (isa == FNN_ISA_NEON) {
        run = fnn_fma_chains_neon_f32;
        lanes = 4;
    }
#endif
    /* calibrate on one thread: steps per second */
    int64_t n = 1 << 16;
    double t0 = fnn_now();
    volatile float sink = run(n);
    double dt = fnn_now() - t0;
    while (dt < 0.02 && n < ((int64_t)1 << 40)) {
        n *= 4;
        t0 = fnn_now();
        sink = run(n);
        dt = fnn_now() - t0;
    }
    int64_t steps = (int64_t)((double)n * seconds / (dt > 0 ? dt : 1e-9)) + 1;
    double flops_per_thread = 2.0 * FNN_FMA_CHAINS * lanes * (double)steps;
    double cpu_rate = 0.0;
    t0 = fnn_now();
#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads) reduction(+ : cpu_rate)
#endif
    {
        double c0 = fnn_thread_cpu_seconds();
        float r = run(steps);
        double c1 = fnn_thread_cpu_seconds();
        sink = r;
        cpu_rate += flops_per_thread / (c1 - c0 > 0 ? c1 - c0 : 1e-9) / 1e9;
    }
    double total = fnn_now() - t0;
    (void)sink;
#ifdef _OPENMP
    int used = n_threads;
#else
    int used = 1;
#endif
    *wall = flops_per_thread * used / (total > 0 ? total : 1e-9) / 1e9;
    *cpu = cpu_rate;
    *width = lanes > 1 ? 32 * lanes : 0;
    return FNN_OK;
}
