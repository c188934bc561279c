"""The forecast's factors: the few statements, in words, that set a customer apart."""

from __future__ import annotations

import numpy as np
import pandas as pd

_TEXT = np.dtypes.StringDType()


def _fmt(v, digits=0):
    """Numbers as text, like f"{round(v, digits):.{digits}f}" but vectorised (numpy strings)."""
    v = np.asarray(v, float)
    finite = np.isfinite(v)
    r = np.rint(np.where(finite, v, 0.0) * 10**digits)
    a = np.abs(r).astype(np.int64)
    txt = (a // 10**digits).astype(_TEXT)
    if digits:
        txt = txt + "." + np.strings.zfill((a % 10**digits).astype(_TEXT), digits)
    txt = np.where(r < 0, "-" + txt, txt)
    if not finite.all():
        txt[~finite] = v[~finite].astype(_TEXT)  # "nan", "inf"
    return txt


def factor_medians(s: pd.DataFrame) -> dict:
    """The median customer of summaries ``s`` that :func:`explain_factors` compares with."""
    days = s["purchase_days"].to_numpy()
    gap = np.where(days > 1, s["active_span"].to_numpy() / np.maximum(days - 1, 1), np.nan)
    value = s["spend"].to_numpy() / np.maximum(s["orders"].to_numpy(), 1)
    return {"gap": float(np.nanmedian(gap)) if np.isfinite(gap).any() else np.nan, "value": float(np.median(value)),
            "recent": float(s["orders_recent"].median()), "days": float(s["purchase_days"].median())}


def explain_factors(s: pd.DataFrame, window: int, horizon: int, top=3, with_spend=True,
                    medians: dict | None = None) -> list[list[str]]:
    """The ``top`` statements that set this customer furthest from the median customer.

    Each candidate statement gets a strength = |log of the customer's value / the median|;
    the strongest ones are kept. Built column-wise (no loop over customers): the strengths
    pick each customer's statements first, and a statement's text is only built for the
    customers who get it. Without amounts (``with_spend`` False) order value is never quoted.
    ``medians``: those of :func:`factor_medians` on every customer, when ``s`` is only a part of them.
    """
    n = len(s)
    if not n:
        return []
    med = medians or factor_medians(s)
    days = s["purchase_days"].to_numpy()
    recent = s["orders_recent"].to_numpy()
    prev = s["orders_previous"].to_numpy()
    gap = np.where(days > 1, s["active_span"].to_numpy() / np.maximum(days - 1, 1), np.nan)
    med_gap, med_value, med_recent = med["gap"], med["value"], med["recent"]
    recency = s["recency"].to_numpy()
    value = s["spend"].to_numpy() / np.maximum(s["orders"].to_numpy(), 1)
    own_gap = np.where(np.isfinite(gap), gap, med_gap if np.isfinite(med_gap) else horizon)
    tenure, orders = s["tenure"].to_numpy(), s["orders"].to_numpy()

    def ratio(v, m):
        return np.log((np.asarray(v, float) + 1) / (m + 1))

    def times(v, m):
        return _fmt((np.asarray(v, float) + 1e-9) / (m if m > 0 else 1.0), 1)

    def plural(v, one, many):
        return np.where(np.asarray(v) == 1, one, many)

    def recent_frequency(i):
        text = ("bought " + _fmt(recent[i]) + plural(recent[i], " time", " times") + f" in the last {window} days, "
                + times(recent[i], med_recent) + "x the median customer")
        # "0.0x the median" says nothing a salesperson can use: say it plainly.
        none = f"no order in the last {window} days (the median customer placed " + _fmt(med_recent) + ")"
        return np.where(np.asarray(recent[i]) == 0, none, text)

    def recency_vs_rhythm(i):  # against the customer's own rhythm, or the base one for one-day buyers
        rhythm = np.where(days[i] > 1, "usually buys every " + _fmt(np.maximum(own_gap[i], 1)) + " days",
                          "only one purchase day so far")
        return "last purchase " + _fmt(recency[i]) + " days ago, " + rhythm

    def order_value(i):
        return "average order " + _fmt(value[i], 2) + ", " + times(value[i], med_value) + "x the median"

    def trend(i):  # between the last two windows
        direction = np.where(recent[i] >= prev[i], "up", "down")
        return ("orders " + direction + " from " + _fmt(prev[i]) + " to " + _fmt(recent[i])
                + f" vs the previous {window} days")

    def depth(i):
        return ("customer for " + _fmt(tenure[i]) + " days, " + _fmt(orders[i])
                + plural(orders[i], " order", " orders") + " in total")

    statements = [recent_frequency, recency_vs_rhythm, order_value, trend, depth]
    strength = np.column_stack([
        np.abs(ratio(recent, med_recent)),
        np.abs(ratio(recency, np.maximum(own_gap, 1))) * 1.2,
        np.abs(ratio(value, med_value)) if with_spend else np.full(n, -np.inf),
        np.abs(ratio(recent, prev)) * 0.8,
        np.abs(ratio(days, med["days"])) * 0.6,
    ])
    order = np.argsort(-strength, axis=1, kind="stable")[:, :top]
    out = np.empty(order.shape, dtype=object)
    for k, text in enumerate(statements):
        rows, cols = np.nonzero(order == k)
        if len(rows):
            out[rows, cols] = text(rows).astype(object)
    return out.tolist()
