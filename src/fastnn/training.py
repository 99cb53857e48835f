"""The training engine: one loop for ``Sequential.fit``, ``DataParallel`` and the
scikit-learn estimators.

:class:`Trainer` owns a model, an optimizer and a loss, and does everything between
"here is a batch" and "the weights moved":

* :meth:`Trainer.compute_gradients` -- forward, loss (optionally sample-weighted,
  optionally scaled), backward, and one vectorized finiteness pass over the flat
  gradient buffer.  A Dense-only model without penalties takes the one-C-call path
  (:class:`fastnn._kernels.MLPPlan`: forward, loss and backward in one call).
  The output layer and the loss fit together (:meth:`Trainer.output_mode`): a
  sigmoid output with ``binary_cross_entropy`` or a softmax output with
  ``cross_entropy`` takes the loss from the pre-activation, fused and stable
  (Keras' ``from_logits``, decided from the last layer); wrong pairs are refused.
* the metrics (``model.metrics``, from ``compile(metrics=...)``): updated after every
  step with what the model outputs (:meth:`Trainer.present`) and the sample weights,
  and computed by :meth:`Trainer.evaluate` on validation data.
* the gradient hooks (:attr:`Trainer.gradient_hooks`): callables run on the flat
  gradient buffer after the backward pass and before the update -- data-parallel
  training's ``Allreduce``, an estimator's per-batch weight decay.
* :meth:`Trainer.apply` -- the optimizer update and the step counter as one unit
  with respect to Ctrl-C (SIGINT is held back and delivered after the update), so a
  step is never half applied.
* :meth:`Trainer.fit` -- epochs over a batch source (:mod:`fastnn._batches`), the
  stopping rules (non-finite loss, ``model.stop_training``) and the callbacks'
  protocol (:class:`fastnn.callbacks.Callback`: ``on_train_begin``,
  ``on_epoch_begin``, ``on_batch_begin``, ``on_batch_end``, ``on_epoch_end``,
  ``on_train_end``).

Callers are thin: ``Sequential.fit`` checks its data and calls :meth:`Trainer.fit`;
:class:`fastnn.distributed.DataParallel` adds a sharded batch source and an
Allreduce hook; the estimators of :mod:`fastnn.sklearn` plug in their loss, an
optimizer with parameter groups and a callback for scikit-learn's stopping rule.

Examples
--------
>>> import numpy as np, fastnn as fnn
>>> from fastnn.training import Trainer
>>> model = fnn.Sequential([fnn.Dense(4, 8, "relu"), fnn.Dense(8, 3)], seed=0)
>>> model.compile(fnn.optim.SGD(lr=0.1), "cross_entropy")  # doctest: +ELLIPSIS
Sequential(...)
>>> trainer = Trainer(model)
>>> x = np.ones((5, 4), np.float32); y = np.array([0, 1, 2, 0, 1])
>>> loss = trainer.compute_gradients(x, y)   # gradients in model.gradients()
>>> trainer.apply()                          # one optimizer step
"""

from __future__ import annotations

import _signal
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _kernels as _k
from ._batches import Batch, BatchSource, rows_as
from ._config import get_num_threads
from ._names import NEEDS_Z
from .callbacks import Callback, History
from .layers import Dense, structure_version
from .losses import output_mode

__all__ = ["GradientHook", "Trainer", "sigint_deferred"]

_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

#: ``hook(grads, step) -> bool | None``: ``grads`` is the model's flat gradient buffer
#: (modify it in place); ``step`` is a dict with the batch's ``loss`` (local, may be
#: replaced), ``rows``, ``size``, ``scale`` and ``weight`` (sum of the sample weights,
#: or rows).  Return True to stop training before this update is applied.
GradientHook = Callable[[np.ndarray, dict], "bool | None"]


