"""The webhook events of a run going live (queued through crm.webhooks, in publish_run's transaction).

- ``run.published``: every publish, rollbacks included; its key holds the publish time, so a run
  published again later (rolled back to) is a new event, while one publish is one event.
- ``customer.churn_risk``: a published forecast run, for each customer whose churn probability
  is at or above WEBHOOK_CHURN_THRESHOLD and was below it, or absent, in the forecast run that was
  live before. The first forecast ever published sends none: nothing was crossed, and every
  customer above the threshold at once (a burst of a fifth of the base) would be a list, which
  the API gives (``GET /customers/?churn_band=high``). One query streams the crossings (an
  index range of the new run, and a lookup of the previous run's row by its unique key), so the
  cost is that of the customers who crossed.
"""
from __future__ import annotations

from datetime import UTC

from django.conf import settings
from django.db.models import FloatField, OuterRef, Q, Subquery

from crm import webhooks
from crm.webhook_models import CUSTOMER_CHURN_RISK, RUN_PUBLISHED
from ml.models import Forecast, TrainingRun

# Crossings read per round trip: a few hundred KB of rows.
CHUNK = 2000


def _iso(value):
    return value.isoformat() if value is not None else None


def run_data(run: TrainingRun, published_at, replaced_id: int | None, rollback: bool) -> dict:
    outcome = (run.metrics or {}).get("outcome") or {}
    return {"run": run.pk, "kind": run.kind, "algorithm": run.chosen_algorithm, "as_of": _iso(run.as_of),
            "horizon_days": run.horizon_days, "basis": outcome.get("basis") or "",
            "summary": outcome.get("summary") or "", "published_at": published_at.astimezone(UTC).isoformat(),
            "replaces_run": replaced_id, "rollback": rollback}


def churn_crossings(run_id: int, previous_run_id: int | None, threshold: float):
    """(event key, data, None) per customer of forecast run ``run_id`` at or above ``threshold`` whose
    forecast in ``previous_run_id`` was below it or missing; streamed, in customer order. None
    without a previous run (the first forecast sets the baseline)."""
    if previous_run_id is None:
        return
    previous = Subquery(Forecast.objects.filter(run_id=previous_run_id, customer_id=OuterRef("customer_id"))
                        .values("churn_probability")[:1], output_field=FloatField())
    rows = (Forecast.objects.filter(run_id=run_id, churn_probability__gte=threshold, customer__erased_at__isnull=True)
            .annotate(previous=previous).filter(Q(previous__isnull=True) | Q(previous__lt=threshold))
            .order_by("customer_id")
            .values_list("customer_id", "customer__external_id", "customer__name", "churn_probability", "previous"))
    for customer_id, external_id, name, probability, before in rows.iterator(chunk_size=CHUNK):
        yield (f"churn:{run_id}:{customer_id}",
               {"customer": {"id": customer_id, "external_id": external_id, "name": name},
                "churn_probability": probability, "previous": before, "threshold": threshold, "run": run_id}, None)


def queue_publish_events(run: TrainingRun, published_at, replaced_id: int | None, *, rollback: bool) -> dict:
    """Queue the events of ``run`` going live at ``published_at``, replacing ``replaced_id`` (the run
    of its kind live until now, or None). Call inside the publishing transaction. Returns the
    deliveries queued per event."""
    key = f"run:{run.pk}:{published_at.astimezone(UTC).isoformat()}"
    out = {RUN_PUBLISHED: webhooks.enqueue(RUN_PUBLISHED, [(key, run_data(run, published_at, replaced_id, rollback),
                                                            published_at)])}
    if run.kind == TrainingRun.Kind.FORECAST and webhooks.subscribers(CUSTOMER_CHURN_RISK):
        out[CUSTOMER_CHURN_RISK] = webhooks.enqueue(
            CUSTOMER_CHURN_RISK, churn_crossings(run.pk, replaced_id, settings.WEBHOOK_CHURN_THRESHOLD))
    return out
