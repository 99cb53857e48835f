"""Fused dense forward act(x @ W + b): fastnn's one pass vs NumPy's three steps
(np.maximum(x @ W + b, 0)) and torch's relu(addmm), 1 and 2 threads.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. \
        pytest benchmarks/bench_dense.py --benchmark-group-by=param:case,param:n_threads
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import LIBS, gflops, torch

from fastnn import kernels as K

CASES = [(128, 784, 256, "relu"), (16, 784, 256, "relu"), (1024, 784, 256, "relu"),
         (128, 256, 10, "identity")]


def make_dense(lib, x, w, b, act):
    out = np.empty((x.shape[0], w.shape[1]), x.dtype)
    if lib == "fastnn":
        return lambda: K.dense_forward(x, w, b, activation=act, out=out)
    if lib == "numpy":
        if act == "relu":
            return lambda: np.maximum(x @ w + b, 0)
        return lambda: x @ w + b
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
    if act == "relu":
        return lambda: torch.relu(torch.addmm(tb, tx, tw))
    return lambda: torch.addmm(tb, tx, tw)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}x{c[1]}x{c[2]}-{c[3]}" for c in CASES])
def test_dense_forward(benchmark, case, lib, n_threads):
    batch, inp, out, act = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, inp), dtype=np.float32)
    w = (rng.standard_normal((inp, out)) / np.sqrt(inp)).astype(np.float32)
    b = rng.standard_normal(out, dtype=np.float32)
    benchmark.group = f"dense {batch}x{inp}->{out} {act} {n_threads}thr"
    benchmark(make_dense(lib, x, w, b, act))
    gflops(benchmark, 2.0 * batch * inp * out)
