"""fastnn.kernels -- the C kernels, callable from Python with NumPy arrays.

One module per kernel family, as in ``csrc/``: :mod:`.dense` (GEMM, Dense,
activations), :mod:`.loss`, :mod:`.optim`, :mod:`.dropout`, :mod:`.conv`
(convolution and pooling), :mod:`.norm` (batch and layer normalization),
:mod:`.embed` (embedding lookup, the mean over a sequence).
Argument checks shared with the NumPy twins live
below both, in :mod:`fastnn._validation`.

Every function here has a twin of the same name and signature in
:mod:`fastnn.reference` (plain NumPy) that defines its math; the tests hold
each kernel to its twin.  Conventions (NumPy's): inputs first, options next,
preallocated outputs by keyword (``out=``...), outputs returned.  Inputs of
another dtype or layout are converted once; outputs must already be right.
Arrays are float32 when every floating input is float32, float64 otherwise.

Inputs and outputs
------------------
* Inputs may have any layout: non-contiguous, Fortran-ordered, negatively
  strided, read-only, or of another numeric dtype; they are copied to a
  C-contiguous array of the working dtype when (and only when) needed.
* An output (``out=``, ``grad_out=``, ``dx_out=``..., and the parameter and
  state arrays an optimizer step updates in place) must already be a
  C-contiguous, writable ``numpy.ndarray`` of exactly the right shape and dtype:
  otherwise ``TypeError`` (wrong type or dtype) or ``ValueError`` (shape,
  layout, read-only), raised before anything is written.

Aliasing policy: an output must not share memory with any input or with
another output (``ValueError``), with one exception -- the elementwise kernels
whose C loops read element i before writing element i work in place, so there
``out`` may be *exactly* that input (same memory, shape and strides):
``activation_forward(x, out=x)``, ``activation_backward(g, a, out=g)``,
``dropout_forward(x, out=x)``, ``dropout_backward(g, mask, out=g)`` and
``sgd_update(w, w)``.  A partial overlap is still a ``ValueError``.  The
optimizer steps reject a gradient ``g`` that overlaps ``w`` or a state array
(their loops assume distinct arrays).

NaN and Inf: kernels propagate them (a NaN input gives NaN outputs where the
math says so; nothing is clamped or raised).  Checking is the caller's choice:
see :func:`fastnn.check_finite` and ``Sequential.fit(check_finite=...)``.
"""

from .conv import (
    avgpool2d_backward,
    avgpool2d_forward,
    conv2d_backward,
    conv2d_forward,
    global_avgpool_backward,
    global_avgpool_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from .dense import (
    activation_backward,
    activation_forward,
    dense_backward,
    dense_forward,
    gemm,
    round_bf16,
)
from .dropout import dropout_backward, dropout_forward
from .embed import (
    embedding_backward,
    embedding_forward,
    global_avgpool1d_backward,
    global_avgpool1d_forward,
)
from .loss import binary_cross_entropy, cross_entropy, mse
from .norm import (
    batchnorm_backward,
    batchnorm_forward,
    batchnorm_update_stats,
    layernorm_backward,
    layernorm_forward,
)
from .optim import adagrad_step, adam_step, rmsprop_step, sgd_step, sgd_update

#: the same names as fastnn.reference's twins (fastnn._names.KERNELS)
__all__ = [
    "gemm",
    "dense_forward",
    "dense_backward",
    "activation_forward",
    "activation_backward",
    "cross_entropy",
    "mse",
    "binary_cross_entropy",
    "sgd_update",
    "sgd_step",
    "adam_step",
    "rmsprop_step",
    "adagrad_step",
    "dropout_forward",
    "dropout_backward",
    "conv2d_forward",
    "conv2d_backward",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "avgpool2d_forward",
    "avgpool2d_backward",
    "global_avgpool_forward",
    "global_avgpool_backward",
    "embedding_forward",
    "embedding_backward",
    "global_avgpool1d_forward",
    "global_avgpool1d_backward",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_update_stats",
    "layernorm_forward",
    "layernorm_backward",
    "round_bf16",
]
