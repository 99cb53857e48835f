"""Metrics for ``compile(metrics=[...])``: stateful, sample-weighted running means.

A metric is an object with ``name``, ``reset()``, ``update(y_true, y_pred,
sample_weight=None)``, ``result()`` and ``state()`` / ``set_state()`` (its sums, which
data-parallel training adds up over ranks).  Every built-in metric is the weighted mean
of a per-sample value, ``sum_i w_i v_i / sum_i w_i``, so updating it batch by
batch gives exactly the metric of the whole data (up to float rounding), whatever
the batch size.

``y_pred`` is what the model outputs (what ``predict`` returns: probabilities after
a sigmoid or softmax output layer, logits after a linear one); ``y_true`` is the
prepared targets (int64 labels, or float rows of the output's shape).

Specs accepted by :func:`get_metrics`:

- ``"accuracy"`` (``"acc"``): follows the loss and the output.  With
  cross_entropy (or several outputs): top-1, from integer labels or one-hot rows.
  With binary_cross_entropy (or one output): element-wise, the output thresholded
  at 0.5 for probabilities, at 0 for logits.
- ``"top_k_accuracy"`` or :class:`TopKAccuracy(k)`: the label among the k largest
  outputs.
- ``"mse"``, ``"mae"``: mean squared / absolute error per sample, averaged.
- a callable ``fn(y_true, y_pred)``: returning a float (the batch's value; the
  epoch's is the mean of the batches' weighted by their total sample weight, exact
  when ``fn`` is itself a per-sample mean) or an array (n,) of per-sample values
  (then exact, weighted like the built-ins).  Its name is the function's name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class Metric:
    """Base class: a weighted running mean of ``values(y_true, y_pred)`` (n,)."""

    name = "metric"

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = str(name)
        self.reset()

    def reset(self) -> None:
        """Forget every update (called at the start of each epoch and evaluation)."""
        self._total = 0.0
        self._weight = 0.0

    def values(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """The metric of each sample, (n,)."""
        raise NotImplementedError

    def update(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add one batch: y_true and y_pred (n, ...), sample_weight (n,) or None."""
        v = np.asarray(self.values(np.asarray(y_true), np.asarray(y_pred)), np.float64)
        if sample_weight is None:
            self._total += float(v.sum())
            self._weight += v.shape[0]
        else:
            w = np.asarray(sample_weight, np.float64).reshape(-1)
            self._total += float(np.dot(w, v))
            self._weight += float(w.sum())

    def result(self) -> float:
        """The weighted mean so far (0.0 before any update)."""
        return self._total / self._weight if self._weight else 0.0

    def state(self) -> tuple[float, float]:
        """``(sum of w_i v_i, sum of w_i)`` so far: states of disjoint parts of the data add
        up to the state of the whole (data-parallel training sums them over ranks).
        """
        return (self._total, self._weight)

    def set_state(self, total: float, weight: float) -> None:
        """Continue from a :meth:`state` (e.g. the sum of every rank's)."""
        self._total, self._weight = float(total), float(weight)

    def configure(self, loss: str | None, mode: str) -> None:
        """Told by the model what its loss is and whether outputs are "probabilities",
        "logits" or plain "values" (for metrics that depend on it, like accuracy).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _labels(y_true: np.ndarray) -> np.ndarray:
    """Integer labels from labels (n,), (n, 1) or one-hot / probability rows (n, c)."""
    if y_true.ndim == 1:
        return y_true.astype(np.int64, copy=False)
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        return y_true[:, 0].astype(np.int64, copy=False)
    return y_true.reshape(y_true.shape[0], -1).argmax(axis=1)


class Accuracy(Metric):
    """Accuracy that follows what the output is.

    Parameters
    ----------
    kind : {"auto", "categorical", "binary"}
        "categorical": argmax of the outputs against the label (integer labels,
        (n, 1) labels or one-hot rows).  "binary": each output thresholded, against
        targets > 0.5, averaged over a sample's outputs.  "auto" (the default)
        lets the model decide from its loss and output layer.
    threshold : float, optional
        For "binary": default 0.5 for probabilities, 0 for logits.
    name : str
    """

    name = "accuracy"

    def __init__(self, kind: str = "auto", threshold: float | None = None,
                 name: str | None = None) -> None:
        if kind not in ("auto", "categorical", "binary"):
            raise ValueError(f"Accuracy kind must be 'auto', 'categorical' or 'binary', "
                             f"got {kind!r}")
        self.kind, self.threshold, self._auto = kind, threshold, kind == "auto"
        self._auto_threshold = threshold is None
        super().__init__(name)

    def configure(self, loss, mode):
        """Pick the kind from the loss (and the threshold from the output mode)."""
        if self._auto:
            self.kind = ("binary" if loss == "binary_cross_entropy" else
                         "categorical" if loss == "cross_entropy" else "auto")
        if self._auto_threshold:
            self.threshold = 0.0 if mode == "logits" else 0.5

    def values(self, y_true, y_pred):
        """1.0 per correct sample (binary: the fraction of its outputs that are correct)."""
        n = y_pred.shape[0]
        pred = y_pred.reshape(n, -1)
        kind = self.kind
        if kind == "auto":  # no loss told us: one output is binary, several categorical
            kind = "binary" if pred.shape[1] == 1 else "categorical"
        if kind == "categorical":
            return (pred.argmax(axis=1) == _labels(y_true)).astype(np.float64)
        thr = 0.5 if self.threshold is None else self.threshold
        t = y_true.reshape(n, -1)
        return np.mean((pred > thr) == (t > 0.5), axis=1)


class TopKAccuracy(Metric):
    """The label is among the ``k`` largest outputs (ties count against it).

    Parameters
    ----------
    k : int
    name : str, optional (default "top_k_accuracy")
    """

    name = "top_k_accuracy"

    def __init__(self, k: int = 5, name: str | None = None) -> None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"TopKAccuracy k must be a positive int, got {k!r}")
        self.k = int(k)
        super().__init__(name)

    def values(self, y_true, y_pred):
        """1.0 when fewer than k outputs are larger than the label's."""
        pred = y_pred.reshape(y_pred.shape[0], -1)
        lab = _labels(y_true)
        score = pred[np.arange(pred.shape[0]), lab]
        return ((pred > score[:, None]).sum(axis=1) < self.k).astype(np.float64)


