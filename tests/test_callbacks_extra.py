"""CSVLogger, LambdaCallback, History.plot and the progress bar (issue 14, items 3, 5)."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

import fastnn as fnn


def _fit(epochs=3, **kw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = fnn.Sequential([fnn.Dense(4, 8, activation="relu"), fnn.Dense(8, 2)], seed=0)
    model.compile("adam", "cross_entropy", metrics=["accuracy", "mae"])
    return model.fit(x, y, epochs=epochs, batch_size=16, validation_split=0.25, **kw)


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"
    hist = _fit(callbacks=[fnn.callbacks.CSVLogger(path)], verbose=0)
    rows = list(csv.reader(path.open()))
    keys = sorted(hist.history)
    assert rows[0] == ["epoch", *keys]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    for i, r in enumerate(rows[1:]):
        for k, v in zip(keys, r[1:]):
            assert float(v) == hist.history[k][i]
    _fit(epochs=2, callbacks=[fnn.callbacks.CSVLogger(path, append=True)], verbose=0)
    rows = list(csv.reader(path.open()))
    assert len(rows) == 1 + 3 + 2 and rows.count(rows[0]) == 1  # one header
    _fit(epochs=1, callbacks=[fnn.callbacks.CSVLogger(path, separator=";")], verbose=0)
    assert path.read_text().splitlines()[0].startswith("epoch;")


def test_lambda_callback_hooks_in_keras_order():
    calls = []
    cb = fnn.callbacks.LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_begin=lambda e, logs: calls.append(f"epoch_begin {e}"),
        on_batch_begin=lambda b, logs: calls.append("b"),
        on_batch_end=lambda b, logs: calls.append("e"),
        on_epoch_end=lambda e, logs: calls.append(f"epoch_end {e} {sorted(logs)[:2]}"),
        on_train_end=lambda logs: calls.append("train_end"))
    _fit(epochs=2, callbacks=[cb], verbose=0)
    per_epoch = ["b", "e"] * 5  # 72 training rows / 16
    assert calls == (["train_begin", "epoch_begin 0", *per_epoch,
                      "epoch_end 0 ['accuracy', 'loss']", "epoch_begin 1", *per_epoch,
                      "epoch_end 1 ['accuracy', 'loss']", "train_end"])
    with pytest.raises(TypeError, match="on_epoch_end must be callable"):
        fnn.callbacks.LambdaCallback(on_epoch_end=3)


def test_batch_logs_carry_running_metrics():
    seen = []
    cb = fnn.callbacks.LambdaCallback(on_batch_end=lambda b, logs: seen.append(dict(logs)))
    _fit(epochs=1, callbacks=[cb], verbose=0)
    assert all({"loss", "size", "accuracy", "mae"} <= set(d) for d in seen)


def test_history_plot(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    hist = _fit(verbose=0)
    ax = hist.plot()
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["loss", "val_loss", "accuracy", "val_accuracy", "mae", "val_mae"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), hist.history["val_loss"])
    ax.figure.savefig(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0
    ax2 = hist.plot("accuracy")
    assert [line.get_label() for line in ax2.get_lines()] == ["accuracy", "val_accuracy"]
    with pytest.raises(KeyError, match="no metric"):
        hist.plot("nope")


def test_history_plot_without_matplotlib(monkeypatch):
    hist = _fit(epochs=1, verbose=0)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        hist.plot()


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")
    out = _Tty()
    monkeypatch.setattr(sys, "stdout", out)
    _fit(epochs=2, verbose=1)
    text = out.getvalue()
    assert "epoch 1/2" in text and "sample/s" in text  # tqdm's rate...
    assert "<" in text and "loss=" in text and "accuracy=" in text  # ...ETA and metrics
    lines = [ln for ln in text.replace("\r", "\n").splitlines()
             if ln.startswith("epoch 2/2: loss=")]
    assert len(lines) == 1 and "val_loss=" in lines[0]


@pytest.mark.parametrize("verbose,tty", [(1, False), (2, True), (2, False)])
def test_one_line_per_epoch_off_a_terminal_or_verbose_2(monkeypatch, verbose, tty):
    out = _Tty() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    _fit(epochs=3, verbose=verbose)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(ln.startswith(f"epoch {i + 1}/3: loss=")
                                   for i, ln in enumerate(lines))
    assert "\r" not in out.getvalue()


def test_verbose_0_is_silent(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _Tty())
    _fit(epochs=1, verbose=0)
    assert sys.stdout.getvalue() == ""


def test_tqdm_is_a_declared_dependency():
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("pyproject.toml not beside the tests")
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert any(d.split(">")[0].split("=")[0].strip() == "tqdm" for d in deps)
