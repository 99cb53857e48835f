"""Bad inputs raise ValueError/TypeError naming the argument, before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import kernels as K
from fastnn import reference as R


def test_gemm_inner_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"inner dimensions.*\(3, 4\).*\(5, 2\)"):
        K.gemm(np.ones((3, 4)), np.ones((5, 2)))


def test_gemm_wrong_ndim():
    with pytest.raises(ValueError, match="a must be 2-D"):
        K.gemm(np.ones(3), np.ones((3, 2)))


def test_dense_forward_wrong_features():
    with pytest.raises(ValueError, match=r"x has 4 features but w expects 5"):
        K.dense_forward(np.ones((2, 4)), np.ones((5, 3)))


def test_dense_forward_bad_bias_shape():
    with pytest.raises(ValueError, match=r"b must have shape \(3,\), got \(4,\)"):
        K.dense_forward(np.ones((2, 5)), np.ones((5, 3)), np.ones(4))


@pytest.mark.parametrize("mod", [K, R])
def test_unknown_activation(mod):
    with pytest.raises(ValueError, match="unknown activation 'relux'"):
        mod.dense_forward(np.ones((2, 5)), np.ones((5, 3)), None, "relux")


def test_activation_type_error():
    with pytest.raises(TypeError, match="activation must be a str"):
        K.activation_forward(np.ones(3), 3)


def test_out_wrong_dtype_or_shape_leaves_it_untouched():
    out = np.full((2, 3), 7.0, np.float32)
    with pytest.raises(TypeError, match="out must have dtype float64, got float32"):
        K.dense_forward(np.ones((2, 5)), np.ones((5, 3)), out=out)
    assert np.all(out == 7)
    out = np.full((3, 3), 7.0)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 3\), got \(3, 3\)"):
        K.dense_forward(np.ones((2, 5)), np.ones((5, 3)), out=out)
    assert np.all(out == 7)


def test_out_read_only_and_aliasing():
    out = np.zeros((2, 3))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        K.gemm(np.ones((2, 5)), np.ones((5, 3)), out=out)
    a = np.ones((3, 3))
    with pytest.raises(ValueError, match="overlaps an input"):
        K.gemm(a, np.ones((3, 3)), out=a)


def test_cross_entropy_bad_labels():
    logits = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\), got values in \[0, 4\]"):
        K.cross_entropy(logits, [0, 1, 4])
    with pytest.raises(ValueError, match="labels must lie"):
        K.cross_entropy(logits, [0, -1, 2])
    with pytest.raises(ValueError, match="integral"):
        K.cross_entropy(logits, [0.5, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        K.cross_entropy(logits, [np.nan, 1, 2])
    with pytest.raises(ValueError, match="3 entries"):
        K.cross_entropy(logits, [0, 1])
    with pytest.raises(ValueError, match=r"labels must have shape \(3, 4\)"):
        K.cross_entropy(logits, np.zeros((3, 5)))


def test_loss_shape_mismatch():
    with pytest.raises(ValueError, match=r"target must have shape \(4,\), got \(5,\)"):
        K.mse(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="target must have shape"):
        K.binary_cross_entropy(np.zeros((2, 2)), np.zeros(4))


def test_backward_needs_pre_act_for_gelu():
    x, w = np.ones((2, 3)), np.ones((3, 4))
    a = K.dense_forward(x, w, None, "gelu")
    with pytest.raises(ValueError, match="needs pre_act"):
        K.dense_backward(np.ones((2, 4)), x, w, a, None, "gelu")


def test_sgd_update_checks():
    with pytest.raises(TypeError, match="updated in place"):
        K.sgd_update([1.0, 2.0], [1.0, 2.0], 0.1)
    w = np.zeros(3)
    with pytest.raises(ValueError, match=r"dw must have shape \(3,\)"):
        K.sgd_update(w, np.zeros(4), 0.1)


def test_complex_and_object_inputs_rejected():
    with pytest.raises(TypeError, match="complex"):
        K.gemm(np.ones((2, 2), complex), np.ones((2, 2)))
    with pytest.raises(TypeError):
        K.activation_forward(np.array(["a", "b"]), "relu")


def test_mixed_dtypes_promote_and_convert_once():
    x32 = np.ones((2, 3), np.float32)
    assert K.dense_forward(x32, np.ones((3, 2), np.float32)).dtype == np.float32
    assert K.dense_forward(x32, np.ones((3, 2))).dtype == np.float64
    # non-contiguous input is converted
    xt = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    assert np.allclose(K.gemm(xt, np.eye(3)), xt)


def test_thread_count_validation():
    import fastnn

    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        fastnn.set_num_threads(0)
    with pytest.raises(TypeError):
        fastnn.set_num_threads(1.5)


def test_threads_block_checks_and_caps_like_set_num_threads():
    """``fastnn.threads(n)`` applies set_num_threads' rule: same errors, same cap, and the
    cap's warning names the caller's line."""
    import fastnn

    with pytest.raises(ValueError, match="threads: n must be >= 1, got 0"):
        with fastnn.threads(0):
            pass
    with pytest.raises(TypeError, match="threads: n must be an int"):
        with fastnn.threads(True):
            pass
    from fastnn._config import max_num_threads

    cap = max_num_threads()
    with pytest.warns(RuntimeWarning, match="at most 4 per CPU") as rec:
        with fastnn.threads(cap + 1):
            assert fastnn.get_num_threads() == cap
    assert rec[0].filename == __file__
