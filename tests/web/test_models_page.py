"""Models page: runs, metrics vs baselines, holdout chart, live progress JSON, retrain and rollback by role."""
import pytest
from django.urls import reverse

from ml.models import TrainingRun


def test_model_list_shows_metrics_against_baseline(rep_client, world):
    response = rep_client.get(reverse("model_list"))
    html = response.content.decode()
    assert response.context["forecast_table"]["columns"] == ["model", "naive rate"]
    assert "Churn: AUC" in html and 'id="chart-series-orders"' in html


def test_model_list_rep_sees_no_retrain_buttons(rep_client, world):
    assert "Retrain" not in rep_client.get(reverse("model_list")).content.decode().replace("retrain", "")


def test_model_list_manager_sees_retrain_and_rollback(manager_client, world):
    html = manager_client.get(reverse("model_list")).content.decode()
    assert "Retrain forecast now" in html
    assert reverse("model_publish", args=[world.seg_old.pk]) in html


def test_model_list_without_runs_says_retrain(manager_client, db):
    assert "No forecast model is live yet" in manager_client.get(reverse("model_list")).content.decode()


def test_model_retrain_by_rep_is_forbidden(rep_client, world):
    assert rep_client.post(reverse("model_retrain"), {"kind": "forecast"}).status_code == 403
    assert not TrainingRun.objects.filter(status="queued").exists()


@pytest.mark.parametrize("role", ["manager_client", "admin_client_"])
def test_model_retrain_by_manager_queues_run(request, world, role, django_capture_on_commit_callbacks):
    client = request.getfixturevalue(role)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("model_retrain"), {"kind": "segmentation"})
    assert response.status_code == 302
    assert TrainingRun.objects.filter(kind="segmentation", status="queued").count() == 1
    assert len(callbacks) == 1  # the task is sent once the request's transaction commits


def test_model_retrain_twice_joins_queued_run(manager_client, world):
    manager_client.post(reverse("model_retrain"), {"kind": "forecast"})
    response = manager_client.post(reverse("model_retrain"), {"kind": "forecast"}, follow=True)
    assert TrainingRun.objects.filter(kind="forecast", status="queued").count() == 1
    assert "already queued" in response.content.decode()


def test_model_rollback_by_manager_publishes_earlier_run(manager_client, world):
    manager_client.post(reverse("model_publish", args=[world.seg_old.pk]))
    world.seg_old.refresh_from_db()
    world.seg_run.refresh_from_db()
    assert world.seg_old.is_published and not world.seg_run.is_published


def test_model_rollback_by_rep_is_forbidden(rep_client, world):
    assert rep_client.post(reverse("model_publish", args=[world.seg_old.pk])).status_code == 403
    world.seg_old.refresh_from_db()
    assert not world.seg_old.is_published


def test_model_rollback_to_failed_run_is_refused(manager_client, world):
    failed = TrainingRun.objects.create(kind="forecast", status="failed")
    response = manager_client.post(reverse("model_publish", args=[failed.pk]), follow=True)
    assert "only a succeeded run can be published" in response.content.decode()


def test_run_status_json_reports_progress(rep_client, world):
    run = TrainingRun.objects.create(kind="forecast", status="running", stage="training", progress=40)
    data = rep_client.get(reverse("run_status", args=[run.pk])).json()
    assert data["status"] == "running" and data["progress"] == 40 and data["finished"] is False


def test_model_list_polls_active_runs(rep_client, world):
    run = TrainingRun.objects.create(kind="forecast", status="queued")
    html = rep_client.get(reverse("model_list")).content.decode()
    assert f'data-poll="{reverse("run_status", args=[run.pk])}"' in html


# On PostgreSQL the funnel and uplift are read in a savepoint with report settings (crm.sql.report_read):
# three statements more than on SQLite, none per row.
MODEL_PAGE_QUERIES = 16


def test_model_list_queries_are_bounded(manager_client, world, django_assert_max_num_queries):
    with django_assert_max_num_queries(MODEL_PAGE_QUERIES):
        manager_client.get(reverse("model_list"))


# --- what each run published and why (issue 12) ------------------------------------------------

def _metrics(run, metrics):
    TrainingRun.objects.filter(pk=run.pk).update(metrics=metrics)


def test_model_list_shows_the_outcome_line_and_basis_badge(rep_client, world):
    from .run_metrics import forecast_metrics, recommendation_metrics

    _metrics(world.fc_run, forecast_metrics(basis="baseline"))
    _metrics(world.rec_run, recommendation_metrics())

    html = rep_client.get(reverse("model_list")).content.decode()

    assert "Baseline: naive rate (no model beat it on 2 windows of 90 days)" in html
    assert '<span class="badge basis-baseline">baseline</span> · ' in html
    assert "Model: item-item for cross-sell, repeat_buy for reorder" in html
    assert '<span class="badge basis-model">model</span>' in html


