"""Train -> evaluate -> publish. Every door (command, page, API, task, beat) comes here.

A run is requested (one queued run per kind at most: a second request joins it), claimed
by a conditional UPDATE (``queued`` -> ``running``; the database refuses a second running
run of the kind), trained on data cut at ``as_of``, written under its own id, and published
by switching the kind's live run in one transaction. A run whose worker died (its heartbeat
went stale) is taken over by the next claim or by :func:`sweep_stale_runs`.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from datetime import date

import numpy as np
import pandas as pd
from django.db import DatabaseError, IntegrityError, OperationalError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from crm import audit
from crm.heartbeat import Heartbeat, heartbeat_seconds, stale_after
from crm.models import AuditEvent, Customer, Interaction
from ml import data
from ml.models import CustomerSegment, Forecast, Segment, TrainingRun

log = logging.getLogger(__name__)

Kind = TrainingRun.Kind
Status = TrainingRun.Status

# A running run writes a heartbeat from a side thread; one silent for ML_STALE_AFTER_SECONDS
# is considered dead (its worker was killed) and may be taken over.
# A run is tried this many times in all (worker deaths included) before it is marked failed.
MAX_ATTEMPTS = 3
KIND_ORDER = (Kind.SEGMENTATION, Kind.FORECAST, Kind.RECOMMENDATION)


class RetrainRefused(Exception):
    """A retrain cannot be requested now; the message says why."""


class RunNotPublishable(Exception):
    pass


class KindNotSupported(Exception):
    """This data cannot support the kind at all (no product catalogue, no purchase at all...):
    the run is skipped with the message as its reason, and the published insights stay."""


def library_versions() -> dict:
    import scipy
    import sklearn

    return {"numpy": np.__version__, "pandas": pd.__version__, "scikit-learn": sklearn.__version__,
            "scipy": scipy.__version__}


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
    from crm.services import dispatch_on_commit
    from ml.tasks import execute_run_task

    dispatch_on_commit(execute_run_task, TrainingRun, run_id, f"training run #{run_id}")


def _send(run_id: int) -> bool:
    from crm.services import dispatch
    from ml.tasks import execute_run_task

    return dispatch(execute_run_task, TrainingRun, run_id)


def dispatch_pending() -> dict:
    """Send every queued training run and import whose task never reached the broker (it was down
    when they were requested). Called by beat's sweep and when a worker starts."""
    from crm.services import dispatch_pending_imports, release_overdue

    # A queued run whose message was lost (its worker was killed while holding it for a retry)
    # is sent again once no run of its kind is running, so it cannot block its kind for hours.
    running_kinds = TrainingRun.objects.filter(status=Status.RUNNING).values_list("kind", flat=True)
    release_overdue(TrainingRun, TrainingRun.objects.filter(status=Status.QUEUED).exclude(
        kind__in=list(running_kinds)).values_list("pk", flat=True))
    runs = []
    for pk in TrainingRun.objects.filter(status=Status.QUEUED, dispatched_at__isnull=True).order_by("pk").values_list(
            "pk", flat=True):
        if not _send(pk):
            return {"runs": runs, "imports": []}  # the broker is still down: try again at the next sweep
        runs.append(pk)
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
    stale = timezone.now() - stale_after()
    now = timezone.now()
    try:
        with transaction.atomic():
            claimed = TrainingRun.objects.filter(
                Q(status=Status.QUEUED) | Q(status=Status.RUNNING, heartbeat_at__lt=stale), pk=run_id,
                attempts__lt=MAX_ATTEMPTS,
            ).update(status=Status.RUNNING, heartbeat_at=now, started_at=now, attempts=F("attempts") + 1,
                     stage="starting", progress=0, error="")
    except IntegrityError:
        return False  # another run of this kind is running: this one stays queued
    return bool(claimed)


