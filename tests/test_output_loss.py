"""The output layer and the loss fit together (issue 14, item 2).

A sigmoid output with binary_cross_entropy or a softmax output with cross_entropy
trains from the pre-activation (as Keras' from_logits, decided from the last
layer); combinations that cannot be right raise or warn and say why; accuracy
follows what the output is.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastnn as fnn

ACTS = sorted(fnn.ACTIVATIONS)
LOSSES = ["cross_entropy", "binary_cross_entropy", "mse"]
DISTORTING = {"relu", "leaky_relu", "elu", "gelu", "softplus", "silu", "tanh"}


def _expected(act: str, loss: str) -> str:
    """'ok', 'fused', 'warn' or 'raise' for an output activation x loss pair."""
    if loss == "mse":
        return "ok"
    partner = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}[loss]
    if act == partner:
        return "fused"
    if act == "identity":
        return "ok"
    if act in ("sigmoid", "softmax"):
        return "raise"
    assert act in DISTORTING
    return "warn"


def _data(loss: str, n: int = 64, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
    elif loss == "binary_cross_entropy":
        y = (rng.random((n, k)) > 0.5).astype(np.float64)
    else:
        y = rng.standard_normal((n, k))
    return x, y


def _model(act: str, k: int = 3, dtype: str = "float64") -> fnn.Sequential:
    return fnn.Sequential([fnn.Dense(5, 7, activation="tanh"),
                           fnn.Dense(7, k, activation=act)], dtype=dtype, seed=3)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTS)
def test_every_activation_loss_pair(act, loss):
    want = _expected(act, loss)
    model = _model(act)
    before = model.get_weights()
    if want == "raise":
        with pytest.raises(ValueError, match=f"{act} output with {loss}"):
            model.compile("adam", loss)
        assert model.loss is None and model.optimizer is None  # unchanged
        return
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        model.compile("adam", loss)
    msgs = [str(w.message) for w in rec if issubclass(w.category, UserWarning)]
    if want == "warn":
        assert len(msgs) == 1 and "reads the outputs as logits" in msgs[0] and act in msgs[0]
    else:
        assert not msgs
    x, y = _data(loss)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, at compile: never again per step
        hist = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    out = model.predict(x)
    if act == "sigmoid":
        assert out.min() >= 0 and out.max() <= 1
    if want == "fused":
        # the loss is the one of the logits: same model with a linear head, same weights
        ref = _model("identity")
        ref.set_weights(model.get_weights())
        ref.compile("adam", loss)
        assert model.compute_gradients(x, y) == pytest.approx(ref.compute_gradients(x, y),
                                                              rel=1e-12)
        for a, b in zip(model.layers, ref.layers):
            np.testing.assert_allclose(a.grad_weight, b.grad_weight, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
def test_fused_gradient_matches_torch(loss):
    """sigmoid + BCE and softmax + CE: loss and gradients equal torch's loss on the
    model's *probabilities* (BCELoss / NLLLoss of log-probabilities)."""
    torch = pytest.importorskip("torch")
    act = "sigmoid" if loss == "binary_cross_entropy" else "softmax"
    model = _model(act)
    model.compile("sgd", loss)
    x, y = _data(loss, n=20)
    ours = model.compute_gradients(x, y)
    w1, b1, w2, b2 = (torch.tensor(a, requires_grad=True) for a in model.get_weights())
    h = torch.tanh(torch.tensor(x) @ w1 + b1)
    p = torch.nn.functional.__dict__[act](h @ w2 + b2, **({"dim": 1} if act == "softmax" else {}))
    if loss == "binary_cross_entropy":
        ref = torch.nn.functional.binary_cross_entropy(p, torch.tensor(y))
    else:
        ref = torch.nn.functional.nll_loss(torch.log(p), torch.tensor(y))
    ref.backward()
    assert ours == pytest.approx(ref.item(), rel=1e-12)
    for layer, (gw, gb) in zip(model.layers, [(w1.grad, b1.grad), (w2.grad, b2.grad)]):
        np.testing.assert_allclose(layer.grad_weight, gw.numpy(), rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(layer.grad_bias, gb.numpy(), rtol=1e-9, atol=1e-13)


def test_fused_gradient_matches_finite_differences():
    model = _model("sigmoid", k=1)
    model.compile("sgd", "binary_cross_entropy")
    x, y = _data("binary_cross_entropy", n=12, k=1)
    model.compute_gradients(x, y)
    w = model.layers[1].weight
    g = model.layers[1].grad_weight.copy()
    num = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        old = w[idx]
        w[idx] = old + 1e-6
        lp = model.compute_gradients(x, y)
        w[idx] = old - 1e-6
        lm = model.compute_gradients(x, y)
        w[idx] = old
        num[idx] = (lp - lm) / 2e-6
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


def _blobs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 10)) + 1.2 * (2 * y[:, None] - 1) * np.linspace(1, 0.2, 10)
    return x.astype(np.float32), y


