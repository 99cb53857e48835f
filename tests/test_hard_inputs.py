"""Hard inputs and faults: giant sizes, extreme values, NaN/Inf policy, threads, interrupts."""

from __future__ import annotations

import _thread
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import assert_close, seeded_rng
from numpy.lib.stride_tricks import as_strided

import fastnn as fnn
from fastnn import _kernels as _k
from fastnn import kernels as K
from fastnn import reference as R

# ---- sizes: overflow and unallocatable buffers are clean errors, never a crash --------


def giant(shape, dt=np.float32):
    """A view of one element repeated to ``shape`` (no memory behind it)."""
    return as_strided(np.zeros(1, dt), shape=shape, strides=(0,) * len(shape))


ONE4 = np.ones((1, 1, 1, 1), np.float32)
SIZE_CASES = {
    "gemm_inputs": lambda: K.gemm(giant((2**20, 2**40)), giant((2**40, 2**20))),
    "gemm_output": lambda: K.gemm(giant((2**34, 1)), np.ones((1, 2**34), np.float32)),
    "gemm_out_zero_stride": lambda: K.gemm(np.ones((3, 2)), np.ones((2, 4)),
                                           out=giant((3, 4), np.float64)),
    "dense_forward": lambda: K.dense_forward(giant((2**33, 4)), np.ones((4, 3), np.float32)),
    "dense_backward": lambda: K.dense_backward(giant((2**33, 3)), giant((2**33, 4)),
                                               np.ones((4, 3), np.float32), giant((2**33, 3))),
    "activation": lambda: K.activation_forward(giant((2**62,)), "relu"),
    "activation_2d": lambda: K.activation_backward(giant((2**31, 2**31)), giant((2**31, 2**31)),
                                                   activation="tanh"),
    "cross_entropy": lambda: K.cross_entropy(giant((2**40, 10)), giant((2**40,), np.int64)),
    "mse": lambda: K.mse(giant((2**62,)), giant((2**62,))),
    "bce": lambda: K.binary_cross_entropy(giant((2**31, 2**31)), giant((2**31, 2**31))),
    "dropout": lambda: K.dropout_forward(giant((2**62,)), 0.5, 1),
    "sgd_grad": lambda: K.sgd_step(np.ones(3, np.float32), giant((2**40,)), lr=0.1),
    "conv_input": lambda: K.conv2d_forward(giant((1, 1, 2**31, 2**31)), ONE4),
    "conv_padding": lambda: K.conv2d_forward(ONE4, ONE4, padding=2**40),
    "conv_padding_int64": lambda: K.conv2d_forward(ONE4, ONE4, padding=2**63),
    "conv_stride_uint64": lambda: K.conv2d_forward(ONE4, ONE4, stride=2**64),
    "conv_backward": lambda: K.conv2d_backward(giant((2**20, 1, 2**20, 1)), giant((2**20, 1,
                                               2**20, 1)), ONE4, None),
    "maxpool_forward": lambda: K.maxpool2d_forward(giant((1, 1, 2**40, 2**40)), 2),
    "maxpool_backward": lambda: K.maxpool2d_backward(ONE4, np.zeros((1, 1, 1, 1), np.int64),
                                                     (1, 1, 2**40, 2**40)),
    "maxpool_backward_dim": lambda: K.maxpool2d_backward(ONE4, np.zeros((1, 1, 1, 1), np.int64),
                                                         (1, 1, 2**64, 1)),
    "avgpool_backward": lambda: K.avgpool2d_backward(giant((1, 1, 2**31, 2**31)),
                                                     (1, 1, 2**32, 2**32), 2),
    "avgpool_kernel": lambda: K.avgpool2d_forward(ONE4, 2**41),
    "gap_backward": lambda: K.global_avgpool_backward(np.ones((1, 1), np.float32),
                                                      (1, 1, 2**40, 2**40)),
    "gap_backward_dim": lambda: K.global_avgpool_backward(np.ones((1, 1), np.float32),
                                                          (1, 1, 2**63, 2)),
    "workspace_64bit": lambda: _k.conv2d_workspace_size(2**40, 2**40, 2**40, 2**40, 1, 1, 1, 1,
                                                        1, 0, 0, 4, 1),
    "workspace_bytes": lambda: _k.conv2d_workspace_size(1, 2**31, 2**16, 2**16, 2**20, 1, 1, 1,
                                                        1, 0, 0, 8, 64),
    "workspace_padding": lambda: _k.conv2d_workspace_size(1, 1, 1, 1, 1, 1, 1, 1, 1, 2**62,
                                                          2**62, 8, 1),
    "model_predict": lambda: fnn.Sequential([fnn.Dense(4, 3)]).predict(giant((2**36, 4))),
}


