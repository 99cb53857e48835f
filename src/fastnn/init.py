"""Weight initializers (Xavier/Glorot, He, LeCun), drawn from the model's Generator.

An initializer is a name or a callable ``init(fan_in, fan_out, shape, rng) -> ndarray``
(``shape`` is the weight's shape; fans follow PyTorch's convention: for a dense
weight (in, out) fan_in = in and fan_out = out; for a convolution kernel
(out_c, in_c, kh, kw) fan_in = in_c*kh*kw and fan_out = out_c*kh*kw).
Callables taking three arguments ``(fan_in, fan_out, rng)`` are accepted too and
must return an array of the weight's shape.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np

Initializer = Callable[..., np.ndarray]


def glorot_uniform(fan_in: int, fan_out: int, shape: tuple[int, ...],
                   rng: np.random.Generator) -> np.ndarray:
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, shape)


def glorot_normal(fan_in: int, fan_out: int, shape: tuple[int, ...],
                  rng: np.random.Generator) -> np.ndarray:
    """N(0, 2 / (fan_in + fan_out))."""
    return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)


def he_normal(fan_in: int, fan_out: int, shape: tuple[int, ...],
              rng: np.random.Generator) -> np.ndarray:
    """N(0, 2 / fan_in) (He et al. 2015), for ReLU networks."""
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)


def he_uniform(fan_in: int, fan_out: int, shape: tuple[int, ...],
               rng: np.random.Generator) -> np.ndarray:
    """U(-a, a) with a = sqrt(6 / fan_in)."""
    a = math.sqrt(6.0 / fan_in)
    return rng.uniform(-a, a, shape)


def lecun_normal(fan_in: int, fan_out: int, shape: tuple[int, ...],
                 rng: np.random.Generator) -> np.ndarray:
    """N(0, 1 / fan_in) (LeCun 1998)."""
    return rng.normal(0.0, math.sqrt(1.0 / fan_in), shape)


def zeros(fan_in: int, fan_out: int, shape: tuple[int, ...],
          rng: np.random.Generator) -> np.ndarray:
    """All zeros."""
    return np.zeros(shape)


INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "xavier_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_normal": glorot_normal,
    "he_normal": he_normal,
    "kaiming_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_uniform": he_uniform,
    "lecun_normal": lecun_normal,
    "zeros": zeros,
}


def check_initializer(init: str | Initializer, argname: str = "init") -> str | Initializer:
    """Validate an initializer argument early (at layer construction)."""
    if callable(init):
        return init
    if not isinstance(init, str) or init not in INITIALIZERS:
        raise ValueError(f"unknown {argname} {init!r}; expected a callable or one of "
                         f"{sorted(INITIALIZERS)}")
    return init


def draw(init: str | Initializer, fan_in: int, fan_out: int, shape: tuple[int, ...],
         rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    """Draw a weight of ``shape`` and ``dtype`` with initializer ``init``."""
    if isinstance(init, str):
        return _draw_builtin(INITIALIZERS[init], fan_in, fan_out, tuple(shape), rng,
                             np.dtype(dtype))
    fn = init
    try:
        n_params = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        n_params = 4
    values = fn(fan_in, fan_out, rng) if n_params == 3 else fn(fan_in, fan_out, shape, rng)
    values = np.asarray(values)
    if values.shape != tuple(shape):
        raise ValueError(f"initializer returned shape {values.shape}, expected {tuple(shape)}")
    return np.ascontiguousarray(values, dtype=dtype)


_CHUNK = 1 << 20  # elements drawn in float64 at a time


def _draw_builtin(fn: Initializer, fan_in: int, fan_out: int, shape: tuple[int, ...],
                  rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    """A built-in initializer's values written straight into an array of ``dtype``.

    The Generator draws in float64; drawing in chunks of at most ``_CHUNK`` elements
    gives the same values as one draw of the whole shape, while never holding more
    than the result (in its own dtype) plus one chunk: a float32 layer allocates and
    reports float32 sizes, not twice that.
    """
    out = np.empty(shape, dtype)  # MemoryError here names the layer's dtype and size
    flat = out.reshape(-1)
    for s in range(0, flat.size, _CHUNK):
        m = min(_CHUNK, flat.size - s)
        flat[s:s + m] = fn(fan_in, fan_out, (m,), rng)
    return out
