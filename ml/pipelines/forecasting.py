"""Customer forecasts: orders, spend, churn, CLV and refund rate over the next ``horizon_days``.

Input: the ``interactions`` frame of :mod:`ml.pipelines.schema` (customer_id, type,
occurred_at, amount, order_ref; purchases and refunds are used, other types are ignored).
Money is in the unit of ``amount``; time in days. ``as_of`` is a date, the last day a model
may see, inclusive: only rows with ``occurred_at < as_of + 1 day`` are ever read.

For every customer with a purchase on or before ``as_of`` the forecast covers the window
(as_of, as_of + horizon_days]. An *order* is a distinct ``order_ref`` among a customer's
purchase rows, counted on the first day it appears; a *purchase day* is a day with at
least one purchase row.

Candidates, for each of the three targets (orders, spend, churn):

- baselines: the *naive rate* (a customer's repeat rate since the first purchase, times the
  window; churn = exp(-expected purchase days)) and, for churn, the *base rate* (the share
  of customers who did not buy in the last window, the same for everyone);
- BG/NBD and Pareto/NBD (spend: x Gamma-Gamma), fitted on the purchases up to the cut;
- linear, polynomial (degree 2, ridge), Poisson / Tweedie GLM, SVR and gradient boosting
  regressions of "history as of a cut -> the next window", with churn from the implied
  purchase days, calibrated;
- an ensemble of all the models (mixture weights for counts, a logistic stack for churn).

How the published forecast is chosen (:mod:`ml.pipelines.backtest`): every candidate is
fitted as of each rolling origin (``as_of - W``, ``as_of - 2W``, ...) on the data up to it and
scored on the ``W`` days after it, which really happened. Per target, the simplest candidate
within the spread between origins of the best one is published (orders and spend by RMSE
relative to the naive rate's on the same window, churn by ROC AUC): a baseline whenever no
model beats it consistently, so a run always publishes. Inside one fit as of a cut, the
regressors learn on the window just before the cut (label window L = min(W, history / 3),
forecasts scaled from L to the window) and the churn calibrators and the ensemble on the
one before that. With fewer than three weeks of history nothing can be held back: BG/NBD with
Gamma-Gamma is fitted on everything and the forecast is published as "not yet validated".

Spend, CLV and the refund rate need amounts: when fewer than half the purchase rows carry an
amount, those three are not forecast (NaN, with the reason in ``targets_``); orders and churn
still are.

Cost (100k customers, 2M rows, one thread): the log is reduced once per call to one row
per customer-day with a single sort; regressors train on at most ``MAX_TRAIN_ROWS``
customers and BTYD models on at most ``btyd.MAX_FIT_CUSTOMERS``; every summary, design and
model is memoised per cut, so origins share what they have in common.
``bench/forecast_speed.py`` measures it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special, stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    RidgeCV,
    TweedieRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.svm import SVR
from threadpoolctl import threadpool_limits

from ml.pipelines import metrics as M
from ml.pipelines.backtest import MAX_ORIGINS, MIN_WINDOW_DAYS, choose, plan_backtest, relative
from ml.pipelines.btyd import BetaGeoModel, GammaGammaModel, ParetoNBDModel

TARGETS = ("orders", "spend", "churn")
BASELINES = ("naive rate", "base rate")
REGRESSORS = ("linear", "polynomial", "glm", "svr", "gbm")
BTYD = ("bgnbd", "paretonbd")
MODELS = BTYD + REGRESSORS + ("ensemble",)
ALGORITHMS = BASELINES + MODELS
# Simplest first: the choice keeps the simplest candidate whose backtest scores are within the
# spread of the best's. The baselines have no parameter, BTYD models four population
# parameters, the regressions 16 coefficients and up (polynomial: 152), boosting and the
# ensemble many.
ORDER = {
    "orders": ("naive rate", "bgnbd", "paretonbd", "linear", "glm", "polynomial", "svr", "gbm", "ensemble"),
    "spend": ("naive rate", "bgnbd", "paretonbd", "linear", "glm", "polynomial", "svr", "gbm", "ensemble"),
    "churn": ("base rate", "naive rate", "bgnbd", "paretonbd", "linear", "glm", "polynomial", "svr", "gbm",
              "ensemble"),
}
BASELINE_OF = {"orders": "naive rate", "spend": "naive rate", "churn": "base rate"}
# When nothing can be held back, the textbook model that needs no labelled window.
UNVALIDATED = "bgnbd"

# Regressors learn a handful of coefficients or shallow trees, so a seeded subsample of
# 50k customers estimates them about as well as all of them: on a 100k-customer synthetic
# log the inner validation moved by under 1% for every candidate (gbm orders RMSE 1.580 ->
# 1.585) and the chosen model did not change, while the gradient boosting fits (the
# largest cost of a fit) took half the time.
MAX_TRAIN_ROWS = 50_000
# SVR training is O(n^2) and its prediction O(n x support vectors); 500 rows keep both
# to about a second for 100k customers.
MAX_SVR_ROWS = 500
# A regression of "history -> next window" needs some customers to learn from; below this
# many at the training cut only the baselines and the BTYD models (population parameters) run.
MIN_TRAIN_CUSTOMERS = 100
# Regression features look back at most two years: older behaviour says little about the
# next window, and the training cut must be able to see the same span.
MAX_LOOKBACK_DAYS = 730
# Pseudo purchase days behind a customer's orders-per-day ratio: with 2-3 days of history
# the raw ratio is mostly noise, so it is pulled towards the population ratio.
RATIO_PRIOR_DAYS = 5.0
# Spend is forecast only when at least this share of purchase rows carries an amount: below
# it, a customer's total says more about which rows happen to carry amounts than about spend.
MIN_AMOUNT_SHARE = 0.5
# Churn is modelled on the log-odds scale; probabilities are kept off 0 and 1.
EPS = 1e-6

FEATURES = (
    "purchase_days", "orders", "spend", "quantity", "recency", "tenure", "active_span",
    "spend_per_day", "first_day_spend", "days_recent", "orders_recent", "spend_recent",
    "days_recent_third", "orders_previous", "repeat_rate", "orders_per_day",
)


# --------------------------------------------------------------------------- data


def _day_number(ts) -> int:
    return int(np.datetime64(pd.Timestamp(ts).normalize().to_datetime64(), "D").astype(np.int64))


def _cutoff(as_of) -> pd.Timestamp:
    return pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)


def daily_purchases(interactions: pd.DataFrame, as_of) -> pd.DataFrame:
    """One row per (customer, purchase day) up to ``as_of`` inclusive.

    Columns: customer_id, day (days since 1970-01-01), orders (distinct order_ref first
    seen that day), spend (sum of amount), quantity. Sorted by customer_id, day.
    """
    occurred = interactions["occurred_at"]
    mask = ((interactions["type"] == "purchase") & (occurred < _cutoff(as_of))).to_numpy()
    cust = interactions["customer_id"].to_numpy()[mask].astype(np.int64)
    if not len(cust):
        return pd.DataFrame({"customer_id": cust, "day": cust, "spend": [], "quantity": [], "orders": []})
    day = occurred.to_numpy()[mask].astype("datetime64[D]").astype(np.int64)
    # Factorising the whole column lets an Arrow-backed string column stay in Arrow (no
    # object copy of every order_ref); the codes of the other rows are simply dropped.
    ref = pd.factorize(interactions["order_ref"])[0][mask].astype(np.int64)
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
    n_refs = int(ref.max()) + 1
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


def refunds_by_customer(interactions: pd.DataFrame, as_of) -> pd.Series:
    """Refunded amount (positive) per customer up to ``as_of`` inclusive (exact cent sums)."""
    mask = ((interactions["type"] == "refund") & (interactions["occurred_at"] < _cutoff(as_of))).to_numpy()
    ids, codes = np.unique(interactions["customer_id"].to_numpy()[mask], return_inverse=True)
    cents = _cents(np.abs(interactions["amount"].to_numpy(float)[mask]))
    return pd.Series(_exact_sum(cents, codes.ravel(), len(ids)) / 100.0, index=ids)


def amount_share(interactions: pd.DataFrame, as_of) -> float:
    """Share of the purchase rows up to ``as_of`` (inclusive) that carry an amount (> 0)."""
    mask = ((interactions["type"] == "purchase") & (interactions["occurred_at"] < _cutoff(as_of))).to_numpy()
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


# --------------------------------------------------------------------------- estimators


class SubsampledSVR(BaseEstimator, RegressorMixin):
    """RBF SVR on standardised X and y, trained on a seeded subsample of ``max_rows`` rows.

    Prediction evaluates the kernel expansion with numpy in blocks, about ten times faster
    than libsvm's row-by-row loop on 100k customers.
    """

    def __init__(self, max_rows=MAX_SVR_ROWS, C=1.0, epsilon=0.1, random_state=0):
        self.max_rows = max_rows
        self.C = C
        self.epsilon = epsilon
        self.random_state = random_state

    def fit(self, X, y):
        X, y = np.asarray(X, float), np.asarray(y, float)
        if len(X) > self.max_rows:
            idx = np.random.default_rng(self.random_state).choice(len(X), self.max_rows, replace=False)
            X, y = X[idx], y[idx]
        self.x_scaler_ = StandardScaler().fit(X)
        self.y_mean_, self.y_scale_ = float(y.mean()), float(y.std() or 1.0)
        svr = SVR(C=self.C, epsilon=self.epsilon).fit(self.x_scaler_.transform(X), (y - self.y_mean_) / self.y_scale_)
        self.support_vectors_ = svr.support_vectors_
        self.dual_coef_ = svr.dual_coef_.ravel()
        self.intercept_ = float(svr.intercept_[0])
        self.gamma_ = float(svr._gamma)
        return self

    def predict(self, X):
        # float32 kernel: the exp over n x support vectors is the cost, and its 1e-7
        # relative rounding is far below the model's own error.
        Z = self.x_scaler_.transform(np.asarray(X, float)).astype(np.float32)
        sv = self.support_vectors_.astype(np.float32)
        sv_sq = (sv**2).sum(axis=1)
        coef = self.dual_coef_.astype(np.float32)
        out = np.empty(len(Z))
        for lo in range(0, len(Z), 20_000):  # blocks bound the kernel matrix to ~40 MB
            z = Z[lo:lo + 20_000]
            d2 = (z**2).sum(axis=1)[:, None] + sv_sq[None, :] - 2 * z @ sv.T
            np.maximum(d2, 0, out=d2)
            d2 *= np.float32(-self.gamma_)
            out[lo:lo + 20_000] = np.exp(d2, out=d2) @ coef
        return (out + self.intercept_) * self.y_scale_ + self.y_mean_


def _regressor(name: str, target: str, random_state):
    if name == "linear":
        return make_pipeline(StandardScaler(), LinearRegression())
    if name == "polynomial":
        return PolynomialRidge(random_state=random_state)
    if name == "svr":
        return SubsampledSVR(random_state=random_state)
    if name == "gbm":
        return HistGradientBoostingRegressor(loss="poisson", random_state=random_state)
    if name == "glm":
        # Orders are counts (Poisson); spend is zero for some and continuous for the rest,
        # the compound Poisson-Gamma case of Tweedie (power between 1 and 2).
        # Newton-Cholesky: 16 features make the Hessian tiny, and it converges in a handful
        # of iterations where lbfgs took hundreds on 100k rows (same penalised optimum).
        glm = (PoissonRegressor(alpha=1e-4, solver="newton-cholesky", max_iter=100) if target == "orders"
               else TweedieRegressor(power=1.5, link="log", alpha=1e-4, solver="newton-cholesky", max_iter=100))
        return make_pipeline(StandardScaler(), glm)
    raise ValueError(f"unknown regressor {name!r}")


# Ridge penalties tried by the polynomial regression: a log grid wide enough that the choice
# is the data's (the chosen one is stored on the model), 13 values so the search stays cheap.
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))


class PolynomialRidge(BaseEstimator, RegressorMixin):
    """Degree-2 polynomial regression (152 terms on 16 features) with a ridge penalty.

    The penalty is chosen by efficient leave-one-out (``RidgeCV``) on a seeded subsample of
    ``cv_rows`` rows, then the model is fitted on all of them: the leave-one-out search costs
    O(rows x terms^2) per penalty tried, and 10k rows pin down a penalty for 152 terms as well
    as 50k do, at a fifth of the cost.
    """

    def __init__(self, cv_rows=10_000, alphas=RIDGE_ALPHAS, random_state=0):
        self.cv_rows = cv_rows
        self.alphas = alphas
        self.random_state = random_state

    def fit(self, X, y):
        X, y = np.asarray(X, float), np.asarray(y, float)
        self.poly_ = PolynomialFeatures(2, include_bias=False).fit(X)
        Z = self.poly_.transform(X)
        self.scaler_ = StandardScaler().fit(Z)
        Z = self.scaler_.transform(Z)
        rows = (np.random.default_rng(self.random_state).choice(len(Z), self.cv_rows, replace=False)
                if len(Z) > self.cv_rows else slice(None))
        # One penalty per target column (orders and spend differ in scale and noise).
        self.alpha_ = RidgeCV(alphas=self.alphas, alpha_per_target=y.ndim > 1).fit(Z[rows], y[rows]).alpha_
        self.ridge_ = Ridge(alpha=self.alpha_).fit(Z, y)
        return self

    def predict(self, X):
        return self.ridge_.predict(self.scaler_.transform(self.poly_.transform(np.asarray(X, float))))


class _Zero(BaseEstimator, RegressorMixin):
    """Predicts 0: what every regression learns from a window in which nobody bought (the
    Poisson and Tweedie losses refuse an all-zero target)."""

    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.zeros(len(X))


def _mixture_weights(preds: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Non-negative least-squares weights constrained to sum to 1.

    A mixture only: free NNLS would also rescale the forecast to the validation window's
    level, and that window's level error (a few per cent either way) is not the next one's.
    The sum-to-one constraint is a heavily weighted extra row of the NNLS system.
    """
    big = 1e4 * max(float(np.abs(target).mean()), 1e-9) * np.sqrt(len(target))
    A = np.vstack([preds, np.full((1, preds.shape[1]), big)])
    b = np.r_[target, big]
    w = optimize.nnls(A, b, maxiter=50 * preds.shape[1])[0]
    return w / w.sum() if w.sum() > 0 else np.full(preds.shape[1], 1 / preds.shape[1])


