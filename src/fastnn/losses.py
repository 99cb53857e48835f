"""Losses: value and gradient from one fused C call (see :mod:`fastnn.kernels`).

Reductions follow PyTorch's defaults: ``cross_entropy`` averages over the batch,
``mse`` and ``binary_cross_entropy`` over all elements.

The output layer and the loss (Keras' ``from_logits``, decided for the user)
------------------------------------------------------------------------------
``cross_entropy`` and ``binary_cross_entropy`` are computed from logits.  When the
model's last layer ends in the matching activation (softmax for cross_entropy,
sigmoid for binary_cross_entropy), training takes the loss from that layer's
*pre-activation*, fused and stable, and ``predict`` still returns probabilities:
``Dense(.., 1, activation="sigmoid")`` + ``"binary_cross_entropy"`` trains as
``BCEWithLogitsLoss`` on the logits.  :func:`output_mode` decides this and rejects
the combinations that cannot be right (a softmax output with binary_cross_entropy,
a sigmoid output with cross_entropy, cross_entropy on one output) with a ValueError
saying why; an output activation that only distorts logits (relu, tanh...) warns.

Sample weights: ``loss(out, y, grad, sample_weight)`` gives the weighted mean
``sum_i w_i * loss_i / sum_i w_i`` (each sample's loss the mean over its elements);
the training engine turns it into Keras' ``sum_i w_i * loss_i / n`` where asked
(:attr:`fastnn.training.Trainer.sample_weight_reduction`, what ``fit`` uses).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import _kernels as _k
from ._validation import labels_array

SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


class Loss:
    """Base class: ``prepare`` validates targets once, ``__call__`` runs the kernel."""

    name = ""
    is_classification = False
    #: True when the one-call MLP step (``MLPPlan``) computes this loss in C (``kind``)
    fusable = False
    #: the output activation this loss fuses with (its "from logits" partner), if any
    logit_activation: str | None = None

    def prepare(self, y: Any, n_rows: int, out_shape: tuple[int, ...], dtype: np.dtype,
                argname: str = "y") -> np.ndarray:
        """Targets checked against the model's output shape, converted once."""
        raise NotImplementedError

    def __call__(self, out: np.ndarray, y: np.ndarray, grad: np.ndarray | None,
                 sample_weight: np.ndarray | None = None) -> float:
        """Loss of output ``out`` against prepared targets ``y``; fills ``grad`` (dL/dout).

        With ``sample_weight`` (rows,): ``sum(w_i * loss_i) / sum(w)``, where ``loss_i``
        is row i's loss under this loss's reduction (see :meth:`per_sample`); integer
        weights then equal repeating rows.
        """
        raise NotImplementedError

    def per_sample(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Loss of every row, float64 (rows,), whose mean is the batch loss."""
        raise NotImplementedError

    def _reweight(self, out: np.ndarray, y: np.ndarray, grad: np.ndarray | None,
                  w: np.ndarray) -> float:
        """Turn the unweighted mean's gradient in ``grad`` into the weighted mean's."""
        w = np.asarray(w, np.float64)
        m = out.shape[0]
        if w.shape != (m,):
            raise ValueError(f"sample_weight must have shape ({m},), got {w.shape}")
        total = float(w.sum())
        if grad is not None:
            scale = (w * (m / total)).astype(grad.dtype)
            grad *= scale.reshape((m,) + (1,) * (grad.ndim - 1))
        return float(np.dot(self.per_sample(out, y), w) / total)

    def accuracy(self, out: np.ndarray, y: np.ndarray) -> float | None:
        """Fraction of correct predictions, or None for a regression loss."""
        return None

    def kind(self, y: np.ndarray) -> int:
        """The C code of this loss for prepared targets y (FNN_LOSS_* in fastnn.h)."""
        raise NotImplementedError



def _float_targets(y: Any, n_rows: int, out_shape: tuple[int, ...], dtype: np.dtype,
                   argname: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{argname} must be numeric, got dtype {arr.dtype}")
    full = (n_rows, *out_shape)
    if arr.shape != full:
        if arr.ndim == 1 and full == (n_rows, 1) and arr.shape[0] == n_rows:
            arr = arr.reshape(n_rows, 1)
        else:
            raise ValueError(f"{argname} must have shape {full} (the model's output), "
                             f"got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{argname} contains NaN or infinity")
    return arr


class CrossEntropy(Loss):
    """Softmax cross-entropy from logits (``torch.nn.CrossEntropyLoss``), mean over the batch.

    Targets: integer class labels (batch,), or one-hot / probability rows (batch, classes).
    """

    fusable = True
    name = "cross_entropy"
    is_classification = True
    logit_activation = "softmax"

    def prepare(self, y, n_rows, out_shape, dtype, argname="y"):
        """int64 labels in [0, classes), or float rows of the output's shape."""
        if len(out_shape) != 1:
            raise ValueError(f"cross_entropy needs 2-D model outputs (batch, classes), "
                             f"got per-sample shape {out_shape}")
        arr = np.asarray(y)
        if arr.ndim == 2 and arr.shape[1] == 1 and out_shape[0] != 1:
            arr = arr[:, 0]  # (n, 1) integer labels, as Keras' sparse_categorical_crossentropy
        elif arr.ndim == 2:
            if arr.shape != (n_rows, out_shape[0]):
                raise ValueError(
                    f"{argname} for cross_entropy must be integer class labels (n,) or (n, 1), "
                    f"or one-hot / probability rows (n, {out_shape[0]}); got shape {arr.shape} "
                    f"for {n_rows} samples")
            return _float_targets(arr, n_rows, out_shape, dtype, argname)
        elif arr.ndim > 2:
            raise ValueError(f"{argname} for cross_entropy must be integer class labels (n,) or "
                             f"(n, 1), or one-hot rows (n, {out_shape[0]}); got shape {arr.shape}")
        return labels_array(arr, n_rows, out_shape[0], argname)

    def __call__(self, out, y, grad, sample_weight=None):
        """Mean loss; grad = (softmax - onehot) / batch."""
        if y.ndim == 1:
            loss = _k.cross_entropy[SPEC[out.dtype]](grad, out, y, None)
        else:
            loss = _k.cross_entropy[SPEC[out.dtype]](grad, out, None, y)
        return loss if sample_weight is None else self._reweight(out, y, grad, sample_weight)

    def per_sample(self, out, y):
        """-log softmax(out)[label] per row (or -sum(y * log softmax(out)) for rows)."""
        z = out.astype(np.float64)
        zmax = z.max(axis=1, keepdims=True)
        logp = z - zmax - np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
        if y.ndim == 1:
            return -logp[np.arange(len(z)), y]
        return -(y.astype(np.float64) * logp).sum(axis=1)

    def kind(self, y):
        """FNN_LOSS_CE_LABELS for integer labels, FNN_LOSS_CE_ROWS for probability rows."""
        return _k.LOSS_CE_LABELS if y.ndim == 1 else _k.LOSS_CE_ROWS

    def accuracy(self, out, y):
        """Top-1 accuracy."""
        labels = y if y.ndim == 1 else y.argmax(axis=1)
        return float(np.mean(out.argmax(axis=1) == labels)) if len(labels) else 0.0


class MSE(Loss):
    """Mean squared error over all elements (``torch.nn.MSELoss``)."""

    fusable = True
    name = "mse"

    def prepare(self, y, n_rows, out_shape, dtype, argname="y"):
        """Float targets of the output's shape ((n,) accepted for one output)."""
        return _float_targets(y, n_rows, out_shape, dtype, argname)

    def kind(self, y):
        """FNN_LOSS_MSE."""
        return _k.LOSS_MSE

    def __call__(self, out, y, grad, sample_weight=None):
        """Mean of (out - y)^2; grad = 2 (out - y) / out.size."""
        loss = _k.mse[SPEC[out.dtype]](None if grad is None else grad.reshape(-1),
                                       out.reshape(-1), y.reshape(-1))
        return loss if sample_weight is None else self._reweight(out, y, grad, sample_weight)

    def per_sample(self, out, y):
        """Mean of (out - y)^2 over each row's outputs."""
        d = out.astype(np.float64) - y.astype(np.float64)
        return (d * d).reshape(len(d), -1).mean(axis=1)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits (``torch.nn.BCEWithLogitsLoss``), mean over elements."""

    fusable = True
    name = "binary_cross_entropy"
    is_classification = True
    logit_activation = "sigmoid"

    def prepare(self, y, n_rows, out_shape, dtype, argname="y"):
        """Float targets in [0, 1] of the output's shape."""
        arr = _float_targets(y, n_rows, out_shape, dtype, argname)
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"{argname} must lie in [0, 1] for binary_cross_entropy, got "
                             f"values in [{arr.min()}, {arr.max()}]")
        return arr

    def kind(self, y):
        """FNN_LOSS_BCE."""
        return _k.LOSS_BCE

    def __call__(self, out, y, grad, sample_weight=None):
        """Mean BCE; grad = (sigmoid(out) - y) / out.size."""
        loss = _k.bce_logits[SPEC[out.dtype]](None if grad is None else grad.reshape(-1),
                                              out.reshape(-1), y.reshape(-1))
        return loss if sample_weight is None else self._reweight(out, y, grad, sample_weight)

    def per_sample(self, out, y):
        """Mean of log(1 + e^z) - y z over each row's outputs."""
        z = out.astype(np.float64).reshape(len(out), -1)
        return (np.logaddexp(0.0, z) - y.astype(np.float64).reshape(z.shape) * z).mean(axis=1)

    def accuracy(self, out, y):
        """Fraction of elements with (logit > 0) == (target > 0.5)."""
        return float(np.mean((out > 0) == (y > 0.5))) if y.size else 0.0


