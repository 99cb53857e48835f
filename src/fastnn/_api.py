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
from ._config import (
    get_flush_denormal,
    get_matmul_precision,
    get_num_threads,
    matmul_precision,
    set_flush_denormal,
    set_matmul_precision,
    set_num_threads,
    threads,
    warn_isa_request,
)
from ._kernels import ACTIVATIONS
from ._validation import check_finite
from ._version import __version__
from .layers import (
    Activation,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    Layer,
    LayerNorm,
    MaxPool2D,
    Residual,
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
    "Embedding",
    "GlobalAvgPool1D",
    "Residual",
    "BatchNorm1D",
    "BatchNorm2D",
    "LayerNorm",
    "load",
    "get_num_threads",
    "set_num_threads",
    "threads",
    "get_flush_denormal",
    "set_flush_denormal",
    "get_matmul_precision",
    "set_matmul_precision",
    "matmul_precision",
    "show_config",
    "config",
    "check_finite",
]


def config() -> dict:
    """The configuration in use.

    Returns
    -------
    dict
        ``isa`` ("generic", "avx2", "avx512", "avx512_bf16" or "amx" on x86-64;
        "generic" or "neon" on arm64: the level chosen at import), ``kernels`` (the
        level each kernel family runs at: gemm_f32, gemm_f64, conv_f32, conv_f64,
        activation, dropout, optimizer, all_finite, loss, gemm_bf16),
        ``matmul_precision`` (in force on this thread), ``bf16`` (the bf16 GEMM's
        blocking),
        ``cpu_features`` (avx2, fma, avx512f/bw/vl/dq, avx512_bf16, amx_*: bool),
        ``isa_supported`` (level -> bool), ``cpu_has_avx2``, ``float32`` /
        ``float64`` (GEMM blocking MR, NR, MC, KC, NC), ``flush_denormal``,
        ``openmp``, ``threads``, ``version``, ``numpy``.
    """
    import numpy as np

    from . import _kernels

    cfg = _kernels.config()
    cfg["version"] = __version__
    cfg["threads"] = get_num_threads()
    cfg["numpy"] = np.__version__
    return cfg


def show_config() -> None:
    """Print the ISA of each kernel family, the CPU's features, block sizes and threads."""
    import platform

    cfg = config()
    print(f"fastnn {cfg['version']}")
    levels = ", ".join(k for k, ok in cfg["isa_supported"].items() if ok)
    print(f"  isa        : {cfg['isa']} (levels this CPU runs: {levels})")
    feats = cfg["cpu_features"]
    print("  cpu        : " + " ".join(f"{k}={'yes' if v else 'no'}" for k, v in feats.items()))
    for fam, isa in cfg["kernels"].items():
        print(f"  kernels    : {fam:<11s} {isa}")
    print(f"  threads    : {cfg['threads']} (OpenMP {'on' if cfg['openmp'] else 'off'})")
    for dt in ("float32", "float64"):
        b = cfg[dt]
        print(f"  gemm {dt}: MR={b['MR']} NR={b['NR']} MC={b['MC']} KC={b['KC']} NC={b['NC']}")
    b = cfg["bf16"]
    print(f"  gemm bf16   : MR={b['MR']} NR={b['NR']} MC={b['MC']} KC={b['KC']} NC={b['NC']} "
          f"({cfg['kernels']['gemm_bf16']} kernel)")
    print(f"  matmul     : {cfg['matmul_precision']} (fastnn.set_matmul_precision)")
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        # no MXCSR (arm64): the setting is not applied there yet
        mode = "IEEE gradual underflow (set_flush_denormal acts on x86's MXCSR only)"
    elif cfg["flush_denormal"]:
        mode = "flushed to zero (FTZ+DAZ)"
    else:
        mode = "IEEE gradual underflow"
    print(f"  subnormals : {mode}")
    print(f"  numpy      : {cfg['numpy']}")


warn_isa_request()
