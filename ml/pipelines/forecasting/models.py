"""The forecasting family's candidates: the estimators and what each candidate outputs over a
window (expected orders, expected spend and P(no purchase), the churn score).

Baselines (naive rate, base rate, no change), BTYD models (BG/NBD, Pareto/NBD, x Gamma-Gamma
for spend; :mod:`.btyd`), regressions of "history as of a cut -> the next window" (linear,
polynomial ridge, Poisson / Tweedie GLM, SVR, gradient boosting) and their ensemble. Churn
probability is P(no purchase in the window): BTYD's own, or the Poisson P(0) of the implied
purchase days, calibrated by :class:`PlattCalibrator` (see :mod:`.candidates`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special
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

from ml.pipelines.forecasting.btyd import BetaGeoModel, GammaGammaModel, ParetoNBDModel

TARGETS = ("orders", "spend", "churn")
BASELINES = ("naive rate", "base rate")
REGRESSORS = ("linear", "polynomial", "glm", "svr", "gbm")
BTYD = ("bgnbd", "paretonbd")
MODELS = BTYD + REGRESSORS + ("ensemble",)
ALGORITHMS = BASELINES + MODELS

# Regressors learn a handful of coefficients or shallow trees, so a seeded subsample of
# 50k customers estimates them about as well as all of them: on a 100k-customer synthetic
# log the inner validation moved by under 1% for every candidate (gbm orders RMSE 1.580 ->
# 1.585) and the chosen model did not change, while the gradient boosting fits (the
# largest cost of a fit) took half the time.
MAX_TRAIN_ROWS = 50_000
# Rows predicted at a time: a model's own expansion of its design (the polynomial's pairwise
# terms, ~150 columns) stays ~0.1 GB whatever the number of customers.
PREDICT_ROWS = 100_000
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


class PlattCalibrator:
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


def fit_btyd(s: pd.DataFrame, random_state, with_spend: bool) -> dict:
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


def btyd_outputs(models: dict, s: pd.DataFrame, window: int) -> dict:
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


def fit_regressors(X, y: pd.DataFrame, random_state, with_spend: bool) -> dict:
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


def regressor_outputs(models: dict, X, s: pd.DataFrame, orders_per_day: float) -> dict:
    ratio = _orders_per_day(s, orders_per_day)
    targets = models["targets"]
    out = {}
    for name in REGRESSORS:
        pred = np.concatenate([_predict_rows(models, name, targets, X[i:i + PREDICT_ROWS])
                               for i in range(0, len(X), PREDICT_ROWS)]) if len(X) else np.empty((0, len(targets)))
        pred = np.clip(pred, 0, models["cap"])
        orders = pred[:, 0]
        # Poisson P(0) of the implied purchase days: a score, calibrated afterwards.
        out[name] = {"orders": orders, "spend": pred[:, 1] if len(targets) > 1 else None,
                     "p0": np.exp(-orders / ratio)}
    return out


def _predict_rows(models: dict, name: str, targets, X) -> np.ndarray:
    if name in MULTI_OUTPUT:
        return np.asarray(models[name].predict(X), float).reshape(len(X), len(targets))
    return np.column_stack([models[name, t].predict(X) for t in targets])


def stack_inputs(raw: dict, calibrators: dict, names) -> tuple:
    orders = np.column_stack([raw[n]["orders"] for n in names])
    spend = (np.column_stack([raw[n]["spend"] for n in names]) if raw[names[0]]["spend"] is not None else None)
    probs = np.column_stack([calibrators[n].transform(raw[n]["p0"]) for n in names])
    return orders, spend, probs


def fit_stack(orders, spend, probs, y: pd.DataFrame) -> tuple:
    """Mixture weights (non-negative, summing to 1) per target, by least squares on the window:
    for churn that is the Brier score of the mixed calibrated probabilities. A mixture cannot
    amplify one model's noise the way free stacking coefficients can."""
    churned = (y["orders"].to_numpy() == 0).astype(float)
    return (_mixture_weights(orders, y["orders"].to_numpy()),
            _mixture_weights(spend, y["spend"].to_numpy()) if spend is not None else None,
            _mixture_weights(probs, churned))


def apply_stack(fitted, orders, spend, probs) -> dict:
    w_orders, w_spend, w_churn = fitted
    return {"orders": orders @ w_orders, "spend": None if spend is None else spend @ w_spend,
            "p0": np.clip(probs @ w_churn, 0, 1)}


def naive_rate(s: pd.DataFrame, window: int) -> dict:
    """Repeat rate since the first purchase x window; churn = exp(-expected purchase days)."""
    tenure = np.maximum(s["tenure"].to_numpy(), 1.0)
    days = (s["purchase_days"].to_numpy() - 1) / tenure * window
    return {"orders": (s["orders"].to_numpy() - 1) / tenure * window,
            "spend": (s["spend"] - s["first_day_spend"]).to_numpy() / tenure * window,
            "p0": np.exp(-days)}


def no_change(s: pd.DataFrame) -> dict:
    """The last window repeated; churn score = exp(-purchase days in the last window)."""
    return {"orders": s["orders_recent"].to_numpy(), "spend": s["spend_recent"].to_numpy(),
            "p0": np.exp(-s["days_recent"].to_numpy())}


def scaled(out: dict, k: float) -> dict:
    """Window-L outputs scaled to k x L days: counts linearly, P(none) as a power."""
    return {"orders": None if out["orders"] is None else out["orders"] * k,
            "spend": None if out["spend"] is None else out["spend"] * k,
            "p0": None if out["p0"] is None else np.clip(out["p0"], 0, 1) ** k}
