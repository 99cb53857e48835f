"""GEMM, the fused Dense layer and the activations (csrc/gemm.c, dense.c, activation.c)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _kernels as _k
from .._config import get_num_threads
from .._names import NEEDS_Z, activation_code, activation_name
from .._validation import (
    as_float_array,
    check_shape,
    common_float_dtype,
    output,
)

#: Cython specialization name of each dtype; ``_k.fn[_SPEC[dt]]`` picks the
#: float or double version without runtime dispatch (None arguments included).
_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}




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


def round_bf16(x: Any, *, out: np.ndarray | None = None) -> np.ndarray:
    """float32 values rounded to bfloat16 by the conversion the bf16 GEMM packs with.

    Parameters
    ----------
    x : array_like, any shape (converted to float32)
    out : ndarray, float32, the shape of x, optional
        Result buffer; may be exactly ``x`` (in place).

    Returns
    -------
    ndarray, float32, the shape of x
        Each value rounded to the nearest bfloat16 (ties to even); NaN stays NaN
        (made quiet), values past bfloat16's largest finite one become +-Inf, and
        a subnormal (``|x| < 2**-126``) becomes a zero of its sign, as AMX and
        AVX512-BF16 read it.  See :func:`fastnn.set_matmul_precision`.

    """
    x = as_float_array(x, "x", np.dtype(np.float32), None)
    out = output(out, "out", x.shape, np.dtype(np.float32), same_ok=(x,))
    bits = np.empty(x.size, np.uint16)
    _k.f32_to_bf16(x.reshape(-1), bits)
    out[...] = (bits.astype(np.uint32) << np.uint32(16)).view(np.float32).reshape(x.shape)
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
