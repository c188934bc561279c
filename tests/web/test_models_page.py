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


def test_model_list_queries_are_bounded(manager_client, world, django_assert_max_num_queries):
    with django_assert_max_num_queries(14):
        manager_client.get(reverse("model_list"))
