"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import OPTIONAL_PEERS

README = Path(__file__).resolve().parent.parent / "README.md"

# a block whose optional peer is not installed is skipped, as the tests of that peer
# are; where they are installed (CI on x86-64) every block runs


@pytest.mark.skipif(not README.exists(), reason="README.md not beside the tests")
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write model files
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    missing = []
    for code in blocks:
        try:
            exec(compile(code, str(README), "exec"), {})
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] not in OPTIONAL_PEERS:
                raise
            missing.append(e.name)
    if missing:
        pytest.skip(f"README blocks skipped, optional peers not installed: {sorted(missing)}")
