"""``run.metrics`` in the layout every kind writes since issue 12 (``outcome``, ``backtest``, and
``targets`` for forecasts), built with known values for the page and API tests."""
from __future__ import annotations

import copy
import statistics
from datetime import date, timedelta

from .conftest import FORECAST_METRICS

AS_OF = date(2026, 1, 31)
NO_AMOUNTS = "no amounts: purchases carry no amount, so spend and CLV are not forecast"
SHORT_HISTORY = "not yet validated: 18 days of history"


def plan(*, windows: int = 2, window_days: int = 90, history_days: int = 276) -> dict:
    """A backtest plan's JSON (ml.pipelines.backtest.BacktestPlan.to_json) with ``windows`` origins;
    0 windows: not yet validated."""
    if not windows:
        return {"as_of": AS_OF.isoformat(), "horizon_days": 90, "history_days": 18, "window_days": 0,
                "validated": False, "reason": SHORT_HISTORY, "origins": []}
    origins = []
    for k in range(1, windows + 1):
        cut = AS_OF - timedelta(days=k * window_days)
        origins.append({"cut": cut.isoformat(), "first_day": (cut + timedelta(days=1)).isoformat(),
                        "last_day": (cut + timedelta(days=window_days)).isoformat(), "customers": 2223 - k,
                        "scores": {}})
    return {"as_of": AS_OF.isoformat(), "horizon_days": 90, "history_days": history_days,
            "window_days": window_days, "validated": True,
            "reason": f"validated on {windows} windows of {window_days} days", "origins": origins}


def choice(metric: str, per_origin: dict, *, chosen: str, baseline: str, lower_is_better: bool = True,
           reason: str = "") -> dict:
    """One target's choice: ``per_origin`` {candidate: [metric per origin]}; the best by mean."""
    mean = {name: statistics.fmean(values) for name, values in per_origin.items()}
    best = (min if lower_is_better else max)(mean, key=mean.get)
    spread = {name: 0.0 if name == best else
              statistics.stdev([a - b for a, b in zip(values, per_origin[best])]) / len(values) ** 0.5
              for name, values in per_origin.items()}
    return {"metric": metric, "lower_is_better": lower_is_better, "chosen": chosen, "best": best,
            "baseline": baseline, "is_baseline": chosen == baseline, "order": list(per_origin), "mean": mean,
            "spread": spread, "origins": per_origin, "reason": reason or f"{chosen}: the lowest mean {metric} over 2 backtest windows"}


# The holdout figures of the most recent window (the keys the pages read before issue 12).
HOLDOUT = {key: FORECAST_METRICS[key] for key in ("chosen", "model", "baselines", "series")}


def forecast_metrics(*, basis: str = "model", spend: bool = True, windows: int = 2) -> dict:
    """A forecast run's metrics: orders and churn chosen on ``windows`` origins (the model, or the
    baselines when ``basis`` is "baseline"); spend and CLV not forecast when ``spend`` is False;
    no backtest at all (fitted on all history) when ``windows`` is 0."""
    chosen_orders = "naive rate" if basis == "baseline" else "ensemble"
    chosen_churn = "base rate" if basis == "baseline" else "ensemble"
    backtest = plan(windows=windows)
    targets = {
        "orders": {"forecast": True, "algorithm": chosen_orders, "basis": basis},
        "churn": {"forecast": True, "algorithm": chosen_churn, "basis": basis},
        "spend": {"forecast": True, "algorithm": chosen_orders, "basis": basis} if spend else
        {"forecast": False, "reason": NO_AMOUNTS},
        "clv": {"forecast": True, "algorithm": chosen_orders, "basis": basis} if spend else
        {"forecast": False, "reason": NO_AMOUNTS},
        "refund_rate": {"forecast": True, "algorithm": "pooled rate", "basis": basis},
    }
    if not windows:
        return {"outcome": {"basis": "not validated",
                            "summary": f"{SHORT_HISTORY}: ensemble fitted on all history"},
                "backtest": backtest, "targets": targets}
    backtest["choice"] = {
        "orders": choice("orders RMSE", {"naive rate": [1.40, 1.52], "bg/nbd": [1.31, 1.47],
                                         "ensemble": [1.20, 1.29]}, chosen=chosen_orders, baseline="naive rate"),
        "churn": choice("churn AUC", {"base rate": [0.50, 0.50], "ensemble": [0.91, 0.88]}, chosen=chosen_churn,
                        baseline="base rate", lower_is_better=False),
    }
    if spend:
        backtest["choice"]["spend"] = choice("spend RMSE", {"naive rate": [215.0, 230.5], "ensemble": [200.0, 221.0]},
                                             chosen=chosen_orders, baseline="naive rate")
    holdout = copy.deepcopy(HOLDOUT)
    if not spend:
        for figures in (holdout["model"], holdout["baselines"]["naive rate"]):
            figures.pop("spend")
    summary = ("model: ensemble, validated on 2 windows of 90 days" if basis == "model" else
               "baseline: naive rate (no model beat it on 2 windows of 90 days)")
    return {**holdout, "outcome": {"basis": basis, "summary": summary}, "backtest": backtest, "targets": targets}


def recommendation_metrics(*, reorder_reason: str = "", cross_sell_reason: str = "") -> dict:
    """A recommendation run's metrics: cross-sell by item-item over popularity, reorder kept at repeat-buy."""
    backtest = plan(windows=2)
    backtest["choice"] = {
        "cross_sell": choice("NDCG@10", {"popularity": [0.050, 0.048], "item-item": [0.071, 0.069]},
                             chosen="item-item", baseline="popularity", lower_is_better=False),
        "reorder": choice("NDCG@10", {"repeat_buy": [0.067, 0.066], "cycle": [0.070, 0.064]},
                          chosen="repeat_buy", baseline="repeat_buy", lower_is_better=False,
                          reason="repeat_buy: within the spread between the 2 backtest windows of the best, "
                                 "cycle (mean NDCG@10 0.0665 against 0.067), so the simpler candidate is kept"),
    }
    metrics = {"outcome": {"basis": "model", "summary": "model: item-item for cross-sell, repeat_buy for reorder"},
               "backtest": backtest}
    if reorder_reason:
        metrics["reorder_reason"] = reorder_reason
    if cross_sell_reason:
        metrics["cross_sell_reason"] = cross_sell_reason
    return metrics
