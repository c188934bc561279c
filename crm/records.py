"""Writes of customers, products and sales reps, with their access checks
(crm.access) and audit events: one transaction per use case."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import ProtectedError

from crm import audit
from crm.access import check_manager, check_owner, check_visible
from crm.models import ROLE_SALES_REP, AuditEvent, Customer, Product
from crm.tags import clean_names, set_customer_tags


def ensure_sales_reps(usernames) -> list:
    """Create (if missing) users with the sales rep role; they own the demo's accounts."""

    group, _ = Group.objects.get_or_create(name=ROLE_SALES_REP)
    User = get_user_model()
    users = []
    for username in usernames:
        user, created = User.objects.get_or_create(username=username, defaults={"first_name": username.title()})
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        user.groups.add(group)
        users.append(user)
    return users


# --- REST API writes (issue 6): the same rules as the pages, one transaction per use case ----------

class InUse(Exception):
    """The object is still referred to (e.g. a product with interactions) and cannot be deleted."""


def full_save(instance, fields: dict):
    for name, value in fields.items():
        setattr(instance, name, value)
    instance.full_clean()
    instance.save()
    return instance


def _audit(action, user, object_type, instance, what, customer_id=None):
    """The audit event of a single-object change; ``what`` names fields, never their values."""
    audit.record(action, user=user, object_type=object_type, object_id=instance.pk, customer_id=customer_id,
                 summary=f"{object_type} {instance.pk} {action}d" + (f": {what}" if what else ""))


def create_customer(*, user, tags=None, **fields) -> Customer:
    """Create a customer; a sales rep may own it or leave it unassigned, not give it to another rep.
    ``tags``: tag names (crm.tags; new names create tags)."""
    check_owner(user, fields.get("owner"))
    names = clean_names(tags or [])
    with transaction.atomic():
        customer = full_save(Customer(), fields)
        set_customer_tags(user=user, customer=customer, names=names)
        _audit(AuditEvent.Action.CREATE, user, "customer", customer, "", customer.pk)
        return customer


def update_customer(*, user, customer: Customer, tags=None, **fields) -> Customer:
    """Change a customer the user may see; a sales rep cannot hand it to another rep.
    ``tags``: the customer's tag names from now on (None: unchanged)."""
    check_visible(user, customer, "you cannot change this customer")
    if "owner" in fields and fields["owner"] != customer.owner:
        check_owner(user, fields["owner"])
    names = None if tags is None else clean_names(tags)
    with transaction.atomic():
        changed = audit.changed_fields(customer, fields)
        full_save(customer, fields)
        if names is not None and set_customer_tags(user=user, customer=customer, names=names):
            changed = sorted([*changed, "tags"])
        _audit(AuditEvent.Action.UPDATE, user, "customer", customer,
               f"fields {', '.join(changed)}" if changed else "no field changed", customer.pk)
        return customer


def delete_customer(*, user, customer: Customer) -> None:
    """Erase a customer with their interactions and insights (managers and admins only)."""
    check_manager(user, "only managers can delete customers")
    with transaction.atomic():
        pk = customer.pk
        customer.delete()
        customer.pk = pk
        _audit(AuditEvent.Action.DELETE, user, "customer", customer, "with interactions and insights", pk)


def create_product(*, user, **fields) -> Product:
    check_manager(user, "only managers can add products")
    with transaction.atomic():
        product = full_save(Product(), fields)
        _audit(AuditEvent.Action.CREATE, user, "product", product, "")
        return product


def update_product(*, user, product: Product, **fields) -> Product:
    check_manager(user, "only managers can change products")
    with transaction.atomic():
        changed = audit.changed_fields(product, fields)
        full_save(product, fields)
        _audit(AuditEvent.Action.UPDATE, user, "product", product,
               f"fields {', '.join(changed)}" if changed else "no field changed")
        return product


def delete_product(*, user, product: Product) -> None:
    """Delete a product nobody bought or viewed; one with interactions is refused (:class:`InUse`)."""
    check_manager(user, "only managers can delete products")
    try:
        with transaction.atomic():
            pk = product.pk
            product.delete()
            product.pk = pk
            _audit(AuditEvent.Action.DELETE, user, "product", product, "")
    except ProtectedError:
        raise InUse(f"product {product.sku!r} has interactions; mark it inactive instead") from None
