"""Batch normalization and layer normalization (csrc/norm.c).

Batch norm takes x of shape (batch, channels, *spatial) ((N, C) or (N, C, H, W)):
statistics per channel over the batch and spatial axes.  Layer norm normalizes
each sample over its trailing ``normalized_shape`` dimensions.  Both follow
``torch.nn.functional.batch_norm`` / ``layer_norm``: biased variance in the
normalization, ``1 / sqrt(var + eps)``; the running variance is updated with the
unbiased one.  Sums are accumulated in double.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _kernels as _k
from .._config import get_num_threads
from .._validation import (
    check_batchnorm_backward,
    check_batchnorm_forward,
    check_batchnorm_update_stats,
    check_layernorm_backward,
    check_layernorm_forward,
)

_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def _ncs(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(n, c, s) of a (batch, channels, *spatial) shape."""
    return shape[0], shape[1], int(np.prod(shape[2:], dtype=np.int64))


def batchnorm_forward(x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any, *,
                      training: bool, eps: float = 1e-5, out: np.ndarray | None = None,
                      mean_out: np.ndarray | None = None,
                      var_out: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch normalization: ``(x - mean) / sqrt(var + eps) * weight + bias`` per channel.

    Parameters
    ----------
    x : array_like, (n, c, *spatial)
    weight, bias : array_like (c,) or None
        None: ones / zeros (``affine=False``).
    running_mean, running_var : array_like (c,)
        Used in eval mode (``training=False``); may be None in training.  Not updated
        here (see :func:`batchnorm_update_stats`).
    training : bool
        True: normalize with the batch's mean and biased variance (over n and the
        spatial axes; at least one value per channel).
    eps : float >= 0
    out : ndarray, x's shape, optional (may be ``x`` itself)
    mean_out, var_out : ndarray (c,), optional

    Returns
    -------
    out : ndarray, x's shape
    mean, var : ndarray (c,)
        The batch's mean and biased variance in training (what the backward and
        the running-statistics update take); in eval mode they are not computed and
        the buffers are returned unwritten.
    """
    x, w, b, rm, rv, training, eps, out, mean, var = check_batchnorm_forward(
        x, weight, bias, running_mean, running_var, training, eps, out, mean_out, var_out)
    n, c, s = _ncs(x.shape)
    _k.batchnorm_forward[_SPEC[x.dtype]](out.reshape(-1), mean, var, x.reshape(-1), w, b, rm,
                                         rv, n, c, s, eps, training, get_num_threads())
    return out, mean, var


def batchnorm_backward(grad_out: Any, x: Any, mean: Any, var: Any, weight: Any, *,
                       training: bool, eps: float = 1e-5, dx_out: np.ndarray | None = None,
                       dweight_out: np.ndarray | None = None,
                       dbias_out: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`batchnorm_forward`, in closed form (two passes over the data).

    Parameters
    ----------
    grad_out, x : array_like, (n, c, *spatial)
    mean, var : array_like (c,)
        The statistics the forward normalized with: the batch's (training) or the
        running ones (eval).
    weight : array_like (c,) or None
    training : bool
        True: the gradient flows through the batch statistics.
    eps : float
    dx_out : ndarray, x's shape, optional (may be ``grad_out`` itself)
    dweight_out, dbias_out : ndarray (c,), optional

    Returns
    -------
    dx : ndarray, x's shape
    dweight, dbias : ndarray (c,)
        ``sum(grad_out * xhat)`` and ``sum(grad_out)`` per channel.
    """
    dy, x, mean, var, w, training, eps, dx, dw, db = check_batchnorm_backward(
        grad_out, x, mean, var, weight, training, eps, dx_out, dweight_out, dbias_out)
    n, c, s = _ncs(x.shape)
    _k.batchnorm_backward[_SPEC[x.dtype]](dx.reshape(-1), dw, db, dy.reshape(-1),
                                          x.reshape(-1), mean, var, w, n, c, s, eps, training,
                                          get_num_threads())
    return dx, dw, db


