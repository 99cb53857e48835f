"""fastnn.kernels -- the C kernels, callable from Python with NumPy arrays.

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

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _kernels as _k
from ._config import get_num_threads
from ._names import KERNELS, NEEDS_Z, activation_code, activation_name
from ._validation import (
    as_float_array,
    check_shape,
    common_float_dtype,
    labels_array,
    output,
    positive_int,
)
from ._validation import same_memory as _same_memory

#: Cython specialization name of each dtype; ``_k.fn[_SPEC[dt]]`` picks the
#: float or double version without runtime dispatch (None arguments included).
_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

__all__ = list(KERNELS)


def gemm(a: Any, b: Any, *, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0,
         beta: float = 0.0, out: np.ndarray | None = None) -> np.ndarray:
    """General matrix multiply ``out = alpha * op(a) @ op(b) + beta * out``.

    Parameters
    ----------
    a : array_like, (m, k), or (k, m) when ``trans_a``
    b : array_like, (k, n), or (n, k) when ``trans_b``
    trans_a, trans_b : bool
        Use the transpose of ``a`` / ``b`` (absorbed by the packing; no copy).
    alpha, beta : float
        Scalars; ``beta == 0`` overwrites ``out`` without reading it.
    out : ndarray, (m, n), optional
        Result buffer; required to hold meaningful values when ``beta != 0``.

    Returns
    -------
    ndarray, (m, n)

    """
    dt = common_float_dtype(a, b)
    a = as_float_array(a, "a", dt, 2)
    b = as_float_array(b, "b", dt, 2)
    m, ka = (a.shape[1], a.shape[0]) if trans_a else a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if ka != kb:
        raise ValueError(
            f"gemm: inner dimensions differ: op(a) is {(m, ka)}, op(b) is {(kb, n)} "
            f"(a {a.shape}, trans_a={trans_a}; b {b.shape}, trans_b={trans_b})"
        )
    if beta != 0 and out is None:
        raise ValueError("gemm: beta != 0 needs out= holding the matrix to accumulate into")
    out = output(out, "out", (m, n), dt, (a, b))
    _k.gemm[_SPEC[out.dtype]](out, a, b, bool(trans_a), bool(trans_b), float(alpha), float(beta),
            get_num_threads())
    return out


def dense_forward(x: Any, w: Any, b: Any = None, activation: str | None = "identity", *,
                  out: np.ndarray | None = None, z_out: np.ndarray | None = None) -> np.ndarray:
    """Fused dense layer ``out = act(x @ w + b)`` in one pass over the output.

    Parameters
    ----------
    x : array_like, (batch, in_features)
    w : array_like, (in_features, out_features)
    b : array_like, (out_features,), optional
    activation : str or None
        One of :data:`fastnn.ACTIVATIONS`; softmax is taken over each row.
    out : ndarray, (batch, out_features), optional
    z_out : ndarray, (batch, out_features), optional
        Receives the pre-activation ``x @ w + b`` (needed by the backward pass
        of gelu and silu only).

    Returns
    -------
    ndarray, (batch, out_features)

    """
    act = activation_code(activation)
    dt = common_float_dtype(x, w, b)
    x = as_float_array(x, "x", dt, 2)
    w = as_float_array(w, "w", dt, 2)
    if x.shape[1] != w.shape[0]:
        raise ValueError(
            f"dense_forward: x has {x.shape[1]} features but w expects {w.shape[0]} "
            f"(x {x.shape}, w {w.shape})"
        )
    if b is not None:
        b = as_float_array(b, "b", dt, 1)
        check_shape(b, "b", (w.shape[1],))
    shape = (x.shape[0], w.shape[1])
    out = output(out, "out", shape, dt, (x, w, b))
    if z_out is not None:
        z_out = output(z_out, "z_out", shape, dt, (x, w, b, out))
    _k.dense_forward[_SPEC[out.dtype]](out, z_out, x, w, b, act, get_num_threads())
    return out


def dense_backward(grad_out: Any, x: Any, w: Any, out_act: Any, pre_act: Any = None,
                   activation: str | None = "identity", *, need_dx: bool = True,
                   dx_out: np.ndarray | None = None, dw_out: np.ndarray | None = None,
                   db_out: np.ndarray | None = None
                   ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Backward pass of :func:`dense_forward`.

    The error ``delta = grad_out * act'(z)`` is formed in one pass that also
    sums ``db``; then ``dw = x.T @ delta`` and ``dx = delta @ w.T`` (transposes
    absorbed by the GEMM packing).

    Parameters
    ----------
    grad_out : array_like, (batch, out_features)
        dL/d(out_act).
    x : array_like, (batch, in_features)
    w : array_like, (in_features, out_features)
    out_act : array_like, (batch, out_features)
        The forward output ``act(z)``.
    pre_act : array_like, (batch, out_features), optional
        The pre-activation ``z``; required for gelu and silu.
    activation : str or None
    need_dx : bool
        False skips dx (the first layer of a network needs none).
    dx_out, dw_out, db_out : ndarray, optional
        Result buffers of shapes (batch, in), (in, out), (out,).

    Returns
    -------
    dx : ndarray (batch, in_features) or None
    dw : ndarray (in_features, out_features)
    db : ndarray (out_features,)

    """
    name = activation_name(activation)
    act = activation_code(name)
    dt = common_float_dtype(grad_out, x, w, out_act, pre_act)
    x = as_float_array(x, "x", dt, 2)
    w = as_float_array(w, "w", dt, 2)
    if x.shape[1] != w.shape[0]:
        raise ValueError(
            f"dense_backward: x has {x.shape[1]} features but w expects {w.shape[0]} "
            f"(x {x.shape}, w {w.shape})"
        )
    shape = (x.shape[0], w.shape[1])
    grad_out = as_float_array(grad_out, "grad_out", dt, 2)
    check_shape(grad_out, "grad_out", shape)
    out_act = as_float_array(out_act, "out_act", dt, 2)
    check_shape(out_act, "out_act", shape)
    if pre_act is not None:
        pre_act = as_float_array(pre_act, "pre_act", dt, 2)
        check_shape(pre_act, "pre_act", shape)
    elif name in NEEDS_Z:
        raise ValueError(f"dense_backward: activation {name!r} needs pre_act (the forward's z)")
    ins = (grad_out, x, w, out_act, pre_act)
    dw = output(dw_out, "dw_out", w.shape, dt, ins)
    db = output(db_out, "db_out", (w.shape[1],), dt, (*ins, dw))
    dx = output(dx_out, "dx_out", x.shape, dt, (*ins, dw, db)) if need_dx else None
    delta = np.empty(shape, dtype=dt)
    _k.dense_backward[_SPEC[dt]](dx, dw, db, delta, grad_out, out_act, pre_act, x, w, act, 0.0,
                      get_num_threads())
    return dx, dw, db


