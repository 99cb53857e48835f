"""API fuzzer: random sequences of public calls with random (often wrong) shapes.

Every public call either works or raises a clear ``ValueError`` / ``TypeError`` (or a
``RuntimeError`` for a call made in the wrong order) before any state changes; none
writes outside the arrays it was given.  Two guards make an out-of-bounds write visible
even without a sanitizer: every ``out=`` array is the head of a larger buffer whose tail
holds a canary, and every model's parameters are compared before and after a call that
raised.  ``tools/memcheck.sh`` runs this file under AddressSanitizer and
UndefinedBehaviorSanitizer as well.

The run is bounded and deterministic (hypothesis derandomized); ``FASTNN_FUZZ_EXAMPLES``
sets the number of examples per test for a long run.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnn as fnn  # noqa: E402
from fastnn import kernels as K  # noqa: E402

N_EXAMPLES = int(os.environ.get("FASTNN_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=N_EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))
CLEAN = (ValueError, TypeError)
CANARY = -7.25e7  # exactly representable in float16/32/64

DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int32])
FLOATS = st.sampled_from([np.float32, np.float64])
ACTS = st.sampled_from(["identity", "relu", "sigmoid", "tanh", "gelu", "silu", "elu",
                        "leaky_relu", "softplus"])


def _array(draw, shape, dtype=None, layout=None):
    """An array of ``shape``: C-contiguous, Fortran-ordered or a strided view."""
    dtype = draw(DTYPES) if dtype is None else dtype
    layout = draw(st.sampled_from(["c", "f", "strided"])) if layout is None else layout
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if layout == "strided" and len(shape) >= 1:
        big = rng.standard_normal((*shape[:-1], 2 * shape[-1] + 1)).astype(dtype)
        return big[..., ::2][..., : shape[-1]]
    a = rng.standard_normal(shape).astype(dtype)
    return np.asfortranarray(a) if layout == "f" else a


def _out(shape, dtype):
    """An output array of ``shape`` followed in memory by a canary tail."""
    n = int(np.prod(shape))
    buf = np.full(n + 64, CANARY, dtype=dtype)
    return buf[:n].reshape(shape), buf


def _canary_intact(buf, shape):
    n = int(np.prod(shape))
    return bool(np.all(buf[n:] == CANARY))


def _near(draw, n):
    """``n``, or now and then a wrong size close to it (0 included)."""
    return draw(st.sampled_from([n, n, n, n, max(n - 1, 0), n + 1, 0, 1]))


CALLS = {"ok": 0, "refused": 0}


@pytest.fixture(scope="module", autouse=True)
def _report_calls():
    """Print how many public calls the run made (for a long run's record)."""
    yield
    if os.environ.get("FASTNN_FUZZ_EXAMPLES"):
        print(f"\nAPI fuzz: {CALLS['ok'] + CALLS['refused']} public calls, "
              f"{CALLS['refused']} refused with a clean error")


def _call(fn, *args, **kwargs):
    """Call ``fn``; a clean error is fine, any other exception is a failure."""
    CALLS["ok"] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs), None
    except CLEAN as exc:
        CALLS["ok"] -= 1
        CALLS["refused"] += 1
        assert str(exc), f"{fn.__name__} raised {type(exc).__name__} with no message"
        return None, exc


