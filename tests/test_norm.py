"""Batch and layer normalization: kernels vs their NumPy twins, layers vs PyTorch
(float64, 1e-10: forward, input and parameter gradients, train and eval mode, running
statistics after 20 steps), save/load, freezing, interop, ONNX, fit, fuse_batchnorm.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import fastnn as fnn
from fastnn import kernels as K
from fastnn import reference as R

TOL = {np.float32: 2e-5, np.float64: 1e-12}

BN_SHAPES = [(7, 5), (2, 1), (64, 130), (3, 70, 1, 1), (6, 3, 4, 5), (2, 4, 9), (1, 3, 7, 7),
             (33, 2, 5, 3)]


def rng_for(*key):
    return np.random.default_rng(abs(hash(key)) % 2**32)


def _close(a, b, dt, scale=1.0):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    err = np.abs(a - b).max(initial=0.0)
    assert err <= TOL[dt] * scale * max(1.0, np.abs(b).max(initial=0.0)), err


# ---- kernels vs twins ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_kernels_match_twins(dtype, shape, training, affine, threads):
    rng = rng_for("bn", shape, training, affine)
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)
    w = rng.standard_normal(c).astype(dtype) if affine else None
    b = rng.standard_normal(c).astype(dtype) if affine else None
    rm = rng.standard_normal(c).astype(dtype)
    rv = (rng.random(c) + 0.5).astype(dtype)
    got = K.batchnorm_forward(x, w, b, rm, rv, training=training, eps=1e-3)
    want = R.batchnorm_forward(x, w, b, rm, rv, training=training, eps=1e-3)
    _close(got[0], want[0], dtype, 10)
    if training:
        _close(got[1], want[1], dtype)
        _close(got[2], want[2], dtype, 10)
    mean, var = (got[1], got[2]) if training else (rm, rv)
    g = rng.standard_normal(shape).astype(dtype)
    dgot = K.batchnorm_backward(g, x, mean, var, w, training=training, eps=1e-3)
    dwant = R.batchnorm_backward(g, x, mean, var, w, training=training, eps=1e-3)
    scale = np.sqrt(x.size / c)  # reductions over n*s values
    for a, e in zip(dgot, dwant):
        _close(a, e, dtype, 10 * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_update_stats_matches_twin(dtype):
    rng = rng_for("upd")
    rm, rv = rng.standard_normal(9).astype(dtype), rng.random(9).astype(dtype)
    m, v = rng.standard_normal(9).astype(dtype), rng.random(9).astype(dtype)
    a = K.batchnorm_update_stats(rm.copy(), rv.copy(), m, v, 17, 0.3)
    e = R.batchnorm_update_stats(rm.copy(), rv.copy(), m, v, 17, 0.3)
    for x, y in zip(a, e):
        _close(x, y, dtype)
    with pytest.raises(ValueError, match="count"):
        K.batchnorm_update_stats(rm, rv, m, v, 1, 0.1)
    with pytest.raises(ValueError, match="momentum"):
        K.batchnorm_update_stats(rm, rv, m, v, 4, 1.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,norm", [((5, 8), (8,)), ((3, 4, 10), (10,)), ((3, 4, 10), (4, 10)),
                                        ((1, 1), (1,)), ((70, 130), (130,)), ((2, 3, 3), 3)])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_layernorm_kernels_match_twins(dtype, shape, norm, affine, threads):
    rng = rng_for("ln", shape, affine)
    nshape = (norm,) if isinstance(norm, int) else norm
    x = (rng.standard_normal(shape) * 2 - 3).astype(dtype)
    w = rng.standard_normal(nshape).astype(dtype) if affine != "none" else None
    b = rng.standard_normal(nshape).astype(dtype) if affine == "both" else None
    got = K.layernorm_forward(x, norm, w, b, eps=1e-4)
    want = R.layernorm_forward(x, norm, w, b, eps=1e-4)
    for a, e in zip(got, want):
        _close(a, e, dtype, 10)
    g = rng.standard_normal(shape).astype(dtype)
    dgot = K.layernorm_backward(g, x, got[1], got[2], w)
    dwant = R.layernorm_backward(g, x, got[1], got[2], w)
    for a, e in zip(dgot, dwant):
        _close(a, e, dtype, 10 * np.sqrt(x.size))


def test_kernels_in_place_and_same_on_any_thread_count():
    rng = rng_for("inplace")
    x = rng.standard_normal((40, 3, 30, 30))
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    with fnn.threads(1):
        ref = K.batchnorm_forward(x, w, b, None, None, training=True)
        g = rng.standard_normal(x.shape)
        dref = K.batchnorm_backward(g, x, ref[1], ref[2], w, training=True)
    with fnn.threads(2):
        two = K.batchnorm_forward(x, w, b, None, None, training=True)
        dtwo = K.batchnorm_backward(g, x, two[1], two[2], w, training=True)
    for a, e in zip(ref + dref, two + dtwo):
        assert np.array_equal(a, e)  # each channel is reduced by one thread, in one order
    y = x.copy()
    K.batchnorm_forward(y, w, b, None, None, training=True, out=y)
    assert np.array_equal(y, ref[0])
    gg = g.copy()
    K.batchnorm_backward(gg, x, ref[1], ref[2], w, training=True, dx_out=gg)
    assert np.array_equal(gg, dref[0])


def test_kernel_arguments_are_checked():
    x = np.zeros((4, 3, 2, 2))
    with pytest.raises(ValueError, match="weight must have shape"):
        K.batchnorm_forward(x, np.ones(4), None, None, None, training=True)
    with pytest.raises(ValueError, match="running_mean is required"):
        K.batchnorm_forward(x, None, None, None, None, training=False)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        K.batchnorm_forward(np.zeros(3), None, None, None, None, training=True)
    with pytest.raises(ValueError, match="grad_out must have shape"):
        K.batchnorm_backward(np.zeros((4, 3)), x, np.zeros(3), np.ones(3), None, training=True)
    with pytest.raises(ValueError, match="trailing dimensions"):
        K.layernorm_forward(np.zeros((2, 5)), (4,))
    with pytest.raises(ValueError, match="normalized_shape"):
        K.layernorm_forward(np.zeros((2, 5)), (0,))
    with pytest.raises(ValueError, match="out must have shape"):
        K.layernorm_forward(np.zeros((2, 5)), 5, out=np.zeros((2, 4)))
    # the compiled module checks every length itself: no out-of-bounds access
    from fastnn import _kernels as _k

    f = _k.batchnorm_forward["double"]
    with pytest.raises(ValueError, match="x must have shape"):
        f(np.zeros(10), np.zeros(3), np.zeros(3), np.zeros(9), None, None, None, None, 4, 3, 1,
          1e-5, True, 1)
    with pytest.raises(ValueError, match="mean must have shape"):
        f(np.zeros(12), np.zeros(2), np.zeros(3), np.zeros(12), None, None, None, None, 4, 3,
          1, 1e-5, True, 1)
    with pytest.raises(ValueError, match="sizes must be"):
        f(np.zeros(12), np.zeros(3), np.zeros(3), np.zeros(12), None, None, None, None, -4, -3,
          1, 1e-5, True, 1)
    g = _k.layernorm_backward["float"]
    with pytest.raises(ValueError, match="rstd must have shape"):
        g(None, None, None, np.zeros(6, np.float32), np.zeros(6, np.float32),
          np.zeros(2, np.float32), np.zeros(1, np.float32), None, 2, 3, 1)


# ---- layers vs torch ------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def _grads_vs_torch(layer, tmod, x, training, rng):
    torch = _torch()
    model = fnn.Sequential([layer], dtype="float64")
    out = model.forward(x, training=training)
    g = rng.standard_normal(out.shape)
    gx = model.backward(g)
    tmod.train(training)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = tmod(tx)
    tout.backward(torch.from_numpy(g))
    np.testing.assert_allclose(out, tout.detach().numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(gx, tx.grad.numpy(), atol=1e-10, rtol=0)
    if layer.weight is not None:
        np.testing.assert_allclose(layer.grad_weight, tmod.weight.grad.numpy(), atol=1e-10,
                                   rtol=0)
    if layer.bias is not None:
        np.testing.assert_allclose(layer.grad_bias, tmod.bias.grad.numpy(), atol=1e-10, rtol=0)
    return model


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kind,shape", [("1d", (16, 6)), ("1d", (5, 4, 7)),
                                        ("2d", (8, 3, 5, 6)), ("2d", (2, 70, 3, 3))])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_equals_torch(kind, shape, training, affine):
    torch = _torch()
    rng = rng_for("bn-torch", kind, shape, training, affine)
    c = shape[1]
    tcls = torch.nn.BatchNorm1d if kind == "1d" else torch.nn.BatchNorm2d
    tmod = tcls(c, eps=1e-5, momentum=0.1, affine=affine, dtype=torch.float64)
    layer = (fnn.BatchNorm1D if kind == "1d" else fnn.BatchNorm2D)(c, affine=affine)
    with torch.no_grad():
        if affine:
            tmod.weight.copy_(torch.from_numpy(rng.standard_normal(c)))
            tmod.bias.copy_(torch.from_numpy(rng.standard_normal(c)))
        tmod.running_mean.copy_(torch.from_numpy(rng.standard_normal(c)))
        tmod.running_var.copy_(torch.from_numpy(rng.random(c) + 0.5))
    fnn.Sequential([layer], dtype="float64")  # build, then take torch's values
    if affine:
        layer.weight = tmod.weight.detach().numpy()
        layer.bias = tmod.bias.detach().numpy()
    layer.set_buffers({"running_mean": tmod.running_mean.numpy(),
                       "running_var": tmod.running_var.numpy()})
    layer2 = copy.deepcopy(layer)
    x = rng.standard_normal(shape) * 2 + 1
    _grads_vs_torch(layer2, tmod, x, training, rng)
    np.testing.assert_allclose(layer2.running_mean, tmod.running_mean.numpy(), atol=1e-12)
    np.testing.assert_allclose(layer2.running_var, tmod.running_var.numpy(), atol=1e-12)
    assert layer2.num_batches_tracked == int(tmod.num_batches_tracked)


@pytest.mark.parametrize("norm,shape", [(6, (9, 6)), ((4, 5), (3, 4, 5)), (5, (2, 3, 5))])
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, False)])
def test_layernorm_equals_torch(norm, shape, affine, bias):
    torch = _torch()
    rng = rng_for("ln-torch", shape, affine, bias)
    tmod = torch.nn.LayerNorm(norm, eps=1e-5, elementwise_affine=affine, bias=bias,
                              dtype=torch.float64)
    layer = fnn.LayerNorm(norm, elementwise_affine=affine, bias=bias)
    fnn.Sequential([layer], dtype="float64")
    if affine:
        with torch.no_grad():
            tmod.weight.copy_(torch.from_numpy(rng.standard_normal(tmod.weight.shape)))
            if bias:
                tmod.bias.copy_(torch.from_numpy(rng.standard_normal(tmod.bias.shape)))
        layer.weight = tmod.weight.detach().numpy()
        if bias:
            layer.bias = tmod.bias.detach().numpy()
    x = rng.standard_normal(shape) * 3 - 1
    _grads_vs_torch(layer, tmod, x, True, rng)


def _cnn(dtype="float64", momentum=0.1, seed=0):
    return fnn.Sequential([
        fnn.Conv2D(2, 4, 3, padding=1), fnn.BatchNorm2D(4, momentum=momentum),
        fnn.Activation("relu"), fnn.Flatten(), fnn.Dense(4 * 6 * 6, 8),
        fnn.BatchNorm1D(8, momentum=momentum), fnn.Activation("tanh"), fnn.LayerNorm(8),
        fnn.Dense(8, 3)], dtype=dtype, seed=seed, input_shape=(2, 6, 6))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_training_20_steps_equals_torch(momentum):
    torch = _torch()
    model = _cnn(momentum=momentum)
    tmod = fnn.interop.to_torch(model).train()
    model.compile(fnn.optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    topt = torch.optim.SGD(tmod.parameters(), lr=0.05, momentum=0.9)
    rng = rng_for("20steps")
    for _ in range(20):
        x = rng.standard_normal((16, 2, 6, 6)) * 1.5 + 0.5
        y = rng.integers(0, 3, 16)
        loss = model.train_step(x, y)
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmod(torch.from_numpy(x)),
                                                  torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert abs(loss - tloss.item()) < 1e-10
    back = fnn.interop.from_torch(tmod, dtype="float64", input_shape=(2, 6, 6))
    for a, b in zip(model.get_weights(), back.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=0)
    for i in (1, 5):
        for k, v in model[i].buffers().items():
            np.testing.assert_allclose(v, back[i].buffers()[k], atol=1e-10, rtol=0)
        assert model[i].num_batches_tracked == 20
    xt = rng.standard_normal((5, 2, 6, 6))
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(xt), tmod.eval()(torch.from_numpy(xt)).numpy(),
                                   atol=1e-10, rtol=0)


def test_batchnorm_needs_more_than_one_value_per_channel_in_training():
    model = fnn.Sequential([fnn.Dense(3, 4), fnn.BatchNorm1D(4)], seed=0)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model.forward(np.ones((1, 3)), training=True)
    assert model.predict(np.ones((1, 3))).shape == (1, 4)  # inference is fine
    with pytest.raises(ValueError, match="expects 4 channels"):
        fnn.Sequential([fnn.Dense(3, 5), fnn.BatchNorm1D(4)])
    with pytest.raises(ValueError, match="4-D"):
        fnn.Sequential([fnn.Dense(3, 4), fnn.BatchNorm2D(4)])
    with pytest.raises(ValueError, match="trailing dimensions"):
        fnn.Sequential([fnn.Dense(3, 4), fnn.LayerNorm(5)])
    with pytest.raises(ValueError, match="momentum"):
        fnn.BatchNorm2D(3, momentum=2.0)


# ---- the model: buffers, save/load, freeze, interop, ONNX, fit ---------------------------

def _trained_cnn(dtype="float64"):
    model = _cnn(dtype)
    model.compile(fnn.optim.Adam(lr=1e-2), "cross_entropy")
    rng = rng_for("trained")
    x = rng.standard_normal((40, 2, 6, 6)).astype(dtype)
    y = rng.integers(0, 3, 40)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model, x, y


def test_buffers_are_not_parameters_and_are_saved(tmp_path):
    model, x, _ = _trained_cnn()
    bn = model[1]
    assert model.count_params() == sum(p.size for la in model.layers for p in la.params)
    assert bn.num_params() == 8 and bn.num_batches_tracked == 10
    assert not np.allclose(bn.running_mean, 0) and not np.allclose(bn.running_var, 1)
    pred = model.predict(x)
    model.save(tmp_path / "m.fnn")
    loaded = fnn.load(tmp_path / "m.fnn")
    assert np.array_equal(loaded.predict(x), pred)
    for i in (1, 5):
        for k, v in model[i].buffers().items():
            assert np.array_equal(loaded[i].buffers()[k], v)
    # save_weights / load_weights carry the buffers too (a fresh model predicts the same)
    model.save_weights(tmp_path / "w.fnnw")
    fresh = _cnn(seed=5)
    assert sorted(fresh.load_weights(tmp_path / "w.fnnw")) == sorted(
        la.name for la in model.layers if la.params or la.buffers())
    assert np.array_equal(fresh.predict(x), pred)
    fresh2 = _cnn(seed=6)
    fresh2.load_weights(tmp_path / "m.fnn")  # from a whole-model file
    assert np.array_equal(fresh2.predict(x), pred)
    # pickle and deepcopy
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert np.array_equal(clone.predict(x), pred)
        assert clone[1].num_batches_tracked == 10


def test_float32_model_saves_and_loads(tmp_path):
    model, x, _ = _trained_cnn("float32")
    model.save(tmp_path / "m.fnn")
    assert np.array_equal(fnn.load(tmp_path / "m.fnn").predict(x), model.predict(x))


def test_frozen_batchnorm_keeps_weights_but_tracks_statistics():
    model, x, y = _trained_cnn()
    bn = model[1]
    model.freeze(upto=4)  # conv, bn, relu, flatten
    w0, rm0 = bn.weight.copy(), bn.running_mean.copy()
    conv_w = model[0].weight.copy()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.array_equal(bn.weight, w0) and np.array_equal(model[0].weight, conv_w)
    assert not np.array_equal(bn.running_mean, rm0)  # as torch with requires_grad=False
    assert "no" in model.summary(print_fn=None).splitlines()[4]


def test_interop_both_ways_keeps_buffers():
    torch = _torch()
    model, x, _ = _trained_cnn()
    tmod = fnn.interop.to_torch(model)
    with torch.no_grad():
        tout = tmod(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x), tout, atol=1e-10)
    assert int(tmod[1].num_batches_tracked) == 10
    back = fnn.interop.from_torch(tmod, dtype="float64", input_shape=(2, 6, 6))
    assert [type(la).__name__ for la in back.layers] == [type(la).__name__
                                                         for la in model.layers]
    np.testing.assert_allclose(back.predict(x), tout, atol=1e-10)
    with pytest.raises(ValueError, match="track_running_stats"):
        fnn.interop.from_torch(torch.nn.Sequential(
            torch.nn.BatchNorm1d(3, track_running_stats=False)))


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model, x, _ = _trained_cnn("float32")
    no_affine = fnn.Sequential([fnn.Dense(5, 6), fnn.BatchNorm1D(6, affine=False),
                                fnn.LayerNorm(6, elementwise_affine=False)], seed=1)
    no_affine.forward(np.random.default_rng(0).standard_normal((8, 5)), training=True)
    for m, xin in ((model, x), (no_affine,
                                np.random.default_rng(1).standard_normal((4, 5)).astype("f4"))):
        path = tmp_path / "m.onnx"
        fnn.interop.export_onnx(m, path)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": xin})[0]
        np.testing.assert_allclose(got, m.predict(xin), atol=1e-5, rtol=0)


def test_fit_with_batchnorm_learns_a_tiny_problem():
    rng = rng_for("fit")
    x = rng.standard_normal((256, 10)).astype(np.float32) * 4 + 3  # badly scaled inputs
    y = (x[:, 0] - 3 + 0.5 * (x[:, 1] - 3) > 0).astype(np.int64)
    model = fnn.Sequential([fnn.BatchNorm1D(10), fnn.Dense(10, 16, "relu"),
                            fnn.BatchNorm1D(16), fnn.LayerNorm(16), fnn.Dense(16, 2)], seed=0)
    model.compile(fnn.optim.Adam(lr=1e-2), "cross_entropy")
    hist = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0] / 3
    assert model.evaluate(x, y)["accuracy"] > 0.95


def test_fit_is_repeatable():
    def run():
        model, x, _ = _trained_cnn("float32")
        return model.predict(x), model[1].running_var.copy()

    a, b = run(), run()
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-5)])
def test_fuse_batchnorm_folds_into_dense_and_conv(dtype, tol):
    rng = rng_for("fuse", dtype)
    model = fnn.Sequential([
        fnn.Conv2D(2, 4, 3, padding=1), fnn.BatchNorm2D(4), fnn.Activation("relu"),
        fnn.Flatten(), fnn.Dense(144, 8, bias=False), fnn.BatchNorm1D(8), fnn.BatchNorm1D(8),
        fnn.Dense(8, 6, "tanh"), fnn.BatchNorm1D(6, affine=False), fnn.Dense(6, 3),
        fnn.BatchNorm1D(3), fnn.Activation("softmax")], dtype=dtype, seed=0,
        input_shape=(2, 6, 6))
    model.compile(fnn.optim.Adam(lr=1e-2), "cross_entropy")
    x = (rng.standard_normal((32, 2, 6, 6)) * 2 + 1).astype(dtype)
    model.fit(x, rng.integers(0, 3, 32), epochs=3, batch_size=8, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    fused = model.fuse_batchnorm()
    kinds = [type(la).__name__ for la in fused.layers]
    # conv+bn+relu -> one Conv2D(relu); dense+bn -> Dense (the second BN stays); a BN after
    # an activation stays; dense+bn before softmax -> Dense, the softmax stays
    assert kinds == ["Conv2D", "Flatten", "Dense", "BatchNorm1D", "Dense", "BatchNorm1D",
                     "Dense", "Activation"]
    assert fused[0].activation == "relu" and fused[2].use_bias
    np.testing.assert_allclose(fused.predict(x), model.predict(x), atol=tol, rtol=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_data_parallel_normalizes_each_shard_and_keeps_rank0_statistics(tmp_path):
    """mpiexec -n 2: weights and running statistics equal a one-process replay of the
    same steps (each shard normalized on its own, statistics from rank 0's shards), and
    are the same on both ranks."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from conftest import child_env
    from test_distributed import _mpiexec, _need_mpi

    _need_mpi()
    worker = Path(__file__).resolve().parent / "mpi_norm_worker.py"
    proc = subprocess.run([_mpiexec(), "-n", "2", sys.executable, str(worker), str(tmp_path)],
                          capture_output=True, text=True, timeout=300,
                          env=child_env(OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"norm-{r}.json").read_text()) for r in (0, 1))
    assert r0["weights"] == r1["weights"] and r0["buffers"] == r1["buffers"]
    assert r0["val_loss"] == r1["val_loss"] and r0["evaluate"] == r1["evaluate"]
    for a, b in zip(r0["weights"], r0["ref_weights"]):
        np.testing.assert_allclose(a, b, atol=1e-12, rtol=0)
    for name, bufs in r0["buffers"].items():
        for k, v in bufs.items():
            np.testing.assert_allclose(v, r0["ref_buffers"][name][k], atol=1e-12, rtol=0)
    assert r0["buffers"]["batchnorm2d_1"]["num_batches_tracked"] == 6
    assert abs(r0["evaluate"]["loss"] - r0["ref_evaluate"]["loss"]) < 1e-12


def test_load_weights_checks_buffer_shapes(tmp_path):
    def net(c):
        return fnn.Sequential([fnn.Dense(3, c, name="d"), fnn.BatchNorm1D(c, name="bn"),
                               fnn.Dense(c, 2, name="out")], seed=0)

    src = net(4)
    src.forward(np.random.default_rng(0).standard_normal((8, 3)), training=True)
    for path, save in ((tmp_path / "w.fnnw", src.save_weights), (tmp_path / "m.fnn", src.save)):
        save(path)
        other = net(5)
        rm = other["bn"].running_mean.copy()
        with pytest.raises(ValueError, match="bn"):
            other.load_weights(path)
        assert np.array_equal(other["bn"].running_mean, rm)  # nothing assigned
        assert other.load_weights(path, skip_mismatch=True) == []
        same = net(4)
        assert same.load_weights(path) == ["d", "bn", "out"]
        assert same["bn"].num_batches_tracked == 1
        assert np.array_equal(same["bn"].running_var, src["bn"].running_var)
