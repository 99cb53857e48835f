"""The GEMM engine's own corners: edge tiles, K > KC, N > NC, small-M paths, the
fused epilogue, beta = 1 accumulation, the C <- C - lr * A^T B update form,
repeatability per thread count, and both ISA paths (the other one in a subprocess).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close, child_env, in_float64, seeded_rng

import fastnn
from fastnn import kernels as K
from fastnn import reference as R


def blocking(dtype):
    cfg = fastnn.config()["float32" if np.dtype(dtype) == np.float32 else "float64"]
    return cfg["MR"], cfg["NR"], cfg["MC"], cfg["KC"], cfg["NC"]


def rng_for(*key):
    return seeded_rng(*key)  # not hash(): salted per process, so the data changed every run


def engine_shapes(dtype):
    """Shapes derived from the blocking in use: every edge of every loop."""
    mr, nr, mc, kc, nc = blocking(dtype)
    return [
        (mr - 1, kc, nr - 1),            # one partial tile
        (mr + 1, kc + 1, nr + 1),        # K just over one KC block
        (mc + 1, 2 * kc + 3, 2 * nr + 5),  # M over MC, K over 2 KC
        (2 * mc + mr - 1, 5, 3 * nr),    # many row blocks, tiny K
        (3, kc * 3 + 1, nc + nr + 3),    # N over NC, small M
        (16, 784, 10),                   # batch 16 into a 10-wide output layer
        (64, 784, 256),                  # the MNIST hidden layer
        (1, 257, 1),
    ]


@pytest.mark.parametrize("case", range(8))
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_engine_edges(case, ta, tb, dtype, threads):
    m, k, n = engine_shapes(dtype)[case]
    rng = rng_for("edges", case, ta, tb)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    got = K.gemm(a, b, trans_a=ta, trans_b=tb)
    assert_close(got, in_float64(R.gemm, a, b, trans_a=ta, trans_b=tb), dtype, k,
                 f"gemm {m}x{k}x{n} ta={ta} tb={tb}")


@pytest.mark.parametrize("k_case", range(5))
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_tile_boundaries_alpha_beta(k_case, ta, tb, dtype, threads):
    """Every row count and column count around the tile in use (MR +- 1, NR +- 1,
    half an NR, where a vector-wide kernel switches from one to two vectors),
    primes, and k around KC, with alpha and beta both != 0, 1: corner tiles,
    the masks of an edge kernel and the beta path of both."""
    mr, nr, _, kc, _ = blocking(dtype)
    k = [1, 7, kc - 1, kc + 1, 2 * kc + 13][k_case]
    ms = sorted({1, mr - 1, mr, mr + 1, 2 * mr + 3, 31})
    ns = sorted({1, nr // 2 - 1, nr // 2, nr // 2 + 1, nr - 1, nr, nr + 1, 2 * nr + 5, 37})
    rng = rng_for("tiles", k_case, ta, tb)
    for m in ms:
        for n in ns:
            a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
            b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            got = K.gemm(a, b, trans_a=ta, trans_b=tb, alpha=0.5, beta=-1.5, out=c0.copy())
            want = (0.5 * in_float64(R.gemm, a, b, trans_a=ta, trans_b=tb)
                    - 1.5 * c0.astype(np.float64))
            assert_close(got, want, dtype, k, f"gemm {m}x{k}x{n} ta={ta} tb={tb} a=.5 b=-1.5")


@pytest.mark.parametrize("m,k,n", [(7, 300, 33), (130, 600, 70), (1, 1, 1)])
def test_beta_one_accumulates(m, k, n, dtype, threads):
    rng = rng_for("acc", m, k, n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    got = K.gemm(a, b, beta=1.0, out=c0.copy())
    assert_close(got, c0 + in_float64(R.gemm, a, b), dtype, k, "beta=1")


@pytest.mark.parametrize("batch,inp,out", [(16, 784, 256), (128, 256, 10), (37, 300, 17)])
def test_update_form_weight_step(batch, inp, out, dtype, threads):
    """W <- W - lr * x^T delta as one GEMM (trans_a, alpha=-lr, beta=1)."""
    rng = rng_for("upd", batch, inp, out)
    x = rng.standard_normal((batch, inp)).astype(dtype)
    delta = rng.standard_normal((batch, out)).astype(dtype)
    w0 = rng.standard_normal((inp, out)).astype(dtype)
    lr = 0.01
    got = K.gemm(x, delta, trans_a=True, alpha=-lr, beta=1.0, out=w0.copy())
    want = w0.astype(np.float64) - lr * (x.astype(np.float64).T @ delta.astype(np.float64))
    assert_close(got, want, dtype, batch, "W - lr x^T delta")


@pytest.mark.parametrize("activation", ["relu", "identity", "tanh", "gelu"])
@pytest.mark.parametrize("batch,inp,out", [(128, 784, 256), (5, 300, 10), (145, 513, 33)])
def test_epilogue_bias_activation(activation, batch, inp, out, dtype, threads):
    rng = rng_for("ep", activation, batch, inp, out)
    x = rng.standard_normal((batch, inp)).astype(dtype)
    w = (rng.standard_normal((inp, out)) / np.sqrt(inp)).astype(dtype)
    b = rng.standard_normal(out).astype(dtype)
    z = np.empty((batch, out), dtype)
    got = K.dense_forward(x, w, b, activation=activation, z_out=z)
    z_want = np.empty((batch, out), dtype)
    want = R.dense_forward(x, w, b, activation=activation, z_out=z_want)
    assert_close(z, z_want, dtype, inp, f"z {activation}")
    assert_close(got, want, dtype, inp, f"a {activation}")


@pytest.mark.parametrize("m,k,n", [(64, 784, 256), (1000, 600, 530), (6, 2000, 16)])
def test_bitwise_repeatable_per_thread_count(m, k, n, threads):
    rng = rng_for("rep", m, k, n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    first = K.gemm(a, b)
    for _ in range(3):
        assert np.array_equal(K.gemm(a, b), first)


def test_thread_counts_give_identical_bits(dtype):
    """Every C tile is computed by the same micro-kernel calls whatever the
    thread count (no shared k split), so the results are bitwise equal."""
    rng = rng_for("tc")
    a = rng.standard_normal((500, 700)).astype(dtype)
    b = rng.standard_normal((700, 300)).astype(dtype)
    old = fastnn.get_num_threads()
    try:
        res = []
        for t in (1, 2, 3):
            fastnn.set_num_threads(t)
            res.append(K.gemm(a, b))
    finally:
        fastnn.set_num_threads(old)
    for r in res[1:]:
        assert np.array_equal(r, res[0])


def test_views_with_leading_dimension(dtype):
    """Non-contiguous inputs are converted at the boundary; results unchanged."""
    rng = rng_for("view")
    big = rng.standard_normal((90, 130)).astype(dtype)
    a = big[3:50, 7:100]
    b = rng.standard_normal((93, 40)).astype(dtype)
    assert_close(K.gemm(a, b), in_float64(R.gemm, a, b), dtype, 93, "view")


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512", "neon"])
def test_other_isa_in_subprocess(isa, tmp_path):
    """Run a few engine shapes with the ISA forced at import (each level this CPU has)."""
    if not fastnn.config()["isa_supported"][isa]:
        pytest.skip(f"this CPU (or its OS) has no {isa}")
    code = (
        "import numpy as np, fastnn; from fastnn import kernels as K\n"
        "cfg = fastnn.config(); print(cfg['isa'])\n"
        "rng = np.random.default_rng(1)\n"
        "for dt in (np.float32, np.float64):\n"
        "  for (m,k,n) in [(5,300,3),(64,784,256),(150,520,37),(13,1000,4100)]:\n"
        "    for ta in (0,1):\n"
        "      for tb in (0,1):\n"
        "        a = rng.standard_normal((k,m) if ta else (m,k)).astype(dt)\n"
        "        b = rng.standard_normal((n,k) if tb else (k,n)).astype(dt)\n"
        "        for t in (1,2):\n"
        "          fastnn.set_num_threads(t)\n"
        "          got = K.gemm(a,b,trans_a=ta,trans_b=tb).astype(np.float64)\n"
        "          want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)\n"
        "          tol = (1e-4 if dt == np.float32 else 1e-12) * np.sqrt(k)\n"
        "          assert np.max(np.abs(got-want)/(np.abs(want)+1)) < tol, (dt,m,k,n,ta,tb,t)\n"
        "print('ok')\n"
    )
    env = child_env(FASTNN_ISA=isa)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[-1] == "ok"
    assert lines[0] == isa
