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
    # the figures the README prints (0.993, 0.823, 0.912, 0.962), within a few test images
    # (260 of them) for rounding that differs between ISAs and thread counts
    assert res["pretrain_0_4"] > 0.97
    assert abs(res["transfer_frozen_body"] - 0.823) <= 0.04
    assert abs(res["transfer_then_finetune_all"] - 0.912) <= 0.04
    assert abs(res["scratch_same_10pct"] - 0.962) <= 0.04
    # the README's point: on this data the frozen body transfers worse than scratch
    assert res["transfer_frozen_body"] < res["scratch_same_10pct"]


def test_demo_reaches_97_percent(capsys):
    pytest.importorskip("sklearn")
    from fastnn.__main__ import demo

    assert demo(epochs=15) >= 0.97  # the README runs 40 epochs (99.2%)
    assert "test accuracy" in capsys.readouterr().out
