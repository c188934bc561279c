"""Scoring fanned out over Celery workers: the fit happens once, in the worker that runs the
run; scoring and writing the buyers' forecasts, or the customers' suggestions, is split into
chunks of customer ids, one ``ml.score_chunk`` task each, taken by any worker.

A recommendation chunk reads nothing (the stored recommender holds the history and every
customer's reorder list, ranked once by the run's worker); it writes its customers' lists and its
own top prospects per product, and the last chunk ranks the prospects over all chunks
(``ml.suggestion_rows.keep_top_prospects``) and sums the counts and diversity figures.

- :func:`fan_out` (the run's worker, after the fit) stores the fitted forecaster and its
  reference figures (:class:`ml.models.ScoringModel`, pickled and compressed), creates one
  :class:`ml.models.ScoringChunk` per ML_SCORING_CHUNK buyers (an id range) and sends their tasks
  when that transaction commits. The run stays ``running``.
- :func:`score_chunk` claims its chunk (the job lifecycle of ``crm.jobs``: a conditional UPDATE,
  one more attempt), reads only its customers' interactions (a customer-id range read), predicts
  against the whole base's reference figures (so every forecast is the one a single predict
  gives) and writes its rows in the same transaction that marks the chunk done: a killed chunk
  leaves nothing. The last chunk to finish (a count of done chunks under the run row's lock)
  finishes and publishes the run in that transaction (:func:`ml.publishing.finish_run`).
- :func:`sweep_stale_chunks` (beat's ``ml.sweep_stale_runs``) sends a chunk whose worker died
  again, and fails the run after CHUNK_ATTEMPTS; a chunk that raises is tried again the same way.
"""
from __future__ import annotations

import logging
import pickle  # nosec B403
import time
import traceback
import zlib

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone

from crm import jobs
from ml import data
from ml.forecast_rows import write_forecasts
from ml.models import ScoringChunk, ScoringModel, TrainingRun
from ml.publishing import delete_run_rows, finish_run, library_versions, plain_json
from ml.suggestion_rows import RANK_SHIFT, keep_top_prospects, write_prospects, write_suggestions

log = logging.getLogger(__name__)

SCORE_CHUNK_TASK = "ml.score_chunk"
# Prospects per product a recommendation run keeps.
PROSPECTS = 20
MAX_SUGGEST_CHUNKS = RANK_SHIFT // PROSPECTS
# A chunk is tried this many times in all (worker deaths and errors) before its run fails.
CHUNK_ATTEMPTS = 3
Chunk = ScoringChunk.Status


class ScoringRefused(Exception):
    """The stored model cannot be used by this worker (other library versions, unreadable)."""


def fan_out_available() -> bool:
    """Whether a worker running a run may fan its scoring out: ML_SCORING_CHUNK is not 0 and the
    broker is a real one. On the embedded broker (one local worker on SQLite, ``make run``, the
    tests) chunks would only queue behind each other on the one database writer."""
    from crm.broker import SCHEME  # noqa: PLC0415 -- crm.broker registers a kombu transport; read only here

    return settings.ML_SCORING_CHUNK > 0 and not settings.CELERY_BROKER_URL.startswith(SCHEME + "+")


def fans_out(buyers: int) -> bool:
    """More buyers than one chunk holds (ML_SCORING_CHUNK; 0 never fans out)."""
    return 0 < settings.ML_SCORING_CHUNK < buyers