# ---- kernels ----------------------------------------------------------------------------
@FUZZ
@given(st.data())
def test_fuzz_dense_and_gemm_kernels(data):
    d = data.draw
    m, k, n = d(st.integers(0, 9)), d(st.integers(0, 40)), d(st.integers(0, 33))
    dt = d(FLOATS)
    x = _array(d, (_near(d, m), _near(d, k)))
    w = _array(d, (_near(d, k), _near(d, n)))
    b = d(st.sampled_from([None, "ok", "bad"]))
    b = None if b is None else _array(d, (n if b == "ok" else _near(d, n),))
    act = d(ACTS)
    oshape = (_near(d, m), _near(d, n))
    out, buf = _out(oshape, dt)
    res, err = _call(K.dense_forward, x, w, b, activation=act, out=out)
    assert _canary_intact(buf, oshape), "dense_forward wrote past its output"
    if err is None:
        assert res.shape == (x.shape[0], w.shape[1])

    g = _array(d, (_near(d, m), _near(d, n)))
    a = _array(d, (_near(d, m), _near(d, n)))
    need_dx = d(st.booleans())
    dx_shape, dw_shape, db_shape = (_near(d, m), _near(d, k)), (_near(d, k), _near(d, n)), \
        (_near(d, n),)
    dx, dxb = _out(dx_shape, dt)
    dw, dwb = _out(dw_shape, dt)
    db, dbb = _out(db_shape, dt)
    kw = dict(need_dx=need_dx)
    if d(st.booleans()):
        kw.update(dx_out=dx, dw_out=dw, db_out=db)
    res, err = _call(K.dense_backward, g, x, w, a, None, act, **kw)
    for bufx, shp, name in ((dxb, dx_shape, "dx"), (dwb, dw_shape, "dw"), (dbb, db_shape, "db")):
        assert _canary_intact(bufx, shp), f"dense_backward wrote past {name}"
    if err is None and need_dx and res[0] is not None:
        assert np.all(np.isfinite(res[0])) or not np.all(np.isfinite(g))

    ta, tb = d(st.booleans()), d(st.booleans())
    ga = _array(d, (_near(d, k), _near(d, m)) if ta else (_near(d, m), _near(d, k)))
    gb = _array(d, (_near(d, n), _near(d, k)) if tb else (_near(d, k), _near(d, n)))
    out, buf = _out(oshape, dt)
    _call(K.gemm, ga, gb, trans_a=ta, trans_b=tb, out=out)
    assert _canary_intact(buf, oshape), "gemm wrote past its output"


@FUZZ
@given(st.data())
def test_fuzz_elementwise_loss_and_optimizer_kernels(data):
    d = data.draw
    m, n = d(st.integers(0, 7)), d(st.integers(0, 20))
    dt = d(FLOATS)
    x = _array(d, (_near(d, m), _near(d, n)))
    act = d(ACTS)
    oshape = (_near(d, m), _near(d, n))
    out, buf = _out(oshape, dt)
    _call(K.activation_forward, x, act, out=out)
    assert _canary_intact(buf, oshape), "activation_forward wrote past its output"
    out, buf = _out(oshape, dt)
    _call(K.activation_backward, _array(d, (_near(d, m), _near(d, n))), x, None, act, out=out)
    assert _canary_intact(buf, oshape), "activation_backward wrote past its output"

    labels = d(st.sampled_from(["int", "onehot", "bad"]))
    if labels == "int":
        y = np.random.default_rng(0).integers(0, max(n, 1), _near(d, m))
    elif labels == "onehot":
        y = _array(d, (_near(d, m), _near(d, n)))
    else:
        y = _array(d, (_near(d, m) + 1,))
    out, buf = _out(oshape, dt)
    _call(K.cross_entropy, x, y, grad_out=out)
    assert _canary_intact(buf, oshape), "cross_entropy wrote past its gradient"
    for fn in (K.mse, K.binary_cross_entropy):
        out, buf = _out(oshape, dt)
        _call(fn, x, _array(d, (_near(d, m), _near(d, n))), grad_out=out)
        assert _canary_intact(buf, oshape), f"{fn.__name__} wrote past its gradient"

    size = d(st.integers(0, 50))
    wbuf = np.full(size + 64, CANARY, dtype=dt)
    w = wbuf[:size]
    w[:] = 0.5
    g = _array(d, (_near(d, size),))
    which = d(st.sampled_from(["sgd", "adam", "rmsprop", "adagrad"]))
    st_shape = _near(d, size)
    sbuf = np.full(st_shape + 64, CANARY, dtype=dt)
    s = sbuf[:st_shape]
    s[:] = 0.0
    if which == "sgd":
        _call(K.sgd_step, w, g, s, lr=0.1, momentum=0.9)
    elif which == "adam":
        vbuf = np.full(st_shape + 64, CANARY, dtype=dt)
        v = vbuf[:st_shape]
        v[:] = 0.0
        _call(K.adam_step, w, g, s, v, step=1, lr=1e-3)
        assert np.all(vbuf[st_shape:] == CANARY), "adam_step wrote past v"
    elif which == "rmsprop":
        _call(K.rmsprop_step, w, g, s, lr=1e-2)
    else:
        _call(K.adagrad_step, w, g, s, step=1, lr=1e-2)
    assert np.all(wbuf[size:] == CANARY), f"{which} wrote past the parameters"
    assert np.all(sbuf[st_shape:] == CANARY), f"{which} wrote past its state"