class _PlattCalibrator:
    """Logistic map of log-odds: P = expit(a * logit(p) + b), fitted on a labelled window."""

    def fit(self, p, outcome):
        z = special.logit(np.clip(p, EPS, 1 - EPS))[:, None]
        if len(np.unique(outcome)) < 2:
            self.coef_, self.intercept_ = 1.0, 0.0
            return self
        lr = LogisticRegression(C=1e4).fit(z, outcome)
        self.coef_, self.intercept_ = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self

    def transform(self, p):
        z = special.logit(np.clip(p, EPS, 1 - EPS))
        return special.expit(self.coef_ * z + self.intercept_)


class _RatioQuantiles:
    """P10 / P90 as forecast x (10th / 90th percentile of actual / forecast) within the
    forecast's decile, learned on the validation window. Scale-free, so it carries over
    from the validation window to the forecast and to scaled horizons."""

    def fit(self, pred, actual, n_bins=10, low=0.1, high=0.9):
        pred = np.maximum(np.asarray(pred, float), 1e-9)
        ratio = np.asarray(actual, float) / pred
        self.edges_ = np.unique(np.quantile(pred, np.linspace(0, 1, n_bins + 1)[1:-1]))
        bins = np.searchsorted(self.edges_, pred, side="right")
        # "lower"/"higher" keep the band on observed values: counts are discrete.
        self.low_ = np.array([np.quantile(ratio[bins == b], low, method="lower") if (bins == b).any() else 0.0
                              for b in range(len(self.edges_) + 1)])
        self.high_ = np.array([np.quantile(ratio[bins == b], high, method="higher") if (bins == b).any() else 1.0
                               for b in range(len(self.edges_) + 1)])
        return self

    def transform(self, pred):
        pred = np.asarray(pred, float)
        bins = np.searchsorted(self.edges_, np.maximum(pred, 1e-9), side="right")
        return pred * self.low_[bins], pred * self.high_[bins]


