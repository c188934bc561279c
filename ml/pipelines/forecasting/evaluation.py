"""Scoring the forecasting candidates on a backtest window and choosing one per target
(the rule of :mod:`ml.pipelines.backtest`; the metrics of :mod:`.metrics`)."""

from __future__ import annotations

import pandas as pd

from ml.pipelines.backtest import choose, relative
from ml.pipelines.forecasting.metrics import churn_metrics, count_metrics
from ml.pipelines.forecasting.models import BASELINES, TARGETS

# Simplest first: the choice keeps the simplest candidate whose backtest scores are within the
# spread of the best's. The baselines have no parameter, BTYD models four population
# parameters, the regressions 16 coefficients and up (polynomial: 152), boosting and the
# ensemble many.
ORDER = {
    "orders": ("naive rate", "bgnbd", "paretonbd", "linear", "glm", "polynomial", "svr", "gbm", "ensemble"),
    "spend": ("naive rate", "bgnbd", "paretonbd", "linear", "glm", "polynomial", "svr", "gbm", "ensemble"),
    "churn": ("base rate", "naive rate", "bgnbd", "paretonbd", "linear", "glm", "polynomial", "svr", "gbm",
              "ensemble"),
}
BASELINE_OF = {"orders": "naive rate", "spend": "naive rate", "churn": "base rate"}


def window_scores(out: dict, y: pd.DataFrame) -> dict:
    """One candidate's figures on a window: {"orders", "spend", "churn"} (None where it has none)."""
    churned = (y["orders"].to_numpy() == 0).astype(int)
    return {
        "orders": None if out["orders"] is None else count_metrics(out["orders"], y["orders"]),
        "spend": None if out["spend"] is None else count_metrics(out["spend"], y["spend"]),
        "churn": None if out["p0"] is None else churn_metrics(out["p0"], churned),
    }


def flat_scores(scores: dict) -> dict:
    """{"orders_rmse": ..., "churn_auc": ...} for the backtest table."""
    out = {}
    for target, keys in (("orders", ("rmse", "mae", "total_pct_error", "spearman")),
                         ("spend", ("rmse", "mae", "total_pct_error", "spearman")),
                         ("churn", ("auc", "brier"))):
        figures = scores.get(target)
        if figures is not None:
            out.update({f"{target}_{k}": figures[k] for k in keys})
    return out


def choose_targets(origins: list, with_spend: bool) -> dict:
    """Per target, the candidate to publish from the per-origin scores (see the module doc)."""
    choice = {}
    for target in TARGETS:
        if target == "spend" and not with_spend:
            continue
        order = ORDER[target]
        names = [n for n in order if all(n in o["scores"] and o["scores"][n][target] is not None for o in origins)]
        # Orders and spend by RMSE, churn by the Brier score (a proper score: the published
        # churn is a probability, and it is what the base rate is a baseline for), each relative
        # to its baseline's on the same window so that windows of different levels weigh alike.
        key, stat = (target, "rmse") if target != "churn" else ("churn", "brier")
        values = {n: [o["scores"][n][key][stat] for o in origins] for n in names}
        baseline = BASELINE_OF[target]
        losses = relative(values, baseline) if baseline in values else values
        label = f"{target} RMSE" if target != "churn" else "churn Brier score"
        picked = choose(losses, order, label=f"{label} relative to the {baseline}'s")
        metric = f"{label} ÷ the {baseline}'s" if baseline in values else label
        if picked is None:
            continue
        choice[target] = {
            "metric": metric, "lower_is_better": True, "chosen": picked["chosen"], "best": picked["best"],
            "baseline": BASELINE_OF[target], "is_baseline": picked["chosen"] in BASELINES,
            "order": picked["order"], "mean": picked["mean"], "spread": picked["spread"], "origins": picked["origins"],
            "reason": picked["reason"],
        }
    return choice
