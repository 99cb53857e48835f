/* isa_amx.c -- the AMX level (AMX-TILE + AMX-BF16 over AVX512-BF16, x86-64):
 * only the bf16 GEMM, on TDPBF16PS tiles.  Everything else is inherited from
 * the avx512_bf16 level (its packing loops included).  Only functions named
 * fnn_<what>_amx_bf16 use tile instructions (tools/check_isa.sh).
 *
 * The OS must grant a process the tile data state before its first tile
 * instruction: on Linux arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA),
 * asked once (fnn_amx_permitted); if it is refused the level is unavailable
 * and fnn_init takes the next one down.  Each thread loads the tile
 * configuration when a GEMM call starts on it and releases the tiles when the
 * call ends (thread_begin / thread_end), so no tile state outlives a call.
 * AMX has no emulator: this level is tested natively only. */
#include <string.h>

#include "fnn_internal.h"

#if defined(FNN_HAVE_X86) && defined(__linux__) && !defined(FNN_SIMDE_AVX512) &&           \
    (defined(__GNUC__) || defined(__clang__))
#define FNN_HAVE_AMX 1
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#ifdef FNN_HAVE_AMX
#define FNN_ARCH_REQ_XCOMP_PERM 0x1023
#define FNN_XFEATURE_XTILEDATA 18
#define FNN_TARGET_AMX                                                                      \
    __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))

/* 0 not asked, 1 granted, 2 refused; asked once (racing askers agree: the
 * syscall is idempotent). */
static int fnn_amx_state;

/* 1 once the kernel granted this process the AMX tile data state. */
int fnn_amx_permitted(void)
{
    int s = __atomic_load_n(&fnn_amx_state, __ATOMIC_ACQUIRE);
    if (s == 0) {
        const long r = syscall(SYS_arch_prctl, FNN_ARCH_REQ_XCOMP_PERM, FNN_XFEATURE_XTILEDATA);
        s = r == 0 ? 1 : 2;
        __atomic_store_n(&fnn_amx_state, s, __ATOMIC_RELEASE);
    }
    return s == 1;
}

/* The tile configuration: palette 1; tiles 0-3 the 2 x 2 C tiles (16 x 16
 * float), 4-5 the A tiles (16 rows x 32 bf16), 6-7 the B tiles (16 pair rows
 * x 16 columns x 2 bf16); all 16 rows of 64 bytes. */
typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} fnn_amx_tilecfg;

/* The configuration, a constant (GCC 12's _tile_loadconfig declares only 8
 * bytes of its operand read, so a configuration built on the stack just before
 * can lose its stores to dead-store elimination: the asm below reads all 64). */
static const fnn_amx_tilecfg fnn_amx_cfg __attribute__((aligned(64))) = {
    .palette_id = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16}};

/* Load the tile configuration on this thread. */
FNN_TARGET_AMX static void fnn_tile_begin_amx_bf16(void)
{
    __asm__ volatile("ldtilecfg %0" : : "m"(fnn_amx_cfg) : "memory");
}

/* Release this thread's tiles. */
FNN_TARGET_AMX static void fnn_tile_end_amx_bf16(void) { _tile_release(); }

/* 32 x 32 tile: C tiles (2 x 2) += A (32 x 32 k block) @ B (32 k x 32) per k
 * block of 32; ap: A panel with KA = 32 (per k block 32 rows x 32 values,
 * rows 64 bytes apart); bp: pair panel, NR = 32 (pair rows 128 bytes apart).
 * alpha 1 (every call the layers make): the C tiles are loaded from C (beta 1)
 * or zeroed (beta 0) and stored straight back; otherwise they go through an
 * aligned buffer to C = alpha * acc + beta * C. */
FNN_TARGET_AMX void fnn_ukr_amx_bf16(int64_t kp, const uint16_t *ap, const uint16_t *bp,
                                     float *c, int64_t ldc, float alpha, float beta)
{
    const int direct = alpha == 1.0f && (beta == 0.0f || beta == 1.0f);
    const int64_t ldcb = ldc * (int64_t)sizeof(float);
    if (direct && beta == 1.0f) {
        _tile_loadd(0, c, ldcb);
        _tile_loadd(1, c + 16, ldcb);
        _tile_loadd(2, c + 16 * ldc, ldcb);
        _tile_loadd(3, c + 16 * ldc + 16, ldcb);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int64_t kb = 0; kb < kp; kb += 32) {
        const uint16_t *a0 = ap + kb * 32, *b0 = bp + kb * 32;
        _tile_loadd(4, a0, 64);
        _tile_loadd(6, b0, 128);
        _tile_loadd(7, b0 + 32, 128);
        _tile_loadd(5, a0 + 16 * 32, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    if (direct) {
        _tile_stored(0, c, ldcb);
        _tile_stored(1, c + 16, ldcb);
        _tile_stored(2, c + 16 * ldc, ldcb);
        _tile_stored(3, c + 16 * ldc + 16, ldcb);
        return;
    }
    float buf[32 * 32] __attribute__((aligned(64)));
    _tile_stored(0, buf, 128);
    _tile_stored(1, buf + 16, 128);
    _tile_stored(2, buf + 16 * 32, 128);
    _tile_stored(3, buf + 16 * 32 + 16, 128);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < 32; i++) {
        float *cr = c + i * ldc;
        for (int j = 0; j < 32; j += 16) {
            __m512 v = _mm512_mul_ps(va, _mm512_load_ps(buf + i * 32 + j));
            if (beta != 0) v = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + j), v);
            _mm512_storeu_ps(cr + j, v);
        }
    }
}

/* Registers the AMX bf16 GEMM (packing from the avx512_bf16 level, A in
 * 32-value k blocks). */
void fnn_register_amx(fnn_isa_ctx *ctx)
{
    ctx->gemm_bf16.mr = 32;
    ctx->gemm_bf16.nr = 32;
    ctx->gemm_bf16.mc = 256;
    ctx->gemm_bf16.kc = 512;
    ctx->gemm_bf16.nc = 4096;
    ctx->gemm_bf16.ka = 32;
    ctx->gemm_bf16.ukr = fnn_ukr_amx_bf16;
    ctx->gemm_bf16.thread_begin = fnn_tile_begin_amx_bf16;
    ctx->gemm_bf16.thread_end = fnn_tile_end_amx_bf16;
    ctx->isa_of[FNN_FAM_GEMM_BF16] = FNN_ISA_AMX;
}
#else
/* No AMX in this build (not Linux x86-64 with GCC/Clang, or the SIMDe build). */
int fnn_amx_permitted(void) { return 0; }

/* Never called: the level is never supported here. */
void fnn_register_amx(fnn_isa_ctx *ctx) { (void)ctx; }
#endif
