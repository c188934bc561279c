"""Reads of the CRM domain, with the row-level rule of who sees which customers.

Pages and the API both read through here, so the rule "a sales rep sees the customers they
own and unassigned ones; managers and admins see all" holds at every door.
"""
from __future__ import annotations

import csv
import functools
import io
from datetime import date, datetime, time, timedelta
from itertools import islice

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Count, F, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import Lower
from django.utils import timezone

from crm import sql, tokens

# The roles and the rep-sees-own rule live in crm.access (re-exported here for the pages).
from crm.access import (  # noqa: F401
    can_change_interaction,
    is_manager,
    is_staff_member,
    sees_all_customers,
    user_roles,
    visibility_sql,
    visible_customers,
    visible_interactions,
)
from crm.imports import storage
from crm.models import (
    ROLE_ADMIN,
    ROLE_MANAGER,
    ROLE_SALES_REP,
    ApiToken,
    Customer,
    ImportFile,
    ImportRun,
    ImportSource,
    Interaction,
    Product,
    Tag,
)


@functools.cache
def _token_select():
    """The token's and its user's columns, and the query reading a token with its user and the
    user's group names (one row per group)."""
    user_model = get_user_model()
    select = sql.Select([("t", ApiToken, _TOKEN_FIELDS),
                         ("u", user_model, [f.name for f in user_model._meta.concrete_fields])])
    membership = user_model.groups.through
    query = (  # nosec B608 - identifiers come from model metadata; the key's hash is a parameter
        f"SELECT {select.sql()}, g.{sql.column(Group, 'name')} FROM {sql.table(ApiToken)} t "  # noqa: S608
        f"JOIN {sql.table(user_model)} u ON u.{sql.column(user_model, 'id')} = t.{sql.column(ApiToken, 'user')} "
        f"LEFT JOIN {sql.table(membership)} ug ON ug.{sql.column(membership, 'user')} = u.{sql.column(user_model, 'id')} "
        f"LEFT JOIN {sql.table(Group)} g ON g.{sql.column(Group, 'id')} = ug.{sql.column(membership, 'group')} "
        f"WHERE t.{sql.column(ApiToken, 'key_hash')} = %s")
    return select, query


# What authentication needs of a token: who, what it may do, whether it is still valid.
_TOKEN_FIELDS = ("id", "user", "scope", "own_customers_only", "expires_at", "last_used_at", "revoked_at")


def token_by_key(key: str) -> ApiToken | None:
    """The API token with key ``key`` (expired and revoked ones too: the caller says which
    refusal), with its user (active or not) and the user's CRM roles already read, so
    user_roles needs no further query; or None. One query for what authentication and the
    role check otherwise read in three."""
    user_model = get_user_model()
    select, query = _token_select()
    rows = sql.fetchall(query, [tokens.hash_key(key)])
    if not rows:
        return None
    values = select.convert(rows[0])
    token_fields = [ApiToken._meta.get_field(name) for name in _TOKEN_FIELDS]
    token = ApiToken.from_db(connection.alias, [f.attname for f in token_fields],
                             [values[f"t.{f.name}"] for f in token_fields])
    fields = user_model._meta.concrete_fields
    user = user_model.from_db(connection.alias, [f.attname for f in fields], [values[f"u.{f.name}"] for f in fields])
    roles = {row[-1] for row in rows if row[-1] is not None}
    if user.is_superuser:
        roles.add(ROLE_ADMIN)
    user._crm_roles = roles
    token.user = user
    return token


