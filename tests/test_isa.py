"""The ISA registry (FASTNN_ISA, config) and the subnormal mode (FTZ/DAZ).

Twin policy for subnormals: the NumPy twins in fastnn.reference compute with
IEEE gradual underflow, so the kernel tests elsewhere avoid subnormal inputs
and results.  The tests here feed subnormals on purpose, with values chosen so
that both modes have an exact answer: with flushing on, the kernel's result is
the twin's result on inputs whose subnormals were replaced by zero (and with
subnormal results replaced by zero); with flushing off, it is the twin's IEEE
result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import child_env

import fastnn
from fastnn import _kernels
from fastnn import kernels as K
from fastnn import reference as R

# each architecture's chain, lowest first (x86-64: generic < avx2 < avx512 < avx512_bf16
# < amx; arm64: generic < neon); a level of the other architecture is never supported
LEVELS = ["generic", "avx2", "avx512", "avx512_bf16", "amx", "neon"]
FAMILIES = ["gemm_f32", "gemm_f64", "conv_f32", "conv_f64", "activation", "dropout",
            "optimizer", "all_finite", "loss", "gemm_bf16"]
SUPPORTED = fastnn.config()["isa_supported"]
BEST = [lv for lv in LEVELS if SUPPORTED[lv]][-1]
X86 = _kernels._mxcsr() != 0
FTZ_DAZ = 0x8040


def run_child(code: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    """Run `code` in a child Python that imports this fastnn, with env added."""
    return subprocess.run([sys.executable, "-c", code], env=child_env(**env),
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)


def test_config_names_every_family_and_feature():
    cfg = fastnn.config()
    assert cfg["isa"] in LEVELS
    assert list(cfg["kernels"]) == FAMILIES
    rank = {lv: i for i, lv in enumerate(LEVELS)}
    for fam, isa in cfg["kernels"].items():
        assert rank[isa] <= rank[cfg["isa"]], (fam, isa)
    for feat in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16",
                 "amx_tile"):
        assert isinstance(cfg["cpu_features"][feat], bool)
    assert cfg["cpu_has_avx2"] == (cfg["cpu_features"]["avx2"] and cfg["cpu_features"]["fma"])
    assert cfg["isa_supported"]["generic"]
    for dt in ("float32", "float64"):
        b = cfg[dt]
        assert b["MR"] * b["NR"] <= 32 * 32


@pytest.mark.parametrize("isa", LEVELS)
def test_forced_level_runs_its_kernels(isa, tmp_path):
    """FASTNN_ISA=<level> picks that level (when the CPU has it) and its families."""
    if not SUPPORTED[isa]:
        pytest.skip(f"this CPU (or build) has no {isa}")
    code = ("import warnings; warnings.simplefilter('error')\n"
            "import fastnn; c = fastnn.config()\n"
            "print(c['isa']); print(' '.join(c['kernels'].values()))\n")
    r = run_child(code, tmp_path, FASTNN_ISA=isa)
    assert r.returncode == 0, r.stderr
    got, fams = r.stdout.split("\n")[:2]
    assert got == isa
    rank = {lv: i for i, lv in enumerate(LEVELS)}
    assert all(rank[f] <= rank[isa] for f in fams.split())
    if isa in ("avx512_bf16", "amx"):  # the bf16 levels register the bf16 GEMM only
        assert fams.split()[FAMILIES.index("gemm_bf16")] == isa
        assert fams.split()[FAMILIES.index("optimizer")] == "avx512"
    elif isa != "generic":  # each level registers at least its elementwise loops
        assert fams.split()[FAMILIES.index("optimizer")] == isa


BATTERY = """
import numpy as np, fastnn
from fastnn import _kernels, kernels as K, reference as R
from conftest import assert_close
rng = np.random.default_rng(5)
for t in (1, 2):
    fastnn.set_num_threads(t)
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((70, 37)).astype(dt)  # odd sizes: vector tails at every width
        for act in ("relu", "sigmoid", "tanh", "gelu", "silu", "softmax"):
            a = K.activation_forward(x, act)
            assert_close(a, R.activation_forward(x, act), dt, what=act)
            z = x if act in ("gelu", "silu") else None
            assert_close(K.activation_backward(x, a, z, act), R.activation_backward(x, a, z, act),
                         dt, what=act + " backward")
        n = 100_003  # several per-thread shares
        w, g = rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)
        m, v = np.abs(g) * dt(0.1), g * g
        w2, m2, v2 = w.copy(), m.copy(), v.copy()
        K.adam_step(w, g, m, v, step=3)
        R.adam_step(w2, g, m2, v2, step=3)
        assert_close(w, w2, dt, what="adam w")
        assert_close(v, v2, dt, what="adam v")
        y, mask = K.dropout_forward(g, 0.3, 7)
        y2, mask2 = R.dropout_forward(g, 0.3, 7)
        assert np.array_equal(mask, mask2) and np.array_equal(y, y2)
        assert _kernels.all_finite(g) and not _kernels.all_finite(np.append(g, np.inf).astype(dt))
        lab = rng.integers(0, 37, 70)
        l1, g1 = K.cross_entropy(x, lab)
        l2, g2 = R.cross_entropy(x, lab)
        assert abs(l1 - l2) <= 1e-5 * abs(l2) and np.allclose(g1, g2, rtol=1e-4, atol=1e-7)
        xc = rng.standard_normal((3, 5, 13, 11)).astype(dt)
        wc, bc = rng.standard_normal((7, 5, 3, 3)).astype(dt), rng.standard_normal(7).astype(dt)
        assert_close(K.conv2d_forward(xc, wc, bc, padding=1, activation="relu"),
                     R.conv2d_forward(xc, wc, bc, padding=1, activation="relu"), dt, k=45,
                     what="conv2d")
