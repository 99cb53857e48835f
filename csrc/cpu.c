/*
 * cpu.c -- CPU feature detection, the ISA registry and the floating-point
 * environment.
 *
 * The registry (fnn_isa_ctx, fnn_internal.h) holds everything an ISA level
 * provides: per-dtype GEMM blocking, micro-kernels, edge and packing kernels,
 * the conv forward kernel, the elementwise and optimizer loops and
 * all_finite.  Each level is one file, csrc/isa_<name>.c, with a registration
 * function, and one line in fnn_levels below (BLIS's per-configuration model).
 * fnn_init walks the table best-first, takes the first level that the CPU and
 * the OS support and that FASTNN_ISA allows, then registers every level from
 * the lowest (the table's last) up to it, so a level overrides what it provides
 * and inherits the rest.  A level's rank is its place in the table, not its id,
 * so each architecture keeps its own chain (x86-64: avx512, avx2, generic;
 * arm64: neon, generic).  It runs once (thread-safe); the registry is read-only afterwards.
 */
#include <stdlib.h>
#include <string.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(_MSC_VER)
#include <immintrin.h> /* _xgetbv */
#include <intrin.h>    /* __cpuid, __cpuidex */
#include <windows.h>   /* Interlocked*, SwitchToThread */
#endif
#if defined(FNN_HAVE_X86) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#if defined(FNN_HAVE_X86) && (defined(__SSE__) || defined(_M_X64) || defined(_M_IX86_FP))
#include <xmmintrin.h>
#define FNN_HAVE_MXCSR 1
#endif

/* ---- the table of levels, best first ------------------------------------- */
typedef struct {
    int isa;
    void (*register_fn)(fnn_isa_ctx *ctx);
} fnn_level;

static const fnn_level fnn_levels[] = {
#ifdef FNN_HAVE_X86
    {.isa = FNN_ISA_AMX, .register_fn = fnn_register_amx},
    {.isa = FNN_ISA_AVX512_BF16, .register_fn = fnn_register_avx512bf16},
    {.isa = FNN_ISA_AVX512, .register_fn = fnn_register_avx512},
    {.isa = FNN_ISA_AVX2, .register_fn = fnn_register_avx2},
#endif
#ifdef FNN_HAVE_ARM64
    {.isa = FNN_ISA_NEON, .register_fn = fnn_register_neon},
#endif
    {.isa = FNN_ISA_GENERIC, .register_fn = fnn_register_generic},
};
#define FNN_N_LEVELS ((int)(sizeof(fnn_levels) / sizeof(fnn_levels[0])))

static const char *const fnn_isa_names[FNN_ISA_COUNT] = {
    [FNN_ISA_GENERIC] = "generic", [FNN_ISA_AVX2] = "avx2", [FNN_ISA_AVX512] = "avx512",
    [FNN_ISA_AVX512_BF16] = "avx512_bf16", [FNN_ISA_AMX] = "amx", [FNN_ISA_NEON] = "neon"};

static const char *const fnn_family_names[FNN_FAM_COUNT] = {
    [FNN_FAM_GEMM_F32] = "gemm_f32",     [FNN_FAM_GEMM_F64] = "gemm_f64",
    [FNN_FAM_CONV_F32] = "conv_f32",     [FNN_FAM_CONV_F64] = "conv_f64",
    [FNN_FAM_ACTIVATION] = "activation", [FNN_FAM_DROPOUT] = "dropout",
    [FNN_FAM_OPTIMIZER] = "optimizer",   [FNN_FAM_ALL_FINITE] = "all_finite",
    [FNN_FAM_LOSS] = "loss",             [FNN_FAM_GEMM_BF16] = "gemm_bf16"};

static const char *const fnn_feature_names[FNN_CPU_FEATURE_COUNT] = {
    [FNN_CPU_AVX2] = "avx2",         [FNN_CPU_FMA] = "fma",
    [FNN_CPU_AVX512F] = "avx512f",   [FNN_CPU_AVX512BW] = "avx512bw",
    [FNN_CPU_AVX512VL] = "avx512vl", [FNN_CPU_AVX512DQ] = "avx512dq",
    [FNN_CPU_AVX512_BF16] = "avx512_bf16", [FNN_CPU_AMX_TILE] = "amx_tile",
    [FNN_CPU_AMX_BF16] = "amx_bf16", [FNN_CPU_AMX_INT8] = "amx_int8"};

