"""Argument checks done once at the Python boundary, before any state changes.

Every error names the argument and says what was expected and what was received.
"""

from __future__ import annotations

import math
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


# ---- optimizer steps (shared by fastnn.kernels and fastnn.reference) -----------------
# Shared by these kernels and their twins in fastnn.reference, so that both
# accept and reject exactly the same arguments.  Every check runs before any
# array is written.

def real_number(value: Any, name: str, lo: float = 0.0, hi: float = math.inf, *,
          hi_open: bool = False) -> float:
    """``value`` as a finite float in [lo, hi] (or [lo, hi) when ``hi_open``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if not (lo <= v and (v < hi if hi_open else v <= hi)):
        if hi == math.inf:
            raise ValueError(f"{name} must be >= {lo:g}, got {value!r}")
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}{')' if hi_open else ']'}, "
                         f"got {value!r}")
    return v


def uint64(value: Any, name: str) -> int:
    """``value`` as an int in [0, 2**64)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= int(value) < 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    return int(value)


def param_grad(w: Any, g: Any) -> np.ndarray:
    """Check the parameter ``w`` (updated in place); ``g`` converted to w's dtype and shape."""
    if not isinstance(w, np.ndarray):
        raise TypeError(f"w must be a numpy.ndarray updated in place, got {type(w).__name__}")
    if w.dtype not in (np.float32, np.float64):
        raise TypeError(f"w must be float32 or float64, got {w.dtype}")
    output(w, "w", w.shape, w.dtype)
    g = as_float_array(g, "g", w.dtype)
    check_shape(g, "g", w.shape)
    if np.may_share_memory(g, w):  # the C loops declare w and g restrict
        raise ValueError("g overlaps w; pass the gradient in a separate array")
    return g


def check_states(w: np.ndarray, g: np.ndarray | None = None, **arrays: np.ndarray | None) -> None:
    """Each state array: w's shape and dtype, writable, C-contiguous, overlapping nothing
    (neither w, the gradient g, nor another state array).
    """
    seen = [w, g]
    for name, arr in arrays.items():
        if arr is not None:
            output(arr, name, w.shape, w.dtype, seen)
            seen.append(arr)


# One validator per optimizer: the hyper-parameter rules of fastnn.optim's constructors
# and param groups, fastnn.kernels' steps and their twins in fastnn.reference.  They are
# torch.optim's rules (lr, eps, momentum, weight_decay, lr_decay and
# initial_accumulator_value >= 0; betas in [0, 1); nesterov needs momentum > 0 and
# dampening == 0), with every value also required to be finite (torch accepts an
# infinite eps, which zeroes every update, and does not check dampening at all); and
# RMSprop's alpha in [0, 1] (torch accepts any alpha >= 0, but above 1 the running mean
# of g**2 is no longer a convex combination and goes negative: NaN).

def sgd_hparams(lr: Any, momentum: Any, dampening: Any, nesterov: Any,
                weight_decay: Any) -> tuple[float, float, float, float]:
    """SGD's (lr, momentum, dampening, weight_decay), checked."""
    lr = real_number(lr, "lr")
    momentum = real_number(momentum, "momentum")
    dampening = real_number(dampening, "dampening", -math.inf)
    weight_decay = real_number(weight_decay, "weight_decay")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"nesterov=True needs momentum > 0 and dampening == 0, got "
                         f"momentum={momentum!r}, dampening={dampening!r}")
    return lr, momentum, dampening, weight_decay


def adam_hparams(lr: Any, beta1: Any, beta2: Any, eps: Any,
                 weight_decay: Any) -> tuple[float, float, float, float, float]:
    """Adam's and AdamW's (lr, beta1, beta2, eps, weight_decay), checked."""
    return (real_number(lr, "lr"), real_number(beta1, "beta1", 0.0, 1.0, hi_open=True),
            real_number(beta2, "beta2", 0.0, 1.0, hi_open=True), real_number(eps, "eps"),
            real_number(weight_decay, "weight_decay"))


def rmsprop_hparams(lr: Any, alpha: Any, eps: Any, weight_decay: Any,
                    momentum: Any) -> tuple[float, float, float, float, float]:
    """RMSprop's (lr, alpha, eps, weight_decay, momentum), checked; alpha in [0, 1]."""
    return (real_number(lr, "lr"), real_number(alpha, "alpha", 0.0, 1.0),
            real_number(eps, "eps"), real_number(weight_decay, "weight_decay"),
            real_number(momentum, "momentum"))


