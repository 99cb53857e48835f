"""Argument checks done once at the Python boundary, before any state changes.

Every error names the argument and says what was expected and what was received.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def common_float_dtype(*arrays: Any) -> np.dtype:
    """float32 when every floating input is float32 (or narrower), else float64.

    Integer and boolean inputs do not force float64 on their own when a float32
    array is present; complex inputs are rejected.  (Called on every kernel call:
    one pass, no temporaries.)
    """
    any_float, wide = False, False
    for a in arrays:
        if a is None:
            continue
        dt = a.dtype if isinstance(a, np.ndarray) else np.asarray(a).dtype
        kind = dt.kind
        if kind == "f":
            any_float = True
            wide = wide or dt.itemsize > 4
        elif kind == "c":
            raise TypeError(f"complex arrays are not supported, got dtype {dt}")
        elif kind not in "iub":
            raise TypeError(f"expected numeric arrays, got dtype {dt}")
    return _F32 if any_float and not wide else _F64


def as_float_array(x: Any, name: str, dtype: np.dtype, ndim: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous array of ``dtype`` (a copy only when needed)."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 -- report any conversion failure uniformly
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def check_shape(arr: np.ndarray, name: str, expected: Sequence[int]) -> None:
    """ValueError unless ``arr.shape == expected``."""
    if tuple(arr.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {arr.shape}")


def same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` are exactly the same elements (same start, shape, strides)."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides)


def output(out: Any, name: str, shape: Sequence[int], dtype: np.dtype,
           inputs: Sequence[np.ndarray] = (), same_ok: Sequence[np.ndarray] = ()) -> np.ndarray:
    """A fresh array, or ``out`` checked as a writable C-contiguous result array.

    ``out`` must have exactly ``shape`` and ``dtype`` and must not overlap any of
    ``inputs`` (a kernel reading an input while writing the output would be wrong).
    ``out`` may be exactly an array of ``same_ok`` (an elementwise kernel that reads
    element i before writing element i works in place) but must not partly overlap one.
    """
    shape = tuple(int(s) for s in shape)
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    for arr in inputs:
        if arr is not None and np.may_share_memory(out, arr):
            raise ValueError(f"{name} overlaps an input array; pass a separate buffer")
    for arr in same_ok:
        if arr is not None and np.may_share_memory(out, arr) and not same_memory(out, arr):
            raise ValueError(f"{name} partly overlaps an input array; pass the input itself "
                             "(in place) or a separate buffer")
    return out


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1, else TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def labels_array(y: Any, n_rows: int, n_classes: int, name: str = "labels") -> np.ndarray:
    """Integer class labels (n_rows,) as int64, checked to lie in [0, n_classes)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer labels, got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name} must have {n_rows} entries (one per row), got {arr.shape[0]}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinity")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must be integral class indices, got non-integer values")
    elif arr.dtype.kind not in "iub":
        raise TypeError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    lab = np.ascontiguousarray(arr, dtype=np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
        raise ValueError(
            f"{name} must lie in [0, {n_classes}), got values in [{lab.min()}, {lab.max()}]"
        )
    return lab


def check_finite(*arrays: Any, names: str | Sequence[str] | None = None) -> None:
    """Raise ValueError if any array holds a NaN or an infinity.

    The error names the array and gives the index and value of its first
    non-finite element (in C order).  Integer and boolean arrays are always
    finite; ``None`` entries are skipped.

    Parameters
    ----------
    *arrays : array_like
    names : str or sequence of str, optional
        One name per array (a single string for a single array); default
        ``"array 0"``, ``"array 1"``...

    Example: ``fastnn.check_finite(X, y, names=["X", "y"])`` raises
    ``ValueError: y contains NaN at index (1,); value nan (1 non-finite of 5 elements)``.
    """
    if isinstance(names, str):
        names = [names]
    if names is not None and len(names) != len(arrays):
        raise ValueError(f"check_finite: got {len(arrays)} arrays but {len(names)} names")
    for i, a in enumerate(arrays):
        if a is None:
            continue
        name = names[i] if names is not None else f"array {i}"
        try:
            arr = np.asarray(a)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"{name} could not be converted to an array: {exc}") from None
        if arr.dtype.kind not in "fc":
            if arr.dtype.kind in "iub":
                continue
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
        # a sum is one cheap pass without a temporary; only a non-finite sum needs the search
        with np.errstate(all="ignore"):
            total = arr.sum(dtype=np.complex128 if arr.dtype.kind == "c" else np.float64)
        if np.isfinite(total):
            continue
        bad = ~np.isfinite(arr)
        if not bad.any():
            continue  # finite values whose sum overflowed
        flat = int(np.argmax(bad.reshape(-1)))
        idx = tuple(int(j) for j in np.unravel_index(flat, arr.shape))
        val = arr[idx].item()
        what = "NaN" if np.isnan(val) else "an infinity"
        raise ValueError(f"{name} contains {what} at index {idx}; value {val!r} "
                         f"({int(bad.sum())} non-finite of {arr.size} elements)")
