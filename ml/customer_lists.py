"""Customers with their published insights, as the pages and the API list them: filters,
orderings and bounded pages (from the indexes), worklists and charts of the home page.

The rows a user sees go through crm.selectors' row-level rule; the insight columns come from
the published runs (ml.insights.published_run_ids)."""
from __future__ import annotations

import math

from django.db.models import Case, Count, Exists, F, FilteredRelation, FloatField, OuterRef, Q, QuerySet, Sum, When

from crm import keyset
from crm.access import visibility, visible_customers
from crm.keyset import ListPage
from crm.models import Customer
from crm.selectors import WORKLIST_SIZE
from ml.insights import published_run_ids
from ml.models import CustomerSegment, Forecast
from ml.run_reports import forecast_total_range

# Churn-risk bands shown as filters and worklist labels: (key, label, low, high), high exclusive.
CHURN_BANDS = (
    ("low", "Low (< 30 %)", 0.0, 0.3),
    ("medium", "Medium (30–60 %)", 0.3, 0.6),
    ("high", "High (≥ 60 %)", 0.6, 1.01),
)
# Sortable insight -> its Forecast column. Customers without that insight (no published forecast
# for them, no_profiling, or a NULL value: the target was not forecast for this data) sort last in
# both directions, as customers who never bought do by last purchase (on both databases: SQLite
# would put NULLs first); the id breaks ties, so pages never overlap.
INSIGHT_SORTS = {"churn": "churn_probability", "clv": "clv", "spend": "expected_spend",
                 "purchases": "expected_purchases", "value_at_risk": "value_at_risk"}


def _insight_order(value: str, descending: bool) -> tuple:
    if descending:
        return (F(value).desc(nulls_last=True), "-pk")
    return (F(value).asc(nulls_last=True), "pk")


CUSTOMER_ORDERINGS = {
    "name": ("name", "external_id"), "-name": ("-name", "-external_id"),
    "last_purchase": _insight_order("last_purchase_at", False), "-last_purchase": _insight_order("last_purchase_at", True),
    **{f"{sign}{key}": _insight_order(value, sign == "-") for key, value in INSIGHT_SORTS.items() for sign in ("", "-")},
    "segment": (F("segment_name").asc(nulls_last=True), "name", "external_id"),
    "-segment": (F("segment_name").desc(nulls_last=True), "name", "external_id"),
}


def with_insights(customers: QuerySet, runs: dict | None = None) -> QuerySet:
    """Annotate customers with their published segment and forecast (one LEFT JOIN each).

    Fields: segment_id, segment_name, expected_purchases, expected_spend, churn_probability,
    clv, expected_refund_rate, value_at_risk (churn probability x CLV). None where no model
    has spoken for the customer yet, and for customers with ``no_profiling`` (their rows of a
    run trained before they objected are neither shown nor sorted or filtered on).
    """
    runs = published_run_ids() if runs is None else runs

    def profiled(path, output_field=None):
        return Case(When(no_profiling=False, then=F(path)), default=None, output_field=output_field)

    return customers.annotate(
        pf=FilteredRelation("forecasts", condition=Q(forecasts__run_id=runs.get("forecast", -1))),
        ps=FilteredRelation("segment_history", condition=Q(segment_history__run_id=runs.get("segmentation", -1))),
    ).annotate(
        segment_id=profiled("ps__segment_id"), segment_name=profiled("ps__segment__name"),
        **{name: profiled(f"pf__{name}", FloatField()) for name in (
            "expected_purchases", "expected_spend", "churn_probability", "clv", "expected_refund_rate",
            "value_at_risk")},
    )


def _plain_conditions(filters: dict, prefix: str = "") -> Q:
    """The text, owner and last-purchase filters of customer_list as a condition on the customer
    reached through ``prefix`` (they need no insight)."""
    def on(lookup, value):
        return Q(**{f"{prefix}{lookup}": value})

    condition = Q()
    q = (filters.get("q") or "").strip()
    if q:
        condition &= (on("name__icontains", q) | on("email__icontains", q) | on("company__icontains", q)
                      | on("external_id__iexact", q))
    owner = filters.get("owner")
    if owner == "none":
        condition &= on("owner__isnull", True)
    elif owner:
        condition &= on("owner_id", owner)
    if filters.get("last_purchase_before"):
        condition &= on("last_purchase_at__lt", filters["last_purchase_before"])
    if filters.get("last_purchase_after"):
        condition &= on("last_purchase_at__gte", filters["last_purchase_after"])
    if filters.get("tag"):  # a name, whatever its case; one row per customer (a tag is on it once)
        condition &= on("tags__name__iexact", filters["tag"])
    return condition


