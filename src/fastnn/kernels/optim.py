"""Optimizer updates, one fused pass per parameter array (csrc/optim.c).

The argument checks live in :mod:`fastnn._validation`, shared with the twins in
:mod:`fastnn.reference`, so both accept and reject exactly the same arguments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _kernels as _k
from .._config import get_num_threads
from .._validation import (
    as_float_array,
    check_adagrad,
    check_adam,
    check_rmsprop,
    check_sgd,
    check_shape,
    output,
)
from .._validation import same_memory as _same_memory

#: Cython specialization name of each dtype; ``_k.fn[_SPEC[dt]]`` picks the
#: float or double version without runtime dispatch (None arguments included).
_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


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
    g, lr, momentum, dampening, weight_decay = check_sgd(w, g, buf, lr, momentum, dampening,
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
    g, step, lr, beta1, beta2, eps, weight_decay = check_adam(w, g, m, v, vmax, step, lr, beta1,
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
    g, lr, alpha, eps, weight_decay, momentum = check_rmsprop(
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
    g, step, lr, lr_decay, weight_decay, eps = check_adagrad(w, g, sum_sq, step, lr, lr_decay,
                                                              weight_decay, eps)
    _k.adagrad_step[_SPEC[w.dtype]](w.reshape(-1), g.reshape(-1), sum_sq.reshape(-1), step, lr,
                                    lr_decay, weight_decay, eps, get_num_threads())
    return w
