"""Optimizer steps: C kernels vs NumPy twins, vs textbook formulas, vs torch.optim."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from conftest import assert_close

import fastnn
from fastnn import _kernels as _k
from fastnn import kernels as K
from fastnn import reference as R

SIZES = [1, 7, 1031, 100_003]
_SPEC = {np.float32: "float", np.float64: "double"}
N_STEPS = 5

# (kernel name, options): every option path of every optimizer
CONFIGS = {
    "sgd": ("sgd_step", dict(lr=0.1)),
    "sgd_wd": ("sgd_step", dict(lr=0.1, weight_decay=0.05)),
    "sgd_momentum": ("sgd_step", dict(lr=0.1, momentum=0.9)),
    "sgd_dampening": ("sgd_step", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    "sgd_nesterov": ("sgd_step", dict(lr=0.1, momentum=0.9, nesterov=True)),
    "sgd_nesterov_wd": ("sgd_step", dict(lr=0.05, momentum=0.8, nesterov=True,
                                         weight_decay=0.01)),
    "adam": ("adam_step", dict(lr=0.01)),
    "adam_wd": ("adam_step", dict(lr=0.01, beta1=0.8, beta2=0.99, weight_decay=0.1)),
    "adamw": ("adam_step", dict(lr=0.01, weight_decay=0.1, decoupled=True)),
    "adam_amsgrad": ("adam_step", dict(lr=0.01, amsgrad=True)),
    "adamw_amsgrad": ("adam_step", dict(lr=0.02, eps=1e-6, weight_decay=0.05, decoupled=True,
                                        amsgrad=True)),
    "rmsprop": ("rmsprop_step", dict(lr=0.01)),
    "rmsprop_wd": ("rmsprop_step", dict(lr=0.01, alpha=0.9, weight_decay=0.1)),
    "rmsprop_momentum": ("rmsprop_step", dict(lr=0.01, momentum=0.9)),
    "rmsprop_centered": ("rmsprop_step", dict(lr=0.01, centered=True)),
    "rmsprop_centered_momentum": ("rmsprop_step", dict(lr=0.01, alpha=0.95, momentum=0.5,
                                                       centered=True, weight_decay=0.01)),
    "adagrad": ("adagrad_step", dict(lr=0.1)),
    "adagrad_decay": ("adagrad_step", dict(lr=0.1, lr_decay=0.5, weight_decay=0.05)),
}


def grad_at(w: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Gradient of the quadratic 0.5 * sum(3 (w - c)^2): a real descent problem."""
    return (3 * (w - c)).astype(w.dtype)


def run(mod, name: str, w0: np.ndarray, c: np.ndarray, steps: int = N_STEPS,
        seq: list | None = None) -> dict[str, np.ndarray]:
    """``steps`` steps of optimizer ``name`` from w0 with ``mod`` (kernels or reference);
    returns w and every state array.  ``seq`` collects w after each step."""
    kernel, opts = CONFIGS[name]
    opts = dict(opts)
    w = w0.copy()
    z = np.zeros_like
    st: dict[str, np.ndarray] = {}
    for t in range(1, steps + 1):
        g = grad_at(w, c)
        if kernel == "sgd_step":
            st.setdefault("buf", z(w))
            mod.sgd_step(w, g, st["buf"] if opts.get("momentum") else None,
                         first_step=t == 1, **opts)
        elif kernel == "adam_step":
            amsgrad = opts.pop("amsgrad", False)
            st.setdefault("m", z(w)), st.setdefault("v", z(w))
            if amsgrad:
                st.setdefault("vmax", z(w))
            mod.adam_step(w, g, st["m"], st["v"], step=t, vmax=st.get("vmax"), **opts)
            opts["amsgrad"] = amsgrad
        elif kernel == "rmsprop_step":
            st.setdefault("sq", z(w))
            if opts.get("momentum"):
                st.setdefault("buf", z(w))
            if opts.get("centered"):
                st.setdefault("gavg", z(w))
            mod.rmsprop_step(w, g, st["sq"], buf=st.get("buf"), gavg=st.get("gavg"), **opts)
        else:
            st.setdefault("sum_sq", z(w))
            mod.adagrad_step(w, g, st["sum_sq"], step=t, **opts)
        if seq is not None:
            seq.append(w.copy())
    return {"w": w, **st}


