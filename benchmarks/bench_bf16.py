"""The bf16 GEMM (issue 20) against torch.matmul on bfloat16 tensors, one interleaved run.

    PYTHONPATH=src python benchmarks/bench_bf16.py [--reps 7] [--threads 1 2] [--n 1024]

Contestants, per thread count: fastnn's float32 GEMM under matmul precision "bf16"
(float32 in and out, the operands rounded to bf16 in the packing: the call a Dense
layer makes), torch.matmul on bf16 tensors (bf16 in and out, oneDNN/AMX), and
fastnn's float32 GEMM.  Every repetition times each once in a rotating order; each
timing is the best of back-to-back calls lasting >= --min-time s.  Prints GFLOP/s
medians and fastnn-bf16 / torch-bf16 and fastnn-bf16 / fastnn-float32 ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fastnn
from fastnn import kernels as K


def best_of(fn, min_time: float) -> float:
    fn()
    best, spent = float("inf"), 0.0
    while spent < min_time:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--min-time", type=float, default=0.2)
    a = p.parse_args()
    import torch

    n = a.n
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, n)).astype(np.float32)
    y = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty((n, n), np.float32)
    tx, ty = torch.from_numpy(x).bfloat16(), torch.from_numpy(y).bfloat16()

    def fastnn_bf16():
        with fastnn.matmul_precision("bf16"):
            K.gemm(x, y, out=out)

    peers = {"fastnn_bf16": fastnn_bf16, "torch_bf16": lambda: torch.matmul(tx, ty),
             "fastnn_f32": lambda: K.gemm(x, y, out=out)}
    cfg = fastnn.config()
    print(f"fastnn {cfg['version']}, isa {cfg['isa']}, bf16 kernel {cfg['kernels']['gemm_bf16']}, "
          f"torch {torch.__version__}; {n}^3, GFLOP/s (median of {a.reps} interleaved reps)")
    print("| threads | fastnn bf16 | torch bf16 | fastnn f32 | bf16 ÷ torch bf16 | bf16 ÷ f32 |")
    print("|---|---|---|---|---|---|")
    for t in a.threads:
        fastnn.set_num_threads(t)
        torch.set_num_threads(t)
        names = list(peers)
        times: dict[str, list[float]] = {k: [] for k in names}
        for r in range(a.reps):
            for name in names[r % len(names):] + names[:r % len(names)]:
                times[name].append(best_of(peers[name], a.min_time))
        gf = {k: 2 * n**3 / statistics.median(v) / 1e9 for k, v in times.items()}
        print(f"| {t} | {gf['fastnn_bf16']:.0f} | {gf['torch_bf16']:.0f} | {gf['fastnn_f32']:.0f} "
              f"| {gf['fastnn_bf16'] / gf['torch_bf16']:.2f}x "
              f"| {gf['fastnn_bf16'] / gf['fastnn_f32']:.2f}x |")


if __name__ == "__main__":
    main()
