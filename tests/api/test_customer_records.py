"""The prepared customer reads (ml.insights.customer_records, web.api.authentication) give
exactly what the documented serializer gives, apply the row-level rule, and read a customer
detail in three queries with no role query of its own."""
from datetime import UTC, date, datetime

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from crm.models import ROLE_SALES_REP, ApiToken, Customer
from ml import insights as ml_selectors
from ml.models import CustomerSegment, Forecast, Suggestion, TrainingRun
from tests.conftest import api_key
from web.api import serializers as s

from .conftest import error_of


def documented(customer_id):
    """The customer through the ORM, insights_by_customer and CustomerSerializer (the reference)."""
    customer = Customer.objects.select_related("owner").get(pk=customer_id)
    customer.insights = ml_selectors.insights_by_customer([customer])[customer.pk]
    return s.CustomerSerializer(customer).data


@pytest.fixture
def varied(book, rep):
    """Customers covering every shape: no owner, no_profiling with insight rows, nested attributes,
    a segment but no forecast, several suggestions of both kinds, an unpublished run's rows."""
    runs = book["runs"]
    quiet = Customer.objects.create(external_id="C-QUIET", name="Quiet", no_profiling=True, owner=rep,
                                    signup_date=date(2024, 2, 29), last_purchase_at=datetime(2025, 6, 1, 8, tzinfo=UTC))
    CustomerSegment.objects.create(run=runs["segmentation"], customer=quiet, segment=book["loyal"])
    Forecast.objects.create(run=runs["forecast"], customer=quiet, expected_purchases=1, expected_spend=2,
                            churn_probability=0.3, clv=4, expected_refund_rate=0)
    Suggestion.objects.create(run=runs["recommendation"], customer=quiet, kind="reorder", rank=1,
                              product=book["food"], score=0.5, reason="due")
    rich = Customer.objects.create(
        external_id="C-RICH ä é", name="Rich & Co", email="r@example.com", phone="+49 1", company="Rich",
        country="DE", city="Köln", signup_date=date(2023, 1, 2), owner=None,
        attributes={"tier": "gold", "tags": ["a", "b"], "nested": {"x": 1.5, "y": None}},
        last_purchase_at=datetime(2025, 6, 29, 23, 59, 59, 123456, tzinfo=UTC))
    CustomerSegment.objects.create(run=runs["segmentation"], customer=rich, segment=book["lapsing"])
    for rank in (3, 1, 2):
        Suggestion.objects.create(run=runs["recommendation"], customer=rich, kind="recommendation", rank=rank,
                                  product=book["toy"] if rank != 2 else book["food"], score=1 / rank,
                                  reason=f"reason {rank}", evidence={"rank": rank}, basis="item-item")
    Suggestion.objects.create(run=runs["recommendation"], customer=rich, kind="reorder", rank=1,
                              product=book["food"], score=0.25, reason="due in 3 days", basis="cycle")
    draft = TrainingRun.objects.create(kind="forecast", status="succeeded", is_published=False,
                                       finished_at=timezone.now(), as_of=date(2025, 7, 31), horizon_days=30)
    Forecast.objects.create(run=draft, customer=rich, expected_purchases=99, expected_spend=99,
                            churn_probability=0.99, clv=99, expected_refund_rate=0.5)
    Forecast.objects.create(run=draft, customer=book["mine"], expected_purchases=99, expected_spend=99,
                            churn_probability=0.99, clv=99, expected_refund_rate=0.5)
    bare = Customer.objects.create(external_id="C-BARE", name="")
    return {**book, "quiet": quiet, "rich": rich, "bare": bare, "draft": draft}


def test_records_match_the_documented_serializer_for_every_shape(varied, manager):
    customers = list(Customer.objects.order_by("pk"))
    assert len(customers) == 6
    for customer in customers:
        (record,) = ml_selectors.customer_records(manager, pk=customer.pk)
        assert s.customer_representation(record) == documented(customer.pk), customer.external_id
        (by_key,) = ml_selectors.customer_records(manager, external_id=customer.external_id)
        assert by_key == record
    listed = ml_selectors.customer_records(manager, ids=[c.pk for c in reversed(customers)])
    assert [r["id"] for r in listed] == [c.pk for c in reversed(customers)]
    rich = s.customer_representation(ml_selectors.customer_records(manager, pk=varied["rich"].pk)[0])
    assert [x["rank"] for x in rich["insights"]["recommendations"]] == [1, 2, 3]
    assert rich["insights"]["forecast"] is None  # only the unpublished run has one
    assert rich["owner"] is None and rich["attributes"]["nested"] == {"x": 1.5, "y": None}
    quiet = s.customer_representation(ml_selectors.customer_records(manager, pk=varied["quiet"].pk)[0])
    assert quiet["insights"]["no_profiling"] is True
    assert (quiet["insights"]["segment"], quiet["insights"]["forecast"], quiet["insights"]["reorder"]) == (None, None, [])
    mine = s.customer_representation(ml_selectors.customer_records(manager, pk=varied["mine"].pk)[0])
    assert mine["insights"]["forecast"]["run_id"] == varied["runs"]["forecast"].pk
    assert mine["insights"]["forecast"]["churn_probability"] == 0.2


