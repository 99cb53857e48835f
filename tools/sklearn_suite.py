"""Run scikit-learn's own MLP test module against fastnn's estimators.

Takes ``sklearn/neural_network/tests/test_mlp.py`` from the INSTALLED scikit-learn,
swaps its import of ``MLPClassifier`` / ``MLPRegressor`` for fastnn's (nothing else
changes), adds the ``global_random_seed`` fixture that scikit-learn's own conftest
provides, and runs it with pytest in a scratch directory.  Prints the counts and
exits non-zero when a test fails (or the import line is not found).

The only tests left out are those that read private attributes of scikit-learn's
implementation (listed in ``DESELECTED`` with the reason, printed on every run).

Usage::

    python tools/sklearn_suite.py [extra pytest arguments]

fastnn is imported from wherever it is importable (an install, or ``PYTHONPATH=src``
for an in-place build).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

#: test name -> why it cannot run against another implementation
DESELECTED = {
    "test_gradient": "calls mlp._loss_grad_lbfgs(theta, X, Y, None, activations, deltas, "
                     "coef_grads, intercept_grads), scikit-learn's private L-BFGS objective "
                     "with its work arrays, to compare it with numerical differentiation",
    "test_learning_rate_warmstart": "reads mlp._optimizer.learning_rate (scikit-learn's "
                                    "private SGDOptimizer object)",
    "test_adaptive_learning_rate": "reads clf._optimizer.learning_rate (scikit-learn's "
                                   "private SGDOptimizer object)",
}

IMPORT_LINE = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
FASTNN_LINE = "from fastnn.sklearn import MLPClassifier, MLPRegressor"

CONFTEST = '''\
import os

import pytest


def _seeds():
    # as scikit-learn's conftest: SKLEARN_TESTS_GLOBAL_RANDOM_SEED = "42" (default),
    # "all" (0..99) or "a-b" / "a,b,..."
    spec = os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED", "42")
    if spec == "all":
        return list(range(100))
    if "-" in spec:
        lo, hi = spec.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in spec.split(",")]


@pytest.fixture(params=_seeds())
def global_random_seed(request):
    return request.param
'''


class _Counter:
    """pytest plugin: outcome counts of the test phase (errors of any phase too)."""

    def __init__(self) -> None:
        self.counts = {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0, "error": 0}
        self.failed: list[str] = []
        self.deselected = 0

    def pytest_deselected(self, items):
        self.deselected += len(items)

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            if hasattr(report, "wasxfail"):
                self.counts["xfailed"] += 1
            elif report.passed:
                self.counts["passed"] += 1
            elif report.failed:
                self.counts["failed"] += 1
                self.failed.append(report.nodeid)
            elif report.skipped:
                self.counts["skipped"] += 1
        elif report.failed:
            self.counts["error"] += 1
            self.failed.append(report.nodeid + f" ({report.when})")
        elif report.skipped and report.when == "setup":
            self.counts["skipped"] += 1


def main(argv: list[str]) -> int:
    """Copy, patch and run the module; 0 when every selected test passes."""
    import pytest
    import sklearn

    import fastnn
    import fastnn.sklearn  # noqa: F401  (fails early if scikit-learn is missing)

    src = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
    text = src.read_text()
    if text.count(IMPORT_LINE) != 1:
        print(f"sklearn_suite: the import line {IMPORT_LINE!r} is not (once) in {src}")
        return 2
    print(f"scikit-learn {sklearn.__version__}: {src}")
    print(f"fastnn {fastnn.__version__}: {Path(fastnn.__file__).parent}")
    for name, why in DESELECTED.items():
        print(f"deselected {name}: {why}")
    with tempfile.TemporaryDirectory(prefix="fastnn_sklearn_suite_") as tmp:
        root = Path(tmp)
        (root / "test_mlp.py").write_text(text.replace(IMPORT_LINE, FASTNN_LINE))
        (root / "conftest.py").write_text(CONFTEST)
        (root / "pytest.ini").write_text("[pytest]\n")
        args = ["-q", "-p", "no:cacheprovider", "-c", str(root / "pytest.ini"),
                "--rootdir", str(root), str(root / "test_mlp.py")]
        for name in DESELECTED:
            args += ["--deselect", f"test_mlp.py::{name}"]
        counter = _Counter()
        cwd = os.getcwd()
        os.chdir(root)
        try:
            rc = pytest.main(args + list(argv), plugins=[counter])
        finally:
            os.chdir(cwd)
    c = counter.counts
    print(f"sklearn_suite: {c['passed']} passed, {c['failed']} failed, {c['error']} errors, "
          f"{c['skipped']} skipped, {c['xfailed']} xfailed, {counter.deselected} deselected")
    for nodeid in counter.failed:
        print(f"  FAILED {nodeid}")
    if c["failed"] or c["error"] or rc not in (0, 5):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
