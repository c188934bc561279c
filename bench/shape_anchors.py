"""The anchors of ANCHORS.md, recomputed on any contract frame (for bench/shapes.py).

Forecast anchors (naive rate, BG/NBD, LinearRegression with the inner backtest) and
recommendation anchors (popularity, item-kNN = ANCHORS' item_cf, repeat-buy), trained only on
the purchase rows on or before ``as_of`` and returned in the export's form, so they are scored
by exactly the same code as the product's export (bench/cj_protocol.py).

Inputs are contract interaction rows (text columns) restricted to what the model may see,
with a ``day`` column (``YYYY-MM-DD``, see ``cj_protocol.row_days``). Times are in days;
forecasts are over the ``horizon`` days after ``as_of``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from bench.cj_protocol import K, order_keys
from ml.pipelines.forecasting.btyd import BetaGeoModel, GammaGammaModel


def _daily(rows: pd.DataFrame) -> pd.DataFrame:
    """Per household and purchase day: spend, quantity and distinct orders of that day."""
    r = pd.DataFrame({
        "hh": rows["customer_external_id"].to_numpy(),
        "day": pd.to_datetime(rows["day"]).to_numpy(),
        "amount": (pd.to_numeric(rows["amount"], errors="coerce").fillna(0.0) if "amount" in rows
                   else pd.Series(0.0, index=rows.index)).to_numpy(),
        "quantity": pd.to_numeric(rows["quantity"], errors="coerce").fillna(1).to_numpy()
        if "quantity" in rows else np.ones(len(rows)),
        "order": order_keys(rows).to_numpy(),
    })
    return r.groupby(["hh", "day"], sort=True).agg(spend=("amount", "sum"), quantity=("quantity", "sum"),
                                                 orders=("order", "nunique")).reset_index()


def summary(rows: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """Per household with a purchase on or before ``cut``: the RFM summary in days.

    Columns: days (purchase days), orders, first, last, recency (last - first), age
    (cut - first), spend, first_spend, quantity, days_30 / days_90 / spend_90 (in the last 30
    and 90 days up to the cut).
    """
    d = _daily(rows)
    d = d[d["day"] <= cut]
    if d.empty:
        return pd.DataFrame(columns=["days", "orders", "first", "last", "recency", "age", "spend",
                                     "first_spend", "quantity", "days_30", "days_90", "spend_90"])
    g = d.groupby("hh")
    out = pd.DataFrame({
        "days": g.size(), "orders": g["orders"].sum(), "first": g["day"].min(), "last": g["day"].max(),
        "spend": g["spend"].sum(), "first_spend": g["spend"].first(), "quantity": g["quantity"].sum(),
    })
    for n in (30, 90):
        recent = d[d["day"] > cut - pd.Timedelta(days=n)].groupby("hh")
        out[f"days_{n}"] = recent.size().reindex(out.index, fill_value=0)
        if n == 90:
            out["spend_90"] = recent["spend"].sum().reindex(out.index, fill_value=0.0)
    out["recency"] = (out["last"] - out["first"]).dt.days.astype(float)
    out["age"] = (cut - out["first"]).dt.days.astype(float)
    return out


def _export(index, orders, spend, churn) -> pd.DataFrame:
    return pd.DataFrame({"external_id": np.asarray(index, dtype=str), "expected_purchases": orders,
                         "expected_spend": spend, "churn_probability": churn})


def naive_rate(rows: pd.DataFrame, as_of: str, horizon: int) -> pd.DataFrame:
    """Repeat count per day since the first purchase x horizon (orders - 1, days - 1, spend
    after the first day); churn = exp(-expected purchase days)."""
    s = summary(rows, pd.Timestamp(as_of))
    tenure = s["age"].clip(lower=1.0)
    days = (s["days"] - 1) / tenure * horizon
    orders = (s["orders"] - 1) / tenure * horizon
    spend = (s["spend"] - s["first_spend"]) / tenure * horizon
    return _export(s.index, orders.to_numpy(), spend.to_numpy(), np.exp(-days.to_numpy()))


def bg_nbd(rows: pd.DataFrame, as_of: str, horizon: int, with_spend: bool = True) -> pd.DataFrame:
    """BG/NBD on frequency = purchase days - 1, recency and age (days); the conditional
    expectation over the horizon x the household's orders per purchase day; churn = P(no
    purchase in the window). Spend: x the Gamma-Gamma expected value of a repeat day."""
    s = summary(rows, pd.Timestamp(as_of))
    x, t_x, T = (s["days"] - 1).to_numpy(float), s["recency"].to_numpy(float), s["age"].to_numpy(float)
    model = BetaGeoModel(random_state=0).fit(x, t_x, T)
    days = model.conditional_expected_purchases(horizon, x, t_x, T)
    churn = model.probability_no_purchase(horizon, x, t_x, T)
    orders = days * (s["orders"] / s["days"]).to_numpy(float)
    spend = np.full(len(s), np.nan)
    if with_spend:
        repeat_spend = (s["spend"] - s["first_spend"]).to_numpy(float)
        m = np.divide(repeat_spend, x, out=np.zeros_like(x), where=x > 0)
        if ((x >= 1) & (m > 0)).sum() >= 2:
            gg = GammaGammaModel(random_state=0).fit(x, m)
            spend = days * gg.conditional_expected_value(x, m)
    return _export(s.index, orders, spend, churn)


FEATURES = ["days", "repeat", "since_last", "since_first", "span", "spend", "mean_spend", "first_spend",
            "quantity", "days_30", "days_90", "spend_90", "repeat_rate", "orders", "orders_per_day"]


def _features(s: pd.DataFrame) -> pd.DataFrame:
    """ANCHORS' LinearRegression features from a ``summary`` frame."""
    return pd.DataFrame({
        "days": s["days"], "repeat": s["days"] - 1, "since_last": s["age"] - s["recency"], "since_first": s["age"],
        "span": s["recency"], "spend": s["spend"], "mean_spend": s["spend"] / s["days"],
        "first_spend": s["first_spend"], "quantity": s["quantity"], "days_30": s["days_30"],
        "days_90": s["days_90"], "spend_90": s["spend_90"], "repeat_rate": (s["days"] - 1) / s["age"].clip(lower=1),
        "orders": s["orders"], "orders_per_day": s["orders"] / s["days"],
    }, index=s.index)[FEATURES].astype(float)