def adagrad_hparams(lr: Any, lr_decay: Any, weight_decay: Any, eps: Any,
                    initial_accumulator_value: Any = 0.0
                    ) -> tuple[float, float, float, float, float]:
    """Adagrad's (lr, lr_decay, weight_decay, eps, initial_accumulator_value), checked."""
    return (real_number(lr, "lr"), real_number(lr_decay, "lr_decay"),
            real_number(weight_decay, "weight_decay"), real_number(eps, "eps"),
            real_number(initial_accumulator_value, "initial_accumulator_value"))


def check_sgd(w, g, buf, lr, momentum, dampening, nesterov, weight_decay) -> tuple:
    g = param_grad(w, g)
    lr, momentum, dampening, weight_decay = sgd_hparams(lr, momentum, dampening, nesterov,
                                                        weight_decay)
    if momentum != 0 and buf is None:
        raise ValueError(f"momentum={momentum!r} needs buf= (the momentum buffer, w's shape)")
    check_states(w, g, buf=buf if momentum != 0 else None)
    return g, lr, momentum, dampening, weight_decay


def check_adam(w, g, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay) -> tuple:
    g = param_grad(w, g)
    if m is None or v is None:
        raise ValueError("adam_step needs the moment arrays m and v (w's shape, zeros at start)")
    check_states(w, g, m=m, v=v, vmax=vmax)
    return (g, positive_int(step, "step"), *adam_hparams(lr, beta1, beta2, eps, weight_decay))


def check_rmsprop(w, g, sq, buf, gavg, lr, alpha, eps, weight_decay, momentum,
                   centered) -> tuple:
    g = param_grad(w, g)
    lr, alpha, eps, weight_decay, momentum = rmsprop_hparams(lr, alpha, eps, weight_decay,
                                                             momentum)
    if sq is None:
        raise ValueError("rmsprop_step needs sq (the running mean of g**2, w's shape)")
    if momentum > 0 and buf is None:
        raise ValueError(f"momentum={momentum!r} needs buf= (the momentum buffer, w's shape)")
    if centered and gavg is None:
        raise ValueError("centered=True needs gavg= (the running mean of g, w's shape)")
    check_states(w, g, sq=sq, buf=buf if momentum > 0 else None, gavg=gavg if centered else None)
    return g, lr, alpha, eps, weight_decay, momentum


def check_adagrad(w, g, sum_sq, step, lr, lr_decay, weight_decay, eps) -> tuple:
    g = param_grad(w, g)
    if sum_sq is None:
        raise ValueError("adagrad_step needs sum_sq (the running sum of g**2, w's shape)")
    check_states(w, g, sum_sq=sum_sq)
    return (g, positive_int(step, "step"), *adagrad_hparams(lr, lr_decay, weight_decay, eps)[:4])


# ---- dropout -------------------------------------------------------------------

def mask_array(mask: Any, name: str, shape: tuple, *, writable: bool) -> np.ndarray:
    """A uint8 (or bool, viewed as uint8) C-contiguous mask of ``shape``."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of uint8, got {type(mask).__name__}")
    if mask.dtype not in (np.uint8, np.bool_):
        raise TypeError(f"{name} must have dtype uint8 (or bool), got {mask.dtype}")
    check_shape(mask, name, shape)
    if not mask.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if writable and not mask.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return mask.view(np.uint8)


def check_dropout_forward(x, p, seed, offset, out, mask_out) -> tuple:
    x = as_float_array(x, "x", common_float_dtype(x))
    p = real_number(p, "p", 0.0, 1.0, hi_open=True)
    seed, offset = uint64(seed, "seed"), uint64(offset, "offset")
    out = output(out, "out", x.shape, x.dtype, same_ok=(x,))
    if mask_out is None:
        mask = np.empty(x.shape, dtype=np.uint8)
    else:
        mask = mask_array(mask_out, "mask_out", x.shape, writable=True)
        if np.may_share_memory(mask, x) or np.may_share_memory(mask, out):
            raise ValueError("mask_out overlaps x or out; pass a separate buffer")
    return x, p, seed, offset, out, mask


def check_dropout_backward(grad_out, mask, p, out) -> tuple:
    dy = as_float_array(grad_out, "grad_out", common_float_dtype(grad_out))
    mask = mask_array(mask, "mask", dy.shape, writable=False)
    p = real_number(p, "p", 0.0, 1.0, hi_open=True)
    return dy, mask, p, output(out, "out", dy.shape, dy.dtype, (mask,), same_ok=(dy,))



# ---- convolution and pooling windows ----------------------------------------------

MAX_WINDOW = 2**40


def window_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a window sliding over ``size`` (floor mode, as PyTorch):
    ``(size + 2 * padding - kernel) // stride + 1``.  The one place this formula is
    written in Python (convolution and pooling, kernels and layers).
    """
    return (size + 2 * padding - kernel) // stride + 1


