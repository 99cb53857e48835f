"""The estimators' shared machinery: parameter checks, the fastnn model behind
``coefs_`` / ``intercepts_``, fitting's entry point, prediction and pickling.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import _check_sample_weight, validate_data

from .. import _config
from ..layers import Dense, Dropout
from ..model import Sequential
from ..optim import SGD, Adam
from ._solvers import _SolversMixin

_STOCHASTIC_SOLVERS = ("sgd", "adam")
_HIDDEN_ACT = {"identity": None, "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_PREDICT_CHUNK = 4096


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


class _BaseMLP(_SolversMixin, BaseEstimator):
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
            if name == "dtype" and v is None:
                continue
            if name == "dtype" and not isinstance(v, str):
                try:
                    v = np.dtype(v).name
                except TypeError:
                    raise bad(name, f"None or a str among {sorted(opts)}") from None
            if not isinstance(v, str) or v not in opts:
                raise bad(name, f"{'None or ' if name == 'dtype' else ''}a str among "
                                f"{sorted(opts)}")
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
        v = self.matmul_precision
        if v is not None and v not in ("float32", "bf16"):
            raise bad("matmul_precision", "None, 'float32' or 'bf16'")
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
        """The model's dtype: fixed by the fit (see :meth:`_fit_dtype_for`)."""
        dt = self.__dict__.get("_fit_dtype")
        if dt is None:  # before a fit, or a pickle of an older version
            coefs = self.__dict__.get("coefs_")
            dt = np.asarray(coefs[0]).dtype if coefs else np.dtype(self.dtype or np.float64)
        return np.dtype(dt)

    def _fit_dtype_for(self, X: Any) -> np.dtype:
        """scikit-learn's rule: float32 X trains in float32, any other X in float64;
        an explicit ``dtype`` parameter overrides it.
        """
        if self.dtype is not None:
            return np.dtype(self.dtype)
        return np.dtype(np.float32 if X.dtype == np.float32 else np.float64)

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
        """Attach ``opt`` to the model's flat buffers: one range, so one fused C update per
        step (scikit-learn's L2 term, on the weights only, is added to the gradient by
        the solver's gradient hook, not by the optimizer).
        """
        model = self._model
        opt.set_param_groups([])
        opt.setup(model.parameters(), model.gradients(), model.trainable_ranges())
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
        self._best_flat = self._model.parameters().copy()
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

    # ---- fitting -------------------------------------------------------------------
    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False):
        hls = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if first_pass or self.dtype is not None:
            self._fit_dtype = self._fit_dtype_for(X)  # else: continue in the model's dtype
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
        with _config.threads(self.n_threads), _config.matmul_precision(self.matmul_precision):
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
        """Output activations (n, n_outputs) for validated X, in the model's dtype or
        X's when that is wider (float64 X on a float32 model), as scikit-learn's NumPy
        arithmetic gives.
        """
        model = self._ensure_model()
        Xd = self._as_model_input(X)
        n = Xd.shape[0]
        out = np.empty((n, self.n_outputs_), np.result_type(model.dtype, X.dtype))
        buf = None
        with _config.threads(self.n_threads), _config.matmul_precision(self.matmul_precision):
            for s in range(0, n, _PREDICT_CHUNK):
                e = min(s + _PREDICT_CHUNK, n)
                if sp.issparse(Xd):
                    if buf is None:
                        buf = np.empty((min(_PREDICT_CHUNK, n), Xd.shape[1]), self._dtype)
                    xb = self._batch(Xd, slice(s, e), buf)
                else:
                    xb = Xd[s:e]
                out[s:e] = model.trainer.forward(xb, training=False)
        act = self.out_activation_
        with np.errstate(over="ignore"):  # exp(-z) = inf for a very negative z: sigmoid 0
            self._output_activation(out, act)
        return out

    @staticmethod
    def _output_activation(out: np.ndarray, act: str) -> None:
        """The output activation, in place on ``out`` (n, n_outputs)."""
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
