/* isa_neon.c -- the NEON level (arm64 Advanced SIMD, 32 128-bit registers):
 * GEMM micro-kernels for float (8 x 12) and double (6 x 8) with their blocking
 * (gemm_kernel_neon_impl.h, fused multiply-adds as intrinsics), and the
 * elementwise and optimizer loops compiled for this level.  Advanced SIMD is
 * part of the AArch64 baseline, so no target attribute is needed and the
 * generic level's loops are already NEON code (the compiler vectorizes them):
 * the loops here are the same code, registered so that every family of this
 * level reports it; the level's gain is the register-blocked GEMM.  Packing of
 * full panels that need a transpose (non-transposed A, transposed B) goes
 * through NEON 4 x 4 (float) / 2 x 2 (double) transposes; the other panels and
 * the edge tiles use the portable loops of gemm_impl.h.  Functions are named fnn_<what>_neon_<dtype>. */
#include <math.h>
#include <string.h>

#include "fnn_internal.h"

#ifdef FNN_HAVE_ARM64
#include <arm_neon.h>

#define FNN_LOOPS_ISA neon
#define FNN_LOOPS_TARGET
#define FNN_TEMPLATE "fnn_loops_impl.h"
#include "fnn_template.h"
#undef FNN_LOOPS_ISA
#undef FNN_LOOPS_TARGET

#define FNN_NEON_MR_F32 8
#define FNN_NEON_NR_F32 12
#define FNN_NEON_MR_F64 6
#define FNN_NEON_NR_F64 8

#define T float
#define SFX(f) f##_f32
#define VEC float32x4_t
#define W 4
#define MR FNN_NEON_MR_F32
#define NV (FNN_NEON_NR_F32 / 4)
#define VLD vld1q_f32
#define VST vst1q_f32
#define VDUP vdupq_n_f32
#define VFMA vfmaq_f32
#define VFMA_LANE vfmaq_laneq_f32
#define VMUL vmulq_f32
#define VADD vaddq_f32
/* 4 x 4: trn1/trn2 of row pairs, then of 64-bit halves */
#define TRANSPOSE(r)                                                                         \
    do {                                                                                     \
        const float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r[0], r[1]));                \
        const float64x2_t t1 = vreinterpretq_f64_f32(vtrn2q_f32(r[0], r[1]));                \
        const float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r[2], r[3]));                \
        const float64x2_t t3 = vreinterpretq_f64_f32(vtrn2q_f32(r[2], r[3]));                \
        r[0] = vreinterpretq_f32_f64(vtrn1q_f64(t0, t2));                                    \
        r[1] = vreinterpretq_f32_f64(vtrn1q_f64(t1, t3));                                    \
        r[2] = vreinterpretq_f32_f64(vtrn2q_f64(t0, t2));                                    \
        r[3] = vreinterpretq_f32_f64(vtrn2q_f64(t1, t3));                                    \
    } while (0)
#include "gemm_kernel_neon_impl.h" /* undefines its parameters */

#define T double
#define SFX(f) f##_f64
#define VEC float64x2_t
#define W 2
#define MR FNN_NEON_MR_F64
#define NV (FNN_NEON_NR_F64 / 2)
#define VLD vld1q_f64
#define VST vst1q_f64
#define VDUP vdupq_n_f64
#define VFMA vfmaq_f64
#define VFMA_LANE vfmaq_laneq_f64
#define VMUL vmulq_f64
#define VADD vaddq_f64
#define TRANSPOSE(r)                                                                         \
    do {                                                                                     \
        const float64x2_t t0 = vtrn1q_f64(r[0], r[1]);                                       \
        r[1] = vtrn2q_f64(r[0], r[1]);                                                       \
        r[0] = t0;                                                                           \
    } while (0)
#include "gemm_kernel_neon_impl.h" /* undefines its parameters */

/* Registers the NEON GEMM kernels and blocking and the loops (over what
 * fnn_register_generic put in ctx).  Blocking: KC x NR of B and MR x KC of A in
 * L1 (float: 256 x 12 x 4 = 12 KiB, 8 x 256 x 4 = 8 KiB), MC x KC of A in L2. */
void fnn_register_neon(fnn_isa_ctx *ctx)
{
    ctx->gemm_f32 = (fnn_gemm_cfg_f32){.mr = FNN_NEON_MR_F32, .nr = FNN_NEON_NR_F32,
                                       .mc = 128, .kc = 256, .nc = 4080,
                                       .ukr = fnn_ukr_neon_f32, .pack_a = fnn_pack_a_neon_f32,
                                       .pack_bt = fnn_pack_bt_neon_f32};
    ctx->gemm_f64 = (fnn_gemm_cfg_f64){.mr = FNN_NEON_MR_F64, .nr = FNN_NEON_NR_F64,
                                       .mc = 96, .kc = 256, .nc = 4088,
                                       .ukr = fnn_ukr_neon_f64, .pack_a = fnn_pack_a_neon_f64,
                                       .pack_bt = fnn_pack_bt_neon_f64};
    ctx->isa_of[FNN_FAM_GEMM_F32] = ctx->isa_of[FNN_FAM_GEMM_F64] = FNN_ISA_NEON;
    ctx->loops_f32 = fnn_loops_neon_f32;
    ctx->loops_f64 = fnn_loops_neon_f64;
    ctx->isa_of[FNN_FAM_ACTIVATION] = ctx->isa_of[FNN_FAM_DROPOUT] = FNN_ISA_NEON;
    ctx->isa_of[FNN_FAM_OPTIMIZER] = ctx->isa_of[FNN_FAM_ALL_FINITE] = FNN_ISA_NEON;
    ctx->isa_of[FNN_FAM_LOSS] = FNN_ISA_NEON;
}
#endif /* FNN_HAVE_ARM64 */