/* ---- detection ------------------------------------------------------------ */
#ifdef FNN_HAVE_X86
/* r = cpuid(leaf, sub): eax, ebx, ecx, edx; zeros past the highest leaf. */
static void fnn_cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
    r[0] = r[1] = r[2] = r[3] = 0;
#if defined(_MSC_VER)
    int q[4];
    __cpuid(q, (int)(leaf & 0x80000000u));
    if ((unsigned)q[0] < leaf) return;
    __cpuidex(q, (int)leaf, (int)sub);
    for (int i = 0; i < 4; i++) r[i] = (unsigned)q[i];
#else
    if (__get_cpuid_max(leaf & 0x80000000u, NULL) < leaf) return;
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

/* XCR0, the register state the OS saves (0 when the OS has no XSAVE). */
static uint64_t fnn_xcr0(void)
{
    unsigned r[4];
    fnn_cpuid(1, 0, r);
    if (!((r[2] >> 27) & 1)) return 0; /* OSXSAVE: xgetbv is usable */
#if defined(_MSC_VER)
    return (uint64_t)_xgetbv(0);
#else
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
#endif
}

/* XCR0 bits: 1 xmm, 2 ymm upper halves; 5 opmask, 6 zmm upper halves of
 * zmm0-15, 7 zmm16-31; 17 AMX tile config, 18 AMX tile data. */
#define FNN_XCR0_YMM 0x6u
#define FNN_XCR0_ZMM 0xe6u
#define FNN_XCR0_AMX (3u << 17)

/* The FNN_CPU_* feature bits of this CPU, each only with its OS state enabled. */
static uint32_t fnn_detect_features(void)
{
    unsigned r1[4], r7[4], r71[4];
    fnn_cpuid(1, 0, r1);
    fnn_cpuid(7, 0, r7);
    fnn_cpuid(7, 1, r71);
    const uint64_t xcr0 = fnn_xcr0();
    const int os_ymm = (xcr0 & FNN_XCR0_YMM) == FNN_XCR0_YMM;
    const int os_zmm = (xcr0 & FNN_XCR0_ZMM) == FNN_XCR0_ZMM;
    const int os_amx = (xcr0 & FNN_XCR0_AMX) == FNN_XCR0_AMX;
    int avx2, fma, f, bw, vl, dq;
#if defined(__GNUC__) || defined(__clang__)
    /* libgcc's checks (which also look at the OS state), then ours on XCR0 */
    __builtin_cpu_init();
    avx2 = __builtin_cpu_supports("avx2") && os_ymm;
    fma = __builtin_cpu_supports("fma") && os_ymm;
    f = __builtin_cpu_supports("avx512f") && os_zmm;
    bw = __builtin_cpu_supports("avx512bw") && os_zmm;
    vl = __builtin_cpu_supports("avx512vl") && os_zmm;
    dq = __builtin_cpu_supports("avx512dq") && os_zmm;
#else
    const int avx = (r1[2] >> 28) & 1;
    avx2 = avx && ((r7[1] >> 5) & 1) && os_ymm;
    fma = avx && ((r1[2] >> 12) & 1) && os_ymm;
    f = ((r7[1] >> 16) & 1) && os_zmm;
    dq = ((r7[1] >> 17) & 1) && os_zmm;
    bw = ((r7[1] >> 30) & 1) && os_zmm;
    vl = ((r7[1] >> 31) & 1) && os_zmm;
#endif
    uint32_t feat = 0;
    feat |= (uint32_t)avx2 << FNN_CPU_AVX2;
    feat |= (uint32_t)fma << FNN_CPU_FMA;
    feat |= (uint32_t)f << FNN_CPU_AVX512F;
    feat |= (uint32_t)bw << FNN_CPU_AVX512BW;
    feat |= (uint32_t)vl << FNN_CPU_AVX512VL;
    feat |= (uint32_t)dq << FNN_CPU_AVX512DQ;
    feat |= (uint32_t)(((r71[0] >> 5) & 1) && os_zmm) << FNN_CPU_AVX512_BF16;
    feat |= (uint32_t)(((r7[3] >> 24) & 1) && os_amx) << FNN_CPU_AMX_TILE;
    feat |= (uint32_t)(((r7[3] >> 22) & 1) && os_amx) << FNN_CPU_AMX_BF16;
    feat |= (uint32_t)(((r7[3] >> 25) & 1) && os_amx) << FNN_CPU_AMX_INT8;
    (void)r1;
    return feat;
}
#else
/* No x86: no features. */
static uint32_t fnn_detect_features(void) { return 0; }
#endif

