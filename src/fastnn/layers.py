"""Layers: each owns its parameters (views into the model's flat buffers) and the
work buffers of its forward/backward pass, sized once per batch shape and reused.

Work buffers and what a forward keeps for its backward are per Python thread
(``threading.local``): the kernels release the GIL, so two threads calling
``predict`` on one model run in parallel, each in its own buffers, while a
training thread keeps reusing its own.  Parameters are shared.

A layer's forward calls one C kernel; its backward calls one more.  Layers are
built by :class:`fastnn.Sequential`, which gives them the dtype and the model's
random Generator; before that ``weight`` and ``bias`` are ``None``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import _kernels as _k
from ._config import get_num_threads
from ._names import NEEDS_Z, activation_code, activation_name
from ._validation import (
    conv_padding,
    int2,
    normalized_shape_of,
    pool_args,
    positive_int,
    real_number,
    window_size,
)
from .init import Initializer, check_initializer, draw

SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


_version = [0]  # bumped whenever a layer's trainable flag or activation changes


def structure_version() -> int:
    """A counter that changes whenever any layer's ``trainable`` flag or activation changes:
    the training engine re-checks its cached optimizer attachment and one-call plans
    only then (a cheap test per step instead of a scan of every layer).
    """
    return _version[0]


class _ThreadState(threading.local):
    """A layer's per-thread state: work buffers by input shape (``cache``) and what the
    last forward on this thread keeps for the backward (``x``, ``bufs``...).
    """

    def __init__(self) -> None:
        self.cache: dict[tuple, dict[str, np.ndarray]] = {}


def _per_thread(name: str, doc: str) -> property:
    def get(self):
        try:
            return getattr(self._tls, name)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__}.{name}: no forward on this thread "
                                 "yet") from None

    def set_(self, value):
        setattr(self._tls, name, value)

    return property(get, set_, doc=doc)


class Layer:
    """Base class.  Subclasses define ``param_shapes``, ``output_shape``, ``forward``,
    ``backward`` and ``get_config``.

    Attributes
    ----------
    trainable : bool
        False freezes the layer: no gradients are applied, and its optimizer
        state and step count are kept, untouched, until it trains again (as a
        ``torch.optim`` parameter without a gradient).
    name : str
        Unique within a model (assigned by the model when not given).
    """

    #: names of the parameters, in the order of ``params``
    param_names: tuple[str, ...] = ()

    def __init__(self, name: str | None = None, trainable: bool = True) -> None:
        self.name = name
        self.trainable = bool(trainable)
        self.dtype: np.dtype | None = None
        self.params: list[np.ndarray] = []
        self.grads: list[np.ndarray] = []
        self._tls = _ThreadState()
        self.input_shape: tuple[int | None, ...] | None = None

    # ---- per-thread state ---------------------------------------------------
    @property
    def _cache(self) -> dict[tuple, dict[str, np.ndarray]]:
        """Work buffers of the calling thread, by input shape."""
        return self._tls.cache

    _x = _per_thread("x", "The input of this thread's last forward.")
    _bufs = _per_thread("bufs", "The buffers of this thread's last forward.")
    _shape = _per_thread("shape", "The input shape of this thread's last forward.")
    _training = _per_thread("training", "Whether this thread's last forward was training.")
    _act_used = _per_thread("act", "The activation code this thread's last forward applied.")

    def has_forward(self) -> bool:
        """True once this thread ran a forward through the layer (what a backward needs)."""
        return len(vars(self._tls)) > 1  # ``cache`` plus what the forward keeps

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_tls", None)  # thread-local buffers are neither copied nor pickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        for name in ("activation", "trainable"):  # pickled before they became properties
            if name in state:
                state["_" + name] = state.pop(name)
        self.__dict__.update(state)
        self._tls = _ThreadState()

    @property
    def trainable(self) -> bool:
        """False freezes the layer (no gradients applied; its optimizer state is kept)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        old = self.__dict__.get("_trainable")
        self._trainable = bool(value)
        if old is not None and old != self._trainable:  # a change, not the constructor
            _version[0] += 1

    # ---- parameters -------------------------------------------------------
    def param_shapes(self, input_shape: tuple[int | None, ...]) -> list[tuple[int, ...]]:
        """Shapes of this layer's parameters for a given per-sample input shape."""
        return []

    def init_params(self, rng: np.random.Generator, dtype: np.dtype) -> list[np.ndarray]:
        """Freshly drawn parameter values (called once, when the layer is built)."""
        return []

    @property
    def built(self) -> bool:
        """True once the layer has a dtype and its parameters."""
        return self.dtype is not None

    def build(self, input_shape: tuple[int | None, ...], dtype: np.dtype,
              rng: np.random.Generator) -> tuple[int | None, ...]:
        """Check ``input_shape`` (per sample), create parameters, return the output shape."""
        out_shape = self.output_shape(input_shape)
        dtype = np.dtype(dtype)
        if self.params and self.dtype == dtype:
            pass  # already built (e.g. reused in a new model): keep the values
        elif self.params:
            self.params = [np.ascontiguousarray(p, dtype=dtype) for p in self.params]
        else:
            self.params = self.init_params(rng, dtype)
        self.grads = [np.zeros_like(p) for p in self.params]
        self.dtype = dtype
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self._tls = _ThreadState()  # drop every thread's buffers (dtype or shapes changed)
        return out_shape

    def bind(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """Make this layer's parameters and gradients views of the model's flat buffers."""
        for view, p in zip(params, self.params):
            view[...] = p
        self.params = params
        self.grads = grads

    def set_param(self, i: int, value: Any) -> None:
        """Assign parameter ``i`` (``param_names[i]``) in place, shape-checked.

        The parameter stays a view of the model's flat buffer, so an optimizer
        attached to the model sees the new values.
        """
        if not self.params:
            raise RuntimeError(f"{self.name or type(self).__name__} is not built yet")
        arr = np.asarray(value)
        if arr.shape != self.params[i].shape:
            raise ValueError(f"{self.param_names[i]} must have shape {self.params[i].shape}, "
                             f"got {arr.shape}")
        self.params[i][...] = arr  # in place: stays a view of the model's buffer

    def num_params(self) -> int:
        """Number of scalar parameters."""
        return int(sum(p.size for p in self.params))

    # ---- computation -----------------------------------------------------
    def output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Per-sample output shape for a per-sample input shape (ValueError if invalid).

        ``None`` stands for a shape not known yet (checked at the first batch).
        """
        return None if input_shape is None else tuple(input_shape)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """Output of the layer; the array returned is a buffer reused by the next call."""
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray, need_dx: bool) -> np.ndarray | None:
        """Fill ``grads`` from dL/d(output) (when trainable); return dL/d(input) or None.

        ``grad_out`` may be overwritten (it is a buffer the model owns).
        """
        raise NotImplementedError

    def penalty(self) -> float:
        """Regularization term this layer adds to the loss."""
        return 0.0

    def _buffers(self, key: tuple, make: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
        """Work buffers for one input shape, allocated once and reused (at most 4 shapes)."""
        bufs = self._cache.get(key)
        if bufs is None:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            bufs = {name: np.empty(shape, dtype=self.dtype) for name, shape in make.items()}
            self._cache[key] = bufs
        return bufs

    # ---- description -----------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-serializable (used to save and clone)."""
        return {"name": self.name, "trainable": self.trainable}

    def state(self) -> dict[str, Any]:
        """Non-parameter state to save (e.g. RNG counters)."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""

    def buffers(self) -> dict[str, np.ndarray]:
        """Arrays that are saved with the weights but not trained (e.g. batch norm's
        running statistics): name -> the array itself (assigning into it in place sets
        the buffer).  None for most layers.  A layer holding other layers returns
        theirs under prefixed names (``"0.running_mean"``); ``save_weights`` /
        ``load_weights``, model files and DataParallel's broadcast all go through it.
        """
        return {}

    def set_buffers(self, values: dict[str, Any]) -> None:
        """Assign buffers by name (as :meth:`buffers` names them), shape-checked first."""
        mine = self.buffers()
        for key, v in values.items():
            if key not in mine:
                raise ValueError(f"{self.name or type(self).__name__} has no buffer {key!r}")
            if np.shape(v) != mine[key].shape:
                raise ValueError(f"{self.name}: buffer {key} must have shape {mine[key].shape}, "
                                 f"got {np.shape(v)}")
        for key, v in values.items():
            mine[key][...] = v

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items()
                         if k not in ("name", "trainable"))
        return f"{type(self).__name__}({args})"


class _ActivationMixin:
    """One fact for a layer's activation: the name (``activation``) and the C code the
    kernels take (``activation_code``) are set together, and setting it drops the
    per-thread work buffers (gelu/silu keep a pre-activation buffer the others lack),
    so ``layer.activation = "gelu"`` changes predictions, training and what is saved.
    """

    @property
    def activation(self) -> str:
        """Canonical activation name (see :data:`fastnn.ACTIVATIONS`); assignable."""
        return self._activation

    @activation.setter
    def activation(self, value: str | None) -> None:
        name = activation_name(value)
        old = self.__dict__.get("_activation")
        self._activation = name
        self._act = activation_code(name)
        self._tls = _ThreadState()
        if old is not None and old != name:  # a change, not the constructor
            _version[0] += 1

    @property
    def activation_code(self) -> int:
        """The activation's C enum code (``fnn_act`` in ``csrc/fastnn.h``)."""
        return self._act


class _WeightLayer(_ActivationMixin, Layer):
    """Shared parts of Dense and Conv2D: a weight ("kernel") and optional bias, a fused
    activation, an initializer and L1/L2 penalties on the weight.
    """

    param_names = ("weight", "bias")

    def _setup(self, activation: str | None, init: str | Initializer, bias: bool, l1: float,
               l2: float) -> None:
        self.activation = activation
        self.init = check_initializer(init)
        self.use_bias = bool(bias)
        for nm, v in (("l1", l1), ("l2", l2)):
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{nm} must be a finite number >= 0, got {v}")
        self.l1, self.l2 = float(l1), float(l2)
        if not self.use_bias:
            self.param_names = ("weight",)

    @property
    def weight(self) -> np.ndarray | None:
        """The weight (see the class's Notes for its shape), or None before the layer is built."""
        return self.params[0] if self.params else None

    @weight.setter
    def weight(self, value: Any) -> None:
        self.set_param(0, value)

    @property
    def bias(self) -> np.ndarray | None:
        """The bias, or None (no bias, or not built)."""
        return self.params[1] if self.use_bias and self.params else None

    @bias.setter
    def bias(self, value: Any) -> None:
        if not self.use_bias:
            raise AttributeError(f"this {type(self).__name__} layer was created with bias=False")
        self.set_param(1, value)

    @property
    def grad_weight(self) -> np.ndarray | None:
        """dL/dweight from the last backward pass."""
        return self.grads[0] if self.grads else None

    @property
    def grad_bias(self) -> np.ndarray | None:
        """dL/dbias from the last backward pass."""
        return self.grads[1] if self.use_bias and self.grads else None

    def _add_penalty_grads(self) -> None:
        """grad_weight += d(l1 sum|W| + l2 sum W^2)/dW."""
        if self.l1 or self.l2:
            w, gw = self.params[0], self.grads[0]
            if self.l2:
                gw += (2 * self.l2) * w
            if self.l1:
                gw += self.l1 * np.sign(w)

    def penalty(self):
        """l1 * sum|W| + l2 * sum W^2."""
        if not (self.l1 or self.l2) or not self.params:
            return 0.0
        w = self.params[0]
        return float(self.l1 * np.abs(w).sum() + self.l2 * np.square(w).sum())

    def _config(self) -> dict[str, Any]:
        init = self.init if isinstance(self.init, str) else "glorot_uniform"
        return {"activation": self.activation, "init": init, "bias": self.use_bias,
                "l1": self.l1, "l2": self.l2, **Layer.get_config(self)}


class Dense(_WeightLayer):
    """Fully connected layer ``y = act(x @ weight + bias)``, forward in one fused kernel.

    Parameters
    ----------
    in_features, out_features : int
    activation : str or None
        One of :data:`fastnn.ACTIVATIONS` (None = identity).
    init : str or callable
        Weight initializer (see :mod:`fastnn.init`); biases start at zero.
    bias : bool
    l1, l2 : float
        Add ``l1 * sum|W| + l2 * sum W**2`` to the loss (weights only), as Keras'
        kernel regularizers.
    name : str, optional
    trainable : bool

    Notes
    -----
    Input (batch, in_features); output (batch, out_features).  ``weight`` is
    (in_features, out_features) (the transpose of ``torch.nn.Linear.weight``).
    """

    def __init__(self, in_features: int, out_features: int, activation: str | None = None,
                 init: str | Initializer = "glorot_uniform", bias: bool = True, l1: float = 0.0,
                 l2: float = 0.0, name: str | None = None, trainable: bool = True) -> None:
        super().__init__(name, trainable)
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self._setup(activation, init, bias, l1, l2)

    def param_shapes(self, input_shape):
        """Weight (in, out) and bias (out,)."""
        shapes = [(self.in_features, self.out_features)]
        return shapes + [(self.out_features,)] if self.use_bias else shapes

    def init_params(self, rng, dtype):
        """Weight from ``init``; bias zero."""
        w = draw(self.init, self.in_features, self.out_features,
                 (self.in_features, self.out_features), rng, dtype)
        return [w, np.zeros(self.out_features, dtype)] if self.use_bias else [w]

    def output_shape(self, input_shape):
        """(out_features,) for an input of (in_features,)."""
        if input_shape is None:
            return (self.out_features,)
        if len(input_shape) != 1:
            raise ValueError(
                f"{self.name or 'Dense'} takes 2-D input (batch, features); got per-sample "
                f"shape {tuple(input_shape)} (put a Flatten layer before it)")
        if input_shape[0] is not None and input_shape[0] != self.in_features:
            raise ValueError(f"{self.name or 'Dense'} expects {self.in_features} input features, "
                             f"got {input_shape[0]}")
        return (self.out_features,)

    def forward(self, x, training, logits=False):
        """act(x @ W + b) in one kernel call; keeps x, a (and z for gelu/silu) for backward.

        ``logits=True`` skips the activation (returns z), for a loss fused with it.
        """
        n = x.shape[0]
        make = {"a": (n, self.out_features), "dx": (n, self.in_features)}
        if self.activation in NEEDS_Z:
            make["z"] = (n, self.out_features)
        bufs = self._buffers((n,), make)
        act = 0 if logits else self._act
        _k.dense_forward[SPEC[self.dtype]](bufs["a"], bufs.get("z"), x, self.params[0],
                                           self.params[1] if self.use_bias else None,
                                           act, get_num_threads())
        self._x, self._bufs, self._act_used = x, bufs, act
        return bufs["a"]

    def backward(self, grad_out, need_dx):
        """Delta = grad_out * act'(z) (in place), dW = x^T delta, db = sum delta, dx = delta W^T."""
        bufs = self._bufs
        dx = bufs["dx"] if need_dx else None
        train = self.trainable
        _k.dense_backward[SPEC[self.dtype]](
            dx, self.grads[0] if train else None,
            self.grads[1] if (train and self.use_bias) else None, grad_out, grad_out,
            bufs["a"], bufs.get("z"), self._x, self.params[0], self._act_used, 0.0,
            get_num_threads())
        if train:
            self._add_penalty_grads()
        return dx

    def get_config(self):
        """Constructor arguments."""
        return {"in_features": self.in_features, "out_features": self.out_features,
                **self._config()}


class Activation(_ActivationMixin, Layer):
    """A standalone activation layer, ``y = act(x)`` (softmax over the last axis).

    Parameters
    ----------
    activation : str
    name : str, optional
    """

    def __init__(self, activation: str, name: str | None = None) -> None:
        super().__init__(name, True)
        self.activation = activation

    def forward(self, x, training, logits=False):
        """act(x) into a reused buffer; keeps x only when the derivative needs it.

        ``logits=True`` returns x unchanged, for a loss fused with the activation.
        """
        self._act_used = 0 if logits else self._act
        if logits:
            return x
        bufs = self._buffers(x.shape, {"a": x.shape})
        rows = x.reshape(-1, x.shape[-1])
        _k.act_forward[SPEC[self.dtype]](bufs["a"].reshape(rows.shape), rows, self._act)
        self._x, self._bufs = x, bufs
        return bufs["a"]

    def backward(self, grad_out, need_dx):
        """grad_out * act'(x), in place in grad_out."""
        if not need_dx or self._act_used == 0:
            return grad_out if need_dx else None
        shape2 = (-1, grad_out.shape[-1])
        g = grad_out.reshape(shape2)
        z = self._x.reshape(shape2) if self.activation in NEEDS_Z else None
        _k.act_backward[SPEC[self.dtype]](g, None, g, self._bufs["a"].reshape(shape2), z,
                                          self._act)
        return grad_out

    def get_config(self):
        """Constructor arguments."""
        return {"activation": self.activation, "name": self.name}


#: guards the reservation of Dropout mask-stream stretches (two threads calling forward
#: on one layer get distinct masks and the counter advances by both)
_COUNTER_LOCK = threading.Lock()


class Dropout(Layer):
    """Inverted dropout: in training, zero each input with probability ``p`` and scale the
    rest by ``1 / (1 - p)``; identity at inference.

    The mask comes from a counter-based RNG keyed on the model's seed, the layer's
    position and a counter of the elements it has seen, so it is reproducible,
    independent of the thread count, and saved with the model.  Backward reuses it.
    Each forward reserves its stretch of the stream under a lock, so two threads
    calling forward on one layer get distinct masks (which one gets which stretch
    depends on their timing).

    Parameters
    ----------
    p : float
        Drop probability in [0, 1).
    name : str, optional
    """

    def __init__(self, p: float = 0.5, name: str | None = None) -> None:
        super().__init__(name, True)
        self.p = p
        self.seed = 0
        self.counter = 0

    @property
    def p(self) -> float:
        """The drop probability, in [0, 1) (checked whenever it is set)."""
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"Dropout p must be a number in [0, 1), got {value!r}") from None
        if isinstance(value, bool) or not (0.0 <= v < 1.0):
            raise ValueError(f"Dropout p must be in [0, 1), got {value!r}")
        self._p = v

    def forward(self, x, training):
        """Masked, scaled copy of x in training; x itself otherwise."""
        self._training = training and self.p > 0
        if not self._training:
            return x
        bufs = self._buffers(x.shape, {"out": x.shape})
        if "mask" not in bufs:
            bufs["mask"] = np.empty(x.shape, np.uint8)
        with _COUNTER_LOCK:  # each call reserves its own stretch of the mask stream
            offset = self.counter
            self.counter = offset + x.size
        _k.dropout_forward[SPEC[self.dtype]](bufs["out"].reshape(-1), bufs["mask"].reshape(-1),
                                             x.reshape(-1), self.p, self.seed, offset,
                                             get_num_threads())
        self._bufs = bufs
        return bufs["out"]

    def backward(self, grad_out, need_dx):
        """grad_out * mask / (1 - p), in place."""
        if not need_dx or not self._training:
            return grad_out if need_dx else None
        g = grad_out.reshape(-1)
        _k.dropout_backward[SPEC[self.dtype]](g, g, self._bufs["mask"].reshape(-1), self.p,
                                              get_num_threads())
        return grad_out

    def get_config(self):
        """Constructor arguments."""
        return {"p": self.p, "name": self.name}

    def state(self):
        """The RNG key and counter."""
        return {"seed": int(self.seed), "counter": int(self.counter)}

    def set_state(self, state):
        """Restore the RNG key and counter (each in [0, 2**64))."""
        seed, counter = int(state["seed"]), int(state["counter"])
        if not (0 <= seed < 2**64 and 0 <= counter < 2**64):
            raise ValueError(f"Dropout state must have seed and counter in [0, 2**64), got "
                             f"{state!r}")
        self.seed, self.counter = seed, counter


