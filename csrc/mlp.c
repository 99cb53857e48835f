/* mlp.c -- one training step of a Dense-only network in a single call: the
 * layers' kernels chained in C, so a small batch pays no Python per layer. */
#include <math.h>

#include "fnn_internal.h"

#define FNN_TEMPLATE "mlp_impl.h"
#include "fnn_template.h"
