"""Convolution and pooling kernels: against their NumPy twins (both dtypes, awkward
sizes, 1 and 2 threads), central finite differences (float64), PyTorch when it is
installed, and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import assert_close, seeded_rng

import fastnn
from fastnn import _kernels as _k
from fastnn import kernels as K
from fastnn import reference as R

ACTS = list(fastnn.ACTIVATIONS)
SIZES = [(1, 1), (5, 7), (7, 5), (8, 8), (13, 8), (8, 13)]
KERNELS = [1, 3, 5]
STRIDES = [1, 2]
PADDINGS = [0, 1, "same"]


def rng_for(*key):
    return seeded_rng(*key)  # not hash(): salted per process, so the data changed every run


def _pad_of(padding, k):
    return k // 2 if padding == "same" else padding


def conv_cases():
    """(h, w, k, stride, padding, batch, c, oc, activation): every valid geometry of
    SIZES x KERNELS x STRIDES x PADDINGS, with batch, channels and activation cycled."""
    cases = []
    for i, ((h, w), k, s, p) in enumerate(itertools.product(SIZES, KERNELS, STRIDES, PADDINGS)):
        if p == "same" and s != 1:
            continue
        pad = _pad_of(p, k)
        if h + 2 * pad < k or w + 2 * pad < k:
            continue
        batch = (1, 3)[i % 2]
        c = (1, 3, 4)[i % 3]
        oc = (4, 1, 3, 7)[i % 4]
        act = ACTS[i % len(ACTS)]
        cases.append((h, w, k, s, p, batch, c, oc, act))
    return cases


CONV_CASES = conv_cases()


def conv_data(rng, dtype, batch, c, h, w, oc, k):
    x = rng.standard_normal((batch, c, h, w)).astype(dtype)
    wt = (rng.standard_normal((oc, c, k, k)) / np.sqrt(c * k * k)).astype(dtype)
    b = rng.standard_normal(oc).astype(dtype)
    return x, wt, b


@pytest.mark.parametrize("h,w,k,stride,padding,batch,c,oc,activation", CONV_CASES)
def test_conv2d_forward_matches_reference(h, w, k, stride, padding, batch, c, oc, activation,
                                          dtype, threads):
    rng = rng_for("fwd", h, w, k, stride, padding)
    x, wt, b = conv_data(rng, dtype, batch, c, h, w, oc, k)
    z_k = np.full(R.conv2d_forward(x, wt, b, stride, padding).shape, np.nan, dtype)
    z_r = np.empty_like(z_k)
    got = K.conv2d_forward(x, wt, b, stride, padding, activation, z_out=z_k)
    want = R.conv2d_forward(x, wt, b, stride, padding, activation, z_out=z_r)
    assert got.dtype == dtype and got.shape == want.shape
    kk = c * k * k
    assert_close(z_k, z_r, dtype, kk, f"conv2d_forward z ({activation})", scale=32)
    assert_close(got, want, dtype, kk, f"conv2d_forward {activation}", scale=64)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_forward_every_activation(activation, bias, dtype, threads):
    rng = rng_for("acts", activation, bias)
    x, wt, b = conv_data(rng, dtype, 3, 4, 13, 8, 7, 3)
    b = b if bias else None
    got = K.conv2d_forward(x, wt, b, 2, 1, activation)
    want = R.conv2d_forward(x, wt, b, 2, 1, activation)
    assert_close(got, want, dtype, 36, f"conv2d_forward {activation}", scale=64)


@pytest.mark.parametrize("shape", [(2, 20, 9, 9, 13, 3), (1, 40, 6, 7, 17, 3),
                                   (3, 300, 4, 4, 5, 1)])
def test_conv2d_forward_deep_reductions(shape, dtype, threads):
    """Channel counts whose K = c*kh*kw crosses the GEMM's KC block (256)."""
    batch, c, h, w, oc, k = shape
    rng = rng_for("deep", shape)
    x, wt, b = conv_data(rng, dtype, batch, c, h, w, oc, k)
    got = K.conv2d_forward(x, wt, b, 1, k // 2, "relu")
    want = R.conv2d_forward(x, wt, b, 1, k // 2, "relu")
    assert_close(got, want, dtype, c * k * k, "conv2d_forward deep", scale=64)


@pytest.mark.parametrize("h,w,k,stride,padding,batch,c,oc,activation", CONV_CASES)
@pytest.mark.parametrize("need_dx", [True, False])
def test_conv2d_backward_matches_reference(h, w, k, stride, padding, batch, c, oc, activation,
                                           need_dx, dtype, threads):
    rng = rng_for("bwd", h, w, k, stride, padding, need_dx)
    x, wt, b = conv_data(rng, dtype, batch, c, h, w, oc, k)
    z = np.empty(R.conv2d_forward(x, wt, b, stride, padding).shape, dtype)
    a = R.conv2d_forward(x, wt, b, stride, padding, activation, z_out=z)
    g = rng.standard_normal(a.shape).astype(dtype)
    dx, dw, db = K.conv2d_backward(g, x, wt, a, z, stride, padding, activation, need_dx=need_dx)
    rdx, rdw, rdb = R.conv2d_backward(g, x, wt, a, z, stride, padding, activation,
                                      need_dx=need_dx)
    npix = batch * a.shape[2] * a.shape[3]
    assert_close(dw, rdw, dtype, npix, f"conv2d_backward dw ({activation})", scale=64)
    assert_close(db, rdb, dtype, npix, f"conv2d_backward db ({activation})", scale=64)
    if need_dx:
        assert_close(dx, rdx, dtype, oc * k * k, f"conv2d_backward dx ({activation})", scale=64)
    else:
        assert dx is None


def test_conv2d_backward_many_images_two_threads_is_repeatable(threads):
    rng = rng_for("rep")
    x, wt, b = conv_data(rng, np.float32, 9, 3, 13, 13, 8, 3)
    a = K.conv2d_forward(x, wt, b, 1, 1, "tanh")
    g = rng.standard_normal(a.shape).astype(np.float32)
    first = K.conv2d_backward(g, x, wt, a, None, 1, 1, "tanh")
    for _ in range(3):
        again = K.conv2d_backward(g, x, wt, a, None, 1, 1, "tanh")
        for u, v in zip(first, again):
            assert np.array_equal(u, v)
    want = R.conv2d_backward(g, x, wt, a, None, 1, 1, "tanh")
    for u, v, what in zip(first, want, ("dx", "dw", "db")):
        assert_close(u, v, np.float32, 9 * 169, what, scale=64)


@pytest.mark.parametrize("activation", ACTS)
def test_conv2d_backward_grouped_small_outputs_match_reference(activation, dtype, threads):
    """Outputs under 128 pixels go through the backward's GEMMs a group of images at a
    time (4x4 outputs: 8 images a group); 37 images leave a short last group, and on 2
    threads each thread's share its own."""
    rng = rng_for("grouped", activation)
    x, wt, b = conv_data(rng, dtype, 37, 5, 8, 8, 6, 3)
    z = np.empty(R.conv2d_forward(x, wt, b, 2, 1).shape, dtype)
    a = R.conv2d_forward(x, wt, b, 2, 1, activation, z_out=z)
    assert a.shape[2:] == (4, 4)
    g = rng.standard_normal(a.shape).astype(dtype)
    got = K.conv2d_backward(g, x, wt, a, z, 2, 1, activation)
    want = R.conv2d_backward(g, x, wt, a, z, 2, 1, activation)
    for u, v, what, n in zip(got, want, ("dx", "dw", "db"), (6 * 9, 37 * 16, 37 * 16)):
        assert_close(u, v, dtype, n, f"grouped conv2d_backward {what} ({activation})", scale=64)


def test_conv2d_forward_same_result_on_any_thread_count():
    rng = rng_for("threads")
    x, wt, b = conv_data(rng, np.float32, 5, 3, 13, 8, 6, 3)
    old = fastnn.get_num_threads()
    try:
        outs = []
        for nt in (1, 2, 3):
            fastnn.set_num_threads(nt)
            outs.append(K.conv2d_forward(x, wt, b, 1, 1, "relu"))
    finally:
        fastnn.set_num_threads(old)
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


def test_conv2d_outputs_written_in_place(dtype):
    rng = rng_for("inplace")
    x, wt, b = conv_data(rng, dtype, 2, 3, 7, 7, 4, 3)
    out = np.full((2, 4, 7, 7), np.nan, dtype)
    res = K.conv2d_forward(x, wt, b, 1, "same", "relu", out=out)
    assert res is out
    assert_close(out, R.conv2d_forward(x, wt, b, 1, 1, "relu"), dtype, 27, "out=")
    g = rng.standard_normal(out.shape).astype(dtype)
    bufs = (np.full(x.shape, np.nan, dtype), np.full(wt.shape, np.nan, dtype),
            np.full(4, np.nan, dtype))
    dx, dw, db = K.conv2d_backward(g, x, wt, out, None, 1, 1, "relu", dx_out=bufs[0],
                                   dw_out=bufs[1], db_out=bufs[2])
    assert dx is bufs[0] and dw is bufs[1] and db is bufs[2]
    for u, v in zip((dx, dw, db), R.conv2d_backward(g, x, wt, out, None, 1, 1, "relu")):
        assert_close(u, v, dtype, 98, "conv2d_backward out buffers", scale=64)


def test_raw_conv_workspace_too_small_uses_fewer_threads_or_fails():
    rng = rng_for("ws")
    x, wt, b = conv_data(rng, np.float64, 4, 3, 8, 8, 5, 3)
    want = R.conv2d_forward(x, wt, b, 1, 1)
    one = _k.conv2d_workspace_size(4, 3, 8, 8, 5, 3, 3, 1, 1, 1, 1, 8, 1)
    four = _k.conv2d_workspace_size(4, 3, 8, 8, 5, 3, 3, 1, 1, 1, 1, 8, 4)
    assert four > one
    out = np.empty_like(want)
    _k.conv2d_forward["double"](out, None, np.empty(one, np.uint8), x, wt, b, 1, 1, 1, 1, 0, 4)
    assert_close(out, want, np.float64, 27, "1-slot workspace on 4 threads")
    with pytest.raises(ValueError, match="conv2d_forward"):
        _k.conv2d_forward["double"](out, None, np.empty(one // 2, np.uint8), x, wt, b, 1, 1, 1, 1,
                                    0, 1)


# ---- pooling vs reference -------------------------------------------------------------

POOL_CASES = [
    # (h, w, kernel, stride, padding)
    (1, 1, 1, None, 0), (5, 7, 2, None, 0), (7, 5, 3, 2, 1), (8, 8, 2, 2, 0), (13, 8, 3, 1, 1),
    (8, 13, (3, 2), (2, 1), (1, 0)), (13, 13, 5, 2, 2), (5, 5, 5, 1, 0), (7, 7, 3, 3, 0),
]


@pytest.mark.parametrize("h,w,kernel,stride,padding", POOL_CASES)
@pytest.mark.parametrize("batch,c", [(1, 1), (3, 4)])
def test_maxpool2d_matches_reference(h, w, kernel, stride, padding, batch, c, dtype, threads):
    rng = rng_for("max", h, w, kernel, stride, padding, batch)
    x = rng.standard_normal((batch, c, h, w)).astype(dtype)
    out, idx = K.maxpool2d_forward(x, kernel, stride, padding)
    rout, ridx = R.maxpool2d_forward(x, kernel, stride, padding)
    assert idx.dtype == np.int64
    assert np.array_equal(out, rout) and np.array_equal(idx, ridx)
    g = rng.standard_normal(out.shape).astype(dtype)
    assert_close(K.maxpool2d_backward(g, idx, x.shape), R.maxpool2d_backward(g, ridx, x.shape),
                 dtype, 9, "maxpool2d_backward")


def test_maxpool2d_ties_pick_the_first_maximum(dtype):
    x = np.zeros((1, 1, 4, 4), dtype)
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = 5
    out, idx = K.maxpool2d_forward(x, 2)
    assert out[0, 0, 0, 0] == 5 and idx[0, 0, 0, 0] == 1
    assert idx[0, 0, 1, 1] == 2 * 4 + 2  # all zeros: the window's first element
    assert np.array_equal(idx, R.maxpool2d_forward(x, 2)[1])


@pytest.mark.parametrize("h,w,kernel,stride,padding", POOL_CASES)
@pytest.mark.parametrize("batch,c", [(1, 1), (3, 4)])
def test_avgpool2d_matches_reference(h, w, kernel, stride, padding, batch, c, dtype, threads):
    rng = rng_for("avg", h, w, kernel, stride, padding, batch)
    x = rng.standard_normal((batch, c, h, w)).astype(dtype)
    got = K.avgpool2d_forward(x, kernel, stride, padding)
    assert_close(got, R.avgpool2d_forward(x, kernel, stride, padding), dtype, 25, "avgpool2d")
    g = rng.standard_normal(got.shape).astype(dtype)
    assert_close(K.avgpool2d_backward(g, x.shape, kernel, stride, padding),
                 R.avgpool2d_backward(g, x.shape, kernel, stride, padding), dtype, 25,
                 "avgpool2d_backward")


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 4, 5, 7), (2, 3, 13, 8), (64, 32, 16, 16)])
def test_global_avgpool_matches_reference(shape, dtype, threads):
    rng = rng_for("gap", shape)
    x = rng.standard_normal(shape).astype(dtype)
    got = K.global_avgpool_forward(x)
    assert got.shape == shape[:2]
    assert_close(got, R.global_avgpool_forward(x), dtype, shape[2] * shape[3], "global_avgpool")
    g = rng.standard_normal(shape[:2]).astype(dtype)
    assert_close(K.global_avgpool_backward(g, shape), R.global_avgpool_backward(g, shape), dtype,
                 1, "global_avgpool_backward")


