"""Customer forecasts: orders, spend, churn, CLV and refund rate over the next ``horizon_days``.

Input: the ``interactions`` frame of :mod:`ml.pipelines.schema` (customer_id, type,
occurred_at, amount, order_ref; purchases and refunds are used, other types are ignored).
Money is in the unit of ``amount``; time in days. ``as_of`` is a date, the last day a model
may see, inclusive: only rows with ``occurred_at < as_of + 1 day`` are ever read.

For every customer with a purchase on or before ``as_of`` the forecast covers the window
(as_of, as_of + horizon_days]. An *order* is a distinct ``order_ref`` among a customer's
purchase rows, counted on the first day it appears; a *purchase day* is a day with at
least one purchase row.

How the model is chosen (an inner backtest, nothing tuned by hand on a test set):

1. label window L = horizon_days, shortened when the history is too short for three
   windows (L = history / 3; forecasts are then scaled by horizon / L);
2. the regressors learn "features as of A - 2L -> what happened in (A - 2L, A - L]";
   BTYD models are fitted on data up to A - L;
3. every candidate forecasts (A - L, A], which has really happened: these are the
   validation figures in ``candidates_``. An ensemble (non-negative least squares weights
   for orders and spend, a logistic stack for churn) is scored by 2-fold cross-fitting
   over customers so that its figures are as honest as the single models';
4. the regressors are refitted on "features as of A - L -> (A - L, A]", the BTYD models
   on everything up to A, and the chosen candidate forecasts from A.

A retrain needs honest holdout metrics (a model fitted as of A - horizon, scored on the
horizon that followed) and the model to publish: ``fit_evaluate`` returns both from one
pass. The holdout fit's final BTYD models are the published fit's validation ones (and so
are its regressors once both fits use the full lookback), so that work is shared.

Cost (100k customers, 2M rows, one thread): the log is reduced once per call to one row
per customer-day with a single sort; regressors train on at most ``MAX_TRAIN_ROWS``
customers and BTYD models on at most ``btyd.MAX_FIT_CUSTOMERS``; prediction touches every
customer. ``bench/forecast_speed.py`` measures it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression, PoissonRegressor, TweedieRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR
from threadpoolctl import threadpool_limits

from ml.pipelines import metrics as M
from ml.pipelines.btyd import BetaGeoModel, GammaGammaModel, ParetoNBDModel

REGRESSORS = ("linear", "svr", "gbm", "glm")
BTYD = ("bgnbd", "paretonbd")
ALGORITHMS = REGRESSORS + BTYD + ("ensemble",)

# Below a week a window holds too few purchases to compare models on; the forecaster then
# falls back to BG/NBD, which needs no labelled window.
MIN_WINDOW_DAYS = 7
# Regressors learn a handful of coefficients or shallow trees, so a seeded subsample of
# 50k customers estimates them about as well as all of them: on a 100k-customer synthetic
# log the inner validation moved by under 1% for every candidate (gbm orders RMSE 1.580 ->
# 1.585, ensemble 1.5709 -> 1.5708) and the chosen model did not change, while the
# gradient boosting fits (the largest cost of a fit) took half the time.
MAX_TRAIN_ROWS = 50_000
# SVR training is O(n^2) and its prediction O(n x support vectors); 500 rows keep both
# to about a second for 100k customers (SVR rarely earns ensemble weight anyway).
MAX_SVR_ROWS = 500
# Regression features look back at most two years: older behaviour says little about the
# next window, and the training cut must be able to see the same span.
MAX_LOOKBACK_DAYS = 730
# Pseudo purchase days behind a customer's orders-per-day ratio: with 2-3 days of history
# the raw ratio is mostly noise, so it is pulled towards the population ratio.
RATIO_PRIOR_DAYS = 5.0
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
    # Money: pandas' compensated sum over the rows in input order. A plain sum in sorted
    # order differs by ~1e-14, enough to break ties between customers' totals and move a
    # tree split, so results would depend on how rows happen to be grouped.
    row_group = np.empty_like(group)
    row_group[order] = group
    money = pd.DataFrame({"spend": interactions["amount"].to_numpy(float)[mask],
                          "quantity": interactions["quantity"].to_numpy(float)[mask]})
    money = money.groupby(row_group, sort=True).sum()
    spend, quantity = money["spend"].to_numpy(), money["quantity"].to_numpy()
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
    """Refunded amount (positive) per customer up to ``as_of`` inclusive."""
    mask = ((interactions["type"] == "refund") & (interactions["occurred_at"] < _cutoff(as_of))).to_numpy()
    amounts = pd.Series(interactions["amount"].to_numpy()[mask].astype(float),
                        index=interactions["customer_id"].to_numpy()[mask])
    return amounts.abs().groupby(level=0).sum()


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


# --------------------------------------------------------------------------- forecaster


class CustomerForecaster(BaseEstimator):
    """Per-customer forecasts over (as_of, as_of + horizon_days].

    Parameters
    ----------
    horizon_days : forecast window length in days.
    algorithm : "auto" (best candidate on the inner validation window) or one of
        ``ALGORITHMS``: linear, svr, gbm, glm, bgnbd, paretonbd, ensemble.
    clv_days : the CLV window (expected purchase amount in the next ``clv_days`` days).
    random_state : seed for every subsample and tree model.
    n_threads : BLAS / OpenMP threads while fitting and predicting (None: the libraries'
        default). 1 by default: on a shared 2-core worker OpenMP spin-waiting made a fit
        up to 80x slower under load, while a second thread gains under 2x when idle.

    Learned attributes: ``as_of_``, ``window_days_`` (label window L), ``lookback_days_`` (days
    behind the regression features), ``candidates_``
    (name -> validation metrics), ``chosen_``, ``ensemble_weights_``, ``btyd_params_``,
    ``validation_`` (the chosen model's interval coverage on the validation window).
    """

    def __init__(self, horizon_days=90, algorithm="auto", clv_days=365, random_state=0, n_threads=1):
        self.horizon_days = horizon_days
        self.algorithm = algorithm
        self.clv_days = clv_days
        self.random_state = random_state
        self.n_threads = n_threads

    # ------------------------------------------------------------------ candidate outputs

    @staticmethod
    def _fit_btyd(s, random_state):
        x = s["purchase_days"].to_numpy() - 1
        bg = BetaGeoModel(random_state).fit(x, s["active_span"], s["tenure"])
        pn = ParetoNBDModel(random_state).fit(x, s["active_span"], s["tenure"])
        repeat_value = (s["spend"] - s["first_day_spend"]).to_numpy() / np.maximum(x, 1)
        gg = GammaGammaModel(random_state).fit(x, repeat_value)
        pop_ratio = float(s["orders"].sum() / s["purchase_days"].sum())
        return {"bgnbd": bg, "paretonbd": pn, "gg": gg, "orders_per_day": pop_ratio}

    @staticmethod
    def _btyd_outputs(models, s, window):
        """Orders, spend and raw P(no purchase) over ``window`` days for each BTYD model."""
        x = s["purchase_days"].to_numpy() - 1
        t_x, T = s["active_span"].to_numpy(), s["tenure"].to_numpy()
        ratio = ((s["orders"].to_numpy() + RATIO_PRIOR_DAYS * models["orders_per_day"])
                 / (s["purchase_days"].to_numpy() + RATIO_PRIOR_DAYS))
        gg = models["gg"]
        value = gg.conditional_expected_value(x, (s["spend"] - s["first_day_spend"]).to_numpy() / np.maximum(x, 1))
        if not np.all(np.isfinite(value)):  # q <= 1: the prior mean is infinite
            value = np.where(np.isfinite(value), value, s["spend_per_day"].to_numpy())
        out = {}
        for name in BTYD:
            m = models[name]
            days = np.nan_to_num(m.conditional_expected_purchases(window, x, t_x, T), nan=0.0)
            p0 = np.nan_to_num(m.probability_no_purchase(window, x, t_x, T), nan=1.0)
            out[name] = {"orders": days * ratio, "days": days, "spend": days * value,
                         "p0": np.clip(p0, 0, 1)}
        return out

    def _fit_regressors(self, X, y):
        if len(X) > MAX_TRAIN_ROWS:
            idx = np.random.default_rng(self.random_state).choice(len(X), MAX_TRAIN_ROWS, replace=False)
            X, y = X[idx], y.iloc[idx]
        models = {}
        for name in REGRESSORS:
            for target in ("orders", "spend"):
                models[name, target] = _regressor(name, target, self.random_state).fit(X, y[target].to_numpy())
        return models

    @staticmethod
    def _regressor_outputs(models, X, s, orders_per_day):
        ratio = ((s["orders"].to_numpy() + RATIO_PRIOR_DAYS * orders_per_day)
                 / (s["purchase_days"].to_numpy() + RATIO_PRIOR_DAYS))
        out = {}
        for name in REGRESSORS:
            orders = np.clip(models[name, "orders"].predict(X), 0, None)
            spend = np.clip(models[name, "spend"].predict(X), 0, None)
            # Poisson P(0) of the implied purchase days: a score, calibrated afterwards.
            out[name] = {"orders": orders, "spend": spend, "p0": np.exp(-orders / ratio)}
        return out

    def _raw_outputs(self, reg_models, btyd_models, X, s, window):
        out = self._regressor_outputs(reg_models, X, s, btyd_models["orders_per_day"])
        out.update(self._btyd_outputs(btyd_models, s, window))
        return out

    # ------------------------------------------------------------------ ensemble

    @staticmethod
    def _stack_inputs(raw, calibrators):
        names = REGRESSORS + BTYD
        orders = np.column_stack([raw[n]["orders"] for n in names])
        spend = np.column_stack([raw[n]["spend"] for n in names])
        logits = np.column_stack([special.logit(np.clip(calibrators[n].transform(raw[n]["p0"]), EPS, 1 - EPS))
                                  for n in names])
        return orders, spend, logits

    @staticmethod
    def _fit_stack(orders, spend, logits, y):
        w_orders = _mixture_weights(orders, y["orders"].to_numpy())
        w_spend = _mixture_weights(spend, y["spend"].to_numpy())
        churned = (y["orders"].to_numpy() == 0).astype(int)
        if len(np.unique(churned)) < 2:
            stack = None
        else:
            stack = LogisticRegression(C=1.0).fit(logits, churned)
        return w_orders, w_spend, stack

    @staticmethod
    def _apply_stack(fitted, orders, spend, logits):
        w_orders, w_spend, stack = fitted
        p0 = (stack.predict_proba(logits)[:, 1] if stack is not None
              else special.expit(logits.mean(axis=1)))
        return {"orders": orders @ w_orders, "spend": spend @ w_spend, "p0": p0}

    # ------------------------------------------------------------------ fit

    def fit(self, interactions: pd.DataFrame, as_of) -> CustomerForecaster:
        """Learn from purchase rows with occurred_at < as_of + 1 day (see the module doc)."""
        with threadpool_limits(limits=self.n_threads):
            return self._fit(_Workspace(interactions, as_of), as_of)

    def _fit(self, ws, as_of):
        """Fit as of ``as_of`` from a workspace whose daily table reaches at least as_of.

        Every summary, design matrix and model goes through ``ws``'s memo, so a second fit
        on the same workspace (fit_evaluate: the holdout fit one window earlier) reuses what
        the two fits have in common instead of recomputing it.
        """
        if self.algorithm != "auto" and self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be 'auto' or one of {ALGORITHMS}")
        self.as_of_ = pd.Timestamp(as_of).normalize()
        a = _day_number(self.as_of_)
        first_day = ws.first_day(a)
        if first_day is None:
            raise ValueError("no purchases on or before as_of")
        history = a - first_day + 1
        L = int(min(self.horizon_days, history // 3))
        self.window_days_ = max(L, 1)
        self.candidates_ = {}
        self.btyd_ = ws.btyd(a, self.window_days_, self.random_state)
        self.btyd_params_ = {n: self.btyd_[n].params_ for n in ("bgnbd", "paretonbd", "gg")}
        self.lookback_days_ = None
        if L < MIN_WINDOW_DAYS:
            return self._fallback()

        c1, c2 = a - L, a - 2 * L
        s2 = ws.summaries(c2, L)
        s1 = ws.summaries(c1, L)
        if len(s2) < 10:  # too few customers to learn "history -> next window" from
            return self._fallback()
        y1 = ws.outcomes(c1, a, s1.index)

        # The history the training cut c2 has (capped): both cuts see the same span.
        self.lookback_days_ = lb = int(min(max(c2 - first_day + 1, L), MAX_LOOKBACK_DAYS))

        # Validation: regressors learned on (c2 -> c2 + L], BTYD on data up to c1.
        reg_val = ws.regressors(self, c2, L, lb)
        btyd_val = ws.btyd(c1, L, self.random_state)
        raw = ws.raw_outputs(self, reg_val, btyd_val, c1, L, lb)
        churned = (y1["orders"].to_numpy() == 0).astype(int)

        # 2-fold cross-fitting: calibrators and stack are scored on customers they did not see.
        fold = np.random.default_rng(self.random_state).integers(0, 2, len(s1))
        names = REGRESSORS + BTYD
        honest = {n: {"orders": raw[n]["orders"], "spend": raw[n]["spend"], "p0": np.empty(len(s1))} for n in names}
        honest["ensemble"] = {k: np.empty(len(s1)) for k in ("orders", "spend", "p0")}
        for f in (0, 1):
            tr, te = fold != f, fold == f
            cal = {n: _PlattCalibrator().fit(raw[n]["p0"][tr], churned[tr]) for n in names}
            for n in names:
                honest[n]["p0"][te] = cal[n].transform(raw[n]["p0"][te])
            sub = {n: {k: v[tr] for k, v in raw[n].items()} for n in names}
            o, sp, lg = self._stack_inputs(sub, cal)
            fitted = self._fit_stack(o, sp, lg, y1[tr])
            sub_te = {n: {k: v[te] for k, v in raw[n].items()} for n in names}
            ens = self._apply_stack(fitted, *self._stack_inputs(sub_te, cal))
            for k in ("orders", "spend", "p0"):
                honest["ensemble"][k][te] = ens[k]

        for n, out in honest.items():
            self.candidates_[n] = {
                "orders": M.count_metrics(out["orders"], y1["orders"]),
                "spend": M.count_metrics(out["spend"], y1["spend"]),
                "churn": M.churn_metrics(out["p0"], churned),
            }
        self.candidates_["naive rate"] = _baseline_metrics(
            _naive_rate(s1, L), y1)

        self.calibrators_ = {n: _PlattCalibrator().fit(raw[n]["p0"], churned) for n in names}
        o, sp, lg = self._stack_inputs(raw, self.calibrators_)
        self.stack_ = self._fit_stack(o, sp, lg, y1)
        self.ensemble_weights_ = {
            "orders": dict(zip(names, map(float, self.stack_[0]))),
            "spend": dict(zip(names, map(float, self.stack_[1]))),
        }
        self.chosen_ = self.algorithm if self.algorithm != "auto" else _choose(self.candidates_)

        chosen = honest[self.chosen_]
        self.intervals_ = {
            "orders": _RatioQuantiles().fit(chosen["orders"], y1["orders"]),
            "spend": _RatioQuantiles().fit(chosen["spend"], y1["spend"]),
        }
        lo_o, hi_o = self.intervals_["orders"].transform(chosen["orders"])
        lo_s, hi_s = self.intervals_["spend"].transform(chosen["spend"])
        self.validation_ = {
            "window_days": L,
            "purchases_coverage": M.interval_coverage(lo_o, hi_o, y1["orders"]),
            "spend_coverage": M.interval_coverage(lo_s, hi_s, y1["spend"]),
        }

        # Final: regressors relearned on the latest labelled window, BTYD on all the data.
        self.regressors_ = ws.regressors(self, c1, L, lb)
        return self

    def _fallback(self):
        self.chosen_ = "bgnbd"
        self.regressors_, self.calibrators_, self.stack_, self.intervals_ = None, None, None, None
        self.ensemble_weights_, self.validation_ = {}, {}
        return self

    # ------------------------------------------------------------------ predict

    def _candidate_outputs(self, ws, cut, s):
        """Calibrated window-L outputs of every candidate (or BG/NBD alone in fallback)."""
        L = self.window_days_
        if self.regressors_ is None:
            return {"bgnbd": self._btyd_outputs(self.btyd_, s, L)["bgnbd"]}
        raw = ws.raw_outputs(self, self.regressors_, self.btyd_, cut, L, self.lookback_days_)
        out = {n: {"orders": raw[n]["orders"], "spend": raw[n]["spend"],
                   "p0": self.calibrators_[n].transform(raw[n]["p0"])} for n in REGRESSORS + BTYD}
        out["ensemble"] = self._apply_stack(self.stack_, *self._stack_inputs(raw, self.calibrators_))
        return out

    def _to_horizon(self, out):
        """Scale window-L outputs to the horizon: counts linearly, P(none) as a power."""
        k = self.horizon_days / self.window_days_
        return {"orders": out["orders"] * k, "spend": out["spend"] * k,
                "p0": np.clip(out["p0"], 0, 1) ** k}

    def predict_candidates(self, interactions: pd.DataFrame, as_of) -> dict:
        """name -> DataFrame(expected_purchases, expected_spend, churn_probability), index customer_id."""
        with threadpool_limits(limits=self.n_threads):
            return self._predict_candidates(_Workspace(interactions, as_of), as_of)

    def _predict_candidates(self, ws, as_of):
        cut = _day_number(as_of)
        s = ws.summaries(cut, self.window_days_)
        res = {}
        for name, out in self._candidate_outputs(ws, cut, s).items():
            h = self._to_horizon(out)
            res[name] = pd.DataFrame({"expected_purchases": h["orders"], "expected_spend": h["spend"],
                                      "churn_probability": h["p0"]}, index=s.index)
        return res

    def predict(self, interactions: pd.DataFrame, as_of) -> pd.DataFrame:
        """Forecasts as of ``as_of`` for every customer with a purchase on or before it.

        Index customer_id; columns expected_purchases (orders), expected_spend, churn_probability,
        clv (purchase amount over ``clv_days``), expected_refund_rate, purchases_p10/p90,
        spend_p10/p90, basis, factors (list of short strings).
        """
        with threadpool_limits(limits=self.n_threads):
            return self._predict(_Workspace(interactions, as_of), as_of)

    def _predict(self, ws, as_of, details=True):
        """The forecast frame; ``details=False`` leaves out clv, refund rate, basis and
        factors (the holdout scores none of them)."""
        cut = _day_number(pd.Timestamp(as_of).normalize())
        s = ws.summaries(cut, self.window_days_)
        if s.empty:
            return pd.DataFrame(columns=["expected_purchases", "expected_spend", "churn_probability", "clv",
                                         "expected_refund_rate", "purchases_p10", "purchases_p90",
                                         "spend_p10", "spend_p90", "basis", "factors"])
        out = self._candidate_outputs(ws, cut, s)[self.chosen_]
        h = self._to_horizon(out)
        k = self.horizon_days / self.window_days_
        if self.intervals_ is not None:
            p10, p90 = (v * k for v in self.intervals_["orders"].transform(out["orders"]))
            s10, s90 = (v * k for v in self.intervals_["spend"].transform(out["spend"]))
        else:  # no validation window: Poisson band, spend scaled alongside
            from scipy import stats
            p10 = stats.poisson.ppf(0.1, h["orders"])
            p90 = stats.poisson.ppf(0.9, h["orders"])
            unit = np.divide(h["spend"], h["orders"], out=np.zeros_like(h["spend"]), where=h["orders"] > 0)
            s10, s90 = p10 * unit, p90 * unit
        res = pd.DataFrame({
            "expected_purchases": h["orders"],
            "expected_spend": h["spend"],
            "churn_probability": np.clip(h["p0"], 0, 1),
            "purchases_p10": np.minimum(p10, h["orders"]),
            "purchases_p90": np.maximum(p90, h["orders"]),
            "spend_p10": np.minimum(s10, h["spend"]),
            "spend_p90": np.maximum(s90, h["spend"]),
        }, index=s.index)
        if not details:
            return res

        # CLV: this forecast's spend, stretched to clv_days by BG/NBD's own ratio of
        # expected purchases over clv_days to those over the horizon (it accounts for dropout).
        x = s["purchase_days"].to_numpy() - 1
        bg = self.btyd_["bgnbd"]
        e_h = bg.conditional_expected_purchases(self.horizon_days, x, s["active_span"], s["tenure"])
        e_clv = bg.conditional_expected_purchases(self.clv_days, x, s["active_span"], s["tenure"])
        stretch = np.divide(e_clv, e_h, out=np.full(len(s), self.clv_days / self.horizon_days), where=e_h > 1e-12)

        refunds = ws.refunds(pd.Timestamp(as_of).normalize()).reindex(s.index, fill_value=0.0).to_numpy()
        spend_hist = s["spend"].to_numpy()
        base = refunds.sum() / spend_hist.sum() if spend_hist.sum() > 0 else 0.0
        # Shrink towards the base rate with the weight of a median customer's spend.
        prior = float(np.median(spend_hist))
        refund_rate = np.clip((refunds + prior * base) / np.maximum(spend_hist + prior, 1e-12), 0, 1)

        res.insert(3, "clv", h["spend"] * stretch)
        res.insert(4, "expected_refund_rate", refund_rate)
        res["basis"] = np.where(s["purchase_days"].to_numpy() >= 2, "own history", "segment/base averages")
        res["factors"] = explain_factors(s, self.window_days_, self.horizon_days)
        return res


class _Workspace:
    """The purchase log of one call, reduced once to a daily table, plus a memo of what is
    derived from it: summaries and designs per cut, BTYD fits per cut, regressor fits per
    (training cut, window, lookback) and their outputs per application cut.

    Everything memoised depends only on the data up to its own cut and on the parameters in
    its key (and the forecaster's random_state / horizon, which the callers share), so a
    memo hit returns exactly what a fresh computation would.
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

    def btyd(self, cut, window, random_state):
        # BTYD uses only the window-independent columns of the summaries: keyed on the cut.
        return self._get(("btyd", cut, random_state),
                         lambda: CustomerForecaster._fit_btyd(self.summaries(cut, window), random_state))

    def regressors(self, est, train_cut, window, lookback):
        """Regressors learning "features as of train_cut -> (train_cut, train_cut + window]"."""
        def make():
            X = self.features(train_cut, window, lookback)
            y = self.outcomes(train_cut, train_cut + window, self.summaries(train_cut, window).index)
            return est._fit_regressors(X, y)
        return self._get(("regressors", train_cut, window, lookback, est.random_state), make)

    def raw_outputs(self, est, reg_models, btyd_models, cut, window, lookback):
        # The models are kept in the value so that their ids stay theirs while memoised.
        key = ("raw", id(reg_models), id(btyd_models), cut, window, lookback)
        return self._get(key, lambda: (reg_models, btyd_models, est._raw_outputs(
            reg_models, btyd_models, self.features(cut, window, lookback), self.summaries(cut, window),
            window)))[2]

    def refunds(self, as_of):
        return self._get(("refunds", as_of), lambda: refunds_by_customer(self.interactions, as_of))


# --------------------------------------------------------------------------- choice, baselines


def _choose(candidates: dict) -> str:
    """Lowest mean of orders RMSE, spend RMSE and churn (1 - AUC), each relative to naive rate."""
    base = candidates["naive rate"]

    def rel(c, key, metric):
        b = base[key][metric]
        v = c[key][metric]
        return v / b if b and v is not None else 1.0

    def score(c):
        auc, b_auc = c["churn"]["auc"], base["churn"]["auc"]
        churn = (1 - auc) / (1 - b_auc) if auc is not None and b_auc is not None and b_auc < 1 else 1.0
        return (rel(c, "orders", "rmse") + rel(c, "spend", "rmse") + churn) / 3

    names = [n for n in candidates if n in ALGORITHMS]
    return min(names, key=lambda n: score(candidates[n]))


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


def _baseline_metrics(out: dict, y: pd.DataFrame) -> dict:
    churned = (y["orders"].to_numpy() == 0).astype(int)
    return {"orders": M.count_metrics(out["orders"], y["orders"]),
            "spend": M.count_metrics(out["spend"], y["spend"]),
            "churn": M.churn_metrics(out["p0"], churned)}


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


def explain_factors(s: pd.DataFrame, window: int, horizon: int, top=3) -> list[list[str]]:
    """The ``top`` statements that set this customer furthest from the median customer.

    Each candidate statement gets a strength = |log of the customer's value / the median|;
    the strongest ones are kept. Built column-wise (no loop over customers): the strengths
    pick each customer's statements first, and a statement's text is only built for the
    customers who get it.
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
        np.abs(ratio(value, med_value)),
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


# --------------------------------------------------------------------------- holdout


def evaluate_holdout(interactions: pd.DataFrame, as_of, horizon_days=90, **params) -> dict:
    """Fit as of (as_of - horizon_days), score on (as_of - horizon_days, as_of].

    Scored: customers with a purchase on or before the cut. Truth: orders (distinct
    order_ref), spend (sum of amount), churned (no order). Returns JSON-ready metrics for
    the chosen model, every candidate, the "naive rate" and "no change" baselines, P10-P90
    coverage, a per-decile forecast-vs-actual series, and ``beats_naive``.

    To publish a model as of ``as_of`` as well, call :func:`fit_evaluate` instead: it
    returns the same report and the fitted model for less than the two calls cost apart.
    """
    with threadpool_limits(limits=params.get("n_threads", 1)):
        ws = _Workspace(interactions, as_of)
        return _holdout(ws, as_of, horizon_days, params)[1]


def fit_evaluate(interactions: pd.DataFrame, as_of, horizon_days=90, **params) -> tuple[CustomerForecaster, dict]:
    """(``CustomerForecaster(horizon_days, **params).fit(interactions, as_of)``,
    ``evaluate_holdout(interactions, as_of, horizon_days, **params)``) in one call.

    What a retrain needs: honest metrics on the last ``horizon_days`` (a model fitted as of
    as_of - horizon_days, which chose and calibrated its ensemble on the window before
    that, scored on the horizon that followed) and the model to publish. Both results are
    exactly those of the two separate calls; they are computed on one workspace, so the
    log is reduced to daily rows once, the holdout is scored without a separate predict,
    and every summary, design and model the two fits have in common is computed once: the
    BTYD models up to as_of - horizon always (the holdout's final models are the published
    fit's validation models), the regressors as well once the history is long enough for
    both fits to use the full ``MAX_LOOKBACK_DAYS`` lookback.
    """
    as_of = pd.Timestamp(as_of).normalize()
    with threadpool_limits(limits=params.get("n_threads", 1)):
        ws = _Workspace(interactions, as_of)
        _, report = _holdout(ws, as_of, horizon_days, params)
        model = CustomerForecaster(horizon_days=horizon_days, **params)._fit(ws, as_of)
    return model, report


def _holdout(ws: _Workspace, as_of, horizon_days, params) -> tuple[CustomerForecaster, dict]:
    as_of = pd.Timestamp(as_of).normalize()
    cut = as_of - pd.Timedelta(days=horizon_days)
    model = CustomerForecaster(horizon_days=horizon_days, **params)._fit(ws, cut)
    pred = model._predict(ws, cut, details=False)
    c = _day_number(cut)
    y = ws.outcomes(c, _day_number(as_of), pred.index)
    churned = (y["orders"].to_numpy() == 0).astype(int)
    s = ws.summaries(c, horizon_days)

    def score(df):
        return {"orders": M.count_metrics(df["expected_purchases"], y["orders"]),
                "spend": M.count_metrics(df["expected_spend"], y["spend"]),
                "churn": M.churn_metrics(df["churn_probability"], churned)}

    chosen = score(pred)
    chosen["churn"]["reliability"] = M.reliability_table(pred["churn_probability"], churned)
    chosen["coverage"] = {
        "purchases_p10_p90": M.interval_coverage(pred["purchases_p10"], pred["purchases_p90"], y["orders"]),
        "spend_p10_p90": M.interval_coverage(pred["spend_p10"], pred["spend_p90"], y["spend"]),
    }
    naive = _baseline_metrics(_naive_rate(s, horizon_days), y)
    rule = "orders RMSE, spend RMSE <= naive rate's and churn AUC >= naive rate's"
    beats = bool(
        chosen["orders"]["rmse"] is not None
        and chosen["orders"]["rmse"] <= naive["orders"]["rmse"]
        and chosen["spend"]["rmse"] <= naive["spend"]["rmse"]
        and (chosen["churn"]["auc"] or 0) >= (naive["churn"]["auc"] or 0)
    )
    return model, {
        "as_of": str(as_of.date()), "cut": str(cut.date()), "horizon_days": int(horizon_days),
        "n_customers": int(len(pred)),
        "chosen": model.chosen_,
        "model": chosen,
        "candidates": {n: score(df) for n, df in model._predict_candidates(ws, cut).items()},
        "validation": model.candidates_,
        "baselines": {"naive rate": naive, "no change": _baseline_metrics(_no_change(s), y)},
        "series": {
            "orders": M.decile_series(pred["expected_purchases"], y["orders"]),
            "spend": M.decile_series(pred["expected_spend"], y["spend"]),
        },
        "beats_naive": beats,
        "beats_naive_rule": rule,
    }
