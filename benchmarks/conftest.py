"""Shared fixtures for the pytest-benchmark suites (never part of the test run).

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. \
      pytest benchmarks/bench_gemm.py benchmarks/bench_dense.py --benchmark-group-by=param

Each contestant runs with the same number of threads: fastnn through
fastnn.set_num_threads, NumPy's BLAS through threadpoolctl, torch through
torch.set_num_threads.  OpenBLAS's tuning variables (OPENBLAS_CORETYPE,
OPENBLAS_L2_SIZE) slow it down; unset them before running.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

import fastnn

try:
    import torch
except ImportError:  # torch is optional
    torch = None

THREADS = [1, 2]
LIBS = ["fastnn", "numpy"] + (["torch"] if torch is not None else [])


@contextlib.contextmanager
def threads_for_all(n: int):
    """Pin fastnn, NumPy's BLAS and torch to n threads for the duration."""
    from threadpoolctl import threadpool_limits

    old = fastnn.get_num_threads()
    old_torch = torch.get_num_threads() if torch is not None else None
    fastnn.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        fastnn.set_num_threads(old)
        if torch is not None:
            torch.set_num_threads(old_torch)


@pytest.fixture(params=THREADS, ids=[f"{t}thr" for t in THREADS])
def n_threads(request):
    with threads_for_all(request.param):
        time.sleep(0.15)  # let another library's spinning worker threads go idle
        yield request.param


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.benchmark(min_rounds=5, warmup=True))


def gflops(benchmark, flop: float) -> None:
    """Record the GFLOP/s of the median round in the benchmark's extra_info."""
    med = benchmark.stats.stats.median if benchmark.stats else None
    if med:
        benchmark.extra_info["gflops"] = round(flop / med / 1e9, 2)


__all__ = ["LIBS", "THREADS", "gflops", "np", "threads_for_all", "torch"]