def _forecast_conditions(filters: dict, prefix: str = "") -> Q | None:
    """The churn band and CLV range filters on forecast values under ``prefix``; None when unused."""
    condition, used = Q(), False
    for key, _label, low, high in CHURN_BANDS:
        if filters.get("churn_band") == key:
            condition &= Q(**{f"{prefix}churn_probability__gte": low, f"{prefix}churn_probability__lt": high})
            used = True
    if filters.get("clv_min") is not None:
        condition &= Q(**{f"{prefix}clv__gte": filters["clv_min"]})
        used = True
    if filters.get("clv_max") is not None:
        condition &= Q(**{f"{prefix}clv__lte": filters["clv_max"]})
        used = True
    return condition if used else None


def customer_list(user, *, q: str = "", segment: int | None = None, owner: str | None = None,
                  churn_band: str = "", clv_min=None, clv_max=None, last_purchase_before=None,
                  last_purchase_after=None, tag: str = "", ordering: str = "name") -> QuerySet:
    """The customers a user may see, searched, filtered and sorted, with their insights.

    ``owner``: a user id, or ``"none"`` for unassigned accounts. ``tag``: a tag name. ``churn_band``: a key of
    CHURN_BANDS. ``ordering``: a key of CUSTOMER_ORDERINGS. Reads every matching customer's
    insights: for one page, customer_page is the bounded way.
    """
    filters = {"q": q, "owner": owner, "churn_band": churn_band, "clv_min": clv_min, "clv_max": clv_max,
               "last_purchase_before": last_purchase_before, "last_purchase_after": last_purchase_after, "tag": tag}
    customers = with_insights(visible_customers(user)).select_related("owner").filter(_plain_conditions(filters))
    if segment:
        customers = customers.filter(segment_id=segment)
    forecast = _forecast_conditions(filters)
    if forecast is not None:
        customers = customers.filter(forecast)
    return customers.order_by(*CUSTOMER_ORDERINGS.get(ordering, CUSTOMER_ORDERINGS["name"]))


def high_value_at_risk(user, limit: int = WORKLIST_SIZE) -> list:
    """The visible customers with the largest churn probability x CLV, highest first."""
    return list(with_insights(visible_customers(user)).filter(no_profiling=False, value_at_risk__gt=0)
                .select_related("owner").order_by(F("value_at_risk").desc())[:limit])


def churn_distribution(user) -> list:
    """[(band label, number of visible customers)] by CHURN_BANDS, from the published forecast."""
    customers = with_insights(visible_customers(user)).filter(no_profiling=False)
    counts = customers.aggregate(**{key: Count("id", filter=Q(churn_probability__gte=low, churn_probability__lt=high))
                                    for key, _label, low, high in CHURN_BANDS})
    return [(label, counts[key]) for key, label, _low, _high in CHURN_BANDS]


def segment_sizes(user) -> list:
    """[(segment name, number of visible customers)] in the published segmentation, largest first."""
    rows = (with_insights(visible_customers(user)).filter(segment_id__isnull=False).values("segment_name")
            .annotate(n=Count("id")).order_by("-n").values_list("segment_name", "n"))
    return list(rows)


