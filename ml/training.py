"""Training one run of each kind: read the data cut at the run's ``as_of`` (``ml.data``), fit the
family's model (``ml.pipelines``), and write its insight rows under the run's id. ``ml.services``
claims the run, calls :data:`TRAINERS` and publishes; nothing here publishes.
"""
from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from crm.models import Customer, Interaction
from ml import data, scoring
from ml.control import control_ids
from ml.forecast_rows import write_forecasts
from ml.insights import published_run
from ml.models import CustomerSegment, Segment, SimilarProduct, TrainingRun
from ml.publishing import plain_json
from ml.suggestion_rows import write_prospects, write_suggestions

Kind = TrainingRun.Kind


class RetrainRefused(Exception):
    """A retrain cannot be requested now; the message says why."""


class KindNotSupported(Exception):
    """This data cannot support the kind at all (no product catalogue, no purchase at all...):
    the run is skipped with the message as its reason, and the published insights stay."""


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


# --- segmentation ------------------------------------------------------------------------------

def train_segmentation(run: TrainingRun, progress) -> dict:
    """Segment every customer as of ``run.as_of`` and write the segments under the run.

    ``auto`` chooses among RFM (the baseline), K-means and DBSCAN on the rolling-origin
    backtest (``metrics["backtest"]``); ``metrics["outcome"]`` says whether a model or the
    baseline was published, or that the history was too short to compare (RFM, "not
    validated"). Names of segments whose members are mostly those of a published segment are
    kept. Raises KindNotSupported when there is nobody to segment.
    """
    from ml.pipelines.segmentation import CustomerSegmenter, NothingToSegment, match_segments  # noqa: PLC0415 -- the numeric core (scikit-learn, implicit) loads only in a process that trains

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
                    size=int(row.size), figures=plain_json(row.figures))
            for row in segments.itertuples()
        ])
        ids = {s.key: s.pk for s in created}
        data.bulk_insert(CustomerSegment, ["run_id", "customer_id", "segment_id", "distance"], (
            (run.pk, int(c), ids[int(k)], None if pd.isna(d) else float(d))
            for c, k, d in zip(assignments["customer_id"], assignments["segment_key"],
                               assignments["distance_to_center"])))
    return {"metrics": plain_json({"outcome": model.outcome_, "backtest": model.backtest_,
                               "comparison": model.comparison_, "chosen": model.chosen_,
                               "reason": model.chosen_reason_, "params": model.params_,
                               "money": model.money_,
                               "sizes": {names.get(k, str(k)): int(n) for k, n in
                                         zip(segments["segment_key"], segments["size"])}}),
            "chosen_algorithm": str(model.chosen_),
            "artefact": plain_json({"segments": len(segments), "params": model.params_})}


def _rename_profile(profile: str, old: str, new: str) -> str:
    if old != new and profile.startswith(old):
        return new + profile[len(old):]
    return profile


# --- forecasts ------------------------------------------------------------------------------------

def train_forecast(run: TrainingRun, progress, fan_out: bool = False) -> dict:
    """Backtest every candidate on rolling windows of the history, publish per target the
    simplest one within the spread of the best (a baseline when no model beats it), and write
    every buyer's forecast. A target the data cannot support (spend without amounts) is
    written as NULL, with the reason in ``metrics["targets"]``.

    ``fan_out``: when the buyers are more than ML_SCORING_CHUNK, the fitted model is stored and
    the scoring is left to chunk tasks (``ml.scoring``); the outcome then says ``deferred`` and
    the last chunk finishes the run."""
    from ml.pipelines.forecasting import fit_evaluate  # noqa: PLC0415 -- the numeric core (scikit-learn, implicit) loads only in a process that trains

    frames = _load(run, progress, need_products=False)
    interactions = frames["interactions"]
    as_of = pd.Timestamp(run.as_of)
    params = {k: v for k, v in run.params.items() if k in ("clv_days",)}

    def step(fraction, stage):  # the backtests and the final fit: 15 % -> 75 %
        progress(15 + 60 * fraction, stage)

    model, report = fit_evaluate(interactions, as_of, horizon_days=run.horizon_days, algorithm=run.algorithm,
                                 random_state=0, progress=step, **params)
    metrics = plain_json(report)
    outcome = {"metrics": metrics, "chosen_algorithm": model.basis_label()[:80],
               "artefact": plain_json({"chosen": model.chosen_, "weights": model.final_.weights_,
                                   "btyd": {n: model.final_.btyd_[n].params_ for n in ("bgnbd", "paretonbd")}})}
    buyers = np.sort(interactions.loc[interactions["type"] == "purchase", "customer_id"].unique())
    if fan_out and scoring.fans_out(len(buyers)):
        progress(75, "scoring customers in chunks")
        scoring.fan_out(run, {"model": model, "reference": model.reference(interactions, as_of)}, buyers, outcome,
                        progress.finish())
        return {"deferred": True}
    progress(75, "forecasting every customer")
    pred = model.predict(interactions, as_of)
    progress(85, "writing forecasts")
    with transaction.atomic():
        write_forecasts(run.pk, pred)
    outcome["artefact"]["forecasts"] = int(len(pred))
    return outcome