@pytest.mark.parametrize("case", sorted(SIZE_CASES))
def test_giant_sizes_give_clean_errors(case):
    with pytest.raises((ValueError, MemoryError)):
        SIZE_CASES[case]()


def test_giant_window_pooling_is_exact():
    """A window far larger than the input: kh*kw (2**80) is never formed in int64
    (it used to wrap to 0 and give inf)."""
    for dt in (np.float32, np.float64):
        x = np.full((1, 1, 1, 1), 3.0, dt)
        out = K.avgpool2d_forward(x, 2**40, padding=2**39)
        assert out[0, 0, 0, 0] == dt(3.0) / (dt(2.0**40) * dt(2.0**40))
        dx = K.avgpool2d_backward(x, x.shape, 2**40, padding=2**39)
        assert dx[0, 0, 0, 0] == out[0, 0, 0, 0]
        mx, idx = K.maxpool2d_forward(x, 2**40, padding=2**39)
        assert mx[0, 0, 0, 0] == 3.0 and idx[0, 0, 0, 0] == 0


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_empty_dims(shape, dtype):
    """Zero-sized dimensions anywhere: results of the right (empty or zero) shape."""
    rng = seeded_rng("empty", shape)
    m, k = shape
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, 3)).astype(dtype)
    np.testing.assert_array_equal(K.gemm(a, b), R.gemm(a, b))
    out = K.dense_forward(a, b, np.ones(3, dtype), "relu")
    np.testing.assert_array_equal(out, R.dense_forward(a, b, np.ones(3, dtype), "relu"))
    g = np.ones((m, 3), dtype)
    for got, want in zip(K.dense_backward(g, a, b, out), R.dense_backward(g, a, b, out)):
        np.testing.assert_array_equal(got, want)
    assert K.activation_forward(a, "softmax" if k else "tanh").shape == a.shape
    assert K.mse(a, a)[0] == 0.0
    assert K.binary_cross_entropy(a, a)[1].shape == a.shape
    assert K.dropout_forward(a, 0.5, 1)[0].shape == a.shape


# ---- numerics: extreme values stay finite and match the twin ------------------------------

@pytest.mark.parametrize("act", sorted(fnn.ACTIVATIONS))
def test_activation_tails(act, dtype):
    x = np.array([[-1e4, -1e3, -100.0, -40.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 40.0, 100.0,
                   1e3, 1e4]], dtype)
    a = K.activation_forward(x, act)
    g = K.activation_backward(np.ones_like(x), a, x, act)
    assert np.all(np.isfinite(a)), f"{act}({x}) = {a}"
    assert np.all(np.isfinite(g)), f"{act}'({x}) = {g}"
    assert_close(a, R.activation_forward(x, act), dtype, k=x.shape[1], what=f"{act} forward")
    assert_close(g, R.activation_backward(np.ones_like(x), a, x, act), dtype, k=x.shape[1],
                 what=f"{act} backward")


