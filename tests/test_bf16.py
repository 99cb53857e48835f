"""Matmul precision "bf16" (issue 20): the setting, the operand rounding, and every bf16
GEMM kernel against its NumPy twin, at every ISA level this machine has.

The twins (fastnn.reference) round each float32 operand to bfloat16 with the packing's
rule and multiply in float64; a kernel accumulates in float32, so the comparisons use
assert_close's sqrt(K)-scaled float32 tolerance.  The rounding itself is compared bit
for bit.  Subnormal policy: a float32 operand below 2**-126 is read as zero by every
level (AVX512-BF16 and AMX do so in hardware, the packing does it everywhere), whatever
set_flush_denormal says.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close, child_env

import fastnn
from fastnn import _kernels
from fastnn import kernels as K
from fastnn import reference as R

SUPPORTED = fastnn.config()["isa_supported"]
LEVELS = [lv for lv, ok in SUPPORTED.items() if ok]


def bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.uint32)


@pytest.fixture
def bf16():
    with fastnn.matmul_precision("bf16"):
        yield


# ---- the setting -------------------------------------------------------------------

def test_default_is_float32_and_set_get_round_trip():
    assert fastnn.get_matmul_precision() == "float32"
    assert fastnn.config()["matmul_precision"] == "float32"
    try:
        fastnn.set_matmul_precision("bf16")
        assert fastnn.get_matmul_precision() == "bf16"
        assert fastnn.config()["matmul_precision"] == "bf16"
        fastnn.set_matmul_precision("bfloat16")
        assert fastnn.get_matmul_precision() == "bf16"
    finally:
        fastnn.set_matmul_precision("float32")
    assert fastnn.get_matmul_precision() == "float32"
    assert _kernels.matmul_precision_in_force() == "float32"


def test_bad_precision_names_the_argument():
    with pytest.raises(ValueError, match="'float32' or 'bf16'.*'fp8'"):
        fastnn.set_matmul_precision("fp8")
    with pytest.raises(TypeError, match="precision must be a str"):
        fastnn.set_matmul_precision(16)
    with pytest.raises(ValueError, match="matmul_precision"), fastnn.matmul_precision("half"):
        pass
    assert fastnn.get_matmul_precision() == "float32"


def test_context_manager_nests_restores_and_survives_exceptions():
    with fastnn.matmul_precision("bf16"):
        assert fastnn.get_matmul_precision() == "bf16"
        assert _kernels.matmul_precision_in_force() == "bf16"
        with fastnn.matmul_precision("float32"):
            assert _kernels.matmul_precision_in_force() == "float32"
        assert _kernels.matmul_precision_in_force() == "bf16"
        with fastnn.matmul_precision(None):
            assert fastnn.get_matmul_precision() == "bf16"
    with pytest.raises(KeyError), fastnn.matmul_precision("bf16"):
        raise KeyError("x")
    assert fastnn.get_matmul_precision() == "float32"
    assert _kernels.matmul_precision_in_force() == "float32"


def test_context_manager_is_per_thread():
    """A block in bf16 on one thread leaves another thread's GEMMs in float32."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 300)).astype(np.float32)
    b = rng.standard_normal((300, 30)).astype(np.float32)
    ref32 = K.gemm(a, b)
    with fastnn.matmul_precision("bf16"):
        ref16 = K.gemm(a, b)
    assert not np.array_equal(ref32, ref16)
    inside, go, results = threading.Event(), threading.Event(), {}

    def worker_bf16():
        with fastnn.matmul_precision("bf16"):
            inside.set()
            go.wait(10)
            results["bf16"] = K.gemm(a, b), _kernels.matmul_precision_in_force()

    t = threading.Thread(target=worker_bf16)
    t.start()
    inside.wait(10)
    results["main"] = K.gemm(a, b), _kernels.matmul_precision_in_force()
    go.set()
    t.join()
    assert results["main"][1] == "float32" and np.array_equal(results["main"][0], ref32)
    assert results["bf16"][1] == "bf16" and np.array_equal(results["bf16"][0], ref16)


def test_show_config_names_precision_and_bf16_kernel(capsys):
    fastnn.show_config()
    out = capsys.readouterr().out
    assert "matmul     : float32" in out
    assert f"({fastnn.config()['kernels']['gemm_bf16']} kernel)" in out


# ---- the rounding -------------------------------------------------------------------

