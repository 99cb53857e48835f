"""Convolution and pooling on NCHW arrays (csrc/conv.c, csrc/pool.c)."""

from __future__ import annotations

import threading as _threading
from typing import Any

import numpy as np

from .. import _kernels as _k
from .._config import get_num_threads
from .._names import NEEDS_Z, activation_code, activation_name
from .._validation import (
    as_float_array,
    check_shape,
    common_float_dtype,
    conv_padding,
    input_shape_4d,
    output,
    pool_args,
    window_out,
)

#: Cython specialization name of each dtype; ``_k.fn[_SPEC[dt]]`` picks the
#: float or double version without runtime dispatch (None arguments included).
_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


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
    sh, sw, ph, pw = conv_padding(fn, kernel, stride, padding)
    oh, ow = window_out(fn, x.shape, kernel, (sh, sw), (ph, pw), "w")
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
    kernel, (sh, sw), (ph, pw) = pool_args("maxpool2d_forward", kernel_size, stride, padding)
    oh, ow = window_out("maxpool2d_forward", x.shape, kernel, (sh, sw), (ph, pw), "kernel_size")
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
    shape = input_shape_4d("maxpool2d_backward", input_shape)
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
    kernel, (sh, sw), (ph, pw) = pool_args("avgpool2d_forward", kernel_size, stride, padding)
    oh, ow = window_out("avgpool2d_forward", x.shape, kernel, (sh, sw), (ph, pw), "kernel_size")
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
    shape = input_shape_4d("avgpool2d_backward", input_shape)
    dt = common_float_dtype(grad_out)
    g = as_float_array(grad_out, "grad_out", dt, 4)
    kernel, (sh, sw), (ph, pw) = pool_args("avgpool2d_backward", kernel_size, stride, padding)
    oh, ow = window_out("avgpool2d_backward", shape, kernel, (sh, sw), (ph, pw), "kernel_size")
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
        flattened).  An empty plane (height or width 0) gives zeros, as the C code,
        the :class:`~fastnn.GlobalAvgPool2D` layer and the twin.

    """
    dt = common_float_dtype(x)
    x = as_float_array(x, "x", dt, 4)
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
    shape = input_shape_4d("global_avgpool_backward", input_shape)
    dt = common_float_dtype(grad_out)
    g = as_float_array(grad_out, "grad_out", dt, 2)
    check_shape(g, "grad_out", shape[:2])
    dx = output(out, "out", shape, dt, (g,))
    _k.global_avgpool_backward[_SPEC[dt]](dx, g, get_num_threads())
    return dx
