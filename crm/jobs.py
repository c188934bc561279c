"""The job lifecycle shared by imports (crm.ImportRun) and training runs (ml.TrainingRun).

A job row has a ``status`` (queued, running, then a final one), ``attempts``, ``heartbeat_at``
and ``dispatched_at``. Its life, the same for both kinds:

- **send**: :func:`dispatch` sends the row's task by name, once (a conditional UPDATE of
  ``dispatched_at``), when the request's transaction commits (:func:`dispatch_on_commit`);
  a broker that cannot be reached leaves the row queued.
- **claim**: :func:`claim` takes a queued row, or a running one whose heartbeat is stale, with a
  conditional UPDATE: a redelivered task does nothing, a task whose worker died is taken over.
- **heartbeat**: :class:`Heartbeat` keeps ``heartbeat_at`` fresh from a side thread.
- **sweep**: :func:`stale_running` finds running rows whose heartbeat is older than
  :func:`stale_after`; :func:`requeue_stale` and :func:`fail_stale` move them on.
- **resend**: :func:`send_queued` (beat's sweep, a worker starting) sends the queued rows whose
  task never reached the broker, after :func:`release_overdue` freed those whose message looks lost.

Tasks are sent by name, so no service imports a task module. Each app registers how its queued
rows are sent (:func:`register_pending`); :func:`dispatch_pending` sends them all.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from crm.celery import app as celery_app

log = logging.getLogger(__name__)

QUEUED, RUNNING, FAILED = "queued", "running", "failed"


class BackgroundUnavailable(Exception):
    """The task queue (broker) cannot be reached. The work is saved and queued; it is sent when
    the broker is back (beat's sweep, or a worker starting up)."""


# --- heartbeat ---------------------------------------------------------------------------------

def stale_after() -> timedelta:
    """A running job whose heartbeat is older than this is taken as dead."""
    return timedelta(seconds=settings.ML_STALE_AFTER_SECONDS)


def heartbeat_seconds() -> float:
    return min(5.0, settings.ML_STALE_AFTER_SECONDS / 4)


class Heartbeat:
    """``with Heartbeat(ImportRun, pk, every_seconds): ...`` beats while the row is running.

    The beat must not depend on the main thread reaching a checkpoint: one import batch or one
    model fit can take longer than the stale limit (ML_STALE_AFTER_SECONDS).
    """

    def __init__(self, model, pk: int, every_seconds: float):
        self.model, self.pk, self.every = model, pk, every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{model.__name__}-{pk}", daemon=True)

    def _beat(self):
        try:
            while not self._stop.wait(self.every):
                try:
                    self.model.objects.filter(pk=self.pk, status=RUNNING).update(heartbeat_at=timezone.now())
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


# --- claim -------------------------------------------------------------------------------------

def claim(model, pk: int, *, max_attempts: int, now=None, **changes) -> bool:
    """Take row ``pk`` for this process: queued, or running with a stale heartbeat, and tried
    fewer than ``max_attempts`` times -> running, heartbeat now, one more attempt, and
    ``changes``. A conditional UPDATE: True for the one claimer that won."""
    now = now or timezone.now()
    return bool(model.objects.filter(
        Q(status=QUEUED) | Q(status=RUNNING, heartbeat_at__lt=now - stale_after()),
        pk=pk, attempts__lt=max_attempts,
    ).update(status=RUNNING, heartbeat_at=now, attempts=F("attempts") + 1, **changes))


# --- sweep -------------------------------------------------------------------------------------

def stale_running(model):
    """(the cutoff, the running rows whose heartbeat is older than it): their worker died."""
    cutoff = timezone.now() - stale_after()
    return cutoff, model.objects.filter(status=RUNNING, heartbeat_at__lt=cutoff)


def _still_stale(model, pk: int, cutoff):
    # Checked again in the UPDATE: a worker may have beaten (or finished) since the row was read.
    return model.objects.filter(pk=pk, status=RUNNING, heartbeat_at__lt=cutoff)


def requeue_stale(model, pk: int, cutoff, **changes) -> bool:
    """Queue a stale row again for a worker (unsent, so the next dispatch sends it)."""
    return bool(_still_stale(model, pk, cutoff).update(status=QUEUED, stage="worker lost; queued again",
                                                       dispatched_at=None, **changes))


def fail_stale(model, pk: int, cutoff, error: str) -> bool:
    """Mark a stale row failed with ``error`` (what happened and what to do)."""
    return bool(_still_stale(model, pk, cutoff).update(status=FAILED, finished_at=timezone.now(), error=error))


# --- send and resend ---------------------------------------------------------------------------

def dispatch(task_name: str, model, pk: int) -> bool:
    """Send task ``task_name(pk)`` for a queued row, once; False when the broker is unreachable.

    ``dispatched_at`` is claimed with a conditional UPDATE first, so a request, the sweep and a
    starting worker racing for the same row send one message between them; a failed send clears
    it again so the row is picked up later. The publish retry policy (settings) keeps a failed
    send to a few seconds.
    """
    claimed = model.objects.filter(pk=pk, status=QUEUED, dispatched_at__isnull=True).update(
        dispatched_at=timezone.now())
    if not claimed:
        return True  # sent already by someone else, or no longer waiting for a worker
    try:
        celery_app.send_task(task_name, args=[pk])
    except BrokerUnreachable as exc:
        model.objects.filter(pk=pk).update(dispatched_at=None)
        log.warning("broker unreachable, %s #%s stays queued until it is back: %s", model.__name__, pk, exc)
        return False
    return True


def dispatch_on_commit(task_name: str, model, pk: int, what: str) -> None:
    """Dispatch when the current transaction commits.

    Outside a transaction (every web and API request: no ATOMIC_REQUESTS) Django runs the hook at
    once, so the caller learns here that the broker is down and can tell the user; inside one,
    a failed send is only logged and the sweep sends it later.
    """
    sent = []
    transaction.on_commit(lambda: sent.append(dispatch(task_name, model, pk)))
    if sent == [False]:
        raise BackgroundUnavailable(
            f"Background work is unavailable right now (the task queue cannot be reached). {what.capitalize()} "
            "is saved and queued; it starts automatically when the queue is back.")


def redispatch_after() -> timedelta:
    """A queued row sent this long ago without being started may have lost its message (a worker
    killed while holding it, a broker restarted without persistence): it is sent again. A
    duplicate message is harmless (the claim is conditional), so the only cost of a short wait is
    a no-op task now and then."""
    return 5 * stale_after()


def release_overdue(model, pks) -> None:
    """Clear ``dispatched_at`` of queued rows sent longer than redispatch_after() ago, so the
    next dispatch sends them again."""
    model.objects.filter(pk__in=list(pks), status=QUEUED,
                         dispatched_at__lt=timezone.now() - redispatch_after()).update(dispatched_at=None)


def send_queued(task_name: str, model, queued) -> tuple[list[int], bool]:
    """Send the rows of ``queued`` (a queryset of queued rows) whose task never reached the
    broker, in id order: (the ids sent, whether the broker could be reached). Stops at the
    first failed send: the rest wait for the next sweep."""
    sent = []
    for pk in queued.filter(dispatched_at__isnull=True).order_by("pk").values_list("pk", flat=True):
        if not dispatch(task_name, model, pk):
            return sent, False
        sent.append(pk)
    return sent, True


_PENDING: dict[str, Callable[[], tuple[list[int], bool]]] = {}


def register_pending(label: str, send: Callable[[], tuple[list[int], bool]]) -> None:
    """Register how an app sends its queued rows (in its AppConfig.ready()): ``send()`` returns
    what :func:`send_queued` does."""
    _PENDING[label] = send


def dispatch_pending() -> dict:
    """Send every registered kind's queued rows whose task never reached the broker:
    ``{label: ids sent}``. Once the broker is found down the other kinds wait for the next sweep."""
    out, reachable = {}, True
    for label, send in _PENDING.items():
        out[label], reachable = send() if reachable else ([], False)
    return out