def test_pooling_large_batch_two_threads(threads):
    rng = rng_for("bigpool")
    x = rng.standard_normal((32, 16, 32, 32)).astype(np.float32)
    out, idx = K.maxpool2d_forward(x, 2)
    rout, ridx = R.maxpool2d_forward(x, 2)
    assert np.array_equal(out, rout) and np.array_equal(idx, ridx)
    assert_close(K.avgpool2d_forward(x, 3, 2, 1), R.avgpool2d_forward(x, 3, 2, 1), np.float32, 9,
                 "avgpool2d big")


# ---- finite differences (float64) ---------------------------------------------------------

def _fd_check(f, arrays, grads, n_probe=12, eps=1e-6, rtol=1e-5, seed=0):
    """Compare analytic grads of the scalar f() with central differences at random entries."""
    rng = np.random.default_rng(seed)
    for arr, grad in zip(arrays, grads):
        flat, gflat = arr.reshape(-1), grad.reshape(-1)
        for j in rng.choice(flat.size, size=min(n_probe, flat.size), replace=False):
            old = flat[j]
            flat[j] = old + eps
            fp = f()
            flat[j] = old - eps
            fm = f()
            flat[j] = old
            num = (fp - fm) / (2 * eps)
            assert abs(num - gflat[j]) <= rtol * (abs(num) + 1), (j, num, gflat[j])


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "gelu", "softplus", "silu",
                                        "softmax", "elu"])