def forecast_totals(user, portfolio: dict | None = None) -> dict:
    """Total published expected spend and purchases of the visible customers, each with a
    P10-P90 range of the total.

    Adding the customers' own P10s (or P90s) would pretend they all do badly (or well) at
    once: customers buy independently, so the sum's own spread is the square root of the
    summed variances, each read off the customer's P10-P90 range as a normal one. But a whole
    forecast can be off in level too (a season, a trend), which no sum of customers shows: the
    range adds the forecast run's level error on its backtest windows
    (``portfolio``: its ``metrics["portfolio"]``; :func:`ml.run_reports.forecast_total_range`, the
    rule whose coverage the Models page shows).
    """
    def width2(low, high):
        return Sum((F(f"pf__{high}") - F(f"pf__{low}")) * (F(f"pf__{high}") - F(f"pf__{low}")))

    customers = with_insights(visible_customers(user)).filter(no_profiling=False)
    totals = customers.aggregate(
        spend=Sum("pf__expected_spend"), purchases=Sum("pf__expected_purchases"),
        spend_w2=width2("spend_p10", "spend_p90"), purchases_w2=width2("purchases_p10", "purchases_p90"))
    out = {"spend": totals["spend"], "purchases": totals["purchases"]}
    for target, key, prefix in (("spend", "spend", ""), ("orders", "purchases", "purchases_")):
        w2 = totals[f"{key}_w2"]
        width = None if w2 is None else math.sqrt(w2)
        out[f"{prefix}p10"], out[f"{prefix}p90"] = forecast_total_range(target, totals[key], width, portfolio)
    return out


# --- bounded pages: by offset (page numbers) or by keyset (after a row's sort key) ---------------

# Each ordering of CUSTOMER_ORDERINGS as the parts of the list it concatenates: the first holds
# the customers whose leading sort value is present, the second (if any) those without it (they
# sort last in both directions), each sorted by terms that are never NULL within the part and
# end unique (external_id is unique; the id breaks ties of a value). A row's sort key (part, its
# terms' values) is what a cursor carries: the page after it is an index range read, at any depth.
# Term names are the customer's fields ("pk": its id) or, for INSIGHT_SORTS, the Forecast column.
_NAME_TERMS = (("name", False), ("external_id", False))


def _ordering_parts(ordering: str) -> tuple:
    key, descending = ordering.lstrip("-"), ordering.startswith("-")
    if key == "name":
        return ((None, (("name", descending), ("external_id", descending))),)
    if key == "segment":
        return (("segment_name", (("segment_name", descending),) + _NAME_TERMS), (None, _NAME_TERMS))
    column = "last_purchase_at" if key == "last_purchase" else INSIGHT_SORTS[key]
    return ((column, ((column, descending), ("pk", descending))), (None, (("pk", descending),)))


def sort_key_lengths(ordering: str) -> tuple:
    """The number of values of a row's sort key in each part of ``ordering`` (for checking a cursor)."""
    return tuple(len(terms) for _column, terms in _ordering_parts(ordering))


class _Part:
    """One part of a list: ``rows`` (a queryset, unordered) read by ``terms`` [(path, descending)];
    ``id_path`` gives the customer id; ``counted``: the queryset that counts it (cheaper than
    ``rows``), None for the last part of several (its size is the total minus the others')."""

    def __init__(self, rows, terms, id_path, counted=None):
        self.rows, self.terms, self.id_path, self.counted = rows, terms, id_path, counted


def _path(name: str, prefix: str, on_forecast: bool) -> str:
    if name == "pk":
        return "customer_id" if prefix else "pk"
    if on_forecast and name in INSIGHT_SORTS.values():
        return name
    return f"{prefix}{name}"


