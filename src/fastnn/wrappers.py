"""scikit-learn estimators around any :class:`fastnn.Sequential` (what scikeras gives Keras).

::

    from fastnn.wrappers import SequentialClassifier

    def build(hidden=32, n_features_in=None, n_classes=None):
        return fnn.Sequential([fnn.Dense(n_features_in, hidden, activation="relu"),
                               fnn.Dense(hidden, n_classes)], seed=0)

    clf = SequentialClassifier(build, epochs=20, model__hidden=64, optimizer__lr=1e-2)
    GridSearchCV(clf, {"model__hidden": [16, 64], "epochs": [10, 20]}).fit(X, y)

``model`` is a callable returning a Sequential, or a Sequential (its architecture
is reused with fresh weights at every ``fit``; a fitted estimator's network is
``model_``).  Parameters prefixed ``model__`` go to the callable, ``optimizer__``
to the optimizer's constructor (``optimizer`` being a name such as "adam" or an
Optimizer class); the callable also gets ``n_features_in``, ``n_classes`` (the
classifier) / ``n_outputs`` (the regressor) and ``meta`` (a dict of those) when its
signature names them.  Every parameter is reported by ``get_params`` and settable
by ``set_params``, so ``sklearn.base.clone``, pipelines and searches work.

``sample_weight`` weights the loss as Keras does (``sum_i w_i loss_i / n`` per
batch), so a weight of 2 is not the same fit as a repeated row (scikit-learn's
``check_sample_weight_equivalence`` fails, as for scikeras); and the routed
``model__...`` parameters are attributes that the constructor's signature does not
list (``check_no_attributes_set_in_init`` fails, as for scikeras).  The other
``check_estimator`` checks pass.

This module imports scikit-learn (the ``sklearn`` extra); ``import fastnn`` does not.
For ready-made MLP estimators with scikit-learn's own parameters, see
:mod:`fastnn.sklearn`.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fastnn.wrappers needs scikit-learn: pip install 'fastnn[sklearn]'"
                      ) from exc

from . import layers as _layers
from . import optim as _optim
from .losses import to_probabilities
from .model import Sequential

_ROUTED = ("model__", "optimizer__", "fit__")


class _SequentialEstimator(BaseEstimator):
    """Shared parts of :class:`SequentialClassifier` and :class:`SequentialRegressor`."""

    _default_loss = "mse"

    def __init__(self, model: Any = None, *, loss: Any = None, optimizer: Any = "adam",
                 metrics: Any = None, epochs: int = 10, batch_size: int = 32,
                 shuffle: bool = True, validation_split: float = 0.0, callbacks: Any = None,
                 verbose: int = 0, random_state: int | None = None, **kwargs: Any) -> None:
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.metrics = metrics
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.validation_split = validation_split
        self.callbacks = callbacks
        self.verbose = verbose
        self.random_state = random_state
        for k, v in kwargs.items():  # checked by fit (scikit-learn validates there)
            setattr(self, k, v)
        self._routed = sorted(kwargs)

    # ---- parameters -----------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters, routed ones (``model__...``) included."""
        params = super().get_params(deep)
        for k in getattr(self, "_routed", []):
            params[k] = getattr(self, k)
        return params

    def set_params(self, **params: Any) -> _SequentialEstimator:
        """Set parameters; routed ones (``model__hidden=...``) may be new."""
        routed = {k: v for k, v in params.items() if k.startswith(_ROUTED)}
        for k, v in routed.items():
            setattr(self, k, v)
            if k not in self._routed:
                self._routed = sorted([*self._routed, k])
        rest = {k: v for k, v in params.items() if k not in routed}
        if rest:
            super().set_params(**rest)
        return self

    def _check_params(self, X: Any, y: Any, sample_weight: Any) -> None:
        bad = [k for k in self._routed if not k.startswith(_ROUTED)]
        if bad:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {bad} (routed "
                            f"arguments start with {', '.join(_ROUTED)})")
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None")
        if sample_weight is not None and not np.asarray(sample_weight).sum() > 0:
            raise ValueError("sample_weight must not be all zeros (nothing to train on)")

    def _routed_params(self, prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: getattr(self, k) for k in self._routed if k.startswith(prefix)}

    # ---- building --------------------------------------------------------------
    def _build_model(self, meta: dict[str, Any]) -> Sequential:
        spec = self.model
        if spec is None:
            raise ValueError(f"{type(self).__name__} needs model=: a Sequential or a callable "
                             "returning one")
        if isinstance(spec, Sequential):
            return _fresh_copy(spec, spec.seed if self.random_state is None
                               else self.random_state)
        if not callable(spec):
            raise TypeError(f"model must be a Sequential or a callable returning one, got "
                            f"{type(spec).__name__}")
        kwargs = self._routed_params("model__")
        try:
            sig = inspect.signature(spec).parameters
        except (TypeError, ValueError):
            sig = {}
        takes_all = any(p.kind is p.VAR_KEYWORD for p in sig.values())
        for k, v in {**meta, "meta": meta}.items():
            if (k in sig or (takes_all and k != "meta")) and k not in kwargs:
                kwargs[k] = v
        built = spec(**kwargs)
        if not isinstance(built, Sequential):
            raise TypeError(f"model() must return a fastnn.Sequential, got "
                            f"{type(built).__name__}")
        if self.random_state is not None:
            built = _fresh_copy(built, self.random_state)
        return built

    def _optimizer(self, model: Sequential) -> Any:
        opt = self.optimizer
        kwargs = self._routed_params("optimizer__")
        if opt is None and model.optimizer is not None:
            opt = type(model.optimizer)
            kwargs = {**model.optimizer.get_config(), **kwargs}
        if isinstance(opt, str):
            opt = type(_optim.get_optimizer(opt))
        if isinstance(opt, _optim.Optimizer):  # never share state between fits
            kwargs = {**opt.get_config(), **kwargs}
            opt = type(opt)
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        return opt(**kwargs)

    def _fit(self, model: Sequential, X: Any, targets: np.ndarray, loss: Any,
             sample_weight: Any) -> _SequentialEstimator:
        model.compile(self._optimizer(model), loss, metrics=self.metrics)
        hist = model.fit(X, targets, epochs=self.epochs, batch_size=self.batch_size,
                         shuffle=self.shuffle, validation_split=self.validation_split,
                         callbacks=self.callbacks, verbose=self.verbose,
                         sample_weight=sample_weight, **self._routed_params("fit__"))
        self.model_ = model
        self.history_ = hist.history
        return self

    def _check_X(self, X: Any) -> np.ndarray:
        X = check_array(X, allow_nd=True, dtype=[np.float32, np.float64])
        if hasattr(self, "n_features_in_") and X.ndim == 2 and X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input")
        return X

    def _loss_for(self, model_loss: Any, default: str) -> Any:
        if self.loss is not None:
            return self.loss
        if isinstance(self.model, Sequential) and self.model.loss is not None:
            return self.model.loss.name
        return model_loss or default


