"""The Celery application: configured from Django settings (the ``CELERY_`` names)."""
import logging
import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")

app = Celery("crm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

log = logging.getLogger(__name__)


@worker_ready.connect
def dispatch_pending_on_start(**kwargs):
    """A worker coming up (typically after the broker was down) sends the queued runs and imports
    whose tasks never reached the broker, without waiting for beat's next sweep."""
    # Imported when the worker is up: Django's apps (and crm.jobs, which imports this module for
    # the app) are loaded by then.
    from django.db import connections

    from crm.jobs import dispatch_pending

    try:
        sent = dispatch_pending()
        if any(sent.values()):
            log.info("sent queued work the broker had missed: %s", sent)
    except Exception:  # the worker must start even when the database is not reachable yet
        log.exception("could not send the queued work on start; beat's sweep will")
    finally:
        # The pool forks children from this process: they must not share its database socket.
        connections.close_all()