class _SpendBand:
    """P10 / P90 of spend that agree with the purchases band: spend x (purchases P10 / expected
    purchases) x ``low_``, and likewise for P90 with ``high_``. A customer whose purchases band
    starts above 0 gets a spend band above 0, and one who may well buy nothing (purchases P10
    of 0) a spend P10 of 0. The two factors are learned on a backtest window so that about a
    tenth of the customers spend below the band and a tenth above it (order values vary on top
    of the number of orders)."""

    def fit(self, spend, orders, orders_low, orders_high, actual, low=0.1, high=0.9):
        rel_lo, rel_hi = self._relative(orders, orders_low, orders_high)
        spend, actual = np.asarray(spend, float), np.asarray(actual, float)
        n = len(actual)
        self.low_ = self._factor(actual, spend * rel_lo, int(round(low * n)), below=True)
        self.high_ = self._factor(actual, spend * rel_hi, int(round((1 - high) * n)), below=False)
        return self

    @staticmethod
    def _relative(orders, orders_low, orders_high):
        orders = np.asarray(orders, float)
        ok = orders > 1e-9
        safe = np.where(ok, orders, 1.0)
        return (np.where(ok, np.asarray(orders_low, float) / safe, 0.0),
                np.where(ok, np.asarray(orders_high, float) / safe, 1.0))

    @staticmethod
    def _factor(actual, bound, wanted, below):
        """The factor c putting ``wanted`` customers below c x bound (``below``) or above it."""
        if below:
            # Only a positive bound can have customers below it; c keeps that many under.
            ratio = np.sort(actual[bound > 0] / bound[bound > 0])
            return float(ratio[wanted]) if 0 < wanted < len(ratio) else 1.0
        always = int(((bound <= 0) & (actual > 0)).sum())  # a zero bound is passed by any spend
        ratio = np.sort(actual[bound > 0] / bound[bound > 0])
        extra = wanted - always
        if extra <= 0 or not len(ratio):
            return float(max(ratio[-1], 1.0)) if len(ratio) else 1.0
        return float(max(ratio[max(len(ratio) - extra - 1, 0)], 1.0))

    def transform(self, spend, orders, orders_low, orders_high):
        rel_lo, rel_hi = self._relative(orders, orders_low, orders_high)
        spend = np.asarray(spend, float)
        return np.minimum(spend * rel_lo * self.low_, spend), np.maximum(spend * rel_hi * self.high_, spend)


# The P10-P90 of a normal: +-1.2816 standard deviations.
Z90 = float(stats.norm.ppf(0.9))


def total_interval(total: float, sampling_sd: float, level_sd: float) -> tuple[float, float]:
    """P10 and P90 of a forecast total: log-normal around it, with the customers' independent
    spread (``sampling_sd``, in the total's unit) and a level error (``level_sd``, on the log
    scale) combined."""
    if total <= 0:
        return 0.0, 0.0
    sigma = float(np.sqrt(level_sd ** 2 + (sampling_sd / total) ** 2))
    return total * float(np.exp(-Z90 * sigma)), total * float(np.exp(Z90 * sigma))


# --------------------------------------------------------------------------- candidate outputs


def _fit_btyd(s: pd.DataFrame, random_state, with_spend: bool) -> dict:
    x = s["purchase_days"].to_numpy() - 1
    bg = BetaGeoModel(random_state).fit(x, s["active_span"], s["tenure"])
    pn = ParetoNBDModel(random_state).fit(x, s["active_span"], s["tenure"])
    gg = None
    if with_spend and (s["purchase_days"].to_numpy() > 1).any():  # Gamma-Gamma learns from repeat purchases
        repeat_value = (s["spend"] - s["first_day_spend"]).to_numpy() / np.maximum(x, 1)
        gg = GammaGammaModel(random_state).fit(x, repeat_value)
    pop_ratio = float(s["orders"].sum() / s["purchase_days"].sum()) if len(s) else 1.0
    return {"bgnbd": bg, "paretonbd": pn, "gg": gg, "orders_per_day": pop_ratio}


def _orders_per_day(s: pd.DataFrame, population: float) -> np.ndarray:
    return ((s["orders"].to_numpy() + RATIO_PRIOR_DAYS * population)
            / (s["purchase_days"].to_numpy() + RATIO_PRIOR_DAYS))


def _btyd_outputs(models: dict, s: pd.DataFrame, window: int) -> dict:
    """Orders, spend (None without amounts) and raw P(no purchase) over ``window`` days."""
    x = s["purchase_days"].to_numpy() - 1
    t_x, T = s["active_span"].to_numpy(), s["tenure"].to_numpy()
    ratio = _orders_per_day(s, models["orders_per_day"])
    value = None
    if models["gg"] is not None:
        value = models["gg"].conditional_expected_value(
            x, (s["spend"] - s["first_day_spend"]).to_numpy() / np.maximum(x, 1))
        if not np.all(np.isfinite(value)):  # q <= 1 (or nobody repeated): the prior mean is infinite
            value = np.where(np.isfinite(value), value, s["spend_per_day"].to_numpy())
    out = {}
    for name in BTYD:
        m = models[name]
        alive = m.probability_alive(x, t_x, T)
        days = np.nan_to_num(m.conditional_expected_purchases(window, x, t_x, T, alive=alive), nan=0.0)
        p0 = np.nan_to_num(m.probability_no_purchase(window, x, t_x, T, alive=alive), nan=1.0)
        out[name] = {"orders": days * ratio, "days": days, "spend": None if value is None else days * value,
                     "p0": np.clip(p0, 0, 1)}
    return out