def _as_rows(x: np.ndarray) -> np.ndarray:
    """View of x as 2-D rows over its last axis (a scalar becomes (1, 1))."""
    if x.ndim == 0:
        return x.reshape(1, 1)
    return x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x


def activation_forward(x: Any, activation: str | None, *,
                       out: np.ndarray | None = None) -> np.ndarray:
    """Elementwise ``act(x)``; softmax is taken over the last axis.

    Parameters
    ----------
    x : array_like, any shape
    activation : str or None
    out : ndarray, same shape as x, optional (may be ``x`` itself)

    Returns
    -------
    ndarray, x's shape

    """
    act = activation_code(activation)
    dt = common_float_dtype(x)
    x = as_float_array(x, "x", dt)
    out = output(out, "out", x.shape, dt, same_ok=(x,))
    if x.size:
        _k.act_forward[_SPEC[dt]](_as_rows(out), _as_rows(x), act)
    return out


def activation_backward(grad_out: Any, out_act: Any, pre_act: Any = None,
                        activation: str | None = "identity", *,
                        out: np.ndarray | None = None) -> np.ndarray:
    """``grad_out * act'(z)`` from ``out_act = act(z)`` (and ``pre_act = z`` for gelu, silu).

    For softmax this is the Jacobian-vector product over the last axis.

    Parameters
    ----------
    grad_out, out_act : array_like, same shape
    pre_act : array_like, same shape, optional (required for gelu and silu)
    activation : str or None
    out : ndarray, same shape, optional (may be ``grad_out`` itself)

    Returns
    -------
    ndarray

    """
    name = activation_name(activation)
    dt = common_float_dtype(grad_out, out_act, pre_act)
    grad_out = as_float_array(grad_out, "grad_out", dt)
    out_act = as_float_array(out_act, "out_act", dt)
    check_shape(out_act, "out_act", grad_out.shape)
    if pre_act is not None:
        pre_act = as_float_array(pre_act, "pre_act", dt)
        check_shape(pre_act, "pre_act", grad_out.shape)
    elif name in NEEDS_Z:
        raise ValueError(f"activation_backward: activation {name!r} needs pre_act")
    out = output(out, "out", grad_out.shape, dt, (out_act, pre_act), same_ok=(grad_out,))
    if grad_out.size:
        _k.act_backward[_SPEC[dt]](_as_rows(out), None, _as_rows(grad_out), _as_rows(out_act),
                        None if pre_act is None else _as_rows(pre_act), activation_code(name))
    return out


