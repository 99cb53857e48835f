"""Data-parallel training over MPI: ``pip install "fastnn[mpi]"``, ``mpiexec -n 4 python train.py``.

Every rank holds the whole dataset and the same model.  :class:`DataParallel`

* broadcasts rank 0's weights (the model's whole flat parameter buffer), optimizer
  state, step/epoch counters, shuffling RNG and dropout counters at the start of
  every ``fit``, after checking that every rank built the same model, optimizer,
  loss and data (a mismatch is an error on every rank);
* draws the same global batch order on every rank from the shared seed and gives
  rank ``r`` the contiguous slice ``[lo_r, hi_r)`` of each global batch of ``m``
  rows (sizes differ by at most one; a rank may get none when ``m < N``);
* weights each rank's gradient by ``m_r / m`` so that the sum is exactly the
  single-process mean over the global batch -- this holds for all three losses,
  because ``cross_entropy`` averages over rows and ``mse`` / ``binary_cross_entropy``
  over ``rows x outputs`` and the outputs per row are the same on every rank -- and
  sums the weighted gradients with **one in-place ``Allreduce`` per step** on the
  flat gradient buffer.  The L1/L2 penalty gradient each rank adds is weighted
  by ``m_r / m`` too, so it is counted once;
* runs the optimizer step identically on every rank (the same summed gradient
  on every rank, so the weights stay bitwise equal; this is checked every epoch);
* offsets every ``Dropout`` layer's counter as if the rank had processed the rows
  before its shard (``counter + lo_r * elements_per_row``) and then advances it on
  every rank by the global batch's element count, so the masks are exactly those
  of the single-process run;
* reduces the loss and the metrics for reporting; only rank 0 prints progress and
  runs :class:`~fastnn.callbacks.ModelCheckpoint` (the atomic model format) and
  callbacks with ``rank_zero_only = True``; every other callback runs on every
  rank with the same, reduced logs.

The per-step ``Allreduce`` also carries three control numbers appended to the
gradient buffer (weighted loss, an error flag and a stop flag), so a step is one
message.  The compiled metrics (``compile(metrics=...)``) are updated by every rank
on its shards and their sums reduced once per epoch, with the validation's.  A
sigmoid/softmax output is trained fused with its loss, as in one process.
Sample weights, class weights, generators and ``steps_per_epoch`` are not
supported here (``fit(distributed=True, sample_weight=...)`` raises a ValueError).
A rank whose step or callback raises sets the error flag; at the next agreement
point every rank stops: the failing rank re-raises its own exception and every
other rank raises :class:`DistributedError` naming the failed rank and its error.
Nothing hangs and no rank writes after the failure, so the last checkpoint on disk
is the last complete one.  An exception that escapes this protocol (e.g. inside MPI
itself) calls ``comm.Abort(1)``.

``import fastnn`` never imports mpi4py; this module imports it only when a
:class:`DataParallel` is created without a communicator.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _config
from ._batches import Batch
from ._validation import check_finite as _check_finite
from ._validation import positive_int
from .callbacks import Callback, History, ModelCheckpoint, ProgressBar
from .training import Trainer

__all__ = ["DataParallel", "DistributedError", "shard_bounds"]

# control slots appended to the gradient buffer: all summed by the step's Allreduce
_LOSS, _ERROR, _STOP = 0, 1, 2
_NCTRL = 3


class DistributedError(RuntimeError):
    """Raised on every rank that did not fail itself when another rank failed.

    Attributes
    ----------
    failures : dict[int, str]
        ``{rank: "ExceptionType: message"}`` for every rank that failed.
    """

    def __init__(self, message: str, failures: dict[int, str] | None = None) -> None:
        super().__init__(message)
        self.failures = dict(failures or {})


class _Agreed(Exception):
    """Internal: every rank agreed to stop and raises ``exc`` (never escapes ``fit``)."""

    def __init__(self, exc: BaseException, cause: BaseException | None) -> None:
        super().__init__(str(exc))
        self.exc, self.cause = exc, cause


def shard_bounds(m: int, rank: int, size: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of a global batch of ``m`` rows that ``rank`` of ``size`` takes.

    Contiguous, in rank order, sizes ``m // size`` or ``m // size + 1`` (the first
    ``m % size`` ranks get one more); a rank gets no rows when ``rank >= m``.
    """
    base, extra = divmod(int(m), int(size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("fastnn.distributed needs mpi4py and an MPI library: "
                          "pip install \"fastnn[mpi]\" (or mpi4py against your cluster's "
                          f"MPI) ({exc})") from exc
    return MPI


def _describe(exc: BaseException) -> str:
    msg = str(exc)
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    where = getattr(exc, "_fastnn_where", None)
    return f"{text} [{where}]" if where else text


def _mark(exc: BaseException, where: str) -> BaseException:
    """Remember where (in fit's loop) an exception was caught, for the other ranks' message.

    The one private attribute this package writes on an object it does not own: the
    user's exception, tagged so that the message sent to the other ranks names the place.
    """
    try:
        if getattr(exc, "_fastnn_where", None) is None:
            exc._fastnn_where = where
    except Exception:  # noqa: BLE001,S110 -- an exception type without attributes
        pass
    return exc


def _fingerprint(a: np.ndarray) -> int:
    """CRC-32 of up to 64 evenly spaced rows and the shape (cheap; catches different data)."""
    step = max(1, a.shape[0] // 64)
    return zlib.crc32(np.ascontiguousarray(a[::step]).tobytes(), zlib.crc32(repr(a.shape).encode()))


class DataParallel:
    """Data-parallel training of a :class:`fastnn.Sequential` over an MPI communicator.

    Parameters
    ----------
    model : Sequential
        Compiled (``model.compile(...)``) identically on every rank.
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.  It is duplicated, so fastnn's messages never
        mix with the caller's; :meth:`close` (or ``with``) frees the duplicate.
    num_threads : int, optional
        Kernel threads per rank.  By default, when neither ``OMP_NUM_THREADS`` nor
        :func:`fastnn.set_num_threads` chose a count, the CPUs of a machine are
        divided among the ranks running on it (2 ranks on 8 cores: 4 threads each).
        The count applies to this wrapper's ``fit`` and ``evaluate`` only (on the
        calling thread); the process-wide :func:`fastnn.set_num_threads` is left alone.

    Examples
    --------
    >>> dp = DataParallel(model)                       # doctest: +SKIP
    >>> hist = dp.fit(X, y, epochs=5, batch_size=256)  # global batch: 256 rows per step

    Notes
    -----
    ``batch_size`` is the *global* batch: with N ranks each step processes
    ``batch_size`` rows in total (about ``batch_size / N`` per rank), and the weights
    after every step equal a single-process ``model.fit(..., batch_size=batch_size)``
    up to the order of floating-point summation.  Every rank must pass the same
    full ``X`` and ``y`` (a memory-mapped ``np.load(..., mmap_mode="r")`` array works:
    a rank reads only the rows of its shards).
    """

    def __init__(self, model: Any, comm: Any = None, num_threads: int | None = None) -> None:
        if not all(hasattr(model, a) for a in ("trainer", "parameters", "gradients",
                                                "bind_gradient_buffer")):
            raise TypeError(f"DataParallel wraps a fastnn.Sequential, got {type(model).__name__}")
        MPI = _import_mpi()
        #: the mpi4py ``MPI`` module
        self.mpi = MPI
        self.model = model
        base = MPI.COMM_WORLD if comm is None else comm
        self.comm = base.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        #: the step's one Allreduce message: the gradients (bound to the model) and the
        #: control numbers (loss, error and stop flags) after them
        self.message_buffer: np.ndarray | None = None
        #: cumulative seconds and counts of the last :meth:`fit` (see the benchmark)
        self.timings: dict[str, float] = {}
        self._set_threads(num_threads)

    # ---- housekeeping --------------------------------------------------------
    @property
    def is_root(self) -> bool:
        """True on rank 0 (the rank that prints and writes checkpoints)."""
        return self.rank == 0

    def close(self) -> None:
        """Free the duplicated communicator (the wrapper is unusable afterwards)."""
        if self.comm is not None and self.comm != self.mpi.COMM_NULL:
            self.comm.Free()
        self.comm = None

    def __enter__(self) -> DataParallel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DataParallel(rank={self.rank}, size={self.size}, model={self.model.name!r})"

    def _set_threads(self, num_threads: int | None) -> None:  # noqa: D401
        """Choose this wrapper's kernel thread count (:attr:`num_threads`), used by its
        ``fit`` and ``evaluate`` on the calling thread only (``fastnn.threads``): the
        process-wide setting is never changed.
        """
        #: kernel threads of this wrapper's fit/evaluate (None: fastnn's setting)
        self.num_threads: int | None = None
        if num_threads is not None:
            with _config.threads(num_threads):  # validates it
                self.num_threads = int(num_threads)
            return
        if _config.chosen_num_threads() is not None or os.environ.get("OMP_NUM_THREADS"):
            return
        local = self.comm.Split_type(self.mpi.COMM_TYPE_SHARED)
        try:
            n_local = local.Get_size()
        finally:
            local.Free()
        if n_local > 1:
            self.num_threads = max(1, _config.default_num_threads() // n_local)

    # ---- agreement -------------------------------------------------------------
    def _abort(self, exc: BaseException) -> None:
        """Last resort for an exception outside the protocol: print it and abort every rank."""
        if self.comm is None or self.size == 1:
            return
        sys.stderr.write(f"fastnn.distributed: rank {self.rank} of {self.size} failed outside "
                         "the error protocol; aborting every rank:\n")
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        self.comm.Abort(1)

    def _fail(self, failures: dict[int, str], local: BaseException | None, where: str) -> _Agreed:
        """The exception every rank raises once all ranks know that ``failures`` happened."""
        ranks = ", ".join(str(r) for r in sorted(failures))
        detail = "; ".join(f"rank {r}: {m}" for r, m in sorted(failures.items()))
        msg = (f"fastnn.distributed: rank{'s' if len(failures) > 1 else ''} {ranks} of "
               f"{self.size} failed ({detail}); every rank stopped {where}")
        if local is not None:
            if hasattr(local, "add_note"):
                local.add_note(msg)
            return _Agreed(local, None)
        return _Agreed(DistributedError(msg, failures), None)

    def agree(self, local: BaseException | None, where: str, payload: Any = None) -> list[Any]:
        """Collective: raise on every rank if any rank failed, else return every payload."""
        got = self.comm.allgather((None if local is None else _describe(local), payload))
        failures = {r: e for r, (e, _) in enumerate(got) if e is not None}
        if failures:
            raise self._fail(failures, local, where)
        return [p for _, p in got]

    def collect_failures(self, local: BaseException | None, where: str) -> _Agreed:
        """After a step's Allreduce raised the error flag: gather the messages, then fail."""
        got = self.comm.allgather(None if local is None else _describe(local))
        failures = {r: e for r, e in enumerate(got) if e is not None}
        return self._fail(failures or {-1: "unknown error"}, local, where)

    # ---- state -------------------------------------------------------------------
    def _signature(self, x: np.ndarray, y: np.ndarray, extra: dict[str, Any]) -> dict[str, Any]:
        m, opt = self.model, self.model.optimizer
        config = m.get_config()
        config.pop("seed", None)  # rank 0's initial state and RNG are broadcast anyway
        return {"model": config, "trainable": m.trainable_ranges(),
                "n_params": m.count_params(), "optimizer": (type(opt).__name__, opt.get_config()),
                "loss": m.loss.name, "X": (x.shape, _fingerprint(x)),
                "y": (y.shape, str(y.dtype), _fingerprint(y)), **extra}

    def broadcast_state(self) -> None:
        """Collective: copy rank 0's weights, optimizer state, counters, RNG and dropout
        state to every rank (called by :meth:`fit`; call it yourself after loading a
        checkpoint on rank 0 only).
        """
        m = self.model
        opt = m.trainer.attach()
        meta = None
        if self.is_root:
            meta = {"rng": m.rng.bit_generator.state, "layers": [ly.state() if hasattr(
                        ly, "state") else None for ly in m.layers],
                    "step": m.step, "epoch": m.epoch, "step_count": opt.step_count,
                    "lr": opt.lr, "opt_state": sorted(opt.state),
                    "opt_steps": opt.param_steps()}
        meta = self.comm.bcast(meta, root=0)
        if not self.is_root:
            m.rng.bit_generator.state = meta["rng"]
            for ly, st in zip(m.layers, meta["layers"]):
                if st is not None and hasattr(ly, "set_state"):
                    ly.set_state(st)
            m.step, m.epoch = meta["step"], meta["epoch"]
            opt.step_count, opt.lr = meta["step_count"], meta["lr"]
            opt.set_param_steps(meta["opt_steps"])
        self.comm.Bcast(m.parameters(), root=0)
        for name in meta["opt_state"]:
            self.comm.Bcast(opt.state[name], root=0)

    def _attach(self) -> np.ndarray:
        """Bind the model's gradients to ``ext[:P]`` of one buffer with the control slots
        after them, so the step's single Allreduce carries both.
        """
        m = self.model
        g = m.gradients()
        buf = self.message_buffer
        if buf is not None and g.base is buf and g.size + _NCTRL == buf.size:
            return buf
        ext = np.zeros(g.size + _NCTRL, m.dtype)
        m.bind_gradient_buffer(ext[:g.size])  # the optimizer re-attaches, state kept
        self.message_buffer = ext
        return ext

    def dropout_layers(self) -> list[tuple[Any, int]]:
        """(layer, input elements per row) for every Dropout layer that draws masks."""
        from .layers import Dropout

        out = []
        shape: tuple | None = self.model.input_shape
        for layer in self.model.layers:
            if isinstance(layer, Dropout) and layer.p > 0:
                out.append((layer, int(np.prod(shape))))
            shape = layer.output_shape(shape)
        return out

    # ---- training ------------------------------------------------------------------
    def fit(self, X: Any, y: Any, epochs: int = 1, batch_size: int = 32,
            validation_data: tuple[Any, Any] | None = None, validation_split: float = 0.0,
            shuffle: bool = True, callbacks: Sequence[Callback] | None = None,
            verbose: int = 1, initial_epoch: int = 0, check_finite: bool = True) -> History:
        """Train on every rank; arguments as :meth:`fastnn.Sequential.fit`.

        ``batch_size`` is the global batch (all ranks together).  Every rank must
        call this with the same arguments and the same full data.  Returns the
        same History on every rank (losses and metrics reduced over all ranks).
        """
        try:
            with _config.threads(self.num_threads):
                return self._fit(X, y, epochs, batch_size, validation_data, validation_split,
                                 shuffle, callbacks, verbose, initial_epoch, check_finite)
        except _Agreed as agreed:
            raise agreed.exc from agreed.cause
        except BaseException as exc:
            self._abort(exc)
            raise

    def _prepare(self, X, y, epochs, batch_size, validation_data, validation_split,
                 initial_epoch, check_finite):
        m = self.model
        epochs = positive_int(epochs, "epochs")
        batch_size = positive_int(batch_size, "batch_size")
        start = int(initial_epoch)
        if not 0 <= start < epochs:
            raise ValueError(f"initial_epoch must lie in [0, epochs={epochs}), got {start}")
        x, yy, val = m.prepare_fit_data(X, y, validation_data, validation_split)
        if check_finite:
            _check_finite(x, yy, names=["X", "y"])
            if val is not None:
                _check_finite(*val, names=["validation X", "validation y"])
        return epochs, batch_size, start, x, yy, val

    def _fit(self, X, y, epochs, batch_size, validation_data, validation_split, shuffle,
             callbacks, verbose, initial_epoch, check_finite) -> History:
        # 1. every rank validates its arguments; all agree (a bad rank fails every rank)
        sig = err = None
        try:
            epochs, batch_size, start, x, yy, val = self._prepare(
                X, y, epochs, batch_size, validation_data, validation_split, initial_epoch,
                check_finite)
            sig = self._signature(x, yy, {
                "epochs": epochs, "batch_size": batch_size, "initial_epoch": start,
                "shuffle": bool(shuffle),
                "val": None if val is None else (val[0].shape, val[1].shape)})
        except Exception as exc:  # noqa: BLE001 -- reported to every rank
            err = exc
        sigs = self.agree(err, "while checking fit's arguments", sig)
        for r, s in enumerate(sigs):
            diff = sorted(k for k in s if s[k] != sigs[0].get(k))
            if diff:
                what = {"X": "X (every rank must pass the same full data)",
                        "y": "y (every rank must pass the same full data)"}
                names = ", ".join(what.get(k, k) for k in diff)
                raise _Agreed(DistributedError(
                    f"fastnn.distributed: rank {r} differs from rank 0 in {names}; every rank "
                    "must build the same model, compile it the same way and call fit with the "
                    "same arguments and data"), None)
        # 2. rank 0's state everywhere; gradients bound to the Allreduce buffer
        self.broadcast_state()
        self._attach()
        # 3. the engine, with a sharded batch source and the Allreduce hook
        cbs: list[Callback] = []
        for cb in callbacks or []:
            if self.is_root or not (isinstance(cb, ModelCheckpoint)
                                    or getattr(cb, "rank_zero_only", False)):
                cbs.append(cb)
        n = x.shape[0]
        bar = ProgressBar(epochs, n, verbose) if self.is_root else None
        trainer = _ParallelTrainer(self)
        source = _ShardedBatches(trainer, x, yy, min(batch_size, n), shuffle)
        self.timings = trainer.timings
        t_fit = time.perf_counter()
        history = trainer.fit(source, epochs, initial_epoch=start, callbacks=cbs, progress=bar,
                              validation=val, validation_batch_size=max(source.batch_size, 256))
        self.timings["fit_s"] = time.perf_counter() - t_fit
        return history

    def broadcast_buffers(self) -> None:
        """Collective: copy rank 0's layer buffers (batch norm's running statistics and
        ``num_batches_tracked``) to every rank, as torch DDP's ``broadcast_buffers``.

        Each rank normalizes its own shard in training and updates its own running
        statistics from it; :meth:`fit` calls this at the end of every epoch (before
        validation) and at the end of training, so evaluation, checkpoints and the
        trained model use rank 0's statistics on every rank.  A no-op (no message)
        for a model without buffers.
        """
        layers = self.model.layers
        if not any(ly.buffers() for ly in layers):
            return
        mine = [{k: np.array(v) for k, v in ly.buffers().items()} for ly in layers] \
            if self.is_root else None
        got = self.comm.bcast(mine, root=0)
        if not self.is_root:
            for ly, vals in zip(layers, got):
                if vals:
                    ly.set_buffers(vals)

    def weights_crc(self) -> int:
        """CRC-32 of this rank's weights (compared across ranks every epoch)."""
        return zlib.crc32(self.model.parameters().view(np.uint8))

    def check_consistent(self, crcs: list[int]) -> None:
        """Weights should be bitwise equal on all ranks; if the MPI library's reduction is
        not, resynchronize from rank 0 (and say so once).
        """
        if len(set(crcs)) > 1:
            if self.is_root and not getattr(self, "_warned_drift", False):
                import warnings

                warnings.warn("fastnn.distributed: weights differ between ranks (the MPI "
                              "library's Allreduce is not bitwise identical on every rank); "
                              "re-broadcasting rank 0's state every epoch", RuntimeWarning,
                              stacklevel=4)
            self._warned_drift = True
            self.broadcast_state()

    # ---- evaluation ------------------------------------------------------------------
    def eval_shard(self, x: np.ndarray, y: np.ndarray, bs: int, trainer: Any = None
                   ) -> tuple[float, int, list[tuple[float, float]]]:
        """Evaluate this rank's share of the rows with ``trainer`` (default the model's):
        ``(loss summed over the rows, rows, every metric's state())``.
        """
        trainer = self.model.trainer if trainer is None else trainer
        lo, hi = shard_bounds(x.shape[0], self.rank, self.size)
        if hi == lo:
            for met in trainer.metrics:
                met.reset()
            total = 0.0
        else:
            total = trainer.evaluate_sums(x[lo:hi], y[lo:hi], bs)
        return (total, hi - lo, [met.state() for met in trainer.metrics])

    def combine(self, parts: list[tuple[float, int, list]], trainer: Any = None
                ) -> dict[str, float]:
        """The loss (with the penalty) and every compiled metric over all ranks'
        :meth:`eval_shard` parts (the metrics' states summed).
        """
        trainer = self.model.trainer if trainer is None else trainer
        n = sum(p[1] for p in parts)
        res = {"loss": sum(p[0] for p in parts) / n + self.model.penalty()}
        res.update(reduce_metrics(trainer.metrics, [p[2] for p in parts]))
        return res

    def evaluate(self, X: Any, y: Any, batch_size: int | None = None) -> dict[str, float]:
        """Collective :meth:`fastnn.Sequential.evaluate`: each rank evaluates a contiguous
        share of the rows; every rank returns the combined result.
        """
        part = err = None
        try:
            if self.model.loss is None:
                raise RuntimeError("call model.compile(...) before evaluate")
            x = self.model.check_input(X)
            yy = self.model.check_target(y, x.shape[0])
            bs = 1024 if batch_size is None else positive_int(batch_size, "batch_size")
            with _config.threads(self.num_threads):
                part = self.eval_shard(x, yy, bs)  # (the output/loss pair checked there)
        except Exception as exc:  # noqa: BLE001
            err = exc
        try:
            return self.combine(self.agree(err, "in evaluate", part))
        except _Agreed as agreed:
            raise agreed.exc from agreed.cause

    def save(self, path: str) -> None:
        """Collective: rank 0 saves the model (atomically); every rank returns after it has
        (an error on rank 0 is raised on every rank).
        """
        err = None
        if self.is_root:
            try:
                self.model.save(path)
            except Exception as exc:  # noqa: BLE001
                err = exc
        try:
            self.agree(err, "while saving")
        except _Agreed as agreed:
            raise agreed.exc from agreed.cause


def reduce_metrics(metrics: Sequence[Any], states: list[list[tuple[float, float]]]
                   ) -> dict[str, float]:
    """``{name: result}`` of every metric over all ranks: each rank's ``state()`` summed
    (the metrics are left holding the sum).
    """
    res = {}
    for i, met in enumerate(metrics):
        met.set_state(sum(s[i][0] for s in states), sum(s[i][1] for s in states))
        res[met.name] = met.result()
    return res


class _ShardedBatches:
    """The batch source of data-parallel training: for every global batch of ``m`` rows
    (the same order on every rank, from the shared seed), this rank's contiguous shard
    ``[lo, hi)`` with ``scale = (hi - lo) / m`` and ``size = m``; possibly empty.

    Dropout counters are set as if this rank had processed the rows before its shard,
    advanced by the global batch once its step is complete, and put back when training
    stops inside the batch (the engine closes the iterator).
    """

    def __init__(self, trainer: _ParallelTrainer, x: np.ndarray, y: np.ndarray,
                 batch_size: int, shuffle: bool) -> None:
        dp = trainer.dp
        self.trainer, self.x, self.y = trainer, x, y
        self.n_samples, self.batch_size, self.shuffle = x.shape[0], batch_size, shuffle
        self.rank, self.size = dp.rank, dp.size
        self.rng = dp.model.rng
        self.drops = dp.dropout_layers()
        cap = -(-batch_size // dp.size)
        self.xb = np.empty((cap, *x.shape[1:]), x.dtype)
        self.yb = np.empty((cap, *y.shape[1:]), y.dtype)

    def batches(self, epoch: int):
        """Yield this rank's shard of every global batch of the epoch."""
        n, bs, x, y = self.n_samples, self.batch_size, self.x, self.y
        order = self.rng.permutation(n) if self.shuffle else None
        drops = self.drops
        for bi, s in enumerate(range(0, n, bs)):
            gm = min(bs, n - s)
            lo, hi = shard_bounds(gm, self.rank, self.size)
            k = hi - lo
            base = [layer.counter for layer, _ in drops]
            xs, ys = x[s:s], y[s:s]
            if self.trainer.pending is None:
                try:
                    for (layer, per_row), b in zip(drops, base):
                        layer.counter = b + lo * per_row
                    if order is not None:
                        idx = order[s + lo:s + hi]
                        xs = np.take(x, idx, axis=0, out=self.xb[:k])
                        ys = np.take(y, idx, axis=0, out=self.yb[:k])
                    else:
                        xs, ys = x[s + lo:s + hi], y[s + lo:s + hi]
                except BaseException as exc:  # noqa: BLE001 -- reported in the step
                    self.trainer.pending = _mark(exc, f"in the training step, epoch "
                                                      f"{epoch + 1}, batch {bi + 1}")
            try:
                yield Batch(xs, ys, None, gm, k / gm)
            except GeneratorExit:  # training stopped inside this batch: no rows consumed
                for (layer, _), b in zip(drops, base):
                    layer.counter = b
                raise
            for (layer, per_row), b in zip(drops, base):
                layer.counter = b + gm * per_row


class _ParallelTrainer(Trainer):
    """The engine with one in-place Allreduce per step on the gradient buffer and its
    control slots, and the error protocol: an exception on one rank (in the step, a
    callback or the validation) is held until the next agreement point, where every
    rank stops.
    """

    defer_stop = True  # a callback's stop is agreed in the next step's Allreduce
    warn_stacklevel = 7

    def __init__(self, dp: DataParallel) -> None:
        super().__init__(dp.model)
        self.dp = dp
        self.pending: BaseException | None = None
        self.timings: dict[str, float] = {"steps": 0, "allreduce_s": 0.0, "compute_s": 0.0,
                                          "optimizer_s": 0.0, "fit_s": 0.0}
        self.gradient_hooks.append(self._allreduce)

    def _where(self, what: str) -> str:
        return f"{what}, epoch {self._epoch + 1}, batch {self._batch + 1}"

    def fail(self, exc: BaseException, what: str) -> None:
        """Hold ``exc`` (the first one) until the next agreement point."""
        if self.pending is None:
            self.pending = _mark(exc, self._where(what))

    def compute_gradients(self, x, y, sample_weight=None, scale=1.0):
        """The engine's step on this rank's shard (zero gradients after a failure)."""
        t = time.perf_counter()
        loss = 0.0
        if self.pending is None:
            try:
                loss = super().compute_gradients(x, y, sample_weight, scale)
            except BaseException as exc:  # noqa: BLE001 -- reported to every rank
                self.fail(exc, "in the training step")
        if self.pending is not None:
            self.model.gradients().fill(0)
            self.last_output = None
            loss = 0.0
        self.timings["compute_s"] += time.perf_counter() - t
        return loss

    def _allreduce(self, grads: np.ndarray, step: dict) -> bool:
        """Sum the weighted gradients and the control numbers over all ranks (one message)."""
        dp, m = self.dp, self.model
        ext = dp.message_buffer
        ctrl = ext[-_NCTRL:]
        ctrl[:] = 0
        if self.pending is None and step["rows"]:
            ctrl[_LOSS] = step["loss"] * step["scale"]
        if self.pending is not None:
            ctrl[_ERROR] = 1
        ctrl[_STOP] = 1 if m.stop_training else 0
        ta = time.perf_counter()
        dp.comm.Allreduce(dp.mpi.IN_PLACE, ext, op=dp.mpi.SUM)
        self.timings["allreduce_s"] += time.perf_counter() - ta
        if ctrl[_ERROR] > 0:
            raise dp.collect_failures(self.pending, f"at epoch {self._epoch + 1}, batch "
                                                     f"{self._batch + 1}")
        if ctrl[_STOP] > 0:  # a callback asked to stop after the previous step
            m.stop_training = True
            return True
        step["loss"] = float(ctrl[_LOSS])
        return False

    def on_nonfinite(self, loss):
        """Only rank 0 warns."""
        if self.dp.is_root:
            super().on_nonfinite(loss)

    def apply_attached(self):
        """The engine's update (Ctrl-C deferred), timed."""
        t = time.perf_counter()
        super().apply_attached()
        self.timings["optimizer_s"] += time.perf_counter() - t
        self.timings["steps"] += 1

    def call_callbacks(self, callbacks, method, *args):
        """Callbacks run until one raises; the exception is held for the next agreement."""
        if self.pending is not None:
            return
        try:
            super().call_callbacks(callbacks, method, *args)
        except BaseException as exc:  # noqa: BLE001 -- reported to every rank
            if method in ("on_train_begin", "on_train_end"):
                self.pending = _mark(exc, f"in {method}")
            elif method in ("on_epoch_begin", "on_epoch_end"):
                self.pending = _mark(exc, f"in {method}, epoch {self._epoch + 1}")
            else:
                self.fail(exc, f"in {method}")

    def validate(self, validation, batch_size):
        """Validation on shards, then the epoch's first agreement (errors, stop, metrics):
        the training metrics (each rank's over its shards) and the validation metrics are
        reduced over all ranks.
        """
        dp, m = self.dp, self.model
        dp.broadcast_buffers()  # rank 0's running statistics for validation and callbacks
        train_states = [met.state() for met in self.metrics]  # before validation resets them
        part = None
        if self.pending is None and validation is not None:
            try:
                part = dp.eval_shard(validation[0], validation[1], batch_size, self)
            except BaseException as exc:  # noqa: BLE001
                self.pending = _mark(exc, f"in validation, epoch {self._epoch + 1}")
        got = dp.agree(self.pending, f"at the end of epoch {self._epoch + 1}",
                        (bool(m.stop_training), train_states, part))
        if any(st for st, _, _ in got):
            m.stop_training = True
        res = reduce_metrics(self.metrics, [ts for _, ts, _ in got])
        if validation is not None:
            val = dp.combine([p for _, _, p in got], self)
            res.update({"val_" + k: v for k, v in val.items()})
        return res

    def end_epoch(self, epoch):
        """Callbacks may stop training (EarlyStopping) or fail (a checkpoint on rank 0):
        agree before the next epoch; also check that the weights agree.
        """
        dp, m = self.dp, self.model
        got = dp.agree(self.pending, f"at the end of epoch {epoch + 1}",
                        (bool(m.stop_training), dp.weights_crc()))
        dp.check_consistent([c for _, c in got])
        if any(st for st, _ in got):
            m.stop_training = True

    def finish(self, callbacks, logs, failed):
        """on_train_end everywhere; after a failure its exceptions are dropped (the first
        error is the one raised), else agreed like any other.
        """
        if failed:
            for cb in callbacks:
                try:
                    cb.on_train_end(logs)
                except Exception:  # noqa: BLE001,S110 -- already failing; keep the first error
                    pass
            return
        self.dp.broadcast_buffers()
        self.call_callbacks(callbacks, "on_train_end", logs)
        self.dp.agree(self.pending, "at the end of training")
