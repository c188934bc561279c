"""Customer segmentation: K-means, DBSCAN or RFM scores, named in plain words.

:class:`CustomerSegmenter` runs the family: features (:mod:`.features`), the choice on the
backtest (:mod:`.evaluation`), the models (:mod:`.models`) and the names (:mod:`.naming`).
Input frames follow :mod:`ml.pipelines.schema`; features come from
:func:`ml.pipelines.segmentation.features.customer_features` as of a date.

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

When the purchases carry no money (:func:`ml.pipelines.segmentation.features.has_money`), spend,
order value and refund share are left out of the clustering space, the RFM score and the
names: segments are then by recency, orders, regularity, tenure, contacts and category mix.
"""
from __future__ import annotations

import pandas as pd
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from ml.pipelines.backtest import plan_backtest
from ml.pipelines.schema import as_of_day
from ml.pipelines.segmentation.evaluation import (
    ALGORITHMS,
    TARGET,
    compare_algorithms,
    first_purchase_day,
)
from ml.pipelines.segmentation.features import customer_features, features_from_rows, prepare_rows
from ml.pipelines.segmentation.models import assign, assignment_frame, fit_model, json_ready
from ml.pipelines.segmentation.naming import describe

# BLAS / OpenMP threads while clustering. The matrices are small (a sample of ~20 columns), so
# a second thread gains little, and on a shared 2-core box (web, worker, database) threads
# that spin-wait made K-means and the distance products 3-7x slower, measured.
N_THREADS = 1


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
    plan_ : the :class:`~ml.pipelines.backtest.BacktestPlan` (the windows held back).
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
        self.plan_ = plan = plan_backtest(first_purchase_day(rows), as_of, self.horizon_days)
        if self.algorithm == "auto":
            self.chosen_, self.chosen_reason_, self.basis_, self.backtest_, self.comparison_ = \
                compare_algorithms(rows, as_of, features, self._settings(), plan)
        else:
            self.chosen_ = self.algorithm
            self.chosen_reason_ = "set by the caller"
            self.basis_ = "not validated"
            self.backtest_ = dict(plan.to_json(), target=TARGET, validated=False, origins=[],
                                  choice={}, reason=f"{self.algorithm} set by the caller: not "
                                                    f"compared on backtest windows")

        model = fit_model(self.chosen_, features, self._settings())
        keys, distance = assign(model, features)
        names, segments = describe(model, features, keys)
        self.model_ = model
        self.features_ = features
        self.params_ = json_ready(dict(model["params"], algorithm=self.chosen_,
                                       as_of=as_of_day(as_of).date().isoformat()))
        self.segments_ = segments
        self.assignments_ = assignment_frame(features, keys, distance, names, model)
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
            keys, distance = assign(model, features)
        return assignment_frame(features, keys, distance, self.names_, model)

    # ------------------------------------------------------------------ internals
    def _settings(self) -> dict:
        return {"n_clusters": self.n_clusters, "eps": self.eps, "min_samples": self.min_samples,
                "random_state": self.random_state, "max_sample": self.max_sample}

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