EDGE = np.array([
    0.0, -0.0, 1.0, -1.0,
    1 + 2.0**-8,            # halfway between 1 and 1 + 2**-7: ties to even -> 1
    1 + 3 * 2.0**-8,        # halfway, odd below -> up to 1 + 2**-6
    1 + 2.0**-8 + 2.0**-20,  # just above halfway -> up
    np.inf, -np.inf, np.nan, -np.nan,
    np.finfo(np.float32).max,  # past bf16's largest finite value -> inf
    3.3895314e38,              # bf16's largest finite value (0x7f7f): exact
    -3.3962e38,                # past the halfway point to 2**128 -> -inf
    2.0**-126,                 # the smallest normal: exact
    2.0**-127, -2.0**-140, 1e-45,  # subnormals -> signed zero
    np.float32(2.0**-126) * np.float32(1 - 2.0**-20),  # subnormal just below min normal -> 0
], dtype=np.float32)


def test_round_bf16_edge_cases():
    got = K.round_bf16(EDGE)
    want = R.round_bf16(EDGE)
    assert np.array_equal(bits(got), bits(want))
    g = got.astype(np.float64)
    assert g[4] == 1.0 and g[5] == 1 + 2.0**-6 and g[6] == 1 + 2.0**-7
    assert np.isposinf(g[11]) and g[12] == float(EDGE[12]) and np.isneginf(g[13])
    assert g[14] == 2.0**-126
    assert np.all(g[15:] == 0) and np.signbit(g[16]) and not np.signbit(g[15])
    assert np.signbit(g[1]) and np.isnan(g[9]) and np.isnan(g[10]) and np.signbit(g[10])
    assert np.all(bits(got) & 0xFFFF == 0)  # every result is a bf16 value


def test_round_bf16_quiets_signalling_nan():
    snan = np.array([0x7F800001, 0xFF800001, 0x7FA00000], np.uint32).view(np.float32)
    got = bits(K.round_bf16(snan))
    assert np.array_equal(got, bits(R.round_bf16(snan)))
    assert np.all((got & 0x7FC00000) == 0x7FC00000)  # quiet NaN, never Inf


def test_round_bf16_random_bit_patterns_match_the_twin():
    rng = np.random.default_rng(3)
    u = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    x = u.view(np.float32)
    assert np.array_equal(bits(K.round_bf16(x)), bits(R.round_bf16(x)))
    finite = np.isfinite(x) & (np.abs(x) >= 2.0**-126) & (np.abs(x) < 3.38e38)
    y = x[finite].astype(np.float64)
    err = np.abs(K.round_bf16(x[finite]).astype(np.float64) - y)
    assert np.all(err <= np.abs(y) * 2.0**-8)  # half an ulp of an 8-bit significand


# ---- the GEMM ----------------------------------------------------------------------

SHAPES = [(1, 1, 1), (3, 5, 2), (13, 17, 33), (33, 64, 31), (70, 129, 50), (12, 1030, 32),
          (64, 31, 97), (5, 600, 3)]


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_twin(bf16, m, k, n, ta, tb):
    rng = np.random.default_rng(m * 1000 + k + n)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    for alpha, beta in ((1.0, 0.0), (0.5, 2.0)):
        got = K.gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=c0.copy())
        want = R.gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=c0.copy())
        assert_close(got, want, np.float32, k=k, what=f"gemm bf16 {m}x{k}x{n} {ta} {tb}")


def test_gemm_is_really_bf16_and_float32_is_unchanged():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((40, 200)).astype(np.float32)
    b = rng.standard_normal((200, 20)).astype(np.float32)
    f32 = K.gemm(a, b)
    with fastnn.matmul_precision("bf16"):
        b16 = K.gemm(a, b)
        assert_close(b16, R.gemm(a, b), np.float32, k=200)
    exact16 = R.round_bf16(a).astype(np.float64) @ R.round_bf16(b).astype(np.float64)
    assert np.abs(b16 - exact16).max() < 1e-3 < np.abs(f32 - exact16).max()
    assert_close(f32, R.gemm(a, b), np.float32, k=200)


def test_float64_ignores_the_setting():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((30, 70)), rng.standard_normal((70, 20))
    f64 = K.gemm(a, b)
    with fastnn.matmul_precision("bf16"):
        assert np.array_equal(K.gemm(a, b), f64)
        assert np.allclose(R.gemm(a, b), a @ b)


def test_bitwise_repeatable_across_thread_counts(bf16):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((300, 700)).astype(np.float32)
    b = rng.standard_normal((700, 260)).astype(np.float32)
    with fastnn.threads(1):
        one = K.gemm(a, b)
    with fastnn.threads(2):
        two = K.gemm(a, b)
        again = K.gemm(a, b)
    assert np.array_equal(one, two) and np.array_equal(two, again)


