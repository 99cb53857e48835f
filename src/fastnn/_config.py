"""Thread count and engine configuration, shared by every kernel call."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from collections.abc import Iterator

_num_threads: int | None = None
_default_threads: int | None = None


class _PerThread(threading.local):
    n: int | None = None
    precision: str | None = None


_local = _PerThread()


def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by a cgroup v2/v1 CPU quota, or None when there is no quota."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period_us = int(f.read())
        if quota_us > 0 and period_us > 0:
            return max(1, math.ceil(quota_us / period_us))
    except (OSError, ValueError):
        pass
    return None


def _usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, or ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - macOS / Windows


def default_num_threads() -> int:
    """Threads to use when the user has not chosen: ``OMP_NUM_THREADS`` if set,
    else the CPUs this process may run on, capped by a cgroup CPU quota.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    n = _usable_cpus()
    limit = _cgroup_cpu_limit() if sys.platform.startswith("linux") else None
    return max(1, min(n, limit) if limit else n)


def _thread_count(n: object, caller: str, stacklevel: int = 3) -> int:
    """Check a requested thread count and cap it at :func:`max_num_threads` (with a
    RuntimeWarning).  One rule for :func:`set_num_threads` and :func:`threads`.

    Raises
    ------
    TypeError
        ``n`` is not an int (bool excluded).
    ValueError
        ``n < 1``.
    """
    import numpy as np

    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"{caller}: n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{caller}: n must be >= 1, got {n!r}")
    cap = max_num_threads()
    if n > cap:
        import warnings

        warnings.warn(f"{caller}({n}): this process may run on {cap // 4} CPU(s); "
                      f"using {cap} threads (at most 4 per CPU: more only adds contention)",
                      RuntimeWarning, stacklevel=stacklevel)
        return cap
    return int(n)


def set_num_threads(n: int) -> None:
    """Set the number of threads every fastnn kernel may use.

    Parameters
    ----------
    n : int
        A positive thread count.  Results do not depend on it beyond float
        rounding (and are bitwise repeatable for a fixed count).  Capped at
        :func:`max_num_threads` (4 per available CPU) with a RuntimeWarning.

    """
    global _num_threads
    _num_threads = _thread_count(n, "set_num_threads")


def max_num_threads() -> int:
    """The most threads :func:`set_num_threads` grants: 4 per CPU this process may use
    (its affinity mask, or ``os.cpu_count()``).  A larger request is capped there, with a
    RuntimeWarning, so that a script written for a bigger machine still runs well.
    """
    return 4 * _usable_cpus()


def get_num_threads() -> int:
    """The number of threads fastnn's kernels use (see :func:`set_num_threads`).

    Until set, the default is computed once (``OMP_NUM_THREADS``, affinity, cgroup
    quota) and cached: this is called before every kernel.
    """
    global _default_threads
    n = _local.n
    if n is not None:
        return n
    if _num_threads is not None:
        return _num_threads
    if _default_threads is None:
        _default_threads = default_num_threads()
    return _default_threads


