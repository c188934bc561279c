"""Forecast scoring fanned out over chunks (ml.scoring): the same forecasts as one process, one
publish, a chunk whose worker died redone by the sweep, a chunk that always fails failing the run.

The task functions are called directly here (no worker is needed to test the chunks' logic);
tests/test_worker_integration.py kills a real worker mid-chunk."""
from datetime import date, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from crm.models import AuditEvent
from ml import data, scoring, services
from ml.models import Forecast, ScoringChunk, ScoringModel, TrainingRun
from ml.tasks import sweep_stale_runs_task
from tests.test_concurrency import at_once

AS_OF = date(2025, 6, 30)
VALUES = ["expected_purchases", "expected_spend", "churn_probability", "clv", "expected_refund_rate",
          "purchases_p10", "purchases_p90", "spend_p10", "spend_p90"]


@pytest.fixture
def business(db, settings):
    call_command("seed_demo", customers=60, seed=3, end=AS_OF.isoformat())
    settings.ML_SCORING_CHUNK = 5


def score_queued(run: TrainingRun) -> None:
    """What the workers do: take every queued chunk of the run."""
    for pk in ScoringChunk.objects.filter(run=run, status="queued").values_list("pk", flat=True):
        scoring.score_chunk(pk)


def score_all_but_the_first_whose_worker_is_killed(run: TrainingRun, stale_after: int) -> list[ScoringChunk]:
    """Every chunk of ``run`` but the first scored; the first one's worker was killed mid-chunk:
    claimed (running, one attempt), then silent, its rows never committed. The run's own worker
    went quiet long ago too: it handed the run to its chunks after the fit. The chunks in order."""
    chunks = list(ScoringChunk.objects.filter(run=run).order_by("index"))
    for chunk in chunks[1:]:
        scoring.score_chunk(chunk.pk)
    silent = timezone.now() - timedelta(seconds=stale_after + 5)
    ScoringChunk.objects.filter(pk=chunks[0].pk).update(status="running", attempts=1, heartbeat_at=silent)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=silent)
    return chunks


def forecasts(run: TrainingRun) -> dict:
    return {row[0]: row[1:] for row in Forecast.objects.filter(run=run).values_list("customer_id", *VALUES, "basis",
                                                                                     "factors")}


def publishes(run: TrainingRun) -> int:
    return AuditEvent.objects.filter(action=AuditEvent.Action.PUBLISH, object_id=run.pk,
                                     object_type="training_run").count()