@pytest.mark.parametrize("flush", [True, False])
def test_subnormal_operands_read_as_zero_whatever_the_flush_mode(bf16, flush):
    prev = fastnn.get_flush_denormal()
    fastnn.set_flush_denormal(flush)
    try:
        a = np.full((4, 8), 1e-39, np.float32)   # subnormal
        b = np.full((8, 3), 1e30, np.float32)
        assert np.all(K.gemm(a, b) == 0) and np.all(R.gemm(a, b) == 0)
        a[:] = 2.0**-126                          # the smallest normal: kept
        assert_close(K.gemm(a, b), R.gemm(a, b), np.float32, k=8)
        assert np.all(K.gemm(a, b) > 0)
    finally:
        fastnn.set_flush_denormal(prev)


def test_nan_inf_and_overflowing_operands_propagate(bf16):
    a = np.ones((5, 40), np.float32)
    b = np.ones((40, 6), np.float32)
    a[1, 3] = np.nan
    a[2, 5] = np.inf
    a[3, 7] = np.finfo(np.float32).max  # rounds to +inf in bf16
    b[9, 4] = -np.inf
    with np.errstate(invalid="ignore"):
        got, want = K.gemm(a, b), R.gemm(a, b)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(got[1]).all()
    assert np.array_equal(np.isposinf(got), np.isposinf(want)) and np.isposinf(got[2, 0])
    assert np.isposinf(got[3, 0])
    fine = np.isfinite(want)
    assert_close(got[fine], want[fine], np.float32, k=40)


# ---- the layers' kernels -------------------------------------------------------------

@pytest.mark.parametrize("act", ["identity", "relu", "gelu", "softmax"])
def test_dense_forward_backward_match_twins(bf16, act):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((37, 300)).astype(np.float32)
    w = (rng.standard_normal((300, 45)) * 0.1).astype(np.float32)
    b = rng.standard_normal(45).astype(np.float32)
    z = np.empty((37, 45), np.float32)
    a = K.dense_forward(x, w, b, act, z_out=z)
    zr = np.empty_like(z)
    assert_close(a, R.dense_forward(x, w, b, act, z_out=zr), np.float32, k=300, what=act)
    assert_close(z, zr, np.float32, k=300, what=act + " z")
    g = rng.standard_normal((37, 45)).astype(np.float32)
    got = K.dense_backward(g, x, w, a, z, act)
    want = R.dense_backward(g, x, w, a, z, act)
    for name, u, v, kk in zip(("dx", "dw", "db"), got, want, (45, 37, 37), strict=True):
        assert_close(u, v, np.float32, k=kk, what=f"{act} {name}")


@pytest.mark.parametrize("shape", [((2, 3, 9, 8), (5, 3, 3, 3), 1, 1),
                                   ((3, 4, 7, 7), (6, 4, 2, 2), 2, 0),
                                   ((1, 2, 6, 5), (3, 2, 1, 1), 1, 0)])
@pytest.mark.parametrize("act", ["identity", "relu", "softmax"])
def test_conv2d_matches_twins(bf16, shape, act):
    xs, ws, s, p = shape
    rng = np.random.default_rng(11)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal(ws) * 0.3).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    kk = ws[1] * ws[2] * ws[3]
    for nt in (1, 2):
        with fastnn.threads(nt):
            z = K.conv2d_forward(x, w, b, stride=s, padding=p)
            a = K.conv2d_forward(x, w, b, stride=s, padding=p, activation=act)
            assert_close(a, R.conv2d_forward(x, w, b, stride=s, padding=p, activation=act),
                         np.float32, k=kk, what=f"conv fwd {act}")
            g = rng.standard_normal(a.shape).astype(np.float32)
            got = K.conv2d_backward(g, x, w, a, z, stride=s, padding=p, activation=act)
            want = R.conv2d_backward(g, x, w, a, z, stride=s, padding=p, activation=act)
            pix = a.shape[0] * a.shape[2] * a.shape[3]
            for name, u, v, k2 in zip(("dx", "dw", "db"), got, want, (kk * ws[0], pix, pix),
                                      strict=True):
                assert_close(u, v, np.float32, k=k2, what=f"conv {act} {name} nt={nt}")


# ---- every level this machine has --------------------------------------------------

