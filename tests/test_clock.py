"""The clock is a fact: a future-dated interaction is refused at every door with the same reason,
and the models' default as_of is never moved past today by one stored before the rule."""
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from crm import clock
from crm.imports import importer as services
from crm.models import Customer, Interaction
from ml import data, training
from ml.models import TrainingRun
from tests.conftest import read_rejects

FUTURE = "2099-01-01T10:00:00+00:00"
REASON = "is in the future: only what has already happened can be recorded"


@pytest.fixture
def customer(rep):
    return Customer.objects.create(external_id="C-1", name="Ada", owner=rep)


@pytest.fixture
def api(rep):
    client = APIClient()
    client.force_login(rep)
    return client


def test_clock_future_reason_allows_clock_skew_and_names_the_rule():
    now = datetime(2025, 6, 30, 12, tzinfo=UTC)

    assert clock.future_reason(now + timedelta(minutes=4), at=now) is None
    reason = clock.future_reason(datetime(2030, 1, 1, tzinfo=UTC), at=now, tz=UTC)
    assert reason == ("occurred_at 2030-01-01 00:00 is in the future: only what has already happened can be "
                      "recorded (a planned call or meeting is a follow-up, not an interaction)")


def test_log_form_refuses_a_future_date_pointing_to_follow_ups(client, rep, customer):
    client.force_login(rep)

    response = client.post(reverse("customer_log", args=[customer.pk]),
                           {"type": "meeting", "occurred_at": "2099-01-01T10:00", "notes": "planned"})

    assert not Interaction.objects.exists()
    text = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert REASON in text and "follow-up" in text


def test_log_form_accepts_a_past_date(client, rep, customer):
    client.force_login(rep)
    when = timezone.localtime() - timedelta(days=1)

    client.post(reverse("customer_log", args=[customer.pk]),
                {"type": "call", "occurred_at": when.strftime("%Y-%m-%dT%H:%M")})

    assert Interaction.objects.get().type == "call"


def test_api_create_refuses_a_future_interaction_naming_the_field(api, customer):
    response = api.post("/api/v1/interactions/", {"customer": customer.pk, "type": "meeting", "occurred_at": FUTURE},
                        format="json")

    assert response.status_code == 400
    assert REASON in response.json()["error"]["fields"]["occurred_at"][0]
    assert not Interaction.objects.exists()


def test_api_create_accepts_a_time_within_the_clock_skew_tolerance(api, customer):
    soon = (timezone.now() + timedelta(minutes=1)).isoformat()

    response = api.post("/api/v1/interactions/", {"customer": customer.pk, "type": "call", "occurred_at": soon},
                        format="json")

    assert response.status_code == 201


def test_api_update_refuses_moving_an_interaction_into_the_future(api, customer):
    created = api.post("/api/v1/interactions/", {"customer": customer.pk, "type": "call"}, format="json").json()

    response = api.patch(f"/api/v1/interactions/{created['id']}/", {"occurred_at": FUTURE}, format="json")

    assert response.status_code == 400 and REASON in response.json()["error"]["fields"]["occurred_at"][0]
    assert Interaction.objects.get().occurred_at < timezone.now()


def test_bulk_api_rejects_the_future_item_with_its_index_and_stores_the_rest(api, customer):
    items = [{"external_id": "ok", "customer_external_id": "C-1", "type": "call", "occurred_at": "2025-01-02"},
             {"external_id": "planned", "customer_external_id": "C-1", "type": "meeting", "occurred_at": FUTURE}]

    body = api.post("/api/v1/interactions/bulk/", {"items": items}, format="json").json()

    assert body["created"] == 1 and body["rejected"] == 1
    assert body["errors"][0]["index"] == 1 and body["errors"][0]["field"] == "occurred_at"
    assert REASON in body["errors"][0]["message"]
    assert list(Interaction.objects.values_list("external_id", flat=True)) == ["ok"]


@pytest.mark.parametrize("quoted", [False, True], ids=["column-wise path", "row-by-row path"])
def test_import_rejects_a_future_row_with_the_same_reason(write_csv, customer, quoted):
    notes = '"a, quoted note"' if quoted else "note"
    path = write_csv("interactions.csv", ["external_id", "customer_external_id", "type", "occurred_at", "notes"], [])
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"i-1,C-1,call,2025-01-02,{notes}\n")
        f.write(f"i-2,C-1,meeting,2099-01-01 10:00,{notes}\n")

    run = services.import_files({"interactions": path})

    result = run.files.get()
    assert (result.created, result.rejected) == (1, 1)
    (rejected,) = read_rejects(result.rejected_path)
    assert rejected["row"] == "3" and REASON in rejected["reason"] and "follow-up" in rejected["reason"]
    assert list(Interaction.objects.values_list("external_id", flat=True)) == ["i-1"]


def _stored(customer, external_id, at, type_="purchase"):
    # Written straight to the table, as rows stored before the rule would be.
    return Interaction.objects.create(external_id=external_id, customer=customer, type=type_, occurred_at=at, amount=10)


def test_latest_interaction_day_is_not_moved_by_a_future_row(customer):
    last_purchase = timezone.now() - timedelta(days=3)
    _stored(customer, "past", last_purchase)
    _stored(customer, "planned", datetime(2030, 1, 1, tzinfo=UTC), "meeting")

    assert data.latest_interaction_day() == timezone.localtime(last_purchase).date()


def test_latest_interaction_day_is_never_after_today(customer):
    _stored(customer, "soon", timezone.now() + timedelta(minutes=2), "call")  # within the skew tolerance

    assert data.latest_interaction_day() is None
    _stored(customer, "now", timezone.now() - timedelta(seconds=1))
    assert data.latest_interaction_day() <= timezone.localdate()


def test_training_default_as_of_ignores_the_future_and_counts_what_it_left_out(customer):
    last_purchase = timezone.now() - timedelta(days=3)
    _stored(customer, "past", last_purchase)
    _stored(customer, "planned", datetime(2030, 1, 1, tzinfo=UTC), "meeting")
    Customer.objects.create(external_id="C-2", name="Objector", no_profiling=True)
    Customer.objects.create(external_id="C-3", name="Prospect")
    run = TrainingRun.objects.create(kind="forecast")

    frames = training._load(run, lambda *args: None)

    run.refresh_from_db()
    assert run.as_of == timezone.localtime(last_purchase).date()
    assert len(frames["interactions"]) == 1
    counts = run.data_counts
    assert (counts["no_profiling"], counts["customers_without_purchase"]) == (1, 1)
    assert (counts["interactions_after_as_of"], counts["future_interactions"]) == (1, 1)
