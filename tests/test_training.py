"""The training engine (fastnn.training.Trainer) and what it fixed: one loop for fit,
DataParallel and the estimators, with the same safety in all three (issues 16, 17)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import child_env

import fastnn as fnn
from fastnn._batches import ArrayBatches
from fastnn.training import Trainer

SRC = Path(fnn.__file__).resolve().parent


def _data(seed=0, n=96, d=6, k=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, k, n)


def _model(seed=0, act="relu"):
    m = fnn.Sequential([fnn.Dense(6, 12, act), fnn.Dense(12, 3)], seed=seed)
    m.compile(fnn.optim.Adam(lr=1e-2), "cross_entropy")
    return m


class _Recorder(fnn.callbacks.Callback):
    def __init__(self):
        self.calls = []

    def on_batch_begin(self, batch, logs=None):
        self.calls.append(("begin", batch, logs["size"]))

    def on_batch_end(self, batch, logs=None):
        self.calls.append(("end", batch, logs["size"]))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch))


def test_on_batch_begin_is_called_before_every_step():
    x, y = _data()
    m = _model()
    rec = _Recorder()
    m.fit(x, y, epochs=2, batch_size=40, verbose=0, callbacks=[rec])
    steps = [c for c in rec.calls if c[0] != "epoch_end"]
    assert steps == [(kind, b, s) for b, s in ((0, 40), (1, 40), (2, 16)) * 2
                     for kind in ("begin", "end")]
    assert m.step == 6


def test_stop_in_the_first_batch_writes_no_history_epoch():
    """A NaN in the first batch: no step, no History entry, no on_epoch_end."""
    x, y = _data()
    x[0, 0] = np.nan
    m = _model()
    rec = _Recorder()
    with pytest.warns(RuntimeWarning, match="loss became nan"):
        hist = m.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0,
                     check_finite=False, callbacks=[rec])
    assert m.step == 0 and m.epoch == 0
    assert hist.history == {} and hist.epoch == []
    assert not any(c[0] == "epoch_end" for c in rec.calls)


def test_fit_is_the_engine_over_array_batches_bitwise():
    """Sequential.fit == Trainer.fit over ArrayBatches == train_step by hand (layer path)."""
    x, y = _data(1)
    a = _model(3)
    ha = a.fit(x, y, epochs=2, batch_size=32, shuffle=True, verbose=0)
    b = _model(3)
    src = ArrayBatches(x, y.astype(np.int64), batch_size=32, shuffle=True, rng=b.rng)
    hb = Trainer(b).fit(src, 2)
    c = _model(3)
    c.trainer.fused = False  # the layer-by-layer path
    for _ in range(2):
        order = c.rng.permutation(len(x))
        for s in range(0, len(x), 32):
            c.train_step(x[order[s:s + 32]], y[order[s:s + 32]])
    for p, q, r in zip(a.get_weights(), b.get_weights(), c.get_weights()):
        np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(p, r)
    assert ha.history["loss"] == hb.history["loss"]


def test_gradient_hook_sees_the_flat_buffer_before_the_update():
    x, y = _data(2)
    m = _model()
    seen = []

    def hook(grads, step):
        assert grads is m.gradients()
        seen.append((step["rows"], float(np.abs(grads).sum()) > 0))
        grads *= 0  # a hook may change the gradient: zero gradients, Adam moves nothing

    t = Trainer(m)
    t.gradient_hooks.append(hook)
    w0 = m.parameters().copy()
    t.fit(ArrayBatches(x, y.astype(np.int64), batch_size=48), 1)
    assert seen == [(48, True), (48, True)]
    np.testing.assert_array_equal(m.parameters(), w0)
    assert m.step == 2


def test_sample_weights_and_scale():
    """Integer sample weights equal repeated rows; scale multiplies every gradient."""
    x, y = _data(3, n=8)
    w = np.array([1, 2, 1, 3, 1, 1, 2, 1], np.float64)
    m = fnn.Sequential([fnn.Dense(6, 4, "tanh"), fnn.Dense(4, 3)], dtype="float64", seed=0)
    m.compile("sgd", fnn.losses.get_loss("mse"))
    t = Trainer(m)
    target = np.eye(3)[y]
    lw = t.compute_gradients(x.astype(np.float64), target, sample_weight=w)
    gw = m.gradients().copy()
    rep = np.repeat(np.arange(8), w.astype(int))
    lr = t.compute_gradients(x[rep].astype(np.float64), target[rep])
    np.testing.assert_allclose(lw, lr, rtol=1e-13)
    np.testing.assert_allclose(gw, m.gradients(), rtol=1e-12, atol=1e-15)
    t.compute_gradients(x.astype(np.float64), target, scale=0.25)
    g = m.gradients().copy()
    t.compute_gradients(x.astype(np.float64), target)
    np.testing.assert_allclose(g, 0.25 * m.gradients(), rtol=1e-14)


def test_param_groups_weight_decay_on_weights_only():
    """A group with its own weight decay: weights decay, biases do not (SGD, Adam)."""
    for opt_cls in (fnn.optim.SGD, fnn.optim.Adam):
        m = fnn.Sequential([fnn.Dense(3, 2)], dtype="float64", seed=0)
        m.compile(opt_cls(lr=0.1), "mse")
        m.layers[0].bias = [0.5, -0.5]
        ref = fnn.Sequential([fnn.Dense(3, 2)], dtype="float64", seed=0)
        ref.compile(opt_cls(lr=0.1, weight_decay=0.3), "mse")
        ref.layers[0].bias = [0.5, -0.5]
        m.optimizer.set_param_groups([{"params": [m.layers[0].weight], "weight_decay": 0.3}])
        for model in (m, ref):
            model.trainer.compute_gradients(np.zeros((4, 3)), np.zeros((4, 2)))
            model.gradients()[...] = 0.0  # only the decay moves anything
            model.trainer.apply()
        np.testing.assert_array_equal(m.layers[0].weight, ref.layers[0].weight)
        np.testing.assert_array_equal(m.layers[0].bias, [0.5, -0.5])
        assert not np.array_equal(ref.layers[0].bias, [0.5, -0.5])


def test_adam_eps_hat_is_sklearns_update():
    rng = np.random.default_rng(0)
    w0, g = rng.standard_normal(7), rng.standard_normal(7)
    m = fnn.Sequential([fnn.Dense(7, 1, bias=False)], dtype="float64", seed=0)
    m.compile(fnn.optim.Adam(lr=0.01, eps=1e-3, eps_hat=True), "mse")
    m.layers[0].weight = w0[:, None]
    m.gradients()[...] = g
    m.trainer.apply()
    b1, b2, t = 0.9, 0.999, 1
    mom, v = (1 - b1) * g, (1 - b2) * g * g
    lr_t = 0.01 * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    np.testing.assert_allclose(m.layers[0].weight[:, 0], w0 - lr_t * mom / (np.sqrt(v) + 1e-3),
                               rtol=1e-14)


def test_setting_activation_changes_predictions_and_the_saved_file(tmp_path):
    """issue 17: ``layer.activation`` and the code the kernels use are one fact."""
    x, _ = _data(4)
    m = _model(act="relu")
    before = m.predict(x)
    m.layers[0].activation = "gelu"
    assert m.layers[0].activation_code == fnn.ACTIVATIONS["gelu"]
    after = m.predict(x)
    assert np.abs(after - before).max() > 1e-3
    m.save(tmp_path / "m.fnn")
    np.testing.assert_array_equal(fnn.load(tmp_path / "m.fnn").predict(x), after)
    # training sees it too (the one-call step is rebuilt for the new activation)
    m.train_step(x[:16], np.zeros(16, np.int64))
    ref = _model(act="gelu")
    ref.set_weights(m.get_weights())
    np.testing.assert_array_equal(ref.predict(x), m.predict(x))


def test_fit_distributed_takes_a_strategy_object():
    x, y = _data()
    m = _model()
    got = {}

    class Strategy:
        model = m

        def fit(self, X, y, **kw):
            got.update(kw)
            return "history"

    assert m.fit(x, y, epochs=2, distributed=Strategy(), check_finite=False) == "history"
    assert got["epochs"] == 2 and got["check_finite"] is False
    with pytest.raises(TypeError, match="strategy"):
        m.fit(x, y, distributed=object())


# ---- DataParallel: the same safety as fit (issue 17), one rank without mpiexec ---------
_DP_SCRIPT = r"""
import _thread, json, sys, warnings
import numpy as np
import fastnn as fnn
from fastnn.distributed import DataParallel

