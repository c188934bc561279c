"""Cursor pages of the API's plain lists (products, interactions): same links and rules as customers'."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from crm.models import Interaction, Product
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db


def _walk(client, url, params, between=None):
    seen, body = [], client.get(url, params).json()
    while True:
        seen += body["results"]
        if not body["next"]:
            return seen, body
        if between:
            between()
        body = client.get(body["next"]).json()


def test_product_cursor_pages_skip_and_repeat_nobody_while_products_are_added(book, manager_client):
    Product.objects.bulk_create([Product(sku=f"P-{i:02}", name=f"Item {i % 4}", category="C", price=Decimal("1"))
                                 for i in range(23)])
    at_start = [p["sku"] for p in _walk(manager_client, "/api/v1/products/", {"page_size": 4})[0]]
    added = iter(range(100))

    def insert():  # one before every cursor (name "A…"), one after it ("Z…")
        n = next(added)
        Product.objects.create(sku=f"NEW-A{n}", name="A first", category="C", price=Decimal("1"))
        Product.objects.create(sku=f"NEW-Z{n}", name="Zz last", category="C", price=Decimal("1"))

    rows, last = _walk(manager_client, "/api/v1/products/", {"page_size": 4}, between=insert)
    seen = [p["sku"] for p in rows]

    assert len(at_start) == 25 and len(seen) == len(set(seen)) and set(at_start) <= set(seen)
    inserts = next(added)
    assert inserts > 5 and {s for s in seen if s.startswith("NEW-Z")} == {f"NEW-Z{n}" for n in range(inserts)}
    assert not any(s.startswith("NEW-A") for s in seen)  # added before the cursor: not met
    assert last["count"] == 25 + 2 * inserts


@pytest.mark.parametrize("ordering", ["-occurred_at", "occurred_at"])
def test_interaction_cursor_pages_cover_each_once_in_both_directions(book, manager_client, ordering):
    at = datetime(2025, 3, 1, tzinfo=UTC)
    Interaction.objects.bulk_create([Interaction(external_id=f"X-{i:02}", customer=book["mine"], type="call",
                                                 occurred_at=at + timedelta(hours=i % 5)) for i in range(20)])
    params = {"page_size": 3, "ordering": ordering}
    forwards = [r["id"] for r in _walk(manager_client, "/api/v1/interactions/", params)[0]]
    body, backwards = manager_client.get("/api/v1/interactions/", {**params, "page": "last"}).json(), []
    while True:
        backwards = [r["id"] for r in body["results"]] + backwards
        if not body["previous"]:
            break
        body = manager_client.get(body["previous"]).json()

    assert len(forwards) == 23 == len(set(forwards)) and backwards == forwards


def test_cursor_of_another_list_is_400(book, many_customers, manager_client):
    customers_next = manager_client.get("/api/v1/customers/", {"page_size": 5}).json()["next"]
    cursor = customers_next.split("cursor=", 1)[1].split("&", 1)[0]

    response = manager_client.get("/api/v1/products/", {"cursor": cursor})

    assert response.status_code == 400 and "cursor" in error_of(response)["fields"]