BATTERY = """
import numpy as np, fastnn
from fastnn import kernels as K, reference as R
from conftest import assert_close
rng = np.random.default_rng(5)
fastnn.set_matmul_precision("bf16")
for t in (1, 2):
    fastnn.set_num_threads(t)
    for m, k, n in ((1, 1, 1), (33, 70, 65), (100, 513, 90), (7, 1100, 40), (256, 784, 256)):
        for ta, tb in ((0, 0), (1, 0), (0, 1)):
            a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
            assert_close(K.gemm(a, b, trans_a=ta, trans_b=tb), R.gemm(a, b, trans_a=ta, trans_b=tb),
                         np.float32, k=k, what=f"{m}x{k}x{n}")
    x = rng.standard_normal((64, 200)).astype(np.float32)
    w = rng.standard_normal((200, 48)).astype(np.float32) * 0.1
    a = K.dense_forward(x, w, None, "relu")
    assert_close(a, R.dense_forward(x, w, None, "relu"), np.float32, k=200)
    xc = rng.standard_normal((3, 5, 13, 11)).astype(np.float32)
    wc = rng.standard_normal((7, 5, 3, 3)).astype(np.float32)
    assert_close(K.conv2d_forward(xc, wc, None, padding=1),
                 R.conv2d_forward(xc, wc, None, padding=1), np.float32, k=45)
# the packing's rounding, exactly: op(A) @ I and I @ op(B) give the rounded operand
# (ties, subnormals, values that round up a binade); full panels and ragged edges
tricky = np.array([1 + 2.0**-8, 1 + 3 * 2.0**-8, -(1 + 2.0**-8 + 2.0**-20), 1e-39, -1e-40,
                   2.0**-126, 3.3e38, -2.5, 0.1], np.float32)
for n in (64, 37):
    v = rng.choice(tricky, size=(n, n)).astype(np.float32)
    eye = np.eye(n, dtype=np.float32)
    want = R.round_bf16(v)
    for tr in (0, 1):
        src = np.ascontiguousarray(v.T) if tr else v
        assert np.array_equal(K.gemm(src, eye, trans_a=tr), want), ("A", n, tr)
        assert np.array_equal(K.gemm(eye, src, trans_b=tr), want), ("B", n, tr)
print(fastnn.config()["isa"], fastnn.config()["kernels"]["gemm_bf16"])
print("ok")
"""


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512", "avx512_bf16", "amx"])
def test_bf16_kernels_at_every_level(isa, tmp_path):
    """The bf16 GEMM, Dense and Conv2D against their twins in a child forced to each level
    (the portable kernel below avx512_bf16, VDPBF16PS there, AMX tiles at amx)."""
    if not SUPPORTED.get(isa):
        pytest.skip(f"this CPU (or build, or OS) has no {isa}")
    tests_dir = str(Path(__file__).resolve().parent)
    r = subprocess.run([sys.executable, "-c", BATTERY], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600,
                       env=child_env(FASTNN_ISA=isa, PYTHONPATH=os.pathsep.join(
                           [tests_dir, os.environ.get("PYTHONPATH", "")])))
    assert r.returncode == 0, r.stderr[-3000:]
    kernel = {"avx512_bf16": "avx512_bf16", "amx": "amx"}.get(isa, "generic")
    assert r.stdout.split()[-3:] == [isa, kernel, "ok"]


# ---- training ----------------------------------------------------------------------

