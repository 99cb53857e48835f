"""The public API, re-exported by ``fastnn/__init__.py`` when the compiled module is there."""


from __future__ import annotations

from . import (
    callbacks,
    data,
    init,
    kernels,
    losses,
    metrics,
    optim,
    reference,
    schedules,
    training,
)
from ._config import get_num_threads, set_num_threads, threads
from ._kernels import ACTIVATIONS
from ._validation import check_finite
from ._version import __version__
from .layers import (
    Activation,
    AvgPool2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Layer,
    MaxPool2D,
)
from .model import Sequential, load

__all__ = [
    "__version__",
    "ACTIVATIONS",
    "kernels",
    "reference",
    "callbacks",
    "init",
    "losses",
    "metrics",
    "data",
    "optim",
    "schedules",
    "training",
    "Sequential",
    "Layer",
    "Dense",
    "Dropout",
    "Activation",
    "Flatten",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "GlobalAvgPool2D",
    "load",
    "get_num_threads",
    "set_num_threads",
    "threads",
    "show_config",
    "config",
    "check_finite",
]


def config() -> dict:
    """The configuration in use: version, ISA, GEMM blocking, threads, OpenMP, NumPy."""
    import numpy as np

    from . import _kernels

    cfg = _kernels.config()
    cfg["version"] = __version__
    cfg["threads"] = get_num_threads()
    cfg["numpy"] = np.__version__
    return cfg


def show_config() -> None:
    """Print the ISA, block sizes and thread count fastnn uses on this machine."""
    cfg = config()
    print(f"fastnn {cfg['version']}")
    print(f"  isa        : {cfg['isa']} (cpu has avx2+fma: {cfg['cpu_has_avx2']})")
    print(f"  threads    : {cfg['threads']} (OpenMP {'on' if cfg['openmp'] else 'off'})")
    for dt in ("float32", "float64"):
        b = cfg[dt]
        print(f"  gemm {dt}: MR={b['MR']} NR={b['NR']} MC={b['MC']} KC={b['KC']} NC={b['NC']}")
    print(f"  numpy      : {cfg['numpy']}")
