"""The one read path for a customer with its insights, used by the pages and the API alike.

One customer or a page of them, by id or external id, with their owner, the published (or
pinned) runs, segment, forecast and suggestions: :func:`customer_records`, a prepared SQL query
(one round trip on PostgreSQL, two elsewhere) whose rows go through the ORM's own converters.
Customers already in hand as model instances (a write's response, a queryset page) get the
same dicts from :func:`insights_by_customer`; a test checks both give the same output for
every shape of customer on both databases.
"""
from __future__ import annotations

import functools
import json
from datetime import date, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F, FilteredRelation, Q
from django.utils import timezone

from crm import sql
from crm.access import visibility_sql
from crm.models import Customer, CustomerTag, Product, Tag
from ml.models import CustomerSegment, Forecast, Segment, Suggestion, TrainingRun


def published_runs() -> dict:
    """{kind: run} of the live run of each kind."""
    return {run.kind: run for run in TrainingRun.objects.filter(is_published=True)}


def published_run(kind: str) -> TrainingRun | None:
    return TrainingRun.objects.filter(kind=kind, is_published=True).first()


def published_run_ids() -> dict:
    return dict(TrainingRun.objects.filter(is_published=True).values_list("kind", "id"))


def customer_insights(customer: Customer, runs: dict | None = None) -> dict:
    """Everything the models say about one customer, in the contract's names: the ``insights`` of
    :func:`customer_records` (the same prepared query as the API's customer resource), for a
    customer the caller has already read through the row-level rule.

    {"segment": {...} | None, "forecast": {...} | None, "recommendations": [...], "reorder": [...],
     "computed_at": {kind: datetime}, "no_profiling": bool, "control_group": bool}; a customer with
    ``no_profiling`` gets no segment, forecast or suggestions, one in the control group
    (``control_group``, ml.control) no suggestions. ``runs``: as for customer_records.
    """
    records = _read_records(("", []), pk=customer.pk, runs=runs)
    if records:
        return records[0]["insights"]
    # Deleted since the caller read it: nothing to say about it.
    return {"segment": None, "forecast": None, "recommendations": [], "reorder": [],
            "computed_at": {k: r.finished_at for k, r in (runs or {}).items()}, "no_profiling": customer.no_profiling,
            "control_group": False}


def _forecast_dict(f: Forecast, run: TrainingRun) -> dict:
    return {
        "as_of": run.as_of, "horizon_days": run.horizon_days,
        "expected_purchases": f.expected_purchases, "expected_spend": f.expected_spend,
        "churn_probability": f.churn_probability, "clv": f.clv, "expected_refund_rate": f.expected_refund_rate,
        "purchases_p10": f.purchases_p10, "purchases_p90": f.purchases_p90,
        "spend_p10": f.spend_p10, "spend_p90": f.spend_p90, "basis": f.basis, "factors": f.factors,
        "run_id": run.pk,
    }


def _suggestion_dict(s: Suggestion) -> dict:
    return {"sku": s.product.sku, "name": s.product.name, "product_id": s.product_id, "kind": s.kind,
            "score": s.score, "reason": s.reason, "evidence": s.evidence, "basis": s.basis, "rank": s.rank,
            "expected_on": s.expected_on, "control": s.control}


# --- "reorder means due": which reorder suggestions the lists show, in which order ----------------
# A display rule, not a cut at training: the model's ranking and its backtest stay as they were,
# and a suggestion becomes due as the days pass, without a retrain. Rows of runs trained before
# expected dates existed (expected_on NULL) are listed as before.

def reorder_due_window(today: date | None = None) -> tuple[date, date]:
    """(first, last) expected date a listed reorder may have: from today - ML_REORDER_LAPSED_DAYS
    (longer overdue, the customer has let the product go: that is a win-back, not a reorder;
    0 keeps every overdue one) to today + ML_REORDER_DUE_DAYS."""
    today = today or timezone.localdate()
    lapsed = settings.ML_REORDER_LAPSED_DAYS
    return (today - timedelta(days=lapsed) if lapsed else date.min), today + timedelta(days=settings.ML_REORDER_DUE_DAYS)


