#!/usr/bin/env python3
"""One interleaved benchmark run of fastnn's GEMM engine, printed as a ratio table.

    PYTHONPATH=. python benchmarks/report.py [--reps 7] [--target-s 0.2] [--no-torch]
                                             [--fma-peak-tool PATH] [--markdown]

What it measures (float32 unless noted, 1 and 2 threads):
  * sgemm at the issue's shapes: fastnn.kernels.gemm vs numpy.matmul (OpenBLAS)
    and torch.matmul when torch is importable;
  * the training GEMMs of a 784-256-10 MLP at batch 128 (x W, x^T delta, delta W^T);
  * the fused dense forward relu(x W + b), batch 128, 784 -> 256, against
    NumPy's three steps np.maximum(x @ W + b, 0);
  * dgemm 1024^3 against numpy (OpenBLAS dgemm);
  * the machine's FMA peak: by default measured by fastnn itself
    (fastnn._kernels.fma_peak: 12 independent FMA chains per thread with the
    widest vectors of the ISA level in use, 512-bit on AVX-512, 256-bit on AVX2);
    or the output of a compiled fma_peak tool given with --fma-peak-tool (its
    "best" GFLOP/s lines are parsed).

Method: every contestant is warmed up and calibrated so that one measurement
lasts about --target-s; then --reps rounds run every contestant once, in an
order rotated each round, each measurement preceded by an idle gap (OpenBLAS
worker threads spin ~0.1 s after a call).  The value is the median GFLOP/s,
printed twice: by wall clock, and per CPU-second of each thread (process CPU
time / threads), which stays meaningful when other processes share the cores.
OpenBLAS's tuning variables OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow it down,
so the script re-executes itself without them before NumPy is imported.
"""

from __future__ import annotations

import os
import sys

_DROP = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(v in os.environ for v in _DROP):  # before numpy (OpenBLAS) is loaded
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import argparse  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import fastnn  # noqa: E402
from fastnn import kernels as K  # noqa: E402

SHAPES = [(64, 784, 256), (256, 784, 256), (1024, 784, 256), (256, 256, 256),
          (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048)]
TRAINING = [("x W", 128, 784, 256, False, False), ("x^T d", 784, 128, 256, True, False),
            ("d W^T", 128, 256, 784, False, True), ("x W out", 128, 256, 10, False, False)]



def measure_fma_peak(threads: list[int]) -> dict[str, dict[int, float]]:
    """FMA peak GFLOP/s at each thread count, measured by fastnn itself with the widest
    FMA vectors of the ISA level it runs (:func:`fastnn.bench.fma_peaks`, best of 5):
    {"wall": best wall-clock rate, "cpu": best sum of per-thread rates per CPU-second}."""
    from fastnn.bench import fma_peaks

    p = fma_peaks(threads, reps=5, seconds=0.3)
    print(f"FMA peak: {p['width']}-bit FMAs ({p['isa']})")
    return {"wall": p["wall"], "cpu": p["cpu"]}


def read_fma_tool(path: str) -> dict[str, dict[int, float]]:
    """Run a compiled fma_peak tool and parse its 'threads=T best= X GFLOP/s' lines
    (a wall-clock peak, used for both tables)."""
    r = subprocess.run([path], capture_output=True, text=True, check=True)
    pk = {int(t): float(g) for t, g in re.findall(r"threads=(\d+)\s+best=\s*([\d.]+)",
                                                  r.stdout)}
    return {"wall": pk, "cpu": pk}


def calibrate(fn, target_s: float) -> int:
    fn()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        d = time.perf_counter() - t
        if d >= target_s / 4 or n >= 1 << 20:
            return max(1, int(n * target_s / max(d, 1e-9)))
        n *= 2


def timed(fn, n: int) -> tuple[float, float]:
    """Seconds per call: (wall clock, CPU time of the whole process)."""
    c, t = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n, (time.process_time() - c) / n


