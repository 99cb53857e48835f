/* gemm_kernel_generic.c -- the portable GEMM micro-kernels (every CPU). */
#include "fnn_internal.h"

#define T float
#define SFX(f) f##_f32
#define MR FNN_GENERIC_MR_F32
#define NR FNN_GENERIC_NR_F32
#include "gemm_kernel_generic_impl.h"
#undef T
#undef SFX
#undef MR
#undef NR

#define T double
#define SFX(f) f##_f64
#define MR FNN_GENERIC_MR_F64
#define NR FNN_GENERIC_NR_F64
#include "gemm_kernel_generic_impl.h"
#undef T
#undef SFX
#undef MR
#undef NR
