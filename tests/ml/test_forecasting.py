"""Customer forecasting pipeline: planted answers on simulated purchase logs (no database)."""

import json

import numpy as np
import pandas as pd
import pytest

from ml.pipelines.forecasting import CustomerForecaster, daily_purchases, evaluate_holdout, fit_evaluate

START = pd.Timestamp("2023-01-01")
AS_OF = pd.Timestamp("2023-12-31")  # 365 days of history
WEEKLY, LAPSED = 900_001, 900_002


def _rows(cust, days, amounts, kind="purchase", prefix="o"):
    days = np.asarray(days, float)
    return pd.DataFrame({
        "customer_id": np.asarray(cust, np.int64),
        "product_id": np.full(len(days), -1, np.int64),
        "type": kind,
        "occurred_at": START + pd.to_timedelta(np.floor(days * 86400), unit="s"),
        "quantity": np.ones(len(days), np.int64),
        "amount": np.asarray(amounts, float),
        "order_ref": [f"{prefix}{i}" for i in range(len(days))],
    })


def simulate_log(n=1500, days=455, random_state=0):
    """Pareto/NBD-like customers in calendar time: join uniformly in the first 200 days,
    buy at a Gamma-distributed daily rate until an exponential lifetime ends."""
    rng = np.random.default_rng(random_state)
    birth = rng.uniform(0, 200, n)
    rate = rng.gamma(2.0, 0.04, n)  # mean 0.08 orders a day
    death = birth + rng.exponential(1 / rng.gamma(1.0, 1 / 300, n))
    end = np.minimum(death, days)
    counts = rng.poisson(rate * (end - birth)) + 1  # the first purchase, at birth
    cust = np.repeat(np.arange(n), counts)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    t = birth[cust] + rng.random(len(cust)) * (end - birth)[cust]
    t[first] = birth
    value = rng.gamma(3.0, 10.0, n)
    amounts = rng.gamma(4.0, value[cust] / 4.0)
    frame = _rows(cust, t, amounts)
    weekly = _rows(np.full(65, WEEKLY), np.arange(0, 455, 7.0), np.full(65, 20.0), prefix="w")
    lapsed = _rows(np.full(15, LAPSED), np.arange(0, 105, 7.0), np.full(15, 20.0), prefix="l")
    return pd.concat([frame, weekly, lapsed], ignore_index=True)


@pytest.fixture(scope="module")
def log():
    return simulate_log()


@pytest.fixture(scope="module")
def fitted(log):
    model = CustomerForecaster(horizon_days=90, random_state=0).fit(log, AS_OF)
    return model, model.predict(log, AS_OF)


@pytest.fixture(scope="module")
def holdout(log):
    """evaluate_holdout as of AS_OF + 90 days (scored on the 90 days after AS_OF), computed once."""
    return evaluate_holdout(log, AS_OF + pd.Timedelta(days=90), horizon_days=90, random_state=0)


@pytest.fixture(scope="module")
def fit_evaluated(log):
    """fit_evaluate as of AS_OF + 90 days: the published model and its holdout report, computed once."""
    return fit_evaluate(log, AS_OF + pd.Timedelta(days=90), horizon_days=90, random_state=0)


def test_forecaster_weekly_buyer_gets_horizon_over_seven(fitted):
    _, pred = fitted
    row = pred.loc[WEEKLY]
    assert row["expected_purchases"] == pytest.approx(90 / 7, rel=0.3)
    assert row["churn_probability"] < 0.1
    assert row["basis"].endswith("· own history")


def test_forecaster_lapsed_customer_gets_high_churn(fitted):
    _, pred = fitted
    assert pred.loc[LAPSED, "churn_probability"] > 0.7
    assert pred.loc[LAPSED, "expected_purchases"] < 1.0


def test_forecaster_outputs_are_finite_and_in_range(fitted, log):
    _, pred = fitted
    seen = log.loc[log["occurred_at"] < AS_OF + pd.Timedelta(days=1), "customer_id"].unique()
    assert set(pred.index) == set(seen)
    num = pred.drop(columns=["basis", "factors"])
    assert np.isfinite(num.to_numpy(float)).all()
    assert (num.to_numpy(float) >= 0).all()
    assert pred["churn_probability"].between(0, 1).all()
    assert (pred["purchases_p10"] <= pred["expected_purchases"]).all()
    assert (pred["expected_purchases"] <= pred["purchases_p90"]).all()
    assert (pred["clv"] >= pred["expected_spend"] - 1e-9).all()  # 365 days >= 90 days
    assert (pred["expected_refund_rate"] == 0).all()  # no refunds in the data
    assert {b.split(" · ")[1] for b in pred["basis"]} == {"own history", "population averages"}
    factors = pred.loc[WEEKLY, "factors"]
    assert 2 <= len(factors) <= 4 and all(isinstance(f, str) and f for f in factors)


