"""Celery tasks of the ML engine: thin doors to ml.services, taking ids only."""
from celery import shared_task
from django.db import OperationalError

from crm.imports.queue import sweep_stale_imports
from crm.imports.storage import delete_expired_files
from ml import scoring, services


@shared_task(name="ml.execute_run", bind=True, acks_late=True, max_retries=3,
             autoretry_for=(OperationalError,), retry_backoff=10)
def execute_run_task(self, run_id: int) -> None:
    """Run a queued training run. A run that could not be claimed because another of its
    kind is running is tried again later (bounded); database hiccups are retried too."""
    result = services.execute_run(run_id, fan_out=scoring.fan_out_available())
    if result is None and services.waiting_behind_running(run_id):
        raise self.retry(countdown=30, max_retries=120)


@shared_task(name="ml.score_chunk", acks_late=True, max_retries=3, autoretry_for=(OperationalError,),
             retry_backoff=10)
def score_chunk_task(chunk_id: int) -> None:
    """Score and write one chunk of a fanned-out forecast run (ml.scoring)."""
    scoring.score_chunk(chunk_id)


@shared_task(name="ml.retrain_all", acks_late=True)
def retrain_all_task() -> None:
    services.request_retrain_all(trigger="schedule")


@shared_task(name="ml.sweep_stale_runs", acks_late=True)
def sweep_stale_runs_task() -> None:
    """Beat, every minute: take over runs, scoring chunks and imports whose worker died, then send the
    queued runs, imports and scoring chunks whose tasks never reached the broker (it was down when they
    were requested); last, delete the stored files of imports finished more than
    IMPORT_FILE_RETENTION_DAYS ago."""
    services.sweep_stale_runs()
    scoring.sweep_stale_chunks()
    sweep_stale_imports()
    services.dispatch_pending()
    scoring.send_pending_chunks()
    delete_expired_files()
