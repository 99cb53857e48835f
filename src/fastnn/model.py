"""Sequential: a stack of layers with one flat parameter buffer, trained by fit/train_step."""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import data as _data
from . import io as _io
from ._batches import rows_as
from ._validation import check_finite as _check_finite
from ._validation import positive_int
from .callbacks import Callback, History, ProgressBar
from .layers import LAYER_TYPES, Layer
from .losses import LOSSES, Loss, get_loss
from .metrics import Metric, get_metrics
from .optim import Optimizer, get_optimizer
from .training import Trainer

#: layer -> the Sequential it belongs to (weak both ways): a layer's parameters are views
#: of its model's flat buffer, so it cannot be shared by two models
_OWNERS: weakref.WeakKeyDictionary[Layer, weakref.ref] = weakref.WeakKeyDictionary()



def _empty_aligned(n: int, dtype: Any, align: int = 64) -> np.ndarray:
    """An uninitialized 1-D array of ``n`` elements starting on an ``align``-byte boundary.

    The GEMM micro-kernels read a weight matrix in place (x @ W, small batches) one
    row of a panel at a time: rows that start on a cache line are one or two lines,
    rows that do not are split across one more (measured ~8% slower with AVX-512).

    Returns
    -------
    ndarray, (n,)
    """
    item = np.dtype(dtype).itemsize
    buf = np.empty(n + align // item, dtype)
    start = (-buf.ctypes.data % align) // item
    return buf[start:start + n]

class Sequential:
    """A linear stack of layers.

    Parameters
    ----------
    layers : iterable of Layer, optional
    dtype : {"float32", "float64"}
        The dtype of every parameter, activation and gradient.
    seed : int, optional
        Seeds the model's one ``numpy.random.Generator`` (initialization and
        shuffling) and the dropout masks.  Same seed, same thread count: bitwise
        the same training run.
    input_shape : tuple of int, optional
        Per-sample input shape; inferred from the first layer (``Dense``) or the
        first batch when not given.
    name : str, optional

    Notes
    -----
    All parameters live in one contiguous buffer (``layer.weight`` and friends
    are views of it) and all gradients in another, so an optimizer updates the
    whole model in one C call and a data-parallel all-reduce is one message.

    A layer belongs to one model: passing a layer of another (live) model raises
    ValueError, since rebinding it would silently stop the first model from training
    it.  To build a model from another's layers, pass copies
    (``copy.deepcopy(layer)``, which keep the values), or :meth:`pop` them first.
    """

    def __init__(self, layers: Iterable[Layer] | None = None, dtype: str | np.dtype = "float32",
                 seed: int | None = None, input_shape: Sequence[int] | None = None,
                 name: str | None = None) -> None:
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)
                                 or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self.dtype = dt
        self.seed = None if seed is None else int(seed)
        self._seed_seq = np.random.SeedSequence(self.seed)
        self.rng = np.random.default_rng(self._seed_seq)
        self.name = name or "sequential"
        self._input_shape_arg = (None if input_shape is None
                                 else tuple(int(d) for d in input_shape))
        self.input_shape = self._input_shape_arg
        self._layers: list[Layer] = []
        self.optimizer: Optimizer | None = None
        self.loss: Loss | None = None
        self.metrics: list[Metric] = []
        self.stop_training = False
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimizer steps
        self._trainer: Trainer | None = None
        self._flat_params = np.empty(0, dt)
        self._flat_grads = np.empty(0, dt)
        for layer in layers or []:
            self._append(layer)
        self._build()

    # ---- structure -------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The layers, in order (a copy of the list)."""
        return list(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __getitem__(self, i: int | str) -> Layer:
        if isinstance(i, str):
            for layer in self._layers:
                if layer.name == i:
                    return layer
            raise KeyError(f"no layer named {i!r}; layers: {[x.name for x in self._layers]}")
        return self._layers[i]

    def __iter__(self):
        return iter(self._layers)

    def _append(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"layers must be fastnn Layer instances, got {type(layer).__name__}")
        if any(layer is x for x in self._layers):
            raise ValueError(f"layer {layer.name or layer!r} is already in this model")
        ref = _OWNERS.get(layer)
        owner = None if ref is None else ref()
        if owner is not None and owner is not self and any(layer is x for x in owner.layers):
            raise ValueError(
                f"layer {layer.name or layer!r} already belongs to the model {owner.name!r}: "
                "its parameters are views of that model's buffer, and taking it would "
                "silently stop that model from training it; pass a copy instead "
                "(copy.deepcopy(layer)), or pop it from that model first")
        if layer.name is None:
            base = type(layer).__name__.lower()
            names = {x.name for x in self._layers}
            i = len(self._layers)
            while f"{base}_{i}" in names:
                i += 1
            layer.name = f"{base}_{i}"
        elif any(layer.name == x.name for x in self._layers):
            raise ValueError(f"a layer named {layer.name!r} is already in this model")
        self._layers.append(layer)

    def add(self, layer: Layer) -> None:
        """Append a layer (checked against the current output shape)."""
        self._append(layer)
        try:
            self._build()
        except Exception:
            self._layers.pop()
            self._build()
            raise

    def pop(self) -> Layer:
        """Remove and return the last layer (e.g. to replace a pretrained head)."""
        if not self._layers:
            raise IndexError("pop from an empty model")
        layer = self._layers.pop()
        _OWNERS.pop(layer, None)
        self._build()
        return layer

    def _declared_input_shape(self) -> tuple[int | None, ...] | None:
        if self._input_shape_arg is not None:
            return self._input_shape_arg
        for layer in self._layers:
            spec = getattr(layer, "in_features", None)
            if spec is not None:
                return (spec,)
            if getattr(layer, "in_channels", None) is not None:
                return (layer.in_channels, None, None)
            if type(layer).__name__ not in ("Dropout", "Activation"):
                return None
        return None

    def _build(self) -> None:
        """Build every layer (new ones draw their initial values), then pack the flat buffers."""
        shape = self._declared_input_shape()
        if shape is not None and all(d is not None for d in shape):
            self.input_shape = tuple(shape)
        self._shapes = []
        for i, layer in enumerate(self._layers):
            if hasattr(layer, "seed") and getattr(layer, "seed", 0) == 0:
                layer.seed = int(np.random.SeedSequence(
                    self._seed_seq.entropy, spawn_key=(1, i)).generate_state(1, np.uint64)[0])
            shape = layer.build(shape, self.dtype, self.rng)
            self._shapes.append(shape)
        self.output_shape = shape
        total = sum(p.size for layer in self._layers for p in layer.params)
        flat_p = _empty_aligned(total, self.dtype)
        flat_g = _empty_aligned(total, self.dtype)
        flat_g[...] = 0
        off = 0
        ranges = []
        for layer in self._layers:
            pv, gv = [], []
            start = off
            for p in layer.params:
                pv.append(flat_p[off:off + p.size].reshape(p.shape))
                gv.append(flat_g[off:off + p.size].reshape(p.shape))
                off += p.size
            layer.bind(pv, gv)
            ranges.append((start, off))
        self._flat_params, self._flat_grads, self._ranges = flat_p, flat_g, ranges
        me = weakref.ref(self)
        for layer in self._layers:
            _OWNERS[layer] = me

    def _check_input_shape(self, sample_shape: tuple[int, ...], argname: str = "X") -> None:
        """Validate a per-sample input shape through every layer (once per new shape)."""
        if self.input_shape is not None:
            if tuple(sample_shape) != self.input_shape:
                raise ValueError(f"{argname} must have per-sample shape {self.input_shape}, "
                                 f"got {tuple(sample_shape)} (full shape (batch, "
                                 f"{', '.join(map(str, self.input_shape))}) expected)")
            return
        shape: tuple | None = tuple(sample_shape)
        shapes = []
        for layer in self._layers:
            shape = layer.output_shape(shape)
            shapes.append(shape)
        self.input_shape = tuple(sample_shape)
        self.output_shape = shape
        self._shapes = shapes

    # ---- parameters --------------------------------------------------------
    def count_params(self) -> int:
        """Number of scalar parameters."""
        return int(self._flat_params.size)

    def parameters(self) -> np.ndarray:
        """The flat parameter buffer, (count_params(),): every ``layer.params`` array is a
        view of it, layer by layer (weight, then bias).  Writing it writes the weights.
        """
        return self._flat_params

    def gradients(self) -> np.ndarray:
        """The flat gradient buffer, laid out as :meth:`parameters` (``layer.grads`` are
        views of it); filled by :meth:`compute_gradients` / :meth:`backward`.
        """
        return self._flat_grads

    def parameter_ranges(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of every layer's parameters in :meth:`parameters`, in layer order."""
        return list(self._ranges)

    def trainable_ranges(self) -> list[tuple[int, int]]:
        """``(start, stop)`` spans of the trainable parameters (what an optimizer updates):
        one per trainable layer, and inside a layer made of layers (``Residual``) one per
        inner layer that is trainable itself, so an inner layer frozen on its own is
        skipped by the optimizer (its moments and step count kept, as torch skips a
        parameter with ``requires_grad=False``), not merely given a zero gradient.
        """
        out: list[tuple[int, int]] = []

        def walk(layer: Layer, start: int) -> None:
            if not layer.trainable:
                return
            subs = layer.sublayers() if hasattr(layer, "sublayers") else []
            if not subs:
                out.append((start, start + layer.num_params()))
                return
            for sub in subs:
                walk(sub, start)
                start += sub.num_params()

        for layer, (a, _) in zip(self._layers, self._ranges):
            walk(layer, a)
        return out

    def bind_gradient_buffer(self, buf: np.ndarray) -> None:
        """Make ``buf`` (shape (count_params(),), the model's dtype, C-contiguous; e.g. a view
        of a larger message buffer) the gradient buffer: its current gradients are copied
        in and every layer's ``grads`` become views of it.  The optimizer re-attaches at
        the next step, keeping its state.
        """
        g = self._flat_grads
        if not isinstance(buf, np.ndarray) or buf.shape != g.shape or buf.dtype != g.dtype \
                or not buf.flags.c_contiguous:
            raise ValueError(f"gradient buffer must be a C-contiguous {g.dtype} array of shape "
                             f"{g.shape}, got {getattr(buf, 'dtype', type(buf).__name__)} "
                             f"{getattr(buf, 'shape', '')}")
        buf[...] = g
        for layer, (a, _) in zip(self._layers, self._ranges):
            views, off = [], a
            for p in layer.params:
                views.append(buf[off:off + p.size].reshape(p.shape))
                off += p.size
            layer.bind(layer.params, views)
        self._flat_grads = buf

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every parameter, layer by layer (weight, then bias)."""
        return [p.copy() for layer in self._layers for p in layer.params]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set every parameter from a list like :meth:`get_weights`' (all checked first)."""
        params = [p for layer in self._layers for p in layer.params]
        if len(weights) != len(params):
            raise ValueError(f"set_weights needs {len(params)} arrays, got {len(weights)}")
        arrays = []
        for i, (w, p) in enumerate(zip(weights, params)):
            a = np.asarray(w)
            if a.shape != p.shape:
                raise ValueError(f"weights[{i}] must have shape {p.shape}, got {a.shape}")
            arrays.append(a)
        for a, p in zip(arrays, params):
            p[...] = a

    def freeze(self, upto: int | str | None = None) -> None:
        """Set ``trainable = False`` on layers ``[0, upto)`` (all when None).

        ``upto`` may be an index or a layer name (that layer stays trainable).
        """
        if upto is None:
            stop = len(self._layers)
        elif isinstance(upto, str):
            stop = [x.name for x in self._layers].index(self[upto].name)
        else:
            stop = int(upto) if upto >= 0 else len(self._layers) + int(upto)
        for layer in self._layers[:stop]:
            layer.trainable = False

    def unfreeze(self) -> None:
        """Make every layer trainable again."""
        for layer in self._layers:
            layer.trainable = True

    # ---- configuration -----------------------------------------------------
    def compile(self, optimizer: str | Optimizer = "adam",
                loss: str | Loss = "cross_entropy",
                metrics: Sequence[str | Metric | Any] | None = None) -> Sequential:
        """Choose the optimizer, the loss and the metrics.

        Parameters
        ----------
        optimizer : str or Optimizer
            e.g. ``fnn.optim.Adam(lr=1e-3)`` or "sgd", "adam", "adamw", "rmsprop", "adagrad".
        loss : str or Loss
            "cross_entropy" (integer labels (n,) or (n, 1), or one-hot rows), "mse" or
            "binary_cross_entropy".  Both cross-entropies work from logits: after a
            linear last layer, or after the matching activation (softmax /
            sigmoid), whose pre-activation the loss then uses, fused and stable (Keras'
            ``from_logits`` decided from the last layer).  Combinations that cannot be
            right raise a ValueError saying why (see :func:`fastnn.losses.output_mode`).
        metrics : list, optional
            Names ("accuracy", "top_k_accuracy", "mse", "mae"), :mod:`fastnn.metrics`
            objects or callables ``(y_true, y_pred) -> float``; logged per epoch (and
            with a ``val_`` prefix on validation data).  Default: ``["accuracy"]``
            for the classification losses, none otherwise.

        Returns
        -------
        Sequential
            self.
        """
        opt = get_optimizer(optimizer)
        loss_obj = get_loss(loss)
        if metrics is None:
            metric_objs = get_metrics(["accuracy"] if loss_obj.is_classification else [])
        else:
            metric_objs = get_metrics(metrics)
        before = (self.loss, self.optimizer, self.metrics)
        self.loss = loss_obj
        self.optimizer = opt  # public: schedules and callbacks read and set optimizer.lr
        self.metrics = metric_objs
        try:  # a wrong output/loss pair is refused, and the model left as it was
            self.trainer.output_mode()
        except ValueError:
            self.loss, self.optimizer, self.metrics = before
            raise
        self.trainer.attach()
        return self

    @property
    def trainer(self) -> Trainer:
        """The training engine of this model (:class:`fastnn.training.Trainer`): its
        optimizer, loss and metrics are the ones given to :meth:`compile`; sample weights
        are reduced as Keras does (``sum_i w_i loss_i / rows``).
        """
        if self._trainer is None:
            self._trainer = Trainer(self, sample_weight_reduction="sum_over_batch_size")
        return self._trainer

    # ---- boundary checks ---------------------------------------------------
    def check_input(self, X: Any, argname: str = "X") -> np.ndarray:
        """X checked against the model's input shape, as a C-contiguous array of its dtype.

        ValueError / TypeError naming ``argname`` for a wrong shape, dtype or an empty batch.
        """
        try:
            arr = np.asarray(X)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"{argname} could not be converted to an array: {exc}") from None
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{argname} must be numeric, got dtype {arr.dtype}")
        indices = self.input_dtype.kind == "i"
        if arr.ndim < (1 if indices else 2):
            raise ValueError(f"{argname} must have a batch axis: shape (batch, features...), "
                             f"got {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"{argname} is an empty batch (shape {arr.shape})")
        self._check_input_shape(arr.shape[1:], argname)
        if indices:
            return _as_indices(arr, argname)
        with np.errstate(over="ignore"):  # too large for float32 -> inf (fit's check names it)
            return np.ascontiguousarray(arr, dtype=self.dtype)

    @property
    def input_dtype(self) -> np.dtype:
        """The dtype X is converted to: int64 when the first layer takes indices (an
        :class:`~fastnn.Embedding`), else the model's dtype.
        """
        first = self._layers[0] if self._layers else None
        return np.dtype(getattr(first, "input_dtype", None) or self.dtype)

    def check_input_rows(self, X: Any, argname: str = "X") -> Any:
        """:meth:`check_input`, except that a memory-mapped X is only shape-checked and left
        on disk (then read and converted batch by batch by predict/evaluate).
        """
        if not _data.is_memmap(X) or X.ndim < 2 or X.shape[0] == 0:
            return self.check_input(X, argname)  # (and the usual errors)
        self._check_input_shape(tuple(X.shape[1:]), argname)
        return X

    def check_target(self, y: Any, n: int, argname: str = "y") -> np.ndarray:
        """Targets for ``n`` rows checked against the compiled loss and the output shape,
        converted once (int64 labels or float rows).
        """
        if self.loss is None:
            raise RuntimeError("call model.compile(optimizer=..., loss=...) first")
        return self.loss.prepare(y, n, tuple(self.output_shape), self.dtype, argname)

    # ---- computation ---------------------------------------------------------
    def penalty(self) -> float:
        """The layers' L1/L2 terms added to the loss."""
        return sum(layer.penalty() for layer in self._layers)

    def forward(self, X: Any, training: bool = False) -> np.ndarray:
        """Model output for a batch (a new array).  ``training=True`` applies dropout.

        Parameters
        ----------
        X : array_like, (batch, *input_shape)

        Returns
        -------
        ndarray, (batch, *output_shape)
        """
        return self.trainer.forward(self.check_input(X), training).copy()

    def __call__(self, X: Any, training: bool = False) -> np.ndarray:
        """``model(X)``: the model's output for a batch, as :meth:`forward` (Keras' and
        PyTorch's call; ``training=True`` applies dropout).
        """
        return self.forward(X, training)

    def backward(self, grad_out: Any) -> np.ndarray:
        """Backpropagate dL/d(output) of the last :meth:`forward`; fill every trainable
        layer's gradients and return dL/dX.

        Parameters
        ----------
        grad_out : array_like, the shape of the last forward's output

        Returns
        -------
        ndarray, the shape of the last forward's input
        """
        if not self._layers:
            raise RuntimeError("backward on a model without layers")
        if not all(layer.has_forward() for layer in self._layers):
            raise RuntimeError("backward() needs a forward() first, on the same thread: call "
                               "model.forward(X, training=True), then model.backward(grad_out)")
        last = self._layers[-1]
        expected = getattr(last, "_bufs", {}).get("a", None)
        g = np.array(grad_out, dtype=self.dtype, order="C", copy=True)
        if expected is not None and g.shape != expected.shape:
            raise ValueError(f"grad_out must have shape {expected.shape} (the last forward's "
                             f"output), got {g.shape}")
        dx = self.trainer.backward(g, input_grad=True)
        return None if dx is None else dx.copy()  # None: integer input (an Embedding first)

    def compute_gradients(self, X: Any, y: Any) -> float:
        """Forward, loss (with L1/L2 penalties) and backward; no update.

        Returns
        -------
        float
            The loss.  Gradients are in each layer's ``grads`` (``grad_weight``...).
        """
        trainer = self.trainer
        trainer.attach()
        x = self.check_input(X)
        return trainer.compute_gradients(x, self.check_target(y, x.shape[0]))

    def train_step(self, X: Any, y: Any) -> float:
        """One optimizer step on one batch; returns the loss before the step.

        A non-finite loss (or gradient) skips the update (the weights stay as they
        were) and is returned as is (NaN for a non-finite gradient).
        """
        trainer = self.trainer
        if self.optimizer is None or self.loss is None:
            raise RuntimeError("call model.compile(optimizer=..., loss=...) before training")
        x = self.check_input(X)
        n = x.shape[0]
        if (trainer.uses_fused_step() and type(y) is np.ndarray and y.dtype == np.int64
                and y.ndim == 1 and y.shape[0] == n and y.flags.c_contiguous
                and self.loss.name == "cross_entropy"):
            yy = y  # the one-call step checks the label range before writing anything
            try:
                return trainer.train_step(x, yy)
            except ValueError:
                self.check_target(y, n)  # unchecked labels: raise the detailed error
                raise
        return trainer.train_step(x, self.check_target(y, n))

    def predict(self, X: Any, batch_size: int | None = None, verbose: Any = 0) -> np.ndarray:
        """Outputs for every row of X, in batches: what the last layer outputs
        (probabilities after a sigmoid/softmax output layer, logits after a linear one).

        Parameters
        ----------
        X : array_like, (n, *input_shape)
            A memory-mapped array is read and converted batch by batch.
        batch_size : int, optional (default 1024)
        verbose : int
            Accepted for Keras compatibility; predict prints nothing.

        Returns
        -------
        ndarray, (n, *output_shape)
        """
        x = self.check_input_rows(X)
        bs = _batch_size(batch_size, 1024)
        forward = self.trainer.forward
        out = None
        for s in range(0, x.shape[0], bs):
            o = forward(rows_as(x, s, s + bs, self.input_dtype), False)
            if out is None:
                out = np.empty((x.shape[0], *o.shape[1:]), self.dtype)
            out[s:s + o.shape[0]] = o
        return out

    def evaluate(self, X: Any, y: Any, batch_size: int | None = None,
                 sample_weight: Any = None, verbose: Any = 0) -> dict[str, float]:
        """Mean loss (with penalties) and the compiled metrics.

        Parameters
        ----------
        X, y : array_like
            A memory-mapped X is read and converted batch by batch.
        batch_size : int, optional (default 1024)
        sample_weight : array_like (n,), optional
            Weights the loss (``sum_i w_i loss_i / n``, as Keras) and the metrics.
        verbose : int
            Accepted for Keras compatibility; evaluate prints nothing.

        Returns
        -------
        dict
            ``{"loss": ..., "accuracy": ..., <metric name>: ...}``
        """
        if self.loss is None:
            raise RuntimeError("call model.compile(...) before evaluate")
        x = self.check_input_rows(X)
        yy = self.check_target(y, x.shape[0])
        w = None if sample_weight is None else _data.check_sample_weight(sample_weight,
                                                                          x.shape[0])
        return self.evaluate_prepared(x, yy, _batch_size(batch_size, 1024), w)

    def evaluate_prepared(self, x: np.ndarray, y: np.ndarray, batch_size: int,
                          sample_weight: np.ndarray | None = None) -> dict[str, float]:
        """:meth:`evaluate` on data already checked by :meth:`check_input` / :meth:`check_target`
        (no conversion), in batches of ``batch_size`` (:meth:`fastnn.training.Trainer.evaluate`).
        """
        return self.trainer.evaluate(x, y, batch_size, sample_weight)

    def prepare_fit_data(self, X: Any, y: Any, validation_data: tuple[Any, Any] | None = None,
                         validation_split: float = 0.0
                         ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """X, y and the validation pair of a fit, checked and converted once (also used by
        :class:`fastnn.distributed.DataParallel`); the validation split takes the last rows.
        """
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split must lie in [0, 1), got {validation_split}")
        if validation_data is not None and validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        self.trainer.attach()
        x = self.check_input(X)
        yy = self.check_target(y, x.shape[0])
        val = None
        if validation_split:
            n_val = int(math.ceil(x.shape[0] * validation_split))
            if n_val >= x.shape[0]:
                raise ValueError("validation_split leaves no training samples")
            val = (x[-n_val:], yy[-n_val:])
            x, yy = x[:-n_val], yy[:-n_val]
        elif validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            xv = self.check_input(validation_data[0], "validation_data[0]")
            val = (xv, self.check_target(validation_data[1], xv.shape[0], "validation_data[1]"))
        return x, yy, val

    # ---- fit -----------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, epochs: int = 1, batch_size: int | None = 32,
            validation_data: tuple[Any, ...] | None = None, validation_split: float = 0.0,
            shuffle: bool = True, callbacks: Sequence[Callback] | None = None,
            verbose: Any = 1, initial_epoch: int = 0, check_finite: bool = True,
            distributed: Any = False, sample_weight: Any = None, class_weight: Any = None,
            steps_per_epoch: int | None = None) -> History:
        """Train for ``epochs`` passes over (X, y).

        Parameters
        ----------
        X : array_like (n, *input_shape), a memory-mapped array, or an iterable of batches
            Arrays in memory are converted once.  A memory-mapped array
            (``np.load(path, mmap_mode="r")``, ``np.memmap``) is read batch by batch
            (shuffled, each batch's rows read in file order), never whole.  A
            generator or iterable of ``(x, y)`` or ``(x, y, sample_weight)`` batches
            (``y`` then omitted) is consumed as it comes (see ``steps_per_epoch``).
        y : array_like
            Integer labels (n,) or (n, 1), or one-hot rows for cross_entropy; targets
            of the output's shape for mse / binary_cross_entropy.
        epochs : int
        batch_size : int or None
            Samples per step (None: 32, as Keras).
        validation_data : (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
        validation_split : float
            Fraction of the *last* samples (before shuffling) held out, as Keras.
        shuffle : bool
            Reshuffle every epoch with the model's seeded Generator.
        callbacks : list of Callback
        verbose : {0, 1, 2, "auto"}
            As Keras ("auto" is 1): 0 silent; 1 a progress bar per batch on a terminal
            (tqdm: ETA, samples/s, loss and metrics), one line per epoch otherwise; 2
            one line per epoch.
        initial_epoch : int
            Epoch to start from, as Keras: epochs ``initial_epoch .. epochs-1`` run.
            To resume a loaded checkpoint exactly, pass ``initial_epoch=model.epoch``
            (the number of epochs it had completed).
        check_finite : bool
            Check X, y and the validation data for NaN and infinity once, before
            training (ValueError naming the array and the first bad index), as
            scikit-learn does (batch by batch for memory-mapped data and iterables).
            One pass over the data; pass False to skip it.
        distributed : bool or strategy
            Data-parallel training over MPI (``mpiexec -n 4 python train.py``): True
            is the same as ``fastnn.distributed.DataParallel(model).fit(...)`` on
            ``MPI.COMM_WORLD``; ``batch_size`` is then the global batch.  Needs the
            ``mpi`` extra.  A strategy object wrapping this model (anything with
            ``.model is self`` and ``.fit(X, y, **fit_arguments)``, e.g. a
            ``DataParallel`` on your own communicator) is used as is.  Takes arrays
            only, without sample_weight, class_weight or steps_per_epoch (ValueError).
        sample_weight : array_like (n,), optional
            Per-sample weights of the loss (``sum_i w_i loss_i / n``, Keras'
            reduction) and of the metrics.
        class_weight : dict {class: weight} or "balanced", optional
            Multiplies each sample's weight by its class's ("balanced":
            ``n / (n_classes * count)``, as scikit-learn).
        steps_per_epoch : int, optional
            Batches per epoch when X is a generator (a one-shot iterator continues
            where the last epoch stopped); default one pass.

        Returns
        -------
        History
            ``history.history["loss"]``, ``["accuracy"]``, ``["val_loss"]``, ``["lr"]``...
            Only completed epochs are recorded: a fit stopped in its first batch
            records none.

        Notes
        -----
        The loop is :meth:`fastnn.training.Trainer.fit` (``model.trainer``) over a batch
        source of :mod:`fastnn.data`.  A NaN or infinite loss (or gradient) stops
        training with a RuntimeWarning, leaving the weights of the last finite step
        (like Keras' TerminateOnNaN).  Ctrl-C (KeyboardInterrupt) never lands inside a
        weight update: the model keeps the weights of the last completed step, the
        progress bar is closed and the KeyboardInterrupt is re-raised; a later ``fit``
        continues from there.  Sample weights take the layer-by-layer path (not the
        one-call MLP step).
        """
        if distributed:
            if sample_weight is not None or class_weight is not None or steps_per_epoch \
                    or y is None:
                raise ValueError("distributed fit takes arrays X and y, without sample_weight, "
                                 "class_weight, steps_per_epoch or batches from an iterable "
                                 "(train without them, or in one process)")
            kw = {"epochs": epochs, "batch_size": 32 if batch_size is None else batch_size,
                  "validation_data": validation_data, "validation_split": validation_split,
                  "shuffle": shuffle, "callbacks": callbacks,
                  "verbose": 1 if verbose == "auto" else verbose,
                  "initial_epoch": initial_epoch, "check_finite": check_finite}
            if distributed is True:
                from .distributed import DataParallel  # one way: distributed never imports model

                with DataParallel(self) as dp:
                    return dp.fit(X, y, **kw)
            if getattr(distributed, "model", None) is not self or not hasattr(distributed, "fit"):
                raise TypeError("distributed must be a bool or a strategy wrapping this model "
                                "(e.g. fastnn.distributed.DataParallel(model)), got "
                                f"{type(distributed).__name__}")
            return distributed.fit(X, y, **kw)
        epochs = positive_int(epochs, "epochs")
        batch_size = 32 if batch_size is None else positive_int(batch_size, "batch_size")
        if verbose == "auto":  # Keras' default: the bar where one can be shown
            verbose = 1
        if steps_per_epoch is not None:
            steps_per_epoch = positive_int(steps_per_epoch, "steps_per_epoch")
        start = int(initial_epoch)
        if not 0 <= start < epochs:
            raise ValueError(f"initial_epoch must lie in [0, epochs={epochs}), got {start}")
        source, val = self._fit_source(X, y, batch_size, shuffle, validation_data,
                                       validation_split, check_finite, sample_weight,
                                       class_weight, steps_per_epoch)
        bar = ProgressBar(epochs, source.n_samples, verbose, steps=source.n_batches)
        return self.trainer.fit(source, epochs, initial_epoch=start, callbacks=callbacks,
                                progress=bar, validation=val,
                                validation_batch_size=max(getattr(source, "batch_size",
                                                                  batch_size), 256))

    def _fit_source(self, X: Any, y: Any, batch_size: int, shuffle: bool,
                    validation_data: tuple[Any, ...] | None, validation_split: float,
                    check_finite: bool, sample_weight: Any, class_weight: Any,
                    steps_per_epoch: int | None) -> tuple[Any, tuple | None]:
        """The batch source of a fit (see :mod:`fastnn.data`) and its validation triple
        ``(X_val, y_val, w_val or None)`` or None.
        """
        if self.optimizer is None or self.loss is None:
            raise RuntimeError("call model.compile(optimizer=..., loss=...) before training")
        self.trainer.attach()
        wv = None
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be (X_val, y_val) or "
                                 "(X_val, y_val, sample_weight_val)")
            if len(validation_data) == 3:
                wv = validation_data[2]
                validation_data = tuple(validation_data[:2])
        if y is None and not isinstance(X, np.ndarray) and hasattr(X, "__iter__"):
            if validation_split:
                raise ValueError("validation_split needs arrays; with batches from an "
                                 "iterable give validation_data")
            if sample_weight is not None:
                raise ValueError("with batches from an iterable, give sample weights as the "
                                 "third element of each batch (x, y, sample_weight)")
            source: Any = _data.IterableBatches(X, steps_per_epoch,
                                                self._batch_preparer(check_finite),
                                                class_weight)
            val = None
            if validation_data is not None:
                xv = self.check_input(validation_data[0], "validation_data[0]")
                val = (xv, self.check_target(validation_data[1], xv.shape[0],
                                             "validation_data[1]"))
        elif y is None:
            raise ValueError("fit needs y with an array X (or X an iterable of (x, y) batches)")
        elif _data.is_memmap(X) or _data.is_memmap(y):
            n = X.shape[0]
            ya = y if _data.is_memmap(y) else np.asarray(y)
            if not 0.0 <= validation_split < 1.0:
                raise ValueError(f"validation_split must lie in [0, 1), got {validation_split}")
            if validation_data is not None and validation_split:
                raise ValueError("give validation_data or validation_split, not both")
            if len(ya) != n:
                raise ValueError(f"X has {n} samples but y has {len(ya)}")
            self._check_input_shape(tuple(X.shape[1:]))
            n_val = int(math.ceil(n * validation_split)) if validation_split else 0
            if n_val >= n:
                raise ValueError("validation_split leaves no training samples")
            w = _data.sample_weights(n, None, sample_weight, None)
            if class_weight is not None:  # labels are small: read once (chunk-wise by NumPy)
                cw = _data.class_weight_array(class_weight, _data.labels_of(
                    self.check_target(np.asarray(ya[:n - n_val]), n - n_val)))
                cw = np.concatenate([cw, np.ones(n_val)]) if n_val else cw
                w = cw if w is None else w * cw
            if n_val:
                validation_data = (X[n - n_val:], ya[n - n_val:])
                wv = None if w is None else w[n - n_val:]
                X, ya, w = X[:n - n_val], ya[:n - n_val], None if w is None else w[:n - n_val]
            source = _data.MemmapBatches(X, ya, w, batch_size, shuffle,
                                         self._batch_preparer(check_finite), self.rng)
            val = None
            if validation_data is not None:  # a memory-mapped part stays on disk
                xv = self.check_input_rows(validation_data[0], "validation_data[0]")
                val = (xv, self.check_target(validation_data[1], xv.shape[0],
                                             "validation_data[1]"))
        else:
            n_all = len(X) if hasattr(X, "__len__") else None
            x, yy, val = self.prepare_fit_data(X, y, validation_data, validation_split)
            if check_finite:
                _check_finite(x, yy, names=["X", "y"])
                if val is not None:
                    _check_finite(*val, names=["validation X", "validation y"])
            w = None
            if sample_weight is not None:
                w = _data.check_sample_weight(sample_weight, n_all if n_all else x.shape[0])
                if validation_split:
                    wv, w = w[x.shape[0]:], w[:x.shape[0]]
            if class_weight is not None:
                cw = _data.class_weight_array(class_weight, _data.labels_of(yy))
                w = cw if w is None else w * cw
            source = _data.ArrayBatches(x, yy, w, batch_size=batch_size, shuffle=shuffle,
                                        rng=self.rng, dtype=self.input_dtype)
        if val is not None:
            if wv is not None:
                wv = _data.check_sample_weight(wv, val[0].shape[0], "validation sample_weight")
            val = (val[0], val[1], wv)
        return source, val

    def _batch_preparer(self, check: bool) -> Any:
        """(x, y, w, where) -> one batch checked and converted (memory-mapped or iterable
        data, whose batches are seen one at a time).
        """
        def prepare(xb: Any, yb: Any, wb: Any, where: str):
            x = self.check_input(xb, f"X ({where})")
            yv = self.check_target(yb, x.shape[0], f"y ({where})")
            w = None if wb is None else _data.check_sample_weight(wb, x.shape[0],
                                                                  f"sample_weight ({where})")
            if check:
                _check_finite(x, yv, names=[f"X ({where})", f"y ({where})"])
            return x, yv, w

        return prepare

    def fuse_batchnorm(self) -> Sequential:
        """A new model for inference with each BatchNorm folded into the layer before it.

        Every ``BatchNorm1D`` right after a ``Dense``, and every ``BatchNorm2D`` right
        after a ``Conv2D``, whose activation is the identity is folded into that layer
        (weights scaled by ``weight / sqrt(running_var + eps)``, bias shifted; computed
        in float64); an ``Activation`` right after the BatchNorm (softmax excepted)
        becomes the folded layer's fused activation.  Other BatchNorm layers stay.

        Returns
        -------
        Sequential
            New and not compiled, its layers copies; this model is unchanged.  Its
            ``predict`` equals this model's (inference mode: the running statistics)
            to within float rounding.  Training it would train the folded layers,
            without batch normalization.
        """
        from ._fuse import fuse_batchnorm

        return fuse_batchnorm(self)

    # ---- description -----------------------------------------------------------
    def summary(self, print_fn: Any = print) -> str:
        """Print (and return) a table of layers, output shapes and parameter counts."""
        rows = [("Layer (type)", "Output shape", "Param #", "Trainable")]
        for layer, shape in zip(self._layers, self._shapes):
            shp = "(batch, " + ", ".join("?" if d is None else str(d) for d in shape or ()) + ")"
            rows.append((f"{layer.name} ({type(layer).__name__})", shp,
                         f"{layer.num_params():,}", "yes" if layer.trainable else "no"))
            if hasattr(layer, "sublayers"):  # a block (Residual): its layers, indented
                for sub, sshape in zip(layer.sublayers(), layer.inner_shapes()):
                    sshp = "(batch, " + ", ".join("?" if d is None else str(d)
                                                  for d in sshape or ()) + ")"
                    rows.append((f"  {layer.name}.{sub.name} ({type(sub).__name__})", sshp,
                                 f"{sub.num_params():,}", "yes" if sub.trainable else "no"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        line = "  ".join("-" * w for w in widths)
        out = [f'Model "{self.name}" ({self.dtype}, input '
               f'{self.input_shape if self.input_shape is not None else "unknown"})', line]
        for j, r in enumerate(rows):
            out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
            if j == 0:
                out.append(line)
        trainable = sum(x.num_params() for x in self._layers if x.trainable)
        out += [line, f"Total params: {self.count_params():,}  (trainable {trainable:,}, "
                      f"frozen {self.count_params() - trainable:,})"]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    def get_config(self) -> dict[str, Any]:
        """Architecture as JSON-serializable data (used by :meth:`save`)."""
        return {"name": self.name, "dtype": self.dtype.name, "seed": self.seed,
                "input_shape": None if self.input_shape is None else list(self.input_shape),
                "layers": [{"type": type(x).__name__, "config": x.get_config()}
                           for x in self._layers]}

    def save(self, path: str) -> None:
        """Save architecture, weights, optimizer state, RNG state and counters to one file
        (a zip of .npy arrays and JSON; never pickle), atomically.
        """
        _io.save_model(self, path)

    def save_weights(self, path: str) -> None:
        """Save only the parameters, keyed by layer name (for partial loading)."""
        _io.save_weights(self, path)

    def load_weights(self, path: str, skip_mismatch: bool = False) -> list[str]:
        """Load parameters by layer name from :meth:`save_weights`' (or a model) file.

        Shapes are checked for every matching layer before anything is assigned;
        a mismatch raises ValueError unless ``skip_mismatch``.  Returns the names
        of the layers loaded.
        """
        return _io.load_weights(self, path, skip_mismatch)

    # ---- pickling and copies ---------------------------------------------------
    def __reduce__(self) -> tuple:
        """Pickle (and ``copy.deepcopy``) through the safe model format, in memory.

        Everything :meth:`save` keeps (architecture, weights, optimizer state, RNG
        state, counters, dropout state) travels as the model file's bytes, so the
        copy predicts bitwise the same and continues training exactly as the
        original would.  Caches (the engine with its one-call MLP plans, work
        buffers) are not copied; they are rebuilt on first use.  The compiled metrics
        and a custom Loss object are pickled beside the bytes.
        """
        from . import optim

        for obj, table, what in [(la, LAYER_TYPES, "layer") for la in self._layers] + (
                [] if self.optimizer is None else
                [(self.optimizer, vars(optim), "optimizer")]):
            if table.get(type(obj).__name__) is not type(obj):
                raise TypeError(f"cannot pickle or copy this model: its {what} "
                                f"{type(obj).__name__} is not one of fastnn's own, which the "
                                "safe model format (used for pickling) stores by name")
        custom_loss = (self.loss if self.loss is not None
                       and LOSSES.get(self.loss.name) is not type(self.loss) else None)
        extra = {"metrics": self.metrics, "loss": custom_loss, "stop_training": self.stop_training}
        return (_restore, (_io.model_to_bytes(self), extra))

    def __repr__(self) -> str:
        return f"Sequential({self._layers!r}, dtype={self.dtype.name!r}, seed={self.seed!r})"


def _restore(blob: bytes, extra: dict[str, Any]) -> Sequential:
    """Unpickle a :class:`Sequential` (see :meth:`Sequential.__reduce__`)."""
    model = _io.model_from_bytes(blob, Sequential, extra.get("loss"))
    model.metrics = list(extra.get("metrics") or [])
    model.stop_training = bool(extra.get("stop_training", False))
    return model


def load(path: str) -> Sequential:
    """Load a model saved by :meth:`Sequential.save` (``fastnn.load``); ValueError for a
    corrupt or foreign file.  Never unpickles.
    """
    return _io.load_model(path, Sequential)


def _as_indices(arr: np.ndarray, argname: str) -> np.ndarray:
    """An integer input (for an Embedding first layer) as C-contiguous int64; floats must
    hold whole numbers (TypeError otherwise).
    """
    if arr.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            whole = bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
        if not whole:
            raise TypeError(f"{argname} must hold integer indices (the first layer is an "
                            f"Embedding), got {arr.dtype} values that are not whole numbers")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _batch_size(bs: int | None, default: int) -> int:
    return default if bs is None else positive_int(bs, "batch_size")
