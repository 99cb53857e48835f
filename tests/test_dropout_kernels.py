"""Dropout: counter-based masks vs the NumPy twin, statistics, scaling, backward, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import assert_close

import fastnn
from fastnn import _kernels as _k
from fastnn import kernels as K
from fastnn import reference as R

SIZES = [1, 7, 1031, 100_003]
M64 = 2**64 - 1


def splitmix64(seed: int, k: int) -> int:
    """Output number k (from 0) of splitmix64 seeded with seed, in Python ints."""
    z = (seed + (k + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def x_for(n: int, dtype) -> np.ndarray:
    return np.random.default_rng(n).standard_normal(n).astype(dtype)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_forward_matches_reference(n, p, dtype, threads):
    x = x_for(n, dtype)
    out, mask = K.dropout_forward(x, p, seed=1234, offset=99)
    out_r, mask_r = R.dropout_forward(x, p, seed=1234, offset=99)
    assert out.dtype == dtype and mask.dtype == np.uint8 and mask.shape == x.shape
    assert np.array_equal(mask, mask_r)
    assert np.array_equal(out, out_r)


@pytest.mark.parametrize("n", SIZES)
def test_backward_matches_reference(n, dtype, threads):
    x = x_for(n, dtype)
    dy = x_for(n + 1, dtype)[:n]
    _, mask = K.dropout_forward(x, 0.3, seed=5)
    got = K.dropout_backward(dy, mask, 0.3)
    want = R.dropout_backward(dy, mask, 0.3)
    assert np.array_equal(got, want)


def test_known_answer_splitmix64():
    """Vigna's splitmix64 test values: seed 0 gives 0xe220a8397b1dcdaf, ...; the
    mask bits are their top 24 bits."""
    assert splitmix64(0, 0) == 0xE220A8397B1DCDAF
    assert splitmix64(0, 1) == 0x6E789E6AA1B965F4
    assert splitmix64(1234567, 0) == 6457827717110365317
    bits = R.dropout_bits(0, 0, 3)
    assert [int(b) for b in bits] == [splitmix64(0, k) >> 40 for k in range(3)]
    # element i is kept iff (h >> 40) / 2**24 >= p; put p between the first two
    u = [splitmix64(0, k) / 2**64 for k in range(2)]  # 0.883..., 0.431...
    _, mask = K.dropout_forward(np.ones(2), 0.6, seed=0)
    assert mask.tolist() == [int(u[0] >= 0.6), int(u[1] >= 0.6)] == [1, 0]


def test_formula_with_large_seed_and_offset():
    """Wrapping uint64 arithmetic at the top of the range, checked in Python ints."""
    seed, offset = 2**64 - 3, 2**64 - 5  # offset + i wraps past 2**64
    p = 0.5
    _, mask = K.dropout_forward(np.ones(11), p, seed, offset=offset)
    want = [int((splitmix64(seed, (offset + i) & M64) >> 40) / 2**24 >= p) for i in range(11)]
    assert mask.tolist() == want


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_mask_independent_of_threads_and_dtype(p):
    x = x_for(1_000_003, np.float64)
    old = fastnn.get_num_threads()
    masks = []
    try:
        for nt in (1, 2, 3):
            fastnn.set_num_threads(nt)
            for dt in (np.float32, np.float64):
                masks.append(K.dropout_forward(x.astype(dt), p, seed=7, offset=3)[1])
    finally:
        fastnn.set_num_threads(old)
    for m in masks[1:]:
        assert np.array_equal(m, masks[0])


def test_counter_based_slices_agree():
    """Element i depends only on (seed, offset + i): a slice at offset k is the
    same mask as elements k.. of the whole."""
    x = np.ones(5000, np.float32)
    _, whole = K.dropout_forward(x, 0.5, seed=11)
    _, part = K.dropout_forward(x[1234:], 0.5, seed=11, offset=1234)
    assert np.array_equal(part, whole[1234:])


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.8, 0.95])
def test_keep_rate_within_statistical_bounds(p, threads):
    n = 1_000_000
    _, mask = K.dropout_forward(np.ones(n, np.float32), p, seed=2024)
    keep = mask.mean()
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(keep - (1 - p)) < 5 * sd, f"keep rate {keep} vs {1 - p} (5 sd = {5 * sd:.2e})"


def test_neighbouring_decisions_uncorrelated():
    n = 1_000_000
    _, mask = K.dropout_forward(np.ones(n), 0.5, seed=3)
    m = mask.astype(np.float64) - mask.mean()
    for lag in (1, 2, 7, 64):
        r = float(np.dot(m[:-lag], m[lag:]) / np.dot(m, m))
        assert abs(r) < 5 / math.sqrt(n), f"lag {lag}: correlation {r:.2e}"
    # and across adjacent seeds 3 and 4 (they must not give related masks)
    _, other = K.dropout_forward(np.ones(n), 0.5, seed=4)
    o = other.astype(np.float64) - other.mean()
    assert abs(np.dot(m, o) / math.sqrt(np.dot(m, m) * np.dot(o, o))) < 5 / math.sqrt(n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.75])
def test_scaling(p, dtype):
    x = x_for(10_007, dtype)
    out, mask = K.dropout_forward(x, p, seed=1)
    keep = mask.astype(bool)
    scale = dtype.type(1.0 / (1.0 - p))
    assert np.array_equal(out[keep], x[keep] * scale)
    assert np.all(out[~keep] == 0)
    assert 0 < keep.sum() < keep.size
    assert_close(out[keep], x[keep].astype(np.float64) / (1 - p), dtype)


def test_non_finite_inputs_as_torch(dtype):
    """x * (mask / (1-p)): a dropped inf or nan gives nan, a kept one stays."""
    x = np.array([np.inf, -np.inf, np.nan, 1.0] * 8, dtype)
    out, mask = K.dropout_forward(x, 0.5, seed=0)
    out_r, mask_r = R.dropout_forward(x, 0.5, seed=0)
    assert np.array_equal(out, out_r, equal_nan=True)
    keep = mask.astype(bool)
    assert 0 < keep.sum() < keep.size
    assert np.all(np.isnan(out[~keep & ~np.isfinite(x)]))
    assert np.array_equal(out[keep], x[keep] * 2, equal_nan=True)


def test_expectation_preserved():
    """Inverted dropout keeps E[out] = x."""
    out, _ = K.dropout_forward(np.full(1_000_000, 2.0), 0.3, seed=9)
    assert abs(out.mean() - 2.0) < 5 * 2.0 * math.sqrt(0.3 / 0.7 / 1_000_000)


def test_backward_uses_the_mask(dtype):
    dy = x_for(1000, dtype)
    mask = np.zeros(1000, np.uint8)
    mask[::3] = 1
    dx = K.dropout_backward(dy, mask, 0.25)
    assert np.array_equal(dx[::3], dy[::3] * dtype.type(1 / 0.75))
    assert np.all(np.delete(dx, np.s_[::3]) == 0)
    # a bool mask works too, and gives the same
    assert np.array_equal(K.dropout_backward(dy, mask.astype(bool), 0.25), dx)


def test_backward_is_the_adjoint_of_forward():
    """<dy, D x> == <D^T dy, x>: the backward reuses exactly the forward's mask."""
    x, dy = x_for(4099, np.float64), x_for(4100, np.float64)[:4099]
    out, mask = K.dropout_forward(x, 0.4, seed=8, offset=17)
    dx = K.dropout_backward(dy, mask, 0.4)
    assert math.isclose(float(dy @ out), float(dx @ x), rel_tol=1e-12)