#define FNN_BIT(b) (1u << (b))
#define FNN_NEED_AVX2 (FNN_BIT(FNN_CPU_AVX2) | FNN_BIT(FNN_CPU_FMA))
#define FNN_NEED_AVX512                                                                   \
    (FNN_NEED_AVX2 | FNN_BIT(FNN_CPU_AVX512F) | FNN_BIT(FNN_CPU_AVX512BW) |              \
     FNN_BIT(FNN_CPU_AVX512VL) | FNN_BIT(FNN_CPU_AVX512DQ))
#define FNN_NEED_AVX512_BF16 (FNN_NEED_AVX512 | FNN_BIT(FNN_CPU_AVX512_BF16))
#define FNN_NEED_AMX                                                                       \
    (FNN_NEED_AVX512_BF16 | FNN_BIT(FNN_CPU_AMX_TILE) | FNN_BIT(FNN_CPU_AMX_BF16))

/* ---- the registry ----------------------------------------------------------- */
fnn_isa_ctx fnn_ctx_global;
static uint32_t fnn_features;
static int fnn_isa_in_use = FNN_ISA_GENERIC;
static int fnn_request = FNN_ISA_REQ_NONE;

/* Once-only initialization: 0 not started, 1 running, 2 done. */
#if defined(_MSC_VER)
static volatile LONG fnn_init_state;
#define FNN_STATE_LOAD() InterlockedCompareExchange(&fnn_init_state, 0, 0)
#define FNN_STATE_CLAIM() (InterlockedCompareExchange(&fnn_init_state, 1, 0) == 0)
#define FNN_STATE_DONE() InterlockedExchange(&fnn_init_state, 2)
#define FNN_YIELD() SwitchToThread()
#else
#include <sched.h>
static int fnn_init_state;
#define FNN_STATE_LOAD() __atomic_load_n(&fnn_init_state, __ATOMIC_ACQUIRE)
#define FNN_STATE_CLAIM()                                                                  \
    __extension__({                                                                        \
        int e_ = 0;                                                                        \
        __atomic_compare_exchange_n(&fnn_init_state, &e_, 1, 0, __ATOMIC_ACQ_REL,          \
                                    __ATOMIC_ACQUIRE);                                     \
    })
#define FNN_STATE_DONE() __atomic_store_n(&fnn_init_state, 2, __ATOMIC_RELEASE)
#define FNN_YIELD() sched_yield()
#endif

/* 1 once fnn_init has filled the registry. */
int fnn_ctx_ready(void) { return FNN_STATE_LOAD() == 2; }

/* 1 when the CPU and the OS support level isa (and this build has it). */
int fnn_isa_supported(int isa)
{
    const uint32_t f = fnn_detect_features();
    (void)f; /* no feature bits off x86 */
    switch (isa) {
    case FNN_ISA_GENERIC: return 1;
#ifdef FNN_HAVE_X86
    case FNN_ISA_AVX2: return (f & FNN_NEED_AVX2) == FNN_NEED_AVX2;
    case FNN_ISA_AVX512:
#ifdef FNN_SIMDE_AVX512
        /* the test build: AVX-512 emulated by SIMDe, forced on (the placeholder
         * GEMM kernels it borrows from AVX2 still need AVX2) */
        return (f & FNN_NEED_AVX2) == FNN_NEED_AVX2;
#else
        return (f & FNN_NEED_AVX512) == FNN_NEED_AVX512;
#endif
#ifdef FNN_SIMDE_AVX512
    /* the emulated build runs the VDPBF16PS kernel on SIMDe too; AMX has no emulation */
    case FNN_ISA_AVX512_BF16: return (f & FNN_NEED_AVX2) == FNN_NEED_AVX2;
#else
    case FNN_ISA_AVX512_BF16: return (f & FNN_NEED_AVX512_BF16) == FNN_NEED_AVX512_BF16;
    /* AMX also needs the OS's permission for the tile data (asked once) */
    case FNN_ISA_AMX: return (f & FNN_NEED_AMX) == FNN_NEED_AMX && fnn_amx_permitted();
#endif
#endif
#ifdef FNN_HAVE_ARM64
    case FNN_ISA_NEON: return 1; /* Advanced SIMD is part of the AArch64 baseline */
#endif
    default: return 0;
    }
}

/* The table index of the best level FASTNN_ISA allows (0: no cap); sets
 * fnn_request.  A level of this architecture caps at its place in the table
 * (an unsupported one too: the best supported level below it runs); a level of
 * another architecture is unavailable and caps nothing. */
