"""Customer segmentation: K-means, DBSCAN or RFM scores, named in plain words.

Input frames follow :mod:`ml.pipelines.schema`; features come from
:func:`ml.pipelines.customer_features.customer_features` as of a date.

Customers who never bought form their own segment ("Prospects / no purchases yet"); the
algorithms only see buyers, because recency, order value and regularity mean nothing
without a purchase. Clustering is fitted on a seeded sample of buyers and everyone is then
assigned, so the cost is one pass over the interactions plus a few seconds of clustering
whatever the size of the base.

``algorithm="auto"`` chooses the algorithm whose segments best separate *future* behaviour,
on the rolling-origin backtest of :mod:`ml.pipelines.backtest`: at each origin (2 or 3 cuts
from the history up to ``as_of``, windows of up to ``horizon_days``) every algorithm segments
the customers with features as of the cut and is scored by how much of the variance of the
orders and of the spend in the window after the cut lies between its segments (adjusted eta
squared). RFM scores, the simple baseline, are kept unless K-means or DBSCAN beats them by more
than the spread between origins; with too little history to hold a window back, RFM is
published as "not validated".

When the purchases carry no money (:func:`ml.pipelines.customer_features.has_money`), spend,
order value and refund share are left out of the clustering space, the RFM score and the
names: segments are then by recency, orders, regularity, tenure, contacts and category mix.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator
from sklearn.cluster import DBSCAN, KMeans
from sklearn.metrics import pairwise_distances, silhouette_score
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from ml.pipelines.backtest import choose, plan_backtest
from ml.pipelines.customer_features import (
    CATEGORY_PREFIX,
    FILLER_CATEGORIES,
    TOUCH_TYPES,
    as_of_day,
    category_columns,
    customer_features,
    features_from_rows,
    prepare_rows,
)

__all__ = ["CustomerSegmenter", "customer_features", "match_segments", "PROSPECTS", "UNUSUAL"]

PROSPECTS = "Prospects / no purchases yet"
UNUSUAL = "Unusual"
# Simplest first: the order the backtest choice keeps a simpler candidate in. RFM is the
# baseline (quintile scores, nothing fitted).
ALGORITHMS = ("rfm", "kmeans", "dbscan")
BASELINE = "rfm"
TARGET = "segments"
METRIC = "adjusted eta squared"

K_RANGE = range(3, 9)
# Silhouette is O(n^2): it is computed on this many points of the K-means sample, from one
# precomputed distance matrix (3,000^2 floats = 72 MB) shared by every k.
SILHOUETTE_SAMPLE = 3000
# DBSCAN stores every point's eps-neighbourhood (quadratic in a dense sample) and every
# customer is then compared with every core point, so it is fitted on at most this many
# buyers: 3,000 keeps the assignment of 100,000 buyers near a second.
DBSCAN_SAMPLE = 3000
# BLAS / OpenMP threads while clustering. The matrices are small (a sample of ~20 columns), so
# a second thread gains little, and on a shared 2-core box (web, worker, database) threads
# that spin-wait made K-means and the distance products 3-7x slower, measured.
N_THREADS = 1
# Below this many buyers at a backtest cut, eta squared per segment is noise: that origin is
# not scored (and with no origin scored, RFM is published as not validated).
MIN_BUYERS_FOR_AUTO = 50

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
_TOUCH_COLUMNS = tuple("share_" + t for t in TOUCH_TYPES)


class CustomerSegmenter(BaseEstimator):
    """Segments customers and names the segments.

    Parameters
    ----------
    algorithm : "auto", "kmeans", "dbscan" or "rfm".
    n_clusters : K-means k; by default the k in 3..8 with the best silhouette on a seeded
        sample of buyers. K-means is fitted without the few far-out buyers (see
        :func:`_far_out`); they are assigned to the nearest centre like everyone else.
    eps : DBSCAN radius in the standardised feature space; by default the knee of the sorted
        k-distance curve (k = ``min_samples``).
    min_samples : DBSCAN core-point threshold; by default ``max(5, min(2 * n_features,
        sample_size // 50))``.
    horizon_days : the horizon the backtest windows are planned for (see
        :func:`ml.pipelines.backtest.plan_backtest`: a window is at most this long).
    random_state : seed for every sample and every K-means start.
    max_sample : at most this many buyers (seeded sample) are used to fit K-means; DBSCAN
        uses at most ``min(max_sample, DBSCAN_SAMPLE)``. Every customer is then assigned.

    Learned attributes (after ``fit``)
    ----------------------------------
    assignments_ : DataFrame customer_id, segment_key (int), name, distance_to_center
        (standardised feature space; K-means: to the centre, DBSCAN: to the nearest core
        point; NaN for RFM and prospects), rfm_score (int "RFM" digits, e.g. 545; 0 without a
        purchase; the M digit is 0 when the purchases carry no money).
    segments_ : DataFrame segment_key, name, profile, size, figures (JSON-able dict).
    comparison_ : dict algorithm -> {"score" (mean adjusted eta squared over the scored
        origins), "origins" (one score per origin, None where not scored), ...} (auto with a
        validated backtest only; empty otherwise).
    backtest_ : the per-origin table in the layout of ``run.metrics["backtest"]``: the plan
        (:meth:`BacktestPlan.to_json`), per origin "customers", "buyers" and "scores"
        (algorithm -> {metric: value}), and "choice" {"segments": {...}} ({} when not validated).
    chosen_ : the algorithm used. chosen_reason_ : why, in words.
    basis_ : "model" (K-means or DBSCAN chosen), "baseline" (RFM chosen) or "not validated"
        (too little history to compare, or the algorithm was set by the caller).
    outcome_ : {"basis", "summary"}: the run's outcome in one line.
    money_ : whether spend was used (see :func:`has_money`).
    params_ : dict of what was chosen (k, eps, min_samples, sample sizes, silhouettes...).
    features_ : the raw per-customer feature frame the segments were fitted on.
    names_ : segment_key -> name (feed to :func:`match_segments` on the next retrain).
    model_ : plain dict of numpy arrays / floats that ``predict`` uses (scaling, centres or
        core points and eps, RFM quintile edges).

    DBSCAN assigns every customer, in ``fit`` and ``predict`` alike, to the cluster of the
    nearest core point when it lies within eps, otherwise to "Unusual", so ``predict`` on
    the fitting data reproduces ``assignments_``.
    """

    def __init__(self, algorithm="auto", n_clusters=None, eps=None, min_samples=None,
                 horizon_days=90, random_state=0, max_sample=20000):
        self.algorithm = algorithm
        self.n_clusters = n_clusters
        self.eps = eps
        self.min_samples = min_samples
        self.horizon_days = horizon_days
        self.random_state = random_state
        self.max_sample = max_sample

    # ------------------------------------------------------------------ public API
    def fit(self, interactions, products, customers, as_of) -> CustomerSegmenter:
        """Segment every customer known at ``as_of`` (see :func:`customer_features`).

        Uses interactions with ``occurred_at < as_of + 1 day`` only.
        """
        if self.algorithm not in ("auto",) + ALGORITHMS:
            raise ValueError(f"algorithm must be 'auto' or one of {ALGORITHMS}, "
                             f"got {self.algorithm!r}")
        with threadpool_limits(limits=N_THREADS):
            return self._fit(interactions, products, customers, as_of)

    def _fit(self, interactions, products, customers, as_of):
        rows = prepare_rows(interactions, products, customers, as_of)
        features = features_from_rows(rows, as_of)
        if len(features) == 0:
            raise NothingToSegment("no customers and no interactions on or before the as-of date: "
                                   "there is nobody to segment")
        self.comparison_ = {}
        self.money_ = bool(rows["money"])
        if self.algorithm == "auto":
            self.chosen_, self.chosen_reason_, self.basis_, self.backtest_ = \
                self._choose(rows, as_of, features)
        else:
            self.chosen_ = self.algorithm
            self.chosen_reason_ = "set by the caller"
            self.basis_ = "not validated"
            plan = plan_backtest(_first_purchase_day(rows), as_of, self.horizon_days)
            self.backtest_ = dict(plan.to_json(), target=TARGET, validated=False, origins=[],
                                  choice={}, reason=f"{self.algorithm} set by the caller: not "
                                                    f"compared on backtest windows")

        model = _fit_model(self.chosen_, features, self._settings())
        keys, distance = _assign(model, features)
        names, segments = _describe(model, features, keys)
        self.model_ = model
        self.features_ = features
        self.params_ = _json_ready(dict(model["params"], algorithm=self.chosen_,
                                        as_of=as_of_day(as_of).date().isoformat()))
        self.segments_ = segments
        self.assignments_ = _assignment_frame(features, keys, distance, names, model)
        self.names_ = names
        self.outcome_ = self._outcome(segments)
        return self

    def predict(self, interactions, products, customers, as_of) -> pd.DataFrame:
        """Assign every customer known at ``as_of`` to the fitted segments.

        Features are computed as of ``as_of`` with the fitted category columns and scaling;
        buyers go to the nearest K-means centre / DBSCAN core point within eps (else
        "Unusual") / RFM group by the fitted quintile edges; non-buyers are prospects.
        Returns the columns of ``assignments_``.
        """
        model = self.model_
        features = customer_features(interactions, products, customers, as_of,
                                     categories=model["encoding"]["categories"])
        with threadpool_limits(limits=N_THREADS):
            keys, distance = _assign(model, features)
        return _assignment_frame(features, keys, distance, self.names_, model)

    # ------------------------------------------------------------------ internals
    def _settings(self) -> dict:
        return {"n_clusters": self.n_clusters, "eps": self.eps, "min_samples": self.min_samples,
                "random_state": self.random_state, "max_sample": self.max_sample}

    def _choose(self, rows, as_of, features_now):
        """Compare the algorithms on the backtest origins; returns (algorithm, reason, basis,
        backtest table).

        At each cut, every algorithm segments the customers known then (features as of the cut)
        and is scored on the window after it: the mean over orders and spend (orders only
        without money) of the adjusted eta squared of that window's figures between segments.
        The choice is :func:`ml.pipelines.backtest.choose` on the negated scores, RFM first.
        """
        plan = plan_backtest(_first_purchase_day(rows), as_of, self.horizon_days)
        backtest = dict(plan.to_json(), target=TARGET)
        if not plan.validated:
            backtest["choice"] = {}
            return BASELINE, (f"{plan.reason}: RFM scores (the baseline) are published without a "
                              f"comparison"), "not validated", backtest
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
                model = _fit_model(algorithm, past, self._settings())
                keys, _ = _assign(model, past)
                eta = {t: _eta_squared(y, keys) for t, y in future.items()}
                score = float(np.mean([e["adjusted"] for e in eta.values()]))
                origin["scores"][algorithm] = {
                    METRIC: score,
                    "adjusted eta squared of orders": eta["orders"]["adjusted"],
                    "adjusted eta squared of spend": eta["spend"]["adjusted"] if "spend" in eta
                    else None,
                    "segments": int(len(np.unique(keys)))}
                scores[algorithm].append(score)
                details[algorithm].append({**origin["scores"][algorithm], "cut": origin["cut"],
                                           "params": _json_ready(model["params"])})
        scored = [i for i, v in enumerate(scores[BASELINE]) if v is not None]
        if not scored:
            most = max(o["buyers"] for o in backtest["origins"])
            backtest["validated"] = False
            backtest["reason"] = (f"not validated: at most {most} customers had bought by a backtest "
                                  f"cut, fewer than the {MIN_BUYERS_FOR_AUTO} needed to compare "
                                  f"segmentations on the window after it")
            backtest["choice"] = {}
            return BASELINE, (f"{backtest['reason']}: RFM scores (the baseline) are published "
                              f"without a comparison"), "not validated", backtest
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
        for algorithm in ALGORITHMS:
            done = details[algorithm]
            self.comparison_[algorithm] = {
                "score": mean[algorithm], "origins": scores[algorithm],
                "adj_eta2_orders": float(np.mean([d["adjusted eta squared of orders"] for d in done])),
                "adj_eta2_spend": float(np.mean([d["adjusted eta squared of spend"] for d in done]))
                if rows["money"] else None,
                "n_segments": done[0]["segments"], "cut": done[0]["cut"], "params": done[0]["params"]}
        return chosen, reason, ("baseline" if chosen == BASELINE else "model"), backtest

    def _outcome(self, segments: pd.DataFrame) -> dict:
        """The run's outcome in one line (``run.metrics["outcome"]``)."""
        n = int((segments["size"] > 0).sum())
        what = f"{self.chosen_} ({n} segment{'s' if n != 1 else ''})"
        validated = self.backtest_.get("reason", "")
        if self.basis_ == "model":
            summary = f"model: {what}, {validated}"
        elif self.basis_ == "baseline":
            summary = (f"baseline: {what}, {validated}; neither K-means nor DBSCAN separated the "
                       f"customers' next {'orders and spend' if self.money_ else 'orders'} "
                       f"better by more than the spread between windows")
        else:
            for lead in ("not yet validated: ", "not validated: "):
                validated = validated.removeprefix(lead)
            summary = f"not validated: {what}; {validated}"
        if not self.money_:
            summary += ("; spend left out (the purchases carry no amounts): segments by recency, "
                        "orders, regularity, tenure, contacts and category mix")
        return {"basis": self.basis_, "summary": summary}


class NothingToSegment(ValueError):
    """The frames hold no customer at all (the message says so in words)."""


def _first_purchase_day(rows: dict):
    """The day of the first purchase in prepared rows (None without a purchase)."""
    t = rows["t_ns"][rows["purchase"]]
    return pd.Timestamp(int(t.min())).normalize() if len(t) else None


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
    columns = core + list(_TOUCH_COLUMNS) + cat_cols
    weights = np.r_[np.ones(len(core)),
                    np.full(len(_TOUCH_COLUMNS), 1 / math.sqrt(len(_TOUCH_COLUMNS))),
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


def _encode(features: pd.DataFrame, enc: dict) -> np.ndarray:
    return (_raw_matrix(features, enc) - enc["mean"]) / enc["scale"] * enc["weights"]


# ---------------------------------------------------------------------- fitting
def _fit_model(algorithm: str, features: pd.DataFrame, settings: dict) -> dict:
    """Fit one algorithm on the buyers of ``features``; returns a plain dict (the model)."""
    enc = _fit_encoding(features)
    buyers = features["orders"].to_numpy() > 0
    model = {"algorithm": algorithm, "encoding": enc, "rfm": _fit_rfm_edges(features[buyers]),
             "params": {"n_buyers": int(buyers.sum())}}
    X = _encode(features[buyers], enc)
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
def _segment_layout(model: dict) -> dict:
    """Segment keys of a fitted model: clusters / RFM groups, then Unusual, then prospects."""
    algorithm = model["algorithm"]
    if algorithm == "kmeans":
        n = len(model["centers"])
        return {"n_groups": n, "unusual": None, "prospects": n}
    if algorithm == "dbscan":
        n = model["n_clusters"]
        return {"n_groups": n, "unusual": n, "prospects": n + 1}
    return {"n_groups": len(RFM_GROUPS), "unusual": None, "prospects": len(RFM_GROUPS)}


def _assign(model: dict, features: pd.DataFrame):
    """Segment key and distance per customer of ``features`` (vectorised, chunked)."""
    layout = _segment_layout(model)
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
    X = _encode(features.iloc[buyers], model["encoding"])
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


def _assignment_frame(features, keys, distance, names, model) -> pd.DataFrame:
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


# ---------------------------------------------------------------------- naming
def _describe(model, features, keys):
    """Names (key -> name) and the segments_ frame for one fitted assignment."""
    layout = _segment_layout(model)
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
        "touch": {c: float(buyers[c].mean()) if len(buyers) else 0.0 for c in _TOUCH_COLUMNS},
        "cats": {c: float(buyers[c].mean()) if len(buyers) else 0.0 for c in cats},
        "n_categories": sum(1 for c in cats if c[len(CATEGORY_PREFIX):] not in FILLER_CATEGORIES
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
    """(category, mean share) of the largest real category (never a filler such as "(none)"
    or "(other)") in a segment row; None when no real category has a share."""
    return _top_share(row, CATEGORY_PREFIX, exclude=FILLER_CATEGORIES)


def _top_share(row, prefix, exclude=()):
    """(label, mean share) of the largest share column with ``prefix`` in a segment row,
    leaving out the labels in ``exclude``."""
    if row is None:
        return None
    cols = [c for c in row.index if c.startswith("mean_" + prefix)
            and c[len("mean_" + prefix):] not in exclude]
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
    for col in _TOUCH_COLUMNS:
        share = float(row["mean_" + col])
        ratio = _ratio(share, base["touch"][col])
        if share >= 0.2 and ratio >= best_ratio:
            best, best_ratio = col, ratio
    return _TOUCH_WORDS[best] if best else None


def _prospect_profile(row, size, n_total) -> str:
    if row is None or size == 0:
        return f"{PROSPECTS}: no customers without a purchase at this date."
    touches = [(float(row["mean_" + c]), c[len("share_"):]) for c in _TOUCH_COLUMNS]
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
        "touch_mix": {c[len("share_"):]: num(row["mean_" + c]) for c in _TOUCH_COLUMNS},
    }
    if not money:  # not measured: shown as missing, not as 0
        for key in ("median_spend", "median_aov", "refund_share", "spend_vs_median_buyer"):
            figures[key] = None
    return figures


def _json_ready(value):
    """numpy scalars / arrays -> plain Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json_ready(v) for v in value.tolist()]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    return value


# ---------------------------------------------------------------------- evaluation
def _eta_squared(y: np.ndarray, keys: np.ndarray) -> dict:
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
