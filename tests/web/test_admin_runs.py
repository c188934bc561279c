"""Admin: a run's outcome (or why it was skipped) in the runs list; a forecast value that was not
forecast reads "not forecast"; insight lists do not read their run's metrics once per row."""
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ml.models import Forecast, TrainingRun

from .run_metrics import forecast_metrics


def test_admin_runs_list_shows_outcome_and_skipped_reason(admin_client_, world):
    TrainingRun.objects.filter(pk=world.fc_run.pk).update(metrics=forecast_metrics(basis="baseline"))
    TrainingRun.objects.create(kind="recommendation", status="skipped", error="no product catalogue")

    html = admin_client_.get(reverse("admin:ml_trainingrun_changelist")).content.decode()

    assert "baseline: naive rate (no model beat it on 2 windows of 90 days)" in html
    assert "skipped: no product catalogue" in html


def test_admin_forecast_list_says_not_forecast_and_leaves_run_metrics_unread(admin_client_, world):
    TrainingRun.objects.filter(pk=world.fc_run.pk).update(metrics=forecast_metrics(spend=False))
    Forecast.objects.filter(run=world.fc_run).update(expected_spend=None, clv=None)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client_.get(reverse("admin:ml_forecast_changelist"))

    html = response.content.decode()
    assert response.status_code == 200 and html.count("not forecast") >= 8  # spend and CLV of 4 customers
    listing = [q["sql"] for q in queries.captured_queries if 'FROM "ml_forecast"' in q["sql"]]
    assert listing and not any('"ml_trainingrun"."metrics"' in sql for sql in listing)
    change = reverse("admin:ml_forecast_change", args=[Forecast.objects.filter(run=world.fc_run).first().pk])
    assert admin_client_.get(change).status_code == 200
