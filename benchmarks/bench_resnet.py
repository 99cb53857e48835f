"""Training step of the ResNet example (examples/resnet_mnist.py): fastnn vs PyTorch.

One step = forward, cross-entropy, backward and an Adam update, on a fixed batch of
(batch, 1, 28, 28) float32 images, 1 thread.  The torch network is
``fastnn.interop.to_torch`` of the fastnn one (same weights), in training mode
(batch statistics), with ``torch.optim.Adam`` (``foreach`` default).  The two run
interleaved, step by step in rounds, so both see the same machine load; the figure
is the median over rounds of samples/s, and the ratio fastnn / torch.

    python benchmarks/bench_resnet.py [--batches 64 256] [--rounds 15] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import fastnn as fnn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from resnet_mnist import build_resnet  # noqa: E402


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_fastnn(batch: int, rng: np.random.Generator):
    """A fastnn step on a fixed batch (the model's own buffers, as fit uses them)."""
    m = build_resnet()
    m.compile(fnn.optim.Adam(lr=1e-3), "cross_entropy")
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    return m, (lambda: m.train_step(x, y))


def make_torch(model: fnn.Sequential, batch: int, rng: np.random.Generator):
    """The same network in torch, one eager step (zero_grad, forward, loss, backward, Adam)."""
    import torch

    torch.set_num_threads(1)
    net = fnn.interop.to_torch(model).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch))

    def step():
        opt.zero_grad(set_to_none=True)
        lossf(net(x), y).backward()
        opt.step()

    return step


def run(batches: list[int], rounds: int, steps: int) -> dict:
    """Median samples/s of each contestant per batch size, interleaved round by round."""
    res: dict = {"cpu": _cpu(), "threads": 1, "rounds": rounds, "steps_per_round": steps,
                 "results": []}
    rng = np.random.default_rng(0)
    with fnn.threads(1):
        for b in batches:
            model, fstep = make_fastnn(b, rng)
            runs = {"fastnn": fstep}
            try:
                runs["torch"] = make_torch(model, b, rng)
            except ImportError:
                pass
            for fn in runs.values():  # warm up
                for _ in range(2):
                    fn()
            rates: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(rounds):
                for name, fn in runs.items():
                    t0 = time.perf_counter()
                    for _ in range(steps):
                        fn()
                    rates[name].append(steps * b / (time.perf_counter() - t0))
            row = {"batch": b, **{k: statistics.median(v) for k, v in rates.items()}}
            if "torch" in row:
                row["ratio"] = row["fastnn"] / row["torch"]
            res["results"].append(row)
            print(f"batch {b:4d}: " + ", ".join(f"{k} {row[k]:,.0f} samples/s" for k in runs)
                  + (f", fastnn / torch {row['ratio']:.2f}x" if "ratio" in row else ""),
                  flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--json", default=None, help="write the figures to this file")
    args = p.parse_args(argv)
    res = run(args.batches, args.rounds, args.steps)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
