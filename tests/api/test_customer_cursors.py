"""Keyset (cursor) pages of the API customer list, and fields= / include= on it."""
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import Customer
from ml.customer_lists import CUSTOMER_ORDERINGS
from ml.models import CustomerSegment, Forecast, Suggestion
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db

URL = "/api/v1/customers/"


@pytest.fixture
def varied(book, rep):
    """40 more customers with every shape a sort meets: ties in name and in forecast values, NULL
    forecast values, no forecast, no segment, no last purchase, one with no_profiling."""
    runs, at = book["runs"], datetime(2025, 1, 1, tzinfo=UTC)
    customers = Customer.objects.bulk_create([
        Customer(external_id=f"V-{i:02}", name=f"Name {i % 7}", owner=rep if i % 3 else None,
                 last_purchase_at=None if i % 5 == 0 else at + timedelta(days=i % 6), no_profiling=i == 13)
        for i in range(40)])
    Forecast.objects.bulk_create([
        Forecast(run=runs["forecast"], customer=c, expected_purchases=i % 4, churn_probability=(i % 5) / 10,
                 expected_spend=None if i % 6 == 0 else float(i % 3), clv=10.0 * (i % 8), expected_refund_rate=0)
        for i, c in enumerate(customers) if i % 4 != 3])
    CustomerSegment.objects.bulk_create([
        CustomerSegment(run=runs["segmentation"], customer=c, segment=book["loyal"] if i % 2 else book["lapsing"])
        for i, c in enumerate(customers) if i % 9 != 8])
    return customers


def _clone(customer: Customer, external_id: str, book) -> Customer:
    """A new customer that sorts next to ``customer`` in every ordering (same name, last purchase,
    owner, segment and forecast values; a larger id and a later external_id)."""
    runs = book["runs"]
    twin = Customer.objects.create(external_id=external_id, name=customer.name, owner=customer.owner,
                                   last_purchase_at=customer.last_purchase_at, no_profiling=customer.no_profiling)
    member = CustomerSegment.objects.filter(run=runs["segmentation"], customer=customer).first()
    if member:
        CustomerSegment.objects.create(run=runs["segmentation"], customer=twin, segment=member.segment)
    forecast = Forecast.objects.filter(run=runs["forecast"], customer=customer).first()
    if forecast:
        forecast.pk, forecast.customer = None, twin
        forecast.save()
    return twin


def _walk(client, params, between=None):
    """The external ids of every page, following ``next`` from the first; ``between(page_number,
    body)`` runs before each following request."""
    seen, body, number = [], client.get(URL, params).json(), 1
    while True:
        seen += [c["external_id"] for c in body["results"]]
        if not body["next"]:
            return seen
        if between:
            between(number, body)
        number += 1
        assert "page=" not in body["next"]
        body = client.get(body["next"]).json()


@pytest.mark.parametrize("ordering", list(CUSTOMER_ORDERINGS))
def test_customer_cursor_pages_skip_and_repeat_nobody_while_customers_are_added(varied, book, manager_client,
                                                                                 ordering):
    params = {"ordering": ordering, "page_size": 6}
    at_start = _walk(manager_client, params)
    first, last = Customer.objects.get(external_id=at_start[0]), Customer.objects.get(external_id=at_start[-1])
    added, sides = [], []

    def insert(number, body):  # clones of the first and last customers: around the list's ends
        cursor_row = body["results"][-1]["external_id"]
        for suffix, model in (("a", first), ("z", last)):
            added.append(_clone(model, f"W-{number:02}{suffix}", book).external_id)
            sides.append((cursor_row, added[-1]))

    seen = _walk(manager_client, params, between=insert)

    assert len(at_start) == Customer.objects.count() - len(added) == 43
    assert len(seen) == len(set(seen))  # nobody repeated
    assert set(at_start) <= set(seen)  # nobody present throughout skipped
    assert set(seen) - set(at_start) <= set(added)
    # The walk met insertions on both sides of its cursor; those after it are all listed.
    final = _walk(manager_client, params)
    after_cursor = {new for row, new in sides if final.index(new) > final.index(row)}
    assert after_cursor and len(after_cursor) < len(added)
    assert after_cursor <= set(seen)


@pytest.mark.parametrize("ordering", ["name", "-churn", "spend", "last_purchase", "-segment"])
def test_customer_cursor_pages_read_backwards_from_the_last_give_the_same_list(varied, manager_client, ordering):
    params = {"ordering": ordering, "page_size": 7}
    forwards = _walk(manager_client, params)
    body, backwards = manager_client.get(URL, {**params, "page": "last"}).json(), []
    while True:
        backwards = [c["external_id"] for c in body["results"]] + backwards
        if not body["previous"]:
            break
        body = manager_client.get(body["previous"]).json()

    assert backwards == forwards
    assert len(manager_client.get(URL, {**params, "page": "last"}).json()["results"]) == 43 - 6 * 7


@pytest.mark.parametrize("ordering", ["name", "-value_at_risk", "clv"])
def test_customer_page_number_then_cursor_continues_where_offset_pages_would(varied, manager_client, ordering):
    params = {"ordering": ordering, "page_size": 8}
    page2 = manager_client.get(URL, {**params, "page": 2}).json()
    page3 = manager_client.get(URL, {**params, "page": 3}).json()
    after2 = manager_client.get(page2["next"]).json()
    before3 = manager_client.get(page3["previous"]).json()

    assert after2["results"] == page3["results"] and after2["count"] == 43
    assert before3["results"] == page2["results"]