# ---- models -----------------------------------------------------------------------------
def _model(d):
    dt = d(st.sampled_from(["float32", "float64"]))
    widths = d(st.lists(st.integers(1, 12), min_size=2, max_size=4))
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(fnn.Dense(a, b, activation=d(ACTS) if i < len(widths) - 2 else None))
        if d(st.integers(0, 3)) == 0:
            layers.append(fnn.Dropout(d(st.sampled_from([0.0, 0.3]))))
    model = fnn.Sequential(layers, dtype=dt, seed=d(st.integers(0, 99)))
    opt = d(st.sampled_from([fnn.optim.SGD(lr=0.1, momentum=0.9), fnn.optim.Adam(lr=1e-3),
                             fnn.optim.AdamW(lr=1e-3), fnn.optim.RMSprop(lr=1e-3),
                             fnn.optim.Adagrad(lr=1e-2)]))
    loss = d(st.sampled_from(["cross_entropy", "mse"]))
    if loss == "cross_entropy" and widths[-1] == 1:
        # refused since issue 14 (softmax over one class is constant; tests/test_output_loss.py)
        with pytest.raises(ValueError, match="single output"):
            model.compile(optimizer=opt, loss=loss)
        loss = "mse"
    model.compile(optimizer=opt, loss=loss)
    return model, widths, loss


def _params(model):
    return [w.copy() for w in model.get_weights()]


@FUZZ
@given(st.data())
def test_fuzz_model_call_sequences(data):
    d = data.draw
    model, widths, loss = _model(d)
    n_in, n_out = widths[0], widths[-1]
    for _ in range(d(st.integers(1, 8))):
        op = d(st.sampled_from(["forward", "backward", "train_step", "compute_gradients",
                                "freeze", "predict", "save_load"]))
        m = d(st.integers(0, 6))
        before = _params(model)
        if op in ("forward", "predict"):
            x = _array(d, (_near(d, m), _near(d, n_in)))
            fn = model.forward if op == "forward" else model.predict
            res, err = _call(fn, x, **({"training": d(st.booleans())} if op == "forward" else {}))
            if err is None:
                assert res.shape == (x.shape[0], n_out)
        elif op == "backward":
            g = _array(d, (_near(d, m), _near(d, n_out)))
            try:
                res, err = _call(model.backward, g)
            except RuntimeError as exc:  # backward before any forward
                assert str(exc)
                err = exc
        elif op in ("train_step", "compute_gradients"):
            x = _array(d, (_near(d, m), _near(d, n_in)))
            if loss == "cross_entropy":
                y = np.random.default_rng(m).integers(0, n_out, _near(d, m))
            else:
                y = _array(d, (_near(d, m), _near(d, n_out)))
            res, err = _call(getattr(model, op), x, y)
            if err is None:
                assert np.isfinite(res) or not np.isfinite(x).all()
        elif op == "freeze":
            layer = model.layers[d(st.integers(0, len(model.layers) - 1))]
            layer.trainable = d(st.booleans())
            err = None
        else:  # save and load: the copy predicts bitwise the same
            x = _array(d, (m + 1, n_in), dtype=np.float64, layout="c")
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "m.fnn")
                model.save(path)
                same = fnn.load(path)
            assert np.array_equal(same.predict(x), model.predict(x), equal_nan=True)
            err = None
        if err is not None:
            for a, b in zip(before, _params(model)):
                assert np.array_equal(a, b, equal_nan=True), f"{op} raised but changed weights"


def test_issue_reproducer_short_grad_through_dropout_raises():
    """The heap overflow of the memory-safety issue: a short gradient through eval Dropout."""
    m = fnn.Sequential([fnn.Dense(4, 3000), fnn.Dropout(0.5)], seed=0)
    m.forward(np.ones((2000, 4), np.float32), training=False)
    with pytest.raises(ValueError, match="grad_out"):
        m.backward(np.ones((1, 1), np.float32))
