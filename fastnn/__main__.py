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


def load_demo_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's bundled 8x8 digits (1797 images), or two spirals without scikit-learn.

    Returns
    -------
    X : ndarray, (n, features) float32
    y : ndarray, (n,) int64
    name : str
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("scikit-learn is not installed, so the digits data set is not available "
              "(pip install \"fastnn[examples]\"); using a generated two-spirals set instead.")
        x, y = two_spirals(1000, np.random.default_rng(seed))
        return x, y, "two spirals (generated)"
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64), "digits (8x8)"


def demo(seed: int = 0, epochs: int = 40) -> float:
    """Train an MLP with the public API, print the test accuracy and the training speed."""
    import fastnn as fnn

    x, y, name = load_demo_data(seed)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    x, y = x[perm], y[perm]
    n_test = len(x) // 5
    xtr, ytr, xte, yte = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
    n_classes = int(y.max()) + 1
    model = fnn.Sequential([
        fnn.Dense(x.shape[1], 256, activation="relu", init="he_normal"),
        fnn.Dropout(0.1),
        fnn.Dense(256, 128, activation="relu", init="he_normal"),
        fnn.Dense(128, n_classes),
    ], dtype="float32", seed=seed)
    model.compile(optimizer=fnn.optim.Adam(lr=2e-3), loss="cross_entropy")
    print(f"data: {name}, {len(xtr)} training / {len(xte)} test samples")
    model.summary()
    t0 = time.perf_counter()
    model.fit(xtr, ytr, epochs=epochs, batch_size=32, shuffle=True, verbose=1,
              validation_data=(xte, yte),
              callbacks=[fnn.schedules.CosineAnnealingLR(epochs, warmup_epochs=2)])
    seconds = time.perf_counter() - t0
    acc = model.evaluate(xte, yte)["accuracy"]
    print(f"trained {epochs} epochs in {seconds:.2f} s "
          f"({epochs * len(xtr) / seconds:,.0f} samples/s, with validation)")
    print(f"test accuracy: {acc:.4f}")
    return acc


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fastnn``."""
    parser = argparse.ArgumentParser(prog="python -m fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="train a small network and print its accuracy")
    sub.add_parser("info", help="print the version, ISA, threads and NumPy in use")
    sub.add_parser("bench", help="training throughput against PyTorch, JAX, scikit-learn "
                                 "(python -m fastnn bench --help)", add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    if args.cmd == "info":
        from . import show_config

        show_config()
    elif args.cmd == "demo":
        demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