def test_customer_cursor_pages_keep_filters_and_rep_rule(varied, book, rep_client):
    params = {"segment": book["loyal"].pk, "ordering": "-churn", "page_size": 4}
    seen = _walk(rep_client, params)
    expected = set(Customer.objects.filter(segment_history__segment=book["loyal"], no_profiling=False)
                   .exclude(owner__isnull=False, owner__username="rep2").exclude(owner=book["theirs"].owner)
                   .values_list("external_id", flat=True))

    assert sorted(seen) == sorted(expected)


def _cursor_of(client, **params):
    next_link = client.get(URL, {"page_size": 5, **params}).json()["next"]
    return next_link.split("cursor=", 1)[1].split("&", 1)[0]


@pytest.mark.parametrize("forge", [
    lambda c: c[:-3] + ("AAA" if not c.endswith("AAA") else "BBB"),  # signature altered
    lambda c: "eyJvIjoibmFtZSIsInAiOjAsImsiOltbInMiLCJhIl0sWyJzIiwiYiJdXSwiciI6ZmFsc2UsIm4iOm51bGx9",  # no signature
    lambda c: "not a cursor",
    lambda c: "x" * 5000,
], ids=["altered", "unsigned", "garbage", "huge"])
def test_customer_list_forged_cursor_is_400(varied, manager_client, forge):
    response = manager_client.get(URL, {"page_size": 5, "cursor": forge(_cursor_of(manager_client))})

    assert response.status_code == 400
    assert "cursor" in error_of(response)["fields"]


def test_customer_list_cursor_of_another_ordering_is_400(varied, manager_client):
    cursor = _cursor_of(manager_client, ordering="-clv")

    response = manager_client.get(URL, {"ordering": "name", "cursor": cursor})

    assert response.status_code == 400 and "cursor" in error_of(response)["fields"]


# --- fields= / include= ---------------------------------------------------------------------------

def _suggestion_reads(queries) -> int:
    return sum(Suggestion._meta.db_table in q["sql"] for q in queries)


def test_customer_list_include_empty_leaves_suggestions_out_unread(many_customers, manager_client):
    with CaptureQueriesContext(connection) as full:
        with_suggestions = manager_client.get(URL, {"page_size": 50}).json()
    with CaptureQueriesContext(connection) as lean:
        without = manager_client.get(URL, {"page_size": 50, "include": ""}).json()

    assert with_suggestions["results"][0]["insights"]["recommendations"]
    assert all("recommendations" not in c["insights"] and "reorder" not in c["insights"] for c in without["results"])
    assert [c["external_id"] for c in without["results"]] == [c["external_id"] for c in with_suggestions["results"]]
    assert without["results"][0]["insights"]["forecast"] == with_suggestions["results"][0]["insights"]["forecast"]
    assert _suggestion_reads(full.captured_queries) == 1 and _suggestion_reads(lean.captured_queries) == 0
    assert len(lean) <= len(full) - (connection.vendor != "postgresql")  # SQLite reads suggestions apart


def test_customer_list_fields_give_only_those_and_skip_suggestions(many_customers, manager_client, book):
    with CaptureQueriesContext(connection) as queries:
        body = manager_client.get(URL, {"fields": "external_id,name,insights.segment", "ordering": "-churn", "page_size": 100}).json()

    assert all(set(c) == {"external_id", "name", "insights"} and set(c["insights"]) == {"segment"}
               for c in body["results"])
    mine = next(c for c in body["results"] if c["external_id"] == "C-MINE")
    assert mine["insights"]["segment"]["name"] == "Loyal"
    assert _suggestion_reads(queries.captured_queries) == 0
    assert body["count"] == 63


def test_customer_list_fields_with_insights_read_suggestions(book, manager_client):
    body = manager_client.get(URL, {"fields": "external_id,insights.reorder"}).json()

    mine = next(c for c in body["results"] if c["external_id"] == "C-MINE")
    assert mine == {"external_id": "C-MINE", "insights": {"reorder": [
        {"sku": "FOOD-1", "name": "Dog food", "product_id": book["food"].pk, "score": 0.9, "reason": "due again",
         "evidence": {}, "basis": "", "rank": 1, "expected_on": None}]}}


@pytest.mark.parametrize(("params", "field"), [({"fields": "external_id,password"}, "fields"),
                                               ({"fields": "insights.nothing"}, "fields"),
                                               ({"include": "suggestions,secrets"}, "include")])
def test_customer_list_unknown_field_or_part_is_400(book, manager_client, params, field):
    response = manager_client.get(URL, params)

    assert response.status_code == 400 and field in error_of(response)["fields"]


def test_list_schema_documents_cursor_fields_and_include(client_for):
    schema = client_for().get("/api/v1/schema/", {"format": "json"}).json()

    names = {p["name"] for p in schema["paths"]["/api/v1/customers/"]["get"]["parameters"]}
    assert {"cursor", "page", "page_size", "fields", "include"} <= names
    for path in ("/api/v1/products/", "/api/v1/interactions/"):
        assert "cursor" in {p["name"] for p in schema["paths"][path]["get"]["parameters"]}
    assert "cursor" not in {p["name"] for p in schema["paths"]["/api/v1/segments/"]["get"].get("parameters", [])}
    item = schema["components"]["schemas"]["CustomerListItem"]
    assert "insights" in item["properties"] and not item.get("required")