class Flatten(Layer):
    """Flatten every axis but the batch axis: (batch, d1, d2, ...) -> (batch, d1*d2*...)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name, True)

    def output_shape(self, input_shape):
        """(prod(input_shape),), or (None,) when a dimension is unknown."""
        if input_shape is None or any(d is None for d in input_shape):
            return (None,)
        return (int(np.prod(input_shape)),)

    def forward(self, x, training):
        """A reshaped view of x."""
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out, need_dx):
        """grad_out reshaped to the input's shape."""
        return grad_out.reshape(self._shape) if need_dx else None

    def get_config(self):
        """Constructor arguments."""
        return {"name": self.name}


def _spatial_out(layer: str, input_shape, kernel, stride, padding, channels: int | None = None):
    """(C, OH, OW) of a window op over a per-sample (C, H, W) shape; None dims pass through."""
    if input_shape is None:
        return None
    if len(input_shape) != 3:
        raise ValueError(f"{layer} takes 4-D input (batch, channels, height, width); got "
                         f"per-sample shape {tuple(input_shape)}")
    c, h, w = input_shape
    if channels is not None and c is not None and c != channels:
        raise ValueError(f"{layer} expects {channels} input channels, got {c}")
    dims = []
    for size, k, st, p in zip((h, w), kernel, stride, padding):
        if size is None:
            dims.append(None)
            continue
        if size + 2 * p < k:
            raise ValueError(f"{layer}: kernel {tuple(kernel)} is larger than the padded input "
                             f"{(h + 2 * padding[0], w + 2 * padding[1])}")
        dims.append(window_size(size, k, st, p))
    return (c, *dims)


