"""A small ResNet on MNIST, trained by fastnn and by PyTorch in the same run.

The network: a 3x3 conv stem (batch norm, ReLU, 2x2 max pool), three residual basic
blocks (conv-BN-ReLU-conv-BN plus the skip, then ReLU; the second and third halve the
size with stride 2 and a 1x1 conv shortcut), global average pooling and a dense
layer.  16-32-64 channels, 28x28 -> 14 -> 7 -> 4.

    python examples/resnet_mnist.py                 # 5 epochs on the 60,000 images
    python examples/resnet_mnist.py --quick         # 1,200 images, 1 epoch (seconds)
    python examples/resnet_mnist.py --no-torch      # fastnn only

The data come from :func:`fastnn.datasets.load_mnist` (fetched once into
``$FASTNN_DATA`` or ``~/.cache/fastnn``).  ``--quick`` never downloads: without the
cached files it trains on a synthetic stand-in (noisy class templates) and says so.
The PyTorch half builds the same network with :func:`fastnn.interop.to_torch` (same
initial weights), trains it with the same optimizer, learning rates, batches and
order, and is skipped when torch is not installed.  The two alternate epoch by epoch
(so both see the same machine load); each epoch's test accuracy is printed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastnn as fnn
from fastnn.datasets import load_mnist

SEED = 0
MEAN, STD = 0.1307, 0.3081  # MNIST's pixel mean and standard deviation
#: Adam's learning rate per epoch (a step decay over the 5 epochs)
LR = [2e-3, 2e-3, 1e-3, 4e-4, 1e-4]


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[fnn.Layer]:
    """3x3 conv (no bias: the batch norm has one) and batch norm."""
    return [fnn.Conv2D(c_in, c_out, 3, stride=stride, padding=1, bias=False, init="he_normal"),
            fnn.BatchNorm2D(c_out)]


def basic_block(c_in: int, c_out: int, stride: int = 1) -> fnn.Residual:
    """ResNet's basic block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""
    body = conv_bn(c_in, c_out, stride) + [fnn.Activation("relu")] + conv_bn(c_out, c_out)
    shortcut = (None if stride == 1 and c_in == c_out
                else fnn.Conv2D(c_in, c_out, 1, stride=stride, init="he_normal"))
    return fnn.Residual(body, shortcut=shortcut, activation="relu")


def build_resnet(width: int = 16, seed: int = SEED, dtype: str = "float32") -> fnn.Sequential:
    """The example's network on (batch, 1, 28, 28) images, 10 logits out."""
    w = width
    return fnn.Sequential([
        *conv_bn(1, w), fnn.Activation("relu"), fnn.MaxPool2D(2),
        basic_block(w, w),
        basic_block(w, 2 * w, stride=2),
        basic_block(2 * w, 4 * w, stride=2),
        fnn.GlobalAvgPool2D(),
        fnn.Dense(4 * w, 10),
    ], dtype=dtype, seed=seed, input_shape=(1, 28, 28))


def _synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in for MNIST when its files are not cached: noisy, shifted class templates
    (the same ten templates for every call).
    """
    templates = np.random.default_rng(12345).random((10, 28, 28)) < 0.15
    y = rng.integers(0, 10, n)
    x = templates[y] * 200.0 + rng.normal(0, 40, (n, 28, 28))
    shifts = rng.integers(-2, 3, (n, 2))
    for i, (a, b) in enumerate(shifts):
        x[i] = np.roll(x[i], (a, b), axis=(0, 1))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def load(quick: bool, data_home: str | None = None) -> tuple[tuple, tuple, str]:
    """(x_train, y_train), (x_test, y_test) as normalized float32 NCHW, and the source."""
    try:
        (xtr, ytr), (xte, yte) = load_mnist(data_home, download=not quick)
        source = "MNIST"
    except (FileNotFoundError, OSError):
        if not quick:
            raise
        rng = np.random.default_rng(SEED)
        (xtr, ytr), (xte, yte) = _synthetic(3000, rng), _synthetic(1000, rng)
        source = "synthetic stand-in (MNIST files not cached)"
    if quick:
        xtr, ytr, xte, yte = xtr[:1200], ytr[:1200], xte[:500], yte[:500]

    def prep(x):
        return ((x.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0 - MEAN) / STD)

    return (prep(xtr), ytr), (prep(xte), yte), source


class FastnnRun:
    """fastnn's half: Adam with the per-epoch learning rates, the batches in the given order."""

    def __init__(self, model: fnn.Sequential, threads: int) -> None:
        self.model, self.threads, self.seconds = model, threads, 0.0
        model.compile(fnn.optim.Adam(lr=LR[0]), "cross_entropy")

    def epoch(self, e: int, x, y, batch: int) -> None:
        """One pass over (x, y) in order, timed."""
        self.model.optimizer.lr = LR[min(e, len(LR) - 1)]
        with fnn.threads(self.threads):
            t0 = time.perf_counter()
            self.model.fit(x, y, epochs=1, batch_size=batch, shuffle=False, verbose=0)
            self.seconds += time.perf_counter() - t0

    def accuracy(self, xt, yt) -> float:
        """Test accuracy (inference mode)."""
        with fnn.threads(self.threads):
            return float(self.model.evaluate(xt, yt, batch_size=500)["accuracy"])