def problem(n: int, dtype, key: str):
    rng = np.random.default_rng([n, zlib.crc32(key.encode())])  # not hash(): salted
    w0 = rng.standard_normal(n).astype(dtype)
    c = rng.standard_normal(n).astype(dtype)
    return w0, c


# ---- kernels vs twins ---------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_step_matches_reference(name, n, dtype, threads):
    w0, c = problem(n, dtype, name)
    got = run(K, name, w0, c)
    want = run(R, name, w0, c)
    assert got.keys() == want.keys()
    for key in got:
        assert got[key].dtype == dtype
        assert_close(got[key], want[key], dtype, what=f"{name} n={n} {key}")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_step_independent_of_thread_count(name, dtype):
    w0, c = problem(100_003, dtype, name)
    old = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        one = run(K, name, w0, c)
        fastnn.set_num_threads(2)
        two = run(K, name, w0, c)
    finally:
        fastnn.set_num_threads(old)
    for key in one:  # elementwise: not even rounding may differ
        assert np.array_equal(one[key], two[key]), f"{name}: {key} differs at 1 vs 2 threads"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_step_any_shape_in_place(name, dtype):
    w0, c = problem(60, dtype, name)
    flat = run(K, name, w0, c)
    shaped = run(K, name, w0.reshape(3, 4, 5), c.reshape(3, 4, 5))
    for key in flat:
        assert shaped[key].shape == (3, 4, 5)
        assert np.array_equal(shaped[key].reshape(-1), flat[key])


def test_step_empty_is_a_no_op(dtype):
    w = np.zeros(0, dtype)
    assert K.adam_step(w, w.copy(), w.copy(), w.copy(), step=1) is w
    assert K.sgd_step(w, w.copy(), w.copy(), lr=0.1, momentum=0.9) is w


def test_returns_w_itself(dtype):
    w = np.ones(4, dtype)
    for mod in (K, R):
        assert mod.sgd_step(w, np.ones(4), lr=0.1) is w
        assert mod.adam_step(w, np.ones(4), np.zeros(4, dtype), np.zeros(4, dtype), step=1) is w
        assert mod.rmsprop_step(w, np.ones(4), np.zeros(4, dtype)) is w
        assert mod.adagrad_step(w, np.ones(4), np.zeros(4, dtype), step=1) is w


def test_raw_cython_calls_on_the_hot_path():
    """The optimizer classes call these directly; check order and None handling."""
    w = np.ones(5, np.float32)
    g = np.full(5, 0.5, np.float32)
    m, v = np.zeros(5, np.float32), np.zeros(5, np.float32)
    _k.adam_step["float"](w, g, m, v, None, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 2)
    # step 1: m_hat = g, v_hat = g^2, so w -= lr * g / (|g| + eps)
    assert_close(w, np.full(5, 1 - 0.1 * 0.5 / (0.5 + 1e-8)), np.float32)
    _k.sgd_step["double"](np.ones(3), np.ones(3), None, 0.1, 0.0, 0.0, False, 0.0, True, 1)
    _k.rmsprop_step["float"](w, g, m, None, None, 0.01, 0.99, 1e-8, 0.0, 0.0, False, 1)
    _k.adagrad_step["float"](w, g, v, 3, 0.1, 0.0, 0.0, 1e-10, 1)
    with pytest.raises(ValueError, match="adam_step: v has 4 elements, w has 5"):
        _k.adam_step["float"](w, g, m, v[:4], None, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1)
    with pytest.raises(ValueError, match="sgd_step: invalid argument"):  # momentum, buf None
        _k.sgd_step["float"](w, g, None, 0.1, 0.9, 0.0, False, 0.0, True, 1)
    with pytest.raises(ValueError, match="adagrad_step: invalid argument"):  # step 0
        _k.adagrad_step["float"](w, g, v, 0, 0.1, 0.0, 0.0, 1e-10, 1)


