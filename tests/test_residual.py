"""Residual blocks: torch equality (float64, 1e-10) of forward, input and parameter
gradients; the flat parameter buffer; shape inference; summary; save/load, pickle,
freeze; to_torch/from_torch; ONNX; fit; DataParallel (2 ranks vs one process).
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import fastnn as fnn


def conv_resnet(dtype="float64", seed=0, act="relu"):
    """conv -> identity block -> downsampling block (1x1 conv shortcut) -> GAP -> dense."""
    return fnn.Sequential([
        fnn.Conv2D(1, 4, 3, padding=1, activation="relu"),
        fnn.Residual([fnn.Conv2D(4, 4, 3, padding=1, activation="relu"),
                      fnn.Conv2D(4, 4, 3, padding=1)], activation=act),
        fnn.Residual([fnn.Conv2D(4, 6, 3, stride=2, padding=1, activation="tanh"),
                      fnn.Conv2D(6, 6, 3, padding=1)],
                     shortcut=fnn.Conv2D(4, 6, 1, stride=2), activation=act),
        fnn.GlobalAvgPool2D(),
        fnn.Dense(6, 3),
    ], dtype=dtype, seed=seed)


def dense_resnet(dtype="float64", seed=0):
    return fnn.Sequential([
        fnn.Dense(5, 8, "relu"),
        fnn.Residual([fnn.Dense(8, 8, "gelu"), fnn.Dropout(0.0), fnn.Dense(8, 8)],
                     activation="silu"),
        fnn.Residual([fnn.Dense(8, 4, "tanh")], shortcut=fnn.Dense(8, 4)),
        fnn.Dense(4, 3),
    ], dtype=dtype, seed=seed)


def _torch_grads(tm):
    return [p.grad.numpy() for p in tm.parameters()]


def _fastnn_grads_torch_layout(m):
    """Every gradient in torch's parameter order and layout (Dense weights transposed)."""
    out = []

    def walk(layer):
        if isinstance(layer, fnn.Residual):
            for sub in layer.sublayers():
                walk(sub)
            return
        for name, g in zip(layer.param_names, layer.grads):
            out.append(g.T if isinstance(layer, fnn.Dense) and name == "weight" else g)

    for layer in m.layers:
        walk(layer)
    return out


@pytest.mark.parametrize("make,shape", [(conv_resnet, (3, 1, 8, 8)), (dense_resnet, (7, 5))])
@pytest.mark.parametrize("training", [True, False])
def test_forward_and_every_gradient_equal_torch_float64(make, shape, training):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    m = make()
    x = rng.standard_normal(shape)
    tm = fnn.interop.to_torch(m).train(training)
    out = m.forward(x, training=training)
    g = rng.standard_normal(out.shape)
    dx = m.backward(g)
    tx = torch.from_numpy(x).requires_grad_()
    tout = tm(tx)
    tout.backward(torch.from_numpy(g))
    assert np.abs(out - tout.detach().numpy()).max() < 1e-10
    assert np.abs(dx - tx.grad.numpy()).max() < 1e-10
    ours, theirs = _fastnn_grads_torch_layout(m), _torch_grads(tm)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-10


def test_parameters_live_in_the_flat_buffer():
    m = conv_resnet("float32")
    flat = m.parameters()
    block = m[2]
    assert block.num_params() == sum(la.num_params() for la in block.sublayers())
    assert m.count_params() == sum(la.num_params() for la in m.layers)
    for p in block.params:
        assert np.shares_memory(p, flat)
    inner = block.layers[0].weight
    flat[...] = 0.5
    assert np.all(inner == 0.5)  # the inner layer's weight is a view of the model's buffer
    grads = m.gradients()
    assert all(np.shares_memory(g, grads) for g in block.grads)
    assert block.param_names[:2] == ("conv2d_0.weight", "conv2d_0.bias")
    assert block.param_names[-2:] == ("shortcut.weight", "shortcut.bias")


def test_shape_inference_and_mismatch_error():
    m = conv_resnet("float32")
    m.predict(np.zeros((2, 1, 9, 9), np.float32))
    assert m.output_shape == (3,)
    text = m.summary(print_fn=None)
    assert "(Residual)" in text and "residual_2.shortcut (Conv2D)" in text
    assert "(batch, 6, 5, 5)" in text
    with pytest.raises(ValueError, match="shortcut"):
        fnn.Sequential([fnn.Dense(4, 6), fnn.Residual([fnn.Dense(6, 3)])])
    with pytest.raises(ValueError, match="at least one layer"):
        fnn.Residual([])


