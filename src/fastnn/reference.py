"""fastnn.reference -- NumPy twins of every kernel in :mod:`fastnn.kernels`.

Same names, same signatures, plain NumPy written for clarity, not speed.  These
define the math; the tests hold the C kernels to them.  Never used on the hot
path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _validation as _v
from ._config import get_matmul_precision
from ._names import KERNELS, NEEDS_Z, activation_name
from ._validation import as_float_array, common_float_dtype, labels_array

__all__ = list(KERNELS)

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _fill(out: np.ndarray | None, value: np.ndarray) -> np.ndarray:
    if out is None:
        return value
    out[...] = value
    return out


def round_bf16(x: Any, *, out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.round_bf16`: float32 values rounded to bfloat16.

    Round to nearest even on the bit pattern; NaN stays NaN (made quiet), values
    past bfloat16's largest finite one become +-Inf, a subnormal float32
    (``|x| < 2**-126``) becomes a zero of its sign.  Returns float32, shape of x.
    """
    x = np.ascontiguousarray(as_float_array(x, "x", np.dtype(np.float32), None), np.float32)
    u = x.view(np.uint32)
    mag = u & np.uint32(0x7FFFFFFF)
    rne = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    bits = np.where(mag > 0x7F800000, (u >> np.uint32(16)) | np.uint32(0x40),
                    np.where(mag < 0x00800000, (u >> np.uint32(16)) & np.uint32(0x8000), rne))
    return _fill(out, (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
                 .reshape(x.shape))


def _op(x: np.ndarray) -> np.ndarray:
    """A matmul operand as the kernels see it: float32 under matmul precision "bf16"
    is rounded to bfloat16 and widened to float64 (products then exact, summed in
    float64); anything else is returned unchanged.
    """
    if x.dtype == np.float32 and get_matmul_precision() == "bf16":
        return round_bf16(x).astype(np.float64)
    return x


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _act(x: np.ndarray, name: str) -> np.ndarray:
    """act(x) for one activation name, in x's dtype."""
    if name == "identity":
        return x.copy()
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.where(x < 0, 0, x).astype(x.dtype)
    if name == "leaky_relu":
        return np.where(x < 0, x * x.dtype.type(0.01), x)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    if name == "gelu":
        return (x * 0.5 * _erfc(-x.astype(np.float64) / math.sqrt(2))).astype(x.dtype)
    if name == "softplus":
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    if name == "silu":
        return x * _sigmoid(x)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(name)


def _act_grad(da: np.ndarray, a: np.ndarray, z: np.ndarray | None, name: str) -> np.ndarray:
    """Da * act'(z) from a = act(z) (and z for gelu/silu)."""
    if name == "identity":
        return da.copy()
    if name == "sigmoid":
        return da * a * (1 - a)
    if name == "tanh":
        return da * (1 - a * a)
    if name == "relu":
        return np.where(a > 0, da, 0).astype(da.dtype)
    if name == "leaky_relu":
        return np.where(a > 0, da, da * da.dtype.type(0.01))
    if name == "elu":
        return np.where(a > 0, da, da * (a + 1))
    if name == "gelu":
        z64 = z.astype(np.float64)
        cdf = 0.5 * _erfc(-z64 / math.sqrt(2))
        pdf = np.exp(-0.5 * z64 * z64) / math.sqrt(2 * math.pi)
        return (da * (cdf + z64 * pdf)).astype(da.dtype)
    if name == "softplus":
        return da * -np.expm1(-a)  # sigmoid(z) = 1 - exp(-softplus(z))
    if name == "silu":
        s = _sigmoid(z)
        return da * s * (1 + z * (1 - s))
    if name == "softmax":
        return a * (da - (da * a).sum(axis=-1, keepdims=True))
    raise ValueError(name)


def gemm(a: Any, b: Any, *, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0,
         beta: float = 0.0, out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.gemm`: ``alpha * op(a) @ op(b) + beta * out``."""
    dt = common_float_dtype(a, b)
    a = as_float_array(a, "a", dt, 2)
    b = as_float_array(b, "b", dt, 2)
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    res = dt.type(alpha) * (_op(opa) @ _op(opb)).astype(dt)
    if beta != 0:
        res = res + dt.type(beta) * out
    return _fill(out, res.astype(dt))


def dense_forward(x: Any, w: Any, b: Any = None, activation: str | None = "identity", *,
                  out: np.ndarray | None = None, z_out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.dense_forward`: ``act(x @ w + b)``."""
    name = activation_name(activation)
    dt = common_float_dtype(x, w, b)
    x = as_float_array(x, "x", dt, 2)
    w = as_float_array(w, "w", dt, 2)
    z = (_op(x) @ _op(w)).astype(dt)
    if b is not None:
        z = z + as_float_array(b, "b", dt, 1)
    if z_out is not None:
        z_out[...] = z
    return _fill(out, _act(z, name))


def dense_backward(grad_out: Any, x: Any, w: Any, out_act: Any, pre_act: Any = None,
                   activation: str | None = "identity", *, need_dx: bool = True,
                   dx_out: np.ndarray | None = None, dw_out: np.ndarray | None = None,
                   db_out: np.ndarray | None = None
                   ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Twin of :func:`fastnn.kernels.dense_backward`."""
    name = activation_name(activation)
    if pre_act is None and name in NEEDS_Z:
        raise ValueError(f"dense_backward: activation {name!r} needs pre_act (the forward's z)")
    dt = common_float_dtype(grad_out, x, w, out_act, pre_act)
    x = as_float_array(x, "x", dt, 2)
    w = as_float_array(w, "w", dt, 2)
    delta = _act_grad(as_float_array(grad_out, "grad_out", dt, 2),
                      as_float_array(out_act, "out_act", dt, 2),
                      None if pre_act is None else as_float_array(pre_act, "pre_act", dt, 2),
                      name)
    dw = _fill(dw_out, (_op(x).T @ _op(delta)).astype(dt))
    db = _fill(db_out, delta.sum(axis=0))
    dx = _fill(dx_out, (_op(delta) @ _op(w).T).astype(dt)) if need_dx else None
    return dx, dw, db


def activation_forward(x: Any, activation: str | None, *,
                       out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.activation_forward`."""
    name = activation_name(activation)
    x = as_float_array(x, "x", common_float_dtype(x))
    return _fill(out, _act(x, name))


def activation_backward(grad_out: Any, out_act: Any, pre_act: Any = None,
                        activation: str | None = "identity", *,
                        out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.activation_backward`."""
    name = activation_name(activation)
    if pre_act is None and name in NEEDS_Z:
        raise ValueError(f"activation_backward: activation {name!r} needs pre_act")
    dt = common_float_dtype(grad_out, out_act, pre_act)
    g = _act_grad(as_float_array(grad_out, "grad_out", dt), as_float_array(out_act, "out_act", dt),
                  None if pre_act is None else as_float_array(pre_act, "pre_act", dt), name)
    return _fill(out, g)


def cross_entropy(logits: Any, labels: Any, *,
                  grad_out: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Twin of :func:`fastnn.kernels.cross_entropy` (log-softmax, mean over the batch)."""
    lab = np.asarray(labels)
    dt = common_float_dtype(logits, lab if lab.ndim == 2 else None)
    x = as_float_array(logits, "logits", dt, 2)
    n, c = x.shape
    if lab.ndim == 2:
        t = as_float_array(lab, "labels", dt, 2)
    else:
        t = np.zeros_like(x)
        t[np.arange(n), labels_array(lab, n, c)] = 1
    x64 = x.astype(np.float64)
    mx = x64.max(axis=1, keepdims=True)
    e = np.exp(x64 - mx)
    lse = mx + np.log(e.sum(axis=1, keepdims=True))
    loss = float((t * (lse - x64)).sum() / n) if n else 0.0
    p = e / e.sum(axis=1, keepdims=True)  # not exp(x - lse): lse rounds at large logits
    grad = ((p * t.sum(axis=1, keepdims=True) - t) / max(n, 1)).astype(dt)
    return loss, _fill(grad_out, grad)


def mse(pred: Any, target: Any, *, grad_out: np.ndarray | None = None
        ) -> tuple[float, np.ndarray]:
    """Twin of :func:`fastnn.kernels.mse` (mean over all elements)."""
    dt = common_float_dtype(pred, target)
    p = as_float_array(pred, "pred", dt)
    t = as_float_array(target, "target", dt)
    d = p - t
    loss = float(np.mean(d.astype(np.float64) ** 2)) if d.size else 0.0
    return loss, _fill(grad_out, (2 * d / max(d.size, 1)).astype(dt))


def binary_cross_entropy(logits: Any, target: Any, *, grad_out: np.ndarray | None = None
                         ) -> tuple[float, np.ndarray]:
    """Twin of :func:`fastnn.kernels.binary_cross_entropy` (``BCEWithLogitsLoss``)."""
    dt = common_float_dtype(logits, target)
    x = as_float_array(logits, "logits", dt)
    t = as_float_array(target, "target", dt)
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    per = np.maximum(x64, 0) - x64 * t64 + np.log1p(np.exp(-np.abs(x64)))
    loss = float(per.mean()) if per.size else 0.0
    return loss, _fill(grad_out, ((_sigmoid(x) - t) / max(x.size, 1)).astype(dt))


def sgd_update(w: np.ndarray, dw: Any, lr: float) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.sgd_update`: ``w -= lr * dw`` in place."""
    w -= w.dtype.type(lr) * np.asarray(dw, dtype=w.dtype)
    return w


# ---- optimizer steps: the arguments are checked exactly as fastnn.kernels does, then
# each update is written operation for operation as the C kernel computes it, in w's
# dtype (scalars rounded to it first; bias corrections in double).

def sgd_step(w: np.ndarray, g: Any, buf: np.ndarray | None = None, *, lr: float,
             momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
             weight_decay: float = 0.0, first_step: bool = True) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.sgd_step` (``torch.optim.SGD``)."""
    g, lr, momentum, dampening, weight_decay = _v.check_sgd(w, g, buf, lr, momentum, dampening,
                                                             nesterov, weight_decay)
    t = w.dtype.type
    d = g.copy()
    if weight_decay != 0:
        d = d + t(weight_decay) * w
    if momentum != 0:
        if first_step:
            buf[...] = d
        else:
            buf[...] = buf * t(momentum) + (t(1) - t(dampening)) * d
        d = d + t(momentum) * buf if nesterov else buf
    w[...] = w - t(lr) * d
    return w


def adam_step(w: np.ndarray, g: Any, m: np.ndarray, v: np.ndarray, *, step: int,
              lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
              weight_decay: float = 0.0, decoupled: bool = False,
              vmax: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.adam_step` (``torch.optim.Adam`` / ``AdamW``)."""
    g, step, lr, beta1, beta2, eps, weight_decay = _v.check_adam(w, g, m, v, vmax, step, lr,
                                                                  beta1, beta2, eps,
                                                                  weight_decay)
    t = w.dtype.type
    bc1 = 1.0 - float(t(beta1)) ** step
    bc2 = 1.0 - float(t(beta2)) ** step
    step_size = t(float(t(lr)) / bc1)
    bc2_sqrt = t(math.sqrt(bc2))
    wi = w.copy()
    if weight_decay != 0 and decoupled:
        wi = wi * t(1.0 - float(t(lr)) * float(t(weight_decay)))
    if weight_decay != 0 and not decoupled:
        g = g + t(weight_decay) * wi
    m[...] = t(beta1) * m + (t(1) - t(beta1)) * g
    v[...] = v * t(beta2) + (t(1) - t(beta2)) * g * g
    vh = v
    if vmax is not None:
        vmax[...] = np.maximum(vmax, v)
        vh = vmax
    denom = np.sqrt(vh) / bc2_sqrt + t(eps)
    w[...] = wi - step_size * m / denom
    return w


def rmsprop_step(w: np.ndarray, g: Any, sq: np.ndarray, *, lr: float = 1e-2,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, buf: np.ndarray | None = None,
                 gavg: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.rmsprop_step` (``torch.optim.RMSprop``)."""
    g, lr, alpha, eps, weight_decay, momentum = _v.check_rmsprop(
        w, g, sq, buf, gavg, lr, alpha, eps, weight_decay, momentum, centered)
    t = w.dtype.type
    one_a = t(1) - t(alpha)
    if weight_decay != 0:
        g = g + t(weight_decay) * w
    sq[...] = sq * t(alpha) + one_a * g * g
    var = sq
    if centered:
        gavg[...] = t(alpha) * gavg + one_a * g
        var = np.maximum(sq - gavg * gavg, t(0))
    avg = np.sqrt(var) + t(eps)
    if momentum > 0:
        buf[...] = buf * t(momentum) + g / avg
        w[...] = w - t(lr) * buf
    else:
        w[...] = w - t(lr) * g / avg
    return w


def adagrad_step(w: np.ndarray, g: Any, sum_sq: np.ndarray, *, step: int, lr: float = 1e-2,
                 lr_decay: float = 0.0, weight_decay: float = 0.0,
                 eps: float = 1e-10) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.adagrad_step` (``torch.optim.Adagrad``)."""
    g, step, lr, lr_decay, weight_decay, eps = _v.check_adagrad(w, g, sum_sq, step, lr,
                                                                 lr_decay, weight_decay, eps)
    t = w.dtype.type
    clr = t(float(t(lr)) / (1.0 + (step - 1) * float(t(lr_decay))))
    if weight_decay != 0:
        g = g + t(weight_decay) * w
    sum_sq[...] = sum_sq + g * g
    w[...] = w - clr * g / (np.sqrt(sum_sq) + t(eps))
    return w


def l2_grad(g: np.ndarray, w: np.ndarray, wd: float) -> float:
    """Twin of ``fastnn._kernels.l2_grad`` (scikit-learn's L2 term; the
    :mod:`fastnn.sklearn` solvers' per-batch step, not a public kernel).

    Parameters
    ----------
    g : ndarray (n,), float32/float64, updated in place: ``g += wd * w``
    w : ndarray (n,), g's dtype
    wd : float, rounded to g's dtype first

    Returns
    -------
    float
        ``sum(w**2)`` in float64, as the C code sums: element ``i`` into partial sum
        ``i % 8``, the eight added pairwise.
    """
    x = w.astype(np.float64)
    sq = x * x
    # each partial sum in index order, as the C loop adds them (cumsum is sequential)
    s = [float(np.cumsum(sq[u::8])[-1]) if sq[u::8].size else 0.0 for u in range(8)]
    g += w.dtype.type(wd) * w
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


# ---- dropout ------------------------------------------------------------------------

_U64 = np.uint64


def dropout_bits(seed: int, offset: int, n: int) -> np.ndarray:
    """The 24 random bits of elements 0..n-1: splitmix64 outputs offset..offset+n-1 >> 40.

    Output number ``k`` of splitmix64 seeded with ``seed`` is
    ``mix(seed + (k + 1) * 0x9E3779B97F4A7C15)`` in wrapping uint64 arithmetic.
    """
    k = np.arange(n, dtype=_U64) + _U64(offset)
    z = _U64(seed) + (k + _U64(1)) * _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return (z ^ (z >> _U64(31))) >> _U64(40)


def dropout_forward(x: Any, p: float, seed: int, *, offset: int = 0,
                    out: np.ndarray | None = None,
                    mask_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Twin of :func:`fastnn.kernels.dropout_forward`: keep iff ``bits / 2**24 >= p``."""
    x, p, seed, offset, res, mask = _v.check_dropout_forward(x, p, seed, offset, out, mask_out)
    u = dropout_bits(seed, offset, x.size).astype(np.float64) / 2.0**24  # exact
    keep = (u >= p).reshape(x.shape)
    scale = x.dtype.type(1.0 / (1.0 - p))
    with np.errstate(invalid="ignore"):  # inf * 0 -> nan, as torch
        res[...] = x * (keep.astype(x.dtype) * scale)
    mask[...] = keep
    return res, (mask_out if mask_out is not None else mask)


def dropout_backward(grad_out: Any, mask: np.ndarray, p: float, *,
                     out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.dropout_backward`: ``grad_out * (mask / (1-p))``."""
    dy, mask, p, res = _v.check_dropout_backward(grad_out, mask, p, out)
    with np.errstate(invalid="ignore"):
        res[...] = dy * ((mask != 0).astype(dy.dtype) * dy.dtype.type(1.0 / (1.0 - p)))
    return res
# ---------------------------------------------------------------------------
# Convolution and pooling on NCHW arrays: windows taken with
# sliding_window_view, reductions with einsum.  Written independently of the
# argument handling in fastnn.kernels so the two check each other.
# ---------------------------------------------------------------------------

from numpy.lib.stride_tricks import sliding_window_view as _windows  # noqa: E402


def _two(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, tuple | list) else (int(v), int(v))


def _conv_pad(kernel: tuple[int, int], padding: Any) -> tuple[int, int]:
    if isinstance(padding, str):
        return (0, 0) if padding.lower() == "valid" else (kernel[0] // 2, kernel[1] // 2)
    return _two(padding)


def _window_view(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int], fill: float) -> np.ndarray:
    """(n, c, oh, ow, kh, kw) windows of x padded with `fill`."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=fill)
    return _windows(xp, kernel, axis=(2, 3))[:, :, ::stride[0], ::stride[1]]


def _act_channels(z: np.ndarray, name: str) -> np.ndarray:
    """act(z) for NCHW z; softmax over the channel axis."""
    if name == "softmax":
        return np.moveaxis(_act(np.moveaxis(z, 1, -1), name), -1, 1)
    return _act(z, name)


def _act_grad_channels(da: np.ndarray, a: np.ndarray | None, z: np.ndarray | None,
                       name: str) -> np.ndarray:
    if name == "softmax":
        mv = lambda t: None if t is None else np.moveaxis(t, 1, -1)  # noqa: E731
        return np.moveaxis(_act_grad(mv(da), mv(a), mv(z), name), -1, 1)
    return _act_grad(da, a, z, name)


def _scatter_windows(g: np.ndarray, wk: np.ndarray, shape: tuple[int, ...],
                     kernel: tuple[int, int], stride: tuple[int, int],
                     pad: tuple[int, int]) -> np.ndarray:
    """Sum over windows: dx[n, c, y*s+i-p, x*s+j-p] += contrib(i, j)[n, c, y, x] where
    contrib = wk(g, i, j); the result is cropped back to `shape`.
    """
    n, c, h, w = shape
    oh, ow = g.shape[2], g.shape[3]
    dxp = np.zeros((n, c, h + 2 * pad[0], w + 2 * pad[1]), dtype=g.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            dxp[:, :, i:i + stride[0] * oh:stride[0], j:j + stride[1] * ow:stride[1]] += wk(i, j)
    return dxp[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + w]


def conv2d_forward(x: Any, w: Any, b: Any = None, stride: Any = 1, padding: Any = 0,
                   activation: str | None = "identity", *, out: np.ndarray | None = None,
                   z_out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.conv2d_forward`: ``act(conv2d(x, w) + b)``."""
    name = activation_name(activation)
    dt = common_float_dtype(x, w, b)
    x = as_float_array(x, "x", dt, 4)
    w = as_float_array(w, "w", dt, 4)
    kernel = (w.shape[2], w.shape[3])
    win = _window_view(x, kernel, _two(stride), _conv_pad(kernel, padding), 0)
    z = np.einsum("ncyxij,ocij->noyx", _op(win), _op(w)).astype(dt)
    if b is not None:
        z = z + as_float_array(b, "b", dt, 1)[None, :, None, None]
    z = z.astype(dt)
    if z_out is not None:
        z_out[...] = z
    return _fill(out, _act_channels(z, name))


def conv2d_backward(grad_out: Any, x: Any, w: Any, out_act: Any, pre_act: Any = None,
                    stride: Any = 1, padding: Any = 0, activation: str | None = "identity", *,
                    need_dx: bool = True, dx_out: np.ndarray | None = None,
                    dw_out: np.ndarray | None = None, db_out: np.ndarray | None = None
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Twin of :func:`fastnn.kernels.conv2d_backward`."""
    name = activation_name(activation)
    if pre_act is None and name in NEEDS_Z:
        raise ValueError(f"conv2d_backward: activation {name!r} needs pre_act (the forward's z)")
    dt = common_float_dtype(grad_out, x, w, out_act, pre_act)
    x = as_float_array(x, "x", dt, 4)
    w = as_float_array(w, "w", dt, 4)
    g = as_float_array(grad_out, "grad_out", dt, 4)
    a = None if out_act is None else as_float_array(out_act, "out_act", dt, 4)
    z = None if pre_act is None else as_float_array(pre_act, "pre_act", dt, 4)
    delta = _act_grad_channels(g, a, z, name).astype(dt)
    kernel, st = (w.shape[2], w.shape[3]), _two(stride)
    pad = _conv_pad(kernel, padding)
    win = _window_view(x, kernel, st, pad, 0)
    dw = _fill(dw_out, np.einsum("ncyxij,noyx->ocij", _op(win), _op(delta)).astype(dt))
    db = _fill(db_out, delta.sum(axis=(0, 2, 3)).astype(dt))
    dx = None
    if need_dx:
        dx = _fill(dx_out, _scatter_windows(
            delta, lambda i, j: np.einsum("noyx,oc->ncyx", _op(delta), _op(w[:, :, i, j])),
            x.shape,
            kernel, st, pad).astype(dt))
    return dx, dw, db


def maxpool2d_forward(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, *,
                      out: np.ndarray | None = None, indices_out: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Twin of :func:`fastnn.kernels.maxpool2d_forward` (first maximum wins)."""
    x = as_float_array(x, "x", common_float_dtype(x), 4)
    kernel = _two(kernel_size)
    st = kernel if stride is None else _two(stride)
    pad = _conv_pad(kernel, padding)
    win = _window_view(x, kernel, st, pad, -np.inf)
    flat = win.reshape(*win.shape[:4], -1)
    arg = flat.argmax(axis=-1)
    oh, ow = arg.shape[2], arg.shape[3]
    ys = np.arange(oh)[:, None] * st[0] - pad[0] + arg // kernel[1]
    xs = np.arange(ow)[None, :] * st[1] - pad[1] + arg % kernel[1]
    idx = (ys * x.shape[3] + xs).astype(np.int64)
    res = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return _fill(out, res), _fill(indices_out, idx)


def maxpool2d_backward(grad_out: Any, indices: Any, input_shape: Any, *,
                       out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.maxpool2d_backward`."""
    g = as_float_array(grad_out, "grad_out", common_float_dtype(grad_out), 4)
    n, c, h, w = (int(s) for s in input_shape)
    idx = np.asarray(indices, dtype=np.int64)
    dx = np.zeros((n, c, h * w), dtype=g.dtype)
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    np.add.at(dx, (nn[:, :, None], cc[:, :, None], idx.reshape(n, c, -1)), g.reshape(n, c, -1))
    return _fill(out, dx.reshape(n, c, h, w))


def avgpool2d_forward(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, *,
                      out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.avgpool2d_forward` (count_include_pad=True)."""
    x = as_float_array(x, "x", common_float_dtype(x), 4)
    kernel = _two(kernel_size)
    st = kernel if stride is None else _two(stride)
    win = _window_view(x, kernel, st, _conv_pad(kernel, padding), 0)
    return _fill(out, (win.sum(axis=(4, 5)) / (kernel[0] * kernel[1])).astype(x.dtype))


def avgpool2d_backward(grad_out: Any, input_shape: Any, kernel_size: Any, stride: Any = None,
                       padding: Any = 0, *, out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.avgpool2d_backward`."""
    g = as_float_array(grad_out, "grad_out", common_float_dtype(grad_out), 4)
    kernel = _two(kernel_size)
    st = kernel if stride is None else _two(stride)
    share = g / g.dtype.type(kernel[0] * kernel[1])
    dx = _scatter_windows(g, lambda i, j: share, tuple(int(s) for s in input_shape), kernel, st,
                          _conv_pad(kernel, padding))
    return _fill(out, dx.astype(g.dtype))


def global_avgpool_forward(x: Any, *, out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.global_avgpool_forward`: (n, c) plane means."""
    x = as_float_array(x, "x", common_float_dtype(x), 4)
    plane = max(x.shape[2] * x.shape[3], 1)  # an empty plane's mean is 0, as the kernel's
    return _fill(out, (x.sum(axis=(2, 3)) / plane).astype(x.dtype))


def global_avgpool_backward(grad_out: Any, input_shape: Any, *,
                            out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.global_avgpool_backward`."""
    g = as_float_array(grad_out, "grad_out", common_float_dtype(grad_out), 2)
    n, c, h, w = (int(s) for s in input_shape)
    dx = np.broadcast_to((g / g.dtype.type(max(h * w, 1)))[:, :, None, None], (n, c, h, w))
    return _fill(out, np.ascontiguousarray(dx))


def embedding_forward(indices: Any, weight: Any, *, out: np.ndarray | None = None
                      ) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.embedding_forward`: ``weight[indices]``."""
    idx = _v.index_array(indices)
    w = as_float_array(weight, "weight", common_float_dtype(weight), 2)
    _v.check_index_range(idx, w.shape[0], "embedding_forward")
    return _fill(out, w[idx])


def embedding_backward(grad_out: Any, indices: Any, num_embeddings: int, *,
                       out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.embedding_backward`: ``np.add.at`` of the rows."""
    idx = _v.index_array(indices)
    v = _v.positive_int(num_embeddings, "num_embeddings")
    g = _v.embedding_grad(grad_out, idx)
    _v.check_index_range(idx, v, "embedding_backward")
    dw = np.zeros((v, g.shape[-1]), g.dtype)
    np.add.at(dw, idx.reshape(-1), g.reshape(idx.size, g.shape[-1]))
    return _fill(out, dw)


def global_avgpool1d_forward(x: Any, *, out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.global_avgpool1d_forward`: the mean over axis 1."""
    x = as_float_array(x, "x", common_float_dtype(x), 3)
    return _fill(out, (x.sum(axis=1) / max(x.shape[1], 1)).astype(x.dtype))


def global_avgpool1d_backward(grad_out: Any, input_shape: Any, *,
                              out: np.ndarray | None = None) -> np.ndarray:
    """Twin of :func:`fastnn.kernels.global_avgpool1d_backward`."""
    g = as_float_array(grad_out, "grad_out", common_float_dtype(grad_out), 2)
    n, length, d = _v.input_shape_3d("global_avgpool1d_backward", input_shape)
    dx = np.broadcast_to((g / g.dtype.type(max(length, 1)))[:, None, :], (n, length, d))
    return _fill(out, np.ascontiguousarray(dx))


# ---------------------------------------------------------------------------
# Normalization: the textbook formulas, reductions by NumPy in float64.
# ---------------------------------------------------------------------------

def _bn_axes(x: np.ndarray) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batchnorm_forward(x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any, *,
                      training: bool, eps: float = 1e-5, out: np.ndarray | None = None,
                      mean_out: np.ndarray | None = None,
                      var_out: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Twin of :func:`fastnn.kernels.batchnorm_forward`."""
    x, w, b, rm, rv, training, eps, res, mean, var = _v.check_batchnorm_forward(
        x, weight, bias, running_mean, running_var, training, eps, out, mean_out, var_out)
    x64 = x.astype(np.float64)
    if training:
        mu = x64.mean(axis=_bn_axes(x))
        va = ((x64 - _per_channel(mu, x.ndim)) ** 2).mean(axis=_bn_axes(x))
        mean[...], var[...] = mu, va
        mu, va = mean.astype(np.float64), var.astype(np.float64)
    else:
        mu, va = rm.astype(np.float64), rv.astype(np.float64)
    y = (x64 - _per_channel(mu, x.ndim)) / np.sqrt(_per_channel(va, x.ndim) + eps)
    if w is not None:
        y = y * _per_channel(w.astype(np.float64), x.ndim)
    if b is not None:
        y = y + _per_channel(b.astype(np.float64), x.ndim)
    res[...] = y
    return res, mean, var


def batchnorm_backward(grad_out: Any, x: Any, mean: Any, var: Any, weight: Any, *,
                       training: bool, eps: float = 1e-5, dx_out: np.ndarray | None = None,
                       dweight_out: np.ndarray | None = None,
                       dbias_out: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Twin of :func:`fastnn.kernels.batchnorm_backward`."""
    dy, x, mean, var, w, training, eps, dx, dw, db = _v.check_batchnorm_backward(
        grad_out, x, mean, var, weight, training, eps, dx_out, dweight_out, dbias_out)
    ax, nd = _bn_axes(x), x.ndim
    g = dy.astype(np.float64)
    inv = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    xhat = (x.astype(np.float64) - _per_channel(mean.astype(np.float64), nd)) \
        * _per_channel(inv, nd)
    sdy, sdyx = g.sum(axis=ax), (g * xhat).sum(axis=ax)
    scale = inv * (1.0 if w is None else w.astype(np.float64))
    if training:
        m = x.size // max(x.shape[1], 1)
        res = _per_channel(scale, nd) * (g - _per_channel(sdy / m, nd)
                                         - xhat * _per_channel(sdyx / m, nd))
    else:
        res = g * _per_channel(scale, nd)
    dw[...], db[...] = sdyx, sdy
    dx[...] = res
    return dx, dw, db


def batchnorm_update_stats(running_mean: np.ndarray, running_var: np.ndarray, mean: Any,
                           var: Any, count: int, momentum: float
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Twin of :func:`fastnn.kernels.batchnorm_update_stats`."""
    rm, rv, m, v, count, momentum = _v.check_batchnorm_update_stats(
        running_mean, running_var, mean, var, count, momentum)
    unbiased = v.astype(np.float64) * (count / (count - 1))
    rm[...] = momentum * m.astype(np.float64) + (1 - momentum) * rm.astype(np.float64)
    rv[...] = momentum * unbiased + (1 - momentum) * rv.astype(np.float64)
    return rm, rv


def layernorm_forward(x: Any, normalized_shape: Any, weight: Any = None, bias: Any = None, *,
                      eps: float = 1e-5, out: np.ndarray | None = None,
                      mean_out: np.ndarray | None = None,
                      rstd_out: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Twin of :func:`fastnn.kernels.layernorm_forward`."""
    x, shape, w, b, eps, res, mean, rstd = _v.check_layernorm_forward(
        x, normalized_shape, weight, bias, eps, out, mean_out, rstd_out)
    ax = tuple(range(x.ndim - len(shape), x.ndim))
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=ax, keepdims=True)
    va = ((x64 - mu) ** 2).mean(axis=ax, keepdims=True)
    r = 1.0 / np.sqrt(va + eps)
    y = (x64 - mu) * r
    if w is not None:
        y = y * w.astype(np.float64)
    if b is not None:
        y = y + b.astype(np.float64)
    res[...] = y
    mean[...] = mu.reshape(mean.shape)
    rstd[...] = r.reshape(rstd.shape)
    return res, mean, rstd


def layernorm_backward(grad_out: Any, x: Any, mean: Any, rstd: Any, weight: Any = None, *,
                       dx_out: np.ndarray | None = None, dweight_out: np.ndarray | None = None,
                       dbias_out: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Twin of :func:`fastnn.kernels.layernorm_backward`."""
    dy, x, mean, rstd, w, dx, dw, db = _v.check_layernorm_backward(
        grad_out, x, mean, rstd, weight, dx_out, dweight_out, dbias_out)
    lead = mean.ndim
    rows = mean.size
    d = x.size // max(rows, 1) if rows else int(np.prod(x.shape[lead:]))
    g2 = dy.astype(np.float64).reshape(rows, d)
    x2 = x.astype(np.float64).reshape(rows, d)
    mu = mean.astype(np.float64).reshape(rows, 1)
    r = rstd.astype(np.float64).reshape(rows, 1)
    xhat = (x2 - mu) * r
    gw = g2 * (1.0 if w is None else w.astype(np.float64).reshape(1, d))
    res = r * (gw - gw.mean(axis=1, keepdims=True)
               - xhat * (gw * xhat).mean(axis=1, keepdims=True))
    dx[...] = res.reshape(x.shape)
    dw[...] = (g2 * xhat).sum(axis=0).reshape(dw.shape)
    db[...] = g2.sum(axis=0).reshape(db.shape)
    return dx, dw, db
