"""Rolling-origin windows and the one-standard-error choice (no database)."""
import pandas as pd
import pytest

from ml.pipelines.backtest import choose, plan_backtest, relative

AS_OF = pd.Timestamp("2024-12-30")


def _first_day(history_days):
    return AS_OF - pd.Timedelta(days=history_days - 1)


def test_plan_uses_the_horizon_as_window_once_history_holds_three():
    plan = plan_backtest(_first_day(365), AS_OF, 90)
    assert plan.window_days == 90 and plan.validated
    # rolling by half a window: the last 90 days, then 45 and 90 days earlier
    assert [str(c.date()) for c in plan.cuts] == ["2024-10-01", "2024-08-17", "2024-07-03"]
    assert plan.window(plan.cuts[0]) == (pd.Timestamp("2024-10-02"), AS_OF)


def test_plan_shortens_the_window_to_a_third_of_a_short_history():
    # given: history as long as the horizon
    plan = plan_backtest(_first_day(90), AS_OF, 90)
    # then: three windows of 30 days, each with at least 30 days of history before it
    assert plan.window_days == 30 and len(plan.cuts) == 3
    assert (plan.cuts[-1] - _first_day(90)).days + 1 >= 30
    assert "scaled to the 90-day horizon" in plan.reason


@pytest.mark.parametrize("days", [1, 13, 20])
def test_plan_holds_nothing_back_below_three_weeks(days):
    plan = plan_backtest(_first_day(days), AS_OF, 90)
    assert not plan.validated and plan.cuts == ()
    assert plan.reason.startswith(f"not yet validated: {days} days of history")


def test_plan_without_history_says_so():
    plan = plan_backtest(None, AS_OF, 90)
    assert not plan.validated and plan.history_days == 0


def test_choose_takes_the_complex_candidate_only_when_it_wins_on_every_window():
    losses = {"baseline": [1.0, 1.0], "model": [0.9, 0.95]}
    assert choose(losses, ["baseline", "model"])["chosen"] == "model"


def test_choose_keeps_the_simpler_candidate_within_the_spread():
    # given: the model wins on average but loses on one of the two windows
    losses = {"baseline": [1.0, 1.0], "model": [0.8, 1.05]}
    # when
    picked = choose(losses, ["baseline", "model"])
    # then
    assert picked["best"] == "model" and picked["chosen"] == "baseline"
    assert "simpler candidate is kept" in picked["reason"]


def test_choose_does_not_let_a_noisy_candidate_slip_ahead_of_a_steadier_simpler_one():
    # given: "wild" is within its (wide) spread of the best but worse on average than "steady",
    # which is simpler and was passed over
    losses = {"steady": [0.97, 0.97, 0.97], "wild": [0.6, 1.5, 1.1], "best": [0.9, 0.9, 0.9]}
    picked = choose(losses, ["steady", "wild", "best"])
    assert picked["chosen"] == "best"


def test_choose_ignores_candidates_missing_a_window_and_is_deterministic():
    losses = {"baseline": [1.0, 1.0, 1.0], "model": [0.5, None, 0.5], "other": [0.9, 0.92, 0.91]}
    first = choose(losses, ["baseline", "model", "other"])
    assert first["chosen"] == "other" and "model" not in first["mean"]
    assert choose(losses, ["baseline", "model", "other"]) == first
    assert choose({"x": [None]}, ["x"]) is None


def test_relative_divides_by_the_reference_on_each_window():
    out = relative({"ref": [2.0, 0.0], "m": [1.0, 0.5]}, "ref")
    assert out == {"ref": [1.0, 0.0], "m": [0.5, 0.5]}
