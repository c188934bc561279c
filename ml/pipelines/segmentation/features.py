"""One row of behaviour features per customer, as of a date.

The segmentation family's features. Input frames follow :mod:`ml.pipelines.schema`; rows
are cut there (:func:`ml.pipelines.schema.visible`), so the whole of the ``as_of`` day counts
and nothing after it does. Everything is vectorised over rows (``bincount`` / ``groupby`` on integer codes):
there is no Python loop over customers, so 10 million interactions fit in a few GB.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ml.pipelines.schema import INTERACTION_TYPES, MONEY_TYPES, as_of_day, end_of, visible

_DAY_NS = 86_400 * 10**9

# Engagement touches (everything that is not money) whose mix describes how a customer deals
# with the company.
TOUCH_TYPES = tuple(t for t in INTERACTION_TYPES if t not in MONEY_TYPES)
OTHER_CATEGORY = "(other)"
NO_CATEGORY = "(none)"
CATEGORY_PREFIX = "cat_share:"
# Category labels that are not a category: fillers for "no category" and "the rest". They may
# be share columns (buying uncatalogued items is behaviour) but never name or describe anyone.
FILLER_CATEGORIES = (NO_CATEGORY, OTHER_CATEGORY)
# Names a catalogue itself gives its fillers ("Other", "Unknown", "N/A", "Misc"), trimmed and in any
# case: "mostly buy Other" or a top category "Unknown" tells nothing about anyone either.
FILLER_NAMES = frozenset({*FILLER_CATEGORIES, "", "other", "others", "unknown", "none", "n/a", "na", "nan",
                          "null", "-", "--", "?", "uncategorized", "uncategorised", "no category",
                          "misc", "misc.", "miscellaneous", "various", "default"})
# Share of purchase rows that must carry money for spend to be used (see has_money).
MIN_MONEY_SHARE = 0.5

_TYPE_CODE = {name: code for code, name in enumerate(INTERACTION_TYPES)}


def is_filler_category(name) -> bool:
    """Whether a category label is a filler (:data:`FILLER_NAMES`), not a category that describes
    what someone buys."""
    return name is None or str(name).strip().lower() in FILLER_NAMES


def category_columns(categories) -> list[str]:
    """Names of the category-share columns for ``categories`` (plus the "other" bucket)."""
    return [CATEGORY_PREFIX + c for c in list(categories) + [OTHER_CATEGORY]]


def customer_features(interactions: pd.DataFrame, products: pd.DataFrame,
                      customers: pd.DataFrame, as_of, categories=None,
                      n_categories: int = 6) -> pd.DataFrame:
    """Raw (untransformed) behaviour features per customer as of the day ``as_of``.

    Reads ``interactions`` (customer_id, product_id, type, occurred_at, quantity, amount,
    order_ref), ``products`` (product_id, category, price) and ``customers`` (customer_id,
    signup_date). Rows with ``occurred_at >= as_of + 1 day`` are ignored. The inputs are not
    modified.

    Customers covered: every row of ``customers`` that had signed up by ``as_of`` (or has no
    signup date), plus anyone with an interaction up to ``as_of``.

    Money is the purchase ``amount``; when a purchase row has amount 0 ("not given") it is
    valued at ``quantity * price`` of its product (0 when the price is unknown).

    Returns a frame indexed by ``customer_id`` (sorted) with columns:

    ==================  ========  =====================================================
    recency_days        days      whole days from the last purchase's day to ``as_of``;
                                  NaN when the customer never bought
    orders              count     distinct ``order_ref`` among purchases
    spend               money     total purchase amount
    tenure_days         days      whole days from the first interaction or the signup
                                  date (whichever is earlier) to ``as_of``; 0 when none
    aov                 money     average order value, spend / orders (0 when no order)
    purchase_gap_days   days      mean time between consecutive orders (NaN below 2)
    purchase_gap_cv     ratio     coefficient of variation (std / mean) of the gaps
                                  between orders: 0 = clockwork; NaN below 3 orders
    refund_amount       money     total refunded amount
    refund_share        ratio     refund_amount / spend (0 when no spend)
    n_touches           count     interactions that are not purchases or refunds
    share_<type>        ratio     share of those touches of each type in TOUCH_TYPES
                                  (all 0 when no touch)
    cat_share:<cat>     ratio     share of spend per category, for the top categories
                                  plus ``cat_share:(other)`` (all 0 when no spend);
                                  purchases without a known category count under
                                  ``(none)``
    top_category        str       real category (not ``(none)``) with the most spend
                                  ("" when none)
    ==================  ========  =====================================================

    When the purchases carry no money (:func:`has_money`: under half of the purchase rows
    have an amount or a priced product), the category shares and ``top_category`` count
    purchase lines instead of spend, and ``result.attrs["money"]`` is False: spend, order value
    and refund share are then not behaviour and callers should leave them out.

    ``categories``: the categories to give share columns (to reproduce a fitted model's
    columns); by default the ``n_categories`` categories with the most spend in the window.
    The chosen list is in ``result.attrs["categories"]``.
    """
    prepared = prepare_rows(interactions, products, customers, as_of)
    return features_from_rows(prepared, as_of, categories=categories,
                              n_categories=n_categories)


def prepare_rows(interactions: pd.DataFrame, products: pd.DataFrame,
                 customers: pd.DataFrame, until) -> dict:
    """The per-row work of :func:`customer_features`, done once for every date up to ``until``.

    Keeps rows with ``occurred_at < until + 1 day`` as integer codes: customer, type, order,
    category, time (ns) and money. Hashing order_ref strings is the dominant cost on large
    frames, so callers that need features at several dates (backtest cuts and as_of)
    prepare once and call :func:`features_from_rows` per date.

    The kept rows are put in one canonical order (customer, time, type, money) before anything
    is summed, so the same rows in any order give the same features to the last bit (a float
    sum depends on the order of its terms). ``products`` may be None or empty (no catalogue).
    """
    products = _catalogue(products)
    occurred = interactions["occurred_at"].to_numpy(dtype="datetime64[ns]")
    keep = np.flatnonzero(visible(interactions, until))
    t_ns = occurred[keep].view(np.int64)
    cust = interactions["customer_id"].to_numpy(dtype=np.int64)[keep]
    type_code = pd.Categorical(interactions["type"],
                               categories=INTERACTION_TYPES).codes.astype(np.int64)[keep]
    amount = _money(interactions, products, keep, type_code == _TYPE_CODE["purchase"])
    canonical = np.lexsort((amount, type_code, t_ns, cust))
    keep, t_ns, cust, type_code, amount = (a[canonical] for a in (keep, t_ns, cust, type_code,
                                                                  amount))

    customer_ids = customers["customer_id"].to_numpy(dtype=np.int64)
    ids = np.union1d(customer_ids, pd.unique(cust))
    n = len(ids)
    code = np.searchsorted(ids, cust)
    is_customer = np.zeros(n, dtype=bool)
    is_customer[np.searchsorted(ids, customer_ids)] = True
    signup = customers["signup_date"].to_numpy(dtype="datetime64[ns]")
    signup_ns = np.full(n, np.nan)
    signup_ns[np.searchsorted(ids, customer_ids)] = np.where(
        np.isnat(signup), np.nan, signup.view(np.int64).astype(np.float64))

    purchase = type_code == _TYPE_CODE["purchase"]
    cat_names, cat_of_row = _purchase_categories(interactions, products, keep, purchase)
    order_of_row, order_cust = _order_ids(
        code[purchase], interactions["order_ref"].to_numpy()[keep][purchase])
    return {"ids": ids, "is_customer": is_customer, "signup_ns": signup_ns, "code": code,
            "t_ns": t_ns, "type_code": type_code, "amount": amount, "purchase": purchase,
            "order_of_row": order_of_row, "order_cust": order_cust,
            "cat_names": cat_names, "cat_of_row": cat_of_row,
            "money": has_money(amount[purchase])}


def has_money(purchase_amounts: np.ndarray) -> bool:
    """Whether the purchases' money (amount, or quantity x price) means anything: at least
    half of the purchase rows carry a value. Below that a customer's spend says more about
    whether their rows were recorded with an amount than about what they spent."""
    values = np.asarray(purchase_amounts, dtype=np.float64)
    return bool(len(values)) and float(np.mean(values > 0)) >= MIN_MONEY_SHARE


def _catalogue(products) -> pd.DataFrame:
    """``products`` as a frame with the columns read here (none or empty: no catalogue)."""
    if products is None:
        return pd.DataFrame({"product_id": pd.Series(dtype=np.int64),
                             "category": pd.Series(dtype=object),
                             "price": pd.Series(dtype=np.float64)})
    return products


def features_from_rows(prepared: dict, as_of, categories=None,
                       n_categories: int = 6) -> pd.DataFrame:
    """:func:`customer_features` as of ``as_of`` from :func:`prepare_rows` output (which must
    have been prepared until ``as_of`` or later)."""
    day = as_of_day(as_of)
    end_ns = end_of(day).to_datetime64().astype("datetime64[ns]").view(np.int64)
    day_ns = int(day.to_datetime64().astype("datetime64[ns]").view(np.int64))
    ids, n = prepared["ids"], len(prepared["ids"])

    window = prepared["t_ns"] < end_ns
    code = prepared["code"][window]
    t_ns = prepared["t_ns"][window]
    type_code = prepared["type_code"][window]
    amount = prepared["amount"][window]
    purchase = prepared["purchase"][window]
    refund = type_code == _TYPE_CODE["refund"]

    signup_ns = prepared["signup_ns"]
    # Customers who had signed up by as_of (or have no date), and anyone active by then.
    present = (prepared["is_customer"] & ~(signup_ns >= end_ns)) \
        | (np.bincount(code, minlength=n) > 0)
    first_seen = np.fmin(_group_min(code, t_ns, n),
                         np.where(signup_ns >= end_ns, np.nan, signup_ns))

    p_code = code[purchase]
    p_amount = amount[purchase]
    p_time = t_ns[purchase]
    spend = np.bincount(p_code, weights=p_amount, minlength=n)
    refund_amount = np.bincount(code[refund], weights=amount[refund], minlength=n)
    last_purchase = _group_max(p_code, p_time, n)

    p_window = window[prepared["purchase"]]
    orders, gap_mean, gap_cv = _order_rhythm(prepared["order_of_row"][p_window],
                                             prepared["order_cust"], p_time, n)

    touch_codes = np.array([_TYPE_CODE[t] for t in TOUCH_TYPES])
    counts = np.bincount(code * len(INTERACTION_TYPES) + type_code,
                         minlength=n * len(INTERACTION_TYPES)).reshape(n, len(INTERACTION_TYPES))
    touches = counts[:, touch_codes]
    n_touches = touches.sum(axis=1)
    touch_share = touches / np.maximum(n_touches, 1)[:, None]

    cat_names = prepared["cat_names"]
    cat_of_row = prepared["cat_of_row"][p_window]
    money = prepared["money"]
    # Category mix by money; by purchase lines when purchases carry no money (has_money).
    p_weight = p_amount if money else np.ones(len(p_amount))
    cat_spend_total = np.bincount(cat_of_row, weights=p_weight, minlength=len(cat_names))
    if categories is None:
        order = np.argsort(-cat_spend_total, kind="stable")
        categories = [cat_names[i] for i in order[:n_categories] if cat_spend_total[i] > 0]
    categories = [str(c) for c in categories]
    top_index = {c: i for i, c in enumerate(categories)}
    bucket_of_cat = np.array([top_index.get(c, len(categories)) for c in cat_names],
                             dtype=np.int64)
    n_buckets = len(categories) + 1
    cat_spend = np.bincount(p_code * n_buckets + bucket_of_cat[cat_of_row], weights=p_weight,
                            minlength=n * n_buckets).reshape(n, n_buckets)
    weight_total = np.bincount(p_code, weights=p_weight, minlength=n)
    cat_share = cat_spend / np.where(weight_total > 0, weight_total, 1.0)[:, None]

    top_category = _top_category(p_code, cat_of_row, p_weight, cat_names, n)

    # Whole calendar days: a purchase at any time on the as_of day is 0 days old.
    today = day_ns // _DAY_NS
    recency = today - np.floor(last_purchase / _DAY_NS)
    tenure = np.nan_to_num(today - np.floor(first_seen / _DAY_NS), nan=0.0)
    tenure = np.maximum(tenure, 0.0)

    frame = pd.DataFrame({
        "recency_days": recency,
        "orders": orders,
        "spend": spend,
        "tenure_days": tenure,
        "aov": spend / np.maximum(orders, 1),
        "purchase_gap_days": gap_mean,
        "purchase_gap_cv": gap_cv,
        "refund_amount": refund_amount,
        "refund_share": np.where(spend > 0, refund_amount / np.where(spend > 0, spend, 1.0),
                                 0.0),
        "n_touches": n_touches,
    }, index=pd.Index(ids, name="customer_id"))
    for i, t in enumerate(TOUCH_TYPES):
        frame["share_" + t] = touch_share[:, i]
    for i, col in enumerate(category_columns(categories)):
        frame[col] = cat_share[:, i]
    frame["top_category"] = top_category
    frame = frame[present]
    frame.attrs["categories"] = list(categories)
    frame.attrs["money"] = bool(money)
    frame.attrs["as_of"] = day.date().isoformat()
    return frame


def _group_min(code: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-code minimum of int64 ``values`` as float (NaN where a code has no row)."""
    out = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(out, code, values)
    return np.where(out == np.iinfo(np.int64).max, np.nan, out.astype(np.float64))