class _Progress:
    def __init__(self, run: TrainingRun):
        self.run = run
        self.timings: dict = {}
        self._stage = None
        self._t = time.monotonic()

    def __call__(self, percent: int, stage: str):
        now = time.monotonic()
        if self._stage is not None:
            self.timings[self._stage] = round(self.timings.get(self._stage, 0) + now - self._t, 3)
        self._stage, self._t = stage, now
        TrainingRun.objects.filter(pk=self.run.pk).update(progress=min(100, int(percent)), stage=stage,
                                                          heartbeat_at=timezone.now())

    def finish(self):
        now = time.monotonic()
        if self._stage is not None:
            self.timings[self._stage] = round(self.timings.get(self._stage, 0) + now - self._t, 3)
        return self.timings


def execute_run(run_id: int) -> TrainingRun | None:
    """Claim and run one training run; returns it, or None when it was not claimable."""
    if not claim_run(run_id):
        return None
    run = TrainingRun.objects.get(pk=run_id)
    progress = _Progress(run)
    started = time.monotonic()
    try:
        with Heartbeat(TrainingRun, run.pk, heartbeat_seconds()):
            outcome = TRAINERS[run.kind](run, progress)
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
    timings = {**progress.finish(), "total": round(time.monotonic() - started, 3)}
    publish = outcome.pop("publish", True)
    reason = outcome.pop("reason", "")
    # Finishing and publishing in one transaction: nobody sees a succeeded run that is not yet live.
    try:
        with transaction.atomic():
            _finish(run, publish, reason, timings, outcome)
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


def _finish(run, publish, reason, timings, outcome) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(
        status=Status.SUCCEEDED if publish else Status.REJECTED, progress=100,
        stage="done" if publish else f"not published: {reason}"[:200],  # the whole reason is in error
        error="" if publish else reason, timings=timings, finished_at=timezone.now(), library_versions=library_versions(),
        **outcome)
    if publish:
        publish_run(run.pk)


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
        TrainingRun.objects.filter(kind=run.kind, is_published=True).exclude(pk=run.pk).update(is_published=False)
        TrainingRun.objects.filter(pk=run.pk).update(is_published=True, published_at=timezone.now())
        action = AuditEvent.Action.ROLLBACK if live is not None and live > run.pk else AuditEvent.Action.PUBLISH
        audit.record(action, user=user, object_type="training_run", object_id=run.pk,
                     summary=f"{run.kind} run {run.pk} published" + (f", replacing run {live}" if live else ""))
    run.refresh_from_db()
    return run


def published_run(kind: str) -> TrainingRun | None:
    return TrainingRun.objects.filter(kind=kind, is_published=True).first()


def sweep_stale_runs() -> dict:
    """Runs whose worker died: queue them again (a new task), or fail them after MAX_ATTEMPTS."""
    stale = timezone.now() - stale_after()
    requeued, failed = [], []
    for run in TrainingRun.objects.filter(status=Status.RUNNING, heartbeat_at__lt=stale):
        if run.attempts >= MAX_ATTEMPTS:
            if TrainingRun.objects.filter(pk=run.pk, status=Status.RUNNING, heartbeat_at__lt=stale).update(
                    status=Status.FAILED, finished_at=timezone.now(),
                    error=f"the worker stopped responding {run.attempts} times (killed or out of memory); "
                          "the previous published insights are unchanged"):
                _delete_rows(run.pk)
                failed.append(run.pk)
            continue
        try:
            with transaction.atomic():
                moved = TrainingRun.objects.filter(pk=run.pk, status=Status.RUNNING, heartbeat_at__lt=stale).update(
                    status=Status.QUEUED, stage="worker lost; queued again", error="", dispatched_at=None)
        except IntegrityError:
            # A queued run of this kind already waits: it will carry the retrain instead.
            moved = TrainingRun.objects.filter(pk=run.pk, status=Status.RUNNING, heartbeat_at__lt=stale).update(
                status=Status.FAILED, finished_at=timezone.now(),
                error="the worker stopped responding; a newer queued run replaces this one")
            if moved:
                _delete_rows(run.pk)
                failed.append(run.pk)
            continue
        if moved:
            _delete_rows(run.pk)
            _send(run.pk)  # if the broker is down too, dispatch_pending sends it later
            requeued.append(run.pk)
    return {"requeued": requeued, "failed": failed}