def inner_window(history_days: int, horizon: int) -> int:
    """ANCHORS' inner label window: the horizon, or history // 3 when the history is shorter
    than two horizons (features as of as_of - window need a history before them too)."""
    return horizon if history_days >= 2 * horizon else history_days // 3


def linear_regression(rows: pd.DataFrame, as_of: str, horizon: int) -> tuple[pd.DataFrame, dict]:
    """LinearRegression by ANCHORS' inner backtest: features as of as_of - W, labels (orders,
    purchase days, spend) in the W days before as_of, for households known at as_of - W; applied
    to the features as of as_of, x horizon / W, clipped at 0. log1p + standardised features.
    Returns (export frame, {"window_days", "scale", "history_days", "train_households"})."""
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    end = pd.Timestamp(as_of)
    first = pd.to_datetime(rows["day"]).min()
    history = int((end - first).days) + 1
    window = inner_window(history, horizon)
    info = {"history_days": history, "window_days": window, "scale": horizon / window if window else None}
    now = summary(rows, end)
    if window < 1:
        raise ValueError(f"{history} days of history: no inner window")
    cut = end - pd.Timedelta(days=window)
    past = summary(rows, cut)
    if len(past) < 2:
        raise ValueError(f"{len(past)} households known at the inner cut {cut.date()}")
    d = _daily(rows)
    d = d[(d["day"] > cut) & (d["day"] <= end)].groupby("hh")
    labels = pd.DataFrame({"orders": d["orders"].sum(), "days": d.size(), "spend": d["spend"].sum()})
    labels = labels.reindex(past.index, fill_value=0).astype(float)
    X_past, X_now = _features(past), _features(now)
    info["train_households"] = len(past)
    preds = {}
    for target in ("orders", "days", "spend"):
        model = make_pipeline(FunctionTransformer(np.log1p), StandardScaler(), LinearRegression())
        model.fit(X_past.clip(lower=0), labels[target])
        preds[target] = np.clip(model.predict(X_now.clip(lower=0)), 0, None) * horizon / window
    return _export(now.index, preds["orders"], preds["spend"], np.exp(-preds["days"])), info


# --- recommendations -----------------------------------------------------------------------

def _matrix(rows: pd.DataFrame):
    """Binary household x product matrix of the purchase rows with a SKU, and its labels."""
    r = rows[rows["product_sku"].fillna("") != ""]
    hh = pd.Index(sorted(set(r["customer_external_id"])))
    items = pd.Index(sorted(set(r["product_sku"])))
    pairs = r[["customer_external_id", "product_sku"]].drop_duplicates()
    X = sparse.csr_matrix((np.ones(len(pairs)), (hh.get_indexer(pairs["customer_external_id"]),
                                                 items.get_indexer(pairs["product_sku"]))),
                          shape=(len(hh), len(items)))
    return X, hh, items


def popularity_lists(rows: pd.DataFrame, households, new: bool) -> dict:
    """Products by distinct buyers on or before as_of (ties: by SKU); in ``new`` mode the
    household's own earlier products are left out."""
    X, hh, items = _matrix(rows)
    buyers = np.asarray(X.sum(axis=0)).ravel()
    order = np.lexsort((np.arange(len(items)), -buyers))
    ranked = list(items[order])
    seen = rows.groupby("customer_external_id")["product_sku"].agg(set).to_dict() if new else {}
    out = {}
    for h in households:
        own = seen.get(h, set())
        lst = []
        for s in ranked:
            if s not in own:
                lst.append(s)
                if len(lst) == K:
                    break
        out[h] = lst
    return out


