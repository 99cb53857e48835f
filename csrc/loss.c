/* loss.c -- loss functions, value and gradient fused. */
#include <math.h>

#include "fnn_internal.h"

#define T float
#define SFX(f) f##_f32
#define TM(fn) fn##f
#include "loss_impl.h"
#undef T
#undef SFX
#undef TM

#define T double
#define SFX(f) f##_f64
#define TM(fn) fn
#include "loss_impl.h"
#undef T
#undef SFX
#undef TM
