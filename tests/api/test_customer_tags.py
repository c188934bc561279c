"""Customer tags in the API: read on a customer, written by create / update, the list's ?tag= filter."""
import pytest

from crm import tags as crm_tags
from crm.models import Customer, Tag

pytestmark = pytest.mark.django_db
URL = "/api/v1/customers/"


def test_api_customer_tags_are_written_and_read(rep_client, rep):
    Tag.objects.create(name="VIP")
    created = rep_client.post(URL, {"external_id": "C-1", "owner": "rep1", "tags": ["vip", "north", "Vip"]},
                              format="json")
    assert created.status_code == 201 and created.json()["tags"] == ["north", "VIP"]
    pk = created.json()["id"]
    assert rep_client.get(f"{URL}{pk}/").json()["tags"] == ["north", "VIP"]
    assert rep_client.patch(f"{URL}{pk}/", {"name": "x"}, format="json").json()["tags"] == ["north", "VIP"]
    assert rep_client.patch(f"{URL}{pk}/", {"tags": []}, format="json").json()["tags"] == []


def test_api_customer_tag_over_the_limit_is_a_field_error(rep_client):
    response = rep_client.post(URL, {"external_id": "C-1", "tags": ["x" * 51]}, format="json")
    assert response.status_code == 400 and "tags" in str(response.json())
    assert not Customer.objects.exists()


def test_api_customer_list_filters_by_tag(rep_client, rep):
    for ext in ("A", "B", "C"):
        Customer.objects.create(external_id=ext, owner=rep)
    for ext in ("A", "C"):
        crm_tags.set_customer_tags(user=rep, customer=Customer.objects.get(external_id=ext), names=["fair"])
    body = rep_client.get(URL, {"tag": "FAIR"}).json()
    assert [c["external_id"] for c in body["results"]] == ["A", "C"]
    assert [c["tags"] for c in body["results"]] == [["fair"], ["fair"]]


def test_api_customer_tag_with_a_non_ascii_capital_is_stored(rep_client):
    # SQLite's LOWER() leaves "Ñ" as it is: the new tag must still be found after it is made (was a 500).
    response = rep_client.post(URL, {"external_id": "C-1", "tags": ["Ñandú"]}, format="json")

    assert response.status_code == 201 and response.json()["tags"] == ["Ñandú"]
