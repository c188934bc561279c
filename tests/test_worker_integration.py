"""A real Celery worker process runs a real task through the configured broker."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from crm.models import Customer, ImportRun
from crm.services import enqueue_import
from tests.conftest import wait_for


@pytest.mark.integration
def test_worker_runs_queued_import_through_broker(celery_worker_process, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path  # the saved files' absolute paths travel with the run
    upload = SimpleUploadedFile("customers.csv", b"external_id,name\nW1,Worker One\nW2,Worker Two\n")

    run = enqueue_import({"customers": upload}, source="upload")
    # enqueue_import hands the task over on commit; the transactional_db fixture autocommits.

    finished = wait_for(lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").first(), timeout=90,
                        what="the worker to finish the import")
    assert finished.files.get().created == 2
    assert set(Customer.objects.values_list("external_id", flat=True)) == {"W1", "W2"}


@pytest.mark.integration
@pytest.mark.slow
def test_worker_killed_mid_retrain_keeps_published_insights_and_run_finishes(start_worker, settings):
    import os
    import signal

    from django.core.management import call_command

    from ml import services
    from ml.models import Forecast, TrainingRun

    settings.ML_STALE_AFTER_SECONDS = 4
    call_command("seed_demo", customers=1500, seed=2, end="2025-06-30")
    live = services.run_now("forecast")
    assert live.is_published, live.error
    before = list(Forecast.objects.filter(run=live).order_by("customer_id").values_list("customer_id",
                                                                                         "expected_spend"))
    worker = start_worker()

    run, _ = services.request_retrain("forecast")
    wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, status="running").exists(), timeout=90,
             interval=0.05, what="the worker to start the run")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)

    # The published insights are exactly as they were while the run is orphaned.
    assert services.published_run("forecast").pk == live.pk
    assert list(Forecast.objects.filter(run=live).order_by("customer_id").values_list(
        "customer_id", "expected_spend")) == before
    # Beat's sweep finds the silent run and queues it again; a new worker finishes it.
    wait_for(lambda: services.sweep_stale_runs()["requeued"] == [run.pk], timeout=30, interval=0.5,
             what="the sweep to see the stale run")
    start_worker()
    finished = wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed",
                                                                                  "rejected"]).first(),
                        timeout=180, what="the retried run to finish")
    assert finished.status == "succeeded" and finished.attempts == 2
    assert services.published_run("forecast").pk == run.pk
    assert TrainingRun.objects.filter(status="running").count() == 0
