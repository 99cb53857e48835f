"""MNIST 784-800-10 in float32 and in the bfloat16 matmul precision (issue 20).

The same model (ReLU hidden layer, He-normal weights, seed 0), Adam (lr 1e-3), batch 128,
10 epochs with a learning-rate drop (x0.1 after epoch 7), once with
``fastnn.matmul_precision("float32")`` and once with ``"bf16"``; prints the test error of
each, the per-epoch training losses side by side and the wall time.

Run: ``python examples/mnist_bf16.py [--data-home DIR] [--epochs N] [--plot PNG]``
(MNIST via ``fastnn.datasets.load_mnist``: cached in ``FASTNN_DATA`` or ``--data-home``).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import fastnn as fnn
import fastnn.datasets


def train(precision: str, data, epochs: int = 10, drop_at: int = 7, seed: int = 0) -> dict:
    """Train 784-800-10 in `precision`; return the loss curve, test error and seconds."""
    (xtr, ytr), (xte, yte) = data
    model = fnn.Sequential([fnn.Dense(784, 800, activation="relu", init="he_normal"),
                            fnn.Dense(800, 10)], seed=seed)
    model.compile(optimizer=fnn.optim.Adam(lr=1e-3), loss="cross_entropy",
                  metrics=["accuracy"])
    t0 = time.perf_counter()
    with fnn.matmul_precision(precision):
        hist = model.fit(xtr, ytr, epochs=epochs, batch_size=128, verbose=0,
                         callbacks=[fnn.schedules.StepLR(step_size=drop_at, gamma=0.1)])
        seconds = time.perf_counter() - t0
        acc = model.evaluate(xte, yte)["accuracy"]
    return {"precision": precision, "loss": list(hist.history["loss"]),
            "test_error": 1.0 - float(acc), "seconds": seconds}


def main(argv: list[str] | None = None) -> list[dict]:
    """Train in float32 and in bf16; print and return both runs."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-home", default=os.environ.get("FASTNN_DATA"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--plot", default=None, help="also draw the two loss curves (PNG)")
    a = p.parse_args(argv)
    (xtr, ytr), (xte, yte) = fnn.datasets.load_mnist(a.data_home)
    data = ((xtr.reshape(-1, 784).astype(np.float32) / 255, ytr),
            (xte.reshape(-1, 784).astype(np.float32) / 255, yte))
    runs = []
    for prec in ("float32", "bf16"):
        runs.append(train(prec, data, epochs=a.epochs))
        print(f"{prec}: test error {100 * runs[-1]['test_error']:.2f}%, "
              f"{runs[-1]['seconds']:.1f} s", flush=True)
    print(f"fastnn {fnn.__version__}, isa {fnn.config()['isa']}, bf16 kernel "
          f"{fnn.config()['kernels']['gemm_bf16']}, {fnn.get_num_threads()} thread(s)")
    for r in runs:
        print(f"{r['precision']:>8s}: test error {100 * r['test_error']:.2f}% "
              f"({r['seconds']:.1f} s)")
    print("epoch | loss float32 | loss bf16 | bf16 / float32")
    for e, (l32, l16) in enumerate(zip(runs[0]["loss"], runs[1]["loss"], strict=True)):
        print(f"{e + 1:5d} | {l32:12.5f} | {l16:9.5f} | {l16 / l32:.4f}")
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for r in runs:
            ax.plot(range(1, len(r["loss"]) + 1), r["loss"], marker="o", label=r["precision"])
        ax.set(xlabel="epoch", ylabel="training loss", yscale="log",
               title="MNIST 784-800-10, Adam, batch 128")
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
    return runs


if __name__ == "__main__":
    main()
