"""Did showing the suggestions make customers buy more? Two proportions and their difference.

``shown``: customers whose suggestions were shown, ``control``: customers whose suggestions
were computed but withheld (chosen at random: ml.control). Each group's rate is the share of its
customers who bought a product suggested to them within the window; the difference of the two
rates gets a Newcombe hybrid score interval (method 10 of Newcombe 1998, "Interval estimation
for the difference between independent proportions", Statistics in Medicine 17: built from the
two Wilson score intervals), which keeps its coverage for small groups and rates near 0 or 1
where the normal approximation does not.
"""
from __future__ import annotations

import math

from scipy import stats


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` (n >= 1)."""
    if n < 1:
        raise ValueError("a proportion needs at least one trial")
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_difference(shown_buyers: int, shown: int, control_buyers: int, control: int,
                    confidence: float = 0.95) -> dict:
    """The shown group's rate minus the control group's, with its interval.

    Returns {"shown_rate", "control_rate", "difference", "low", "high", "ratio" (None when the
    control rate is 0), "significant" (the interval excludes no difference), "confidence"}.
    Both groups need at least one customer.
    """
    p1, p2 = shown_buyers / shown, control_buyers / control
    l1, u1 = wilson_interval(shown_buyers, shown, confidence)
    l2, u2 = wilson_interval(control_buyers, control, confidence)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return {"shown_rate": p1, "control_rate": p2, "difference": d, "low": low, "high": high,
            "ratio": p1 / p2 if p2 > 0 else None, "significant": low > 0 or high < 0, "confidence": confidence}