def test_pinned_runs_show_that_runs_values(varied, manager):
    """A list page sorted by one run's forecasts shows that run's values, not a newer run's."""
    pinned = ml_selectors.insight_runs()
    draft = varied["draft"]
    TrainingRun.objects.filter(kind="forecast", is_published=True).update(is_published=False)
    TrainingRun.objects.filter(pk=draft.pk).update(is_published=True)
    (old,) = ml_selectors.customer_records(manager, pk=varied["mine"].pk, runs=pinned)
    (new,) = ml_selectors.customer_records(manager, pk=varied["mine"].pk)
    assert old["insights"]["forecast"]["churn_probability"] == 0.2
    assert new["insights"]["forecast"]["churn_probability"] == 0.99
    assert new["insights"]["forecast"]["horizon_days"] == 30


def test_row_level_rule(varied, rep, other_rep, make_user):
    mine, theirs, free, rich = (varied[k].pk for k in ("mine", "theirs", "free", "rich"))
    assert {r["id"] for r in ml_selectors.customer_records(rep, ids=[mine, theirs, free, rich])} == {mine, free, rich}
    assert ml_selectors.customer_records(rep, pk=theirs) == []
    assert ml_selectors.customer_records(other_rep, pk=mine) == []
    assert ml_selectors.customer_records(make_user("nobody"), pk=free) == []
    assert ml_selectors.customer_records(rep, ids=[]) == []


def test_keys_no_customer_can_have_are_not_found(varied, manager):
    assert ml_selectors.customer_records(manager, pk=2**63) == []
    assert ml_selectors.customer_records(manager, pk=0) == []
    assert ml_selectors.customer_records(manager, external_id="C-MINE\x00") == []


def token_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key(user)}")
    return client


def test_detail_over_a_token_is_two_or_three_queries_and_the_documented_body(varied, rep):
    client = token_client(rep)
    client.get("/api/v1/products/")  # the token's first use this minute also writes last_used_at
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/api/v1/customers/{varied['rich'].pk}/")
    assert response.status_code == 200
    assert response.json() == documented(varied["rich"].pk)
    # token + user + roles; the customer with owner, runs, segment and forecast; its suggestions
    # (on PostgreSQL a JSON column of the customer's query)
    assert len(queries) == (2 if connection.vendor == "postgresql" else 3), [q["sql"] for q in queries.captured_queries]
    by_key = client.get(f"/api/v1/customers/by-external-id/{varied['rich'].external_id}/")
    assert by_key.status_code == 200 and by_key.json() == response.json()


def test_token_answers_match_drf_for_bad_tokens_and_users(varied, rep, other_rep, make_user):
    client = token_client(rep)
    assert client.get(f"/api/v1/customers/{varied['theirs'].pk}/").status_code == 404
    assert client.get(f"/api/v1/customers/{2**63}/").status_code == 404
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    response = bad.get(f"/api/v1/customers/{varied['mine'].pk}/")
    assert response.status_code == 401 and error_of(response)["message"] == "Invalid token."
    rep.is_active = False
    rep.save()
    response = client.get(f"/api/v1/customers/{varied['mine'].pk}/")
    assert response.status_code == 401 and error_of(response)["message"] == "User inactive or deleted."
    norole = token_client(make_user("norole"))
    assert norole.get(f"/api/v1/customers/{varied['free'].pk}/").status_code == 403


def test_roles_are_read_on_every_request_not_remembered(varied, other_rep):
    """Taking a rep's role away takes effect on their next request (roles come with the token's
    query, never from a cache)."""
    client = token_client(other_rep)
    assert client.get(f"/api/v1/customers/{varied['theirs'].pk}/").status_code == 200
    other_rep.groups.remove(Group.objects.get(name=ROLE_SALES_REP))
    assert client.get(f"/api/v1/customers/{varied['theirs'].pk}/").status_code == 403
    other_rep.groups.add(Group.objects.get(name=ROLE_SALES_REP))
    ApiToken.objects.filter(user=other_rep).delete()
    assert client.get(f"/api/v1/customers/{varied['theirs'].pk}/").status_code == 401


def test_list_pages_are_the_documented_serializer(varied, manager):
    client = token_client(manager)
    body = client.get("/api/v1/customers/?ordering=-churn&page_size=4").json()
    assert [c["id"] for c in body["results"]] and len(body["results"]) == 4
    for item in body["results"]:
        assert item == documented(item["id"])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="not applicable on SQLite: prepared statements are a "
                    "PostgreSQL server feature")
def test_hot_reads_are_planned_once_per_connection_on_postgresql(varied, rep):
    """After a few requests the token read and the customer read (with its suggestions) run as
    prepared statements (planned once per connection); the ORM's queries are never prepared."""
    client = token_client(rep)
    bodies = {client.get(f"/api/v1/customers/{varied['rich'].pk}/").content for _ in range(8)}
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]

    assert len(bodies) == 1  # the prepared statements give the same answer as the first, unprepared runs
    assert len(prepared) == 2, prepared
    assert sorted(text.split(" FROM ")[-1].split()[0] for text in prepared) == ['"crm_apitoken"', '"crm_customer"']
