"""Products and interactions: CRUD per role, row-level rule, lookups, query counts."""
from datetime import UTC, datetime

import pytest

from crm.models import Customer, Interaction, Product
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db


def test_product_list_and_detail_by_sku_for_rep(book, rep_client):
    assert {p["sku"] for p in rep_client.get("/api/v1/products/").json()["results"]} == {"FOOD-1", "TOY-1"}
    response = rep_client.get("/api/v1/products/TOY-1/")
    assert response.status_code == 200 and response.json()["name"] == "Ball"


def test_product_list_filters_by_category(book, rep_client):
    results = rep_client.get("/api/v1/products/", {"category": "Toys"}).json()["results"]

    assert [p["sku"] for p in results] == ["TOY-1"]


def test_rep_cannot_create_product(book, rep_client):
    response = rep_client.post("/api/v1/products/", {"sku": "NEW-1", "name": "New"})

    assert response.status_code == 403 and error_of(response)["code"] == "permission_denied"


def test_manager_creates_updates_and_deletes_product(book, manager_client):
    assert manager_client.post("/api/v1/products/", {"sku": "NEW-1", "name": "New", "price": "3.50"}).status_code == 201
    assert manager_client.patch("/api/v1/products/NEW-1/", {"active": False}).json()["active"] is False
    assert manager_client.delete("/api/v1/products/NEW-1/").status_code == 204
    assert not Product.objects.filter(sku="NEW-1").exists()


def test_negative_price_is_400_on_the_field(book, manager_client):
    response = manager_client.post("/api/v1/products/", {"sku": "NEW-1", "name": "New", "price": "-1"})

    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"price"}


def test_deleting_product_with_interactions_is_409(book, manager_client):
    response = manager_client.delete("/api/v1/products/FOOD-1/")

    assert response.status_code == 409 and error_of(response)["code"] == "conflict"


def test_unknown_product_is_404(book, rep_client):
    assert rep_client.get("/api/v1/products/NOPE/").status_code == 404


def test_similar_products(book, rep_client):
    body = rep_client.get("/api/v1/products/FOOD-1/similar/").json()

    assert [(p["sku"], p["rank"]) for p in body] == [("TOY-1", 1)]


def test_prospects_show_only_visible_customers(book, rep_client, manager_client):
    mine = [p["external_id"] for p in rep_client.get("/api/v1/products/TOY-1/prospects/").json()]
    everyone = [p["external_id"] for p in manager_client.get("/api/v1/products/TOY-1/prospects/").json()]

    assert mine == ["C-MINE", "C-FREE"]
    assert everyone == ["C-THEIRS", "C-MINE", "C-FREE"]


def test_interaction_list_rep_sees_only_visible_customers(book, rep_client):
    results = rep_client.get("/api/v1/interactions/").json()["results"]

    assert {i["customer_external_id"] for i in results} == {"C-MINE", "C-FREE"}


def test_interaction_list_filters_by_customer_and_type(book, many_customers, manager_client):
    results = manager_client.get("/api/v1/interactions/", {"customer_external_id": "C-MINE",
                                                             "type": "purchase"}).json()["results"]

    assert [i["external_id"] for i in results] == ["I-C-MINE"]


def test_interaction_of_other_reps_customer_is_404(book, rep_client):
    other = Interaction.objects.get(external_id="I-C-THEIRS")

    assert rep_client.get(f"/api/v1/interactions/{other.pk}/").status_code == 404
    assert rep_client.get("/api/v1/interactions/by-external-id/I-C-THEIRS/").status_code == 404


def test_rep_logs_interaction_on_own_customer(book, rep_client, rep):
    response = rep_client.post("/api/v1/interactions/", {"customer": book["mine"].pk, "type": "call",
                                                         "notes": "asked for a quote"})

    assert response.status_code == 201
    interaction = Interaction.objects.get(pk=response.json()["id"])
    assert interaction.created_by == rep and interaction.notes == "asked for a quote"


def test_rep_cannot_log_interaction_on_other_reps_customer(book, rep_client):
    response = rep_client.post("/api/v1/interactions/", {"customer": book["theirs"].pk, "type": "call"})

    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"customer"}


def test_logging_a_purchase_updates_last_purchase(book, rep_client):
    at = "2025-06-20T10:00:00Z"
    rep_client.post("/api/v1/interactions/", {"customer": book["mine"].pk, "type": "purchase", "occurred_at": at,
                                              "product": "TOY-1", "amount": "5.00"})

    assert Customer.objects.get(pk=book["mine"].pk).last_purchase_at == datetime(2025, 6, 20, 10, tzinfo=UTC)


def test_rep_edits_own_logged_interaction_but_not_imported_ones(book, rep_client):
    own = rep_client.post("/api/v1/interactions/", {"customer": book["mine"].pk, "type": "note"}).json()
    imported = Interaction.objects.get(external_id="I-C-MINE")

    assert rep_client.patch(f"/api/v1/interactions/{own['id']}/", {"notes": "fixed"}).json()["notes"] == "fixed"
    assert rep_client.patch(f"/api/v1/interactions/{imported.pk}/", {"notes": "x"}).status_code == 403


def test_manager_deletes_interaction_by_external_id(book, manager_client):
    assert manager_client.delete("/api/v1/interactions/by-external-id/I-C-THEIRS/").status_code == 204
    assert not Interaction.objects.filter(external_id="I-C-THEIRS").exists()


@pytest.mark.parametrize("page_size", [5, 50])
@pytest.mark.parametrize("url", ["/api/v1/interactions/", "/api/v1/products/", "/api/v1/training-runs/",
                                 "/api/v1/imports/", "/api/v1/segments/"])
def test_list_queries_do_not_grow_with_page_size(many_customers, manager_client, url, page_size,
                                                 django_assert_max_num_queries):
    with django_assert_max_num_queries(8):
        response = manager_client.get(url, {"page_size": page_size})

    assert response.status_code == 200