@pytest.mark.parametrize("geom", [(7, 5, 3, 1, 1), (8, 8, 3, 2, 0), (5, 5, 1, 2, 0),
                                  (6, 7, 5, 1, "same")])
def test_conv2d_gradients_match_finite_differences(activation, geom):
    h, w, k, stride, padding = geom
    rng = rng_for("fd", activation, geom)
    x, wt, b = conv_data(rng, np.float64, 2, 3, h, w, 4, k)
    shape = R.conv2d_forward(x, wt, b, stride, padding).shape
    proj = rng.standard_normal(shape)

    def loss():
        return float((K.conv2d_forward(x, wt, b, stride, padding, activation) * proj).sum())

    z = np.empty(shape)
    a = K.conv2d_forward(x, wt, b, stride, padding, activation, z_out=z)
    dx, dw, db = K.conv2d_backward(proj, x, wt, a, z, stride, padding, activation)
    _fd_check(loss, [x, wt, b], [dx, dw, db])


@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), ((3, 2), 1, (1, 0))])
def test_pooling_gradients_match_finite_differences(kernel, stride, padding):
    rng = rng_for("fdpool", kernel, stride, padding)
    # distinct values spaced well beyond eps, so the argmax does not move
    x = rng.permutation(2 * 3 * 7 * 6).astype(np.float64).reshape(2, 3, 7, 6) * 0.1
    out, idx = K.maxpool2d_forward(x, kernel, stride, padding)
    proj = rng.standard_normal(out.shape)
    _fd_check(lambda: float((K.maxpool2d_forward(x, kernel, stride, padding)[0] * proj).sum()),
              [x], [K.maxpool2d_backward(proj, idx, x.shape)])
    pa = rng.standard_normal(K.avgpool2d_forward(x, kernel, stride, padding).shape)
    _fd_check(lambda: float((K.avgpool2d_forward(x, kernel, stride, padding) * pa).sum()),
              [x], [K.avgpool2d_backward(pa, x.shape, kernel, stride, padding)])
    pg = rng.standard_normal((2, 3))
    _fd_check(lambda: float((K.global_avgpool_forward(x) * pg).sum()), [x],
              [K.global_avgpool_backward(pg, x.shape)])