def _list_plan(user, runs: dict | None, filters: dict) -> tuple[list, object] | None:
    """(the parts of customer_list(user, **filters) in its order, a queryset counting all of it),
    each read from the indexes; None when the user may see no customer.

    - no insight in the filters or the order: the customers table alone;
    - sorted by or filtered on a forecast value: the published run's Forecast rows in the order
      of their (run, value, customer) index, joined to their customers for the row-level rule
      and the other filters. Customers without the sorted value (no forecast yet, no_profiling,
      or a target not forecast for this data) follow, by id;
    - filtered by segment: the published run's CustomerSegment rows of that segment;
    - sorted by segment name: customer_list (every customer's insights).
    """
    rule = visibility(user, "customer__")
    if rule is None:
        return None
    ordering = filters.get("ordering") if filters.get("ordering") in CUSTOMER_ORDERINGS else "name"
    key = ordering.lstrip("-")
    (column, terms), *second = _ordering_parts(ordering)
    segment = filters.get("segment")
    forecast_filter = _forecast_conditions(filters)
    plain = visible_customers(user).filter(_plain_conditions(filters))

    def parts(present, absent, prefix="", absent_prefix="", on_forecast=False, counted=None) -> list:
        """The ordering's parts: the first reads ``present`` (where the leading term is set, when
        there is a second part), the second ``absent``; rows are customers (prefix "") or insight
        rows (prefix "customer__")."""
        def part(rows, names, row_prefix, part_counted=None):
            paths = tuple((_path(name, row_prefix, on_forecast), desc) for name, desc in names)
            return _Part(rows, paths, "customer_id" if row_prefix else "pk", part_counted)

        if not second:
            return [part(present, terms, prefix)]
        is_set = Q(**{f"{_path(column, prefix, on_forecast)}__isnull": False})
        counted_set = (present if counted is None else counted).filter(is_set)
        return [part(present.filter(is_set), terms, prefix, counted_set), part(absent, second[0][1], absent_prefix)]

    if key == "segment":
        customers = customer_list(user, **{**filters, "ordering": "name"}).order_by()
        return parts(customers, customers.filter(segment_name__isnull=True)), customers
    if not segment and forecast_filter is None and key not in INSIGHT_SORTS:
        return parts(plain, plain.filter(last_purchase_at__isnull=True)), plain

    runs = published_run_ids() if runs is None else runs
    in_segment = Q(run_id=runs.get("segmentation", -1), segment_id=segment)
    # Pages join each insight row to its customer (read in index order, they stop after the page);
    # counts test no_profiling by an anti-join on those few customers instead, so a manager's count
    # reads the insight rows alone rather than joining every customer.
    for_page = Q(customer__no_profiling=False)
    for_count = ~Exists(Customer.objects.filter(pk=OuterRef("customer_id"), no_profiling=True))
    if forecast_filter is None and key not in INSIGHT_SORTS:
        # Filtered by segment only: the segment's members, sorted by a customer field.
        members = CustomerSegment.objects.filter(in_segment, rule, _plain_conditions(filters, "customer__"))
        page, counted = members.filter(for_page), members.filter(for_count)
        return parts(page, page.filter(customer__last_purchase_at__isnull=True), "customer__", "customer__",
                     counted=counted), counted

    forecasts = Forecast.objects.filter(rule, _plain_conditions(filters, "customer__"), run_id=runs.get("forecast", -1))
    if segment:
        # A semi-join probe per forecast row (unique (run, customer) index): the read in forecast
        # order still stops after the page.
        forecasts = forecasts.filter(Exists(CustomerSegment.objects.filter(in_segment, customer_id=OuterRef("customer_id"))))
    if forecast_filter is not None:
        forecasts = forecasts.filter(forecast_filter)
    counted, forecasts = forecasts.filter(for_count), forecasts.filter(for_page)
    if key not in INSIGHT_SORTS:
        # Filtered on forecast values, sorted by a customer field: only customers with a
        # forecast can match a filter on its values.
        return parts(forecasts, forecasts.filter(customer__last_purchase_at__isnull=True), "customer__",
                     "customer__", counted=counted), counted

    # Sorted by a forecast value. A value may be NULL (a target not forecast for this data,
    # e.g. spend without amounts): such rows sort last in both directions, with the customers
    # who have no forecast, as in customer_list. The rows holding a value are read in index
    # order with "IS NOT NULL" as an index condition (PostgreSQL keeps NULLs at the high end of
    # the index, so a backward read for DESC would meet them first; SQLite at the low end), in
    # plain ASC/DESC, which PostgreSQL reads forwards or backwards from one index.
    has_value = Q(**{f"{INSIGHT_SORTS[key]}__isnull": False})
    if forecast_filter is not None:
        # Only customers with a forecast can match a filter on its values.
        return parts(forecasts, forecasts.filter(~has_value), "customer__", "customer__", on_forecast=True,
                     counted=counted), counted
    # Every matching customer counts; those without a (visible) value follow, by id.
    matching = plain
    if segment:
        matching = plain.filter(no_profiling=False, segment_history__run_id=runs.get("segmentation", -1),
                                segment_history__segment_id=segment)
    rest = matching.filter(Q(no_profiling=True) | ~Exists(Forecast.objects.filter(
        has_value, run_id=runs.get("forecast", -1), customer_id=OuterRef("pk"))))
    return parts(forecasts, rest, "customer__", "", on_forecast=True, counted=counted), matching


