"""Celery tasks of the CRM domain: thin doors to the import queue, taking ids only."""
from celery import shared_task

from crm.imports import queue


@shared_task(name="crm.run_import", acks_late=True)
def run_import_task(run_id: int) -> None:
    queue.run_queued_import(run_id)
