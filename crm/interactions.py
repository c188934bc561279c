"""Writes of interactions: logging one (pages, API), changing or deleting one, and the bulk
upsert of the API's bulk door; and the customers' last purchase they keep current."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from crm import audit, clock
from crm.access import check_interaction_editable, check_visible, visible_customers
from crm.imports.rows import INTERACTIONS
from crm.imports.values import RowError
from crm.models import AuditEvent, Customer, Interaction, Product
from crm.records import full_save


def refresh_last_purchase(customer_ids=None) -> None:
    """Recompute ``Customer.last_purchase_at`` from the stored purchases.

    ``customer_ids``: only these customers (a correlated subquery each: meant for a few);
    None: every customer, from one grouped scan of the purchases joined back in a single
    UPDATE (a correlated subquery per customer takes minutes at 100,000 customers).
    Called after imports and when a purchase is logged or erased.
    """
    customers, interactions = Customer._meta.db_table, Interaction._meta.db_table
    with connection.cursor() as cursor:
        if customer_ids is None:
            cursor.execute(
                f"UPDATE {customers} SET last_purchase_at = t.last FROM (SELECT customer_id, MAX(occurred_at) AS last "
                f"FROM {interactions} WHERE type = 'purchase' GROUP BY customer_id) t "
                f"WHERE t.customer_id = {customers}.id AND ({customers}.last_purchase_at IS NULL "
                f"OR {customers}.last_purchase_at <> t.last)")
            return
        sql = (f"UPDATE {customers} SET last_purchase_at = (SELECT MAX(i.occurred_at) FROM {interactions} i "
               f"WHERE i.customer_id = {customers}.id AND i.type = 'purchase')")
        ids = sorted(set(customer_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            cursor.execute(sql + f" WHERE id IN ({', '.join(['%s'] * len(chunk))})", chunk)


def log_interaction(*, user, customer: Customer, type: str, occurred_at=None, notes: str = "", channel: str = "",
                    product: Product | None = None, quantity: int = 1, amount=None, order_ref: str = "",
                    external_id: str = "") -> Interaction:
    """Record a call, e-mail, meeting, note (or any interaction) on a customer the user may see."""

    check_visible(user, customer, "you cannot log interactions on this customer")
    occurred_at = occurred_at or timezone.now()
    _check_not_future(occurred_at)
    with transaction.atomic():
        interaction = Interaction(
            external_id=external_id or f"web-{uuid.uuid4().hex}", customer=customer, type=type,
            occurred_at=occurred_at, notes=notes, channel=channel, product=product,
            quantity=quantity, amount=amount, order_ref=order_ref, created_by=user)
        interaction.full_clean()
        interaction.save()
        if type == Interaction.Type.PURCHASE:
            refresh_last_purchase([customer.pk])
        _audit_interaction(AuditEvent.Action.CREATE, user, interaction, f"type {interaction.type}")
    return interaction


def _audit_interaction(action, user, interaction, what=""):
    audit.record(action, user=user, object_type="interaction", object_id=interaction.pk,
                 customer_id=interaction.customer_id,
                 summary=f"interaction {interaction.pk} of customer {interaction.customer_id} {action}d"
                         + (f": {what}" if what else ""))


def _check_not_future(occurred_at) -> None:
    """Refuse a future-dated interaction (crm.clock) as a validation error of ``occurred_at``."""
    reason = clock.future_reason(occurred_at)
    if reason:
        raise ValidationError({"occurred_at": reason})


def update_interaction(*, user, interaction: Interaction, **fields) -> Interaction:
    """Change an interaction (managers: any visible one; reps: the ones they logged). A new
    ``occurred_at`` in the future is refused (crm.clock), like at every door that logs one."""
    check_interaction_editable(user, interaction)
    if fields.get("occurred_at") is not None:
        _check_not_future(fields["occurred_at"])
    with transaction.atomic():
        changed = audit.changed_fields(interaction, fields)
        full_save(interaction, fields)
        refresh_last_purchase([interaction.customer_id])
        _audit_interaction(AuditEvent.Action.UPDATE, user, interaction,
                           f"fields {', '.join(changed)}" if changed else "no field changed")
    return interaction


def delete_interaction(*, user, interaction: Interaction) -> None:
    """Delete an interaction (managers: any visible one; reps: the ones they logged), audited."""
    check_interaction_editable(user, interaction)
    with transaction.atomic():
        customer_id, pk = interaction.customer_id, interaction.pk
        interaction.delete()
        refresh_last_purchase([customer_id])
        interaction.pk = pk
        _audit_interaction(AuditEvent.Action.DELETE, user, interaction)


# Items accepted by one bulk request: large enough for a day's sync from a shop system, small
# enough that the request (validation, one transaction) stays within a few seconds.
MAX_BULK_ITEMS = 10_000


BULK_FIELDS = ("customer_external_id", "type", "occurred_at", "product_sku", "quantity", "amount", "order_ref",
               "external_id", "channel", "notes")


# Keys per IN (...) lookup: well under SQLite's bound-parameter limit.
LOOKUP_CHUNK = 900


@dataclass
class BulkResult:
    created: int
    updated: int
    unchanged: int
    errors: list  # [{"index", "field", "message"}], in index order


def _bulk_record(item) -> dict:
    """One API item -> the CSV record crm.importing parses (every value a string)."""
    if not isinstance(item, dict):
        raise RowError("item is not an object")
    unknown = sorted(set(item) - set(BULK_FIELDS) - {"attributes"})
    if unknown:
        raise RowError(f"{unknown[0]} is not a field of an interaction")
    record = {}
    for name in BULK_FIELDS:
        value = item.get(name)
        if value is None:
            value = ""
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise RowError(f"{name} must be a string or a number")
        value = str(value)
        if "\x00" in value:
            raise RowError(f"{name} contains a NUL character")
        record[name] = value
    return record


def _bulk_attributes(item: dict) -> dict:
    attributes = item.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise RowError("attributes must be an object")
    if "\\u0000" in _json_text(attributes):
        raise RowError("attributes contains a NUL character")
    return attributes


def _json_text(value) -> str:

    return json.dumps(value, sort_keys=True)


def in_chunks(queryset_for, keys):
    """The rows of ``queryset_for(part)`` over ``keys`` in sorted parts of LOOKUP_CHUNK (one
    IN (...) each, under SQLite's parameter limit; in key order, so two requests locking rows
    with it lock them in the same order)."""
    keys = sorted(keys)
    for start in range(0, len(keys), LOOKUP_CHUNK):
        yield from queryset_for(keys[start:start + LOOKUP_CHUNK])


def upsert_interactions(*, user, items: list) -> BulkResult:
    """Create or update up to MAX_BULK_ITEMS interactions keyed on ``external_id`` (the API's bulk door).

    ``items``: dicts with the interactions.csv columns (contract section 1) and an optional
    ``attributes`` object. Each item is validated like an import row (crm.importing); an item
    without ``external_id`` gets the import's content key, so posting the same items again
    changes nothing. Bad items (invalid values, a customer the user cannot see, an unknown
    product, a key repeated in the request or owned by an interaction the user cannot see)
    come back with their index and reason; the good ones are written in one transaction with
    bulk INSERT ... ON CONFLICT UPDATE. Unchanged items are not written.
    """

    if len(items) > MAX_BULK_ITEMS:
        raise ValueError(f"at most {MAX_BULK_ITEMS} items per request")
    tz = timezone.get_default_timezone()
    errors, rows, first_of = [], {}, {}

    def reject(index, message, field=None):
        if field is None:
            head = message.split(" ", 1)[0]
            field = head if head in BULK_FIELDS or head == "attributes" else None
        errors.append({"index": index, "field": field, "message": message})

    for index, item in enumerate(items):
        try:
            row = INTERACTIONS.parse(_bulk_record(item), (), tz)
            attributes = _bulk_attributes(item)
        except RowError as exc:
            reject(index, str(exc))
            continue
        if row[0] in first_of:
            reject(index, f"external_id {row[0]!r} is already used by item {first_of[row[0]]} of this request",
                   "external_id")
            continue
        first_of[row[0]] = index
        rows[index] = (row, attributes)

    customers = dict(in_chunks(lambda keys: visible_customers(user).filter(external_id__in=keys).values_list(
        "external_id", "id"), {row[1] for row, _ in rows.values()}))
    products = dict(in_chunks(lambda keys: Product.objects.filter(sku__in=keys).values_list("sku", "id"),
                               {row[4] for row, _ in rows.values() if row[4]}))
    stored_columns = ("external_id", "customer_id", "type", "occurred_at", "product_id", "quantity", "amount",
                      "order_ref", "channel", "notes", "attributes")
    stored = {r[0]: r for r in in_chunks(lambda keys: Interaction.objects.filter(external_id__in=keys).values_list(
        *stored_columns), first_of)}
    visible_owners = set(in_chunks(lambda ids: visible_customers(user).filter(pk__in=ids).values_list(
        "id", flat=True), {r[1] for r in stored.values()}))

    write, created, unchanged, touched = [], 0, 0, set()
    for index, (row, attributes) in sorted(rows.items()):
        external_id, customer_key, kind, occurred_at, product_key, quantity, amount, order_ref, channel, notes, _ = row
        if customer_key not in customers:
            reject(index, f"unknown customer {customer_key!r}: no customer with that external_id that you can see",
                   "customer_external_id")
            continue
        if product_key and product_key not in products:
            reject(index, f"unknown product {product_key!r}: no product with that sku", "product_sku")
            continue
        values = (external_id, customers[customer_key], kind, occurred_at, products.get(product_key), quantity,
                  None if amount is None else Decimal(amount), order_ref, channel, notes, attributes)
        previous = stored.get(external_id)
        if previous is not None:
            if previous[1] not in visible_owners:
                reject(index, f"external_id {external_id!r} belongs to an interaction you cannot see", "external_id")
                continue
            if previous == values:
                unchanged += 1
                continue
            touched.add(previous[1])
        else:
            created += 1
        touched.add(values[1])
        write.append(values)
    with transaction.atomic():
        _upsert_interaction_rows(stored_columns, write, user)
        if touched:
            refresh_last_purchase(touched)
        # One event per request, with counts: a 10,000-item batch is one use case, not 10,000.
        audit.record(AuditEvent.Action.BULK_UPSERT, user=user, object_type="interaction",
                     summary=f"{len(items)} items: {created} created, {len(write) - created} updated, "
                             f"{unchanged} unchanged, {len(errors)} rejected, {len(touched)} customers touched")
    errors.sort(key=lambda e: e["index"])
    return BulkResult(created=created, updated=len(write) - created, unchanged=unchanged, errors=errors)


def _upsert_interaction_rows(columns: tuple, rows: list, user) -> None:
    """INSERT ... ON CONFLICT (external_id) DO UPDATE with executemany: one statement text, values
    adapted once per cell (bulk_create's per-row model instances cost more than the database work)."""
    if not rows:
        return
    ops = connection.ops
    attributes_field = Interaction._meta.get_field("attributes")
    now = ops.adapt_datetimefield_value(timezone.now())
    table = Interaction._meta.db_table
    names = [*columns, "created_by_id", "created_at"]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    sql = (f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
           f"ON CONFLICT (external_id) DO UPDATE SET {updates}")
    params = [(external_id, customer_id, kind, ops.adapt_datetimefield_value(occurred_at), product_id, quantity,
               ops.adapt_decimalfield_value(amount, 14, 2), order_ref, channel, notes,
               attributes_field.get_db_prep_save(attributes, connection), user.pk, now)
              for (external_id, customer_id, kind, occurred_at, product_id, quantity, amount, order_ref, channel,
                   notes, attributes) in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