def cross_entropy(logits: Any, labels: Any, *,
                  grad_out: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy from logits, mean over the batch (``torch.nn.CrossEntropyLoss``).

    Parameters
    ----------
    logits : array_like, (batch, classes)
    labels : array_like
        Integer class indices (batch,) or probability rows (batch, classes)
        (one-hot or soft labels).
    grad_out : ndarray, (batch, classes), optional

    Returns
    -------
    loss : float
    grad : ndarray, (batch, classes)
        dL/dlogits.

    """
    lab_arr = np.asarray(labels)
    is_rows = lab_arr.ndim == 2
    dt = common_float_dtype(logits, lab_arr if is_rows else None)
    logits = as_float_array(logits, "logits", dt, 2)
    if logits.shape[1] < 1:
        raise ValueError(f"logits must have at least one class column, got {logits.shape}")
    if is_rows:
        target = as_float_array(lab_arr, "labels", dt, 2)
        check_shape(target, "labels", logits.shape)
        lab = None
    else:
        lab = labels_array(lab_arr, logits.shape[0], logits.shape[1], "labels")
        target = None
    grad = output(grad_out, "grad_out", logits.shape, dt, (logits, target))
    loss = _k.cross_entropy[_SPEC[grad.dtype]](grad, logits, lab, target)
    return float(loss), grad


def _pair(pred: Any, target: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Two same-shape float arrays of one dtype."""
    dt = common_float_dtype(pred, target)
    p = as_float_array(pred, names[0], dt)
    t = as_float_array(target, names[1], dt)
    check_shape(t, names[1], p.shape)
    return p, t


def mse(pred: Any, target: Any, *, grad_out: np.ndarray | None = None
        ) -> tuple[float, np.ndarray]:
    """Mean squared error over all elements (``torch.nn.MSELoss``).

    Parameters
    ----------
    pred, target : array_like, same shape
    grad_out : ndarray, pred's shape, optional

    Returns
    -------
    loss : float
    grad : ndarray, pred's shape
        dL/dpred = 2 (pred - target) / pred.size.

    """
    p, t = _pair(pred, target, ("pred", "target"))
    grad = output(grad_out, "grad_out", p.shape, p.dtype, (p, t))
    loss = _k.mse[_SPEC[grad.dtype]](grad.reshape(-1), p.reshape(-1), t.reshape(-1))
    return float(loss), grad


def binary_cross_entropy(logits: Any, target: Any, *, grad_out: np.ndarray | None = None
                         ) -> tuple[float, np.ndarray]:
    """Binary cross-entropy from logits, mean over all elements (``BCEWithLogitsLoss``).

    Parameters
    ----------
    logits, target : array_like, same shape (target in [0, 1])
    grad_out : ndarray, logits' shape, optional

    Returns
    -------
    loss : float
    grad : ndarray, logits' shape
        dL/dlogits = (sigmoid(logits) - target) / logits.size.

    """
    x, t = _pair(logits, target, ("logits", "target"))
    grad = output(grad_out, "grad_out", x.shape, x.dtype, (x, t))
    loss = _k.bce_logits[_SPEC[grad.dtype]](grad.reshape(-1), x.reshape(-1), t.reshape(-1))
    return float(loss), grad


def sgd_update(w: np.ndarray, dw: Any, lr: float) -> np.ndarray:
    """Delta-rule update ``w -= lr * dw``, in place, one pass.

    Parameters
    ----------
    w : ndarray, any shape, float32/float64, C-contiguous and writable
    dw : array_like, w's shape
    lr : float

    Returns
    -------
    ndarray
        ``w`` itself.

    """
    if not isinstance(w, np.ndarray):
        raise TypeError(f"w must be a numpy.ndarray updated in place, got {type(w).__name__}")
    if w.dtype not in (np.float32, np.float64):
        raise TypeError(f"w must be float32 or float64, got {w.dtype}")
    output(w, "w", w.shape, w.dtype)
    g = as_float_array(dw, "dw", w.dtype)
    check_shape(g, "dw", w.shape)
    if np.may_share_memory(g, w) and not _same_memory(g, w):
        raise ValueError("dw partly overlaps w; pass a separate array (or w itself)")
    _k.sgd_update[_SPEC[w.dtype]](w.reshape(-1), g.reshape(-1), float(lr))
    return w


# ---- optimizer steps --------------------------------------------------------------
# Shared by these kernels and their twins in fastnn.reference, so that both
# accept and reject exactly the same arguments.  Every check runs before any
# array is written.

def _real(value: Any, name: str, lo: float = 0.0, hi: float = math.inf, *,
          hi_open: bool = False) -> float:
    """``value`` as a finite float in [lo, hi] (or [lo, hi) when ``hi_open``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if not (lo <= v and (v < hi if hi_open else v <= hi)):
        if hi == math.inf:
            raise ValueError(f"{name} must be >= {lo:g}, got {value!r}")
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}{')' if hi_open else ']'}, "
                         f"got {value!r}")
    return v


def _uint64(value: Any, name: str) -> int:
    """``value`` as an int in [0, 2**64)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= int(value) < 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    return int(value)


def _param_grad(w: Any, g: Any) -> np.ndarray:
    """Check the parameter ``w`` (updated in place); ``g`` converted to w's dtype and shape."""
    if not isinstance(w, np.ndarray):
        raise TypeError(f"w must be a numpy.ndarray updated in place, got {type(w).__name__}")
    if w.dtype not in (np.float32, np.float64):
        raise TypeError(f"w must be float32 or float64, got {w.dtype}")
    output(w, "w", w.shape, w.dtype)
    g = as_float_array(g, "g", w.dtype)
    check_shape(g, "g", w.shape)
    if np.may_share_memory(g, w):  # the C loops declare w and g restrict
        raise ValueError("g overlaps w; pass the gradient in a separate array")
    return g


def _states(w: np.ndarray, g: np.ndarray | None = None, **arrays: np.ndarray | None) -> None:
    """Each state array: w's shape and dtype, writable, C-contiguous, overlapping nothing
    (neither w, the gradient g, nor another state array).
    """
    seen = [w, g]
    for name, arr in arrays.items():
        if arr is not None:
            output(arr, name, w.shape, w.dtype, seen)
            seen.append(arr)


def _check_sgd(w, g, buf, lr, momentum, dampening, nesterov, weight_decay) -> tuple:
    g = _param_grad(w, g)
    lr = _real(lr, "lr")
    momentum = _real(momentum, "momentum")
    dampening = _real(dampening, "dampening", -math.inf)
    weight_decay = _real(weight_decay, "weight_decay")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"nesterov=True needs momentum > 0 and dampening == 0, got "
                         f"momentum={momentum!r}, dampening={dampening!r}")
    if momentum != 0 and buf is None:
        raise ValueError(f"momentum={momentum!r} needs buf= (the momentum buffer, w's shape)")
    _states(w, g, buf=buf if momentum != 0 else None)
    return g, lr, momentum, dampening, weight_decay


def _check_adam(w, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay) -> tuple:
    g = _param_grad(w, g)
    if m is None or v is None:
        raise ValueError("adam_step needs the moment arrays m and v (w's shape, zeros at start)")
    _states(w, g, m=m, v=v, vmax=vmax)
    return (g, positive_int(step, "step"), _real(lr, "lr"),
            _real(beta1, "beta1", 0.0, 1.0, hi_open=True),
            _real(beta2, "beta2", 0.0, 1.0, hi_open=True), _real(eps, "eps"),
            _real(weight_decay, "weight_decay"))


def _check_rmsprop(w, g, sq, buf, gavg, lr, alpha, eps, weight_decay, momentum,
                   centered) -> tuple:
    g = _param_grad(w, g)
    lr, alpha = _real(lr, "lr"), _real(alpha, "alpha", 0.0, 1.0)
    eps, weight_decay = _real(eps, "eps"), _real(weight_decay, "weight_decay")
    momentum = _real(momentum, "momentum")
    if sq is None:
        raise ValueError("rmsprop_step needs sq (the running mean of g**2, w's shape)")
    if momentum > 0 and buf is None:
        raise ValueError(f"momentum={momentum!r} needs buf= (the momentum buffer, w's shape)")
    if centered and gavg is None:
        raise ValueError("centered=True needs gavg= (the running mean of g, w's shape)")
    _states(w, g, sq=sq, buf=buf if momentum > 0 else None, gavg=gavg if centered else None)
    return g, lr, alpha, eps, weight_decay, momentum


def _check_adagrad(w, g, sum_sq, step, lr, lr_decay, weight_decay, eps) -> tuple:
    g = _param_grad(w, g)
    if sum_sq is None:
        raise ValueError("adagrad_step needs sum_sq (the running sum of g**2, w's shape)")
    _states(w, g, sum_sq=sum_sq)
    return (g, positive_int(step, "step"), _real(lr, "lr"), _real(lr_decay, "lr_decay"),
            _real(weight_decay, "weight_decay"), _real(eps, "eps"))


