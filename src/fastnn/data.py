"""Batch sources for ``fit``: in-memory arrays, memory-mapped arrays, iterables of batches.

Every source implements the training engine's protocol
(:class:`fastnn._batches.BatchSource`, re-exported here), so the engine
(:class:`fastnn.training.Trainer`) needs to know nothing about where the data lives:

- ``n_samples``: samples per epoch, or None when not known in advance;
- ``n_batches``: batches per epoch, or None;
- ``batches(epoch)``: an iterator of :class:`Batch` ``(x, y, w, size, scale)`` for one
  epoch, ``x`` and ``y`` C-contiguous arrays in the model's dtype (``y``: int64 labels
  or float targets, as the loss prepared them), ``w`` float per-sample weights (n,)
  or None.  Arrays yielded may be buffers reused by the next batch: use them before
  asking for the next one.

:class:`ArrayBatches` (the engine's own) serves arrays already in memory (shuffled
with ``np.take`` into reused buffers).  :class:`MemmapBatches` serves ``np.memmap`` /
``np.load(mmap_mode="r")`` arrays: each batch reads only its rows (a sorted fancy
index, so the reads go forward through the file) and converts only them, so an
epoch never holds more than about one batch of the file in memory.
:class:`IterableBatches` serves a generator or iterable of ``(x, y)`` or
``(x, y, sample_weight)`` batches.

:func:`sample_weights` combines ``sample_weight`` and ``class_weight`` (a dict, or
"balanced" as scikit-learn's ``n / (n_classes * count)``) into one weight per sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ._batches import ArrayBatches, Batch, BatchSource

__all__ = ["ArrayBatches", "Batch", "BatchSource", "IterableBatches", "MemmapBatches",
           "class_weight_array", "check_sample_weight", "is_memmap", "labels_of",
           "sample_weights"]

#: (x, y, w, argname) -> (xb, yb, wb): checks and converts one batch for the model
PrepareBatch = Callable[[Any, Any, Any, str], tuple[np.ndarray, np.ndarray, Any]]


def is_memmap(a: Any) -> bool:
    """True for a memory-mapped array (``np.memmap``, ``np.load(mmap_mode=...)``) or a view."""
    while isinstance(a, np.ndarray):
        if isinstance(a, np.memmap):
            return True
        a = a.base
    return False


def labels_of(y: np.ndarray) -> np.ndarray:
    """Class labels of prepared targets: int labels as is, rows by argmax, one column > 0.5."""
    if y.ndim == 1:
        return y.astype(np.int64, copy=False) if y.dtype.kind in "iub" else \
            (y > 0.5).astype(np.int64)
    if y.ndim == 2 and y.shape[1] == 1:
        col = y[:, 0]
        return col.astype(np.int64) if col.dtype.kind in "iub" else (col > 0.5).astype(np.int64)
    return y.reshape(y.shape[0], -1).argmax(axis=1)


def class_weight_array(class_weight: Mapping[int, float] | str, labels: np.ndarray
                       ) -> np.ndarray:
    """Per-sample weights (n,) from ``class_weight`` and the samples' class labels."""
    labels = np.asarray(labels, np.int64)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict or 'balanced', got {class_weight!r}")
        classes, counts = np.unique(labels, return_counts=True)
        table = np.zeros(int(classes.max()) + 1 if classes.size else 0)
        table[classes] = labels.size / (classes.size * counts)
        return table[labels]
    if not isinstance(class_weight, Mapping):
        raise TypeError(f"class_weight must be a dict {{class: weight}} or 'balanced', got "
                        f"{type(class_weight).__name__}")
    table = {}
    for k, v in class_weight.items():
        fv = float(v)
        if not math.isfinite(fv) or fv < 0:
            raise ValueError(f"class_weight[{k!r}] must be a finite number >= 0, got {v!r}")
        table[int(k)] = fv
    present = np.unique(labels)
    missing = [int(c) for c in present if int(c) not in table]
    if missing:
        raise ValueError(f"class_weight has no weight for classes {missing} (present in y); "
                         f"give every class a weight")
    lut = np.zeros(int(present.max()) + 1 if present.size else 0)
    for k, v in table.items():
        if k < lut.size:
            lut[k] = v
    return lut[labels]


def check_sample_weight(sample_weight: Any, n: int, argname: str = "sample_weight"
                        ) -> np.ndarray:
    """sample_weight as float64 (n,), finite and >= 0 (ValueError naming it otherwise)."""
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "fiub":
        raise TypeError(f"{argname} must be numeric, got dtype {w.dtype}")
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n,):
        raise ValueError(f"{argname} must have shape ({n},) (one weight per sample), got "
                         f"{w.shape}")
    w = np.ascontiguousarray(w, np.float64)
    if not np.all(np.isfinite(w)) or (w.size and w.min() < 0):
        raise ValueError(f"{argname} must hold finite weights >= 0")
    return w


def sample_weights(n: int, y: np.ndarray | None, sample_weight: Any = None,
                   class_weight: Mapping[int, float] | str | None = None,
                   argname: str = "sample_weight") -> np.ndarray | None:
    """One weight per sample (n,) from ``sample_weight`` times ``class_weight[label]``,
    or None when neither is given (then training takes its unweighted fast path).
    """
    w = None if sample_weight is None else check_sample_weight(sample_weight, n, argname)
    if class_weight is not None:
        if y is None:
            raise ValueError("class_weight needs the labels")
        cw = class_weight_array(class_weight, labels_of(np.asarray(y)))
        w = cw if w is None else w * cw
    return w