print(fastnn.config()["isa"])
print("ok")
"""


@pytest.mark.parametrize("isa", LEVELS)
def test_level_kernels_match_reference(isa, tmp_path):
    """At each level the CPU has: activations, Adam, dropout, all_finite, cross-entropy
    and conv against their twins, at 1 and 2 threads, in a child forced to that level."""
    if not SUPPORTED[isa]:
        pytest.skip(f"this CPU (or its OS) has no {isa}")
    tests_dir = str(Path(__file__).resolve().parent)
    r = run_child(BATTERY, tmp_path, FASTNN_ISA=isa,
                  PYTHONPATH=os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == [isa, "ok"]


def test_unknown_level_warns_and_uses_the_best(tmp_path):
    code = "import fastnn; print(fastnn.config()['isa'])"
    r = run_child(code, tmp_path, FASTNN_ISA="bogus")
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" in r.stderr and "bogus" in r.stderr
    assert r.stdout.split()[-1] == BEST


def test_unavailable_level_warns(tmp_path):
    missing = [lv for lv in LEVELS if not SUPPORTED[lv]]
    if not missing:
        pytest.skip("this CPU has every level (avx512 included): nothing is unavailable")
    code = "import fastnn; print(fastnn.config()['isa'])"
    r = run_child(code, tmp_path, FASTNN_ISA=missing[0])
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" in r.stderr and "not supported" in r.stderr
    assert r.stdout.split()[-1] == BEST


def test_unavailable_level_message(monkeypatch):
    """The warning for a level the CPU lacks, as fastnn gives it at import (the C side's
    answer stubbed, so that this runs on a CPU that has every level)."""
    monkeypatch.setenv("FASTNN_ISA", "avx512")
    monkeypatch.setattr(_kernels, "isa_request", lambda: "unavailable")
    with pytest.warns(RuntimeWarning, match="'avx512' is not supported by this CPU"):
        fastnn._config.warn_isa_request()
    monkeypatch.setattr(_kernels, "isa_request", lambda: "ok")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastnn._config.warn_isa_request()


def test_window_out_size_matches_the_layers_formula():
    for n, k, s, p in [(28, 3, 1, 1), (28, 5, 2, 0), (7, 7, 1, 0), (5, 2, 3, 1)]:
        assert _kernels.window_out_size(n, k, s, p) == (n + 2 * p - k) // s + 1
    assert _kernels.window_out_size(2, 5, 1, 0) == -1
    assert _kernels.window_out_size(4, 0, 1, 0) == -1


# ---- subnormals ----------------------------------------------------------------------


@pytest.fixture
def flush_mode():
    """Restore the process's subnormal mode after a test that changes it."""
    old = fastnn.get_flush_denormal()
    yield
    fastnn.set_flush_denormal(old)


def test_flush_is_on_by_default():
    assert fastnn.get_flush_denormal() is True
    assert fastnn.config()["flush_denormal"] is True
    with pytest.raises(TypeError):
        fastnn.set_flush_denormal(1)