def fans_out_suggestions(customers: int) -> bool:
    """A recommendation run's suggesting is fanned out (ML_SCORING_CHUNK is not 0) when its
    customers are more than one suggestion chunk (ML_SUGGEST_CHUNK) and at most MAX_SUGGEST_CHUNKS
    chunks."""
    chunks = -(-customers // settings.ML_SUGGEST_CHUNK)
    return settings.ML_SCORING_CHUNK > 0 and 1 < chunks <= MAX_SUGGEST_CHUNKS


def fan_out(run: TrainingRun, fitted: dict, customers: np.ndarray, outcome: dict, timings: dict,
            size: int | None = None) -> int:
    """Store the ``fitted`` model (a forecast run's ``model`` and ``reference`` figures, a
    recommendation run's ``model`` and reorder ``winners``) for run ``run``, create one chunk
    per ``size`` (default ML_SCORING_CHUNK) of the sorted ``customers`` ids and send their tasks
    on commit. ``outcome`` (metrics, chosen_algorithm, artefact) and ``timings`` are recorded by
    the last chunk. Returns the number of chunks."""
    size = size or settings.ML_SCORING_CHUNK
    parts = [customers[i:i + size] for i in range(0, len(customers), size)]
    blob = zlib.compress(pickle.dumps({
        "versions": library_versions(), "as_of": pd.Timestamp(run.as_of), "kind": run.kind, **fitted,
        "customers": [np.asarray(p, dtype="int64") for p in parts]}, protocol=pickle.HIGHEST_PROTOCOL), 1)
    with transaction.atomic():
        ScoringModel.objects.create(run=run, blob=blob, chunks=len(parts),
                                    outcome={"outcome": outcome, "timings": timings, "model_bytes": len(blob),
                                             "chunk_size": size})
        chunks = ScoringChunk.objects.bulk_create([
            ScoringChunk(run=run, index=i, first_customer_id=int(p[0]), last_customer_id=int(p[-1]), customers=len(p))
            for i, p in enumerate(parts)])
        TrainingRun.objects.filter(pk=run.pk).update(stage=f"scoring customers: 0 of {len(parts)} chunks done",
                                                     heartbeat_at=timezone.now())
        for chunk in chunks:  # inside this transaction: a failed send is logged, the sweep sends it later
            jobs.dispatch_on_commit(SCORE_CHUNK_TASK, ScoringChunk, chunk.pk, f"scoring chunk {chunk.index}")
    return len(parts)


# The model this worker process loaded last, kept for the run's next chunk it takes (a
# recommender with its history is large: read, decompressed and unpickled once per worker, not
# once per chunk). Keyed by the stored row and its creation time, so another run's never matches.
_LOADED: dict = {}


def _load(run_id: int) -> dict:
    key = ScoringModel.objects.filter(run_id=run_id).values_list("pk", "created_at").first()
    if key is not None and _LOADED.get("key") == key:
        return _LOADED["stored"]
    _LOADED.clear()  # the last run's model goes before this one is read
    try:
        # Pickle: the blob is written by fan_out in our own workers, never taken from a user.
        stored = pickle.loads(zlib.decompress(bytes(ScoringModel.objects.get(run_id=run_id).blob)))  # noqa: S301  # nosec B301
    except (zlib.error, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ScoringRefused(f"the stored model of run #{run_id} could not be read ({exc})") from exc
    if stored["versions"] != library_versions():
        raise ScoringRefused(f"the run was trained with {stored['versions']}, this worker has {library_versions()}")
    _LOADED.update(key=key, stored=stored)
    return stored


def forget_loaded() -> None:
    """Drop the kept model (the run it belongs to has finished)."""
    _LOADED.clear()


def score_chunk(chunk_id: int) -> ScoringChunk | None:
    """Claim, score and write one chunk; the last one finishes the run. None when the chunk was
    not claimable (done, taken by a live worker, or its run is no longer running)."""
    now = timezone.now()
    if not jobs.claim(ScoringChunk, chunk_id, max_attempts=CHUNK_ATTEMPTS, now=now, stage="scoring", error=""):
        return None
    chunk = ScoringChunk.objects.get(pk=chunk_id)
    if not TrainingRun.objects.filter(pk=chunk.run_id, status=TrainingRun.Status.RUNNING).exists():
        ScoringChunk.objects.filter(pk=chunk.pk).update(status=Chunk.FAILED, error="the run was no longer running",
                                                        finished_at=timezone.now())
        return None
    started = time.monotonic()
    try:
        with jobs.Heartbeat(ScoringChunk, chunk.pk, jobs.heartbeat_seconds()):
            phases = _Phases()
            stored = _load(chunk.run_id)
            phases("load model")
            work = _suggest if stored.get("kind") == TrainingRun.Kind.RECOMMENDATION else _forecast
            write, summary = work(chunk, stored, phases)
            with transaction.atomic():
                rows = write()
                phases("write")
                done = ScoringChunk.objects.filter(pk=chunk.pk, status=Chunk.RUNNING, attempts=chunk.attempts).update(
                    summary={"seconds": phases.seconds, **summary},
                    status=Chunk.DONE, rows=rows, seconds=round(time.monotonic() - started, 3),
                    finished_at=timezone.now(), heartbeat_at=timezone.now(), stage="done")
                if not done:  # the sweep gave this chunk to another worker meanwhile: its rows are theirs
                    transaction.set_rollback(True)
                    return None
                kept = _finish_if_last(chunk.run_id)
                if not kept:
                    transaction.set_rollback(True)  # the run failed meanwhile: its rows are being dropped
            if not kept:
                ScoringChunk.objects.filter(pk=chunk.pk, status=Chunk.RUNNING).update(
                    status=Chunk.FAILED, error="the run was no longer running", finished_at=timezone.now())
                return None
        if not TrainingRun.objects.filter(pk=chunk.run_id, status=TrainingRun.Status.RUNNING).exists():
            forget_loaded()  # this chunk was the run's last: its model is of no more use here
    except OperationalError:
        raise  # the database went away: the task retries, or the sweep sends the chunk again
    except Exception as exc:
        log.exception("chunk %s of run %s failed", chunk.index, chunk.run_id)
        _failed(chunk, f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=6)}")
    chunk.refresh_from_db()
    return chunk


def _forecast(chunk: ScoringChunk, stored: dict, phases) -> tuple:
    """A forecast chunk: read its customers' interactions (a customer-id range read) and predict
    against the whole base's reference figures. Returns (the writer, the chunk's summary)."""
    frame = data.interactions_frame(stored["as_of"].date(),
                                    customer_range=(chunk.first_customer_id, chunk.last_customer_id))
    # The range also holds customers the run left out (no profiling): only the trained ones.
    frame = frame[frame["customer_id"].isin(stored["customers"][chunk.index])].reset_index(drop=True)
    phases("read interactions")
    pred = stored["model"].predict(frame, stored["as_of"], reference=stored["reference"])
    phases("predict")
    return (lambda: write_forecasts(chunk.run_id, pred)), {"interactions": int(len(frame))}


def _suggest(chunk: ScoringChunk, stored: dict, phases) -> tuple:
    """A recommendation chunk: its customers' lists from the fitted model (which holds the
    history: nothing is read), and its own top prospects per product, written at ranks after the
    earlier chunks' (the last chunk ranks them over all). The summary carries the counts and the
    lists' diversity figures."""
    recs, prospects, stats = stored["model"].suggest_part(stored["customers"][chunk.index], stored["winners"],
                                                          PROSPECTS)
    phases("suggest")
    summary = {"reorder": int((recs["kind"] == "reorder").sum()),
               "prospects": 0 if prospects is None else int(len(prospects)),
               "stats": [[int(c), _float(d), _float(v), [int(p) for p in products]] for c, d, v, products in stats]}

    def write():
        rows, _ = write_suggestions(chunk.run_id, recs)
        write_prospects(chunk.run_id, prospects, rank_offset=chunk.index * PROSPECTS)
        return rows
    return write, summary


def _float(value):
    return None if value is None else float(value)


class _Phases:
    """Seconds per phase of a chunk (its summary: where a chunk's time goes, bench/fanout_bench.py)."""

    def __init__(self):
        self.seconds, self._t = {}, time.monotonic()

    def __call__(self, phase: str):
        now = time.monotonic()
        self.seconds[phase], self._t = round(now - self._t, 3), now


def _finish_if_last(run_id: int) -> bool:
    """Inside the chunk's transaction: count the done chunks under the run row's lock (so two
    chunks finishing together cannot both miss being last, or both be last), show the progress,
    and when every chunk is done finish and publish the run. False when the run is no longer
    running (it failed): the chunk's rows must not be kept."""
    run = TrainingRun.objects.select_for_update().filter(pk=run_id, status=TrainingRun.Status.RUNNING).first()
    if run is None:
        return False
    stored = ScoringModel.objects.only("chunks", "outcome", "created_at").get(run_id=run_id)
    done = ScoringChunk.objects.filter(run_id=run_id, status=Chunk.DONE).count()
    if done < stored.chunks:
        TrainingRun.objects.filter(pk=run_id).update(
            stage=f"scoring customers: {done} of {stored.chunks} chunks done",
            progress=75 + int(25 * done / stored.chunks), heartbeat_at=timezone.now())
        return True
    parts = list(ScoringChunk.objects.filter(run_id=run_id).values_list("rows", "seconds", "attempts", "summary"))
    outcome = dict(stored.outcome["outcome"])
    if run.kind == TrainingRun.Kind.RECOMMENDATION:
        _recommendation_figures(run_id, outcome, [(r, summary) for r, _, _, summary in parts])
    else:
        outcome["artefact"] = {**outcome["artefact"], "forecasts": sum(r for r, _, _, _ in parts)}
    outcome["metrics"] = {**outcome["metrics"], "scoring": {
        "chunks": stored.chunks, "chunk_size": stored.outcome.get("chunk_size", settings.ML_SCORING_CHUNK),
        "model_bytes": stored.outcome.get("model_bytes"),
        "chunk_seconds": round(sum(s or 0 for _, s, _, _ in parts), 3),
        "redone": sum(a - 1 for _, _, a, _ in parts)}}
    now = timezone.now()
    timings = {**stored.outcome["timings"], "scoring chunks": round((now - stored.created_at).total_seconds(), 3),
               "total": round((now - run.started_at).total_seconds(), 3)}
    publish = outcome.pop("publish", True)
    finish_run(run_id, publish, outcome.pop("reason", ""), timings, outcome)
    return True


def _recommendation_figures(run_id: int, outcome: dict, summaries: list) -> None:
    """The last recommendation chunk: rank the prospects over every chunk, and count the rows
    and the lists' diversity over the chunks' (rows, summary) (the figures one pass gives)."""
    from ml.pipelines.recommendation.ranking import published_diversity  # noqa: PLC0415 -- the numeric core loads only where it is used

    stats = [(c, d, v, np.asarray(p, dtype=np.int64)) for _, s in summaries for c, d, v, p in s["stats"]]
    metrics = outcome["metrics"] = dict(outcome["metrics"])
    metrics["counts"] = {**metrics["counts"], "suggestions": sum(r for r, _ in summaries),
                         "reorder": sum(s["reorder"] for _, s in summaries),
                         "prospects": keep_top_prospects(run_id, PROSPECTS)}
    metrics["diversity"] = plain_json(published_diversity(stats, outcome.pop("active_products")))


def _failed(chunk: ScoringChunk, error: str) -> None:
    """A chunk that raised: queued and sent again, or, after CHUNK_ATTEMPTS, its run fails."""
    if chunk.attempts >= CHUNK_ATTEMPTS:
        ScoringChunk.objects.filter(pk=chunk.pk, status=Chunk.RUNNING).update(
            status=Chunk.FAILED, error=error, finished_at=timezone.now())
        fail_run(chunk.run_id, f"scoring chunk {chunk.index} (customers {chunk.first_customer_id}-"
                               f"{chunk.last_customer_id}) failed {chunk.attempts} times; the previous published "
                               f"insights are unchanged. Last error: {error}")
        return
    if ScoringChunk.objects.filter(pk=chunk.pk, status=Chunk.RUNNING).update(
            status=Chunk.QUEUED, error=error, stage="failed; queued again", dispatched_at=None):
        jobs.dispatch(SCORE_CHUNK_TASK, ScoringChunk, chunk.pk)


def fail_run(run_id: int, error: str) -> None:
    """Fail a fanned-out run (still running) and drop what its chunks wrote; the other chunks
    then find it no longer running and do nothing."""
    if TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.FAILED, error=error, finished_at=timezone.now()):
        ScoringChunk.objects.filter(run_id=run_id, status__in=[Chunk.QUEUED, Chunk.RUNNING]).update(
            status=Chunk.FAILED, error="the run failed", finished_at=timezone.now())
        delete_run_rows(run_id)


