"""compile(metrics=[...]) and fastnn.metrics (issue 14, item 7)."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn as fnn
from fastnn import metrics as M


def _full(metric, y, p, w):
    metric.reset()
    metric.update(y, p, w)
    return metric.result()


def _batched(metric, y, p, w, sizes):
    metric.reset()
    s = 0
    for m in sizes:
        metric.update(y[s:s + m], p[s:s + m], None if w is None else w[s:s + m])
        s += m
    return metric.result()


CASES = {
    "acc_labels": (lambda: M.Accuracy("categorical"), "labels"),
    "acc_onehot": (lambda: M.Accuracy("categorical"), "onehot"),
    "acc_col": (lambda: M.Accuracy("categorical"), "column"),
    "acc_binary": (lambda: M.Accuracy("binary", 0.5), "binary"),
    "top2": (lambda: M.TopKAccuracy(2), "labels"),
    "mse": (M.MeanSquaredError, "regression"),
    "mae": (M.MeanAbsoluteError, "regression"),
    "fn_per_sample": (lambda: M.FunctionMetric(lambda t, p: np.abs(p - t).max(axis=1)),
                      "regression"),
}


def _targets(kind, rng, n):
    p = rng.random((n, 4))
    if kind == "labels":
        return rng.integers(0, 4, n), p
    if kind == "onehot":
        return np.eye(4)[rng.integers(0, 4, n)], p
    if kind == "column":
        return rng.integers(0, 4, (n, 1)), p
    if kind == "binary":
        return (rng.random((n, 2)) > 0.5).astype(float), rng.random((n, 2))
    return rng.standard_normal((n, 4)), rng.standard_normal((n, 4))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_epoch_average_equals_full_data_metric(case, weighted):
    make, kind = CASES[case]
    rng = np.random.default_rng(len(case))
    n = 103
    y, p = _targets(kind, rng, n)
    w = rng.random(n) * 3 if weighted else None
    full = _full(make(), y, p, w)
    for sizes in ([n], [1] * n, [32, 32, 32, 7], [50, 3, 50]):
        assert _batched(make(), y, p, w, sizes) == pytest.approx(full, rel=1e-12, abs=1e-15)


def test_metric_values_against_numpy():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 50)
    p = rng.random((50, 4))
    w = rng.random(50)
    assert _full(M.Accuracy("categorical"), y, p, w) == pytest.approx(
        np.sum(w * (p.argmax(1) == y)) / w.sum())
    rank = (p > p[np.arange(50), y][:, None]).sum(1)
    assert _full(M.TopKAccuracy(2), y, p, None) == pytest.approx(np.mean(rank < 2))
    t = rng.standard_normal((50, 4))
    assert _full(M.MeanSquaredError(), t, p, w) == pytest.approx(
        np.sum(w * ((p - t) ** 2).mean(1)) / w.sum())
    assert _full(M.MeanAbsoluteError(), t, p, None) == pytest.approx(np.abs(p - t).mean())
    # a scalar callable: batch values weighted by the batch's total weight
    fm = M.FunctionMetric(lambda t, p: float(np.mean(p)), name="mean_pred")
    assert fm.name == "mean_pred"
    assert _batched(fm, t, p, None, [25, 25]) == pytest.approx(p.mean())


def test_accuracy_follows_the_output():
    acc = M.Accuracy()
    acc.configure("binary_cross_entropy", "probabilities")
    assert _full(acc, np.array([[1.0], [0.0]]), np.array([[0.6], [0.4]]), None) == 1.0
    acc.configure("binary_cross_entropy", "logits")
    assert _full(acc, np.array([[1.0], [0.0]]), np.array([[0.6], [-0.4]]), None) == 1.0
    assert _full(acc, np.array([[1.0], [0.0]]), np.array([[0.6], [0.4]]), None) == 0.5
    acc.configure("cross_entropy", "logits")
    assert _full(acc, np.array([1, 0]), np.array([[-1.0, 2.0], [0.5, -3.0]]), None) == 1.0


def test_compile_metrics_logged_with_val_prefix():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((120, 6))
    y = rng.integers(0, 5, 120)

    def neg_loss(y_true, y_pred):
        return float(-np.mean(y_pred))

    model = fnn.Sequential([fnn.Dense(6, 5, activation="softmax")], dtype="float64", seed=0)
    model.compile("adam", "cross_entropy",
                  metrics=["accuracy", "top_k_accuracy", M.TopKAccuracy(2, name="top2"),
                           "mse", "mae", neg_loss])
    hist = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    for k in ("accuracy", "top_k_accuracy", "top2", "mse", "mae", "neg_loss"):
        assert len(hist.history[k]) == 2 and len(hist.history["val_" + k]) == 2
    assert hist.history["top_k_accuracy"][-1] >= hist.history["top2"][-1] >= \
        hist.history["accuracy"][-1]
    # softmax output: y_pred given to metrics are probabilities (mean 1/5)
    assert hist.history["val_neg_loss"][-1] == pytest.approx(-0.2)


def test_evaluate_metrics_equal_full_data_metrics_with_weights():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((101, 6))
    y = rng.integers(0, 3, 101)
    w = rng.random(101)
    model = fnn.Sequential([fnn.Dense(6, 3, activation="softmax")], dtype="float64", seed=0)
    model.compile("adam", "cross_entropy", metrics=["accuracy", "mae"])
    res = model.evaluate(x, y, batch_size=7, sample_weight=w)
    p = model.predict(x)
    assert res["accuracy"] == pytest.approx(np.sum(w * (p.argmax(1) == y)) / w.sum())
    onehot = np.eye(3)[y]
    assert res["mae"] == pytest.approx(np.sum(w * np.abs(p - onehot).mean(1)) / w.sum())
    logp = np.log(p)
    assert res["loss"] == pytest.approx(np.sum(w * -logp[np.arange(101), y]) / 101)
    assert res == pytest.approx(model.evaluate(x, y, batch_size=1000, sample_weight=w))


def test_mse_model_has_no_default_metric_and_takes_mae():
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((40, 3)), rng.standard_normal((40, 2))
    model = fnn.Sequential([fnn.Dense(3, 2)], seed=0).compile("sgd", "mse")
    assert set(model.evaluate(x, t)) == {"loss"}
    model.compile("sgd", "mse", metrics=["mae"])
    assert set(model.evaluate(x, t)) == {"loss", "mae"}


def test_bad_metric_specs():
    model = fnn.Sequential([fnn.Dense(3, 2)])
    with pytest.raises(ValueError, match="unknown metric 'acuracy'"):
        model.compile("sgd", "cross_entropy", metrics=["acuracy"])
    with pytest.raises(ValueError, match="unique"):
        model.compile("sgd", "cross_entropy", metrics=["mae", "mae"])
    with pytest.raises(TypeError, match="a metric must be"):
        model.compile("sgd", "cross_entropy", metrics=[3])
    with pytest.raises(ValueError, match="positive int"):
        M.TopKAccuracy(0)