def _delete_rows(run_id: int) -> None:
    """Drop what an unfinished run wrote; published insights belong to other runs and stay."""
    from ml.models import Prospect, SimilarProduct, Suggestion

    for model in (CustomerSegment, Forecast, Suggestion, SimilarProduct, Prospect):
        model.objects.filter(run_id=run_id).delete()
    Segment.objects.filter(run_id=run_id).delete()


# --- data ------------------------------------------------------------------------------------

def _load(run: TrainingRun, progress, need_products=True, need_purchases=True) -> dict:
    progress(5, "loading data")
    as_of = run.as_of or data.latest_interaction_day()
    if as_of is None:
        raise RetrainRefused("there are no interactions yet: import data before training")
    if run.as_of is None:
        TrainingRun.objects.filter(pk=run.pk).update(as_of=as_of)
        run.as_of = as_of
    # Customers who objected to profiling are left out of training altogether.
    excluded = list(Customer.objects.filter(no_profiling=True).values_list("id", flat=True))
    frames = {
        "interactions": data.interactions_frame(as_of, exclude_customer_ids=excluded),
        "customers": data.customers_frame(exclude_ids=excluded),
        "products": data.products_frame() if need_products else None,
    }
    counts = {"customers": int(len(frames["customers"])), "interactions": int(len(frames["interactions"])),
              "purchases": int((frames["interactions"]["type"] == "purchase").sum()),
              "buyers": int(frames["interactions"].loc[frames["interactions"]["type"] == "purchase",
                                                       "customer_id"].nunique())}
    # Who and what the run left out, and why (the Models page says it in words,
    # ml.selectors.ignored_lines): customers who objected to profiling, customers without a
    # purchase by as_of (no forecast), and rows dated after as_of (not read), of them those in the future.
    counts["no_profiling"] = len(excluded)
    counts["customers_without_purchase"] = counts["customers"] - counts["buyers"]
    counts.update(_after_as_of(as_of))
    if frames["products"] is not None:
        counts["products"] = int(len(frames["products"]))
    TrainingRun.objects.filter(pk=run.pk).update(data_counts=counts)
    if counts["purchases"] == 0 and need_purchases:
        raise KindNotSupported(f"no purchases on or before {as_of}: only other interactions, nothing to "
                               f"learn {run.kind}s from")
    return frames


def _after_as_of(as_of: date) -> dict:
    """{"interactions_after_as_of", "future_interactions"}: stored rows a run cut at ``as_of`` does
    not read, and how many of them are dated after now (one COUNT query)."""
    return Interaction.objects.filter(occurred_at__gte=data.cutoff(as_of)).aggregate(
        interactions_after_as_of=Count("id"), future_interactions=Count("id", filter=Q(occurred_at__gt=timezone.now())))


def _json(value) -> str:
    return json.dumps(value, default=_json_default)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (pd.Timestamp, date)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value):
    """Metrics as plain JSON (numpy scalars, NaN -> None)."""
    return json.loads(json.dumps(value, default=_json_default).replace("NaN", "null"))


# --- segmentation ------------------------------------------------------------------------------