def test_sigmoid_bce_trains_well_above_chance():
    """The issue's case: val accuracy was 0.508 (accuracy tested `out > 0`)."""
    x, y = _blobs(1200, 0)
    xv, yv = _blobs(400, 1)
    model = fnn.Sequential([fnn.Dense(10, 32, activation="relu"),
                            fnn.Dense(32, 1, activation="sigmoid")], seed=0)
    model.compile(fnn.optim.Adam(lr=1e-2), "binary_cross_entropy")
    hist = model.fit(x, y, epochs=8, batch_size=32, validation_data=(xv, yv), verbose=0)
    assert hist.history["val_accuracy"][-1] > 0.9
    p = model.predict(xv)[:, 0]
    assert 0 <= p.min() and p.max() <= 1
    # accuracy thresholds the probabilities at 0.5, exactly as a user would
    assert model.evaluate(xv, yv)["accuracy"] == pytest.approx(np.mean((p > 0.5) == yv))


def test_softmax_cross_entropy_trains_as_logits():
    """The issue's other case: softmax + cross_entropy quintupled val_loss.  Fused, it is
    the same training as a linear head: identical histories."""
    x, y = _blobs(600, 2)
    xv, yv = _blobs(200, 3)
    hists = []
    for act in (None, "softmax"):
        model = fnn.Sequential([fnn.Dense(10, 16, activation="relu"),
                                fnn.Dense(16, 2, activation=act)], dtype="float64", seed=0)
        model.compile(fnn.optim.Adam(lr=1e-2), "cross_entropy")
        hists.append(model.fit(x, y, epochs=4, batch_size=32, validation_data=(xv, yv),
                               verbose=0).history)
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(hists[1][key], hists[0][key], rtol=1e-9)
    assert hists[1]["val_accuracy"][-1] > 0.9


def test_activation_layer_as_output_is_fused_too():
    x, y = _data("cross_entropy")
    a = fnn.Sequential([fnn.Dense(5, 3), fnn.Activation("softmax")], dtype="float64", seed=1)
    b = fnn.Sequential([fnn.Dense(5, 3)], dtype="float64", seed=1)
    a.compile("sgd", "cross_entropy")
    b.compile("sgd", "cross_entropy")
    assert a.compute_gradients(x, y) == pytest.approx(b.compute_gradients(x, y), rel=1e-12)
    np.testing.assert_allclose(a.layers[0].grad_weight, b.layers[0].grad_weight, rtol=1e-12)
    np.testing.assert_allclose(a.predict(x).sum(axis=1), 1.0)


def test_cnn_with_softmax_output_is_fused():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 6, 6))
    y = rng.integers(0, 3, 8)
    a = fnn.Sequential([fnn.Conv2D(1, 2, 3, activation="relu"), fnn.Flatten(),
                        fnn.Dense(32, 3, activation="softmax")], dtype="float64", seed=2)
    b = fnn.Sequential([fnn.Conv2D(1, 2, 3, activation="relu"), fnn.Flatten(),
                        fnn.Dense(32, 3)], dtype="float64", seed=2)
    for m in (a, b):
        m.compile("sgd", "cross_entropy")
    assert a.compute_gradients(x, y) == pytest.approx(b.compute_gradients(x, y), rel=1e-12)
    np.testing.assert_allclose(a.layers[0].grad_weight, b.layers[0].grad_weight, rtol=1e-10)


def test_cross_entropy_on_one_output_is_refused():
    model = fnn.Sequential([fnn.Dense(4, 1)])
    with pytest.raises(ValueError, match="single output is always 0"):
        model.compile("adam", "cross_entropy")


def test_wrong_pair_after_compile_is_caught_at_fit():
    model = fnn.Sequential([fnn.Dense(4, 3)])
    model.compile("adam", "binary_cross_entropy")
    model.pop()
    model.add(fnn.Dense(4, 3, activation="softmax"))
    with pytest.raises(ValueError, match="softmax output with binary_cross_entropy"):
        model.fit(np.zeros((4, 4)), np.zeros((4, 3)), verbose=0)
    assert model.step == 0


def test_linear_bce_accuracy_thresholds_logits_at_zero():
    model = fnn.Sequential([fnn.Dense(2, 1)], dtype="float64")
    model.compile("sgd", "binary_cross_entropy")
    model.set_weights([np.array([[1.0], [0.0]]), np.array([0.0])])
    x = np.array([[-0.5, 0], [0.3, 0], [2.0, 0], [-3.0, 0]])
    y = np.array([0.0, 1.0, 0.0, 0.0])
    assert model.evaluate(x, y)["accuracy"] == pytest.approx(0.75)  # logits > 0


def test_an_old_file_with_a_refused_pair_says_how_to_recover(tmp_path):
    import json
    import zipfile

    model = fnn.Sequential([fnn.Dense(4, 3, activation="softmax")], seed=0)
    model.compile("adam", "mse")
    model.save(tmp_path / "m.fnn")
    with zipfile.ZipFile(tmp_path / "m.fnn") as z:  # as an older fastnn wrote it
        parts = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(parts["fastnn.json"])
    meta["loss"] = "binary_cross_entropy"
    parts["fastnn.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(tmp_path / "old.fnn", "w") as z:
        for n, b in parts.items():
            z.writestr(n, b)
    with pytest.raises(ValueError, match="softmax output with binary_cross_entropy.*load_weights"):
        fnn.load(tmp_path / "old.fnn")
    fixed = fnn.Sequential([fnn.Dense(4, 3, activation="sigmoid", name="dense_0")])
    fixed.load_weights(tmp_path / "old.fnn")
    np.testing.assert_array_equal(fixed.layers[0].weight, model.layers[0].weight)
