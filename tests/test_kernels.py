"""Every C kernel against its NumPy twin, both dtypes, awkward shapes, 1 and 2 threads."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, in_float64, seeded_rng

import fastnn
from fastnn import kernels as K
from fastnn import reference as R

ACTS = list(fastnn.ACTIVATIONS)
# 1, primes, sizes that are not multiples of MR (6, 4), NR (16, 8), MC (144, 72),
# KC (256), and one above 1000
GEMM_SHAPES = [
    (1, 1, 1), (1, 7, 1), (7, 1, 13), (13, 97, 31), (6, 256, 16), (145, 257, 33),
    (73, 513, 17), (5, 1031, 3), (1031, 3, 29), (37, 29, 1031), (300, 300, 300),
]


def rng_for(*key):
    return seeded_rng(*key)


@pytest.mark.parametrize("m,k,n", GEMM_SHAPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_reference(m, k, n, ta, tb, dtype, threads):
    rng = rng_for(m, k, n, ta, tb)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    got = K.gemm(a, b, trans_a=ta, trans_b=tb)
    want = in_float64(R.gemm, a, b, trans_a=ta, trans_b=tb)
    assert got.dtype == dtype
    assert_close(got, want, dtype, k, f"gemm {m}x{k}x{n} ta={ta} tb={tb}")


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (-0.5, 2.0), (2.0, 0.0), (0.0, 0.5)])
def test_gemm_alpha_beta(alpha, beta, dtype, threads):
    rng = rng_for(alpha, beta)
    a = rng.standard_normal((67, 300)).astype(dtype)
    b = rng.standard_normal((300, 45)).astype(dtype)
    c0 = rng.standard_normal((67, 45)).astype(dtype)
    got = K.gemm(a, b, alpha=alpha, beta=beta, out=c0.copy())
    want = in_float64(R.gemm, a, b, alpha=alpha, beta=beta, out=c0.copy())
    assert_close(got, want, dtype, 300, f"gemm alpha={alpha} beta={beta}")


def test_gemm_beta_zero_ignores_nan_in_out(dtype):
    a = np.ones((9, 5), dtype)
    b = np.ones((5, 17), dtype)
    out = np.full((9, 17), np.nan, dtype)
    K.gemm(a, b, out=out)
    assert np.all(out == 5)


def test_gemm_k_zero_gives_zeros(dtype):
    out = K.gemm(np.ones((4, 0), dtype), np.ones((0, 3), dtype))
    assert out.shape == (4, 3) and np.all(out == 0)


def test_gemm_large_square_two_threads_is_repeatable(threads):
    rng = rng_for("rep")
    a = rng.standard_normal((700, 1100)).astype(np.float32)
    b = rng.standard_normal((1100, 530)).astype(np.float32)
    first = K.gemm(a, b)
    assert_close(first, in_float64(R.gemm, a, b), np.float32, 1100, "gemm 700x1100x530")
    for _ in range(3):
        assert np.array_equal(K.gemm(a, b), first)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("batch,inp,out", [(1, 1, 1), (1, 7, 3), (13, 29, 17), (64, 785, 257),
                                           (1031, 31, 10)])
def test_dense_forward_matches_reference(activation, batch, inp, out, dtype, threads):
    rng = rng_for(activation, batch, inp, out)
    x = rng.standard_normal((batch, inp)).astype(dtype)
    w = (rng.standard_normal((inp, out)) / np.sqrt(inp)).astype(dtype)
    b = rng.standard_normal(out).astype(dtype)
    z_k = np.empty((batch, out), dtype)
    z_r = np.empty((batch, out), dtype)
    got = K.dense_forward(x, w, b, activation, z_out=z_k)
    want = R.dense_forward(x, w, b, activation, z_out=z_r)
    assert_close(z_k, z_r, dtype, inp, f"dense_forward z ({activation})")
    assert_close(got, want, dtype, inp, f"dense_forward {activation}", scale=64)


def test_dense_forward_without_bias(dtype):
    rng = rng_for("nobias")
    x = rng.standard_normal((10, 20)).astype(dtype)
    w = rng.standard_normal((20, 30)).astype(dtype)
    assert_close(K.dense_forward(x, w, None, "tanh"), R.dense_forward(x, w, None, "tanh"),
                 dtype, 20, "dense_forward no bias", scale=64)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("batch,inp,out", [(1, 1, 1), (13, 29, 17), (97, 300, 145), (5, 1031, 7)])
@pytest.mark.parametrize("need_dx", [True, False])
def test_dense_backward_matches_reference(activation, batch, inp, out, need_dx, dtype, threads):
    rng = rng_for(activation, batch, inp, out, need_dx)
    x = rng.standard_normal((batch, inp)).astype(dtype)
    w = (rng.standard_normal((inp, out)) / np.sqrt(inp)).astype(dtype)
    b = rng.standard_normal(out).astype(dtype)
    z = np.empty((batch, out), dtype)
    a = R.dense_forward(x, w, b, activation, z_out=z)
    g = rng.standard_normal((batch, out)).astype(dtype)
    dx, dw, db = K.dense_backward(g, x, w, a, z, activation, need_dx=need_dx)
    rdx, rdw, rdb = R.dense_backward(g, x, w, a, z, activation, need_dx=need_dx)
    assert_close(dw, rdw, dtype, batch, f"dense_backward dw ({activation})", scale=64)
    assert_close(db, rdb, dtype, batch, f"dense_backward db ({activation})", scale=64)
    if need_dx:
        assert_close(dx, rdx, dtype, out, f"dense_backward dx ({activation})", scale=64)
    else:
        assert dx is None


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("shape", [(1,), (7, 1), (3, 1031), (257, 13)])
def test_activation_forward_backward_match_reference(activation, shape, dtype):
    rng = rng_for(activation, shape)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    a = K.activation_forward(x, activation)
    assert_close(a, R.activation_forward(x, activation), dtype, 1, f"{activation} forward",
                 scale=64)
    g = rng.standard_normal(shape).astype(dtype)
    got = K.activation_backward(g, a, x, activation)
    want = R.activation_backward(g, a, x, activation)
    assert_close(got, want, dtype, shape[-1], f"{activation} backward", scale=64)


@pytest.mark.parametrize("activation", ACTS)
def test_activations_stable_at_extremes(activation, dtype):
    x = np.array([[-1000.0, -100.0, -30.0, -1e-8, 0.0, 1e-8, 30.0, 100.0, 1000.0]], dtype)
    a = K.activation_forward(x, activation)
    assert np.all(np.isfinite(a)), f"{activation} forward not finite: {a}"
    g = K.activation_backward(np.ones_like(x), a, x, activation)
    assert np.all(np.isfinite(g)), f"{activation} backward not finite: {g}"
    assert_close(a, R.activation_forward(x, activation), dtype, 1, activation, scale=64)
    assert_close(g, R.activation_backward(np.ones_like(x), a, x, activation), dtype, 9,
                 activation, scale=64)


def test_activation_known_values():
    x = np.array([[-1000.0, 0.0, 1000.0]])
    assert np.allclose(K.activation_forward(x, "sigmoid"), [[0.0, 0.5, 1.0]])
    assert np.allclose(K.activation_forward(x, "softplus"), [[0.0, np.log(2), 1000.0]])
    assert np.allclose(K.activation_forward(x, "leaky_relu"), [[-10.0, 0.0, 1000.0]])
    assert np.allclose(K.activation_forward(x, "softmax"), [[0.0, 0.0, 1.0]])
    assert np.allclose(K.activation_forward(np.array([1.0]), "gelu"), 0.8413447460685429)


@pytest.mark.parametrize("batch,classes", [(1, 1), (1, 10), (17, 3), (1031, 10), (5, 1031)])
def test_cross_entropy_matches_reference(batch, classes, dtype):
    rng = rng_for("ce", batch, classes)
    logits = (rng.standard_normal((batch, classes)) * 3).astype(dtype)
    labels = rng.integers(0, classes, batch)
    loss, grad = K.cross_entropy(logits, labels)
    rloss, rgrad = R.cross_entropy(logits, labels)
    assert_close(loss, rloss, dtype, classes, "cross_entropy loss", scale=64)
    assert_close(grad, rgrad, dtype, classes, "cross_entropy grad", scale=64)
    onehot = np.eye(classes, dtype=dtype)[labels]
    loss2, grad2 = K.cross_entropy(logits, onehot)
    assert_close(loss2, rloss, dtype, classes, "cross_entropy one-hot loss", scale=64)
    assert_close(grad2, rgrad, dtype, classes, "cross_entropy one-hot grad", scale=64)


def test_cross_entropy_soft_labels_and_extreme_logits(dtype):
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]], dtype)
    soft = np.array([[0.2, 0.3, 0.5], [0.0, 0.5, 0.5]], dtype)
    loss, grad = K.cross_entropy(logits, soft)
    rloss, rgrad = R.cross_entropy(logits, soft)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert_close(loss, rloss, dtype, 3, "soft ce", scale=64)
    assert_close(grad, rgrad, dtype, 3, "soft ce grad", scale=64)
    loss, grad = K.cross_entropy(logits, np.array([0, 2]))
    # lse of row 2 is -1000 + log 3: float32 keeps it to an ulp of 1000 (6e-5)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    assert np.isfinite(loss) and abs(loss - np.log(3) / 2) < tol


@pytest.mark.parametrize("shape", [(1,), (13, 7), (1031, 3)])
def test_mse_and_bce_match_reference(shape, dtype):
    rng = rng_for("mse", shape)
    p = rng.standard_normal(shape).astype(dtype)
    t = rng.random(shape).astype(dtype)
    for name in ("mse", "binary_cross_entropy"):
        loss, grad = getattr(K, name)(p, t)
        rloss, rgrad = getattr(R, name)(p, t)
        assert_close(loss, rloss, dtype, p.size, name, scale=64)
        assert_close(grad, rgrad, dtype, 1, name + " grad", scale=64)


def test_bce_extreme_logits(dtype):
    x = np.array([-1000.0, 1000.0, 0.0], dtype)
    t = np.array([0.0, 1.0, 1.0], dtype)
    loss, grad = K.binary_cross_entropy(x, t)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert abs(loss - np.log(2) / 3) < 1e-6
    loss, _ = K.binary_cross_entropy(x, 1 - t)
    assert np.isfinite(loss) and abs(loss - (2000 + np.log(2)) / 3) < 1e-3


@pytest.mark.parametrize("n", [1, 7, 1031, 100_003])
def test_sgd_update_matches_reference(n, dtype):
    rng = rng_for("sgd", n)
    w = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    w1, w2 = w.copy(), w.copy()
    assert K.sgd_update(w1, g, 0.1) is w1
    R.sgd_update(w2, g, 0.1)
    assert_close(w1, w2, dtype, 1, "sgd_update")


def test_kernels_and_reference_have_same_signatures():
    import inspect

    for name in K.__all__:
        assert inspect.signature(getattr(K, name)) == inspect.signature(getattr(R, name)), name


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_dense_backward_with_zero_outputs_gives_zero_dx(dt):
    """No output features: dx is a sum of nothing (the twin's zeros), not whatever the
    output buffer held."""
    x = np.ones((5, 3), dt)
    w = np.ones((3, 0), dt)
    g = np.ones((5, 0), dt)
    a = np.ones((5, 0), dt)
    dx_out = np.full((5, 3), 7.0, dt)
    dx, dw, db = K.dense_backward(g, x, w, a, dx_out=dx_out)
    rx, rw, rb = R.dense_backward(g, x, w, a)
    np.testing.assert_array_equal(dx, np.zeros((5, 3), dt))
    np.testing.assert_array_equal(dx, rx)
    assert dw.shape == rw.shape == (3, 0) and db.shape == rb.shape == (0,)
