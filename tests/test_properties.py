"""Property tests (hypothesis): every public kernel against its NumPy twin.

Random shapes -- batch 1, primes, and sizes straddling every GEMM block size of
this machine's engine (MR, NR, MC, KC, NC from ``fastnn.config()``) -- both
dtypes, and inputs laid out every way NumPy allows: C order, Fortran order,
non-contiguous, negatively strided, read-only.  Inputs must never be written.
Then the output contract: a read-only, wrong-dtype, wrong-shape, non-contiguous
or aliasing ``out`` is a clear error (see the aliasing policy in the docstring
of :mod:`fastnn.kernels`).

Runs are deterministic (``derandomize=True``) and bounded in size.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, in_float64
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import kernels as K
from fastnn import reference as R

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FAST = settings(max_examples=60, **SETTINGS)
MEDIUM = settings(max_examples=40, **SETTINGS)
SLOW = settings(max_examples=30, **SETTINGS)

CFG = fastnn.config()
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
ACTS = sorted(fastnn.ACTIVATIONS)
LAYOUTS = ["c", "f", "strided", "neg", "ro"]
PRIMES = [2, 3, 5, 7, 11, 13, 17, 31]


def _straddle(*vals: int) -> list[int]:
    return sorted({v + d for v in vals for d in (-1, 0, 1) if v + d >= 1})


def _block(name: str) -> list[int]:
    return [CFG[dt][name] for dt in ("float32", "float64")]


#: row counts around MR and MC, column counts around NR, depths around KC
M_SIZES = sorted({1, *PRIMES, *_straddle(*_block("MR"), *_block("MC"))})
N_SIZES = sorted({1, *PRIMES, *_straddle(*_block("NR"), 2 * max(_block("NR")))})
K_SIZES = sorted({1, *PRIMES, *_straddle(*_block("KC"))})
NC_SIZES = _straddle(*_block("NC"))

dtypes = st.sampled_from(DTYPES)
layouts = st.sampled_from(LAYOUTS)


def relayout(a: np.ndarray, kind: str) -> np.ndarray:
    """The values of ``a`` in layout ``kind`` (the test never writes the result)."""
    a = np.asarray(a)
    if kind == "c" or a.ndim == 0:
        return a.copy()
    if kind == "f":
        return np.asfortranarray(a)
    if kind == "strided":
        big = np.full((*a.shape[:-1], 2 * a.shape[-1]), np.nan if a.dtype.kind == "f" else 0,
                      a.dtype)
        v = big[..., ::2]
        v[...] = a
        return v
    if kind == "neg":
        rev = tuple(slice(None, None, -1) for _ in a.shape)
        return a[rev].copy()[rev]
    if kind == "ro":
        b = a.copy()
        b.flags.writeable = False
        return b
    raise ValueError(kind)


class Guard:
    """Relayout inputs and check at the end that none was written."""

    def __init__(self) -> None:
        self.kept: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, a: np.ndarray, kind: str) -> np.ndarray:
        v = relayout(a, kind)
        self.kept.append((v, v.copy()))
        return v

    def check(self) -> None:
        for v, orig in self.kept:
            np.testing.assert_array_equal(v, orig, err_msg="a kernel wrote into an input")


def randn(rng: np.random.Generator, shape, dt, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dt)


def rng_of(data) -> np.random.Generator:
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))


def close(a, e, dt, k=1, what="", scale=16.0):
    assert_close(a, e, dt, k=k, what=what, scale=scale)


# ---- GEMM and dense ----------------------------------------------------------------

@FAST
@given(data=st.data())
def test_gemm_matches_twin(data):
    dt = data.draw(dtypes, label="dtype")
    wide = data.draw(st.booleans(), label="wide")
    if wide:  # n straddling NC with a tiny m, k
        m, k = data.draw(st.sampled_from([1, 2, 7])), data.draw(st.sampled_from([1, 3, 5]))
        n = data.draw(st.sampled_from(NC_SIZES))
    else:
        m = data.draw(st.sampled_from(M_SIZES), label="m")
        n = data.draw(st.sampled_from(N_SIZES), label="n")
        k = data.draw(st.sampled_from(K_SIZES), label="k")
        assume(m * n * k <= 1_500_000)
    ta, tb = data.draw(st.booleans(), label="trans_a"), data.draw(st.booleans(), label="trans_b")
    alpha = data.draw(st.sampled_from([1.0, -0.5, 2.0]), label="alpha")
    beta = data.draw(st.sampled_from([0.0, 1.0, 0.25]), label="beta")
    rng = rng_of(data)
    g = Guard()
    a = g(randn(rng, (k, m) if ta else (m, k), dt), data.draw(layouts, label="a layout"))
    b = g(randn(rng, (n, k) if tb else (k, n), dt), data.draw(layouts, label="b layout"))
    c0 = randn(rng, (m, n), dt)
    out = c0.copy() if beta != 0 else None
    got = K.gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=out)
    want = in_float64(R.gemm, a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta,
                  out=c0.copy() if beta != 0 else None)
    assert got.dtype == dt and got.shape == (m, n)
    close(got, want, dt, k=k, what=f"gemm m={m} n={n} k={k} ta={ta} tb={tb}")
    g.check()


@FAST
@given(data=st.data())
def test_dense_forward_matches_twin(data):
    dt = data.draw(dtypes, label="dtype")
    batch = data.draw(st.sampled_from(M_SIZES), label="batch")
    fin = data.draw(st.sampled_from(K_SIZES), label="in")
    fout = data.draw(st.sampled_from(N_SIZES), label="out")
    assume(batch * fin * fout <= 1_000_000)
    act = data.draw(st.sampled_from(ACTS), label="act")
    rng = rng_of(data)
    g = Guard()
    x = g(randn(rng, (batch, fin), dt), data.draw(layouts, label="x layout"))
    w = g(randn(rng, (fin, fout), dt, 1 / np.sqrt(fin)), data.draw(layouts, label="w layout"))
    b = None
    if data.draw(st.booleans(), label="bias"):
        b = g(randn(rng, (fout,), dt), data.draw(layouts, label="b layout"))
    z = np.empty((batch, fout), dt) if data.draw(st.booleans(), label="z_out") else None
    got = K.dense_forward(x, w, b, act, z_out=z)
    zr = np.empty((batch, fout), dt)
    want = R.dense_forward(x, w, b, act, z_out=zr)
    close(got, want, dt, k=fin, what=f"dense_forward {act}")
    if z is not None:
        close(z, zr, dt, k=fin, what="dense_forward z")
    g.check()


def _act_inputs(rng, shape, dt, act):
    """(z, a) with a = act(z) from the twin; z kept away from relu's kink."""
    z = randn(rng, shape, dt, 2.0)
    if act in ("relu", "leaky_relu", "elu"):
        z = np.where(np.abs(z) < 1e-3, dt.type(0.5), z).astype(dt)
    return z, R.activation_forward(z, act)


