/* activation.c -- activations, derivatives folded into delta, GEMM epilogue. */
#include <math.h>
#include <string.h>

#include "fnn_internal.h"

int fnn_act_needs_z(int act) { return act == FNN_ACT_GELU || act == FNN_ACT_SILU; }

#define FNN_TEMPLATE "activation_impl.h"
#include "fnn_template.h"
