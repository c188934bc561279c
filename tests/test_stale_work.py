"""Work whose worker died or whose message was lost is taken over, never left stuck."""
from datetime import timedelta

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from crm.imports.queue import run_queued_import, save_uploads, sweep_stale_imports
from crm.models import Customer, ImportRun
from ml import services as ml_services
from ml.models import TrainingRun


def _orphan(run, *, attempts=1, seconds_ago=600):
    ImportRun.objects.filter(pk=run.pk).update(status="running", attempts=attempts,
                                               heartbeat_at=timezone.now() - timedelta(seconds=seconds_ago))


def _upload(settings, tmp_path, source="upload"):
    settings.MEDIA_ROOT = tmp_path
    return save_uploads({"customers": SimpleUploadedFile("c.csv", b"external_id,name\nS1,One\nS2,Two\n")},
                        source=source)


def test_sweep_stale_imports_requeues_an_orphaned_upload(db, settings, tmp_path):
    run = _upload(settings, tmp_path)
    _orphan(run)

    assert sweep_stale_imports() == {"requeued": [run.pk], "failed": []}
    run.refresh_from_db()
    assert run.status == "queued" and run.dispatched_at is None  # the next dispatch sends it


def test_sweep_stale_imports_leaves_a_live_import_alone(db, settings, tmp_path):
    run = _upload(settings, tmp_path)
    _orphan(run, seconds_ago=1)

    assert sweep_stale_imports() == {"requeued": [], "failed": []}
    assert ImportRun.objects.get(pk=run.pk).status == "running"


def test_sweep_stale_imports_fails_a_command_import_and_one_out_of_attempts(db, settings, tmp_path):
    command_run = _upload(settings, tmp_path, source="command")
    worn_out = _upload(settings, tmp_path)
    _orphan(command_run)
    _orphan(worn_out, attempts=3)

    result = sweep_stale_imports()

    assert result == {"requeued": [], "failed": sorted([command_run.pk, worn_out.pk])}
    for run in (command_run, worn_out):
        run.refresh_from_db()
        assert run.status == "failed" and "re-run the same import" in run.error


def test_run_queued_import_takes_over_a_stale_running_import(db, settings, tmp_path):
    run = _upload(settings, tmp_path)
    _orphan(run)

    finished = run_queued_import(run.pk)

    assert finished.status == "succeeded" and finished.attempts == 2
    assert set(Customer.objects.values_list("external_id", flat=True)) == {"S1", "S2"}


def test_run_queued_import_does_not_take_a_live_or_finished_import(db, settings, tmp_path):
    live = _upload(settings, tmp_path)
    _orphan(live, seconds_ago=1)

    assert run_queued_import(live.pk) is None
    assert not Customer.objects.exists()


def test_dispatch_pending_resends_a_queued_run_whose_message_was_lost(db):
    long_ago = timezone.now() - timedelta(hours=1)
    lost = TrainingRun.objects.create(kind="forecast", dispatched_at=long_ago)
    recent = TrainingRun.objects.create(kind="segmentation", dispatched_at=timezone.now())

    assert ml_services.dispatch_pending()["runs"] == [lost.pk]
    lost.refresh_from_db()
    assert lost.dispatched_at > long_ago
    assert TrainingRun.objects.get(pk=recent.pk).dispatched_at == recent.dispatched_at


def test_dispatch_pending_lets_a_run_wait_behind_a_running_one_of_its_kind(db):
    long_ago = timezone.now() - timedelta(hours=1)
    TrainingRun.objects.create(kind="forecast", status="running", heartbeat_at=timezone.now())
    waiting = TrainingRun.objects.create(kind="forecast", dispatched_at=long_ago)

    assert ml_services.dispatch_pending()["runs"] == []
    assert TrainingRun.objects.get(pk=waiting.pk).dispatched_at == long_ago


def test_execute_run_not_published_with_a_long_reason_is_rejected_not_stuck(db, monkeypatch):
    # Found by the soak: a rejection reason longer than the stage column made storing the run fail
    # on PostgreSQL, every attempt, and the run stayed "running" until the sweep gave up on it.
    reason = "the model does not beat the naive baseline on the holdout: " + "details " * 60
    monkeypatch.setitem(ml_services.TRAINERS, "forecast", lambda run, progress: {"publish": False, "reason": reason})
    run = TrainingRun.objects.create(kind="forecast", dispatched_at=timezone.now())

    finished = ml_services.execute_run(run.pk)

    assert finished.status == "rejected" and finished.error == reason
    assert len(finished.stage) <= 200 and finished.stage.startswith("not published: the model")
    assert not TrainingRun.objects.filter(status="running").exists()
