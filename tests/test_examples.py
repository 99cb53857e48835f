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


@pytest.mark.skipif(not (ROOT / "examples").exists(), reason="examples/ not beside the tests")
def test_resnet_mnist_quick_runs_offline(tmp_path, capsys):
    """--quick never downloads: with no cached MNIST it trains on the synthetic stand-in."""
    main = runpy.run_path(str(ROOT / "examples" / "resnet_mnist.py"))["main"]
    res = main(["--quick", "--no-torch", "--data-home", str(tmp_path)])
    assert res["source"].startswith("synthetic")
    # one epoch of 1,200 images (19 steps: the batch norms' running statistics are still
    # far from the data's, so the figure means little); the full run is in the README
    assert 0.0 <= res["fastnn"]["accuracy"] <= 1.0 and res["fastnn"]["train_seconds"] > 0
    assert "fastnn : test accuracy" in capsys.readouterr().out


@pytest.mark.skipif(not (ROOT / "examples").exists(), reason="examples/ not beside the tests")
def test_transfer_mnist_quick_runs_offline(tmp_path):
    main = runpy.run_path(str(ROOT / "examples" / "transfer_mnist.py"))["main"]
    res = main(["--quick", "--data-home", str(tmp_path)])
    for key in ("pretrain_0_4", "frozen_body_new_head", "then_finetune_all",
                "frozen_features_linear_head", "scratch_same_100"):
        assert 0.0 <= res[key] <= 1.0
    assert res["n_few"] == 100


@pytest.mark.skipif(not (ROOT / "examples").exists(), reason="examples/ not beside the tests")
def test_embedding_digits_quick_runs():
    pytest.importorskip("sklearn")
    main = runpy.run_path(str(ROOT / "examples" / "embedding_digits.py"))["main"]
    res = main(["--quick"])
    assert res["accuracy"] > 0.6
    assert [r["batch"] for r in res["steps"]] == [64, 256]
