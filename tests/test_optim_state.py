"""Optimizer state per parameter across freeze/unfreeze, equal to ``torch.optim`` (issue 17).

Each run trains a float64 fastnn model and the same network in torch through a
schedule of phases that change which layers are trainable; a frozen parameter has
no gradient in torch (so ``torch.optim`` skips it and keeps its state).  The
weights must agree after every phase.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile

import numpy as np
import pytest

import fastnn as fnn

torch = pytest.importorskip("torch")

SIZES = [(5, 6), (6, 6), (6, 6), (6, 3)]  # layers 1 and 2 have the same size


def _models():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 5))
    y = rng.integers(0, 3, 16)
    layers = [fnn.Dense(i, o, "tanh" if k < len(SIZES) - 1 else "identity")
              for k, (i, o) in enumerate(SIZES)]
    model = fnn.Sequential(layers, dtype="float64", seed=3)
    lins = []
    for la in model.layers:
        lin = torch.nn.Linear(la.in_features, la.out_features, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(la.weight.T.copy()))
            lin.bias.copy_(torch.from_numpy(la.bias.copy()))
        lins.append(lin)
    return model, lins, x, y


def _torch_step(lins, opt, x, y, trainable):
    for lin, tr in zip(lins, trainable):
        lin.weight.requires_grad_(tr)
        lin.bias.requires_grad_(tr)
    opt.zero_grad(set_to_none=True)
    h = torch.from_numpy(x)
    for k, lin in enumerate(lins):
        h = lin(h)
        if k < len(lins) - 1:
            h = torch.tanh(h)
    loss = torch.nn.functional.cross_entropy(h, torch.from_numpy(y))
    loss.backward()
    opt.step()


def _compare(model, lins, what):
    for k, (la, lin) in enumerate(zip(model.layers, lins)):
        for mine, theirs in ((la.weight, lin.weight.detach().numpy().T),
                             (la.bias, lin.bias.detach().numpy())):
            err = np.max(np.abs(mine - theirs)) / max(np.max(np.abs(theirs)), 1e-300)
            assert err < 1e-12, f"{what}: layer {k} differs from torch by {err:.3g} (relative)"


OPTIMIZERS = {
    "sgd-momentum": (lambda: fnn.optim.SGD(lr=0.1, momentum=0.9, dampening=0.1),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1)),
    "sgd-nesterov-wd": (lambda: fnn.optim.SGD(lr=0.1, momentum=0.8, nesterov=True,
                                             weight_decay=1e-2),
                        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True,
                                                  weight_decay=1e-2)),
    "adam": (lambda: fnn.optim.Adam(lr=0.01, weight_decay=1e-3),
             lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3)),
    "adam-amsgrad": (lambda: fnn.optim.Adam(lr=0.01, amsgrad=True),
                     lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True)),
    "adamw": (lambda: fnn.optim.AdamW(lr=0.01, weight_decay=0.05),
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.05)),
    "rmsprop-momentum-centered": (
        lambda: fnn.optim.RMSprop(lr=0.01, momentum=0.5, centered=True, weight_decay=1e-3),
        lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True,
                                      weight_decay=1e-3)),
    "adagrad-lr_decay": (
        lambda: fnn.optim.Adagrad(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1),
        lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.05,
                                      initial_accumulator_value=0.1)),
}

ALL = [True] * len(SIZES)
HEAD = [False] * (len(SIZES) - 1) + [True]
#: train all, freeze the body, unfreeze
CYCLE = [("all", ALL, 4), ("body frozen", HEAD, 3), ("unfrozen", ALL, 4)]
#: layer 1 frozen, then swap: layer 2 frozen and layer 1 trainable (same trainable size)
SWAP = [("layer 1 frozen", [True, False, True, True], 4),
        ("layer 2 frozen", [True, True, False, True], 4),
        ("all", ALL, 3)]


def _run(name, schedule, save_between=None):
    mk_fnn, mk_torch = OPTIMIZERS[name]
    model, lins, x, y = _models()
    model.compile(mk_fnn(), "cross_entropy")
    topt = mk_torch([p for lin in lins for p in (lin.weight, lin.bias)])
    for what, flags, steps in schedule:
        for la, tr in zip(model.layers, flags):
            la.trainable = tr
        for _ in range(steps):
            model.train_step(x, y)
            _torch_step(lins, topt, x, y, flags)
        _compare(model, lins, f"{name}, after phase {what!r}")
        if save_between is not None:
            model = save_between(model)
    return model


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_freeze_unfreeze_cycle_equals_torch(name):
    _run(name, CYCLE)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_same_size_swap_equals_torch(name):
    _run(name, SWAP)


@pytest.mark.parametrize("name", ["adam", "sgd-momentum", "adagrad-lr_decay"])
def test_save_load_between_phases_equals_torch(name, tmp_path):
    def reload(model):
        path = tmp_path / "m.fnn"
        model.save(path)
        return fnn.load(path)

    _run(name, CYCLE + SWAP, save_between=reload)


def test_steps_and_state_are_per_layer():
    model, _, x, y = _models()
    model.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
    for _ in range(3):
        model.train_step(x, y)
    model.freeze(2)
    for _ in range(2):
        model.train_step(x, y)
    opt = model.optimizer
    r = model.parameter_ranges()
    assert opt.step_count == 5
    assert opt.param_steps() == [[*r[0], 3], [*r[1], 3], [r[2][0], r[3][1], 5]] or \
        opt.param_steps() == [[*r[0], 3], [*r[1], 3], [*r[2], 5], [*r[3], 5]]
    frozen = opt.state["exp_avg"][r[0][0]:r[1][1]].copy()
    model.train_step(x, y)
    assert np.array_equal(opt.state["exp_avg"][r[0][0]:r[1][1]], frozen)  # kept, untouched


def test_resume_after_save_is_bitwise(tmp_path):
    """save -> load -> continue == uninterrupted, with a frozen layer at save time."""
    def build():
        model, _, x, y = _models()
        model.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
        return model, x, y

    ref, x, y = build()
    for _ in range(3):
        ref.train_step(x, y)
    ref.freeze(2)
    for _ in range(2):
        ref.train_step(x, y)
    ref.save(tmp_path / "a.fnn")
    ref.unfreeze()
    for _ in range(3):
        ref.train_step(x, y)
    loaded = fnn.load(tmp_path / "a.fnn")
    assert [la.trainable for la in loaded.layers] == [False, False, True, True]
    loaded.unfreeze()
    for _ in range(3):
        loaded.train_step(x, y)
    for a, b in zip(ref.get_weights(), loaded.get_weights()):
        assert np.array_equal(a, b)
    assert loaded.optimizer.param_steps() == ref.optimizer.param_steps()


def test_fused_call_per_run_of_equal_steps():
    """One C call for the whole model normally; one per run of equal step counts."""
    model, _, x, y = _models()
    model.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
    opt = model.optimizer
    calls = []
    orig = type(opt)._update

    def update(self, w, g, st, nt):
        calls.append((w.size, self._step))
        orig(self, w, g, st, nt)

    opt._update = update.__get__(opt)
    model.train_step(x, y)
    assert calls == [(model.count_params(), 1)]
    model.freeze(2)
    model.train_step(x, y)
    model.unfreeze()
    calls.clear()
    model.train_step(x, y)
    r = model.parameter_ranges()
    assert calls == [(r[1][1], 2), (model.count_params() - r[1][1], 3)]


def test_load_state_dict_is_all_or_nothing():
    model, _, x, y = _models()
    model.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
    for _ in range(2):
        model.train_step(x, y)
    opt = model.optimizer
    before = copy.deepcopy(opt.state_dict())
    bad = copy.deepcopy(before)
    bad["step_count"] = 99
    bad["state"]["exp_avg"] = bad["state"]["exp_avg"] + 1.0  # valid, would be assigned first
    bad["state"]["exp_avg_sq"] = np.zeros(3)  # invalid: wrong size
    with pytest.raises(ValueError, match="exp_avg_sq"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(before)
    bad["steps"] = [[0, 10**9, 1]]
    with pytest.raises(ValueError, match="steps"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(before)
    bad["steps"] = [[0, 7, 1]]  # inside the first layer's range: not this model's layout
    with pytest.raises(ValueError, match="does not match the trainable layers"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(before)
    del bad["state"]["exp_avg_sq"]
    with pytest.raises(ValueError, match="must have the buffers"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["step_count"] == before["step_count"] == 2
    assert after["steps"] == before["steps"]
    for k, v in before["state"].items():
        assert np.array_equal(after["state"][k], v)


def test_legacy_state_dict_loads():
    """A state dict of fastnn before per-parameter state (trainable ranges only)."""
    model, _, x, y = _models()
    model.freeze(1)
    model.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
    r = model.parameter_ranges()
    n = model.count_params() - r[0][1]
    legacy = {"step_count": 4, "state": {"exp_avg": np.arange(n, dtype=float),
                                          "exp_avg_sq": np.ones(n)}}
    opt = model.optimizer
    opt.load_state_dict(legacy)
    assert opt.param_steps() == [[*rr, 4] for rr in r[1:]] or \
        opt.param_steps() == [[r[1][0], r[-1][1], 4]]
    assert np.array_equal(opt.state["exp_avg"][r[1][0]:], np.arange(n))
    assert not opt.state["exp_avg"][:r[0][1]].any()


def test_layer_of_another_model_is_refused():
    """A layer is bound to its model's buffer: a second Sequential refuses it (issue 17)."""
    first = fnn.Sequential([fnn.Dense(4, 5, name="body"), fnn.Dense(5, 2)], seed=0)
    with pytest.raises(ValueError, match=r"layer 'body' already belongs to the model "
                                         r"'sequential'.*copy\.deepcopy\(layer\)"):
        fnn.Sequential([first["body"], fnn.Dense(5, 3)])
    other = fnn.Sequential([fnn.Dense(4, 5)], seed=1)
    with pytest.raises(ValueError, match="already belongs"):
        other.add(first[1])
    assert len(other) == 1
    # the first model still trains its layer: its parameters are views of its buffer
    assert np.shares_memory(first["body"].weight, first.parameters())
    # a copy is fine, and keeps the values
    second = fnn.Sequential([copy.deepcopy(first["body"]), fnn.Dense(5, 3)], seed=2)
    assert np.array_equal(second[0].weight, first["body"].weight)
    assert not np.shares_memory(second[0].weight, first.parameters())
    # a layer popped from its model may join another
    head = first.pop()
    fnn.Sequential([fnn.Dense(3, 5), head])


