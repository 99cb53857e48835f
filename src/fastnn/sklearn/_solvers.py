"""The estimators' solvers: scikit-learn's objective as a fastnn loss, the stochastic
solvers ('sgd', 'adam') on fastnn's training engine, and 'lbfgs' through scipy.

The stochastic solvers express scikit-learn's per-batch semantics through the
engine's public means:

* a Dense-only network (no dropout) takes the engine's one-call step (``MLPPlan``:
  forward, loss, backward in one C call) for every batch: softmax, logistic and
  squared-error targets run on the C losses, whose convention (a mean over every
  output, MSE without the 1/2) is turned into scikit-learn's by two factors after the
  step (:meth:`SklearnLoss.fused_factors`; none for softmax and binary targets);
* sample weights: for softmax targets as weighted target rows
  ``w_i * onehot(y_i) * rows / sum(w)`` (:class:`_WeightedRows`), which the C
  cross-entropy of target rows turns into scikit-learn's weighted delta, so weighted
  batches take the one-call step too; for logistic / squared-error / Poisson targets
  the layer-by-layer path with the loss (:class:`SklearnLoss`) taking the weights;
* Poisson and dropout networks run layer by layer;
* full-batch float32 epochs (``batch_size >= n_samples``) sum over rows in float64
  (:meth:`_EstimatorTrainer._exact_gradients`, NumPy), so that a row of weight k and
  k copies of it give the same model -- scikit-learn's sample-weight equivalence;
* the L2 term ``alpha / (2 * sum(sample_weight of the batch)) * ||W||^2``: its
  gradient is added to the weights' gradients (not the intercepts') by a gradient
  hook, so that the optimizer updates the whole flat buffer in one C call;
* Adam's epsilon is scikit-learn's (``Adam(eps_hat=True)``);
* the epoch-end rules (loss curve, ``tol`` / ``n_iter_no_change``, the
  'invscaling' and 'adaptive' learning rates, early stopping) are a callback.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from scipy.special import xlogy
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from .. import _kernels as _k
from .._batches import ArrayBatches, Batch
from ..callbacks import Callback
from ..layers import Dense
from ..losses import Loss
from ..optim import SGD, Adam
from ..training import Trainer

_SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


class SklearnLoss(Loss):
    """scikit-learn's MLP loss of the output logits, without the L2 term.

    Parameters
    ----------
    kind : {"ce", "bce", "mse", "poisson"}
        softmax cross-entropy (integer labels), logistic (indicator rows), half squared
        error (averaged over outputs), Poisson deviance with a log link.

    Notes
    -----
    The gradient is scikit-learn's delta over the batch weight:
    ``(act(out) - y) * w_i / sum(w)``; the loss with weights is
    ``sum(w_i * loss_i) / sum(w)``.
    """

    def __init__(self, kind: str) -> None:
        self.kind_name = kind
        self.name = f"sklearn_{kind}"
        #: the one-call step computes this loss with C's convention (see :meth:`fused_factors`)
        self.fusable = kind != "poisson"

    def kind(self, y: np.ndarray) -> int:
        """The C loss of the one-call step: labels, weighted target rows, BCE or MSE."""
        if self.kind_name == "ce":
            return _k.LOSS_CE_LABELS if y.ndim == 1 else _k.LOSS_CE_ROWS
        return _k.LOSS_BCE if self.kind_name == "bce" else _k.LOSS_MSE

    def fused_factors(self, n_outputs: int) -> tuple[float, float]:
        """(loss factor, gradient factor) turning the C kernels' convention (a mean over
        every element; MSE without the 1/2) into scikit-learn's (a mean over rows).
        """
        if self.kind_name == "bce":
            return float(n_outputs), float(n_outputs)
        if self.kind_name == "mse":
            return 0.5, 0.5 * n_outputs
        return 1.0, 1.0

    def accuracy(self, out: np.ndarray, y: np.ndarray) -> None:
        """Not needed by the estimators' rules: no per-batch argmax."""
        return None

    def __call__(self, out: np.ndarray, y: np.ndarray, grad: np.ndarray,
                 sample_weight: np.ndarray | None = None) -> float:
        """The batch loss; dL/dout into ``grad``."""
        kind = self.kind_name
        m, k = out.shape
        spec = _SPEC[out.dtype]
        g = grad
        if kind == "ce" and y.ndim == 2:  # weighted rows: already sum(w) normalized
            return float(_k.cross_entropy[spec](g, out, None, y))
        if kind == "ce":
            loss = _k.cross_entropy[spec](g, out, y, None)
        elif kind == "bce":
            loss = _k.bce_logits[spec](g.reshape(-1), out.reshape(-1), y.reshape(-1)) * k
            if k != 1:
                g *= k
        elif kind == "mse":
            loss = 0.5 * _k.mse[spec](g.reshape(-1), out.reshape(-1), y.reshape(-1))
            g *= 0.5 * k
        else:  # poisson, log link
            z = out.astype(np.float64)
            p = np.exp(z)
            yy = y.astype(np.float64)
            per = (xlogy(yy, yy / p) - yy + p).sum(axis=1)
            loss = float(per.mean())
            g[...] = (p - yy) / m
        if sample_weight is None:
            return float(loss)
        sw_sum = float(sample_weight.sum())
        g *= (sample_weight * (m / sw_sum)).astype(g.dtype)[:, None]
        return float(np.dot(self.per_sample(out, y), sample_weight) / sw_sum)

    def per_sample(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Loss of every row, float64 (m,)."""
        kind = self.kind_name
        z = out.astype(np.float64)
        if kind == "ce":
            zmax = z.max(axis=1)
            lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))
            return lse - z[np.arange(len(z)), y]
        yy = y.astype(np.float64)
        if kind == "bce":
            return (np.logaddexp(0.0, z) - yy * z).sum(axis=1)
        if kind == "mse":
            return 0.5 * ((z - yy) ** 2).mean(axis=1)
        p = np.exp(z)
        return (xlogy(yy, yy / p) - yy + p).sum(axis=1)


class _EstimatorTrainer(Trainer):
    """The engine as scikit-learn runs it: a non-finite loss is an error, not a stop --
    except with early stopping (``tolerate_nonfinite``), where scikit-learn keeps the
    best validated weights: training stops and :attr:`diverged` is set.
    """

    tolerate_nonfinite = False
    diverged = False
    #: (loss, gradient) factors applied after a one-call step (SklearnLoss.fused_factors)
    factors = (1.0, 1.0)

    #: full-batch float32 training: the row sums in float64 (:meth:`_exact_gradients`)
    exact = False

    def compute_gradients(self, x: np.ndarray, y: np.ndarray,
                          sample_weight: np.ndarray | None = None, scale: float = 1.0) -> float:
        """The engine's step, in scikit-learn's convention whichever path it took."""
        if self.exact:
            self.attach()
            self.bad_gradients = False
            return self._exact_gradients(x, y, sample_weight)
        loss = super().compute_gradients(x, y, sample_weight, scale)
        lf, gf = self.factors
        if (lf != 1.0 or gf != 1.0) and sample_weight is None and scale == 1.0 \
                and math.isfinite(loss) and self.uses_fused_step():
            grads = self.model.gradients()
            np.multiply(grads, grads.dtype.type(gf), out=grads)
            loss *= lf
        return loss

    def on_nonfinite(self, loss: float) -> None:
        """Raise scikit-learn's error for a diverged fit (or record the divergence)."""
        if self.tolerate_nonfinite:
            self.diverged = True
            return
        raise ValueError("Solver produced non-finite parameter weights. The input data may"
                         " contain large values and need to be preprocessed.")


    def _exact_gradients(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> float:
        """Gradients of a Dense-only network whose sums over rows are float64.

        The forward pass is fastnn's (its rows do not depend on the other rows of the
        batch); every per-row quantity of the backward pass is the unweighted one, in
        float64; a sample weight enters only the sums over rows (``dW = A^T (w * delta)``,
        ``db``, the loss), which float64 makes independent of the order of the rows.  So a
        row of weight k and k copies of that row give the same float32 gradient (the
        sample-weight equivalence that scikit-learn's checks demand) -- for full-batch
        epochs, the only case where repeated rows and weights see the same batches.
        """
        layers = self.model.layers
        acts = [x]
        for layer in layers:
            acts.append(layer.forward(acts[-1], True))
        out = acts[-1]
        self.last_output = out
        z = out.astype(np.float64)
        kind = self.loss.kind_name
        if kind == "ce":
            zmax = z.max(axis=1, keepdims=True)
            e = np.exp(z - zmax)
            s = e.sum(axis=1, keepdims=True)
            rows = np.arange(len(z))
            per_row = (zmax[:, 0] + np.log(s[:, 0])) - z[rows, y]
            delta = e / s
            delta[rows, y] -= 1.0
        else:
            t = y.astype(np.float64)
            if kind == "bce":
                per_row = (np.logaddexp(0.0, z) - t * z).sum(axis=1)
                with np.errstate(over="ignore"):
                    delta = 1.0 / (1.0 + np.exp(-z)) - t
            elif kind == "mse":
                per_row = 0.5 * ((z - t) ** 2).mean(axis=1)
                delta = z - t
            else:  # poisson, log link
                p = np.exp(z)
                per_row = (xlogy(t, t / p) - t + p).sum(axis=1)
                delta = p - t
        total = float(len(z)) if w is None else float(np.sum(w))
        loss = float(per_row.sum() if w is None else np.dot(per_row, w)) / total
        if not np.isfinite(loss):
            return loss
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            a_in = acts[i].astype(np.float64)
            wdelta = delta if w is None else delta * w[:, None]
            layer.grads[0][...] = (a_in.T @ wdelta) / total
            if layer.use_bias:
                layer.grads[1][...] = wdelta.sum(axis=0) / total
            if i:
                delta = delta @ layer.weight.astype(np.float64).T
                a = acts[i].astype(np.float64)
                act = layers[i - 1].activation
                if act == "relu":
                    delta *= a > 0
                elif act == "tanh":
                    delta *= 1.0 - a * a
                elif act == "sigmoid":
                    delta *= a * (1.0 - a)
        if not _k.all_finite[_SPEC[self.model.gradients().dtype]](self.model.gradients()):
            self.bad_gradients = True
            return math.nan
        return loss


class _WeightedRows:
    """A batch source for softmax targets with sample weights, so that weighted batches
    take the one-call step too: ``inner`` yields target rows ``w_i * onehot(y_i)`` with
    their weights; each batch's rows are scaled by ``rows / sum(w)`` into a reused buffer
    (the C cross-entropy of rows ``t`` has the gradient ``(softmax * sum(t) - t) / rows``
    = ``w_i (p_i - y_i) / sum(w)``, scikit-learn's delta).  A batch whose weights sum to
    zero is skipped; :attr:`weight` is the last batch's sum of weights.
    """

    def __init__(self, inner: ArrayBatches) -> None:
        self.inner = inner
        self.n_samples = inner.n_samples
        self.weight = 0.0
        self._buf = np.empty((inner.batch_size, *inner.y.shape[1:]), inner.y.dtype)

    def batches(self, epoch: int):
        """The inner batches with normalized target rows and no weight array."""
        for b in self.inner.batches(epoch):
            m = b.x.shape[0]
            total = float(b.w.sum())
            if not total > 0:
                continue
            self.weight = total
            t = np.multiply(b.y, b.y.dtype.type(m / total), out=self._buf[:m])
            yield Batch(b.x, t, None, b.size, b.scale)


class _EpochRules(Callback):
    """Sums the epoch's batch losses and hands them to ``end_epoch`` (scikit-learn's
    end-of-epoch rules, a bound method of the estimator), which says whether to stop.
    """

    def __init__(self, end_epoch: Callable[[float], bool], trainer: _EstimatorTrainer) -> None:
        self.end_epoch = end_epoch
        self.trainer = trainer
        self.accumulated = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        """Reset the epoch's loss sum."""
        self.accumulated = 0.0

    def on_batch_end(self, batch, logs=None):
        """Sum the batch loss (with its L2 term) times the batch rows."""
        self.accumulated += logs["loss"] * logs["size"]

    def on_epoch_end(self, epoch, logs=None):
        """Run the estimator's rules; stop training when they say so."""
        if self.trainer.diverged:
            return  # recorded once, after the fit (see _fit_stochastic)
        if self.end_epoch(self.accumulated):
            self.model.stop_training = True


class _SolversMixin:
    """The solvers of :class:`fastnn.sklearn._base._BaseMLP`."""

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

    def _weight_sq_norm(self) -> float:
        """``sum ||W||^2`` over ``coefs_``.  NumPy's own loop (einsum), not BLAS's dot:
        a threaded BLAS call per batch next to fastnn's OpenMP threads costs
        milliseconds when the two thread pools contend for the cores.
        """
        return float(sum(np.einsum("i,i->", w.reshape(-1), w.reshape(-1))
                         for w in self.coefs_))

    def _new_optimizer(self) -> Any:
        if self.solver == "sgd":
            return SGD(lr=self.learning_rate_init, momentum=self.momentum,
                       nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)
        return Adam(lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                    eps=self.epsilon, eps_hat=True)

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
        validation = None
        if self.early_stopping:
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
            validation = (self._as_model_input(X_val), y_val, sw_val)
        else:
            X_train, y_train, sw_train = X, y, sample_weight

        n_samples = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped", stacklevel=4)
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        sw = None if sw_train is None else np.ascontiguousarray(sw_train, dtype=np.float64)
        sample_idx = np.arange(n_samples, dtype=int)

        def order(epoch: int) -> np.ndarray:
            nonlocal sample_idx  # scikit-learn reshuffles the previous epoch's order
            # sklearn.utils.shuffle's own steps, without its per-call argument validation
            # (a fifth of an epoch of digits): the same draws, the same order
            ind = np.arange(sample_idx.shape[0])
            check_random_state(rs).shuffle(ind)
            sample_idx = sample_idx[ind]
            return sample_idx

        loss = SklearnLoss(self._loss_kind)
        # full-batch float32 epochs sum over rows in float64 (sample-weight equivalence)
        exact = (self._dtype == np.float32 and batch_size >= n_samples
                 and all(type(la) is Dense for la in model.layers))
        weighted_rows = sw is not None and self._loss_kind == "ce" and not exact
        if weighted_rows:  # softmax with weights: the one-call step on weighted rows
            rows = np.multiply(y_train, sw[:, None], dtype=np.float64).astype(self._dtype)
            source: Any = _WeightedRows(ArrayBatches(
                self._as_model_input(X_train), rows, sw, batch_size=batch_size,
                order=order if self.shuffle else None, dtype=self._dtype))
        else:
            source = ArrayBatches(self._as_model_input(X_train), self._prepare_targets(y_train),
                                  sw, batch_size=batch_size,
                                  order=order if self.shuffle else None, dtype=self._dtype)
        trainer = _EstimatorTrainer(model, opt, loss)
        trainer.tolerate_nonfinite = validation is not None
        trainer.factors = loss.fused_factors(self.n_outputs_)
        trainer.exact = exact
        alpha = float(self.alpha)
        if alpha:
            # the coefs_ only (the intercepts carry no L2 term): one C pass per array
            # adds wd * w to its gradient and returns its sum of squares (float64)
            l2_grad = _k.l2_grad["float" if self._dtype == np.float32 else "double"]
            pairs = [(x.grad_weight.reshape(-1), x.weight.reshape(-1))
                     for x in self._dense_layers()]

            def l2(grads: np.ndarray, step: dict) -> None:
                wd = alpha / (source.weight if weighted_rows else step["weight"])
                sq = 0.0
                for g, w in pairs:
                    sq += l2_grad(g, w, wd)
                step["loss"] += 0.5 * wd * sq

            trainer.gradient_hooks.append(l2)
        self.n_iter_ = 0
        try:
            trainer.fit(source, model.epoch + self.max_iter, initial_epoch=model.epoch,
                        callbacks=[_EpochRules(lambda acc: self._end_epoch(
                            acc, n_samples, validation, incremental), trainer)])
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        if trainer.diverged:  # scikit-learn's loss and validation score become NaN
            self._end_epoch(np.nan, n_samples, validation, incremental, diverged=True)

        if validation is not None:
            model.parameters()[...] = self._best_flat

    def _end_epoch(self, accumulated: float, n_samples: int, validation: tuple | None,
                   incremental: bool, diverged: bool = False) -> bool:
        """Loss curve, convergence, learning-rate schedule; True to stop (as scikit-learn)."""
        self.n_iter_ += 1
        self.loss_ = accumulated / n_samples
        self.t_ += n_samples
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        self._update_no_improvement_count(validation, diverged)
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._set_lr(float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t)
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if validation is not None else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol:f}"
                   f" for {self.n_iter_no_change} consecutive epochs.")
            if self._trigger_stopping(msg):
                return True
            self._no_improvement_count = 0
        if incremental:
            return True
        if self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter})"
                          " reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=2)
        return False

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

    def _update_no_improvement_count(self, validation: tuple | None,
                                     diverged: bool = False) -> None:
        if validation is not None:
            score = np.nan if diverged else self._score_raw(*validation)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_flat = self._model.parameters().copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _fit_lbfgs(self, X, y, sample_weight):
        model = self._model
        trainer = model.trainer
        Xd = self._as_model_input(X)
        if sp.issparse(Xd):
            Xd = np.ascontiguousarray(Xd.toarray(), dtype=self._dtype)
        Y = self._prepare_targets(y)
        sw = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        sw_sum = float(X.shape[0]) if sw is None else float(sw.sum())
        alpha = float(self.alpha)
        flat_p, flat_g = model.parameters(), model.gradients()
        dense = self._dense_layers()
        g = np.empty((X.shape[0], self.n_outputs_), self._dtype)
        loss_fn = SklearnLoss(self._loss_kind)

        def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
            flat_p[...] = w
            out = trainer.forward(Xd, training=False)
            loss = loss_fn(out, Y, g, sw)
            trainer.backward(g)
            if alpha:
                loss += 0.5 * alpha * self._weight_sq_norm() / sw_sum
                for x in dense:
                    x.grad_weight[...] += (alpha / sw_sum) * x.weight
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
