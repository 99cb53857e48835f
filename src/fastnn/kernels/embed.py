"""Embedding lookup and the mean over a sequence axis (csrc/embed.c)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _kernels as _k
from .._config import get_num_threads
from .._validation import (
    as_float_array,
    check_shape,
    common_float_dtype,
    embedding_grad,
    index_array,
    input_shape_3d,
    output,
    positive_int,
)

_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def embedding_forward(indices: Any, weight: Any, *, out: np.ndarray | None = None
                      ) -> np.ndarray:
    """Rows of ``weight`` picked by ``indices`` (``torch.nn.functional.embedding``).

    Parameters
    ----------
    indices : array_like of int, any shape S
        Each in [0, num_embeddings); ValueError (checked in C) naming the first one
        outside, before anything is written.
    weight : array_like, (num_embeddings, embedding_dim)
    out : ndarray, (*S, embedding_dim), optional

    Returns
    -------
    ndarray, (*S, embedding_dim)

    """
    idx = index_array(indices)
    dt = common_float_dtype(weight)
    w = as_float_array(weight, "weight", dt, 2)
    res = output(out, "out", (*idx.shape, w.shape[1]), dt, (w,))
    _k.embedding_forward[_SPEC[dt]](res.reshape(idx.size, w.shape[1]), idx.reshape(-1), w,
                                    get_num_threads())
    return res


def embedding_backward(grad_out: Any, indices: Any, num_embeddings: int, *,
                       out: np.ndarray | None = None) -> np.ndarray:
    """dL/dweight of :func:`embedding_forward`: each row of ``grad_out`` added into row
    ``indices[i]`` (repeated indices accumulate), deterministically.

    Parameters
    ----------
    grad_out : array_like, (*S, embedding_dim)
    indices : array_like of int, S
    num_embeddings : int
    out : ndarray, (num_embeddings, embedding_dim), optional (overwritten)

    Returns
    -------
    ndarray, (num_embeddings, embedding_dim)

    """
    idx = index_array(indices)
    v = positive_int(num_embeddings, "num_embeddings")
    g = embedding_grad(grad_out, idx)
    dt, d = g.dtype, g.shape[-1]
    dw = output(out, "out", (v, d), dt, (g,))
    _k.embedding_backward[_SPEC[dt]](dw, idx.reshape(-1), g.reshape(idx.size, d), 0.0,
                                     get_num_threads())
    return dw


def global_avgpool1d_forward(x: Any, *, out: np.ndarray | None = None) -> np.ndarray:
    """Mean over the sequence axis (Keras' ``GlobalAveragePooling1D`` on (batch, steps,
    features)).

    Parameters
    ----------
    x : array_like, (batch, length, features)
    out : ndarray, (batch, features), optional

    Returns
    -------
    ndarray, (batch, features)
        Zeros for an empty sequence (length 0).

    """
    dt = common_float_dtype(x)
    x = as_float_array(x, "x", dt, 3)
    res = output(out, "out", (x.shape[0], x.shape[2]), dt, (x,))
    _k.global_avgpool1d_forward[_SPEC[dt]](res, x, get_num_threads())
    return res


def global_avgpool1d_backward(grad_out: Any, input_shape: Any, *,
                              out: np.ndarray | None = None) -> np.ndarray:
    """Backward of :func:`global_avgpool1d_forward`: ``grad_out / length`` along the axis.

    Parameters
    ----------
    grad_out : array_like, (batch, features)
    input_shape : (batch, length, features)
    out : ndarray, input_shape, optional

    Returns
    -------
    ndarray, input_shape

    """
    shape = input_shape_3d("global_avgpool1d_backward", input_shape)
    dt = common_float_dtype(grad_out)
    g = as_float_array(grad_out, "grad_out", dt, 2)
    check_shape(g, "grad_out", (shape[0], shape[2]))
    dx = output(out, "out", shape, dt, (g,))
    _k.global_avgpool1d_backward[_SPEC[dt]](dx, g, get_num_threads())
    return dx
