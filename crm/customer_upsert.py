"""The bulk upsert of customers (the API's POST /customers/bulk/): many customers keyed on
``external_id``, each created or changed in only the fields it gives, under the single-customer
rules (crm.access, as crm.records applies them) and with one audit event per customer written,
as the single create and update record them.

Each item is checked on its own: a bad one comes back with its index, field and reason and the
good ones are written, all of them in one transaction (a request never leaves half its good
items written). The model's own field rules (lengths, e-mail, date) are the checks.
"""
from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm import audit, limits
from crm.access import NotAllowed, check_owner, visible_customers
from crm.interactions import LOOKUP_CHUNK, MAX_BULK_ITEMS, BulkResult, in_chunks
from crm.models import AuditEvent, Customer, CustomerTag
from crm.tags import clean_names, tags_named

TEXT_FIELDS = ("external_id", "name", "email", "phone", "company", "country", "city")
# What an item may give: the customer API's writable fields, by the same names.
BULK_CUSTOMER_FIELDS = (*TEXT_FIELDS, "signup_date", "owner", "attributes", "no_profiling", "tags")

# Rows per INSERT / UPDATE statement: a few hundred keeps each statement small on every database.
_WRITE_BATCH = 500


class UpsertConflict(Exception):
    """Another request wrote one of these customers at the same time (nothing was written)."""


# --- one item: JSON values -> model values, or the reasons it is refused ----------------------------

def _text(name):
    field = Customer._meta.get_field(name)

    def clean(value):
        if not isinstance(value, str):
            raise ValidationError(f"{name} must be a string")
        if "\x00" in value:
            raise ValidationError(f"{name} contains a NUL character")
        return field.clean(value.strip(), None)  # the model's rules: length, blank, e-mail
    return clean


def _signup_date(value):
    if value is not None and not isinstance(value, str):
        raise ValidationError("signup_date must be a date as YYYY-MM-DD, or null")
    return Customer._meta.get_field("signup_date").clean(value or None, None)