def api_tokens(user) -> QuerySet:
    """The user's API tokens, newest first (revoked and expired ones too, for the account page)."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def customer_timeline(customer, *, types=None, limit: int = 100) -> QuerySet:
    interactions = customer.interactions.select_related("product", "created_by").order_by("-occurred_at", "-id")
    if types:
        interactions = interactions.filter(type__in=types)
    return interactions[:limit]


PRODUCT_ORDERING = ("name", "sku")  # sku is unique: pages never overlap


def product_list(*, q: str = "", category: str = "", active: bool | None = None) -> QuerySet:
    products = Product.objects.all()
    if q:
        products = products.filter(Q(name__icontains=q) | Q(sku__iexact=q) | Q(description__icontains=q))
    if category:
        products = products.filter(category=category)
    if active is not None:
        products = products.filter(active=active)
    return products.order_by(*PRODUCT_ORDERING)


def categories() -> list[str]:
    return list(Product.objects.exclude(category="").values_list("category", flat=True).distinct()
                .order_by("category"))


# --- Pages for sales staff (home worklists, charts, products, imports) ----------------------

WORKLIST_SIZE = 5


def new_this_week(user, limit: int = WORKLIST_SIZE, *, today=None) -> list:
    """Visible customers who signed up (or, without a signup date, were added) in the last 7 days."""
    now = timezone.now()
    today = today or timezone.localdate()
    week_ago = today - timedelta(days=7)
    return list(visible_customers(user).filter(
        Q(signup_date__gt=week_ago, signup_date__lte=today)
        | Q(signup_date__isnull=True, created_at__gte=now - timedelta(days=7)))
        .select_related("owner").order_by(F("signup_date").desc(nulls_last=True), "-created_at")[:limit])


def revenue_between(user, start, end) -> float:
    """Purchase amounts minus refunds of the visible customers, ``start <= occurred_at < end``."""
    rows = dict(visible_interactions(user).filter(type__in=("purchase", "refund"), occurred_at__gte=start,
                                                  occurred_at__lt=end)
                .values_list("type").annotate(total=Sum("amount")).values_list("type", "total"))
    return float(rows.get("purchase") or 0) - float(rows.get("refund") or 0)


def revenue_by_month(user, months: int = 12, *, customer=None, product=None) -> list:
    """[(month start date, purchase amount, purchases)] for the last ``months`` months, oldest first.

    One query with a conditional sum per month over an indexed time range: truncating every
    row's timestamp to its month (TruncMonth) costs a function call per row, too slow for
    millions of interactions on SQLite.
    """
    today = timezone.localdate()
    starts = [date(today.year, today.month, 1)]
    for _ in range(months - 1):
        first = starts[0]
        starts.insert(0, date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1))
    bounds = [timezone.make_aware(datetime.combine(d, time.min)) for d in starts]
    last = starts[-1]
    bounds.append(timezone.make_aware(datetime.combine(
        date(last.year + (last.month == 12), last.month % 12 + 1, 1), time.min)))
    rows = visible_interactions(user).filter(type="purchase", occurred_at__gte=bounds[0], occurred_at__lt=bounds[-1])
    if customer is not None:
        rows = rows.filter(customer=customer)
    if product is not None:
        rows = rows.filter(product=product)
    aggregates = {}
    for i in range(months):
        window = Q(occurred_at__gte=bounds[i], occurred_at__lt=bounds[i + 1])
        aggregates[f"t{i}"] = Sum("amount", filter=window)
        aggregates[f"n{i}"] = Count("id", filter=window)
    totals = rows.aggregate(**aggregates)
    return [(starts[i], float(totals[f"t{i}"] or 0), totals[f"n{i}"]) for i in range(months)]


def tag_names() -> list[str]:
    """Every tag's name, alphabetically whatever the case (for the filter and the pickers)."""
    return list(Tag.objects.order_by(Lower("name")).values_list("name", flat=True))


def customer_owners(user):
    """Users who own at least one customer this user may see (for the owner filter)."""
    owner_ids = visible_customers(user).filter(owner__isnull=False).values("owner_id")
    return get_user_model().objects.filter(pk__in=owner_ids).order_by("username")


def product_sales_figures(product) -> dict:
    """Lifetime purchases of one product: orders, units, revenue, distinct buyers."""
    return Interaction.objects.filter(product=product, type="purchase").aggregate(
        orders=Count("id"), units=Sum("quantity"), revenue=Sum("amount"), buyers=Count("customer", distinct=True))


def import_history(limit: int = 20) -> QuerySet:
    return (ImportRun.objects.select_related("user")
            .prefetch_related(Prefetch("files", queryset=ImportFile.objects.order_by("id")))
            .order_by("-created_at", "-id")[:limit])


def import_sources() -> QuerySet:
    """The saved upload sources (their column mappings and date formats), by name."""

    return ImportSource.objects.order_by("name")


