"""Train -> evaluate -> publish. Every door (command, page, API, task, beat) comes here.

A run is requested (one queued run per kind at most: a second request joins it), claimed
by a conditional UPDATE (``queued`` -> ``running``; the database refuses a second running
run of the kind), trained on data cut at ``as_of``, written under its own id, and published
by switching the kind's live run in one transaction. A run whose worker died (its heartbeat
went stale) is taken over by the next claim or by :func:`sweep_stale_runs`.
"""
from __future__ import annotations

import logging
import time
import traceback
from datetime import date

from django.db import DatabaseError, IntegrityError, OperationalError, transaction
from django.db.models import Count
from django.utils import timezone

from crm import audit, jobs
from crm.access import NotAllowed, visible_customers
from crm.followups import create_followup
from crm.imports.queue import dispatch_pending_imports
from crm.models import AuditEvent
from ml import scoring
from ml.insights import published_run, published_run_ids  # noqa: F401 (ml.services.published_run for the doors)
from ml.models import (
    Suggestion,
    SuggestionEvent,
    SuggestionFeedback,
    TrainingRun,
)
from ml.publishing import RunNotPublishable, finish_run, library_versions, publish_run  # noqa: F401 (the doors use ml.services.X)
from ml.publishing import delete_run_rows as _delete_rows
from ml.training import TRAINERS, KindNotSupported, RetrainRefused  # noqa: F401 (the doors catch them as ml.services.X)

log = logging.getLogger(__name__)

Kind = TrainingRun.Kind
Status = TrainingRun.Status

# A running run writes a heartbeat from a side thread; one silent for ML_STALE_AFTER_SECONDS
# is considered dead (its worker was killed) and may be taken over.
# A run is tried this many times in all (worker deaths included) before it is marked failed.
MAX_ATTEMPTS = 3
KIND_ORDER = (Kind.SEGMENTATION, Kind.FORECAST, Kind.RECOMMENDATION)
# The task that runs one queued run (ml.tasks), sent by name: services never import tasks.
EXECUTE_RUN_TASK = "ml.execute_run"


# --- requesting ----------------------------------------------------------------------------

def request_retrain(kind: str, *, as_of: date | None = None, horizon_days: int = 90, algorithm: str = "auto",
                    params: dict | None = None, user=None, trigger: str = "manual", enqueue: bool = True):
    """Queue a retrain of ``kind``; returns ``(run, created)``.

    While a run of the kind is queued, the request joins it (``created`` is False): two
    concurrent requests give one run. While one is running, a new queued run waits behind
    it. The task is sent when the surrounding transaction commits.
    """
    if kind not in Kind.values:
        raise RetrainRefused(f"unknown kind {kind!r}: use one of {', '.join(Kind.values)}")
    if horizon_days < 1:
        raise RetrainRefused("the horizon must be at least one day")
    existing = TrainingRun.objects.filter(kind=kind, status=Status.QUEUED).first()
    if existing is not None:
        return _join(existing, enqueue), False
    try:
        with transaction.atomic():
            # enqueue=False: this process runs it, so it counts as dispatched (the sweep leaves it).
            run = TrainingRun.objects.create(kind=kind, as_of=as_of, horizon_days=horizon_days, algorithm=algorithm,
                                             params=params or {}, requested_by=user, trigger=trigger,
                                             dispatched_at=None if enqueue else timezone.now())
            audit.record(AuditEvent.Action.RETRAIN, user=user, object_type="training_run", object_id=run.pk,
                         summary=f"{kind} retrain requested (run {run.pk}, trigger {trigger})")
    except IntegrityError:
        existing = TrainingRun.objects.filter(kind=kind, status=Status.QUEUED).first()
        if existing is None:
            raise RetrainRefused(f"a {kind} retrain was requested at the same moment; try again") from None
        return _join(existing, enqueue), False
    if enqueue:
        _enqueue(run.pk)
    return run, True


