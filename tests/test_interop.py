"""PyTorch and ONNX interop (skipped when the optional packages are absent)."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn as fnn
from fastnn import interop

ACTS = [a for a in fnn.ACTIVATIONS if a not in ("identity",)]


def model_with(act, dtype="float32"):
    return fnn.Sequential([fnn.Dense(7, 11, act), fnn.Dropout(0.3), fnn.Dense(11, 5, "tanh"),
                           fnn.Activation(act), fnn.Dense(5, 3)], dtype=dtype, seed=1)


@pytest.mark.parametrize("act", ACTS)
def test_to_torch_and_back_agree(act):
    torch = pytest.importorskip("torch")
    model = model_with(act, "float64")
    x = np.random.default_rng(0).standard_normal((9, 7))
    tmod = interop.to_torch(model)
    with torch.no_grad():
        tout = tmod(torch.from_numpy(x)).numpy()
    assert np.allclose(model.predict(x), tout, atol=1e-10)
    back = interop.from_torch(tmod, dtype="float64")
    assert np.allclose(back.predict(x), tout, atol=1e-10)


def test_from_torch_fuses_activations_and_rejects_unsupported():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    tmod = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.GELU()),
                         nn.Dropout(0.1), nn.Linear(8, 2)).eval()
    model = interop.from_torch(tmod)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense", "Dropout",
                                                                "Dense"]
    assert model[0].activation == "relu" and model[1].activation == "gelu"
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        assert np.allclose(model.predict(x), tmod(torch.from_numpy(x)).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="unsupported module LSTM"):
        interop.from_torch(nn.Sequential(nn.LSTM(3, 3)))
    with pytest.raises(ValueError, match="negative_slope=0.2"):
        interop.from_torch(nn.Sequential(nn.Linear(3, 3), nn.LeakyReLU(0.2)))


def test_torch_trained_weights_finetune_in_fastnn():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    tmod = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    model = interop.from_torch(tmod)
    model.compile(fnn.optim.SGD(lr=0.1), "cross_entropy")
    x = np.random.default_rng(2).standard_normal((32, 6)).astype(np.float32)
    y = np.random.default_rng(3).integers(0, 3, 32)
    loss = model.train_step(x, y)
    tl = nn.functional.cross_entropy(tmod(torch.from_numpy(x)), torch.from_numpy(y))
    assert abs(loss - tl.item()) < 1e-5


@pytest.mark.parametrize("act", ACTS)
def test_export_onnx_runs_in_onnxruntime(tmp_path, act):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = model_with(act)
    path = tmp_path / "m.onnx"
    interop.export_onnx(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((6, 7)).astype(np.float32)
    (out,) = sess.run(None, {"input": x})
    assert np.allclose(out, model.predict(x), atol=1e-5)