def test_model_list_shows_the_per_origin_backtest_table_with_choice_and_reason(rep_client, world):
    from .run_metrics import forecast_metrics

    _metrics(world.fc_run, forecast_metrics())

    response = rep_client.get(reverse("model_list"))
    html = response.content.decode()

    # the plan's reason, one column per origin (cut date) and a row per candidate
    assert "Backtest: validated on 2 windows of 90 days" in html
    (orders,) = [t for t in response.context["kinds"][1]["outcome"]["tables"] if t["target"] == "orders"]
    assert [c["cut"] for c in orders["cuts"]] == ["2025-11-02", "2025-08-04"]
    assert [(r["name"], r["values"], r["mean"]) for r in orders["rows"]] == [
        ("naive rate", ["1.4", "1.52"], "1.46"), ("bg/nbd", ["1.31", "1.47"], "1.39"),
        ("ensemble", ["1.2", "1.29"], "1.245")]
    assert "cut 2025-11-02" in html and "scored 2025-11-03 – 2026-01-31" in html
    assert "Purchases: orders RMSE" in html and "Churn: churn AUC" in html and "(higher is better)" in html
    # the chosen and the best candidate are marked, and the choice says why in words
    block = html[html.index('id="backtest-forecast-orders"'):html.index('id="backtest-forecast-churn"')]
    assert '<tr class="chosen"><th scope="row">ensemble <span class="badge chosen">chosen</span> ' \
           '<span class="badge best">best</span></th>' in block
    assert 'naive rate <span class="badge basis-baseline">baseline</span>' in block
    assert "<strong>Choice:</strong> ensemble: the lowest mean orders RMSE over 2 backtest windows." in block


def test_model_list_marks_a_simpler_candidate_kept_within_the_spread(rep_client, world):
    from .run_metrics import recommendation_metrics

    _metrics(world.rec_run, recommendation_metrics())

    html = rep_client.get(reverse("model_list")).content.decode()

    block = html[html.index('id="backtest-recommendation-reorder"'):]
    assert 'repeat_buy <span class="badge chosen">chosen</span> <span class="badge basis-baseline">baseline' in block
    assert 'cycle <span class="badge best">best</span>' in block
    assert "so the simpler candidate is kept" in block and "baseline kept" in block


def test_model_list_not_validated_run_says_why_without_a_holdout_table(rep_client, world):
    from .run_metrics import SHORT_HISTORY, forecast_metrics

    _metrics(world.fc_run, forecast_metrics(windows=0))

    html = rep_client.get(reverse("model_list")).content.decode()

    assert f"Backtest: {SHORT_HISTORY}" in html
    assert '<span class="badge basis-unvalidated">not yet validated</span>' in html
    assert "Most recent window" not in html


def test_model_list_forecast_without_spend_drops_spend_rows_and_says_why(rep_client, world):
    from .run_metrics import NO_AMOUNTS, forecast_metrics

    _metrics(world.fc_run, forecast_metrics(spend=False))

    response = rep_client.get(reverse("model_list"))
    html = response.content.decode()

    assert [label for label, _b, _v in response.context["forecast_table"]["rows"]] == [
        "Purchases: mean abs. error", "Purchases: RMSE", "Churn: AUC", "Churn: Brier score"]
    assert f"Spend and lifetime value: not forecast ({NO_AMOUNTS})." in html
    assert 'id="backtest-forecast-spend"' not in html
    assert 'id="chart-series-orders"' in html and 'id="chart-series-spend"' not in html


def test_model_list_gate_sentence_only_when_the_run_has_a_gate(rep_client, world):
    from .run_metrics import forecast_metrics

    assert "Beats the naive baseline" in rep_client.get(reverse("model_list")).content.decode()  # an older run
    _metrics(world.fc_run, forecast_metrics())
    assert "naive baseline:" not in rep_client.get(reverse("model_list")).content.decode()


def test_model_list_skipped_run_shows_badge_and_reason(rep_client, world):
    reason = "no product catalogue: purchases name no product, so no recommendations"
    TrainingRun.objects.filter(pk=world.rec_run.pk).update(is_published=False)
    skipped = TrainingRun.objects.create(kind="recommendation", status="skipped", error=reason)

    html = rep_client.get(reverse("model_list")).content.decode()

    assert f'<span class="badge skipped">skipped</span> No recommendation model: {reason}.' in html
    assert f'<td>#{skipped.pk}</td>' in html and f'<span class="reason">{reason}</span>' in html


def test_model_list_skipped_run_keeps_the_live_one(rep_client, world):
    reason = "no product catalogue: purchases name no product"
    skipped = TrainingRun.objects.create(kind="recommendation", status="skipped", error=reason)

    html = rep_client.get(reverse("model_list")).content.decode()

    assert (f"The latest run (#{skipped.pk}) was skipped: {reason}. Run #{world.rec_run.pk} stays live."
            in html)


def test_model_list_with_new_metrics_queries_are_bounded(manager_client, world, django_assert_max_num_queries):
    from .run_metrics import forecast_metrics, recommendation_metrics

    _metrics(world.fc_run, forecast_metrics())
    _metrics(world.rec_run, recommendation_metrics(reorder_reason="nobody re-buys"))
    TrainingRun.objects.create(kind="segmentation", status="skipped", error="20 customers")
    with django_assert_max_num_queries(MODEL_PAGE_QUERIES):
        manager_client.get(reverse("model_list"))
