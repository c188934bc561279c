"""The forecasting family's features: the purchase log reduced to customer-days, and each
customer's history as of a cut.

Input: the ``interactions`` frame of :mod:`ml.pipelines.schema` (purchases and refunds are
used, other types are ignored), cut with :func:`ml.pipelines.schema.visible`. Days are day
numbers (days since 1970-01-01 of the local wall-clock times); money in the unit of ``amount``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ml.pipelines.schema import visible

FEATURES = (
    "purchase_days", "orders", "spend", "quantity", "recency", "tenure", "active_span",
    "spend_per_day", "first_day_spend", "days_recent", "orders_recent", "spend_recent",
    "days_recent_third", "orders_previous", "repeat_rate", "orders_per_day",
)


def day_number(ts) -> int:
    return int(np.datetime64(pd.Timestamp(ts).normalize().to_datetime64(), "D").astype(np.int64))


def daily_purchases(interactions: pd.DataFrame, as_of) -> pd.DataFrame:
    """One row per (customer, purchase day) up to ``as_of`` inclusive.

    Columns: customer_id, day (days since 1970-01-01), orders (distinct order_ref first
    seen that day), spend (sum of amount), quantity. Sorted by customer_id, day.
    """
    occurred = interactions["occurred_at"]
    mask = (interactions["type"] == "purchase").to_numpy() & visible(interactions, as_of)
    cust = interactions["customer_id"].to_numpy()[mask].astype(np.int64)
    if not len(cust):
        return pd.DataFrame({"customer_id": cust, "day": cust, "spend": [], "quantity": [], "orders": []})
    day = occurred.to_numpy()[mask].astype("datetime64[D]").astype(np.int64)
    ref = _order_codes(interactions["order_ref"], mask)
    # One int64 key (customer code, day) and one stable argsort give the customer-days, in
    # order, and each order's first day, instead of several hash groupbys.
    ids, codes = np.unique(cust, return_inverse=True)
    codes = codes.astype(np.int64).ravel()
    first_day = int(day.min())
    span = int(day.max()) - first_day + 1
    key = codes * span + (day - first_day)
    order = np.argsort(key, kind="stable")
    key = key[order]
    is_start = np.r_[True, key[1:] != key[:-1]]
    starts = np.flatnonzero(is_start)
    group = np.cumsum(is_start) - 1
    # Money in whole cents (amounts carry at most two decimals): integer sums are exact, so a
    # customer's total does not depend on the order the rows came in (a float sum differs in
    # its last bits with the order, enough to break ties and move a tree split).
    row_group = np.empty_like(group)
    row_group[order] = group
    cents = _cents(interactions["amount"].to_numpy(float)[mask])
    spend = _exact_sum(cents, row_group, len(starts)) / 100.0
    quantity = np.bincount(row_group, weights=interactions["quantity"].to_numpy(float)[mask], minlength=len(starts))
    # An order whose lines span midnight counts once, on the day it started: rows are in
    # day order within a customer, so an order's first row in this order is its first day.
    n_refs = int(ref.max()) + 1 if len(ref) else 1
    seen = pd.Series(codes[order] * n_refs + ref[order]).duplicated().to_numpy()
    orders = np.bincount(group[~seen], minlength=len(starts))
    key = key[starts]
    return pd.DataFrame({
        "customer_id": ids[key // span].astype(np.int64),
        "day": key % span + first_day,
        "spend": spend,
        "quantity": quantity,
        "orders": orders,
    })


def _order_codes(refs: pd.Series, mask: np.ndarray) -> np.ndarray:
    """One code per masked row, the same for the same order_ref (0 for a missing one).

    An Arrow-backed column is encoded by Arrow, on the masked rows only: pandas' factorize of
    it makes a Python string of every row (~0.9 GB at 10 M rows, much of it kept by the
    allocator afterwards)."""
    if hasattr(refs.array, "__arrow_array__"):
        arr = pa.array(refs.array)
        # The mask first, then one chunk: encoding the 50-odd chunks of a large column and
        # unifying their dictionaries copies a dictionary per chunk (3.9 GB peak at 10 M rows).
        picked = arr.filter(pa.array(mask))
        if isinstance(picked, pa.ChunkedArray):
            picked = picked.combine_chunks()
        indices = pc.fill_null(picked.dictionary_encode().indices, -1)
        codes = indices.to_numpy(zero_copy_only=False).astype(np.int64) + 1
        del arr, picked, indices
        # Arrow's pool keeps what it freed (the hash table) unless asked to give it back.
        pa.default_memory_pool().release_unused()
        return codes
    return pd.factorize(refs.to_numpy()[mask])[0].astype(np.int64) + 1


def refunds_by_customer(interactions: pd.DataFrame, as_of) -> pd.Series:
    """Refunded amount (positive) per customer up to ``as_of`` inclusive (exact cent sums)."""
    mask = (interactions["type"] == "refund").to_numpy() & visible(interactions, as_of)
    ids, codes = np.unique(interactions["customer_id"].to_numpy()[mask], return_inverse=True)
    cents = _cents(np.abs(interactions["amount"].to_numpy(float)[mask]))
    return pd.Series(_exact_sum(cents, codes.ravel(), len(ids)) / 100.0, index=ids)


def amount_share(interactions: pd.DataFrame, as_of) -> float:
    """Share of the purchase rows up to ``as_of`` (inclusive) that carry an amount (> 0)."""
    mask = (interactions["type"] == "purchase").to_numpy() & visible(interactions, as_of)
    if not mask.any():
        return 0.0
    return float((np.nan_to_num(interactions["amount"].to_numpy(float)[mask]) > 0).mean())


def _cents(amounts: np.ndarray) -> np.ndarray:
    return np.rint(np.nan_to_num(amounts) * 100).astype(np.int64)


def _exact_sum(cents: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Sums of whole cents per group 0..n-1: every partial sum is an integer below 2**53, so the
    float64 bincount is exact whatever the order of the rows."""
    return np.bincount(groups, weights=cents.astype(np.float64), minlength=n)