static int fnn_isa_cap(void)
{
    const char *env = getenv("FASTNN_ISA");
    if (env == NULL || env[0] == '\0') {
        fnn_request = FNN_ISA_REQ_NONE;
        return 0;
    }
    for (int isa = 0; isa < FNN_ISA_COUNT; isa++) {
        if (strcmp(env, fnn_isa_names[isa]) == 0) {
            fnn_request = fnn_isa_supported(isa) ? FNN_ISA_REQ_OK : FNN_ISA_REQ_UNAVAILABLE;
            for (int i = 0; i < FNN_N_LEVELS; i++)
                if (fnn_levels[i].isa == isa) return i;
            return 0;
        }
    }
    fnn_request = FNN_ISA_REQ_UNKNOWN;
    return 0;
}

/* The context of the level at table index `top`: every level from the lowest
 * (the table's last) up to it registered. */
static void fnn_build_ctx(fnn_isa_ctx *ctx, int top)
{
    memset(ctx, 0, sizeof(*ctx));
    for (int i = FNN_N_LEVELS - 1; i >= top; i--) fnn_levels[i].register_fn(ctx);
    /* without its own conv kernel a dtype's conv runs the GEMM micro-kernel */
    if (!ctx->conv_f32.ukr) ctx->isa_of[FNN_FAM_CONV_F32] = ctx->isa_of[FNN_FAM_GEMM_F32];
    if (!ctx->conv_f64.ukr) ctx->isa_of[FNN_FAM_CONV_F64] = ctx->isa_of[FNN_FAM_GEMM_F64];
}

/* 1 when every tile of ctx fits the drivers' FNN_MAX_TILE stack tiles. */
static int fnn_ctx_fits(const fnn_isa_ctx *ctx)
{
    return ctx->gemm_f32.mr * ctx->gemm_f32.nr <= FNN_MAX_TILE &&
           ctx->gemm_f64.mr * ctx->gemm_f64.nr <= FNN_MAX_TILE &&
           ctx->conv_f32.mr * ctx->conv_f32.nr <= FNN_MAX_TILE &&
           ctx->conv_f64.mr * ctx->conv_f64.nr <= FNN_MAX_TILE;
}

/* Detect, read FASTNN_ISA, fill the registry with the best level allowed. */
static void fnn_init_once(void)
{
    fnn_features = fnn_detect_features();
    for (int i = fnn_isa_cap(); i < FNN_N_LEVELS; i++) { /* best first */
        const int isa = fnn_levels[i].isa;
        if (!fnn_isa_supported(isa)) continue;
        fnn_build_ctx(&fnn_ctx_global, i);
        if (!fnn_ctx_fits(&fnn_ctx_global)) continue;
        fnn_isa_in_use = isa;
        return;
    }
    fnn_build_ctx(&fnn_ctx_global, FNN_N_LEVELS - 1); /* generic, the table's last */
    fnn_isa_in_use = FNN_ISA_GENERIC;
}

/* Run fnn_init_once exactly once (other threads wait for it); the level chosen. */
int fnn_init(void)
{
    if (FNN_STATE_LOAD() == 2) return fnn_isa_in_use;
    if (FNN_STATE_CLAIM()) {
        fnn_init_once();
        FNN_STATE_DONE();
    } else {
        while (FNN_STATE_LOAD() != 2) FNN_YIELD();
    }
    return fnn_isa_in_use;
}

/* The level in use. */
int fnn_isa(void) { return fnn_init(); }

/* "generic" / "avx2" / "avx512" / "neon" for a level. */
const char *fnn_isa_name(int isa)
{
    return isa >= 0 && isa < FNN_ISA_COUNT ? fnn_isa_names[isa] : "unknown";
}

/* What became of FASTNN_ISA (FNN_ISA_REQ_*). */
int fnn_isa_request(void)
{
    fnn_init();
    return fnn_request;
}

/* The name of kernel family `family` ("gemm_f32", ...). */
const char *fnn_family_name(int family)
{
    return family >= 0 && family < FNN_FAM_COUNT ? fnn_family_names[family] : NULL;
}

/* The level whose kernels family `family` runs. */
int fnn_family_isa(int family)
{
    if (family < 0 || family >= FNN_FAM_COUNT) return -1;
    return fnn_ctx()->isa_of[family];
}

/* The FNN_CPU_* bits detected at init. */
uint32_t fnn_cpu_features(void)
{
    fnn_init();
    return fnn_features;
}

