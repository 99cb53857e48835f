"""The example scripts and the demo run and print what the README says."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (ROOT / "examples").exists(), reason="examples/ not beside the tests")
def test_transfer_example_runs(capsys):
    pytest.importorskip("sklearn")
    res = runpy.run_path(str(ROOT / "examples" / "transfer_digits.py"))["main"]()
    assert res["pretrain_0_4"] > 0.97
    assert 0.5 < res["transfer_frozen_body"] <= 1.0
    assert res["scratch_same_10pct"] > 0.8


def test_demo_reaches_97_percent(capsys):
    pytest.importorskip("sklearn")
    from fastnn.__main__ import demo

    assert demo(epochs=15) >= 0.97  # the README runs 40 epochs (99.2%)
    assert "test accuracy" in capsys.readouterr().out