def reorder_due(prefix: str = "", today: date | None = None) -> Q:
    """The rule as a condition on suggestions (under ``prefix``): cross-sell rows always pass; a
    reorder passes when it is expected within ML_REORDER_DUE_DAYS or is overdue, by at most
    ML_REORDER_LAPSED_DAYS."""
    first, last = reorder_due_window(today)
    return (~Q(**{f"{prefix}kind": Suggestion.Kind.REORDER}) | Q(**{f"{prefix}expected_on__isnull": True})
            | Q(**{f"{prefix}expected_on__lte": last, f"{prefix}expected_on__gte": first}))


def reorder_due_params(today: date | None = None) -> list:
    """The parameters of :func:`reorder_due_sql` (and :func:`listed_sql`), in order."""
    first, last = reorder_due_window(today)
    return [last, first]


def listed_sql(alias: str) -> str:
    """:func:`listed` as SQL on the suggestion table under ``alias``; parameters
    :func:`reorder_due_params`."""
    return f"({reorder_due_sql(alias)} OR {alias}.{sql.column(Suggestion, 'control')})"


def reorder_due_sql(alias: str) -> str:
    """:func:`reorder_due` as SQL on the suggestion table under ``alias``; parameters
    :func:`reorder_due_params`."""
    T, q = Suggestion, sql.column
    expected = f"{alias}.{q(T, 'expected_on')}"
    return (f"({alias}.{q(T, 'kind')} <> '{Suggestion.Kind.REORDER.value}' OR {expected} IS NULL "
            f"OR ({expected} <= %s AND {expected} >= %s))")


# --- "shown": the control group's suggestions are kept (the uplift is measured on them) but no
# list shows them: customer page, API, home worklists, prospects (ml.control); the insights export
# keeps them unless asked to hide them (ml.selectors.insight_rows).

def shown(prefix: str = "") -> Q:
    """Suggestions (or prospects, under ``prefix``) that the lists may show: not the control group's."""
    return Q(**{f"{prefix}control": False})


def listed(prefix: str = "", today: date | None = None) -> Q:
    """The rows a customer's insights read: the due ones (:func:`reorder_due`) and the control
    group's (those only to say that the customer's suggestions are withheld, :func:`add_suggestion`)."""
    return reorder_due(prefix, today) | Q(**{f"{prefix}control": True})


def add_suggestion(insights: dict, item: dict) -> None:
    """Put a suggestion read by :func:`listed` into a customer's insights: in its list, or, for the
    control group, nowhere but ``control_group``."""
    if item.pop("control"):
        insights["control_group"] = True
        insights["recommendations"], insights["reorder"] = [], []
    elif not insights["control_group"]:
        insights[_SUGGESTION_KEYS[item["kind"]]].append(item)


# Within a kind: reorders by expected date (the overdue first), then by rank; cross-sell rows
# have no date and keep their rank order.
SUGGESTION_ORDER = ("customer_id", "kind", F("expected_on").asc(nulls_first=True), "rank")


def due_words(expected_on, today: date | None = None) -> str:
    """"expected around 12 Dec (overdue by 3 days)", "expected around 12 Dec (due in 5 days)",
    "expected around 12 Dec (due today)"; "" without a date."""
    if expected_on is None:
        return ""
    if isinstance(expected_on, str):
        expected_on = date.fromisoformat(expected_on)
    days = (expected_on - (today or timezone.localdate())).days
    when = f"{expected_on.day} {expected_on:%b}" + (f" {expected_on.year}" if abs(days) > 300 else "")
    if days < 0:
        status = f"overdue by {-days} day{'s' if days != -1 else ''}"
    elif days == 0:
        status = "due today"
    else:
        status = f"due in {days} day{'s' if days != 1 else ''}"
    return f"expected around {when} ({status})"


# --- what a run published and why (run.metrics["outcome"], ["backtest"], ["targets"]) -------------


_SUGGESTION_KEYS = {Suggestion.Kind.RECOMMENDATION: "recommendations", Suggestion.Kind.REORDER: "reorder"}


