"""fastnn.wrappers: any Sequential as a scikit-learn estimator (issue 14, item 7)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastnn as fnn

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastnn.wrappers import SequentialClassifier, SequentialRegressor  # noqa: E402


def build(hidden=16, n_features_in=None, n_classes=None):
    return fnn.Sequential([fnn.Dense(n_features_in, hidden, activation="relu"),
                           fnn.Dense(hidden, n_classes)], seed=0)


def build_reg(hidden=32, meta=None):
    return fnn.Sequential([fnn.Dense(meta["n_features_in"], hidden, activation="relu"),
                           fnn.Dense(hidden, meta["n_outputs"])], dtype="float64", seed=0)


def _clf_data(n_classes=3):
    X, y = make_classification(300, 8, n_informative=5, n_classes=n_classes, random_state=0)
    return X.astype(np.float32), np.array(["ant", "bee", "cat"])[y] if n_classes == 3 else y


def test_classifier_fit_predict_proba_score():
    X, y = _clf_data()
    clf = SequentialClassifier(build, epochs=30, optimizer__lr=1e-2, model__hidden=32,
                               random_state=0).fit(X, y)
    assert list(clf.classes_) == ["ant", "bee", "cat"] and clf.n_features_in_ == 8
    p = clf.predict_proba(X)
    assert p.shape == (300, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert clf.score(X, y) > 0.85
    assert len(clf.history_["loss"]) == 30 and clf.model_.layers[0].out_features == 32


def test_classifier_from_a_model_instance_with_a_sigmoid_head():
    X, y = _clf_data(2)
    net = fnn.Sequential([fnn.Dense(8, 16, activation="relu"),
                          fnn.Dense(16, 1, activation="sigmoid")], seed=3)
    clf = SequentialClassifier(net, epochs=20, optimizer__lr=1e-2).fit(X, y)
    assert clf.model_ is not net and net.optimizer is None  # the instance is left alone
    assert clf.model_.loss.name == "binary_cross_entropy"
    p = clf.predict_proba(X)
    assert p.shape == (300, 2) and np.allclose(p.sum(1), 1)
    assert clf.score(X, y) > 0.85
    # refitting starts from fresh weights: two fits give the same network
    w1 = clf.model_.get_weights()
    clf.fit(X, y)
    for a, b in zip(w1, clf.model_.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_get_set_params_and_clone():
    clf = SequentialClassifier(build, epochs=3, model__hidden=8, optimizer="sgd",
                               optimizer__lr=0.1)
    params = clf.get_params()
    assert params["model__hidden"] == 8 and params["optimizer__lr"] == 0.1
    assert params["epochs"] == 3 and params["model"] is build
    c = clone(clf)
    assert c is not clf and c.get_params() == params
    c.set_params(model__hidden=4, epochs=2, model__extra=None)
    assert c.model__hidden == 4 and c.epochs == 2 and clf.model__hidden == 8
    assert "model__extra" in c.get_params()
    with pytest.raises(TypeError, match=r"unexpected arguments \['hiden'\]"):
        SequentialClassifier(build, hiden=3).fit(*_clf_data())
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(nope=1)


def test_grid_search_and_pipeline():
    X, y = _clf_data()
    clf = SequentialClassifier(build, epochs=10, optimizer__lr=1e-2, random_state=0)
    gs = GridSearchCV(clf, {"model__hidden": [4, 32], "epochs": [2, 15]}, cv=3).fit(X, y)
    assert gs.best_params_ == {"epochs": 15, "model__hidden": 32}
    assert gs.best_estimator_.score(X, y) > 0.85
    pipe = make_pipeline(StandardScaler(), clone(clf))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.7


def test_regressor():
    X, y = make_regression(300, 5, noise=1.0, random_state=0)
    y = y / y.std()
    reg = SequentialRegressor(build_reg, epochs=60, optimizer__lr=1e-2, random_state=0)
    reg.fit(X, y)
    assert reg.predict(X).shape == (300,)
    assert reg.score(X, y) > 0.9
    Y = np.stack([y, -y], axis=1)
    assert SequentialRegressor(build_reg, epochs=5).fit(X, Y).predict(X).shape == (300, 2)


def test_fitted_wrapper_pickles_and_sample_weight():
    X, y = _clf_data()
    clf = SequentialClassifier(build, epochs=5, random_state=0)
    clf.fit(X, y, sample_weight=np.ones(len(y)))
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


def test_errors():
    X, y = _clf_data()
    with pytest.raises(ValueError, match="needs model="):
        SequentialClassifier(epochs=1).fit(X, y)
    with pytest.raises(TypeError, match="must return a fastnn.Sequential"):
        SequentialClassifier(lambda **k: 3, epochs=1).fit(X, y)
    clf = SequentialClassifier(build, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="expecting 8 features"):
        clf.predict(X[:, :5])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        SequentialClassifier(build).predict(X)


def net(n_features_in=None, n_classes=None, n_outputs=None):
    return fnn.Sequential([fnn.Dense(n_features_in, 8, activation="relu"),
                           fnn.Dense(8, n_classes or n_outputs)], dtype="float64", seed=0)


def test_scikit_learn_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    known = {"check_no_attributes_set_in_init", "check_sample_weight_equivalence_on_dense_data"}
    for est in (SequentialClassifier(net, epochs=20, optimizer__lr=0.02, random_state=0),
                SequentialRegressor(net, epochs=20, optimizer__lr=0.02, random_state=0)):
        res = check_estimator(est, on_fail=None)
        failed = {r["check_name"] for r in res if r["status"] == "failed"}
        assert failed <= known, (type(est).__name__, failed - known)
