"""Forecast metrics: plain floats, lists and dicts only, so they can be stored as JSON."""

from __future__ import annotations

import numpy as np
from scipy import stats


def _f(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def count_metrics(pred, truth) -> dict:
    """MAE, RMSE, total % error (100 x (sum pred - sum truth) / sum truth) and Spearman."""
    pred, truth = np.asarray(pred, float), np.asarray(truth, float)
    err = pred - truth
    total = truth.sum()
    if len(pred) > 1 and np.ptp(pred) > 0 and np.ptp(truth) > 0:
        rho = stats.spearmanr(pred, truth).statistic
    else:
        rho = np.nan
    return {
        "mae": _f(np.mean(np.abs(err))) if len(err) else None,
        "rmse": _f(np.sqrt(np.mean(err**2))) if len(err) else None,
        "total_predicted": _f(pred.sum()),
        "total_actual": _f(total),
        "total_pct_error": _f(100 * (pred.sum() - total) / total) if total > 0 else None,
        "spearman": _f(rho),
    }


def roc_auc(score, positive) -> float | None:
    """ROC AUC by Mann-Whitney with ties counted 1/2; None when one class is empty."""
    score = np.asarray(score, float)
    positive = np.asarray(positive, bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(score)
    return _f((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability_table(prob, outcome, n_bins=10) -> list[dict]:
    """Equal-width bins of predicted probability: count, mean predicted, observed rate."""
    prob, outcome = np.asarray(prob, float), np.asarray(outcome, float)
    bins = np.clip((prob * n_bins).astype(int), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            rows.append({
                "bin_low": b / n_bins, "bin_high": (b + 1) / n_bins, "count": int(sel.sum()),
                "mean_predicted": _f(prob[sel].mean()), "observed_rate": _f(outcome[sel].mean()),
            })
    return rows


def churn_metrics(prob, churned) -> dict:
    """AUC (churned = positive), Brier score, mean predicted and observed churn rate."""
    prob, churned = np.asarray(prob, float), np.asarray(churned, float)
    return {
        "auc": roc_auc(prob, churned > 0),
        "brier": _f(np.mean((prob - churned) ** 2)) if len(prob) else None,
        "mean_predicted": _f(prob.mean()) if len(prob) else None,
        "observed_rate": _f(churned.mean()) if len(prob) else None,
    }


def interval_coverage(low, high, truth) -> float | None:
    truth = np.asarray(truth, float)
    if not len(truth):
        return None
    return _f(np.mean((np.asarray(low) <= truth) & (truth <= np.asarray(high))))


def decile_series(pred, truth, n_bins=10) -> list[dict]:
    """Forecast vs actual for a chart: customers sorted by forecast, cut into equal-size bins."""
    pred, truth = np.asarray(pred, float), np.asarray(truth, float)
    if not len(pred):
        return []
    order = np.argsort(pred, kind="stable")
    out = []
    for i, chunk in enumerate(np.array_split(order, min(n_bins, len(pred)))):
        out.append({"bin": i + 1, "count": int(len(chunk)),
                    "mean_predicted": _f(pred[chunk].mean()), "mean_actual": _f(truth[chunk].mean())})
    return out
