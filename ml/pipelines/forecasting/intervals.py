"""P10-P90 bands of the forecasts: per customer (learned on a backtest window) and of a total."""

from __future__ import annotations

import numpy as np
from scipy import stats


class RatioQuantiles:
    """P10 / P90 as forecast x (10th / 90th percentile of actual / forecast) within the
    forecast's decile, learned on the validation window. Scale-free, so it carries over
    from the validation window to the forecast and to scaled horizons."""

    def fit(self, pred, actual, n_bins=10, low=0.1, high=0.9):
        pred = np.maximum(np.asarray(pred, float), 1e-9)
        ratio = np.asarray(actual, float) / pred
        self.edges_ = np.unique(np.quantile(pred, np.linspace(0, 1, n_bins + 1)[1:-1]))
        bins = np.searchsorted(self.edges_, pred, side="right")
        # "lower"/"higher" keep the band on observed values: counts are discrete.
        self.low_ = np.array([np.quantile(ratio[bins == b], low, method="lower") if (bins == b).any() else 0.0
                              for b in range(len(self.edges_) + 1)])
        self.high_ = np.array([np.quantile(ratio[bins == b], high, method="higher") if (bins == b).any() else 1.0
                               for b in range(len(self.edges_) + 1)])
        return self

    def transform(self, pred):
        pred = np.asarray(pred, float)
        bins = np.searchsorted(self.edges_, np.maximum(pred, 1e-9), side="right")
        return pred * self.low_[bins], pred * self.high_[bins]


class SpendBand:
    """P10 / P90 of spend that agree with the purchases band: spend x (purchases P10 / expected
    purchases) x ``low_``, and likewise for P90 with ``high_``. A customer whose purchases band
    starts above 0 gets a spend band above 0, and one who may well buy nothing (purchases P10
    of 0) a spend P10 of 0. The two factors are learned on a backtest window so that about a
    tenth of the customers spend below the band and a tenth above it (order values vary on top
    of the number of orders)."""

    def fit(self, spend, orders, orders_low, orders_high, actual, low=0.1, high=0.9):
        rel_lo, rel_hi = self._relative(orders, orders_low, orders_high)
        spend, actual = np.asarray(spend, float), np.asarray(actual, float)
        n = len(actual)
        self.low_ = self._factor(actual, spend * rel_lo, int(round(low * n)), below=True)
        self.high_ = self._factor(actual, spend * rel_hi, int(round((1 - high) * n)), below=False)
        return self

    @staticmethod
    def _relative(orders, orders_low, orders_high):
        orders = np.asarray(orders, float)
        ok = orders > 1e-9
        safe = np.where(ok, orders, 1.0)
        return (np.where(ok, np.asarray(orders_low, float) / safe, 0.0),
                np.where(ok, np.asarray(orders_high, float) / safe, 1.0))

    @staticmethod
    def _factor(actual, bound, wanted, below):
        """The factor c putting ``wanted`` customers below c x bound (``below``) or above it."""
        if below:
            # Only a positive bound can have customers below it; c keeps that many under.
            ratio = np.sort(actual[bound > 0] / bound[bound > 0])
            return float(ratio[wanted]) if 0 < wanted < len(ratio) else 1.0
        always = int(((bound <= 0) & (actual > 0)).sum())  # a zero bound is passed by any spend
        ratio = np.sort(actual[bound > 0] / bound[bound > 0])
        extra = wanted - always
        if extra <= 0 or not len(ratio):
            return float(max(ratio[-1], 1.0)) if len(ratio) else 1.0
        return float(max(ratio[max(len(ratio) - extra - 1, 0)], 1.0))

    def transform(self, spend, orders, orders_low, orders_high):
        rel_lo, rel_hi = self._relative(orders, orders_low, orders_high)
        spend = np.asarray(spend, float)
        return np.minimum(spend * rel_lo * self.low_, spend), np.maximum(spend * rel_hi * self.high_, spend)


# The P10-P90 of a normal: +-1.2816 standard deviations.
Z90 = float(stats.norm.ppf(0.9))


def total_interval(total: float, sampling_sd: float, level_sd: float) -> tuple[float, float]:
    """P10 and P90 of a forecast total: log-normal around it, with the customers' independent
    spread (``sampling_sd``, in the total's unit) and a level error (``level_sd``, on the log
    scale) combined."""
    if total <= 0:
        return 0.0, 0.0
    sigma = float(np.sqrt(level_sd ** 2 + (sampling_sd / total) ** 2))
    return total * float(np.exp(-Z90 * sigma)), total * float(np.exp(Z90 * sigma))
