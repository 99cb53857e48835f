"""Convolution benchmark: fastnn vs torch.nn.functional.conv2d, one thread.

The case of issue 6: a 3x3 convolution, 3 -> 32 channels, 32x32 images, padding 1,
batch 64, float32.  "forward" is the convolution with bias; "forward+backward" adds
dL/dx, dL/dw and dL/db (PyTorch through autograd, with every input requiring grad).
fastnn writes into preallocated buffers, as its layers do.

    pytest benchmarks/bench_conv.py                 # pytest-benchmark tables
    python benchmarks/bench_conv.py [rounds]        # interleaved medians and ratios

The ratio is torch's time / fastnn's time (> 1 means fastnn is faster).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import pytest

import fastnn
from fastnn import kernels as K

N, C, H, W, OC, KS, PAD = 64, 3, 32, 32, 32, 3, 1


class FastnnConv:
    """fastnn's conv on fixed data, with output and gradient buffers owned like a layer's."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        self.w = (rng.standard_normal((OC, C, KS, KS)) * 0.2).astype(np.float32)
        self.b = rng.standard_normal(OC).astype(np.float32)
        self.g = rng.standard_normal((N, OC, H, W)).astype(np.float32)
        self.out = np.empty((N, OC, H, W), np.float32)
        self.dx = np.empty_like(self.x)
        self.dw = np.empty_like(self.w)
        self.db = np.empty_like(self.b)

    def forward(self) -> None:
        K.conv2d_forward(self.x, self.w, self.b, 1, PAD, out=self.out)

    def forward_backward(self) -> None:
        self.forward()
        K.conv2d_backward(self.g, self.x, self.w, self.out, None, 1, PAD, dx_out=self.dx,
                          dw_out=self.dw, db_out=self.db)


class TorchConv:
    """torch.nn.functional.conv2d on the same data."""

    def __init__(self, torch, ref: FastnnConv) -> None:
        self.torch = torch
        self.F = torch.nn.functional
        self.x = torch.from_numpy(ref.x.copy())
        self.w = torch.from_numpy(ref.w.copy())
        self.b = torch.from_numpy(ref.b.copy())
        self.g = torch.from_numpy(ref.g.copy())
        self.xr = self.x.clone().requires_grad_(True)
        self.wr = self.w.clone().requires_grad_(True)
        self.br = self.b.clone().requires_grad_(True)

    def forward(self) -> None:
        with self.torch.no_grad():
            self.F.conv2d(self.x, self.w, self.b, padding=PAD)

    def forward_backward(self) -> None:
        self.xr.grad = self.wr.grad = self.br.grad = None
        y = self.F.conv2d(self.xr, self.wr, self.br, padding=PAD)
        y.backward(self.g)


def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="module")
def one_thread():
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(1)
    yield
    fastnn.set_num_threads(old)


@pytest.fixture(scope="module")
def fast(one_thread):
    return FastnnConv()


@pytest.fixture(scope="module")
def ref_torch(fast):
    torch = _torch_or_none()
    if torch is None:
        pytest.skip("torch is not installed")
    return TorchConv(torch, fast)


@pytest.mark.benchmark(group="conv3x3 3->32 32x32 b64 f32 forward")
def test_forward_fastnn(benchmark, fast):
    benchmark(fast.forward)


@pytest.mark.benchmark(group="conv3x3 3->32 32x32 b64 f32 forward")
def test_forward_torch(benchmark, ref_torch):
    benchmark(ref_torch.forward)


@pytest.mark.benchmark(group="conv3x3 3->32 32x32 b64 f32 forward+backward")
def test_forward_backward_fastnn(benchmark, fast):
    benchmark(fast.forward_backward)


@pytest.mark.benchmark(group="conv3x3 3->32 32x32 b64 f32 forward+backward")
def test_forward_backward_torch(benchmark, ref_torch):
    benchmark(ref_torch.forward_backward)


def interleaved(rounds: int = 30, reps: int = 5) -> dict[str, dict[str, float]]:
    """Median seconds per call of each pass, fastnn and torch alternating call by call
    (so both see the same machine load), and the ratio torch / fastnn."""
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(1)
    try:
        fast = FastnnConv()
        torch = _torch_or_none()
        ref = TorchConv(torch, fast) if torch is not None else None
        out: dict[str, dict[str, float]] = {}
        for name in ("forward", "forward_backward"):
            runs = {"fastnn": getattr(fast, name)}
            if ref is not None:
                runs["torch"] = getattr(ref, name)
            for fn in runs.values():  # warm up
                fn()
            times: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(rounds):
                for key, fn in runs.items():
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        fn()
                    times[key].append((time.perf_counter() - t0) / reps)
            res = {k: statistics.median(v) for k, v in times.items()}
            if "torch" in res:
                res["ratio"] = res["torch"] / res["fastnn"]
            out[name] = res
        return out
    finally:
        fastnn.set_num_threads(old)


def main(argv: list[str]) -> None:
    rounds = int(argv[1]) if len(argv) > 1 else 30
    print(f"conv2d {C}->{OC} ch, {KS}x{KS}, {H}x{W}, padding {PAD}, batch {N}, float32, 1 thread")
    for name, res in interleaved(rounds).items():
        line = f"{name:17s} fastnn {res['fastnn'] * 1e3:7.2f} ms"
        if "torch" in res:
            line += (f"   torch {res['torch'] * 1e3:7.2f} ms"
                     f"   ratio torch/fastnn {res['ratio']:.2f}x")
        print(line)


if __name__ == "__main__":
    main(sys.argv)