def insight_runs() -> dict:
    """{kind: run} of the published runs, with only the fields insights need (a run's metrics can be large)."""
    return {r.kind: r for r in TrainingRun.objects.filter(is_published=True).only(
        "id", "kind", "finished_at", "as_of", "horizon_days")}


def with_published_rows(customers, runs: dict):
    """Join each customer's published segment membership (with its segment) and forecast into the
    customers' own query, as ``published_membership`` and ``published_forecast`` (None when absent)."""
    seg_run, fc_run = runs.get(TrainingRun.Kind.SEGMENTATION), runs.get(TrainingRun.Kind.FORECAST)
    return customers.annotate(
        published_membership=FilteredRelation(
            "segment_history", condition=Q(segment_history__run_id=seg_run.pk if seg_run else -1)),
        published_forecast=FilteredRelation("forecasts", condition=Q(forecasts__run_id=fc_run.pk if fc_run else -1)),
    ).select_related("published_membership__segment", "published_forecast")


def insights_by_customer(customers, runs: dict | None = None) -> dict:
    """{customer id: insights} in customer_insights' shape, for many customers in at most four queries.

    Customers read through :func:`with_published_rows` (with the same ``runs``) bring their
    segment and forecast along, so only suggestions are read here.
    """
    runs = insight_runs() if runs is None else runs
    computed = {k: r.finished_at for k, r in runs.items()}
    customers = list(customers)
    out = {c.pk: {"segment": None, "forecast": None, "recommendations": [], "reorder": [],
                  "computed_at": dict(computed), "no_profiling": c.no_profiling, "control_group": False}
           for c in customers}
    ids = [c.pk for c in customers if not c.no_profiling]
    if not ids:
        return out
    joined = all(hasattr(c, "published_forecast") for c in customers)
    profiled = [c for c in customers if not c.no_profiling]
    seg_run = runs.get(TrainingRun.Kind.SEGMENTATION)
    if seg_run:
        members = ([c.published_membership for c in profiled if c.published_membership] if joined else
                   CustomerSegment.objects.filter(run=seg_run, customer_id__in=ids).select_related("segment"))
        for member in members:
            s = member.segment
            out[member.customer_id]["segment"] = {"id": s.pk, "key": s.key, "name": s.name, "profile": s.profile,
                                                  "size": s.size, "figures": s.figures, "run_id": seg_run.pk}
    fc_run = runs.get(TrainingRun.Kind.FORECAST)
    if fc_run:
        forecasts = ([c.published_forecast for c in profiled if c.published_forecast] if joined else
                     Forecast.objects.filter(run=fc_run, customer_id__in=ids))
        for f in forecasts:
            out[f.customer_id]["forecast"] = _forecast_dict(f, fc_run)
    rec_run = runs.get(TrainingRun.Kind.RECOMMENDATION)
    if rec_run:
        for s in (Suggestion.objects.filter(listed(), run=rec_run, customer_id__in=ids).select_related("product")
                  .order_by(*SUGGESTION_ORDER)):
            add_suggestion(out[s.customer_id], _suggestion_dict(s))
    return out


def customer_suggestions(customer: Customer, run: TrainingRun | None) -> dict:
    """{"recommendations": [...], "reorder": [...], "control_group": bool} of one customer in a
    recommendation run, best first (none for the control group)."""
    out = {"recommendations": [], "reorder": [], "control_group": False}
    if run is None or customer.no_profiling:
        return out
    for s in (Suggestion.objects.filter(listed(), run=run, customer=customer).select_related("product")
              .order_by(*SUGGESTION_ORDER)):
        add_suggestion(out, _suggestion_dict(s))
    return out


# --- prepared reads for the API's customer resource (crm.sql) ------------------------------------

_RUN_ALIASES = (("sr", TrainingRun.Kind.SEGMENTATION), ("fr", TrainingRun.Kind.FORECAST),
                ("rr", TrainingRun.Kind.RECOMMENDATION))
