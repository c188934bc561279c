"""Home: the rep's worklists with reasons, key figures and charts."""
import math

import pytest
from django.urls import reverse
from django.utils import timezone

from ml.models import Segment, TrainingRun
from ml.pipelines.forecasting import Z90


def test_home_rep_worklists_show_own_customers_with_reasons(rep_client, world):
    html = rep_client.get(reverse("home")).content.decode()
    assert "High value at risk" in html and "Ada Lovelace" in html
    assert "70 % churn risk" in html                               # reason of the at-risk entry
    assert "Buys Widget every 30 days; last bought 31 days ago" in html  # reorder reason
    assert "Customers who buy Widget often buy Gadget" in html      # cross-sell reason
    assert "Bob Builder" in html                                    # new this week


def test_home_rep_never_lists_other_reps_customers(rep_client, world):
    html = rep_client.get(reverse("home")).content.decode()
    assert "Zed Secret" not in html and "Zed&#x27;s secret reason" not in html


def test_home_manager_sees_everyones_worklist(manager_client, world):
    html = manager_client.get(reverse("home")).content.decode()
    assert "Zed Secret" in html


def test_home_key_figures_count_visible_customers_and_forecast_range(rep_client, world):
    response = rep_client.get(reverse("home"))
    figures = response.context["figures"]
    assert figures["customers"] == 3                     # Ada, Bob, Una
    assert figures["revenue_90"] == 200.0                # Ada's and Una's purchases, not Zed's
    assert figures["forecast"]["spend"] == 750.0
    # three customers each P10-P90 100..400: independently, the total's spread is sqrt(3) x 150
    # (not 300..1200), log-normal around 750; this run recorded no level error
    spread = 3 ** 0.5 * 300 / 2 / 750
    assert figures["forecast"]["p10"] == pytest.approx(750 * math.exp(-spread))
    assert figures["forecast"]["p90"] == pytest.approx(750 * math.exp(spread))


def test_home_forecast_range_adds_the_level_error_of_the_backtest_windows(rep_client, world):
    # given: the forecast run's totals were off by about 20 % (log scale) on its backtest windows
    run = TrainingRun.objects.get(kind="forecast", is_published=True)
    run.metrics = {**run.metrics, "portfolio": {"spend": {"level_sd": 0.2}}}
    run.save()
    # when
    figures = rep_client.get(reverse("home")).context["figures"]
    # then: the range is that much wider than the customers' own spread alone
    sigma = math.sqrt(0.2 ** 2 + (3 ** 0.5 * 300 / (2 * Z90) / 750) ** 2)
    assert figures["forecast"]["p10"] == pytest.approx(750 * math.exp(-Z90 * sigma))
    assert figures["forecast"]["p90"] == pytest.approx(750 * math.exp(Z90 * sigma))
    assert figures["forecast"]["p90"] - figures["forecast"]["p10"] > 2 * 3 ** 0.5 * 150


def test_home_charts_are_served_from_static(rep_client, world):
    html = rep_client.get(reverse("home")).content.decode()
    assert "/static/vendor/chart.umd.js" in html
    assert 'id="chart-segments"' in html and 'id="chart-churn"' in html and 'id="chart-revenue"' in html


def test_home_without_data_says_to_import(manager_client, db):
    html = manager_client.get(reverse("home")).content.decode()
    assert "No customers yet" in html and reverse("import_list") in html
    assert "No forecast yet" in html


def test_home_without_recommendation_run_says_so(rep_client, world):
    TrainingRun.objects.filter(kind="recommendation").update(is_published=False)
    html = rep_client.get(reverse("home")).content.decode()
    assert "No reorder suggestions yet" in html


def test_home_queries_are_bounded(rep_client, world, django_assert_max_num_queries):
    with django_assert_max_num_queries(24):  # 20, the second factor's device, 3 groups of "My follow-ups"
        rep_client.get(reverse("home"))


def test_home_spend_not_forecast_says_so_with_the_reason(rep_client, world):
    from ml.models import Forecast

    from .run_metrics import NO_AMOUNTS, forecast_metrics

    # given a forecast run on purchases without amounts
    TrainingRun.objects.filter(pk=world.fc_run.pk).update(metrics=forecast_metrics(spend=False))
    Forecast.objects.filter(run=world.fc_run).update(expected_spend=None, spend_p10=None, spend_p90=None, clv=None)

    response = rep_client.get(reverse("home"))
    html = response.content.decode()

    # then the forecast figure says "not forecast" and why, with the orders it did forecast
    assert response.context["figures"]["forecast"]["spend"] is None
    assert '<span class="value">not forecast</span>' in html and "N" + NO_AMOUNTS[1:] in html
    assert "Expected orders: 7.5" in html  # Ada, Bob, Una: 2.5 each
    # and the value-at-risk worklist (churn x CLV) is empty because CLV is not forecast
    assert response.context["at_risk"] == []
    assert f"Value at risk needs the customer lifetime value, which is not forecast: {NO_AMOUNTS}." in html
    assert "No forecast yet" not in html


def test_home_empty_reorder_worklist_gives_the_runs_reason(rep_client, world):
    from ml.models import Suggestion

    from .run_metrics import recommendation_metrics

    Suggestion.objects.filter(kind="reorder").delete()
    TrainingRun.objects.filter(pk=world.rec_run.pk).update(
        metrics=recommendation_metrics(reorder_reason="nobody bought a product twice: no reorder lists"))

    html = rep_client.get(reverse("home")).content.decode()

    assert "Nobody bought a product twice: no reorder lists." in html


def test_home_kind_skipped_without_a_live_run_says_why(rep_client, world):
    TrainingRun.objects.filter(kind="segmentation").update(is_published=False)
    TrainingRun.objects.create(kind="segmentation", status="skipped", error="20 customers: too few to tell segments apart.")

    html = rep_client.get(reverse("home")).content.decode()

    assert "No segmentation: 20 customers: too few to tell segments apart." in html
    assert "No segmentation yet" not in html


def test_home_revenue_by_month_marks_the_current_month_as_to_date(rep_client, world):
    today = timezone.localdate()

    response = rep_client.get(reverse("home"))

    spec = response.context["charts"]["revenue"]
    assert spec["labels"][-1] == f"{today:%b %Y} (to date)"
    assert [label for label in spec["labels"] if "to date" in label] == [spec["labels"][-1]]
    assert spec["partial"] == 11 and spec["money"] == ["y"]
    assert f"{today:%b %Y} (to date) counts up to {today.day} {today:%b} only: the month is not over" in (
        response.content.decode())


def test_home_key_figures_are_money(rep_client, world, settings):
    settings.CRM_CURRENCY = "GBP"

    html = rep_client.get(reverse("home")).content.decode()

    assert '<span class="value">£200</span><span class="label">revenue, last 90 days</span>' in html
    assert '<span class="value">£750</span><span class="label">forecast, next 90 days</span>' in html
    assert "70 % churn risk × lifetime value £1,000.00" in html and '<td class="num">£700.00</td>' in html


def test_home_segment_chart_labels_are_wrapped_in_lines(rep_client, world):
    Segment.objects.filter(pk=world.sleepers.pk).update(name="Prospects / no purchases yet")

    spec = rep_client.get(reverse("home")).context["charts"]["segments"]

    assert spec["labels"] == ["Champions", ["Prospects / no", "purchases yet"]]  # whole words, 16 characters a line