def chosen_num_threads() -> int | None:
    """The count chosen by :func:`set_num_threads` or :func:`threads` on this thread, or
    None when fastnn uses its default.
    """
    return _local.n if _local.n is not None else _num_threads


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Use ``n`` kernel threads in this block, on the calling thread only (None: no change).

    Unlike :func:`set_num_threads` this changes no process-wide setting, so two threads
    (e.g. two estimators fitting at once) can each use their own count.  ``n`` is
    checked and capped like :func:`set_num_threads`'s.
    """
    if n is None:
        yield
        return
    count = _thread_count(n, "threads", stacklevel=4)  # through contextlib's __enter__
    prev = _local.n
    _local.n = count
    try:
        yield
    finally:
        _local.n = prev


def set_flush_denormal(on: bool) -> None:
    """Choose how fastnn's kernels treat subnormal (denormal) numbers.

    Parameters
    ----------
    on : bool
        True (the default, as in JAX and TensorFlow): every kernel call runs with
        the x86 MXCSR's FTZ and DAZ bits set on every thread doing its work, so a
        result below the smallest normal number (1.2e-38 in float32, 2.2e-308 in
        float64) becomes 0 and a subnormal input reads as 0; Intel cores take a
        slow microcode assist on each subnormal otherwise (an Adam step over
        decayed state runs ~10x slower).  False: IEEE gradual underflow.  The
        caller's MXCSR is restored after each call either way, so NumPy code
        around the kernels is unaffected.  Process-wide, read at each call.
        No effect on CPUs without an MXCSR (non-x86 builds).

    """
    from . import _kernels

    if not isinstance(on, bool | __import__("numpy").bool_):
        raise TypeError(f"set_flush_denormal: on must be a bool, got {type(on).__name__}")
    _kernels.set_flush_denormal(bool(on))


def get_flush_denormal() -> bool:
    """True when kernels flush subnormals to zero (see :func:`set_flush_denormal`)."""
    from . import _kernels

    return bool(_kernels.get_flush_denormal())


_PRECISIONS = {"float32": "float32", "highest": "float32", "bf16": "bf16", "bfloat16": "bf16"}
_precision = "float32"


def _precision_name(precision: str, where: str) -> str:
    if not isinstance(precision, str):
        raise TypeError(f"{where}: precision must be a str, got {type(precision).__name__}")
    name = _PRECISIONS.get(precision.lower())
    if name is None:
        raise ValueError(f"{where}: precision must be 'float32' or 'bf16', got {precision!r}")
    return name


def set_matmul_precision(precision: str) -> None:
    """Choose the precision of every float32 matrix product fastnn computes.

    Parameters
    ----------
    precision : {"float32", "bf16"}
        ``"float32"`` (the default): full float32 products.  ``"bf16"``
        (alias ``"bfloat16"``): the two operands of each float32 GEMM -- Dense
        forward and both backward products (dx and dW), Conv2D forward and
        backward, :func:`fastnn.kernels.gemm`, the one-call Dense step -- are
        rounded to bfloat16 (round to nearest even; subnormals become zero, NaN
        and Inf stay, values past bfloat16's range become Inf) and multiplied
        with float32 accumulation, on AMX or AVX512-BF16 where the CPU has them
        and on a portable kernel elsewhere (same rounding, slower).  Parameters,
        gradients, optimizer state, activations, biases and losses stay float32.
        float64 models ignore the setting.  Process-wide (like
        ``torch.set_float32_matmul_precision``); :func:`matmul_precision` sets it
        for a block on one thread.  Nothing is saved with a model.

    """
    global _precision
    from . import _kernels

    name = _precision_name(precision, "set_matmul_precision")
    _kernels.set_matmul_precision(name == "bf16")
    _precision = name


def get_matmul_precision() -> str:
    """The matmul precision in force on this thread: ``"float32"`` or ``"bf16"``."""
    return _local.precision if _local.precision is not None else _precision


@contextlib.contextmanager
def matmul_precision(precision: str | None) -> Iterator[None]:
    """Use matmul precision ``precision`` in this block, on the calling thread only
    (None: no change); see :func:`set_matmul_precision`.

    Examples
    --------
    >>> with fastnn.matmul_precision("bf16"):   # doctest: +SKIP
    ...     model.fit(X, y, epochs=3)
    """
    if precision is None:
        yield
        return
    from . import _kernels

    name = _precision_name(precision, "matmul_precision")
    prev = _local.precision
    prev_c = _kernels.set_thread_matmul_precision(1 if name == "bf16" else 0)
    _local.precision = name
    try:
        yield
    finally:
        _local.precision = prev
        _kernels.set_thread_matmul_precision(prev_c)


def warn_isa_request() -> None:
    """Warn (``RuntimeWarning``) when ``FASTNN_ISA`` names an unknown level or one
    this CPU or build lacks; the kernels then run at the best level allowed.
    """
    import warnings

    from . import _kernels

    status = _kernels.isa_request()
    if status in ("none", "ok"):
        return
    got = _kernels.config()["isa"]
    value = os.environ.get("FASTNN_ISA", "")
    if status == "unknown":
        why = "is not one of generic, avx2, avx512, avx512_bf16, amx, neon"
    else:
        why = "is not supported by this CPU (or its OS)"
    warnings.warn(f"fastnn: FASTNN_ISA={value!r} {why}; using {got!r}, the best level "
                  "available", RuntimeWarning, stacklevel=2)
