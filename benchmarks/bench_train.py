"""pytest-benchmark: one Adam training step, fastnn against its peers.

    pytest benchmarks/bench_train.py --benchmark-group-by=param:batch

Each contestant is the same function ``python -m fastnn bench`` uses (fastnn.bench);
that command runs them interleaved in pinned subprocesses per thread count and prints
the ratio table recorded in BENCHMARKS.md.  Here they run in this process at the
current thread count (``OMP_NUM_THREADS``), one benchmark per (contestant, batch, net).
"""

from __future__ import annotations

import pytest

from fastnn import bench, get_num_threads


@pytest.mark.parametrize("net", ["mlp", "wide", "cnn"])
@pytest.mark.parametrize("batch", [16, 64, 256, 1024])
@pytest.mark.parametrize("name", [n for n in bench.ALL if n != "sklearn"])
def test_train_step(benchmark, name, batch, net):
    try:
        run = bench.MAKERS[name](bench.NETS[net], batch, get_num_threads())
    except bench.Skip as exc:
        pytest.skip(str(exc))
    run(3)
    benchmark.extra_info["samples_per_step"] = batch
    benchmark.pedantic(run, args=(1,), rounds=50, warmup_rounds=3)