# Least-squares regressions fit orders and spend as one two-column target: they share their
# design (the polynomial's 152 columns are built once) and give the same answer as two fits.
MULTI_OUTPUT = ("linear", "polynomial")


def _fit_regressors(X, y: pd.DataFrame, random_state, with_spend: bool) -> dict:
    if len(X) > MAX_TRAIN_ROWS:
        idx = np.random.default_rng(random_state).choice(len(X), MAX_TRAIN_ROWS, replace=False)
        X, y = X[idx], y.iloc[idx]
    targets = ("orders", "spend") if with_spend else ("orders",)
    Y = y.loc[:, list(targets)].to_numpy(float)
    models = {"targets": targets,
              # No prediction above the largest outcome seen in the training window: a log-link GLM
              # or a polynomial extrapolating from a short history can otherwise run to millions.
              "cap": Y.max(axis=0, initial=0.0)}
    for name in REGRESSORS:
        if name in MULTI_OUTPUT:
            models[name] = _regressor(name, "orders", random_state).fit(X, Y)
            continue
        for j, target in enumerate(targets):
            model = _Zero() if Y[:, j].sum() <= 0 else _regressor(name, target, random_state)
            models[name, target] = model.fit(X, Y[:, j])
    return models


def _regressor_outputs(models: dict, X, s: pd.DataFrame, orders_per_day: float) -> dict:
    ratio = _orders_per_day(s, orders_per_day)
    targets = models["targets"]
    out = {}
    for name in REGRESSORS:
        if name in MULTI_OUTPUT:
            pred = np.asarray(models[name].predict(X), float).reshape(len(X), len(targets))
        else:
            pred = np.column_stack([models[name, t].predict(X) for t in targets])
        pred = np.clip(pred, 0, models["cap"])
        orders = pred[:, 0]
        # Poisson P(0) of the implied purchase days: a score, calibrated afterwards.
        out[name] = {"orders": orders, "spend": pred[:, 1] if len(targets) > 1 else None,
                     "p0": np.exp(-orders / ratio)}
    return out


def _stack_inputs(raw: dict, calibrators: dict, names) -> tuple:
    orders = np.column_stack([raw[n]["orders"] for n in names])
    spend = (np.column_stack([raw[n]["spend"] for n in names]) if raw[names[0]]["spend"] is not None else None)
    probs = np.column_stack([calibrators[n].transform(raw[n]["p0"]) for n in names])
    return orders, spend, probs


def _fit_stack(orders, spend, probs, y: pd.DataFrame) -> tuple:
    """Mixture weights (non-negative, summing to 1) per target, by least squares on the window:
    for churn that is the Brier score of the mixed calibrated probabilities. A mixture cannot
    amplify one model's noise the way free stacking coefficients can."""
    churned = (y["orders"].to_numpy() == 0).astype(float)
    return (_mixture_weights(orders, y["orders"].to_numpy()),
            _mixture_weights(spend, y["spend"].to_numpy()) if spend is not None else None,
            _mixture_weights(probs, churned))


def _apply_stack(fitted, orders, spend, probs) -> dict:
    w_orders, w_spend, w_churn = fitted
    return {"orders": orders @ w_orders, "spend": None if spend is None else spend @ w_spend,
            "p0": np.clip(probs @ w_churn, 0, 1)}


def _naive_rate(s: pd.DataFrame, window: int) -> dict:
    """Repeat rate since the first purchase x window; churn = exp(-expected purchase days)."""
    tenure = np.maximum(s["tenure"].to_numpy(), 1.0)
    days = (s["purchase_days"].to_numpy() - 1) / tenure * window
    return {"orders": (s["orders"].to_numpy() - 1) / tenure * window,
            "spend": (s["spend"] - s["first_day_spend"]).to_numpy() / tenure * window,
            "p0": np.exp(-days)}


def _no_change(s: pd.DataFrame) -> dict:
    """The last window repeated; churn score = exp(-purchase days in the last window)."""
    return {"orders": s["orders_recent"].to_numpy(), "spend": s["spend_recent"].to_numpy(),
            "p0": np.exp(-s["days_recent"].to_numpy())}


def _scaled(out: dict, k: float) -> dict:
    """Window-L outputs scaled to k x L days: counts linearly, P(none) as a power."""
    return {"orders": None if out["orders"] is None else out["orders"] * k,
            "spend": None if out["spend"] is None else out["spend"] * k,
            "p0": None if out["p0"] is None else np.clip(out["p0"], 0, 1) ** k}