class sigint_deferred:  # noqa: N801 -- used as a function: ``with sigint_deferred():``
    """Hold back Ctrl-C (SIGINT) for the duration of the block, then deliver it.

    Used around the optimizer update and the step counters so that an interrupt
    never leaves the weights half-updated: a KeyboardInterrupt raised by a signal
    lands before or after the whole update.  Only the main thread receives
    signals; elsewhere, or when SIGINT is not Python's default handler, the
    block runs as is.

    A class, not a generator context manager, calling ``_signal``'s C functions,
    not ``signal``'s wrappers (which convert every handler to and from an enum):
    it runs once per training step, where the generator and the enums cost more
    than a small network's whole update.
    """

    __slots__ = ("_old", "_pending")

    def __init__(self) -> None:
        self._old: Any = None
        self._pending: list[tuple] = []

    def _defer(self, signum: int, frame: Any) -> None:
        self._pending.append((signum, frame))

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            old = _signal.getsignal(_SIGINT)
        except (ValueError, OSError):  # pragma: no cover -- no signal support
            return
        if old is not _DEFAULT_INT_HANDLER:
            return
        self._old = old
        _signal.signal(_SIGINT, self._defer)

    def __exit__(self, *exc: object) -> None:
        old = self._old
        if old is None:
            return
        self._old = None
        _signal.signal(_SIGINT, old)
        if self._pending:
            old(*self._pending[0])


_SIGINT = int(signal.SIGINT)
_DEFAULT_INT_HANDLER = signal.default_int_handler


def _overrides(cb: Callback, method: str) -> bool:
    """True unless ``cb.method`` is the base class's no-op."""
    return getattr(type(cb), method, None) is not getattr(Callback, method)