def train_segmentation(run: TrainingRun, progress) -> dict:
    """Segment every customer as of ``run.as_of`` and write the segments under the run.

    ``auto`` chooses among RFM (the baseline), K-means and DBSCAN on the rolling-origin
    backtest (``metrics["backtest"]``); ``metrics["outcome"]`` says whether a model or the
    baseline was published, or that the history was too short to compare (RFM, "not
    validated"). Names of segments whose members are mostly those of a published segment are
    kept. Raises KindNotSupported when there is nobody to segment.
    """
    from ml.pipelines.segmentation import CustomerSegmenter, NothingToSegment, match_segments

    frames = _load(run, progress)
    progress(20, "comparing segmentations on backtest windows, then clustering customers")
    model = CustomerSegmenter(algorithm=run.algorithm, horizon_days=run.horizon_days, random_state=0,
                              **{k: v for k, v in run.params.items()
                                 if k in ("n_clusters", "eps", "min_samples", "max_sample")})
    try:
        model.fit(frames["interactions"], frames["products"], frames["customers"],
                  pd.Timestamp(run.as_of))
    except NothingToSegment as exc:
        raise KindNotSupported(str(exc)) from None
    assignments, segments = model.assignments_, model.segments_
    progress(70, "naming segments")
    names = dict(zip(segments["segment_key"], segments["name"]))
    previous = published_run(Kind.SEGMENTATION)
    if previous is not None:
        prev_assign = pd.DataFrame.from_records(
            list(CustomerSegment.objects.filter(run=previous).values_list("customer_id", "segment__key")),
            columns=["customer_id", "segment_key"])
        prev_names = dict(Segment.objects.filter(run=previous).values_list("key", "name"))
        if len(prev_assign):
            names = match_segments(assignments[["customer_id", "segment_key"]], prev_assign, prev_names,
                                   new_names=names)
    progress(80, "writing segments")
    with transaction.atomic():
        created = Segment.objects.bulk_create([
            Segment(run=run, key=int(row.segment_key), name=names.get(row.segment_key, row.name),
                    profile=_rename_profile(row.profile, row.name, names.get(row.segment_key, row.name)),
                    size=int(row.size), figures=_clean(row.figures))
            for row in segments.itertuples()
        ])
        ids = {s.key: s.pk for s in created}
        data.bulk_insert(CustomerSegment, ["run_id", "customer_id", "segment_id", "distance"], (
            (run.pk, int(c), ids[int(k)], None if pd.isna(d) else float(d))
            for c, k, d in zip(assignments["customer_id"], assignments["segment_key"],
                               assignments["distance_to_center"])))
    return {"metrics": _clean({"outcome": model.outcome_, "backtest": model.backtest_,
                               "comparison": model.comparison_, "chosen": model.chosen_,
                               "reason": model.chosen_reason_, "params": model.params_,
                               "money": model.money_,
                               "sizes": {names.get(k, str(k)): int(n) for k, n in
                                         zip(segments["segment_key"], segments["size"])}}),
            "chosen_algorithm": str(model.chosen_),
            "artefact": _clean({"segments": len(segments), "params": model.params_})}


def _rename_profile(profile: str, old: str, new: str) -> str:
    if old != new and profile.startswith(old):
        return new + profile[len(old):]
    return profile


# --- forecasts ------------------------------------------------------------------------------------

