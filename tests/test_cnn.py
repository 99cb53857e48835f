"""Convolutional models through the public API: shapes, gradients, training, interop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import numeric_grad, seeded_rng

import fastnn as fnn


def small_cnn(dtype="float64", seed=0, act="tanh", pool="max"):
    pool_layer = fnn.MaxPool2D(2) if pool == "max" else fnn.AvgPool2D(2, stride=1)
    return fnn.Sequential([
        fnn.Conv2D(2, 3, 3, stride=1, padding=1, activation=act, l2=0.01),
        pool_layer,
        fnn.Dropout(0.0),
        fnn.Conv2D(3, 4, (2, 3), stride=(2, 1), padding=0, activation=act),
        fnn.Flatten(),
        fnn.Dense(4 * (1 if pool == "max" else 2) * (1 if pool == "max" else 3), 3),
    ], dtype=dtype, seed=seed, input_shape=(2, 6, 6))


@pytest.mark.parametrize("act", ["tanh", "relu", "gelu", "silu", "elu"])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_cnn_gradients_match_finite_differences(act, pool):
    rng = seeded_rng("cnn", act, pool)
    model = small_cnn(act=act, pool=pool)
    model.compile(fnn.optim.SGD(lr=0.1), "cross_entropy")
    x = rng.standard_normal((3, 2, 6, 6))
    y = rng.integers(0, 3, 3)
    model.compute_gradients(x, y)
    conv = [layer for layer in model.layers if isinstance(layer, fnn.Conv2D)]
    analytic = [(c.grad_weight.copy(), c.grad_bias.copy()) for c in conv]
    h = 1e-6
    for c, (gw, gb) in zip(conv, analytic):
        for arr, g in ((c.weight, gw), (c.bias, gb)):
            num = numeric_grad(model, x, y, arr, h)
            err = np.abs(num - g).max()
            assert err <= 1e-6 * (1 + np.abs(num).max()), f"{c.name} {act}/{pool}: {err:.2e}"
    # and the input gradient
    out = model.forward(x)
    g = rng.standard_normal(out.shape)
    gx = model.backward(g)
    idx = (1, 0, 2, 3)
    xp, xm = x.copy(), x.copy()
    xp[idx] += h
    xm[idx] -= h
    num = ((model.forward(xp) * g).sum() - (model.forward(xm) * g).sum()) / (2 * h)
    assert abs(num - gx[idx]) < 1e-6


def test_shapes_checked_at_build_and_summary():
    with pytest.raises(ValueError, match="expects 36 input features, got 64"):
        fnn.Sequential([fnn.Conv2D(1, 4, 3, padding=1), fnn.MaxPool2D(2), fnn.Flatten(),
                        fnn.Dense(36, 2)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="expects 3 input channels, got 1"):
        fnn.Sequential([fnn.Conv2D(3, 4, 3)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="kernel .* larger than the padded input"):
        fnn.Sequential([fnn.Conv2D(1, 4, 5)], input_shape=(1, 3, 3))
    with pytest.raises(ValueError, match="takes 2-D input"):
        fnn.Sequential([fnn.Conv2D(1, 4, 3), fnn.Dense(4, 2)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        fnn.Conv2D(1, 4, 3, stride=2, padding="same")
    m = fnn.Sequential([fnn.Conv2D(1, 4, 3, padding="same"), fnn.GlobalAvgPool2D(),
                        fnn.Dense(4, 2)], input_shape=(1, 7, 9))
    text = m.summary(print_fn=None)
    assert "(batch, 4, 7, 9)" in text and "(batch, 4)" in text
    # without input_shape, the first batch fixes it and is checked
    m2 = fnn.Sequential([fnn.Conv2D(1, 4, 3), fnn.Flatten(), fnn.Dense(4 * 5 * 5, 2)])
    assert m2.predict(np.zeros((2, 1, 7, 7))).shape == (2, 2)
    with pytest.raises(ValueError, match=r"per-sample shape \(1, 7, 7\), got \(1, 8, 8\)"):
        m2.predict(np.zeros((2, 1, 8, 8)))


def test_dropout_after_conv_and_save_load(tmp_path):
    rng = seeded_rng("cnn-drop")
    model = fnn.Sequential([fnn.Conv2D(1, 4, 3, padding=1, activation="relu"),
                            fnn.Dropout(0.5), fnn.GlobalAvgPool2D(), fnn.Dense(4, 2)],
                           seed=1, input_shape=(1, 6, 6))
    model.compile(fnn.optim.Adam(lr=1e-2), "cross_entropy")
    x = rng.standard_normal((8, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 2, 8)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    a = model.forward(x, training=True)
    b = model.forward(x, training=True)
    assert not np.array_equal(a, b)  # dropout active in training
    model.save(tmp_path / "cnn.fnn")
    loaded = fnn.load(tmp_path / "cnn.fnn")
    assert np.array_equal(loaded.predict(x), model.predict(x))


def test_frozen_conv_body():
    rng = seeded_rng("cnn-frozen")
    model = fnn.Sequential([fnn.Conv2D(1, 4, 3, activation="relu"), fnn.Flatten(),
                            fnn.Dense(4 * 4 * 4, 3)], seed=0, input_shape=(1, 6, 6))
    model.compile(fnn.optim.SGD(lr=0.1), "cross_entropy")
    model.freeze(upto=1)
    w0 = model[0].weight.copy()
    model.fit(rng.standard_normal((16, 1, 6, 6)), rng.integers(0, 3, 16), epochs=2, verbose=0)
    assert np.array_equal(model[0].weight, w0)


def test_lenet_example_reaches_98_percent():
    pytest.importorskip("sklearn")
    import runpy

    path = Path(__file__).resolve().parent.parent / "examples" / "lenet_digits.py"
    if not path.exists():
        pytest.skip("examples/ not beside the tests")
    assert runpy.run_path(str(path))["main"](epochs=10) >= 0.98  # 30 epochs: 99.7%


def test_conv_model_to_torch_from_torch_and_onnx(tmp_path):
    torch = pytest.importorskip("torch")
    from fastnn import interop

    model = fnn.Sequential([
        fnn.Conv2D(3, 5, 3, stride=2, padding=1, activation="relu"), fnn.MaxPool2D(2),
        fnn.Conv2D(5, 4, 3, padding="same", activation="silu"), fnn.AvgPool2D(2, stride=1),
        fnn.GlobalAvgPool2D(), fnn.Dense(4, 3)], dtype="float64", seed=2,
        input_shape=(3, 12, 12))
    x = seeded_rng("onnx").standard_normal((2, 3, 12, 12))
    tmod = interop.to_torch(model)
    with torch.no_grad():
        t = tmod(torch.from_numpy(x)).numpy()
    assert np.allclose(model.predict(x), t, atol=1e-10)
    back = interop.from_torch(tmod, dtype="float64", input_shape=(3, 12, 12))
    assert np.allclose(back.predict(x), t, atol=1e-10)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    m32 = interop.from_torch(tmod.float(), input_shape=(3, 12, 12))
    interop.export_onnx(m32, tmp_path / "cnn.onnx")
    sess = ort.InferenceSession(str(tmp_path / "cnn.onnx"), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": x.astype(np.float32)})
    assert np.allclose(out, m32.predict(x.astype(np.float32)), atol=1e-5)