CUSTOMER_RECORD_FIELDS = ("id", "external_id", "name", "email", "phone", "company", "country", "city", "signup_date",
                          "attributes", "no_profiling", "last_purchase_at", "created_at", "updated_at")
_FORECAST_FIELDS = ("expected_purchases", "expected_spend", "churn_probability", "clv", "expected_refund_rate",
                    "purchases_p10", "purchases_p90", "spend_p10", "spend_p90", "basis", "factors")


@functools.cache
def _record_selects():
    customers = sql.Select([
        ("c", Customer, CUSTOMER_RECORD_FIELDS), ("o", get_user_model(), ("username",)),
        ("sr", TrainingRun, ("id", "finished_at")), ("fr", TrainingRun, ("id", "finished_at", "as_of", "horizon_days")),
        ("rr", TrainingRun, ("id", "finished_at")),
        ("s", Segment, ("id", "key", "name", "profile", "size", "figures")),
        ("f", Forecast, ("customer",) + _FORECAST_FIELDS),
    ])
    suggestions = sql.Select([("sg", Suggestion, ("customer", "kind", "rank", "score", "reason", "evidence", "basis",
                                                  "expected_on", "control")),
                              ("p", Product, ("id", "sku", "name"))])
    return customers, suggestions


@functools.lru_cache(maxsize=512)
def _record_query(pinned: bool, key: str, n_ids: int, rule: str, suggestions: bool = True) -> str:
    """The customers' query: by pinned run ids or the published runs, by ``n_ids`` ids or one
    ``key`` value, with the row-level ``rule`` (SQL text from crm.selectors.visibility_sql);
    ``suggestions``: with the suggestions column (PostgreSQL)."""
    customers, _ = _record_selects()
    user_model = get_user_model()
    T, q = sql.table, sql.column
    joins = [f"LEFT JOIN {T(user_model)} o ON o.{q(user_model, 'id')} = c.{q(Customer, 'owner')}"]
    for alias, _kind in _RUN_ALIASES:
        if pinned:
            joins.append(f"LEFT JOIN {T(TrainingRun)} {alias} ON {alias}.{q(TrainingRun, 'id')} = %s")
        else:
            joins.append(f"LEFT JOIN {T(TrainingRun)} {alias} ON {alias}.{q(TrainingRun, 'kind')} = %s "
                         f"AND {alias}.{q(TrainingRun, 'is_published')} = %s")
    joins += [
        f"LEFT JOIN {T(CustomerSegment)} cs ON cs.{q(CustomerSegment, 'run')} = sr.{q(TrainingRun, 'id')} "
        f"AND cs.{q(CustomerSegment, 'customer')} = c.{q(Customer, 'id')}",
        f"LEFT JOIN {T(Segment)} s ON s.{q(Segment, 'id')} = cs.{q(CustomerSegment, 'segment')}",
        f"LEFT JOIN {T(Forecast)} f ON f.{q(Forecast, 'run')} = fr.{q(TrainingRun, 'id')} "
        f"AND f.{q(Forecast, 'customer')} = c.{q(Customer, 'id')}",
    ]
    where = (f"c.{q(Customer, key)} IN ({', '.join(['%s'] * n_ids)})" if n_ids else f"c.{q(Customer, key)} = %s")
    if rule:
        where = f"{where} AND {rule}"
    return (f"SELECT {customers.sql()}, {_tags_column()}{_suggestions_column() if suggestions else ''} "  # nosec B608
            f"FROM {T(Customer)} c {' '.join(joins)} "
            f"WHERE {where}")                                         # noqa: S608 (identifiers from model metadata)


def _tags_column() -> str:
    """The customer's tag names as one JSON array column (unordered; sorted when read)."""
    T, q = sql.table, sql.column
    agg = "json_agg" if connection.vendor == "postgresql" else "json_group_array"
    return (f"(SELECT {agg}(t.{q(Tag, 'name')}) FROM {T(CustomerTag)} ct "
            f"JOIN {T(Tag)} t ON t.{q(Tag, 'id')} = ct.{q(CustomerTag, 'tag')} "
            f"WHERE ct.{q(CustomerTag, 'customer')} = c.{q(Customer, 'id')})")


