"""The forecaster on every data shape of the matrix (tests/shapes.py): a defined, published
outcome with its reason, never a traceback, and never worse than the baseline it was chosen
against on its own held-back windows. No database."""
import json

import numpy as np
import pandas as pd
import pytest

from ml.pipelines.forecasting import BASELINE_OF, fit_evaluate
from tests import shapes

MATRIX = shapes.matrix()


@pytest.fixture(scope="module")
def fitted():
    """name -> (model, report, predictions), each shape fitted once for the module."""
    out = {}
    for name, shape in MATRIX.items():
        model, report = fit_evaluate(shape.interactions, shape.as_of, shape.horizon_days, random_state=0)
        out[name] = (model, report, model.predict(shape.interactions, shape.as_of))
    return out


def _buyers(shape):
    t = shape.interactions
    return set(t.loc[(t["type"] == "purchase") & (t["occurred_at"] < shape.as_of + pd.Timedelta(days=1)),
                     "customer_id"])


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_every_shape_publishes_a_forecast_for_every_buyer(fitted, name):
    model, report, pred = fitted[name]
    json.dumps(report)
    assert set(pred.index) == _buyers(MATRIX[name])
    assert np.isfinite(pred["expected_purchases"]).all() and (pred["expected_purchases"] >= 0).all()
    assert pred["churn_probability"].between(0, 1).all()
    assert report["outcome"]["basis"] in ("model", "baseline", "not validated") and report["outcome"]["summary"]
    assert pred["basis"].str.len().between(1, 100).all()
    for target in ("orders", "churn"):
        assert report["targets"][target]["forecast"] is True


@pytest.mark.parametrize("name", sorted(n for n in MATRIX if n != "two_weeks"))
def test_published_forecast_is_no_worse_than_its_baseline_on_the_held_back_windows(fitted, name):
    model, report, _ = fitted[name]
    backtest = report["backtest"]
    assert backtest["validated"] and len(backtest["origins"]) >= 2
    for target, choice in backtest["choice"].items():
        baseline = BASELINE_OF[target]
        # losses are relative to the baseline on each window: the baseline scores 1 (or its raw
        # loss where the baseline scored a perfect 0)
        assert choice["mean"][choice["chosen"]] <= choice["mean"][baseline] + 1e-12, (target, choice["reason"])
        assert model.chosen_[target] == choice["chosen"]


def test_planted_business_is_forecast_by_a_model_that_beats_naive_on_the_latest_window(fitted):
    _, report, _ = fitted["business"]
    naive = report["baselines"]["naive rate"]
    assert report["outcome"]["basis"] == "model"
    assert report["model"]["orders"]["rmse"] < naive["orders"]["rmse"]
    assert report["model"]["spend"]["rmse"] < naive["spend"]["rmse"]
    assert report["model"]["churn"]["brier"] < report["candidates"]["base rate"]["churn"]["brier"]


@pytest.mark.parametrize("name, window", [("shorter_than_horizon", 26), ("between_one_and_two_horizons", 45)])
def test_short_history_is_validated_on_shorter_windows_scaled_to_the_horizon(fitted, name, window):
    model, report, pred = fitted[name]
    assert report["backtest"]["window_days"] == window
    assert "scaled to the 90-day horizon" in report["backtest"]["reason"]
    # the forecast is for the whole horizon: a customer buying weekly lately expects several orders
    assert pred["expected_purchases"].max() > 3


def test_two_weeks_of_history_is_published_as_not_yet_validated(fitted):
    model, report, pred = fitted["two_weeks"]
    assert report["outcome"]["basis"] == "not validated" and "model" not in report
    assert report["backtest"]["reason"].startswith("not yet validated: 14 days of history")
    assert pred["basis"].str.startswith("not yet validated: 14 days of history").all()
    assert (pred["purchases_p10"] <= pred["expected_purchases"]).all()
    assert (pred["expected_purchases"] <= pred["purchases_p90"]).all()


