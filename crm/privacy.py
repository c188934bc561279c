"""Data-protection rights of a customer: access (everything stored about them, as one JSON
document) and erasure (their personal data gone from every table and every stored model run).

Both are manager and admin work: a right-of-access or erasure request is handled by whoever
answers for the data, not by the rep who owns the account, and the export holds more than any
page shows a rep (every past model run, the audit trail). Every door (web page, API, management
command) calls these services; each use writes one audit event in the same transaction.
"""
from __future__ import annotations

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from crm import audit
from crm.models import AuditEvent, Customer, Interaction

FORMAT = "crm-personal-data/1"

# The Customer fields that describe the person; erase_customer blanks all of them.
PERSONAL_FIELDS = ("name", "email", "phone", "company", "country", "city")


def _check_manager(user) -> None:
    from crm.selectors import is_manager
    from crm.services import NotAllowed

    if user is not None and not is_manager(user):
        raise NotAllowed("only managers and admins can export or erase a customer's personal data")


def _run(run) -> dict:
    return {"run_id": run.pk, "kind": run.kind, "as_of": run.as_of, "finished_at": run.finished_at,
            "published": run.is_published}


def personal_data(customer: Customer) -> dict:
    """Everything stored about one customer, from every stored model run, as a JSON-ready dict.

    Sections: customer (profile), interactions, segments, forecasts (with their factors, and
    why a value is null: {target: reason} of the targets not forecast),
    suggestions (with reasons and evidence), prospects (products they were listed as a
    likely buyer of), suggestion_feedback, audit_events (what staff did with their record).
    A fixed number of queries whatever the customer's history.
    """
    # ml builds on crm: read at call time, so importing crm never loads ml.
    from ml.models import CustomerSegment, Forecast, Prospect, Suggestion, SuggestionFeedback
    from ml.run_reports import targets_not_forecast

    c = Customer.objects.select_related("owner").get(pk=customer.pk)
    interactions = Interaction.objects.filter(customer=c).select_related("product").order_by("occurred_at", "id")
    segments = CustomerSegment.objects.filter(customer=c).select_related("run", "segment").order_by("run_id")
    forecasts = Forecast.objects.filter(customer=c).select_related("run").order_by("run_id")
    suggestions = Suggestion.objects.filter(customer=c).select_related("run", "product").order_by(
        "run_id", "kind", "rank")
    prospects = Prospect.objects.filter(customer=c).select_related("run", "product").order_by("run_id", "product_id")
    feedback = SuggestionFeedback.objects.filter(customer=c).select_related("product", "user").order_by("id")
    events = AuditEvent.objects.filter(customer_id=c.pk).order_by("at", "id")
    return {
        "format": FORMAT,
        "generated_at": timezone.now(),
        "customer": {
            "id": c.pk, "external_id": c.external_id, **{f: getattr(c, f) for f in PERSONAL_FIELDS},
            "signup_date": c.signup_date, "owner": c.owner.get_username() if c.owner else None,
            "attributes": c.attributes, "no_profiling": c.no_profiling, "last_purchase_at": c.last_purchase_at,
            "erased_at": c.erased_at, "created_at": c.created_at, "updated_at": c.updated_at,
        },
        "interactions": [{
            "external_id": i.external_id, "type": i.type, "occurred_at": i.occurred_at,
            "product_sku": i.product.sku if i.product else None, "product_name": i.product.name if i.product else None,
            "quantity": i.quantity, "amount": i.amount, "order_ref": i.order_ref, "channel": i.channel,
            "notes": i.notes, "attributes": i.attributes, "created_at": i.created_at,
        } for i in interactions],
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
                         "evidence": s.evidence, "basis": s.basis} for s in suggestions],
        "prospects": [{**_run(p.run), "product_sku": p.product.sku, "product_name": p.product.name,
                       "rank": p.rank, "score": p.score, "reason": p.reason} for p in prospects],
        "suggestion_feedback": [{"product_sku": f.product.sku, "kind": f.kind, "status": f.status,
                                 "run_id": f.run_id, "by": f.user.get_username() if f.user else None,
                                 "created_at": f.created_at, "updated_at": f.updated_at} for f in feedback],
        "audit_events": [{"at": e.at, "action": e.action, "actor": e.actor_username or None,
                          "object_type": e.object_type, "object_id": e.object_id, "summary": e.summary}
                         for e in events],
    }


def to_json(data: dict) -> bytes:
    return json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2).encode("utf-8")


def export_personal_data(*, user, customer: Customer) -> dict:
    """The customer's personal data (:func:`personal_data`), recorded in the audit trail.

    ``user``: the manager or admin asking (None: a management command). Raises
    crm.services.NotAllowed for other roles.
    """
    _check_manager(user)
    with transaction.atomic():
        data = personal_data(customer)
        audit.record(AuditEvent.Action.PERSONAL_DATA_EXPORT, user=user, object_type="customer",
                     object_id=customer.pk, customer_id=customer.pk,
                     summary=f"customer {customer.pk}: personal data exported ("
                             + ", ".join(f"{len(data[k])} {k.replace('_', ' ')}" for k in (
                                 "interactions", "segments", "forecasts", "suggestions", "prospects",
                                 "suggestion_feedback")) + ")")
    return data


def erase_customer(*, user, customer: Customer) -> dict:
    """Erase a customer's personal data; returns {what: rows deleted}.

    In one transaction (all or nothing): their interactions, and their segment, forecast,
    suggestion and prospect rows in every stored model run and their suggestion feedback,
    are deleted; the personal fields of the row are blanked, ``external_id`` (the source
    system's key, itself an identifier) becomes ``erased-<id>``, the admin's change history
    stops naming them, and ``no_profiling`` is set so no later training can include the row.
    The row stays as an empty tombstone (``erased_at`` set) so its id remains valid in the audit
    trail and for systems that hold it. The audit event keeps that it happened (id, who, when,
    counts), not what was erased.
    """
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    from ml.models import CustomerSegment, Forecast, Prospect, Suggestion, SuggestionFeedback

    _check_manager(user)
    pk = customer.pk
    with transaction.atomic():
        counts = {}
        # Deleting the interactions also takes them out of every later training frame, so the
        # similar-product and item-based models retrained after this never see them.
        for label, model in (("interactions", Interaction), ("segments", CustomerSegment),
                             ("forecasts", Forecast), ("suggestions", Suggestion), ("prospects", Prospect),
                             ("suggestion feedback", SuggestionFeedback)):
            counts[label] = model.objects.filter(customer_id=pk).delete()[0]
        now = timezone.now()
        Customer.objects.filter(pk=pk).update(
            external_id=f"erased-{pk}", **{f: "" for f in PERSONAL_FIELDS}, signup_date=None, attributes={},
            no_profiling=True, last_purchase_at=None, erased_at=now, updated_at=now)
        LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Customer),
                                object_id=str(pk)).update(object_repr=f"erased customer {pk}")
        audit.record(AuditEvent.Action.ERASE, user=user, object_type="customer", object_id=pk, customer_id=pk,
                     summary=f"customer {pk} erased: " + ", ".join(f"{n} {label}" for label, n in counts.items())
                             + " deleted; personal fields blanked")
    customer.refresh_from_db()
    return counts