class Conv2D(_WeightLayer):
    """2-D convolution on NCHW arrays (weight sharing), bias and activation fused.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride : int or pair of int
    padding : int, pair, "valid" or "same" (stride 1, odd kernels)
    activation : str or None
    init : str or callable
        fan_in = in_channels*kh*kw, fan_out = out_channels*kh*kw (PyTorch's convention).
    bias : bool
    l1, l2 : float
        Penalties on the kernel, as :class:`Dense`.
    name : str, optional
    trainable : bool

    Notes
    -----
    Input (batch, in_channels, H, W); output (batch, out_channels, OH, OW) with
    OH = (H + 2*ph - kh) // sh + 1.  ``weight`` is (out_channels, in_channels, kh, kw),
    PyTorch's layout, so ``torch.nn.Conv2d`` weights port unchanged.  The math equals
    ``torch.nn.functional.conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, activation: str | None = None,
                 init: str | Initializer = "glorot_uniform", bias: bool = True, l1: float = 0.0,
                 l2: float = 0.0, name: str | None = None, trainable: bool = True) -> None:
        super().__init__(name, trainable)
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = int2(kernel_size, "kernel_size", "Conv2D", 1)
        sh, sw, ph, pw = conv_padding("Conv2D", self.kernel_size, stride, padding)
        self.stride, self.padding = (sh, sw), (ph, pw)
        self._setup(activation, init, bias, l1, l2)

    def param_shapes(self, input_shape):
        """Weight (oc, ic, kh, kw) and bias (oc,)."""
        shapes = [(self.out_channels, self.in_channels, *self.kernel_size)]
        return shapes + [(self.out_channels,)] if self.use_bias else shapes

    def init_params(self, rng, dtype):
        """Kernel from ``init``; bias zero."""
        kh, kw = self.kernel_size
        shape = (self.out_channels, self.in_channels, kh, kw)
        w = draw(self.init, self.in_channels * kh * kw, self.out_channels * kh * kw, shape, rng,
                 dtype)
        return [w, np.zeros(self.out_channels, dtype)] if self.use_bias else [w]

    def output_shape(self, input_shape):
        """(out_channels, OH, OW)."""
        out = _spatial_out(self.name or "Conv2D", input_shape, self.kernel_size, self.stride,
                           self.padding, self.in_channels)
        return (self.out_channels, None, None) if out is None else (self.out_channels, *out[1:])

    def _work(self, x: np.ndarray, nt: int) -> np.ndarray:
        n, c, h, w = x.shape
        key = ("work", x.shape, nt)
        buf = self._cache.get(key)
        if buf is None:
            nbytes = _k.conv2d_workspace_size(n, c, h, w, self.out_channels, *self.kernel_size,
                                              *self.stride, *self.padding,
                                              self.dtype.itemsize, nt)
            buf = {"work": np.empty(max(int(nbytes), 1), np.uint8)}
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = buf
        return buf["work"]

    def forward(self, x, training, logits=False):
        """act(conv2d(x, W) + b) in one kernel call (implicit GEMM, epilogue fused).

        ``logits=True`` skips the activation, for a loss fused with it.
        """
        n = x.shape[0]
        _, oh, ow = self.output_shape(x.shape[1:])
        make = {"a": (n, self.out_channels, oh, ow), "dx": x.shape}
        if self.activation in NEEDS_Z:
            make["z"] = make["a"]
        bufs = self._buffers(x.shape, make)
        nt = get_num_threads()
        act = 0 if logits else self._act
        _k.conv2d_forward[SPEC[self.dtype]](bufs["a"], bufs.get("z"), self._work(x, nt), x,
                                            self.params[0],
                                            self.params[1] if self.use_bias else None,
                                            *self.stride, *self.padding, act, nt)
        self._x, self._bufs, self._act_used = x, bufs, act
        return bufs["a"]

    def backward(self, grad_out, need_dx):
        """dW, db from delta = grad_out * act'(z); dx by col2im (skipped when not needed)."""
        bufs = self._bufs
        train = self.trainable
        if train:
            dw = self.grads[0]
        else:  # a frozen layer still needs somewhere to put dW: the kernel computes it
            dw = bufs.get("dw_scratch")
            if dw is None:
                dw = bufs["dw_scratch"] = np.empty_like(self.params[0])
        nt = get_num_threads()
        _k.conv2d_backward[SPEC[self.dtype]](
            bufs["dx"] if need_dx else None, dw,
            self.grads[1] if (train and self.use_bias) else None, self._work(self._x, nt),
            grad_out, bufs["a"], bufs.get("z"), self._x, self.params[0], *self.stride,
            *self.padding, self._act_used, 0.0, nt)
        if train:
            self._add_penalty_grads()
        return bufs["dx"] if need_dx else None

    def get_config(self):
        """Constructor arguments."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), **self._config()}


class _Pool2D(Layer):
    """Shared parts of the 2-D pooling layers."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 name: str | None = None) -> None:
        super().__init__(name, True)
        kind = type(self).__name__
        self.kernel_size, self.stride, self.padding = pool_args(kind, kernel_size, stride,
                                                                 padding)

    def output_shape(self, input_shape):
        """(C, OH, OW)."""
        return _spatial_out(self.name or type(self).__name__, input_shape, self.kernel_size,
                            self.stride, self.padding)

    def get_config(self):
        """Constructor arguments."""
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "name": self.name}


