"""The FMA-peak probe the benchmarks divide by: right vector width, sane numbers, bad input."""

from __future__ import annotations

import pytest

import fastnn
from fastnn import _kernels

WIDTH = {"avx512": 512, "avx2": 256, "neon": 128, "generic": 0, "avx512_bf16": 512, "amx": 512}


def test_fma_peak_uses_the_widest_vectors_of_the_level_in_use():
    r = _kernels.fma_peak(0.01, 1)
    assert r["isa"] == fastnn.config()["isa"]
    assert r["width"] == WIDTH[r["isa"]]
    assert r["wall"] > 0 and r["cpu"] > 0


@pytest.mark.parametrize("seconds, threads", [(0.0, 1), (-1.0, 1), (0.01, 0)])
def test_fma_peak_rejects_bad_arguments(seconds, threads):
    with pytest.raises(ValueError, match="fma_peak"):
        _kernels.fma_peak(seconds, threads)
