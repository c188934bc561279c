"""Data-protection rights of a customer: access (everything stored about them, as one JSON
document) and erasure (their personal data gone from every table and every stored model run).

Both are manager and admin work: a right-of-access or erasure request is handled by whoever
answers for the data, not by the rep who owns the account, and the export holds more than any
page shows a rep (every past model run, the audit trail). Every door (web page, API, management
command) calls these services; each use writes one audit event in the same transaction.
"""
from __future__ import annotations

import json

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from crm import audit, hooks
from crm.access import NotAllowed, is_manager
from crm.models import AuditEvent, Customer, CustomerTag, Interaction

FORMAT = "crm-personal-data/1"

# The Customer fields that describe the person; erase_customer blanks all of them.
PERSONAL_FIELDS = ("name", "email", "phone", "company", "country", "city")


def _check_manager(user) -> None:
    if user is not None and not is_manager(user):
        raise NotAllowed("only managers and admins can export or erase a customer's personal data")


def personal_data(customer: Customer) -> dict:
    """Everything stored about one customer, from every stored model run, as a JSON-ready dict.

    Sections: customer (profile), interactions, segments, forecasts (with their factors, and
    why a value is null: {target: reason} of the targets not forecast),
    suggestions (with reasons and evidence), prospects (products they were listed as a
    likely buyer of), suggestion_feedback, audit_events (what staff did with their record).
    A fixed number of queries whatever the customer's history.
    """
    c = Customer.objects.select_related("owner").get(pk=customer.pk)
    interactions = Interaction.objects.filter(customer=c).select_related("product").order_by("occurred_at", "id")
    events = AuditEvent.objects.filter(customer_id=c.pk).order_by("at", "id")
    return {
        "format": FORMAT,
        "generated_at": timezone.now(),
        "customer": {
            "id": c.pk, "external_id": c.external_id, **{f: getattr(c, f) for f in PERSONAL_FIELDS},
            "signup_date": c.signup_date, "owner": c.owner.get_username() if c.owner else None,
            "attributes": c.attributes, "no_profiling": c.no_profiling, "last_purchase_at": c.last_purchase_at,
            "erased_at": c.erased_at, "created_at": c.created_at, "updated_at": c.updated_at,
            "tags": [t.tag.name for t in CustomerTag.objects.filter(customer=c).select_related("tag").order_by("id")],
        },
        "interactions": [{
            "external_id": i.external_id, "type": i.type, "occurred_at": i.occurred_at,
            "product_sku": i.product.sku if i.product else None, "product_name": i.product.name if i.product else None,
            "quantity": i.quantity, "amount": i.amount, "order_ref": i.order_ref, "channel": i.channel,
            "notes": i.notes, "attributes": i.attributes, "created_at": i.created_at,
        } for i in interactions],
        # What other apps keep about them (ml: segments, forecasts, suggestions, prospects, feedback).
        **{section: records for data in hooks.customer_data() for section, records in data.export(c).items()},
        "audit_events": [{"at": e.at, "action": e.action, "actor": e.actor_username or None,
                          "object_type": e.object_type, "object_id": e.object_id, "summary": e.summary}
                         for e in events],
    }


def to_json(data: dict) -> bytes:
    return json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2).encode("utf-8")


def export_personal_data(*, user, customer: Customer) -> dict:
    """The customer's personal data (:func:`personal_data`), recorded in the audit trail.

    ``user``: the manager or admin asking (None: a management command). Raises
    crm.access.NotAllowed for other roles.
    """
    _check_manager(user)
    with transaction.atomic():
        data = personal_data(customer)
        audit.record(AuditEvent.Action.PERSONAL_DATA_EXPORT, user=user, object_type="customer",
                     object_id=customer.pk, customer_id=customer.pk,
                     summary=f"customer {customer.pk}: personal data exported ("
                             + ", ".join(f"{len(data[k])} {k.replace('_', ' ')}" for k in data
                                            if k not in ("format", "generated_at", "customer", "audit_events"))
                             + ")")
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
    _check_manager(user)
    pk = customer.pk
    with transaction.atomic():
        counts = {}
        # Deleting the interactions also takes them out of every later training frame, so the
        # similar-product and item-based models retrained after this never see them.
        counts["interactions"] = Interaction.objects.filter(customer_id=pk).delete()[0]
        for data in hooks.customer_data():  # what other apps keep about them (ml: insights, feedback)
            counts.update(data.erase(pk))
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