# ---- textbook formulas on a hand-sized example, in plain Python floats --------------

W0 = [0.5, -1.25, 2.0]
C = [1.0, 0.5, -0.75]


def textbook(name: str) -> list[list[float]]:
    """Five steps written from the algorithms' definitions, one scalar at a time."""
    kernel, opts = CONFIGS[name]
    lr = opts["lr"]
    wd = opts.get("weight_decay", 0.0)
    w = list(W0)
    n = len(w)
    out = []
    s1, s2, s3 = [0.0] * n, [0.0] * n, [0.0] * n  # per-optimizer state
    for t in range(1, N_STEPS + 1):
        for i in range(n):
            g = 3 * (w[i] - C[i])
            if kernel == "sgd_step":
                mu, tau = opts.get("momentum", 0.0), opts.get("dampening", 0.0)
                g = g + wd * w[i]
                if mu:
                    s1[i] = g if t == 1 else mu * s1[i] + (1 - tau) * g
                    g = g + mu * s1[i] if opts.get("nesterov") else s1[i]
                w[i] = w[i] - lr * g
            elif kernel == "adam_step":
                b1, b2 = opts.get("beta1", 0.9), opts.get("beta2", 0.999)
                eps = opts.get("eps", 1e-8)
                if opts.get("decoupled"):
                    w[i] = w[i] - lr * wd * w[i]
                else:
                    g = g + wd * w[i]
                s1[i] = b1 * s1[i] + (1 - b1) * g
                s2[i] = b2 * s2[i] + (1 - b2) * g * g
                m_hat = s1[i] / (1 - b1**t)
                if opts.get("amsgrad"):
                    s3[i] = max(s3[i], s2[i])
                    v_hat = s3[i] / (1 - b2**t)
                else:
                    v_hat = s2[i] / (1 - b2**t)
                w[i] = w[i] - lr * m_hat / (math.sqrt(v_hat) + eps)
            elif kernel == "rmsprop_step":
                a, eps, mu = opts.get("alpha", 0.99), opts.get("eps", 1e-8), opts.get("momentum", 0)
                g = g + wd * w[i]
                s1[i] = a * s1[i] + (1 - a) * g * g
                if opts.get("centered"):
                    s2[i] = a * s2[i] + (1 - a) * g
                    denom = math.sqrt(s1[i] - s2[i] ** 2) + eps
                else:
                    denom = math.sqrt(s1[i]) + eps
                if mu:
                    s3[i] = mu * s3[i] + g / denom
                    w[i] = w[i] - lr * s3[i]
                else:
                    w[i] = w[i] - lr * g / denom
            else:
                eps, decay = opts.get("eps", 1e-10), opts.get("lr_decay", 0.0)
                g = g + wd * w[i]
                s1[i] = s1[i] + g * g
                w[i] = w[i] - lr / (1 + (t - 1) * decay) * g / (math.sqrt(s1[i]) + eps)
        out.append(list(w))
    return out


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_first_five_steps_match_textbook(name, mod, dtype):
    seq: list[np.ndarray] = []
    run(mod, name, np.array(W0, dtype), np.array(C, dtype), seq=seq)
    want = textbook(name)
    for t, (got, exp) in enumerate(zip(seq, want), 1):
        # float32: the inputs themselves are rounded, and 5 steps compound it
        assert_close(got, np.array(exp), dtype, what=f"{name} step {t}", scale=64.0)


def test_textbook_values_sanity():
    """One number worked by hand: Adam's first step moves each weight by ~lr * sign(g)."""
    w1 = textbook("adam")[0]
    for w0, c, w in zip(W0, C, w1):
        assert w == pytest.approx(w0 - 0.01 * math.copysign(1, w0 - c), abs=1e-9)


# ---- against torch.optim ------------------------------------------------------------