def test_fit_trains_a_residual_mlp_and_frozen_blocks_stay():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    m = dense_resnet("float32", seed=1)
    m.compile(fnn.optim.Adam(lr=0.02))
    assert not m.trainer.uses_fused_step()  # a Residual takes the layer-by-layer path
    m.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert m.evaluate(x, y)["accuracy"] > 0.9
    m.freeze(3)  # the first three layers (two of them blocks)
    assert not any(la.trainable for la in m[1].sublayers())
    before = [p.copy() for p in m[1].params + m[2].params]
    m.fit(x, y, epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, m[1].params + m[2].params))
    m.unfreeze()
    assert all(la.trainable for la in m[1].sublayers())


def test_save_load_pickle_and_weights_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    m = conv_resnet("float32")
    m.compile("adam")
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    m[2].trainable = False
    m.save(tmp_path / "m.fnn")
    cfg = json.dumps(m.get_config())
    assert '"type": "Residual"' in cfg and '"shortcut": {"type": "Conv2D"' in cfg
    for other in (fnn.load(tmp_path / "m.fnn"), pickle.loads(pickle.dumps(m))):
        assert np.array_equal(other.predict(x), m.predict(x))
        assert not other[2].trainable and other[1].trainable
        other.fit(x, y, epochs=1, batch_size=8, verbose=0)  # continues training
    m.save_weights(tmp_path / "w.fnn")
    fresh = conv_resnet("float32", seed=5)
    assert sorted(fresh.load_weights(tmp_path / "w.fnn")) == sorted(la.name for la in m.layers
                                                                     if la.params)
    assert np.array_equal(fresh.predict(x), m.predict(x))


def test_to_torch_from_torch_roundtrip_and_unsupported_skip_module():
    torch = pytest.importorskip("torch")
    m = conv_resnet("float64")
    tm = fnn.interop.to_torch(m)
    back = fnn.interop.from_torch(tm, dtype="float64", input_shape=(1, 8, 8))
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8))
    assert np.abs(back.predict(x) - m.predict(x)).max() < 1e-12
    assert isinstance(back[1], fnn.Residual) and back[2].shortcut is not None

    class Block(torch.nn.Module):  # a skip connection written as code
        def forward(self, x):
            return x + x

    with pytest.raises(ValueError, match="unsupported module Block"):
        fnn.interop.from_torch(torch.nn.Sequential(Block()))


@pytest.mark.parametrize("make,shape", [(conv_resnet, (4, 1, 8, 8)), (dense_resnet, (6, 5))])
def test_export_onnx_matches_onnxruntime(tmp_path, make, shape):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m = make("float32")
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    m.predict(x)
    fnn.interop.export_onnx(m, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(None, {"input": x})[0] - m.predict(x)).max() < 1e-5


def test_data_parallel_two_ranks_equal_single_process(tmp_path):
    from test_distributed import _ok, run_ranks

    _ok(run_ranks("blocks", tmp_path))
    res = json.loads((tmp_path / "blocks.json").read_text())
    for case in res:
        assert case["max_abs_weight_diff"] <= case["tol"], case
        assert case["ranks_bitwise_equal"], case


def bn_resnet(dtype="float64", seed=0):
    """A basic block with batch norm (the ResNet example's), identity and 1x1 shortcuts."""
    return fnn.Sequential([
        fnn.Conv2D(1, 4, 3, padding=1, bias=False), fnn.BatchNorm2D(4), fnn.Activation("relu"),
        fnn.Residual([fnn.Conv2D(4, 4, 3, padding=1, bias=False), fnn.BatchNorm2D(4),
                      fnn.Activation("relu"), fnn.Conv2D(4, 4, 3, padding=1, bias=False),
                      fnn.BatchNorm2D(4)], activation="relu"),
        fnn.Residual([fnn.Conv2D(4, 6, 3, stride=2, padding=1, bias=False), fnn.BatchNorm2D(6),
                      fnn.Activation("relu"), fnn.Conv2D(6, 6, 3, padding=1, bias=False),
                      fnn.BatchNorm2D(6)],
                     shortcut=fnn.Conv2D(4, 6, 1, stride=2), activation="relu"),
        fnn.GlobalAvgPool2D(), fnn.Dense(6, 3),
    ], dtype=dtype, seed=seed)