class MaxPool2D(_Pool2D):
    """Max pooling over (kh, kw) windows (``torch.nn.functional.max_pool2d``, floor mode).

    Parameters
    ----------
    kernel_size : int or pair
    stride : int or pair, optional (default: kernel_size)
    padding : int or pair (at most half the kernel)
    name : str, optional
    """

    def forward(self, x, training):
        """Window maxima; the argmax indices are kept for backward."""
        n, c = x.shape[:2]
        _, oh, ow = self.output_shape(x.shape[1:])
        bufs = self._buffers(x.shape, {"a": (n, c, oh, ow), "dx": x.shape})
        if "idx" not in bufs:
            bufs["idx"] = np.empty((n, c, oh, ow), np.int64)
        _k.maxpool2d_forward[SPEC[self.dtype]](bufs["a"], bufs["idx"], x, *self.kernel_size,
                                               *self.stride, *self.padding, get_num_threads())
        self._bufs = bufs
        return bufs["a"]

    def backward(self, grad_out, need_dx):
        """Each gradient goes to its window's maximum (first one on ties)."""
        if not need_dx:
            return None
        bufs = self._bufs
        _k.maxpool2d_backward[SPEC[self.dtype]](bufs["dx"], grad_out, bufs["idx"],
                                                get_num_threads())
        return bufs["dx"]


class AvgPool2D(_Pool2D):
    """Average pooling (``torch.nn.functional.avg_pool2d`` defaults: padding counted).

    Parameters
    ----------
    kernel_size : int or pair
    stride : int or pair, optional (default: kernel_size)
    padding : int or pair
    name : str, optional
    """

    def forward(self, x, training):
        """Window means."""
        n, c = x.shape[:2]
        _, oh, ow = self.output_shape(x.shape[1:])
        bufs = self._buffers(x.shape, {"a": (n, c, oh, ow), "dx": x.shape})
        _k.avgpool2d_forward[SPEC[self.dtype]](bufs["a"], x, *self.kernel_size, *self.stride,
                                               *self.padding, get_num_threads())
        self._bufs = bufs
        return bufs["a"]

    def backward(self, grad_out, need_dx):
        """grad_out / (kh*kw) spread over each window."""
        if not need_dx:
            return None
        bufs = self._bufs
        _k.avgpool2d_backward[SPEC[self.dtype]](bufs["dx"], grad_out, *self.kernel_size,
                                                *self.stride, *self.padding, get_num_threads())
        return bufs["dx"]


