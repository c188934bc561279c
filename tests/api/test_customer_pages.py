"""The customer list's pages read from the insight indexes, and the fast insights output."""
import pytest

from crm.models import Customer
from ml.models import Forecast
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db


def _external_ids(response):
    return [c["external_id"] for c in response.json()["results"]]


def test_insights_field_gives_the_insights_serializer_output(book, rep_client):
    from ml.insights import insights_by_customer
    from web.api.serializers import InsightsField, InsightsSerializer

    insights = insights_by_customer([book["mine"]])[book["mine"].pk]

    assert InsightsField().to_representation(insights) == InsightsSerializer(insights).data


def test_customer_list_sorted_by_value_at_risk_returns_planted_order(book, manager_client):
    for customer, churn, clv in ((book["mine"], 0.5, 100.0), (book["theirs"], 0.1, 5000.0), (book["free"], 0.9, 50.0)):
        Forecast.objects.filter(customer=customer).update(churn_probability=churn, clv=clv)

    response = manager_client.get("/api/v1/customers/", {"ordering": "-value_at_risk"})

    assert _external_ids(response) == ["C-THEIRS", "C-MINE", "C-FREE"]  # 500, 50, 45
    assert response.json()["count"] == 3


def test_customer_list_filtered_by_segment_keeps_rep_rule(book, rep_client):
    response = rep_client.get("/api/v1/customers/", {"segment": book["loyal"].pk, "ordering": "-churn"})

    assert _external_ids(response) == ["C-MINE"] and response.json()["count"] == 1


def test_customer_list_pages_by_segment_cover_every_member_once(many_customers, rep_client, book):
    Customer.objects.filter(external_id="C-007").update(no_profiling=True)
    seen, page = [], 1
    while True:
        body = rep_client.get("/api/v1/customers/", {"segment": book["loyal"].pk, "page_size": 25,
                                                     "page": page}).json()
        seen += [c["external_id"] for c in body["results"]]
        if not body["next"]:
            break
        page += 1

    assert body["count"] == 60 == len(seen) == len(set(seen))  # 60 bulk + C-MINE - C-007
    assert "C-007" not in seen


def test_customer_list_last_page_and_out_of_range_page(many_customers, manager_client):
    last = manager_client.get("/api/v1/customers/", {"page_size": 25, "page": "last"}).json()
    beyond = manager_client.get("/api/v1/customers/", {"page_size": 25, "page": 9})
    not_a_number = manager_client.get("/api/v1/customers/", {"page": "x"})

    assert len(last["results"]) == 63 - 50 and last["next"] is None
    assert beyond.status_code == 404 and error_of(beyond)["code"] == "not_found"
    assert not_a_number.status_code == 404
