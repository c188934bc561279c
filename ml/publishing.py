"""Finishing a trained run and switching the live run of its kind, in one place for the two
ways a run ends: trained and scored in one process (``ml.services.execute_run``), or scored in
chunks by several workers, the last of which finishes it (``ml.scoring``)."""
from __future__ import annotations

import json
import logging
from datetime import date

import numpy as np
import pandas as pd
from django.db import transaction
from django.utils import timezone

from crm import audit
from crm.models import AuditEvent
from ml import integrity, run_events
from ml.models import (
    CustomerSegment,
    Forecast,
    Prospect,
    ScoringModel,
    Segment,
    SimilarProduct,
    Suggestion,
    TrainingRun,
)

Status = TrainingRun.Status
log = logging.getLogger(__name__)


class RunNotPublishable(Exception):
    pass


def plain_json(value):
    """Metrics as plain JSON: numpy scalars to Python, and NaN and +-Infinity (a ratio to a zero
    error, say) to None, since a JSON column refuses them (SQLite's JSON_VALID check, jsonb)."""
    return json.loads(json.dumps(value, default=json_default), parse_constant=lambda _constant: None)


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (pd.Timestamp, date)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def library_versions() -> dict:
    import scipy  # noqa: PLC0415 -- read when a run records its versions; the web process never needs it
    import sklearn  # noqa: PLC0415 -- (as above)

    return {"numpy": np.__version__, "pandas": pd.__version__, "scikit-learn": sklearn.__version__,
            "scipy": scipy.__version__}


def finish_run(run_id: int, publish: bool, reason: str, timings: dict, outcome: dict) -> bool:
    """Record a running run's outcome and publish it (call inside the caller's transaction, so that
    nobody sees a succeeded run that is not yet live). Conditional on the run still running:
    False, and nothing changed, when someone else finished or failed it first."""
    if publish:
        # The lock only waits: a delete of a customer or product never waits for this transaction
        # (it cannot see the run's uncommitted rows and touches no run row), so it cannot deadlock.
        integrity.lock_references()
        dropped = integrity.drop_orphans(run_id)
        if dropped:
            log.info("run %s: dropped the rows of customers or products deleted while it ran: %s", run_id, dropped)
    finished = TrainingRun.objects.filter(pk=run_id, status=Status.RUNNING).update(
        status=Status.SUCCEEDED if publish else Status.REJECTED, progress=100,
        stage="done" if publish else f"not published: {reason}"[:200],  # the whole reason is in error
        error="" if publish else reason, timings=timings, finished_at=timezone.now(), library_versions=library_versions(),
        **outcome)
    if not finished:
        return False
    if publish:
        publish_run(run_id)
    ScoringModel.objects.filter(run_id=run_id).delete()  # the fitted model was only kept for scoring
    return True


def publish_run(run_id: int, *, user=None) -> TrainingRun:
    """Make a finished run the live one of its kind, in one transaction (also used to roll back).

    ``user``: who asked (None: the run published itself after training). Publishing a run
    older than the live one is recorded in the audit trail as a rollback.
    """
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run_id)
        if run.status != Status.SUCCEEDED:
            raise RunNotPublishable(f"run #{run.pk} is {run.status}; only a succeeded run can be published")
        live = TrainingRun.objects.filter(kind=run.kind, is_published=True).exclude(pk=run.pk).values_list(
            "pk", flat=True).first()
        was_live, now = run.is_published, timezone.now()
        TrainingRun.objects.filter(kind=run.kind, is_published=True).exclude(pk=run.pk).update(is_published=False)
        TrainingRun.objects.filter(pk=run.pk).update(is_published=True, published_at=now)
        rollback = live is not None and live > run.pk
        action = AuditEvent.Action.ROLLBACK if rollback else AuditEvent.Action.PUBLISH
        audit.record(action, user=user, object_type="training_run", object_id=run.pk,
                     summary=f"{run.kind} run {run.pk} published" + (f", replacing run {live}" if live else ""))
        if not was_live:  # publishing the live run again changes nothing a subscriber needs to hear about
            run_events.queue_publish_events(run, now, live, rollback=rollback)
    run.refresh_from_db()
    return run


def delete_run_rows(run_id: int) -> None:
    """Drop what an unfinished run wrote (and its stored model); published insights belong to
    other runs and stay. Its scoring chunks stay, as the record of what happened."""
    for model in (CustomerSegment, Forecast, Suggestion, SimilarProduct, Prospect):
        model.objects.filter(run_id=run_id).delete()
    Segment.objects.filter(run_id=run_id).delete()
    ScoringModel.objects.filter(run_id=run_id).delete()
