"""Losses with their gradient in one fused pass (csrc/loss.c)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _kernels as _k
from .._validation import (
    as_float_array,
    check_shape,
    common_float_dtype,
    labels_array,
    output,
)

#: Cython specialization name of each dtype; ``_k.fn[_SPEC[dt]]`` picks the
#: float or double version without runtime dispatch (None arguments included).
_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


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
