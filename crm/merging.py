"""Merging duplicate customers into one, with what other apps keep about them (crm.hooks)."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from crm import audit, hooks
from crm.access import check_manager
from crm.interactions import refresh_last_purchase
from crm.models import AuditEvent, Customer, CustomerTag, Interaction


class MergeRefused(Exception):
    """The customers cannot be merged as asked (the same one twice, an erased or vanished one)."""


# Profile fields a merge fills on the kept customer when it has none and a duplicate has one.
MERGE_FILLED_FIELDS = ("name", "email", "phone", "company", "country", "city")


def merge_customers(*, user, keep: Customer, duplicates) -> dict:
    """Merge duplicate customers into ``keep`` (managers and admins); returns what moved: {label: rows}.

    In one transaction: every interaction and suggestion feedback of the duplicates moves to the
    kept customer (feedback is one current status per suggestion: where both have one, the most
    recent stays), as does any other row that refers to them; their segment, forecast,
    suggestion and prospect rows of past runs are dropped (they describe a customer that no
    longer exists; the next retrain scores the merged history). The kept customer's empty
    profile fields are filled from the duplicates, the earliest sign-up date and an owner are
    kept, an objection to profiling by either stands, and each duplicate's profile is kept in
    its ``attributes["merged_customers"]`` (nothing typed is lost). The duplicates' rows are
    then deleted rather than kept as tombstones: a tombstone would hold the same personal data
    twice and show in every list, count, export and training frame unless each learned to skip
    it. One audit event names the ids and counts. Raises :class:`MergeRefused`, NotAllowed.
    """
    check_manager(user, "only managers can merge customers")
    ids = sorted({c.pk for c in duplicates} - {keep.pk})
    if not ids:
        raise MergeRefused("choose at least one other customer to merge into the one you keep")
    with transaction.atomic():
        rows = Customer.objects.select_for_update().in_bulk([keep.pk, *ids])
        if len(rows) != len(ids) + 1:
            raise MergeRefused("one of these customers no longer exists; reload the page")
        if any(c.erased_at for c in rows.values()):
            raise MergeRefused("an erased customer cannot be merged")
        kept, others = rows[keep.pk], [rows[pk] for pk in ids]
        moved = {"interactions": Interaction.objects.filter(customer_id__in=ids).update(customer_id=kept.pk)}

        # What other apps wrote about the customers (ml: feedback moves, insights of past runs
        # are dropped) is theirs to carry: crm.hooks.
        handled = {Interaction, CustomerTag}
        # Tags: the kept customer gets the union (a tag both carry stays once: the unique pair); of a tag
        # several duplicates carry, the earliest row moves.
        kept_tags = set(CustomerTag.objects.filter(customer_id=kept.pk).values_list("tag_id", flat=True))
        earliest = {}
        for tag_id, pk in CustomerTag.objects.filter(customer_id__in=ids).order_by("added_at", "id").values_list(
                "tag_id", "pk"):
            earliest.setdefault(tag_id, pk)
        moving = [pk for tag_id, pk in earliest.items() if tag_id not in kept_tags]
        CustomerTag.objects.filter(customer_id__in=ids).exclude(pk__in=moving).delete()
        moved["tags"] = CustomerTag.objects.filter(pk__in=moving).update(customer_id=kept.pk)
        for data in hooks.customer_data():
            moved.update(data.merge(kept.pk, ids))
            handled.update(data.models)
        # Anything else that refers to a customer (a table added later) moves too, never cascades away.
        for relation in Customer._meta.get_fields(include_hidden=True):  # hidden: related_name="+" too
            if relation.one_to_many and relation.auto_created and relation.related_model not in handled:
                name = relation.field.name
                moved[str(relation.related_model._meta.verbose_name_plural)] = (
                    relation.related_model._base_manager.filter(**{f"{name}_id__in": ids}).update(**{name: kept}))

        filled = _merge_profile(kept, others)
        Customer.objects.filter(pk__in=ids).delete()
        refresh_last_purchase([kept.pk])
        counts = ", ".join(f"{n} {label}" for label, n in moved.items() if n)
        audit.record(AuditEvent.Action.MERGE, user=user, object_type="customer", object_id=kept.pk,
                     customer_id=kept.pk,
                     summary=f"customers {', '.join(map(str, ids))} merged into customer {kept.pk}: "
                             f"{counts or 'nothing to move'}; fields filled: {', '.join(filled) or 'none'}")
    keep.refresh_from_db()
    return moved


def _merge_profile(kept: Customer, others: list) -> list[str]:
    """Fill the kept customer's profile from the duplicates (see merge_customers); the names of the fields filled."""
    filled = []
    for name in MERGE_FILLED_FIELDS:
        if not getattr(kept, name):
            value = next((getattr(o, name) for o in others if getattr(o, name)), "")
            if value:
                setattr(kept, name, value)
                filled.append(name)
    dates = [d for d in [kept.signup_date, *(o.signup_date for o in others)] if d]
    if dates and kept.signup_date != min(dates):
        kept.signup_date = min(dates)
        filled.append("signup_date")
    if kept.owner_id is None:
        kept.owner_id = next((o.owner_id for o in others if o.owner_id), None)
        if kept.owner_id:
            filled.append("owner")
    if not kept.no_profiling and any(o.no_profiling for o in others):
        kept.no_profiling = True
        filled.append("no_profiling")
    attributes = {}
    for other in others:
        attributes.update(other.attributes or {})
    attributes.update(kept.attributes or {})
    merged = list((kept.attributes or {}).get("merged_customers") or [])
    now = timezone.now().isoformat()
    for other in others:
        merged.extend((other.attributes or {}).get("merged_customers") or [])
        merged.append({"id": other.pk, "external_id": other.external_id,
                       **{name: getattr(other, name) for name in MERGE_FILLED_FIELDS},
                       "signup_date": other.signup_date.isoformat() if other.signup_date else None,
                       "owner": other.owner.get_username() if other.owner else None, "merged_at": now})
    attributes["merged_customers"] = merged
    kept.attributes = attributes
    kept.save()
    return filled
