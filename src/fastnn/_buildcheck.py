"""Name the cause when fastnn's compiled module is missing (not a circular-import error)."""

from __future__ import annotations


def missing_extension() -> ImportError | None:
    """None when the compiled module ``fastnn._kernels`` can be found, else the ImportError
    to raise (naming the cause) for any name that needs it.
    """
    import importlib.util
    import os

    try:
        if importlib.util.find_spec("fastnn._kernels") is not None:
            return None
    except ImportError as exc:  # an import hook refused it
        return ImportError(f"fastnn's compiled extension (_kernels) cannot be imported: {exc}")
    here = os.path.dirname(os.path.abspath(__file__))
    return ImportError(
        f"fastnn was imported from {here}, which has no compiled extension (_kernels). "
        "This is an unbuilt source tree shadowing any installed fastnn: the current "
        "directory or PYTHONPATH comes first on sys.path. Install it with `pip install .` "
        "and run from another directory (or use the `fastnn` command), or build it in place "
        "with `python setup.py build_ext --inplace`."
    )
