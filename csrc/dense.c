/* dense.c -- the dense (fully connected) layer: forward and backward. */
#include <string.h>

#include "fnn_internal.h"

#define FNN_TEMPLATE "dense_impl.h"
#include "fnn_template.h"