def test_forecaster_scores_every_candidate_on_each_backtest_window(fitted):
    model, _ = fitted
    report = model.report_
    json.dumps(report)
    origins = report["backtest"]["origins"]
    # 365 days of history and a 90-day horizon: three windows of 90 days, rolling by 45
    assert [o["cut"] for o in origins] == ["2023-10-02", "2023-08-18", "2023-07-04"]
    for o in origins:
        assert {"naive rate", "base rate", "linear", "polynomial", "glm", "svr", "gbm", "bgnbd", "paretonbd",
                "ensemble"} <= set(o["scores"])
        assert o["scores"]["polynomial"]["orders_rmse"] > 0
    for target in ("orders", "spend", "churn"):
        choice = report["backtest"]["choice"][target]
        assert model.chosen_[target] == choice["chosen"] and choice["reason"]
        assert len(choice["origins"][choice["chosen"]]) == 3


def test_forecaster_beats_the_baselines_where_a_model_is_planted(fitted):
    # given: Pareto/NBD-like customers, so a buy-till-you-die model has real signal to find
    model, _ = fitted
    choice = model.report_["backtest"]["choice"]
    # then: a model, not a baseline, wins each target, and it beat the baseline on every window
    for target in ("orders", "spend", "churn"):
        c = choice[target]
        assert not c["is_baseline"], c["reason"]
        assert all(m < b for m, b in zip(c["origins"][c["chosen"]], c["origins"][c["baseline"]]))
    assert model.report_["outcome"]["basis"] == "model"


def test_forecaster_ignores_rows_after_as_of(log, fitted):
    # given: the same log plus purchases after as_of, for a known and a new customer
    later = _rows([WEEKLY, 777_777], [366.0, 367.5], [500.0, 80.0], prefix="late")
    extended = pd.concat([log, later], ignore_index=True)
    _, before = fitted
    # when
    after = CustomerForecaster(horizon_days=90, random_state=0).fit(extended, AS_OF).predict(extended, AS_OF)
    # then
    pd.testing.assert_frame_equal(before, after)


def test_forecaster_does_not_mutate_input(log):
    small = log[log["customer_id"] < 300].copy()
    copy = small.copy()
    CustomerForecaster(algorithm="bgnbd").fit(small, AS_OF).predict(small, AS_OF)
    pd.testing.assert_frame_equal(small, copy)


def test_forecaster_refund_rate_is_shrunk_towards_base():
    # given: two customers with equal spend, one of whom refunded a quarter of it
    buys = _rows([1] * 10 + [2] * 10, list(range(0, 100, 10)) * 2, [10.0] * 20)
    refund = _rows([1], [95.0], [25.0], kind="refund", prefix="r")
    frame = pd.concat([buys, refund], ignore_index=True)
    as_of = START + pd.Timedelta(days=120)
    pred = CustomerForecaster(algorithm="bgnbd").fit(frame, as_of).predict(frame, as_of)
    assert 0 < pred.loc[2, "expected_refund_rate"] < pred.loc[1, "expected_refund_rate"] < 0.25


def test_forecaster_single_purchase_customer_uses_base_averages(fitted, log):
    _, pred = fitted
    counts = log[log["occurred_at"] <= AS_OF].groupby("customer_id")["occurred_at"].apply(
        lambda s: s.dt.normalize().nunique())
    once = counts[counts == 1].index
    assert len(once) and pred.loc[once, "basis"].str.endswith("· population averages").all()


def test_forecaster_short_history_is_published_as_not_yet_validated():
    # given: ten days of history, too little to hold a window back
    frame = _rows([1, 1, 2, 3, 3], [0, 3, 5, 1, 9], [5.0] * 5)
    as_of = START + pd.Timedelta(days=10)
    # when
    model = CustomerForecaster().fit(frame, as_of)
    pred = model.predict(frame, as_of)
    # then: BG/NBD on all the history, labelled as such, for every customer
    assert model.chosen_ == {"orders": "bgnbd", "spend": "bgnbd", "churn": "bgnbd"}
    assert model.report_["outcome"]["basis"] == "not validated"
    assert "not yet validated: 11 days of history" in model.report_["backtest"]["reason"]
    assert len(pred) == 3 and np.isfinite(pred["expected_purchases"]).all()
    assert pred["basis"].str.startswith("not yet validated: 11 days of history").all()


def test_evaluate_holdout_beats_naive_and_covers_about_80_percent(holdout):
    # when: scored on the most recent 90 days held back, which really happened
    res = holdout
    # then
    json.dumps(res)
    assert res["beats_naive"] is True
    naive = res["baselines"]["naive rate"]
    assert res["model"]["orders"]["rmse"] <= naive["orders"]["rmse"]
    assert res["model"]["spend"]["rmse"] <= naive["spend"]["rmse"]
    assert res["model"]["churn"]["auc"] > 0.7
    assert res["model"]["churn"]["brier"] <= res["candidates"]["base rate"]["churn"]["brier"]
    cov = res["model"]["coverage"]
    assert 0.65 <= cov["purchases_p10_p90"] <= 0.95
    assert 0.65 <= cov["spend_p10_p90"] <= 0.95
    assert len(res["series"]["orders"]) == 10
    assert {"linear", "polynomial", "bgnbd", "ensemble", "naive rate"} <= set(res["candidates"])


