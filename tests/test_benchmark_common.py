"""The small statistics helpers the learning benchmarks report with."""

import math

import numpy as np
import pytest

from experiments.benchmarks.common import ci, wilson


def test_wilson_interval_known_values() -> None:
    # Textbook values of the 95% Wilson score interval.
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-4) and hi == 1.0
    lo, hi = wilson(3, 10)
    assert (lo, hi) == (pytest.approx(0.1078, abs=1e-4), pytest.approx(0.6032, abs=1e-4))


def test_wilson_contains_the_fraction_and_narrows_with_n() -> None:
    for n in (8, 32, 128):
        lo, hi = wilson(n // 4, n)
        assert lo < 0.25 < hi
    assert np.diff([wilson(n // 4, n)[1] - wilson(n // 4, n)[0] for n in (8, 32, 128)]).max() < 0


def test_wilson_of_no_trials_is_nan() -> None:
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_ci_averages_each_seed_first() -> None:
    out = ci([[1.0, 3.0], [3.0, 5.0]])
    np.testing.assert_allclose(out["per_seed"], [2.0, 4.0])
    assert out["mean"] == pytest.approx(3.0)
    assert out["ci95"] > 0