# ---- PyTorch (when installed) -----------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("h,w,k,stride,padding,batch,c,oc,activation", CONV_CASES[::3])
def test_conv2d_matches_torch(torch, h, w, k, stride, padding, batch, c, oc, activation):
    F = torch.nn.functional
    rng = rng_for("torch", h, w, k, stride, padding)
    x, wt, b = conv_data(rng, np.float64, batch, c, h, w, oc, k)
    xt = torch.tensor(x, requires_grad=True)
    wtt = torch.tensor(wt, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = F.conv2d(xt, wtt, bt, stride=stride, padding=padding)
    y = K.conv2d_forward(x, wt, b, stride, padding)
    assert_close(y, yt.detach().numpy(), np.float64, c * k * k, "conv2d vs torch")
    g = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(g))
    dx, dw, db = K.conv2d_backward(g, x, wt, y, None, stride, padding)
    assert_close(dx, xt.grad.numpy(), np.float64, oc * k * k, "dx vs torch")
    assert_close(dw, wtt.grad.numpy(), np.float64, y.size, "dw vs torch")
    assert_close(db, bt.grad.numpy(), np.float64, y.size, "db vs torch")


@pytest.mark.parametrize("h,w,kernel,stride,padding", POOL_CASES)
def test_pooling_matches_torch(torch, h, w, kernel, stride, padding):
    F = torch.nn.functional
    rng = rng_for("torchpool", h, w, kernel, stride, padding)
    x = rng.standard_normal((3, 4, h, w))
    xt = torch.tensor(x)
    tout, tidx = F.max_pool2d(xt, kernel, stride, padding, return_indices=True)
    out, idx = K.maxpool2d_forward(x, kernel, stride, padding)
    assert np.array_equal(out, tout.numpy()) and np.array_equal(idx, tidx.numpy())
    tavg = F.avg_pool2d(xt, kernel, stride, padding)
    assert_close(K.avgpool2d_forward(x, kernel, stride, padding), tavg.numpy(), np.float64, 25,
                 "avg_pool2d vs torch")
    xg = torch.tensor(x, requires_grad=True)
    ya = F.avg_pool2d(xg, kernel, stride, padding)
    g = rng.standard_normal(tuple(ya.shape))
    ya.backward(torch.tensor(g))
    assert_close(K.avgpool2d_backward(g, x.shape, kernel, stride, padding), xg.grad.numpy(),
                 np.float64, 25, "avg_pool2d backward vs torch")
    xg2 = torch.tensor(x, requires_grad=True)
    ym = F.max_pool2d(xg2, kernel, stride, padding)
    ym.backward(torch.tensor(g))
    assert_close(K.maxpool2d_backward(g, idx, x.shape), xg2.grad.numpy(), np.float64, 9,
                 "max_pool2d backward vs torch")
    gap = F.adaptive_avg_pool2d(xt, 1).numpy()[:, :, 0, 0]
    assert_close(K.global_avgpool_forward(x), gap, np.float64, h * w, "global avg vs torch")