class Trainer:
    """One training engine: gradients, hooks, the update, and the epoch loop.

    Parameters
    ----------
    model : Sequential
        Uses its public surface only: ``layers``, ``dtype``, ``parameters()``,
        ``gradients()``, ``trainable_ranges()``, ``step``, ``epoch`` and
        ``stop_training``.
    optimizer : Optimizer, optional
        Default: ``model.optimizer`` (read at every step, so a re-compile is seen).
    loss : Loss, optional
        Default: ``model.loss``.  A loss called with ``sample_weight`` must accept it
        (``loss(out, y, grad, sample_weight)``, the weighted mean); the built-in losses do.
    metrics : list of Metric, optional
        Default: ``model.metrics`` (what ``compile(metrics=...)`` chose) when the loss
        is the model's, else none.
    sample_weight_reduction : {"weighted_mean", "sum_over_batch_size"}
        How a weighted batch loss is normalized: ``sum_i w_i loss_i / sum_i w_i``
        (scikit-learn's; integer weights equal repeated rows; a batch whose weights
        sum to 0 is skipped) or ``sum_i w_i loss_i / rows`` (Keras'; what
        ``Sequential.fit(sample_weight=...)`` and ``model.trainer`` use).

    Attributes
    ----------
    gradient_hooks : list of GradientHook
        Run in order on the flat gradient buffer before every update of :meth:`fit`
        and :meth:`train_step`.
    fused : bool
        Use the one-call MLP step (``MLPPlan``) where the model allows it (every
        layer a Dense without L1/L2, a fused built-in loss, no sample weights, scale
        1).  It computes bitwise what the layer-by-layer path does.
    defer_stop : bool
        False (default): ``model.stop_training`` set by a callback stops after that
        batch.  True: the stop waits for the next batch's hooks (data-parallel
        training agrees on it inside the next step's Allreduce).
    last_output : ndarray or None
        The model output of the last :meth:`compute_gradients` (a reused buffer).
    """

    fused = True
    defer_stop = False

    def __init__(self, model: Any, optimizer: Any = None, loss: Any = None,
                 metrics: list | None = None,
                 sample_weight_reduction: str = "weighted_mean") -> None:
        if sample_weight_reduction not in ("weighted_mean", "sum_over_batch_size"):
            raise ValueError("sample_weight_reduction must be 'weighted_mean' or "
                             f"'sum_over_batch_size', got {sample_weight_reduction!r}")
        self.model = model
        self._optimizer = optimizer
        self._loss = loss
        self._metrics = metrics
        self.sample_weight_reduction = sample_weight_reduction
        self.gradient_hooks: list[GradientHook] = []
        self.last_output: np.ndarray | None = None
        self.bad_gradients = False
        self._attached: tuple | None = None
        self._plans: dict[tuple, tuple] = {}
        self._gbufs: dict[tuple, np.ndarray] = {}
        self._mode_key: tuple | None = None
        self._mode = "values"
        self._shown: np.ndarray | None = None

    # ---- what it trains -------------------------------------------------------
    @property
    def optimizer(self) -> Any:
        """The optimizer (the model's, unless one was given)."""
        opt = self._optimizer if self._optimizer is not None else self.model.optimizer
        if opt is None:
            raise RuntimeError("call model.compile(optimizer=..., loss=...) before training")
        return opt

    @property
    def loss(self) -> Any:
        """The loss (the model's, unless one was given)."""
        loss = self._loss if self._loss is not None else self.model.loss
        if loss is None:
            raise RuntimeError("call model.compile(optimizer=..., loss=...) before training")
        return loss

    @property
    def metrics(self) -> list:
        """The metrics updated by :meth:`fit` and computed by :meth:`evaluate`."""
        if self._metrics is not None:
            return self._metrics
        if self._loss is not None:
            return []
        return getattr(self.model, "metrics", None) or []

    # ---- the output layer and the loss (see fastnn.losses.output_mode) ------------
    def output_mode(self) -> str:
        """How the model's output meets the loss: "fused" (the loss is taken from the last
        layer's pre-activation, whose activation is the loss's own), "logits" or "values".

        Checked once per (loss, last layer, its activation, output shape, metrics); a
        wrong pair raises :class:`fastnn.losses.OutputLossError` (a ValueError) and a
        doubtful one warns, once.  The metrics are told what the outputs are.
        """
        m = self.model
        layers = m.layers
        loss = self._loss if self._loss is not None else m.loss
        if loss is None or not layers:
            return "values"
        last = layers[-1]
        act = getattr(last, "activation", None) or "identity"
        mets = self.metrics
        key = (id(loss), id(last), act, m.output_shape, id(mets), len(mets))
        if key != self._mode_key:
            mode = output_mode(loss, act, m.output_shape)
            shown = "logits" if mode == "logits" else (
                "probabilities" if mode == "fused" else "values")
            for met in mets:
                met.configure(getattr(loss, "name", None), shown)
            self._mode, self._mode_key = mode, key
        return self._mode

    def present(self, out: np.ndarray) -> np.ndarray:
        """What the model outputs (``predict``) for training-forward outputs ``out``: the
        last layer's activation applied when the loss is fused with it (a reused buffer).
        """
        if self._mode != "fused":
            return out
        rows = out.reshape(-1, out.shape[-1])
        buf = self._shown
        if buf is None or buf.shape != rows.shape or buf.dtype != rows.dtype:
            buf = self._shown = np.empty_like(rows)
        _k.act_forward[_SPEC[rows.dtype]](buf, rows, self.model.layers[-1].activation_code)
        return buf.reshape(out.shape)

    @property
    def fused_plans(self) -> int:
        """Number of cached one-call MLP plans (one per batch size and layout)."""
        return len(self._plans)

    def attach(self) -> Any:
        """Attach the optimizer to the model's flat buffers and trainable ranges (again when
        the buffers or the trainable flags changed; its state is kept when the sizes
        match).  Returns the optimizer.
        """
        opt = self.optimizer
        m = self.model
        params, grads = m.parameters(), m.gradients()
        groups = opt.param_groups
        key = self._attached
        version = structure_version()
        if key is not None and key[5] == version and key[0] is opt and key[1] is params \
                and key[2] is grads and key[4] is groups:
            return opt  # nothing that matters changed since the last check
        flags = tuple(m.trainable_ranges())  # inner layers' flags included
        if key is None or key[0] is not opt or key[1] is not params or key[2] is not grads \
                or key[3] != flags or key[4] is not groups:
            opt.setup(params, grads, m.trainable_ranges())
        self._attached = (opt, params, grads, flags, groups, version)
        return opt

    # ---- one step ----------------------------------------------------------------
    def _grad_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        buf = self._gbufs.get(shape)
        if buf is None or buf.dtype != dtype:
            if len(self._gbufs) >= 4:
                self._gbufs.pop(next(iter(self._gbufs)))
            buf = self._gbufs[shape] = np.empty(shape, dtype)
        return buf

    def uses_fused_step(self, layers: list | None = None) -> bool:
        """True when a batch without sample weights takes the one-call MLP step."""
        if layers is None:
            layers = self.model.layers
        if not (self.fused and layers and getattr(self.loss, "fusable", False)):
            return False
        return all(type(la) is Dense and not (la.l1 or la.l2) for la in layers)

    def _plan(self, layers: list, n: int, logits: bool) -> tuple | None:
        """The one-call training step for batch size n, or None (see :attr:`fused`);
        ``logits``: the last layer's activation is left to the loss (a fused output).
        """
        if not (self.fused and getattr(self.loss, "fusable", False)):
            return None
        # the flat buffers and the structure version identify the layers' gradient arrays,
        # trainable flags and activations (a plan holds its arrays, so ids are not reused)
        key = (n, structure_version(), id(self.model.gradients()), id(self.model.parameters()),
               len(layers), logits)
        plan = self._plans.get(key)
        if plan is None:
            if not self.uses_fused_step(layers):
                return None
            first = next((i for i, la in enumerate(layers) if la.trainable), len(layers))
            dt = self.model.dtype

            def buf(shape):
                return np.empty(shape, dt)

            acts = [buf((n, la.out_features)) for la in layers]
            mlp = _k.MLPPlan(
                dt == np.float32, n, first, [la.in_features for la in layers],
                [la.out_features for la in layers],
                [la.activation_code for la in layers[:-1]]
                + [0 if logits else layers[-1].activation_code],
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
            plan = self._plans[key] = (mlp, acts[-1])
        return plan

    def forward(self, x: np.ndarray, training: bool = True, logits: bool = False
                ) -> np.ndarray:
        """Output of every layer in turn (a reused buffer of the last layer);
        ``logits=True`` stops before the last layer's activation.
        """
        layers = self.model.layers
        if logits:
            for layer in layers[:-1]:
                x = layer.forward(x, training)
            return layers[-1].forward(x, training, logits=True)
        for layer in layers:
            x = layer.forward(x, training)
        return x

    def backward(self, g: np.ndarray, input_grad: bool = False) -> np.ndarray | None:
        """Backpropagate ``g`` (dL/d(output), overwritten) through every layer, filling the
        trainable layers' gradients; dL/dX when ``input_grad`` (else the backward stops
        at the first trainable layer).
        """
        layers = self.model.layers
        first = 0 if input_grad else next(
            (i for i, layer in enumerate(layers) if layer.trainable and layer.params),
            len(layers))
        for i in range(len(layers) - 1, first - 1, -1):
            g = layers[i].backward(g, i > first or input_grad)
        return g if input_grad else None

    def compute_gradients(self, x: np.ndarray, y: np.ndarray,
                          sample_weight: np.ndarray | None = None, scale: float = 1.0) -> float:
        """Forward, loss (with the layers' L1/L2 penalties) and backward; no update.

        Parameters
        ----------
        x : ndarray, (rows, *input_shape), the model's dtype, C-contiguous
        y : ndarray, targets as the loss takes them (checked by the caller)
        sample_weight : ndarray (rows,), optional
            Per-sample weights of the loss (passed to ``loss(out, y, grad, sample_weight)``,
            normalized as :attr:`sample_weight_reduction` says).
        scale : float
            Multiplies every gradient (the penalty's included), e.g. ``rows / global_rows``
            for one shard of a data-parallel batch.  The returned loss is not scaled.

        Returns
        -------
        float
            The loss, or NaN when it or any gradient is not finite (then
            :attr:`bad_gradients` says which, and no update should be applied).  An empty
            batch (0 rows) gives zero gradients and loss 0.
        """
        self.attach()
        m = self.model
        grads = m.gradients()
        self.bad_gradients = False
        n = x.shape[0]
        if n == 0:
            grads.fill(0)
            self.last_output = None
            return 0.0
        loss_fn = self.loss
        layers = m.layers
        logits = self.output_mode() == "fused"
        planned = (self._plan(layers, n, logits) if sample_weight is None and scale == 1.0
                   else None)
        if planned is not None:  # a Dense-only model: forward, loss, backward in one C call
            plan, out = planned
            kind = loss_fn.kind(y)
            labels = kind == _k.LOSS_CE_LABELS
            loss = plan.run(x, y if labels else None, None if labels else y, kind,
                            get_num_threads())
        else:
            out = self.forward(x, True, logits)
            g = self._grad_buffer(out.shape, out.dtype)
            if sample_weight is None:
                loss = loss_fn(out, y, g)
            else:
                loss = self._weighted_loss(loss_fn, out, y, g, sample_weight)
            loss += sum(layer.penalty() for layer in layers)
            if math.isfinite(loss):
                penalized = any(getattr(la, "l1", 0) or getattr(la, "l2", 0) for la in layers)
                if scale != 1.0 and not penalized:  # m x outputs numbers, not every gradient
                    np.multiply(g, g.dtype.type(scale), out=g)
                self.backward(g)
                if scale != 1.0 and penalized:  # the penalty's gradient is scaled too
                    np.multiply(grads, grads.dtype.type(scale), out=grads)
        self.last_output = out
        # a finite loss can still give an inf/NaN gradient (overflow in a backward),
        # which would poison the weights: one vectorized C pass over the gradients
        if math.isfinite(loss) and not _k.all_finite[_SPEC[grads.dtype]](grads):
            self.bad_gradients = True
            return math.nan
        return float(loss)

    def _weighted_loss(self, loss_fn: Any, out: np.ndarray, y: np.ndarray,
                       g: np.ndarray | None, w: np.ndarray) -> float:
        """The sample-weighted loss (and its gradient into ``g``), reduced as
        :attr:`sample_weight_reduction` says.
        """
        if self.sample_weight_reduction == "weighted_mean":
            return loss_fn(out, y, g, w)
        total = float(w.sum())
        if not total > 0:  # Keras: all-zero weights give loss 0 and no gradient
            if g is not None:
                g.fill(0)
            return 0.0
        loss = loss_fn(out, y, g, w) * (total / out.shape[0])
        if g is not None:
            np.multiply(g, g.dtype.type(total / out.shape[0]), out=g)
        return loss

    def evaluate(self, x: Any, y: np.ndarray, batch_size: int,
                 sample_weight: np.ndarray | None = None) -> dict[str, float]:
        """Mean loss (with the layers' penalties) and every metric over prepared data.

        Parameters
        ----------
        x : ndarray (n, *input_shape), the model's dtype; or a memory-mapped array of
            that shape (read and converted batch by batch)
        y : ndarray, prepared targets (n, ...)
        batch_size : int
        sample_weight : ndarray (n,), optional

        Returns
        -------
        dict
            ``{"loss": ..., <metric name>: ...}``
        """
        total = self.evaluate_sums(x, y, batch_size, sample_weight)
        res = {"loss": total / x.shape[0] + self.model.penalty()}
        for met in self.metrics:
            res[met.name] = met.result()
        return res

    def evaluate_sums(self, x: Any, y: np.ndarray, batch_size: int,
                      sample_weight: np.ndarray | None = None) -> float:
        """The loss summed over the rows (no penalty); the metrics are reset and updated
        (their ``state()`` then holds this data's sums: what data-parallel evaluation adds
        up over ranks).
        """
        logits = self.output_mode() == "fused"
        loss_fn = self.loss
        xdt = getattr(self.model, "input_dtype", self.model.dtype)  # int64 for an Embedding
        mets = self.metrics
        for met in mets:
            met.reset()
        total = 0.0
        for s in range(0, x.shape[0], batch_size):
            o = self.forward(rows_as(x, s, s + batch_size, xdt), False, logits)
            m = o.shape[0]
            ys = y[s:s + m]
            ws = None if sample_weight is None else sample_weight[s:s + m]
            total += (loss_fn(o, ys, None) if ws is None
                      else self._weighted_loss(loss_fn, o, ys, None, ws)) * m
            if mets:
                shown = self.present(o)
                for met in mets:
                    met.update(ys, shown, ws)
        return total

    def apply(self) -> None:
        """The optimizer update and ``model.step += 1``, as one unit w.r.t. Ctrl-C."""
        self._apply(self.attach())

    def _apply(self, opt: Any) -> None:
        with sigint_deferred():
            opt.step()
            self.model.step += 1

    def run_hooks(self, step: dict) -> bool:
        """Run :attr:`gradient_hooks` on the flat gradient buffer; True if one asks to stop."""
        grads = self.model.gradients()
        stop = False
        for hook in self.gradient_hooks:
            if hook(grads, step):
                stop = True
        return stop

    def train_step(self, x: np.ndarray, y: np.ndarray,
                   sample_weight: np.ndarray | None = None) -> float:
        """Gradients, hooks and (when the loss is finite) the update; returns the loss."""
        loss = self.compute_gradients(x, y, sample_weight)
        if not self.gradient_hooks:  # the common case: no step dict to build
            if math.isfinite(loss):
                self.apply()
            return loss
        step = self._step_info(loss, x.shape[0], x.shape[0], 1.0, sample_weight)
        if self.run_hooks(step):
            return float(step["loss"])
        if math.isfinite(step["loss"]):
            self.apply()
        return float(step["loss"])

    @staticmethod
    def _step_info(loss: float, rows: int, size: int, scale: float,
                   w: np.ndarray | None) -> dict:
        return {"loss": loss, "rows": rows, "size": size, "scale": scale,
                "weight": float(rows) if w is None else float(w.sum())}

    def train_batch(self, batch: Batch) -> dict | None:
        """One step of :meth:`fit` on ``batch``: the step's dict (see :data:`GradientHook`),
        or None when training must stop before this update (non-finite loss or a hook).

        Under the "weighted_mean" :attr:`sample_weight_reduction`, a batch whose sample
        weights sum to zero (or less) is skipped: ``{"skipped": True}``.
        """
        rows = batch.x.shape[0]
        size = batch.size or rows
        if batch.w is not None and rows and self.sample_weight_reduction == "weighted_mean" \
                and not float(batch.w.sum()) > 0:
            return {"skipped": True, "loss": 0.0, "rows": rows, "size": size}
        loss = self.compute_gradients(batch.x, batch.y, batch.w, batch.scale)
        step = self._step_info(loss, rows, size, batch.scale, batch.w)
        if self.run_hooks(step):
            return None
        if not math.isfinite(step["loss"]):
            self.on_nonfinite(step["loss"])
            return None
        self.apply_attached()
        return step

    def apply_attached(self) -> None:
        """:meth:`apply` without re-checking the attachment: right after
        :meth:`compute_gradients` (hooks do not change the trainable flags).
        """
        self._apply(self.optimizer)

    def on_nonfinite(self, loss: float) -> None:
        """Warn that a non-finite loss (or gradient) stops training (Keras' TerminateOnNaN)."""
        why = " (a gradient is not finite)" if self.bad_gradients else ""
        warnings.warn(f"fit: loss became {loss}{why} at epoch {self._epoch + 1}, batch "
                      f"{self._batch + 1}; stopping with the weights of the last finite step",
                      RuntimeWarning, stacklevel=self.warn_stacklevel)

    #: stacklevel of the warnings of :meth:`fit` (points at the user's ``fit`` call)
    warn_stacklevel = 6

    # ---- the loop -----------------------------------------------------------------------
    def call_callbacks(self, callbacks: Sequence[Callback], method: str, *args: Any) -> None:
        """``getattr(cb, method)(*args)`` for every callback, in order."""
        for cb in callbacks:
            getattr(cb, method)(*args)

    def validate(self, validation: tuple | None, batch_size: int) -> dict[str, float]:
        """The epoch's validation metrics, ``{"val_loss": ..., "val_accuracy": ...}``
        (``validation``: ``(x, y)`` or ``(x, y, sample_weight or None)``, prepared).

        Called after the epoch's training metrics were read (the metrics are reused).
        """
        if validation is None:
            return {}
        w = validation[2] if len(validation) > 2 else None
        res = self.evaluate(validation[0], validation[1], batch_size, w)
        return {"val_" + k: v for k, v in res.items()}

    def end_epoch(self, epoch: int) -> None:
        """Called after the callbacks' ``on_epoch_end`` (data-parallel agreement)."""

    def finish(self, callbacks: Sequence[Callback], logs: dict, failed: bool) -> None:
        """``on_train_end`` for every callback (after an exception too)."""
        self.call_callbacks(callbacks, "on_train_end", logs)

    def fit(self, source: BatchSource, epochs: int, *, initial_epoch: int = 0,
            callbacks: Sequence[Callback] | None = None, progress: Callback | None = None,
            validation: tuple[np.ndarray, np.ndarray] | None = None,
            validation_batch_size: int = 256) -> History:
        """Train for epochs ``initial_epoch .. epochs-1`` over ``source``.

        Parameters
        ----------
        source : BatchSource
            e.g. :class:`fastnn.data.ArrayBatches`, :class:`fastnn.data.MemmapBatches`,
            :class:`fastnn.data.IterableBatches`.
        epochs, initial_epoch : int
        callbacks : list of Callback
            Given ``model`` (set here) and called as Keras does; a History is added first.
        progress : Callback, optional
            A progress bar, run last and closed first (even when another callback's
            ``on_train_end`` raises).
        validation : (x, y) or (x, y, sample_weight), optional
            Prepared validation data, evaluated after every epoch (``val_*`` logs).
        validation_batch_size : int

        Returns
        -------
        History

        Notes
        -----
        Stops after the batch in which a callback sets ``model.stop_training``, and
        before applying a non-finite loss or gradient (a RuntimeWarning; the model keeps
        the weights of the last finite step).  An epoch in which no step was applied
        because training stopped in its first batch, or because the source had no more
        batches, is not recorded (no History entry, no ``on_epoch_end``).  A source that
        runs out (``source.exhausted``) before the last epoch, or short of its
        ``steps_per_epoch`` (``source.short``), stops training with a UserWarning.
        A KeyboardInterrupt lands before or after an update, never inside it;
        ``on_train_end`` still runs and the interrupt is re-raised.
        """
        m = self.model
        history = History()
        cbs: list[Callback] = [history, *(callbacks or [])]
        if progress is not None:
            cbs.append(progress)
        for cb in cbs:
            cb.model = m
        m.stop_training = False
        self.attach()
        self.output_mode()
        self._epochs = int(epochs)
        logs: dict[str, float] = {}
        try:
            self.call_callbacks(cbs, "on_train_begin")
            for epoch in range(int(initial_epoch), int(epochs)):
                logs = self._run_epoch(source, epoch, cbs, validation,
                                       validation_batch_size) or logs
                if m.stop_training:
                    break
        except BaseException:
            if progress is not None:
                progress.close()
            self.finish(cbs, logs, True)
            raise
        if progress is not None:
            progress.close()  # first: even if another callback's on_train_end raises
        self.finish(cbs, logs, False)
        return history

    def _run_epoch(self, source: BatchSource, epoch: int, cbs: list[Callback],
               validation: Any, val_bs: int) -> dict | None:
        """One epoch: its logs, or None when it stopped before its first step."""
        m = self.model
        self._epoch, self._batch = epoch, 0
        self.call_callbacks(cbs, "on_epoch_begin", epoch)
        tot_loss, seen, t0 = 0.0, 0, time.perf_counter()
        mets = self.metrics
        for met in mets:
            met.reset()
        # only the callbacks that define the per-batch methods are called per batch
        begin = [cb for cb in cbs if _overrides(cb, "on_batch_begin")]
        end = [cb for cb in cbs if _overrides(cb, "on_batch_end")]
        it = source.batches(epoch)
        try:
            for bi, batch in enumerate(it):
                self._epoch, self._batch = epoch, bi
                size = batch.size or batch.x.shape[0]
                if begin:
                    self.call_callbacks(begin, "on_batch_begin", bi, {"size": size})
                step = self.train_batch(batch)
                if step is None:
                    m.stop_training = True
                    break
                if step.get("skipped"):
                    continue
                tot_loss += step["loss"] * size
                seen += size
                if mets and self.last_output is not None:
                    shown = self.present(self.last_output)
                    for met in mets:
                        met.update(batch.y, shown, batch.w)
                if end:
                    blogs = {"loss": step["loss"], "size": size}
                    for met in mets:
                        blogs[met.name] = met.result()  # running, as Keras
                    self.call_callbacks(end, "on_batch_end", bi, blogs)
                if m.stop_training and not self.defer_stop:
                    break
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        exhausted = getattr(source, "exhausted", False)
        if not seen and (m.stop_training or exhausted):
            if not m.stop_training:  # the data ran out: nothing to record or go on with
                _warn_no_data(epoch)
                m.stop_training = True
            return None  # no fake epoch in the History
        logs = {"loss": tot_loss / max(seen, 1)}
        for met in mets:
            logs[met.name] = met.result()
        logs.update(self.validate(validation, val_bs))
        logs["lr"] = self.optimizer.lr
        logs["samples_per_second"] = seen / max(time.perf_counter() - t0, 1e-9)
        if seen:
            m.epoch = epoch + 1
        self.call_callbacks(cbs, "on_epoch_end", epoch, logs)
        if exhausted and (getattr(source, "short", False) or epoch + 1 < self._epochs):
            _warn_no_data(epoch, getattr(source, "short", False))
            m.stop_training = True
        self.end_epoch(epoch)
        return logs


def _warn_no_data(epoch: int, short: bool = False) -> None:
    warnings.warn(f"fit: the data ran out in epoch {epoch + 1}"
                  + (" before steps_per_epoch batches" if short else "")
                  + "; stopping training (give a re-iterable, or fewer steps_per_epoch or "
                  "epochs)", UserWarning, stacklevel=5)