def test_activation_tail_values(dtype):
    big = np.array([-1e3, 1e3], dtype)
    np.testing.assert_array_equal(K.activation_forward(big, "sigmoid"), [0.0, 1.0])
    np.testing.assert_array_equal(K.activation_forward(big, "softplus"), [0.0, 1e3])
    np.testing.assert_array_equal(K.activation_forward(big, "gelu"), [0.0, 1e3])
    np.testing.assert_array_equal(K.activation_forward(big, "silu"), [0.0, 1e3])
    np.testing.assert_array_equal(K.activation_forward(big, "elu"), [-1.0, 1e3])
    np.testing.assert_array_equal(K.activation_forward(big, "tanh"), [-1.0, 1.0])
    sm = K.activation_forward(np.array([[1e4, -1e4, 0.0]], dtype), "softmax")
    np.testing.assert_array_equal(sm, [[1.0, 0.0, 0.0]])


def test_cross_entropy_extreme_logits(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype)
    for labels in (np.array([1, 0, 2]), np.eye(3, dtype=dtype)[[1, 0, 2]]):
        loss, grad = K.cross_entropy(logits, labels)
        lr, gr = R.cross_entropy(logits, labels)
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        assert abs(loss - lr) <= 1e-6 * abs(lr)
        assert abs(loss - (2e4 + np.log(3) + 2e4 + np.log(2)) / 3) <= 1e-3
        assert_close(grad, gr, dtype, k=3, what="cross_entropy grad")


def test_bce_extreme_logits(dtype):
    x = np.array([1e3, -1e3, 1e3, -1e3, 0.0], dtype)
    t = np.array([0.0, 1.0, 1.0, 0.0, 0.5], dtype)
    loss, grad = K.binary_cross_entropy(x, t)
    lr, gr = R.binary_cross_entropy(x, t)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert abs(loss - (2000 + np.log(2)) / 5) < 1e-3 and abs(loss - lr) <= 1e-6 * lr
    assert_close(grad, gr, dtype, what="bce grad")


