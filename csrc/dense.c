/* dense.c -- the dense (fully connected) layer: forward and backward. */
#include <string.h>

#include "fnn_internal.h"

#define T float
#define SFX(f) f##_f32
#include "dense_impl.h"
#undef T
#undef SFX

#define T double
#define SFX(f) f##_f64
#include "dense_impl.h"
#undef T
#undef SFX
