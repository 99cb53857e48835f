"""Counter-based inverted dropout (csrc/dropout.c)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _kernels as _k
from .._config import get_num_threads
from .._validation import (
    check_dropout_backward,
    check_dropout_forward,
)

#: Cython specialization name of each dtype; ``_k.fn[_SPEC[dt]]`` picks the
#: float or double version without runtime dispatch (None arguments included).
_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


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
    x, p, seed, offset, out, mask = check_dropout_forward(x, p, seed, offset, out, mask_out)
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
    dy, mask, p, out = check_dropout_backward(grad_out, mask, p, out)
    _k.dropout_backward[_SPEC[dy.dtype]](out.reshape(-1), dy.reshape(-1), mask.reshape(-1), p,
                                         get_num_threads())
    return out