def _join(existing: TrainingRun, enqueue: bool) -> TrainingRun:
    """A request joining a queued run whose task never reached the broker tries to send it again."""
    if enqueue and existing.dispatched_at is None:
        _enqueue(existing.pk)
    return existing


def _enqueue(run_id: int) -> None:
    """Send the run's task on commit; raises BackgroundUnavailable (outside a transaction) when the
    broker is unreachable, the run staying queued for the sweep or a starting worker to send."""
    jobs.dispatch_on_commit(EXECUTE_RUN_TASK, TrainingRun, run_id, f"training run #{run_id}")


def _send(run_id: int) -> bool:
    return jobs.dispatch(EXECUTE_RUN_TASK, TrainingRun, run_id)


def send_pending_runs() -> tuple[list[int], bool]:
    """Send the queued training runs whose task never reached the broker, or whose message looks
    lost: (the ids sent, whether the broker could be reached)."""
    # A queued run whose message was lost (its worker was killed while holding it for a retry)
    # is sent again once no run of its kind is running, so it cannot block its kind for hours.
    running_kinds = TrainingRun.objects.filter(status=Status.RUNNING).values_list("kind", flat=True)
    queued = TrainingRun.objects.filter(status=Status.QUEUED)
    jobs.release_overdue(TrainingRun, queued.exclude(kind__in=list(running_kinds)).values_list("pk", flat=True))
    return jobs.send_queued(EXECUTE_RUN_TASK, TrainingRun, queued)


def dispatch_pending() -> dict:
    """Send every queued training run and import whose task never reached the broker (it was down
    when they were requested). Called by beat's sweep."""
    runs, reachable = send_pending_runs()
    if not reachable:
        return {"runs": runs, "imports": []}  # the broker is still down: try again at the next sweep
    return {"runs": runs, "imports": dispatch_pending_imports()}


def request_retrain_all(**kwargs) -> list:
    # One transaction: the three tasks are sent on commit, and a broker outage only leaves them
    # queued for the sweep instead of stopping after the first kind (beat and imports call this).
    with transaction.atomic():
        return [request_retrain(kind, **kwargs)[0] for kind in KIND_ORDER]


def cancel_queued(kind: str, reason: str) -> int:
    """Cancel the queued run of a kind (e.g. a synchronous retrain takes its place)."""
    return TrainingRun.objects.filter(kind=kind, status=Status.QUEUED).update(
        status=Status.CANCELLED, error=reason, finished_at=timezone.now())


# --- claiming and running ------------------------------------------------------------------

def claim_run(run_id: int) -> bool:
    """Take a queued run, or a running one whose heartbeat is stale, for this process.

    A conditional UPDATE: only one claimer can win, and a redelivered task whose run already
    finished does nothing. The partial unique index refuses a second running run of the kind.
    """
    now = timezone.now()
    try:
        with transaction.atomic():
            return jobs.claim(TrainingRun, run_id, max_attempts=MAX_ATTEMPTS, now=now, started_at=now,
                              stage="starting", progress=0, error="")
    except IntegrityError:
        return False  # another run of this kind is running: this one stays queued


class _Progress:
    def __init__(self, run: TrainingRun):
        self.run = run
        self.timings: dict = {}
        self._stage = None
        self._t = time.monotonic()

    def __call__(self, percent: int, stage: str, timing: str | None = None, show: bool = True):
        """Show ``stage``; its seconds add up under ``timing`` (default: the stage), so that the
        chunks of one stage ("writing: chunk 3 of 20") are timed as one. ``show=False`` only
        times it: inside the trainer's write transaction an update of the run row would stay
        unseen until the commit and hold the row's lock, blocking the heartbeat and the sweep."""
        now = time.monotonic()
        if self._stage is not None:
            self.timings[self._stage] = round(self.timings.get(self._stage, 0) + now - self._t, 3)
        self._stage, self._t = timing or stage, now
        if not show:
            return
        TrainingRun.objects.filter(pk=self.run.pk).update(progress=min(100, int(percent)), stage=stage,
                                                          heartbeat_at=timezone.now())

    def finish(self):
        now = time.monotonic()
        if self._stage is not None:
            self.timings[self._stage] = round(self.timings.get(self._stage, 0) + now - self._t, 3)
        return self.timings