def train_recommendation(run: TrainingRun, progress, fan_out: bool = False) -> dict:
    """Fit the recommender (scorers, blend, category cap and reorder model chosen on rolling
    backtest windows of the history), then write every customer's cross-sell and reorder
    lists, similar products and prospects under this run.

    Raises KindNotSupported when no purchase carries a product of the catalogue. Metrics:
    ``outcome`` and ``backtest`` (the layout shared by every kind), ``validation`` (each
    candidate's scores averaged over the windows), the choices, and ``cross_sell_reason`` /
    ``reorder_reason`` when a list kind has nothing to suggest at all (e.g. nobody ever
    bought the same product twice).

    ``fan_out``: when the customers are more than ML_SUGGEST_CHUNK, the similar products are
    written, the fitted model and every customer's reorder list stored, and the suggesting left
    to chunk tasks (``ml.scoring``); the outcome then says ``deferred``.
    """
    from ml.pipelines.recommendation import FIT_COLUMNS, NotSupported, Recommender  # noqa: PLC0415 -- the numeric core (scikit-learn, implicit) loads only in a process that trains

    frames = _load(run, progress)
    # The columns the recommender reads, copied, and the full frame dropped before the fit (its
    # peak): quantities, amounts and order refs are ~0.35 GB at 10 M interactions.
    interactions = frames.pop("interactions")[FIT_COLUMNS].copy()
    segments = _published_segment_names()
    progress(15, "backtesting on earlier windows and learning from purchases")
    params = {k: v for k, v in run.params.items() if k in ("max_per_category", "n", "min_history")}
    model = Recommender(algorithm=run.algorithm, horizon_days=run.horizon_days, random_state=0, **params)
    try:
        model.fit(interactions, frames["products"], pd.Timestamp(run.as_of), segments=segments)
    except NotSupported as exc:
        raise KindNotSupported(str(exc)) from exc
    customer_ids = np.sort(frames["customers"]["customer_id"].to_numpy())
    del frames, interactions  # the fitted model holds what it needs; the frames would sit under the suggestions
    size = settings.ML_SUGGEST_CHUNK
    if fan_out and scoring.fans_out_suggestions(len(customer_ids)):
        progress(55, "ranking reorder lists and similar products")
        winners = model.reorder_winners()
        similar = model.similar_products(10)
        with transaction.atomic():
            _write_similar(run.pk, similar)
        outcome = _recommendation_outcome(model, {"similar": int(len(similar)),
                                                 "control_customers": len(control_ids(customer_ids))})
        outcome["active_products"] = int(model.history_.active.sum())
        progress(60, "suggesting in customer chunks")
        scoring.fan_out(run, {"model": model, "winners": winners}, customer_ids, outcome, progress.finish(), size)
        return {"deferred": True}
    counts = {"suggestions": 0, "reorder": 0}
    parts = max(-(-len(customer_ids) // size), 1)
    lists = model.suggest_chunks(customer_ids, size, n_prospects=20)
    # The stage shown while the rows are written in one transaction (the chunks' steps are only
    # timed: an update of the run row inside it would be unseen and hold the row's lock).
    progress(55, f"suggesting for and writing {len(customer_ids):,} customers' lists in {parts} chunks", "suggesting")
    with transaction.atomic():
        # Suggested and written a chunk of customers at a time: a million customers' 13 million
        # rows, with their reasons, never sit in memory at once.
        for done in range(parts):
            progress(55 + 40 * done / parts, f"suggesting: customer chunk {done + 1} of {parts}", "suggesting",
                     show=False)
            recs = next(lists)
            progress(55 + 40 * (done + 0.5) / parts, f"writing suggestions: chunk {done + 1} of {parts}", "writing",
                     show=False)
            rows, reorder = write_suggestions(run.pk, recs)
            counts["suggestions"] += rows
            counts["reorder"] += reorder
            del recs
        similar = model.similar_products(10)
        _write_similar(run.pk, similar)
        write_prospects(run.pk, model.prospects_)
    counts.update(similar=int(len(similar)), prospects=0 if model.prospects_ is None else int(len(model.prospects_)),
                  control_customers=len(control_ids(customer_ids)))
    outcome = _recommendation_outcome(model, counts)
    outcome["metrics"]["diversity"] = plain_json(model.diversity_)
    return outcome


def _write_similar(run_id: int, similar: pd.DataFrame) -> None:
    data.write_frame(SimilarProduct, similar.rename(columns={"similar_product_id": "similar_id"}).assign(
        run_id=run_id)[["run_id", "product_id", "rank", "similar_id", "score", "reason"]])


def _recommendation_outcome(model, counts: dict) -> dict:
    """The run's metrics, chosen algorithm and artefact; ``counts`` and the published lists'
    ``diversity`` are the suggesting's (the last chunk's, when fanned out)."""
    chosen = model.chosen_name_
    metrics = {"outcome": model.outcome_, "backtest": model.backtest_, "validation": model.candidates_,
               "chosen": model.chosen_, "reorder_chosen": model.reorder_chosen_,
               "category_cap": {"cross_sell": model.cross_cap_, "reorder": model.reorder_cap_},
               "counts": counts, "ease": model.ease_}
    for target, reason in model.reasons_.items():
        if reason:
            metrics[f"{target}_reason"] = reason
    return {"metrics": plain_json(metrics), "chosen_algorithm": f"{chosen} / {model.reorder_chosen_}",
            "artefact": plain_json({"chosen": model.chosen_, "reorder": model.reorder_chosen_,
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
