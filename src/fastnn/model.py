"""Sequential: a stack of layers with one flat parameter buffer, trained by fit/train_step."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from . import _kernels as _k
from ._config import get_num_threads
from ._names import NEEDS_Z
from .callbacks import Callback, History, ProgressBar
from .layers import SPEC, Dense, Layer
from .losses import Loss, get_loss
from .optim import Optimizer, get_optimizer


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) for the duration of the block, then deliver it.

    Used around the optimizer update and the step counters so that an interrupt
    never leaves the weights half-updated: a KeyboardInterrupt raised by a signal
    lands before or after the whole update.  Only the main thread receives
    signals; elsewhere, or when SIGINT is not Python's default handler, the
    block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        old = signal.getsignal(signal.SIGINT)
    except (ValueError, OSError):  # pragma: no cover -- no signal support
        old = None
    if old is not signal.default_int_handler:
        yield
        return
    pending: list[tuple] = []
    signal.signal(signal.SIGINT, lambda signum, frame: pending.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if pending:
            old(*pending[0])



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
        self.stop_training = False
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimizer steps
        self._grad_cache: dict[tuple, np.ndarray] = {}
        self._bad_grads = False
        self._opt_key: tuple | None = None
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
        self._plans = {}
        self._plan_eligible = bool(self._layers) and all(
            isinstance(la, Dense) and not (la.l1 or la.l2) for la in self._layers)
        self._opt_key = None
        self._grad_cache.clear()

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
                loss: str | Loss = "cross_entropy") -> Sequential:
        """Choose the optimizer and the loss.

        Parameters
        ----------
        optimizer : str or Optimizer
            e.g. ``fnn.optim.Adam(lr=1e-3)`` or "sgd", "adam", "adamw", "rmsprop", "adagrad".
        loss : str or Loss
            "cross_entropy" (logits; integer labels or one-hot rows), "mse" or
            "binary_cross_entropy" (logits).

        Returns
        -------
        Sequential
            self.
        """
        opt = get_optimizer(optimizer)
        self.loss = get_loss(loss)
        self.optimizer = opt
        self._opt_key = None
        return self

    def _ensure_optimizer(self) -> Optimizer:
        if self.optimizer is None or self.loss is None:
            raise RuntimeError("call model.compile(optimizer=..., loss=...) before training")
        key = tuple(layer.trainable for layer in self._layers)
        if key != self._opt_key:
            ranges = [r for layer, r in zip(self._layers, self._ranges) if layer.trainable]
            self.optimizer.setup(self._flat_params, self._flat_grads, ranges)
            self._opt_key = key
        return self.optimizer

    # ---- boundary checks ---------------------------------------------------
    def _prep_x(self, X: Any, argname: str = "X") -> np.ndarray:
        try:
            arr = np.asarray(X)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"{argname} could not be converted to an array: {exc}") from None
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{argname} must be numeric, got dtype {arr.dtype}")
        if arr.ndim < 2:
            raise ValueError(f"{argname} must have a batch axis: shape (batch, features...), "
                             f"got {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"{argname} is an empty batch (shape {arr.shape})")
        self._check_input_shape(arr.shape[1:], argname)
        with np.errstate(over="ignore"):  # too large for float32 -> inf (fit's check names it)
            return np.ascontiguousarray(arr, dtype=self.dtype)

    def _prep_y(self, y: Any, n: int, argname: str = "y") -> np.ndarray:
        assert self.loss is not None
        return self.loss.prepare(y, n, tuple(self.output_shape), self.dtype, argname)

    # ---- computation ---------------------------------------------------------
    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        for layer in self._layers:
            x = layer.forward(x, training)
        return x

    def _backward(self, g: np.ndarray, input_grad: bool = False) -> np.ndarray | None:
        """Backpropagate g (overwritten) through every layer; dx only where needed."""
        first = 0 if input_grad else next(
            (i for i, layer in enumerate(self._layers) if layer.trainable and layer.params),
            len(self._layers))
        for i in range(len(self._layers) - 1, first - 1, -1):
            g = self._layers[i].backward(g, i > first or input_grad)
        return g if input_grad else None

    def _penalty(self) -> float:
        return sum(layer.penalty() for layer in self._layers)

    def _grad_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        buf = self._grad_cache.get(shape)
        if buf is None:
            if len(self._grad_cache) >= 4:
                self._grad_cache.pop(next(iter(self._grad_cache)))
            buf = self._grad_cache[shape] = np.empty(shape, self.dtype)
        return buf

    def _mlp_plan(self, n: int) -> Any:
        """The one-call training step of a Dense-only model for batch size n, or None.

        Eligible: every layer a Dense without L1/L2.  The plan points at the flat
        parameter and gradient buffers and at buffers of its own; it is rebuilt when
        the batch size, the layers' gradient arrays or the trainable flags change.
        """
        if not self._plan_eligible:
            return None
        key = (n, tuple(layer.trainable for layer in self._layers),
               tuple(id(g) for layer in self._layers for g in layer.grads))
        plan = self._plans.get(key)
        if plan is None:
            from ._kernels import MLPPlan

            layers = self._layers
            first = next((i for i, la in enumerate(layers) if la.trainable), len(layers))
            dt = self.dtype

            def buf(shape):
                return np.empty(shape, dt)

            acts = [buf((n, la.out_features)) for la in layers]
            plan = MLPPlan(
                dt == np.float32, n, first, [la.in_features for la in layers],
                [la.out_features for la in layers], [la._act for la in layers],
                [la.params[0] for la in layers], [la.bias for la in layers],
                [la.grads[0] if la.trainable else None for la in layers],
                [la.grad_bias if la.trainable else None for la in layers], acts,
                [buf((n, la.out_features)) if la.activation in NEEDS_Z else None
                 for la in layers],
                [buf((n, la.in_features)) if i > first else None
                 for i, la in enumerate(layers)],
                buf((n, layers[-1].out_features)))
            if len(self._plans) >= 4:
                self._plans.pop(next(iter(self._plans)))
            plan = self._plans[key] = (plan, acts[-1])
        return plan

    def _loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Forward, loss and backward.  The loss is returned as NaN when it or any gradient
        is not finite (so that no update is applied from it).
        """
        planned = self._mlp_plan(x.shape[0])
        if planned is not None:  # a Dense-only model: forward, loss, backward in one C call
            plan, out = planned
            kind = self.loss.kind(y)
            try:
                loss = plan.run(x, y if kind == 0 else None, None if kind == 0 else y, kind,
                                get_num_threads())
            except ValueError:
                self._prep_y(y, x.shape[0])  # unchecked labels: raise the detailed error
                raise
        else:
            out = self._forward(x, True)
            g = self._grad_buffer(out.shape)
            loss = self.loss(out, y, g) + self._penalty()
            if math.isfinite(loss):
                self._backward(g)
        self._bad_grads = False
        # a finite loss can still give an inf/NaN gradient (overflow in a backward),
        # which would poison the weights: one vectorized C pass over the gradients
        if math.isfinite(loss) and not _k.all_finite[SPEC[self.dtype]](self._flat_grads):
            self._bad_grads = True
            return math.nan, out
        return loss, out

    def _apply_step(self, opt: Optimizer) -> None:
        """The optimizer update and the step counter, as one unit w.r.t. Ctrl-C."""
        with _sigint_deferred():
            opt.step()
            self.step += 1

    def forward(self, X: Any, training: bool = False) -> np.ndarray:
        """Model output for a batch (a new array).  ``training=True`` applies dropout.

        Parameters
        ----------
        X : array_like, (batch, *input_shape)

        Returns
        -------
        ndarray, (batch, *output_shape)
        """
        return self._forward(self._prep_x(X), training).copy()

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
        last = self._layers[-1]
        expected = getattr(last, "_bufs", {}).get("a", None)
        g = np.array(grad_out, dtype=self.dtype, order="C", copy=True)
        if expected is not None and g.shape != expected.shape:
            raise ValueError(f"grad_out must have shape {expected.shape} (the last forward's "
                             f"output), got {g.shape}")
        return self._backward(g, input_grad=True).copy()

    def compute_gradients(self, X: Any, y: Any) -> float:
        """Forward, loss (with L1/L2 penalties) and backward; no update.

        Returns
        -------
        float
            The loss.  Gradients are in each layer's ``grads`` (``grad_weight``...).
        """
        self._ensure_optimizer()
        x = self._prep_x(X)
        loss, _ = self._loss_and_grads(x, self._prep_y(y, x.shape[0]))
        return float(loss)

    def train_step(self, X: Any, y: Any) -> float:
        """One optimizer step on one batch; returns the loss before the step.

        A non-finite loss (or gradient) skips the update (the weights stay as they
        were) and is returned as is (NaN for a non-finite gradient).
        """
        opt = self._ensure_optimizer()
        x = self._prep_x(X)
        n = x.shape[0]
        if (self._plan_eligible and type(y) is np.ndarray and y.dtype == np.int64
                and y.ndim == 1 and y.shape[0] == n and y.flags.c_contiguous
                and self.loss.name == "cross_entropy"):
            yy = y  # the one-call step checks the label range before writing anything
        else:
            yy = self._prep_y(y, n)
        loss, _ = self._loss_and_grads(x, yy)
        if math.isfinite(loss):
            self._apply_step(opt)
        return float(loss)

    def predict(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """Outputs for every row of X (logits for the logit losses), in batches.

        Parameters
        ----------
        X : array_like, (n, *input_shape)
        batch_size : int, optional (default 1024)

        Returns
        -------
        ndarray, (n, *output_shape)
        """
        x = self._prep_x(X)
        bs = _batch_size(batch_size, 1024)
        out = None
        for s in range(0, x.shape[0], bs):
            o = self._forward(x[s:s + bs], False)
            if out is None:
                out = np.empty((x.shape[0], *o.shape[1:]), self.dtype)
            out[s:s + o.shape[0]] = o
        return out

    def evaluate(self, X: Any, y: Any, batch_size: int | None = None) -> dict[str, float]:
        """Mean loss (with penalties) and, for classification losses, accuracy.

        Returns
        -------
        dict
            ``{"loss": ..., "accuracy": ...}``
        """
        if self.loss is None:
            raise RuntimeError("call model.compile(...) before evaluate")
        x = self._prep_x(X)
        yy = self._prep_y(y, x.shape[0])
        return self._evaluate(x, yy, _batch_size(batch_size, 1024))

    def _evaluate(self, x: np.ndarray, y: np.ndarray, bs: int) -> dict[str, float]:
        n = x.shape[0]
        total, correct = 0.0, 0.0
        for s in range(0, n, bs):
            o = self._forward(x[s:s + bs], False)
            m = o.shape[0]
            total += self.loss(o, y[s:s + m], None) * m
            acc = self.loss.accuracy(o, y[s:s + m])
            if acc is not None:
                correct += acc * m
        res = {"loss": total / n + self._penalty()}
        if self.loss.is_classification:
            res["accuracy"] = correct / n
        return res

    def _fit_data(self, X: Any, y: Any, validation_data: tuple[Any, Any] | None,
                  validation_split: float
                  ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """X, y and the validation pair of a fit, checked and converted once (also used by
        :class:`fastnn.distributed.DataParallel`); the validation split takes the last rows.
        """
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split must lie in [0, 1), got {validation_split}")
        if validation_data is not None and validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        self._ensure_optimizer()
        x = self._prep_x(X)
        yy = self._prep_y(y, x.shape[0])
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
            xv = self._prep_x(validation_data[0], "validation_data[0]")
            val = (xv, self._prep_y(validation_data[1], xv.shape[0], "validation_data[1]"))
        return x, yy, val

    # ---- fit -----------------------------------------------------------------
    def fit(self, X: Any, y: Any, epochs: int = 1, batch_size: int = 32,
            validation_data: tuple[Any, Any] | None = None, validation_split: float = 0.0,
            shuffle: bool = True, callbacks: Sequence[Callback] | None = None,
            verbose: int = 1, initial_epoch: int = 0, check_finite: bool = True,
            distributed: bool = False) -> History:
        """Train for ``epochs`` passes over (X, y).

        Parameters
        ----------
        X : array_like, (n, *input_shape)
        y : array_like
            Integer labels (n,) or one-hot rows for cross_entropy; targets of the
            output's shape for mse / binary_cross_entropy.
        epochs, batch_size : int
        validation_data : (X_val, y_val), optional
        validation_split : float
            Fraction of the *last* samples (before shuffling) held out, as Keras.
        shuffle : bool
            Reshuffle every epoch with the model's seeded Generator.
        callbacks : list of Callback
        verbose : int
            0 silent; 1 progress bar (tqdm, on a terminal) or one line per epoch.
        initial_epoch : int
            Epoch to start from, as Keras: epochs ``initial_epoch .. epochs-1`` run.
            To resume a loaded checkpoint exactly, pass ``initial_epoch=model.epoch``
            (the number of epochs it had completed).
        check_finite : bool
            Check X, y and the validation data for NaN and infinity once, before
            training (ValueError naming the array and the first bad index), as
            scikit-learn does.  One pass over the data; pass False to skip it.
        distributed : bool
            Data-parallel training over MPI (``mpiexec -n 4 python train.py``): the
            same as ``fastnn.distributed.DataParallel(model).fit(...)`` on
            ``MPI.COMM_WORLD``; ``batch_size`` is then the global batch.  Needs the
            ``mpi`` extra.

        Returns
        -------
        History
            ``history.history["loss"]``, ``["accuracy"]``, ``["val_loss"]``, ``["lr"]``...

        Notes
        -----
        A NaN or infinite loss (or gradient) stops training with a RuntimeWarning,
        leaving the weights of the last finite step (like Keras' TerminateOnNaN).
        Ctrl-C (KeyboardInterrupt) never lands inside a weight update: the model
        keeps the weights of the last completed step, the progress bar is closed
        and the KeyboardInterrupt is re-raised; a later ``fit`` continues from there.
        """
        if distributed:
            from .distributed import DataParallel

            with DataParallel(self) as dp:
                return dp.fit(X, y, epochs=epochs, batch_size=batch_size,
                              validation_data=validation_data,
                              validation_split=validation_split, shuffle=shuffle,
                              callbacks=callbacks, verbose=verbose, initial_epoch=initial_epoch)
        from ._validation import positive_int

        epochs = positive_int(epochs, "epochs")
        batch_size = positive_int(batch_size, "batch_size")
        x, yy, val = self._fit_data(X, y, validation_data, validation_split)
        if check_finite:
            from ._validation import check_finite as _check_finite

            _check_finite(x, yy, names=["X", "y"])
            if val is not None:
                _check_finite(*val, names=["validation X", "validation y"])
        n = x.shape[0]
        bs = min(batch_size, n)
        xb = np.empty((bs, *x.shape[1:]), self.dtype)
        yb = np.empty((bs, *yy.shape[1:]), yy.dtype)
        history = History()
        bar = ProgressBar(epochs, n, verbose)
        cbs = [history, *(callbacks or []), bar]
        for cb in cbs:
            cb.model = self
        start = int(initial_epoch)
        if not 0 <= start < epochs:
            raise ValueError(f"initial_epoch must lie in [0, epochs={epochs}), got {start}")
        self.stop_training = False
        opt = self.optimizer
        logs: dict[str, float] = {}
        try:
            for cb in cbs:
                cb.on_train_begin()
            for epoch in range(start, epochs):
                for cb in cbs:
                    cb.on_epoch_begin(epoch)
                order = self.rng.permutation(n) if shuffle else None
                tot_loss, tot_correct, seen, t0 = 0.0, 0.0, 0, time.perf_counter()
                for bi, s in enumerate(range(0, n, bs)):
                    m = min(bs, n - s)
                    if order is not None:
                        idx = order[s:s + m]
                        xs = np.take(x, idx, axis=0, out=xb[:m])
                        ys = np.take(yy, idx, axis=0, out=yb[:m])
                    else:
                        xs, ys = x[s:s + m], yy[s:s + m]
                    loss, out = self._loss_and_grads(xs, ys)
                    if not math.isfinite(loss):
                        import warnings

                        why = " (a gradient is not finite)" if self._bad_grads else ""
                        warnings.warn(f"fit: loss became {loss}{why} at epoch {epoch + 1}, batch "
                                      f"{bi + 1}; stopping with the weights of the last finite "
                                      "step", RuntimeWarning, stacklevel=2)
                        self.stop_training = True
                        break
                    self._apply_step(opt)
                    tot_loss += loss * m
                    acc = self.loss.accuracy(out, ys)
                    if acc is not None:
                        tot_correct += acc * m
                    seen += m
                    for cb in cbs:
                        cb.on_batch_end(bi, {"loss": loss, "size": m})
                    if self.stop_training:
                        break
                logs = {"loss": tot_loss / max(seen, 1)}
                if self.loss.is_classification:
                    logs["accuracy"] = tot_correct / max(seen, 1)
                if val is not None:
                    for k, v in self._evaluate(val[0], val[1], max(bs, 256)).items():
                        logs["val_" + k] = v
                logs["lr"] = opt.lr
                logs["samples_per_second"] = seen / max(time.perf_counter() - t0, 1e-9)
                if seen:
                    self.epoch = epoch + 1
                for cb in cbs:
                    cb.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            bar.close()  # first: even if another callback's on_train_end raises
            for cb in cbs:
                cb.on_train_end(logs)
        return history

    # ---- description -----------------------------------------------------------
    def summary(self, print_fn: Any = print) -> str:
        """Print (and return) a table of layers, output shapes and parameter counts."""
        rows = [("Layer (type)", "Output shape", "Param #", "Trainable")]
        for layer, shape in zip(self._layers, self._shapes):
            shp = "(batch, " + ", ".join("?" if d is None else str(d) for d in shape or ()) + ")"
            rows.append((f"{layer.name} ({type(layer).__name__})", shp,
                         f"{layer.num_params():,}", "yes" if layer.trainable else "no"))
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
        from .io import save_model

        save_model(self, path)

    def save_weights(self, path: str) -> None:
        """Save only the parameters, keyed by layer name (for partial loading)."""
        from .io import save_weights

        save_weights(self, path)

    def load_weights(self, path: str, skip_mismatch: bool = False) -> list[str]:
        """Load parameters by layer name from :meth:`save_weights`' (or a model) file.

        Shapes are checked for every matching layer before anything is assigned;
        a mismatch raises ValueError unless ``skip_mismatch``.  Returns the names
        of the layers loaded.
        """
        from .io import load_weights

        return load_weights(self, path, skip_mismatch)

    def __repr__(self) -> str:
        return f"Sequential({self._layers!r}, dtype={self.dtype.name!r}, seed={self.seed!r})"


def _batch_size(bs: int | None, default: int) -> int:
    from ._validation import positive_int

    return default if bs is None else positive_int(bs, "batch_size")
