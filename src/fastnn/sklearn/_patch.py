"""``patch()`` / ``unpatch()``: put fastnn's estimators in place of scikit-learn's, as
scikit-learn-intelex's ``patch_sklearn()`` does, so that code written for scikit-learn
runs on fastnn without a change.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["is_patched", "patch", "unpatch"]

#: the scikit-learn modules whose MLP names are replaced (the public module and the
#: module that defines them)
_MODULES = ("sklearn.neural_network", "sklearn.neural_network._multilayer_perceptron")
_NAMES = ("MLPClassifier", "MLPRegressor")

#: (module name, attribute) -> scikit-learn's original, while patched
_originals: dict[tuple[str, str], Any] = {}


def patch() -> None:
    """Make ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` fastnn's.

    After ``patch()``, ``from sklearn.neural_network import MLPClassifier`` (and the
    attribute ``sklearn.neural_network.MLPClassifier``) give
    :class:`fastnn.sklearn.MLPClassifier`; likewise for the regressor.  Names imported
    before the call keep what they were bound to.  Calling it twice is harmless.

    Examples
    --------
    >>> import fastnn.sklearn
    >>> fastnn.sklearn.patch()
    >>> from sklearn.neural_network import MLPClassifier
    >>> MLPClassifier.__module__
    'fastnn.sklearn._estimators'
    >>> fastnn.sklearn.unpatch()
    """
    from . import _estimators

    for mod_name in _MODULES:
        mod = importlib.import_module(mod_name)
        for name in _NAMES:
            key = (mod_name, name)
            if key not in _originals:
                _originals[key] = getattr(mod, name)
            setattr(mod, name, getattr(_estimators, name))


def unpatch() -> None:
    """Restore scikit-learn's own estimators (a no-op when not patched)."""
    for (mod_name, name), original in list(_originals.items()):
        setattr(importlib.import_module(mod_name), name, original)
        del _originals[(mod_name, name)]


def is_patched() -> bool:
    """True between :func:`patch` and :func:`unpatch`."""
    return bool(_originals)
