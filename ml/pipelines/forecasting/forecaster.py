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
from scipy import stats
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from ml.pipelines.backtest import MAX_ORIGINS, plan_backtest
from ml.pipelines.forecasting.candidates import CandidateFit, Workspace
from ml.pipelines.forecasting.evaluation import BASELINE_OF, choose_targets, flat_scores, window_scores
from ml.pipelines.forecasting.features import amount_share, day_number
from ml.pipelines.forecasting.intervals import Z90, RatioQuantiles, SpendBand, total_interval
from ml.pipelines.forecasting.metrics import decile_series, interval_coverage, reliability_table
from ml.pipelines.forecasting.models import ALGORITHMS, BASELINES, MIN_AMOUNT_SHARE, TARGETS, no_change
from ml.pipelines.forecasting.reasons import explain_factors, factor_medians

# When nothing can be held back, the textbook model that needs no labelled window.
UNVALIDATED = "bgnbd"


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
    the published forecast's figures on the most recent window), ``backtest_`` and ``outcome_``
    (its "backtest" and "outcome", the layout every family's model has), ``window_days_`` (label
    window of the final fit), ``final_`` (the :class:`~.candidates.CandidateFit` as of as_of) and
    ``intervals_`` (the P10-P90 bands, None when nothing was held back).
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
            return self._fit(Workspace(interactions, as_of), as_of, progress or (lambda fraction, stage: None))

    def _fit(self, ws, as_of, progress):
        if self.algorithm != "auto" and self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be 'auto' or one of {ALGORITHMS}")
        self.as_of_ = pd.Timestamp(as_of).normalize()
        a = day_number(self.as_of_)
        first = ws.first_day(a)
        if first is None:
            raise ValueError("no purchases on or before as_of")
        H = int(self.horizon_days)
        share = amount_share(ws.interactions, self.as_of_)
        self.with_spend_ = share >= MIN_AMOUNT_SHARE
        self.plan_ = plan_backtest(pd.Timestamp(first, unit="D"), self.as_of_, H, max_origins=self.max_origins)
        W = self.plan_.window_days

        # The final fit first, then the origins from the most recent cut back: every step reads
        # the workspace at its cut and up to two windows before it, so what the memo holds for
        # later cuts is dropped after each step (a million customers' feature frames over every
        # cut would otherwise stay to the end). The results are those of any order.
        steps = len(self.plan_.cuts) + 1
        progress(0.0, "training every candidate on all the history")
        self.final_ = CandidateFit(H, self.random_state, self.with_spend_).fit(ws, a)
        self.window_days_ = self.final_.window_
        _, final_outs = self.final_.outputs(ws, a, H)
        origins, recent = [], []
        for k, cut in enumerate(self.plan_.cuts):
            ws.forget_after(day_number(cut))
            progress((k + 1) / steps, f"backtest {k + 1} of {steps - 1}: every candidate trained up to "
                                      f"{cut.date()}, scored on the next {W} days")
            c = day_number(cut)
            fit = CandidateFit(W, self.random_state, self.with_spend_).fit(ws, c)
            s, outs = fit.outputs(ws, c, W)
            y = ws.outcomes(c, c + W, s.index)
            origins.append({"cut": c, "customers": int(len(s)),
                            "scores": {n: window_scores(o, y) for n, o in outs.items()}})
            # The summaries are read back for the two most recent windows only (their bands).
            recent.append((s if k < 2 else None, outs, y))
        ws.forget_after(-1)
        self.choice_ = choose_targets(origins, self.with_spend_) if origins else {}
        self.chosen_, notes = self._published(final_outs)
        self.targets_ = self._targets(share, notes, ws)

        # P10-P90: the chosen candidate's errors on the most recent backtest window (scale-free
        # ratios, so they carry over to the horizon); the report scores bands learned on the
        # window before it on that window, so that its coverage is an honest one.
        self.intervals_ = self._intervals(*recent[0]) if recent else None
        report_bands = self._intervals(*recent[1]) if len(recent) > 1 else None
        self.report_ = self._report(origins, recent, report_bands)
        # The layout every family's model shares (the same objects as in report_).
        self.backtest_, self.outcome_ = self.report_["backtest"], self.report_["outcome"]
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
        out = {"orders": RatioQuantiles().fit(orders, y["orders"])}
        if "spend" in self.chosen_:
            lo, hi = out["orders"].transform(orders)
            out["spend"] = SpendBand().fit(outs[self.chosen_["spend"]]["spend"], orders, lo, hi, y["spend"])
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
            entry["scores"] = {n: flat_scores(sc) for n, sc in o["scores"].items()}
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
        model = window_scores(published, y)
        churned = (y["orders"].to_numpy() == 0).astype(int)
        model["churn"]["reliability"] = reliability_table(published["p0"], churned)
        if bands is not None:
            lo, hi, s_lo, s_hi = self._bands(bands, published["orders"], published["spend"])
            model["coverage"] = {"purchases_p10_p90": interval_coverage(lo, hi, y["orders"])}
            if published["spend"] is not None:
                model["coverage"]["spend_p10_p90"] = interval_coverage(s_lo, s_hi, y["spend"])
        naive = window_scores(outs["naive rate"], y)
        change = no_change(s)
        if published["spend"] is None:
            change["spend"] = None
        report.update({
            "cut": self.plan_.cuts[0].date().isoformat(), "n_customers": int(len(s)),
            "model": model,
            "candidates": {n: window_scores(o, y) for n, o in outs.items()},
            "baselines": {"naive rate": naive, "no change": window_scores(change, y)},
            "series": {"orders": decile_series(published["orders"], y["orders"])},
            "beats_naive": bool(model["orders"]["rmse"] <= naive["orders"]["rmse"]),
        })
        if published["spend"] is not None:
            report["series"]["spend"] = decile_series(published["spend"], y["spend"])
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
            ws = Workspace(interactions, as_of)
            s, outs = self.final_.outputs(ws, day_number(as_of), int(self.horizon_days))
            nan = np.full(len(s), np.nan)
            return {n: pd.DataFrame({"expected_purchases": nan if o["orders"] is None else o["orders"],
                                     "expected_spend": nan if o["spend"] is None else o["spend"],
                                     "churn_probability": nan if o["p0"] is None else o["p0"]}, index=s.index)
                    for n, o in outs.items()}

    def predict(self, interactions: pd.DataFrame, as_of, reference: dict | None = None) -> pd.DataFrame:
        """Forecasts as of ``as_of`` for every customer with a purchase on or before it.

        Index customer_id; columns expected_purchases (orders), expected_spend, churn_probability,
        clv (purchase amount over ``clv_days``), expected_refund_rate, purchases_p10/p90,
        spend_p10/p90 (NaN for the money columns when spend is not forecast), basis, factors
        (list of short strings). ``reference``: :meth:`reference` of every customer, when
        ``interactions`` are those of a part of them (forecast in chunks, each customer's
        forecast is then the one a forecast of all gives).
        """
        with threadpool_limits(limits=self.n_threads):
            return self._predict(Workspace(interactions, as_of), as_of, reference)

    def reference(self, interactions: pd.DataFrame, as_of) -> dict:
        """The population figures a customer's forecast is read against (the median customer of
        the factors, the base refund rate and its weight), as of ``as_of``."""
        with threadpool_limits(limits=self.n_threads):
            ws = Workspace(interactions, as_of)
            return self._reference(ws, ws.summaries(day_number(pd.Timestamp(as_of).normalize()), self.final_.window_),
                                   as_of)

    def _reference(self, ws, s, as_of) -> dict:
        ref = {"medians": factor_medians(s) if len(s) else None}
        if self.with_spend_:
            refunds = ws.refunds(pd.Timestamp(as_of).normalize()).reindex(s.index, fill_value=0.0).to_numpy()
            spend_hist = s["spend"].to_numpy()
            ref["refund_base"] = refunds.sum() / spend_hist.sum() if spend_hist.sum() > 0 else 0.0
            # Shrink towards the base rate with the weight of a median customer's spend.
            ref["refund_prior"] = float(np.median(spend_hist)) if len(s) else 0.0
        return ref

    def _predict(self, ws, as_of, reference=None):
        cut = day_number(pd.Timestamp(as_of).normalize())
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
        bg = self.final_.btyd_["bgnbd"]
        e_h = bg.conditional_expected_purchases(H, x, s["active_span"], s["tenure"])
        e_clv = bg.conditional_expected_purchases(self.clv_days, x, s["active_span"], s["tenure"])
        stretch = np.divide(e_clv, e_h, out=np.full(len(s), self.clv_days / H), where=e_h > 1e-12)
        ref = reference or self._reference(ws, s, as_of)
        if self.with_spend_:
            refunds = ws.refunds(pd.Timestamp(as_of).normalize()).reindex(s.index, fill_value=0.0).to_numpy()
            spend_hist = s["spend"].to_numpy()
            base, prior = ref["refund_base"], ref["refund_prior"]
            refund_rate = np.clip((refunds + prior * base) / np.maximum(spend_hist + prior, 1e-12), 0, 1)
        else:
            refund_rate = nan
        res.insert(3, "clv", spend * stretch)
        res.insert(4, "expected_refund_rate", refund_rate)
        own = np.where(s["purchase_days"].to_numpy() >= 2, "own history", "population averages")
        res["basis"] = [f"{self.basis_label()} · {o}"[:100] for o in own]
        res["factors"] = explain_factors(s, self.window_days_, H, with_spend=self.with_spend_,
                                         medians=ref["medians"])
        return res


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
