/*
 * fnn_template.h -- instantiate a type-generic source for float and double.
 *
 *   #define FNN_TEMPLATE "x_impl.h"
 *   #include "fnn_template.h"
 *
 * includes x_impl.h twice, with T, SFX(f) and TM(fn) defined as
 *   float : T = float,  SFX(f) = f_f32, TM(fn) = fn##f   (expf, sqrtf, ...)
 *   double: T = double, SFX(f) = f_f64, TM(fn) = fn      (exp, sqrt, ...)
 * and undefines them (and FNN_TEMPLATE) afterwards.
 */
#ifndef FNN_TEMPLATE
#error "define FNN_TEMPLATE as the file to instantiate before including fnn_template.h"
#endif

#define T float
#define SFX(f) f##_f32
#define TM(fn) fn##f
#include FNN_TEMPLATE
#undef T
#undef SFX
#undef TM

#define T double
#define SFX(f) f##_f64
#define TM(fn) fn
#include FNN_TEMPLATE
#undef T
#undef SFX
#undef TM

#undef FNN_TEMPLATE
