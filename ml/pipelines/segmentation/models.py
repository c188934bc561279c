"""Segmentation models: the clustering space, K-means, DBSCAN and RFM scores, and assigning
every customer to a fitted model's segments.

A fitted model is a plain dict of numpy arrays and floats (scaling, centres or core points and
eps, RFM quintile edges) built by :func:`fit_model` on the features of
:mod:`ml.pipelines.segmentation.features`; :func:`assign` puts customers in its segments.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.cluster import DBSCAN, KMeans
from sklearn.metrics import pairwise_distances, silhouette_score
from sklearn.neighbors import NearestNeighbors

from ml.pipelines.segmentation.features import TOUCH_TYPES, category_columns

K_RANGE = range(3, 9)
# Silhouette is O(n^2): it is computed on this many points of the K-means sample, from one
# precomputed distance matrix (3,000^2 floats = 72 MB) shared by every k.
SILHOUETTE_SAMPLE = 3000
# DBSCAN stores every point's eps-neighbourhood (quadratic in a dense sample) and every
# customer is then compared with every core point, so it is fitted on at most this many
# buyers: 3,000 keeps the assignment of 100,000 buyers near a second.
DBSCAN_SAMPLE = 3000

# Classic RFM grid: row = recency score R (1..5), column = the mean of the frequency and
# monetary scores rounded (1..5). The names are the usual marketing groups.
RFM_GROUPS = ("Champions", "Loyal customers", "Potential loyalists", "New customers",
              "Promising", "Need attention", "About to sleep", "At risk", "Can't lose them",
              "Hibernating", "Lost")
_RFM_GRID = np.array([
    # FM=1          FM=2           FM=3              FM=4               FM=5
    ["Lost",        "Hibernating", "At risk",        "At risk",         "Can't lose them"],  # R=1
    ["Hibernating", "Hibernating", "At risk",        "At risk",         "Can't lose them"],  # R=2
    ["About to sleep", "About to sleep", "Need attention", "Loyal customers", "Loyal customers"],
    ["Promising",   "Potential loyalists", "Potential loyalists", "Loyal customers",
     "Loyal customers"],                                                                   # R=4
    ["New customers", "Potential loyalists", "Potential loyalists", "Champions",
     "Champions"],                                                                         # R=5
])
_RFM_KEY_GRID = np.vectorize(RFM_GROUPS.index)(_RFM_GRID)

_LOG_COLUMNS = ("recency_days", "orders", "spend", "aov", "tenure_days")
_CORE_COLUMNS = _LOG_COLUMNS + ("purchase_gap_cv", "refund_share")
# Left out of the clustering space when the purchases carry no money.
_MONEY_COLUMNS = ("spend", "aov", "refund_share")
TOUCH_COLUMNS = tuple("share_" + t for t in TOUCH_TYPES)


# ---------------------------------------------------------------------- encoding
def _fit_encoding(features: pd.DataFrame) -> dict:
    """Learn the transform from raw features to the standardised clustering space.

    Money, counts and durations are heavy-tailed, so they enter as log1p. Columns are
    standardised; the six interaction shares and the category shares are each down-weighted
    by 1/sqrt(block size) so each block weighs like one feature and the mix does not drown
    recency, frequency and money. Without money (``features.attrs["money"]`` False) spend,
    order value and refund share are left out: they are 0 for everyone, not behaviour.
    """
    buyers = features[features["orders"] > 0]
    money = bool(features.attrs.get("money", True))
    categories = list(features.attrs.get("categories", []))
    cat_cols = category_columns(categories)
    cv = buyers["purchase_gap_cv"].to_numpy()
    cv_fill = float(np.nanmedian(cv)) if np.isfinite(cv).any() else 0.0
    core = [c for c in _CORE_COLUMNS if money or c not in _MONEY_COLUMNS]
    columns = core + list(TOUCH_COLUMNS) + cat_cols
    weights = np.r_[np.ones(len(core)),
                    np.full(len(TOUCH_COLUMNS), 1 / math.sqrt(len(TOUCH_COLUMNS))),
                    np.full(len(cat_cols), 1 / math.sqrt(len(cat_cols)))]
    spend = buyers["spend"].to_numpy(np.float64)
    refunded = np.minimum(np.clip(buyers["refund_amount"].to_numpy(np.float64), 0.0, None), spend)
    enc = {"categories": categories, "columns": columns, "cv_fill": cv_fill, "money": money,
           "refund_prior": float(refunded.sum() / spend.sum()) if spend.sum() > 0 else 0.0,
           "refund_weight": float(np.median(spend)) if len(spend) else 0.0,
           "mean": np.zeros(len(columns)), "scale": np.ones(len(columns)), "weights": weights}
    raw = _raw_matrix(buyers, enc)
    if len(raw):
        enc["mean"] = raw.mean(axis=0)
        std = raw.std(axis=0)
        enc["scale"] = np.where(std > 1e-12, std, 1.0)
    return enc


def _raw_matrix(features: pd.DataFrame, enc: dict) -> np.ndarray:
    out = np.empty((len(features), len(enc["columns"])), dtype=np.float64)
    for j, col in enumerate(enc["columns"]):
        values = features[col].to_numpy(dtype=np.float64) if col in features else \
            np.zeros(len(features))
        if col in _LOG_COLUMNS:
            values = np.log1p(np.maximum(values, 0.0))
        elif col == "purchase_gap_cv":
            values = np.where(np.isnan(values), enc["cv_fill"], values)
        elif col == "refund_share":
            # Shrunk towards the base's refund share by a prior worth the median buyer's spend:
            # one refund among three small orders is weak evidence of a refunder, ten among
            # thirty is strong. Refunds above spend (of earlier purchases) count as 100 %.
            refunded = np.clip(features["refund_amount"].to_numpy(np.float64), 0.0, None)
            spend = features["spend"].to_numpy(np.float64)
            refunded = np.minimum(refunded, spend)
            values = (refunded + enc["refund_prior"] * enc["refund_weight"]) \
                / np.maximum(spend + enc["refund_weight"], 1e-12)
        out[:, j] = values
    return out


def encode(features: pd.DataFrame, enc: dict) -> np.ndarray:
    return (_raw_matrix(features, enc) - enc["mean"]) / enc["scale"] * enc["weights"]


# ---------------------------------------------------------------------- fitting
def fit_model(algorithm: str, features: pd.DataFrame, settings: dict) -> dict:
    """Fit one algorithm on the buyers of ``features``; returns a plain dict (the model)."""
    enc = _fit_encoding(features)
    buyers = features["orders"].to_numpy() > 0
    model = {"algorithm": algorithm, "encoding": enc, "rfm": _fit_rfm_edges(features[buyers]),
             "params": {"n_buyers": int(buyers.sum())}}
    X = encode(features[buyers], enc)
    rng = np.random.default_rng(settings["random_state"])
    if algorithm == "kmeans":
        model.update(_fit_kmeans(X, settings, rng))
    elif algorithm == "dbscan":
        model.update(_fit_dbscan(X, settings, rng))
    model["params"].update(model.pop("extra_params", {}))
    return model


def _sample(n: int, size: int, rng) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def _fit_kmeans(X, settings, rng) -> dict:
    seed = settings["random_state"]
    if len(X) == 0:
        return {"centers": np.zeros((0, 0)), "extra_params": {"k": 0}}
    Xs = X[_sample(len(X), settings["max_sample"], rng)]
    # Fitted (and k chosen) without the far-out customers; everyone is assigned afterwards.
    far = _far_out(Xs)
    Xs = Xs[~far]
    n_unique = len(np.unique(Xs, axis=0)) if len(Xs) <= 5000 else len(Xs)
    if settings["n_clusters"] is not None:
        k = int(min(settings["n_clusters"], n_unique))
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(Xs)
        return {"centers": km.cluster_centers_,
                "extra_params": {"k": k, "k_criterion": "set by the caller",
                                 "sample_size": int(len(Xs)),
                                 "far_out_left_out": int(far.sum())}}
    ks = [k for k in K_RANGE if k < n_unique]
    if not ks:
        k = max(1, min(2, n_unique))
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(Xs)
        return {"centers": km.cluster_centers_,
                "extra_params": {"k": k, "k_criterion": "too few distinct buyers for 3..8",
                                 "sample_size": int(len(Xs)),
                                 "far_out_left_out": int(far.sum())}}
    sil_idx = _sample(len(Xs), SILHOUETTE_SAMPLE, rng)
    distances = pairwise_distances(Xs[sil_idx])
    scores, fitted = {}, {}
    for k in ks:
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(Xs)
        labels = km.labels_[sil_idx]
        scores[k] = float(silhouette_score(distances, labels, metric="precomputed")) \
            if 1 < len(np.unique(labels)) < len(labels) else -1.0
        fitted[k] = km
    k = max(ks, key=lambda kk: scores[kk])
    return {"centers": fitted[k].cluster_centers_,
            "extra_params": {"k": int(k), "k_criterion": "best silhouette over k=3..8 on a "
                             "seeded sample", "silhouette": {str(a): b for a, b in scores.items()},
                             "sample_size": int(len(Xs)),
                             "far_out_left_out": int(far.sum())}}


def _far_out(X: np.ndarray) -> np.ndarray:
    """Rows far out from the bulk: distance to the coordinate-wise median beyond Tukey's
    far-out fence (Q3 + 3 IQR of those distances).

    A handful of such customers (a few huge wholesale orders) would otherwise take a K-means
    centre of their own and win the silhouette for a k that lumps everyone else together.
    """
    none = np.zeros(len(X), dtype=bool)
    if len(X) < 4:
        return none
    d = np.linalg.norm(X - np.median(X, axis=0), axis=1)
    q1, q3 = np.quantile(d, [0.25, 0.75])
    if q3 <= q1:  # most customers alike: no spread to measure "far" by
        return none
    far = d > q3 + 3.0 * (q3 - q1)
    # A tenth of the base far out is a group of its own, not a handful of outliers.
    return far if far.sum() < len(X) / 10 else none


def _knee(sorted_distances: np.ndarray) -> float:
    """The knee of an increasing curve: the point farthest below the chord (kneedle).

    The top 1 % is left out of the chord so a handful of extreme outliers does not flatten
    the whole curve and push the knee down to the dense core.
    """
    y = np.asarray(sorted_distances, dtype=np.float64)
    y = y[: max(3, int(math.ceil(len(y) * 0.99)))]
    if len(y) < 3 or y[-1] <= y[0]:
        return float(y[-1]) if len(y) else 1.0
    x = np.linspace(0.0, 1.0, len(y))
    yn = (y - y[0]) / (y[-1] - y[0])
    return float(y[int(np.argmax(x - yn))])


def _fit_dbscan(X, settings, rng) -> dict:
    if len(X) == 0:
        return {"core_points": np.zeros((0, 0)), "core_labels": np.zeros(0, np.int64),
                "eps": 0.0, "n_clusters": 0, "extra_params": {"eps": 0.0}}
    Xs = X[_sample(len(X), min(settings["max_sample"], DBSCAN_SAMPLE), rng)]
    d = X.shape[1]
    min_samples = settings["min_samples"]
    if min_samples is None:
        min_samples = max(5, min(2 * d, len(Xs) // 50))
    min_samples = int(min(min_samples, len(Xs)))
    eps = settings["eps"]
    criterion = "set by the caller"
    if eps is None:
        # Column min_samples - 1 of kneighbors(Xs) on itself is the (min_samples)-th point
        # counting the point itself, the same count DBSCAN uses for a core point.
        dist, _ = NearestNeighbors(n_neighbors=min_samples).fit(Xs).kneighbors(Xs)
        eps = _knee(np.sort(dist[:, -1]))
        criterion = f"knee of the sorted {min_samples}-distance curve"
    eps = float(max(eps, 1e-9))
    db = DBSCAN(eps=eps, min_samples=min_samples).fit(Xs)
    core = db.core_sample_indices_
    core_labels = db.labels_[core]
    # Clusters numbered by size (largest first) so keys read naturally.
    uniq, counts = np.unique(core_labels, return_counts=True)
    rank = {lab: i for i, lab in enumerate(uniq[np.argsort(-counts, kind="stable")])}
    core_labels = np.array([rank[lab] for lab in core_labels], dtype=np.int64)
    return {"core_points": Xs[core], "core_labels": core_labels, "eps": eps,
            "n_clusters": int(len(uniq)),
            "extra_params": {"eps": eps, "eps_criterion": criterion,
                             "min_samples": min_samples, "sample_size": int(len(Xs)),
                             "n_core_points": int(len(core)),
                             "sample_noise_share": float(np.mean(db.labels_ == -1))}}


def _fit_rfm_edges(buyers: pd.DataFrame) -> dict:
    """Quintile edges (20/40/60/80 %) of recency, orders and spend among buyers."""
    q = [0.2, 0.4, 0.6, 0.8]
    edges = {}
    for col in ("recency_days", "orders", "spend"):
        values = buyers[col].to_numpy(dtype=np.float64)
        edges[col] = np.quantile(values, q) if len(values) else np.zeros(4)
    return edges


def _quintile(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Score 1..5 by position among the edges; a value tied with several edges gets the
    middle of them, so a mass of equal values (e.g. one order) lands mid-scale."""
    lo = np.searchsorted(edges, values, side="left")
    hi = np.searchsorted(edges, values, side="right")
    return (1 + np.floor((lo + hi) / 2 + 0.5)).astype(np.int64).clip(1, 5)