class TorchRun:
    """PyTorch's half: ``to_torch`` of the untrained fastnn model (the same initial weights),
    ``torch.optim.Adam`` with the same learning rates, the same batches.
    """

    def __init__(self, model: fnn.Sequential, threads: int) -> None:
        import torch

        self.torch, self.threads, self.seconds = torch, threads, 0.0
        self.net = fnn.interop.to_torch(model).train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=LR[0])
        self.lossf = torch.nn.CrossEntropyLoss()

    def epoch(self, e: int, x, y, batch: int) -> None:
        """One pass over (x, y) in order, timed."""
        torch = self.torch
        torch.set_num_threads(self.threads)
        for g in self.opt.param_groups:
            g["lr"] = LR[min(e, len(LR) - 1)]
        xs, ys = torch.from_numpy(x), torch.from_numpy(y)
        self.net.train()
        t0 = time.perf_counter()
        for s in range(0, len(xs), batch):
            self.opt.zero_grad(set_to_none=True)
            self.lossf(self.net(xs[s:s + batch]), ys[s:s + batch]).backward()
            self.opt.step()
        self.seconds += time.perf_counter() - t0

    def accuracy(self, xt, yt) -> float:
        """Test accuracy (eval mode)."""
        torch = self.torch
        self.net.eval()
        with torch.no_grad():
            pred = torch.cat([self.net(torch.from_numpy(xt[s:s + 500])).argmax(1)
                              for s in range(0, len(xt), 500)]).numpy()
        return float((pred == yt).mean())


def main(argv: list[str] | None = None) -> dict:
    """Train both, print a comparison, return the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1,200 images, 1 epoch")
    p.add_argument("--epochs", type=int, default=None, help="default 5 (1 with --quick)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="default: fastnn's")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--data-home", default=None)
    args = p.parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 5)
    threads = args.threads or fnn.get_num_threads()
    (x, y), (xt, yt), source = load(args.quick, args.data_home)
    rng = np.random.default_rng(SEED)
    model = build_resnet(args.width)
    runs: dict = {"fastnn": FastnnRun(model, threads)}
    if not args.no_torch:
        try:
            runs["torch"] = TorchRun(build_resnet(args.width), threads)  # same seed: same weights
        except ImportError:
            print("PyTorch: not installed, skipped")
    print(f"data: {source}; {len(x)} training, {len(xt)} test images; {epochs} epoch(s), "
          f"batch {args.batch}, {threads} thread(s), {model.count_params():,} parameters",
          flush=True)
    res: dict = {"source": source, "epochs": [], "fastnn": None, "torch": None}
    for e in range(epochs):  # the two alternate epoch by epoch: both see the same load
        order = rng.permutation(len(x))
        xs, ys = x[order], y[order]
        row = {"epoch": e + 1}
        for name, run in runs.items():
            run.epoch(e, xs, ys, args.batch)
            row[name] = {"accuracy": run.accuracy(xt, yt), "train_seconds": run.seconds}
        res["epochs"].append(row)
        print(f"epoch {e + 1}: " + "; ".join(
            f"{n} test accuracy {r['accuracy']:.4f} ({r['train_seconds']:.0f} s)"
            for n, r in row.items() if n != "epoch"), flush=True)
    last = res["epochs"][-1]
    res["fastnn"], res["torch"] = last["fastnn"], last.get("torch")
    f = res["fastnn"]
    print(f"fastnn : test accuracy {f['accuracy']:.4f}, training {f['train_seconds']:.1f} s")
    if res["torch"] is not None:
        t = res["torch"]
        print(f"PyTorch: test accuracy {t['accuracy']:.4f}, training {t['train_seconds']:.1f} s"
              f"  (fastnn {t['train_seconds'] / f['train_seconds']:.2f}x torch's speed)")
    return res

if __name__ == "__main__":
    main()
