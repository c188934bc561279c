"""A real Celery worker process runs a real task through the configured broker."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from crm.imports.queue import enqueue_import
from crm.models import Customer, ImportRun
from tests.conftest import wait_for


@pytest.mark.integration
def test_worker_runs_queued_import_through_broker(celery_worker_process, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path  # nothing is written there: the worker reads the upload from the database
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


@pytest.fixture
def slow_import_env(monkeypatch):
    """Worker environment for a long import: small batches, no retrain after it.
    Listed before start_worker in a test's arguments so the worker starts with it."""
    monkeypatch.setenv("IMPORT_BATCH_SIZE", "100")
    monkeypatch.setenv("RETRAIN_AFTER_IMPORT", "0")
    # Batch by batch, so a worker killed part-way leaves committed batches for the next one to
    # upsert (a killed first load leaves nothing at all: tests/test_faults.py, test_import_bulk.py).
    monkeypatch.setenv("IMPORT_BULK_LOAD", "0")


@pytest.mark.integration
@pytest.mark.slow
def test_worker_killed_mid_import_is_taken_over_and_completes(slow_import_env, start_worker, settings, tmp_path):
    import os
    import signal

    from crm.imports.queue import dispatch_pending_imports, sweep_stale_imports
    from crm.models import Interaction

    settings.MEDIA_ROOT = tmp_path
    settings.ML_STALE_AFTER_SECONDS = 4
    customers = "external_id,name\n" + "".join(f"K{i},Customer {i}\n" for i in range(1000))
    interactions = "customer_external_id,type,occurred_at,amount,external_id\n" + "".join(
        f"K{i % 1000},purchase,2025-01-{1 + i % 28:02d},{1 + i % 50}.00,X{i}\n" for i in range(12000))
    worker = start_worker()
    run = enqueue_import({"customers": SimpleUploadedFile("customers.csv", customers.encode()),
                          "interactions": SimpleUploadedFile("interactions.csv", interactions.encode())},
                         source="upload")
    wait_for(lambda: Interaction.objects.count() >= 1000, timeout=120, interval=0.05,
             what="the worker to be part-way through the interactions")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    assert ImportRun.objects.get(pk=run.pk).status == "running"  # orphaned: nobody would finish it

    # Beat's sweep sees the silent import and queues it again; a new worker takes it over.
    wait_for(lambda: sweep_stale_imports()["requeued"] == [run.pk], timeout=30, interval=0.5,
             what="the sweep to see the stale import")
    start_worker()
    assert dispatch_pending_imports() == [run.pk]
    finished = wait_for(lambda: ImportRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed"]).first(),
                        timeout=180, what="the taken-over import to finish")
    assert finished.status == "succeeded" and finished.attempts == 2, finished.error
    # Every row exactly once: the re-run upserted the batches the killed worker had committed.
    assert Customer.objects.count() == 1000
    assert Interaction.objects.count() == 12000
    assert Interaction.objects.values("external_id").distinct().count() == 12000


@pytest.fixture
def webhook_env(monkeypatch, settings):
    """The worker may call the test's receiver on 127.0.0.1. Listed before start_worker in a test's
    arguments so the worker starts with it."""
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "1")
    settings.WEBHOOK_ALLOW_PRIVATE = True


