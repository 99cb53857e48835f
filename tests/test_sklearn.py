"""fastnn.sklearn: scikit-learn's estimator checks, equivalence with scikit-learn's MLP,
meta-estimators, pickling, and the fastnn extras."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import child_env

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# ---- scikit-learn's estimator checks ---------------------------------------------------
# the defaults (scikit-learn's dtype rule: the checks' float64 X trains in float64), float32
# forced, and sgd / lbfgs: every solver and both dtypes.  No expected failures.
CHECKED = [
    MLPClassifier(max_iter=100, random_state=0),
    MLPRegressor(max_iter=100, random_state=0),
    MLPClassifier(max_iter=100, random_state=0, dtype="float32"),
    MLPRegressor(max_iter=100, random_state=0, dtype="float32"),
    MLPClassifier(solver="sgd", max_iter=100, random_state=0, dtype="float64"),
    MLPRegressor(solver="lbfgs", max_iter=100, random_state=0, dtype="float64"),
]


@parametrize_with_checks(CHECKED)
def test_sklearn_estimator_checks(estimator, check):
    name = getattr(check, "func", check).__name__
    if name == "check_array_api_input" and not os.environ.get("SCIPY_ARRAY_API"):
        # This check needs SCIPY_ARRAY_API=1 before scipy is imported: run it in a
        # fresh interpreter instead of skipping it.
        code = ("import pickle, sys, warnings\n"
                "warnings.simplefilter('ignore')\n"
                "est = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
                "from sklearn.utils.estimator_checks import check_array_api_input\n"
                "check_array_api_input(type(est).__name__, est, array_namespace='numpy',"
                " expect_only_array_outputs=False)\n")
        env = child_env(SCIPY_ARRAY_API="1")
        res = subprocess.run([sys.executable, "-c", code, pickle.dumps(estimator).hex()],
                             env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        return
    check(estimator)


# ---- same algorithm as scikit-learn ------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def _pair(sk_cls, fn_cls, X, y, sample_weight=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = sk_cls(random_state=0, **kw).fit(X, y, sample_weight=sample_weight)
        b = fn_cls(random_state=0, dtype="float64", **kw).fit(X, y, sample_weight=sample_weight)
    return a, b


def _assert_same_fit(a, b, stochastic=True):
    assert a.n_iter_ == b.n_iter_
    assert a.out_activation_ == b.out_activation_
    assert a.n_layers_ == b.n_layers_ and a.n_outputs_ == b.n_outputs_
    if stochastic:
        assert a.t_ == b.t_
        np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(b.loss_, a.loss_, rtol=1e-9)
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert ca.shape == cb.shape
        np.testing.assert_allclose(cb, ca, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kw", [
    dict(solver="adam"),
    dict(solver="adam", activation="tanh", beta_1=0.8, epsilon=1e-4, batch_size=64),
    dict(solver="sgd", learning_rate_init=0.05),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2, power_t=0.3),
    dict(solver="sgd", learning_rate="adaptive", momentum=0.5, nesterovs_momentum=False,
         tol=0.5, n_iter_no_change=1),
    dict(solver="sgd", activation="logistic", momentum=0.0, shuffle=False),
    dict(solver="adam", activation="identity", n_iter_no_change=2, tol=0.05),
])
def test_classifier_reproduces_sklearn_in_float64(digits, kw):
    X, y = digits
    a, b = _pair(SkClassifier, MLPClassifier, X, y, hidden_layer_sizes=(30, 20), max_iter=8,
                 alpha=1e-3, **kw)
    _assert_same_fit(a, b)
    np.testing.assert_allclose(b.predict_proba(X), a.predict_proba(X), atol=1e-9)
    assert b.best_loss_ == pytest.approx(a.best_loss_, rel=1e-9)


def test_lbfgs_reproduces_sklearn(digits):
    X, y = digits
    a, b = _pair(SkClassifier, MLPClassifier, X, y, solver="lbfgs", hidden_layer_sizes=(20,),
                 max_iter=15, alpha=1e-2)
    _assert_same_fit(a, b, stochastic=False)
    assert not hasattr(b, "loss_curve_")


def test_binary_multilabel_and_sample_weight_reproduce_sklearn(digits):
    X, y = digits
    sw = np.random.RandomState(0).rand(len(y)) * 2
    for target, weight in (((y > 4), None), (np.stack([y % 2, y > 4, y % 3 == 0], 1), None),
                           (y, sw), ((y > 4), sw)):
        a, b = _pair(SkClassifier, MLPClassifier, X, target, sample_weight=weight,
                     hidden_layer_sizes=(30,), max_iter=5)
        _assert_same_fit(a, b)
        np.testing.assert_allclose(b.predict_proba(X), a.predict_proba(X), atol=1e-9)
        np.testing.assert_array_equal(b.predict(X), a.predict(X))


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("n_targets", [1, 3])
def test_regressor_reproduces_sklearn(loss, n_targets):
    X, y = make_regression(400, 8, n_targets=n_targets, random_state=0)
    y = y / 100 if loss == "squared_error" else np.abs(y) / 100
    sw = np.random.RandomState(1).rand(len(y))
    a, b = _pair(SkRegressor, MLPRegressor, X, y, loss=loss, sample_weight=sw,
                 hidden_layer_sizes=(16, 8), max_iter=6, alpha=0.01, batch_size=50)
    _assert_same_fit(a, b)
    np.testing.assert_allclose(b.predict(X), a.predict(X), atol=1e-8)
    assert b.predict(X).shape == a.predict(X).shape


def test_partial_fit_reproduces_sklearn(digits):
    X, y = digits
    a = SkClassifier(hidden_layer_sizes=(20,), random_state=0)
    b = MLPClassifier(hidden_layer_sizes=(20,), random_state=0, dtype="float64")
    classes = np.unique(y)
    for s in range(0, 1500, 500):
        a.partial_fit(X[s:s + 500], y[s:s + 500], classes=classes)
        b.partial_fit(X[s:s + 500], y[s:s + 500], classes=classes)
    _assert_same_fit(a, b)
    assert b.n_iter_ == 1 and b.t_ == 1500


# ---- behaviour ---------------------------------------------------------------------------
def test_float32_learns_digits(digits):
    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=60, random_state=0,
                        dtype="float32").fit(X, y)
    assert clf.score(X, y) > 0.97
    assert clf.coefs_[0].dtype == np.float32 and clf.coefs_[0].shape == (64, 64)
    assert [c.shape for c in clf.coefs_] == [(64, 64), (64, 10)]
    assert [b.shape for b in clf.intercepts_] == [(64,), (10,)]
    assert clf.out_activation_ == "softmax" and clf.n_layers_ == 3 and clf.n_outputs_ == 10
    X32 = X.astype(np.float32)
    proba = clf.predict_proba(X32)
    assert proba.dtype == np.float32 and np.allclose(proba.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(clf.predict_log_proba(X32), np.log(proba), rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(X32), clf.classes_[proba.argmax(1)])
    np.testing.assert_allclose(clf.predict_proba(X), proba, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_dtype_rule(digits, cls):
    """scikit-learn's rule by default; an explicit dtype overrides it."""
    X, y = digits
    kw = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    cases = [(X.astype(np.float32), None, np.float32), (X, None, np.float64),
             (X.astype(np.int64), None, np.float64), (X, "float32", np.float32),
             (X.astype(np.float32), "float64", np.float64)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for Xc, dtype, expected in cases:
            est = cls(dtype=dtype, **kw).fit(Xc, y)
            assert all(a.dtype == expected for a in est.coefs_ + est.intercepts_)
            X32 = Xc.astype(np.float32)
            out = est.predict_proba(X32) if cls is MLPClassifier else est.predict(X32)
            assert out.dtype == expected
            # float64 X on a float32 model predicts in float64 (NumPy's promotion, as
            # scikit-learn); float32 X on a float64 model in float64
            for Xp in (X, X.astype(np.float32)):
                out = est.predict_proba(Xp) if cls is MLPClassifier else est.predict(Xp)
                assert out.dtype == np.result_type(expected, Xp.dtype)
            # partial_fit / warm start continue in the model's dtype
            est.set_params(warm_start=True).fit(X.astype(np.float32) if expected == np.float64
                                               else X, y)
            assert est.coefs_[0].dtype == expected


def test_convergence_warning_and_tol_stop(digits):
    X, y = digits
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        MLPClassifier(hidden_layer_sizes=(10,), max_iter=3, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="(?s)lbfgs failed to converge.*max_iter=4"):
        MLPClassifier(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=4,
                      random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(10,), max_iter=200, tol=10.0,
                            n_iter_no_change=2, random_state=0).fit(X, y)
    # epoch 1 improves on inf; epochs 2-4 do not: the count exceeds n_iter_no_change=2
    assert clf.n_iter_ == 4 and len(clf.loss_curve_) == 4


def test_early_stopping_restores_best_weights(digits):
    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(20,), early_stopping=True, n_iter_no_change=3,
                        max_iter=300, learning_rate_init=0.05, random_state=0).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ < 300
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the weights in use are the best epoch's
    np.testing.assert_array_equal(clf._model._flat_params, clf._best_flat)
    # stratified split: every class is in the validation set in proportion
    reg = MLPRegressor(hidden_layer_sizes=(8,), early_stopping=True, max_iter=5,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y.astype(float))
    assert len(reg.validation_scores_) == 5 and reg.best_loss_ is None
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.unique(y))


