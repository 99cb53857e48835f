"""Optimizers (``torch.optim`` semantics), each step one fused C pass per parameter buffer.

A model keeps all its parameters in one flat buffer and all gradients in another;
the optimizer updates every trainable range of it with a single C call per
contiguous run of trainable layers that have taken the same number of steps (one
call for the whole model unless frozen layers sit between trainable ones).

State is per parameter, as ``torch.optim``'s: every state buffer covers the whole
flat parameter buffer, so each layer's state has a fixed home, and each layer has
its own step count.  A frozen layer is skipped and keeps its state and its step
count; when it is unfrozen it continues from them.  A layer never stepped starts
fresh (SGD's momentum buffer becomes its first gradient, Adam's and Adagrad's
bias correction and learning-rate decay count its own steps).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _kernels as _k
from ._config import get_num_threads
from ._validation import (
    adagrad_hparams,
    adam_hparams,
    real_number,
    rmsprop_hparams,
    sgd_hparams,
)

SPEC = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


class Optimizer:
    """Base class.

    Parameters
    ----------
    lr : float
        Learning rate (>= 0); schedules and callbacks change ``optimizer.lr``.
    """

    #: names of the per-parameter state buffers this optimizer keeps
    state_names: tuple[str, ...] = ()
    #: hyper-parameters a param group may override
    group_keys: tuple[str, ...] = ("lr",)

    def __init__(self, lr: float) -> None:
        self.lr = real_number(lr, "lr")
        #: number of :meth:`step` calls (each parameter's own count: :meth:`param_steps`)
        self.step_count = 0
        #: state buffers by name, each covering the whole flat parameter buffer
        self.state: dict[str, np.ndarray] = {}
        self._steps: dict[tuple[int, int], int] = {}  # steps taken by each parameter range
        self._runs: list[list[Any]] = []  # [steps, ranges] of each fused run
        self._step = 0  # the step of the range being updated (in _update)
        self._params: np.ndarray | None = None
        self._size: int | None = None
        self._dtype: np.dtype | None = None
        #: parameter groups (``torch.optim``'s ``param_groups``): see :meth:`set_param_groups`
        self.param_groups: list[dict[str, Any]] = []
        self._views: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
        self._view_groups: list[dict[str, Any] | None] = []
        self._view_runs: list[int] = []
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
                if k != "params" and k not in self.group_keys:
                    raise ValueError(f"param group {i}: {type(self).__name__} has no "
                                     f"per-group hyper-parameter {k!r} (it has "
                                     f"{list(self.group_keys)})")
            self._check_group(grp, i)
        self.param_groups = list(groups)

    def _check_group(self, grp: dict[str, Any], i: int) -> None:
        """The optimizer's validator on its hyper-parameters with ``grp``'s overrides."""
        try:
            self._check_hparams(lambda name: grp[name] if name in grp else getattr(self, name))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"param group {i}: {exc}") from None

    def _check_hparams(self, get: Any) -> None:
        """Check the hyper-parameters ``get(name)`` with this optimizer's one validator
        (:mod:`fastnn._validation`, shared with :mod:`fastnn.kernels` and the twins).
        """
        real_number(get("lr"), "lr")

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
        """Attach to a model's flat buffers; ``ranges`` are its trainable (start, stop) spans,
        one per layer (``model.trainable_ranges()``).

        The state buffers cover the whole of ``params`` (each layer's state at its
        parameters' offsets) and are kept while its size and dtype stay the same, with
        every layer's step count: freezing a layer (leaving its range out) keeps its state
        and steps for when it is trained again.  A new ``params`` buffer (another model,
        or layers added or popped: the model packs a new buffer) starts every parameter
        afresh, so a replaced layer never inherits another's state; so does a stepped
        range that partly overlaps a new trainable range.
        """
        self._flush_steps()
        n = int(params.size)
        if (params is not self._params or self._size != n or self._dtype != params.dtype
                or set(self.state) != set(self.state_names)):
            self.state = {name: self._initial_state(name, n, params.dtype)
                          for name in self.state_names}
            self._steps = {}
        self._size, self._dtype = n, params.dtype
        live = sorted((int(a), int(b)) for a, b in ranges if b > a)
        for key in list(self._steps):
            a, b = key
            if key not in live and any(lo < b and a < hi for lo, hi in live):
                self._forget(key)
        for i, grp in enumerate(self.param_groups):  # values may have been changed in place
            self._check_group(grp, i)
        self._params, self._grads, self._ranges = params, grads, list(ranges)
        # fused runs: adjacent trainable ranges with the same step count
        runs: list[list[Any]] = []
        for key in live:
            st = self._steps.get(key, 0)
            if runs and runs[-1][2] == key[0] and runs[-1][0] == st:
                runs[-1][1].append(key)
                runs[-1][2] = key[1]
            else:
                runs.append([st, [key], key[1]])
        self._runs = [[st, keys] for st, keys, _ in runs]
        self._views, self._view_groups, self._view_runs = [], [], []
        for ri, (_, keys) in enumerate(self._runs):
            for lo, hi, grp in self._group_runs(params, keys[0][0], keys[-1][1]):
                self._views.append((params[lo:hi], grads[lo:hi],
                                    {k: v[lo:hi] for k, v in self.state.items()}))
                self._view_groups.append(grp)
                self._view_runs.append(ri)
        self._spec = SPEC[params.dtype]

    def _forget(self, key: tuple[int, int]) -> None:
        """Drop the step count of range ``key`` and reset its state to the initial values."""
        a, b = key
        for name, buf in self.state.items():
            buf[a:b] = self._initial_state(name, b - a, buf.dtype)
        del self._steps[key]

    def _flush_steps(self) -> None:
        """Write the fused runs' step counts back to the per-range table."""
        for st, keys in self._runs:
            for key in keys:
                self._steps[key] = st

    def param_steps(self) -> list[list[int]]:
        """``[start, stop, steps]`` of every parameter range that took a step (torch's
        per-parameter ``state["step"]``), frozen ones included, sorted.
        """
        self._flush_steps()
        return [[a, b, n] for (a, b), n in sorted(self._steps.items()) if n > 0]

    def _check_steps(self, steps: Any) -> dict[tuple[int, int], int]:
        """A validated ``{(start, stop): steps}`` table from :meth:`param_steps`' list."""
        out: dict[tuple[int, int], int] = {}
        live = {(int(a), int(b)) for a, b in self._ranges if b > a}
        try:
            rows = [tuple(int(v) for v in row) for row in steps]
        except (TypeError, ValueError):
            raise ValueError("optimizer steps must be a list of [start, stop, steps]") from None
        end = 0
        for row in sorted(rows):
            if len(row) != 3:
                raise ValueError(f"optimizer steps entry {list(row)} must be [start, stop, steps]")
            a, b, n = row
            if not (0 <= a < b <= self._size) or a < end:
                raise ValueError(f"optimizer steps range [{a}, {b}) is outside the parameter "
                                 f"buffer of {self._size} or overlaps another range")
            if not 0 <= n < 2**62:
                raise ValueError(f"optimizer steps must be in [0, 2**62), got {n}")
            end = b
            if (a, b) not in live and any(lo < b and a < hi for lo, hi in live):
                raise ValueError(f"optimizer steps range [{a}, {b}) does not match the "
                                 "trainable layers' ranges (a different model?)")
            if n:
                out[(a, b)] = n
        return out

    def set_param_steps(self, steps: Any) -> None:
        """Restore :meth:`param_steps` (after :meth:`setup`); validated before anything
        changes.
        """
        self._require_setup()
        table = self._check_steps(steps)
        self._runs = []
        self._steps = table
        self.setup(self._params, self._grads, self._ranges)

    def _require_setup(self) -> None:
        if getattr(self, "_params", None) is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a model: call "
                               "model.compile(optimizer=...) (or setup) first")

    def _initial_state(self, name: str, size: int, dtype: np.dtype) -> np.ndarray:
        return np.zeros(size, dtype)

    def step(self) -> None:
        """Apply one update to every trainable parameter from the current gradients."""
        self.step_count += 1
        nt = get_num_threads()
        runs = self._runs
        for run in runs:
            run[0] += 1
        if len(runs) == 1 and not self.param_groups:  # the common case: one call
            self._step = runs[0][0]
            for w, g, st in self._views:
                self._update(w, g, st, nt)
            return
        try:
            for (w, g, st), grp, ri in zip(self._views, self._view_groups, self._view_runs):
                self._group, self._step = grp, runs[ri][0]
                self._update(w, g, st, nt)
        finally:
            self._group = None

    def _update(self, w: np.ndarray, g: np.ndarray, st: dict[str, np.ndarray], nt: int) -> None:
        """One fused update of ``w``; ``self._step`` is its parameters' step (from 1)."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """Hyper-parameters (constructor arguments)."""
        return {"lr": self.lr}

    def state_dict(self) -> dict[str, Any]:
        """Step counter, per-range steps and state buffers (copies).

        ``{"step_count": int, "steps": [[start, stop, steps], ...], "state": {name:
        (count_params(),) array}}``: ``step_count`` counts :meth:`step` calls, ``steps``
        is :meth:`param_steps`.
        """
        return {"step_count": self.step_count, "steps": self.param_steps(),
                "state": {k: v.copy() for k, v in self.state.items()}}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (after :meth:`setup`); all or nothing.

        Everything is checked before anything is assigned, so a rejected ``sd``
        (ValueError) leaves the optimizer as it was.  A dict without ``"steps"`` (fastnn
        before per-parameter state: buffers covering only the trainable ranges, one step
        count for all) is read as that format.
        """
        self._require_setup()
        if not isinstance(sd, dict) or "step_count" not in sd or "state" not in sd:
            raise ValueError("optimizer state must be a dict with 'step_count' and 'state'")
        try:
            step_count = int(sd["step_count"])
        except (TypeError, ValueError):
            raise ValueError(f"optimizer step_count must be an int, got "
                             f"{sd['step_count']!r}") from None
        if not 0 <= step_count < 2**62:
            raise ValueError(f"optimizer step_count must be in [0, 2**62), got {step_count}")
        state = sd["state"]
        if not isinstance(state, dict) or set(state) != set(self.state_names):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{type(self).__name__} state must have the buffers "
                             f"{sorted(self.state_names)}, got {got}")
        live = sorted((int(a), int(b)) for a, b in self._ranges if b > a)
        legacy = "steps" not in sd
        if legacy:  # buffers of the trainable ranges back to back, one step count
            size = sum(b - a for a, b in live)
            steps = {key: step_count for key in live} if step_count else {}
        else:
            size = self._size
            steps = self._check_steps(sd["steps"])
        arrays = {}
        for k, v in state.items():
            arr = np.asarray(v)
            if arr.shape != (size,):
                raise ValueError(f"optimizer state {k!r} has shape {arr.shape}, "
                                 f"expected {(size,)}")
            if arr.dtype.kind not in "fiu":
                raise ValueError(f"optimizer state {k!r} must be numeric, got {arr.dtype}")
            arrays[k] = arr
        # every check passed: assign
        for k, arr in arrays.items():
            if legacy:
                buf = self._initial_state(k, self._size, self._dtype)
                off = 0
                for a, b in live:
                    buf[a:b] = arr[off:off + b - a]
                    off += b - a
                self.state[k][...] = buf
            else:
                self.state[k][...] = arr
        self.step_count = step_count
        self._runs = []
        self._steps = steps
        self.setup(self._params, self._grads, self._ranges)

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
        _, momentum, dampening, weight_decay = sgd_hparams(lr, momentum, dampening, nesterov,
                                                           weight_decay)
        self.momentum, self.dampening = momentum, dampening
        self.nesterov, self.weight_decay = bool(nesterov), weight_decay
        self.state_names = ("momentum_buffer",) if momentum else ()

    group_keys = ("lr", "momentum", "dampening", "weight_decay")

    def _check_hparams(self, get):
        sgd_hparams(get("lr"), get("momentum"), get("dampening"), self.nesterov,
                    get("weight_decay"))
        if (get("momentum") != 0) != bool(self.momentum):
            raise ValueError("momentum can be changed per group but not turned on or off "
                             "(the momentum buffer exists for all parameters or none)")

    def _update(self, w, g, st, nt):
        hp = self._hp
        _k.sgd_step[self._spec](w, g, st.get("momentum_buffer"), hp("lr"), hp("momentum"),
                                hp("dampening"), self.nesterov, hp("weight_decay"),
                                self._step == 1, nt)

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
    group_keys = ("lr", "eps", "weight_decay")

    def _check_hparams(self, get):
        adam_hparams(get("lr"), *self.betas, get("eps"), get("weight_decay"))

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
                 eps_hat: bool = False) -> None:
        super().__init__(lr)
        self.eps_hat = bool(eps_hat)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        _, b1, b2, eps, weight_decay = adam_hparams(lr, b1, b2, eps, weight_decay)
        self.betas = (b1, b2)
        self.eps, self.weight_decay, self.amsgrad = eps, weight_decay, bool(amsgrad)
        if amsgrad:
            self.state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _update(self, w, g, st, nt):
        hp = self._hp
        eps = hp("eps")
        if self.eps_hat:  # the same update with eps moved inside the bias correction
            eps = eps / math.sqrt(1.0 - self.betas[1] ** self._step)
        _k.adam_step[self._spec](w, g, st["exp_avg"], st["exp_avg_sq"], st.get("max_exp_avg_sq"),
                                 self._step, hp("lr"), self.betas[0], self.betas[1], eps,
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
    lr, eps, weight_decay, momentum : float
        Each finite and >= 0.
    alpha : float
        Smoothing constant in [0, 1].  (torch accepts any alpha >= 0; above 1 the
        running mean of ``g**2`` is not a convex combination and turns negative, so
        the update is NaN: fastnn refuses it, in the optimizer, the kernel and its twin.)
    centered : bool
    """

    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        super().__init__(lr)
        _, alpha, eps, weight_decay, momentum = rmsprop_hparams(lr, alpha, eps, weight_decay,
                                                                momentum)
        self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay
        self.momentum, self.centered = momentum, bool(centered)
        names = ["square_avg"]
        if momentum:
            names.append("momentum_buffer")
        if centered:
            names.append("grad_avg")
        self.state_names = tuple(names)

    group_keys = ("lr", "alpha", "eps", "weight_decay")

    def _check_hparams(self, get):
        rmsprop_hparams(get("lr"), get("alpha"), get("eps"), get("weight_decay"), self.momentum)

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
    group_keys = ("lr", "lr_decay", "weight_decay", "eps")

    def _check_hparams(self, get):
        adagrad_hparams(get("lr"), get("lr_decay"), get("weight_decay"), get("eps"))

    def __init__(self, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__(lr)
        _, lr_decay, weight_decay, eps, init = adagrad_hparams(lr, lr_decay, weight_decay, eps,
                                                               initial_accumulator_value)
        self.lr_decay, self.weight_decay = lr_decay, weight_decay
        self.initial_accumulator_value, self.eps = init, eps

    def _initial_state(self, name, size, dtype):
        return np.full(size, self.initial_accumulator_value, dtype)

    def _update(self, w, g, st, nt):
        hp = self._hp
        _k.adagrad_step[self._spec](w, g, st["sum"], self._step, hp("lr"), hp("lr_decay"),
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