class MeanSquaredError(Metric):
    """Mean of (y_pred - y_true)^2 over each sample's outputs, averaged over samples."""

    name = "mse"

    def values(self, y_true, y_pred):
        """Per-sample mean squared error."""
        n = y_pred.shape[0]
        d = y_pred.reshape(n, -1).astype(np.float64) - _as_targets(y_true, y_pred)
        return np.mean(d * d, axis=1)


class MeanAbsoluteError(Metric):
    """Mean of |y_pred - y_true| over each sample's outputs, averaged over samples."""

    name = "mae"

    def values(self, y_true, y_pred):
        """Per-sample mean absolute error."""
        n = y_pred.shape[0]
        return np.mean(np.abs(y_pred.reshape(n, -1).astype(np.float64)
                              - _as_targets(y_true, y_pred)), axis=1)


def _as_targets(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Targets as rows like y_pred's; integer labels become one-hot rows."""
    n = y_pred.shape[0]
    width = int(np.prod(y_pred.shape[1:]))
    if y_true.ndim == 1 and width > 1:  # labels of a classifier
        rows = np.zeros((n, width))
        rows[np.arange(n), y_true.astype(np.int64)] = 1.0
        return rows
    return y_true.reshape(n, -1).astype(np.float64)


class FunctionMetric(Metric):
    """A metric from a callable ``fn(y_true, y_pred)`` -> float or per-sample array (n,)."""

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray], Any],
                 name: str | None = None) -> None:
        self.fn = fn
        super().__init__(name or getattr(fn, "__name__", None) or "metric")

    def update(self, y_true, y_pred, sample_weight=None):
        """Per-sample values are weighted; a scalar counts for the batch's total weight."""
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        v = np.asarray(self.fn(y_true, y_pred), np.float64)
        n = y_pred.shape[0]
        if v.ndim == 1 and v.shape[0] == n:
            w = (np.ones(n) if sample_weight is None
                 else np.asarray(sample_weight, np.float64).reshape(-1))
            self._total += float(np.dot(w, v))
            self._weight += float(w.sum())
            return
        if v.ndim != 0:
            raise ValueError(f"metric {self.name!r} must return a float or an array of "
                             f"{n} per-sample values, got shape {v.shape}")
        bw = n if sample_weight is None else float(np.sum(sample_weight))
        self._total += float(v) * bw
        self._weight += bw


METRICS: dict[str, Callable[[], Metric]] = {
    "accuracy": Accuracy,
    "acc": Accuracy,
    "top_k_accuracy": TopKAccuracy,
    "top_k_categorical_accuracy": TopKAccuracy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
}


def get_metric(spec: str | Metric | Callable) -> Metric:
    """A Metric from a name, a Metric instance or a callable; ValueError for unknown names."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        cls = METRICS.get(spec.lower())
        if cls is None:
            raise ValueError(f"unknown metric {spec!r}; expected one of "
                             f"{sorted(set(METRICS))}, a fastnn.metrics.Metric or a callable "
                             f"(y_true, y_pred) -> float")
        return cls()
    if callable(spec):
        return FunctionMetric(spec)
    raise TypeError(f"a metric must be a name, a fastnn.metrics.Metric or a callable, got "
                    f"{type(spec).__name__}")


def get_metrics(specs: Sequence[str | Metric | Callable] | str | None) -> list[Metric]:
    """Metrics from ``compile(metrics=...)``'s list (names must be unique)."""
    if specs is None:
        return []
    if isinstance(specs, str | Metric) or callable(specs):
        specs = [specs]
    out = [get_metric(s) for s in specs]
    names = [m.name for m in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup or "loss" in names:
        raise ValueError(f"metric names must be unique and not 'loss', got {names}")
    return out