_SUGGESTION_ITEM = (("sku", "p", Product, "sku"), ("name", "p", Product, "name"), ("product_id", "p", Product, "id"),
                    ("kind", "sg", Suggestion, "kind"), ("score", "sg", Suggestion, "score"),
                    ("reason", "sg", Suggestion, "reason"), ("evidence", "sg", Suggestion, "evidence"),
                    ("basis", "sg", Suggestion, "basis"), ("rank", "sg", Suggestion, "rank"),
                    ("expected_on", "sg", Suggestion, "expected_on"), ("control", "sg", Suggestion, "control"))
# In SQL the expected dates sort NULL first on both databases (cross-sell rows have none).
_SUGGESTION_SQL_ORDER = "sg.{kind}, sg.{expected_on} IS NOT NULL, sg.{expected_on}, sg.{rank}"


def _suggestion_sql_order() -> str:
    q = sql.column
    return _SUGGESTION_SQL_ORDER.format(kind=q(Suggestion, "kind"), expected_on=q(Suggestion, "expected_on"),
                                        rank=q(Suggestion, "rank"))


def _suggestions_column() -> str:
    """On PostgreSQL, each customer's suggestions of the recommendation run as one JSON array
    column of the customers' query (one round trip less per request); elsewhere nothing, and
    :func:`_suggestion_query` reads them."""
    if connection.vendor != "postgresql":
        return ""
    T, q = sql.table, sql.column
    items = ", ".join(f"'{name}', {alias}.{q(model, field)}" for name, alias, model, field in _SUGGESTION_ITEM)
    return (f", CASE WHEN c.{q(Customer, 'no_profiling')} THEN NULL ELSE ("
            f"SELECT json_agg(json_build_object({items}) ORDER BY {_suggestion_sql_order()}) "
            f"FROM {T(Suggestion)} sg JOIN {T(Product)} p ON p.{q(Product, 'id')} = sg.{q(Suggestion, 'product')} "
            f"WHERE sg.{q(Suggestion, 'run')} = rr.{q(TrainingRun, 'id')} AND {listed_sql('sg')} "
            f"AND sg.{q(Suggestion, 'customer')} = c.{q(Customer, 'id')}) END")


@functools.lru_cache(maxsize=512)
def _suggestion_query(n_customers: int) -> str:
    _, suggestions = _record_selects()
    T, q = sql.table, sql.column
    return (f"SELECT {suggestions.sql()} FROM {T(Suggestion)} sg "  # nosec B608 - identifiers only
            f"JOIN {T(Product)} p ON p.{q(Product, 'id')} = sg.{q(Suggestion, 'product')} "  # noqa: S608
            f"WHERE sg.{q(Suggestion, 'run')} = %s AND {listed_sql('sg')} AND sg.{q(Suggestion, 'customer')} "
            f"IN ({', '.join(['%s'] * n_customers)}) "
            f"ORDER BY sg.{q(Suggestion, 'customer')}, {_suggestion_sql_order()}")


def customer_records(user, *, ids=None, pk=None, external_id=None, runs: dict | None = None,
                     suggestions: bool = True) -> list[dict]:
    """Customers the user may see, by ``ids`` (in that order), ``pk`` or ``external_id``, each as
    {"id", "external_id", ..., "owner": username, "tags": [names], "insights": {...}} with the insights in
    :func:`insights_by_customer`'s shape: the API's customer resource in one prepared query on
    PostgreSQL (customers with owner, runs, segment, forecast and suggestions as JSON), two
    elsewhere (suggestions apart), none compiled by the ORM.

    ``runs`` ({kind: run}) pins the runs read (a list page sorted by one run's forecasts shows
    that run's values); without it the published runs are joined in the same query.
    ``suggestions=False`` reads no suggestions (``recommendations`` and ``reorder`` stay empty:
    for a caller that leaves them out).
    """
    rule = visibility_sql(user, "c")
    if rule is None or (ids is not None and not ids):
        return []
    return _read_records(rule, ids=ids, pk=pk, external_id=external_id, runs=runs, suggestions=suggestions)