def test_fan_out_leaves_the_run_running_with_one_chunk_per_five_buyers(business, fanned_out_run):
    run = fanned_out_run()

    chunks = list(ScoringChunk.objects.filter(run=run))
    assert run.status == "running" and not run.is_published
    assert len(chunks) == ScoringModel.objects.get(run=run).chunks == -(-run.data_counts["buyers"] // 5)
    assert sum(c.customers for c in chunks) == run.data_counts["buyers"]
    assert all(c.status == "queued" and c.dispatched_at is not None for c in chunks)
    assert run.stage == f"scoring customers: 0 of {len(chunks)} chunks done"
    assert not Forecast.objects.filter(run=run).exists()
    assert services.execute_run(run.pk, fan_out=True) is None  # a redelivered run task leaves it to the chunks


def test_fanned_out_run_gives_the_forecasts_of_one_process_and_publishes_once(business, fanned_out_run):
    whole = services.run_now("forecast", as_of=AS_OF)
    run = fanned_out_run()

    score_queued(run)

    run.refresh_from_db()
    assert run.status == "succeeded" and run.is_published, run.error
    assert publishes(run) == 1
    assert services.published_run("forecast").pk == run.pk
    one, chunked = forecasts(whole), forecasts(run)
    assert set(one) == set(chunked) and len(one) == run.data_counts["buyers"]
    for customer, row in one.items():
        for a, b in zip(row[:len(VALUES)], chunked[customer][:len(VALUES)]):
            assert (a is None and b is None) or abs(a - b) <= 1e-9, customer
        assert row[len(VALUES):] == chunked[customer][len(VALUES):]
    assert run.metrics["scoring"]["chunks"] == ScoringChunk.objects.filter(run=run).count()
    assert run.artefact["forecasts"] == len(chunked)
    assert run.metrics["outcome"] == whole.metrics["outcome"]
    assert not ScoringModel.objects.filter(run=run).exists()  # kept only while scoring


def test_chunk_scored_again_does_nothing(business, fanned_out_run):
    run = fanned_out_run()
    score_queued(run)
    rows = Forecast.objects.filter(run=run).count()

    first = ScoringChunk.objects.filter(run=run).first()
    assert scoring.score_chunk(first.pk) is None

    assert Forecast.objects.filter(run=run).count() == rows and publishes(run) == 1


def test_chunk_read_is_its_customer_range_only(business, fanned_out_run):
    run = fanned_out_run()
    chunk = ScoringChunk.objects.filter(run=run).order_by("index")[1]

    frame = data.interactions_frame(AS_OF, customer_range=(chunk.first_customer_id, chunk.last_customer_id))

    assert len(frame) and frame["customer_id"].between(chunk.first_customer_id, chunk.last_customer_id).all()
    whole = data.interactions_frame(AS_OF)
    assert len(frame) == whole["customer_id"].between(chunk.first_customer_id, chunk.last_customer_id).sum()


def test_chunk_of_a_killed_worker_is_redone_by_the_sweep_and_the_run_publishes_once(business, fanned_out_run, settings):
    run = fanned_out_run()
    chunks = score_all_but_the_first_whose_worker_is_killed(run, settings.ML_STALE_AFTER_SECONDS)
    run.refresh_from_db()
    assert run.status == "running" and not run.is_published
    assert run.stage == f"scoring customers: {len(chunks) - 1} of {len(chunks)} chunks done"

    sweep_stale_runs_task()  # what beat runs every minute

    lost = ScoringChunk.objects.get(pk=chunks[0].pk)
    assert lost.status == "queued" and lost.dispatched_at is not None  # sent again
    assert TrainingRun.objects.get(pk=run.pk).status == "running"  # the run itself is not retrained
    scoring.score_chunk(lost.pk)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.is_published and publishes(run) == 1, run.error
    assert ScoringChunk.objects.get(pk=lost.pk).attempts == 2
    assert run.metrics["scoring"]["redone"] == 1
    assert Forecast.objects.filter(run=run).count() == run.data_counts["buyers"]


def test_chunk_whose_task_never_reached_the_broker_is_sent_by_the_sweep(business, fanned_out_run):
    run = fanned_out_run()
    unsent = ScoringChunk.objects.filter(run=run).order_by("index").first()
    ScoringChunk.objects.filter(pk=unsent.pk).update(dispatched_at=None)  # the broker was down at fan-out

    sweep_stale_runs_task()

    assert ScoringChunk.objects.get(pk=unsent.pk).dispatched_at is not None


def test_chunk_failing_every_attempt_fails_the_run_and_publishes_nothing(business, fanned_out_run):
    live = services.run_now("forecast", as_of=AS_OF)
    run = fanned_out_run()
    ScoringModel.objects.filter(run=run).update(blob=b"not a model")  # every attempt fails to read it
    first = ScoringChunk.objects.filter(run=run).order_by("index").first()
    for chunk in ScoringChunk.objects.filter(run=run).exclude(pk=first.pk):
        scoring.score_chunk(chunk.pk)

    for _ in range(scoring.CHUNK_ATTEMPTS):
        scoring.score_chunk(first.pk)

    run.refresh_from_db()
    assert run.status == "failed" and not run.is_published
    assert f"scoring chunk 0 (customers {first.first_customer_id}-{first.last_customer_id}) failed 3 times" in run.error
    assert "could not be read" in run.error
    assert not Forecast.objects.filter(run=run).exists() and publishes(run) == 0
    assert services.published_run("forecast").pk == live.pk
    assert scoring.score_chunk(first.pk) is None


def test_run_now_never_fans_out(business):
    run = services.run_now("forecast", as_of=AS_OF)

    assert run.status == "succeeded" and not ScoringChunk.objects.filter(run=run).exists()


def test_fan_out_is_off_on_the_embedded_broker_and_at_zero(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/14"
    settings.ML_SCORING_CHUNK = 8000
    assert scoring.fan_out_available()
    settings.ML_SCORING_CHUNK = 0
    assert not scoring.fan_out_available() and not scoring.fans_out(10**6)
    settings.ML_SCORING_CHUNK = 8000
    settings.CELERY_BROKER_URL = "crmsqla+sqlite:////tmp/broker.sqlite3"
    assert not scoring.fan_out_available()


def test_chunk_of_a_run_failed_meanwhile_keeps_no_rows(business, fanned_out_run):
    run = fanned_out_run()
    first = ScoringChunk.objects.filter(run=run).order_by("index").first()
    scoring.fail_run(run.pk, "failed by another chunk")
    ScoringChunk.objects.filter(pk=first.pk).update(status="queued")  # its message was already on its way

    assert scoring.score_chunk(first.pk) is None

    assert ScoringChunk.objects.get(pk=first.pk).status == "failed"
    assert not Forecast.objects.filter(run=run).exists()
    assert TrainingRun.objects.get(pk=run.pk).error == "failed by another chunk"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="two writers at once: PostgreSQL's row locks")
def test_the_last_two_chunks_finishing_at_once_publish_the_run_once(settings):
    """Each of the two counts the done chunks under the run row's lock: one of them is last, never
    both and never neither."""
    call_command("seed_demo", customers=60, seed=3, end=AS_OF.isoformat())
    settings.ML_SCORING_CHUNK = 5
    run, _ = services.request_retrain("forecast", as_of=AS_OF, enqueue=False)
    services.execute_run(run.pk, fan_out=True)
    chunks = list(ScoringChunk.objects.filter(run=run).order_by("index").values_list("pk", flat=True))
    assert len(chunks) >= 3
    for pk in chunks[:-2]:
        scoring.score_chunk(pk)
    results = at_once(lambda: scoring.score_chunk(chunks[-2]), lambda: scoring.score_chunk(chunks[-1]))
    assert [getattr(r, "status", r) for r in results] == ["done", "done"]
    run.refresh_from_db()
    assert (run.status, run.is_published) == ("succeeded", True)
    assert publishes(run) == 1
    assert Forecast.objects.filter(run=run).count() == sum(
        ScoringChunk.objects.filter(run=run).values_list("customers", flat=True))


def test_a_worker_reads_the_stored_model_once_for_the_runs_chunks(business, fanned_out_run):
    run = fanned_out_run()
    chunks = list(ScoringChunk.objects.filter(run=run).order_by("index"))
    scoring.score_chunk(chunks[0].pk)
    ScoringModel.objects.filter(run=run).update(blob=b"not a model")

    assert scoring.score_chunk(chunks[1].pk).status == "done"  # the model this worker loaded for chunk 0
    scoring.forget_loaded()
    retried = scoring.score_chunk(chunks[2].pk)

    assert retried.status == "queued" and "could not be read" in retried.error
