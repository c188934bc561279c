"""A side thread that keeps a job row's ``heartbeat_at`` fresh while the main thread works.

Imports and training runs are taken over by another worker when their heartbeat goes stale
(ML_STALE_AFTER_SECONDS), so the beat must not depend on the main thread reaching a checkpoint:
one batch or one model fit can take longer than the stale limit.
"""
import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

log = logging.getLogger(__name__)


def stale_after() -> timedelta:
    """A running job whose heartbeat is older than this is taken as dead."""
    return timedelta(seconds=settings.ML_STALE_AFTER_SECONDS)


def heartbeat_seconds() -> float:
    return min(5.0, settings.ML_STALE_AFTER_SECONDS / 4)


class Heartbeat:
    """``with Heartbeat(ImportRun, pk, every_seconds): ...`` beats while the row is running."""

    def __init__(self, model, pk: int, every_seconds: float):
        self.model, self.pk, self.every = model, pk, every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{model.__name__}-{pk}", daemon=True)

    def _beat(self):
        try:
            while not self._stop.wait(self.every):
                try:
                    self.model.objects.filter(pk=self.pk, status="running").update(heartbeat_at=timezone.now())
                except DatabaseError as exc:
                    # A busy database (SQLite's write lock) must not end the beat: the run would
                    # look dead and be taken over while it is still working.
                    log.warning("heartbeat of %s #%s missed: %s", self.model.__name__, self.pk, exc)
        finally:
            connection.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=self.every * 2)