def execute_run(run_id: int, *, fan_out: bool = False) -> TrainingRun | None:
    """Claim and run one training run; returns it, or None when it was not claimable.

    ``fan_out`` (a worker on a real broker, ml.scoring.fan_out_available): a forecast run with
    more buyers than ML_SCORING_CHUNK, or a recommendation run with more customers than
    ML_SUGGEST_CHUNK, leaves its scoring to chunk tasks after the fit and is returned still
    running; the last chunk finishes and publishes it."""
    if scoring.is_fanned_out(run_id):
        return None  # fitted already; its chunks (not a redelivered task) finish it
    if not claim_run(run_id):
        return None
    run = TrainingRun.objects.get(pk=run_id)
    progress = _Progress(run)
    started = time.monotonic()
    try:
        with jobs.Heartbeat(TrainingRun, run.pk, jobs.heartbeat_seconds()):
            # Forecast scoring and recommendation suggesting are fanned out (segmentation runs write their own rows).
            outcome = TRAINERS[run.kind](run, progress, **({"fan_out": True} if fan_out and run.kind != Kind.SEGMENTATION
                                                           else {}))
    except KindNotSupported as exc:
        TrainingRun.objects.filter(pk=run.pk).update(
            status=Status.SKIPPED, error=str(exc), stage=f"skipped: {exc}"[:200], progress=100,
            finished_at=timezone.now(), timings={**progress.finish(), "total": round(time.monotonic() - started, 3)})
        _delete_rows(run.pk)
        run.refresh_from_db()
        return run
    except Exception as exc:
        if isinstance(exc, RetrainRefused):  # nothing to train on: a plain message, no traceback
            error = str(exc)
        else:
            log.exception("run %s failed", run.pk)
            error = f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=8)}"
        TrainingRun.objects.filter(pk=run.pk).update(
            status=Status.FAILED, error=error,
            finished_at=timezone.now(), timings={**progress.finish(), "total": round(time.monotonic() - started, 3)})
        _delete_rows(run.pk)
        run.refresh_from_db()
        return run
    if outcome.get("deferred"):
        run.refresh_from_db()
        return run
    timings = {**progress.finish(), "total": round(time.monotonic() - started, 3)}
    publish = outcome.pop("publish", True)
    reason = outcome.pop("reason", "")
    # Finishing and publishing in one transaction: nobody sees a succeeded run that is not yet live.
    try:
        with transaction.atomic():
            finish_run(run.pk, publish, reason, timings, outcome)
    except DatabaseError as exc:
        if isinstance(exc, OperationalError):
            raise  # the connection went away: the task retries, or the sweep takes the run over
        # A deterministic failure would fail again on every attempt: say so once, with the reason.
        log.exception("run %s could not be finished", run.pk)
        TrainingRun.objects.filter(pk=run.pk).update(
            status=Status.FAILED, finished_at=timezone.now(), timings=timings,
            error=f"the trained run could not be stored ({type(exc).__name__}: {exc}); "
                  "the previous published insights are unchanged")
        _delete_rows(run.pk)
    run.refresh_from_db()
    return run


def run_now(kind: str, *, as_of: date | None = None, horizon_days: int = 90, algorithm: str = "auto",
            params: dict | None = None, user=None, trigger: str = "command") -> TrainingRun:
    """Train ``kind`` in this process (``retrain --sync``): cancels a queued run of the kind and takes its place."""
    cancel_queued(kind, "replaced by a synchronous retrain")
    run, _ = request_retrain(kind, as_of=as_of, horizon_days=horizon_days, algorithm=algorithm, params=params,
                             user=user, trigger=trigger, enqueue=False)
    result = execute_run(run.pk)
    if result is None:
        active = TrainingRun.objects.filter(kind=kind, status=Status.RUNNING).exclude(pk=run.pk).first()
        cancel_queued(kind, "not started: another run of this kind was running")
        raise RetrainRefused(f"a {kind} run (#{active.pk if active else '?'}) is already running; "
                             "wait for it to finish")
    return result


