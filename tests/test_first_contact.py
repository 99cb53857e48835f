"""Issue 14's smaller items: lazy submodules, thread cap, float32 sizes, backward before
forward, Dropout.p, save into a missing directory, the README's lists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import child_env

import fastnn as fnn

README = Path(__file__).resolve().parent.parent / "README.md"


def _run(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=child_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_import_fastnn_imports_no_optional_submodule():
    out = _run("import sys, fastnn\n"
               "mods = ['fastnn.interop', 'fastnn.sklearn', 'fastnn.distributed', "
               "'fastnn.wrappers', 'torch', 'sklearn', 'mpi4py']\n"
               "print([m for m in mods if m in sys.modules])")
    assert out.strip() == "[]"


def test_lazy_submodules_work_after_a_plain_import():
    pytest.importorskip("torch")
    out = _run("import sys, fastnn\n"
               "import torch\n"
               "m = fastnn.interop.from_torch(torch.nn.Sequential(torch.nn.Linear(3, 2)))\n"
               "print(type(m).__name__, m.layers[0].weight.shape,\n"
               "      'fastnn.sklearn' in sys.modules)\n"
               "print(fastnn.sklearn.MLPClassifier.__name__, fastnn.distributed.__name__)\n"
               "print('interop' in dir(fastnn))")
    assert out.split() == ["Sequential", "(3,", "2)", "False", "MLPClassifier",
                           "fastnn.distributed", "True"]


def test_unknown_attribute_still_raises():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        fnn.nope  # noqa: B018


def test_set_num_threads_is_capped_with_a_warning():
    old = fnn.get_num_threads()
    try:
        cap = fnn._config.max_num_threads()
        with pytest.warns(RuntimeWarning, match=r"set_num_threads\(1000\).*at most 4 per CPU"):
            fnn.set_num_threads(1000)
        assert fnn.get_num_threads() == cap < 1000
        fnn.set_num_threads(cap)  # the cap itself is accepted silently
    finally:
        fnn.set_num_threads(old)


def test_float32_layer_reports_float32_sizes():
    with pytest.raises(MemoryError, match=r"3\.64 TiB .* float32"):
        fnn.Sequential([fnn.Dense(10**6, 10**6)], dtype="float32")


def test_initial_weights_unchanged_by_chunked_draws(monkeypatch):
    """Drawing in chunks gives the very values of one float64 draw, cast."""
    import fastnn.init as init

    for name in ("glorot_uniform", "he_normal"):
        monkeypatch.setattr(init, "_CHUNK", 7)
        a = init.draw(name, 30, 20, (30, 20), np.random.default_rng(0), np.float32)
        ref = init.INITIALIZERS[name](30, 20, (30, 20), np.random.default_rng(0))
        np.testing.assert_array_equal(a, ref.astype(np.float32))
        assert a.dtype == np.float32


def test_backward_before_forward_is_a_clear_error():
    model = fnn.Sequential([fnn.Dense(3, 4, activation="relu"), fnn.Dense(4, 2)])
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a forward\(\) first"):
        model.backward(np.ones((5, 2)))
    model.forward(np.ones((5, 3)), training=True)
    assert model.backward(np.ones((5, 2))).shape == (5, 3)


@pytest.mark.parametrize("bad", [1.5, -0.1, 1.0, float("nan"), True])
def test_dropout_p_is_checked_when_set(bad):
    layer = fnn.Dropout(0.2)
    with pytest.raises(ValueError, match="Dropout p must be in"):
        layer.p = bad
    assert layer.p == 0.2
    with pytest.raises(ValueError, match="Dropout p must be in"):
        fnn.Dropout(bad)
    with pytest.raises(TypeError, match="Dropout p must be a number"):
        layer.p = "half"
    layer.p = 0.5
    assert layer.get_config()["p"] == 0.5


def test_save_into_a_missing_directory_names_it(tmp_path):
    model = fnn.Sequential([fnn.Dense(2, 2)])
    target = tmp_path / "nope" / "model.fnn"
    with pytest.raises(FileNotFoundError) as info:
        model.save(target)
    msg = str(info.value)
    assert str(tmp_path / "nope") in msg and "does not exist" in msg and ".fastnn-" not in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save_weights(target)


def test_cross_entropy_accepts_n_1_labels_and_says_what_it_takes():
    model = fnn.Sequential([fnn.Dense(3, 4)], seed=0).compile("sgd", "cross_entropy")
    x = np.random.default_rng(0).standard_normal((6, 3))
    y = np.array([0, 3, 1, 2, 2, 0])
    assert model.evaluate(x, y[:, None]) == model.evaluate(x, y)
    assert model.train_step(x, y[:, None]) == pytest.approx(
        fnn.Sequential([fnn.Dense(3, 4)], seed=0).compile("sgd", "cross_entropy")
        .train_step(x, y))
    with pytest.raises(ValueError, match=r"integer class labels \(n,\) or \(n, 1\)"):
        model.evaluate(x, np.zeros((6, 2)))


@pytest.mark.skipif(not README.exists(), reason="README.md not beside the tests")
def test_readme_lists_every_layer_loss_optimizer_metric_and_callback():
    text = README.read_text()
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(re.findall(r"`([^`]*)`", text))))
    from fastnn.layers import LAYER_TYPES
    from fastnn.losses import LOSSES

    want = set(LAYER_TYPES)
    want |= {cls.name for cls in LOSSES.values()}
    want |= {type(fnn.optim.get_optimizer(n)).__name__ for n in fnn.optim.OPTIMIZERS}
    want |= {"accuracy", "top_k_accuracy", "mse", "mae", "TopKAccuracy"}
    want |= {n for n, c in vars(fnn.callbacks).items()
             if isinstance(c, type) and issubclass(c, fnn.callbacks.Callback)
             and n not in ("Callback", "ProgressBar")}
    want |= set(fnn.ACTIVATIONS)
    assert not want - names, f"missing from the README: {sorted(want - names)}"


def test_keras_spellings_are_accepted(monkeypatch, capsys):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    model = fnn.Sequential([fnn.Dense(3, 2, activation="softmax")], seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["acc"])
    hist = model.fit(x, y, batch_size=None, epochs=2, verbose="auto")
    assert model.step == 2 * 2  # batch_size None is 32
    assert "accuracy" in hist.history
    assert "epoch 2/2" in capsys.readouterr().out
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)


def test_a_model_with_a_custom_layer_says_why_it_cannot_be_pickled():
    import pickle

    class Twice(fnn.Layer):
        def forward(self, x, training):
            return 2 * x

    model = fnn.Sequential([fnn.Dense(2, 2), Twice()])
    with pytest.raises(TypeError, match="its layer Twice is not one of fastnn's own"):
        pickle.dumps(model)