def batchnorm_update_stats(running_mean: np.ndarray, running_var: np.ndarray, mean: Any,
                           var: Any, count: int, momentum: float
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Update the running statistics in place, as torch:
    ``running = (1 - momentum) * running + momentum * batch``, with the batch variance
    made unbiased (``var * count / (count - 1)``).

    Parameters
    ----------
    running_mean, running_var : ndarray (c,), float32 or float64, C-contiguous, writable
    mean, var : array_like (c,)
        The batch's mean and biased variance (from :func:`batchnorm_forward`).
    count : int >= 2
        Values behind each statistic (n * H * W).
    momentum : float in [0, 1]

    Returns
    -------
    running_mean, running_var : the same arrays, updated
    """
    rm, rv, m, v, count, momentum = check_batchnorm_update_stats(running_mean, running_var,
                                                                 mean, var, count, momentum)
    _k.batchnorm_update_stats[_SPEC[rm.dtype]](rm, rv, m, v, count, momentum)
    return rm, rv


def layernorm_forward(x: Any, normalized_shape: Any, weight: Any = None, bias: Any = None, *,
                      eps: float = 1e-5, out: np.ndarray | None = None,
                      mean_out: np.ndarray | None = None,
                      rstd_out: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer normalization over the trailing ``normalized_shape`` dimensions.

    ``out = (x - mean) * rstd * weight + bias`` with each sample's mean and
    ``rstd = 1 / sqrt(biased variance + eps)`` (``torch.nn.functional.layer_norm``).

    Parameters
    ----------
    x : array_like, (*lead, *normalized_shape)
    normalized_shape : int or tuple of int
    weight, bias : array_like of normalized_shape, or None
    eps : float >= 0
    out : ndarray, x's shape, optional (may be ``x`` itself)
    mean_out, rstd_out : ndarray, lead shape, optional

    Returns
    -------
    out : ndarray, x's shape
    mean, rstd : ndarray, lead shape
    """
    x, shape, w, b, eps, out, mean, rstd = check_layernorm_forward(
        x, normalized_shape, weight, bias, eps, out, mean_out, rstd_out)
    d = int(np.prod(shape, dtype=np.int64))
    rows = x.size // d
    _k.layernorm_forward[_SPEC[x.dtype]](out.reshape(-1), mean.reshape(-1), rstd.reshape(-1),
                                         x.reshape(-1), None if w is None else w.reshape(-1),
                                         None if b is None else b.reshape(-1), rows, d, eps,
                                         get_num_threads())
    return out, mean, rstd


def layernorm_backward(grad_out: Any, x: Any, mean: Any, rstd: Any, weight: Any = None, *,
                       dx_out: np.ndarray | None = None, dweight_out: np.ndarray | None = None,
                       dbias_out: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`layernorm_forward` (closed form per row).

    Parameters
    ----------
    grad_out, x : array_like, (*lead, *normalized_shape)
    mean, rstd : array_like, lead shape (from the forward; they fix normalized_shape as
        ``x.shape[mean.ndim:]``)
    weight : array_like of normalized_shape, or None
    dx_out : ndarray, x's shape, optional (may be ``grad_out`` itself)
    dweight_out, dbias_out : ndarray of normalized_shape, optional

    Returns
    -------
    dx : ndarray, x's shape
    dweight, dbias : ndarray of normalized_shape
        ``sum(grad_out * xhat)`` and ``sum(grad_out)`` over the lead dimensions.
    """
    dy, x, mean, rstd, w, dx, dw, db = check_layernorm_backward(
        grad_out, x, mean, rstd, weight, dx_out, dweight_out, dbias_out)
    d = max(dw.size, 1)
    _k.layernorm_backward[_SPEC[x.dtype]](dx.reshape(-1), dw.reshape(-1), db.reshape(-1),
                                          dy.reshape(-1), x.reshape(-1), mean.reshape(-1),
                                          rstd.reshape(-1), None if w is None else w.reshape(-1),
                                          mean.size, d, get_num_threads())
    return dx, dw, db
