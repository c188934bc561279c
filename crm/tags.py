"""Customer tags and the managers' bulk actions on the customer list: assign an owner, add a
tag, remove a tag.

Tag names are unique whatever their case ("VIP" is "vip"): a name given again finds the tag
first written, and keeps its spelling. A bulk action re-checks the manager role and the
row-level rule (crm.access) for every id, changes all the customers in one transaction or
none, and records one audit event per changed customer (one INSERT for all of them).
"""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from crm import audit, limits
from crm.access import NotAllowed, check_manager, sees_all_customers, visible_customers
from crm.models import AuditEvent, Customer, CustomerTag, Tag

# One page of the list is at most 100 rows; a bulk POST naming more ids than a few pages is not
# one made from the page.
MAX_BULK_IDS = 500


def clean_names(names) -> list[str]:
    """Tag names as given (a list, or one comma-separated string), stripped, without empty ones
    and without repeats whatever their case; ValidationError for a name over the length limit."""
    if isinstance(names, str):
        names = names.split(",")
    out, seen = [], set()
    for raw in names:
        name = " ".join(str(raw).split())
        if not name or name.lower() in seen:
            continue
        if len(name) > limits.TAG_NAME:
            raise ValidationError(f"A tag has at most {limits.TAG_NAME} characters: {name[:20]}… is longer.")
        seen.add(name.lower())
        out.append(name)
    return out


def tags_named(names: list[str]) -> list[Tag]:
    """The tags of these (clean) names, created where missing, in the names' order."""
    if not names:
        return []
    wanted = {n.lower(): n for n in names}

    def existing():
        # By exact name too: SQLite's LOWER() folds ASCII only, so "Ñandú" is not found as "ñandú" there.
        rows = Tag.objects.annotate(lower=Lower("name")).filter(Q(lower__in=list(wanted)) | Q(name__in=names))
        return {t.name.lower(): t for t in rows}

    found = existing()
    missing = [Tag(name=n) for key, n in wanted.items() if key not in found]
    if missing:
        try:
            with transaction.atomic():
                Tag.objects.bulk_create(missing)
        except IntegrityError:  # another request created one of them meanwhile: use theirs
            pass
        found = existing()
    return [found[n.lower()] for n in names]


def tag_names(customer: Customer) -> list[str]:
    return [t.name for t in customer.tags.order_by(Lower("name"))]


def set_customer_tags(*, user, customer: Customer, names) -> bool:
    """Make the customer's tags exactly ``names`` (called inside the create / update service's
    transaction, after its access checks). Whether anything changed."""
    tags = tags_named(clean_names(names))
    current = set(CustomerTag.objects.filter(customer=customer).values_list("tag_id", flat=True))
    wanted = {t.pk for t in tags}
    if current == wanted:
        return False
    CustomerTag.objects.filter(customer=customer, tag_id__in=current - wanted).delete()
    now = timezone.now()
    CustomerTag.objects.bulk_create([CustomerTag(customer=customer, tag_id=pk, added_by=user if user.is_authenticated
                                                 else None, added_at=now) for pk in wanted - current])
    return True


# --- bulk actions of the customer list (managers) ------------------------------------------------

def _checked_customers(user, ids) -> list[int]:
    """The ids, each re-checked: the user is a manager (or admin) and may see every one of them."""
    check_manager(user, "only managers can change many customers at once")
    ids = sorted({int(i) for i in ids})
    if not ids:
        raise ValidationError("Select at least one customer.")
    if len(ids) > MAX_BULK_IDS:
        raise ValidationError(f"Select at most {MAX_BULK_IDS} customers at once.")
    visible = set(visible_customers(user).filter(pk__in=ids).values_list("pk", flat=True))
    if len(visible) != len(ids):
        raise NotAllowed(f"{len(ids) - len(visible)} of the selected customers are not yours to change "
                         "(or no longer exist): nothing was changed")
    return ids


def _record(user, ids, summary):
    now = timezone.now()
    audit.record_many(AuditEvent.Action.UPDATE, user=user, object_type="customer", at=now,
                      events=[(pk, pk, f"customer {pk} updated: {summary}") for pk in ids])


def bulk_assign_owner(*, user, ids, owner) -> int:
    """Give the customers ``ids`` to ``owner`` (an active user with a CRM role: the caller picks
    them from crm.selectors.assignable_owners). Returns the number of customers whose owner changed."""
    ids = _checked_customers(user, ids)
    if owner is None or not sees_all_customers(user):
        raise NotAllowed("choose an owner")
    with transaction.atomic():
        changed = list(Customer.objects.select_for_update().filter(pk__in=ids).exclude(owner=owner)
                       .values_list("pk", flat=True))
        Customer.objects.filter(pk__in=changed).update(owner=owner, updated_at=timezone.now())
        _record(user, changed, "fields owner (bulk)")
    return len(changed)


def bulk_add_tag(*, user, ids, name: str) -> tuple[Tag, int]:
    """Put the tag ``name`` (created if new) on the customers ``ids``: (the tag, customers newly tagged)."""
    names = clean_names([name])
    if not names:
        raise ValidationError("Name the tag.")
    ids = _checked_customers(user, ids)
    with transaction.atomic():
        tag = tags_named(names)[0]
        have = set(CustomerTag.objects.filter(tag=tag, customer_id__in=ids).values_list("customer_id", flat=True))
        new = [pk for pk in ids if pk not in have]
        now = timezone.now()
        CustomerTag.objects.bulk_create([CustomerTag(customer_id=pk, tag=tag, added_by=user, added_at=now)
                                         for pk in new], ignore_conflicts=True)
        _record(user, new, "tags (bulk: tag added)")
    return tag, len(new)


def bulk_remove_tag(*, user, ids, name: str) -> tuple[Tag | None, int]:
    """Take the tag ``name`` off the customers ``ids``: (the tag or None if no such tag, customers untagged)."""
    names = clean_names([name])
    if not names:
        raise ValidationError("Name the tag.")
    ids = _checked_customers(user, ids)
    tag = Tag.objects.annotate(lower=Lower("name")).filter(lower=names[0].lower()).first()
    if tag is None:
        return None, 0
    with transaction.atomic():
        links = CustomerTag.objects.filter(tag=tag, customer_id__in=ids)
        had = sorted(links.values_list("customer_id", flat=True))
        links.delete()
        _record(user, had, "tags (bulk: tag removed)")
    return tag, len(had)
