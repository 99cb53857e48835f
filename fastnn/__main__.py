"""Command line: ``python -m fastnn demo | info``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def two_spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals in 2-D, ``n`` points each; labels 0 and 1.

    Returns
    -------
    X : ndarray, (2n, 2) float32
    y : ndarray, (2n,) int64

    """
    t = np.sqrt(rng.random(n)) * 3 * np.pi
    pts = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3 * np.pi)
    x = np.concatenate([pts, -pts]) + rng.normal(0, 0.02, (2 * n, 2))
    y = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    return x.astype(np.float32), y


def demo_kernels(seed: int = 0) -> float:
    """Train a 2-64-64-2 tanh MLP on two spirals with the raw kernels; return test accuracy."""
    from . import kernels as K

    rng = np.random.default_rng(seed)
    x, y = two_spirals(1000, rng)
    perm = rng.permutation(len(x))
    x, y = x[perm], y[perm]
    xtr, ytr, xte, yte = x[:1600], y[:1600], x[1600:], y[1600:]
    sizes = [2, 64, 64, 2]
    acts = ["tanh", "tanh", "identity"]
    params = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        lim = np.sqrt(6 / (i + o))
        params.append([rng.uniform(-lim, lim, (i, o)).astype(np.float32),
                       np.zeros(o, np.float32)])
    t0 = time.perf_counter()
    batch, lr, epochs = 32, 0.1, 300
    for _ in range(epochs):
        order = rng.permutation(len(xtr))
        for s in range(0, len(xtr), batch):
            idx = order[s:s + batch]
            hs = [xtr[idx]]
            for (w, b), act in zip(params, acts):
                hs.append(K.dense_forward(hs[-1], w, b, act))
            _, g = K.cross_entropy(hs[-1], ytr[idx])
            for li in reversed(range(len(params))):
                w, b = params[li]
                g, dw, db = K.dense_backward(g, hs[li], w, hs[li + 1], None, acts[li],
                                             need_dx=li > 0)
                K.sgd_update(w, dw, lr)
                K.sgd_update(b, db, lr)
    seconds = time.perf_counter() - t0
    h = xte
    for (w, b), act in zip(params, acts):
        h = K.dense_forward(h, w, b, act)
    acc = float(np.mean(h.argmax(1) == yte))
    print(f"two spirals, 2-64-64-2 tanh MLP, {epochs} epochs of SGD in {seconds:.1f} s "
          f"({epochs * len(xtr) / seconds:,.0f} samples/s)")
    print(f"test accuracy: {acc:.3f}")
    return acc


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fastnn``."""
    parser = argparse.ArgumentParser(prog="python -m fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="train a small network and print its accuracy")
    sub.add_parser("info", help="print the version, ISA, threads and NumPy in use")
    args = parser.parse_args(argv)
    if args.cmd == "info":
        from . import show_config

        show_config()
    elif args.cmd == "demo":
        demo_kernels()
    return 0


if __name__ == "__main__":
    sys.exit(main())