def train_forecast(run: TrainingRun, progress) -> dict:
    """Backtest every candidate on rolling windows of the history, publish per target the
    simplest one within the spread of the best (a baseline when no model beats it), and write
    every buyer's forecast. A target the data cannot support (spend without amounts) is
    written as NULL, with the reason in ``metrics["targets"]``."""
    from ml.pipelines.forecasting import fit_evaluate

    frames = _load(run, progress, need_products=False)
    interactions = frames["interactions"]
    as_of = pd.Timestamp(run.as_of)
    params = {k: v for k, v in run.params.items() if k in ("clv_days",)}

    def step(fraction, stage):  # the backtests and the final fit: 15 % -> 75 %
        progress(15 + 60 * fraction, stage)

    model, report = fit_evaluate(interactions, as_of, horizon_days=run.horizon_days, algorithm=run.algorithm,
                                 random_state=0, progress=step, **params)
    metrics = _clean(report)
    progress(75, "forecasting every customer")
    pred = model.predict(interactions, as_of)
    progress(85, "writing forecasts")
    columns = ["expected_purchases", "expected_spend", "churn_probability", "clv", "expected_refund_rate",
               "purchases_p10", "purchases_p90", "spend_p10", "spend_p90"]
    values = pred[columns].astype(float).clip(lower=0)
    values["churn_probability"] = values["churn_probability"].clip(upper=1)
    values["expected_refund_rate"] = values["expected_refund_rate"].clip(upper=1)
    rows = zip(pred.index.to_numpy(), *(values[c].to_numpy() for c in columns), pred["basis"].astype(str),
               pred["factors"])
    with transaction.atomic():
        data.bulk_insert(Forecast, ["run_id", "customer_id", *columns, "basis", "factors"], (
            (run.pk, int(r[0]), *(None if np.isnan(v) else float(v) for v in r[1:10]), r[10], _json(list(r[11])))
            for r in rows))
    return {"metrics": metrics, "chosen_algorithm": model.basis_label()[:80],
            "artefact": _clean({"chosen": model.chosen_, "weights": model.final_.weights_,
                                "btyd": {n: model.final_.btyd_[n].params_ for n in ("bgnbd", "paretonbd")},
                                "forecasts": int(len(pred))})}


def train_recommendation(run: TrainingRun, progress) -> dict:
    """Fit the recommender (scorers, blend, category cap and reorder model chosen on rolling
    backtest windows of the history), then write every customer's cross-sell and reorder
    lists, similar products and prospects under this run.

    Raises KindNotSupported when no purchase carries a product of the catalogue. Metrics:
    ``outcome`` and ``backtest`` (the layout shared by every kind), ``validation`` (each
    candidate's scores averaged over the windows), the choices, and ``cross_sell_reason`` /
    ``reorder_reason`` when a list kind has nothing to suggest at all (e.g. nobody ever
    bought the same product twice).
    """
    from ml.models import Prospect, SimilarProduct, Suggestion
    from ml.pipelines.recommendation import NotSupported, Recommender

    frames = _load(run, progress)
    segments = _published_segment_names()
    progress(15, "backtesting on earlier windows and learning from purchases")
    params = {k: v for k, v in run.params.items() if k in ("max_per_category", "n", "min_history")}
    model = Recommender(algorithm=run.algorithm, horizon_days=run.horizon_days, random_state=0, **params)
    try:
        model.fit(frames["interactions"], frames["products"], pd.Timestamp(run.as_of), segments=segments)
    except NotSupported as exc:
        raise KindNotSupported(str(exc)) from exc
    progress(55, "suggesting for every customer")
    customer_ids = frames["customers"]["customer_id"].to_numpy()
    out = model.suggest_all(customer_ids, n_prospects=20, n_similar=10)
    progress(75, "writing suggestions")
    recs, similar, prospects = out["recommendations"], out["similar_products"], out["prospects"]
    # The pipeline shares one evidence dict between the suggestions with the same figures (a
    # million rows, a few thousand dicts): each is serialised once.
    texts = {}

    def _lists(frame, *columns) -> list:  # the columns as plain Python lists (ints, floats, objects)
        return [frame[c].to_numpy().tolist() if frame[c].dtype.kind in "iuf" else list(frame[c]) for c in columns]

    def evidence_text(ev):
        key = id(ev)
        if key not in texts:
            texts[key] = (ev, _json(ev))  # the dict is kept so that its id is not reused
        return texts[key][1]

    with transaction.atomic():
        # Columns as Python lists first (one conversion per column, not per value): two
        # million rows otherwise spend most of the write converting numpy scalars.
        data.bulk_insert(Suggestion, ["run_id", "customer_id", "kind", "rank", "product_id", "score", "reason",
                                      "evidence", "basis"], (
            (run.pk, c, k, r, p, sc, reason, evidence_text(ev), basis)
            for c, k, r, p, sc, reason, ev, basis in zip(*_lists(
                recs, "customer_id", "kind", "rank", "product_id", "score", "reason", "evidence", "basis"))))
        data.bulk_insert(SimilarProduct, ["run_id", "product_id", "rank", "similar_id", "score", "reason"], (
            (run.pk, *row) for row in zip(*_lists(similar, "product_id", "rank", "similar_product_id", "score",
                                                  "reason"))))
        data.bulk_insert(Prospect, ["run_id", "product_id", "rank", "customer_id", "score", "reason"], (
            (run.pk, *row) for row in zip(*_lists(prospects, "product_id", "rank", "customer_id", "score",
                                                  "reason"))))
    chosen = model.chosen_name_
    metrics = {"outcome": model.outcome_, "backtest": model.backtest_, "validation": model.candidates_,
               "chosen": model.chosen_, "reorder_chosen": model.reorder_chosen_,
               "category_cap": {"cross_sell": model.cross_cap_, "reorder": model.reorder_cap_},
               "counts": {"suggestions": int(len(recs)), "similar": int(len(similar)),
                          "prospects": int(len(prospects)),
                          "reorder": int((recs["kind"] == "reorder").sum())},
               "diversity": model.diversity_, "ease": model.ease_}
    for target, reason in model.reasons_.items():
        if reason:
            metrics[f"{target}_reason"] = reason
    return {"metrics": _clean(metrics), "chosen_algorithm": f"{chosen} / {model.reorder_chosen_}",
            "artefact": _clean({"chosen": model.chosen_, "reorder": model.reorder_chosen_,
                                "max_per_category": {"cross_sell": model.cross_cap_, "reorder": model.reorder_cap_},
                                "window_days": model.window_days_})}


