"""Customers: CRUD per role, the row-level rule, lookups, filters, insights, and query counts."""
import pytest

from crm.models import Customer, Interaction
from tests.api.conftest import AS_OF, error_of

pytestmark = pytest.mark.django_db


def _ids(response):
    return {c["external_id"] for c in response.json()["results"]}


def test_customer_list_rep_sees_own_and_unassigned_only(book, rep_client):
    response = rep_client.get("/api/v1/customers/")

    assert response.status_code == 200
    assert _ids(response) == {"C-MINE", "C-FREE"}


def test_customer_list_manager_sees_all(book, manager_client):
    assert _ids(manager_client.get("/api/v1/customers/")) == {"C-MINE", "C-THEIRS", "C-FREE"}


def test_customer_detail_of_other_reps_customer_is_404(book, rep_client):
    response = rep_client.get(f"/api/v1/customers/{book['theirs'].pk}/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_customer_detail_by_external_id(book, rep_client):
    response = rep_client.get("/api/v1/customers/by-external-id/C-MINE/")

    assert response.status_code == 200 and response.json()["id"] == book["mine"].pk
    assert rep_client.get("/api/v1/customers/by-external-id/C-THEIRS/").status_code == 404


def test_customer_insights_follow_the_contract(book, rep_client):
    insights = rep_client.get(f"/api/v1/customers/{book['mine'].pk}/").json()["insights"]

    assert insights["segment"]["name"] == "Loyal"
    forecast = insights["forecast"]
    assert {"as_of", "horizon_days", "expected_purchases", "expected_spend", "churn_probability", "clv",
            "expected_refund_rate"} <= set(forecast)
    assert forecast["as_of"] == AS_OF.isoformat() and forecast["horizon_days"] == 90
    assert forecast["expected_spend"] == 50.0 and forecast["churn_probability"] == 0.2
    assert [(s["sku"], s["score"], s["reason"]) for s in insights["recommendations"]] == [
        ("TOY-1", 0.7, "bought with dog food")]
    assert [s["sku"] for s in insights["reorder"]] == ["FOOD-1"]


def test_customer_with_no_profiling_has_empty_insights(book, manager_client):
    Customer.objects.filter(pk=book["free"].pk).update(no_profiling=True)

    insights = manager_client.get(f"/api/v1/customers/{book['free'].pk}/").json()["insights"]

    assert insights["no_profiling"] is True
    assert (insights["segment"], insights["forecast"], insights["recommendations"], insights["reorder"]) == (
        None, None, [], [])


def test_list_and_detail_carry_the_same_insights(book, manager_client):
    listed = {c["id"]: c["insights"] for c in manager_client.get("/api/v1/customers/").json()["results"]}

    for customer_id, insights in listed.items():
        assert manager_client.get(f"/api/v1/customers/{customer_id}/").json()["insights"] == insights


def test_customer_list_filters_by_segment_and_orders(book, manager_client):
    response = manager_client.get("/api/v1/customers/", {"segment": book["loyal"].pk, "ordering": "-name"})

    assert [c["external_id"] for c in response.json()["results"]] == ["C-THEIRS", "C-MINE"]


def test_customer_list_search(book, manager_client):
    assert _ids(manager_client.get("/api/v1/customers/", {"search": "c-free"})) == {"C-FREE"}


def test_customer_list_rejects_unknown_ordering_naming_the_field(book, manager_client):
    response = manager_client.get("/api/v1/customers/", {"ordering": "password"})

    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"ordering"}


def test_customer_list_page_size_is_capped(many_customers, manager_client):
    response = manager_client.get("/api/v1/customers/", {"page_size": 10_000})

    assert len(response.json()["results"]) == 63  # all, under the 500 cap


@pytest.mark.parametrize("page_size", [5, 50])
def test_customer_list_queries_do_not_grow_with_page_size(many_customers, rep_client, page_size,
                                                          django_assert_max_num_queries):
    with django_assert_max_num_queries(11):
        response = rep_client.get("/api/v1/customers/", {"page_size": page_size})

    assert len(response.json()["results"]) == page_size
    assert all(c["insights"]["forecast"] for c in response.json()["results"])


def test_rep_creates_own_customer(book, rep_client, rep):
    response = rep_client.post("/api/v1/customers/", {"external_id": "C-NEW", "name": "New", "owner": "rep1"})

    assert response.status_code == 201
    assert Customer.objects.get(external_id="C-NEW").owner == rep
    assert response.json()["insights"]["segment"] is None


def test_rep_cannot_give_customer_to_another_rep(book, rep_client):
    response = rep_client.post("/api/v1/customers/", {"external_id": "C-NEW", "owner": "rep2"})

    assert response.status_code == 403
    assert not Customer.objects.filter(external_id="C-NEW").exists()


def test_duplicate_external_id_is_400_on_the_field(book, manager_client):
    response = manager_client.post("/api/v1/customers/", {"external_id": "C-MINE"})

    assert response.status_code == 400 and "external_id" in error_of(response)["fields"]


def test_rep_updates_visible_customer(book, rep_client):
    response = rep_client.patch(f"/api/v1/customers/{book['free'].pk}/", {"city": "Lyon", "owner": "rep1"})

    assert response.status_code == 200 and response.json()["city"] == "Lyon"
    assert response.json()["owner"] == "rep1"


def test_rep_cannot_update_other_reps_customer(book, rep_client):
    response = rep_client.patch(f"/api/v1/customers/{book['theirs'].pk}/", {"city": "Lyon"})

    assert response.status_code == 404


def test_manager_updates_by_external_id(book, manager_client):
    response = manager_client.put("/api/v1/customers/by-external-id/C-THEIRS/",
                                  {"external_id": "C-THEIRS", "name": "Renamed", "owner": None})

    assert response.status_code == 200
    customer = Customer.objects.get(external_id="C-THEIRS")
    assert customer.name == "Renamed" and customer.owner is None


def test_rep_cannot_delete_customer(book, rep_client):
    response = rep_client.delete(f"/api/v1/customers/{book['mine'].pk}/")

    assert response.status_code == 403 and Customer.objects.filter(pk=book["mine"].pk).exists()


def test_manager_deletes_customer_with_interactions(book, manager_client):
    response = manager_client.delete(f"/api/v1/customers/{book['mine'].pk}/")

    assert response.status_code == 204
    assert not Interaction.objects.filter(customer_id=book["mine"].pk).exists()


def test_customer_recommendations(book, rep_client):
    body = rep_client.get(f"/api/v1/customers/{book['mine'].pk}/recommendations/").json()

    assert [s["sku"] for s in body["recommendations"]] == ["TOY-1"]
    assert [s["sku"] for s in body["reorder"]] == ["FOOD-1"]
    assert rep_client.get(f"/api/v1/customers/{book['theirs'].pk}/recommendations/").status_code == 404
