"""What ml keeps about a customer, for crm's personal-data export, erasure and merge.

crm never imports ml: :class:`MlConfig` registers these with crm.hooks when Django starts.
"""
from __future__ import annotations

from crm.hooks import CustomerData
from crm.models import Customer
from ml.models import CustomerSegment, Forecast, Prospect, Suggestion, SuggestionEvent, SuggestionFeedback
from ml.run_reports import targets_not_forecast

INSIGHT_MODELS = (CustomerSegment, Forecast, Suggestion, Prospect)


def _run(run) -> dict:
    return {"run_id": run.pk, "kind": run.kind, "as_of": run.as_of, "finished_at": run.finished_at,
            "published": run.is_published}


def export(c: Customer) -> dict:
    """The customer's segment, forecast, suggestion and prospect rows of every stored run and their
    suggestion feedback and its events (every mark), as the export's sections (one query each)."""
    segments = CustomerSegment.objects.filter(customer=c).select_related("run", "segment").order_by("run_id")
    forecasts = Forecast.objects.filter(customer=c).select_related("run").order_by("run_id")
    suggestions = Suggestion.objects.filter(customer=c).select_related("run", "product").order_by(
        "run_id", "kind", "rank")
    prospects = Prospect.objects.filter(customer=c).select_related("run", "product").order_by("run_id", "product_id")
    feedback = SuggestionFeedback.objects.filter(customer=c).select_related("product", "user").order_by("id")
    events = SuggestionEvent.objects.filter(customer=c).select_related("product", "user").order_by("at", "id")
    return {
        "segments": [{**_run(s.run), "segment": s.segment.name, "segment_key": s.segment.key,
                      "profile": s.segment.profile, "distance": s.distance} for s in segments],
        "forecasts": [{**_run(f.run), "horizon_days": f.run.horizon_days,
                       "expected_purchases": f.expected_purchases, "expected_spend": f.expected_spend,
                       "churn_probability": f.churn_probability, "clv": f.clv,
                       "expected_refund_rate": f.expected_refund_rate, "purchases_p10": f.purchases_p10,
                       "purchases_p90": f.purchases_p90, "spend_p10": f.spend_p10, "spend_p90": f.spend_p90,
                       "basis": f.basis, "factors": f.factors,
                       # Why a null value is null: the target was not forecast for the data (e.g. no amounts).
                       "not_forecast": targets_not_forecast(f.run.metrics)} for f in forecasts],
        "suggestions": [{**_run(s.run), "kind": s.kind, "rank": s.rank, "product_sku": s.product.sku,
                         "product_name": s.product.name, "score": s.score, "reason": s.reason,
                         "evidence": s.evidence, "basis": s.basis, "control_group": s.control} for s in suggestions],
        "prospects": [{**_run(p.run), "product_sku": p.product.sku, "product_name": p.product.name,
                       "rank": p.rank, "score": p.score, "reason": p.reason} for p in prospects],
        "suggestion_feedback": [{"product_sku": f.product.sku, "kind": f.kind, "status": f.status,
                                 "run_id": f.run_id, "by": f.user.get_username() if f.user else None,
                                 "created_at": f.created_at, "updated_at": f.updated_at} for f in feedback],
        "suggestion_events": [{"product_sku": e.product.sku, "kind": e.kind, "event": e.event, "at": e.at,
                               "run_id": e.run_id, "by": e.user.get_username() if e.user else None} for e in events],
    }


def erase(customer_id: int) -> dict:
    """Delete the customer's insight rows of every stored run and their feedback: {label: rows}."""
    counts = {}
    for label, model in (("segments", CustomerSegment), ("forecasts", Forecast), ("suggestions", Suggestion),
                         ("prospects", Prospect), ("suggestion feedback", SuggestionFeedback),
                         ("suggestion events", SuggestionEvent)):
        counts[label] = model.objects.filter(customer_id=customer_id).delete()[0]
    return counts


def merge(kept_id: int, ids: list[int]) -> dict:
    """Carry the duplicates' rows to the kept customer: suggestion feedback moves (the salespeople's
    work; one current status per suggestion, the most recent stays), and every suggestion event
    (the funnel keeps every mark); insight rows of past runs are dropped (they describe a
    customer that no longer exists). {label: rows}."""
    moved = {}
    feedback = list(SuggestionFeedback.objects.filter(customer_id__in=[kept_id, *ids])
                    .order_by("-updated_at", "-id").values_list("pk", "product_id", "kind"))
    latest, superseded = set(), []
    for pk, product_id, kind in feedback:
        if (product_id, kind) in latest:
            superseded.append(pk)
        latest.add((product_id, kind))
    SuggestionFeedback.objects.filter(pk__in=superseded).delete()
    moved["suggestion feedback"] = SuggestionFeedback.objects.filter(customer_id__in=ids).update(customer_id=kept_id)
    moved["suggestion feedback superseded"] = len(superseded)
    moved["suggestion events"] = SuggestionEvent.objects.filter(customer_id__in=ids).update(customer_id=kept_id)
    dropped = 0
    for model in INSIGHT_MODELS:
        dropped += model.objects.filter(customer_id__in=ids).delete()[0]
    moved["insight rows of past runs dropped"] = dropped
    return moved


CUSTOMER_DATA = CustomerData(export=export, erase=erase, merge=merge, models=(SuggestionFeedback, SuggestionEvent,
                                                                          *INSIGHT_MODELS))
