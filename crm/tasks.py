"""Celery tasks of the CRM domain: thin doors to crm.services, taking ids only."""
from celery import shared_task

from crm import services


@shared_task(name="crm.run_import", acks_late=True)
def run_import_task(run_id: int) -> None:
    services.run_queued_import(run_id)
