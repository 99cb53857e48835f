"""Folding inference-mode batch normalization into the layer before it.

``Sequential.fuse_batchnorm()`` is the public entry; this module holds the math so
that model.py stays a thin caller.  For a BatchNorm after a Dense or Conv2D
without activation (z = x W + b, then y = (z - mean) / sqrt(var + eps) * gamma + beta
with the running statistics), the folded layer computes y directly:

    s  = gamma / sqrt(running_var + eps)           per output channel
    W' = W * s   (Dense: each column; Conv2D: each output-channel kernel)
    b' = (b - running_mean) * s + beta

computed in float64 and rounded once to the model's dtype.  An ``Activation``
right after the BatchNorm (softmax excepted) becomes the folded layer's fused
activation.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .layers import LAYER_TYPES, Activation, BatchNorm1D, BatchNorm2D, Conv2D, Dense, Layer


def _foldable(prev: Layer | None, bn: Layer) -> bool:
    """True when ``bn`` (a BatchNorm) can be folded into ``prev``."""
    if type(prev) not in (Dense, Conv2D) or prev.activation != "identity":
        return False
    if type(prev) is Dense:
        return type(bn) is BatchNorm1D and bn.num_features == prev.out_features
    if type(prev) is Conv2D:
        return type(bn) is BatchNorm2D and bn.num_features == prev.out_channels
    return False


def _folded(prev: Layer, bn: Layer, activation: str) -> tuple[Layer, list[np.ndarray]]:
    """A new layer like ``prev`` (with a bias and ``activation``) and its folded values."""
    s = (np.ones(bn.num_features) if bn.weight is None else bn.weight.astype(np.float64)) \
        / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    beta = np.zeros(bn.num_features) if bn.bias is None else bn.bias.astype(np.float64)
    w = prev.weight.astype(np.float64)
    b = np.zeros(bn.num_features) if prev.bias is None else prev.bias.astype(np.float64)
    w = w * s if type(prev) is Dense else w * s[:, None, None, None]
    b = (b - bn.running_mean.astype(np.float64)) * s + beta
    cfg = dict(prev.get_config())
    cfg.update(bias=True, activation=activation)
    return LAYER_TYPES[type(prev).__name__](**cfg), [w, b]


def fuse_batchnorm(model: Any) -> Any:
    """A new model computing ``model``'s inference output with every foldable BatchNorm
    folded into the Dense / Conv2D before it (see the module docstring).

    BatchNorm layers that cannot be folded (first in the model, after another kind of
    layer, or after a layer with an activation) are kept as they are.  The result is
    not compiled; its layers are copies (``model`` is unchanged).
    """
    src = model.layers
    layers: list[Layer] = []
    values: list[tuple[Layer, list[np.ndarray]]] = []
    i = 0
    while i < len(src):
        layer = src[i]
        if isinstance(layer, BatchNorm1D | BatchNorm2D) and i and _foldable(src[i - 1], layer):
            nxt = src[i + 1] if i + 1 < len(src) else None
            merge = type(nxt) is Activation and nxt.activation != "softmax"
            # a following activation becomes the folded layer's fused one
            new, vals = _folded(src[i - 1], layer, nxt.activation if merge else "identity")
            layers[-1] = new  # in place of the copy of the Dense / Conv2D
            values.append((new, vals))
            i += 1 if merge else 0
        else:
            layers.append(_fused_block(model, layer) if type(layer).__name__ == "Residual"
                          else copy.deepcopy(layer))
        i += 1
    fused = type(model)(layers, dtype=model.dtype, seed=model.seed,
                        input_shape=model.input_shape, name=model.name)
    for layer, vals in values:
        for k, v in enumerate(vals):
            layer.set_param(k, v)
    return fused


def _fused_block(model: Any, block: Layer) -> Layer:
    """A copy of a Residual block with the batch norms of its ``f`` folded the same way
    (the shortcut is copied as it is).
    """
    inner = fuse_batchnorm(type(model)([copy.deepcopy(la) for la in block.layers],
                                       dtype=model.dtype))
    body = [copy.deepcopy(la) for la in inner.layers]
    for la in body:
        la.name = None  # named by the new block
    shortcut = None if block.shortcut is None else copy.deepcopy(block.shortcut)
    return type(block)(body, shortcut, block.activation, name=block.name)