def sgd_step(w: np.ndarray, g: Any, buf: np.ndarray | None = None, *, lr: float,
             momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
             weight_decay: float = 0.0, first_step: bool = True) -> np.ndarray:
    """One ``torch.optim.SGD`` step on ``w``, in place, in one fused pass.

    ``d = g + weight_decay * w``; with momentum,
    ``buf = d if first_step else momentum * buf + (1 - dampening) * d`` and
    ``d = d + momentum * buf`` (nesterov) or ``d = buf``; then ``w -= lr * d``.

    Parameters
    ----------
    w : ndarray, any shape, float32/float64, C-contiguous and writable
        The parameter, updated in place.
    g : array_like, w's shape
        Its gradient.
    buf : ndarray, w's shape and dtype, optional
        Momentum buffer, updated in place; required when ``momentum != 0``
        (its contents are ignored when ``first_step``).
    lr : float >= 0
    momentum : float >= 0
    dampening : float
    nesterov : bool
        Needs ``momentum > 0`` and ``dampening == 0`` (as torch).
    weight_decay : float >= 0
        L2 penalty added to the gradient.
    first_step : bool
        True on the parameter's first step: ``buf`` starts as ``d`` (torch's
        ``buf is None``), without dampening.

    Returns
    -------
    ndarray
        ``w`` itself.

    """
    g, lr, momentum, dampening, weight_decay = _check_sgd(w, g, buf, lr, momentum, dampening,
                                                          nesterov, weight_decay)
    _k.sgd_step[_SPEC[w.dtype]](w.reshape(-1), g.reshape(-1),
                                None if momentum == 0 else buf.reshape(-1), lr, momentum,
                                dampening, bool(nesterov), weight_decay, bool(first_step),
                                get_num_threads())
    return w


def adam_step(w: np.ndarray, g: Any, m: np.ndarray, v: np.ndarray, *, step: int,
              lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
              weight_decay: float = 0.0, decoupled: bool = False,
              vmax: np.ndarray | None = None) -> np.ndarray:
    """One ``torch.optim.Adam`` (or ``AdamW`` when ``decoupled``) step on ``w``, in place.

    ``g += weight_decay * w`` (Adam) or ``w *= 1 - lr * weight_decay`` (AdamW);
    ``m = beta1 m + (1 - beta1) g``; ``v = beta2 v + (1 - beta2) g**2``;
    with ``vmax`` (amsgrad) ``vmax = max(vmax, v)`` replaces ``v`` below;
    ``w -= lr / (1 - beta1**step) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps)``
    (eps outside the square root, as torch).  One fused pass.

    Parameters
    ----------
    w : ndarray, any shape, float32/float64, C-contiguous and writable
    g : array_like, w's shape
    m, v : ndarray, w's shape and dtype
        First and second moments, updated in place; zeros before step 1.
    step : int >= 1
        Number of this step, counting from 1 (for the bias corrections).
    lr : float >= 0
    beta1, beta2 : float in [0, 1)
    eps : float >= 0
    weight_decay : float >= 0
    decoupled : bool
        AdamW's decoupled weight decay instead of Adam's L2 gradient term.
    vmax : ndarray, w's shape and dtype, optional
        Running maximum of ``v``; giving it turns on amsgrad.

    Returns
    -------
    ndarray
        ``w`` itself.

    """
    g, step, lr, beta1, beta2, eps, weight_decay = _check_adam(w, g, m, v, vmax, step, lr, beta1,
                                                               beta2, eps, weight_decay)
    _k.adam_step[_SPEC[w.dtype]](w.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                                 None if vmax is None else vmax.reshape(-1), step, lr, beta1,
                                 beta2, eps, weight_decay, bool(decoupled), get_num_threads())
    return w


def rmsprop_step(w: np.ndarray, g: Any, sq: np.ndarray, *, lr: float = 1e-2,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, buf: np.ndarray | None = None,
                 gavg: np.ndarray | None = None) -> np.ndarray:
    """One ``torch.optim.RMSprop`` step on ``w``, in place, in one fused pass.

    ``g += weight_decay * w``; ``sq = alpha sq + (1 - alpha) g**2``; centered:
    ``gavg = alpha gavg + (1 - alpha) g`` and ``avg = sqrt(sq - gavg**2) + eps``,
    else ``avg = sqrt(sq) + eps``; with momentum ``buf = momentum buf + g / avg``
    and ``w -= lr * buf``, else ``w -= lr * g / avg``.

    Parameters
    ----------
    w : ndarray, any shape, float32/float64, C-contiguous and writable
    g : array_like, w's shape
    sq : ndarray, w's shape and dtype
        Running mean of ``g**2``, updated in place; zeros before the first step.
    lr : float >= 0
    alpha : float in [0, 1]
    eps : float >= 0
    weight_decay : float >= 0
    momentum : float >= 0
    centered : bool
    buf : ndarray, w's shape and dtype, optional
        Momentum buffer (zeros at the start); required when ``momentum > 0``.
    gavg : ndarray, w's shape and dtype, optional
        Running mean of ``g`` (zeros at the start); required when ``centered``.

    Returns
    -------
    ndarray
        ``w`` itself.

    Notes
    -----
    When centered, ``sq - gavg**2`` is clamped at 0 before the square root:
    it is never negative in exact arithmetic, and rounding must not make a NaN.

    """
    g, lr, alpha, eps, weight_decay, momentum = _check_rmsprop(
        w, g, sq, buf, gavg, lr, alpha, eps, weight_decay, momentum, centered)
    _k.rmsprop_step[_SPEC[w.dtype]](
        w.reshape(-1), g.reshape(-1), sq.reshape(-1),
        buf.reshape(-1) if momentum > 0 else None, gavg.reshape(-1) if centered else None,
        lr, alpha, eps, weight_decay, momentum, bool(centered), get_num_threads())
    return w


