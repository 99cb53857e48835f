"""Learning-rate schedules for :meth:`fastnn.Sequential.fit`, passed in ``callbacks``.

Each sets ``model.optimizer.lr`` from the learning rate the optimizer had when
training began (``base_lr``), like ``torch.optim.lr_scheduler``.
"""

from __future__ import annotations

import math

from .callbacks import Callback


class _EpochSchedule(Callback):
    """Base: ``lr = factor(epoch) * base_lr`` before each epoch."""

    def on_train_begin(self, logs=None):
        """Remember the optimizer's starting learning rate."""
        if getattr(self, "base_lr", None) is None:
            self.base_lr = self.model.optimizer.lr

    def factor(self, epoch: int) -> float:
        """Multiplier of ``base_lr`` at ``epoch`` (0-based)."""
        raise NotImplementedError

    def on_epoch_begin(self, epoch, logs=None):
        """Set this epoch's learning rate."""
        self.model.optimizer.lr = self.base_lr * self.factor(epoch)


class StepLR(_EpochSchedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma, self.base_lr = int(step_size), float(gamma), None

    def factor(self, epoch):
        """Gamma ** (epoch // step_size)."""
        return self.gamma ** (epoch // self.step_size)


class ExponentialLR(_EpochSchedule):
    """Multiply the learning rate by ``gamma`` every epoch."""

    def __init__(self, gamma: float) -> None:
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.gamma, self.base_lr = float(gamma), None

    def factor(self, epoch):
        """Gamma ** epoch."""
        return self.gamma ** epoch


class CosineAnnealingLR(_EpochSchedule):
    """Linear warm-up over ``warmup_epochs``, then cosine decay to ``eta_min`` at ``T_max``.

    Parameters
    ----------
    T_max : int
        Epoch (counted from the start, warm-up included) at which the cosine ends.
    eta_min : float
    warmup_epochs : int
    """

    def __init__(self, T_max: int, eta_min: float = 0.0, warmup_epochs: int = 0) -> None:  # noqa: N803
        if T_max < 1 or warmup_epochs < 0 or warmup_epochs >= T_max:
            raise ValueError(f"need T_max >= 1 and 0 <= warmup_epochs < T_max, got "
                             f"T_max={T_max}, warmup_epochs={warmup_epochs}")
        self.T_max, self.eta_min, self.warmup, self.base_lr = T_max, eta_min, warmup_epochs, None

    def factor(self, epoch):
        """Warm-up ramp, then 0.5 (1 + cos(pi t)) between eta_min and base_lr."""
        if epoch < self.warmup:
            return (epoch + 1) / (self.warmup + 1)
        t = min(epoch - self.warmup, self.T_max - self.warmup) / (self.T_max - self.warmup)
        lo = self.eta_min / self.base_lr if self.base_lr else 0.0
        return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t))


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving.

    Parameters
    ----------
    monitor : str
        Falls back to "loss" when absent from the logs.
    factor : float
        In (0, 1).
    patience : int
        Epochs without improvement before reducing.
    min_delta : float
    cooldown : int
    min_lr : float
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor}")
        self.monitor, self.factor, self.patience = monitor, factor, patience
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self.best, self.wait, self.cool = None, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        """Reduce after ``patience`` epochs without improvement."""
        logs = logs or {}
        cur = logs.get(self.monitor, logs.get("loss"))
        if cur is None:
            return
        if self.cool > 0:
            self.cool -= 1
            self.wait = 0
        if self.best is None or cur < self.best - self.min_delta:
            self.best, self.wait = cur, 0
        elif self.cool == 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.model.optimizer
                opt.lr = max(opt.lr * self.factor, self.min_lr)
                self.wait, self.cool = 0, self.cooldown
