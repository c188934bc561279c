"""POST /interactions/bulk/: per-item errors with their index, good items stored, idempotent."""
import pytest

from crm.interactions import MAX_BULK_ITEMS
from crm.models import Customer, Interaction
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db
URL = "/api/v1/interactions/bulk/"


def _item(**overrides):
    item = {"external_id": "shop-1", "customer_external_id": "C-MINE", "type": "purchase",
            "occurred_at": "2025-06-30T14:05:00+02:00", "product_sku": "TOY-1", "quantity": 2, "amount": "10.00",
            "order_ref": "A-1"}
    item.update(overrides)
    return item


def test_bulk_stores_good_items_and_reports_bad_ones_by_index(book, rep_client):
    items = [_item(), _item(external_id="shop-2", type="visit"), _item(external_id="shop-3", product_sku="NOPE"),
             _item(external_id="shop-4", customer_external_id="C-THEIRS"), _item(external_id="shop-5", amount="-3"),
             "not an object", _item(external_id="shop-6", type="call", product_sku="", amount=None)]

    body = rep_client.post(URL, {"items": items}).json()

    assert (body["created"], body["updated"], body["rejected"]) == (2, 0, 5)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "type"), (2, "product_sku"), (3, "customer_external_id"), (4, "amount"), (5, None)]
    assert set(Interaction.objects.filter(external_id__startswith="shop-").values_list("external_id", flat=True)) == {
        "shop-1", "shop-6"}
    stored = Interaction.objects.get(external_id="shop-1")
    assert (stored.quantity, str(stored.amount), stored.product.sku) == (2, "10.00", "TOY-1")


def test_bulk_is_idempotent_on_external_id(book, rep_client):
    items = [_item(), _item(external_id="", type="note", notes="no key: content key")]
    first = rep_client.post(URL, {"items": items}).json()
    count = Interaction.objects.count()

    again = rep_client.post(URL, {"items": items}).json()

    assert (first["created"], again["created"], again["updated"], again["unchanged"]) == (2, 0, 0, 2)
    assert Interaction.objects.count() == count


def test_bulk_updates_changed_items(book, rep_client):
    rep_client.post(URL, {"items": [_item()]})

    body = rep_client.post(URL, {"items": [_item(amount="12.50")]}).json()

    assert (body["created"], body["updated"]) == (0, 1)
    assert str(Interaction.objects.get(external_id="shop-1").amount) == "12.50"


def test_bulk_refuses_key_of_interaction_rep_cannot_see(book, rep_client):
    body = rep_client.post(URL, {"items": [_item(external_id="I-C-THEIRS")]}).json()

    assert body["errors"] == [{"index": 0, "field": "external_id",
                               "message": "external_id 'I-C-THEIRS' belongs to an interaction you cannot see"}]
    assert Interaction.objects.get(external_id="I-C-THEIRS").customer.external_id == "C-THEIRS"


def test_bulk_rejects_repeated_key_within_request(book, rep_client):
    body = rep_client.post(URL, {"items": [_item(), _item(amount="1.00")]}).json()

    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "external_id")]


def test_bulk_purchase_updates_last_purchase(book, rep_client):
    rep_client.post(URL, {"items": [_item(occurred_at="2025-06-29")]})

    assert Customer.objects.get(pk=book["mine"].pk).last_purchase_at.date().isoformat() == "2025-06-29"


def test_bulk_refuses_more_than_the_maximum(book, rep_client):
    response = rep_client.post(URL, {"items": [_item()] * (MAX_BULK_ITEMS + 1)})

    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"items"}


def test_bulk_takes_a_bare_list_with_the_same_report(book, rep_client):
    items = [_item(), _item(external_id="shop-2", type="visit")]

    body = rep_client.post(URL, items, format="json").json()

    assert (body["created"], body["rejected"]) == (1, 1)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "type")]
    assert Interaction.objects.filter(external_id="shop-1").exists()


def test_bulk_needs_an_items_list_or_a_list(book, rep_client):
    response = rep_client.post(URL, "not items", format="json")

    assert response.status_code == 400 and error_of(response)["code"] == "invalid"


def test_bulk_of_10000_items_is_a_bounded_number_of_queries(book, manager_client, django_assert_max_num_queries):
    items = [_item(external_id=f"big-{i}", occurred_at=f"2025-06-{1 + i % 28:02}") for i in range(MAX_BULK_ITEMS)]

    # Batched writes, not one per item: ~10 INSERTs on PostgreSQL, ~130 on SQLite (999 parameters each).
    with django_assert_max_num_queries(200):
        body = manager_client.post(URL, {"items": items}).json()

    assert body["created"] == MAX_BULK_ITEMS and body["errors"] == []