def adagrad_step(w: np.ndarray, g: Any, sum_sq: np.ndarray, *, step: int, lr: float = 1e-2,
                 lr_decay: float = 0.0, weight_decay: float = 0.0,
                 eps: float = 1e-10) -> np.ndarray:
    """One ``torch.optim.Adagrad`` step on ``w``, in place, in one fused pass.

    ``g += weight_decay * w``; ``clr = lr / (1 + (step - 1) * lr_decay)``;
    ``sum_sq += g**2``; ``w -= clr * g / (sqrt(sum_sq) + eps)``.

    Parameters
    ----------
    w : ndarray, any shape, float32/float64, C-contiguous and writable
    g : array_like, w's shape
    sum_sq : ndarray, w's shape and dtype
        Running sum of ``g**2``, updated in place; starts at torch's
        ``initial_accumulator_value`` (0 by default).
    step : int >= 1
        Number of this step, counting from 1.
    lr, lr_decay, weight_decay : float >= 0
    eps : float >= 0

    Returns
    -------
    ndarray
        ``w`` itself.

    """
    g, step, lr, lr_decay, weight_decay, eps = _check_adagrad(w, g, sum_sq, step, lr, lr_decay,
                                                              weight_decay, eps)
    _k.adagrad_step[_SPEC[w.dtype]](w.reshape(-1), g.reshape(-1), sum_sq.reshape(-1), step, lr,
                                    lr_decay, weight_decay, eps, get_num_threads())
    return w


# ---- dropout ------------------------------------------------------------------------

def _mask_array(mask: Any, name: str, shape: tuple, *, writable: bool) -> np.ndarray:
    """A uint8 (or bool, viewed as uint8) C-contiguous mask of ``shape``."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of uint8, got {type(mask).__name__}")
    if mask.dtype not in (np.uint8, np.bool_):
        raise TypeError(f"{name} must have dtype uint8 (or bool), got {mask.dtype}")
    check_shape(mask, name, shape)
    if not mask.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if writable and not mask.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return mask.view(np.uint8)


def _check_dropout_forward(x, p, seed, offset, out, mask_out) -> tuple:
    x = as_float_array(x, "x", common_float_dtype(x))
    p = _real(p, "p", 0.0, 1.0, hi_open=True)
    seed, offset = _uint64(seed, "seed"), _uint64(offset, "offset")
    out = output(out, "out", x.shape, x.dtype, same_ok=(x,))
    if mask_out is None:
        mask = np.empty(x.shape, dtype=np.uint8)
    else:
        mask = _mask_array(mask_out, "mask_out", x.shape, writable=True)
        if np.may_share_memory(mask, x) or np.may_share_memory(mask, out):
            raise ValueError("mask_out overlaps x or out; pass a separate buffer")
    return x, p, seed, offset, out, mask


def _check_dropout_backward(grad_out, mask, p, out) -> tuple:
    dy = as_float_array(grad_out, "grad_out", common_float_dtype(grad_out))
    mask = _mask_array(mask, "mask", dy.shape, writable=False)
    p = _real(p, "p", 0.0, 1.0, hi_open=True)
    return dy, mask, p, output(out, "out", dy.shape, dy.dtype, (mask,), same_ok=(dy,))


def dropout_forward(x: Any, p: float, seed: int, *, offset: int = 0,
                    out: np.ndarray | None = None,
                    mask_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inverted dropout: keep each element with probability ``1 - p``, scaled by ``1/(1-p)``.

    The mask comes from a counter-based RNG: element ``i`` (in C order) is kept
    iff ``u >= p``, where ``u = (h >> 40) / 2**24`` and ``h`` is output number
    ``offset + i`` (counting from 0) of the splitmix64 generator seeded with
    ``seed`` (formula in ``csrc/dropout.c``).  So a mask depends only on
    ``(seed, offset, i)``: it is reproducible, the same for float32 and
    float64, and independent of the thread count.  Use a new ``offset`` (or
    ``seed``) per call, e.g. ``offset = step * x.size``, for fresh masks.

    Parameters
    ----------
    x : array_like, any shape
    p : float in [0, 1)
        Drop probability; 0 gives ``out = x`` and an all-ones mask.
    seed : int in [0, 2**64)
    offset : int in [0, 2**64)
        Counter of the first element.
    out : ndarray, x's shape and dtype, optional (may be ``x`` itself)
    mask_out : ndarray, x's shape, uint8 (or bool), optional

    Returns
    -------
    out : ndarray, x's shape
        ``x * (mask * s)`` with ``s = 1/(1-p)`` rounded to the dtype: ``x * s``
        where kept, ``x * 0`` (0, or nan for a non-finite x, as torch) elsewhere.
    mask : ndarray, x's shape, uint8
        1 where kept, 0 where dropped (``mask_out`` itself when given).

    """
    x, p, seed, offset, out, mask = _check_dropout_forward(x, p, seed, offset, out, mask_out)
    _k.dropout_forward[_SPEC[x.dtype]](out.reshape(-1), mask.reshape(-1), x.reshape(-1), p, seed,
                                       offset, get_num_threads())
    return out, (mask_out if mask_out is not None else mask)


def dropout_backward(grad_out: Any, mask: np.ndarray, p: float, *,
                     out: np.ndarray | None = None) -> np.ndarray:
    """Backward of :func:`dropout_forward`: ``grad_out * (mask * s)``, ``s = 1/(1-p)``.

    Parameters
    ----------
    grad_out : array_like, any shape
        dL/d(out).
    mask : ndarray, grad_out's shape, uint8 (or bool)
        The forward's mask.
    p : float in [0, 1)
        The forward's drop probability (``s = 1/(1-p)`` rounded to the dtype).
    out : ndarray, grad_out's shape and dtype, optional (may be ``grad_out`` itself)

    Returns
    -------
    ndarray, grad_out's shape
        dL/dx.

    """
    dy, mask, p, out = _check_dropout_backward(grad_out, mask, p, out)
    _k.dropout_backward[_SPEC[dy.dtype]](out.reshape(-1), dy.reshape(-1), mask.reshape(-1), p,
                                         get_num_threads())
    return out