def sweep_stale_runs() -> dict:
    """Runs whose worker died: queue them again (a new task), or fail them after MAX_ATTEMPTS."""
    stale, running = jobs.stale_running(TrainingRun)
    requeued, failed = [], []
    # A run whose scoring was fanned out lives on in its chunks (ml.scoring.sweep_stale_chunks).
    for run in running.exclude(scoring_model__isnull=False):
        if run.attempts >= MAX_ATTEMPTS:
            if jobs.fail_stale(TrainingRun, run.pk, stale,
                               f"the worker stopped responding {run.attempts} times (killed or out of memory); "
                               "the previous published insights are unchanged"):
                _delete_rows(run.pk)
                failed.append(run.pk)
            continue
        try:
            with transaction.atomic():
                moved = jobs.requeue_stale(TrainingRun, run.pk, stale, error="")
        except IntegrityError:
            # A queued run of this kind already waits: it will carry the retrain instead.
            if jobs.fail_stale(TrainingRun, run.pk, stale,
                               "the worker stopped responding; a newer queued run replaces this one"):
                _delete_rows(run.pk)
                failed.append(run.pk)
            continue
        if moved:
            _delete_rows(run.pk)
            _send(run.pk)  # if the broker is down too, dispatch_pending sends it later
            requeued.append(run.pk)
    return {"requeued": requeued, "failed": failed}


def waiting_behind_running(run_id: int) -> bool:
    """True when a queued run could not start because another run of its kind is running."""
    run = TrainingRun.objects.filter(pk=run_id, status=Status.QUEUED).first()
    return run is not None and TrainingRun.objects.filter(kind=run.kind, status=Status.RUNNING).exists()


def record_feedback(*, user, customer, product, kind: str, status: str):
    """Mark a suggestion offered / accepted / declined: a new step of its funnel (SuggestionEvent,
    every mark kept with its time and who) and its current status (SuggestionFeedback, one per
    customer, product and kind), in one transaction. Returns the current status row."""
    if not visible_customers(user).filter(pk=customer.pk).exists():
        raise NotAllowed("you cannot give feedback on this customer's suggestions")
    if kind not in Suggestion.Kind.values or status not in SuggestionFeedback.Status.values:
        raise ValueError("unknown suggestion kind or feedback status")
    run_id = published_run_ids().get(Kind.RECOMMENDATION)
    with transaction.atomic():
        SuggestionEvent.objects.create(customer=customer, product=product, kind=kind, event=status,
                                       at=timezone.now(), user=user, run_id=run_id)
        feedback, _ = SuggestionFeedback.objects.update_or_create(
            customer=customer, product=product, kind=kind,
            defaults={"status": status, "user": user, "run_id": run_id})
    return feedback


def plan_followup(*, user, customer, product=None, suggestion_kind: str = "", **fields):
    """Plan a follow-up (crm.followups.create_followup, same arguments). One made from a suggestion
    (``product`` + ``suggestion_kind``) also marks that suggestion accepted (:func:`record_feedback`),
    in the same transaction: planning to offer it is accepting it, so the Models page's funnel
    counts it offered and accepted, exactly as if the salesperson had clicked Accepted."""
    with transaction.atomic():
        followup = create_followup(user=user, customer=customer, product=product, suggestion_kind=suggestion_kind,
                                   **fields)
        if product is not None and suggestion_kind:
            record_feedback(user=user, customer=customer, product=product, kind=suggestion_kind,
                            status=SuggestionFeedback.Status.ACCEPTED)
    return followup


def feedback_counts(run_id: int | None = None) -> dict:
    """{status: count} of suggestion feedback (for one run, or all)."""
    rows = SuggestionFeedback.objects.all()
    if run_id is not None:
        rows = rows.filter(run_id=run_id)
    return dict(rows.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