/* The name of feature bit `bit` ("avx512f", ...). */
const char *fnn_cpu_feature_name(int bit)
{
    return bit >= 0 && bit < FNN_CPU_FEATURE_COUNT ? fnn_feature_names[bit] : NULL;
}

/* 1 when the CPU and the OS support AVX2 + FMA. */
int fnn_cpu_has_avx2(void)
{
    return (fnn_cpu_features() & FNN_NEED_AVX2) == FNN_NEED_AVX2;
}

/* The GEMM blocking in use for elem_size 4 (float) or 8 (double). */
void fnn_gemm_blocking(int elem_size, int64_t *mr, int64_t *nr, int64_t *mc, int64_t *kc,
                       int64_t *nc)
{
    const fnn_isa_ctx *ctx = fnn_ctx();
    if (elem_size == 4) {
        *mr = ctx->gemm_f32.mr, *nr = ctx->gemm_f32.nr, *mc = ctx->gemm_f32.mc;
        *kc = ctx->gemm_f32.kc, *nc = ctx->gemm_f32.nc;
    } else {
        *mr = ctx->gemm_f64.mr, *nr = ctx->gemm_f64.nr, *mc = ctx->gemm_f64.mc;
        *kc = ctx->gemm_f64.kc, *nc = ctx->gemm_f64.nc;
    }
}

/* 1 in the SIMDe test build. */
int fnn_isa_emulated(void)
{
#ifdef FNN_SIMDE_AVX512
    return 1;
#else
    return 0;
#endif
}

/* 1 when built with OpenMP. */
int fnn_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* ---- floating-point environment ------------------------------------------ */
/* MXCSR bits: 6 DAZ (denormals are zero), 15 FTZ (flush to zero). */
#define FNN_MXCSR_FTZ_DAZ 0x8040u

#if defined(_MSC_VER)
static volatile LONG fnn_flush = 1;
#define FNN_FLUSH_LOAD() ((int)fnn_flush)
#define FNN_FLUSH_STORE(v) InterlockedExchange(&fnn_flush, (LONG)(v))
#else
static int fnn_flush = 1;
#define FNN_FLUSH_LOAD() __atomic_load_n(&fnn_flush, __ATOMIC_RELAXED)
#define FNN_FLUSH_STORE(v) __atomic_store_n(&fnn_flush, (v), __ATOMIC_RELAXED)
#endif

/* Process-wide: flush subnormals (FTZ+DAZ) in kernel calls when on. */
void fnn_set_flush_denormal(int on) { FNN_FLUSH_STORE(on ? 1 : 0); }

/* 1 when kernel calls flush subnormals. */
int fnn_get_flush_denormal(void) { return FNN_FLUSH_LOAD(); }

/* This thread's MXCSR set to the process's subnormal mode; returns the old one. */
unsigned fnn_fpenv_enter(void)
{
#ifdef FNN_HAVE_MXCSR
    const unsigned old = _mm_getcsr();
    const unsigned want =
        FNN_FLUSH_LOAD() ? old | FNN_MXCSR_FTZ_DAZ : old & ~FNN_MXCSR_FTZ_DAZ;
    if (want != old) _mm_setcsr(want);
    return old;
#else
    return 0;
#endif
}

/* This thread's MXCSR back to `saved` (from fnn_fpenv_enter). */
void fnn_fpenv_leave(unsigned saved)
{
#ifdef FNN_HAVE_MXCSR
    /* the whole register back, exception flags included: a call leaves the
     * caller's floating-point state exactly as it found it */
    if (_mm_getcsr() != saved) _mm_setcsr(saved);
#else
    (void)saved;
#endif
}

/* This thread's MXCSR (0 without one). */
unsigned fnn_mxcsr_get(void)
{
#ifdef FNN_HAVE_MXCSR
    return _mm_getcsr();
#else
    return 0;
#endif
}

/* Set this thread's MXCSR to v (tests). */
void fnn_mxcsr_set(unsigned v)
{
#ifdef FNN_HAVE_MXCSR
    _mm_setcsr(v);
#else
    (void)v;
#endif
}

/* ---- shared size helpers ------------------------------------------------- */
/* (n + 2p - k) / s + 1, or -1 out of domain (see fastnn.h). */
int64_t fnn_window_out_size(int64_t n, int64_t k, int64_t s, int64_t p)
{
    if (n < 0 || k < 1 || s < 1 || p < 0 || p > (INT64_MAX - n) / 2 || n + 2 * p < k)
        return -1;
    return (n + 2 * p - k) / s + 1;
}
