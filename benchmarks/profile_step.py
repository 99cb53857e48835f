"""Where the time of one training step goes, kernel by kernel.

    python benchmarks/profile_step.py [--batches 16,1024] [--threads 1] [--clock cpu|wall]

Runs the 784-256-256-10 ReLU MLP (Adam, float32) layer by layer (the same C kernels
the one-call step chains) and times every kernel call; prints each kernel's share of
the step.  ``--clock cpu`` (process time) is robust to other load on the machine at
one thread; use ``wall`` on a quiet machine for more threads.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

import fastnn as fnn

LAYERS = (784, 256, 256, 10)


def profile(batch: int, threads: int, clock, steps: int) -> tuple[dict[str, float], float]:
    """Mean seconds per step of each kernel, and of the whole step (train_step)."""
    fnn.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, LAYERS[0])).astype(np.float32)
    y = rng.integers(0, LAYERS[-1], batch)
    model = fnn.Sequential([fnn.Dense(i, o, None if k == len(LAYERS) - 2 else "relu",
                                      init="he_normal")
                            for k, (i, o) in enumerate(zip(LAYERS[:-1], LAYERS[1:]))], seed=0)
    model.compile(fnn.optim.Adam(lr=1e-3), "cross_entropy")
    for _ in range(5):
        model.train_step(x, y)
    t0 = clock()
    for _ in range(steps):
        model.train_step(x, y)
    whole = (clock() - t0) / steps
    model.trainer.fused = False  # the layer-by-layer path: same kernels, one at a time
    yy = model.check_target(y, batch)
    times: dict[str, float] = defaultdict(float)
    for _ in range(steps):
        h = x
        for i, layer in enumerate(model.layers):
            t = clock()
            h = layer.forward(h, True)
            times[f"dense_forward L{i} (GEMM + bias + act)"] += clock() - t
        g = np.empty(h.shape, h.dtype)
        t = clock()
        model.loss(h, yy, g)
        times["cross_entropy (softmax, loss, grad)"] += clock() - t
        for i in reversed(range(len(model.layers))):
            t = clock()
            g = model.layers[i].backward(g, i > 0)
            times[f"dense_backward L{i} (act', db, dW" + (", dx)" if i else ")")] += clock() - t
        t = clock()
        model.optimizer.step()
        times["adam (all parameters, one call)"] += clock() - t
    return {k: v / steps for k, v in times.items()}, whole


def main() -> None:
    """Print one table per batch size."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batches", default="16,1024")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    a = p.parse_args()
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    for b in (int(s) for s in a.batches.split(",")):
        per, whole = profile(b, a.threads, clock, max(20, 20000 // b))
        total = sum(per.values())
        print(f"\nbatch {b}, {a.threads} thread(s), {a.clock} clock: one-call train_step "
              f"{whole * 1e3:.3f} ms ({b / whole:,.0f} samples/s); layer by layer "
              f"{total * 1e3:.3f} ms")
        print("| kernel | µs per step | % of step |\n|---|---|---|")
        for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
            print(f"| {k} | {v * 1e6:,.0f} | {100 * v / total:.1f}% |")
        print(f"| Python between kernels (one-call step vs sum of kernels) | "
              f"{max(0.0, whole - total) * 1e6:,.0f} | - |")


if __name__ == "__main__":
    main()
