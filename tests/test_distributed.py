"""Data-parallel training over MPI (fastnn.distributed).

The multi-rank tests launch ``mpiexec -n 2 python tests/mpi_worker.py MODE OUTDIR`` in a
subprocess with a timeout (a hang is a failure) and check what the ranks wrote.  They
are skipped only when mpi4py is not importable (``pip install "fastnn[mpi]"``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import child_env

import fastnn as fnn

HERE = Path(__file__).resolve().parent
WORKER = HERE / "mpi_worker.py"
TIMEOUT = 300  # generous: the machine is shared; a hang still fails

# Equivalence tolerance (max |w_distributed - w_single| over all weights, |w| <= ~1):
# the two runs differ only in the order of summation over the batch (dW = X^T delta
# is summed over each rank's half, then the halves are added by Allreduce) and in
# the path of the 1/m scaling, i.e. O(eps) relative per step, propagated linearly by
# the optimizer over k ~ 20-30 steps.  Observed: <= 2 ulp (2e-16 float64, 2e-7
# float32).  The bounds allow ~500 ulp so they hold on other CPUs / MPI libraries,
# while a real error (a wrong shard, mask, weighting or penalty) gives >= 1e-4.
TOL = {"float64": 1e-13, "float32": 5e-5}


def _need_mpi() -> None:
    """Skip unless mpi4py imports (the only reason these tests skip)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"mpi4py is not importable ({exc}); pip install \"fastnn[mpi]\"")


def _mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"  # the `mpich` wheel's, in this venv
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpi4py is installed but no mpiexec was found (pip install mpich)")
    return found


def _env() -> dict[str, str]:
    return child_env(OMP_NUM_THREADS="1")  # the worker imports the same fastnn as this run


def run_ranks(mode: str, out: Path, n: int = 2) -> subprocess.CompletedProcess:
    _need_mpi()
    cmd = [_mpiexec(), "-n", str(n), sys.executable, str(WORKER), mode, str(out)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                              env=_env())
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(cmd)} did not finish in {TIMEOUT} s (hang?): "
                    f"{(exc.stderr or b'')[-2000:]!r}")


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-3000:]}"