def test_batchnorm_inside_blocks_trains_as_torch_and_saves_running_stats(tmp_path):
    """Five SGD steps in float64: weights and the inner running statistics equal torch's;
    the statistics are buffers of the block, saved and loaded with the model."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    m = bn_resnet()
    tm = fnn.interop.to_torch(m).train()
    m.compile(fnn.optim.SGD(lr=0.1), loss="cross_entropy")
    topt = torch.optim.SGD(tm.parameters(), lr=0.1)
    for _ in range(5):
        x = rng.standard_normal((6, 1, 8, 8))
        y = rng.integers(0, 3, 6)
        m.train_step(x, y)
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y)
                                          ).backward()
        topt.step()
    block = m[3]
    tblock = tm[3]
    assert np.abs(block.layers[1].running_var - tblock.body[1].running_var.numpy()).max() < 1e-10
    assert np.abs(block.layers[0].weight - tblock.body[0].weight.detach().numpy()).max() < 1e-10
    bufs = block.buffers()
    assert "batchnorm2d_1.running_mean" in bufs
    x = rng.standard_normal((4, 1, 8, 8))
    assert np.abs(m.predict(x) - tm.eval()(torch.from_numpy(x)).detach().numpy()).max() < 1e-10
    m.save(tmp_path / "m.fnn")
    back = fnn.load(tmp_path / "m.fnn")
    assert np.array_equal(back[3].layers[1].running_var, block.layers[1].running_var)
    assert np.array_equal(back.predict(x), m.predict(x))
    m.save_weights(tmp_path / "w.fnn")
    fresh = bn_resnet(seed=9)
    fresh.load_weights(tmp_path / "w.fnn")
    assert np.array_equal(fresh.predict(x), m.predict(x))


def test_onnx_bn_resnet(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    m = bn_resnet("float32")
    m.compile("adam")
    m.fit(rng.standard_normal((16, 1, 8, 8)), rng.integers(0, 3, 16), epochs=1, verbose=0)
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    fnn.interop.export_onnx(m, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(None, {"input": x})[0] - m.predict(x)).max() < 1e-5


def test_from_torch_reads_blocks_with_batchnorm_and_their_statistics():
    pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    m = bn_resnet()
    m.compile("adam")
    m.fit(rng.standard_normal((16, 1, 8, 8)), rng.integers(0, 3, 16), epochs=2, verbose=0)
    back = fnn.interop.from_torch(fnn.interop.to_torch(m), dtype="float64",
                                  input_shape=(1, 8, 8))
    assert np.array_equal(back[3].layers[1].running_var, m[3].layers[1].running_var)
    x = rng.standard_normal((3, 1, 8, 8))
    assert np.abs(back.predict(x) - m.predict(x)).max() < 1e-12


def test_bag_of_words_model_roundtrips_through_torch():
    pytest.importorskip("torch")
    m = fnn.Sequential([fnn.Embedding(20, 4), fnn.GlobalAvgPool1D(), fnn.Dense(4, 2)],
                       dtype="float64", seed=0)
    back = fnn.interop.from_torch(fnn.interop.to_torch(m), dtype="float64")
    assert [type(la).__name__ for la in back.layers] == ["Embedding", "GlobalAvgPool1D",
                                                         "Dense"]
    x = np.random.default_rng(0).integers(0, 20, (5, 7))
    assert np.abs(back.predict(x) - m.predict(x)).max() < 1e-12


def test_fuse_batchnorm_folds_inside_blocks():
    rng = np.random.default_rng(5)
    m = bn_resnet()
    m.compile("adam")
    m.fit(rng.standard_normal((16, 1, 8, 8)), rng.integers(0, 3, 16), epochs=2, verbose=0)
    fused = m.fuse_batchnorm()
    kinds = [type(la).__name__ for la in fused[2].layers]
    assert "BatchNorm2D" not in kinds and kinds == ["Conv2D", "Conv2D"]
    assert fused[2].layers[0].activation == "relu"
    x = rng.standard_normal((4, 1, 8, 8))
    assert np.abs(fused.predict(x) - m.predict(x)).max() < 1e-12


def test_an_inner_layer_frozen_on_its_own_is_skipped_by_the_optimizer():
    """Freezing one layer inside a block removes it from the optimizer's ranges (torch
    skips a parameter with requires_grad=False): Adam's moments cannot move it, its
    state is kept, and it trains again when unfrozen."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 6))
    y = rng.integers(0, 3, 32)
    m = fnn.Sequential([fnn.Dense(6, 8, "relu"),
                        fnn.Residual([fnn.Dense(8, 8, "relu"), fnn.Dense(8, 8)],
                                     activation="relu"),
                        fnn.Dense(8, 3)], dtype="float64", seed=1)
    m.compile(fnn.optim.Adam(lr=1e-2), loss="cross_entropy")
    m.fit(x, y, epochs=2, batch_size=8, verbose=0)  # non-zero moments everywhere
    inner, other = m.layers[1].layers
    frozen_w, other_w = inner.params[0].copy(), other.params[0].copy()
    inner.trainable = False
    a, b = m.parameter_ranges()[1]
    assert (a, a + inner.num_params()) not in m.trainable_ranges()
    assert (a + inner.num_params(), b) in m.trainable_ranges()
    m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_array_equal(inner.params[0], frozen_w)
    assert not np.array_equal(other.params[0], other_w)
    inner.trainable = True
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert not np.array_equal(inner.params[0], frozen_w)