# ---- bad input ----------------------------------------------------------------------------

def test_conv2d_bad_inputs_raise_naming_the_argument():
    x = np.zeros((2, 3, 5, 5))
    w = np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"x must be 4-D.*\(3, 5, 5\)"):
        K.conv2d_forward(x[0], w)
    with pytest.raises(ValueError, match=r"w must be 4-D"):
        K.conv2d_forward(x, w[0])
    with pytest.raises(ValueError, match=r"x has 3 channels but w expects 2"):
        K.conv2d_forward(x, np.zeros((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"w gives a kernel \(7, 7\) larger than the padded"):
        K.conv2d_forward(x, np.zeros((4, 3, 7, 7)))
    with pytest.raises(ValueError, match=r"stride must be >= 1"):
        K.conv2d_forward(x, w, stride=0)
    with pytest.raises(ValueError, match=r"stride must be >= 1"):
        K.conv2d_forward(x, w, stride=(1, -2))
    with pytest.raises(ValueError, match=r"padding must be >= 0"):
        K.conv2d_forward(x, w, padding=-1)
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1"):
        K.conv2d_forward(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"padding must be an int, a pair"):
        K.conv2d_forward(x, w, padding="full")
    with pytest.raises(ValueError, match=r"b must have shape \(4,\)"):
        K.conv2d_forward(x, w, np.zeros(3))
    with pytest.raises(TypeError, match=r"stride must be an int"):
        K.conv2d_forward(x, w, stride=1.5)
    with pytest.raises(ValueError, match=r"unknown activation"):
        K.conv2d_forward(x, w, activation="nope")
    with pytest.raises(ValueError, match=r"out must have shape \(2, 4, 3, 3\)"):
        K.conv2d_forward(x, w, out=np.zeros((2, 4, 5, 5)))


def test_conv2d_backward_bad_inputs_raise_naming_the_argument():
    x = np.zeros((2, 3, 5, 5))
    w = np.zeros((4, 3, 3, 3))
    g = np.zeros((2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"grad_out must have shape \(2, 4, 3, 3\)"):
        K.conv2d_backward(np.zeros((2, 4, 5, 5)), x, w, None)
    with pytest.raises(ValueError, match=r"needs pre_act"):
        K.conv2d_backward(g, x, w, g, None, activation="gelu")
    with pytest.raises(ValueError, match=r"needs out_act"):
        K.conv2d_backward(g, x, w, None, activation="relu")
    with pytest.raises(ValueError, match=r"x has 3 channels but w expects 4"):
        K.conv2d_backward(g, x, np.zeros((4, 4, 3, 3)), None)


def test_pooling_bad_inputs_raise_naming_the_argument():
    x = np.zeros((2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"x must be 4-D"):
        K.maxpool2d_forward(x[0], 2)
    with pytest.raises(ValueError, match=r"kernel_size must be >= 1"):
        K.maxpool2d_forward(x, 0)
    with pytest.raises(ValueError, match=r"stride must be >= 1"):
        K.avgpool2d_forward(x, 2, stride=-1)
    with pytest.raises(ValueError, match=r"padding must be at most half the kernel size"):
        K.maxpool2d_forward(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"kernel_size gives a kernel \(6, 6\) larger"):
        K.avgpool2d_forward(x, 6)
    out, idx = K.maxpool2d_forward(x, 2)
    bad = idx.copy()
    bad[0, 0, 0, 0] = 25
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 25\)"):
        K.maxpool2d_backward(out, bad, x.shape)
    with pytest.raises(ValueError, match=r"input_shape must be"):
        K.maxpool2d_backward(out, idx, (2, 3, 5))
    with pytest.raises(ValueError, match=r"grad_out must have shape \(2, 3\)"):
        K.global_avgpool_backward(np.zeros((3, 2)), x.shape)
    with pytest.raises(ValueError, match=r"grad_out must have shape \(2, 3, 2, 2\)"):
        K.avgpool2d_backward(np.zeros((2, 3, 3, 3)), x.shape, 2)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1, 1), (3, 3, 13, 8, 7, 3), (2, 300, 4, 5, 17, 1),
                                   (5, 2, 9, 9, 33, 5)])
