"""The training API: Sequential, layers, losses, regularization, dropout, fit, callbacks."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import numeric_grad, seeded_rng

import fastnn as fnn

HIDDEN = [a for a in fnn.ACTIVATIONS if a != "softmax"]
LOSSES = ["cross_entropy", "mse", "binary_cross_entropy"]


def targets(loss, rng, n, k):
    if loss == "cross_entropy":
        return rng.integers(0, k, n)
    if loss == "mse":
        return rng.standard_normal((n, k))
    return rng.random((n, k))


@pytest.mark.parametrize("act", HIDDEN)
@pytest.mark.parametrize("loss", LOSSES)
def test_compute_gradients_matches_finite_differences(act, loss):
    rng = seeded_rng(act, loss)
    model = fnn.Sequential([
        fnn.Dense(4, 6, activation=act, l1=0.01, l2=0.02),
        fnn.Dense(6, 5, activation=act, l2=0.05),
        fnn.Dense(5, 3),
    ], dtype="float64", seed=1)
    model.compile(optimizer=fnn.optim.SGD(lr=0.1), loss=loss)
    model[0].trainable = False  # a frozen layer: no gradient of its own, still backpropagated
    x = rng.standard_normal((7, 4))
    y = targets(loss, rng, 7, 3)
    model.compute_gradients(x, y)
    analytic = [(layer.grad_weight.copy(), layer.grad_bias.copy()) for layer in model.layers]
    for li in (1, 2):
        layer = model[li]
        for arr, g in ((layer.weight, analytic[li][0]), (layer.bias, analytic[li][1])):
            num = numeric_grad(model, x, y, arr)
            err = np.abs(num - g).max()
            assert err <= 1e-6 * (1 + np.abs(num).max()), f"layer {li} {act}/{loss}: {err:.2e}"


def test_frozen_layer_gets_no_update_and_no_state():
    rng = np.random.default_rng(0)
    model = fnn.Sequential([fnn.Dense(4, 8, "relu"), fnn.Dense(8, 8, "relu"), fnn.Dense(8, 3)],
                           seed=0)
    model.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
    model.freeze(upto=2)
    w0 = [layer.weight.copy() for layer in model.layers]
    x, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    for _ in range(3):
        model.train_step(x, y)
    assert np.array_equal(model[0].weight, w0[0]) and np.array_equal(model[1].weight, w0[1])
    assert not np.array_equal(model[2].weight, w0[2])
    # the state covers the whole model; the frozen layers' part is untouched (never stepped)
    n_frozen = model.count_params() - model[2].num_params()
    assert all(s.size == model.count_params() for s in model.optimizer.state.values())
    assert not any(s[:n_frozen].any() for s in model.optimizer.state.values())
    assert model.optimizer.param_steps() == [[*model.parameter_ranges()[2], 3]]


def test_backward_returns_input_gradient():
    rng = np.random.default_rng(2)
    model = fnn.Sequential([fnn.Dense(3, 4, "tanh"), fnn.Dense(4, 2)], dtype="float64", seed=0)
    x = rng.standard_normal((5, 3))
    out = model.forward(x)
    g = rng.standard_normal(out.shape)
    gx = model.backward(g)
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = ((model.forward(xp) * g).sum() - (model.forward(xm) * g).sum()) / (2 * h)
    assert np.allclose(gx, num, atol=1e-7)
    assert np.allclose(model.predict(x), out)


@pytest.mark.parametrize("name,check", [
    ("glorot_uniform", lambda w, fi, fo: np.abs(w).max() <= np.sqrt(6 / (fi + fo))),
    ("he_uniform", lambda w, fi, fo: np.abs(w).max() <= np.sqrt(6 / fi)),
    ("glorot_normal", lambda w, fi, fo: abs(w.var() / (2 / (fi + fo)) - 1) < 0.05),
    ("he_normal", lambda w, fi, fo: abs(w.var() / (2 / fi) - 1) < 0.05),
    ("lecun_normal", lambda w, fi, fo: abs(w.var() / (1 / fi) - 1) < 0.05),
    ("zeros", lambda w, fi, fo: not w.any()),
])
def test_initializers_follow_their_formulas(name, check):
    model = fnn.Sequential([fnn.Dense(300, 200, init=name)], seed=0, dtype="float64")
    w = model[0].weight
    assert check(w, 300, 200)
    assert abs(w.mean()) < 0.01
    assert not model[0].bias.any()
    if name.endswith("uniform"):  # uniform: variance a^2 / 3
        a = np.sqrt(6 / 500) if name.startswith("glorot") else np.sqrt(6 / 300)
        assert abs(w.var() / (a * a / 3) - 1) < 0.05


def test_callable_initializer_and_unknown_name():
    model = fnn.Sequential([fnn.Dense(3, 2, init=lambda fi, fo, rng: np.full((fi, fo), 0.5))])
    assert np.all(model[0].weight == 0.5)
    with pytest.raises(ValueError, match="unknown init 'hee'"):
        fnn.Dense(3, 2, init="hee")


def make_mlp(seed, dropout=0.0, dtype="float32"):
    layers = [fnn.Dense(20, 32, "relu", init="he_normal")]
    if dropout:
        layers.append(fnn.Dropout(dropout))
    layers += [fnn.Dense(32, 16, "tanh"), fnn.Dense(16, 4)]
    return fnn.Sequential(layers, dtype=dtype, seed=seed)


def blobs(seed, n=600):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((4, 20)) * 2
    y = rng.integers(0, 4, n)
    return (centers[y] + rng.standard_normal((n, 20))).astype(np.float32), y


@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_gives_bitwise_equal_training(threads):
    old = fnn.get_num_threads()
    fnn.set_num_threads(threads)
    try:
        x, y = blobs(0)
        ws = []
        for seed in (5, 5, 6):
            model = make_mlp(seed, dropout=0.3)
            model.compile(fnn.optim.Adam(lr=1e-2), "cross_entropy")
            model.fit(x, y, epochs=3, batch_size=64, verbose=0)
            ws.append(model.get_weights())
        assert all(np.array_equal(a, b) for a, b in zip(ws[0], ws[1]))
        assert not all(np.array_equal(a, b) for a, b in zip(ws[0], ws[2]))
    finally:
        fnn.set_num_threads(old)


def test_dropout_statistics_and_mask_reuse():
    model = fnn.Sequential([fnn.Dropout(0.25)], dtype="float64", seed=3, input_shape=(1000,))
    x = np.ones((200, 1000))
    out = model.forward(x, training=True)
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.01
    assert np.allclose(out[kept], 1 / 0.75)
    g = model.backward(np.full_like(x, 2.0))
    assert np.array_equal(g != 0, kept)  # same mask in backward
    assert np.allclose(g[kept], 2 / 0.75)
    again = model.forward(x, training=True)
    assert not np.array_equal(again != 0, kept)  # a new mask next step
    assert np.array_equal(model.forward(x, training=False), x)  # identity at inference


def test_dropout_masks_do_not_depend_on_threads():
    x = np.ones((64, 333), np.float32)
    outs = []
    for t in (1, 2):
        old = fnn.get_num_threads()
        fnn.set_num_threads(t)
        model = fnn.Sequential([fnn.Dropout(0.5)], seed=9, input_shape=(333,))
        outs.append(model.forward(x, training=True))
        fnn.set_num_threads(old)
    assert np.array_equal(outs[0], outs[1])


def test_xor_with_tanh_reaches_100_percent():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([0, 1, 1, 0])
    model = fnn.Sequential([fnn.Dense(2, 8, "tanh"), fnn.Dense(8, 2)], seed=0)
    model.compile(fnn.optim.SGD(lr=0.5, momentum=0.9), "cross_entropy")
    model.fit(x, y, epochs=300, batch_size=4, verbose=0)
    assert model.evaluate(x, y)["accuracy"] == 1.0


def test_digits_reach_97_percent():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = (d.data / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(x))
    x, y = x[perm], d.target[perm]
    model = fnn.Sequential([fnn.Dense(64, 128, "relu", init="he_normal"), fnn.Dropout(0.1),
                            fnn.Dense(128, 10)], seed=0)
    model.compile(fnn.optim.Adam(lr=2e-3), "cross_entropy")
    hist = model.fit(x[:1400], y[:1400], epochs=40, batch_size=32, verbose=0,
                     validation_data=(x[1400:], y[1400:]))
    assert model.evaluate(x[1400:], y[1400:])["accuracy"] >= 0.97
    assert len(hist.history["val_accuracy"]) == 40 and "lr" in hist.history


def test_history_validation_split_and_partial_batch():
    x, y = blobs(1, 203)
    model = make_mlp(0)
    model.compile("adam", "cross_entropy")
    hist = model.fit(x, y, epochs=2, batch_size=50, validation_split=0.2, verbose=0)
    assert set(hist.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert model.step == 2 * 4  # 162 training samples: 3 full batches + 1 partial
    assert model.epoch == 2


def test_regression_mse_and_binary_targets():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 5)).astype(np.float32)
    y = x @ rng.standard_normal(5).astype(np.float32)
    model = fnn.Sequential([fnn.Dense(5, 16, "tanh"), fnn.Dense(16, 1)], seed=0)
    model.compile(fnn.optim.Adam(lr=1e-2), "mse")
    first = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert model.evaluate(x, y)["loss"] < 0.1 * first
    yb = (x[:, :1] > 0).astype(np.float32)
    mb = fnn.Sequential([fnn.Dense(5, 1)], seed=0).compile(fnn.optim.SGD(lr=0.5),
                                                           "binary_cross_entropy")
    mb.fit(x, yb, epochs=20, batch_size=32, verbose=0)
    assert mb.evaluate(x, yb)["accuracy"] > 0.95


def test_one_hot_labels_equal_integer_labels():
    x, y = blobs(2, 64)
    m1, m2 = make_mlp(0), make_mlp(0)
    for m in (m1, m2):
        m.compile(fnn.optim.SGD(lr=0.1), "cross_entropy")
    l1 = m1.train_step(x, y)
    l2 = m2.train_step(x, np.eye(4, dtype=np.float32)[y])
    assert abs(l1 - l2) < 1e-6
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(m1.get_weights(), m2.get_weights()))


def test_l2_penalty_in_reported_loss():
    x, y = blobs(3, 32)
    m = fnn.Sequential([fnn.Dense(20, 4, l2=0.5)], seed=0, dtype="float64")
    m.compile("sgd", "cross_entropy")
    plain = fnn.kernels.cross_entropy(m.predict(x), y)[0]
    assert abs(m.compute_gradients(x, y) - plain - 0.5 * (m[0].weight ** 2).sum()) < 1e-10


def test_train_step_allocates_nothing_in_steady_state():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((256, 64)).astype(np.float32)
    y = rng.integers(0, 64, 256)
    model = fnn.Sequential([fnn.Dense(64, 128, "relu"), fnn.Dropout(0.2),
                            fnn.Dense(128, 64, "gelu"), fnn.Dense(64, 64)], seed=0)
    model.compile(fnn.optim.Adam(lr=1e-3), "cross_entropy")
    for _ in range(3):
        model.train_step(x, y)
    tracemalloc.start()
    for _ in range(110):  # long enough to fill CPython's float free list (100 objects)
        model.train_step(x, y)
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    for _ in range(30):
        model.train_step(x, y)
    _, peak = tracemalloc.get_traced_memory()
    for _ in range(70):
        model.train_step(x, y)
    cur, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # every per-step array here is >= 64 KiB (256 x 64 float32); what remains are the
    # few hundred bytes of Python objects (memoryviews) each kernel call creates
    assert peak - base < 16384, f"peak grew by {peak - base} bytes"
    # CPython's free lists keep up to a few thousand small objects traced; no array stays
    assert cur - base < 65536, f"{cur - base} bytes retained over 100 steps"


def test_summary_lists_layers_and_params():
    model = make_mlp(0, dropout=0.1)
    text = model.summary(print_fn=None)
    assert "dense_0 (Dense)" in text and "(batch, 32)" in text and "dropout_1" in text
    assert f"Total params: {model.count_params():,}" in text
    assert model.count_params() == 20 * 32 + 32 + 32 * 16 + 16 + 16 * 4 + 4


def test_add_pop_and_indexing():
    model = make_mlp(0)
    head = model.pop()
    assert isinstance(head, fnn.Dense) and len(model) == 2
    model.add(fnn.Dense(16, 7, name="new_head"))
    assert model["new_head"] is model[-1] and model.output_shape == (7,)
    with pytest.raises(ValueError, match="expects 8 input features, got 7"):
        model.add(fnn.Dense(8, 2))
    assert len(model) == 3  # the bad layer was not kept


def snapshot(model):
    return [w.copy() for w in model.get_weights()], model.step, model.optimizer.step_count


def assert_unchanged(model, snap):
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), snap[0]))
    assert model.step == snap[1] and model.optimizer.step_count == snap[2]


@pytest.mark.parametrize("bad_x,bad_y,err,match", [
    (np.ones((4, 19)), np.zeros(4, int), ValueError, r"per-sample shape \(20,\), got \(19,\)"),
    (np.ones(20), np.zeros(1, int), ValueError, "batch axis"),
    (np.ones((0, 20)), np.zeros(0, int), ValueError, "empty batch"),
    (np.ones((4, 20)), np.array([0, 1, 2, 4]), ValueError, r"\[0, 4\)"),
    (np.ones((4, 20)), np.array([0, 1, 2.5, 3]), ValueError, "integral"),
    (np.ones((4, 20)), np.array([0, 1, np.nan, 3]), ValueError, "NaN"),
    (np.ones((4, 20)), np.array([0, 1, 2]), ValueError, "4 entries"),
    (np.array([["a"] * 20] * 4), np.zeros(4, int), TypeError, "numeric"),
])
def test_bad_inputs_raise_and_leave_model_unchanged(bad_x, bad_y, err, match):
    model = make_mlp(0)
    model.compile(fnn.optim.Adam(), "cross_entropy")
    model.train_step(*blobs(0, 8))
    snap = snapshot(model)
    with pytest.raises(err, match=match):
        model.train_step(bad_x, bad_y)
    with pytest.raises(err, match=match):
        model.fit(bad_x, bad_y, epochs=1, verbose=0)
    assert_unchanged(model, snap)


@pytest.mark.parametrize("kwargs,match", [
    ({"epochs": 0}, "epochs must be >= 1, got 0"),
    ({"batch_size": -1}, "batch_size must be >= 1, got -1"),
    ({"validation_split": 1.5}, "validation_split"),
])
def test_bad_fit_arguments(kwargs, match):
    model = make_mlp(0)
    model.compile("adam", "cross_entropy")
    with pytest.raises(ValueError, match=match):
        model.fit(*blobs(0, 8), verbose=0, **kwargs)


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        fnn.Dense(3, 4, activation="relu6")
    with pytest.raises(ValueError, match="out_features must be >= 1, got 0"):
        fnn.Dense(3, 0)
    with pytest.raises(ValueError, match=r"Dropout p must be in \[0, 1\), got 1.0"):
        fnn.Dropout(1.0)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        make_mlp(0).compile("adam", "hinge")
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'"):
        make_mlp(0).compile("adamx", "mse")
    with pytest.raises(ValueError, match="lr must be >= 0, got -1"):
        fnn.optim.SGD(lr=-1)
    with pytest.raises(ValueError, match="dtype must be"):
        fnn.Sequential([], dtype="int32")
    with pytest.raises(TypeError, match="Layer instances"):
        fnn.Sequential(["dense"])
    with pytest.raises(RuntimeError, match="compile"):
        make_mlp(0).train_step(*blobs(0, 8))


def test_nan_loss_stops_fit_and_keeps_last_good_weights():
    x, y = blobs(0, 64)
    target = np.eye(4, dtype=np.float32)[y]
    model = make_mlp(0)
    model.compile(fnn.optim.SGD(lr=1e18), "mse")  # diverges: weights overflow to inf
    with pytest.warns(RuntimeWarning, match="loss became"):
        model.fit(x, target, epochs=50, batch_size=16, verbose=0)
    assert model.stop_training
    last_good = model.get_weights()
    # the non-finite step was not applied: the weights kept are finite, and a fresh model
    # given them predicts exactly what the stopped one does
    assert all(np.isfinite(w).all() for w in last_good)
    model2 = make_mlp(0)
    model2.set_weights(last_good)
    np.testing.assert_array_equal(model2.predict(x), model.predict(x))
    assert model.step < 50 * 4


def test_early_stopping_restores_best_weights():
    x, y = blobs(5, 200)
    model = make_mlp(0)
    model.compile(fnn.optim.SGD(lr=0.05), "cross_entropy")
    es = fnn.callbacks.EarlyStopping(monitor="val_loss", patience=2,
                                     restore_best_weights=True)
    # a validation set the model cannot fit: val_loss rises, training stops early
    hist = model.fit(x, y, epochs=50, batch_size=20, verbose=0, callbacks=[es],
                     validation_data=(x[:50], (y[:50] + 1) % 4))
    assert len(hist.history["loss"]) < 50
    best = int(np.argmin(hist.history["val_loss"]))
    assert es.best_epoch == best
    assert abs(model.evaluate(x[:50], (y[:50] + 1) % 4)["loss"]
               - hist.history["val_loss"][best]) < 1e-5


def test_schedules_set_learning_rates():
    x, y = blobs(6, 64)
    for sched, expected in [
        (fnn.schedules.StepLR(2, gamma=0.5), [0.1, 0.1, 0.05, 0.05, 0.025]),
        (fnn.schedules.ExponentialLR(0.5), [0.1, 0.05, 0.025, 0.0125, 0.00625]),
        (fnn.schedules.CosineAnnealingLR(4, warmup_epochs=1),
         [0.05, 0.1, 0.075, 0.025, 0.0]),
        (fnn.callbacks.LearningRateScheduler(lambda e, lr: 0.1 / (e + 1)),
         [0.1, 0.05, 0.1 / 3, 0.025, 0.02]),
    ]:
        model = make_mlp(0)
        model.compile(fnn.optim.SGD(lr=0.1), "cross_entropy")
        hist = model.fit(x, y, epochs=5, batch_size=32, verbose=0, callbacks=[sched])
        assert np.allclose(hist.history["lr"], expected), (sched, hist.history["lr"])


def test_reduce_lr_on_plateau():
    x, y = blobs(7, 64)
    model = make_mlp(0)
    model.compile(fnn.optim.SGD(lr=0.1), "cross_entropy")
    model.freeze()  # the loss cannot improve, so the rate halves every `patience` epochs
    cb = fnn.schedules.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2)
    hist = model.fit(x, y, epochs=7, batch_size=64, verbose=0, callbacks=[cb])
    assert len(set(hist.history["loss"])) == 1
    # as Keras: epoch 1 sets the best, epochs 2-3 do not improve -> halved after epoch 3
    np.testing.assert_allclose(hist.history["lr"], [0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert model.optimizer.lr == pytest.approx(0.0125)


def test_model_checkpoint_and_load_round_trip(tmp_path):
    x, y = blobs(8, 128)
    model = make_mlp(0, dropout=0.2)
    model.compile(fnn.optim.Adam(lr=1e-2), "cross_entropy")
    path = tmp_path / "ckpt-{epoch}.fnn"
    model.fit(x, y, epochs=2, batch_size=32, verbose=0,
              callbacks=[fnn.callbacks.ModelCheckpoint(str(path), save_best_only=False)])
    loaded = fnn.load(tmp_path / "ckpt-2.fnn")
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert loaded.epoch == 2 and loaded.step == model.step


@pytest.mark.parametrize("loss", ["cross_entropy", "cross_entropy_rows", "mse",
                                  "binary_cross_entropy"])
@pytest.mark.parametrize("frozen", [None, 0, 1])
def test_one_call_step_equals_layer_by_layer_path(loss, frozen):
    """A Dense-only model trains through one C call per step (MLPPlan); the result must
    be bitwise the layer-by-layer path's."""
    rng = seeded_rng("plan", loss, frozen)
    x = rng.standard_normal((13, 6)).astype(np.float32)
    if loss == "cross_entropy":
        y = rng.integers(0, 3, 13)
    elif loss == "cross_entropy_rows":
        y = rng.dirichlet(np.ones(3), 13).astype(np.float32)
    elif loss == "mse":
        y = rng.standard_normal((13, 3)).astype(np.float32)
    else:
        y = rng.random((13, 3)).astype(np.float32)
    name = "cross_entropy" if loss.startswith("cross") else loss
    models = []
    for use_plan in (True, False):
        m = fnn.Sequential([fnn.Dense(6, 8, "gelu"), fnn.Dense(8, 5, "relu", bias=False),
                            fnn.Dense(5, 3)], seed=4)
        m.compile(fnn.optim.Adam(lr=1e-2), name)
        if frozen is not None:
            m[frozen].trainable = False
        m.trainer.fused = use_plan  # the engine's switch (was the private m._plan_eligible)
        losses = [m.train_step(x, y) for _ in range(3)]
        models.append((m, losses))
    (a, la), (b, lb) = models
    assert la == lb
    assert all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))
    assert a.trainer.fused_plans and not b.trainer.fused_plans