def test_version_1_model_file_still_loads(tmp_path):
    """A format-1 file (state of the trainable ranges back to back, one step count) loads,
    and training continues as it would have.
    """
    model, _, x, y = _models()
    model.freeze(1)
    model.compile(fnn.optim.Adam(lr=0.01), "cross_entropy")
    for _ in range(3):
        model.train_step(x, y)
    model.save(tmp_path / "v2.fnn")
    lo = model.parameter_ranges()[1][0]
    with zipfile.ZipFile(tmp_path / "v2.fnn") as src, \
            zipfile.ZipFile(tmp_path / "v1.fnn", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "fastnn.json":
                meta = json.loads(data)
                assert meta["version"] == 2
                meta["version"] = 1
                del meta["optimizer"]["steps"]
                data = json.dumps(meta).encode()
            elif info.filename.startswith("optim/"):
                arr = np.load(io.BytesIO(data))
                buf = io.BytesIO()
                np.save(buf, arr[lo:])
                data = buf.getvalue()
            dst.writestr(info.filename, data)
    old = fnn.load(tmp_path / "v1.fnn")
    assert old.optimizer.param_steps() == model.optimizer.param_steps()
    for _ in range(2):
        model.train_step(x, y)
        old.train_step(x, y)
    for a, b in zip(model.get_weights(), old.get_weights()):
        assert np.array_equal(a, b)


def test_replaced_layer_never_inherits_state():
    """pop + add a layer of the same size: the new layer starts fresh (a new torch
    parameter), never with the popped layer's moments; the model's new buffer restarts
    the optimizer.
    """
    model, _, x, y = _models()
    opt = fnn.optim.Adam(lr=0.01)
    model.compile(opt, "cross_entropy")
    for _ in range(3):
        model.train_step(x, y)
    model.pop()
    model.add(fnn.Dense(6, 3))
    model.train_step(x, y)
    assert opt.param_steps() == [[a, b, 1] for a, b in model.parameter_ranges()] or \
        opt.param_steps() == [[0, model.count_params(), 1]]
    g = model.gradients()
    assert np.array_equal(opt.state["exp_avg"], (1 - 0.9) * g)