def test_raw_conv_stays_inside_its_workspace(shape, dtype, threads):
    """The kernels write nothing past conv2d_workspace_size bytes (a canary after it)."""
    batch, c, h, w, oc, k = shape
    rng = rng_for("canary", shape)
    x, wt, b = conv_data(rng, dtype, batch, c, h, w, oc, k)
    p = k // 2
    nbytes = _k.conv2d_workspace_size(batch, c, h, w, oc, k, k, 1, 1, p, p, dtype.itemsize,
                                      threads)
    buf = np.full(nbytes + 256, 0xAB, np.uint8)
    spec = "float" if dtype == np.float32 else "double"
    out = np.empty((batch, oc, h, w), dtype)
    _k.conv2d_forward[spec](out, None, buf[:nbytes], x, wt, b, 1, 1, p, p, 3, threads)
    assert_close(out, R.conv2d_forward(x, wt, b, 1, p, "relu"), dtype, c * k * k, "fwd",
                 scale=64)
    g = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, db = np.empty_like(x), np.empty_like(wt), np.empty_like(b)
    _k.conv2d_backward[spec](dx, dw, db, buf[:nbytes], g, out, None, x, wt, 1, 1, p, p, 3, 0.0,
                             threads)
    assert np.all(buf[nbytes:] == 0xAB)
    for u, v in zip((dx, dw, db), R.conv2d_backward(g, x, wt, out, None, 1, p, "relu")):
        assert_close(u, v, dtype, batch * h * w * oc, "bwd", scale=64)


