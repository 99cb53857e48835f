"""No hidden process-global state (issue 17): per-thread thread counts, the umask read
without being set, Dropout's mask stream under threads, imports without side effects,
two estimators fitting in two threads.
"""

from __future__ import annotations

import threading

import pytest
from conftest import OPTIONAL_PEERS

import fastnn


def test_threads_block_is_per_thread_and_restores():
    outer = fastnn.get_num_threads()
    seen: dict[str, int] = {}
    barrier = threading.Barrier(2)

    def worker(name: str, n: int) -> None:
        with fastnn.threads(n):
            barrier.wait()  # both blocks are open at once
            seen[name] = fastnn.get_num_threads()
            barrier.wait()

    ts = [threading.Thread(target=worker, args=("a", 1)),
          threading.Thread(target=worker, args=("b", 3))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert seen == {"a": 1, "b": 3}
    assert fastnn.get_num_threads() == outer


def test_threads_blocks_nest_and_leave_the_process_setting_alone():
    old = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(2)
        with fastnn.threads(1):
            assert fastnn.get_num_threads() == 1
            with fastnn.threads(2):
                assert fastnn.get_num_threads() == 2
            assert fastnn.get_num_threads() == 1
        assert fastnn.get_num_threads() == 2
    finally:
        fastnn.set_num_threads(old)


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                      (True, TypeError)])
def test_threads_rejects_bad_counts(bad, exc):
    with pytest.raises(exc, match="threads"):
        with fastnn.threads(bad):
            pass


# ---- the umask (io.py) ----------------------------------------------------------------

def test_umask_is_read_without_being_set(monkeypatch, tmp_path):
    import os
    import stat
    import sys

    from fastnn import io as fio

    old = os.umask(0o027)
    try:
        if sys.platform.startswith("linux"):
            def no_umask(mask):
                raise AssertionError("os.umask called: it changes the process's mask")

            monkeypatch.setattr(os, "umask", no_umask)
            assert fio.current_umask() == 0o027
            m = fastnn.Sequential([fastnn.Dense(2, 2)], seed=0)
            m.save(tmp_path / "a.fnn")
            assert stat.S_IMODE((tmp_path / "a.fnn").stat().st_mode) == 0o640
            monkeypatch.undo()
        # the fallback (no /proc): set and restore, under a lock
        real_open = open

        def no_proc(path, *a, **k):
            if str(path).startswith("/proc"):
                raise OSError("no /proc here")
            return real_open(path, *a, **k)

        monkeypatch.setattr("builtins.open", no_proc)
        assert fio.current_umask() == 0o027
        monkeypatch.undo()
        assert os.umask(0o027) == 0o027  # restored
    finally:
        os.umask(old)


# ---- Dropout's mask stream under threads ------------------------------------------------

def test_dropout_forward_in_two_threads_gets_distinct_masks():
    import numpy as np

    from fastnn import kernels as K

    layer = fastnn.Dropout(0.5)
    model = fastnn.Sequential([layer], seed=5, input_shape=(4096,))
    start = layer.counter
    x = np.ones((16, 4096), np.float32)
    n_calls = 40
    barrier = threading.Barrier(2)
    masks: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        for _ in range(n_calls):
            out = model.forward(x, training=True)
            with lock:
                masks.append((out != 0).tobytes())

    ts = [threading.Thread(target=worker) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert layer.counter == start + 2 * n_calls * x.size  # every call reserved its own stretch
    assert len(set(masks)) == 2 * n_calls  # no two calls drew the same mask
    want = {(K.dropout_forward(x, 0.5, seed=layer.seed, offset=start + k * x.size)[0] != 0)
            .tobytes() for k in range(2 * n_calls)}
    assert set(masks) == want  # exactly the stretches [start, start + 2 n x.size)


# ---- imports ------------------------------------------------------------------------------

_IMPORTS = r"""
import json, os, sys, threading, warnings, importlib, pkgutil
import numpy as np
OPTIONAL_PEERS = %r
for dep in ("sklearn", "scipy", "torch", "mpi4py", "onnx"):  # third-party state is theirs
    try:
        importlib.import_module(dep)
    except Exception:
        pass

def umask():
    with open("/proc/self/status") as f:
        return next(l.split()[1] for l in f if l.startswith("Umask:"))

def snap():
    return {"umask": umask(), "filters": repr(warnings.filters),
            "print": repr(np.get_printoptions()), "err": repr(np.geterr()),
            "env": repr(sorted(os.environ.items())), "threads": threading.active_count(),
            "affinity": repr(sorted(os.sched_getaffinity(0)))}

before = snap()
import fastnn
n = fastnn.get_num_threads()
after_fastnn = snap()
for mod in pkgutil.walk_packages(fastnn.__path__, "fastnn."):
    if mod.name in ("fastnn.__main__",):
        continue
    try:
        importlib.import_module(mod.name)
    except ImportError as e:  # fastnn.sklearn, .wrappers without scikit-learn installed
        missing = getattr(e, "name", None) or getattr(e.__cause__, "name", None) or ""
        if missing.split(".")[0] not in OPTIONAL_PEERS:
            raise
after_all = snap()
print(json.dumps({"before": before, "fastnn": after_fastnn, "all": after_all,
                  "n": [n, fastnn.get_num_threads()]}))
"""


def test_imports_leave_process_state_alone():
    """Importing fastnn and every submodule changes no thread count, umask, warning filter,
    NumPy print or error option, environment variable or CPU affinity.
    """
    import json
    import os
    import subprocess
    import sys

    if not os.path.exists("/proc/self/status"):
        pytest.skip("reads the umask from /proc")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in sys.path if p])
    script = _IMPORTS % (set(OPTIONAL_PEERS),)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["fastnn"] == got["before"]
    assert got["all"] == got["before"]
    assert got["n"][0] == got["n"][1]


# ---- two estimators in two threads --------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_two_estimators_in_two_threads_keep_their_thread_counts(monkeypatch):
    import numpy as np

    pytest.importorskip("sklearn")
    from fastnn.sklearn import MLPClassifier
    from fastnn.training import Trainer

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.integers(0, 2, 64)
    barrier = threading.Barrier(2, timeout=60)
    seen: dict[int, set[int]] = {1: set(), 3: set()}
    first: set[int] = set()
    orig = Trainer.compute_gradients
    lock = threading.Lock()

    def spy(self, *args, **kwargs):
        me = threading.get_ident()
        with lock:
            fresh = me not in first
            first.add(me)
        if fresh:
            barrier.wait()  # both fits are inside their thread blocks at once
        n = fastnn.get_num_threads()
        with lock:
            seen[want[me]].add(n)
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "compute_gradients", spy)
    want: dict[int, int] = {}
    outer = fastnn.get_num_threads()
    errors: list[BaseException] = []

    def fit(n: int) -> None:
        want[threading.get_ident()] = n
        try:
            MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, batch_size=16, random_state=0,
                          n_threads=n).fit(x, y)
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    ts = [threading.Thread(target=fit, args=(n,)) for n in (1, 3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert seen == {1: {1}, 3: {3}}
    assert fastnn.get_num_threads() == outer
