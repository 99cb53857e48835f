"""Embedding and GlobalAvgPool1D: kernels against their NumPy twins, the layers against
torch (float64, 1e-10), deterministic accumulation of repeated indices, the index check
in C, integer input through Sequential/fit, save/load, pickle, interop and ONNX.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import assert_close

import fastnn as fnn
from fastnn import kernels as K
from fastnn import reference as R

DTYPES = [np.float32, np.float64]


def _bow_model(dtype="float64", seed=0, vocab=30, dim=6, classes=3):
    return fnn.Sequential([fnn.Embedding(vocab, dim), fnn.GlobalAvgPool1D(),
                           fnn.Dense(dim, classes)], dtype=dtype, seed=seed)


# ---- kernels ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (5, 3), (33, 17), (4, 0)])
@pytest.mark.parametrize("dim", [1, 5, 16, 37])
@pytest.mark.parametrize("threads", [1, 2])
def test_embedding_kernels_match_twin(dtype, shape, dim, threads):
    rng = np.random.default_rng(sum(shape) * 100 + dim)
    v = 11
    w = rng.standard_normal((v, dim)).astype(dtype)
    idx = rng.integers(0, v, shape)
    g = rng.standard_normal((*shape, dim)).astype(dtype)
    with fnn.threads(threads):
        out = K.embedding_forward(idx, w)
        dw = K.embedding_backward(g, idx, v)
    assert out.dtype == dtype and out.shape == (*shape, dim)
    assert np.array_equal(out, R.embedding_forward(idx, w))  # a gather is exact
    assert_close(dw, R.embedding_backward(g, idx, v), dtype, max(idx.size, 1), "embedding dW")


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_accumulates_repeats_deterministically(dtype):
    """Many repeats of few rows: bitwise the same sums for every thread count, equal to
    the sequential sum in input order."""
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 3, 5000)
    g = rng.standard_normal((5000, 64)).astype(dtype)
    want = np.zeros((3, 64), dtype)
    for i, r in enumerate(idx):  # the order the kernel promises
        want[r] += g[i]
    results = []
    for nt in (1, 2, 3, 4):
        with fnn.threads(nt):
            results.append(K.embedding_backward(g, idx, 3))
    for got in results:
        assert np.array_equal(got, want)


@pytest.mark.parametrize("fn", ["forward", "backward"])
@pytest.mark.parametrize("bad", [-1, 7, 2**40])
def test_embedding_index_out_of_range_is_a_value_error_from_c(fn, bad):
    w = np.ones((7, 3))
    idx = np.array([[0, 1], [bad, 2]])
    for mod in (K, R):
        out = np.full((2, 2, 3), 5.0)
        with pytest.raises(ValueError, match=rf"index {bad} at position 2 .*\[0, 7\)"):
            if fn == "forward":
                mod.embedding_forward(idx, w, out=out)
            else:
                mod.embedding_backward(np.ones((2, 2, 3)), idx, 7)
        assert np.all(out == 5.0)  # nothing written


def test_embedding_rejects_float_indices_and_bad_shapes():
    with pytest.raises(TypeError, match="integer"):
        K.embedding_forward(np.array([0.0, 1.0]), np.ones((3, 2)))
    with pytest.raises(ValueError, match="grad_out must have shape"):
        K.embedding_backward(np.ones((3, 2)), np.array([0, 1]), 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (8, 33, 16), (2, 0, 3), (0, 4, 2)])
@pytest.mark.parametrize("threads", [1, 2])
def test_global_avgpool1d_matches_twin(dtype, shape, threads):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal((shape[0], shape[2])).astype(dtype)
    with fnn.threads(threads):
        got = K.global_avgpool1d_forward(x)
        dx = K.global_avgpool1d_backward(g, shape)
    assert_close(got, R.global_avgpool1d_forward(x), dtype, shape[1], "gap1d forward")
    assert_close(dx, R.global_avgpool1d_backward(g, shape), dtype, 1, "gap1d backward")


# ---- layers against torch -------------------------------------------------------------
@pytest.mark.parametrize("shape", [(9,), (6, 5)])
def test_embedding_layer_matches_torch_float64(shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    v, d = 8, 4
    idx = rng.integers(0, v, shape)
    idx.reshape(-1)[:3] = 2  # repeated indices
    layers = [fnn.Embedding(v, d)] + ([fnn.GlobalAvgPool1D()] if len(shape) == 2 else [])
    m = fnn.Sequential(layers + [fnn.Dense(d, 3, "tanh")], dtype="float64", seed=2)
    tm = fnn.interop.to_torch(m).train()
    out = m.forward(idx, training=True)
    g = rng.standard_normal(out.shape)
    m.backward(g)
    ti = torch.from_numpy(idx)
    tout = tm(ti)
    tout.backward(torch.from_numpy(g))
    assert np.abs(out - tout.detach().numpy()).max() < 1e-10
    emb = tm[0]
    assert np.abs(m[0].grad_weight - emb.weight.grad.numpy()).max() < 1e-10
    assert np.abs(m[-1].grad_weight - tm[-2].weight.grad.numpy().T).max() < 1e-10


def test_global_avgpool1d_layer_matches_torch_float64():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 7, 3))
    m = fnn.Sequential([fnn.GlobalAvgPool1D(), fnn.Dense(3, 2)], dtype="float64", seed=0)
    out = m.forward(x, training=True)
    g = rng.standard_normal(out.shape)
    dx = m.backward(g)
    tx = torch.from_numpy(x).requires_grad_()
    tm = fnn.interop.to_torch(m)
    tm(tx).backward(torch.from_numpy(g))
    assert np.abs(dx - tx.grad.numpy()).max() < 1e-10


def test_embedding_bag_equals_torch_embeddingbag_mean():
    """Embedding + GlobalAvgPool1D on equal-length bags is EmbeddingBag(mode="mean")."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    m = fnn.Sequential([fnn.Embedding(20, 4), fnn.GlobalAvgPool1D()], dtype="float64", seed=0)
    bag = torch.nn.EmbeddingBag(20, 4, mode="mean", dtype=torch.float64)
    with torch.no_grad():
        bag.weight.copy_(torch.from_numpy(m[0].weight.copy()))
    idx = rng.integers(0, 20, (6, 5))
    assert np.abs(m.predict(idx) - bag(torch.from_numpy(idx)).detach().numpy()).max() < 1e-12


