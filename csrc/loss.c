/* loss.c -- loss functions, value and gradient fused. */
#include <math.h>

#include "fnn_internal.h"

#define FNN_TEMPLATE "loss_impl.h"
#include "fnn_template.h"
