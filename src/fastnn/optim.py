"""Optimizers (``torch.optim`` semantics), each step one fused C pass per parameter buffer.

A model keeps all its parameters in one flat buffer and all gradients in another;
the optimizer updates every trainable range of it with a single C call per
contiguous range (one call for the whole model unless frozen layers sit between
trainable ones).  Frozen layers get no update and no optimizer state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _kernels as _k
from ._config import get_num_threads

SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


class Optimizer:
    """Base class.

    Parameters
    ----------
    lr : float
        Learning rate (>= 0); schedules and callbacks change ``optimizer.lr``.
    """

    #: names of the per-parameter state buffers this optimizer keeps
    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        _check(np.isfinite(lr) and lr >= 0, f"lr must be a finite number >= 0, got {lr}")
        self.lr = float(lr)
        self.step_count = 0
        self.state: dict[str, np.ndarray] = {}
        self._segments: list[tuple[int, int, int]] = []
        #: parameter groups (``torch.optim``'s ``param_groups``): see :meth:`set_param_groups`
        self.param_groups: list[dict[str, Any]] = []
        self._view_groups: list[dict[str, Any] | None] = []
        self._group: dict[str, Any] | None = None

    def set_param_groups(self, groups: list[dict[str, Any]]) -> None:
        """Give some parameters their own hyper-parameters, as ``torch.optim`` param groups.

        Parameters
        ----------
        groups : list of dict
            Each has ``"params"``: a list of arrays that are views of the model's flat
            parameter buffer (``layer.weight``, ``layer.bias``...), and overrides of this
            optimizer's hyper-parameters by name (``"lr"``, ``"weight_decay"``, ``"eps"``,
            ``"momentum"``...).  Parameters in no group use the optimizer's attributes.
            The dicts are kept (:attr:`param_groups`): change a value in one, e.g.
            ``opt.param_groups[0]["weight_decay"] = 1e-4``, and the next step uses it.

        Notes
        -----
        Takes effect at the next :meth:`setup` (the training engine calls it again when
        ``param_groups`` was replaced); a group splits the fused update into one C call
        per contiguous run of one group.
        """
        for i, grp in enumerate(groups):
            if not isinstance(grp, dict) or "params" not in grp:
                raise ValueError(f"param group {i} must be a dict with a 'params' list")
            for k in grp:
                if k != "params" and not hasattr(self, k):
                    raise ValueError(f"param group {i}: {type(self).__name__} has no "
                                     f"hyper-parameter {k!r}")
        self.param_groups = list(groups)

    def _hp(self, name: str) -> Any:
        """Hyper-parameter ``name`` for the range being updated (its group's, if any)."""
        grp = self._group
        if grp is not None and name in grp:
            return grp[name]
        return getattr(self, name)

    def _group_runs(self, params: np.ndarray, a: int, b: int
                    ) -> list[tuple[int, int, dict[str, Any] | None]]:
        """Split [a, b) of the flat buffer into runs of one parameter group each."""
        if not self.param_groups:
            return [(a, b, None)]
        marks: list[tuple[int, int, int]] = []
        base, item = params.ctypes.data, params.itemsize
        for gi, grp in enumerate(self.param_groups):
            for arr in grp["params"]:
                ok = isinstance(arr, np.ndarray) and arr.dtype == params.dtype \
                    and arr.flags.c_contiguous
                off, rem = divmod(arr.ctypes.data - base, item) if ok else (-1, 0)
                if not ok or rem or off < 0 or off + arr.size > params.size:
                    raise ValueError(f"param group {gi}: every array must be a contiguous "
                                     "view of the model's parameter buffer")
                marks.append((off, off + arr.size, gi))
        marks.sort()
        runs: list[list[Any]] = []
        pos = a
        for lo, hi, gi in marks:
            lo, hi = max(lo, a), min(hi, b)
            if hi <= lo:
                continue
            if lo < pos:
                raise ValueError("param groups overlap: a parameter is in two groups")
            if lo > pos:
                runs.append([pos, lo, -1])
            runs.append([lo, hi, gi])
            pos = hi
        if pos < b:
            runs.append([pos, b, -1])
        merged: list[list[Any]] = []
        for r in runs:
            if merged and merged[-1][2] == r[2] and merged[-1][1] == r[0]:
                merged[-1][1] = r[1]
            else:
                merged.append(r)
        return [(lo, hi, None if gi < 0 else self.param_groups[gi]) for lo, hi, gi in merged]

    def setup(self, params: np.ndarray, grads: np.ndarray,
              ranges: list[tuple[int, int]]) -> None:
        """Attach to a model's flat buffers; ``ranges`` are its trainable (start, stop) spans.

        State buffers cover only the trainable ranges; existing state of the same
        size is kept (so re-compiling does not reset it).
        """
        self._params, self._grads = params, grads
        merged: list[list[int]] = []
        for a, b in sorted(ranges):
            if merged and merged[-1][1] == a:
                merged[-1][1] = b
            elif b > a:
                merged.append([a, b])
        offset, segs = 0, []
        for a, b in merged:
            segs.append((a, b, offset))
            offset += b - a
        self._segments = segs
        for name in self.state_names:
            cur = self.state.get(name)
            if cur is None or cur.shape != (offset,) or cur.dtype != params.dtype:
                self.state[name] = self._initial_state(name, offset, params.dtype)
        self._ranges = list(ranges)
        self._views, self._view_groups = [], []
        for a, b, o in segs:
            for lo, hi, grp in self._group_runs(params, a, b):
                so = o + lo - a
                self._views.append((params[lo:hi], grads[lo:hi],
                                    {k: v[so:so + hi - lo] for k, v in self.state.items()}))
                self._view_groups.append(grp)
        self._spec = SPEC[params.dtype]

    def _initial_state(self, name: str, size: int, dtype: np.dtype) -> np.ndarray:
        return np.zeros(size, dtype)

    def step(self) -> None:
        """Apply one update to every trainable parameter from the current gradients."""
        self.step_count += 1
        nt = get_num_threads()
        if not self.param_groups:
            for w, g, st in self._views:
                self._update(w, g, st, nt)
            return
        try:
            for (w, g, st), grp in zip(self._views, self._view_groups):
                self._group = grp
                self._update(w, g, st, nt)
        finally:
            self._group = None

    def _update(self, w: np.ndarray, g: np.ndarray, st: dict[str, np.ndarray], nt: int) -> None:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """Hyper-parameters (constructor arguments)."""
        return {"lr": self.lr}

    def state_dict(self) -> dict[str, Any]:
        """Step counter and state buffers (copies)."""
        return {"step_count": self.step_count,
                "state": {k: v.copy() for k, v in self.state.items()}}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (after :meth:`setup`)."""
        step_count = int(sd["step_count"])
        if not 0 <= step_count < 2**62:
            raise ValueError(f"optimizer step_count must be in [0, 2**62), got {step_count}")
        self.step_count = step_count
        for k, v in sd["state"].items():
            if k in self.state:
                if self.state[k].shape != np.shape(v):
                    raise ValueError(f"optimizer state {k!r} has shape {np.shape(v)}, "
                                     f"expected {self.state[k].shape}")
                self.state[k][...] = v
            else:
                self.state[k] = np.array(v)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    Parameters
    ----------
    lr : float
    momentum : float
    dampening : float
    nesterov : bool
        Requires momentum > 0 and dampening == 0.
    weight_decay : float
        Added to the gradient (``g + weight_decay * w``).
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        _check(momentum >= 0, f"momentum must be >= 0, got {momentum}")
        _check(weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}")
        _check(not nesterov or (momentum > 0 and dampening == 0),
               "nesterov needs momentum > 0 and dampening == 0")
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.nesterov, self.weight_decay = bool(nesterov), float(weight_decay)
        self.state_names = ("momentum_buffer",) if momentum else ()

    def _update(self, w, g, st, nt):
        hp = self._hp
        _k.sgd_step[self._spec](w, g, st.get("momentum_buffer"), hp("lr"), hp("momentum"),
                                hp("dampening"), self.nesterov, hp("weight_decay"),
                                self.step_count == 1, nt)

    def get_config(self):
        """Hyper-parameters."""
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected, eps outside the square root, as ``torch.optim.Adam``.

    Parameters
    ----------
    lr : float
    betas : tuple of float
        (beta1, beta2), each in [0, 1).
    eps : float
    weight_decay : float
        L2 penalty added to the gradient (Adam) or decoupled decay (AdamW).
    amsgrad : bool
    eps_hat : bool
        False (torch): ``eps`` is added to ``sqrt(v_hat)``, the bias-corrected second
        moment.  True: ``eps`` is the paper's epsilon-hat, added to ``sqrt(v)`` before the
        bias correction (Kingma & Ba's "more efficient" order, as scikit-learn's Adam):
        the update is ``-lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)``.
    """

    decoupled = False
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
                 eps_hat: bool = False) -> None:
        super().__init__(lr)
        self.eps_hat = bool(eps_hat)
        b1, b2 = betas
        _check(0 <= b1 < 1 and 0 <= b2 < 1, f"betas must lie in [0, 1), got {betas}")
        _check(eps >= 0, f"eps must be >= 0, got {eps}")
        _check(weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}")
        self.betas = (float(b1), float(b2))
        self.eps, self.weight_decay, self.amsgrad = float(eps), float(weight_decay), bool(amsgrad)
        if amsgrad:
            self.state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _update(self, w, g, st, nt):
        hp = self._hp
        eps = hp("eps")
        if self.eps_hat:  # the same update with eps moved inside the bias correction
            eps = eps / math.sqrt(1.0 - self.betas[1] ** self.step_count)
        _k.adam_step[self._spec](w, g, st["exp_avg"], st["exp_avg_sq"], st.get("max_exp_avg_sq"),
                                 self.step_count, hp("lr"), self.betas[0], self.betas[1], eps,
                                 hp("weight_decay"), self.decoupled, nt)

    def get_config(self):
        """Hyper-parameters."""
        cfg = {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
               "weight_decay": self.weight_decay, "amsgrad": self.amsgrad}
        if self.eps_hat:
            cfg["eps_hat"] = True
        return cfg


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``."""

    decoupled = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False,
                 eps_hat: bool = False) -> None:
        super().__init__(lr, betas, eps, weight_decay, amsgrad, eps_hat)


class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop`` (alpha 0.99, eps 1e-8, optional momentum, centered).

    Parameters
    ----------
    lr, alpha, eps, weight_decay, momentum : float
    centered : bool
    """

    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        super().__init__(lr)
        _check(0 <= alpha < 1, f"alpha must lie in [0, 1), got {alpha}")
        _check(eps >= 0, f"eps must be >= 0, got {eps}")
        _check(momentum >= 0, f"momentum must be >= 0, got {momentum}")
        _check(weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}")
        self.alpha, self.eps, self.weight_decay = float(alpha), float(eps), float(weight_decay)
        self.momentum, self.centered = float(momentum), bool(centered)
        names = ["square_avg"]
        if momentum:
            names.append("momentum_buffer")
        if centered:
            names.append("grad_avg")
        self.state_names = tuple(names)

    def _update(self, w, g, st, nt):
        hp = self._hp
        _k.rmsprop_step[self._spec](w, g, st["square_avg"], st.get("momentum_buffer"),
                                    st.get("grad_avg"), hp("lr"), hp("alpha"), hp("eps"),
                                    hp("weight_decay"), self.momentum, self.centered, nt)

    def get_config(self):
        """Hyper-parameters."""
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad as ``torch.optim.Adagrad``.

    Parameters
    ----------
    lr, lr_decay, weight_decay, eps : float
    initial_accumulator_value : float
    """

    state_names = ("sum",)

    def __init__(self, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__(lr)
        _check(lr_decay >= 0, f"lr_decay must be >= 0, got {lr_decay}")
        _check(initial_accumulator_value >= 0,
               f"initial_accumulator_value must be >= 0, got {initial_accumulator_value}")
        self.lr_decay, self.weight_decay = float(lr_decay), float(weight_decay)
        self.initial_accumulator_value, self.eps = float(initial_accumulator_value), float(eps)

    def _initial_state(self, name, size, dtype):
        return np.full(size, self.initial_accumulator_value, dtype)

    def _update(self, w, g, st, nt):
        hp = self._hp
        _k.adagrad_step[self._spec](w, g, st["sum"], self.step_count, hp("lr"), hp("lr_decay"),
                                    hp("weight_decay"), hp("eps"), nt)

    def get_config(self):
        """Hyper-parameters."""
        return {"lr": self.lr, "lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad,
}


def get_optimizer(opt: str | Optimizer) -> Optimizer:
    """An optimizer instance from a name (default hyper-parameters) or an instance."""
    if isinstance(opt, Optimizer):
        return opt
    if isinstance(opt, str) and opt.lower() in OPTIMIZERS:
        return OPTIMIZERS[opt.lower()]()
    raise ValueError(f"unknown optimizer {opt!r}; expected an Optimizer or one of "
                     f"{sorted(OPTIMIZERS)}")
