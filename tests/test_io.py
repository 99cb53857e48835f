"""Saving, loading, resuming, partial loading, transfer learning; a fuzzed loader."""

from __future__ import annotations

import copy
import os
import zipfile

import numpy as np
import pytest

import fastnn as fnn


def data(seed=0, n=256):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((5, 12)) * 2
    y = rng.integers(0, 5, n)
    return (centers[y] + rng.standard_normal((n, 12))).astype(np.float32), y


def make(seed=0, opt=None):
    model = fnn.Sequential([
        fnn.Dense(12, 32, "relu", init="he_normal", l2=1e-4), fnn.Dropout(0.25),
        fnn.Dense(32, 16, "gelu"), fnn.Dense(16, 5)], seed=seed)
    model.compile(opt or fnn.optim.Adam(lr=3e-3), "cross_entropy")
    return model


@pytest.mark.parametrize("opt", [lambda: fnn.optim.Adam(lr=3e-3, amsgrad=True),
                                 lambda: fnn.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
                                 lambda: fnn.optim.RMSprop(lr=1e-3, centered=True, momentum=0.5),
                                 lambda: fnn.optim.Adagrad(lr=0.05),
                                 lambda: fnn.optim.AdamW(lr=1e-3)])
def test_save_load_round_trip_is_bitwise(tmp_path, opt):
    x, y = data()
    model = make(opt=opt())
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    path = tmp_path / "m.fnn"
    model.save(path)
    loaded = fnn.load(path)
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for k, v in model.optimizer.state.items():
        assert np.array_equal(loaded.optimizer.state[k], v)
    assert (loaded.epoch, loaded.step) == (model.epoch, model.step)
    assert loaded.summary(print_fn=None) == model.summary(print_fn=None)


def test_resume_after_epoch_k_equals_uninterrupted_run(tmp_path):
    x, y = data(1)
    xv, yv = data(2, 64)
    full = make(seed=3)
    full.fit(x, y, epochs=5, batch_size=24, verbose=0, validation_data=(xv, yv))
    part = make(seed=3)
    part.fit(x, y, epochs=2, batch_size=24, verbose=0, validation_data=(xv, yv))
    part.save(tmp_path / "ckpt.fnn")
    del part
    resumed = fnn.load(tmp_path / "ckpt.fnn")
    assert resumed.epoch == 2
    hist = resumed.fit(x, y, epochs=5, batch_size=24, verbose=0, validation_data=(xv, yv),
                       initial_epoch=resumed.epoch)
    assert len(hist.history["loss"]) == 3  # epochs 3, 4, 5
    for a, b in zip(resumed.get_weights(), full.get_weights()):
        assert np.array_equal(a, b)


def test_save_is_atomic_and_leaves_no_temporary(tmp_path, monkeypatch):
    model = make()
    path = tmp_path / "m.fnn"
    model.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    model[0].weight = np.zeros_like(model[0].weight)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.fnn"]


def test_model_file_is_never_unpickled(tmp_path):
    model = make()
    path = tmp_path / "m.fnn"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert "fastnn.json" in names
        for n in names:
            if n.endswith(".npy"):
                assert z.read(n)[:6] == b"\x93NUMPY"
    # an object array inside an otherwise valid file is refused
    bad = tmp_path / "bad.fnn"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(bad, "w") as zout:
        for n in zin.namelist():
            data_ = zin.read(n)
            if n == "params/0000.npy":
                import io as _io
                import pickle

                buf = _io.BytesIO()
                np.lib.format.write_array(buf, np.array([{"x": 1}], dtype=object),
                                          allow_pickle=True)
                data_ = buf.getvalue()
                assert pickle  # the payload is a pickle; loading must not execute it
            zout.writestr(n, data_)
    with pytest.raises(ValueError, match="not a valid .npy"):
        fnn.load(bad)


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b[: len(b) // 2], "not a fastnn model file|corrupt|malformed"),
    (lambda b: b"", "not a fastnn model file"),
    (lambda b: b"PK\x03\x04garbage", "not a fastnn model file"),
])
def test_truncated_and_foreign_files(tmp_path, mutate, match):
    model = make()
    path = tmp_path / "m.fnn"
    model.save(path)
    (tmp_path / "x.fnn").write_bytes(mutate(path.read_bytes()))
    with pytest.raises(ValueError, match=match):
        fnn.load(tmp_path / "x.fnn")


