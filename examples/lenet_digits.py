"""A LeNet-style CNN on scikit-learn's 8x8 digits (1x8x8 images), through the public API.

Run: ``python examples/lenet_digits.py`` (needs scikit-learn for the data).
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.datasets import load_digits

import fastnn as fnn


def lenet(seed: int = 0) -> fnn.Sequential:
    """Conv 3x3 (16) -> conv 3x3 (32) -> maxpool 2 -> conv 3x3 (64) -> global avg -> dense."""
    return fnn.Sequential([
        fnn.Conv2D(1, 16, 3, padding="same", activation="relu", init="he_normal"),
        fnn.Conv2D(16, 32, 3, padding="same", activation="relu", init="he_normal"),
        fnn.MaxPool2D(2),
        fnn.Dropout(0.1),
        fnn.Conv2D(32, 64, 3, padding="same", activation="relu", init="he_normal"),
        fnn.MaxPool2D(2),
        fnn.Flatten(),
        fnn.Dense(64 * 2 * 2, 64, activation="relu", init="he_normal"),
        fnn.Dense(64, 10),
    ], seed=seed, input_shape=(1, 8, 8))


def main(epochs: int = 30, verbose: int = 0) -> float:
    """Train on 80% of the digits, print and return the test accuracy."""
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target
    perm = np.random.default_rng(0).permutation(len(x))
    x, y = x[perm], y[perm]
    n_test = len(x) // 5
    model = lenet()
    model.compile(fnn.optim.Adam(lr=2e-3), "cross_entropy")
    if verbose:
        model.summary()
    t0 = time.perf_counter()
    model.fit(x[n_test:], y[n_test:], epochs=epochs, batch_size=32, verbose=verbose,
              callbacks=[fnn.schedules.CosineAnnealingLR(epochs)])
    seconds = time.perf_counter() - t0
    acc = model.evaluate(x[:n_test], y[:n_test])["accuracy"]
    print(f"LeNet-style CNN on 8x8 digits: {epochs} epochs in {seconds:.1f} s, "
          f"test accuracy {acc:.4f}")
    return acc


if __name__ == "__main__":
    main(verbose=1)