def test_partial_fit_needs_classes_and_lbfgs_has_none(digits):
    X, y = digits
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    clf = MLPClassifier(hidden_layer_sizes=(10,), random_state=0)
    clf.partial_fit(X[:100], y[:100], classes=np.arange(10))
    with pytest.raises(ValueError, match="not the same as on last call"):
        clf.partial_fit(X[:100], y[:100], classes=np.arange(11))


def test_warm_start_continues(digits):
    X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, warm_start=True,
                            random_state=0).fit(X, y)
        first = list(clf.loss_curve_)
        clf.fit(X, y)
    assert len(clf.loss_curve_) == 6 and clf.loss_curve_[:3] == first
    assert clf.t_ == 6 * len(X) and clf.n_iter_ == 3
    # hyper-parameters changed between warm starts take effect, weights carry over
    w = clf.coefs_[0].copy()
    clf.set_params(dtype="float64", activation="tanh", max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.coefs_[0].dtype == np.float64 and clf._model[0].activation == "tanh"
    assert np.abs(clf.coefs_[0] - w).max() < 0.1


def test_meta_estimators(digits):
    X, y = digits
    X, y = X[:600], y[:600]
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=40,
                                                         learning_rate_init=0.01,
                                                         random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipe, X, y, cv=3)
        assert scores.mean() > 0.85
        grid = GridSearchCV(MLPClassifier(max_iter=30, learning_rate_init=0.01, random_state=0),
                            {"hidden_layer_sizes": [(8,), (32,)], "alpha": [1e-4, 1e-1]}, cv=2)
        grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4 and grid.best_score_ > 0.7
    c = clone(grid.best_estimator_)
    assert c.get_params() == grid.best_estimator_.get_params() and not hasattr(c, "coefs_")


