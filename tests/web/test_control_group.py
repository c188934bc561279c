"""The control group's suggestions are kept but shown nowhere: customer page, home worklists, API,
API, prospects (the insights export keeps them unless --hide-control). Ada (rep's customer) is planted in the control group of the live run."""
import csv
import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from ml import selectors as ml_selectors
from ml.models import Prospect, Suggestion


@pytest.fixture
def ada_in_control(world):
    Suggestion.objects.filter(run=world.rec_run, customer=world.ada).update(control=True)
    Prospect.objects.filter(run=world.rec_run, customer=world.ada).update(control=True)
    return world


def test_control_group_customer_page_shows_no_suggestion_and_says_why(rep_client, ada_in_control):
    html = rep_client.get(reverse("customer_detail", args=[ada_in_control.ada.pk])).content.decode()

    assert "Customers who buy Widget often buy Gadget" not in html
    assert "Buys Widget every 30 days" not in html
    assert 'id="control-group"' in html and "in the control group" in html


def test_control_group_customer_page_of_a_shown_customer_is_unchanged(rep_client, world):
    html = rep_client.get(reverse("customer_detail", args=[world.ada.pk])).content.decode()

    assert "Customers who buy Widget often buy Gadget" in html and 'id="control-group"' not in html


def test_control_group_left_out_of_home_worklists(rep_client, ada_in_control):
    context = rep_client.get(reverse("home")).context

    assert context["cross_sell"] == [] and context["reorder"] == []


def test_control_group_left_out_of_the_managers_worklist_others_stay(manager_client, ada_in_control):
    context = manager_client.get(reverse("home")).context

    assert [s.customer_id for s in context["cross_sell"]] == [ada_in_control.zed.pk]


def test_control_group_api_customer_has_empty_lists_and_says_control_group(rep_client, ada_in_control):
    w = ada_in_control
    detail = rep_client.get(f"/api/v1/customers/{w.ada.pk}/").json()["insights"]
    assert (detail["recommendations"], detail["reorder"], detail["control_group"]) == ([], [], True)
    assert detail["segment"]["name"] == "Champions"  # the other insights stay
    listed = {c["id"]: c["insights"] for c in rep_client.get("/api/v1/customers/").json()["results"]}
    assert (listed[w.ada.pk]["recommendations"], listed[w.ada.pk]["control_group"]) == ([], True)
    assert listed[w.bob.pk]["control_group"] is False
    suggestions = rep_client.get(f"/api/v1/customers/{w.ada.pk}/recommendations/").json()
    assert suggestions == {"recommendations": [], "reorder": [], "control_group": True}


def test_control_group_api_shown_customer_keeps_its_lists(rep_client, world):
    detail = rep_client.get(f"/api/v1/customers/{world.ada.pk}/").json()["insights"]
    assert [s["sku"] for s in detail["recommendations"]] == ["G-1"] and detail["control_group"] is False


def test_control_group_kept_in_the_insights_export_unless_hidden(ada_in_control, tmp_path):
    # recommendations and reorder are columns 8 and 9 of contract section 3: the model's lists for
    # every customer (the contract's meaning), the control group's left empty on request
    rows = {row[0]: row for row in ml_selectors.insight_rows()}
    assert rows["C-ADA"][7] != "" and rows["C-ZED"][7] == "G-1"
    out = tmp_path / "campaign.csv"
    call_command("export_insights", "--out", str(out), "--hide-control", stdout=io.StringIO())
    rows = {r["external_id"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert (rows["C-ADA"]["recommendations"], rows["C-ADA"]["reorder"]) == ("", "")
    assert rows["C-ZED"]["recommendations"] == "G-1"


def test_control_group_left_out_of_product_prospects(rep, ada_in_control):
    w = ada_in_control
    assert list(ml_selectors.visible_prospects(rep, w.gadget)) == []
    assert [p.customer_id for p in ml_selectors.prospects(w.gadget)] == [w.zed.pk]


def test_control_group_suggestions_are_still_stored(ada_in_control):
    assert Suggestion.objects.filter(run=ada_in_control.rec_run, customer=ada_in_control.ada, control=True).count() == 2