def _blobs(n=600, d=20, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 2.5
    y = rng.integers(0, k, n)
    X = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    return X, y


def _mlp(seed=0, dtype="float32", dropout=0.1):
    m = fastnn.Sequential([fastnn.Dense(20, 64, activation="relu"), fastnn.Dropout(dropout),
                           fastnn.Dense(64, 4)], dtype=dtype, seed=seed)
    m.compile(optimizer=fastnn.optim.Adam(lr=3e-3), loss="cross_entropy", metrics=["accuracy"])
    return m


def test_fit_in_bf16_trains_like_float32_and_keeps_float32_state(tmp_path):
    X, y = _blobs()
    m32, m16 = _mlp(), _mlp()
    h32 = m32.fit(X, y, epochs=5, batch_size=32, verbose=0)
    with fastnn.matmul_precision("bf16"):
        h16 = m16.fit(X, y, epochs=5, batch_size=32, verbose=0)
        acc16 = m16.evaluate(X, y)["accuracy"]
    assert acc16 > 0.95 and m32.evaluate(X, y)["accuracy"] > 0.95
    l32, l16 = np.array(h32.history["loss"]), np.array(h16.history["loss"])
    assert l16[-1] < 0.5 * l16[0]
    assert np.all(np.abs(l16 - l32) <= 0.05 * l32 + 1e-3)   # the same curve, within bf16
    w16 = m16.get_weights()
    assert all(w.dtype == np.float32 for w in w16)
    assert not all(np.array_equal(a, b) for a, b in zip(m32.get_weights(), w16, strict=True))
    # a saved file records nothing of the precision: the same arrays come back
    m16.save(tmp_path / "m.fnn")
    back = fastnn.load(tmp_path / "m.fnn")
    assert all(np.array_equal(a, b) for a, b in zip(back.get_weights(), w16, strict=True))


def test_train_step_and_compute_gradients_in_bf16():
    X, y = _blobs(n=64)
    m = _mlp(seed=3, dropout=0.0)
    g32 = (m.compute_gradients(X, y), m.gradients().copy())
    with fastnn.matmul_precision("bf16"):
        g16 = (m.compute_gradients(X, y), m.gradients().copy())
        before = m.parameters().copy()
        loss = m.train_step(X, y)
    assert np.isfinite(loss) and not np.array_equal(before, m.parameters())
    assert abs(g16[0] - g32[0]) <= 1e-2 * abs(g32[0])
    assert not np.array_equal(g16[1], g32[1])
    assert np.linalg.norm(g16[1] - g32[1]) <= 0.03 * np.linalg.norm(g32[1])


def test_float64_model_ignores_bf16():
    X, y = _blobs(n=64)
    a, b = _mlp(seed=4, dtype="float64", dropout=0.0), _mlp(seed=4, dtype="float64", dropout=0.0)
    la = a.compute_gradients(X, y)
    with fastnn.matmul_precision("bf16"):
        lb = b.compute_gradients(X, y)
    assert la == lb and np.array_equal(a.gradients(), b.gradients())


def test_cnn_fits_in_bf16():
    rng = np.random.default_rng(9)
    n = 200
    y = rng.integers(0, 2, n)
    X = rng.standard_normal((n, 1, 8, 8)).astype(np.float32) * 0.5
    X[y == 1, :, 2:6, 2:6] += 1.5   # a bright square for class 1
    m = fastnn.Sequential([fastnn.Conv2D(1, 6, 3, padding=1, activation="relu"),
                           fastnn.MaxPool2D(2), fastnn.Flatten(), fastnn.Dense(96, 2)], seed=0)
    m.compile(optimizer=fastnn.optim.Adam(lr=5e-3), loss="cross_entropy", metrics=["accuracy"])
    with fastnn.matmul_precision("bf16"):
        h = m.fit(X, y, epochs=6, batch_size=20, verbose=0)
        assert m.evaluate(X, y)["accuracy"] > 0.95
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]


def test_sklearn_estimator_matmul_precision_parameter():
    pytest.importorskip("sklearn")
    from fastnn.sklearn import MLPClassifier

    X, y = _blobs(n=300)
    kw = dict(hidden_layer_sizes=(32,), max_iter=30, random_state=0, dtype="float32")
    c32 = MLPClassifier(**kw).fit(X, y)
    c16 = MLPClassifier(matmul_precision="bf16", **kw).fit(X, y)
    assert c16.get_params()["matmul_precision"] == "bf16"
    assert c16.score(X, y) > 0.95 and c32.score(X, y) > 0.95
    assert not np.array_equal(c16.coefs_[0], c32.coefs_[0])
    assert fastnn.get_matmul_precision() == "float32"  # the fit's block restored it
    with pytest.raises(ValueError, match="matmul_precision"):
        MLPClassifier(matmul_precision="fp16", **kw).fit(X, y)


def test_data_parallel_in_bf16(tmp_path):
    """Two MPI ranks in bf16 match one process in bf16 (the float32 cases of the
    distributed equivalence test; only the summation order over the batch and the path
    of the 1/m scaling differ).  A one-ulp difference in a float32 delta can move its
    bf16 rounding by one bf16 ulp (2**-8), so the runs agree to float32 precision with
    SGD but not with Adam + L1 (Adam normalizes the tiny gradients of weights near 0,
    where L1's sign flips): there the loss curves must agree, the weights loosely."""
    import json

    from test_distributed import _ok, run_ranks

    _ok(run_ranks("equiv_bf16", tmp_path))
    results = json.loads((tmp_path / "equiv_bf16.json").read_text())
    assert results
    for r in results:
        assert r["ranks_bitwise_equal"], r["name"]
        tol = 5e-5 if "sgd" in r["name"] or "bce" in r["name"] else 0.05
        assert r["max_abs_weight_diff"] <= tol * max(1.0, r["max_abs_weight"]), r["name"]
        ld, ls = np.array(r["loss"][0]), np.array(r["loss"][1])
        assert np.all(np.abs(ld - ls) <= 1e-3 * ls), r["name"]
        assert r["steps"][0] == r["steps"][1]