def _rfm_scores(features: pd.DataFrame, edges: dict, money: bool = True):
    """R, F and M scores 1..5 (M is 0 for everyone when the purchases carry no money)."""
    r = 6 - _quintile(features["recency_days"].to_numpy(dtype=np.float64),
                      edges["recency_days"])
    f = _quintile(features["orders"].to_numpy(dtype=np.float64), edges["orders"])
    m = _quintile(features["spend"].to_numpy(dtype=np.float64), edges["spend"]) if money \
        else np.zeros(len(features), dtype=np.int64)
    return r, f, m


# ---------------------------------------------------------------------- assigning
def segment_layout(model: dict) -> dict:
    """Segment keys of a fitted model: clusters / RFM groups, then Unusual, then prospects."""
    algorithm = model["algorithm"]
    if algorithm == "kmeans":
        n = len(model["centers"])
        return {"n_groups": n, "unusual": None, "prospects": n}
    if algorithm == "dbscan":
        n = model["n_clusters"]
        return {"n_groups": n, "unusual": n, "prospects": n + 1}
    return {"n_groups": len(RFM_GROUPS), "unusual": None, "prospects": len(RFM_GROUPS)}


def assign(model: dict, features: pd.DataFrame):
    """Segment key and distance per customer of ``features`` (vectorised, chunked)."""
    layout = segment_layout(model)
    n = len(features)
    keys = np.full(n, layout["prospects"], dtype=np.int64)
    distance = np.full(n, np.nan)
    buyers = np.flatnonzero(features["orders"].to_numpy() > 0)
    if len(buyers) == 0:
        return keys, distance
    algorithm = model["algorithm"]
    if algorithm == "rfm":
        money = model["encoding"]["money"]
        r, f, m = _rfm_scores(features.iloc[buyers], model["rfm"], money)
        # The grid's columns are frequency and money together; frequency alone without money.
        fm = np.floor((f + m) / 2 + 0.5).astype(np.int64) if money else f
        keys[buyers] = _RFM_KEY_GRID[r - 1, fm - 1]
        return keys, distance
    X = encode(features.iloc[buyers], model["encoding"])
    if algorithm == "kmeans":
        if len(model["centers"]) == 0:
            return keys, distance
        label, dist = _nearest(X, model["centers"])
        keys[buyers] = label
        distance[buyers] = dist
        return keys, distance
    core = model["core_points"]
    if len(core) == 0:
        keys[buyers] = layout["unusual"]
        return keys, distance
    idx, dist = _nearest(X, core)
    keys[buyers] = np.where(dist <= model["eps"], model["core_labels"][idx], layout["unusual"])
    distance[buyers] = dist
    return keys, distance