def _owner(value):
    """The owner's username (looked up with the others of the request), or None: unassigned."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ValidationError("owner must be a username, or null for an unassigned account")
    return value.strip()


def _attributes(value):
    if not isinstance(value, dict):
        raise ValidationError("attributes must be a JSON object")
    if "\\u0000" in json.dumps(value):
        raise ValidationError("attributes contains a NUL character")
    return value


def _no_profiling(value):
    if not isinstance(value, bool):
        raise ValidationError("no_profiling must be true or false")
    return value


def _tags(value):
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("tags must be a list of tag names")
    if len(value) > limits.CUSTOMER_TAGS:
        raise ValidationError(f"a customer has at most {limits.CUSTOMER_TAGS} tags")
    if any("\x00" in name for name in value):
        raise ValidationError("tags contains a NUL character")
    return clean_names(value)


_CLEAN = {**{name: _text(name) for name in TEXT_FIELDS}, "signup_date": _signup_date, "owner": _owner,
          "attributes": _attributes, "no_profiling": _no_profiling, "tags": _tags}


def clean_item(item) -> tuple[dict, list[tuple[str | None, str]]]:
    """(the item's values by field, [(field, reason)] of everything wrong with it)."""
    if not isinstance(item, dict):
        return {}, [(None, "item is not an object")]
    problems = [(name, f"{name} is not a field of a customer that can be written")
                for name in sorted(set(item) - set(BULK_CUSTOMER_FIELDS), key=str)]
    if "external_id" not in item:
        problems.append(("external_id", "external_id is required: it is the customer's key"))
    values = {}
    for name in BULK_CUSTOMER_FIELDS:
        if name in item:
            try:
                values[name] = _CLEAN[name](item[name])
            except ValidationError as exc:
                problems.extend((name, message) for message in exc.messages)
    return values, problems


# --- the request ---------------------------------------------------------------------------------------

def upsert_customers(*, user, items: list) -> BulkResult:
    """Create or update up to MAX_BULK_ITEMS customers keyed on ``external_id``.

    ``items``: dicts of the customer API's writable fields (BULK_CUSTOMER_FIELDS; ``owner`` a
    username, ``tags`` a list of names). A new ``external_id`` creates a customer, a known one
    changes only the fields the item gives. Refused with their index: invalid values, an unknown
    owner, a key repeated in the request, a customer the user cannot see (another rep's), an owner
    the user may not give (a sales rep: only themselves or nobody, crm.access.check_owner).
    Unchanged customers are not written. The rest is written in one transaction, with one audit
    event per customer created or changed and one for the request with its counts.
    """
    if len(items) > MAX_BULK_ITEMS:
        raise ValueError(f"at most {MAX_BULK_ITEMS} items per request")
    errors, rows, first_of = [], {}, {}

    def reject(index, field, message):
        errors.append({"index": index, "field": field, "message": message})

    for index, item in enumerate(items):
        values, problems = clean_item(item)
        for field, message in problems:
            reject(index, field, message)
        if problems:
            continue
        key = values["external_id"]
        if key in first_of:
            reject(index, "external_id", f"external_id {key!r} is already used by item {first_of[key]} of this request")
            continue
        first_of[key] = index
        rows[index] = values

    owners = {u.get_username(): u for u in in_chunks(lambda names: get_user_model().objects.filter(
        username__in=names), {v["owner"] for v in rows.values() if v.get("owner")})}
    try:
        with transaction.atomic():
            result = _write(user, rows, owners, reject)
            audit.record(AuditEvent.Action.BULK_UPSERT, user=user, object_type="customer",
                         summary=f"{len(items)} items: {result.created} created, {result.updated} updated, "
                                 f"{result.unchanged} unchanged, {len({e['index'] for e in errors})} rejected")
    except IntegrityError:
        # A customer with one of the new keys was created by another request since this one looked.
        raise UpsertConflict("another request wrote some of these customers at the same time; nothing was "
                             "written: send the request again") from None
    errors.sort(key=lambda e: e["index"])  # stable: an item's own errors keep their order
    result.errors = errors
    return result


def _write(user, rows: dict, owners: dict, reject) -> BulkResult:
    """Check the rows against the stored customers (locked until the transaction ends) and write them."""
    stored = {c.external_id: c for c in in_chunks(
        lambda keys: Customer.objects.select_for_update().filter(external_id__in=keys),
        {v["external_id"] for v in rows.values()})}
    visible = set(in_chunks(lambda ids: visible_customers(user).filter(pk__in=ids).values_list("pk", flat=True),
                             {c.pk for c in stored.values()}))
    tagged = [stored[v["external_id"]].pk for v in rows.values() if "tags" in v and v["external_id"] in stored]
    links = list(in_chunks(lambda ids: CustomerTag.objects.filter(customer_id__in=ids).values_list(
        "pk", "customer_id", "tag__name"), tagged))
    current_tags = {}
    for _, customer_id, name in links:
        current_tags.setdefault(customer_id, set()).add(name.lower())

    new, changed, unchanged = [], [], 0  # new: (customer, tags); changed: (customer, fields, tags)
    for index, values in sorted(rows.items()):
        fields = {k: v for k, v in values.items() if k not in ("external_id", "tags", "owner")}
        owner = owners.get(values.get("owner"))
        if "owner" in values:
            if values["owner"] is not None and owner is None:
                reject(index, "owner", f"unknown user {values['owner']!r}: no user with that username")
                continue
            fields["owner_id"] = None if owner is None else owner.pk  # compared and written by id: no query
        tags = values.get("tags")
        customer = stored.get(values["external_id"])
        try:
            if customer is None:
                check_owner(user, owner)
                new.append((Customer(external_id=values["external_id"], **fields), tags))
                continue
            if customer.pk not in visible:
                reject(index, "external_id", f"external_id {values['external_id']!r} belongs to a customer you "
                                             "cannot see")
                continue
            if "owner_id" in fields and fields["owner_id"] != customer.owner_id:
                check_owner(user, owner)
        except NotAllowed as exc:
            reject(index, "owner", str(exc))
            continue
        names = audit.changed_fields(customer, fields)
        if tags is not None and {t.lower() for t in tags} != current_tags.get(customer.pk, set()):
            names.append("tags")
        else:
            tags = None
        if not names:
            unchanged += 1
            continue
        for name, value in fields.items():
            setattr(customer, name, value)
        changed.append((customer, sorted("owner" if n == "owner_id" else n for n in names), tags))

    now = timezone.now()
    Customer.objects.bulk_create([c for c, _ in new], batch_size=_WRITE_BATCH)
    columns = sorted({n for _, names, _ in changed for n in names if n != "tags"})
    # The changed rows, locked above, written as INSERT ... ON CONFLICT (external_id) UPDATE of their
    # changed columns: one statement per batch (bulk_update's CASE per row and column is ~10x slower).
    Customer.objects.bulk_create([c for c, _, _ in changed], batch_size=_WRITE_BATCH, update_conflicts=True,
                                 unique_fields=["external_id"], update_fields=[*columns, "updated_at"])
    _set_tags(user, [(c, t) for c, t in new if t] + [(c, t) for c, _, t in changed if t is not None],
              links, now)
    audit.record_many(AuditEvent.Action.CREATE, user=user, object_type="customer", at=now,
                      events=[(c.pk, c.pk, f"customer {c.pk} created (bulk)") for c, _ in new])
    audit.record_many(AuditEvent.Action.UPDATE, user=user, object_type="customer", at=now,
                      events=[(c.pk, c.pk, f"customer {c.pk} updated: fields {', '.join(names)} (bulk)")
                              for c, names, _ in changed])
    return BulkResult(created=len(new), updated=len(changed), unchanged=unchanged, errors=[])


def _set_tags(user, wanted: list, links: list, now) -> None:
    """Make each customer's tags exactly its names (``wanted``: (customer, names)); ``links``: the
    stored (link id, customer id, tag name) of the changed customers."""
    if not wanted:
        return
    by_name = {t.name.lower(): t for t in tags_named(clean_names([n for _, names in wanted for n in names]))}
    keep = {c.pk: {n.lower() for n in names} for c, names in wanted}
    stale = [pk for pk, customer_id, name in links if customer_id in keep and name.lower() not in keep[customer_id]]
    for start in range(0, len(stale), LOOKUP_CHUNK):
        CustomerTag.objects.filter(pk__in=stale[start:start + LOOKUP_CHUNK]).delete()
    have = {(customer_id, name.lower()) for _, customer_id, name in links}
    added_by = user.pk if user.is_authenticated else None
    CustomerTag.objects.bulk_create([
        CustomerTag(customer_id=pk, tag_id=by_name[name].pk, added_by_id=added_by, added_at=now)
        for pk, names in keep.items() for name in sorted(names) if (pk, name) not in have], batch_size=_WRITE_BATCH)