class GlobalAvgPool2D(Layer):
    """Mean over each channel's plane: (batch, C, H, W) -> (batch, C)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name, True)

    def output_shape(self, input_shape):
        """(C,)."""
        if input_shape is None:
            return (None,)
        if len(input_shape) != 3:
            raise ValueError(f"{self.name or 'GlobalAvgPool2D'} takes 4-D input (batch, "
                             f"channels, height, width); got per-sample shape "
                             f"{tuple(input_shape)}")
        return (input_shape[0],)

    def forward(self, x, training):
        """Plane means."""
        bufs = self._buffers(x.shape, {"a": x.shape[:2], "dx": x.shape})
        _k.global_avgpool_forward[SPEC[self.dtype]](bufs["a"], x, get_num_threads())
        self._bufs = bufs
        return bufs["a"]

    def backward(self, grad_out, need_dx):
        """grad_out / (H*W) over each plane."""
        if not need_dx:
            return None
        bufs = self._bufs
        _k.global_avgpool_backward[SPEC[self.dtype]](bufs["dx"], grad_out, get_num_threads())
        return bufs["dx"]

    def get_config(self):
        """Constructor arguments."""
        return {"name": self.name}


class _AffineMixin:
    """``weight``/``bias`` (and their gradients) of a normalization layer whose
    parameters are optional: ``_has_weight`` and ``_has_bias`` say which exist
    (``params`` then holds weight first, bias second).
    """

    _has_weight = _has_bias = False

    @property
    def weight(self) -> np.ndarray | None:
        """The scale (ones at first), or None (no affine parameters, or not built)."""
        return self.params[0] if self._has_weight and self.params else None

    @weight.setter
    def weight(self, value: Any) -> None:
        if not self._has_weight:
            raise AttributeError(f"this {type(self).__name__} has no weight (affine off)")
        self.set_param(0, value)

    @property
    def bias(self) -> np.ndarray | None:
        """The shift (zeros at first), or None (no bias, or not built)."""
        return self.params[1] if self._has_bias and self.params else None

    @bias.setter
    def bias(self, value: Any) -> None:
        if not self._has_bias:
            raise AttributeError(f"this {type(self).__name__} has no bias")
        self.set_param(1, value)

    @property
    def grad_weight(self) -> np.ndarray | None:
        """dL/dweight from the last backward pass."""
        return self.grads[0] if self._has_weight and self.grads else None

    @property
    def grad_bias(self) -> np.ndarray | None:
        """dL/dbias from the last backward pass."""
        return self.grads[1] if self._has_bias and self.grads else None


class _BatchNorm(_AffineMixin, Layer):
    """Shared parts of BatchNorm1D and BatchNorm2D (torch's ``_BatchNorm`` semantics).

    The learnable ``weight`` (ones) and ``bias`` (zeros) live in the model's flat
    parameter buffer; ``running_mean`` (zeros), ``running_var`` (ones) and
    ``num_batches_tracked`` are buffers: saved with the model and by
    ``save_weights``, never seen by the optimizer.
    """

    #: per-sample input ranks accepted, and the name used in messages
    _ranks: tuple[int, ...] = ()
    _what = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, name: str | None = None, trainable: bool = True) -> None:
        super().__init__(name, trainable)
        self.num_features = positive_int(num_features, "num_features")
        self.eps = real_number(eps, "eps")
        self.momentum = None if momentum is None else real_number(momentum, "momentum", 0.0,
                                                                  1.0)
        self.affine = bool(affine)
        self._has_weight = self._has_bias = self.affine
        self.param_names = ("weight", "bias") if self.affine else ()
        self.running_mean: np.ndarray | None = None
        self.running_var: np.ndarray | None = None
        self._tracked = np.zeros((), np.int64)

    # ---- parameters and buffers ---------------------------------------------
    @property
    def num_batches_tracked(self) -> int:
        """Training-mode forwards seen (torch's buffer of the same name)."""
        return int(self._tracked)

    def param_shapes(self, input_shape):
        """Weight and bias, (num_features,) each (none without affine)."""
        return [(self.num_features,)] * 2 if self.affine else []

    def init_params(self, rng, dtype):
        """Weight ones, bias zeros (torch's reset_parameters)."""
        c = self.num_features
        return [np.ones(c, dtype), np.zeros(c, dtype)] if self.affine else []

    def build(self, input_shape, dtype, rng):
        """Build the parameters; create (or convert) the running statistics."""
        out = super().build(input_shape, dtype, rng)
        c = self.num_features
        if self.running_mean is None:
            self.running_mean, self.running_var = np.zeros(c, dtype), np.ones(c, dtype)
        else:
            self.running_mean = np.ascontiguousarray(self.running_mean, dtype)
            self.running_var = np.ascontiguousarray(self.running_var, dtype)
        return out

    def buffers(self):
        """``running_mean``, ``running_var`` (num_features,) and ``num_batches_tracked`` ()."""
        if self.running_mean is None:
            return {}
        return {"running_mean": self.running_mean, "running_var": self.running_var,
                "num_batches_tracked": self._tracked}

    def state(self):
        """The buffers (saved in the model file's header; floats round-trip exactly)."""
        if self.running_mean is None:
            return {}
        return {"running_mean": [float(v) for v in self.running_mean],
                "running_var": [float(v) for v in self.running_var],
                "num_batches_tracked": int(self._tracked)}

    def set_state(self, state):
        """Restore the buffers from :meth:`state` (shape-checked)."""
        if not state:
            return
        if not isinstance(state, dict) or set(state) != {"running_mean", "running_var",
                                                          "num_batches_tracked"}:
            raise ValueError(f"{self.name}: batch norm state must hold running_mean, "
                             f"running_var and num_batches_tracked, got {state!r:.200}")
        nbt = state["num_batches_tracked"]
        if isinstance(nbt, bool) or not isinstance(nbt, int) or nbt < 0:
            raise ValueError(f"{self.name}: num_batches_tracked must be an int >= 0, got {nbt!r}")
        vals = {k: np.asarray(state[k], dtype=np.float64) for k in ("running_mean",
                                                                     "running_var")}
        self.set_buffers({**vals, "num_batches_tracked": nbt})

    # ---- computation ----------------------------------------------------------
    def output_shape(self, input_shape):
        """The input shape (checked: channels first, num_features of them)."""
        if input_shape is None:
            return None
        if len(input_shape) not in self._ranks:
            raise ValueError(f"{self.name or type(self).__name__} takes {self._what} input; "
                             f"got per-sample shape {tuple(input_shape)}")
        if input_shape[0] is not None and input_shape[0] != self.num_features:
            raise ValueError(f"{self.name or type(self).__name__} expects {self.num_features} "
                             f"channels (num_features), got {input_shape[0]}")
        return tuple(input_shape)

    def _factor(self) -> float:
        """The averaging factor of this step: momentum, or 1/num_batches_tracked when None."""
        return 1.0 / float(self._tracked) if self.momentum is None else self.momentum

    def forward(self, x, training):
        """Normalize with the batch statistics (training; the running ones are updated)
        or the running statistics (inference), in one kernel call.
        """
        if x.ndim - 1 not in self._ranks or x.shape[1] != self.num_features:
            self.output_shape(x.shape[1:])  # raises the detailed error
        n, c = x.shape[0], self.num_features
        s = x.size // (n * c) if n else 0
        bufs = self._buffers(x.shape, {"a": x.shape, "dx": x.shape, "mean": (c,), "var": (c,)})
        w = self.params[0] if self.affine else None
        b = self.params[1] if self.affine else None
        spec, nt = SPEC[self.dtype], get_num_threads()
        if training:
            if n * s < 2:
                raise ValueError(f"{self.name}: expected more than 1 value per channel when "
                                 f"training, got input of shape {x.shape}")
            _k.batchnorm_forward[spec](bufs["a"].reshape(-1), bufs["mean"], bufs["var"],
                                       x.reshape(-1), w, b, None, None, n, c, s, self.eps,
                                       True, nt)
            self._tracked += 1
            _k.batchnorm_update_stats[spec](self.running_mean, self.running_var, bufs["mean"],
                                            bufs["var"], n * s, self._factor())
        else:
            bufs["mean"][...] = self.running_mean  # what the backward normalizes with
            bufs["var"][...] = self.running_var
            _k.batchnorm_forward[spec](bufs["a"].reshape(-1), None, None, x.reshape(-1), w, b,
                                       bufs["mean"], bufs["var"], n, c, s, self.eps, False, nt)
        self._x, self._bufs, self._training = x, bufs, training
        return bufs["a"]

    def backward(self, grad_out, need_dx):
        """dweight, dbias and dx in one closed-form kernel call (two passes over the data)."""
        bufs = self._bufs
        train = self.trainable and self.affine
        if not (need_dx or train):
            return None
        x = self._x
        n, c = x.shape[0], self.num_features
        s = x.size // (n * c) if n else 0
        dx = bufs["dx"] if need_dx else None
        _k.batchnorm_backward[SPEC[self.dtype]](
            None if dx is None else dx.reshape(-1), self.grads[0] if train else None,
            self.grads[1] if train else None, grad_out.reshape(-1), x.reshape(-1),
            bufs["mean"], bufs["var"], self.params[0] if self.affine else None, n, c, s,
            self.eps, self._training, get_num_threads())
        return dx

    def get_config(self):
        """Constructor arguments."""
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, **Layer.get_config(self)}


class BatchNorm1D(_BatchNorm):
    """Batch normalization over the batch (``torch.nn.BatchNorm1d``).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per feature.  In training
    (``fit``, ``train_step``, ``forward(training=True)``) mean and var are the
    batch's (biased variance) and the running statistics are updated:
    ``running = (1 - momentum) * running + momentum * batch`` with the unbiased
    batch variance, and ``num_batches_tracked += 1``.  In inference (``predict``,
    ``evaluate``, ``forward(training=False)``) the running statistics are used.
    A frozen layer (``trainable=False``) keeps its weight and bias but still uses
    batch statistics in training and updates its running statistics, as a torch
    module whose parameters have ``requires_grad=False``.

    Parameters
    ----------
    num_features : int
        C, the features of an (N, C) input (or the channels of an (N, C, L) input).
    eps : float
        Added to the variance.
    momentum : float in [0, 1] or None
        Weight of the new batch in the running statistics; None: a cumulative
        average (``1 / num_batches_tracked``), as torch.
    affine : bool
        Learnable ``weight`` (ones) and ``bias`` (zeros); False: neither.
    name : str, optional
    trainable : bool

    Notes
    -----
    Input (N, C) or (N, C, L); output the same shape.  Training needs more than one
    value per channel (N * L > 1).  Under ``DataParallel`` each rank normalizes over
    its own shard (see ``docs/normalization.md``).
    """

    _ranks = (1, 2)
    _what = "(batch, features) or (batch, channels, length)"


class BatchNorm2D(_BatchNorm):
    """Batch normalization of NCHW feature maps (``torch.nn.BatchNorm2d``): statistics
    per channel over the batch and both spatial axes.

    Everything else is as :class:`BatchNorm1D` (training vs inference, running
    statistics, momentum, affine, freezing).

    Parameters
    ----------
    num_features : int
        C, the channels of an (N, C, H, W) input.
    eps : float
    momentum : float in [0, 1] or None
    affine : bool
    name : str, optional
    trainable : bool

    Notes
    -----
    Input (N, C, H, W); output the same shape.  ``Sequential.fuse_batchnorm()`` folds
    an inference-mode BatchNorm2D into the Conv2D before it.
    """

    _ranks = (3,)
    _what = "4-D (batch, channels, height, width)"


class LayerNorm(_AffineMixin, Layer):
    """Layer normalization over the trailing dimensions (``torch.nn.LayerNorm``).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` where mean and the biased
    var are taken over each sample's last ``len(normalized_shape)`` dimensions;
    the same in training and inference.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing shape normalized over (e.g. the features of an (N, D) input).
    eps : float
    elementwise_affine : bool
        Learnable ``weight`` (ones) and ``bias`` (zeros) of ``normalized_shape``.
    bias : bool
        With ``elementwise_affine``, whether there is a bias (torch's ``bias``).
    name : str, optional
    trainable : bool

    Notes
    -----
    Input (N, ..., *normalized_shape); output the same shape.
    """

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, name: str | None = None, trainable: bool = True) -> None:
        super().__init__(name, trainable)
        self.normalized_shape = normalized_shape_of(normalized_shape)
        self.eps = real_number(eps, "eps")
        self.elementwise_affine = bool(elementwise_affine)
        self.use_bias = bool(bias) and self.elementwise_affine
        self._has_weight, self._has_bias = self.elementwise_affine, self.use_bias
        self.param_names = (("weight", "bias") if self.use_bias else ("weight",)) \
            if self.elementwise_affine else ()

    def param_shapes(self, input_shape):
        """Weight (and bias), of normalized_shape."""
        return [self.normalized_shape] * len(self.param_names)

    def init_params(self, rng, dtype):
        """Weight ones, bias zeros."""
        shp = self.normalized_shape
        return [np.ones(shp, dtype), np.zeros(shp, dtype)][:len(self.param_names)]

    def output_shape(self, input_shape):
        """The input shape (its trailing dimensions checked)."""
        if input_shape is None:
            return None
        k = len(self.normalized_shape)
        tail = tuple(input_shape)[len(input_shape) - k:] if len(input_shape) >= k else None
        if tail is None or any(t is not None and t != e for t, e in
                               zip(tail, self.normalized_shape)):
            raise ValueError(f"{self.name or 'LayerNorm'} normalizes over trailing dimensions "
                             f"{self.normalized_shape}; got per-sample shape "
                             f"{tuple(input_shape)}")
        return tuple(input_shape)

    def forward(self, x, training):
        """Normalize each sample's trailing dimensions (one kernel call)."""
        k = len(self.normalized_shape)
        if x.ndim < k + 1 or x.shape[x.ndim - k:] != self.normalized_shape:
            self.output_shape(x.shape[1:])
        d = int(np.prod(self.normalized_shape))
        rows = x.size // d
        bufs = self._buffers(x.shape, {"a": x.shape, "dx": x.shape, "mean": (rows,),
                                       "rstd": (rows,)})
        w = self.params[0].reshape(-1) if self.elementwise_affine else None
        b = self.params[1].reshape(-1) if self.use_bias else None
        _k.layernorm_forward[SPEC[self.dtype]](bufs["a"].reshape(-1), bufs["mean"],
                                               bufs["rstd"], x.reshape(-1), w, b, rows, d,
                                               self.eps, get_num_threads())
        self._x, self._bufs = x, bufs
        return bufs["a"]

    def backward(self, grad_out, need_dx):
        """dweight, dbias (column sums) and dx (closed form per row)."""
        bufs = self._bufs
        train = self.trainable and self.elementwise_affine
        if not (need_dx or train):
            return None
        x = self._x
        d = int(np.prod(self.normalized_shape))
        dx = bufs["dx"] if need_dx else None
        _k.layernorm_backward[SPEC[self.dtype]](
            None if dx is None else dx.reshape(-1),
            self.grads[0].reshape(-1) if train else None,
            self.grads[1].reshape(-1) if train and self.use_bias else None,
            grad_out.reshape(-1), x.reshape(-1), bufs["mean"], bufs["rstd"],
            self.params[0].reshape(-1) if self.elementwise_affine else None, x.size // d, d,
            get_num_threads())
        return dx

    def get_config(self):
        """Constructor arguments."""
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.use_bias,
                **Layer.get_config(self)}