def _fresh_copy(model: Sequential, seed: int | None) -> Sequential:
    """The same architecture with freshly drawn weights (seeded by ``seed``)."""
    layers = []
    for layer in model.layers:
        cfg = dict(layer.get_config())
        trainable = cfg.pop("trainable", True)
        if callable(getattr(layer, "init", None)):
            cfg["init"] = layer.init
        new = _layers.LAYER_TYPES[type(layer).__name__](**cfg)
        new.trainable = trainable
        layers.append(new)
    return Sequential(layers, dtype=model.dtype, seed=seed, input_shape=model.input_shape,
                      name=model.name)


class SequentialClassifier(ClassifierMixin, _SequentialEstimator):
    """A scikit-learn classifier training a fastnn Sequential.

    Labels of any type are encoded to ``classes_``; the default loss is
    ``binary_cross_entropy`` for a network with one output, else ``cross_entropy``.
    ``predict_proba`` gives (n, n_classes) probabilities whatever the output layer
    (logits, a sigmoid or a softmax).  See the module docstring for the parameters.
    """

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SequentialClassifier:
        """Build a fresh network, compile it and train it on (X, y)."""
        from sklearn.utils.multiclass import check_classification_targets

        self._check_params(X, y, sample_weight)
        X = check_array(X, allow_nd=True, dtype=[np.float32, np.float64])
        y = column_or_1d(y, warn=True)  # (n, 1) accepted with scikit-learn's warning
        check_classification_targets(y)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y must be 1-D labels, one per row of X; got shape {y.shape}")
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        if X.ndim == 2:
            self.n_features_in_ = X.shape[1]
        meta = {"n_features_in": X.shape[1] if X.ndim == 2 else tuple(X.shape[1:]),
                "n_classes": len(self.classes_)}
        model = self._build_model(meta)
        width = int(np.prod(model.output_shape)) if model.output_shape else None
        loss = self._loss_for(None, "binary_cross_entropy" if width == 1 else "cross_entropy")
        name = loss if isinstance(loss, str) else getattr(loss, "name", "")
        if name in ("binary_cross_entropy", "binary_crossentropy"):
            if len(self.classes_) > 2:
                raise ValueError(f"binary_cross_entropy with one output needs 2 classes, got "
                                 f"{len(self.classes_)}")
            targets = y_enc.astype(np.float64).reshape(-1, 1)
        else:
            targets = y_enc
        return self._fit(model, X, targets, loss, sample_weight)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, (n, n_classes)."""
        check_is_fitted(self, "model_")
        m = self.model_
        p = to_probabilities(m.predict(self._check_X(X)), m.loss.name,
                             getattr(m.layers[-1], "activation", "identity"))
        if p.ndim == 2 and p.shape[1] == 1:
            p = np.hstack([1.0 - p, p])
        return p

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row, in the labels' own type."""
        check_is_fitted(self, "model_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class SequentialRegressor(RegressorMixin, _SequentialEstimator):
    """A scikit-learn regressor training a fastnn Sequential (default loss "mse").

    ``y`` of shape (n,) is trained against one output and predicted as (n,).  See
    the module docstring for the parameters.
    """

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SequentialRegressor:
        """Build a fresh network, compile it and train it on (X, y)."""
        self._check_params(X, y, sample_weight)
        X = check_array(X, allow_nd=True, dtype=[np.float32, np.float64])
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == 1:  # as scikit-learn's MLPRegressor: warn, use 1-D
            y = column_or_1d(y, warn=True)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} rows, X has {X.shape[0]}")
        self._y_1d = y.ndim == 1
        targets = y.reshape(-1, 1) if y.ndim == 1 else y
        if X.ndim == 2:
            self.n_features_in_ = X.shape[1]
        meta = {"n_features_in": X.shape[1] if X.ndim == 2 else tuple(X.shape[1:]),
                "n_outputs": targets.shape[1]}
        return self._fit(self._build_model(meta), X, targets, self._loss_for(None, "mse"),
                         sample_weight)

    def predict(self, X: Any) -> np.ndarray:
        """The network's outputs ((n,) for a 1-D y)."""
        check_is_fitted(self, "model_")
        out = self.model_.predict(self._check_X(X))
        return out.reshape(-1) if self._y_1d and out.ndim == 2 and out.shape[1] == 1 else out


__all__ = ["SequentialClassifier", "SequentialRegressor"]
