"""fastnn: train neural networks on the CPU with fused C kernels.

Quick start::

    import fastnn as fnn
    out = fnn.kernels.dense_forward(x, w, b, activation="relu")

See ``python -m fastnn info`` for the ISA and threads in use.
"""

from __future__ import annotations

from ._buildcheck import missing_extension as _missing_extension

_MISSING = _missing_extension()
if _MISSING is not None:
    # An unbuilt tree (or a blocked extension): only the NumPy twins work, so that
    # ``fastnn.reference`` stays usable; any other name raises the cause.
    from . import reference  # noqa: F401

    __all__ = ["reference"]

    def __getattr__(name: str):
        """Every name but ``reference`` needs the compiled module: say why it is missing."""
        raise ImportError(str(_MISSING))
else:
    from ._api import *  # noqa: F403
    from ._api import __all__, __version__, config, show_config  # noqa: F401

    #: Submodules with an optional dependency, imported on first attribute access
    #: (PEP 562): ``import fastnn`` imports none of them (nor torch, scikit-learn, mpi4py).
    _LAZY_SUBMODULES = ("interop", "sklearn", "distributed", "wrappers")

    def __getattr__(name: str):
        """Import a lazy submodule on first use (``fastnn.interop``, ...)."""
        if name in _LAZY_SUBMODULES:
            import importlib

            module = importlib.import_module(f"{__name__}.{name}")
            globals()[name] = module
            return module
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_LAZY_SUBMODULES))
