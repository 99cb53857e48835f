"""scikit-learn drop-in replacements for ``MLPClassifier`` and ``MLPRegressor``.

Change one import and keep every parameter::

    # from sklearn.neural_network import MLPClassifier
    from fastnn.sklearn import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=50).fit(X, y)

The estimators take scikit-learn's parameters with the same meaning and
defaults, expose the same fitted attributes (``coefs_``, ``intercepts_``,
``loss_``, ``loss_curve_``, ``best_loss_``, ``validation_scores_``,
``best_validation_score_``, ``n_iter_``, ``n_layers_``, ``n_outputs_``,
``classes_``, ``out_activation_``, ``t_``, ``n_features_in_``,
``feature_names_in_``) and follow the same training algorithm (initialization,
mini-batches and their shuffling, the per-batch loss with its L2 term
``alpha / (2 * sum(sample_weight of the batch)) * ||W||^2``, the tol /
n_iter_no_change convergence rule, ``'adaptive'`` learning rate divided by 5,
early stopping on a held-out validation split with the best weights restored).
With ``dtype="float64"`` and the same ``random_state`` a fit reproduces
scikit-learn's run up to float rounding.  The work is done by fastnn's fused C
kernels on one flat parameter buffer, several times faster than scikit-learn.

Extras (fastnn only): ``dropout`` (inverted dropout after every hidden layer,
stochastic solvers only), ``n_threads`` (threads for this estimator's fit and
predict; default: fastnn's global setting) and ``dtype`` (``"float32"``, the
default, or ``"float64"``).

Differences from scikit-learn, all deliberate:

* Computation is in ``dtype`` (float32 by default) whatever the dtype of X;
  scikit-learn computes in X's dtype.  Probabilities and regression outputs
  are returned as float64.
* Early stopping's validation split is stratified for every single-label
  classification target (scikit-learn's documentation promises a stratified
  split but its code only stratifies binary targets).
* ``solver='sgd'`` runs torch-style SGD (fastnn's fused kernel) whose momentum
  buffer holds raw gradients where scikit-learn's velocity holds
  learning-rate-scaled steps.  With a constant learning rate the two are the
  same algorithm; when the learning rate changes ('invscaling', 'adaptive')
  the buffer is rescaled by ``lr_old / lr_new`` so the updates stay identical.
* ``solver='adam'`` uses fastnn's (torch-style) Adam with its epsilon set every
  step to ``epsilon / sqrt(1 - beta_2**t)``, which makes the update exactly
  scikit-learn's ``-lr_t * m / (sqrt(v) + epsilon)``.
* A mini-batch whose sample weights sum to zero is skipped (scikit-learn
  would divide by zero).
* The multiclass log-loss is computed from the logits (log-sum-exp) instead of
  clipped probabilities, so ``loss_`` can differ when a probability underflows
  ``2.2e-16``.

Pickling stores the weights and optimizer state as NumPy arrays and rebuilds
the fastnn model on load; no C object is pickled.

scikit-learn is imported by this module only: ``import fastnn`` never imports it.
"""

from __future__ import annotations

import math
import numbers
import warnings
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from scipy.special import xlogy
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils import shuffle as _sk_shuffle
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from . import _config
from . import _kernels as _k
from .layers import Dense, Dropout
from .model import Sequential
from .optim import SGD, Adam

__all__ = ["MLPClassifier", "MLPRegressor"]

_STOCHASTIC_SOLVERS = ("sgd", "adam")
_HIDDEN_ACT = {"identity": None, "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_PREDICT_CHUNK = 4096


@contextmanager
def _threads(n: int | None):
    """Run with ``n`` fastnn threads (None: leave the global setting alone)."""
    if n is None:
        yield
        return
    prev = _config._num_threads
    _config.set_num_threads(n)
    try:
        yield
    finally:
        _config._num_threads = prev


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_partial_fit_first_call(clf: Any, classes: Any) -> bool:
    """As scikit-learn's helper: set ``classes_`` on the first partial_fit call."""
    if getattr(clf, "classes_", None) is None and classes is None:
        raise ValueError("classes must be passed on the first call to partial_fit.")
    if classes is not None:
        if getattr(clf, "classes_", None) is not None:
            if not np.array_equal(clf.classes_, unique_labels(classes)):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call "
                                 f"to partial_fit, was: {clf.classes_!r}")
        else:
            clf.classes_ = unique_labels(classes)
            return True
    return False


