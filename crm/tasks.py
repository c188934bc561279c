"""Celery tasks of the CRM domain: thin doors to the import queue and the webhooks, taking ids only; and the
worker's start-up step that sends queued work the broker missed (and removes the temporary
import copies a killed worker left)."""
import logging

from celery import shared_task
from celery.signals import worker_ready
from django.db import connections

from crm import jobs, webhooks
from crm.imports import queue

log = logging.getLogger(__name__)


@shared_task(name="crm.run_import", acks_late=True)
def run_import_task(run_id: int) -> None:
    queue.run_queued_import(run_id)


@shared_task(name="crm.deliver_webhook", acks_late=True)
def deliver_webhook_task(delivery_id: int) -> None:
    """One attempt at a webhook delivery; its retries are times in its row (crm.webhooks), not Celery retries."""
    webhooks.deliver(delivery_id)


@shared_task(name="crm.send_webhooks", acks_late=True)
def send_webhooks_task() -> None:
    """Hand the due deliveries to workers (sent when a commit queued events)."""
    webhooks.send_due()


@shared_task(name="crm.sweep_webhooks", acks_late=True)
def sweep_webhooks_task() -> None:
    """Beat, every WEBHOOK_SWEEP_SECONDS: queue the follow-ups that came due, send the due deliveries."""
    webhooks.sweep()


@worker_ready.connect
def dispatch_pending_on_start(**kwargs):
    """A worker coming up (typically after the broker was down) sends the queued runs and imports
    whose tasks never reached the broker, without waiting for beat's next sweep."""
    try:
        sent = jobs.dispatch_pending()
        if any(sent.values()):
            log.info("sent queued work the broker had missed: %s", sent)
        if removed := queue.remove_orphaned_copies():
            log.info("removed %d temporary import copies a killed worker left", removed)
    except Exception:  # the worker must start even when the database is not reachable yet
        log.exception("could not send the queued work on start; beat's sweep will")
    finally:
        # The pool forks children from this process: they must not share its database socket.
        connections.close_all()
