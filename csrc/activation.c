/* activation.c -- activations, derivatives folded into delta, GEMM epilogue. */
#include <math.h>
#include <string.h>

#include "fnn_internal.h"

int fnn_act_needs_z(int act) { return act == FNN_ACT_GELU || act == FNN_ACT_SILU; }

#define T float
#define SFX(f) f##_f32
#define TM(fn) fn##f
#include "activation_impl.h"
#undef T
#undef SFX
#undef TM

#define T double
#define SFX(f) f##_f64
#define TM(fn) fn
#include "activation_impl.h"
#undef T
#undef SFX
#undef TM
