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
from .losses import Loss, get_loss, output_mode
from .metrics import Metric, get_metrics
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
        self.metrics: list[Metric] = []
        self._metric_specs: Any = None
        self._mode_key: tuple | None = None
        self._mode = "values"
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
        flat_p = np.empty(total, self.dtype)
        flat_g = np.zeros(total, self.dtype)
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
        before = (self.loss, self.optimizer, self.metrics, self._metric_specs, self._opt_key,
                  self._mode_key)
        self.loss = loss_obj
        self.optimizer = opt
        self.metrics, self._metric_specs = metric_objs, metrics
        self._opt_key = None
        self._mode_key = None
        try:  # a wrong output/loss pair is refused, and the model left as it was
            self._output_mode()
        except ValueError:
            (self.loss, self.optimizer, self.metrics, self._metric_specs, self._opt_key,
             self._mode_key) = before
            raise
        return self

    # ---- the output layer and the loss (see fastnn.losses.output_mode) -------
    def _last_activation(self) -> str:
        last = self._layers[-1] if self._layers else None
        return getattr(last, "activation", None) or "identity"

    def _output_mode(self) -> str:
        """"fused" (loss from the last layer's pre-activation), "logits" or "values";
        checked once per (loss, last layer, output shape), warnings given once.
        """
        if self.loss is None or not self._layers:
            return "values"
        key = (id(self.loss), id(self._layers[-1]), self._last_activation(),
               self.output_shape)
        if key != self._mode_key:
            self._mode = output_mode(self.loss, self._last_activation(), self.output_shape)
            self._mode_key = key
            shown = "logits" if self._mode == "logits" else (
                "probabilities" if self._mode == "fused" else "values")
            for m in self.metrics:
                m.configure(self.loss.name, shown)
        return self._mode

    def _present(self, out: np.ndarray) -> np.ndarray:
        """What ``predict`` would return for training-forward outputs ``out`` (the
        activation applied to the logits when the loss is fused with it).
        """
        if self._mode != "fused":
            return out
        rows = out.reshape(-1, out.shape[-1])
        res = np.empty_like(rows)
        _k.act_forward[SPEC[self.dtype]](res, rows, self._layers[-1]._act)
        return res.reshape(out.shape)

    def _ensure_optimizer(self) -> Optimizer:
        if self.optimizer is None or self.loss is None:
            raise RuntimeError("call model.compile(optimizer=..., loss=...) before training")
        key = tuple(layer.trainable for layer in self._layers)
        if key != self._opt_key:
            ranges = [r for layer, r in zip(self._layers, self._ranges) if layer.trainable]
            self.optimizer.setup(self._flat_params, self._flat_grads, ranges)
            self._opt_key = key
        self._output_mode()
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

    def _prep_rows(self, X: Any, argname: str = "X") -> Any:
        """X prepared, except a memory-mapped X: shape-checked and left on disk (then read
        and converted batch by batch, see :func:`_rows`).
        """
        from .data import is_memmap

        if not is_memmap(X) or X.ndim < 2 or X.shape[0] == 0:
            return self._prep_x(X, argname)  # (and the usual errors)
        self._check_input_shape(tuple(X.shape[1:]), argname)
        return X

    def _prep_y(self, y: Any, n: int, argname: str = "y") -> np.ndarray:
        assert self.loss is not None
        return self.loss.prepare(y, n, tuple(self.output_shape), self.dtype, argname)

    # ---- computation ---------------------------------------------------------
    def _forward(self, x: np.ndarray, training: bool, logits: bool = False) -> np.ndarray:
        """Run every layer; ``logits=True`` stops before the last layer's activation."""
        last = len(self._layers) - 1
        for i, layer in enumerate(self._layers):
            x = layer.forward(x, training, logits=True) if logits and i == last else \
                layer.forward(x, training)
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
        fused = self._mode == "fused"
        key = (n, fused, tuple(layer.trainable for layer in self._layers),
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
                [la.out_features for la in layers],
                [la._act for la in layers[:-1]] + [0 if fused else layers[-1]._act],
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

    def _loss_and_grads(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None
                        ) -> tuple[float, np.ndarray]:
        """Forward, loss and backward.  The loss is returned as NaN when it or any gradient
        is not finite (so that no update is applied from it).

        ``w``: per-sample weights (n,) or None.  With a fused output (see
        :meth:`_output_mode`) the loss is taken from the last pre-activation and ``out``
        holds logits (:meth:`_present` turns them into the model's outputs).
        """
        logits = self._output_mode() == "fused"
        planned = self._mlp_plan(x.shape[0]) if w is None else None
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
            out = self._forward(x, True, logits=logits)
            g = self._grad_buffer(out.shape)
            loss = self.loss(out, y, g) if w is None else self.loss.weighted(out, y, w, g)
            loss += self._penalty()
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

    def predict(self, X: Any, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
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
        x = self._prep_rows(X)
        bs = _batch_size(batch_size, 1024)
        out = None
        for s in range(0, x.shape[0], bs):
            o = self._forward(_rows(x, s, bs, self.dtype), False)
            if out is None:
                out = np.empty((x.shape[0], *o.shape[1:]), self.dtype)
            out[s:s + o.shape[0]] = o
        return out

    def evaluate(self, X: Any, y: Any, batch_size: int | None = None,
                 sample_weight: Any = None, verbose: int = 0) -> dict[str, float]:
        """Mean loss (with penalties) and the compiled metrics.

        Parameters
        ----------
        X, y : array_like
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
        x = self._prep_rows(X)
        yy = self._prep_y(y, x.shape[0])
        w = None
        if sample_weight is not None:
            from .data import check_sample_weight

            w = check_sample_weight(sample_weight, x.shape[0])
        return self._evaluate(x, yy, _batch_size(batch_size, 1024), w)

    def _evaluate(self, x: np.ndarray, y: np.ndarray, bs: int,
                  w: np.ndarray | None = None) -> dict[str, float]:
        n = x.shape[0]
        logits = self._output_mode() == "fused"
        for m in self.metrics:
            m.reset()
        total = 0.0
        for s in range(0, n, bs):
            o = self._forward(_rows(x, s, bs, self.dtype), False, logits=logits)
            m = o.shape[0]
            ys = y[s:s + m]
            ws = None if w is None else w[s:s + m]
            total += (self.loss(o, ys, None) * m if ws is None
                      else self.loss.weighted(o, ys, ws, None) * m)
            if self.metrics:
                shown = self._present(o)
                for met in self.metrics:
                    met.update(ys, shown, ws)
        res = {"loss": total / n + self._penalty()}
        for met in self.metrics:
            res[met.name] = met.result()
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
    def fit(self, X: Any, y: Any = None, epochs: int = 1, batch_size: int | None = 32,
            validation_data: tuple[Any, ...] | None = None, validation_split: float = 0.0,
            shuffle: bool = True, callbacks: Sequence[Callback] | None = None,
            verbose: int = 1, initial_epoch: int = 0, check_finite: bool = True,
            distributed: bool = False, sample_weight: Any = None, class_weight: Any = None,
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
            As Keras ("auto" is 1): 0 silent; 1 a progress bar per batch on a terminal (tqdm: ETA,
            samples/s, loss and metrics), one line per epoch otherwise; 2 one line
            per epoch.
        initial_epoch : int
            Epoch to start from, as Keras: epochs ``initial_epoch .. epochs-1`` run.
            To resume a loaded checkpoint exactly, pass ``initial_epoch=model.epoch``
            (the number of epochs it had completed).
        check_finite : bool
            Check X, y and the validation data for NaN and infinity once, before
            training (ValueError naming the array and the first bad index), as
            scikit-learn does (batch by batch for memory-mapped data and iterables).
        distributed : bool
            Data-parallel training over MPI (``mpiexec -n 4 python train.py``): the
            same as ``fastnn.distributed.DataParallel(model).fit(...)`` on
            ``MPI.COMM_WORLD``; ``batch_size`` is then the global batch.  Needs the
            ``mpi`` extra.
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
        A NaN or infinite loss (or gradient) stops training with a RuntimeWarning,
        leaving the weights of the last finite step (like Keras' TerminateOnNaN).
        Ctrl-C (KeyboardInterrupt) never lands inside a weight update: the model
        keeps the weights of the last completed step, the progress bar is closed
        and the KeyboardInterrupt is re-raised; a later ``fit`` continues from there.
        Sample weights take the layer-by-layer path (not the one-call MLP step).
        """
        if distributed:
            from .distributed import DataParallel

            if sample_weight is not None or class_weight is not None or steps_per_epoch:
                raise ValueError("distributed fit does not take sample_weight, class_weight "
                                 "or steps_per_epoch yet")
            with DataParallel(self) as dp:
                return dp.fit(X, y, epochs=epochs, batch_size=batch_size,
                              validation_data=validation_data,
                              validation_split=validation_split, shuffle=shuffle,
                              callbacks=callbacks, verbose=verbose, initial_epoch=initial_epoch)
        from ._validation import positive_int

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
        history = History()
        bar = ProgressBar(epochs, source.num_samples, verbose, steps=source.num_batches)
        cbs = [history, *(callbacks or []), bar]
        for cb in cbs:
            cb.model = self
        self.stop_training = False
        opt = self.optimizer
        logs: dict[str, float] = {}
        val_bs = max(getattr(source, "batch_size", batch_size), 256)
        try:
            for cb in cbs:
                cb.on_train_begin()
            for epoch in range(start, epochs):
                for cb in cbs:
                    cb.on_epoch_begin(epoch)
                for met in self.metrics:
                    met.reset()
                tot_loss, seen, t0 = 0.0, 0, time.perf_counter()
                for bi, (xs, ys, ws) in enumerate(source.epoch(self.rng)):
                    m = xs.shape[0]
                    for cb in cbs:
                        cb.on_batch_begin(bi, {"batch": bi, "size": m})
                    loss, out = self._loss_and_grads(xs, ys, ws)
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
                    seen += m
                    batch_logs = {"loss": loss, "size": m}
                    if self.metrics:
                        shown = self._present(out)
                        for met in self.metrics:
                            met.update(ys, shown, ws)
                            batch_logs[met.name] = met.result()  # running, as Keras
                    for cb in cbs:
                        cb.on_batch_end(bi, batch_logs)
                    if self.stop_training:
                        break
                if not seen:  # no step completed: nothing to record, nothing to go on with
                    if not self.stop_training:
                        _warn_no_data(epoch)
                    break
                logs = {"loss": tot_loss / seen}
                for met in self.metrics:
                    logs[met.name] = met.result()
                if val is not None:
                    for k, v in self._evaluate(val[0], val[1], val_bs, val[2]).items():
                        logs["val_" + k] = v
                logs["lr"] = opt.lr
                logs["samples_per_second"] = seen / max(time.perf_counter() - t0, 1e-9)
                self.epoch = epoch + 1
                for cb in cbs:
                    cb.on_epoch_end(epoch, logs)
                if getattr(source, "exhausted", False) and (source.short or epoch + 1 < epochs):
                    _warn_no_data(epoch, source.short)
                    self.stop_training = True
                if self.stop_training:
                    break
        finally:
            bar.close()  # first: even if another callback's on_train_end raises
            for cb in cbs:
                cb.on_train_end(logs)
        return history

    def _fit_source(self, X: Any, y: Any, batch_size: int, shuffle: bool,
                    validation_data: tuple[Any, ...] | None, validation_split: float,
                    check_finite: bool, sample_weight: Any, class_weight: Any,
                    steps_per_epoch: int | None) -> tuple[Any, tuple | None]:
        """The batch source of a fit (see :mod:`fastnn.data`) and its validation triple
        ``(X_val, y_val, w_val or None)`` or None.
        """
        from . import data

        self._ensure_optimizer()
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
            source: Any = data.IterableBatches(X, steps_per_epoch,
                                               self._batch_preparer(check_finite),
                                               class_weight)
            val = None
            if validation_data is not None:
                xv = self._prep_x(validation_data[0], "validation_data[0]")
                val = (xv, self._prep_y(validation_data[1], xv.shape[0], "validation_data[1]"))
        elif y is None:
            raise ValueError("fit needs y with an array X (or X an iterable of (x, y) batches)")
        elif data.is_memmap(X) or data.is_memmap(y):
            n = X.shape[0]
            ya = y if data.is_memmap(y) else np.asarray(y)
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
            w = data.sample_weights(n, None, sample_weight, None)
            if class_weight is not None:  # labels are small: read once (chunk-wise by NumPy)
                cw = data.class_weight_array(class_weight, data.labels_of(
                    self._prep_y(np.asarray(ya[:n - n_val]), n - n_val)))
                cw = np.concatenate([cw, np.ones(n_val)]) if n_val else cw
                w = cw if w is None else w * cw
            if n_val:
                validation_data = (X[n - n_val:], ya[n - n_val:])
                wv = None if w is None else w[n - n_val:]
                X, ya, w = X[:n - n_val], ya[:n - n_val], None if w is None else w[:n - n_val]
            source = data.MemmapBatches(X, ya, w, batch_size, shuffle,
                                        self._batch_preparer(check_finite))
            val = None
            if validation_data is not None:  # a memory-mapped part stays on disk
                xv = self._prep_rows(validation_data[0], "validation_data[0]")
                val = (xv, self._prep_y(validation_data[1], xv.shape[0], "validation_data[1]"))
        else:
            n_all = len(X) if hasattr(X, "__len__") else None
            x, yy, val = self._fit_data(X, y, validation_data, validation_split)
            if check_finite:
                from ._validation import check_finite as _check_finite

                _check_finite(x, yy, names=["X", "y"])
                if val is not None:
                    _check_finite(*val, names=["validation X", "validation y"])
            w = None
            if sample_weight is not None:
                w = data.check_sample_weight(sample_weight, n_all if n_all else x.shape[0])
                if validation_split:
                    wv, w = w[x.shape[0]:], w[:x.shape[0]]
            if class_weight is not None:
                cw = data.class_weight_array(class_weight, data.labels_of(yy))
                w = cw if w is None else w * cw
            source = data.ArrayBatches(x, yy, w, batch_size, shuffle)
        if val is not None:
            if wv is not None:
                wv = data.check_sample_weight(wv, val[0].shape[0], "validation sample_weight")
            val = (val[0], val[1], wv)
        return source, val

    def _batch_preparer(self, check: bool) -> Any:
        """(x, y, w, where) -> one batch checked and converted (memory-mapped or iterable
        data, whose batches are seen one at a time).
        """
        from .data import check_sample_weight

        def prepare(xb: Any, yb: Any, wb: Any, where: str):
            x = self._prep_x(xb, f"X ({where})")
            yv = self._prep_y(yb, x.shape[0], f"y ({where})")
            w = None if wb is None else check_sample_weight(wb, x.shape[0],
                                                            f"sample_weight ({where})")
            if check:
                from ._validation import check_finite as _check_finite

                _check_finite(x, yv, names=[f"X ({where})", f"y ({where})"])
            return x, yv, w

        return prepare

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

    # ---- pickling and copies ---------------------------------------------------
    def __reduce__(self) -> tuple:
        """Pickle (and ``copy.deepcopy``) through the safe model format, in memory.

        Everything :meth:`save` keeps (architecture, weights, optimizer state, RNG
        state, counters, dropout state) travels as the model file's bytes, so the
        copy predicts bitwise the same and continues training exactly as the
        original would.  Caches (the one-call MLP plan, work buffers) are not
        copied; they are rebuilt on first use.  The compiled metrics and a custom
        Loss object are pickled beside the bytes.
        """
        from . import optim
        from .io import model_to_bytes
        from .layers import LAYER_TYPES
        from .losses import LOSSES

        for obj, table, what in [(la, LAYER_TYPES, "layer") for la in self._layers] + (
                [] if self.optimizer is None else
                [(self.optimizer, vars(optim), "optimizer")]):
            if table.get(type(obj).__name__) is not type(obj):
                raise TypeError(f"cannot pickle or copy this model: its {what} "
                                f"{type(obj).__name__} is not one of fastnn's own, which the "
                                "safe model format (used for pickling) stores by name")

        custom_loss = (self.loss if self.loss is not None
                       and LOSSES.get(self.loss.name) is not type(self.loss) else None)
        extra = {"metrics": self.metrics, "metric_specs": self._metric_specs,
                 "loss": custom_loss, "stop_training": self.stop_training}
        return (_restore, (model_to_bytes(self), extra))

    def __repr__(self) -> str:
        return f"Sequential({self._layers!r}, dtype={self.dtype.name!r}, seed={self.seed!r})"


def _restore(blob: bytes, extra: dict[str, Any]) -> Sequential:
    """Unpickle a :class:`Sequential` (see :meth:`Sequential.__reduce__`)."""
    from .io import model_from_bytes

    model = model_from_bytes(blob, extra.get("loss"))
    model.metrics = list(extra.get("metrics") or [])
    model._metric_specs = extra.get("metric_specs")
    model._mode_key = None
    model.stop_training = bool(extra.get("stop_training", False))
    return model


def _rows(x: Any, s: int, bs: int, dtype: np.dtype) -> np.ndarray:
    """Rows ``s:s+bs`` of x, C-contiguous in ``dtype`` (only them converted)."""
    xb = x[s:s + bs]
    if xb.dtype != dtype or not xb.flags.c_contiguous:
        with np.errstate(over="ignore"):
            xb = np.ascontiguousarray(xb, dtype=dtype)
    return xb


def _warn_no_data(epoch: int, short: bool = False) -> None:
    import warnings

    warnings.warn(f"fit: the data ran out in epoch {epoch + 1}"
                  + (" before steps_per_epoch batches" if short else "")
                  + "; stopping training (give a re-iterable, or fewer steps_per_epoch or "
                  "epochs)", UserWarning, stacklevel=3)


def _batch_size(bs: int | None, default: int) -> int:
    from ._validation import positive_int

    return default if bs is None else positive_int(bs, "batch_size")
