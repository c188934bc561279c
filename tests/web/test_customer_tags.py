"""Customer tags on the pages, the tag filter, and the managers' bulk actions on the list."""
import csv
import io
import re

import pytest
from django.urls import reverse

from crm import tags as crm_tags
from crm.models import AuditEvent, Customer, CustomerTag, Tag

pytestmark = pytest.mark.django_db
LIST = reverse("customer_list")
BULK = reverse("customer_bulk")


def tag(customer, *names, user=None):
    crm_tags.set_customer_tags(user=user or customer.owner, customer=customer,
                               names=[*crm_tags.tag_names(customer), *names])


def listed(client, query=""):
    body = client.get(f"{LIST}?{query}").content.decode()
    return re.findall(r'<div class="reason">([^<]+)</div>', body)


def test_customer_form_sets_tags_reusing_a_name_whatever_its_case(rep_client, world):
    Tag.objects.create(name="vip")
    url = reverse("customer_edit", args=[world.ada.pk])
    form = {"external_id": "C-ADA", "name": "Ada Lovelace", "email": "ada@example.com", "owner": world.rep.pk,
            "tags": "VIP, trade fair 2026, vip,  "}
    response = rep_client.post(url, form)
    assert response.status_code == 302
    assert crm_tags.tag_names(world.ada) == ["trade fair 2026", "vip"]
    assert Tag.objects.count() == 2
    event = AuditEvent.objects.filter(object_type="customer", object_id=str(world.ada.pk)).latest("id")
    assert "tags" in event.summary.split("fields ")[1].split(", ")
    assert 'value="trade fair 2026, vip"' in rep_client.get(url).content.decode()


def test_customer_form_refuses_a_tag_over_the_limit(rep_client, world):
    url = reverse("customer_edit", args=[world.ada.pk])
    response = rep_client.post(url, {"external_id": "C-ADA", "name": "Ada", "owner": world.rep.pk,
                                     "tags": "x" * 51})
    assert response.status_code == 200
    assert "A tag has at most 50 characters" in response.content.decode()
    assert not Tag.objects.exists()


def test_customer_page_and_list_rows_show_tags(rep_client, world):
    tag(world.ada, "vip")
    assert 'href="/customers/?tag=vip">vip</a>' in rep_client.get(
        reverse("customer_detail", args=[world.ada.pk])).content.decode()
    assert 'class="tag" href="?tag=vip">vip</a>' in rep_client.get(LIST).content.decode()


def test_customer_list_filters_by_tag_with_other_filters_and_sorts(rep_client, world):
    tag(world.ada, "vip")
    tag(world.una, "VIP", user=world.rep)
    tag(world.bob, "other")
    assert listed(rep_client, "tag=vip") == ["C-ADA", "C-UNA"]
    assert listed(rep_client, "tag=vip&q=Ada") == ["C-ADA"]
    assert listed(rep_client, "tag=vip&sort=-churn") == ["C-ADA", "C-UNA"]  # the forecast-ordered read
    assert listed(rep_client, f"tag=vip&segment={world.sleepers.pk}") == ["C-UNA"]
    assert listed(rep_client, "tag=vip&churn_band=high") == ["C-ADA"]


def test_customer_list_keeps_the_tag_through_pagination_and_export(rep_client, rep):
    for i in range(30):
        c = Customer.objects.create(external_id=f"T{i:02d}", name=f"Tagged {i:02d}", owner=rep)
        tag(c, "fair")
    Customer.objects.create(external_id="U-1", name="Untagged", owner=rep)
    body = rep_client.get(f"{LIST}?tag=fair").content.decode()
    assert "30 customers" in body
    assert 'href="?tag=fair&amp;page=2"' in body
    assert listed(rep_client, "tag=fair&page=2") == [f"T{i:02d}" for i in range(25, 30)]
    export = rep_client.get(reverse("customer_export") + "?tag=fair")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert sorted(r["external_id"] for r in rows) == [f"T{i:02d}" for i in range(30)]


def test_customer_list_reads_tags_in_one_query_whatever_the_rows(rep_client, rep, django_assert_max_num_queries):
    for i in range(25):
        c = Customer.objects.create(external_id=f"T{i:02d}", name=f"Tagged {i:02d}", owner=rep)
        tag(c, "a", "b")
    rep_client.get(LIST)  # warm the session and the caches
    with django_assert_max_num_queries(14) as captured:
        rep_client.get(LIST)
    assert sum("crm_customertag" in q["sql"] for q in captured.captured_queries) == 1


# --- bulk actions ---------------------------------------------------------------------------------