def _nearest(X: np.ndarray, points: np.ndarray):
    """Index of and Euclidean distance to the nearest of ``points`` for each row of ``X``.

    Chunked so each distance block is about 4 million floats (32 MB): large blocks made the
    elementwise passes memory-bound and several times slower than the matrix product.
    """
    idx = np.empty(len(X), dtype=np.int64)
    dist = np.empty(len(X))
    # float32 halves the matrix-product time; the ~1e-3 error on a distance is far below
    # any eps or cluster spacing in a standardised space.
    X = X.astype(np.float32)
    points = points.astype(np.float32)
    p_sq = (points ** 2).sum(axis=1)
    chunk = max(256, 4_000_000 // max(len(points), 1))
    for start in range(0, len(X), chunk):
        block = X[start:start + chunk]
        # |x - p|^2 = |x|^2 - 2 x.p + |p|^2; |x|^2 is constant per row, added after argmin.
        d2 = block @ points.T
        d2 *= -2.0
        d2 += p_sq
        j = np.argmin(d2, axis=1)
        best = d2[np.arange(len(block)), j] + (block ** 2).sum(axis=1)
        idx[start:start + chunk] = j
        dist[start:start + chunk] = np.sqrt(np.maximum(best, 0.0))
    return idx, dist


def assignment_frame(features, keys, distance, names, model) -> pd.DataFrame:
    orders = features["orders"].to_numpy()
    r, f, m = _rfm_scores(features, model["rfm"], model["encoding"]["money"])
    rfm = np.where(orders > 0, r * 100 + f * 10 + m, 0)
    name_of = np.array([names.get(int(k), "") for k in range(max(names) + 1)], dtype=object) \
        if names else np.array([], dtype=object)
    return pd.DataFrame({
        "customer_id": features.index.to_numpy(),
        "segment_key": keys,
        "name": name_of[keys] if len(name_of) else "",
        "distance_to_center": distance,
        "rfm_score": rfm.astype(np.int64),
    })


def json_ready(value):
    """numpy scalars / arrays -> plain Python, recursively."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_ready(v) for v in value.tolist()]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    return value
