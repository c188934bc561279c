"""Who may see and change what: the roles, the rep-sees-own rule, and the write checks.

The rule: a sales rep sees the customers they own and unassigned ones; managers and admins see
all; a user with no CRM role sees none. An API token made "own customers only" narrows it, for
the requests made with it, to the customers the user owns (:func:`limit_to_own_customers`). It is written here once, in its two forms side by side:
:func:`visibility` (a Q, for the ORM reads) and :func:`visibility_sql` (SQL text, for the
prepared reads of crm.sql). Pages, the API, the services and ml's reads all ask here.
"""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from crm import sql
from crm.models import ROLE_ADMIN, ROLE_MANAGER, ROLE_SALES_REP, Customer, FollowUp, Interaction


class NotAllowed(Exception):
    """The user may not do this to this customer (row-level rule)."""


# --- roles -------------------------------------------------------------------------------------

def user_roles(user) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_crm_roles", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            cached.add(ROLE_ADMIN)
        user._crm_roles = cached
    return cached


def limit_to_own_customers(user) -> None:
    """From now on this user object (one request's, made by API token authentication) sees only
    the customers it owns, whatever its role: the rule of an "own customers only" token."""
    user._crm_own_customers_only = True


def own_customers_only(user) -> bool:
    return getattr(user, "_crm_own_customers_only", False)


def sees_all_customers(user) -> bool:
    return not own_customers_only(user) and bool(user_roles(user) & {ROLE_MANAGER, ROLE_ADMIN})


def is_manager(user) -> bool:
    return bool(user_roles(user) & {ROLE_MANAGER, ROLE_ADMIN})


def is_staff_member(user) -> bool:
    """Any CRM role: sales rep, manager or admin."""
    return bool(user_roles(user) & {ROLE_SALES_REP, ROLE_MANAGER, ROLE_ADMIN})


# --- the rep-sees-own rule, as Q and as SQL ------------------------------------------------------

def visibility(user, prefix: str = "") -> Q | None:
    """The row-level rule as a condition on the customer reached through ``prefix`` (e.g.
    ``"customer__"`` from an insight row): Q() for managers and admins, own or unassigned for
    reps, own only under an own-customers-only token, None for users who may see no customer at all."""
    if not is_staff_member(user):
        return None
    if own_customers_only(user):
        return Q(**{f"{prefix}owner": user})
    if sees_all_customers(user):
        return Q()
    return Q(**{f"{prefix}owner": user}) | Q(**{f"{prefix}owner__isnull": True})


def visibility_sql(user, alias: str) -> tuple[str, list] | None:
    """:func:`visibility` as SQL on the customer table under ``alias``, for the prepared reads
    (crm.sql): ("", []) for managers and admins, own-or-unassigned for reps, own only under an
    own-customers-only token, None for no customer."""
    if not is_staff_member(user):
        return None
    owner = sql.column(Customer, "owner")
    if own_customers_only(user):
        return f"{alias}.{owner} = %s", [user.pk]
    if sees_all_customers(user):
        return "", []
    return f"({alias}.{owner} = %s OR {alias}.{owner} IS NULL)", [user.pk]


def visible_customers(user) -> QuerySet:
    """Customers this user may see: all for managers and admins; own and unassigned for reps."""
    rule = visibility(user)
    return Customer.objects.none() if rule is None else Customer.objects.filter(rule)


def visible_interactions(user) -> QuerySet:
    """Interactions of the customers this user may see."""
    interactions = Interaction.objects.all()
    if sees_all_customers(user):
        return interactions
    rule = visibility(user, "customer__")
    return interactions.none() if rule is None else interactions.filter(rule)


def visible_followups(user) -> QuerySet:
    """Follow-ups this user may see and act on: of customers they see (:func:`visibility`), and
    for a sales rep (or under an own-customers-only token) only the ones they own; managers and
    admins the team's."""
    rule = visibility(user, "customer__")
    if rule is None:
        return FollowUp.objects.none()
    if not is_manager(user) or own_customers_only(user):
        rule &= Q(owner=user)
    return FollowUp.objects.filter(rule)


def can_change_interaction(user, interaction: Interaction) -> bool:
    """Whether the user may edit or delete an interaction of a customer they see: managers and admins
    any; a sales rep the ones they logged (``created_by``). The pages show Edit where this holds; the
    services enforce it."""
    return is_manager(user) or (is_staff_member(user) and interaction.created_by_id == user.pk)


# --- the write checks the services make ----------------------------------------------------------

def check_owner(user, owner) -> None:
    """A sales rep may assign an account only to themselves or leave it unassigned."""
    if owner is not None and owner != user and not sees_all_customers(user):
        raise NotAllowed("a sales rep can assign an account only to themselves or leave it unassigned")


def check_visible(user, customer: Customer, message: str) -> None:
    if not visible_customers(user).filter(pk=customer.pk).exists():
        raise NotAllowed(message)


def check_manager(user, message: str) -> None:
    if not is_manager(user):
        raise NotAllowed(message)


def check_interaction_editable(user, interaction: Interaction) -> None:
    check_visible(user, interaction.customer, "you cannot change this customer's interactions")
    if not can_change_interaction(user, interaction):
        raise NotAllowed("a sales rep can change only the interactions they logged")


def check_followup_owner(user, owner, customer: Customer) -> None:
    """Who may own a follow-up: the acting user; for a manager any active user with a CRM role who
    can see the customer (a follow-up its owner could not open would be lost)."""
    if owner != user and (not is_manager(user) or own_customers_only(user)):
        raise NotAllowed("a sales rep can give follow-ups only to themselves; a manager reassigns them")
    if not owner.is_active or not is_staff_member(owner):
        raise ValidationError({"owner": f"{owner.get_username()} is not an active sales rep or manager"})
    if not visible_customers(owner).filter(pk=customer.pk).exists():
        raise ValidationError({"owner": f"{owner.get_username()} cannot see this customer (another rep owns it)"})
