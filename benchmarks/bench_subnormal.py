"""Subnormal numbers: what flushing them (FTZ/DAZ, fastnn's default) buys.

    PYTHONPATH=src python benchmarks/bench_subnormal.py [--reps 7] [--epochs 5]

1. One Adam step over 269,322 float32 parameters (the 784-256-256-10 MLP), 1 thread,
   on normal state, on tiny gradients (g^2 underflows) and on subnormal m and v (where
   moments decay wherever a gradient stays zero), with flushing on and off: the median
   of --reps interleaved repetitions, fresh copies of the state each time.
2. A training run as a user sees it: a 100-512-512-2 ReLU MLP, Adam, batch 32, on
   separable data, so the model converges and its Adam state decays; two identical
   models, one trained with flushing and one without, their epochs interleaved;
   samples/s per epoch.

Speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fastnn
from fastnn import kernels as K

N_PARAMS = 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10


def adam_cases(n: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(g, m, v) float32 arrays of n elements per case."""
    rng = np.random.default_rng(0)
    return {
        "normal": (rng.standard_normal(n).astype(np.float32) * 1e-2,
                   np.abs(rng.standard_normal(n)).astype(np.float32) * 1e-3,
                   np.abs(rng.standard_normal(n)).astype(np.float32) * 1e-6),
        "tiny g (g^2 underflows)": (np.full(n, 1e-22, np.float32),
                                    np.full(n, 1e-20, np.float32),
                                    np.full(n, 1e-30, np.float32)),
        "subnormal m, v (g = 0)": (np.zeros(n, np.float32), np.full(n, 1e-40, np.float32),
                                   np.full(n, 1e-40, np.float32)),
    }


def bench_adam(reps: int) -> None:
    """Median time of one Adam step per case and flush setting, interleaved."""
    cases = adam_cases(N_PARAMS)
    times: dict[tuple[bool, str], list[float]] = {}
    for _ in range(reps):
        for flush in (True, False):
            fastnn.set_flush_denormal(flush)
            for name, (g, m0, v0) in cases.items():
                w, m, v = np.ones(N_PARAMS, np.float32), m0.copy(), v0.copy()
                t = time.perf_counter()
                K.adam_step(w, g, m, v, step=500)
                times.setdefault((flush, name), []).append(time.perf_counter() - t)
    fastnn.set_flush_denormal(True)
    print(f"One Adam step, {N_PARAMS:,} float32 parameters, 1 thread, median of {reps}:\n")
    print("| state | flush on (ms) | flush off (ms) | off / on | on / normal on |")
    print("|---|---|---|---|---|")
    base = statistics.median(times[(True, "normal")])
    for name in cases:
        on, off = (statistics.median(times[(f, name)]) for f in (True, False))
        print(f"| {name} | {on * 1e3:.3f} | {off * 1e3:.3f} | {off / on:.1f} | "
              f"{on / base:.2f} |")


def bench_training(epochs: int) -> None:
    """samples/s per epoch of the same run with and without flushing, interleaved."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8000, 100)).astype(np.float32)
    x[:, 50:] = 0.0  # inputs that are always 0: their weights' gradients stay 0
    y = (x[:, :5].sum(axis=1) > 0).astype(np.int64)

    def model() -> fastnn.Sequential:
        m = fastnn.Sequential([fastnn.Dense(100, 512, activation="relu", init="he_normal"),
                               fastnn.Dense(512, 512, activation="relu", init="he_normal"),
                               fastnn.Dense(512, 2)], dtype="float32", seed=0)
        m.compile(optimizer=fastnn.optim.Adam(lr=1e-3), loss="cross_entropy")
        return m

    models = {True: model(), False: model()}
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(epochs):
        for flush in (True, False):
            fastnn.set_flush_denormal(flush)
            t = time.perf_counter()
            models[flush].fit(x, y, epochs=1, batch_size=32, verbose=0)
            rates[flush].append(len(x) / (time.perf_counter() - t))
    fastnn.set_flush_denormal(True)
    print(f"\n100-512-512-2 ReLU MLP, Adam, batch 32, {len(x)} samples, threads "
          f"{fastnn.get_num_threads()}; samples/s per epoch (interleaved):\n")
    print("| epoch | flush on | flush off | on / off |")
    print("|---|---|---|---|")
    for e in range(epochs):
        on, off = rates[True][e], rates[False][e]
        print(f"| {e + 1} | {on:,.0f} | {off:,.0f} | {on / off:.2f} |")


def main() -> None:
    """Run both parts."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=5)
    a = ap.parse_args()
    cfg = fastnn.config()
    print(f"fastnn {cfg['version']}, isa {cfg['isa']} (optimizer loops: "
          f"{cfg['kernels']['optimizer']})\n")
    with fastnn.threads(1):
        bench_adam(a.reps)
    bench_training(a.epochs)


if __name__ == "__main__":
    main()