class InfAt(fnn.Dense):
    # a finite loss whose gradient overflows at one step
    at = 3
    def backward(self, g, need_dx):
        dx = super().backward(g, need_dx)
        if self.model_step() == self.at:
            self.grads[0][0, 0] = np.inf
        return dx

def build(cls=fnn.Dense):
    m = fnn.Sequential([cls(6, 8, "relu"), fnn.Dropout(0.2), fnn.Dense(8, 3)], seed=0)
    m.compile(fnn.optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    return m

rng = np.random.default_rng(0)
x = rng.standard_normal((64, 6)); y = rng.integers(0, 3, 64)
out = {}
# 1. an infinite gradient with a finite loss stops training; the update is not applied
runs = []
for dp in (False, True):
    m = build(InfAt)
    m.layers[0].model_step = lambda m=m: m.step
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        if dp:
            with DataParallel(m) as par:
                par.fit(x, y, epochs=2, batch_size=8, verbose=0)
        else:
            m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    runs.append((m.step, [str(i.message) for i in w], m.get_weights()))
out["steps"] = [r[0] for r in runs]
out["warned"] = [any("a gradient is not finite" in s for s in r[1]) for r in runs]
out["finite"] = bool(all(np.isfinite(a).all() for a in runs[1][2]))
out["equal"] = bool(all(np.array_equal(a, b) for a, b in zip(runs[0][2], runs[1][2])))
# 2. fit(distributed=True) keeps check_finite
m = build()
xn = x.copy(); xn[5, 2] = np.nan
try:
    m.fit(xn, y, epochs=1, batch_size=8, verbose=0, distributed=True)
    out["check_finite"] = "no error"
except ValueError as exc:
    out["check_finite"] = str(exc)
# 3. Ctrl-C inside the update is delivered after it (two C calls per step: a frozen layer)
m = fnn.Sequential([fnn.Dense(6, 8, "relu"), fnn.Dense(8, 8, "tanh"), fnn.Dense(8, 3)],
                   seed=0)
m.compile(fnn.optim.SGD(lr=0.1, momentum=0.9), "cross_entropy")
m[1].trainable = False
opt = m.optimizer
orig = type(opt)._update
calls = []
def update(self, w, g, st, nt):
    calls.append(self.step_count)
    orig(self, w, g, st, nt)
    if self.step_count == 3 and len(calls) == 5:
        _thread.interrupt_main()
opt._update = update.__get__(opt)
try:
    with DataParallel(m) as par:
        par.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    out["sigint"] = "no interrupt"
except KeyboardInterrupt:
    out["sigint"] = [calls, m.step, opt.step_count]
# 4. DataParallel(num_threads=...) leaves the process-wide thread count alone
before = fnn.get_num_threads()
m = build()
with DataParallel(m, num_threads=2) as par:
    par.fit(x, y, epochs=1, batch_size=16, verbose=0)
out["threads_kept"] = fnn.get_num_threads() == before
json.dump(out, open(sys.argv[1], "w"))
"""


def test_dataparallel_has_fits_safety(tmp_path):
    pytest.importorskip("mpi4py")
    script = tmp_path / "dp.py"
    script.write_text(textwrap.dedent(_DP_SCRIPT))
    res_path = tmp_path / "res.json"
    proc = subprocess.run([sys.executable, str(script), str(res_path)], capture_output=True,
                          text=True, timeout=300, env=child_env(OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(res_path.read_text())
    assert res["steps"] == [3, 3], res
    assert res["warned"] == [True, True], res
    assert res["finite"] and res["equal"], res
    assert "X" in res["check_finite"] and "NaN" in res["check_finite"], res
    assert res["sigint"] == [[1, 1, 2, 2, 3, 3], 3, 3], res
    assert res["threads_kept"], res


# ---- the package's structure ------------------------------------------------------------
def _imports(path: Path, package: str) -> set[str]:
    """fastnn modules imported by one module, at any level (function bodies included)."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        pkg = parts
    else:
        pkg = parts[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == package:
                    out.add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != package:
                continue
            out.add(mod)
            for a in node.names:  # "from . import io": the submodule, when it is one
                sub = f"{mod}.{a.name}"
                if (SRC.parent / Path(*sub.split("."))).with_suffix(".py").exists() or \
                        (SRC.parent / Path(*sub.split(".")) / "__init__.py").exists():
                    out.add(sub)
    return out


def test_no_import_cycle_inside_the_package():
    """Walks every module's imports (function-level ones included) and fails on a cycle.

    The package's own ``__init__`` is left out as an importer (it imports everything
    to re-export it) and as a target (``from . import x`` names the submodule).
    """
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        if name == "fastnn":
            continue
        graph[name] = {m for m in _imports(path, "fastnn") if m != "fastnn" and m != name}
    # a package's __init__ importing its own submodules is not a cycle with them
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not d.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if d not in graph:
                continue
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert "fastnn.io" in graph["fastnn.model"] and "fastnn.model" not in graph["fastnn.io"]


def test_no_private_reach_ins():
    """tools/private_reach.py: at most the documented exceptions (issue 16)."""
    # the checkout's tool, scanning the checkout's sources (beside these tests)
    tool = Path(__file__).resolve().parents[1] / "tools" / "private_reach.py"
    if not tool.exists():
        pytest.skip("tools/ not in this checkout")
    proc = subprocess.run([sys.executable, str(tool)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    total = int(proc.stdout.strip().splitlines()[-1].split()[-1])
    assert total <= 8, proc.stdout


_NO_EXTENSION = r"""
import sys

class Refuse:
    # a meta-path finder that refuses the compiled module
    def find_spec(self, name, path=None, target=None):
        if name == "fastnn._kernels":
            raise ImportError("blocked by the test")
        return None

sys.meta_path.insert(0, Refuse())
import numpy as np
import fastnn.reference as R

x = np.arange(12.0).reshape(3, 4) / 10
w = np.ones((4, 2)); b = np.zeros(2)
assert np.allclose(R.dense_forward(x, w, b, "relu"), x.sum(1, keepdims=True) * np.ones(2))
m, v = np.zeros(4), np.zeros(4)
p = np.ones(4)
R.adam_step(p, np.ones(4), m, v, step=1, lr=0.1)
assert np.allclose(p, 0.9)
try:
    R.sgd_step(p, np.ones(4), lr=-1.0)
except ValueError as exc:
    assert "lr" in str(exc)
else:
    raise AssertionError("the shared validator did not run")
assert "fastnn._kernels" not in sys.modules
import fastnn
try:
    fastnn.Sequential
except ImportError as exc:
    assert "blocked by the test" in str(exc), exc
else:
    raise AssertionError("fastnn.Sequential without the extension")
print("ok")
"""


def test_reference_imports_and_works_without_the_compiled_module():
    proc = subprocess.run([sys.executable, "-c", _NO_EXTENSION], capture_output=True,
                          text=True, timeout=120, env=child_env())
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_activation_and_loss_codes_come_from_the_c_enums():
    from fastnn import _kernels
    from fastnn._names import ACTIVATION_NAMES

    assert set(_kernels.ACTIVATIONS) == set(ACTIVATION_NAMES)
    assert sorted(_kernels.ACTIVATIONS.values()) == list(range(len(ACTIVATION_NAMES)))
    assert fnn.ACTIVATIONS is _kernels.ACTIVATIONS
    codes = {_kernels.LOSS_CE_LABELS, _kernels.LOSS_CE_ROWS, _kernels.LOSS_MSE, _kernels.LOSS_BCE}
    assert len(codes) == 4
    assert fnn.losses.get_loss("mse").kind(np.zeros((2, 2))) == _kernels.LOSS_MSE


def test_load_weights_checks_crc_like_load(tmp_path):
    """io.py's two zip readers are one: load_weights gets load's CRC test (issue 16)."""
    m = fnn.Sequential([fnn.Dense(4, 3)], seed=0)
    m.layers[0].weight = np.full((4, 3), 1.2345, np.float32)
    path = tmp_path / "w.fnn"
    m.save_weights(path)
    raw = bytearray(path.read_bytes())
    pattern = np.float32(1.2345).tobytes()
    i = raw.index(pattern)
    raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="CRC"):
        m.load_weights(path)


def test_threads_context_is_per_thread_and_restores():
    """fastnn.threads(n): the estimators' per-fit thread count no longer writes the
    process-wide setting, so two threads each keep their own (issue 17)."""
    import threading

    before = fnn.get_num_threads()
    seen = {}
    barrier = threading.Barrier(2)

    def work(n):
        with fnn.threads(n):
            barrier.wait()
            seen[n] = fnn.get_num_threads()
            barrier.wait()

    ts = [threading.Thread(target=work, args=(n,)) for n in (1, 3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert seen == {1: 1, 3: 3}
    assert fnn.get_num_threads() == before
    with pytest.raises(ValueError):
        with fnn.threads(0):
            pass


def test_a_callback_freezing_a_layer_mid_fit_is_respected():
    """The engine re-attaches the optimizer and rebuilds the one-call plan when a trainable
    flag changes between steps (the old fit loop attached once per fit)."""
    x, y = _data(5)
    m = _model()

    class FreezeAt(fnn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.model.layers[0].trainable = False
                self.frozen = [p.copy() for p in self.model.layers[0].params]
                self.head = self.model.layers[1].weight.copy()

    cb = FreezeAt()
    m.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[cb])
    for p, q in zip(m.layers[0].params, cb.frozen):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(m.layers[1].weight, cb.head)


# ---- issue 14 on the engine: fused outputs, weights, metrics, one batch-source protocol --
def _fused_model(seed=0, dtype="float32"):
    m = fnn.Sequential([fnn.Dense(6, 12, "tanh"), fnn.Dense(12, 3, "softmax")], dtype=dtype,
                       seed=seed)
    m.compile(fnn.optim.Adam(lr=1e-2), "cross_entropy", metrics=["accuracy", "mae"])
    return m


def test_fused_softmax_output_takes_the_one_call_step_bitwise():
    """An unweighted fit of a softmax output with cross_entropy runs the one-C-call MLP step
    (the loss from the pre-activation) and equals the layer-by-layer path bitwise."""
    x, y = _data(2)
    a, b = _fused_model(4), _fused_model(4)
    b.trainer.fused = False
    ha = a.fit(x, y, epochs=2, batch_size=32, verbose=0)
    hb = b.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert a.trainer.output_mode() == "fused" and a.trainer.fused_plans >= 1
    assert b.trainer.fused_plans == 0
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)
    for k in ha.history:
        if k != "samples_per_second":
            assert ha.history[k] == hb.history[k], k
    assert {"accuracy", "mae", "loss"} <= set(ha.history)
    # predict gives probabilities; the engine's evaluate gives the metrics
    p = a.predict(x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    res = a.trainer.evaluate(x, y.astype(np.int64), 40)
    assert res["accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == y))


def test_sample_weight_reductions():
    """'sum_over_batch_size' (Keras, model.trainer) is the weighted mean times sum(w)/rows;
    unknown names are refused."""
    x, y = _data(5, n=10)
    w = np.linspace(0.0, 2.0, 10)
    m = _model(1)
    km = m.trainer.compute_gradients(x, y.astype(np.int64), sample_weight=w)
    gk = m.gradients().copy()
    wm = Trainer(m).compute_gradients(x, y.astype(np.int64), sample_weight=w)
    assert m.trainer.sample_weight_reduction == "sum_over_batch_size"
    assert km == pytest.approx(wm * w.sum() / 10, rel=1e-6)
    np.testing.assert_allclose(gk, m.gradients() * (w.sum() / 10), rtol=1e-5, atol=1e-7)
    assert m.trainer.compute_gradients(x, y.astype(np.int64), sample_weight=0 * w) == 0.0
    with pytest.raises(ValueError, match="sample_weight_reduction"):
        Trainer(m, sample_weight_reduction="mean")


def test_data_sources_are_the_engine_protocol():
    """fastnn.data's sources yield the engine's Batch; ArrayBatches is the engine's own."""
    from fastnn import _batches, data

    assert data.ArrayBatches is _batches.ArrayBatches and data.Batch is _batches.Batch
    x, y = _data(6, n=20)
    m = _model(2)
    src = data.IterableBatches([(x[:8], y[:8]), (x[8:], y[8:], np.ones(12))], None,
                               m._batch_preparer(True))
    got = list(src.batches(0))
    assert all(isinstance(b, _batches.Batch) for b in got)
    assert [b.size for b in got] == [8, 12] and got[0].w is None and got[1].w.shape == (12,)
    h = m.trainer.fit(src, 1)
    assert m.step == 2 and h.history["loss"]