# --- REST API reads (issue 6) -----------------------------------------------------------------

INTERACTION_ORDERINGS = {"occurred_at": ("occurred_at", "id"), "-occurred_at": ("-occurred_at", "-id")}


def interaction_list(user, *, customer: int | None = None, customer_external_id: str = "", type: str = "",
                     product_sku: str = "", occurred_after=None, occurred_before=None,
                     ordering: str = "-occurred_at") -> QuerySet:
    """The interactions a user may see (those of their visible customers), filtered and sorted."""
    interactions = visible_interactions(user).select_related("customer", "product", "created_by")
    if customer:
        interactions = interactions.filter(customer_id=customer)
    if customer_external_id:
        interactions = interactions.filter(customer__external_id=customer_external_id)
    if type:
        interactions = interactions.filter(type=type)
    if product_sku:
        interactions = interactions.filter(product__sku=product_sku)
    if occurred_after:
        interactions = interactions.filter(occurred_at__gte=occurred_after)
    if occurred_before:
        interactions = interactions.filter(occurred_at__lt=occurred_before)
    return interactions.order_by(*INTERACTION_ORDERINGS.get(ordering, INTERACTION_ORDERINGS["-occurred_at"]))


def import_runs() -> QuerySet:
    return ImportRun.objects.select_related("user").prefetch_related("files").order_by("-created_at", "-id")


def import_report(import_file):
    """An imported file's rejected-rows report to download, as (binary file, name), or None
    (no rejected rows or warnings, or no longer kept: IMPORT_FILE_RETENTION_DAYS)."""
    return storage.open_report(import_file)


def rejected_rows(import_file, limit: int = 100) -> list[dict]:
    """The first ``limit`` rejected rows and rows with warnings of an imported file:
    [{"row", "outcome" ("rejected" or "warning"), "reason", "values": {column: cell}}]."""
    report = import_report(import_file)
    if report is None:
        return []
    binary, _name = report
    with io.TextIOWrapper(binary, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        # Reports written before warnings existed have no outcome column: every row was rejected.
        fixed = 3 if header[1:2] == ["outcome"] else 2
        out = []
        for cells in islice(reader, limit):
            cells = cells + [""] * max(0, fixed - len(cells))
            row, *head, reason = cells[:fixed]
            out.append({"row": int(row) if row.isdigit() else None, "outcome": head[0] if head else "rejected",
                        "reason": reason, "values": dict(zip(header[fixed:], cells[fixed:]))})
    return out


def assignable_owners(user, *, current=None) -> QuerySet:
    """Users this user may make a customer's owner: any active user with a CRM role for managers
    and admins; only themselves for a sales rep (who may also leave a customer unassigned).

    ``current``: the customer's present owner id, kept as a choice even if that user has since
    lost their role, so saving other fields does not force a new owner.
    """
    keep = Q(pk=current) if current is not None else Q(pk__in=[])
    users = get_user_model().objects.order_by("username")
    if sees_all_customers(user):
        staff = Q(is_active=True) & (Q(groups__name__in=(ROLE_SALES_REP, ROLE_MANAGER, ROLE_ADMIN))
                                     | Q(is_superuser=True))
        return users.filter(pk__in=get_user_model().objects.filter(staff | keep).values("pk"))
    if not is_staff_member(user):
        return users.none()
    return users.filter(Q(pk=user.pk) | keep)


def merge_preview(customers) -> dict:
    """{customer id: {"interactions", "purchases", "feedback"}} for the merge confirmation page (two queries)."""
    ids = [c.pk for c in customers]
    out = {pk: {"interactions": 0, "purchases": 0, "feedback": 0} for pk in ids}
    for pk, n, purchases in (Interaction.objects.filter(customer_id__in=ids).values("customer_id")
                             .annotate(n=Count("id"), p=Count("id", filter=Q(type="purchase")))
                             .values_list("customer_id", "n", "p")):
        out[pk].update(interactions=n, purchases=purchases)
    for pk, n in (Customer.objects.filter(pk__in=ids).annotate(n=Count("suggestion_feedback"))
                  .values_list("pk", "n")):
        out[pk]["feedback"] = n
    return out
