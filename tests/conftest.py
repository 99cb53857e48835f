"""Shared test helpers: dtype tolerances scaled with the reduction length."""

from __future__ import annotations

import math
import os
import signal
import zlib
from pathlib import Path

import numpy as np
import pytest

import fastnn

EPS = {np.dtype(np.float32): 1.2e-7, np.dtype(np.float64): 2.3e-16}

#: the optional peers fastnn's modules and the README's examples may import (fastnn.sklearn
#: needs scikit-learn, ...): where one is not installed (the emulated arm64 venv has none)
#: a test may skip what needs it; everything else must still import and run
OPTIONAL_PEERS = frozenset({"sklearn", "scipy", "torch", "mpi4py", "onnx", "onnxruntime",
                            "matplotlib", "pandas"})

# A shell that starts a command in the background (`cmd &` without job control, nohup)
# hands it SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the
# tests that deliver a real SIGINT (and the child processes they start, which inherit
# an ignored signal across exec) need Python's usual handler, as in a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def in_float64(twin, *args, **kwargs):
    """``twin(*args, **kwargs)`` with every float32 array argument widened to float64.

    The reference for a float32 product: NumPy's float32 matmul is a BLAS kernel whose
    own rounding error depends on the BLAS build and the CPU (OpenBLAS's Neoverse-N1
    sgemm is about twice as far from the exact product as fastnn), so a test comparing
    with it tests the BLAS too.  The float64 result is the exact product to float32's
    precision.  float64 arguments pass unchanged.
    """
    def wide(v):
        if isinstance(v, np.ndarray) and v.dtype == np.float32:
            return v.astype(np.float64)
        return v
    return twin(*map(wide, args), **{key: wide(v) for key, v in kwargs.items()})


def assert_close(actual, expected, dtype, k: int = 1, what: str = "", scale: float = 16.0,
                 floor: float = 1.0):
    """Assert |actual - expected| <= tol * (|expected| + floor * rms(expected)) elementwise.

    A relative test at every magnitude: tol = scale * eps(dtype) * sqrt(k), since a
    reduction of length k accumulates rounding error growing like sqrt(k).  Elements
    that cancel to near zero are held to ``floor`` times the array's typical magnitude
    (their rounding error is that of the terms, whose size the root mean square of the
    array measures, not that of the result); an all-zero
    expected array must be matched exactly.  On failure, report the worst absolute and
    relative difference and the first bad index.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    tol = scale * EPS[np.dtype(dtype)] * math.sqrt(max(k, 1))
    finite = np.isfinite(expected)
    rms = float(np.sqrt(np.mean(np.square(expected[finite])))) if finite.any() else 0.0
    mag = np.abs(expected) + floor * rms
    with np.errstate(invalid="ignore"):  # inf - inf: judged by `same` below
        err = np.abs(actual - expected)
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    bad = ~(same | (err <= tol * mag))
    if bad.any():
        idx = np.unravel_index(np.argmax(np.where(bad, err / (mag + 1e-300), -1)), err.shape)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements differ; worst abs diff "
            f"{err[idx]:.3e} at {tuple(int(i) for i in idx)} (got {actual[idx]!r}, "
            f"expected {expected[idx]!r}, rel {err[idx] / (abs(expected[idx]) + 1e-30):.3e}, "
            f"tol {tol:.2e}); first bad index {first}"
        )


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python that must import the same fastnn as this run.

    PYTHONPATH starts with the directory that holds the imported package (site-packages
    for an install, ``src/`` for an in-place build), whatever the working directory.
    """
    home = str(Path(fastnn.__file__).resolve().parent.parent)
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [home, env.get("PYTHONPATH")]))
    return env


def seeded_rng(*key) -> np.random.Generator:
    """A Generator seeded from ``key`` the same way in every process (not ``hash()``,
    which Python salts per process for strings)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def numeric_grad(model, x, y, arr, h: float = 1e-6) -> np.ndarray:
    """Central differences of ``model.compute_gradients(x, y)`` w.r.t. ``arr`` (in place)."""
    num = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + h
        lp = model.compute_gradients(x, y)
        arr[idx] = old - h
        lm = model.compute_gradients(x, y)
        arr[idx] = old
        num[idx] = (lp - lm) / (2 * h)
    return num


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Run a test at 1 and at 2 threads, restoring the previous setting."""
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(request.param)
    yield request.param
    fastnn.set_num_threads(old)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)
