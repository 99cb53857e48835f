"""fit on generators, iterables and memory-mapped arrays; sample and class weights;
on_batch_begin; no fake epochs; model(X) (issue 14, items 5 and 7)."""

from __future__ import annotations

import sys
import tracemalloc
import warnings

import numpy as np
import pytest

import fastnn as fnn


def _blobs(n=256, d=6, k=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = rng.standard_normal((k, d)) * 2
    return (centers[y] + rng.standard_normal((n, d))).astype(dtype), y


def _mlp(d=6, k=3, dtype="float32", seed=0, dropout=False):
    layers = [fnn.Dense(d, 16, activation="relu")]
    if dropout:
        layers.append(fnn.Dropout(0.2))
    return fnn.Sequential(layers + [fnn.Dense(16, k)], dtype=dtype, seed=seed)


def _same_weights(a, b):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


# ---- model(X) ------------------------------------------------------------------
def test_model_call_is_forward():
    x, _ = _blobs(50)
    model = _mlp(dropout=True)
    np.testing.assert_array_equal(model(x), model.predict(x))
    np.testing.assert_array_equal(model(x), model.forward(x))
    assert not np.array_equal(model(x, training=True), model(x))  # dropout applied


# ---- callbacks: on_batch_begin, no fake epochs ------------------------------------
def test_on_batch_begin_is_called_before_each_step():
    x, y = _blobs(100)
    events = []
    cb = fnn.callbacks.LambdaCallback(
        on_batch_begin=lambda b, logs: events.append(("begin", b, logs["size"])),
        on_batch_end=lambda b, logs: events.append(("end", b, logs["size"])))
    model = _mlp().compile("adam", "cross_entropy")
    model.fit(x, y, epochs=2, batch_size=32, callbacks=[cb], verbose=0)
    expected = [(k, b, 32 if b < 3 else 4) for _ in range(2) for b in range(4)
                for k in ("begin", "end")]
    assert events == expected


def test_fit_stopped_in_first_batch_records_no_epoch():
    x, y = _blobs(64)
    x[3, 0] = np.nan
    model = _mlp().compile("adam", "cross_entropy")
    with pytest.warns(RuntimeWarning, match="loss became nan"):
        hist = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0,
                         check_finite=False)
    assert hist.history == {} and hist.epoch == [] and model.epoch == 0 and model.step == 0


def test_stop_mid_epoch_records_the_completed_batches_only():
    x, y = _blobs(64)
    x[40, 0] = np.nan  # batch 2 (no shuffle): two steps completed
    losses = []
    cb = fnn.callbacks.LambdaCallback(on_batch_end=lambda b, logs: losses.append(logs["loss"]))
    model = _mlp().compile("adam", "cross_entropy")
    with pytest.warns(RuntimeWarning):
        hist = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0,
                         check_finite=False, callbacks=[cb])
    assert hist.epoch == [0] and model.step == 2
    assert hist.history["loss"] == [pytest.approx(np.mean(losses))]