def _group_max(code: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(out, code, values)
    return np.where(out == np.iinfo(np.int64).min, np.nan, out.astype(np.float64))


def _money(interactions, products, keep, purchase) -> np.ndarray:
    """Row amounts in the window; a purchase with amount 0 is valued at quantity * price."""
    amount = interactions["amount"].to_numpy(dtype=np.float64)[keep]
    amount = np.nan_to_num(amount, nan=0.0)
    missing = purchase & (amount == 0)
    if missing.any() and len(products):
        price = products.set_index("product_id")["price"]
        pid = interactions["product_id"].to_numpy(dtype=np.int64)[keep][missing]
        qty = interactions["quantity"].to_numpy(dtype=np.float64)[keep][missing]
        pos = price.index.get_indexer(pid)
        unit = np.where(pos >= 0, price.to_numpy(dtype=np.float64)[np.maximum(pos, 0)], np.nan)
        amount = amount.copy()
        amount[missing] = np.nan_to_num(qty * unit, nan=0.0)
    return amount


def _order_ids(p_code: np.ndarray, p_ref: np.ndarray):
    """Order index per purchase row (one order = one customer's order_ref) and each order's
    customer code."""
    if len(p_code) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ref_code, refs = pd.factorize(p_ref)
    ref_code = ref_code.astype(np.int64)
    n_refs = len(refs)
    # An order_ref normally belongs to one customer, so the ref is the order. Rows whose ref
    # is also used by another customer get their own (customer, ref) orders; hashing only
    # those is far cheaper than hashing every (customer, ref) pair.
    ref_cust = np.empty(n_refs, dtype=np.int64)
    ref_cust[ref_code] = p_code
    shared = ref_cust[ref_code] != p_code
    order_of_row = ref_code.copy()
    order_cust = ref_cust
    if shared.any():
        extra, _ = pd.factorize(p_code[shared] * np.int64(n_refs + 1) + ref_code[shared])
        order_of_row[shared] = n_refs + extra
        extra_cust = np.empty(int(extra.max()) + 1, dtype=np.int64)
        extra_cust[extra] = p_code[shared]
        order_cust = np.concatenate([ref_cust, extra_cust])
    return order_of_row, order_cust


def _order_rhythm(order_of_row, order_cust, p_time, n):
    """Orders per customer and the mean and CV of the gaps between their orders.

    ``order_of_row``: order index of each purchase row in the window; an order's time is its
    earliest row in the window. Gaps are in days.
    """
    if len(order_of_row) == 0:
        return np.zeros(n, dtype=np.int64), np.full(n, np.nan), np.full(n, np.nan)
    sentinel = np.iinfo(np.int64).max
    o_time = np.full(len(order_cust), sentinel, dtype=np.int64)
    np.minimum.at(o_time, order_of_row, p_time)
    seen = o_time != sentinel
    o_time, o_cust = o_time[seen], order_cust[seen]
    orders = np.bincount(o_cust, minlength=n)

    # Sort orders by (customer, time) with one int64 key: customer code in the high bits,
    # whole seconds since the first order in the low 32 bits (136 years).
    seconds = (o_time - o_time.min()) // 10**9
    sort = np.argsort((o_cust << 32) | seconds, kind="stable")
    o_cust, o_time = o_cust[sort], o_time[sort]
    same = o_cust[1:] == o_cust[:-1]
    # Orders within the same second may come out of order: their gap is 0 either way.
    gap = np.abs(np.diff(o_time) / _DAY_NS)[same]
    g_cust = o_cust[1:][same]
    g_n = np.bincount(g_cust, minlength=n)
    g_sum = np.bincount(g_cust, weights=gap, minlength=n)
    g_sq = np.bincount(g_cust, weights=gap * gap, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(g_n >= 1, g_sum / g_n, np.nan)
        var = np.maximum(g_sq / g_n - mean * mean, 0.0)
        cv = np.where((g_n >= 2) & (mean > 0), np.sqrt(var) / mean, np.nan)
        # Several orders in the same instant: perfectly "regular" for our purposes.
        cv = np.where((g_n >= 2) & (mean == 0), 0.0, cv)
    return orders, mean, cv


def _purchase_categories(interactions, products, keep, purchase):
    """Category names and, per purchase row, the index of its category."""
    pid = interactions["product_id"].to_numpy(dtype=np.int64)[keep][purchase]
    cat = products["category"].astype(object).fillna("").to_numpy()
    cat = np.where(cat == "", NO_CATEGORY, cat)
    names, cat_code = np.unique(np.append(cat, NO_CATEGORY).astype(str), return_inverse=True)
    none_code = cat_code[-1]
    pos = pd.Index(products["product_id"].to_numpy(np.int64)).get_indexer(pid)
    row_cat = np.where(pos >= 0, cat_code[:-1][np.maximum(pos, 0)] if len(cat) else none_code,
                       none_code)
    return [str(x) for x in names], row_cat.astype(np.int64)


def _top_category(p_code, cat_of_row, p_amount, cat_names, n) -> np.ndarray:
    """The real category (not NO_CATEGORY) with the most spend per customer ("" when none)."""
    out = np.full(n, "", dtype=object)
    real = np.asarray(cat_names, dtype=object)[cat_of_row] != NO_CATEGORY
    p_code, cat_of_row, p_amount = p_code[real], cat_of_row[real], p_amount[real]
    if len(p_code) == 0:
        return out
    n_cat = len(cat_names)
    s = pd.Series(p_amount).groupby(p_code * n_cat + cat_of_row).sum()
    key = s.index.to_numpy()
    cust, cat, val = key // n_cat, key % n_cat, s.to_numpy()
    # Highest spend first within each customer; ties go to the alphabetically first category.
    order = np.lexsort((cat, -val, cust))
    cust, cat, val = cust[order], cat[order], val[order]
    first = np.r_[True, cust[1:] != cust[:-1]] & (val > 0)
    out[cust[first]] = np.asarray(cat_names, dtype=object)[cat[first]]
    return out