class Embedding(Layer):
    """A lookup table: integer indices -> rows of ``weight`` (``torch.nn.Embedding``).

    Parameters
    ----------
    num_embeddings : int
        Size of the vocabulary (indices lie in [0, num_embeddings)).
    embedding_dim : int
    init : str or callable
        "normal" (default: N(0, 1), torch's) or any :mod:`fastnn.init` initializer
        (fan_in = num_embeddings, fan_out = embedding_dim).
    name : str, optional
    trainable : bool

    Notes
    -----
    Input (batch,) or (batch, length) of integers; output (batch, embedding_dim) or
    (batch, length, embedding_dim).  ``weight`` is (num_embeddings, embedding_dim),
    torch's layout.  An index outside the table is a ValueError (checked in C, before
    anything is written).  The gradient adds the output gradient of every occurrence
    of an index into its row, deterministically (threads own column blocks; rows are
    added in input order), so repeated indices accumulate as in torch.  A model whose
    first layer is an Embedding takes integer X (int64; floats holding whole numbers
    are converted); there is no gradient with respect to the indices.
    """

    param_names = ("weight",)
    #: what a model converts X to when this layer comes first
    input_dtype = np.dtype(np.int64)

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 init: str | Initializer = "normal", name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name, trainable)
        self.num_embeddings = positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim")
        self.init = init if init == "normal" else check_initializer(init)

    @property
    def weight(self) -> np.ndarray | None:
        """The table (num_embeddings, embedding_dim), or None before the layer is built."""
        return self.params[0] if self.params else None

    @weight.setter
    def weight(self, value: Any) -> None:
        self.set_param(0, value)

    @property
    def grad_weight(self) -> np.ndarray | None:
        """dL/dweight from the last backward pass."""
        return self.grads[0] if self.grads else None

    def param_shapes(self, input_shape):
        """The table (num_embeddings, embedding_dim)."""
        return [(self.num_embeddings, self.embedding_dim)]

    def init_params(self, rng, dtype):
        """N(0, 1) (torch's default) or the initializer given."""
        shape = (self.num_embeddings, self.embedding_dim)
        if self.init == "normal":
            return [rng.standard_normal(shape).astype(dtype)]
        return [draw(self.init, self.num_embeddings, self.embedding_dim, shape, rng, dtype)]

    def output_shape(self, input_shape):
        """(embedding_dim,) for a per-sample shape (), (length, embedding_dim) for (length,)."""
        if input_shape is None:
            return None
        if len(input_shape) > 1:
            raise ValueError(f"{self.name or 'Embedding'} takes integer input (batch,) or "
                             f"(batch, length); got per-sample shape {tuple(input_shape)}")
        return (*input_shape, self.embedding_dim)

    def forward(self, x, training):
        """The rows of the table (one gather kernel); keeps the indices for backward."""
        idx = np.ascontiguousarray(x, dtype=np.int64)
        bufs = self._buffers(idx.shape, {"a": (*idx.shape, self.embedding_dim)})
        _k.embedding_forward[SPEC[self.dtype]](bufs["a"].reshape(idx.size, self.embedding_dim),
                                               idx.reshape(-1), self.params[0],
                                               get_num_threads())
        self._x, self._bufs = idx, bufs
        return bufs["a"]

    def backward(self, grad_out, need_dx):
        """dW: each row of grad_out added into the row of its index (deterministic)."""
        if self.trainable:
            idx = self._x
            _k.embedding_backward[SPEC[self.dtype]](
                self.grads[0], idx.reshape(-1), grad_out.reshape(idx.size, self.embedding_dim),
                0.0, get_num_threads())
        return None

    def get_config(self):
        """Constructor arguments."""
        init = self.init if isinstance(self.init, str) else "normal"
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "init": init, **Layer.get_config(self)}


