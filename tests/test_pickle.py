"""Models pickle and deep-copy in every state (issue 14, item 4)."""

from __future__ import annotations

import copy
import multiprocessing as mp
import pickle

import numpy as np
import pytest

import fastnn as fnn


def _mlp():
    return fnn.Sequential([fnn.Dense(6, 16, activation="relu"), fnn.Dropout(0.25),
                           fnn.Dense(16, 3)], seed=0)


def _cnn():
    return fnn.Sequential([fnn.Conv2D(1, 4, 3, activation="relu"), fnn.MaxPool2D(2),
                           fnn.Flatten(), fnn.Dropout(0.1), fnn.Dense(16, 3)], seed=0)


def _data(cnn: bool, n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 6, 6) if cnn else (n, 6)).astype(np.float32)
    return x, rng.integers(0, 3, n)


def _state(name):
    cnn = "cnn" in name
    model = _cnn() if cnn else _mlp()
    if name.startswith("unbuilt"):
        return model if cnn else fnn.Sequential([fnn.Flatten(), fnn.Dense(6, 3)])
    model.compile(fnn.optim.Adam(lr=1e-2), "cross_entropy", metrics=["accuracy", "mae"])
    if name.startswith("fitted"):
        x, y = _data(cnn)
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return model


COPIES = {
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
    "pickle_v2": lambda m: pickle.loads(pickle.dumps(m, protocol=2)),
    "deepcopy": copy.deepcopy,
    "copy": copy.copy,
}
STATES = ["unbuilt_mlp", "unbuilt_cnn", "compiled_mlp", "compiled_cnn", "fitted_mlp",
          "fitted_cnn"]


@pytest.mark.parametrize("how", sorted(COPIES))
@pytest.mark.parametrize("state", STATES)
def test_copies_predict_and_train_on_bitwise_like_the_original(state, how):
    model = _state(state)
    twin = COPIES[how](model)
    assert twin is not model
    assert type(twin) is fnn.Sequential and len(twin) == len(model)
    cnn = "cnn" in state
    x, y = _data(cnn, seed=1)
    np.testing.assert_array_equal(twin.predict(x), model.predict(x))
    if state.startswith("unbuilt"):
        return
    assert twin.step == model.step and twin.epoch == model.epoch
    assert [m.name for m in twin.metrics] == ["accuracy", "mae"]
    sd, td = model.optimizer.state_dict(), twin.optimizer.state_dict()
    assert sd["step_count"] == td["step_count"] and sd["state"].keys() <= td["state"].keys()
    for k in td["state"]:  # a compiled, never-stepped original has no state yet: zeros
        np.testing.assert_array_equal(sd["state"].get(k, 0 * td["state"][k]), td["state"][k])
    # the copy is independent and continues exactly as the original would
    h1 = model.fit(x, y, epochs=1, batch_size=16, verbose=0).history
    h2 = twin.fit(x, y, epochs=1, batch_size=16, verbose=0).history
    assert h1["loss"] == h2["loss"] and h1["mae"] == h2["mae"]
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.layers[-1].bias[:] += 1.0
    assert not np.array_equal(model.layers[-1].bias, twin.layers[-1].bias)


def test_a_fitted_dense_model_with_its_plan_pickles():
    """The issue's case: the cached one-call MLPPlan made pickling fail."""
    model = _state("fitted_mlp")
    model2 = fnn.Sequential([fnn.Dense(6, 4), fnn.Dense(4, 3)], seed=1).compile()
    model2.fit(*_data(False), epochs=1, verbose=0)
    for m in (model, model2):
        blob = pickle.dumps(m)
        np.testing.assert_array_equal(pickle.loads(blob).predict(_data(False)[0]),
                                      m.predict(_data(False)[0]))


def _predict_in_child(blob, x):
    return pickle.loads(blob).predict(x)


def _fit_in_child(model, x, y):
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return model


def test_round_trip_through_a_process_and_joblib(tmp_path):
    model = _state("fitted_mlp")
    x, y = _data(False, seed=2)
    ctx = mp.get_context("spawn")  # never fork a process that has OpenMP threads running
    with ctx.Pool(1) as pool:
        back = pool.apply(_fit_in_child, (model, x, y))
        pred = pool.apply(_predict_in_child, (pickle.dumps(model), x))
    np.testing.assert_array_equal(pred, model.predict(x))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for a, b in zip(model.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)
    joblib = pytest.importorskip("joblib")
    joblib.dump(model, tmp_path / "m.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "m.joblib").predict(x),
                                  model.predict(x))


def test_custom_loss_and_frozen_layers_survive():
    class HalfMSE(fnn.losses.MSE):
        name = "half_mse"

        def __call__(self, out, y, grad):
            v = super().__call__(out, y, grad)
            if grad is not None:
                grad *= 0.5
            return 0.5 * v

    model = fnn.Sequential([fnn.Dense(3, 4), fnn.Dense(4, 2)], dtype="float64", seed=0)
    model.compile("sgd", HalfMSE())
    model.layers[0].trainable = False
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    model.fit(x, t, epochs=1, verbose=0)
    twin = copy.deepcopy(model)
    assert isinstance(twin.loss, HalfMSE) and not twin.layers[0].trainable
    assert twin.compute_gradients(x, t) == model.compute_gradients(x, t)