def test_pickle_round_trip_carries_weights_and_optimizer(digits):
    X, y = digits
    for est in (MLPClassifier(hidden_layer_sizes=(16,), random_state=0, dropout=0.2),
                MLPRegressor(hidden_layer_sizes=(16,), random_state=0, solver="sgd")):
        target = y if isinstance(est, MLPClassifier) else y / 10
        kw = {"classes": np.unique(y)} if isinstance(est, MLPClassifier) else {}
        est.partial_fit(X, target, **kw)
        blob = pickle.dumps(est)
        assert b"_kernels" not in blob  # no C object inside
        copy = pickle.loads(blob)
        np.testing.assert_array_equal(copy.predict(X), est.predict(X))
        # training continues identically (weights, optimizer state, dropout counters)
        est.partial_fit(X, target)
        copy.partial_fit(X, target)
        np.testing.assert_array_equal(copy.coefs_[0], est.coefs_[0])
        assert copy.coefs_[0] is copy._model[0].weight


def test_assigned_coefs_are_used(digits):
    X, y = digits
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    reg.coefs_ = [np.zeros((64, 4)), np.zeros((4, 1))]
    reg.intercepts_ = [np.zeros(4), np.array([3.0])]
    np.testing.assert_allclose(reg.predict(X[:5]), 3.0)


def test_dataframe_feature_names(digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(df, y)
    assert list(clf.feature_names_in_) == list(df.columns) and clf.n_features_in_ == 64
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X)


def test_extras_dropout_threads_and_errors(digits):
    X, y = digits
    before = fastnn.get_num_threads()
    a = MLPClassifier(hidden_layer_sizes=(32,), max_iter=20, dropout=0.3, n_threads=1,
                      random_state=0).fit(X, y)
    assert fastnn.get_num_threads() == before
    b = MLPClassifier(hidden_layer_sizes=(32,), max_iter=20, dropout=0.3, n_threads=1,
                      random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])  # reproducible with random_state
    assert a.score(X, y) > 0.85
    with pytest.raises(ValueError, match="dropout"):
        MLPClassifier(solver="lbfgs", dropout=0.5).fit(X, y)
    for bad in (dict(activation="softmax"), dict(solver="rmsprop"), dict(alpha=-1),
                dict(hidden_layer_sizes=(0,)), dict(batch_size=0), dict(dtype="float16"),
                dict(dropout=1.0), dict(n_threads=0), dict(momentum=1.5)):
        with pytest.raises(ValueError, match=next(iter(bad)) if "hidden" not in str(bad)
                           else "hidden_layer_sizes"):
            MLPClassifier(**bad).fit(X, y)