# ---------------------------------------------------------------------------
# Convolution and pooling on NCHW arrays (csrc/conv.c, csrc/pool.c)
# ---------------------------------------------------------------------------

import threading as _threading  # noqa: E402 -- kept with the section that uses it

_MAX_WINDOW = 2**40


def _int2(value: Any, name: str, fn: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints as (a, b), each >= minimum; errors name the argument."""
    vals = value if isinstance(value, tuple | list) else (value, value)
    if len(vals) != 2:
        raise ValueError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value!r}")
        if v > _MAX_WINDOW:  # keeps every size sum in the C code inside int64
            raise ValueError(f"{fn}: {name} must be <= 2**40, got {value!r}")
        out.append(int(v))
    return out[0], out[1]


def _conv_padding(fn: str, kernel: tuple[int, int], stride: Any, padding: Any
                  ) -> tuple[int, int, int, int]:
    """(sh, sw, ph, pw) from stride and padding (int, pair, "valid" or "same")."""
    sh, sw = _int2(stride, "stride", fn, 1)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return sh, sw, 0, 0
        if mode != "same":
            raise ValueError(f"{fn}: padding must be an int, a pair, 'valid' or 'same', "
                             f"got {padding!r}")
        if (sh, sw) != (1, 1):
            raise ValueError(f"{fn}: padding='same' needs stride 1 (as PyTorch), "
                             f"got stride {(sh, sw)}")
        if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise ValueError(f"{fn}: padding='same' needs odd kernel sizes (symmetric "
                             f"padding), got kernel {kernel}")
        return sh, sw, kernel[0] // 2, kernel[1] // 2
    ph, pw = _int2(padding, "padding", fn, 0)
    return sh, sw, ph, pw


def _window_out(fn: str, xshape: tuple[int, ...], kernel: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int], kname: str
                ) -> tuple[int, int]:
    """Output (oh, ow) of a window sliding over x's last two axes (floor mode)."""
    h, w = int(xshape[2]), int(xshape[3])
    if h + 2 * padding[0] < kernel[0] or w + 2 * padding[1] < kernel[1]:
        raise ValueError(
            f"{fn}: {kname} gives a kernel {kernel} larger than the padded input "
            f"{(h + 2 * padding[0], w + 2 * padding[1])} (x {tuple(xshape)}, padding {padding})"
        )
    return ((h + 2 * padding[0] - kernel[0]) // stride[0] + 1,
            (w + 2 * padding[1] - kernel[1]) // stride[1] + 1)


def _pool_args(fn: str, kernel_size: Any, stride: Any, padding: Any
               ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(kernel, stride, padding) pairs of a pooling; stride None means the kernel size."""
    kernel = _int2(kernel_size, "kernel_size", fn, 1)
    strides = kernel if stride is None else _int2(stride, "stride", fn, 1)
    if isinstance(padding, str) and padding.lower() == "valid":
        padding = 0
    pads = _int2(padding, "padding", fn, 0)
    if pads[0] > kernel[0] // 2 or pads[1] > kernel[1] // 2:
        raise ValueError(f"{fn}: padding must be at most half the kernel size (as PyTorch), "
                         f"got padding {pads} for kernel_size {kernel}")
    return kernel, strides, pads


def _input_shape_4d(fn: str, input_shape: Any) -> tuple[int, int, int, int]:
    """input_shape as a 4-tuple of non-negative ints."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise TypeError(f"{fn}: input_shape must be a tuple (batch, channels, height, width), "
                        f"got {input_shape!r}") from None
    if len(shape) != 4 or min(shape) < 0:
        raise ValueError(f"{fn}: input_shape must be (batch, channels, height, width), "
                         f"got {input_shape!r}")
    return shape  # type: ignore[return-value]

_tls = _threading.local()


def _workspace(nbytes: int) -> np.ndarray:
    """A reusable 64-byte-aligned uint8 scratch buffer of at least nbytes, one per
    Python thread (kernels release the GIL, so threads must not share one).
    """
    buf = getattr(_tls, "ws", None)
    if buf is None or buf.nbytes < nbytes:
        raw = np.empty(max(int(nbytes), 1) + 64, dtype=np.uint8)
        off = (-raw.ctypes.data) % 64
        buf = raw[off:off + max(int(nbytes), 1)]
        _tls.ws = buf
    return buf


def _conv_geometry(fn: str, x: np.ndarray, w: np.ndarray, stride: Any, padding: Any
                   ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(stride, padding, (oh, ow)) of a convolution, with errors naming the argument."""
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"{fn}: x has {x.shape[1]} channels but w expects {w.shape[1]} input channels "
            f"(x {x.shape}, w {w.shape}; w is (out_channels, in_channels, kh, kw))"
        )
    kernel = (int(w.shape[2]), int(w.shape[3]))
    if min(kernel) < 1:
        raise ValueError(f"{fn}: w must have a kernel of at least 1x1, got w {w.shape}")
    sh, sw, ph, pw = _conv_padding(fn, kernel, stride, padding)
    oh, ow = _window_out(fn, x.shape, kernel, (sh, sw), (ph, pw), "w")
    return (sh, sw), (ph, pw), (oh, ow)


def conv2d_forward(x: Any, w: Any, b: Any = None, stride: Any = 1, padding: Any = 0,
                   activation: str | None = "identity", *, out: np.ndarray | None = None,
                   z_out: np.ndarray | None = None) -> np.ndarray:
    """2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``) with fused
    bias and activation: ``out = act(conv2d(x, w) + b)``.

    Parameters
    ----------
    x : array_like, (batch, in_channels, height, width)
    w : array_like, (out_channels, in_channels, kh, kw)
        PyTorch's weight layout, so weights port directly.
    b : array_like, (out_channels,), optional
    stride : int or (int, int)
        >= 1.
    padding : int, (int, int), "valid" or "same"
        Zero padding on each side.  "valid" is 0; "same" keeps the spatial size and
        needs stride 1 and odd kernel sizes.
    activation : str or None
        One of :data:`fastnn.ACTIVATIONS`; softmax is taken over the channel axis.
    out, z_out : ndarray, (batch, out_channels, oh, ow), optional
        ``oh = (height + 2*ph - kh) // sh + 1``, likewise ``ow``.  ``z_out``
        receives the pre-activation (needed by the backward of gelu and silu).

    Returns
    -------
    ndarray, (batch, out_channels, oh, ow)

    """
    act = activation_code(activation)
    dt = common_float_dtype(x, w, b)
    x = as_float_array(x, "x", dt, 4)
    w = as_float_array(w, "w", dt, 4)
    (sh, sw), (ph, pw), (oh, ow) = _conv_geometry("conv2d_forward", x, w, stride, padding)
    if b is not None:
        b = as_float_array(b, "b", dt, 1)
        check_shape(b, "b", (w.shape[0],))
    shape = (x.shape[0], w.shape[0], oh, ow)
    out = output(out, "out", shape, dt, (x, w, b))
    if z_out is not None:
        z_out = output(z_out, "z_out", shape, dt, (x, w, b, out))
    nt = get_num_threads()
    ws = _workspace(_k.conv2d_workspace_size(*x.shape, w.shape[0], w.shape[2], w.shape[3], sh, sw,
                                             ph, pw, dt.itemsize, nt))
    _k.conv2d_forward[_SPEC[dt]](out, z_out, ws, x, w, b, sh, sw, ph, pw, act, nt)
    return out


def conv2d_backward(grad_out: Any, x: Any, w: Any, out_act: Any, pre_act: Any = None,
                    stride: Any = 1, padding: Any = 0, activation: str | None = "identity", *,
                    need_dx: bool = True, dx_out: np.ndarray | None = None,
                    dw_out: np.ndarray | None = None, db_out: np.ndarray | None = None
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Backward pass of :func:`conv2d_forward`.

    Per image, ``delta = grad_out * act'(z)`` (softmax: the Jacobian-vector
    product over channels) is formed while hot, then ``dw += delta @ im2col(x)^T``
    and ``dx = col2im(w^T @ delta)`` on the GEMM engine.

    Parameters
    ----------
    grad_out : array_like, (batch, out_channels, oh, ow)
        dL/d(out_act).
    x : array_like, (batch, in_channels, height, width)
    w : array_like, (out_channels, in_channels, kh, kw)
    out_act : array_like, (batch, out_channels, oh, ow), or None for identity
        The forward output ``act(z)``.
    pre_act : array_like, (batch, out_channels, oh, ow), optional
        The pre-activation ``z``; required for gelu and silu.
    stride, padding, activation
        As given to :func:`conv2d_forward`.
    need_dx : bool
        False skips dx (the first layer of a network needs none).
    dx_out, dw_out, db_out : ndarray, optional
        Result buffers of shapes x.shape, w.shape and (out_channels,).

    Returns
    -------
    dx : ndarray (batch, in_channels, height, width) or None
    dw : ndarray (out_channels, in_channels, kh, kw)
    db : ndarray (out_channels,)

    """
    name = activation_name(activation)
    act = activation_code(name)
    dt = common_float_dtype(grad_out, x, w, out_act, pre_act)
    x = as_float_array(x, "x", dt, 4)
    w = as_float_array(w, "w", dt, 4)
    (sh, sw), (ph, pw), (oh, ow) = _conv_geometry("conv2d_backward", x, w, stride, padding)
    shape = (x.shape[0], w.shape[0], oh, ow)
    grad_out = as_float_array(grad_out, "grad_out", dt, 4)
    check_shape(grad_out, "grad_out", shape)
    if out_act is not None:
        out_act = as_float_array(out_act, "out_act", dt, 4)
        check_shape(out_act, "out_act", shape)
    elif name != "identity":
        raise ValueError(f"conv2d_backward: activation {name!r} needs out_act (the forward's out)")
    if pre_act is not None:
        pre_act = as_float_array(pre_act, "pre_act", dt, 4)
        check_shape(pre_act, "pre_act", shape)
    elif name in NEEDS_Z:
        raise ValueError(f"conv2d_backward: activation {name!r} needs pre_act (the forward's z)")
    ins = (grad_out, x, w, out_act, pre_act)
    dw = output(dw_out, "dw_out", w.shape, dt, ins)
    db = output(db_out, "db_out", (w.shape[0],), dt, (*ins, dw))
    dx = output(dx_out, "dx_out", x.shape, dt, (*ins, dw, db)) if need_dx else None
    nt = get_num_threads()
    ws = _workspace(_k.conv2d_workspace_size(*x.shape, w.shape[0], w.shape[2], w.shape[3], sh, sw,
                                             ph, pw, dt.itemsize, nt))
    _k.conv2d_backward[_SPEC[dt]](dx, dw, db, ws, grad_out, out_act, pre_act, x, w, sh, sw, ph,
                                  pw, act, 0.0, nt)
    return dx, dw, db


def maxpool2d_forward(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, *,
                      out: np.ndarray | None = None, indices_out: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """2-D max pooling (``torch.nn.functional.max_pool2d``, floor mode).

    Parameters
    ----------
    x : array_like, (batch, channels, height, width)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Implicit -inf padding, at most half the kernel size (as PyTorch).
    out : ndarray, (batch, channels, oh, ow), optional
    indices_out : ndarray of int64, (batch, channels, oh, ow), optional

    Returns
    -------
    out : ndarray, (batch, channels, oh, ow)
    indices : ndarray of int64, (batch, channels, oh, ow)
        Flat index ``y * width + x`` of each window's first maximum within its
        input plane (PyTorch's convention), for :func:`maxpool2d_backward`.

    """
    dt = common_float_dtype(x)
    x = as_float_array(x, "x", dt, 4)
    kernel, (sh, sw), (ph, pw) = _pool_args("maxpool2d_forward", kernel_size, stride, padding)
    oh, ow = _window_out("maxpool2d_forward", x.shape, kernel, (sh, sw), (ph, pw), "kernel_size")
    shape = (x.shape[0], x.shape[1], oh, ow)
    out = output(out, "out", shape, dt, (x,))
    idx = output(indices_out, "indices_out", shape, np.dtype(np.int64), (x, out))
    _k.maxpool2d_forward[_SPEC[dt]](out, idx, x, kernel[0], kernel[1], sh, sw, ph, pw,
                                    get_num_threads())
    return out, idx


def maxpool2d_backward(grad_out: Any, indices: Any, input_shape: Any, *,
                       out: np.ndarray | None = None) -> np.ndarray:
    """Backward of :func:`maxpool2d_forward`: each gradient goes to its window's maximum.

    Parameters
    ----------
    grad_out : array_like, (batch, channels, oh, ow)
    indices : array_like of int, (batch, channels, oh, ow)
        As returned by :func:`maxpool2d_forward`.
    input_shape : (batch, channels, height, width)
    out : ndarray, input_shape, optional

    Returns
    -------
    ndarray, input_shape

    """
    shape = _input_shape_4d("maxpool2d_backward", input_shape)
    dt = common_float_dtype(grad_out)
    g = as_float_array(grad_out, "grad_out", dt, 4)
    if g.shape[:2] != shape[:2]:
        raise ValueError(f"maxpool2d_backward: grad_out {g.shape} and input_shape {shape} "
                         f"differ in batch or channels")
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"indices must be an integer array, got dtype {idx.dtype}")
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    check_shape(idx, "indices", g.shape)
    plane = shape[2] * shape[3]
    if idx.size and (idx.min() < 0 or idx.max() >= plane):
        raise ValueError(f"indices must lie in [0, {plane}) (height*width of input_shape "
                         f"{shape}), got values in [{idx.min()}, {idx.max()}]")
    dx = output(out, "out", shape, dt, (g, idx))
    _k.maxpool2d_backward[_SPEC[dt]](dx, g, idx, get_num_threads())
    return dx


def avgpool2d_forward(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, *,
                      out: np.ndarray | None = None) -> np.ndarray:
    """2-D average pooling (``torch.nn.functional.avg_pool2d`` defaults: floor mode,
    ``count_include_pad=True``, so every window divides by kh*kw).

    Parameters
    ----------
    x : array_like, (batch, channels, height, width)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Zero padding, at most half the kernel size.
    out : ndarray, (batch, channels, oh, ow), optional

    Returns
    -------
    ndarray, (batch, channels, oh, ow)

    """
    dt = common_float_dtype(x)
    x = as_float_array(x, "x", dt, 4)
    kernel, (sh, sw), (ph, pw) = _pool_args("avgpool2d_forward", kernel_size, stride, padding)
    oh, ow = _window_out("avgpool2d_forward", x.shape, kernel, (sh, sw), (ph, pw), "kernel_size")
    out = output(out, "out", (x.shape[0], x.shape[1], oh, ow), dt, (x,))
    _k.avgpool2d_forward[_SPEC[dt]](out, x, kernel[0], kernel[1], sh, sw, ph, pw,
                                    get_num_threads())
    return out


def avgpool2d_backward(grad_out: Any, input_shape: Any, kernel_size: Any, stride: Any = None,
                       padding: Any = 0, *, out: np.ndarray | None = None) -> np.ndarray:
    """Backward of :func:`avgpool2d_forward`.

    Parameters
    ----------
    grad_out : array_like, (batch, channels, oh, ow)
    input_shape : (batch, channels, height, width)
    kernel_size, stride, padding
        As given to :func:`avgpool2d_forward`.
    out : ndarray, input_shape, optional

    Returns
    -------
    ndarray, input_shape

    """
    shape = _input_shape_4d("avgpool2d_backward", input_shape)
    dt = common_float_dtype(grad_out)
    g = as_float_array(grad_out, "grad_out", dt, 4)
    kernel, (sh, sw), (ph, pw) = _pool_args("avgpool2d_backward", kernel_size, stride, padding)
    oh, ow = _window_out("avgpool2d_backward", shape, kernel, (sh, sw), (ph, pw), "kernel_size")
    check_shape(g, "grad_out", (shape[0], shape[1], oh, ow))
    dx = output(out, "out", shape, dt, (g,))
    _k.avgpool2d_backward[_SPEC[dt]](dx, g, kernel[0], kernel[1], sh, sw, ph, pw,
                                     get_num_threads())
    return dx


def global_avgpool_forward(x: Any, *, out: np.ndarray | None = None) -> np.ndarray:
    """Mean over each spatial plane (Keras' ``GlobalAveragePooling2D``).

    Parameters
    ----------
    x : array_like, (batch, channels, height, width)
    out : ndarray, (batch, channels), optional

    Returns
    -------
    ndarray, (batch, channels)
        Ready for a Dense layer (``torch``'s ``adaptive_avg_pool2d(x, 1)``
        flattened).

    """
    dt = common_float_dtype(x)
    x = as_float_array(x, "x", dt, 4)
    if x.shape[2] * x.shape[3] == 0:
        raise ValueError(f"global_avgpool_forward: x has an empty plane, shape {x.shape}")
    out = output(out, "out", x.shape[:2], dt, (x,))
    _k.global_avgpool_forward[_SPEC[dt]](out, x, get_num_threads())
    return out


def global_avgpool_backward(grad_out: Any, input_shape: Any, *,
                            out: np.ndarray | None = None) -> np.ndarray:
    """Backward of :func:`global_avgpool_forward`: ``grad_out / (height*width)`` over each plane.

    Parameters
    ----------
    grad_out : array_like, (batch, channels)
    input_shape : (batch, channels, height, width)
    out : ndarray, input_shape, optional

    Returns
    -------
    ndarray, input_shape

    """
    shape = _input_shape_4d("global_avgpool_backward", input_shape)
    dt = common_float_dtype(grad_out)
    g = as_float_array(grad_out, "grad_out", dt, 2)
    check_shape(g, "grad_out", shape[:2])
    dx = output(out, "out", shape, dt, (g,))
    _k.global_avgpool_backward[_SPEC[dt]](dx, g, get_num_threads())
    return dx
