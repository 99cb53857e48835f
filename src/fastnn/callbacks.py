"""Callbacks for :meth:`fastnn.Sequential.fit` (Keras' protocol): History (with
``plot()``), EarlyStopping, ModelCheckpoint, LearningRateScheduler, TerminateOnNaN,
CSVLogger, LambdaCallback and the progress bar.

``fit`` calls, in order: ``on_train_begin``; per epoch ``on_epoch_begin``, per batch
``on_batch_begin`` / ``on_batch_end`` (logs: the batch's ``loss``, ``size`` and the
running metrics), ``on_epoch_end`` (the epoch's logs); ``on_train_end`` (also after
an interruption).  Setting ``model.stop_training = True`` stops after the batch.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any


class Callback:
    """Base class; ``model`` is set by ``fit`` before ``on_train_begin``."""

    model: Any = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Called once before the first epoch."""

    def on_train_end(self, logs: dict | None = None) -> None:
        """Called once after the last epoch (also after an interruption)."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Called before each epoch (0-based)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Called after each epoch with its metrics (loss, accuracy, val_*, lr)."""

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called before each training step."""

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called after each training step with ``{"loss": ..., "size": ...}``."""


class History(Callback):
    """Records the metrics of every epoch: ``history["loss"]``, ``history["val_loss"]``..."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        """Append this epoch's metrics."""
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def plot(self, keys: Any = None, ax: Any = None) -> Any:
        """Plot the metrics per epoch with matplotlib (imported only here).

        Each metric is one line; its ``val_`` twin is dashed in the same colour.

        Parameters
        ----------
        keys : str or list of str, optional
            Metrics to plot (default every metric but ``lr`` and
            ``samples_per_second``; ``val_`` twins follow their metric).
        ax : matplotlib Axes, optional
            Where to draw (default a new figure).

        Returns
        -------
        matplotlib.axes.Axes
            ``ax.figure`` is the figure (``.savefig("history.png")``).

        Raises
        ------
        ImportError
            When matplotlib is not installed (``pip install matplotlib``).
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("History.plot() needs matplotlib: pip install matplotlib (or "
                              "plot history.history, a dict of lists, yourself)") from exc
        if isinstance(keys, str):
            keys = [keys]
        if keys is None:
            keys = [k for k in self.history if not k.startswith("val_")
                    and k not in ("lr", "samples_per_second")]
        unknown = [k for k in keys if k not in self.history]
        if unknown:
            raise KeyError(f"no metric {unknown} in this History; it has "
                           f"{sorted(self.history)}")
        if ax is None:
            _, ax = plt.subplots()
        epochs = [e + 1 for e in self.epoch]
        for k in keys:
            (line,) = ax.plot(epochs, self.history[k], label=k)
            vk = "val_" + k
            if vk in self.history and not k.startswith("val_"):
                ax.plot(epochs, self.history[vk], "--", color=line.get_color(), label=vk)
        ax.set_xlabel("epoch")
        ax.legend()
        return ax


def _better(mode: str, monitor: str) -> Callable[[float, float, float], bool]:
    if mode == "auto":
        mode = "max" if ("acc" in monitor) else "min"
    if mode == "min":
        return lambda cur, best, delta: cur < best - delta
    if mode == "max":
        return lambda cur, best, delta: cur > best + delta
    raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        A key of the epoch logs (falls back to "loss" when "val_loss" is absent).
    patience : int
    min_delta : float
    mode : {"auto", "min", "max"}
    restore_best_weights : bool
        Put back the weights of the best epoch when training stops.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False) -> None:
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(min_delta)
        self.mode, self.restore_best_weights = mode, restore_best_weights
        self._better = _better(mode, monitor)
        self.stopped_epoch = -1

    def on_train_begin(self, logs=None):
        """Reset the best value."""
        self.best, self.wait, self.best_weights, self.best_epoch = None, 0, None, -1

    def on_epoch_end(self, epoch, logs=None):
        """Track the best epoch; ask the model to stop after ``patience`` bad epochs."""
        logs = logs or {}
        key = self.monitor if self.monitor in logs else "loss"
        cur = logs.get(key)
        if cur is None or not math.isfinite(cur):
            return
        if self.best is None or self._better(cur, self.best, self.min_delta):
            self.best, self.wait, self.best_epoch = cur, 0, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience - 1 and self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        """Restore the best weights if asked to."""
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (atomically, in fastnn's safe format) after epochs.

    Parameters
    ----------
    filepath : str
        May contain ``{epoch}`` and any log key, e.g. ``"ckpt-{epoch:02d}.fnn"``.
    monitor : str
    save_best_only : bool
    mode : {"auto", "min", "max"}
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto") -> None:
        self.filepath, self.monitor, self.save_best_only = str(filepath), monitor, save_best_only
        self._better = _better(mode, monitor)
        self.best: float | None = None

    def on_epoch_end(self, epoch, logs=None):
        """Save (if best, when ``save_best_only``)."""
        logs = logs or {}
        if self.save_best_only:
            key = self.monitor if self.monitor in logs else "loss"
            cur = logs.get(key)
            if cur is None or not math.isfinite(cur):
                return
            if self.best is not None and not self._better(cur, self.best, 0.0):
                return
            self.best = cur
        self.model.save(self.filepath.format(epoch=epoch + 1, **logs))


class LearningRateScheduler(Callback):
    """Set ``optimizer.lr = schedule(epoch, lr)`` before each epoch (Keras' signature)."""

    def __init__(self, schedule: Callable[[int, float], float]) -> None:
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        """Apply the schedule."""
        lr = float(self.schedule(epoch, self.model.optimizer.lr))
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"schedule returned an invalid learning rate {lr}")
        self.model.optimizer.lr = lr


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or infinite (``fit`` does this always)."""

    def on_batch_end(self, batch, logs=None):
        """Stop on a non-finite loss."""
        if logs and not math.isfinite(logs.get("loss", 0.0)):
            self.model.stop_training = True


class ProgressBar(Callback):
    """What ``fit(verbose=...)`` prints (added by ``fit`` itself).

    ``verbose=1`` on a terminal (stdout is a tty): a tqdm bar per epoch, updated every
    batch, with the ETA, samples/s and the running loss and metrics, then one line
    for the epoch.  ``verbose=1`` elsewhere (a log file, a pipe, CI) and
    ``verbose=2``: only the one line per epoch.  ``verbose=0``: nothing.  Keras'
    meanings of ``verbose``.

    Parameters
    ----------
    epochs : int
    n_samples : int or None
        Samples per epoch (None when unknown, e.g. a generator).
    verbose : {0, 1, 2}
    steps : int, optional
        Batches per epoch, if known (the bar counts batches when n_samples is None).
    """

    def __init__(self, epochs: int, n_samples: int | None, verbose: int = 1,
                 steps: int | None = None) -> None:
        self.epochs, self.n, self.verbose, self.steps = epochs, n_samples, verbose, steps
        self._bar = None
        self._tqdm = None
        self._seen = 0
        if verbose == 1 and _isatty(sys.stdout):
            from tqdm import tqdm  # a declared dependency

            self._tqdm = tqdm

    def on_epoch_begin(self, epoch, logs=None):
        """Start timing (and a bar)."""
        self._t0, self._seen, self._last = time.perf_counter(), 0, 0.0
        if self._tqdm is not None:
            by_samples = self.n is not None or self.steps is None
            self._by_samples = by_samples
            self._bar = self._tqdm(total=self.n if by_samples else self.steps,
                                   desc=f"epoch {epoch + 1}/{self.epochs}",
                                   unit="sample" if by_samples else "batch", leave=False,
                                   file=sys.stdout, dynamic_ncols=True)

    def on_batch_end(self, batch, logs=None):
        """Advance the bar; show the loss and metrics (at most ~10 times a second)."""
        logs = logs or {}
        size = logs.get("size", 0)
        self._seen += size
        if self._bar is None:
            return
        self._bar.update(size if self._by_samples else 1)
        now = time.perf_counter()
        if now - self._last >= 0.1 or batch == 0:
            self._last = now
            self._bar.set_postfix(refresh=False, **{k: f"{v:.4f}" for k, v in logs.items()
                                                    if k != "size"
                                                    and isinstance(v, float | int)})

    def on_epoch_end(self, epoch, logs=None):
        """Print the epoch's line."""
        self.close()
        if not self.verbose:
            return
        dt = time.perf_counter() - self._t0
        parts = [f"{k}={v:.4f}" for k, v in (logs or {}).items()
                 if k not in ("lr", "samples_per_second")]
        print(f"epoch {epoch + 1}/{self.epochs}: " + " ".join(parts) +
              f" lr={(logs or {}).get('lr', float('nan')):.3g} "
              f"({self._seen / max(dt, 1e-9):,.0f} samples/s)", flush=True)

    def close(self) -> None:
        """Close the bar, if one is open."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_train_end(self, logs=None):
        """Close the bar (also after an interruption)."""
        self.close()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


class CSVLogger(Callback):
    """Write each epoch's logs to a CSV file (Keras' ``CSVLogger``).

    The first row is ``epoch`` and the log keys (sorted); each epoch adds a row,
    flushed at once.  ``epoch`` is 0-based, as Keras writes it.

    Parameters
    ----------
    filename : str or PathLike
    separator : str
    append : bool
        Append to an existing file (no second header) instead of overwriting it.
    """

    def __init__(self, filename: Any, separator: str = ",", append: bool = False) -> None:
        import os

        self.filename, self.sep, self.append = os.fspath(filename), separator, append
        self.keys: list[str] | None = None
        self._file = None

    def on_train_begin(self, logs=None):
        """Open the file."""
        import os

        exists = self.append and os.path.exists(self.filename) and \
            os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115
        self._header_written = exists
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        """Write one row."""
        import csv

        logs = logs or {}
        if self._file is None:
            self.on_train_begin()
        if self.keys is None:
            self.keys = sorted(logs)
        writer = csv.writer(self._file, delimiter=self.sep)
        if not self._header_written:
            writer.writerow(["epoch", *self.keys])
            self._header_written = True
        writer.writerow([epoch, *(_csv_value(logs.get(k, "")) for k in self.keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _csv_value(v: Any) -> Any:
    return repr(float(v)) if isinstance(v, float) else v


def _forwarder(name: str, arity: int) -> Callable:
    """A LambdaCallback method calling the function given for ``name`` (if any) with its
    ``arity`` arguments (``logs`` None when the caller gave none).
    """
    def method(self: Any, *args: Any) -> None:
        fn = self._fns[name]
        if fn is not None:
            fn(*args, *(None,) * (arity - len(args)))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Call the ``{name}`` function given, if any."
    return method


class LambdaCallback(Callback):
    """A callback from functions (Keras' ``LambdaCallback``), each optional.

    Parameters
    ----------
    on_epoch_begin, on_epoch_end : callable (epoch, logs)
    on_batch_begin, on_batch_end : callable (batch, logs)
    on_train_begin, on_train_end : callable (logs)

    Example: ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))``.
    """

    def __init__(self, on_epoch_begin: Callable | None = None,
                 on_epoch_end: Callable | None = None, on_batch_begin: Callable | None = None,
                 on_batch_end: Callable | None = None, on_train_begin: Callable | None = None,
                 on_train_end: Callable | None = None) -> None:
        self._fns = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
                     "on_batch_begin": on_batch_begin, "on_batch_end": on_batch_end,
                     "on_train_begin": on_train_begin, "on_train_end": on_train_end}
        for name, fn in self._fns.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"LambdaCallback {name} must be callable, got "
                                f"{type(fn).__name__}")

    on_epoch_begin = _forwarder("on_epoch_begin", 2)
    on_epoch_end = _forwarder("on_epoch_end", 2)
    on_batch_begin = _forwarder("on_batch_begin", 2)
    on_batch_end = _forwarder("on_batch_end", 2)
    on_train_begin = _forwarder("on_train_begin", 1)
    on_train_end = _forwarder("on_train_end", 1)