def test_different_seeds_and_offsets_differ():
    x = np.ones(10_000)
    masks = [K.dropout_forward(x, 0.5, seed=s, offset=o)[1] for s, o in
             [(0, 0), (1, 0), (0, 1), (0, 10_000), (2**63, 0)]]
    for i in range(len(masks)):
        for j in range(i):
            agree = float(np.mean(masks[i] == masks[j]))
            assert 0.45 < agree < 0.55, f"masks {i} and {j} agree on {agree:.3f}"
    # and the same (seed, offset) gives the same mask
    assert np.array_equal(K.dropout_forward(x, 0.5, seed=1)[1], masks[1])


def test_p_zero_is_identity(dtype, threads):
    x = x_for(100_003, dtype)
    out, mask = K.dropout_forward(x, 0.0, seed=5)
    assert np.array_equal(out, x) and np.all(mask == 1)
    assert np.array_equal(K.dropout_backward(x, mask, 0.0), x)


def test_shapes_out_and_in_place(dtype):
    x = x_for(60, dtype).reshape(3, 4, 5)
    out, mask = K.dropout_forward(x, 0.5, seed=1)
    assert out.shape == mask.shape == (3, 4, 5)
    buf, mbuf = np.empty_like(x), np.empty((3, 4, 5), np.uint8)
    out2, mask2 = K.dropout_forward(x, 0.5, seed=1, out=buf, mask_out=mbuf)
    assert out2 is buf and mask2 is mbuf and np.array_equal(out2, out)
    y = x.copy()
    K.dropout_forward(y, 0.5, seed=1, out=y)  # out may be x itself
    assert np.array_equal(y, out)
    dx = K.dropout_backward(x, mask, 0.5)
    y = x.copy()
    assert K.dropout_backward(y, mask, 0.5, out=y) is y and np.array_equal(y, dx)
    assert K.dropout_forward(np.zeros((0, 3), dtype), 0.5, seed=1)[0].shape == (0, 3)


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize("p,err,msg", [
    (1.0, ValueError, r"p must be in \[0, 1\), got 1\.0"),
    (-0.1, ValueError, r"p must be in \[0, 1\), got -0\.1"),
    (1.5, ValueError, r"p must be in \[0, 1\)"),
    (float("nan"), ValueError, "p must be finite, got nan"),
    ("0.5", TypeError, "p must be a real number, got str"),
    (True, TypeError, "p must be a real number, got bool"),
])
def test_bad_p_raises(mod, p, err, msg):
    out = np.full(4, 7.0)
    with pytest.raises(err, match=msg):
        mod.dropout_forward(np.ones(4), p, seed=0, out=out)
    assert np.all(out == 7)
    with pytest.raises(err, match=msg):
        mod.dropout_backward(np.ones(4), np.ones(4, np.uint8), p, out=out)
    assert np.all(out == 7)


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
def test_bad_seed_offset_mask(mod):
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\), got -1"):
        mod.dropout_forward(np.ones(4), 0.5, seed=-1)
    with pytest.raises(ValueError, match=r"offset must be in \[0, 2\*\*64\)"):
        mod.dropout_forward(np.ones(4), 0.5, seed=0, offset=2**64)
    with pytest.raises(TypeError, match="seed must be an int, got float"):
        mod.dropout_forward(np.ones(4), 0.5, seed=1.0)
    with pytest.raises(TypeError, match="mask must have dtype uint8 \\(or bool\\), got float64"):
        mod.dropout_backward(np.ones(4), np.ones(4), 0.5)
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\), got \(3,\)"):
        mod.dropout_backward(np.ones(4), np.ones(3, np.uint8), 0.5)
    with pytest.raises(ValueError, match=r"mask_out must have shape \(4,\)"):
        mod.dropout_forward(np.ones(4), 0.5, seed=0, mask_out=np.ones(5, np.uint8))
    with pytest.raises(TypeError, match="out must have dtype float64, got float32"):
        mod.dropout_forward(np.ones(4), 0.5, seed=0, out=np.ones(4, np.float32))


def test_raw_cython_calls():
    x = np.ones(6, np.float32)
    out, mask = np.empty(6, np.float32), np.empty(6, np.uint8)
    _k.dropout_forward["float"](out, mask, x, 0.5, 1, 0, 2)
    assert np.array_equal(mask, K.dropout_forward(x, 0.5, seed=1)[1])
    dx = np.empty(6, np.float32)
    _k.dropout_backward["float"](dx, x, mask, 0.5, 2)
    assert np.array_equal(dx, out)
    _k.dropout_forward["float"](out, None, x, 0.5, 1, 0, 1)  # mask may be None
    with pytest.raises(ValueError, match="dropout_forward: invalid argument"):
        _k.dropout_forward["float"](out, mask, x, 1.0, 1, 0, 1)
    with pytest.raises(ValueError, match="dropout_backward: mask has 5 elements"):
        _k.dropout_backward["float"](dx, x, mask[:5], 0.5, 1)