class _CandidateFit:
    """Every candidate fitted as of one cut (a day number).

    With history ``D`` days up to the cut and L = min(horizon, D // 3): BTYD models on all the
    purchases up to the cut; regressions learning "features as of cut - L -> the L days up to
    the cut". The churn calibrators and the ensemble learn on what the same candidates fitted
    one window earlier (BTYD on the data up to cut - L, regressions trained on cut - 2L ->
    cut - L) said about those L days: the way the published models are used, trained on one
    window and applied to the next. Features look back over the history their training cut
    has (capped at ``MAX_LOOKBACK_DAYS``), and a model is applied with the span it learned on.
    Below a week of L only the baselines and the uncalibrated BTYD models are available.
    """

    def __init__(self, ws, cut: int, horizon: int, random_state, with_spend: bool):
        first = ws.first_day(cut)
        if first is None:
            raise ValueError("no purchases on or before the cut")
        self.cut, self.horizon, self.with_spend = cut, horizon, with_spend
        L = int(min(horizon, (cut - first + 1) // 3))
        self.window = max(L, 1)
        self.btyd = ws.btyd(cut, random_state, with_spend)
        self.regressors, self.lookback, self.calibrators, self.stack, self.base_p0 = None, None, {}, None, None
        self.weights = {}
        if L < MIN_WINDOW_DAYS:
            return
        c1, c2 = cut - L, cut - 2 * L
        s1 = ws.summaries(c1, L)
        if s1.empty:
            return
        y1 = ws.outcomes(c1, cut, s1.index)
        churned = (y1["orders"].to_numpy() == 0).astype(int)
        # P(no purchase in L days) among the customers known L days before the cut.
        self.base_p0 = float(np.clip(churned.mean(), EPS, 1 - EPS))
        btyd_val = ws.btyd(c1, random_state, with_spend)
        trainable = len(ws.summaries(c2, L)) >= MIN_TRAIN_CUSTOMERS
        if trainable:
            lb_val = int(min(c2 - first + 1, MAX_LOOKBACK_DAYS))
            lb = int(min(c1 - first + 1, MAX_LOOKBACK_DAYS))
            reg_val = ws.regressors(c2, L, lb_val, random_state, with_spend)
            raw = ws.raw_outputs(reg_val, btyd_val, c1, L, lb_val)
            names = BTYD + REGRESSORS
        else:
            raw = _btyd_outputs(btyd_val, s1, L)
            names = BTYD
        self.calibrators = {n: _PlattCalibrator().fit(raw[n]["p0"], churned) for n in names}
        if trainable:
            self.stack = _fit_stack(*_stack_inputs(raw, self.calibrators, names), y1)
            self.weights = {"orders": dict(zip(names, map(float, self.stack[0]))),
                            "churn": dict(zip(names, map(float, self.stack[2])))}
            if self.stack[1] is not None:
                self.weights["spend"] = dict(zip(names, map(float, self.stack[1])))
            self.regressors = ws.regressors(c1, L, lb, random_state, with_spend)
            self.lookback = lb

    def outputs(self, ws, cut: int, horizon: int) -> tuple[pd.DataFrame, dict]:
        """(summaries as of ``cut``, name -> {"orders", "spend", "p0"} over the ``horizon`` days
        after it); arrays follow the summaries' index, None where a candidate has no such output."""
        L = self.window
        s = ws.summaries(cut, L)
        out = {"naive rate": _naive_rate(s, L)}
        if not self.with_spend:
            out["naive rate"]["spend"] = None
        if self.base_p0 is not None:
            out["base rate"] = {"orders": None, "spend": None, "p0": np.full(len(s), self.base_p0)}
        if self.regressors is not None:
            raw = ws.raw_outputs(self.regressors, self.btyd, cut, L, self.lookback)
        else:
            raw = _btyd_outputs(self.btyd, s, L)
        for name, r in raw.items():
            cal = self.calibrators.get(name)
            out[name] = {"orders": r["orders"], "spend": r["spend"],
                         "p0": cal.transform(r["p0"]) if cal is not None else r["p0"]}
        if self.stack is not None:
            names = BTYD + REGRESSORS
            out["ensemble"] = _apply_stack(self.stack, *_stack_inputs(raw, self.calibrators, names))
        out = {name: _scaled(o, horizon / L) for name, o in out.items()}
        if horizon != L:
            # BTYD models forecast any window themselves (with dropout over its whole length), so
            # they are not scaled; their calibration was learned for L days and is left out.
            out.update(_btyd_outputs(self.btyd, s, horizon))
        return s, out


# --------------------------------------------------------------------------- scores


def _scores(out: dict, y: pd.DataFrame) -> dict:
    """One candidate's figures on a window: {"orders", "spend", "churn"} (None where it has none)."""
    churned = (y["orders"].to_numpy() == 0).astype(int)
    return {
        "orders": None if out["orders"] is None else M.count_metrics(out["orders"], y["orders"]),
        "spend": None if out["spend"] is None else M.count_metrics(out["spend"], y["spend"]),
        "churn": None if out["p0"] is None else M.churn_metrics(out["p0"], churned),
    }


def _flat(scores: dict) -> dict:
    """{"orders_rmse": ..., "churn_auc": ...} for the backtest table."""
    out = {}
    for target, keys in (("orders", ("rmse", "mae", "total_pct_error", "spearman")),
                         ("spend", ("rmse", "mae", "total_pct_error", "spearman")),
                         ("churn", ("auc", "brier"))):
        figures = scores.get(target)
        if figures is not None:
            out.update({f"{target}_{k}": figures[k] for k in keys})
    return out


def _choose_targets(origins: list, with_spend: bool) -> dict:
    """Per target, the candidate to publish from the per-origin scores (see the module doc)."""
    choice = {}
    for target in TARGETS:
        if target == "spend" and not with_spend:
            continue
        order = ORDER[target]
        names = [n for n in order if all(n in o["scores"] and o["scores"][n][target] is not None for o in origins)]
        # Orders and spend by RMSE, churn by the Brier score (a proper score: the published
        # churn is a probability, and it is what the base rate is a baseline for), each relative
        # to its baseline's on the same window so that windows of different levels weigh alike.
        key, stat = (target, "rmse") if target != "churn" else ("churn", "brier")
        values = {n: [o["scores"][n][key][stat] for o in origins] for n in names}
        baseline = BASELINE_OF[target]
        losses = relative(values, baseline) if baseline in values else values
        label = f"{target} RMSE" if target != "churn" else "churn Brier score"
        picked = choose(losses, order, label=f"{label} relative to the {baseline}'s")
        metric = f"{label} ÷ the {baseline}'s" if baseline in values else label
        if picked is None:
            continue
        choice[target] = {
            "metric": metric, "lower_is_better": True, "chosen": picked["chosen"], "best": picked["best"],
            "baseline": BASELINE_OF[target], "is_baseline": picked["chosen"] in BASELINES,
            "order": picked["order"], "mean": picked["mean"], "spread": picked["spread"], "origins": picked["origins"],
            "reason": picked["reason"],
        }
    return choice


# --------------------------------------------------------------------------- forecaster


class CustomerForecaster(BaseEstimator):
    """Per-customer forecasts over (as_of, as_of + horizon_days], chosen on rolling backtests.

    Parameters
    ----------
    horizon_days : forecast window length in days.
    algorithm : "auto" (per target, the simplest candidate within the spread of the best on
        the backtest windows) or one of ``ALGORITHMS`` for every target it has an output for.
    clv_days : the CLV window (expected purchase amount in the next ``clv_days`` days).
    random_state : seed for every subsample and tree model.
    n_threads : BLAS / OpenMP threads while fitting and predicting (None: the libraries'
        default). 1 by default: on a shared 2-core worker OpenMP spin-waiting made a fit
        up to 80x slower under load, while a second thread gains under 2x when idle.
    max_origins : at most this many backtest windows.

    Learned attributes: ``as_of_``, ``plan_`` (the :class:`~ml.pipelines.backtest.BacktestPlan`),
    ``with_spend_`` (amounts present), ``choice_`` (target -> choice record), ``chosen_``
    (target -> published candidate), ``targets_`` (target -> what is forecast and why),
    ``report_`` (JSON-ready backtest report: per-origin scores of every candidate, the choice,
    the published forecast's figures on the most recent window), ``window_days_`` (label window
    of the final fit).
    """

    def __init__(self, horizon_days=90, algorithm="auto", clv_days=365, random_state=0, n_threads=1,
                 max_origins=MAX_ORIGINS):
        self.horizon_days = horizon_days
        self.algorithm = algorithm
        self.clv_days = clv_days
        self.random_state = random_state
        self.n_threads = n_threads
        self.max_origins = max_origins

    # ------------------------------------------------------------------ fit

    def fit(self, interactions: pd.DataFrame, as_of, progress=None) -> CustomerForecaster:
        """Backtest every candidate, choose, and fit on purchase rows with occurred_at < as_of + 1 day.

        ``progress``: optional callable(fraction done 0..1, stage in words), called between steps.
        """
        with threadpool_limits(limits=self.n_threads):
            return self._fit(_Workspace(interactions, as_of), as_of, progress or (lambda fraction, stage: None))

    def _fit(self, ws, as_of, progress):
        if self.algorithm != "auto" and self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be 'auto' or one of {ALGORITHMS}")
        self.as_of_ = pd.Timestamp(as_of).normalize()
        a = _day_number(self.as_of_)
        first = ws.first_day(a)
        if first is None:
            raise ValueError("no purchases on or before as_of")
        H = int(self.horizon_days)
        share = amount_share(ws.interactions, self.as_of_)
        self.with_spend_ = share >= MIN_AMOUNT_SHARE
        self.plan_ = plan_backtest(pd.Timestamp(first, unit="D"), self.as_of_, H, max_origins=self.max_origins)
        W = self.plan_.window_days

        origins, recent = [], []
        steps = len(self.plan_.cuts) + 1
        for k, cut in enumerate(self.plan_.cuts):
            progress(k / steps, f"backtest {k + 1} of {steps - 1}: every candidate trained up to {cut.date()}, "
                                f"scored on the next {W} days")
            c = _day_number(cut)
            fit = _CandidateFit(ws, c, W, self.random_state, self.with_spend_)
            s, outs = fit.outputs(ws, c, W)
            y = ws.outcomes(c, c + W, s.index)
            origins.append({"cut": c, "customers": int(len(s)),
                            "scores": {n: _scores(o, y) for n, o in outs.items()}})
            recent.append((s, outs, y))
        self.choice_ = _choose_targets(origins, self.with_spend_) if origins else {}
        progress((steps - 1) / steps, "training the chosen candidates on all the history")
        self.final_ = _CandidateFit(ws, a, H, self.random_state, self.with_spend_)
        self.window_days_ = self.final_.window
        _, final_outs = self.final_.outputs(ws, a, H)
        self.chosen_, notes = self._published(final_outs)
        self.targets_ = self._targets(share, notes, ws)

        # P10-P90: the chosen candidate's errors on the most recent backtest window (scale-free
        # ratios, so they carry over to the horizon); the report scores bands learned on the
        # window before it on that window, so that its coverage is an honest one.
        self.intervals_ = self._intervals(*recent[0]) if recent else None
        report_bands = self._intervals(*recent[1]) if len(recent) > 1 else None
        self.report_ = self._report(origins, recent, report_bands)
        return self

    def _published(self, outs: dict) -> tuple[dict, dict]:
        """Target -> candidate to publish, and a note where it differs from the backtest's choice."""
        chosen, notes = {}, {}
        for target in TARGETS:
            if target == "spend" and not self.with_spend_:
                continue
            key = "p0" if target == "churn" else target
            if self.algorithm != "auto" and outs.get(self.algorithm, {}).get(key) is not None:
                chosen[target] = self.algorithm
                notes[target] = "set by the caller"
                continue
            if not self.plan_.validated:
                chosen[target] = UNVALIDATED
                notes[target] = self.plan_.reason
                continue
            pick = self.choice_.get(target, {}).get("chosen")
            if pick is None or outs.get(pick, {}).get(key) is None:
                # Cannot happen with the windows of plan_backtest (the final fit sees more history
                # than any backtest one), but a forecast must never be missing: the baseline.
                notes[target] = f"{pick or 'no candidate'} could not be fitted on all the history; baseline instead"
                pick = BASELINE_OF[target] if outs.get(BASELINE_OF[target], {}).get(key) is not None else "naive rate"
            chosen[target] = pick
        return chosen, notes

    def _targets(self, share: float, notes: dict, ws) -> dict:
        targets = {}
        no_amounts = (f"no amounts: {100 * share:.0f} % of purchases carry an amount (at least "
                      f"{100 * MIN_AMOUNT_SHARE:.0f} % needed), so spend, CLV and refund rate are not forecast")
        for target in TARGETS:
            if target not in self.chosen_:
                targets[target] = {"forecast": False, "reason": no_amounts}
                continue
            name = self.chosen_[target]
            basis = ("not validated" if not self.plan_.validated and self.algorithm == "auto"
                     else "baseline" if name in BASELINES else "model")
            reason = notes.get(target) or self.choice_.get(target, {}).get("reason", "")
            targets[target] = {"forecast": True, "algorithm": name, "basis": basis, "reason": reason}
        if self.with_spend_:
            targets["clv"] = {"forecast": True, "algorithm": f"{self.chosen_['spend']} x BG/NBD's {self.clv_days}-day "
                              "stretch", "basis": targets["spend"]["basis"]}
            has_refunds = len(ws.refunds(self.as_of_)) > 0
            targets["refund_rate"] = {
                "forecast": True, "algorithm": "own refunded share, shrunk to the base rate",
                "basis": "model" if has_refunds else "baseline",
                "reason": "" if has_refunds else "no refunds recorded: 0 for everyone"}
        else:
            targets["clv"] = {"forecast": False, "reason": no_amounts}
            targets["refund_rate"] = {"forecast": False, "reason": no_amounts}
        return targets

    def _intervals(self, s, outs, y) -> dict:
        """Bands learned on one backtest window: purchases by decile ratios, spend from them."""
        orders = outs[self.chosen_["orders"]]["orders"]
        out = {"orders": _RatioQuantiles().fit(orders, y["orders"])}
        if "spend" in self.chosen_:
            lo, hi = out["orders"].transform(orders)
            out["spend"] = _SpendBand().fit(outs[self.chosen_["spend"]]["spend"], orders, lo, hi, y["spend"])
        return out

    @staticmethod
    def _bands(bands, orders, spend):
        """(orders P10, P90, spend P10, P90) from fitted bands (spend ones NaN without spend)."""
        lo, hi = bands["orders"].transform(orders)
        if "spend" not in bands or spend is None:
            nan = np.full(len(orders), np.nan)
            return lo, hi, nan, nan
        return (lo, hi, *bands["spend"].transform(spend, orders, lo, hi))

    def basis_label(self) -> str:
        """What produced the forecast, in a few words: "model: ensemble", "baseline: naive rate",
        "model: ensemble for orders, bgnbd for spend and churn", "not yet validated: 18 days of history"."""
        if not self.plan_.validated and self.algorithm == "auto":
            return f"not yet validated: {self.plan_.history_days} days of history"
        by_name: dict = {}
        for target, name in self.chosen_.items():
            by_name.setdefault(name, []).append(target)
        if len(by_name) == 1:
            name = next(iter(by_name))
            return f"baseline: {name}" if name in BASELINES else f"model: {name}"
        return "model: " + ", ".join(
            f"{name}{' (baseline)' if name in BASELINES else ''} for {' and '.join(targets)}"
            for name, targets in by_name.items())

    def summary(self) -> str:
        """One line for the run: what is published, on which evidence."""
        basis = {self.targets_[t]["basis"] for t in self.chosen_}
        label = self.basis_label()
        missing = [t for t in ("spend",) if not self.targets_[t]["forecast"]]
        tail = "; spend, CLV and refund rate not forecast (no amounts)" if missing else ""
        if "not validated" in basis:
            return f"{label}; BG/NBD fitted on all the history{tail}"
        verdict = ("the baseline: no model beat it consistently" if basis == {"baseline"}
                   else label)
        return f"{verdict}; {self.plan_.reason}{tail}"

    # ------------------------------------------------------------------ report

    def _report(self, origins: list, recent: list, bands) -> dict:
        """JSON-ready: the backtest table and choice, and the published forecast's figures on the
        most recent backtest window (what the pages call its accuracy)."""
        plan = self.plan_.to_json()
        for entry, o in zip(plan["origins"], origins):
            entry["customers"] = o["customers"]
            entry["scores"] = {n: _flat(sc) for n, sc in o["scores"].items()}
        plan["choice"] = self.choice_
        report = {"as_of": str(self.as_of_.date()), "horizon_days": int(self.horizon_days),
                  "window_days": int(self.plan_.window_days), "backtest": plan,
                  "chosen": dict(self.chosen_), "targets": self.targets_,
                  "outcome": {"basis": ("not validated" if not self.plan_.validated and self.algorithm == "auto"
                                        else "baseline" if all(self.chosen_[t] in BASELINES for t in self.chosen_)
                                        else "model"),
                              "summary": self.summary()}}
        if not recent:
            return report
        report["portfolio"] = self._portfolio(recent)
        s, outs, y = recent[0]
        published = {"orders": outs[self.chosen_["orders"]]["orders"],
                     "spend": outs[self.chosen_["spend"]]["spend"] if "spend" in self.chosen_ else None,
                     "p0": outs[self.chosen_["churn"]]["p0"]}
        model = _scores(published, y)
        churned = (y["orders"].to_numpy() == 0).astype(int)
        model["churn"]["reliability"] = M.reliability_table(published["p0"], churned)
        if bands is not None:
            lo, hi, s_lo, s_hi = self._bands(bands, published["orders"], published["spend"])
            model["coverage"] = {"purchases_p10_p90": M.interval_coverage(lo, hi, y["orders"])}
            if published["spend"] is not None:
                model["coverage"]["spend_p10_p90"] = M.interval_coverage(s_lo, s_hi, y["spend"])
        naive = _scores(outs["naive rate"], y)
        change = _no_change(s)
        if published["spend"] is None:
            change["spend"] = None
        report.update({
            "cut": self.plan_.cuts[0].date().isoformat(), "n_customers": int(len(s)),
            "model": model,
            "candidates": {n: _scores(o, y) for n, o in outs.items()},
            "baselines": {"naive rate": naive, "no change": _scores(change, y)},
            "series": {"orders": M.decile_series(published["orders"], y["orders"])},
            "beats_naive": bool(model["orders"]["rmse"] <= naive["orders"]["rmse"]),
        })
        if published["spend"] is not None:
            report["series"]["spend"] = M.decile_series(published["spend"], y["spend"])
        return report

    def _portfolio(self, recent: list) -> dict:
        """The total's P10-P90 and how often it held the actual total on the backtest windows.

        A total is uncertain for two reasons: customers buy independently (the spread of the
        sum: square root of the summed variances, each read off the customer's P10-P90 band)
        and the whole forecast may be off in level (a season, a trend), which no sum of
        customers shows. The level part is the root mean square of log(actual / forecast
        total) over the windows; the interval on a window uses the other windows' level errors,
        so its coverage is an honest check (the pages' range is the same formula on all of them).
        """
        out = {}
        for target in ("orders", "spend"):
            if target not in self.chosen_:
                continue
            totals = []
            for _, outs, y in recent:
                orders = outs[self.chosen_["orders"]]["orders"]
                spend = outs[self.chosen_["spend"]]["spend"] if "spend" in self.chosen_ else None
                lo, hi, s_lo, s_hi = self._bands(self.intervals_, orders, spend)
                pred, width = (orders, hi - lo) if target == "orders" else (spend, s_hi - s_lo)
                totals.append((float(pred.sum()), float(y[target].sum()),
                               float(np.sqrt(np.sum(width ** 2)) / (2 * Z90))))
            logs = [np.log(a / p) for p, a, _ in totals if p > 0 and a > 0]
            windows = []
            for k, (cut, (p, a, sd)) in enumerate(zip(self.plan_.cuts, totals)):
                others = [v for j, v in enumerate(logs) if j != k] if len(logs) == len(totals) else logs
                lo, hi = total_interval(p, sd, float(np.sqrt(np.mean(np.square(others)))) if others else 0.0)
                windows.append({"cut": cut.date().isoformat(), "predicted": p, "actual": a, "low": lo, "high": hi,
                                "covered": bool(lo <= a <= hi),
                                "total_pct_error": 100 * (p - a) / a if a > 0 else None})
            out[target] = {"level_sd": float(np.sqrt(np.mean(np.square(logs)))) if logs else 0.0,
                           "windows": windows, "coverage": float(np.mean([w["covered"] for w in windows]))}
        return out

    # ------------------------------------------------------------------ predict

    def predict_candidates(self, interactions: pd.DataFrame, as_of) -> dict:
        """name -> DataFrame(expected_purchases, expected_spend, churn_probability), index customer_id
        (NaN where a candidate has no such output), from the final fit."""
        with threadpool_limits(limits=self.n_threads):
            ws = _Workspace(interactions, as_of)
            s, outs = self.final_.outputs(ws, _day_number(as_of), int(self.horizon_days))
            nan = np.full(len(s), np.nan)
            return {n: pd.DataFrame({"expected_purchases": nan if o["orders"] is None else o["orders"],
                                     "expected_spend": nan if o["spend"] is None else o["spend"],
                                     "churn_probability": nan if o["p0"] is None else o["p0"]}, index=s.index)
                    for n, o in outs.items()}

    def predict(self, interactions: pd.DataFrame, as_of) -> pd.DataFrame:
        """Forecasts as of ``as_of`` for every customer with a purchase on or before it.

        Index customer_id; columns expected_purchases (orders), expected_spend, churn_probability,
        clv (purchase amount over ``clv_days``), expected_refund_rate, purchases_p10/p90,
        spend_p10/p90 (NaN for the money columns when spend is not forecast), basis, factors
        (list of short strings).
        """
        with threadpool_limits(limits=self.n_threads):
            return self._predict(_Workspace(interactions, as_of), as_of)

    def _predict(self, ws, as_of):
        cut = _day_number(pd.Timestamp(as_of).normalize())
        H = int(self.horizon_days)
        s, outs = self.final_.outputs(ws, cut, H)
        columns = ["expected_purchases", "expected_spend", "churn_probability", "clv", "expected_refund_rate",
                   "purchases_p10", "purchases_p90", "spend_p10", "spend_p90", "basis", "factors"]
        if s.empty:
            return pd.DataFrame(columns=columns)
        nan = np.full(len(s), np.nan)
        orders = outs[self.chosen_["orders"]]["orders"]
        p0 = np.clip(outs[self.chosen_["churn"]]["p0"], 0, 1)
        spend = outs[self.chosen_["spend"]]["spend"] if "spend" in self.chosen_ else nan
        if self.intervals_ is not None:
            p10, p90, s10, s90 = self._bands(self.intervals_, orders, spend if "spend" in self.chosen_ else None)
        else:  # nothing held back: a Poisson band, spend scaled alongside
            p10, p90 = stats.poisson.ppf(0.1, orders), stats.poisson.ppf(0.9, orders)
            unit = np.divide(spend, orders, out=np.zeros_like(orders), where=orders > 0)
            s10, s90 = p10 * unit, p90 * unit
        res = pd.DataFrame({
            "expected_purchases": orders,
            "expected_spend": spend,
            "churn_probability": p0,
            "purchases_p10": np.minimum(p10, orders),
            "purchases_p90": np.maximum(p90, orders),
            "spend_p10": np.minimum(s10, spend),
            "spend_p90": np.maximum(s90, spend),
        }, index=s.index)
        # CLV: this forecast's spend, stretched to clv_days by BG/NBD's own ratio of expected
        # purchases over clv_days to those over the horizon (it accounts for dropout).
        x = s["purchase_days"].to_numpy() - 1
        bg = self.final_.btyd["bgnbd"]
        e_h = bg.conditional_expected_purchases(H, x, s["active_span"], s["tenure"])
        e_clv = bg.conditional_expected_purchases(self.clv_days, x, s["active_span"], s["tenure"])
        stretch = np.divide(e_clv, e_h, out=np.full(len(s), self.clv_days / H), where=e_h > 1e-12)
        if self.with_spend_:
            refunds = ws.refunds(pd.Timestamp(as_of).normalize()).reindex(s.index, fill_value=0.0).to_numpy()
            spend_hist = s["spend"].to_numpy()
            base = refunds.sum() / spend_hist.sum() if spend_hist.sum() > 0 else 0.0
            # Shrink towards the base rate with the weight of a median customer's spend.
            prior = float(np.median(spend_hist))
            refund_rate = np.clip((refunds + prior * base) / np.maximum(spend_hist + prior, 1e-12), 0, 1)
        else:
            refund_rate = nan
        res.insert(3, "clv", spend * stretch)
        res.insert(4, "expected_refund_rate", refund_rate)
        own = np.where(s["purchase_days"].to_numpy() >= 2, "own history", "population averages")
        res["basis"] = [f"{self.basis_label()} · {o}"[:100] for o in own]
        res["factors"] = explain_factors(s, self.window_days_, H, with_spend=self.with_spend_)
        return res


class _Workspace:
    """The purchase log of one call, reduced once to a daily table, plus a memo of what is
    derived from it: summaries and designs per cut, BTYD fits per cut, regressor fits per
    (training cut, window, lookback) and their outputs per application cut.

    Everything memoised depends only on the data up to its own cut and on the parameters in
    its key, so a memo hit returns exactly what a fresh computation would; the backtest
    origins and the final fit share whatever they have in common.
    """

    def __init__(self, interactions, as_of):
        self.interactions = interactions
        self.as_of = pd.Timestamp(as_of).normalize()
        self.daily = daily_purchases(interactions, self.as_of)
        self.max_day = _day_number(self.as_of)
        self.memo = {}

    def _get(self, key, make):
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def first_day(self, cut):
        day = self.daily["day"].to_numpy()
        day = day[day <= cut]
        return int(day.min()) if len(day) else None

    def summaries(self, cut, window):
        return self._get(("summaries", cut, window), lambda: customer_summaries(self.daily, cut, window))

    def outcomes(self, start, end, customers):
        if end > self.max_day:
            raise ValueError("the outcome window ends after the data's as_of")
        return window_outcomes(self.daily, start, end, customers)

    def features(self, cut, window, lookback):
        customers = self.summaries(cut, window).index
        return self._get(("features", cut, window, lookback),
                         lambda: regression_features(self.daily, cut, window, lookback, customers))

    def btyd(self, cut, random_state, with_spend):
        # BTYD uses only the window-independent columns of the summaries: keyed on the cut.
        return self._get(("btyd", cut, random_state, with_spend),
                         lambda: _fit_btyd(self.summaries(cut, 1), random_state, with_spend))

    def regressors(self, train_cut, window, lookback, random_state, with_spend):
        """Regressors learning "features as of train_cut -> (train_cut, train_cut + window]"."""
        def make():
            X = self.features(train_cut, window, lookback)
            y = self.outcomes(train_cut, train_cut + window, self.summaries(train_cut, window).index)
            return _fit_regressors(X, y, random_state, with_spend)
        return self._get(("regressors", train_cut, window, lookback, random_state, with_spend), make)

    def raw_outputs(self, reg_models, btyd_models, cut, window, lookback):
        """Every model's window outputs as of ``cut``: regressions (features over ``lookback``) and BTYD."""
        # The models are kept in the value so that their ids stay theirs while memoised.
        def make():
            s = self.summaries(cut, window)
            out = _regressor_outputs(reg_models, self.features(cut, window, lookback), s,
                                     btyd_models["orders_per_day"])
            out.update(_btyd_outputs(btyd_models, s, window))
            return reg_models, btyd_models, out
        return self._get(("raw", id(reg_models), id(btyd_models), cut, window, lookback), make)[2]

    def refunds(self, as_of):
        return self._get(("refunds", as_of), lambda: refunds_by_customer(self.interactions, as_of))


# --------------------------------------------------------------------------- factors


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


def explain_factors(s: pd.DataFrame, window: int, horizon: int, top=3, with_spend=True) -> list[list[str]]:
    """The ``top`` statements that set this customer furthest from the median customer.

    Each candidate statement gets a strength = |log of the customer's value / the median|;
    the strongest ones are kept. Built column-wise (no loop over customers): the strengths
    pick each customer's statements first, and a statement's text is only built for the
    customers who get it. Without amounts (``with_spend`` False) order value is never quoted.
    """
    n = len(s)
    if not n:
        return []
    med = s.median(numeric_only=True)
    days = s["purchase_days"].to_numpy()
    recent = s["orders_recent"].to_numpy()
    prev = s["orders_previous"].to_numpy()
    gap = np.where(days > 1, s["active_span"].to_numpy() / np.maximum(days - 1, 1), np.nan)
    med_gap = float(np.nanmedian(gap)) if np.isfinite(gap).any() else np.nan
    recency = s["recency"].to_numpy()
    value = s["spend"].to_numpy() / np.maximum(s["orders"].to_numpy(), 1)
    med_value = float(np.median(value))
    med_recent = float(med["orders_recent"])
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
        np.abs(ratio(days, float(med["purchase_days"]))) * 0.6,
    ])
    order = np.argsort(-strength, axis=1, kind="stable")[:, :top]
    out = np.empty(order.shape, dtype=object)
    for k, text in enumerate(statements):
        rows, cols = np.nonzero(order == k)
        if len(rows):
            out[rows, cols] = text(rows).astype(object)
    return out.tolist()


# --------------------------------------------------------------------------- retrain entry point


def fit_evaluate(interactions: pd.DataFrame, as_of, horizon_days=90, progress=None,
                 **params) -> tuple[CustomerForecaster, dict]:
    """``CustomerForecaster(horizon_days, **params).fit(interactions, as_of)`` and its report.

    What a retrain needs: the model to publish and its backtest report (``report_``): every
    candidate's figures on each rolling origin, the choice per target and why, what is
    forecast and on which basis, and the published combination's figures on the most recent
    held-back window ("model", next to the "baselines" and every "candidate" there).
    """
    model = CustomerForecaster(horizon_days=horizon_days, **params).fit(interactions, as_of, progress=progress)
    return model, model.report_


def evaluate_holdout(interactions: pd.DataFrame, as_of, horizon_days=90, **params) -> dict:
    """The backtest report of a fit as of ``as_of`` (see :func:`fit_evaluate`)."""
    return fit_evaluate(interactions, as_of, horizon_days, **params)[1]