@pytest.mark.integration
def test_worker_delivers_a_webhook_through_broker(webhook_env, start_worker):
    from django.db import transaction

    from crm import webhooks
    from crm.models import WebhookDelivery
    from tests.webhook_receiver import Receiver

    with Receiver() as receiver:
        receiver.answers = [503]  # the first attempt fails: retried from the row's next_attempt_at
        start_worker()
        endpoint = webhooks.create_endpoint(user=None, url=receiver.url, events=["run.published"])
        with transaction.atomic():  # on commit, crm.send_webhooks goes to the worker, which sends the delivery
            webhooks.enqueue("run.published", [("run:worker", {"run": 1}, None)])
        delivery = WebhookDelivery.objects.get()
        # Its outcome written (the 503, the lease let go), not only claimed: a claim counts the
        # attempt before the request is made.
        wait_for(lambda: WebhookDelivery.objects.filter(pk=delivery.pk, attempts=1, status="pending",
                                                        last_status_code=503, locked_until=None).exists(),
                 timeout=90, what="the worker's first attempt")
        # Beat's sweep, once the retry is due: hands it to the worker again.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
        assert webhooks.send_due() == [delivery.pk]
        done = wait_for(lambda: WebhookDelivery.objects.filter(pk=delivery.pk, status="delivered").first(),
                        timeout=90, what="the worker to deliver the retry")

    assert done.attempts == 2 and len(receiver.requests) == 2
    headers, body = receiver.requests[-1]
    assert webhooks.verify(endpoint.secret, headers["X-CRM-Signature"], body)


@pytest.fixture
def scoring_chunk_env(monkeypatch):
    """Worker environment for a fanned-out run: chunks of 400 buyers (forecast) or customers
    (recommendation). Listed before start_worker in a test's arguments so the worker starts with it."""
    monkeypatch.setenv("ML_SCORING_CHUNK", "400")
    monkeypatch.setenv("ML_SUGGEST_CHUNK", "400")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["forecast", "recommendation"])
def test_worker_killed_mid_chunk_its_chunk_is_redone_and_the_run_publishes_once(kind, scoring_chunk_env, start_worker,
                                                                                 settings):
    """On a real broker (Redis: fan-out is off on the embedded one) a forecast or recommendation
    run fans its scoring out; the worker is SIGKILLed while a chunk is running, the sweep sends
    that chunk again and a fresh worker finishes the run, published once with every row."""
    import os
    import signal

    from django.core.management import call_command

    from crm.models import AuditEvent
    from ml import scoring, services
    from ml.models import Forecast, ScoringChunk, Suggestion, TrainingRun

    rows = Forecast if kind == "forecast" else Suggestion
    if not scoring.fan_out_available():
        pytest.skip("needs a real broker (REDIS_URL): scoring is not fanned out on the embedded one")
    settings.ML_STALE_AFTER_SECONDS = 4
    call_command("seed_demo", customers=1600, seed=2, end="2025-06-30")
    worker = start_worker()

    run, _ = services.request_retrain(kind)
    running = wait_for(lambda: ScoringChunk.objects.filter(run_id=run.pk, status="running").first(), timeout=180,
                       interval=0.02, what="the worker to start scoring a chunk")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    lost = ScoringChunk.objects.get(pk=running.pk)
    assert lost.status == "running", "the chunk finished before the kill: nothing was lost"
    assert TrainingRun.objects.get(pk=run.pk).status == "running" and services.published_run(kind) is None
    assert not rows.objects.filter(run_id=run.pk, customer_id__gte=lost.first_customer_id,
                                   customer_id__lte=lost.last_customer_id).exists()  # nothing half-written

    wait_for(lambda: scoring.sweep_stale_chunks()["requeued"] == [lost.pk], timeout=30, interval=0.5,
             what="the sweep to see the silent chunk")
    start_worker()
    finished = wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed",
                                                                                  "rejected"]).first(),
                        timeout=180, what="the run to finish")
    assert finished.status == "succeeded" and finished.is_published, finished.error
    assert ScoringChunk.objects.get(pk=lost.pk).attempts == 2
    assert AuditEvent.objects.filter(action=AuditEvent.Action.PUBLISH, object_id=run.pk).count() == 1
    if kind == "forecast":
        assert Forecast.objects.filter(run_id=run.pk).count() == finished.data_counts["buyers"]
    else:
        assert Suggestion.objects.filter(run_id=run.pk).count() == finished.metrics["counts"]["suggestions"] > 1600
        assert Suggestion.objects.filter(run_id=run.pk, customer_id__gte=lost.first_customer_id,
                                         customer_id__lte=lost.last_customer_id).exists()
