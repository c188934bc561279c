"""The difference of two proportions and its interval, against the published answers
(Newcombe 1998, Statistics in Medicine 17:873-890, table II, method 10)."""
import pytest

from ml.pipelines.recommendation.uplift import rate_difference, wilson_interval


@pytest.mark.parametrize(("counts", "low", "high"), [
    ((56, 70, 48, 80), 0.0524, 0.3339),
    ((9, 10, 3, 10), 0.1705, 0.8090),
    ((5, 56, 0, 29), -0.0381, 0.1926),
    ((6, 7, 2, 7), 0.0582, 0.8062),
])
def test_rate_difference_matches_newcombes_table(counts, low, high):
    result = rate_difference(*counts)

    assert result["low"] == pytest.approx(low, abs=1e-4) and result["high"] == pytest.approx(high, abs=1e-4)
    assert result["significant"] == (low > 0)


def test_rate_difference_ratio_is_none_without_control_buyers():
    result = rate_difference(5, 56, 0, 29)

    assert result["ratio"] is None and result["control_rate"] == 0


def test_wilson_interval_of_zero_successes_starts_at_zero():
    low, high = wilson_interval(0, 10)

    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)
