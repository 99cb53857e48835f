"""GEMM against its peers, one interleaved run: fastnn vs numpy.matmul (OpenBLAS)
vs torch.matmul (MKL), GFLOP/s medians and ratios, at 1 and 2 threads.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=src \\
        python benchmarks/gemm_peers.py [--reps 7] [--threads 1 2] [--dense]

Every repetition times each contestant once, in a rotating order, so the
machine's drift (other jobs, clocks) falls on all of them alike; each timing is
the best of a few back-to-back calls lasting >= --min-time seconds in all.
--dense adds the three GEMMs of a dense layer's training step at batch 256
(x @ W, delta @ W^T, x^T @ delta) for a 784 -> 256 layer.  --clock cpu times
with the process's CPU clock: robust to other jobs taking the core away, valid
at 1 thread only (the contestants then run in the calling thread).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import fastnn
from fastnn import kernels as K

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional here
    torch = None

# (label, dtype, m, k, n, trans_a, trans_b)
CORE = [("f32 1024^3", np.float32, 1024, 1024, 1024, False, False),
        ("f32 256x784x256", np.float32, 256, 784, 256, False, False),
        ("f32 1024x784x256", np.float32, 1024, 784, 256, False, False),
        ("f64 1024^3", np.float64, 1024, 1024, 1024, False, False)]
DENSE = [("f32 fwd x@W 256x784x256", np.float32, 256, 784, 256, False, False),
         ("f32 dX d@W^T 256x256x784", np.float32, 256, 256, 784, False, True),
         ("f32 dW x^T@d 784x256x256", np.float32, 784, 256, 256, True, False)]


def cpu_name() -> str:
    """The CPU's model name as lscpu / /proc/cpuinfo gives it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def calls(dt: type, m: int, k: int, n: int, ta: bool, tb: bool) -> dict[str, Callable[[], object]]:
    """One zero-argument call per contestant computing C (m, n) = op(A) op(B)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dt)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dt)
    c = np.empty((m, n), dt)
    at, bt = (a.T if ta else a), (b.T if tb else b)
    out: dict[str, Callable[[], object]] = {
        "fastnn": lambda: K.gemm(a, b, trans_a=ta, trans_b=tb, out=c),
        "numpy": lambda: np.matmul(at, bt, out=c),
    }
    if torch is not None:
        ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
        tat, tbt, tc = (ta_.T if ta else ta_), (tb_.T if tb else tb_), torch.from_numpy(c)
        out["torch"] = lambda: torch.matmul(tat, tbt, out=tc)
    return out


def time_one(fn: Callable[[], object], min_time: float,
             clock: Callable[[], float] = time.perf_counter) -> float:
    """Best seconds per call (on ``clock``) over back-to-back calls lasting >= min_time."""
    best = float("inf")
    t_end = time.perf_counter() + min_time
    n = 0
    while n < 3 or time.perf_counter() < t_end:
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
        n += 1
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--min-time", type=float, default=0.15)
    ap.add_argument("--dense", action="store_true", help="also the dense layer's 3 GEMMs")
    ap.add_argument("--only-dense", action="store_true")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time (1 thread only)")
    args = ap.parse_args()
    if args.clock == "cpu" and args.threads != [1]:
        ap.error("--clock cpu measures one thread only: use --threads 1")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    cases = DENSE if args.only_dense else CORE + (DENSE if args.dense else [])

    blas = [(i.get("internal_api"), i.get("version"), i.get("architecture"))
            for i in threadpool_info() if i.get("user_api") == "blas"]
    cfg = fastnn.config()
    print(f"# CPU: {cpu_name()}  ({os.cpu_count()} cpus)")
    print(f"# fastnn isa={cfg['isa']} f32 {cfg['float32']} f64 {cfg['float64']}")
    print(f"# numpy {np.__version__} BLAS {blas}; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE')}")
    if torch is not None:
        print(f"# torch {torch.__version__}")
    print(f"# {args.reps} interleaved repetitions, medians of GFLOP/s ({args.clock} clock)")
    print()
    print("| case | threads | fastnn | numpy (OpenBLAS) | torch (MKL) | / numpy | / torch |")
    print("|---|---|---|---|---|---|---|")
    for nt in args.threads:
        fastnn.set_num_threads(nt)
        if torch is not None:
            torch.set_num_threads(nt)
        with threadpool_limits(limits=nt, user_api="blas"):
            for label, dt, m, k, n, ta, tb in cases:
                fns = calls(dt, m, k, n, ta, tb)
                names = list(fns)
                for f in fns.values():  # warm up: buffers, threads, pages
                    f()
                res: dict[str, list[float]] = {name: [] for name in names}
                for r in range(args.reps):
                    order = names[r % len(names):] + names[:r % len(names)]
                    for name in order:
                        sec = time_one(fns[name], args.min_time, clock)
                        res[name].append(2.0 * m * n * k / sec / 1e9)
                med = {name: statistics.median(v) for name, v in res.items()}
                tor = med.get("torch", float("nan"))
                print(f"| {label} | {nt} | {med['fastnn']:.1f} | {med['numpy']:.1f} | "
                      f"{tor:.1f} | {med['fastnn'] / med['numpy']:.2f} | "
                      f"{med['fastnn'] / tor:.2f} |", flush=True)


if __name__ == "__main__":
    main()
