"""Central finite differences (float64) of a 3-layer network built from the kernels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import seeded_rng

import fastnn
from fastnn import kernels as K

HIDDEN_ACTS = [a for a in fastnn.ACTIVATIONS if a != "softmax"]
LOSSES = ["cross_entropy", "mse", "binary_cross_entropy"]


def make_net(rng, sizes):
    return [((rng.standard_normal((i, o)) / np.sqrt(i)), rng.standard_normal(o) * 0.1)
            for i, o in zip(sizes[:-1], sizes[1:])]


def loss_of(logits, y, loss):
    if loss == "cross_entropy":
        return K.cross_entropy(logits, y)
    if loss == "mse":
        return K.mse(logits, y)
    return K.binary_cross_entropy(logits, y)


def forward_backward(params, acts, x, y, loss):
    """Loss and gradients of every parameter, through the fused kernels."""
    cache, h = [], x
    for (w, b), act in zip(params, acts):
        z = np.empty((h.shape[0], w.shape[1]))
        a = K.dense_forward(h, w, b, act, z_out=z)
        cache.append((h, z, a))
        h = a
    value, g = loss_of(h, y, loss)
    grads = []
    for i in reversed(range(len(params))):
        w, _ = params[i]
        hin, z, a = cache[i]
        dx, dw, db = K.dense_backward(g, hin, w, a, z, acts[i], need_dx=i > 0)
        grads.append((dw, db))
        g = dx
    return value, grads[::-1]


@pytest.mark.parametrize("act", HIDDEN_ACTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_three_layer_gradients_match_finite_differences(act, loss):
    rng = seeded_rng(act, loss)
    sizes = [5, 7, 6, 4]
    params = make_net(rng, sizes)
    # the output layer: linear for the logit losses; a squashing one for mse
    acts = [act, act, "identity" if loss != "mse" else "tanh"]
    x = rng.standard_normal((9, sizes[0]))
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], 9)
    elif loss == "mse":
        y = rng.standard_normal((9, sizes[-1]))
    else:
        y = rng.random((9, sizes[-1]))
    _, grads = forward_backward(params, acts, x, y, loss)
    h = 1e-6
    for li, (w, b) in enumerate(params):
        for arr, g in ((w, grads[li][0]), (b, grads[li][1])):
            num = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + h
                lp, _ = forward_backward(params, acts, x, y, loss)
                arr[idx] = old - h
                lm, _ = forward_backward(params, acts, x, y, loss)
                arr[idx] = old
                num[idx] = (lp - lm) / (2 * h)
            err = np.abs(num - g).max()
            assert err <= 1e-6 * (1 + np.abs(num).max()), (
                f"layer {li} {act}/{loss}: max |numeric - analytic| = {err:.2e}"
            )


def test_softmax_output_with_mse_gradients():
    rng = np.random.default_rng(3)
    params = make_net(rng, [4, 6, 3])
    acts = ["tanh", "softmax"]
    x = rng.standard_normal((5, 4))
    y = rng.random((5, 3))
    _, grads = forward_backward(params, acts, x, y, "mse")
    w = params[1][0]
    h = 1e-6
    for idx in np.ndindex(w.shape):
        old = w[idx]
        w[idx] = old + h
        lp, _ = forward_backward(params, acts, x, y, "mse")
        w[idx] = old - h
        lm, _ = forward_backward(params, acts, x, y, "mse")
        w[idx] = old
        assert abs((lp - lm) / (2 * h) - grads[1][0][idx]) < 1e-7