def test_float32_accumulation_long_reductions():
    """K >= 100_000 in float32: blocked GEMM, mse and cross-entropy sums stay accurate."""
    rng = seeded_rng("long-k")
    kk = 100_003
    a = rng.standard_normal((3, kk)).astype(np.float32)
    b = rng.standard_normal((kk, 5)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    got = K.gemm(a, b)
    assert np.all(np.isfinite(got))
    assert_close(got, exact, np.float32, k=kk, what="gemm K=100003")
    assert_close(got, R.gemm(a, b), np.float32, k=kk, what="gemm vs twin")
    got_t = K.gemm(b, a, trans_a=True, trans_b=True)
    assert_close(got_t, exact.T, np.float32, k=kk, what="gemm transposed")
    p = (rng.standard_normal(1_000_003) * 100).astype(np.float32)
    t = np.zeros_like(p)
    loss, _ = K.mse(p, t)
    assert abs(loss - np.mean(p.astype(np.float64) ** 2)) <= 1e-9 * loss
    assert abs(loss - R.mse(p, t)[0]) <= 1e-9 * loss
    logits = (rng.standard_normal((200_003, 3)) * 50).astype(np.float32)
    labels = rng.integers(0, 3, logits.shape[0])
    lk, gk = K.cross_entropy(logits, labels)
    lr, gr = R.cross_entropy(logits, labels)
    assert np.isfinite(lk) and abs(lk - lr) <= 1e-5 * lr
    assert_close(gk, gr, np.float32, k=3, what="cross_entropy grad, batch 200003")
    x = (rng.standard_normal(500_001) * 30).astype(np.float32)
    bl, _ = K.binary_cross_entropy(x, (x > 0).astype(np.float32))
    assert abs(bl - R.binary_cross_entropy(x, (x > 0).astype(np.float32))[0]) <= 1e-6 * bl


def test_kernels_propagate_nan(dtype):
    x = np.array([[1.0, np.nan, 2.0]], dtype)
    for act in fnn.ACTIVATIONS:
        a = K.activation_forward(x, act)
        assert np.isnan(a[0, 1]) or act == "softmax" and np.all(np.isnan(a)), act
    assert np.isnan(K.gemm(x, np.ones((3, 2), dtype))).all()
    assert np.isnan(K.mse(x, np.zeros_like(x))[0])
    assert np.isnan(K.cross_entropy(x, [0])[0])
    assert np.isnan(K.binary_cross_entropy(x, np.zeros_like(x))[0])


# ---- NaN/Inf policy: check_finite, fit -------------------------------------------------

def test_check_finite():
    fnn.check_finite(np.ones(3), np.arange(4), [1.0, 2.0], None)
    fnn.check_finite(np.full(4, 3e38, np.float32))  # finite, though the sum overflows
    x = np.ones((4, 5))
    x[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN at index \(2, 3\)"):
        fnn.check_finite(np.ones(2), x, names=["w", "X"])
    y = np.zeros(6, np.float32)
    y[4] = -np.inf
    y[5] = np.nan
    with pytest.raises(ValueError, match=r"^y contains an infinity at index \(4,\)"):
        fnn.check_finite(y, names="y")
    with pytest.raises(ValueError, match="array 1 contains"):
        fnn.check_finite(np.ones(1), [np.inf])
    with pytest.raises(ValueError, match="names"):
        fnn.check_finite(np.ones(1), names=["a", "b"])
    with pytest.raises(TypeError, match="numeric"):
        fnn.check_finite(np.array(["a"]))


def _mlp(seed=0, dtype="float32"):
    return fnn.Sequential([fnn.Dense(20, 16, "relu"), fnn.Dense(16, 4)], dtype=dtype, seed=seed)


def _blobs(seed=0, n=128):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((4, 20)) * 2
    y = rng.integers(0, 4, n)
    return (centers[y] + rng.standard_normal((n, 20))).astype(np.float32), y


def test_fit_checks_inputs_up_front():
    x, y = _blobs()
    model = _mlp()
    model.compile("sgd", "cross_entropy")
    before = model.get_weights()
    xb = x.copy()
    xb[17, 3] = np.inf
    with pytest.raises(ValueError, match=r"X contains an infinity at index \(17, 3\)"):
        model.fit(xb, y, verbose=0)
    big = x.astype(np.float64)
    big[5, 0] = 1e300  # finite in float64, inf once converted to the model's float32
    with pytest.raises(ValueError, match=r"X contains an infinity at index \(5, 0\)"):
        model.fit(big, y, verbose=0)
    with pytest.raises(ValueError, match="validation X contains NaN"):
        model.fit(x, y, validation_data=(np.full_like(x, np.nan), y), verbose=0)
    m2 = _mlp()
    m2.compile("sgd", "mse")
    t = np.eye(4, dtype=np.float32)[y]
    t[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"y contains NaN"):
        m2.fit(x, t, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.step == 0


def _train_copy(steps, x, y, loss, opt, check_finite=False, **fit):
    """A fresh model trained for exactly ``steps`` steps of the same fit."""
    model = _mlp()
    model.compile(opt(), loss)

    class StopAt(fnn.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            if self.model.step >= steps:
                self.model.stop_training = True

    if steps:
        model.fit(x, y, callbacks=[StopAt()], verbose=0, check_finite=check_finite, **fit)
    return model


def test_nonfinite_loss_keeps_weights_of_last_finite_step():
    """Without the input check, a NaN row stops fit at its batch; the weights are bitwise
    those of a run stopped just before that batch."""
    x, y = _blobs(1, 160)
    x[77, 5] = np.nan  # batch 77 // 16 = 4 (no shuffle)
    model = _mlp()
    model.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
    with pytest.warns(RuntimeWarning, match="loss became nan"):
        model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, check_finite=False)
    assert model.stop_training and model.step == 4 and model.optimizer.step_count == 4
    ref = _train_copy(4, x, y, "cross_entropy", lambda: fnn.optim.Adam(lr=0.01), epochs=3,
                      batch_size=16, shuffle=False)
    for a, b in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)
        assert np.all(np.isfinite(a))


def test_diverging_fit_stops_with_finite_weights():
    """A huge learning rate: the loss or a gradient overflows; the update that would make
    the weights non-finite is never applied."""
    x, y = _blobs(2, 64)
    target = np.eye(4, dtype=np.float32)[y]
    model = _mlp()
    model.compile(fnn.optim.SGD(lr=1e18), "mse")
    with pytest.warns(RuntimeWarning, match="loss became"):
        model.fit(x, target, epochs=50, batch_size=16, verbose=0)
    assert model.stop_training
    steps = model.step
    assert 0 < steps < 200
    for w in model.get_weights():
        assert np.all(np.isfinite(w))
    ref = _train_copy(steps, x, target, "mse", lambda: fnn.optim.SGD(lr=1e18), epochs=50,
                      batch_size=16)
    for a, b in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)
    # train_step follows the same policy
    w0 = model.get_weights()
    loss = model.train_step(x[:16], target[:16])
    assert not np.isfinite(loss)
    for a, b in zip(w0, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---- threads -----------------------------------------------------------------------------

def _cnn(seed=0):
    return fnn.Sequential([
        fnn.Conv2D(1, 4, 3, padding=1, activation="relu"), fnn.MaxPool2D(2),
        fnn.Conv2D(4, 6, 3, activation="gelu"), fnn.AvgPool2D(2), fnn.Flatten(),
        fnn.Dropout(0.3), fnn.Dense(24, 5, "silu"), fnn.Dense(5, 3)], seed=seed)


def _run_threads(fns):
    results, errors = [None] * len(fns), []
    barrier = threading.Barrier(len(fns))

    def run(i):
        try:
            barrier.wait()
            results[i] = fns[i]()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_predict_from_threads_on_one_model(kind, threads):
    rng = seeded_rng("predict-threads", kind)
    if kind == "mlp":
        model = fnn.Sequential([fnn.Dense(30, 64, "gelu"), fnn.Dropout(0.2),
                                fnn.Dense(64, 64, "tanh"), fnn.Dense(64, 5)], seed=3)
        xs = [rng.standard_normal((n, 30)).astype(np.float32) for n in (257, 64, 257, 1000)]
    else:
        model = _cnn(3)
        xs = [rng.standard_normal((n, 1, 12, 12)).astype(np.float32) for n in (33, 8, 33, 50)]
    expected = [model.predict(x, batch_size=32) for x in xs]

    def work(i):
        return [model.predict(xs[(i + r) % len(xs)], batch_size=32) for r in range(12)]

    results = _run_threads([lambda i=i: work(i) for i in range(4)])
    for i, res in enumerate(results):
        for r, out in enumerate(res):
            np.testing.assert_array_equal(out, expected[(i + r) % len(xs)])


def test_training_thread_and_predicting_threads_do_not_share_buffers():
    """Evaluate/predict in other threads while one thread trains: no crash, no error, and
    the training run is bitwise the one without the readers (buffers are per thread)."""
    x, y = _blobs(4, 256)

    def train():
        m = _mlp(5)
        m.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
        m.fit(x, y, epochs=3, batch_size=32, verbose=0)
        return m

    alone = train()
    model = _mlp(5)
    model.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
    stop = threading.Event()

    def reader():
        n = 0
        while not stop.is_set() or n == 0:
            out = model.predict(x[:100])
            assert out.shape == (100, 4)
            n += 1
        return n

    def trainer():
        try:
            model.fit(x, y, epochs=3, batch_size=32, verbose=0)
        finally:
            stop.set()

    res = _run_threads([trainer, reader, reader])
    assert res[1] > 0
    for a, b in zip(alone.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_two_models_training_in_two_threads(threads):
    x, y = _blobs(6, 256)
    xc = np.random.default_rng(6).standard_normal((64, 1, 12, 12)).astype(np.float32)
    yc = y[:64] % 3

    def mlp():
        m = _mlp(7)
        m.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
        m.fit(x, y, epochs=3, batch_size=32, verbose=0)
        return m.get_weights()

    def cnn():
        m = _cnn(8)
        m.compile(fnn.optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")
        m.fit(xc, yc, epochs=2, batch_size=16, verbose=0)
        return m.get_weights()

    alone = [mlp(), cnn()]
    together = _run_threads([mlp, cnn, mlp, cnn])
    for got, want in zip(together, alone * 2):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_changing_thread_count_between_steps():
    x, y = _blobs(9, 128)
    xc = np.random.default_rng(9).standard_normal((32, 1, 12, 12)).astype(np.float32)
    old = fnn.get_num_threads()
    try:
        for model, xx, yy in ((_mlp(1), x, y), (_cnn(2), xc, y[:32] % 3)):
            model.compile(fnn.optim.SGD(lr=0.05), "cross_entropy")
            ref = None
            for step in range(8):
                fnn.set_num_threads(1 + step % 2)
                loss = model.train_step(xx[:16], yy[:16])
                assert np.isfinite(loss)
                out = model.predict(xx)
                fnn.set_num_threads(2 - step % 2)
                np.testing.assert_allclose(model.predict(xx), out, rtol=1e-4, atol=1e-5)
                ref = loss if ref is None else ref
            assert loss < ref
    finally:
        fnn.set_num_threads(old)


def test_layers_copy_and_pickle_without_thread_state():
    import copy
    import pickle

    model = _cnn(1)
    x = np.random.default_rng(0).standard_normal((4, 1, 12, 12)).astype(np.float32)
    out = model.predict(x)
    for layer in model.layers:
        for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
            assert clone._cache == {}
    clone = copy.deepcopy(model)
    np.testing.assert_array_equal(clone.predict(x), out)


# ---- interrupts ---------------------------------------------------------------------------

class _InterruptAt(fnn.callbacks.Callback):
    def __init__(self, step):
        self.at = step

    def on_batch_end(self, batch, logs=None):
        if self.model.step == self.at:
            raise KeyboardInterrupt


class _Bar(fnn.callbacks.ProgressBar):
    """A progress bar whose 'tqdm' records whether it was closed."""

    instances: list = []

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.closed = []

        class FakeTqdm:
            def __init__(s, **kw):
                s.closed = False
                self.closed.append(s)

            def update(s, n):
                pass

            def set_postfix(s, **kw):
                pass

            def close(s):
                s.closed = True

        self._tqdm = FakeTqdm
        _Bar.instances.append(self)


@pytest.fixture
def fake_bar(monkeypatch):
    import fastnn.model

    _Bar.instances = []
    monkeypatch.setattr(fastnn.model, "ProgressBar", _Bar)
    return _Bar.instances


def test_keyboard_interrupt_from_callback(fake_bar):
    x, y = _blobs(3, 160)
    model = _mlp()
    model.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=5, batch_size=16, callbacks=[_InterruptAt(13)], verbose=0)
    assert model.step == 13 and model.optimizer.step_count == 13
    assert fake_bar and all(b.closed for b in fake_bar[0].closed)
    assert fake_bar[0]._bar is None
    ref = _train_copy(13, x, y, "cross_entropy", lambda: fnn.optim.Adam(lr=0.01), epochs=5,
                      batch_size=16)
    for a, b in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)
    # a second fit continues normally, from these weights
    hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert model.step == 13 + 20 and len(hist.history["loss"]) == 2
    assert hist.history["loss"][1] < hist.history["loss"][0] + 0.05


def test_real_sigint_during_fit_keeps_a_completed_step(fake_bar):
    """SIGINT (via _thread.interrupt_main) at arbitrary moments: the weights are always
    those of exactly ``model.step`` completed steps, never a half-applied update."""
    x, y = _blobs(11, 512)
    opt = lambda: fnn.optim.Adam(lr=0.003)  # noqa: E731
    # parameter-heavy, tiny batches: much of the time is spent inside the update
    arch = lambda: [fnn.Dense(20, 256, "relu"), fnn.Dense(256, 32, "tanh"),  # noqa: E731
                    fnn.Dense(32, 256, "relu"), fnn.Dense(256, 4)]
    for delay in (0.0, 0.002, 0.005, 0.011, 0.023, 0.04, 0.07, 0.1):
        model = fnn.Sequential(arch(), seed=0)
        model.compile(opt(), "cross_entropy")
        model[1].trainable = False  # two trainable ranges: two C calls per update
        fired = threading.Event()

        class Arm(fnn.callbacks.Callback):
            def on_train_begin(self, logs=None, delay=delay, fired=fired):
                def fire():
                    time.sleep(delay)
                    fired.set()
                    _thread.interrupt_main()

                threading.Thread(target=fire, daemon=True).start()

        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, epochs=1000, batch_size=2, callbacks=[Arm()], verbose=0)
        assert fired.is_set()
        steps = model.step
        assert model.optimizer.step_count == steps
        ref = fnn.Sequential(arch(), seed=0)
        ref.compile(opt(), "cross_entropy")
        ref[1].trainable = False

        class StopAt(fnn.callbacks.Callback):
            def on_batch_end(self, batch, logs=None, steps=steps):
                if self.model.step >= steps:
                    self.model.stop_training = True

        if steps:
            ref.fit(x, y, epochs=1000, batch_size=2, callbacks=[StopAt()], verbose=0)
        for a, b in zip(model.get_weights(), ref.get_weights()):
            np.testing.assert_array_equal(a, b)
        assert all(b._bar is None for b in fake_bar)
        # and training goes on afterwards
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.fit(x[:64], y[:64], epochs=1, batch_size=8, verbose=0)
        assert model.step == steps + 8


def test_sigint_inside_the_update_is_delivered_after_it(fake_bar):
    """Deterministic: SIGINT arrives while the optimizer is between two of its C calls (a
    frozen layer splits the parameters in two ranges); the update still completes, then
    KeyboardInterrupt is raised."""
    x, y = _blobs(12, 64)
    model = fnn.Sequential([fnn.Dense(20, 16, "relu"), fnn.Dense(16, 8, "tanh"),
                            fnn.Dense(8, 4)], seed=0)
    model.compile(fnn.optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    model[1].trainable = False
    opt = model.optimizer
    orig = type(opt)._update
    calls = []

    def update(self, w, g, st, nt):
        calls.append(self.step_count)
        orig(self, w, g, st, nt)
        if self.step_count == 3 and len(calls) == 5:  # first range of the third step
            _thread.interrupt_main()

    opt._update = update.__get__(opt)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    assert calls == [1, 1, 2, 2, 3, 3]
    assert model.step == 3 and opt.step_count == 3
    ref = fnn.Sequential([fnn.Dense(20, 16, "relu"), fnn.Dense(16, 8, "tanh"),
                          fnn.Dense(8, 4)], seed=0)
    ref.compile(fnn.optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    ref[1].trainable = False
    for i in range(3):
        ref.train_step(x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)])
    for a, b in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="Linux only")
@pytest.mark.skipif("libasan" in __import__("os").environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer quarantines freed memory, so RSS says nothing")
def test_gemm_thread_buffers_are_freed_when_threads_exit():
    """A thread-per-request server must not grow without bound (the per-thread packing
    buffers are freed by a pthread key destructor when a thread exits)."""
    old = fnn.get_num_threads()
    fnn.set_num_threads(1)
    try:
        a = np.ones((512, 256), np.float32)  # large enough to use the shared-B packing
        b = np.ones((256, 4096), np.float32)
        K.gemm(a, b)
        r0 = _rss_mb()
        for _ in range(20):
            t = threading.Thread(target=K.gemm, args=(a, b))
            t.start()
            t.join()
        grown = _rss_mb() - r0
    finally:
        fnn.set_num_threads(old)
    assert grown < 30, f"RSS grew by {grown:.0f} MB after 20 short-lived GEMM threads"
