"""Batch sources for the training engine: objects that yield ``Batch(x, y, w)`` per epoch.

The engine (:class:`fastnn.training.Trainer`) asks a source for one epoch's batches
with ``source.batches(epoch)`` and walks them; it knows nothing of where they come
from.  :class:`ArrayBatches` serves in-memory (or memory-mapped) arrays, shuffled
per epoch into reused buffers.  Anything with the same two members plugs in
(a generator of batches, a sharded source for data-parallel training, ...).

This module holds the protocol and the in-memory source; the public
:mod:`fastnn.data` re-exports them beside the out-of-core sources
(:class:`fastnn.data.MemmapBatches`, :class:`fastnn.data.IterableBatches`) and the
sample/class weight helpers, all implementing the protocol below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol

import numpy as np

__all__ = ["ArrayBatches", "Batch", "BatchSource", "rows_as"]


def rows_as(x: Any, start: int, stop: int, dtype: Any) -> np.ndarray:
    """Rows ``start:stop`` of x, C-contiguous in ``dtype``: a view when they already are,
    else only those rows converted (a memory-mapped X is read one batch at a time).
    """
    xb = x[start:stop]
    if xb.dtype != dtype or not xb.flags.c_contiguous:
        with np.errstate(over="ignore"):  # too large for float32 -> inf (checked elsewhere)
            xb = np.ascontiguousarray(xb, dtype=dtype)
    return xb


class Batch(NamedTuple):
    """One training batch.

    Attributes
    ----------
    x : ndarray, (rows, *input_shape)
        Inputs in the model's dtype (may be a reused buffer: valid until the next batch).
    y : ndarray, (rows, ...)
        Targets as the loss takes them (already checked).
    w : ndarray, (rows,), or None
        Per-sample weights of the loss (None: all ones).
    size : int
        Rows this batch stands for in the epoch's statistics and progress.  Equal to
        ``rows`` except for a shard of a larger (global) batch.
    scale : float
        Factor on this batch's gradient (``rows / size`` for a shard, so that the sum
        over shards is the mean over the global batch); 1.0 otherwise.
    """

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray | None = None
    size: int = 0
    scale: float = 1.0


class BatchSource(Protocol):
    """What the engine needs from a data source.

    Optional members the engine and the progress bar read when present:
    ``n_batches`` (batches per epoch, or None), ``batch_size``, and for a source that
    can run out ``exhausted`` (no more data) and ``short`` (it ran out before the
    epoch's ``steps_per_epoch`` batches).
    """

    #: rows per epoch (for the progress bar), or None when not known in advance
    n_samples: int | None

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch, in order.

        The engine asks for the next batch only after the previous one's step is
        complete, and closes the iterator (``.close()``) when it stops early.
        """
        ...


def _take(src: Any, idx: np.ndarray | slice, buf: np.ndarray | None) -> np.ndarray:
    """Rows ``idx`` of ``src``: a view for a slice of a dense array, else into ``buf``."""
    if hasattr(src, "tocsr"):  # scipy sparse: densified per batch
        out = buf[:src[idx].shape[0]]
        out[...] = src[idx].toarray()
        return out
    if isinstance(idx, slice):
        return src[idx]
    return np.take(src, idx, axis=0, out=buf[:len(idx)])


class ArrayBatches:
    """Mini-batches of arrays ``x``, ``y`` (and sample weights ``w``), one pass per epoch.

    Parameters
    ----------
    x : ndarray (n, *input_shape) or scipy sparse matrix (n, features)
        Sparse rows are densified per batch into a reused buffer.
    y : ndarray (n, ...)
    w : ndarray (n,), optional
    batch_size : int
        Clipped to ``n``; the last batch of an epoch may be smaller.
    order : callable ``order(epoch) -> ndarray of row indices or None``, optional
        The epoch's row order (None: in order).  Default: none (see ``shuffle``).
    shuffle : bool
        With ``rng`` and no ``order``: ``rng.permutation(n)`` every epoch.
    rng : numpy.random.Generator, optional
    dtype : numpy dtype, optional
        dtype of the x buffer (default ``x.dtype``).
    """

    def __init__(self, x: Any, y: np.ndarray, w: np.ndarray | None = None, *,
                 batch_size: int, order: Callable[[int], np.ndarray | None] | None = None,
                 shuffle: bool = False, rng: np.random.Generator | None = None,
                 dtype: Any = None) -> None:
        n = x.shape[0]
        if y.shape[0] != n or (w is not None and w.shape[0] != n):
            raise ValueError(f"x, y and w must have the same number of rows, got {n}, "
                             f"{y.shape[0]}{'' if w is None else ', ' + str(w.shape[0])}")
        self.x, self.y, self.w = x, y, w
        self.n_samples = n
        self.batch_size = min(int(batch_size), n)
        self.n_batches = -(-n // max(self.batch_size, 1))
        if order is None and shuffle:
            if rng is None:
                raise ValueError("shuffle=True needs rng (a numpy Generator)")
            order = lambda epoch: rng.permutation(n)  # noqa: E731
        self.order = order
        bs = self.batch_size
        sparse = hasattr(x, "tocsr")
        need_xbuf = sparse or order is not None
        self._xb = (np.empty((bs, *x.shape[1:]), dtype or x.dtype) if need_xbuf else None)
        self._yb = np.empty((bs, *y.shape[1:]), y.dtype) if order is not None else None

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The epoch's batches, shuffled by ``order(epoch)`` when given."""
        order = self.order(epoch) if self.order is not None else None
        n, bs = self.n_samples, self.batch_size
        x, y, w = self.x, self.y, self.w
        dense = not hasattr(x, "tocsr")
        if order is not None:
            # checked once here, so that the per-batch takes can use mode="wrap", which
            # for indices in [-n, n) is "raise" without its buffered copy of the output
            order = np.asarray(order)
            if order.size and (int(order.min()) < -n or int(order.max()) >= n):
                raise IndexError(f"batch order has indices outside [-{n}, {n})")
        for s in range(0, n, bs):
            m = min(bs, n - s)
            if order is not None:
                idx = order[s:s + m]
                xs = (x.take(idx, axis=0, out=self._xb[:m], mode="wrap") if dense
                      else _take(x, idx, self._xb))
                ys = y.take(idx, axis=0, out=self._yb[:m], mode="wrap")
                ws = None if w is None else w[idx]
            else:
                sl = slice(s, s + m)
                xs = x[sl] if dense else _take(x, sl, self._xb)
                ys = y[sl]
                ws = None if w is None else w[sl]
            yield Batch(xs, ys, ws, m, 1.0)