def _torch_run(name: str, w0: np.ndarray, c: np.ndarray) -> np.ndarray:
    torch = pytest.importorskip("torch")
    kernel, opts = CONFIGS[name]
    opts = dict(opts)
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    if kernel == "sgd_step":
        opt = torch.optim.SGD([p], **opts)
    elif kernel == "adam_step":
        b = (opts.pop("beta1", 0.9), opts.pop("beta2", 0.999))
        cls = torch.optim.AdamW if opts.pop("decoupled", False) else torch.optim.Adam
        opts.setdefault("weight_decay", 0.0)  # AdamW's default is 1e-2
        opt = cls([p], betas=b, foreach=False, **opts)
    elif kernel == "rmsprop_step":
        opt = torch.optim.RMSprop([p], foreach=False, **opts)
    else:
        opt = torch.optim.Adagrad([p], foreach=False, **opts)
    ct = torch.from_numpy(c)
    for _ in range(N_STEPS):
        opt.zero_grad()
        loss = 1.5 * ((p - ct) ** 2).sum()
        loss.backward()
        opt.step()
    return p.detach().numpy()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_five_steps_match_torch(name, dtype):
    pytest.importorskip("torch")
    w0, c = problem(1031, dtype, name)
    want = _torch_run(name, w0, c)
    got = run(K, name, w0, c)["w"]
    assert want.dtype == dtype
    assert_close(got, want, dtype, what=f"{name} vs torch.optim", scale=64.0)


# ---- bad arguments ------------------------------------------------------------------

def _fresh(dtype=np.float64, n=4):
    return np.ones(n, dtype), np.full(n, 0.5, dtype), np.zeros(n, dtype), np.zeros(n, dtype)