def sweep_stale_chunks() -> dict:
    """Chunks whose worker died (running, heartbeat stale): queued and sent again (one
    transaction wrote their rows and their done mark, so nothing of them is left to clean), or
    after CHUNK_ATTEMPTS their run fails."""
    stale, running = jobs.stale_running(ScoringChunk)
    requeued, failed = [], []
    for chunk in running:
        if chunk.attempts >= CHUNK_ATTEMPTS:
            if jobs.fail_stale(ScoringChunk, chunk.pk, stale, "the worker stopped responding"):
                fail_run(chunk.run_id, f"scoring chunk {chunk.index} lost its worker {chunk.attempts} times (killed "
                                       "or out of memory); the previous published insights are unchanged")
                failed.append(chunk.pk)
        elif jobs.requeue_stale(ScoringChunk, chunk.pk, stale):
            jobs.dispatch(SCORE_CHUNK_TASK, ScoringChunk, chunk.pk)
            requeued.append(chunk.pk)
    return {"requeued": requeued, "failed": failed}


def send_pending_chunks() -> tuple[list[int], bool]:
    """Send the queued chunks whose task never reached the broker or whose message looks lost
    (crm.jobs.register_pending)."""
    queued = ScoringChunk.objects.filter(status=Chunk.QUEUED, run__status=TrainingRun.Status.RUNNING)
    jobs.release_overdue(ScoringChunk, queued.values_list("pk", flat=True))
    return jobs.send_queued(SCORE_CHUNK_TASK, ScoringChunk, queued)


def is_fanned_out(run_id: int) -> bool:
    """True when the run's scoring was handed to chunks (its own worker is done with it)."""
    return ScoringModel.objects.filter(run_id=run_id).exists()
