"""Fail early, naming the cause, when fastnn's compiled module is missing."""

from __future__ import annotations


def _check_compiled() -> None:
    """Fail with the cause when the compiled module is missing (not a circular-import error)."""
    import importlib.util
    import os

    if importlib.util.find_spec("fastnn._kernels") is not None:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    raise ImportError(
        f"fastnn was imported from {here}, which has no compiled extension (_kernels). "
        "This is an unbuilt source tree shadowing any installed fastnn: the current "
        "directory or PYTHONPATH comes first on sys.path. Install it with `pip install .` "
        "and run from another directory (or use the `fastnn` command), or build it in place "
        "with `python setup.py build_ext --inplace`."
    )


_check_compiled()