def int2(value: Any, name: str, fn: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints as (a, b), each >= minimum; errors name the argument."""
    vals = value if isinstance(value, tuple | list) else (value, value)
    if len(vals) != 2:
        raise ValueError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value!r}")
        if v > MAX_WINDOW:  # keeps every size sum in the C code inside int64
            raise ValueError(f"{fn}: {name} must be <= 2**40, got {value!r}")
        out.append(int(v))
    return out[0], out[1]


def conv_padding(fn: str, kernel: tuple[int, int], stride: Any, padding: Any
                  ) -> tuple[int, int, int, int]:
    """(sh, sw, ph, pw) from stride and padding (int, pair, "valid" or "same")."""
    sh, sw = int2(stride, "stride", fn, 1)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return sh, sw, 0, 0
        if mode != "same":
            raise ValueError(f"{fn}: padding must be an int, a pair, 'valid' or 'same', "
                             f"got {padding!r}")
        if (sh, sw) != (1, 1):
            raise ValueError(f"{fn}: padding='same' needs stride 1 (as PyTorch), "
                             f"got stride {(sh, sw)}")
        if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise ValueError(f"{fn}: padding='same' needs odd kernel sizes (symmetric "
                             f"padding), got kernel {kernel}")
        return sh, sw, kernel[0] // 2, kernel[1] // 2
    ph, pw = int2(padding, "padding", fn, 0)
    return sh, sw, ph, pw


def window_out(fn: str, xshape: tuple[int, ...], kernel: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int], kname: str
                ) -> tuple[int, int]:
    """Output (oh, ow) of a window sliding over x's last two axes (floor mode)."""
    h, w = int(xshape[2]), int(xshape[3])
    if h + 2 * padding[0] < kernel[0] or w + 2 * padding[1] < kernel[1]:
        raise ValueError(
            f"{fn}: {kname} gives a kernel {kernel} larger than the padded input "
            f"{(h + 2 * padding[0], w + 2 * padding[1])} (x {tuple(xshape)}, padding {padding})"
        )
    return (window_size(h, kernel[0], stride[0], padding[0]),
            window_size(w, kernel[1], stride[1], padding[1]))


def pool_args(fn: str, kernel_size: Any, stride: Any, padding: Any
               ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(kernel, stride, padding) pairs of a pooling; stride None means the kernel size."""
    kernel = int2(kernel_size, "kernel_size", fn, 1)
    strides = kernel if stride is None else int2(stride, "stride", fn, 1)
    if isinstance(padding, str) and padding.lower() == "valid":
        padding = 0
    pads = int2(padding, "padding", fn, 0)
    if pads[0] > kernel[0] // 2 or pads[1] > kernel[1] // 2:
        raise ValueError(f"{fn}: padding must be at most half the kernel size (as PyTorch), "
                         f"got padding {pads} for kernel_size {kernel}")
    return kernel, strides, pads


def input_shape_4d(fn: str, input_shape: Any) -> tuple[int, int, int, int]:
    """input_shape as a 4-tuple of non-negative ints."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise TypeError(f"{fn}: input_shape must be a tuple (batch, channels, height, width), "
                        f"got {input_shape!r}") from None
    if len(shape) != 4 or min(shape) < 0:
        raise ValueError(f"{fn}: input_shape must be (batch, channels, height, width), "
                         f"got {input_shape!r}")
    return shape  # type: ignore[return-value]


def index_array(indices: Any, name: str = "indices") -> np.ndarray:
    """Integer ``indices`` as a C-contiguous int64 array (of the same shape).

    TypeError for a non-integer dtype (floats too, as ``torch.nn.Embedding``); floats
    holding whole numbers are accepted only by the layer, which converts them itself.
    """
    try:
        arr = np.asarray(indices)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and arr.size \
            and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: index {int(arr.max())} does not fit in int64")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_index_range(idx: np.ndarray, num_embeddings: int, fn: str) -> None:
    """ValueError naming the first index of the flattened ``idx`` outside [0, num_embeddings)
    (the message of the C check, for the NumPy twin).
    """
    flat = idx.reshape(-1)
    bad = np.flatnonzero((flat < 0) | (flat >= num_embeddings))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{fn}: index {int(flat[i])} at position {i} (of the flattened "
                         f"input) is outside [0, {num_embeddings}) (num_embeddings = "
                         f"{num_embeddings})")


def embedding_grad(grad_out: Any, idx: np.ndarray) -> np.ndarray:
    """``grad_out`` of an embedding backward: float, shape ``(*idx.shape, embedding_dim)``."""
    g = as_float_array(grad_out, "grad_out", common_float_dtype(grad_out))
    if g.ndim != idx.ndim + 1 or g.shape[:-1] != idx.shape:
        raise ValueError(f"grad_out must have shape {(*idx.shape, 'embedding_dim')}, got "
                         f"{g.shape}")
    return g


def input_shape_3d(fn: str, input_shape: Any) -> tuple[int, int, int]:
    """``input_shape`` as (batch, length, features) of non-negative ints."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: input_shape must be a tuple of 3 ints, got {input_shape!r}"
                        ) from None
    if len(shape) != 3 or min(shape) < 0:
        raise ValueError(f"{fn}: input_shape must be (batch, length, features) of "
                         f"non-negative ints, got {input_shape!r}")
    return shape  # type: ignore[return-value]


# ---- normalization (batch norm, layer norm) ----------------------------------------

def _channel_vec(v: Any, name: str, c: int, dtype: np.dtype, required: bool) -> np.ndarray | None:
    """A per-channel (c,) input converted to ``dtype``, or None when not given."""
    if v is None:
        if required:
            raise ValueError(f"{name} is required, of shape ({c},)")
        return None
    arr = as_float_array(v, name, dtype)
    check_shape(arr, name, (c,))
    return arr


def check_batchnorm_forward(x, weight, bias, running_mean, running_var, training, eps, out,
                            mean_out, var_out) -> tuple:
    """Checked arguments of ``batchnorm_forward``: x (n, c, *spatial) and (c,) vectors;
    returns (x, weight, bias, running_mean, running_var, training, eps, out, mean, var).
    """
    dt = common_float_dtype(x, weight, bias, running_mean, running_var)
    x = as_float_array(x, "x", dt)
    if x.ndim < 2:
        raise ValueError(f"x must be (batch, channels, ...) with at least 2 dimensions, got "
                         f"shape {x.shape}")
    c = x.shape[1]
    training = bool(training)
    eps = real_number(eps, "eps")
    w = _channel_vec(weight, "weight", c, dt, False)
    b = _channel_vec(bias, "bias", c, dt, False)
    rm = _channel_vec(running_mean, "running_mean", c, dt, not training)
    rv = _channel_vec(running_var, "running_var", c, dt, not training)
    if training and x.size // max(c, 1) == 0 and c:
        raise ValueError(f"batch norm in training needs at least one value per channel, got "
                         f"x of shape {x.shape}")
    ins = (x, w, b, rm, rv)
    out = output(out, "out", x.shape, dt, ins[1:], same_ok=(x,))
    mean = output(mean_out, "mean_out", (c,), dt, (*ins, out))
    var = output(var_out, "var_out", (c,), dt, (*ins, out, mean))
    return x, w, b, rm, rv, training, eps, out, mean, var


def check_batchnorm_backward(grad_out, x, mean, var, weight, training, eps, dx_out,
                             dweight_out, dbias_out) -> tuple:
    """Checked arguments of ``batchnorm_backward``; returns
    (dy, x, mean, var, weight, training, eps, dx, dweight, dbias).
    """
    dt = common_float_dtype(grad_out, x, mean, var, weight)
    x = as_float_array(x, "x", dt)
    if x.ndim < 2:
        raise ValueError(f"x must be (batch, channels, ...), got shape {x.shape}")
    dy = as_float_array(grad_out, "grad_out", dt)
    check_shape(dy, "grad_out", x.shape)
    c = x.shape[1]
    mean = _channel_vec(mean, "mean", c, dt, True)
    var = _channel_vec(var, "var", c, dt, True)
    w = _channel_vec(weight, "weight", c, dt, False)
    eps = real_number(eps, "eps")
    ins = (dy, x, mean, var, w)
    dx = output(dx_out, "dx_out", x.shape, dt, ins[1:], same_ok=(dy,))
    dw = output(dweight_out, "dweight_out", (c,), dt, (*ins, dx))
    db = output(dbias_out, "dbias_out", (c,), dt, (*ins, dx, dw))
    return dy, x, mean, var, w, bool(training), eps, dx, dw, db


def check_batchnorm_update_stats(running_mean, running_var, mean, var, count,
                                 momentum) -> tuple:
    """Checked arguments of ``batchnorm_update_stats``: ``running_mean``, ``running_var``
    are outputs (updated in place) of mean's shape and dtype (that of mean and var).
    """
    dt = common_float_dtype(mean, var)
    m = as_float_array(mean, "mean", dt, 1)
    c = m.shape[0]
    v = _channel_vec(var, "var", c, dt, True)
    rm = output(running_mean, "running_mean", (c,), dt, (m, v))
    rv = output(running_var, "running_var", (c,), dt, (m, v, rm))
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 2:
        raise ValueError(f"count must be an int >= 2 (values behind each statistic), got "
                         f"{count!r}")
    return rm, rv, m, v, int(count), real_number(momentum, "momentum", 0.0, 1.0)


def normalized_shape_of(normalized_shape: Any) -> tuple[int, ...]:
    """A layer norm's ``normalized_shape`` (an int or a tuple of ints >= 1) as a tuple."""
    shp = (normalized_shape,) if isinstance(normalized_shape, int | np.integer) \
        else normalized_shape
    try:
        out = tuple(int(d) for d in shp)
    except (TypeError, ValueError):
        raise TypeError(f"normalized_shape must be an int or a tuple of ints, got "
                        f"{normalized_shape!r}") from None
    if not out or any(isinstance(d, bool) or d < 1 for d in out):
        raise ValueError(f"normalized_shape must be a non-empty tuple of ints >= 1, got "
                         f"{normalized_shape!r}")
    return out


def check_layernorm_forward(x, normalized_shape, weight, bias, eps, out, mean_out,
                            rstd_out) -> tuple:
    """Checked arguments of ``layernorm_forward``; returns
    (x, shape, weight, bias, eps, out, mean, rstd) with mean, rstd of x.shape[:-k].
    """
    shape = normalized_shape_of(normalized_shape)
    dt = common_float_dtype(x, weight, bias)
    x = as_float_array(x, "x", dt)
    k = len(shape)
    if x.ndim < k or tuple(x.shape[x.ndim - k:]) != shape:
        raise ValueError(f"x's trailing dimensions must be normalized_shape {shape}, got x of "
                         f"shape {x.shape}")
    ws = []
    for name, v in (("weight", weight), ("bias", bias)):
        if v is None:
            ws.append(None)
            continue
        arr = as_float_array(v, name, dt)
        check_shape(arr, name, shape)
        ws.append(arr)
    lead = x.shape[:x.ndim - k]
    out = output(out, "out", x.shape, dt, ws, same_ok=(x,))
    mean = output(mean_out, "mean_out", lead, dt, (x, *ws, out))
    rstd = output(rstd_out, "rstd_out", lead, dt, (x, *ws, out, mean))
    return x, shape, ws[0], ws[1], real_number(eps, "eps"), out, mean, rstd


def check_layernorm_backward(grad_out, x, mean, rstd, weight, dx_out, dweight_out,
                             dbias_out) -> tuple:
    """Checked arguments of ``layernorm_backward``: the normalized shape is
    ``x.shape[mean.ndim:]``; returns (dy, x, mean, rstd, weight, dx, dweight, dbias).
    """
    dt = common_float_dtype(grad_out, x, mean, rstd, weight)
    x = as_float_array(x, "x", dt)
    dy = as_float_array(grad_out, "grad_out", dt)
    check_shape(dy, "grad_out", x.shape)
    mean = as_float_array(mean, "mean", dt)
    if mean.ndim >= x.ndim or tuple(x.shape[:mean.ndim]) != mean.shape:
        raise ValueError(f"mean must have x's leading shape (the rows normalized), got "
                         f"{mean.shape} for x of shape {x.shape}")
    rstd = as_float_array(rstd, "rstd", dt)
    check_shape(rstd, "rstd", mean.shape)
    shape = tuple(x.shape[mean.ndim:])
    w = None
    if weight is not None:
        w = as_float_array(weight, "weight", dt)
        check_shape(w, "weight", shape)
    ins = (dy, x, mean, rstd, w)
    dx = output(dx_out, "dx_out", x.shape, dt, ins[1:], same_ok=(dy,))
    dw = output(dweight_out, "dweight_out", shape, dt, (*ins, dx))
    db = output(dbias_out, "dbias_out", shape, dt, (*ins, dx, dw))
    return dy, x, mean, rstd, w, dx, dw, db