class Contest:
    """Named contestants, each a zero-argument call and its FLOP count, run interleaved."""

    def __init__(self, threads: int, torch_mod):
        self.threads, self.torch = threads, torch_mod
        self.items: list[tuple[str, object, float]] = []

    def add(self, key: str, fn, flop: float) -> None:
        self.items.append((key, fn, flop))

    def run(self, reps: int, target_s: float, gap_s: float) -> dict[str, dict[str, float]]:
        """GFLOP/s per contestant: {"wall": median, "best": best round, "cpu": median
        of flop / (process CPU seconds / threads), i.e. the T-thread rate the process
        would reach if its threads ran all the time}."""
        fastnn.set_num_threads(self.threads)
        if self.torch is not None:
            self.torch.set_num_threads(self.threads)
        res: dict[str, list[float]] = {k: [] for k, _, _ in self.items}
        cpu: dict[str, list[float]] = {k: [] for k, _, _ in self.items}
        with threadpool_limits(limits=self.threads):
            counts = {}
            for key, fn, _ in self.items:
                time.sleep(gap_s)
                counts[key] = calibrate(fn, target_s)
            for r in range(reps):
                order = self.items[r % len(self.items):] + self.items[:r % len(self.items)]
                for key, fn, flop in order:
                    time.sleep(gap_s)
                    wall_s, cpu_s = timed(fn, counts[key])
                    res[key].append(flop / wall_s / 1e9)
                    # CPU-seconds per thread: GFLOP/s while actually running
                    cpu[key].append(flop / (cpu_s / self.threads) / 1e9)
        return {"wall": {k: statistics.median(v) for k, v in res.items()},
                "best": {k: max(v) for k, v in res.items()},
                "cpu": {k: statistics.median(v) for k, v in cpu.items()}}


def gemm_call(lib, a, b, ta, tb, torch_mod):
    m = a.shape[1] if ta else a.shape[0]
    n = b.shape[0] if tb else b.shape[1]
    c = np.empty((m, n), a.dtype)
    if lib == "fastnn":
        return lambda: K.gemm(a, b, trans_a=ta, trans_b=tb, out=c)
    at, bt = (a.T if ta else a), (b.T if tb else b)
    if lib == "numpy":
        return lambda: np.matmul(at, bt, out=c)
    tat, tbt, tc = torch_mod.from_numpy(at), torch_mod.from_numpy(bt), torch_mod.from_numpy(c)
    return lambda: torch_mod.matmul(tat, tbt, out=tc)


def build(threads: int, libs: list[str], torch_mod) -> Contest:
    rng = np.random.default_rng(0)
    con = Contest(threads, torch_mod)
    for (m, k, n) in SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        for lib in libs:
            con.add(f"sgemm {m}x{k}x{n}|{lib}", gemm_call(lib, a, b, False, False, torch_mod),
                    2.0 * m * k * n)
    for (name, m, k, n, ta, tb) in TRAINING:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        for lib in libs:
            con.add(f"train {name} {m}x{k}x{n}|{lib}", gemm_call(lib, a, b, ta, tb, torch_mod),
                    2.0 * m * k * n)
    # fused dense forward vs NumPy's three steps
    x = rng.standard_normal((128, 784), dtype=np.float32)
    w = (rng.standard_normal((784, 256)) / 28.0).astype(np.float32)
    bias = rng.standard_normal(256, dtype=np.float32)
    out = np.empty((128, 256), np.float32)
    flop = 2.0 * 128 * 784 * 256
    con.add("dense 128x784->256 relu|fastnn",
            lambda: K.dense_forward(x, w, bias, activation="relu", out=out), flop)
    con.add("dense 128x784->256 relu|numpy", lambda: np.maximum(x @ w + bias, 0), flop)
    if torch_mod is not None and "torch" in libs:
        tx, tw, tb = (torch_mod.from_numpy(v) for v in (x, w, bias))
        con.add("dense 128x784->256 relu|torch",
                lambda: torch_mod.relu(torch_mod.addmm(tb, tx, tw)), flop)
    a64 = rng.standard_normal((1024, 1024))
    b64 = rng.standard_normal((1024, 1024))
    for lib in ("fastnn", "numpy"):
        con.add(f"dgemm 1024x1024x1024|{lib}", gemm_call(lib, a64, b64, False, False, torch_mod),
                2.0 * 1024**3)
    return con