def test_maxpool2d_2x2_fast_path_nan_and_ties_match_the_general_rule(dtype):
    """The 2 x 2 / stride 2 path keeps the general loop's rule: a later value wins
    when it is larger or NaN (so the last NaN of a window), ties keep the first."""
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, size=(2, 3, 6, 9)).astype(dtype)  # many ties
    x[0, 0, 0, 1] = np.nan
    x[0, 1, 2, 2] = x[0, 1, 3, 3] = np.nan
    x[1, 2, 4, 0] = -np.inf
    out, idx = K.maxpool2d_forward(x, 2)
    # the general rule, window by window
    for n, c, oy, ox in np.ndindex(out.shape):
        m, best = -np.inf, (2 * oy) * 9 + 2 * ox
        for yy in (2 * oy, 2 * oy + 1):
            for xx in (2 * ox, 2 * ox + 1):
                v = x[n, c, yy, xx]
                if v > m or v != v:
                    m, best = v, yy * 9 + xx
        assert idx[n, c, oy, ox] == best
        assert (np.isnan(m) and np.isnan(out[n, c, oy, ox])) or out[n, c, oy, ox] == m
    ok = ~np.isnan(x).any(axis=(2, 3))  # planes without NaN: as the reference
    rout, ridx = R.maxpool2d_forward(x, 2)
    assert np.array_equal(idx[ok], ridx[ok]) and np.array_equal(out[ok], rout[ok])
