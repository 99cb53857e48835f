"""Categorical embeddings on real tabular data, and the training step against PyTorch's.

scikit-learn's 8x8 digits (1,797 images, shipped with scikit-learn, no download) read
as a table of 64 categorical columns: each pixel takes one of 17 levels (0-16).  Each
(column, level) pair is a token (64 * 17 = 1,088 of them), so an image is a bag of 64
tokens; the model embeds each token, averages the bag (an EmbeddingBag in mean mode)
and classifies the mean with a small MLP:

    Embedding(1088, 32) -> GlobalAvgPool1D -> Dense(32, 64, relu) -> Dense(64, 10)

The script trains it (Adam, 30 epochs), reports the test accuracy, then times one
training step (forward, loss, backward, Adam) of the same network in fastnn, in
PyTorch as ``fastnn.interop.to_torch`` builds it (``nn.Embedding`` + mean) and in
PyTorch with ``nn.EmbeddingBag(mode="mean")``, interleaved, 1 thread.

    python examples/embedding_digits.py            # training + step timing
    python examples/embedding_digits.py --quick    # a few epochs, short timing
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from sklearn.datasets import load_digits

import fastnn as fnn

SEED = 0
LEVELS = 17
DIM = 32


def tokens(data: np.ndarray) -> np.ndarray:
    """(n, 64) pixel levels 0-16 -> (n, 64) token ids ``column * 17 + level``."""
    levels = data.astype(np.int64)
    return np.arange(levels.shape[1]) * LEVELS + levels


def build(vocab: int, seed: int = SEED) -> fnn.Sequential:
    """The bag-of-tokens classifier."""
    return fnn.Sequential([fnn.Embedding(vocab, DIM), fnn.GlobalAvgPool1D(),
                           fnn.Dense(DIM, 64, "relu", init="he_normal"), fnn.Dense(64, 10)],
                          seed=seed)


def step_timing(model: fnn.Sequential, x: np.ndarray, y: np.ndarray, batches: list[int],
                rounds: int, steps: int) -> list[dict]:
    """Samples/s of one training step, fastnn and torch interleaved (median of rounds)."""
    try:
        import torch
    except ImportError:
        torch = None
    rows = []
    with fnn.threads(1):
        for b in batches:
            xb, yb = x[:b], y[:b]
            m = build(model[0].num_embeddings)
            m.compile(fnn.optim.Adam(lr=1e-3), "cross_entropy")
            runs = {"fastnn": lambda m=m, xb=xb, yb=yb: m.train_step(xb, yb)}
            if torch is not None:
                torch.set_num_threads(1)
                tx, ty = torch.from_numpy(xb), torch.from_numpy(yb)
                net = fnn.interop.to_torch(m).train()
                bag = torch.nn.Sequential(
                    torch.nn.EmbeddingBag(m[0].num_embeddings, DIM, mode="mean"),
                    *list(net)[2:])  # the same MLP after the bag
                for name, mod in (("torch", net), ("torch_embeddingbag", bag)):
                    opt = torch.optim.Adam(mod.parameters(), lr=1e-3)

                    def step(mod=mod, opt=opt, tx=tx, ty=ty):
                        opt.zero_grad(set_to_none=True)
                        torch.nn.functional.cross_entropy(mod(tx), ty).backward()
                        opt.step()

                    runs[name] = step
            for fn in runs.values():
                for _ in range(3):
                    fn()
            rates: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(rounds):
                for name, fn in runs.items():
                    t0 = time.perf_counter()
                    for _ in range(steps):
                        fn()
                    rates[name].append(steps * b / (time.perf_counter() - t0))
            row = {"batch": b, **{k: statistics.median(v) for k, v in rates.items()}}
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Train, evaluate, time the step; print and return the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    d = load_digits()
    x, y = tokens(d.data), d.target.astype(np.int64)
    rng = np.random.default_rng(SEED)
    perm = rng.permutation(len(x))
    x, y = x[perm], y[perm]
    split = int(0.7 * len(x))
    xtr, ytr, xte, yte = x[:split], y[:split], x[split:], y[split:]
    vocab = 64 * LEVELS
    model = build(vocab)
    model.compile(fnn.optim.Adam(lr=3e-3), "cross_entropy")
    model.fit(xtr, ytr, epochs=5 if args.quick else 30, batch_size=32, verbose=0)
    acc = model.evaluate(xte, yte)["accuracy"]
    print(f"digits as 64 categorical columns ({vocab} tokens): test accuracy {acc:.4f} "
          f"({len(xte)} test rows)")
    rows = step_timing(model, np.concatenate([x] * 2), np.concatenate([y] * 2), [64, 256],
                       3 if args.quick else 15, 3 if args.quick else 10)
    for r in rows:
        peers = {k: v for k, v in r.items() if k not in ("batch", "fastnn")}
        line = f"batch {r['batch']:4d}: fastnn {r['fastnn']:,.0f} samples/s"
        for k, v in peers.items():
            line += f", {k} {v:,.0f} ({r['fastnn'] / v:.2f}x)"
        print(line + "  [1 thread, interleaved]")
    return {"accuracy": float(acc), "steps": rows}


if __name__ == "__main__":
    main()