LOSSES: dict[str, type[Loss]] = {
    "cross_entropy": CrossEntropy,
    "categorical_crossentropy": CrossEntropy,
    "sparse_categorical_crossentropy": CrossEntropy,
    "mse": MSE,
    "mean_squared_error": MSE,
    "binary_cross_entropy": BinaryCrossEntropy,
    "binary_crossentropy": BinaryCrossEntropy,
}


def get_loss(loss: str | Loss) -> Loss:
    """A Loss instance from a name or an instance; ValueError for unknown names."""
    if isinstance(loss, Loss):
        return loss
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of "
                         f"['binary_cross_entropy', 'cross_entropy', 'mse']")
    return LOSSES[loss]()


class OutputLossError(ValueError):
    """An output layer and a loss that cannot train correctly together."""


#: output activations that bound or clip what a logit loss then reads as logits
_DISTORTING = ("relu", "leaky_relu", "elu", "gelu", "softplus", "silu", "tanh")


def output_mode(loss: Loss, activation: str, out_shape: tuple[int | None, ...] | None,
                warn: bool = True) -> str:
    """How the model's output meets the loss (Keras' ``from_logits``, decided for the user).

    Parameters
    ----------
    loss : Loss
    activation : str
        The last layer's activation ("identity" when it has none).
    out_shape : tuple, optional
        The per-sample output shape, if known.
    warn : bool
        Emit the UserWarning for a doubtful combination.

    Returns
    -------
    str
        "fused": the last layer's activation is the loss's own (sigmoid with
        binary_cross_entropy, softmax with cross_entropy); the loss is taken from the
        pre-activation and the outputs are probabilities.  "logits": the outputs are
        logits for the loss.  "values": a loss without logits (mse, custom losses).

    Raises
    ------
    OutputLossError (a ValueError)
        For a combination that cannot train correctly, saying why and what to use.
    """
    partner = getattr(loss, "logit_activation", None)  # (a custom loss may lack it)
    if partner is None:
        return "values"
    n_out = None if not out_shape or out_shape[-1] is None else int(np.prod(out_shape))
    if loss.name == "cross_entropy" and n_out == 1:
        raise OutputLossError(
            "cross_entropy on a single output is always 0 (softmax over one class is 1) and "
            "has no gradient: for two classes use Dense(..., 1, activation='sigmoid') with "
            "loss='binary_cross_entropy', or two outputs with cross_entropy")
    if activation == partner:
        return "fused"
    if loss.name == "binary_cross_entropy" and activation == "softmax":
        raise OutputLossError(
            "a softmax output with binary_cross_entropy cannot be right: softmax makes the "
            "outputs sum to 1 (a single softmax output is always 1), while "
            "binary_cross_entropy scores each output as an independent probability; use "
            "activation='sigmoid' (independent yes/no labels) or loss='cross_entropy' (one "
            "class per sample)")
    if loss.name == "cross_entropy" and activation == "sigmoid":
        raise OutputLossError(
            "a sigmoid output with cross_entropy cannot be right: cross_entropy applies "
            "softmax to the logits itself, and sigmoid outputs in (0, 1) are not logits; use "
            "activation='softmax' or None (one class per sample) or "
            "loss='binary_cross_entropy' (independent labels)")
    if activation in _DISTORTING and warn:
        warnings.warn(
            f"the last layer's activation {activation!r} feeds {loss.name}, which reads the "
            f"outputs as logits ({activation} bounds or clips them, which slows or stalls "
            f"training); use activation=None (logits) or {partner!r}", UserWarning,
            stacklevel=3)
    return "logits"


def to_probabilities(out: np.ndarray, loss: str, activation: str) -> np.ndarray:
    """Probabilities from a classifier's outputs ``out`` (what ``predict`` returned):
    as they are after the loss's own activation (sigmoid / softmax), else the
    activation the loss implies applied to the logits (float64).
    """
    z = np.asarray(out, np.float64)
    if loss in ("binary_cross_entropy", "binary_crossentropy"):
        return z if activation == "sigmoid" else 0.5 * (1.0 + np.tanh(0.5 * z))
    if activation == "softmax":
        return z
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
