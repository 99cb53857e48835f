"""fastnn: train neural networks on the CPU with fused C kernels.

Quick start::

    import fastnn as fnn
    out = fnn.kernels.dense_forward(x, w, b, activation="relu")

See ``python -m fastnn info`` for the ISA and threads in use.
"""

from __future__ import annotations

# first: when the compiled module is missing, name the cause (not a circular import)
from . import (
    _buildcheck,  # noqa: F401, I001
    callbacks,
    data,
    init,
    kernels,
    losses,
    metrics,
    optim,
    reference,
    schedules,
)
from ._config import get_num_threads, set_num_threads
from ._names import ACTIVATIONS
from ._validation import check_finite
from ._version import __version__
from .io import load_model as load
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
from .model import Sequential

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
    "show_config",
    "config",
    "check_finite",
]


#: Submodules with an optional dependency, imported on first attribute access
#: (PEP 562): ``import fastnn`` imports none of them (nor torch, scikit-learn, mpi4py).
_LAZY_SUBMODULES = ("interop", "sklearn", "distributed", "wrappers")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


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