def test_daily_purchases_counts_an_order_once_on_its_first_day():
    # given: order "a" has lines on day 0 and (after midnight) day 1; order "b" is on day 1
    frame = _rows([5, 5, 5, 5], [0.5, 1.1, 1.2, 3.0], [1.0, 2.0, 4.0, 8.0])
    frame["order_ref"] = ["a", "a", "b", "c"]
    # when
    daily = daily_purchases(frame, START + pd.Timedelta(days=2))
    # then: day 3 is after as_of; day 1 holds order b only, but the spend of both lines
    assert daily["day"].tolist() == [daily["day"].iloc[0], daily["day"].iloc[0] + 1]
    assert daily["orders"].tolist() == [1, 1]
    assert daily["spend"].tolist() == [1.0, 6.0]


def test_fit_evaluate_is_deterministic_whatever_the_row_order(log, fit_evaluated):
    # given: the same rows in another order
    shuffled = log.sample(frac=1.0, random_state=7).reset_index(drop=True)
    as_of = AS_OF + pd.Timedelta(days=90)
    # when
    model, report = fit_evaluate(shuffled, as_of, horizon_days=90, random_state=0)
    # then: the same choice and the same numbers, to the last bit
    first_model, first_report = fit_evaluated
    assert report == first_report
    pd.testing.assert_frame_equal(model.predict(shuffled, as_of), first_model.predict(log, as_of))


def test_fit_evaluate_model_is_the_plain_fit(log, fit_evaluated):
    as_of = AS_OF + pd.Timedelta(days=90)
    # when
    model, report = fit_evaluated
    # then: the published model is exactly what fit gives as of as_of
    plain = CustomerForecaster(horizon_days=90, random_state=0).fit(log, as_of)
    assert model.as_of_ == as_of and model.chosen_ == plain.chosen_
    pd.testing.assert_frame_equal(model.predict(log, as_of), plain.predict(log, as_of))
    assert report["cut"] == str(AS_OF.date()) and report == plain.report_


def test_spend_range_agrees_with_the_purchases_range(fitted):
    # given: the published forecasts of the simulated shop
    _, pred = fitted
    # then: a customer sure to buy (purchases P10 above 0) has a spend P10 above 0, one who may
    # well buy nothing has a spend P10 of 0, and spend ranges contain the expected spend
    sure = pred["purchases_p10"] > 0
    assert sure.any() and (~sure).any()
    assert (pred.loc[sure, "spend_p10"] > 0).all()
    assert (pred.loc[~sure, "spend_p10"] == 0).all()
    assert (pred["spend_p10"] <= pred["expected_spend"]).all()
    assert (pred["expected_spend"] <= pred["spend_p90"]).all()


def _trending_log(growth):
    """A stationary shop whose customers all buy ``growth`` times as often from day 240 on."""
    rng = np.random.default_rng(3)
    n = 600
    rate = rng.gamma(2.0, 0.05, n)
    parts = []
    for start, end, factor in ((0, 240, 1.0), (240, 365, growth)):
        counts = rng.poisson(rate * (end - start) * factor)
        cust = np.repeat(np.arange(n), counts)
        parts.append(_rows(cust, start + rng.random(len(cust)) * (end - start), np.full(len(cust), 10.0),
                           prefix=f"p{start}-"))
    return pd.concat(parts, ignore_index=True)


def test_portfolio_range_widens_with_the_level_error_seen_on_the_backtest_windows():
    # given: a planted shop with a known, steady rate, and the same shop whose demand jumps
    steady, _ = fit_evaluate(_trending_log(1.0), AS_OF, horizon_days=60, random_state=0)
    jump, _ = fit_evaluate(_trending_log(1.6), AS_OF, horizon_days=60, random_state=0)
    # then: each window's interval is recorded with whether it held the actual total, and the
    # coverage is the share of windows held
    for model in (steady, jump):
        orders = model.report_["portfolio"]["orders"]
        assert len(orders["windows"]) == 3
        assert orders["coverage"] == np.mean([w["covered"] for w in orders["windows"]])
        for w in orders["windows"]:
            assert w["low"] < w["predicted"] < w["high"]
            assert w["covered"] == (w["low"] <= w["actual"] <= w["high"])
    # the steady shop's totals are close, so its level error is small and its range held;
    # the jump is a level error no sum of customers shows: the range widens with it
    steady_orders, jump_orders = steady.report_["portfolio"]["orders"], jump.report_["portfolio"]["orders"]
    assert steady_orders["level_sd"] < 0.1 and steady_orders["coverage"] >= 2 / 3
    assert jump_orders["level_sd"] > 2 * steady_orders["level_sd"]
    widths = [w["high"] / w["low"] for w in jump_orders["windows"]]
    assert min(widths) > max(w["high"] / w["low"] for w in steady_orders["windows"])
