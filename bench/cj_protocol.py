"""The scoring protocol of ../shared/data/completejourney/ANCHORS.md, on any contract frame.

Shared by bench/cj_forecast_eval.py, bench/cj_recs_eval.py, bench/completejourney.py and
bench/shapes.py; no product code here (only the metric functions of ``ml.pipelines.forecasting.metrics``),
so a change to a model never changes how it is scored.

Frames are contract ``interactions.csv`` rows read as text (``dtype=str``). The day of a row
is the first 10 characters of ``occurred_at`` (ANCHORS: the timestamp as written), or, when
a time zone is given, the local date of the timestamp in that zone (rows written with an
offset, imported with that ``TIME_ZONE``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.pipelines.forecasting import metrics as M

K = 10


def row_days(t: pd.DataFrame, tz: str | None = None) -> pd.Series:
    """The day (``YYYY-MM-DD`` text) of every row of a contract interactions frame."""
    if tz is None:
        return t["occurred_at"].str[:10]
    days = t["occurred_at"].str[:10]
    # A timestamp without an offset is local time already (the import reads it in TIME_ZONE);
    # one with an offset is converted to the zone.
    offset = t["occurred_at"].str.contains(r"(?:[+-]\d\d:\d\d|Z)$", regex=True)
    if offset.any():
        stamps = pd.to_datetime(t.loc[offset, "occurred_at"], format="ISO8601", utc=True)
        days = days.where(~offset, stamps.dt.tz_convert(tz).dt.strftime("%Y-%m-%d"))
    return days


def purchases(t: pd.DataFrame) -> pd.DataFrame:
    """Purchase rows only (refund rows are not orders, spend or bought products)."""
    return t[t["type"] == "purchase"] if "type" in t else t


def order_keys(t: pd.DataFrame) -> pd.Series:
    """The order of each row: its ``order_ref``, or the row itself when it has none (contract)."""
    ref = t["order_ref"].fillna("") if "order_ref" in t else pd.Series("", index=t.index)
    return ref.where(ref != "", "row:" + t.index.astype(str))


def forecast_truth(t: pd.DataFrame, as_of: str, window_end: str, tz: str | None = None):
    """(scored households, truth frame) per ANCHORS: every household with a purchase on or
    before ``as_of``; per household over (as_of, window_end]: orders (distinct orders),
    days (distinct purchase days), spend (sum of ``amount``; NaN-free, 0 without amounts)."""
    t = purchases(t)
    day = row_days(t, tz)
    scored = sorted(set(t.loc[day <= as_of, "customer_external_id"]))
    sel = (day > as_of) & (day <= window_end) & t["customer_external_id"].isin(scored)
    w = pd.DataFrame({"customer_external_id": t.loc[sel, "customer_external_id"], "day": day[sel],
                      "order": order_keys(t)[sel],
                      "amount": pd.to_numeric(t.loc[sel, "amount"], errors="coerce").fillna(0.0)
                      if "amount" in t else 0.0})
    g = w.groupby("customer_external_id")
    truth = pd.DataFrame({"orders": g["order"].nunique(), "days": g["day"].nunique(),
                          "spend": g["amount"].sum()}).reindex(scored, fill_value=0)
    return scored, truth


def score_forecast_export(pred: pd.DataFrame, scored, truth: pd.DataFrame) -> dict:
    """Score an export-like frame (external_id, expected_purchases, expected_spend,
    churn_probability) on ``truth``; households missing from it count as 0 orders, 0 spend
    and churn 1 (ANCHORS)."""
    p = pred.assign(external_id=pred["external_id"].astype(str)).set_index("external_id")
    p = p[~p.index.duplicated()].reindex(scored)
    orders = pd.to_numeric(p["expected_purchases"], errors="coerce").fillna(0).to_numpy(float)
    spend = pd.to_numeric(p["expected_spend"], errors="coerce").fillna(0).to_numpy(float) \
        if "expected_spend" in p else np.zeros(len(p))
    churn = pd.to_numeric(p["churn_probability"], errors="coerce").fillna(1).to_numpy(float)
    churned = (truth["orders"].to_numpy() == 0).astype(int)
    o = M.count_metrics(orders, truth["orders"])
    s = M.count_metrics(spend, truth["spend"])
    c = M.churn_metrics(churn, churned)
    abs_total = abs(o["total_pct_error"]) if o["total_pct_error"] is not None else None
    return {
        "n_households": len(scored),
        "orders": o, "purchase_days": M.count_metrics(orders, truth["days"]), "spend": s, "churn": c,
        "orders_rmse": o["rmse"], "orders_abs_total_pct_error": abs_total,
        "orders_spearman": o["spearman"], "spend_rmse": s["rmse"], "churn_auc": c["auc"],
        "orders_mae": o["mae"], "spend_mae": s["mae"], "spend_spearman": s["spearman"],
        "churn_brier": c["brier"],
    }


def recs_split(t: pd.DataFrame, as_of: str, window_end: str, tz: str | None = None):
    """(catalogue, seen, truth) per ANCHORS' recommendation protocol.

    catalogue: the SKUs bought on or before ``as_of``; seen: household -> SKUs it bought on
    or before ``as_of``; truth: household (with a purchase on or before as_of) -> catalogue
    SKUs it bought in (as_of, window_end]. Rows without a SKU are no evidence either way.
    """
    t = purchases(t)
    if "product_sku" not in t:
        return set(), {}, {}
    t = t[t["product_sku"].fillna("") != ""]
    day = row_days(t, tz)
    before = t.loc[day <= as_of]
    window = t.loc[(day > as_of) & (day <= window_end)]
    catalogue = set(before["product_sku"])
    seen = before.groupby("customer_external_id")["product_sku"].agg(set).to_dict()
    window = window.loc[window["customer_external_id"].isin(seen) & window["product_sku"].isin(catalogue)]
    truth = window.groupby("customer_external_id")["product_sku"].agg(set).to_dict()
    return catalogue, seen, truth


def export_lists(export_df: pd.DataFrame, column: str) -> dict:
    """household -> list of distinct SKUs of an export column (``;``-separated, best first)."""
    if column not in export_df:
        return {}
    return {str(e): skus(v) for e, v in zip(export_df["external_id"], export_df[column])}


def skus(value) -> list:
    if not isinstance(value, str) or not value:
        return []
    out = []
    for s in value.split(";"):
        s = s.strip()
        if s and s not in out:
            out.append(s)
    return out


def score_lists(lists: dict, truth: dict, seen: dict, new: bool, catalogue_size: int) -> dict:
    """P/R/NDCG/hit rate at K and coverage of top-K lists (ANCHORS): ``new`` mode removes the
    household's earlier products from its truth and its list; a missing list is all misses."""
    disc = 1.0 / np.log2(np.arange(2, K + 2))
    p = r = nd = hr = 0.0
    n = 0
    recommended = set()
    for hh, items in truth.items():
        if new:
            items = items - seen.get(hh, set())
            if not items:
                continue
        rec = lists.get(hh, [])
        if new:
            rec = [s for s in rec if s not in seen.get(hh, set())]
        rec = rec[:K]
        recommended.update(rec)
        hits = np.array([s in items for s in rec], dtype=float)
        n += 1
        p += hits.sum() / K
        r += hits.sum() / len(items)
        nd += (hits * disc[: len(hits)]).sum() / disc[: min(len(items), K)].sum()
        hr += float(hits.any())
    if n == 0:
        return {"precision": None, "recall": None, "ndcg": None, "hit_rate": None,
                "coverage": None, "households": 0}
    return {"precision": p / n, "recall": r / n, "ndcg": nd / n, "hit_rate": hr / n,
            "coverage": len(recommended) / catalogue_size, "households": n}