# ---- sample_weight / class_weight ------------------------------------------------------
def test_sample_weight_step_matches_torch():
    torch = pytest.importorskip("torch")
    x, y = _blobs(40, dtype=np.float64)
    w = np.random.default_rng(5).random(40) * 2
    model = _mlp(dtype="float64").compile(fnn.optim.SGD(lr=0.1), "cross_entropy")
    params = [torch.tensor(a, requires_grad=True) for a in model.get_weights()]
    model.fit(x, y, epochs=1, batch_size=40, shuffle=False, sample_weight=w, verbose=0)
    w1, b1, w2, b2 = params
    z = torch.relu(torch.tensor(x) @ w1 + b1) @ w2 + b2
    per = torch.nn.functional.cross_entropy(z, torch.tensor(y), reduction="none")
    (per * torch.tensor(w)).mean().backward()  # Keras: sum(w * loss) / n
    with torch.no_grad():
        for p in params:
            p -= 0.1 * p.grad
    for a, p in zip(model.get_weights(), params):
        np.testing.assert_allclose(a, p.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_unit_sample_weights_train_as_no_weights():
    x, y = _blobs(96, dtype=np.float64)
    a = _mlp(dtype="float64").compile("adam", "cross_entropy")
    b = _mlp(dtype="float64").compile("adam", "cross_entropy")
    ha = a.fit(x, y, epochs=2, batch_size=32, verbose=0)
    hb = b.fit(x, y, epochs=2, batch_size=32, sample_weight=np.ones(96), verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-10)


def test_class_weight_is_sample_weight_by_class():
    x, y = _blobs(96)
    cw = {0: 1.0, 1: 3.0, 2: 0.5}
    a = _mlp().compile("adam", "cross_entropy")
    b = _mlp().compile("adam", "cross_entropy")
    a.fit(x, y, epochs=2, batch_size=32, class_weight=cw, verbose=0)
    b.fit(x, y, epochs=2, batch_size=32, sample_weight=np.array([cw[c] for c in y]), verbose=0)
    _same_weights(a, b)


def test_class_weight_balanced_is_scikit_learns():
    pytest.importorskip("sklearn")
    from sklearn.utils.class_weight import compute_class_weight

    x, y = _blobs(90)
    y = np.where(np.arange(90) < 60, 0, y)  # imbalanced
    bal = compute_class_weight("balanced", classes=np.unique(y), y=y)
    a = _mlp().compile("adam", "cross_entropy")
    b = _mlp().compile("adam", "cross_entropy")
    a.fit(x, y, epochs=1, batch_size=30, class_weight="balanced", verbose=0)
    b.fit(x, y, epochs=1, batch_size=30, sample_weight=bal[y], verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6)


def test_bad_weights_are_refused_before_training():
    x, y = _blobs(30)
    model = _mlp().compile("adam", "cross_entropy")
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(30,\)"):
        model.fit(x, y, sample_weight=np.ones(29), verbose=0)
    with pytest.raises(ValueError, match="finite weights >= 0"):
        model.fit(x, y, sample_weight=-np.ones(30), verbose=0)
    with pytest.raises(ValueError, match=r"no weight for classes \[2\]"):
        model.fit(x, y, class_weight={0: 1, 1: 1}, verbose=0)
    assert model.step == 0


def test_weighted_validation_data():
    x, y = _blobs(64)
    xv, yv = _blobs(40, seed=1)
    wv = np.linspace(0, 2, 40)
    model = _mlp().compile("adam", "cross_entropy")
    hist = model.fit(x, y, epochs=1, validation_data=(xv, yv, wv), verbose=0)
    res = model.evaluate(xv, yv, sample_weight=wv)
    assert hist.history["val_loss"][0] == pytest.approx(res["loss"], rel=1e-6)
    assert hist.history["val_accuracy"][0] == pytest.approx(res["accuracy"])


def test_sample_weight_follows_validation_split():
    x, y = _blobs(100)
    w = np.ones(100)
    w[80:] = 0.0  # the held-out 20 rows carry the zeros: training sees only ones
    a = _mlp().compile("adam", "cross_entropy")
    b = _mlp().compile("adam", "cross_entropy")
    a.fit(x, y, epochs=1, validation_split=0.2, sample_weight=w, verbose=0)
    b.fit(x[:80], y[:80], epochs=1, sample_weight=np.ones(80), verbose=0)
    _same_weights(a, b)


# ---- generators and iterables ------------------------------------------------------
def _batches(x, y, bs, w=None):
    for s in range(0, len(x), bs):
        if w is None:
            yield x[s:s + bs], y[s:s + bs]
        else:
            yield x[s:s + bs], y[s:s + bs], w[s:s + bs]


def test_fit_on_a_generator_equals_fit_on_arrays():
    x, y = _blobs(96)
    a = _mlp().compile("adam", "cross_entropy")
    b = _mlp().compile("adam", "cross_entropy")
    ha = a.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)

    def forever():
        while True:
            yield from _batches(x, y, 32)

    hb = b.fit(forever(), epochs=3, steps_per_epoch=3, verbose=0)
    _same_weights(a, b)
    np.testing.assert_array_equal(ha.history["loss"], hb.history["loss"])
    assert b.step == 9 and b.epoch == 3


def test_fit_on_a_reiterable_list_with_weights():
    x, y = _blobs(96)
    w = np.random.default_rng(0).random(96)
    data = list(_batches(x, y, 32, w))
    a = _mlp().compile("adam", "cross_entropy")
    b = _mlp().compile("adam", "cross_entropy")
    a.fit(x, y, epochs=2, batch_size=32, shuffle=False, sample_weight=w, verbose=0)
    hist = b.fit(data, epochs=2, validation_data=(x, y), verbose=0)
    _same_weights(a, b)
    assert len(hist.history["val_loss"]) == 2


