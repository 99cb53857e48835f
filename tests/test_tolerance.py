"""The tests' own tolerance (conftest.assert_close) can fail: relative at every magnitude."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close


def test_small_values_are_held_to_a_relative_tolerance():
    g = np.full((64, 10), 1e-4, np.float32)  # a cross-entropy gradient's size
    with pytest.raises(AssertionError, match="differ"):
        assert_close(g * 1.25, g, np.float32, k=10)
    assert_close(g * (1 + 1e-6), g, np.float32, k=10)


def test_near_zero_elements_use_the_arrays_typical_magnitude():
    rng = np.random.default_rng(0)
    e = rng.standard_normal(1000)
    e[0] = 1e-9  # cancelled to almost nothing
    a = e.copy()
    a[0] += 1e-14  # rounding of the size of the terms' error passes ...
    assert_close(a, e, np.float64, k=100)
    a[0] = e[0] + 1e-9  # ... an error of the element's own size relative to 1 does not
    with pytest.raises(AssertionError):
        assert_close(a, e, np.float64, k=100)


def test_all_zero_expected_must_match_exactly_and_nan_matches_nan():
    assert_close(np.zeros(5), np.zeros(5), np.float32)
    with pytest.raises(AssertionError):
        assert_close(np.full(5, 1e-30), np.zeros(5), np.float32)
    x = np.array([1.0, np.nan, np.inf])
    assert_close(x, x, np.float64)