# ---- no MPI needed ------------------------------------------------------------------
def test_import_fastnn_does_not_import_mpi4py():
    code = ("import sys, fastnn, fastnn.distributed; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


@pytest.mark.parametrize("m", [1, 2, 3, 7, 10, 256, 1001])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 64])
def test_shard_bounds_partition_the_batch_contiguously(m, size):
    from fastnn.distributed import shard_bounds

    bounds = [shard_bounds(m, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == m
    for (_, b), (c, _) in zip(bounds, bounds[1:]):
        assert b == c
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == m


# ---- one rank, no mpiexec -------------------------------------------------------------
def test_single_rank_is_bitwise_sequential_fit(tmp_path):
    _need_mpi()
    proc = subprocess.run([sys.executable, str(WORKER), "single", str(tmp_path)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    _ok(proc)
    res = json.loads((tmp_path / "single.json").read_text())
    assert res["size"] == 1 and res["equal"], res
    assert res["loss"][0] == res["loss"][1]


# ---- mpiexec -n 2 -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def equiv(tmp_path_factory):
    out = tmp_path_factory.mktemp("equiv")
    _ok(run_ranks("equiv", out))
    return {c["name"]: c for c in json.loads((out / "equiv.json").read_text())}


CASE_NAMES = ["ce-f64-adam-even", "ce-f32-adam-odd", "mse-f64-sgd-odd", "bce-f64-rmsprop",
              "ce-f32-sgd-nopenalty", "ce-f64-batch1", "softmax-ce-f64-metrics",
              "sigmoid-bce-f32-metrics"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_two_ranks_equal_single_process(equiv, name):
    """Weights, optimizer state, dropout counters, RNG and counters after 3 epochs equal a
    single-process fit with the same global batch (dropout and L1/L2 included; batches
    not divisible by 2, a last partial batch, and a global batch of 1)."""
    c = equiv[name]
    tol = TOL[c["dtype"]]
    assert c["max_abs_weight_diff"] <= tol, c
    assert c["max_abs_optstate_diff"] <= tol, c
    assert c["ranks_bitwise_equal"], "ranks' weights differ"
    assert c["dropout_counters"][0] == c["dropout_counters"][1]
    assert len(set(c["steps"])) == 1, c["steps"]
    assert c["epochs"][0] == c["epochs"][1] == 3
    assert c["rng_equal"]
    rtol = 1e-5 if c["dtype"] == "float32" else 1e-12
    np.testing.assert_allclose(c["loss"][0], c["loss"][1], rtol=rtol)
    np.testing.assert_allclose(c["val_loss"][0], c["val_loss"][1], rtol=rtol)
    if c["acc"][1] is not None:
        np.testing.assert_allclose(c["acc"][0], c["acc"][1], rtol=1e-6)
        np.testing.assert_allclose(c["val_acc"][0], c["val_acc"][1], rtol=1e-12)


@pytest.mark.parametrize("name", ["softmax-ce-f64-metrics", "sigmoid-bce-f32-metrics"])
def test_two_ranks_fused_output_and_every_metric_equal_single_process(equiv, name):
    """A softmax / sigmoid output trains fused with its loss under 2 ranks as in one
    process, and every compiled metric (training and validation) is reduced over the
    ranks: the History equals the single process's."""
    c = equiv[name]
    assert c["fused"] == ["fused", "fused"]
    hd, hs = c["history"]
    assert sorted(hd) == sorted(hs)
    rtol = 1e-5 if c["dtype"] == "float32" else 1e-12
    names = [k for k in hs if k not in ("lr", "samples_per_second")]
    assert {"accuracy", "val_accuracy"} <= set(names) and len(names) >= 6, names
    for k in names:
        np.testing.assert_allclose(hd[k], hs[k], rtol=rtol, atol=1e-12, err_msg=k)


def test_one_rank_failing_stops_every_rank_and_keeps_checkpoint(tmp_path):
    """Rank 1 raises in a callback in epoch 2: both ranks raise (rank 1 its ValueError,
    rank 0 a DistributedError naming rank 1) instead of hanging; the checkpoint rank 0
    wrote after epoch 1 loads and holds exactly the epoch-1 weights."""
    proc = run_ranks("fail", tmp_path)
    assert proc.returncode != 0
    r0 = json.loads((tmp_path / "fail-0.json").read_text())
    r1 = json.loads((tmp_path / "fail-1.json").read_text())
    assert r0["outcome"] == "DistributedError", r0
    assert "rank 1" in r0["message"] and "injected failure" in r0["message"]
    assert "epoch 2" in r0["message"] and r0["failures"].keys() == {"1"}
    assert r1["outcome"] == "ValueError" and "every rank stopped" in r1["notes"][0]
    assert r0["epoch"] == r1["epoch"] == 1
    model = fnn.load(tmp_path / "ckpt.fnn")
    assert model.epoch == 1
    ref = np.load(tmp_path / "ref_epoch1.npy")
    assert np.max(np.abs(model._flat_params - ref)) <= TOL["float64"]


def test_checkpoint_write_failing_on_rank0_stops_every_rank(tmp_path):
    """Rank 0's checkpoint write fails half-way (disk full) after epoch 3: every rank
    stops with an error, the epoch-2 checkpoint is intact and no temporary file is left."""
    proc = run_ranks("failsave", tmp_path)
    r0 = json.loads((tmp_path / "failsave-0.json").read_text())
    r1 = json.loads((tmp_path / "failsave-1.json").read_text())
    assert r0["outcome"] == "OSError", (r0, proc.stderr[-2000:])
    assert r1["outcome"] == "DistributedError" and "rank 0" in r1["message"]
    assert "No space left" in r1["message"]
    model = fnn.load(tmp_path / "ckpt.fnn")
    assert model.epoch == 2
    ref = np.load(tmp_path / "ref_epoch2.npy")
    assert np.max(np.abs(model._flat_params - ref)) <= TOL["float64"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_exception_outside_protocol_aborts_every_rank(tmp_path):
    """An exception inside MPI itself on rank 1 (simulated in Allreduce) cannot be agreed
    on: DataParallel prints it and calls comm.Abort(1); mpiexec ends every rank with a
    non-zero status (no hang) and the last checkpoint (epoch 1) still loads."""
    proc = run_ranks("crash", tmp_path)
    assert proc.returncode != 0
    assert "simulated MPI failure" in proc.stderr
    assert "aborting every rank" in proc.stderr
    assert not list(tmp_path.glob("crash-*.json"))  # neither rank returned from fit
    assert fnn.load(tmp_path / "ckpt.fnn").epoch == 1


def test_fit_distributed_true_evaluate_save_and_mismatches(tmp_path):
    proc = run_ranks("api", tmp_path)
    _ok(proc)
    r0 = json.loads((tmp_path / "api-0.json").read_text())
    r1 = json.loads((tmp_path / "api-1.json").read_text())
    # only rank 0 prints progress
    assert proc.stdout.count("epoch 1/2") == 1 and proc.stdout.count("epoch 2/2") == 1
    assert r0["history_keys"] == r1["history_keys"]
    assert "val_loss" in r0["history_keys"] and "accuracy" in r0["history_keys"]
    assert r0["loss"] == r1["loss"]
    assert r0["evaluate"] == r1["evaluate"]
    for k in ("loss", "accuracy"):
        assert abs(r0["evaluate"][k] - r0["evaluate_local"][k]) <= 1e-12
    for r in (r0, r1):
        assert "differs from rank 0 in batch_size" in r["mismatch"]
        assert r["loaded_epoch"] == 2
    assert r0["bad_input"].startswith("DistributedError") and "rank 1" in r0["bad_input"]
    assert r1["bad_input"].startswith("ValueError") and "per-sample shape" in r1["bad_input"]


def test_readme_train_py_runs_under_mpiexec(tmp_path):
    """The README's train.py, run as written with mpiexec -n 2."""
    import re

    readme = HERE.parent / "README.md"
    if not readme.exists():
        pytest.skip("README.md not beside the tests")
    text = readme.read_text()
    section = text[text.index("## Distributed training"):]
    code = re.search(r"```py\n(.*?)```", section, flags=re.S).group(1)
    assert "distributed=True" in code
    (tmp_path / "train.py").write_text(code)
    _need_mpi()
    proc = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "train.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    _ok(proc)
    assert proc.stdout.count("epoch 5/5") == 1  # only rank 0 prints
    assert fnn.load(tmp_path / "ckpt.fnn").epoch == 5


def test_stop_training_on_one_rank_stops_all_after_the_same_step(tmp_path):
    """model.stop_training set by a callback on rank 1 only (mid-epoch, and after an
    epoch's last batch): every rank stops after that step, with the weights, step count
    and dropout counters of a single process whose callback stopped at the same batch."""
    _ok(run_ranks("stop", tmp_path))
    res = json.loads((tmp_path / "stop.json").read_text())
    for label in ("mid", "last"):
        r = res[label]
        assert r["diff"] <= TOL["float64"] and r["ranks_equal"], r
        assert r["steps"][0] == r["steps"][1] and r["epochs"][0] == r["epochs"][1], r
        assert r["counters"][0] == r["counters"][1]
        np.testing.assert_allclose(r["loss"][0], r["loss"][1], rtol=1e-12)
    assert res["mid"]["steps"][0] == 11 + 4 and res["last"]["steps"][0] == 11
