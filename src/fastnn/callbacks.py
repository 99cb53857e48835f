"""Callbacks for :meth:`fastnn.Sequential.fit` (Keras' protocol): History, EarlyStopping,
ModelCheckpoint, LearningRateScheduler, TerminateOnNaN and the progress bar.
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
    """tqdm bar per epoch when tqdm is installed and stderr is a terminal; otherwise one
    line per epoch.  Shows the loss and samples/s.
    """

    def __init__(self, epochs: int, n_samples: int, verbose: int = 1) -> None:
        self.epochs, self.n, self.verbose = epochs, n_samples, verbose
        self._bar = None
        self._tqdm = None
        if verbose and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm

                self._tqdm = tqdm
            except ImportError:
                pass

    def on_epoch_begin(self, epoch, logs=None):
        """Start timing (and a bar)."""
        self._t0, self._seen, self._loss_sum = time.perf_counter(), 0, 0.0
        if self._tqdm is not None:
            self._bar = self._tqdm(total=self.n, desc=f"epoch {epoch + 1}/{self.epochs}",
                                   unit="sample", leave=False)

    def on_batch_end(self, batch, logs=None):
        """Advance the bar."""
        size = (logs or {}).get("size", 0)
        self._seen += size
        self._loss_sum += (logs or {}).get("loss", 0.0) * size
        if self._bar is not None:
            self._bar.update(size)
            if batch % 10 == 0:
                self._bar.set_postfix(loss=f"{self._loss_sum / max(self._seen, 1):.4f}")

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