class _BaseMLP(BaseEstimator):
    """Shared machinery of :class:`MLPClassifier` and :class:`MLPRegressor`."""

    _is_clf = False

    # ---- parameters --------------------------------------------------------------
    def _check_params(self) -> list[int]:
        """Validate the hyper-parameters (before any state changes); hidden sizes as a list."""
        def bad(name: str, expected: str) -> ValueError:
            return ValueError(f"The '{name}' parameter of {type(self).__name__} must be "
                              f"{expected}. Got {getattr(self, name)!r} instead.")

        hls = self.hidden_layer_sizes
        if _is_int(hls):
            hls = [hls]
        else:
            try:
                hls = list(hls)
            except TypeError:
                raise bad("hidden_layer_sizes", "an int >= 1 or an array-like of ints") from None
        if not all(_is_int(h) for h in hls):
            raise bad("hidden_layer_sizes", "an int >= 1 or an array-like of ints")
        if any(h <= 0 for h in hls):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hls}.")
        options = {"activation": set(_HIDDEN_ACT), "solver": {"lbfgs", "sgd", "adam"},
                   "learning_rate": {"constant", "invscaling", "adaptive"},
                   "dtype": {"float32", "float64"}}
        if not self._is_clf:
            options["loss"] = {"squared_error", "poisson"}
        for name, opts in options.items():
            v = getattr(self, name)
            if name == "dtype" and not isinstance(v, str):
                try:
                    v = np.dtype(v).name
                except TypeError:
                    raise bad(name, f"a str among {sorted(opts)}") from None
            if not isinstance(v, str) or v not in opts:
                raise bad(name, f"a str among {sorted(opts)}")
        reals = {"alpha": (0, None, True), "learning_rate_init": (0, None, False),
                 "power_t": (0, None, True), "tol": (0, None, True), "epsilon": (0, None, False)}
        for name, (lo, _, closed) in reals.items():
            v = getattr(self, name)
            if not _is_real(v) or not (v >= lo if closed else v > lo) or not math.isfinite(v):
                raise bad(name, f"a float in {'[' if closed else '('}{lo}, inf)")
        for name, lo, hi, hi_closed in (("momentum", 0, 1, True),
                                        ("validation_fraction", 0, 1, False),
                                        ("beta_1", 0, 1, False), ("beta_2", 0, 1, False),
                                        ("dropout", 0, 1, False)):
            v = getattr(self, name)
            if not _is_real(v) or not (lo <= v and (v <= hi if hi_closed else v < hi)):
                raise bad(name, f"a float in [{lo}, {hi}{']' if hi_closed else ')'}")
        for name in ("max_iter", "max_fun"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise bad(name, "an int in the range [1, inf)")
        v = self.n_iter_no_change
        if not ((_is_int(v) and v >= 1) or (_is_real(v) and v == np.inf)):
            raise bad("n_iter_no_change", "an int in the range [1, inf) or inf")
        v = self.batch_size
        if not (v == "auto" if isinstance(v, str) else (_is_int(v) and v >= 1)):
            raise bad("batch_size", "'auto' or an int in the range [1, inf)")
        v = self.n_threads
        if v is not None and not (_is_int(v) and v >= 1):
            raise bad("n_threads", "None or an int in the range [1, inf)")
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise bad(name, "a bool")
        if not (isinstance(self.verbose, bool | np.bool_) or _is_int(self.verbose)):
            raise bad("verbose", "a bool or an int")
        if self.random_state is not None and not (
                _is_int(self.random_state) or isinstance(self.random_state, np.random.RandomState)):
            raise bad("random_state", "None, an int or a numpy.random.RandomState")
        if self.dropout > 0 and self.solver == "lbfgs":
            raise ValueError("dropout > 0 needs a stochastic solver ('sgd' or 'adam'); "
                             "solver='lbfgs' minimizes a deterministic objective")
        return hls

    @property
    def _dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    # ---- the fastnn model ------------------------------------------------------
    def _make_model(self, layer_units: list[int], dtype: np.dtype, seed: int) -> Sequential:
        act = _HIDDEN_ACT[self.activation]
        layers: list[Any] = []
        last = len(layer_units) - 2
        for i in range(last + 1):
            layers.append(Dense(layer_units[i], layer_units[i + 1],
                                activation=act if i < last else None, init="zeros"))
            if i < last and self.dropout > 0:
                layers.append(Dropout(self.dropout))
        return Sequential(layers, dtype=dtype, seed=seed)

    def _dense_layers(self) -> list[Dense]:
        return [x for x in self._model.layers if isinstance(x, Dense)]

    def _bind_attributes(self) -> None:
        """Make ``coefs_`` / ``intercepts_`` views of the model's parameters."""
        dense = self._dense_layers()
        self.coefs_ = [x.weight for x in dense]
        self.intercepts_ = [x.bias for x in dense]

    def _in_sync(self) -> bool:
        model = self.__dict__.get("_model")
        if model is None:
            return False
        dense = self._dense_layers()
        act = _HIDDEN_ACT[self.activation] or "identity"
        drops = [x.p for x in model.layers if isinstance(x, Dropout)]
        # hyper-parameters changed by set_params before a warm start / partial_fit
        # (scikit-learn reads activation at every forward pass; so does this check)
        if (model.dtype != self._dtype or any(x.activation != act for x in dense[:-1])
                or drops != [self.dropout] * (len(dense) - 1 if self.dropout > 0 else 0)):
            return False
        return (len(dense) == len(self.coefs_) == len(self.intercepts_)
                and all(c is x.weight and b is x.bias
                        for c, b, x in zip(self.coefs_, self.intercepts_, dense)))

    def _ensure_model(self) -> Sequential:
        """The fastnn model holding ``coefs_``/``intercepts_`` (rebuilt after unpickling or
        after the user assigned new arrays to those attributes).
        """
        if self._in_sync():
            return self._model
        coefs = [np.asarray(c) for c in self.coefs_]
        inters = [np.asarray(b) for b in self.intercepts_]
        units = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        for i, (c, b) in enumerate(zip(coefs, inters)):
            if c.ndim != 2 or c.shape[0] != units[i] or b.shape != (c.shape[1],):
                raise ValueError(f"coefs_[{i}] / intercepts_[{i}] have inconsistent shapes "
                                 f"{c.shape} / {b.shape}")
        old = self.__dict__.get("_model")
        seed = self.__dict__.get("_model_seed", 0)
        model = self._make_model(units, self._dtype, seed)
        dense = [x for x in model.layers if isinstance(x, Dense)]
        for x, c, b in zip(dense, coefs, inters):
            x.weight = c
            x.bias = b
        drop_state = self.__dict__.pop("_dropout_state", None)
        if old is not None:
            drop_state = [x.state() for x in old.layers if isinstance(x, Dropout)]
        if drop_state:
            for x, st in zip([x for x in model.layers if isinstance(x, Dropout)], drop_state):
                x.set_state(st)
        self._model = model
        self._bind_attributes()
        opt = self.__dict__.get("_opt")
        saved = self.__dict__.pop("_opt_saved", None)
        if opt is None and saved is not None:
            kind, cfg, sd = saved
            opt = (SGD if kind == "SGD" else Adam)(**cfg)
            self._attach_optimizer(opt)
            try:
                opt.load_state_dict(sd)
            except ValueError:  # shapes changed: start the optimizer afresh
                self._attach_optimizer(opt.__class__(**cfg))
        elif opt is not None:
            self._attach_optimizer(opt)
        return model

    def _attach_optimizer(self, opt: Any) -> None:
        model = self._model
        opt.setup(model._flat_params, model._flat_grads, list(model._ranges))
        self._opt = opt

    def _initialize(self, y: np.ndarray, layer_units: list[int], rs: np.random.RandomState) -> None:
        """First fit: attributes, model and scikit-learn's initial weights (same draws)."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not self._is_clf:
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        dtype = self._dtype
        inits = []
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            inits.append((rs.uniform(-bound, bound, (fan_in, fan_out)),
                          rs.uniform(-bound, bound, fan_out)))
        self._model_seed = int(rs.randint(2**31 - 1)) if self.dropout > 0 else 0
        self._model = self._make_model(layer_units, dtype, self._model_seed)
        for x, (c, b) in zip(self._dense_layers(), inits):
            x.weight = c
            x.bias = b
        self._bind_attributes()
        self._opt = None
        self._best_flat = self._model._flat_params.copy()
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    # ---- loss ----------------------------------------------------------------------
    @property
    def _loss_kind(self) -> str:
        if not self._is_clf:
            return "poisson" if self.out_activation_ == "exp" else "mse"
        return "ce" if self.out_activation_ == "softmax" else "bce"

    def _prepare_targets(self, y: np.ndarray) -> np.ndarray:
        """Targets in the form the loss kernel takes (int labels for softmax)."""
        if self._loss_kind == "ce":
            return np.ascontiguousarray(np.argmax(y, axis=1), dtype=np.int64)
        return np.ascontiguousarray(y, dtype=self._dtype)

    def _loss_grad(self, out: np.ndarray, yb: np.ndarray, g: np.ndarray,
                   swb: np.ndarray | None, sw_sum: float) -> float:
        """scikit-learn's batch loss (without the L2 term) of ``out``; dL/dout into ``g``.

        The gradient is scikit-learn's delta / sum(weights): ``(act(out) - y) * w_i / sw_sum``.
        """
        kind = self._loss_kind
        m, k = out.shape
        spec = _SPEC[out.dtype]
        if kind == "ce":
            loss = _k.cross_entropy[spec](g, out, yb, None)
        elif kind == "bce":
            loss = _k.bce_logits[spec](g.reshape(-1), out.reshape(-1), yb.reshape(-1)) * k
            if k != 1:
                g *= k
        elif kind == "mse":
            loss = 0.5 * _k.mse[spec](g.reshape(-1), out.reshape(-1), yb.reshape(-1))
            g *= 0.5 * k
        else:  # poisson, log link
            z = out.astype(np.float64)
            p = np.exp(z)
            yy = yb.astype(np.float64)
            per = (xlogy(yy, yy / p) - yy + p).sum(axis=1)
            loss = float(per.mean())
            g[...] = (p - yy) / m
        if swb is None:
            return float(loss)
        g *= (swb * (m / sw_sum)).astype(g.dtype)[:, None]
        return float(np.dot(self._per_sample_loss(out, yb), swb) / sw_sum)

    def _per_sample_loss(self, out: np.ndarray, yb: np.ndarray) -> np.ndarray:
        kind = self._loss_kind
        z = out.astype(np.float64)
        if kind == "ce":
            zmax = z.max(axis=1)
            lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))
            return lse - z[np.arange(len(z)), yb]
        yy = yb.astype(np.float64)
        if kind == "bce":
            return (np.logaddexp(0.0, z) - yy * z).sum(axis=1)
        if kind == "mse":
            return 0.5 * ((z - yy) ** 2).mean(axis=1)
        p = np.exp(z)
        return (xlogy(yy, yy / p) - yy + p).sum(axis=1)

    def _weight_sq_norm(self) -> float:
        return float(sum(np.dot(w.ravel(), w.ravel()) for w in self.coefs_))

    # ---- fitting -------------------------------------------------------------------
    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False):
        hls = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        n_samples, n_features = X.shape
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        layer_units = [n_features, *hls, y.shape[1]]
        rs = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, rs)
        else:
            self._ensure_model()
            expected = [c.shape[0] for c in self.coefs_] + [self.coefs_[-1].shape[1]]
            if expected != layer_units:
                raise ValueError(f"warm_start / partial_fit needs the same layer sizes as the "
                                 f"previous fit: {expected}, got {layer_units} (check "
                                 f"hidden_layer_sizes and the number of outputs)")
        with _threads(self.n_threads):
            if self.solver in _STOCHASTIC_SOLVERS:
                self._fit_stochastic(X, y, sample_weight, incremental, rs)
            else:
                self._fit_lbfgs(X, y, sample_weight)
        if not all(np.isfinite(w).all() for w in (*self.coefs_, *self.intercepts_)):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _as_model_input(self, X: Any) -> Any:
        """X in the model's dtype: dense C-contiguous, or CSR (densified per batch)."""
        if sp.issparse(X):
            return X.tocsr()
        return np.ascontiguousarray(X, dtype=self._dtype)

    def _batch(self, X: Any, idx: Any, buf: np.ndarray) -> np.ndarray:
        m = len(idx) if not isinstance(idx, slice) else idx.stop - idx.start
        if sp.issparse(X):
            out = buf[:m]
            out[...] = X[idx].toarray()
            return out
        if isinstance(idx, slice):
            return X[idx]
        return np.take(X, idx, axis=0, out=buf[:m])

    def _new_optimizer(self) -> Any:
        if self.solver == "sgd":
            return SGD(lr=self.learning_rate_init, momentum=self.momentum,
                       nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)
        return Adam(lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                    eps=self.epsilon)

    def _set_lr(self, lr: float) -> None:
        """Change the SGD learning rate, rescaling the momentum buffer so that the next
        update equals scikit-learn's (its velocity holds lr-scaled steps).
        """
        opt = self._opt
        buf = opt.state.get("momentum_buffer")
        if buf is not None and lr > 0 and opt.lr != lr:
            buf *= opt.lr / lr
        opt.lr = lr

    def _fit_stochastic(self, X, y, sample_weight, incremental, rs):
        model = self._model
        if not incremental or self.__dict__.get("_opt") is None:
            self._attach_optimizer(self._new_optimizer())
        opt = self._opt
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            stratify = None
            if self._is_clf and self._label_binarizer.y_type_ in ("binary", "multiclass"):
                stratify = y if y.shape[1] == 1 else np.argmax(y, axis=1)
            arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
            parts = train_test_split(*arrays, random_state=rs,
                                     test_size=self.validation_fraction, stratify=stratify)
            X_train, X_val, y_train, y_val = parts[:4]
            sw_train, sw_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            if self._is_clf:
                y_val = self._label_binarizer.inverse_transform(y_val)
            X_val = self._as_model_input(X_val)
        else:
            X_train, y_train, sw_train = X, y, sample_weight
            X_val = y_val = sw_val = None

        n_samples = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped", stacklevel=4)
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        dtype = self._dtype
        Xt = self._as_model_input(X_train)
        Yt = self._prepare_targets(y_train)
        sw = None if sw_train is None else np.ascontiguousarray(sw_train, dtype=np.float64)
        xbuf = np.empty((batch_size, Xt.shape[1]), dtype)
        ybuf = np.empty((batch_size, *Yt.shape[1:]), Yt.dtype)
        gbufs: dict[int, np.ndarray] = {}
        dense = self._dense_layers()
        alpha = float(self.alpha)
        sample_idx = np.arange(n_samples, dtype=int)
        is_adam = self.solver == "adam"
        eps0, beta_2 = float(self.epsilon), float(self.beta_2)
        n_out = self.n_outputs_

        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = _sk_shuffle(sample_idx, random_state=rs)
                accumulated_loss = 0.0
                for start in range(0, n_samples, batch_size):
                    stop = min(start + batch_size, n_samples)
                    m = stop - start
                    if self.shuffle:
                        idx = sample_idx[start:stop]
                        xb = self._batch(Xt, idx, xbuf)
                        yb = np.take(Yt, idx, axis=0, out=ybuf[:m])
                        swb = None if sw is None else sw[idx]
                    else:
                        xb = self._batch(Xt, slice(start, stop), xbuf)
                        yb = Yt[start:stop]
                        swb = None if sw is None else sw[start:stop]
                    sw_sum = float(m) if swb is None else float(swb.sum())
                    if sw_sum <= 0:
                        continue
                    out = model._forward(xb, True)
                    g = gbufs.get(m)
                    if g is None:
                        g = gbufs[m] = np.empty((m, n_out), dtype)
                    loss = self._loss_grad(out, yb, g, swb, sw_sum)
                    model._backward(g)
                    if alpha:
                        wd = alpha / sw_sum
                        loss += 0.5 * wd * self._weight_sq_norm()
                        # The optimizer adds wd * param to every gradient in its fused pass;
                        # intercepts carry no L2 penalty, so pre-subtract their share.
                        for x in dense:
                            x.grads[1] -= wd * x.params[1]
                        opt.weight_decay = wd
                    else:
                        opt.weight_decay = 0.0
                    if is_adam:
                        opt.eps = eps0 / math.sqrt(1.0 - beta_2 ** (opt.step_count + 1))
                    opt.step()
                    model.step += 1
                    accumulated_loss += loss * m

                self.n_iter_ += 1
                self.loss_ = accumulated_loss / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                model.epoch += 1
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    self._set_lr(float(self.learning_rate_init)
                                 / (self.t_ + 1) ** self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = (f"Validation score did not improve more than tol={self.tol:f}"
                               f" for {self.n_iter_no_change} consecutive epochs.")
                    else:
                        msg = (f"Training loss did not improve more than tol={self.tol:f}"
                               f" for {self.n_iter_no_change} consecutive epochs.")
                    if self._trigger_stopping(msg):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter})"
                                  " reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning, stacklevel=4)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)

        if early_stopping:
            model._flat_params[...] = self._best_flat

    def _trigger_stopping(self, msg: str) -> bool:
        if not (self.solver == "sgd" and self.learning_rate == "adaptive"):
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._opt.lr <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._set_lr(self._opt.lr / 5.0)
        if self.verbose:
            print(msg + f" Setting learning rate to {self._opt.lr:f}")
        return False

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, sw_val):
        if early_stopping:
            score = self._score_raw(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_flat = self._model._flat_params.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _fit_lbfgs(self, X, y, sample_weight):
        model = self._model
        Xd = self._as_model_input(X)
        if sp.issparse(Xd):
            Xd = np.ascontiguousarray(Xd.toarray(), dtype=self._dtype)
        Y = self._prepare_targets(y)
        sw = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        sw_sum = float(X.shape[0]) if sw is None else float(sw.sum())
        alpha = float(self.alpha)
        flat_p, flat_g = model._flat_params, model._flat_grads
        dense = self._dense_layers()
        g = np.empty((X.shape[0], self.n_outputs_), self._dtype)

        def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
            flat_p[...] = w
            out = model._forward(Xd, False)
            loss = self._loss_grad(out, Y, g, sw, sw_sum)
            model._backward(g)
            if alpha:
                loss += 0.5 * alpha * self._weight_sq_norm() / sw_sum
                for x in dense:
                    x.grads[0] += (alpha / sw_sum) * x.params[0]
            return loss, flat_g.astype(np.float64)

        res = scipy.optimize.minimize(
            fun, flat_p.astype(np.float64), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        if res.status != 0:
            warnings.warn(
                f"lbfgs failed to converge after {res.nit} iteration(s) (status={res.status}):"
                f"\n{res.message}\n\nIncrease the number of iterations to improve the "
                f"convergence (max_iter={self.max_iter}).\nYou might also want to scale the "
                "data as shown in:\n    https://scikit-learn.org/stable/modules/"
                "preprocessing.html", ConvergenceWarning, stacklevel=4)
        self.n_iter_ = min(int(res.nit), self.max_iter)
        if self.verbose:
            print(f"L-BFGS-B: {res.nit} iterations, loss = {res.fun:.8f}")
        self.loss_ = float(res.fun)
        flat_p[...] = res.x

    def fit(self, X: Any, y: Any, sample_weight: Any = None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classification, multilabel indicator rows allowed) or
            real targets (regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the loss (scikit-learn >= 1.7 semantics).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    # ---- prediction ------------------------------------------------------------------
    def _forward_raw(self, X: Any) -> np.ndarray:
        """Output activations (float64, (n, n_outputs)) for validated X."""
        model = self._ensure_model()
        Xd = self._as_model_input(X)
        n = Xd.shape[0]
        out = np.empty((n, self.n_outputs_), np.float64)
        buf = None
        with _threads(self.n_threads):
            for s in range(0, n, _PREDICT_CHUNK):
                e = min(s + _PREDICT_CHUNK, n)
                if sp.issparse(Xd):
                    if buf is None:
                        buf = np.empty((min(_PREDICT_CHUNK, n), Xd.shape[1]), self._dtype)
                    xb = self._batch(Xd, slice(s, e), buf)
                else:
                    xb = Xd[s:e]
                out[s:e] = model._forward(xb, False)
        act = self.out_activation_
        if act == "softmax":
            out -= out.max(axis=1, keepdims=True)
            np.exp(out, out=out)
            out /= out.sum(axis=1, keepdims=True)
        elif act == "logistic":
            # 1 / (1 + exp(-z)), stable for large |z|
            np.negative(out, out=out)
            np.exp(out, out=out)
            out += 1.0
            np.reciprocal(out, out=out)
        elif act == "exp":
            np.exp(out, out=out)
        return out

    def _forward_pass_fast(self, X: Any, check_input: bool = True) -> np.ndarray:
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                              dtype=(np.float64, np.float32))
        return self._forward_raw(X)

    def _score_raw(self, X, y, sample_weight):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        fn = accuracy_score if self._is_clf else r2_score
        return fn(y, y_pred, sample_weight=sample_weight)

    # ---- pickling --------------------------------------------------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_model", None)
        opt = state.pop("_opt", None)
        if "coefs_" in state:
            state["coefs_"] = [np.array(c) for c in state["coefs_"]]
            state["intercepts_"] = [np.array(b) for b in state["intercepts_"]]
        model = self.__dict__.get("_model")
        if model is not None:
            state["_dropout_state"] = [x.state() for x in model.layers
                                       if isinstance(x, Dropout)]
        if opt is not None:
            state["_opt_saved"] = (type(opt).__name__, opt.get_config(), opt.state_dict())
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._model = None
        self._opt = None
        if "coefs_" in self.__dict__:
            self._ensure_model()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastnn: scikit-learn's
    :class:`sklearn.neural_network.MLPClassifier`, several times faster.

    Every parameter has scikit-learn's name, default and meaning (see its
    documentation); the module docstring lists the few documented differences.
    Multiclass targets get a softmax output, binary and multilabel (indicator
    matrix) targets a logistic one.

    Parameters
    ----------
    hidden_layer_sizes : int or array-like of int, default=(100,)
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        'lbfgs' runs scipy's L-BFGS-B on fastnn's full-batch loss and gradient.
    alpha : float, default=1e-4
        L2 penalty: ``alpha / (2 * n_batch) * sum ||W||^2`` per batch (weights only).
    batch_size : int or 'auto', default='auto'  (``min(200, n_samples)``)
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
    shuffle : bool, default=True
    random_state : int, RandomState or None, default=None
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
    dropout : float, default=0.0
        fastnn extra: dropout probability after every hidden layer (stochastic solvers).
    n_threads : int or None, default=None
        fastnn extra: threads for this estimator's fit/predict (None: fastnn's setting).
    dtype : {'float32', 'float64'}, default='float32'
        fastnn extra: the precision of training and inference.

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_,
    t_, coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_,
    n_outputs_, out_activation_ : as scikit-learn's.  ``coefs_[i]`` has shape
    (n_in, n_out) and, like ``intercepts_[i]``, is a view of the fastnn model's
    parameters.
    """

    _is_clf = True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, n_threads=None, dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.n_threads = n_threads
        self.dtype = dtype

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     "classes as in the previous call to fit. Previously "
                                     f"got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. "
                                 f"`self.classes_` has {self.classes_}. 'y' has {classes}.")
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def predict(self, X):
        """Predict class labels (or label indicator rows for multilabel targets).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            Every class of the whole dataset; required on the first call.

        Returns
        -------
        self
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_proba(self, X):
        """Class probabilities (softmax or logistic of the output logits).

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float64, columns in ``classes_`` order
        """
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        y_prob = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastnn: scikit-learn's
    :class:`sklearn.neural_network.MLPRegressor`, several times faster.

    Same parameters as :class:`MLPClassifier` plus ``loss`` ({'squared_error',
    'poisson'}, default 'squared_error'; 'poisson' uses an exp output).  The
    output layer is linear (``out_activation_ = 'identity'``); multi-output
    targets (n_samples, n_outputs) are supported.
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, n_threads=None, dtype="float32"):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.n_threads = n_threads
        self.dtype = dtype

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")
        return X, y

    def predict(self, X):
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs), float64."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
