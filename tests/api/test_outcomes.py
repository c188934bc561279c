"""What each run published and why, as an integration sees it: forecast targets not forecast are
null in the API (the prepared read and the documented serializer alike) and empty in the export,
a baseline forecast says so in `basis`, and training runs carry `metrics.outcome`, the backtest
and the `skipped` status, all documented in the OpenAPI schema."""
import csv

import pytest
from django.core.management import call_command

from crm.models import Customer
from ml import insights as ml_selectors
from ml.models import Forecast, TrainingRun
from web.api import serializers as s

from ..web.run_metrics import NO_AMOUNTS, forecast_metrics, recommendation_metrics

NOT_FORECAST = {"expected_spend": None, "clv": None, "spend_p10": None, "spend_p90": None}


@pytest.fixture
def no_amounts(book):
    """The book's forecast run as one on purchases without amounts: spend and CLV not forecast."""
    run = book["runs"]["forecast"]
    TrainingRun.objects.filter(pk=run.pk).update(metrics=forecast_metrics(spend=False))
    Forecast.objects.filter(run=run).update(basis="model: ensemble", **NOT_FORECAST)
    return book


def test_customer_api_gives_null_for_targets_not_forecast(no_amounts, manager_client):
    body = manager_client.get(f"/api/v1/customers/{no_amounts['mine'].pk}/").json()

    forecast = body["insights"]["forecast"]
    assert {k: forecast[k] for k in NOT_FORECAST} == NOT_FORECAST
    assert forecast["expected_purchases"] == 2.5 and forecast["churn_probability"] == 0.2
    assert forecast["expected_refund_rate"] == 0.01


def test_customer_list_api_gives_null_for_targets_not_forecast(no_amounts, manager_client):
    results = manager_client.get("/api/v1/customers/", {"ordering": "-clv"}).json()["results"]

    assert len(results) == 3
    assert all(r["insights"]["forecast"]["clv"] is None for r in results)


def test_prepared_records_with_nulls_match_the_documented_serializer(no_amounts, manager):
    """customer_records' converters give exactly what CustomerSerializer gives, nulls included."""
    Forecast.objects.filter(customer=no_amounts["free"]).update(expected_refund_rate=None)
    for customer in Customer.objects.order_by("pk"):
        customer_with_insights = Customer.objects.select_related("owner").get(pk=customer.pk)
        customer_with_insights.insights = ml_selectors.insights_by_customer([customer_with_insights])[customer.pk]
        documented = s.CustomerSerializer(customer_with_insights).data
        (record,) = ml_selectors.customer_records(manager, pk=customer.pk)
        assert s.customer_representation(record) == documented, customer.external_id
    (free,) = ml_selectors.customer_records(manager, pk=no_amounts["free"].pk)
    assert s.customer_representation(free)["insights"]["forecast"]["expected_refund_rate"] is None


def test_customer_api_labels_a_baseline_forecast_in_basis(book, rep_client):
    run = book["runs"]["forecast"]
    TrainingRun.objects.filter(pk=run.pk).update(metrics=forecast_metrics(basis="baseline"))
    Forecast.objects.filter(run=run).update(basis="baseline: naive rate")

    body = rep_client.get(f"/api/v1/customers/{book['mine'].pk}/").json()

    assert body["insights"]["forecast"]["basis"] == "baseline: naive rate"
    run_body = rep_client.get(f"/api/v1/training-runs/{run.pk}/").json()
    assert run_body["metrics"]["outcome"]["basis"] == "baseline"
    assert run_body["metrics"]["backtest"]["choice"]["orders"]["is_baseline"] is True


def test_training_runs_api_returns_outcome_backtest_and_targets(no_amounts, rep_client):
    run = no_amounts["runs"]["forecast"]

    metrics = rep_client.get(f"/api/v1/training-runs/{run.pk}/").json()["metrics"]

    assert metrics["outcome"]["summary"].startswith("model: ensemble")
    assert metrics["backtest"]["reason"] == "validated on 2 windows of 90 days"
    assert [o["cut"] for o in metrics["backtest"]["origins"]] == ["2025-11-02", "2025-08-04"]
    assert metrics["targets"]["spend"] == {"forecast": False, "reason": NO_AMOUNTS}


def test_training_runs_api_lists_skipped_runs_with_their_reason(book, rep_client):
    reason = "no product catalogue: purchases name no product, so no recommendations"
    skipped = TrainingRun.objects.create(kind="recommendation", status="skipped", error=reason)

    results = rep_client.get("/api/v1/training-runs/", {"status": "skipped"}).json()["results"]

    assert [(r["id"], r["status"], r["error"], r["is_published"]) for r in results] == [
        (skipped.pk, "skipped", reason, False)]


def test_schema_documents_nullable_targets_run_outcome_and_skipped(client_for):
    schemas = client_for().get("/api/v1/schema/", {"format": "json"}).json()["components"]["schemas"]

    forecast = schemas["Forecast"]["properties"]
    for name in ("expected_spend", "clv", "expected_refund_rate", "spend_p10", "spend_p90"):
        assert forecast[name]["nullable"] is True and "not forecast" in forecast[name]["description"], name
    assert not forecast["expected_purchases"].get("nullable") and not forecast["churn_probability"].get("nullable")
    assert "baseline: naive rate" in forecast["basis"]["description"]
    run = schemas["TrainingRun"]["properties"]
    assert {"outcome", "backtest", "targets"} <= set(run["metrics"]["properties"])
    assert run["metrics"]["properties"]["outcome"]["properties"]["basis"]["enum"] == [
        "model", "baseline", "not validated"]
    assert "skipped" in schemas["TrainingRunStatusEnum"]["enum"] and "skipped" in run["status"]["description"]


def test_export_insights_leaves_targets_not_forecast_empty(no_amounts, tmp_path):
    out = tmp_path / "insights.csv"

    call_command("export_insights", "--out", str(out))

    with open(out, newline="", encoding="utf-8") as f:
        rows = {r["external_id"]: r for r in csv.DictReader(f)}
    mine = rows["C-MINE"]
    assert (mine["expected_spend"], mine["clv"]) == ("", "")
    assert float(mine["expected_purchases"]) == 2.5 and float(mine["expected_refund_rate"]) == 0.01
    assert mine["as_of"] == "2025-06-30" and mine["horizon_days"] == "90"


def test_recommendation_reasons_are_returned_on_the_run(book, rep_client):
    run = book["runs"]["recommendation"]
    TrainingRun.objects.filter(pk=run.pk).update(metrics=recommendation_metrics(reorder_reason="nobody re-buys"))

    metrics = rep_client.get(f"/api/v1/training-runs/{run.pk}/").json()["metrics"]

    assert metrics["reorder_reason"] == "nobody re-buys"
    assert metrics["backtest"]["choice"]["reorder"]["chosen"] == "repeat_buy"
