"""Segment names and profiles in plain words, and names carried over a retrain.

Each fitted segment is described against the median buyer (:func:`describe`): a name from
rules on its relative recency, frequency, money and refunds, a profile sentence and its
figures. :func:`match_segments` keeps a previous run's name for the same group of customers.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from ml.pipelines.segmentation.features import CATEGORY_PREFIX, is_filler_category
from ml.pipelines.segmentation.models import RFM_GROUPS, TOUCH_COLUMNS, segment_layout

PROSPECTS = "Prospects / no purchases yet"
UNUSUAL = "Unusual"


# ---------------------------------------------------------------------- naming
def describe(model, features, keys):
    """Names (key -> name) and the segments_ frame for one fitted assignment."""
    layout = segment_layout(model)
    buyers = features["orders"].to_numpy() > 0
    base = _base_figures(features[buyers], model["encoding"]["money"])
    table = _segment_table(features, keys)
    present = sorted(set(np.unique(keys).tolist()) | {layout["prospects"]}
                     | ({layout["unusual"]} if layout["unusual"] is not None else set()))
    sizes = {k: int(table.loc[k, "size"]) if k in table.index else 0 for k in present}
    n_total = max(len(features), 1)

    names: dict[int, str] = {}
    regular = [k for k in present if k not in (layout["prospects"], layout["unusual"])]
    if model["algorithm"] == "rfm":
        for k in regular:
            names[k] = RFM_GROUPS[k]
    else:
        for k in regular:
            names[k] = _rule_name(table.loc[k], base)
        _make_distinct(names, table, regular, sizes, base["money"])
    names[layout["prospects"]] = PROSPECTS
    if layout["unusual"] is not None:
        names[layout["unusual"]] = UNUSUAL

    rows = []
    for k in present:
        row = table.loc[k] if k in table.index else None
        figures = _figures(row, base, sizes[k], n_total)
        if k == layout["prospects"]:
            profile = _prospect_profile(row, sizes[k], n_total)
        else:
            profile = _profile(names[k], row, base, sizes[k], n_total,
                               unusual=(k == layout["unusual"]))
        rows.append({"segment_key": int(k), "name": names[k], "profile": profile,
                     "size": sizes[k], "figures": figures})
    segments = pd.DataFrame(rows, columns=["segment_key", "name", "profile", "size", "figures"])
    return names, segments


def _segment_table(features: pd.DataFrame, keys: np.ndarray) -> pd.DataFrame:
    """Per-segment medians / means of the raw features (one groupby, no loop over people)."""
    frame = features.drop(columns=["top_category"])
    g = frame.groupby(keys)
    medians = g[["recency_days", "orders", "spend", "aov", "tenure_days",
                 "purchase_gap_days", "refund_share"]].median()
    means = g[[c for c in frame.columns if c.startswith(("share_", CATEGORY_PREFIX))]
              + ["refund_share", "refund_amount", "spend"]].mean()
    table = medians.add_prefix("med_").join(means.add_prefix("mean_"))
    table["size"] = g.size()
    # Refund share of the segment as a whole: refunded money over spent money.
    table["pooled_refund_share"] = np.where(table["mean_spend"] > 0,
                                            table["mean_refund_amount"]
                                            / table["mean_spend"].where(table["mean_spend"] > 0),
                                            0.0)
    return table


def _base_figures(buyers: pd.DataFrame, money: bool = True) -> dict:
    """The median buyer's figures, which segments are described against (``money``: whether
    spend means anything, see :func:`has_money`)."""
    cats = [c for c in buyers.columns if c.startswith(CATEGORY_PREFIX)]
    spend = buyers["spend"].sum()

    def med(col):
        v = buyers[col].median() if len(buyers) else np.nan
        return float(v) if pd.notna(v) else np.nan

    return {
        "money": bool(money),
        "recency": med("recency_days"), "orders": med("orders"), "spend": med("spend"),
        "aov": med("aov"), "tenure": med("tenure_days"), "gap": med("purchase_gap_days"),
        "refund": float(buyers["refund_amount"].sum() / spend) if spend > 0 else 0.0,
        "touch": {c: float(buyers[c].mean()) if len(buyers) else 0.0 for c in TOUCH_COLUMNS},
        "cats": {c: float(buyers[c].mean()) if len(buyers) else 0.0 for c in cats},
        "n_categories": sum(1 for c in cats if not is_filler_category(c[len(CATEGORY_PREFIX):])
                            and len(buyers) and buyers[c].max() > 0),
    }


def _ratio(a, b) -> float:
    if not (np.isfinite(a) and np.isfinite(b)):
        return np.nan
    return float(a / b) if b > 0 else (np.inf if a > 0 else 1.0)


def _levels(row, base) -> dict:
    """Relative levels of a segment: the inputs of the naming rules."""
    rec = _ratio(row["med_recency_days"], max(base["recency"], 1.0))
    orders = _ratio(row["med_orders"], base["orders"])
    spend = _ratio(row["med_spend"], base["spend"])
    aov = _ratio(row["med_aov"], base["aov"])
    tenure = _ratio(row["med_tenure_days"], max(base["tenure"], 1.0))
    refund = float(row["pooled_refund_share"])
    money = base["money"]  # without money, nobody is a high, low or refund-prone spender
    return {
        "recent": rec <= 0.5,
        "lapsed": rec >= 2.0,
        "frequent": orders >= 1.5 and row["med_orders"] >= 3,
        "one_off": row["med_orders"] <= 1,
        "high": money and spend >= 1.8,
        "low": money and spend <= 0.55,
        "big_ticket": money and aov >= 1.8,
        "refunds": money and refund >= max(0.10, 2.0 * base["refund"]),
        "new": tenure <= 0.35 and rec <= 0.5,
    }


def _rule_name(row, base) -> str:
    """Name from relative recency / frequency / money / refund levels (first rule wins)."""
    lv = _levels(row, base)
    if lv["refunds"]:
        if lv["high"]:
            return "Refund-prone high spenders"
        if lv["frequent"]:
            return "Refund-prone regulars"
        return "Refund-prone buyers"
    if lv["new"]:
        return "New customers"
    if lv["lapsed"]:
        if lv["high"] or (lv["frequent"] and base["money"]):
            return "At-risk valuable customers"
        if lv["frequent"]:
            return "At-risk regulars"
        if lv["one_off"]:
            return "Lapsed one-time buyers"
        return "Drifting occasional buyers"
    if lv["frequent"] and lv["high"]:
        return "Champions" if lv["recent"] else "Loyal high spenders"
    if lv["frequent"]:
        return "Loyal regulars"
    if lv["big_ticket"] or lv["high"]:
        return "Big-ticket occasional buyers"
    if lv["one_off"]:
        return "Recent first-time buyers" if lv["recent"] else "One-time buyers"
    if lv["low"]:
        return "Occasional low spenders"
    return "Steady mid-value customers" if base["money"] else "Occasional repeat buyers"


def _make_distinct(names: dict, table: pd.DataFrame, keys: list, sizes: dict,
                   money: bool = True) -> None:
    """Give duplicate names a qualifier from where the segment differs most from the
    largest segment of the same name; numbered as a last resort. Modifies ``names``.

    A qualifier states a real difference: none from a figure within 0.8-1.25x of the other
    segment's, from spend or order value without money, or from a filler category ("(none)",
    "(other)"), nor a category the other segment mostly buys too."""
    by_name: dict[str, list[int]] = {}
    for k in sorted(keys, key=lambda kk: (-sizes[kk], kk)):
        by_name.setdefault(names[k], []).append(k)
    taken = set(names.values())
    for name, group in by_name.items():
        if len(group) < 2:
            continue
        ref = table.loc[group[0]]
        for k in group[1:]:
            row = table.loc[k]
            options = []
            for col, more, less in (("med_spend", "higher spend", "lower spend"),
                                    ("med_orders", "more orders", "fewer orders"),
                                    ("med_recency_days", "less recent", "more recent"),
                                    ("med_aov", "bigger baskets", "smaller baskets"),
                                    ("med_tenure_days", "longer-standing", "newer")):
                if not money and col in ("med_spend", "med_aov"):
                    continue
                a, b = float(row[col]), float(ref[col])
                # Within 0.8-1.25x the profiles say "about the same": not a difference to name.
                if np.isfinite(a) and np.isfinite(b) and _times(_ratio(a, b)) != "about":
                    options.append((abs(math.log1p(a) - math.log1p(b)), more if a > b else less))
            cat, ref_cat = _top_category(row), _top_category(ref)
            if cat and cat[1] >= 0.5 and not (ref_cat and ref_cat[0] == cat[0]):
                options.append((cat[1], "mostly " + cat[0]))
            options.sort(key=lambda o: -o[0])
            candidate = None
            for _, qualifier in options:
                if f"{name} ({qualifier})" not in taken:
                    candidate = f"{name} ({qualifier})"
                    break
            i = 2
            while candidate is None or candidate in taken:
                candidate = f"{name} {i}"
                i += 1
            names[k] = candidate
            taken.add(candidate)


def _top_category(row):
    """(category, mean share) of the largest real category (never a filler such as "(none)",
    "(other)" or a catalogue's own "Unknown", :func:`is_filler_category`) in a segment row; None
    when no real category has a share."""
    return _top_share(row, CATEGORY_PREFIX, exclude=is_filler_category)


def _top_share(row, prefix, exclude=lambda _label: False):
    """(label, mean share) of the largest share column with ``prefix`` in a segment row,
    leaving out the labels for which ``exclude(label)`` is true."""
    if row is None:
        return None
    cols = [c for c in row.index if c.startswith("mean_" + prefix)
            and not exclude(c[len("mean_" + prefix):])]
    if not cols:
        return None
    values = row[cols].astype(float)
    if not (values > 0).any():
        return None
    best = values.idxmax()
    return best[len("mean_" + prefix):], float(values[best])


def _period(days: float) -> str:
    if not np.isfinite(days):
        return "n/a"
    if days < 1.5:
        return "daily"
    if days < 14:
        return f"{days:.0f} days"
    if days < 63:
        return f"{days / 7:.0f} weeks"
    if days < 730:
        return f"{days / 30.4:.0f} months"
    return f"{days / 365:.1f} years"


def _times(ratio: float) -> str:
    if not np.isfinite(ratio):
        return "far more than"
    if 0.8 <= ratio <= 1.25:
        return "about"
    return f"{ratio:.1f}x" if ratio >= 0.1 else f"{ratio:.2f}x"


_TOUCH_WORDS = {"share_view": "browse a lot", "share_email": "are mostly reached by e-mail",
                "share_call": "talk on the phone a lot", "share_meeting": "meet in person often",
                "share_support": "contact support often", "share_note": "have many notes"}


def _profile(name, row, base, size, n_total, unusual=False) -> str:
    """Plain-words profile relative to the median buyer."""
    if row is None or size == 0:
        return f"{name}: no customers in this segment at this date."
    parts = []
    if row["med_orders"] >= 2:
        period = _period(row["med_purchase_gap_days"])
        parts.append(f"buy {period if period == 'daily' else 'every ' + period} "
                     f"({row['med_orders']:.0f} orders)")
    else:
        parts.append("mostly a single order")
    money = base["money"]
    if money:
        spend_ratio = _ratio(row["med_spend"], base["spend"])
        parts.append(f"spend {_times(spend_ratio)} the median buyer"
                     .replace("about the", "about the same as the"))
    days = row["med_recency_days"]
    parts.append(f"last bought {days:.0f} day{'' if round(days) == 1 else 's'} ago "
                 f"(median buyer: {base['recency']:.0f} days)")
    refund = float(row["pooled_refund_share"])
    if money:  # refunds are measured in money: without amounts there is nothing to say
        if refund < 0.02:
            parts.append("rarely refund")
        elif refund >= max(0.10, 2 * base["refund"]):
            parts.append(f"refund often ({refund:.0%} of spend)")
        else:
            parts.append(f"refund {refund:.0%} of spend")
    cat = _top_category(row)
    # In a shop with one real category, "mostly buy <it>" tells nothing about anyone.
    if cat and cat[1] >= 0.4 and base["n_categories"] > 1:
        parts.append(f"mostly buy {cat[0]} ({cat[1]:.0%} of {'spend' if money else 'purchases'})")
    touch = _touch_trait(row, base)
    if touch:
        parts.append(touch)
    prefix = f"{name}: do not fit any dense group; " if unusual else f"{name}: "
    return (prefix + ", ".join(parts)
            + f". {size} customers ({size / n_total:.0%} of the base).")


def _touch_trait(row, base):
    best, best_ratio = None, 1.5
    for col in TOUCH_COLUMNS:
        share = float(row["mean_" + col])
        ratio = _ratio(share, base["touch"][col])
        if share >= 0.2 and ratio >= best_ratio:
            best, best_ratio = col, ratio
    return _TOUCH_WORDS[best] if best else None


def _prospect_profile(row, size, n_total) -> str:
    if row is None or size == 0:
        return f"{PROSPECTS}: no customers without a purchase at this date."
    touches = [(float(row["mean_" + c]), c[len("share_"):]) for c in TOUCH_COLUMNS]
    share, kind = max(touches)
    contact = f"mostly {kind} contact" if share > 0 else "no recorded contact"
    return (f"{PROSPECTS}: known for a median of {row['med_tenure_days']:.0f} days, "
            f"{contact}. {size} customers ({size / n_total:.0%} of the base).")


def _figures(row, base, size, n_total) -> dict:
    def num(v):
        v = float(v)
        return round(v, 4) if np.isfinite(v) else None

    if row is None or size == 0:
        return {"size": int(size), "share_of_base": 0.0}
    cat = _top_category(row)
    money = base["money"]
    figures = {
        "size": int(size),
        "share_of_base": num(size / n_total),
        "median_recency_days": num(row["med_recency_days"]),
        "median_orders": num(row["med_orders"]),
        "median_spend": num(row["med_spend"]),
        "median_aov": num(row["med_aov"]),
        "median_purchase_gap_days": num(row["med_purchase_gap_days"]),
        "median_tenure_days": num(row["med_tenure_days"]),
        "refund_share": num(row["pooled_refund_share"]),
        "spend_vs_median_buyer": num(_ratio(row["med_spend"], base["spend"])),
        "top_category": cat[0] if cat else "",
        "top_category_share": num(cat[1]) if cat else 0.0,
        "touch_mix": {c[len("share_"):]: num(row["mean_" + c]) for c in TOUCH_COLUMNS},
    }
    if not money:  # not measured: shown as missing, not as 0
        for key in ("median_spend", "median_aov", "refund_share", "spend_vs_median_buyer"):
            figures[key] = None
    return figures


# ---------------------------------------------------------------------- retrain naming
def match_segments(new_assignments: pd.DataFrame, previous_assignments: pd.DataFrame,
                   previous_names: dict, new_names: dict | None = None,
                   min_jaccard: float = 0.5) -> dict:
    """Carry segment names over a retrain when the group of customers is the same.

    ``new_assignments`` / ``previous_assignments``: frames with customer_id and segment_key.
    ``previous_names``: previous segment_key -> name. ``new_names``: the new run's own
    profile-derived names (segment_key -> name); without them an unmatched segment is called
    "Segment <key>".

    New and previous segments are paired one-to-one by the Hungarian algorithm on the Jaccard
    overlap of their members (customers in both runs count; customers only in one run count
    against the overlap). A pair keeps the previous name when its Jaccard is at least
    ``min_jaccard``; every other new segment takes its new name, made unique against the
    kept ones by a numeric suffix. Returns new segment_key -> name (plain int / str).
    """
    new_names = dict(new_names or {})
    new = new_assignments[["customer_id", "segment_key"]]
    old = previous_assignments[["customer_id", "segment_key"]]
    new_keys = np.unique(new["segment_key"].to_numpy())
    old_keys = np.unique(old["segment_key"].to_numpy())
    result: dict[int, str] = {}
    kept = set()
    if len(new_keys) and len(old_keys):
        both = new.merge(old, on="customer_id", suffixes=("_new", "_old"))
        inter = pd.crosstab(both["segment_key_new"], both["segment_key_old"]) \
            .reindex(index=new_keys, columns=old_keys, fill_value=0).to_numpy(dtype=float)
        n_size = new["segment_key"].value_counts().reindex(new_keys).to_numpy(dtype=float)
        o_size = old["segment_key"].value_counts().reindex(old_keys).to_numpy(dtype=float)
        union = n_size[:, None] + o_size[None, :] - inter
        jaccard = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        rows, cols = linear_sum_assignment(-jaccard)
        for i, j in zip(rows, cols):
            # Keys may have round-tripped through JSON as strings.
            name = previous_names.get(int(old_keys[j]),
                                      previous_names.get(str(int(old_keys[j]))))
            if jaccard[i, j] >= min_jaccard and name is not None and name not in kept:
                result[int(new_keys[i])] = str(name)
                kept.add(str(name))
    taken = set(kept)
    for key in new_keys:
        key = int(key)
        if key in result:
            continue
        base = str(new_names.get(key, f"Segment {key}"))
        name, i = base, 2
        while name in taken:
            name = f"{base} {i}"
            i += 1
        result[key] = name
        taken.add(name)
    return result