class GlobalAvgPool1D(Layer):
    """Mean over the sequence axis: (batch, length, features) -> (batch, features).

    After an :class:`Embedding` on (batch, length) indices it gives a bag-of-words
    mean (torch's ``EmbeddingBag(mode="mean")`` on equal-length bags); Keras'
    ``GlobalAveragePooling1D`` (channels last).  An empty sequence gives zeros.
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name, True)

    def output_shape(self, input_shape):
        """(features,)."""
        if input_shape is None:
            return (None,)
        if len(input_shape) != 2:
            raise ValueError(f"{self.name or 'GlobalAvgPool1D'} takes 3-D input (batch, "
                             f"length, features); got per-sample shape {tuple(input_shape)}")
        return (input_shape[1],)

    def forward(self, x, training):
        """Means over axis 1 (one kernel call)."""
        n, _, d = x.shape
        bufs = self._buffers(x.shape, {"a": (n, d), "dx": x.shape})
        _k.global_avgpool1d_forward[SPEC[self.dtype]](bufs["a"], x, get_num_threads())
        self._bufs = bufs
        return bufs["a"]

    def backward(self, grad_out, need_dx):
        """grad_out / length along axis 1."""
        if not need_dx:
            return None
        bufs = self._bufs
        _k.global_avgpool1d_backward[SPEC[self.dtype]](bufs["dx"], grad_out, get_num_threads())
        return bufs["dx"]

    def get_config(self):
        """Constructor arguments."""
        return {"name": self.name}


def _layer_of(spec: Any, what: str) -> Layer:
    """A Layer, or one built from its saved description ``{"type": ..., "config": ...}``."""
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, dict) and "type" in spec:
        cls = LAYER_TYPES.get(spec["type"])
        if cls is None:
            raise ValueError(f"{what}: unknown layer type {spec['type']!r}")
        kwargs = dict(spec.get("config", {}))
        trainable = kwargs.pop("trainable", True)
        layer = cls(**kwargs)
        layer.trainable = bool(trainable)
        return layer
    raise TypeError(f"{what} must be fastnn Layer instances, got {type(spec).__name__}")


class Residual(_ActivationMixin, Layer):
    """A block with a skip connection: ``out = act(f(x) + shortcut(x))``.

    Parameters
    ----------
    layers : list of Layer
        ``f``, applied in order (e.g. Conv2D, BatchNorm2D, Activation, Conv2D,
        BatchNorm2D).
    shortcut : Layer, optional
        The skip path: the identity when None, or a layer such as a 1x1 ``Conv2D``
        (stride 2 to halve the size) or a ``Dense`` when the shapes change.
    activation : str or None
        Applied after the sum (e.g. "relu", as a ResNet basic block).
    name : str, optional
    trainable : bool
        Freezes (or unfreezes) every layer of the block.

    Notes
    -----
    The block's parameters are its layers' (``f`` first, then the shortcut's), laid
    out in the model's one flat buffer like any other layer's; ``params``,
    ``get_weights`` and the model file list them in that order, and ``param_names``
    reads ``"<inner layer>.<param>"``.  Inner layers without a name get
    ``<type>_<i>`` (the shortcut ``shortcut``).  ``block.trainable = False`` (or
    ``model.freeze``) freezes every inner layer; an inner layer can also be frozen on
    its own (``block.layers[i].trainable = False``): the optimizer then skips its span
    and keeps its state, as torch skips a parameter with ``requires_grad=False``
    (:meth:`Sequential.trainable_ranges`).  A model containing a Residual takes the layer-by-layer
    path, not the one-call MLP step.
    """

    def __init__(self, layers: Any, shortcut: Any = None, activation: str | None = None,
                 name: str | None = None, trainable: bool = True) -> None:
        self.layers: list[Layer] = []  # before Layer.__init__ (the trainable setter reads it)
        self.shortcut: Layer | None = None
        super().__init__(name, trainable)
        body = [_layer_of(la, "Residual layers") for la in layers]
        if not body:
            raise ValueError("Residual needs at least one layer in f")
        sc = None if shortcut is None else _layer_of(shortcut, "Residual shortcut")
        parts = body + ([sc] if sc is not None else [])
        if len({id(p) for p in parts}) != len(parts):
            raise ValueError("Residual: a layer appears twice in the block")
        names: set[str] = set()
        for i, la in enumerate(body):
            if la.name is None:
                la.name = f"{type(la).__name__.lower()}_{i}"
            if la.name in names:
                raise ValueError(f"Residual: two inner layers are named {la.name!r}")
            names.add(la.name)
        if sc is not None and sc.name is None:
            sc.name = "shortcut"
        if sc is not None and sc.name in names:
            raise ValueError(f"Residual: the shortcut's name {sc.name!r} is taken by f")
        self.layers, self.shortcut = body, sc
        self.activation = activation
        if not trainable:
            self.trainable = False
        self.param_names = tuple(f"{la.name}.{pn}" for la in self.sublayers()
                                 for pn in la.param_names)

    def sublayers(self) -> list[Layer]:
        """The block's layers: ``f`` in order, then the shortcut (when there is one)."""
        return self.layers + ([self.shortcut] if self.shortcut is not None else [])

    # ---- structure ----------------------------------------------------------
    @property
    def trainable(self) -> bool:
        """False freezes every layer of the block."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        Layer.trainable.fset(self, value)
        for la in self.__dict__.get("layers", []) + (
                [self.shortcut] if self.__dict__.get("shortcut") is not None else []):
            la.trainable = value

    @property
    def in_features(self) -> int | None:
        """The first layer's ``in_features`` (None when it has none)."""
        return getattr(self.layers[0], "in_features", None)

    @property
    def in_channels(self) -> int | None:
        """The first layer's ``in_channels`` (None when it has none)."""
        return getattr(self.layers[0], "in_channels", None)

    @property
    def l1(self) -> float:
        """The largest L1 factor of the block's layers (0 when none has a penalty)."""
        return max((float(getattr(la, "l1", 0.0)) for la in self.sublayers()), default=0.0)

    @property
    def l2(self) -> float:
        """The largest L2 factor of the block's layers."""
        return max((float(getattr(la, "l2", 0.0)) for la in self.sublayers()), default=0.0)

    def _shapes(self, input_shape, build=None):
        """(output shape, per-inner-layer output shapes); ``build=(dtype, rng)`` builds."""
        shape = input_shape
        shapes = []
        for la in self.layers:
            shape = la.build(shape, *build) if build else la.output_shape(shape)
            shapes.append(shape)
        if self.shortcut is not None:
            sshape = (self.shortcut.build(input_shape, *build) if build
                      else self.shortcut.output_shape(input_shape))
            shapes.append(sshape)
        else:
            sshape = None if input_shape is None else tuple(input_shape)
        if shape is not None and sshape is not None and (
                len(shape) != len(sshape) or any(a is not None and b is not None and a != b
                                                 for a, b in zip(shape, sshape))):
            raise ValueError(
                f"{self.name or 'Residual'}: f gives per-sample shape {tuple(shape)} but the "
                f"{'shortcut' if self.shortcut is not None else 'identity shortcut'} gives "
                f"{tuple(sshape)}; give a shortcut layer that maps the input to f's shape "
                "(e.g. a 1x1 Conv2D with the same stride)")
        if shape is None:
            shape = sshape
        return (None if shape is None else tuple(shape)), shapes

    def output_shape(self, input_shape):
        """The output shape of f, checked against the shortcut's."""
        return self._shapes(input_shape)[0]

    def inner_shapes(self) -> list[tuple[int | None, ...] | None]:
        """Output shapes of the block's layers (``sublayers()`` order) at the last build."""
        return list(getattr(self, "_inner_shapes", [None] * len(self.sublayers())))

    def build(self, input_shape, dtype, rng):
        """Build every inner layer; the block's params are theirs, in order."""
        for la in self.sublayers():  # a Dropout inside the block gets its own mask stream
            if hasattr(la, "seed") and getattr(la, "seed", 0) == 0:
                la.seed = int(rng.integers(1, 2**63))
        out, shapes = self._shapes(input_shape, (dtype, rng))
        self._inner_shapes = shapes
        self.params = [p for la in self.sublayers() for p in la.params]
        self.grads = [g for la in self.sublayers() for g in la.grads]
        self.dtype = np.dtype(dtype)
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self._tls = _ThreadState()
        return out

    def bind(self, params, grads):
        """Hand each inner layer its slice of the views of the model's flat buffers."""
        i = 0
        for la in self.sublayers():
            k = len(la.params)
            la.bind(list(params[i:i + k]), list(grads[i:i + k]))
            i += k
        self.params = [p for la in self.sublayers() for p in la.params]
        self.grads = [g for la in self.sublayers() for g in la.grads]

    def set_param(self, i, value):
        """Assign parameter ``i`` of the block (``param_names[i]``) in place."""
        for la in self.sublayers():
            if i < len(la.params):
                return la.set_param(i, value)
            i -= len(la.params)
        raise IndexError("Residual.set_param: index out of range")

    def penalty(self):
        """The inner layers' L1/L2 terms."""
        return sum(la.penalty() for la in self.sublayers())

    def has_forward(self):
        """True once this thread ran a forward through the block."""
        return Layer.has_forward(self)

    # ---- computation ----------------------------------------------------------
    def forward(self, x, training, logits=False):
        """f(x) + shortcut(x) (then the activation, skipped with ``logits=True``)."""
        h = x
        for la in self.layers:
            h = la.forward(h, training)
        s = x if self.shortcut is None else self.shortcut.forward(x, training)
        bufs = self._buffers(x.shape, {"a": h.shape, "g": h.shape})
        act = 0 if logits else self._act
        if act and self.activation in NEEDS_Z:
            if "z" not in bufs:
                bufs["z"] = np.empty(h.shape, self.dtype)
            np.add(h, s, out=bufs["z"])
            rows = bufs["z"].reshape(-1, h.shape[-1])
            _k.act_forward[SPEC[self.dtype]](bufs["a"].reshape(rows.shape), rows, act)
        else:
            np.add(h, s, out=bufs["a"])
            if act:
                rows = bufs["a"].reshape(-1, h.shape[-1])
                _k.act_forward[SPEC[self.dtype]](rows, rows, act)
        self._x, self._bufs, self._act_used = x, bufs, act
        return bufs["a"]

    def backward(self, grad_out, need_dx):
        """Through the activation, then both paths; dx = df + dshortcut."""
        bufs = self._bufs
        act = self._act_used
        if act:
            shape2 = (-1, grad_out.shape[-1])
            g2 = grad_out.reshape(shape2)
            z = bufs["z"].reshape(shape2) if "z" in bufs else None
            _k.act_backward[SPEC[self.dtype]](g2, None, g2, bufs["a"].reshape(shape2), z, act)
        gs = bufs["g"]
        gs[...] = grad_out  # the inner layers may overwrite grad_out
        g = grad_out
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].backward(g, i > 0 or need_dx)
        ds = gs if self.shortcut is None else self.shortcut.backward(gs, need_dx)
        for la in self.sublayers():  # a frozen inner layer (frozen on its own) adds nothing
            if not la.trainable:
                for gr in la.grads:
                    gr.fill(0)
        if not need_dx:
            return None
        if "dx" not in bufs:
            bufs["dx"] = np.empty(self._x.shape, self.dtype)
        np.add(g, ds, out=bufs["dx"])
        return bufs["dx"]

    # ---- description ------------------------------------------------------------
    def get_config(self):
        """Constructor arguments, the inner layers as ``{"type", "config"}`` descriptions."""
        def spec(la):
            return {"type": type(la).__name__, "config": la.get_config()}

        return {"layers": [spec(la) for la in self.layers],
                "shortcut": None if self.shortcut is None else spec(self.shortcut),
                "activation": self.activation, **Layer.get_config(self)}

    def buffers(self):
        """The inner layers' buffers (batch norm's running statistics) as
        ``"<inner layer>.<buffer>"`` -> the array itself.
        """
        return {f"{la.name}.{k}": v for la in self.sublayers() for k, v in la.buffers().items()}

    def state(self):
        """The inner layers' states (e.g. dropout counters, batch-norm statistics)."""
        return {"layers": [la.state() for la in self.sublayers()]}

    def set_state(self, state):
        """Restore what :meth:`state` returned."""
        states = state.get("layers", [])
        if len(states) != len(self.sublayers()):
            raise ValueError(f"Residual state has {len(states)} layer states, the block "
                             f"{len(self.sublayers())} layers")
        for la, st in zip(self.sublayers(), states):
            la.set_state(st)

    def __repr__(self):
        return (f"Residual({self.layers!r}, shortcut={self.shortcut!r}, "
                f"activation={self.activation!r})")


LAYER_TYPES: dict[str, type[Layer]] = {
    "Dense": Dense,
    "Activation": Activation,
    "Dropout": Dropout,
    "Flatten": Flatten,
    "Conv2D": Conv2D,
    "MaxPool2D": MaxPool2D,
    "AvgPool2D": AvgPool2D,
    "GlobalAvgPool2D": GlobalAvgPool2D,
    "Embedding": Embedding,
    "GlobalAvgPool1D": GlobalAvgPool1D,
    "Residual": Residual,
    "BatchNorm1D": BatchNorm1D,
    "BatchNorm2D": BatchNorm2D,
    "LayerNorm": LayerNorm,
}
