"""Every forecasting candidate fitted as of one cut, on a memoised workspace of the purchase log."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.pipelines.backtest import MIN_WINDOW_DAYS
from ml.pipelines.forecasting.features import (
    customer_summaries,
    daily_purchases,
    day_number,
    refunds_by_customer,
    regression_features,
    window_outcomes,
)
from ml.pipelines.forecasting.models import (
    BTYD,
    EPS,
    MAX_LOOKBACK_DAYS,
    MIN_TRAIN_CUSTOMERS,
    REGRESSORS,
    PlattCalibrator,
    apply_stack,
    btyd_outputs,
    fit_btyd,
    fit_regressors,
    fit_stack,
    naive_rate,
    regressor_outputs,
    scaled,
    stack_inputs,
)


class CandidateFit:
    """Every candidate fitted as of one cut (a day number).

    With history ``D`` days up to the cut and L = min(horizon, D // 3): BTYD models on all the
    purchases up to the cut; regressions learning "features as of cut - L -> the L days up to
    the cut". The churn calibrators and the ensemble learn on what the same candidates fitted
    one window earlier (BTYD on the data up to cut - L, regressions trained on cut - 2L ->
    cut - L) said about those L days: the way the published models are used, trained on one
    window and applied to the next. Features look back over the history their training cut
    has (capped at ``MAX_LOOKBACK_DAYS``), and a model is applied with the span it learned on.
    Below a week of L only the baselines and the uncalibrated BTYD models are available.

    Parameters: ``horizon`` (days the fit is for), ``random_state``, ``with_spend`` (amounts
    present: spend candidates too). ``fit(ws, cut)`` (a :class:`Workspace` and a day number)
    learns ``cut_``, ``window_`` (L, at least 1), ``btyd_`` (the BTYD fits as of the cut),
    ``regressors_`` and ``lookback_`` (None below a trainable window), ``calibrators_`` (name ->
    churn calibrator), ``stack_`` (the ensemble's mixture weights, None when not trained),
    ``weights_`` (the same as a JSON-able dict) and ``base_p0_`` (the base rate's P(no purchase)).
    """

    def __init__(self, horizon: int, random_state=0, with_spend: bool = True):
        self.horizon = horizon
        self.random_state = random_state
        self.with_spend = with_spend

    def fit(self, ws, cut: int) -> CandidateFit:
        horizon, random_state, with_spend = self.horizon, self.random_state, self.with_spend
        first = ws.first_day(cut)
        if first is None:
            raise ValueError("no purchases on or before the cut")
        self.cut_ = cut
        L = int(min(horizon, (cut - first + 1) // 3))
        self.window_ = max(L, 1)
        self.btyd_ = ws.btyd(cut, random_state, with_spend)
        self.regressors_, self.lookback_, self.calibrators_, self.stack_, self.base_p0_ = None, None, {}, None, None
        self.weights_ = {}
        if L < MIN_WINDOW_DAYS:
            return self
        c1, c2 = cut - L, cut - 2 * L
        s1 = ws.summaries(c1, L)
        if s1.empty:
            return self
        y1 = ws.outcomes(c1, cut, s1.index)
        churned = (y1["orders"].to_numpy() == 0).astype(int)
        # P(no purchase in L days) among the customers known L days before the cut.
        self.base_p0_ = float(np.clip(churned.mean(), EPS, 1 - EPS))
        btyd_val = ws.btyd(c1, random_state, with_spend)
        trainable = len(ws.summaries(c2, L)) >= MIN_TRAIN_CUSTOMERS
        if trainable:
            lb_val = int(min(c2 - first + 1, MAX_LOOKBACK_DAYS))
            lb = int(min(c1 - first + 1, MAX_LOOKBACK_DAYS))
            reg_val = ws.regressors(c2, L, lb_val, random_state, with_spend)
            raw = ws.raw_outputs(reg_val, btyd_val, c1, L, lb_val)
            names = BTYD + REGRESSORS
        else:
            raw = btyd_outputs(btyd_val, s1, L)
            names = BTYD
        self.calibrators_ = {n: PlattCalibrator().fit(raw[n]["p0"], churned) for n in names}
        if trainable:
            self.stack_ = fit_stack(*stack_inputs(raw, self.calibrators_, names), y1)
            self.weights_ = {"orders": dict(zip(names, map(float, self.stack_[0]))),
                             "churn": dict(zip(names, map(float, self.stack_[2])))}
            if self.stack_[1] is not None:
                self.weights_["spend"] = dict(zip(names, map(float, self.stack_[1])))
            self.regressors_ = ws.regressors(c1, L, lb, random_state, with_spend)
            self.lookback_ = lb
        return self

    def outputs(self, ws, cut: int, horizon: int) -> tuple[pd.DataFrame, dict]:
        """(summaries as of ``cut``, name -> {"orders", "spend", "p0"} over the ``horizon`` days
        after it); arrays follow the summaries' index, None where a candidate has no such output."""
        L = self.window_
        s = ws.summaries(cut, L)
        out = {"naive rate": naive_rate(s, L)}
        if not self.with_spend:
            out["naive rate"]["spend"] = None
        if self.base_p0_ is not None:
            out["base rate"] = {"orders": None, "spend": None, "p0": np.full(len(s), self.base_p0_)}
        if self.regressors_ is not None:
            raw = ws.raw_outputs(self.regressors_, self.btyd_, cut, L, self.lookback_)
        else:
            raw = btyd_outputs(self.btyd_, s, L)
        for name, r in raw.items():
            cal = self.calibrators_.get(name)
            out[name] = {"orders": r["orders"], "spend": r["spend"],
                         "p0": cal.transform(r["p0"]) if cal is not None else r["p0"]}
        if self.stack_ is not None:
            names = BTYD + REGRESSORS
            out["ensemble"] = apply_stack(self.stack_, *stack_inputs(raw, self.calibrators_, names))
        out = {name: scaled(o, horizon / L) for name, o in out.items()}
        if horizon != L:
            # BTYD models forecast any window themselves (with dropout over its whole length), so
            # they are not scaled; their calibration was learned for L days and is left out.
            out.update(btyd_outputs(self.btyd_, s, horizon))
        return s, out


class Workspace:
    """The purchase log of one call, reduced once to a daily table, plus a memo of what is
    derived from it: summaries per cut, BTYD fits per cut, regressor fits per (training cut,
    window, lookback) and their outputs per application cut.

    Everything memoised depends only on the data up to its own cut and on the parameters in
    its key, so a memo hit returns exactly what a fresh computation would; the backtest
    origins and the final fit share whatever they have in common.
    """

    def __init__(self, interactions, as_of):
        self.interactions = interactions
        self.as_of = pd.Timestamp(as_of).normalize()
        self.daily = daily_purchases(interactions, self.as_of)
        self.max_day = day_number(self.as_of)
        self.memo = {}

    def _get(self, key, make):
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def forget_after(self, cut):
        """Drop what the memo holds for cuts after ``cut`` (a day number): for a caller that goes
        back in time and will not ask for them again. The refunds are kept."""
        def at(key):
            return key[3] if key[0] == "raw" else key[1]
        self.memo = {key: value for key, value in self.memo.items() if key[0] == "refunds" or at(key) <= cut}

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
        # Not memoised: each (cut, lookback) is read once, by the regressors' fit or by their
        # outputs (both memoised), and a million customers' design is ~130 MB.
        return regression_features(self.daily, cut, window, lookback, self.summaries(cut, window).index)

    def btyd(self, cut, random_state, with_spend):
        # BTYD uses only the window-independent columns of the summaries: keyed on the cut, and
        # those summaries are not kept (nothing else reads them).
        return self._get(("btyd", cut, random_state, with_spend),
                         lambda: fit_btyd(customer_summaries(self.daily, cut, 1), random_state, with_spend))

    def regressors(self, train_cut, window, lookback, random_state, with_spend):
        """Regressors learning "features as of train_cut -> (train_cut, train_cut + window]"."""
        def make():
            X = self.features(train_cut, window, lookback)
            y = self.outcomes(train_cut, train_cut + window, self.summaries(train_cut, window).index)
            return fit_regressors(X, y, random_state, with_spend)
        return self._get(("regressors", train_cut, window, lookback, random_state, with_spend), make)

    def raw_outputs(self, reg_models, btyd_models, cut, window, lookback):
        """Every model's window outputs as of ``cut``: regressions (features over ``lookback``) and BTYD."""
        # The models are kept in the value so that their ids stay theirs while memoised.
        def make():
            s = self.summaries(cut, window)
            out = regressor_outputs(reg_models, self.features(cut, window, lookback), s,
                                     btyd_models["orders_per_day"])
            out.update(btyd_outputs(btyd_models, s, window))
            return reg_models, btyd_models, out
        return self._get(("raw", id(reg_models), id(btyd_models), cut, window, lookback), make)[2]

    def refunds(self, as_of):
        return self._get(("refunds", as_of), lambda: refunds_by_customer(self.interactions, as_of))
