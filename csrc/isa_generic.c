/* isa_generic.c -- the portable level: what every CPU runs, and what the
 * higher levels inherit unless they provide their own (see cpu.c). */
#include <math.h>
#include <string.h>

#include "fnn_internal.h"

#define FNN_LOOPS_ISA generic
#define FNN_LOOPS_TARGET
#define FNN_TEMPLATE "fnn_loops_impl.h"
#include "fnn_template.h"
#undef FNN_LOOPS_ISA
#undef FNN_LOOPS_TARGET

/* Registers everything: the portable GEMM kernels (tiles for 16 SSE2 / NEON
 * registers), no conv kernel (the conv driver runs the GEMM one), the loops,
 * the portable bf16 GEMM kernel. */
void fnn_register_generic(fnn_isa_ctx *ctx)
{
    ctx->gemm_f32 = (fnn_gemm_cfg_f32){.mr = FNN_GENERIC_MR_F32, .nr = FNN_GENERIC_NR_F32,
                                       .mc = 128, .kc = 256, .nc = 4096,
                                       .ukr = fnn_ukr_generic_f32};
    ctx->gemm_f64 = (fnn_gemm_cfg_f64){.mr = FNN_GENERIC_MR_F64, .nr = FNN_GENERIC_NR_F64,
                                       .mc = 64, .kc = 256, .nc = 4096,
                                       .ukr = fnn_ukr_generic_f64};
    ctx->conv_f32 = (fnn_conv_cfg_f32){.ukr = NULL};
    ctx->conv_f64 = (fnn_conv_cfg_f64){.ukr = NULL};
    ctx->loops_f32 = fnn_loops_generic_f32;
    ctx->loops_f64 = fnn_loops_generic_f64;
    /* bf16 GEMM: pair-packed bf16 panels, the portable 4 x 16 kernel */
    ctx->gemm_bf16 = (fnn_gemm_cfg_bf16){.mr = FNN_GENERIC_MR_BF16, .nr = FNN_GENERIC_NR_BF16,
                                         .mc = 128, .kc = 256, .nc = 4096, .ka = 2,
                                         .ukr = fnn_ukr_generic_bf16};
    for (int f = 0; f < FNN_FAM_COUNT; f++) ctx->isa_of[f] = FNN_ISA_GENERIC;
}
