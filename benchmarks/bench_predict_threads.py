"""Throughput of ``Sequential.predict`` from 1 vs 2 Python threads on ONE model.

The kernels release the GIL and each thread has its own layer buffers, so two threads
predicting on one model run in parallel.  Each predict uses one OpenMP thread here
(``fastnn.set_num_threads(1)``), so the speed-up comes from the Python threads alone.

    python benchmarks/bench_predict_threads.py [--threads 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

import fastnn as fnn


def build(kind: str) -> tuple[fnn.Sequential, np.ndarray]:
    rng = np.random.default_rng(0)
    if kind == "mlp":
        model = fnn.Sequential([fnn.Dense(784, 512, "relu"), fnn.Dense(512, 256, "relu"),
                                fnn.Dense(256, 10)], seed=0)
        return model, rng.standard_normal((4096, 784)).astype(np.float32)
    model = fnn.Sequential([fnn.Conv2D(1, 16, 3, padding=1, activation="relu"),
                            fnn.MaxPool2D(2), fnn.Conv2D(16, 32, 3, padding=1,
                                                         activation="relu"),
                            fnn.MaxPool2D(2), fnn.Flatten(), fnn.Dense(32 * 7 * 7, 10)], seed=0)
    return model, rng.standard_normal((512, 1, 28, 28)).astype(np.float32)


def rate(model: fnn.Sequential, x: np.ndarray, n_threads: int, calls: int) -> float:
    """Samples per second with ``n_threads`` Python threads sharing ``calls`` predicts."""
    per = [calls // n_threads + (i < calls % n_threads) for i in range(n_threads)]
    barrier = threading.Barrier(n_threads + 1)

    def work(k: int) -> None:
        barrier.wait()
        for _ in range(k):
            model.predict(x, batch_size=256)

    ts = [threading.Thread(target=work, args=(k,)) for k in per]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return calls * x.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--calls", type=int, default=8)
    args = ap.parse_args()
    fnn.set_num_threads(1)
    for kind in ("mlp", "cnn"):
        model, x = build(kind)
        ref = model.predict(x)
        model.predict(x)  # warm up (buffers, packing)
        one, many = [], []
        for _ in range(args.repeat):  # interleaved, best of `repeat`
            one.append(rate(model, x, 1, args.calls))
            many.append(rate(model, x, args.threads, args.calls))
        np.testing.assert_array_equal(model.predict(x), ref)
        print(f"{kind}: 1 thread {max(one):,.0f} samples/s, {args.threads} threads "
              f"{max(many):,.0f} samples/s, speed-up x{max(many) / max(one):.2f}")


if __name__ == "__main__":
    main()