def print_table(results, clock, threads, peak, torch_mod, markdown) -> None:
    head = ["case", "thr", "fastnn GF/s", "numpy GF/s", "fastnn/numpy"]
    if torch_mod is not None:
        head += ["torch GF/s", "fastnn/torch"]
    head += ["% FMA peak"]
    rows = []
    for t in threads:
        res = results[t][clock]
        cases = dict.fromkeys(k.split("|")[0] for k in res)
        for case in cases:
            f = res.get(f"{case}|fastnn")
            nmp = res.get(f"{case}|numpy")
            row = [case, str(t), f"{f:.1f}", f"{nmp:.1f}", f"{f / nmp:.2f}"]
            if torch_mod is not None:
                tr = res.get(f"{case}|torch")
                row += [f"{tr:.1f}" if tr else "-", f"{f / tr:.2f}" if tr else "-"]
            pk = peak.get(t)
            if not pk:
                row.append("-")
            elif case.startswith("dgemm"):
                row.append(f"{100 * f / (pk / 2):.0f}% (f64 peak)")
            else:
                row.append(f"{100 * f / pk:.0f}%")
            rows.append(row)
    if 1 in results and 2 in results:
        for s in ("sgemm 1024x1024x1024", "sgemm 2048x2048x2048"):
            r1, r2 = results[1][clock], results[2][clock]
            sp, spn = (r2[f"{s}|{x}"] / r1[f"{s}|{x}"] for x in ("fastnn", "numpy"))
            extra = ["-", "-"] if torch_mod is not None else []
            rows.append([f"{s} 2thr/1thr", "2", f"{sp:.2f}x", f"{spn:.2f}x", "-", *extra, "-"])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    if markdown:
        print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in rows:
            print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    else:
        print(" ".join(h.ljust(w) for h, w in zip(head, widths)))
        for r in rows:
            print(" ".join(c.ljust(w) for c, w in zip(r, widths)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--target-s", type=float, default=0.2)
    ap.add_argument("--gap-s", type=float, default=0.15)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--fma-peak-tool", help="path of a compiled fma_peak executable to run "
                    "instead of compiling the built-in FMA loop")
    ap.add_argument("--peak", help="wall-clock FMA peak to use for the %% columns of the "
                    "wall-clock tables instead of this run's, e.g. 1:107.2,2:213.8 (measured on "
                    "an idle machine; a peak measured while other processes run is too low)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]

    torch_mod = None
    if not args.no_torch:
        try:
            import torch as torch_mod
        except ImportError:
            torch_mod = None
    libs = ["fastnn", "numpy"] + (["torch"] if torch_mod is not None else [])

    load0 = os.getloadavg()
    peak = read_fma_tool(args.fma_peak_tool) if args.fma_peak_tool else measure_fma_peak(threads)
    if not peak:
        peak = {"wall": {}, "cpu": {}}
    measured_wall = dict(peak["wall"])
    if args.peak:
        peak["wall"] = {int(t): float(g) for t, g in (x.split(":") for x in args.peak.split(","))}
    results = {t: build(t, libs, torch_mod).run(args.reps, args.target_s, args.gap_s)
               for t in threads}

    cfg = fastnn.config()
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"# fastnn {cfg['version']}  isa={cfg['isa']}  numpy {np.__version__} "
          f"[{'; '.join(blas)}]" + (f"  torch {torch_mod.__version__}" if torch_mod else ""))
    print(f"# {platform.processor() or platform.machine()}  python {platform.python_version()}  "
          f"reps={args.reps} target={args.target_s}s (medians of interleaved rounds)")
    if args.peak:
        print(f"# wall-clock % FMA peak columns use --peak {args.peak}")
    for t in threads:
        print(f"# FMA peak, {t} thread(s): wall {measured_wall.get(t, 0):.1f} GFLOP/s, "
              f"per CPU-second {peak['cpu'].get(t, 0):.1f} GFLOP/s "
              f"(12 chains of vfmadd231ps per thread, best of 5)")

    print(f"# load average before the run: {load0}, after: {os.getloadavg()}")
    print("\n## wall clock (what a user sees)\n")
    print_table(results, "wall", threads, peak["wall"], torch_mod, args.markdown)
    print("\n## wall clock, best round of each contestant (closest to an idle machine)\n")
    print_table(results, "best", threads, peak["wall"], torch_mod, args.markdown)
    print("\n## CPU time (flop / (process CPU seconds / threads): the rate while running; "
          "robust to other processes time-sharing the cores, but counts spin-waiting)\n")
    print_table(results, "cpu", threads, peak["cpu"], torch_mod, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