def test_no_catalogue_and_one_category_change_nothing_in_the_forecast(fitted):
    base = fitted["business"][2]
    pd.testing.assert_frame_equal(fitted["no_catalogue"][2], base)
    pd.testing.assert_frame_equal(fitted["one_category"][2], base)


def test_no_amounts_forecasts_orders_and_churn_but_not_money(fitted):
    model, report, pred = fitted["no_amounts"]
    for target in ("spend", "clv", "refund_rate"):
        assert report["targets"][target]["forecast"] is False
        assert report["targets"][target]["reason"].startswith("no amounts: 0 % of purchases carry an amount")
    assert set(report["backtest"]["choice"]) == {"orders", "churn"}
    for column in ("expected_spend", "clv", "expected_refund_rate", "spend_p10", "spend_p90"):
        assert pred[column].isna().all()
    assert pred["expected_purchases"].notna().all()
    assert "spend" not in report["model"] or report["model"]["spend"] is None
    assert not any("average order" in f for factors in pred["factors"] for f in factors)
    # orders and churn are the same forecast as with amounts when the models chosen are the same
    base_model, _, base_pred = fitted["business"]
    if base_model.chosen_["orders"] == model.chosen_["orders"]:
        np.testing.assert_allclose(pred["expected_purchases"], base_pred["expected_purchases"])


def test_refund_rate_is_zero_without_refunds_and_follows_refunders_with_them(fitted):
    _, report, pred = fitted["business"]
    assert (pred["expected_refund_rate"] == 0).all()
    assert report["targets"]["refund_rate"]["reason"] == "no refunds recorded: 0 for everyone"
    _, report, pred = fitted["refunds"]
    t = MATRIX["refunds"].interactions
    refunders = set(t.loc[t["type"] == "refund", "customer_id"])
    assert report["targets"]["refund_rate"]["basis"] == "model"
    with_refunds = pred.loc[pred.index.isin(refunders), "expected_refund_rate"]
    without = pred.loc[~pred.index.isin(refunders), "expected_refund_rate"]
    assert with_refunds.median() > without.median() > 0


def test_one_time_buyers_get_forecasts_that_nobody_will_come_back_for(fitted):
    _, report, pred = fitted["one_time_buyers"]
    # nobody ever bought on a second day: nobody is expected to, on any candidate that wins
    assert pred["expected_purchases"].mean() < 0.1
    assert pred["churn_probability"].min() > 0.9


def test_twenty_customers_run_on_baselines_and_population_models_only(fitted):
    _, report, _ = fitted["customers_20"]
    scored = set(report["backtest"]["origins"][0]["scores"])
    assert scored == {"naive rate", "base rate", "bgnbd", "paretonbd"}


def test_huge_orders_keep_their_customers_apart(fitted):
    _, _, pred = fitted["huge_orders"]
    t = MATRIX["huge_orders"].interactions
    spend = t.groupby("customer_id")["amount"].sum()
    big = spend[spend > 20 * spend.median()].index
    assert len(big) and np.isfinite(pred["expected_spend"]).all()
    assert pred.loc[pred.index.isin(big), "expected_spend"].median() > 10 * pred["expected_spend"].median()


def test_rows_at_the_edges_of_the_as_of_day():
    # given: one purchase at 23:59:59 on the as_of day, one at 00:00:00 the day after
    shape = MATRIX["business"]
    edge = pd.DataFrame({"customer_id": [9001, 9002], "product_id": [1, 1], "type": "purchase",
                         "occurred_at": [shape.as_of + pd.Timedelta(hours=23, minutes=59, seconds=59),
                                         shape.as_of + pd.Timedelta(days=1)],
                         "quantity": [1, 1], "amount": [5.0, 5.0], "order_ref": ["e1", "e2"]})
    frame = pd.concat([shape.interactions, edge], ignore_index=True)
    # when
    model, _ = fit_evaluate(frame, shape.as_of, 90, random_state=0, max_origins=2)
    pred = model.predict(frame, shape.as_of)
    # then: the whole as_of day counts, the next day does not
    assert 9001 in pred.index and 9002 not in pred.index