def test_wrong_version_and_foreign_zip(tmp_path):
    model = make()
    path = tmp_path / "m.fnn"
    model.save(path)
    import json

    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("fastnn.json"))
        entries = {n: z.read(n) for n in z.namelist()}
    meta["version"] = 99
    entries["fastnn.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(tmp_path / "v.fnn", "w") as z:
        for n, b in entries.items():
            z.writestr(n, b)
    with pytest.raises(ValueError, match="unsupported fastnn model file version 99"):
        fnn.load(tmp_path / "v.fnn")
    with zipfile.ZipFile(tmp_path / "f.zip", "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="no fastnn.json"):
        fnn.load(tmp_path / "f.zip")


def test_fuzzed_bytes_never_crash_the_loader(tmp_path):
    model = make()
    path = tmp_path / "m.fnn"
    model.save(path)
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    target = tmp_path / "fuzz.fnn"
    outcomes = {"error": 0, "ok": 0}
    for i in range(300):
        b = bytearray(good)
        for _ in range(rng.integers(1, 8)):
            pos = int(rng.integers(0, len(b)))
            b[pos] = int(rng.integers(0, 256))
        if i % 10 == 0:
            b = b[: int(rng.integers(0, len(b)))]
        target.write_bytes(bytes(b))
        try:
            fnn.load(target)
            outcomes["ok"] += 1
        except ValueError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0


def test_save_weights_load_weights_by_name(tmp_path):
    src = make(seed=1)
    src.save_weights(tmp_path / "w.fnnw")
    dst = make(seed=2)
    loaded = dst.load_weights(tmp_path / "w.fnnw")
    assert loaded == ["dense_0", "dense_2", "dense_3"]
    for a, b in zip(src.get_weights(), dst.get_weights()):
        assert np.array_equal(a, b)
    # a different head: shapes differ -> clear error, nothing assigned
    other = fnn.Sequential([fnn.Dense(12, 32, "relu"), fnn.Dropout(0.25), fnn.Dense(32, 16),
                            fnn.Dense(16, 3)], seed=5)
    before = other.get_weights()
    with pytest.raises(ValueError, match=r"layer 'dense_3' has parameter shapes \[\(16, 3\), "
                                         r"\(3,\)\], the file has \[\(16, 5\), \(5,\)\]"):
        other.load_weights(tmp_path / "w.fnnw")
    assert all(np.array_equal(a, b) for a, b in zip(other.get_weights(), before))
    assert other.load_weights(tmp_path / "w.fnnw", skip_mismatch=True) == ["dense_0", "dense_2"]
    # a whole-model file works as a weights source too
    src.save(tmp_path / "m.fnn")
    assert make(seed=4).load_weights(tmp_path / "m.fnn") == ["dense_0", "dense_2", "dense_3"]


def test_get_set_weights_checks_shapes():
    m = make()
    w = m.get_weights()
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \(12, 32\)"):
        m.set_weights([np.zeros((3, 3))] + w[1:])
    with pytest.raises(ValueError, match="needs 6 arrays, got 5"):
        m.set_weights(w[:-1])


def test_transfer_learning_freeze_replace_head_finetune():
    x, y = data(4, 400)
    base = make(seed=0)
    base.fit(x, y, epochs=3, batch_size=32, verbose=0)
    body = base.get_weights()
    base.pop()
    base.add(fnn.Dense(16, 2, name="head2"))
    base.freeze(upto="head2")
    base.compile(fnn.optim.Adam(lr=1e-3), "cross_entropy")
    assert [layer.trainable for layer in base.layers] == [False, False, False, True]
    y2 = (y % 2)
    base.fit(x, y2, epochs=2, batch_size=32, verbose=0)
    for a, b in zip(base.get_weights()[:4], body[:4]):
        assert np.array_equal(a, b)  # the frozen body did not move
    # state buffers cover the whole model; the frozen body's part was never stepped
    n_body = base.count_params() - base["head2"].num_params()
    assert all(v.size == base.count_params() for v in base.optimizer.state.values())
    assert not any(v[:n_body].any() for v in base.optimizer.state.values())
    # a new model from copies of another model's layers keeps their values
    new = fnn.Sequential([copy.deepcopy(la) for la in base.layers[:3]] + [fnn.Dense(16, 4)],
                         seed=9)
    assert np.array_equal(new[0].weight, body[0])
    base.unfreeze()
    assert all(layer.trainable for layer in base.layers)


def test_saved_file_gets_ordinary_permissions(tmp_path):
    import stat

    path = tmp_path / "m.fnn"
    make().save(path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as open() would, not 0600
    os.chmod(path, 0o640)
    make().save(path)  # overwriting keeps the existing file's mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