def _read_records(rule: tuple[str, list], *, ids=None, pk=None, external_id=None, runs: dict | None = None,
                  suggestions: bool = True) -> list:
    """customer_records' read, with the row-level ``rule`` as (SQL text, params) on alias ``c``."""
    customers, suggestion_select = _record_selects()
    params = []
    for _alias, kind in _RUN_ALIASES:
        if runs is None:
            params += [kind.value, True]
        else:
            run = runs.get(kind)
            params.append(run.pk if run is not None else None)
    if ids is not None:
        ids = [int(i) for i in ids]
        key, where_params = ("id", len(ids)), ids
    elif pk is not None:
        if not 0 < int(pk) < 2**63:  # beyond the id column's range: no such customer (not a database error)
            return []
        key, where_params = ("id", 0), [int(pk)]
    else:
        if "\x00" in external_id:  # PostgreSQL refuses NUL in a text comparison: nothing can match
            return []
        key, where_params = ("external_id", 0), [external_id]
    query = _record_query(runs is not None, *key, rule[0], suggestions)
    records, rec_run, joined = {}, None, suggestions and connection.vendor == "postgresql"
    due_params = reorder_due_params()
    # The suggestions column (PostgreSQL) comes first in the query text: its date parameter too.
    rows = sql.fetchall(query, (due_params if joined else []) + params + where_params + rule[1])
    for row in rows:
        v = customers.convert(row)
        computed = {kind.value: v[f"{alias}.finished_at"] for alias, kind in _RUN_ALIASES
                    if v[f"{alias}.id"] is not None}
        insights = {"segment": None, "forecast": None, "recommendations": [], "reorder": [],
                    "computed_at": computed, "no_profiling": v["c.no_profiling"], "control_group": False}
        if not v["c.no_profiling"]:
            if v["s.id"] is not None:
                insights["segment"] = {"id": v["s.id"], "key": v["s.key"], "name": v["s.name"],
                                       "profile": v["s.profile"], "size": v["s.size"], "figures": v["s.figures"],
                                       "run_id": v["sr.id"]}
            if v["f.customer"] is not None:
                insights["forecast"] = {"as_of": v["fr.as_of"], "horizon_days": v["fr.horizon_days"],
                                        **{name: v[f"f.{name}"] for name in _FORECAST_FIELDS},
                                        "run_id": v["fr.id"]}
        rec_run = v["rr.id"]
        record = {name: v[f"c.{name}"] for name in CUSTOMER_RECORD_FIELDS}
        record["owner"] = v["o.username"]
        names = row[len(customers)]
        record["tags"] = sorted(json.loads(names) if isinstance(names, str) else names or [], key=str.lower)
        record["insights"] = insights
        records[record["id"]] = record
        if joined and row[len(customers) + 1] is not None:
            items = row[len(customers) + 1]
            for item in json.loads(items) if isinstance(items, str) else items:
                if item["expected_on"] is not None:  # JSON has no dates: ISO text
                    item["expected_on"] = date.fromisoformat(item["expected_on"])
                add_suggestion(insights, item)
    profiled = [cid for cid, r in records.items() if not r["no_profiling"]]
    if rec_run is not None and profiled and suggestions and not joined:
        query = _suggestion_query(len(profiled))
        for row in sql.fetchall(query, [rec_run, *due_params, *profiled]):
            v = suggestion_select.convert(row)
            add_suggestion(records[v["sg.customer"]]["insights"], {
                "sku": v["p.sku"], "name": v["p.name"], "product_id": v["p.id"], "kind": v["sg.kind"],
                "score": v["sg.score"], "reason": v["sg.reason"], "evidence": v["sg.evidence"],
                "basis": v["sg.basis"], "rank": v["sg.rank"], "expected_on": v["sg.expected_on"],
                "control": v["sg.control"]})
    if ids is not None:
        return [records[i] for i in ids if i in records]
    return list(records.values())