def customer_list_page(user, *, limit: int, offset: int = 0, after: tuple | None = None, reverse: bool = False,
                       runs: dict | None = None, **filters) -> ListPage:
    """One page of customer_list(user, **filters), read from the indexes with bounded work.

    ``after``: a row's sort key (an item of a ListPage's ``keys`` read in the same ordering, any
    filters): the page starts right after that row, which need not exist any more. ``offset``:
    rows skipped before the page (from the start, or from ``after``). ``reverse``: read from the
    end backwards (``after`` then means before), e.g. the last page is ``reverse=True`` without a
    key; the ids still come in the list's order. ``runs``: the published run ids
    (ml.insights.published_run_ids), when the caller has them.
    """
    plan = _list_plan(user, runs, filters)
    if plan is None:
        return ListPage([], [], 0, False)
    parts, counting = plan
    total = counting.count()
    if after is None and offset >= total:
        return ListPage([], [], total, False)
    sizes = {}

    def size(index):  # a part's number of rows, counted only when a read needs it
        if index not in sizes:
            last = len(parts) - 1
            sizes[index] = parts[index].counted.count() if index < last else total - sum(size(i) for i in range(last))
        return sizes[index]

    order = range(len(parts) - 1, -1, -1) if reverse else range(len(parts))
    wanted, rows, skip = limit + 1, [], offset  # one row more than the page tells whether more follow
    for index in order:
        keyed = after is not None and index == after[0]
        if after is not None and not keyed and (index > after[0]) == reverse:
            continue  # a part before the key's, in the reading direction
        # A part other than the first read from the start, or a last part (it may be an anti-join
        # over every customer), is read only if it has rows the offset does not pass.
        if len(parts) > 1 and not keyed and (index != order[0] or index == len(parts) - 1):
            if size(index) <= skip:
                skip -= size(index)
                continue
        part = parts[index]
        terms = keyset.reversed_terms(part.terms) if reverse else part.terms
        query = part.rows.filter(keyset.after(terms, after[1])) if keyed else part.rows
        query = query.order_by(*keyset.order(terms))
        got = list(query.values_list(part.id_path, *(path for path, _ in terms))[skip:skip + wanted - len(rows)])
        if got or not skip:
            skip = 0
        else:
            skip -= query.count() if keyed else size(index)
        rows += [(index, row) for row in got]
        if len(rows) >= wanted:
            break
    more = len(rows) > limit
    rows = rows[:limit]
    if reverse:
        rows.reverse()
    return ListPage([row[0] for _, row in rows], [(index, list(row[1:])) for index, row in rows], total, more)


def customer_page_ids(user, *, offset: int, limit: int, runs: dict | None = None, **filters) -> tuple[list, int]:
    """(the ids of one page of customer_list(user, **filters), in its order; their total count):
    customer_list_page by offset."""
    page = customer_list_page(user, offset=offset, limit=limit, runs=runs, **filters)
    return page.ids, page.total


def customer_page(user, *, limit: int, offset: int = 0, after: tuple | None = None, reverse: bool = False,
                  runs: dict | None = None, **filters) -> tuple[list, ListPage]:
    """(one page of customer_list(user, **filters) as customers with insights, its ListPage),
    bounded work: the ids and the count from customer_list_page (indexes, no insight joins over
    every customer), then only the page's customers with their insights. ``after``,
    ``reverse``, ``runs``: as for customer_list_page."""
    runs = published_run_ids() if runs is None else runs
    page = customer_list_page(user, offset=offset, limit=limit, after=after, reverse=reverse, runs=runs, **filters)
    rows = {c.pk: c for c in with_insights(Customer.objects.filter(pk__in=page.ids), runs).select_related("owner")}
    return [rows[pk] for pk in page.ids if pk in rows], page
