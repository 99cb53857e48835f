"""One validator per optimizer (issue 17): fastnn.optim's constructors and param groups,
fastnn.kernels' steps and the twins in fastnn.reference accept and reject the same
hyper-parameters; and global_avgpool_forward agrees on an empty plane.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn as fnn
from fastnn import kernels as K
from fastnn import reference as R

NAN, INF = math.nan, math.inf

#: (optimizer, hyper-parameter, value, accepted?)
CASES = [
    ("SGD", "dampening", NAN, False),
    ("SGD", "dampening", INF, False),
    ("SGD", "dampening", 0.5, True),
    ("SGD", "momentum", -0.1, False),
    ("SGD", "weight_decay", NAN, False),
    ("SGD", "lr", INF, False),
    ("Adam", "eps", INF, False),
    ("Adam", "eps", NAN, False),
    ("Adam", "eps", 0.0, True),
    ("Adam", "weight_decay", -1e-3, False),
    ("Adam", "lr", NAN, False),
    ("RMSprop", "alpha", 1.0, True),
    ("RMSprop", "alpha", 0.0, True),
    ("RMSprop", "alpha", 1.5, False),
    ("RMSprop", "alpha", -0.1, False),
    ("RMSprop", "eps", INF, False),
    ("RMSprop", "momentum", NAN, False),
    ("Adagrad", "weight_decay", -1.0, False),
    ("Adagrad", "weight_decay", NAN, False),
    ("Adagrad", "eps", -1e-10, False),
    ("Adagrad", "eps", INF, False),
    ("Adagrad", "lr_decay", INF, False),
    ("Adagrad", "eps", 0.0, True),
]

BASE = {"SGD": dict(lr=0.1, momentum=0.9), "Adam": dict(lr=1e-3), "RMSprop": dict(lr=1e-2),
        "Adagrad": dict(lr=1e-2)}


def _kernel_call(mod, opt, kw):
    w, g = np.ones(4), np.full(4, 0.5)
    s = [np.zeros(4) for _ in range(3)]
    if opt == "SGD":
        return mod.sgd_step(w, g, s[0], **kw)
    if opt == "Adam":
        return mod.adam_step(w, g, s[0], s[1], step=1, **kw)
    if opt == "RMSprop":
        return mod.rmsprop_step(w, g, s[0], **kw)
    return mod.adagrad_step(w, g, s[0], step=1, **kw)


def _outcome(fn):
    try:
        fn()
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("opt,name,value,ok", CASES,
                         ids=[f"{o}-{n}={v}" for o, n, v, _ in CASES])
def test_optimizer_kernel_and_twin_agree(opt, name, value, ok):
    kw = {**BASE[opt], name: value}
    results = {
        "optim": _outcome(lambda: getattr(fnn.optim, opt)(**kw)),
        "kernels": _outcome(lambda: _kernel_call(K, opt, kw)),
        "reference": _outcome(lambda: _kernel_call(R, opt, kw)),
    }
    for where, res in results.items():
        if ok:
            assert res is None, f"{where} rejects {name}={value}: {res}"
        else:
            assert res is not None, f"{where} accepts {name}={value}"
            assert name in res[1], f"{where}'s error does not name {name}: {res[1]}"
    if not ok:  # the same message everywhere
        assert len({r[1] for r in results.values()}) == 1, results


GROUP_KEYS = {"SGD": ("lr", "momentum", "dampening", "weight_decay"),
              "Adam": ("lr", "eps", "weight_decay"),
              "RMSprop": ("lr", "alpha", "eps", "weight_decay"),
              "Adagrad": ("lr", "lr_decay", "weight_decay", "eps")}


def test_group_keys():
    for name, keys in GROUP_KEYS.items():
        assert getattr(fnn.optim, name).group_keys == keys


@pytest.mark.parametrize("opt,name,value,ok", [c for c in CASES if c[1] in GROUP_KEYS[c[0]]],
                         ids=lambda v: str(v))
def test_param_group_overrides_use_the_same_validator(opt, name, value, ok):
    model = fnn.Sequential([fnn.Dense(3, 4), fnn.Dense(4, 2)], seed=0)
    o = getattr(fnn.optim, opt)(**BASE[opt])
    model.compile(o, "cross_entropy")
    res = _outcome(lambda: o.set_param_groups([{"params": [model[0].weight], name: value}]))
    if ok:
        assert res is None
    else:
        assert res is not None and name in res[1] and "param group 0" in res[1]
        assert o.param_groups == []


def test_param_group_unknown_or_unused_key_is_refused():
    model = fnn.Sequential([fnn.Dense(3, 4)], seed=0)
    opt = fnn.optim.Adam()
    model.compile(opt, "mse")
    with pytest.raises(ValueError, match="no per-group hyper-parameter 'betas'"):
        opt.set_param_groups([{"params": [model[0].weight], "betas": (0.5, 0.5)}])


def test_param_group_changed_in_place_is_checked_at_setup():
    model = fnn.Sequential([fnn.Dense(3, 4)], seed=0)
    opt = fnn.optim.Adagrad()
    model.compile(opt, "mse")
    opt.set_param_groups([{"params": [model[0].weight], "weight_decay": 0.0}])
    opt.param_groups[0]["weight_decay"] = -1.0
    with pytest.raises(ValueError, match="param group 0: weight_decay must be >= 0"):
        opt.setup(model.parameters(), model.gradients(), model.trainable_ranges())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avgpool_empty_plane_is_zeros_everywhere(dtype):
    """The C code, the kernel wrapper, the twin and the layer agree: an empty plane gives 0."""
    x = np.ones((2, 3, 0, 4), dtype)
    want = np.zeros((2, 3), dtype)
    assert np.array_equal(K.global_avgpool_forward(x), want)
    assert np.array_equal(R.global_avgpool_forward(x), want)
    layer_model = fnn.Sequential([fnn.GlobalAvgPool2D()], dtype=dtype, input_shape=(3, 0, 4))
    assert np.array_equal(layer_model.forward(x, training=False), want)
    g = np.ones((2, 3), dtype)
    with np.errstate(all="raise"):
        assert K.global_avgpool_backward(g, x.shape).shape == x.shape
        assert R.global_avgpool_backward(g, x.shape).shape == x.shape