@FAST
@given(data=st.data())
def test_dense_backward_matches_twin(data):
    dt = data.draw(dtypes, label="dtype")
    batch = data.draw(st.sampled_from(M_SIZES), label="batch")
    fin = data.draw(st.sampled_from(K_SIZES), label="in")
    fout = data.draw(st.sampled_from(N_SIZES), label="out")
    assume(batch * fin * fout <= 1_000_000)
    act = data.draw(st.sampled_from(ACTS), label="act")
    need_dx = data.draw(st.booleans(), label="need_dx")
    rng = rng_of(data)
    g = Guard()
    lay = lambda lbl: data.draw(layouts, label=lbl)  # noqa: E731
    x = g(randn(rng, (batch, fin), dt), lay("x"))
    w = g(randn(rng, (fin, fout), dt, 1 / np.sqrt(fin)), lay("w"))
    z, a = _act_inputs(rng, (batch, fout), dt, act)
    go = g(randn(rng, (batch, fout), dt), lay("grad_out"))
    a, z = g(a, lay("out_act")), g(z, lay("pre_act"))
    got = K.dense_backward(go, x, w, a, z, act, need_dx=need_dx)
    want = R.dense_backward(go, x, w, a, z, act, need_dx=need_dx)
    if need_dx:
        close(got[0], want[0], dt, k=fout, what="dx")
    else:
        assert got[0] is None
    close(got[1], want[1], dt, k=batch, what="dw")
    close(got[2], want[2], dt, k=batch, what="db")
    g.check()


# ---- activations and losses -----------------------------------------------------------

shapes_nd = st.lists(st.sampled_from([1, 2, 3, 5, 7, 16, 17, 33]), min_size=1, max_size=3)


@FAST
@given(data=st.data())
def test_activation_forward_backward_match_twin(data):
    dt = data.draw(dtypes, label="dtype")
    shape = tuple(data.draw(shapes_nd, label="shape"))
    act = data.draw(st.sampled_from(ACTS), label="act")
    rng = rng_of(data)
    g = Guard()
    z, a = _act_inputs(rng, shape, dt, act)
    zl = g(z, data.draw(layouts, label="x layout"))
    close(K.activation_forward(zl, act), R.activation_forward(zl, act), dt, k=shape[-1],
          what=f"activation_forward {act}")
    go = g(randn(rng, shape, dt), data.draw(layouts, label="grad layout"))
    al = g(a, data.draw(layouts, label="a layout"))
    close(K.activation_backward(go, al, zl, act), R.activation_backward(go, al, zl, act), dt,
          k=shape[-1], what=f"activation_backward {act}")
    g.check()