@pytest.mark.skipif(not X86, reason="no MXCSR on this CPU: flushing is a no-op")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flush", [True, False])
def test_sgd_subnormal_gradient(dtype, flush, flush_mode, threads):
    """w = 0 - 1 * g with subnormal g: -g (IEEE) or 0 (DAZ), on every thread's share."""
    fastnn.set_flush_denormal(flush)
    n = 200_003  # several 32k-element shares: both threads do work at 2 threads
    tiny = np.finfo(dtype).smallest_normal
    g = np.full(n, tiny / 4, dtype=dtype)
    g[::7] = 1.0  # normal values are untouched by either mode
    w = np.zeros(n, dtype=dtype)
    K.sgd_step(w, g, lr=1.0)
    gz = np.where(np.abs(g) < tiny, 0, g).astype(dtype) if flush else g
    want = R.sgd_step(np.zeros(n, dtype=dtype), gz, lr=1.0)  # the twin on flushed inputs
    np.testing.assert_array_equal(w, want)


@pytest.mark.skipif(not X86, reason="no MXCSR on this CPU: flushing is a no-op")
@pytest.mark.parametrize("flush", [True, False])
def test_gemm_subnormal_products(flush, flush_mode, threads):
    """Products of 2^-70 * 2^-70 = 2^-140 are subnormal in float32: kept or flushed (FTZ)."""
    fastnn.set_flush_denormal(flush)
    m = k = n = 160  # big enough for the engine to use 2 threads
    a = np.full((m, k), 2.0**-70, dtype=np.float32)
    b = np.zeros((k, n), dtype=np.float32)
    b[0] = 2.0**-70  # one product per output: 2^-140 exactly, no rounding
    got = K.gemm(a, b)
    want = np.zeros((m, n), np.float32) if flush else R.gemm(a, b).astype(np.float32)
    if not flush:
        assert want[0, 0] == np.float32(2.0**-140)
    np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not X86, reason="no MXCSR on this CPU")
@pytest.mark.parametrize("flush", [True, False])
def test_mxcsr_restored_after_calls(flush, flush_mode):
    """Each call leaves the caller's MXCSR as it found it, whatever the mode."""
    fastnn.set_flush_denormal(flush)
    before = _kernels._mxcsr()
    x = np.random.default_rng(0).standard_normal((64, 300)).astype(np.float32)
    K.gemm(x, x.T)
    K.dense_forward(x, x.T[:, :10].copy(), None, activation="relu")
    w, m, v = np.zeros(300, np.float32), np.zeros(300, np.float32), np.zeros(300, np.float32)
    K.adam_step(w, x[0], m, v, step=1)
    assert _kernels.all_finite(x.reshape(-1))
    assert _kernels._mxcsr() == before
    # a caller's own FTZ bit survives a call that runs with flushing off (and vice versa)
    try:
        _kernels._set_mxcsr(before ^ FTZ_DAZ)
        K.gemm(x, x.T)
        assert _kernels._mxcsr() == before ^ FTZ_DAZ
    finally:
        _kernels._set_mxcsr(before)
    assert _kernels._mxcsr() == before


@pytest.mark.skipif(not X86, reason="no MXCSR on this CPU")
def test_numpy_between_calls_keeps_ieee(flush_mode):
    """Flushing is only inside kernel calls: NumPy code around them still underflows gradually."""
    fastnn.set_flush_denormal(True)
    x = np.ones((8, 8), np.float32)
    K.gemm(x, x)
    tiny = np.float32(np.finfo(np.float32).smallest_normal)
    assert tiny / np.float32(4) != 0


@pytest.mark.skipif(not X86, reason="no MXCSR on this CPU")
@pytest.mark.parametrize("flush", [True, False])
def test_adam_subnormal_state(flush, flush_mode, threads):
    """Adam with subnormal m, v and zero gradients: m, v decay (IEEE) or read as 0 (DAZ)."""
    fastnn.set_flush_denormal(flush)
    n = 100_000
    m = np.full(n, 1e-40, np.float32)
    v = np.full(n, 1e-40, np.float32)
    g = np.zeros(n, np.float32)
    w = np.ones(n, np.float32)
    K.adam_step(w, g, m, v, step=10)
    if flush:
        assert not m.any() and not v.any()
        np.testing.assert_array_equal(w, 1.0)
    else:  # the IEEE twin
        w2 = np.ones(n, np.float32)
        m2, v2 = np.full(n, 1e-40, np.float32), np.full(n, 1e-40, np.float32)
        R.adam_step(w2, g, m2, v2, step=10)
        assert m.any()
        np.testing.assert_array_equal(m, m2)
        np.testing.assert_array_equal(v, v2)
        np.testing.assert_allclose(w, w2, rtol=1e-6)