def customer_summaries(daily: pd.DataFrame, cut_day: int, window: int) -> pd.DataFrame:
    """Per-customer history as of ``cut_day`` (inclusive), index customer_id.

    Times are in days before ``cut_day``; "recent" means the last ``window`` days,
    "previous" the ``window`` days before that. Money in the unit of ``amount``.
    """
    d = daily[daily["day"].to_numpy() <= cut_day]
    if d.empty:
        return pd.DataFrame(columns=list(FEATURES) + ["first_day", "last_day"], dtype=float)
    cust = d["customer_id"].to_numpy()
    day = d["day"].to_numpy()
    orders = d["orders"].to_numpy(float)
    spend = d["spend"].to_numpy(float)
    starts = np.flatnonzero(np.r_[True, cust[1:] != cust[:-1]])
    ends = np.r_[starts[1:], len(cust)]

    def total(values):
        return np.add.reduceat(np.asarray(values, float), starts)

    recent = day > cut_day - window
    third = day > cut_day - max(window // 3, 1)
    previous = (day > cut_day - 2 * window) & ~recent
    n_days = (ends - starts).astype(float)
    first, last = day[starts], day[ends - 1]
    n_orders = total(orders)
    tenure = (cut_day - first).astype(float)
    s = pd.DataFrame({
        "purchase_days": n_days,
        "orders": n_orders,
        "spend": total(spend),
        "quantity": total(d["quantity"].to_numpy(float)),
        "recency": (cut_day - last).astype(float),
        "tenure": tenure,
        "active_span": (last - first).astype(float),
        "first_day_spend": spend[starts],
        "days_recent": total(recent),
        "orders_recent": total(orders * recent),
        "spend_recent": total(spend * recent),
        "days_recent_third": total(third),
        "orders_previous": total(orders * previous),
        "first_day": first,
        "last_day": last,
    }, index=pd.Index(cust[starts], name="customer_id"))
    s["spend_per_day"] = s["spend"] / n_days
    # Repeat purchase days per window-length of tenure: the "naive rate" in window units.
    s["repeat_rate"] = (n_days - 1) / np.maximum(tenure, 1.0) * window
    s["orders_per_day"] = n_orders / n_days
    return s


def window_outcomes(daily: pd.DataFrame, start_day: int, end_day: int, customers) -> pd.DataFrame:
    """Orders, purchase days and spend in (start_day, end_day] for ``customers`` (0 if none)."""
    day = daily["day"].to_numpy()
    w = daily[(day > start_day) & (day <= end_day)]
    g = w.groupby("customer_id")
    out = pd.DataFrame({"orders": g["orders"].sum(), "days": g.size(), "spend": g["spend"].sum()})
    return out.reindex(pd.Index(customers, name="customer_id"), fill_value=0).astype(float)


def regression_features(daily: pd.DataFrame, cut_day: int, window: int, lookback: int, customers) -> np.ndarray:
    """log1p of the summary features over the last ``lookback`` days only, for ``customers``.

    The regressors learn at an earlier cut than the one they forecast from; a fixed
    lookback gives both cuts the same amount of history, so totals like "orders so far"
    mean the same thing at both (otherwise they drift up with the length of the data and
    the forecasts with them). A customer silent for the whole lookback gets zero counts and
    recency = tenure = lookback. Counts and money are heavy-tailed, hence log1p.
    """
    recent = daily[daily["day"].to_numpy() > cut_day - lookback]
    s = customer_summaries(recent, cut_day, window).reindex(pd.Index(customers, name="customer_id"))
    for col in ("recency", "tenure"):
        s[col] = s[col].fillna(float(lookback))
    s = s.fillna(0.0)
    return np.log1p(np.clip(s.loc[:, list(FEATURES)].to_numpy(float), 0, None))