def test_import_fastnn_does_not_import_sklearn(tmp_path):
    code = "import fastnn, sys; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env=child_env(), cwd=tmp_path)


# ---- patch() / unpatch() -----------------------------------------------------------------
def _sklearn_pipeline(X, y):
    """Code written for scikit-learn, unchanged: it imports scikit-learn's MLP by name."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=40,
                                                         learning_rate_init=0.01,
                                                         random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        score = cross_val_score(pipe, X, y, cv=3).mean()
    return type(pipe[-1]), score


def test_patch_and_unpatch(digits):
    import sklearn.neural_network as nn
    import sklearn.neural_network._multilayer_perceptron as mp

    X, y = digits[0][:600], digits[1][:600]
    assert not fastnn.sklearn.is_patched()
    try:
        fastnn.sklearn.patch()
        fastnn.sklearn.patch()  # twice is harmless: unpatch still restores the originals
        assert fastnn.sklearn.is_patched()
        assert nn.MLPClassifier is MLPClassifier and nn.MLPRegressor is MLPRegressor
        assert mp.MLPClassifier is MLPClassifier
        cls, score = _sklearn_pipeline(X, y)
        assert cls is MLPClassifier and score > 0.85
        from sklearn.neural_network import MLPRegressor as R
        assert R is MLPRegressor
    finally:
        fastnn.sklearn.unpatch()
    assert not fastnn.sklearn.is_patched()
    assert nn.MLPClassifier is SkClassifier and nn.MLPRegressor is SkRegressor
    assert mp.MLPClassifier is SkClassifier and mp.MLPRegressor is SkRegressor
    cls, score = _sklearn_pipeline(X, y)
    assert cls is SkClassifier and score > 0.85
    fastnn.sklearn.unpatch()  # a no-op when not patched
    assert nn.MLPClassifier is SkClassifier


# ---- the one-call step ---------------------------------------------------------------------
@pytest.mark.parametrize("case", ["multiclass", "multiclass_weighted", "binary", "regression",
                                  "multioutput"])
def test_every_batch_takes_the_one_call_step(digits, monkeypatch, case):
    """Training never runs the layer-by-layer path (forward / backward per layer) for a
    Dense-only network, with sample weights for softmax targets too, and still equals
    scikit-learn's run."""
    from fastnn.sklearn import _solvers

    def layer_path(*args, **kwargs):
        raise AssertionError("the layer-by-layer path ran")

    X, y = digits
    X, y = X[:500], y[:500]
    sw = np.random.RandomState(0).randint(0, 4, len(y)).astype(float) \
        if case == "multiclass_weighted" else None
    target = {"binary": y > 4, "regression": y / 10.0,
              "multioutput": np.c_[y / 10.0, (y % 3) / 3.0]}.get(case, y)
    sk_cls, fn_cls = ((SkRegressor, MLPRegressor) if case in ("regression", "multioutput")
                      else (SkClassifier, MLPClassifier))
    kw = dict(hidden_layer_sizes=(16, 8), max_iter=5, alpha=1e-3, batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = sk_cls(random_state=0, **kw).fit(X, target, sample_weight=sw)
        monkeypatch.setattr(_solvers._EstimatorTrainer, "forward", layer_path)
        monkeypatch.setattr(_solvers._EstimatorTrainer, "backward", layer_path)
        b = fn_cls(random_state=0, **kw).fit(X, target, sample_weight=sw)
    _assert_same_fit(a, b)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_float32_full_batch_weights_equal_repeated_rows(cls):
    """A full-batch float32 fit sums over rows in float64: a row of weight k and k copies
    of it give the same float32 model (bitwise here), and the fit follows scikit-learn's."""
    rng = np.random.RandomState(1)
    X = rng.rand(20, 6)
    y = rng.randint(0, 3, 20) if cls is MLPClassifier else rng.rand(20)
    sw = rng.randint(0, 4, 20)
    kw = dict(hidden_layer_sizes=(12,), max_iter=40, random_state=0, dtype="float32",
              activation="tanh")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = cls(**kw).fit(X, y, sample_weight=sw)
        b = cls(**kw).fit(X.repeat(sw, axis=0), y.repeat(sw))
        sk = (SkClassifier if cls is MLPClassifier else SkRegressor)(
            **{k: v for k, v in kw.items() if k != "dtype"}).fit(X, y, sample_weight=sw)
    for ca, cb, cs in zip(a.coefs_, b.coefs_, sk.coefs_):
        assert ca.dtype == np.float32
        np.testing.assert_array_equal(ca, cb)
        np.testing.assert_allclose(ca, cs, rtol=1e-4, atol=1e-5)