@FAST
@given(data=st.data())
def test_cross_entropy_matches_twin(data):
    dt = data.draw(dtypes, label="dtype")
    batch = data.draw(st.sampled_from([1, *PRIMES, 64]), label="batch")
    classes = data.draw(st.sampled_from([1, 2, 3, 10, 17, 100]), label="classes")
    rng = rng_of(data)
    g = Guard()
    logits = g(randn(rng, (batch, classes), dt, 3.0), data.draw(layouts, label="logits layout"))
    if data.draw(st.booleans(), label="rows"):
        t = rng.random((batch, classes)).astype(dt)
        labels = g(t / t.sum(axis=1, keepdims=True), data.draw(layouts, label="rows layout"))
    else:
        labels = g(rng.integers(0, classes, batch), data.draw(layouts, label="labels layout"))
    lk, gk = K.cross_entropy(logits, labels)
    lr, gr = R.cross_entropy(logits, labels)
    close(lk, lr, dt, k=classes * batch, what="cross_entropy loss")
    close(gk, gr, dt, k=classes, what="cross_entropy grad")
    g.check()


@FAST
@given(data=st.data())
def test_mse_and_bce_match_twin(data):
    dt = data.draw(dtypes, label="dtype")
    shape = tuple(data.draw(shapes_nd, label="shape"))
    rng = rng_of(data)
    g = Guard()
    p = g(randn(rng, shape, dt, 3.0), data.draw(layouts, label="pred layout"))
    t = g(rng.random(shape).astype(dt), data.draw(layouts, label="target layout"))
    n = int(np.prod(shape))
    for fn in ("mse", "binary_cross_entropy"):
        lk, gk = getattr(K, fn)(p, t)
        lr, gr = getattr(R, fn)(p, t)
        close(lk, lr, dt, k=n, what=f"{fn} loss")
        close(gk, gr, dt, what=f"{fn} grad")
    g.check()


# ---- optimizers (w and state arrays are outputs: C-contiguous and writable) -----------

OPTS = {
    "sgd_update": lambda: {},
    "sgd_step": lambda: dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam_step": lambda: dict(step=3, lr=0.01, weight_decay=0.1, decoupled=True),
    "rmsprop_step": lambda: dict(lr=0.01, momentum=0.5, centered=True),
    "adagrad_step": lambda: dict(step=2, lr=0.1, lr_decay=0.1),
}
STATE = {"sgd_update": [], "sgd_step": ["buf"], "adam_step": ["m", "v", "vmax"],
         "rmsprop_step": ["sq", "buf", "gavg"], "adagrad_step": ["sum_sq"]}


def _opt_call(mod, name, w, g, states, opts):
    fn = getattr(mod, name)
    if name == "sgd_update":
        return fn(w, g, 0.05)
    if name == "sgd_step":
        return fn(w, g, states["buf"], first_step=False, **opts)
    if name == "adam_step":
        return fn(w, g, states["m"], states["v"], vmax=states["vmax"], **opts)
    if name == "rmsprop_step":
        return fn(w, g, states["sq"], buf=states["buf"], gavg=states["gavg"], **opts)
    return fn(w, g, states["sum_sq"], **opts)


@FAST
@given(data=st.data())
def test_optimizer_steps_match_twin(data):
    dt = data.draw(dtypes, label="dtype")
    name = data.draw(st.sampled_from(sorted(OPTS)), label="optimizer")
    shape = tuple(data.draw(shapes_nd, label="shape"))
    nt = data.draw(st.sampled_from([1, 2]), label="threads")
    rng = rng_of(data)
    w0 = randn(rng, shape, dt)
    gr = Guard()
    g = gr(randn(rng, shape, dt), data.draw(layouts, label="g layout"))
    s0 = {s: np.abs(randn(rng, shape, dt)) for s in STATE[name]}
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(nt)
    try:
        wk, sk = w0.copy(), {s: v.copy() for s, v in s0.items()}
        assert _opt_call(K, name, wk, g, sk, OPTS[name]()) is wk
    finally:
        fastnn.set_num_threads(old)
    wr, sr = w0.copy(), {s: v.copy() for s, v in s0.items()}
    _opt_call(R, name, wr, g, sr, OPTS[name]())
    close(wk, wr, dt, what=f"{name} w", scale=4)
    for s in sk:
        close(sk[s], sr[s], dt, what=f"{name} {s}", scale=4)
    gr.check()


# ---- dropout -------------------------------------------------------------------------

@FAST
@given(data=st.data())
def test_dropout_matches_twin(data):
    dt = data.draw(dtypes, label="dtype")
    shape = tuple(data.draw(shapes_nd, label="shape"))
    p = data.draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]), label="p")
    seed = data.draw(st.integers(0, 2**64 - 1), label="seed")
    offset = data.draw(st.integers(0, 2**40), label="offset")
    rng = rng_of(data)
    g = Guard()
    x = g(randn(rng, shape, dt), data.draw(layouts, label="x layout"))
    ok, mk = K.dropout_forward(x, p, seed, offset=offset)
    orf, mr = R.dropout_forward(x, p, seed, offset=offset)
    np.testing.assert_array_equal(mk, mr)
    np.testing.assert_array_equal(ok, orf)
    go = g(randn(rng, shape, dt), data.draw(layouts, label="grad layout"))
    np.testing.assert_array_equal(K.dropout_backward(go, mk, p), R.dropout_backward(go, mr, p))
    g.check()


