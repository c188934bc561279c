"""Choosing a segmentation on the rolling-origin backtest (:mod:`ml.pipelines.backtest`).

At each origin every algorithm segments the customers with features as of the cut and is
scored by how much of the variance of the orders and of the spend in the window after the cut
lies between its segments (adjusted eta squared). RFM scores, the baseline, are kept unless
K-means or DBSCAN beats them by more than the spread between origins.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ml.pipelines.backtest import BacktestPlan, choose
from ml.pipelines.schema import as_of_day
from ml.pipelines.segmentation.features import features_from_rows
from ml.pipelines.segmentation.models import assign, fit_model, json_ready

# Simplest first: the order the backtest choice keeps a simpler candidate in. RFM is the
# baseline (quintile scores, nothing fitted).
ALGORITHMS = ("rfm", "kmeans", "dbscan")
BASELINE = "rfm"
TARGET = "segments"
METRIC = "adjusted eta squared"
# Below this many buyers at a backtest cut, eta squared per segment is noise: that origin is
# not scored (and with no origin scored, RFM is published as not validated).
MIN_BUYERS_FOR_AUTO = 50


def compare_algorithms(rows: dict, as_of, features_now: pd.DataFrame, settings: dict, plan: BacktestPlan):
    """Compare the algorithms on the backtest origins; returns (algorithm, reason, basis,
    backtest table, comparison).

    ``rows``: :func:`~ml.pipelines.segmentation.features.prepare_rows` up to ``as_of``; ``plan``:
    the backtest windows (:func:`ml.pipelines.backtest.plan_backtest` from the first purchase);
    ``features_now``: the features as of ``as_of``; ``settings``: the segmenter's
    (:meth:`CustomerSegmenter._settings`). ``comparison``: algorithm -> its mean score, its
    per-origin scores and the first origin's details ({} when nothing was compared).

    At each cut, every algorithm segments the customers known then (features as of the cut)
    and is scored on the window after it: the mean over orders and spend (orders only
    without money) of the adjusted eta squared of that window's figures between segments.
    The choice is :func:`ml.pipelines.backtest.choose` on the negated scores, RFM first.
    """
    backtest = dict(plan.to_json(), target=TARGET)
    if not plan.validated:
        backtest["choice"] = {}
        return BASELINE, (f"{plan.reason}: RFM scores (the baseline) are published without a "
                          f"comparison"), "not validated", backtest, {}
    window = pd.Timedelta(days=plan.window_days)
    targets = ("orders", "spend") if rows["money"] else ("orders",)
    scores = {a: [] for a in ALGORITHMS}
    details = {a: [] for a in ALGORITHMS}
    for origin, cut in zip(backtest["origins"], plan.cuts):
        past = features_from_rows(rows, cut)
        later = features_now if cut + window >= as_of_day(as_of) \
            else features_from_rows(rows, cut + window)
        later = later.reindex(past.index)
        buyers = int((past["orders"] > 0).sum())
        origin["customers"], origin["buyers"] = int(len(past)), buyers
        origin["scores"] = {}
        future = {t: np.maximum(later[t].to_numpy(np.float64) - past[t].to_numpy(np.float64),
                                0.0) for t in targets}
        for algorithm in ALGORITHMS:
            if buyers < MIN_BUYERS_FOR_AUTO:
                origin["scores"][algorithm] = {METRIC: None}
                scores[algorithm].append(None)
                continue
            model = fit_model(algorithm, past, settings)
            keys, _ = assign(model, past)
            eta = {t: eta_squared(y, keys) for t, y in future.items()}
            score = float(np.mean([e["adjusted"] for e in eta.values()]))
            origin["scores"][algorithm] = {
                METRIC: score,
                "adjusted eta squared of orders": eta["orders"]["adjusted"],
                "adjusted eta squared of spend": eta["spend"]["adjusted"] if "spend" in eta
                else None,
                "segments": int(len(np.unique(keys)))}
            scores[algorithm].append(score)
            details[algorithm].append({**origin["scores"][algorithm], "cut": origin["cut"],
                                       "params": json_ready(model["params"])})
    scored = [i for i, v in enumerate(scores[BASELINE]) if v is not None]
    if not scored:
        most = max(o["buyers"] for o in backtest["origins"])
        backtest["validated"] = False
        backtest["reason"] = (f"not validated: at most {most} customers had bought by a backtest "
                              f"cut, fewer than the {MIN_BUYERS_FOR_AUTO} needed to compare "
                              f"segmentations on the window after it")
        backtest["choice"] = {}
        return BASELINE, (f"{backtest['reason']}: RFM scores (the baseline) are published "
                          f"without a comparison"), "not validated", backtest, {}
    picked = choose({a: [-scores[a][i] for i in scored] for a in ALGORITHMS}, ALGORITHMS)
    chosen, best = picked["chosen"], picked["best"]
    mean = {a: -v for a, v in picked["mean"].items()}
    k = len(scored)
    windows = f"{k} backtest window{'s' if k != 1 else ''} of {plan.window_days} days"
    if chosen != best:
        reason = (f"{chosen}: within the spread between the {windows} of the best, {best} "
                  f"(mean {METRIC} {mean[chosen]:.3f} against {mean[best]:.3f}), so the "
                  f"simpler candidate is kept")
    elif chosen == BASELINE:
        reason = f"{chosen}: the highest mean {METRIC} over {windows}"
    else:
        reason = (f"{chosen}: the highest mean {METRIC} over {windows}, by more than the "
                  f"spread between windows against every simpler candidate")
    if k < len(plan.cuts):
        reason += (f" ({len(plan.cuts) - k} older window{'s' if len(plan.cuts) - k != 1 else ''}"
                   f" not scored: fewer than {MIN_BUYERS_FOR_AUTO} buyers by the cut)")
    backtest["choice"] = {TARGET: {
        "metric": METRIC, "lower_is_better": False, "chosen": chosen, "best": best,
        "baseline": BASELINE, "is_baseline": chosen == BASELINE, "mean": mean,
        "spread": picked["spread"], "order": picked["order"], "origins": {a: scores[a] for a in ALGORITHMS},
        "reason": reason}}
    comparison = {}
    for algorithm in ALGORITHMS:
        done = details[algorithm]
        comparison[algorithm] = {
            "score": mean[algorithm], "origins": scores[algorithm],
            "adj_eta2_orders": float(np.mean([d["adjusted eta squared of orders"] for d in done])),
            "adj_eta2_spend": float(np.mean([d["adjusted eta squared of spend"] for d in done]))
            if rows["money"] else None,
            "n_segments": done[0]["segments"], "cut": done[0]["cut"], "params": done[0]["params"]}
    return chosen, reason, ("baseline" if chosen == BASELINE else "model"), backtest, comparison


def eta_squared(y: np.ndarray, keys: np.ndarray) -> dict:
    """Between-segment share of the variance of ``y`` (eta squared) and its small-sample
    adjusted form (epsilon squared), which does not reward extra segments by chance."""
    n = len(y)
    total = float(((y - y.mean()) ** 2).sum()) if n else 0.0
    if n < 3 or total <= 0:
        return {"eta2": 0.0, "adjusted": 0.0}
    _, inv = np.unique(keys, return_inverse=True)
    k = int(inv.max()) + 1
    counts = np.bincount(inv, minlength=k)
    means = np.bincount(inv, weights=y, minlength=k) / counts
    within = float(((y - means[inv]) ** 2).sum())
    eta2 = 1.0 - within / total
    adjusted = 1.0 - (within / max(n - k, 1)) / (total / (n - 1))
    return {"eta2": float(eta2), "adjusted": float(adjusted)}


def first_purchase_day(rows: dict):
    """The day of the first purchase in prepared rows (None without a purchase)."""
    t = rows["t_ns"][rows["purchase"]]
    return pd.Timestamp(int(t.min())).normalize() if len(t) else None