def test_a_spent_generator_stops_training_with_a_warning():
    x, y = _blobs(96)
    model = _mlp().compile("adam", "cross_entropy")
    with pytest.warns(UserWarning, match="data ran out"):
        hist = model.fit(_batches(x, y, 32), epochs=5, verbose=0)
    assert len(hist.history["loss"]) == 1 and model.step == 3
    with pytest.warns(UserWarning, match="before steps_per_epoch"):
        hist = model.fit(_batches(x, y, 32), epochs=5, steps_per_epoch=2, verbose=0)
    assert len(hist.history["loss"]) == 2 and model.step == 3 + 3  # 2 batches, then 1


def test_generator_batches_are_checked():
    x, y = _blobs(64)
    model = _mlp().compile("adam", "cross_entropy")
    bad = [(x[:32], y[:32]), (x[32:, :5], y[32:])]
    with pytest.raises(ValueError, match=r"X \(batch 1\) must have per-sample shape"):
        model.fit(bad, epochs=1, verbose=0)
    xn = x.copy()
    xn[40, 2] = np.inf
    with pytest.raises(ValueError, match=r"X \(batch 1\) contains an infinity"):
        model.fit(list(_batches(xn, y, 32)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="must be a tuple"):
        model.fit([x[:32]], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="validation_split needs arrays"):
        model.fit(list(_batches(x, y, 32)), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="fit needs y"):
        model.fit(x, verbose=0)


def test_generator_with_class_weight_dict():
    x, y = _blobs(64)
    cw = {0: 2.0, 1: 1.0, 2: 0.5}
    a = _mlp().compile("adam", "cross_entropy")
    b = _mlp().compile("adam", "cross_entropy")
    a.fit(x, y, epochs=1, batch_size=32, shuffle=False, class_weight=cw, verbose=0)
    b.fit(_batches(x, y, 32), epochs=1, class_weight=cw, verbose=0)
    _same_weights(a, b)


# ---- memory-mapped arrays --------------------------------------------------------------
def test_fit_on_memmap_equals_in_memory_without_shuffle(tmp_path):
    x, y = _blobs(200)
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    a = _mlp().compile("adam", "cross_entropy")
    b = _mlp().compile("adam", "cross_entropy")
    a.fit(x, y, epochs=2, batch_size=32, shuffle=False, validation_split=0.1, verbose=0)
    hb = b.fit(xm, y, epochs=2, batch_size=32, shuffle=False, validation_split=0.1, verbose=0)
    _same_weights(a, b)
    assert len(hb.history["val_loss"]) == 2


def test_fit_on_memmap_shuffles_reproducibly(tmp_path):
    x, y = _blobs(300, seed=4)
    np.save(tmp_path / "x.npy", x.astype(np.float64))  # converted batch by batch
    np.save(tmp_path / "y.npy", y)
    runs = []
    for _ in range(2):
        xm = np.load(tmp_path / "x.npy", mmap_mode="r")
        ym = np.load(tmp_path / "y.npy", mmap_mode="r")
        model = _mlp().compile(fnn.optim.Adam(lr=1e-2), "cross_entropy")
        hist = model.fit(xm, ym, epochs=6, batch_size=32, verbose=0)
        runs.append((model, hist.history["loss"]))
    _same_weights(runs[0][0], runs[1][0])
    assert runs[0][1][-1] < 0.5 * runs[0][1][0]
    assert runs[0][0].evaluate(x, y)["accuracy"] > 0.9


def test_memmap_batches_are_checked(tmp_path):
    x, y = _blobs(100)
    x[70, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    model = _mlp().compile("adam", "cross_entropy")
    with pytest.raises(ValueError, match=r"X \(batch 2\) contains NaN"):
        model.fit(xm, y, batch_size=32, shuffle=False, verbose=0)


def _rss_anon() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def test_out_of_core_fit_reads_a_batch_sized_window(tmp_path):
    """A memory-mapped file larger than anything the fit allocates: the peak of new
    allocations during an epoch is a small multiple of one batch, far below the file.
    The file is float64 and the model float32, so every row must be converted: only
    the batch being read is."""
    n, d, bs = 100_000, 64, 256
    path = tmp_path / "big.npy"
    xm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, d))
    rng = np.random.default_rng(0)
    for s in range(0, n, 10_000):
        xm[s:s + 10_000] = rng.standard_normal((10_000, d))
    xm.flush()
    del xm
    yfile = tmp_path / "y.npy"
    np.save(yfile, rng.integers(0, 3, n))
    x = np.load(path, mmap_mode="r")
    y = np.load(yfile, mmap_mode="r")
    file_bytes = x.nbytes  # 51.2 MB
    batch_bytes = bs * d * 8  # 128 KiB (as read; 64 KiB converted)
    model = fnn.Sequential([fnn.Dense(d, 32, activation="relu"), fnn.Dense(32, 3)], seed=0)
    model.compile("adam", "cross_entropy")
    model.fit(x[:2048], y[:2048], epochs=1, batch_size=bs, verbose=0)  # warm the buffers
    rss0 = _rss_anon()
    tracemalloc.start()
    try:
        model.fit(x, y, epochs=1, batch_size=bs, verbose=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss1 = _rss_anon()
    # the shuffle's permutation is 8 bytes per sample (not per element of the file)
    print(f"peak traced {peak / 1e6:.2f} MB, RSS(anon) growth "
          f"{(rss1 - rss0) / 1e6 if rss0 is not None else float('nan'):.2f} MB, "
          f"file {file_bytes / 1e6:.1f} MB, batch {batch_bytes / 1e3:.0f} kB")
    assert peak < 8 * n + 16 * batch_bytes, (peak, batch_bytes)
    assert peak < file_bytes / 10
    if rss0 is not None and sys.platform.startswith("linux"):
        assert rss1 - rss0 < file_bytes / 4, (rss1 - rss0, file_bytes)
    assert model.step == 2048 // bs + -(-n // bs)


def test_predict_and_evaluate_read_a_memmap_batch_by_batch(tmp_path):
    x, y = _blobs(5000, d=64, dtype=np.float64)
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    model = _mlp(d=64).compile("adam", "cross_entropy")
    ref_p, ref_e = model.predict(x), model.evaluate(x, y)
    tracemalloc.start()
    try:
        p = model.predict(xm, batch_size=256)
        e = model.evaluate(xm, y, batch_size=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(p, ref_p)
    assert e == pytest.approx(ref_e)
    assert peak < x.nbytes / 4  # a converted copy of X would be x.nbytes / 2


def test_memmap_with_class_weight(tmp_path):
    x, y = _blobs(96)
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    cw = {0: 1.0, 1: 2.0, 2: 3.0}
    a = _mlp().compile("adam", "cross_entropy")
    b = _mlp().compile("adam", "cross_entropy")
    a.fit(x, y, epochs=1, batch_size=32, shuffle=False, class_weight=cw, verbose=0)
    b.fit(xm, y, epochs=1, batch_size=32, shuffle=False, class_weight=cw, verbose=0)
    _same_weights(a, b)


def test_labels_of_shape_n_1_for_cross_entropy():
    x, y = _blobs(64)
    a = _mlp().compile("adam", "cross_entropy")
    b = _mlp().compile("adam", "cross_entropy")
    a.fit(x, y, epochs=1, verbose=0)
    b.fit(x, y.reshape(-1, 1), epochs=1, verbose=0)
    _same_weights(a, b)
    assert b.evaluate(x, y.reshape(-1, 1)) == a.evaluate(x, y)
    with pytest.raises(ValueError, match=r"integer class labels \(n,\) or \(n, 1\), or one-hot"):
        b.fit(x, np.zeros((64, 2)), verbose=0)


def test_no_warnings_in_a_plain_fit():
    x, y = _blobs(64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _mlp().compile("adam", "cross_entropy").fit(x, y, epochs=2, verbose=0)





def test_fit_on_a_torch_dataloader():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _blobs(96)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                        batch_size=32, shuffle=False)
    a = _mlp().compile("adam", "cross_entropy")
    b = _mlp().compile("adam", "cross_entropy")
    a.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    hist = b.fit(loader, epochs=2, verbose=0)  # a re-iterable: one pass per epoch
    _same_weights(a, b)
    assert len(hist.history["loss"]) == 2


def test_distributed_fit_refuses_weights_and_generators():
    """DataParallel does not take sample/class weights, steps_per_epoch or iterables yet: a
    ValueError says so before anything starts (no MPI needed to see it)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 4)).astype(np.float32), rng.integers(0, 2, 20)
    model = fnn.Sequential([fnn.Dense(4, 2)], seed=0)
    model.compile("sgd", "cross_entropy")
    for kw in ({"sample_weight": np.ones(20)}, {"class_weight": {0: 1.0, 1: 2.0}},
               {"steps_per_epoch": 2}):
        with pytest.raises(ValueError, match="distributed fit takes arrays"):
            model.fit(x, y, distributed=True, verbose=0, **kw)
    with pytest.raises(ValueError, match="distributed fit takes arrays"):
        model.fit([(x, y)], distributed=True, verbose=0)
    assert model.step == 0