def item_knn_lists(rows: pd.DataFrame, households, new: bool, chunk: int = 512) -> dict:
    """ANCHORS' item_cf: item-item cosine on the binary household x product matrix, all
    neighbours, no self-similarity; score = sum of the similarities to the household's
    products; ties in SKU order. In ``new`` mode the household's earlier products are left
    out. On the Complete Journey split this gives ANCHORS' item_cf within 0.0002 NDCG@10."""
    X, hh, items = _matrix(rows)
    if X.shape[1] == 0:
        return {h: [] for h in households}
    norm = np.sqrt(np.asarray(X.sum(axis=0)).ravel())
    Xn = X @ sparse.diags(1.0 / np.maximum(norm, 1e-12))
    S = (Xn.T @ Xn).tocsr()
    S.setdiag(0)
    S.eliminate_zeros()
    households = list(households)
    idx = hh.get_indexer(households)
    out = {}
    for start in range(0, len(idx), chunk):
        rows_i = idx[start:start + chunk]
        known = np.flatnonzero(rows_i >= 0)
        block = np.zeros((len(rows_i), len(items)))
        if len(known):
            block[known] = (X[rows_i[known]] @ S).toarray()
            if new:
                own = X[rows_i[known]].toarray() > 0
                block[known] = np.where(own, -np.inf, block[known])
        top = np.argsort(-block, axis=1, kind="stable")[:, :K]
        for j, h in enumerate(households[start:start + chunk]):
            out[h] = [items[c] for c in top[j] if np.isfinite(block[j, c])]
    return out


def repeat_buy_lists(rows: pd.DataFrame, households) -> dict:
    """ANCHORS' repeat_buy: the household's own most-bought products (purchase rows; ties by
    distinct buyers, then SKU), topped up with popularity (any mode). This ordering gives
    ANCHORS' figures exactly on the Complete Journey split (NDCG@10 0.0678)."""
    r = rows[rows["product_sku"].fillna("") != ""]
    buyers = r.groupby("product_sku")["customer_external_id"].nunique()
    g = r.groupby(["customer_external_id", "product_sku"]).size().reset_index(name="n")
    g["buyers"] = g["product_sku"].map(buyers)
    g = g.sort_values(["customer_external_id", "n", "buyers", "product_sku"], ascending=[True, False, False, True])
    own = g.groupby("customer_external_id")["product_sku"].agg(list).to_dict()
    popular = popularity_lists(rows, ["__none__"], new=False)["__none__"]
    out = {}
    for h in households:
        lst = own.get(h, [])[:K]
        out[h] = lst + [s for s in popular if s not in lst][: K - len(lst)]
    return out


def als_lists(rows: pd.DataFrame, households, new: bool, random_state: int = 0) -> dict:
    """ANCHORS' als: `implicit` ALS, 64 factors, regularization 0.05, 15 iterations, on
    BM25-weighted purchase counts (purchase rows per household x product, K1 = 100, B = 0.8),
    one thread, seeded; score = user factors . item factors; ties in SKU order. In ``new``
    mode the household's earlier products are left out, in any mode they may be listed."""
    import warnings  # noqa: PLC0415 -- only this anchor needs them

    from implicit.cpu.als import AlternatingLeastSquares  # noqa: PLC0415 -- compiled, loaded only here
    from implicit.nearest_neighbours import bm25_weight  # noqa: PLC0415

    r = rows[rows["product_sku"].fillna("") != ""]
    hh = pd.Index(sorted(set(r["customer_external_id"])))
    items = pd.Index(sorted(set(r["product_sku"])))
    if len(items) == 0:
        return {h: [] for h in households}
    counts = sparse.csr_matrix((np.ones(len(r), np.float32), (hh.get_indexer(r["customer_external_id"]),
                                                              items.get_indexer(r["product_sku"]))),
                               shape=(len(hh), len(items)))
    counts.sum_duplicates()
    with warnings.catch_warnings():  # implicit's note on OpenBLAS threads
        warnings.simplefilter("ignore")
        model = AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15,
                                        random_state=random_state, num_threads=1)
        model.fit(bm25_weight(counts, K1=100, B=0.8).tocsr(), show_progress=False)
    households = list(households)
    idx = hh.get_indexer(households)
    out = {}
    for start in range(0, len(idx), 512):
        rows_i = idx[start:start + 512]
        block = np.full((len(rows_i), len(items)), -np.inf)
        known = np.flatnonzero(rows_i >= 0)
        if len(known):
            block[known] = model.user_factors[rows_i[known]] @ model.item_factors.T
            if new:
                own = counts[rows_i[known]].toarray() > 0
                block[known] = np.where(own, -np.inf, block[known])
        top = np.argsort(-block, axis=1, kind="stable")[:, :K]
        for j, h in enumerate(households[start:start + 512]):
            out[h] = [items[c] for c in top[j] if np.isfinite(block[j, c])]
    return out