# ---- convolution and pooling ------------------------------------------------------------

@SLOW
@given(data=st.data())
def test_conv2d_matches_twin(data):
    dt = data.draw(dtypes, label="dtype")
    mr, kc = CFG[dt.name]["MR"], CFG[dt.name]["KC"]
    n = data.draw(st.sampled_from([1, 2, 3]), label="n")
    oc = data.draw(st.sampled_from(sorted({1, 3, *_straddle(mr)})), label="oc")
    kh, kw = data.draw(st.sampled_from([(1, 1), (3, 3), (2, 3), (5, 1)]), label="kernel")
    # c * kh * kw straddling KC sometimes
    c = data.draw(st.sampled_from(sorted({1, 2, 3, (kc // (kh * kw)) + 1})), label="c")
    h = data.draw(st.integers(max(kh - 1, 1), 9), label="h")
    w = data.draw(st.integers(max(kw - 1, 1), 9), label="w")
    sh, sw = data.draw(st.sampled_from([(1, 1), (2, 2), (1, 3)]), label="stride")
    ph, pw = data.draw(st.integers(0, kh // 2)), data.draw(st.integers(0, kw // 2))
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    act = data.draw(st.sampled_from(ACTS), label="act")
    need_dx = data.draw(st.booleans(), label="need_dx")
    rng = rng_of(data)
    g = Guard()
    lay = lambda lbl: data.draw(layouts, label=lbl)  # noqa: E731
    x = g(randn(rng, (n, c, h, w), dt), lay("x"))
    wt = g(randn(rng, (oc, c, kh, kw), dt, 1 / np.sqrt(c * kh * kw)), lay("w"))
    b = g(randn(rng, (oc,), dt), lay("b")) if data.draw(st.booleans(), label="bias") else None
    kw_ = dict(stride=(sh, sw), padding=(ph, pw))
    got = K.conv2d_forward(x, wt, b, activation=act, **kw_)
    zr = R.conv2d_forward(x, wt, b, activation="identity", **kw_)
    want = R.conv2d_forward(x, wt, b, activation=act, **kw_)
    close(got, want, dt, k=c * kh * kw, what=f"conv2d_forward {act}")
    go = g(randn(rng, want.shape, dt), lay("grad_out"))
    a = g(want, lay("out_act"))
    zz = g(zr, lay("pre_act"))
    gk = K.conv2d_backward(go, x, wt, a, zz, activation=act, need_dx=need_dx, **kw_)
    gref = R.conv2d_backward(go, x, wt, a, zz, activation=act, need_dx=need_dx, **kw_)
    if need_dx:
        close(gk[0], gref[0], dt, k=oc * kh * kw, what="conv dx")
    close(gk[1], gref[1], dt, k=n * want.shape[2] * want.shape[3], what="conv dw")
    close(gk[2], gref[2], dt, k=n * want.shape[2] * want.shape[3], what="conv db")
    g.check()


@MEDIUM
@given(data=st.data())
def test_pooling_matches_twin(data):
    dt = data.draw(dtypes, label="dtype")
    n, c = data.draw(st.sampled_from([1, 2, 3])), data.draw(st.sampled_from([1, 3, 7]))
    kh, kw = data.draw(st.sampled_from([(1, 1), (2, 2), (3, 3), (2, 3)]), label="kernel")
    h = data.draw(st.integers(kh, 13), label="h")
    w = data.draw(st.integers(kw, 13), label="w")
    stride = data.draw(st.sampled_from([None, (1, 1), (2, 1), (3, 2)]), label="stride")
    pad = (data.draw(st.integers(0, kh // 2)), data.draw(st.integers(0, kw // 2)))
    rng = rng_of(data)
    g = Guard()
    lay = lambda lbl: data.draw(layouts, label=lbl)  # noqa: E731
    x = g(randn(rng, (n, c, h, w), dt), lay("x"))
    ok, ik = K.maxpool2d_forward(x, (kh, kw), stride, pad)
    orf, ir = R.maxpool2d_forward(x, (kh, kw), stride, pad)
    np.testing.assert_array_equal(ok, orf)
    np.testing.assert_array_equal(ik, ir)
    go = g(randn(rng, ok.shape, dt), lay("grad"))
    idx = g(ik, lay("indices"))
    close(K.maxpool2d_backward(go, idx, x.shape), R.maxpool2d_backward(go, idx, x.shape), dt,
          k=kh * kw, what="maxpool backward")
    close(K.avgpool2d_forward(x, (kh, kw), stride, pad), R.avgpool2d_forward(x, (kh, kw), stride,
          pad), dt, k=kh * kw, what="avgpool forward")
    close(K.avgpool2d_backward(go, x.shape, (kh, kw), stride, pad),
          R.avgpool2d_backward(go, x.shape, (kh, kw), stride, pad), dt, k=kh * kw,
          what="avgpool backward")
    close(K.global_avgpool_forward(x), R.global_avgpool_forward(x), dt, k=h * w, what="gap fwd")
    gg = g(randn(rng, (n, c), dt), lay("gap grad"))
    close(K.global_avgpool_backward(gg, x.shape), R.global_avgpool_backward(gg, x.shape), dt,
          what="gap backward")
    g.check()


# ---- normalization ----------------------------------------------------------------------

@MEDIUM
@given(data=st.data())
def test_batchnorm_matches_twin(data):
    dt = data.draw(dtypes, label="dtype")
    n = data.draw(st.sampled_from([1, 2, 3, 16, 17]), label="n")
    c = data.draw(st.sampled_from([1, 3, 63, 64, 65, 130]), label="c")
    spatial = data.draw(st.sampled_from([(), (1,), (5,), (3, 4), (1, 1)]), label="spatial")
    training = data.draw(st.booleans(), label="training") and n * int(np.prod(spatial)) > 1
    affine = data.draw(st.booleans(), label="affine")
    rng = rng_of(data)
    g = Guard()
    lay = lambda lbl: data.draw(layouts, label=lbl)  # noqa: E731
    x = g(randn(rng, (n, c, *spatial), dt, 3) + 2, lay("x"))
    w = g(randn(rng, (c,), dt), lay("w")) if affine else None
    b = g(randn(rng, (c,), dt), lay("b")) if affine else None
    rm = g(randn(rng, (c,), dt), lay("rm"))
    rv = g(np.abs(randn(rng, (c,), dt)) + 0.5, lay("rv"))
    ok, mk, vk = K.batchnorm_forward(x, w, b, rm, rv, training=training)
    orf, mr, vr = R.batchnorm_forward(x, w, b, rm, rv, training=training)
    m = n * max(int(np.prod(spatial)), 1)
    close(ok, orf, dt, k=m, what="batchnorm forward")
    if training:
        close(mk, mr, dt, k=m, what="batch mean")
        close(vk, vr, dt, k=m, what="batch var")
        stats = (g(mk, lay("mean")), g(vk, lay("var")))
        uk = K.batchnorm_update_stats(np.array(rm), np.array(rv), *stats, m if m > 1 else 2,
                                      0.1)
        ur = R.batchnorm_update_stats(np.array(rm), np.array(rv), *stats, m if m > 1 else 2,
                                      0.1)
        close(uk[0], ur[0], dt, what="running mean")
        close(uk[1], ur[1], dt, what="running var")
    else:
        stats = (rm, rv)
    gy = g(randn(rng, x.shape, dt), lay("grad"))
    for a, e, nm in zip(K.batchnorm_backward(gy, x, *stats, w, training=training),
                        R.batchnorm_backward(gy, x, *stats, w, training=training),
                        ("dx", "dweight", "dbias")):
        close(a, e, dt, k=m, what=f"batchnorm {nm}")
    g.check()


@MEDIUM
@given(data=st.data())
def test_layernorm_matches_twin(data):
    dt = data.draw(dtypes, label="dtype")
    lead = tuple(data.draw(st.lists(st.sampled_from([1, 2, 3, 7]), min_size=1, max_size=2),
                           label="lead"))
    norm = tuple(data.draw(st.lists(st.sampled_from([1, 3, 8, 9, 65]), min_size=1,
                                    max_size=2), label="normalized"))
    affine = data.draw(st.sampled_from(["both", "weight", "none"]), label="affine")
    rng = rng_of(data)
    g = Guard()
    lay = lambda lbl: data.draw(layouts, label=lbl)  # noqa: E731
    x = g(randn(rng, (*lead, *norm), dt, 2) - 1, lay("x"))
    w = g(randn(rng, norm, dt), lay("w")) if affine != "none" else None
    b = g(randn(rng, norm, dt), lay("b")) if affine == "both" else None
    d = int(np.prod(norm))
    ok = K.layernorm_forward(x, norm, w, b)
    orf = R.layernorm_forward(x, norm, w, b)
    for a, e, nm in zip(ok, orf, ("out", "mean", "rstd")):
        close(a, e, dt, k=d, what=f"layernorm {nm}")
    gy = g(randn(rng, x.shape, dt), lay("grad"))
    mean, rstd = g(ok[1], lay("mean")), g(ok[2], lay("rstd"))
    for a, e, nm in zip(K.layernorm_backward(gy, x, mean, rstd, w),
                        R.layernorm_backward(gy, x, mean, rstd, w), ("dx", "dweight", "dbias")):
        close(a, e, dt, k=max(d, x.size // d), what=f"layernorm {nm}")
    g.check()
@given(st.lists(st.integers(0, 2**32 - 1), max_size=64),
       st.sampled_from(["c", "reversed", "f32_from_f64"]))
def test_round_bf16_matches_twin_bit_for_bit(words, layout):
    x = np.array(words, np.uint32).view(np.float32)
    if layout == "reversed":
        x = x[::-1]
    elif layout == "f32_from_f64":
        x = x.astype(np.float64)  # converted back to float32 at the boundary, exactly
    got, want = K.round_bf16(x), R.round_bf16(x)
    assert got.dtype == np.float32 and got.shape == np.shape(x)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_every_public_kernel_is_covered():
    """Keep this file honest: a new kernel in fastnn.kernels.__all__ needs a property test."""
    covered = {"gemm", "dense_forward", "dense_backward", "activation_forward",
               "activation_backward", "cross_entropy", "mse", "binary_cross_entropy",
               "dropout_forward", "dropout_backward", "conv2d_forward", "conv2d_backward",
               "maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward",
               "avgpool2d_backward", "global_avgpool_forward", "global_avgpool_backward",
               "embedding_forward", "embedding_backward", "global_avgpool1d_forward",
               "global_avgpool1d_backward",
               "batchnorm_forward", "batchnorm_backward", "batchnorm_update_stats",
               "layernorm_forward", "layernorm_backward", "round_bf16", *OPTS}
    assert set(K.__all__) == covered
    assert set(R.__all__) == set(K.__all__)
    assert set(OUTPUT_CASES) | set(OPTS) == set(K.__all__)


# ---- the output contract ----------------------------------------------------------------
# Each case: (call(**outs) -> result, {out kwarg: (shape, dtype)}, inputs the call reads,
# out kwargs that may be exactly one input (in place): {out kwarg: input index}).

def _cases(dt: np.dtype) -> dict:
    rng = np.random.default_rng(7)
    r = lambda *s: randn(rng, s, dt)  # noqa: E731
    x2, w2, b1 = r(4, 5), r(5, 3), r(3)
    xf = x2.astype(np.float32)
    a2, g2 = r(4, 3), r(4, 3)
    x4, w4, b4 = r(2, 3, 6, 6), r(4, 3, 3, 3), r(4)
    g4 = r(2, 4, 4, 4)
    p4 = r(2, 3, 3, 3)
    lab = np.array([0, 2, 1, 0])
    mask = (rng.random((4, 3)) > 0.5).astype(np.uint8)
    _, idx = K.maxpool2d_forward(x4, 2)
    gp = r(2, 3)
    i64 = np.dtype(np.int64)
    c3, c3b, c3p = r(3), r(3), np.abs(r(3)) + 0.5  # per-channel vectors (variances > 0)
    p4x = r(2, 3, 6, 6)  # a gradient of x4's shape
    r5, r5b, g5, r4, r4p = r(5), r(5), r(4, 5), r(4), np.abs(r(4)) + 0.5
    return {
        "gemm": (lambda **o: K.gemm(x2, w2, **o), {"out": ((4, 3), dt)}, [x2, w2], {}),
        "dense_forward": (lambda **o: K.dense_forward(x2, w2, b1, "gelu", **o),
                          {"out": ((4, 3), dt), "z_out": ((4, 3), dt)}, [x2, w2, b1], {}),
        "dense_backward": (lambda **o: K.dense_backward(g2, x2, w2, a2, a2, "gelu", **o),
                           {"dx_out": ((4, 5), dt), "dw_out": ((5, 3), dt),
                            "db_out": ((3,), dt)}, [g2, x2, w2, a2], {}),
        "activation_forward": (lambda **o: K.activation_forward(a2, "tanh", **o),
                               {"out": ((4, 3), dt)}, [a2], {"out": 0}),
        "activation_backward": (lambda **o: K.activation_backward(g2, a2, None, "sigmoid", **o),
                                {"out": ((4, 3), dt)}, [g2, a2], {"out": 0}),
        "cross_entropy": (lambda **o: K.cross_entropy(a2, lab, **o),
                          {"grad_out": ((4, 3), dt)}, [a2], {}),
        "mse": (lambda **o: K.mse(a2, g2, **o), {"grad_out": ((4, 3), dt)}, [a2, g2], {}),
        "binary_cross_entropy": (lambda **o: K.binary_cross_entropy(a2, g2, **o),
                                 {"grad_out": ((4, 3), dt)}, [a2, g2], {}),
        "dropout_forward": (lambda **o: K.dropout_forward(a2, 0.5, 3, **o),
                            {"out": ((4, 3), dt)}, [a2], {"out": 0}),
        "dropout_backward": (lambda **o: K.dropout_backward(g2, mask, 0.5, **o),
                             {"out": ((4, 3), dt)}, [g2], {"out": 0}),
        "conv2d_forward": (lambda **o: K.conv2d_forward(x4, w4, b4, 1, 0, "silu", **o),
                           {"out": ((2, 4, 4, 4), dt), "z_out": ((2, 4, 4, 4), dt)},
                           [x4, w4, b4], {}),
        "conv2d_backward": (lambda **o: K.conv2d_backward(g4, x4, w4, g4, g4, 1, 0, "silu", **o),
                            {"dx_out": ((2, 3, 6, 6), dt), "dw_out": ((4, 3, 3, 3), dt),
                             "db_out": ((4,), dt)}, [g4, x4, w4], {}),
        "maxpool2d_forward": (lambda **o: K.maxpool2d_forward(x4, 2, **o),
                              {"out": ((2, 3, 3, 3), dt), "indices_out": ((2, 3, 3, 3), i64)},
                              [x4], {}),
        "maxpool2d_backward": (lambda **o: K.maxpool2d_backward(p4, idx, x4.shape, **o),
                               {"out": ((2, 3, 6, 6), dt)}, [p4, idx], {}),
        "avgpool2d_forward": (lambda **o: K.avgpool2d_forward(x4, 2, **o),
                              {"out": ((2, 3, 3, 3), dt)}, [x4], {}),
        "avgpool2d_backward": (lambda **o: K.avgpool2d_backward(p4, x4.shape, 2, **o),
                               {"out": ((2, 3, 6, 6), dt)}, [p4], {}),
        "global_avgpool_forward": (lambda **o: K.global_avgpool_forward(x4, **o),
                                   {"out": ((2, 3), dt)}, [x4], {}),
        "global_avgpool_backward": (lambda **o: K.global_avgpool_backward(gp, x4.shape, **o),
                                    {"out": ((2, 3, 6, 6), dt)}, [gp], {}),
        "embedding_forward": (lambda **o: K.embedding_forward(lab, w2, **o),
                              {"out": ((4, 3), dt)}, [w2], {}),
        "embedding_backward": (lambda **o: K.embedding_backward(g2, lab, 5, **o),
                               {"out": ((5, 3), dt)}, [g2], {}),
        "global_avgpool1d_forward": (lambda **o: K.global_avgpool1d_forward(p4[0], **o),
                                     {"out": ((3, 3), dt)}, [p4], {}),
        "global_avgpool1d_backward": (lambda **o: K.global_avgpool1d_backward(gp, (2, 4, 3),
                                                                              **o),
                                      {"out": ((2, 4, 3), dt)}, [gp], {}),
        "batchnorm_forward": (lambda **o: K.batchnorm_forward(x4, c3, c3b, c3, c3p,
                                                              training=True, **o),
                              {"out": ((2, 3, 6, 6), dt), "mean_out": ((3,), dt),
                               "var_out": ((3,), dt)}, [x4, c3, c3b, c3p], {"out": 0}),
        "batchnorm_backward": (lambda **o: K.batchnorm_backward(p4x, x4, c3, c3p, c3b,
                                                                training=True, **o),
                               {"dx_out": ((2, 3, 6, 6), dt), "dweight_out": ((3,), dt),
                                "dbias_out": ((3,), dt)}, [p4x, x4, c3, c3p, c3b],
                               {"dx_out": 0}),
        "batchnorm_update_stats": (
            lambda **o: K.batchnorm_update_stats(o.get("running_mean", c3.copy()),
                                                 o.get("running_var", c3p.copy()), c3b, c3p,
                                                 8, 0.1),
            {"running_mean": ((3,), dt), "running_var": ((3,), dt)}, [c3b, c3p], {}),
        "layernorm_forward": (lambda **o: K.layernorm_forward(x2, 5, r5, r5b, **o),
                              {"out": ((4, 5), dt), "mean_out": ((4,), dt),
                               "rstd_out": ((4,), dt)}, [x2, r5, r5b], {"out": 0}),
        "layernorm_backward": (lambda **o: K.layernorm_backward(g5, x2, r4, r4p, r5, **o),
                               {"dx_out": ((4, 5), dt), "dweight_out": ((5,), dt),
                                "dbias_out": ((5,), dt)}, [g5, x2, r4, r4p, r5],
                               {"dx_out": 0}),
        # float32 only (the bf16 operand conversion), in place allowed
        "round_bf16": (lambda **o: K.round_bf16(xf, **o),
                       {"out": ((4, 5), np.dtype(np.float32))}, [xf], {"out": 0}),
    }


OUTPUT_CASES = sorted(_cases(np.dtype(np.float64)))


def _as_out_of(arr: np.ndarray, shape, dtype) -> np.ndarray | None:
    """A C-contiguous view of ``arr``'s memory with ``shape`` and ``dtype``, if it fits."""
    flat = arr.reshape(-1).view(np.uint8)
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if flat.size < need:
        return None
    return flat[:need].view(dtype).reshape(shape)


@pytest.mark.parametrize("name", OUTPUT_CASES)
def test_bad_outputs_are_clear_errors(name, dtype):
    call, outs, inputs, inplace = _cases(dtype)[name]
    call()  # the valid call works
    for kw, (shape, dt) in outs.items():
        ro = np.zeros(shape, dt)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            call(**{kw: ro})
        other_dt = np.dtype(np.float64) if dt == np.float32 else np.dtype(np.float32)
        wrong_dt = np.zeros(shape, other_dt if dt.kind == "f" else np.int32)
        with pytest.raises(TypeError, match=kw):
            call(**{kw: wrong_dt})
        with pytest.raises(ValueError, match=kw):
            call(**{kw: np.zeros((*shape[:-1], shape[-1] + 1), dt)})
        with pytest.raises(ValueError, match=kw):
            call(**{kw: np.zeros((*shape, 1), dt)})
        if len(shape) >= 2 and shape[-1] > 1:
            with pytest.raises(ValueError, match="C-contiguous"):
                call(**{kw: np.zeros(shape[::-1], dt).T})
        with pytest.raises(TypeError, match=kw):
            call(**{kw: np.zeros(shape, dt).tolist()})
        # aliasing each input: an error, unless this output may be exactly that input
        for i, inp in enumerate(inputs):
            alias = _as_out_of(inp, shape, dt)
            if alias is None:
                continue
            if inplace.get(kw) == i and alias.shape == inp.shape and alias.dtype == inp.dtype:
                expect = call()
                expect = expect[0] if isinstance(expect, tuple) else expect
                src = inp.copy()
                res = call(**{kw: alias})
                res = res[0] if isinstance(res, tuple) else res
                assert res is alias
                np.testing.assert_array_equal(alias, expect)
                inp[...] = src
                continue
            before = inp.copy()
            with pytest.raises(ValueError, match="overlap"):
                call(**{kw: alias})
            np.testing.assert_array_equal(inp, before, err_msg="input written before the error")
        # two outputs sharing memory
        for kw2, (shape2, dt2) in outs.items():
            if kw2 == kw or dt2 != dt:
                continue
            buf = np.zeros(max(int(np.prod(shape)), int(np.prod(shape2))) + 1, dt)
            o1 = buf[:int(np.prod(shape))].reshape(shape)
            o2 = buf[:int(np.prod(shape2))].reshape(shape2)
            with pytest.raises(ValueError, match="overlap"):
                call(**{kw: o1, kw2: o2})


@pytest.mark.parametrize("name", ["activation_forward", "dropout_forward"])
def test_partial_overlap_in_place_rejected(name, dtype):
    """Exactly in place is allowed for elementwise kernels; a shifted overlap is not."""
    buf = np.arange(13, dtype=dtype) / 7
    x, out = buf[:-1].reshape(3, 4), buf[1:].reshape(3, 4)
    fn = (lambda **o: K.activation_forward(x, "tanh", **o)) if name == "activation_forward" \
        else (lambda **o: K.dropout_forward(x, 0.3, 1, **o))
    with pytest.raises(ValueError, match="overlap"):
        fn(out=out)


@pytest.mark.parametrize("name", sorted(OPTS))
def test_optimizer_outputs_contract(name, dtype):
    """w and the state arrays are outputs: read-only, wrong dtype, non-contiguous or
    overlapping arrays (also g overlapping w) are errors, raised before any write."""
    rng = np.random.default_rng(1)
    shape = (3, 4)
    w = randn(rng, shape, dtype)
    g = randn(rng, shape, dtype)
    states = {s: np.zeros(shape, dtype) for s in STATE[name]}
    opts = OPTS[name]()
    snapshot = lambda: [w.copy(), *[v.copy() for v in states.values()]]  # noqa: E731

    def unchanged(before):
        for a, b in zip([w, *states.values()], before):
            np.testing.assert_array_equal(a, b)

    before = snapshot()
    ro = w.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _opt_call(K, name, ro, g, states, opts)
    with pytest.raises(TypeError):
        _opt_call(K, name, w.astype(np.float16), g, states, opts)
    with pytest.raises(ValueError, match="C-contiguous"):
        _opt_call(K, name, np.asfortranarray(w), g, states, opts)
    with pytest.raises(ValueError):
        _opt_call(K, name, w, g[:, :3], states, opts)
    if name == "sgd_update":  # exactly in place is fine (w -= lr * w); partial overlap not
        buf = np.arange(13, dtype=dtype)
        with pytest.raises(ValueError, match="overlap"):
            K.sgd_update(buf[1:].reshape(3, 4), buf[:-1].reshape(3, 4), 0.1)
        wk = w.copy()
        K.sgd_update(wk, wk, 0.5)
        np.testing.assert_array_equal(wk, w - dtype.type(0.5) * w)
        return
    with pytest.raises(ValueError, match="overlap"):
        _opt_call(K, name, w, w, states, opts)
    unchanged(before)
    for s in states:
        for bad, exc in ((states[s].astype(np.float16), TypeError),
                         (np.zeros((3, 5), dtype), ValueError), (w, ValueError),
                         (g, ValueError)):
            st2 = dict(states, **{s: bad})
            with pytest.raises(exc):
                _opt_call(K, name, w, g, st2, opts)
            unchanged(before)
        if len(states) > 1:
            other = next(t for t in states if t != s)
            with pytest.raises(ValueError, match="overlap"):
                _opt_call(K, name, w, g, dict(states, **{s: states[other]}), opts)
            unchanged(before)