# ---- the model path ------------------------------------------------------------------
def test_model_takes_integer_input_and_checks_it():
    m = _bow_model()
    assert m.input_dtype == np.int64
    x = np.array([[1, 2, 3], [4, 5, 29]], np.int32)
    assert m.predict(x).shape == (2, 3)
    assert np.array_equal(m.predict(x.astype(np.float64)), m.predict(x))  # whole floats
    with pytest.raises(TypeError, match="integer indices"):
        m.predict(np.array([[0.5, 1, 2]]))
    with pytest.raises(ValueError, match=r"index 30 at position 1 .*\[0, 30\)"):
        m.predict(np.array([[0, 30, 1]]))
    one = fnn.Sequential([fnn.Embedding(5, 2), fnn.Dense(2, 2)], seed=0)
    assert one.predict(np.array([0, 4, 1])).shape == (3, 2)  # (batch,) indices


def test_fit_learns_a_bag_of_words_task_float32():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 30, (600, 8))
    y = ((x < 10).sum(axis=1) >= 3).astype(np.int64)  # how many "small" tokens a row has
    m = _bow_model("float32", seed=1, dim=8, classes=2)
    m.compile(fnn.optim.Adam(lr=0.05))
    m.fit(x, y, epochs=15, batch_size=64, verbose=0)
    assert m.evaluate(x, y)["accuracy"] > 0.9


def test_frozen_embedding_keeps_its_table():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 30, (64, 5)), rng.integers(0, 3, 64)
    m = _bow_model("float32")
    m[0].trainable = False
    before = m[0].weight.copy()
    m.compile("adam")
    m.fit(x, y, epochs=2, verbose=0)
    assert np.array_equal(m[0].weight, before)


def test_save_load_pickle_and_summary(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 30, (64, 5)), rng.integers(0, 3, 64)
    m = _bow_model("float32")
    m.compile("adam")
    m.fit(x, y, epochs=1, verbose=0)
    m.save(tmp_path / "m.fnn")
    for other in (fnn.load(tmp_path / "m.fnn"), pickle.loads(pickle.dumps(m))):
        assert np.array_equal(other.predict(x), m.predict(x))
        assert other.input_dtype == np.int64
    text = m.summary(print_fn=None)
    assert "(Embedding)" in text and "(batch, 5, 6)" in text
    assert "(GlobalAvgPool1D)" in text and "(batch, 6)" in text


def test_from_torch_reads_embedding_and_rejects_padding_idx():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(torch.nn.Embedding(10, 3), torch.nn.Flatten(),
                             torch.nn.Linear(6, 2)).double()
    m = fnn.interop.from_torch(tm, dtype="float64")
    x = np.array([[1, 2], [9, 0]])
    assert np.abs(m.predict(x) - tm(torch.from_numpy(x)).detach().numpy()).max() < 1e-12
    with pytest.raises(ValueError, match="padding_idx"):
        fnn.interop.from_torch(torch.nn.Sequential(torch.nn.Embedding(4, 2, padding_idx=0)))


def test_export_onnx_embedding_model(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    m = _bow_model("float32")
    x = rng.integers(0, 30, (7, 5))
    m.predict(x)  # the input shape is learnt from the first batch
    fnn.interop.export_onnx(m, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.astype(np.int64)})[0]
    assert np.abs(got - m.predict(x)).max() < 1e-5
