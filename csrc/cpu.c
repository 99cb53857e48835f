/*
 * cpu.c -- run-time CPU feature detection and the GEMM dispatch table.
 *
 * The table is filled once by fnn_init() (called when the Python module is
 * imported) and only read afterwards: the best level the CPU and the OS
 * support (AVX-512 F/BW/VL/DQ, else AVX2 + FMA, else the portable kernels).
 * FASTNN_ISA=generic forces the portable micro-kernels; FASTNN_ISA=avx2 caps
 * the level at AVX2 + FMA.
 */
#include <stdlib.h>
#include <string.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(_MSC_VER) && defined(FNN_HAVE_X86)
#include <immintrin.h>
#include <intrin.h>
#endif

fnn_gemm_cfg_f32 fnn_cfg_f32 = {FNN_GENERIC_MR_F32, FNN_GENERIC_NR_F32, 128, 256, 4096,
                                fnn_ukr_generic_f32, NULL, NULL, NULL};
fnn_gemm_cfg_f64 fnn_cfg_f64 = {FNN_GENERIC_MR_F64, FNN_GENERIC_NR_F64, 64, 256, 4096,
                                fnn_ukr_generic_f64, NULL, NULL, NULL};
static int fnn_isa_in_use = -1;

int fnn_cpu_has_avx2(void)
{
#if defined(FNN_HAVE_X86) && (defined(__GNUC__) || defined(__clang__))
    /* libgcc's checks include the OS's XSAVE support for the ymm state. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif defined(FNN_HAVE_X86) && defined(_MSC_VER)
    int r[4];
    __cpuid(r, 0);
    if (r[0] < 7) return 0;
    __cpuid(r, 1);
    int fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
    if (!(fma && osxsave && avx)) return 0;
    if ((_xgetbv(0) & 6) != 6) return 0; /* xmm and ymm state enabled by the OS */
    __cpuidex(r, 7, 0);
    return (r[1] >> 5) & 1;
#else
    return 0;
#endif
}

/* 1 if the CPU and the OS support AVX-512 F + BW + VL + DQ.  Temporary (GCC and
 * Clang only; libgcc checks XCR0 for the zmm and opmask state): the ISA registry
 * brings the real detection, the MSVC path included. */
static int fnn_cpu_has_avx512(void)
{
#if defined(FNN_HAVE_X86) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return fnn_cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}

int fnn_init(void)
{
    if (fnn_isa_in_use >= 0) return fnn_isa_in_use;
    int isa = FNN_ISA_GENERIC;
    const char *env = getenv("FASTNN_ISA");
    int force_generic = env != NULL && strcmp(env, "generic") == 0;
    int cap_avx2 = env != NULL && strcmp(env, "avx2") == 0;
#ifdef FNN_HAVE_X86
    if (!force_generic && fnn_cpu_has_avx2()) {
        /* BLIS's zen3 starting points: sgemm 6x16, dgemm 6x8 (12 ymm accumulators). */
        fnn_cfg_f32 = (fnn_gemm_cfg_f32){6, 16, 144, 256, 4080, fnn_ukr_avx2_f32,
                                         fnn_pack_a6_avx2_f32, fnn_pack_bt16_avx2_f32,
                                         fnn_ukr_edge_avx2_f32};
        fnn_cfg_f64 = (fnn_gemm_cfg_f64){6, 8, 72, 256, 4080, fnn_ukr_avx2_f64, NULL, NULL, NULL};
        isa = FNN_ISA_AVX2;
        if (!cap_avx2 && fnn_cpu_has_avx512()) {
            fnn_gemm_cfg_avx512(&fnn_cfg_f32, &fnn_cfg_f64);
            isa = FNN_ISA_AVX512;
        }
    }
#else
    (void)force_generic;
    (void)cap_avx2;
#endif
    fnn_isa_in_use = isa;
    return isa;
}

int fnn_isa(void) { return fnn_init(); }

const char *fnn_isa_name(int isa)
{
    switch (isa) {
    case FNN_ISA_AVX512: return "avx512";
    case FNN_ISA_AVX2: return "avx2+fma";
    case FNN_ISA_GENERIC: return "generic";
    default: return "unknown";
    }
}

void fnn_gemm_blocking(int elem_size, int64_t *mr, int64_t *nr, int64_t *mc, int64_t *kc,
                       int64_t *nc)
{
    fnn_init();
    if (elem_size == 4) {
        *mr = fnn_cfg_f32.mr; *nr = fnn_cfg_f32.nr; *mc = fnn_cfg_f32.mc;
        *kc = fnn_cfg_f32.kc; *nc = fnn_cfg_f32.nc;
    } else {
        *mr = fnn_cfg_f64.mr; *nr = fnn_cfg_f64.nr; *mc = fnn_cfg_f64.mc;
        *kc = fnn_cfg_f64.kc; *nc = fnn_cfg_f64.nc;
    }
}

int fnn_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