class MemmapBatches:
    """Batches read from memory-mapped (or any indexable, unconverted) arrays.

    Each batch reads its rows with one sorted fancy index (forward through the
    file) and is then checked and converted by ``prepare`` alone: memory in use is
    a few batches, whatever the file's size.  Labels may be memory-mapped too.

    Parameters
    ----------
    x : array (n, ...), e.g. ``np.load(path, mmap_mode="r")``
    y : array (n, ...)
    w : ndarray (n,) or None
    batch_size : int
    shuffle : bool
    prepare : callable (xb, yb, wb, argname) -> (xb, yb, wb)
        The model's per-batch check and conversion (dtype, contiguity, finite values,
        label range).
    rng : numpy.random.Generator, optional
        Draws the epoch's permutation (needed with ``shuffle``).
    """

    def __init__(self, x: Any, y: Any, w: np.ndarray | None, batch_size: int, shuffle: bool,
                 prepare: PrepareBatch, rng: np.random.Generator | None = None) -> None:
        n = x.shape[0]
        if len(y) != n:
            raise ValueError(f"X has {n} samples but y has {len(y)}")
        if shuffle and rng is None:
            raise ValueError("shuffle=True needs rng (a numpy Generator)")
        self.x, self.y, self.w, self.shuffle, self.prepare = x, y, w, shuffle, prepare
        self.rng = rng
        self.n_samples = n
        self.batch_size = bs = min(int(batch_size), n)
        self.n_batches = -(-n // max(bs, 1))

    def batches(self, epoch: int) -> Iterator[Batch]:
        """One pass; with ``shuffle`` a new permutation, each batch's indices sorted."""
        n, bs = self.n_samples, self.batch_size
        order = self.rng.permutation(n) if self.shuffle else None
        for bi, s in enumerate(range(0, n, bs)):
            m = min(bs, n - s)
            if order is None:
                sl = slice(s, s + m)
                xb, yb = self.x[sl], self.y[sl]
                wb = None if self.w is None else self.w[sl]
            else:
                idx = np.sort(order[s:s + m])
                xb, yb = self.x[idx], self.y[idx]
                wb = None if self.w is None else self.w[idx]
            xb, yb, wb = self.prepare(xb, yb, wb, f"batch {bi}")
            yield Batch(xb, yb, wb, xb.shape[0], 1.0)


class IterableBatches:
    """Batches from a generator, an iterator or a re-iterable of ``(x, y[, w])`` tuples.

    A re-iterable (a list, a dataset object with ``__iter__``) starts over every
    epoch; a one-shot iterator (a generator) is consumed ``steps_per_epoch`` batches
    per epoch, as Keras does.  When it runs out before the last epoch (or short of
    ``steps_per_epoch``), training stops with a warning (ask for fewer steps or
    epochs, or give a re-iterable).

    Parameters
    ----------
    data : iterable of tuples
    steps_per_epoch : int, optional
        Needed for a one-shot iterator over several epochs; otherwise an epoch is
        one pass (``len(data)`` batches when it has a length).
    prepare : callable (xb, yb, wb, argname) -> (xb, yb, wb)
    class_weight : dict or None
        Applied per batch from the batch's labels ("balanced" needs all labels up
        front and is refused here).
    """

    def __init__(self, data: Iterable, steps_per_epoch: int | None, prepare: PrepareBatch,
                 class_weight: Mapping[int, float] | None = None) -> None:
        if isinstance(class_weight, str):
            raise ValueError("class_weight='balanced' needs every label before training; with "
                             "a generator give a dict {class: weight}")
        self.data, self.prepare, self.class_weight = data, prepare, class_weight
        self.one_shot = isinstance(data, Iterator)  # (no iter() call: it may start workers)
        self.steps = steps_per_epoch
        if steps_per_epoch is None and hasattr(data, "__len__") and not self.one_shot:
            self.n_batches: int | None = len(data)
        else:
            self.n_batches = steps_per_epoch
        self.n_samples = None
        self.exhausted = False  # the data ran out (fit then stops, warning if epochs remain)
        self.short = False  # ... before steps_per_epoch batches of this epoch
        self._it: Iterator | None = None

    def batches(self, epoch: int) -> Iterator[Batch]:
        """One epoch: ``steps_per_epoch`` batches, or one pass of a re-iterable."""
        if self.one_shot:
            if self._it is None:
                self._it = iter(self.data)
            it = self._it
        else:
            it = iter(self.data)
        bi = 0
        while self.steps is None or bi < self.steps:
            try:
                item = next(it)
            except StopIteration:
                # a one-shot iterator is spent; a re-iterable is only when it fell short
                self.short = self.steps is not None and bi < self.steps
                self.exhausted = self.one_shot or self.short
                return
            if not isinstance(item, tuple | list) or len(item) not in (2, 3):
                raise ValueError(f"batch {bi} of the data must be a tuple (x, y) or "
                                 f"(x, y, sample_weight), got {type(item).__name__}"
                                 + (f" of length {len(item)}" if hasattr(item, "__len__")
                                    else ""))
            xb, yb, wb = self.prepare(item[0], item[1], item[2] if len(item) == 3 else None,
                                      f"batch {bi}")
            if self.class_weight is not None:
                cw = class_weight_array(self.class_weight, labels_of(yb))
                wb = cw if wb is None else wb * cw
            yield Batch(xb, yb, wb, xb.shape[0], 1.0)
            bi += 1
