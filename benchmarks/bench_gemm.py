"""float32 GEMM: fastnn vs numpy.matmul (OpenBLAS) vs torch.matmul, 1 and 2 threads.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. \
        pytest benchmarks/bench_gemm.py --benchmark-group-by=param:shape,param:n_threads

The ratio table from one interleaved run is benchmarks/report.py's job; this
suite gives pytest-benchmark's statistics per contestant.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import LIBS, gflops, torch

from fastnn import kernels as K

SHAPES = [(64, 784, 256), (256, 784, 256), (1024, 784, 256), (256, 256, 256),
          (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048)]
# the training GEMMs of a 784-256-10 MLP at batch 128: forward, x^T delta, delta W^T
TRAINING = [("fwd", 128, 784, 256, False, False), ("dW", 784, 128, 256, True, False),
            ("dX", 128, 256, 784, False, True), ("out_fwd", 128, 256, 10, False, False)]


def make_call(lib, a, b, ta=False, tb=False):
    c = np.empty((a.shape[1] if ta else a.shape[0], b.shape[0] if tb else b.shape[1]), a.dtype)
    if lib == "fastnn":
        return lambda: K.gemm(a, b, trans_a=ta, trans_b=tb, out=c)
    if lib == "numpy":
        at, bt = (a.T if ta else a), (b.T if tb else b)
        return lambda: np.matmul(at, bt, out=c)
    ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
    at, bt = (ta_.T if ta else ta_), (tb_.T if tb else tb_)
    tc = torch.from_numpy(c)
    return lambda: torch.matmul(at, bt, out=tc)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_sgemm(benchmark, shape, lib, n_threads):
    m, k, n = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    benchmark.group = f"sgemm {m}x{k}x{n} {n_threads}thr"
    benchmark(make_call(lib, a, b))
    gflops(benchmark, 2.0 * m * k * n)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("case", TRAINING, ids=[c[0] for c in TRAINING])
def test_training_gemms(benchmark, case, lib, n_threads):
    name, m, k, n, ta, tb = case
    rng = np.random.default_rng(1)
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    benchmark.group = f"train {name} {m}x{k}x{n} ta={ta} tb={tb} {n_threads}thr"
    benchmark(make_call(lib, a, b, ta, tb))
    gflops(benchmark, 2.0 * m * k * n)


@pytest.mark.parametrize("lib", [x for x in LIBS if x != "torch"])
def test_dgemm_1024(benchmark, lib, n_threads):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((1024, 1024))
    b = rng.standard_normal((1024, 1024))
    benchmark.group = f"dgemm 1024^3 {n_threads}thr"
    benchmark(make_call(lib, a, b))
    gflops(benchmark, 2.0 * 1024**3)