BAD_HYPER = [
    ("sgd_step", dict(lr=-0.1), r"lr must be >= 0, got -0\.1"),
    ("sgd_step", dict(lr=float("nan")), "lr must be finite, got nan"),
    ("sgd_step", dict(lr=0.1, momentum=-0.5), r"momentum must be >= 0, got -0\.5"),
    ("sgd_step", dict(lr=0.1, weight_decay=-1), "weight_decay must be >= 0, got -1"),
    ("sgd_step", dict(lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    ("sgd_step", dict(lr=0.1, momentum=0.9, nesterov=True, dampening=0.1),
     "nesterov=True needs momentum > 0 and dampening == 0"),
    ("sgd_step", dict(lr="0.1"), "lr must be a real number, got str"),
    ("adam_step", dict(step=1, beta1=1.0), r"beta1 must be in \[0, 1\), got 1\.0"),
    ("adam_step", dict(step=1, beta2=-0.1), r"beta2 must be in \[0, 1\), got -0\.1"),
    ("adam_step", dict(step=1, eps=-1e-8), "eps must be >= 0"),
    ("adam_step", dict(step=0), "step must be >= 1, got 0"),
    ("adam_step", dict(step=1.0), "step must be an int, got float"),
    ("adam_step", dict(step=1, lr=-1e-3), "lr must be >= 0"),
    ("rmsprop_step", dict(alpha=1.5), r"alpha must be in \[0, 1\], got 1\.5"),
    ("rmsprop_step", dict(momentum=0.9), "momentum=0.9 needs buf="),
    ("rmsprop_step", dict(centered=True), "centered=True needs gavg="),
    ("rmsprop_step", dict(eps=float("inf")), "eps must be finite"),
    ("adagrad_step", dict(step=1, lr_decay=-0.1), "lr_decay must be >= 0"),
    ("adagrad_step", dict(step=-3), "step must be >= 1, got -3"),
]


def _call(mod, kernel, opts, w, g, s1, s2):
    if kernel == "sgd_step":
        opts = dict(opts)
        return mod.sgd_step(w, g, s1 if opts.get("momentum") else None, **opts)
    if kernel == "adam_step":
        return mod.adam_step(w, g, s1, s2, **opts)
    if kernel == "rmsprop_step":
        return mod.rmsprop_step(w, g, s1, **opts)
    return mod.adagrad_step(w, g, s1, **opts)


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize("kernel,opts,msg", BAD_HYPER)
def test_bad_hyperparameter_raises_and_changes_nothing(mod, kernel, opts, msg):
    w, g, s1, s2 = _fresh()
    s1 += 0.25
    with pytest.raises((ValueError, TypeError), match=msg):
        _call(mod, kernel, opts, w, g, s1, s2)
    assert np.all(w == 1) and np.all(s1 == 0.25) and np.all(s2 == 0)


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
def test_sgd_momentum_needs_buf(mod):
    w, g, _, _ = _fresh()
    with pytest.raises(ValueError, match="momentum=0.9 needs buf="):
        mod.sgd_step(w, g, lr=0.1, momentum=0.9)


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
def test_bad_state_arrays(mod):
    w, g, m, v = _fresh()
    with pytest.raises(TypeError, match="m must have dtype float64, got float32"):
        mod.adam_step(w, g, m.astype(np.float32), v, step=1)
    with pytest.raises(ValueError, match=r"v must have shape \(4,\), got \(5,\)"):
        mod.adam_step(w, g, m, np.zeros(5), step=1)
    with pytest.raises(ValueError, match="vmax must be C-contiguous"):
        mod.adam_step(w, g, m, v, step=1, vmax=np.zeros(8)[::2])
    ro = np.zeros(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="sum_sq is read-only"):
        mod.adagrad_step(w, g, ro, step=1)
    with pytest.raises(ValueError, match="v overlaps an input"):
        mod.adam_step(w, g, m, m, step=1)
    with pytest.raises(ValueError, match="m overlaps an input"):
        mod.adam_step(w, g, w, v, step=1)
    with pytest.raises(ValueError, match=r"g must have shape \(4,\), got \(3,\)"):
        mod.rmsprop_step(w, np.ones(3), m)
    with pytest.raises(TypeError, match="w must be a numpy.ndarray"):
        mod.sgd_step([1.0, 2.0], [1.0, 1.0], lr=0.1)
    with pytest.raises(TypeError, match="w must be float32 or float64, got int64"):
        mod.sgd_step(np.ones(2, np.int64), np.ones(2), lr=0.1)
    with pytest.raises(ValueError, match="w must be C-contiguous"):
        mod.sgd_step(np.ones(8)[::2], np.ones(4), lr=0.1)
    assert np.all(w == 1) and np.all(m == 0) and np.all(v == 0)


def test_gradient_converted_once():
    """g of another dtype or layout is converted; the state stays exact."""
    w, _, m, v = _fresh(np.float32, 4)
    w2, _, m2, v2 = _fresh(np.float32, 4)
    g64 = np.arange(8.0)[::2]
    K.adam_step(w, g64, m, v, step=1)
    K.adam_step(w2, g64.astype(np.float32), m2, v2, step=1)
    assert np.array_equal(w, w2) and np.array_equal(m, m2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 1031, 100_003])
def test_l2_grad_matches_twin(dtype, n):
    """The scikit-learn L2 step: g += wd * w bitwise as NumPy's ``g += w * wd``, and the
    float64 sum of squares exactly as the twin sums (and close to a plain sum)."""
    rng = np.random.default_rng(n)
    w = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    g_np, g_ref = g.copy(), g.copy()
    g_np += np.multiply(w, 3e-3)  # the hook's former NumPy form
    sq = _k.l2_grad[_SPEC[dtype]](g, w, 3e-3)
    sq_ref = R.l2_grad(g_ref, w, 3e-3)
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(g, g_np)
    assert sq == sq_ref
    assert sq == pytest.approx(float(np.sum(w.astype(np.float64) ** 2)), rel=1e-12, abs=0)


def test_l2_grad_rejects_length_mismatch():
    with pytest.raises(ValueError, match="l2_grad"):
        _k.l2_grad["float"](np.zeros(4, np.float32), np.zeros(5, np.float32), 0.1)
