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
  * the machine's FMA peak: by default a small AVX2 loop written here (12
    independent vfmadd231ps chains per thread, OpenMP), compiled with the C
    compiler at run time; or the output of a compiled fma_peak tool given
    with --fma-peak-tool (its "best" GFLOP/s lines are parsed).

Method: every contestant is warmed up and calibrated so that one measurement
lasts about --target-s; then --reps rounds run every contestant once, in an
order rotated each round, each measurement preceded by an idle gap (OpenBLAS
worker threads spin ~0.1 s after a call).  The value is the median GFLOP/s.
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
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import fastnn  # noqa: E402
from fastnn import kernels as K  # noqa: E402

SHAPES = [(64, 784, 256), (256, 784, 256), (1024, 784, 256), (256, 256, 256),
          (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048)]
TRAINING = [("x W", 128, 784, 256, False, False), ("x^T d", 784, 128, 256, True, False),
            ("d W^T", 128, 256, 784, False, True), ("x W out", 128, 256, 10, False, False)]

FMA_SRC = r"""
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
/* 12 independent FMA chains (4-cycle latency x 2 pipes needs >= 8) per thread. */
__attribute__((noinline)) static __m256 chains(long n, __m256 m, __m256 add) {
    __m256 x0 = _mm256_set1_ps(0.1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0;
    __m256 x6 = x0, x7 = x0, x8 = x0, x9 = x0, x10 = x0, x11 = x0;
    for (long i = 0; i < n; i++) {
#define F(x) x = _mm256_fmadd_ps(x, m, add);
        F(x0) F(x1) F(x2) F(x3) F(x4) F(x5) F(x6) F(x7) F(x8) F(x9) F(x10) F(x11)
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                             _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
    return _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(x10, x11)));
}
int main(int argc, char **argv) {
    int nt = atoi(argv[1]); long n = atol(argv[2]); int reps = atoi(argv[3]);
    float sink = 0;
    for (int r = 0; r < reps; r++) {
        double t = omp_get_wtime();
        #pragma omp parallel num_threads(nt) reduction(+:sink)
        {
            float v[8];
            _mm256_storeu_ps(v, chains(n, _mm256_set1_ps(0.999f), _mm256_set1_ps(0.001f)));
            sink += v[0];
        }
        t = omp_get_wtime() - t;
        printf("%f\n", 12.0 * 16.0 * n * nt / t / 1e9);
    }
    fprintf(stderr, "%f\n", sink);
    return 0;
}
"""


def measure_fma_peak(threads: list[int]) -> dict[int, float]:
    """Median GFLOP/s of the FMA loop above at each thread count (compiled here)."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return {}
    with tempfile.TemporaryDirectory(prefix="fastnn-fma-") as tmp:
        src, exe = os.path.join(tmp, "fma.c"), os.path.join(tmp, "fma")
        with open(src, "w") as f:
            f.write(FMA_SRC)
        r = subprocess.run([cc, "-O2", "-mavx2", "-mfma", "-fopenmp", src, "-o", exe],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return {}
        out = {}
        for t in threads:
            r = subprocess.run([exe, str(t), "200000000", "5"], capture_output=True, text=True)
            vals = [float(x) for x in r.stdout.split()]
            out[t] = max(vals)  # the peak: the least disturbed repetition
    return out


def read_fma_tool(path: str) -> dict[int, float]:
    """Run a compiled fma_peak tool and parse its 'threads=T best= X GFLOP/s' lines."""
    r = subprocess.run([path], capture_output=True, text=True, check=True)
    return {int(t): float(g) for t, g in re.findall(r"threads=(\d+)\s+best=\s*([\d.]+)",
                                                    r.stdout)}


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


def timed(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


class Contest:
    """Named contestants, each a zero-argument call and its FLOP count, run interleaved."""

    def __init__(self, threads: int, torch_mod):
        self.threads, self.torch = threads, torch_mod
        self.items: list[tuple[str, object, float]] = []

    def add(self, key: str, fn, flop: float) -> None:
        self.items.append((key, fn, flop))

    def run(self, reps: int, target_s: float, gap_s: float) -> dict[str, float]:
        fastnn.set_num_threads(self.threads)
        if self.torch is not None:
            self.torch.set_num_threads(self.threads)
        res: dict[str, list[float]] = {k: [] for k, _, _ in self.items}
        with threadpool_limits(limits=self.threads):
            counts = {}
            for key, fn, _ in self.items:
                time.sleep(gap_s)
                counts[key] = calibrate(fn, target_s)
            for r in range(reps):
                order = self.items[r % len(self.items):] + self.items[:r % len(self.items)]
                for key, fn, flop in order:
                    time.sleep(gap_s)
                    res[key].append(flop / timed(fn, counts[key]) / 1e9)
        return {k: statistics.median(v) for k, v in res.items()}


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--target-s", type=float, default=0.2)
    ap.add_argument("--gap-s", type=float, default=0.15)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--fma-peak-tool", help="path of a compiled fma_peak executable to run "
                    "instead of compiling the built-in FMA loop")
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

    peak = read_fma_tool(args.fma_peak_tool) if args.fma_peak_tool else measure_fma_peak(threads)
    results = {t: build(t, libs, torch_mod).run(args.reps, args.target_s, args.gap_s)
               for t in threads}

    cfg = fastnn.config()
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"# fastnn {cfg['version']}  isa={cfg['isa']}  numpy {np.__version__} "
          f"[{'; '.join(blas)}]" + (f"  torch {torch_mod.__version__}" if torch_mod else ""))
    print(f"# {platform.processor() or platform.machine()}  python {platform.python_version()}  "
          f"reps={args.reps} target={args.target_s}s (medians of interleaved rounds)")
    for t, g in sorted(peak.items()):
        print(f"# FMA peak, {t} thread(s): {g:.1f} GFLOP/s")

    sep = "|" if args.markdown else " "
    head = ["case", "thr", "fastnn GF/s", "numpy GF/s", "fastnn/numpy"]
    if torch_mod is not None:
        head += ["torch GF/s", "fastnn/torch"]
    head += ["% FMA peak"]
    rows = []
    for t in threads:
        res = results[t]
        cases = dict.fromkeys(k.split("|")[0] for k in res)
        for case in cases:
            f = res.get(f"{case}|fastnn")
            nmp = res.get(f"{case}|numpy")
            row = [case, str(t), f"{f:.1f}", f"{nmp:.1f}", f"{f / nmp:.2f}"]
            if torch_mod is not None:
                tr = res.get(f"{case}|torch")
                row += [f"{tr:.1f}" if tr else "-", f"{f / tr:.2f}" if tr else "-"]
            pk = peak.get(t)
            row += [f"{100 * f / pk:.0f}%" if pk and not case.startswith("dgemm")
                    else ("-" if not pk else f"{100 * f / (pk / 2):.0f}% (f64 peak)")]
            rows.append(row)
    if 1 in results and 2 in results:
        for s in ("sgemm 1024x1024x1024", "sgemm 2048x2048x2048"):
            sp = results[2][f"{s}|fastnn"] / results[1][f"{s}|fastnn"]
            spn = results[2][f"{s}|numpy"] / results[1][f"{s}|numpy"]
            extra = ["-", "-"] if torch_mod is not None else []
            rows.append([f"{s} 2thr/1thr", "2", f"{sp:.2f}x", f"{spn:.2f}x", "-", *extra, "-"])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    if args.markdown:
        print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in rows:
            print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    else:
        print(sep.join(h.ljust(w) for h, w in zip(head, widths)))
        for r in rows:
            print(sep.join(c.ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