def _published_segment_names() -> pd.DataFrame | None:
    """customer_id -> segment_name of the live segmentation (for "Popular with <segment>")."""
    run = published_run(Kind.SEGMENTATION)
    if run is None:
        return None
    rows = CustomerSegment.objects.filter(run=run).values_list("customer_id", "segment__name")
    return pd.DataFrame.from_records(list(rows), columns=["customer_id", "segment_name"])


TRAINERS = {Kind.SEGMENTATION: train_segmentation, Kind.FORECAST: train_forecast,
            Kind.RECOMMENDATION: train_recommendation}


def waiting_behind_running(run_id: int) -> bool:
    """True when a queued run could not start because another run of its kind is running."""
    run = TrainingRun.objects.filter(pk=run_id, status=Status.QUEUED).first()
    return run is not None and TrainingRun.objects.filter(kind=run.kind, status=Status.RUNNING).exists()


def record_feedback(*, user, customer, product, kind: str, status: str):
    """Mark a suggestion offered / accepted / declined (one current status per customer, product, kind)."""
    from crm.selectors import visible_customers
    from crm.services import NotAllowed
    from ml.models import Suggestion, SuggestionFeedback
    from ml.selectors import published_run_ids

    if not visible_customers(user).filter(pk=customer.pk).exists():
        raise NotAllowed("you cannot give feedback on this customer's suggestions")
    if kind not in Suggestion.Kind.values or status not in SuggestionFeedback.Status.values:
        raise ValueError("unknown suggestion kind or feedback status")
    run_id = published_run_ids().get(Kind.RECOMMENDATION)
    feedback, _ = SuggestionFeedback.objects.update_or_create(
        customer=customer, product=product, kind=kind,
        defaults={"status": status, "user": user, "run_id": run_id})
    return feedback


def feedback_counts(run_id: int | None = None) -> dict:
    """{status: count} of suggestion feedback (for one run, or all)."""
    from django.db.models import Count

    from ml.models import SuggestionFeedback

    rows = SuggestionFeedback.objects.all()
    if run_id is not None:
        rows = rows.filter(run_id=run_id)
    return dict(rows.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