def test_bulk_controls_are_for_managers_only(client, world, manager):
    client.force_login(world.rep)
    assert 'name="bulk-ids"' not in client.get(LIST).content.decode()
    client.force_login(manager)
    body = client.get(LIST).content.decode()
    assert body.count('name="bulk-ids"') == 4 and 'data-select-all="bulk-ids"' in body


def test_bulk_post_by_a_rep_is_forbidden(rep_client, world):
    response = rep_client.post(BULK, {"bulk-action": "add_tag", "bulk-ids": [world.ada.pk], "bulk-tag": "vip"})
    assert response.status_code == 403
    assert not CustomerTag.objects.exists()


def test_bulk_assign_gives_the_customers_to_a_rep_with_one_event_each(manager_client, world):
    back = "q=&owner=none&sort=name&page=1"
    response = manager_client.post(BULK, {"bulk-action": "assign", "bulk-ids": [world.una.pk, world.zed.pk],
                                          "bulk-owner": world.rep.pk, "bulk-back": back})
    assert response.status_code == 302 and response["Location"] == f"{LIST}?{back}"
    assert set(Customer.objects.filter(owner=world.rep).values_list("external_id", flat=True)) == {
        "C-ADA", "C-BOB", "C-UNA", "C-ZED"}
    events = AuditEvent.objects.filter(summary__contains="(bulk)")
    assert sorted(events.values_list("customer_id", flat=True)) == sorted([world.una.pk, world.zed.pk])
    assert {e.actor_username for e in events} == {"boss"}
    assert "Assigned 2 customers to rep1." in manager_client.get(response["Location"]).content.decode()


def test_bulk_assign_counts_only_the_customers_it_changed(manager_client, world):
    response = manager_client.post(BULK, {"bulk-action": "assign", "bulk-ids": [world.ada.pk, world.una.pk],
                                          "bulk-owner": world.rep.pk}, follow=True)
    assert "Assigned 1 customer to rep1 (1 of the 2 selected already had that owner)." in response.content.decode()
    assert AuditEvent.objects.filter(summary__contains="(bulk)").count() == 1


def test_bulk_assign_refuses_an_inactive_owner(manager_client, world):
    world.other_rep.is_active = False
    world.other_rep.save()
    response = manager_client.post(BULK, {"bulk-action": "assign", "bulk-ids": [world.ada.pk],
                                          "bulk-owner": world.other_rep.pk}, follow=True)
    assert "Nothing changed:" in response.content.decode()
    assert Customer.objects.get(pk=world.ada.pk).owner == world.rep


def test_bulk_add_a_new_tag_then_remove_it(manager_client, world):
    ids = [world.ada.pk, world.zed.pk]
    response = manager_client.post(BULK, {"bulk-action": "add_tag", "bulk-ids": ids, "bulk-tag": " Trade  fair "},
                                   follow=True)
    assert "Tagged 2 customers “Trade fair”." in response.content.decode()
    assert sorted(Customer.objects.filter(tags__name="Trade fair").values_list("pk", flat=True)) == sorted(ids)
    response = manager_client.post(BULK, {"bulk-action": "remove_tag", "bulk-ids": [world.ada.pk, world.bob.pk],
                                          "bulk-tag": "trade FAIR"}, follow=True)
    assert ("Removed the tag “Trade fair” from 1 customer (1 of the 2 selected did not have it)."
            in response.content.decode())
    assert list(Customer.objects.filter(tags__name="Trade fair").values_list("pk", flat=True)) == [world.zed.pk]
    assert AuditEvent.objects.filter(summary__contains="(bulk: tag").count() == 3


@pytest.mark.parametrize("ids", [["999999"], ["abc"], []])
def test_bulk_with_unknown_or_no_ids_changes_nothing(manager_client, world, ids):
    response = manager_client.post(BULK, {"bulk-action": "add_tag", "bulk-ids": [world.ada.pk, *ids] if ids else [],
                                          "bulk-tag": "vip"}, follow=True)
    assert response.status_code == 200 and "Nothing changed:" in response.content.decode()
    assert not CustomerTag.objects.exists() and not AuditEvent.objects.filter(summary__contains="bulk").exists()


def test_bulk_redirect_stays_on_the_customer_list(manager_client, world):
    response = manager_client.post(BULK, {"bulk-action": "add_tag", "bulk-ids": [world.ada.pk], "bulk-tag": "vip",
                                          "bulk-back": "//evil.example/?x=1\r\nSet-Cookie: a=b"})
    assert response["Location"].startswith(LIST + "?")
    assert "\n" not in response["Location"]
