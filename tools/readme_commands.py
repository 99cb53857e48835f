"""Print the README's set-up commands, one per line, exactly as the README writes them.

They are the ``bash`` blocks of the "Set-up on a fresh machine" section: the first
installs the package and runs the demo, the second installs the test extras and runs
the tests.  ``.ci/run`` and ``tests/test_readme_commands.py`` run what this prints, so
the README cannot drift from what CI does.

Usage: ``python tools/readme_commands.py [README.md]``; prints ``N`` lines.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SECTION = "## Set-up on a fresh machine"


def readme_commands(readme: Path) -> list[str]:
    """The set-up section's ``bash`` commands, in order.

    Parameters
    ----------
    readme : Path
        The README.md to read.

    Returns
    -------
    list of str
        One command per ``bash`` block of the section (each block holds one line).
    """
    text = readme.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end >= 0 else None]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    cmds = [b.strip() for b in blocks]
    if len(cmds) != 2 or any("\n" in c for c in cmds):
        raise SystemExit(f"{readme}: expected two one-line bash blocks under {SECTION!r}, "
                         f"found {cmds!r}")
    return cmds


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "README.md"
    print("\n".join(readme_commands(path)))
