"""Count reads/writes of another object's private attributes in src/fastnn (issue 16).

An access ``obj._name`` counts unless ``obj`` is ``self``/``cls`` (a module's private
global read from another module, ``_config._num_threads``, counts too), and so does
``from .module import _name``.
Usage: python tools/private_reach.py [-v]
"""
from __future__ import annotations

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1] / "src" / "fastnn"




def main() -> int:
    """Print the count per module (and each hit with -v); return 0."""
    verbose = "-v" in sys.argv
    total = 0
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        hits = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue
                hits.append((node.lineno, ast.unparse(node)))
            if isinstance(node, ast.ImportFrom) and node.level >= 1 and node.module \
                    and not node.module.startswith("_"):
                for a in node.names:
                    if a.name.startswith("_"):
                        hits.append((node.lineno, f"from .{node.module} import {a.name}"))
        total += len(hits)
        if hits:
            print(f"{path.relative_to(ROOT.parent)}: {len(hits)}")
            if verbose:
                for ln, txt in hits:
                    print(f"    {ln}: {txt}")
    print(f"total: {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
